//! Fast CPU matrix multiplication for GGML-quantized weights (Q4_1, Q4_0, Q5_0, Q5_1, Q8_0,
//! and the K-quants Q4_K and Q6_K, whose 256-element super-blocks have kernels of their own in
//! `kquants.rs` and, on AVX-512 VNNI, `kquants_avx512.rs`). On AVX-512 VNNI, the formats of
//! 32-element blocks take `lanes_avx512.rs`, which lays 16 blocks across one vector's lanes,
//! instead of the tiles described below (unless `EFFBENCH_Q8_LANES=0`, see [`LANES_ENV`]).
//!
//! candle 0.9's CPU path for Q4_1 has no SIMD dot product and multiplies one activation row at
//! a time, which leaves a small model like SmolLM2-135M an order of magnitude behind llama.cpp.
//! This crate computes `out (m, n) = x (m, k) · Wᵀ` the way ggml does, but tiled for prefill:
//!
//! 1. each activation row is quantized once to 8-bit blocks of 32 (ggml's Q8_1: scale `d` and
//!    `s = d * sum(q)`), into a reusable [`Scratch`];
//! 2. weight blocks are multiplied against them with integer SIMD (`maddubs`/`madd` on AVX2,
//!    `vpdpbusd` with VNNI, two blocks per 512-bit vector with AVX-512), in tiles of 4 weight
//!    rows x 4 activation rows so that one unpacked weight block serves four activation rows;
//! 3. rayon tasks on the current pool (whose size the caller controls) split the output
//!    columns, and each task sweeps all `m` activation rows over its weight rows while they are
//!    in cache. Each output is computed by one task in a fixed order, so results do not depend
//!    on the thread count.
//!
//! The API takes raw GGML block bytes and f32 slices, no candle types: `weights` is exactly what
//! `QTensor::data()` returns for an `(n, k)` tensor, `n` rows of `k / 32` blocks each (see
//! [`WeightFormat`] for the block layouts). Sizes are validated and reported as [`KernelError`].
//!
//! Decode-sized calls take ~10 microseconds, about what it costs to wake the pool from a thread
//! outside it. So from outside the pool, problems under 2M multiply-accumulates run on the
//! calling thread; from inside it (`ThreadPool::install`, the better place for a forward pass)
//! they split across the pool down to 64K multiply-accumulates per task.
//!
//! The SIMD path is chosen at run time (`is_x86_feature_detected!`), so a binary built for any
//! x86-64 CPU is correct everywhere; [`reference::matmul`] is the portable scalar path and the
//! oracle for the tests.

#[cfg(target_arch = "x86_64")]
mod avx512;
pub mod elementwise;
mod f16;
mod formats;
mod kquants;
#[cfg(target_arch = "x86_64")]
mod kquants_avx512;
#[cfg(target_arch = "x86_64")]
mod lanes_avx512;
mod packed;
mod q8;
pub mod reference;
pub mod softmax;
#[cfg(target_arch = "x86_64")]
mod x86;

use std::cell::RefCell;
use std::sync::OnceLock;

use rayon::prelude::*;

pub use f16::{matmul_f16, matmul_f16_reference, matmul_f16_with, F16Path, GEMV_MAX_M};
pub use formats::WeightFormat;
pub use packed::{dequantize_packed, matmul_packed_reference, PackedFormat};
pub use q8::Scratch;

use q8::{BlockSums, QK};

/// `len` test values spread over `lo..=hi` in steps of 0.001 by a multiplicative hash of the
/// index and `seed`: varied, reproducible, no RNG.
#[cfg(test)]
pub(crate) fn hashed_values(len: usize, seed: u32, lo: i32, hi: i32) -> Vec<f32> {
    let steps = (hi - lo) as u32 * 1000 + 1;
    (0..len as u32)
        .map(|i| ((i.wrapping_mul(2654435761) ^ seed) % steps) as f32 / 1000.0 + lo as f32)
        .collect()
}

/// Why a matmul was refused. Nothing is written to `out` when one is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KernelError {
    #[error("k = {k} is not a multiple of the GGML block size {block}")]
    KNotBlockMultiple { k: usize, block: usize },
    #[error(
        "{format:?} weights of an ({n}, {k}) matrix take {expected} bytes, but {got} were given"
    )]
    WeightsLen {
        format: WeightFormat,
        n: usize,
        k: usize,
        expected: usize,
        got: usize,
    },
    #[error("x should hold m * k = {m} * {k} = {expected} floats, but holds {got}")]
    XLen {
        m: usize,
        k: usize,
        expected: usize,
        got: usize,
    },
    #[error("out should hold m * n = {m} * {n} = {expected} floats, but holds {got}")]
    OutLen {
        m: usize,
        n: usize,
        expected: usize,
        got: usize,
    },
    #[error("bad packed format: {0}")]
    BadPackedFormat(String),
    #[error(
        "{format:?} weights of an ({n}, {k}) matrix take {expected} bytes, but {got} were given"
    )]
    PackedLen {
        format: PackedFormat,
        n: usize,
        k: usize,
        expected: usize,
        got: usize,
    },
    #[error("f16 weights of an ({n}, {k}) matrix are {expected} values, but {got} were given")]
    F16Len {
        n: usize,
        k: usize,
        expected: usize,
        got: usize,
    },
    #[error("the {0:?} kernel cannot run on this CPU")]
    Unsupported(Isa),
}

/// A kernel variant. [`Isa::best`] is what the plain entry points use; the others exist so tests
/// and benchmarks can compare variants on one machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// Portable scalar code (single-threaded).
    Scalar,
    /// AVX2 + FMA + F16C: `maddubs` + `madd` integer dot products.
    Avx2,
    /// AVX-512 (F, BW, VL, VNNI): 512-bit vectors holding two blocks each.
    Avx512Vnni,
    /// AVX-VNNI: `vpdpbusd` with VEX encoding.
    AvxVnni,
}

impl Isa {
    /// The fastest variant this CPU supports (detected once).
    pub fn best() -> Isa {
        static BEST: OnceLock<Isa> = OnceLock::new();
        *BEST.get_or_init(|| *Isa::available().last().unwrap_or(&Isa::Scalar))
    }

    /// Every variant this CPU supports, slowest first.
    pub fn available() -> Vec<Isa> {
        [Isa::Scalar, Isa::Avx2, Isa::AvxVnni, Isa::Avx512Vnni]
            .into_iter()
            .filter(|isa| isa.is_supported())
            .collect()
    }

    /// Whether this CPU can run the variant (`is_x86_feature_detected!` caches, so this is a
    /// few atomic loads).
    pub fn is_supported(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => x86::has_avx2(),
            #[cfg(target_arch = "x86_64")]
            Isa::AvxVnni => x86::has_avxvnni(),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vnni => x86::has_avx512(),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }
}

/// `out (m, n) = x (m, k) · Wᵀ` for an `(n, k)` matrix `W` of GGML Q4_1 blocks.
///
/// `weights` holds `n` rows of `k / 32` blocks of 20 bytes: f16 `d`, f16 `m`, 16 bytes whose low
/// nibbles are elements 0..16 and high nibbles elements 16..32; `w = d * q + m`. Activations
/// are quantized to 8 bits per block of 32 first (as ggml does), which bounds the error of each
/// output by `sum_b sum_i |w_i| * amax_b(x) / 254`.
pub fn matmul_q4_1(
    weights: &[u8],
    n: usize,
    k: usize,
    x: &[f32],
    m: usize,
    out: &mut [f32],
) -> Result<(), KernelError> {
    matmul(WeightFormat::Q4_1, weights, n, k, x, m, out)
}

/// [`matmul_q4_1`] for Q4_0 weights (18-byte blocks: f16 `d`, 16 bytes of nibbles,
/// `w = d * (q - 8)`).
pub fn matmul_q4_0(
    weights: &[u8],
    n: usize,
    k: usize,
    x: &[f32],
    m: usize,
    out: &mut [f32],
) -> Result<(), KernelError> {
    matmul(WeightFormat::Q4_0, weights, n, k, x, m, out)
}

/// [`matmul_q4_1`] for Q8_0 weights (34-byte blocks: f16 `d`, 32 signed bytes, `w = d * q`).
pub fn matmul_q8_0(
    weights: &[u8],
    n: usize,
    k: usize,
    x: &[f32],
    m: usize,
    out: &mut [f32],
) -> Result<(), KernelError> {
    matmul(WeightFormat::Q8_0, weights, n, k, x, m, out)
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::new());
}

/// `out (m, n) = x (m, k) · Wᵀ` for weights in any [`WeightFormat`], with the best kernel for
/// this CPU. The activation buffer is a per-thread scratch kept between calls, so steady-state
/// calls do not allocate.
pub fn matmul(
    format: WeightFormat,
    weights: &[u8],
    n: usize,
    k: usize,
    x: &[f32],
    m: usize,
    out: &mut [f32],
) -> Result<(), KernelError> {
    with_scratch(|scratch| matmul_with(Isa::best(), format, weights, n, k, x, m, out, scratch))
}

/// Runs `f` with this thread's reusable activation buffer, so steady-state calls allocate
/// nothing. A rayon worker waiting inside our own par_iter can be handed another matmul job on
/// the same thread; that nested call gets a buffer of its own instead of a panic.
fn with_scratch<T>(f: impl FnOnce(&mut Scratch) -> T) -> T {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut scratch) => f(&mut scratch),
        Err(_) => f(&mut Scratch::new()),
    })
}

/// `EFFBENCH_Q8_LANES=0` turns off the block-per-lane kernel of the 32-element block formats
/// (`lanes_avx512.rs`), which AVX-512 VNNI machines otherwise run, for the two-blocks-a-vector
/// tiles: to compare the two on one machine. On the kernel bench (one thread) the lanes kernel
/// took 1.6-3.2x less time for Q4_0 and Q8_0 at m = 512; at m = 1 it was 20-30% faster on
/// Qwen2.5-1.5B's shapes and 5-10% slower on SmolLM2's smallest. For Q4_1 and Q5_0 it took
/// 2.6-3.4x less time at m = 512 and 40-50% less at m = 5 on the m-curve's matrix, where m = 1
/// was level, measured in turn with the test suite running beside. Every output is its row's
/// exact block dot products scaled in block order either way; they differ in the order of the
/// f32 sums.
pub const LANES_ENV: &str = "EFFBENCH_Q8_LANES";

/// `EFFBENCH_PREFETCH=BYTES` sets how far ahead of their reads the weight-streaming kernels
/// prefetch (0 turns prefetching off; default [`PREFETCH_DEFAULT`]).
pub const PREFETCH_ENV: &str = "EFFBENCH_PREFETCH";

/// Decode streams each matrix once from DRAM, and the hardware prefetcher alone kept a core
/// waiting on its loads: on the m-curve bench (Qwen2.5-1.5B's 8960 x 1536 MLP matrix, weights
/// cycled through 1 GB) a software prefetch 4 KiB ahead made a one-row Q4_K pass 1.6x and a
/// Q6_K pass 1.5x faster on one thread. Between 2 and 16 KiB the distance mattered little.
pub const PREFETCH_DEFAULT: usize = 4096;

/// The prefetch distance in bytes (see [`PREFETCH_ENV`]), read once.
pub(crate) fn prefetch_distance() -> usize {
    static BYTES: OnceLock<usize> = OnceLock::new();
    *BYTES.get_or_init(|| {
        std::env::var(PREFETCH_ENV)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(PREFETCH_DEFAULT)
    })
}

fn lanes_enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os(LANES_ENV).is_none_or(|v| v != "0"))
}

/// [`matmul`] with a caller-owned activation buffer and an explicit kernel variant.
#[allow(clippy::too_many_arguments)]
pub fn matmul_with(
    isa: Isa,
    format: WeightFormat,
    weights: &[u8],
    n: usize,
    k: usize,
    x: &[f32],
    m: usize,
    out: &mut [f32],
    scratch: &mut Scratch,
) -> Result<(), KernelError> {
    check_sizes(format, weights, n, k, x, m, out)?;
    if !isa.is_supported() {
        return Err(KernelError::Unsupported(isa));
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if format.is_k_quant() {
        matmul_k(isa, format, weights, n, k, x, m, out, &mut scratch.kacts);
        return Ok(());
    }
    match isa {
        Isa::Scalar => {
            scratch.quantize_scalar(x, m, k, format.block_sums());
            reference::matmul_quantized(format, weights, n, k, scratch, out);
        }
        #[cfg(target_arch = "x86_64")]
        _ => {
            scratch.quantize(x, m, k, format.block_sums());
            if isa == Isa::Avx512Vnni && lanes_avx512::takes(format) && lanes_enabled() {
                lanes_avx512::matmul(format, weights, n, k, scratch, out);
            } else {
                simd_matmul(isa, format, weights, n, k, scratch, out);
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        _ => unreachable!("only the scalar kernel is available off x86-64"),
    }
    Ok(())
}

/// The K-quant path of [`matmul_with`]: activations to 8 bits per 256, then the tile kernels.
#[allow(clippy::too_many_arguments)]
fn matmul_k(
    isa: Isa,
    format: WeightFormat,
    weights: &[u8],
    n: usize,
    k: usize,
    x: &[f32],
    m: usize,
    out: &mut [f32],
    acts: &mut kquants::KActs,
) {
    acts.quantize(x, m, k, isa != Isa::Scalar);
    #[cfg(target_arch = "x86_64")]
    if isa != Isa::Scalar {
        type Kernel = unsafe fn(&kquants::KArgs, usize, usize);
        if isa == Isa::Avx512Vnni {
            kquants_avx512::interleave_acts(&mut acts.qs);
        }
        let kernel: Kernel = match (format, isa) {
            (WeightFormat::Q4_K, Isa::Avx512Vnni) => kquants_avx512::rows::<kquants_avx512::Q4K>,
            (WeightFormat::Q4_K, Isa::Avx2) => kquants::rows_avx2::<kquants::Q4K>,
            (WeightFormat::Q4_K, _) => kquants::rows_avxvnni::<kquants::Q4K>,
            (_, Isa::Avx512Vnni) => kquants_avx512::rows::<kquants_avx512::Q6K>,
            (_, Isa::Avx2) => kquants::rows_avx2::<kquants::Q6K>,
            _ => kquants::rows_avxvnni::<kquants::Q6K>,
        };
        let args = kquants::KArgs::new(format, weights, n, acts, out);
        // SAFETY: `matmul_with` checked that this CPU supports the kernel and every size behind
        // these pointers; tasks write disjoint column ranges of `out`.
        split_rows(n, m, k, &|n0, n1| unsafe { kernel(&args, n0, n1) });
        return;
    }
    kquants::matmul_scalar(format, weights, n, k, acts, out);
}

/// Dequantizes an `(n, k)` Q4_1 matrix to row-major f32 (`w = d * q + m`).
pub fn dequantize_q4_1(weights: &[u8], n: usize, k: usize) -> Result<Vec<f32>, KernelError> {
    dequantize(WeightFormat::Q4_1, weights, n, k)
}

/// Dequantizes an `(n, k)` matrix of `format` blocks to row-major f32.
pub fn dequantize(
    format: WeightFormat,
    weights: &[u8],
    n: usize,
    k: usize,
) -> Result<Vec<f32>, KernelError> {
    check_weights(format, weights, n, k)?;
    if format.is_k_quant() {
        return Ok(kquants::dequantize(format, weights, n, k));
    }
    Ok(reference::dequantize(format, weights, n, k))
}

fn check_weights(
    format: WeightFormat,
    weights: &[u8],
    n: usize,
    k: usize,
) -> Result<(), KernelError> {
    let block = format.block_elems();
    if !k.is_multiple_of(block) {
        return Err(KernelError::KNotBlockMultiple { k, block });
    }
    let expected = format.matrix_bytes(n, k);
    if weights.len() != expected {
        return Err(KernelError::WeightsLen {
            format,
            n,
            k,
            expected,
            got: weights.len(),
        });
    }
    Ok(())
}

pub(crate) fn check_sizes(
    format: WeightFormat,
    weights: &[u8],
    n: usize,
    k: usize,
    x: &[f32],
    m: usize,
    out: &[f32],
) -> Result<(), KernelError> {
    check_weights(format, weights, n, k)?;
    check_activations(n, k, x, m, out)
}

/// The activation and output lengths every kernel family shares: `x` is `(m, k)`, `out`
/// `(m, n)`; each family checks its own weights.
pub(crate) fn check_activations(
    n: usize,
    k: usize,
    x: &[f32],
    m: usize,
    out: &[f32],
) -> Result<(), KernelError> {
    if x.len() != m * k {
        return Err(KernelError::XLen {
            m,
            k,
            expected: m * k,
            got: x.len(),
        });
    }
    if out.len() != m * n {
        return Err(KernelError::OutLen {
            m,
            n,
            expected: m * n,
            got: out.len(),
        });
    }
    Ok(())
}

/// Activation rows up to which the K-quant kernels take one weight row at a time against
/// every activation row, instead of 2 x 4 tiles: on the m-curve bench (`benches/m_curve.rs`)
/// this made 5 to 9 rows 10-15% cheaper. The 4-bit and 8-bit GGML blocks and the packed
/// formats measured the other way (their 4-row tiles won from m = 2) and keep `m == 1` as
/// their only one-row case.
pub(crate) const STREAM_MAX_M: usize = 16;

/// Multiply-accumulates below which a rayon task costs more in dispatch than it saves. Inside
/// the pool a task starts in a few microseconds, so decode-sized matmuls split too: at 1 << 18
/// SmolLM2's 576 x 576 attention projections ran on one thread, and 2-thread decode was 1.1x
/// the 1-thread figure (69 against 63 tok/s on Q4_1 here); at 1 << 16 it is 1.5-1.9x, with
/// Qwen2.5-1.5B's larger matmuls unchanged and 1 << 15 no better.
const MIN_TASK_WORK: usize = 1 << 16;

/// Multiply-accumulates below which a call from outside the pool runs on the calling thread:
/// handing work to sleeping pool threads costs ~10 us, as much as a 576 x 1536 decode matmul.
const MIN_COLD_WORK: usize = 1 << 21;

#[cfg(target_arch = "x86_64")]
fn simd_matmul(
    isa: Isa,
    format: WeightFormat,
    weights: &[u8],
    n: usize,
    k: usize,
    acts: &Scratch,
    out: &mut [f32],
) {
    use x86::{Args, SimdFormat};

    type Kernel = unsafe fn(&Args, usize, usize);
    fn pick<F: SimdFormat, F2: avx512::Format2>(isa: Isa) -> Kernel {
        match isa {
            Isa::Avx2 => x86::rows_avx2::<F>,
            Isa::AvxVnni => x86::rows_avxvnni::<F>,
            Isa::Avx512Vnni => avx512::rows::<F2>,
            Isa::Scalar => unreachable!("the scalar path does not come here"),
        }
    }
    let kernel = match format {
        WeightFormat::Q4_0 => pick::<x86::Q4_0, avx512::Q4_0>(isa),
        WeightFormat::Q4_1 => pick::<x86::Q4_1, avx512::Q4_1>(isa),
        WeightFormat::Q8_0 => pick::<x86::Q8_0, avx512::Q8_0>(isa),
        WeightFormat::Q5_0 => pick::<x86::Q5_0, avx512::Q5_0>(isa),
        WeightFormat::Q5_1 => pick::<x86::Q5_1, avx512::Q5_1>(isa),
        WeightFormat::Q4_K | WeightFormat::Q6_K => unreachable!("K-quants go to matmul_k"),
    };
    let m = acts.m;
    let args = Args {
        w: weights.as_ptr(),
        row_bytes: (k / QK) * format.block_bytes(),
        nb: k / QK,
        n,
        m,
        kp: acts.kp(),
        nbp: acts.nbp,
        qs: acts.qs.as_ptr(),
        d: acts.d.as_ptr(),
        s: acts.s.as_ptr(),
        out: out.as_mut_ptr(),
        prefetch: prefetch_distance(),
    };

    // SAFETY: `matmul_with` checked that this CPU supports the kernel; `check_sizes` proved
    // every pointer range in `args`, and tasks write disjoint column ranges of `out`.
    split_rows(n, m, k, &|n0, n1| unsafe { kernel(&args, n0, n1) });
}

/// Runs `kernel(n0, n1)` over weight rows `0..n`, split into rayon tasks when the work is worth
/// it. Tasks own whole 4-row groups so the tile kernels' full-width case dominates.
fn split_rows(n: usize, m: usize, k: usize, kernel: &(dyn Fn(usize, usize) + Sync)) {
    split_rows_weighted(n, m, k, 1, kernel)
}

/// [`split_rows`] for weights that cost `weight` times a GGML 4-bit block's per
/// multiply-accumulate: the thresholds were set for 4-bit blocks, and a decode-sized f16 call
/// reads about four times the bytes per multiply-accumulate, so it pays for waking the pool at a
/// quarter of the size.
fn split_rows_weighted(
    n: usize,
    m: usize,
    k: usize,
    weight: usize,
    kernel: &(dyn Fn(usize, usize) + Sync),
) {
    let groups = n.div_ceil(4);
    let threads = rayon::current_num_threads();
    let work = n * m * k * weight.max(1);
    let cold = rayon::current_thread_index().is_none();
    let max_tasks = if cold && work < MIN_COLD_WORK {
        1
    } else {
        (work / MIN_TASK_WORK).clamp(1, groups)
    };
    // A multiple of the thread count: 3 equal tasks on 2 threads take as long as 4.
    let tasks = if max_tasks >= threads {
        max_tasks.min(threads * 4) / threads * threads
    } else {
        max_tasks
    };
    if tasks <= 1 || threads == 1 {
        kernel(0, n);
        return;
    }
    let per_task = groups.div_ceil(tasks) * 4;
    // One task per item, so an idle thread can take any of them when another is preempted.
    (0..n.div_ceil(per_task))
        .into_par_iter()
        .with_max_len(1)
        .for_each(|t| {
            let n0 = t * per_task;
            let n1 = (n0 + per_task).min(n);
            kernel(n0, n1);
        });
}

/// `out (m, n) = x (m, k) · Wᵀ` for an `(n, k)` matrix in one of effbench's own packed int4/int2
/// formats (see [`PackedFormat`]), with the best kernel for this CPU. `k` need not be a multiple
/// of 32: rows are zero-padded to the activation block.
pub fn matmul_packed(
    format: PackedFormat,
    weights: &[u8],
    n: usize,
    k: usize,
    x: &[f32],
    m: usize,
    out: &mut [f32],
) -> Result<(), KernelError> {
    with_scratch(|scratch| {
        matmul_packed_with(Isa::best(), format, weights, n, k, x, m, out, scratch)
    })
}

/// [`matmul_packed`] with a caller-owned activation buffer and an explicit kernel variant.
#[allow(clippy::too_many_arguments)]
pub fn matmul_packed_with(
    isa: Isa,
    format: PackedFormat,
    weights: &[u8],
    n: usize,
    k: usize,
    x: &[f32],
    m: usize,
    out: &mut [f32],
    scratch: &mut Scratch,
) -> Result<(), KernelError> {
    packed::check_all(format, weights, n, k, x, m, out)?;
    if !isa.is_supported() {
        return Err(KernelError::Unsupported(isa));
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    let kp = PackedFormat::padded_k(k);
    let padded = packed::pad_x(x, m, k);
    let xs = padded.as_deref().unwrap_or(x);
    match isa {
        Isa::Scalar => {
            scratch.quantize_scalar(xs, m, kp, BlockSums::Exact);
            packed::matmul_quantized(format, weights, n, k, scratch, out);
        }
        #[cfg(target_arch = "x86_64")]
        _ => {
            scratch.quantize(xs, m, kp, BlockSums::Exact);
            // Groups of 16 keep the tiles of `packed.rs`: two scales per block do not fit the
            // block-per-lane layout.
            if isa == Isa::Avx512Vnni && format.group() >= QK && lanes_enabled() {
                lanes_avx512::matmul_packed(format, weights, n, k, scratch, out);
            } else {
                simd_matmul_packed(isa, format, weights, n, k, scratch, out);
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        _ => unreachable!("only the scalar kernel is available off x86-64"),
    }
    Ok(())
}

#[cfg(target_arch = "x86_64")]
fn simd_matmul_packed(
    isa: Isa,
    format: PackedFormat,
    weights: &[u8],
    n: usize,
    k: usize,
    acts: &Scratch,
    out: &mut [f32],
) {
    use packed::simd::{rows_avx2, rows_avx512vnni, rows_avxvnni, PArgs};
    type Kernel = unsafe fn(&PArgs, usize, usize);
    fn pick<const BITS: u32, const ASYM: bool, const HALF: bool>(isa: Isa) -> Kernel {
        // The packed formats have no 512-bit (two blocks a vector) variant yet; AVX-512 VNNI
        // CPUs run the 256-bit tiles with `vpdpbusd`.
        match isa {
            Isa::AvxVnni => rows_avxvnni::<BITS, ASYM, HALF>,
            Isa::Avx512Vnni => rows_avx512vnni::<BITS, ASYM, HALF>,
            _ => rows_avx2::<BITS, ASYM, HALF>,
        }
    }
    let half = format.group() == 16;
    let kernel = match (format.bits(), format.asym(), half) {
        (4, false, false) => pick::<4, false, false>(isa),
        (4, true, false) => pick::<4, true, false>(isa),
        (4, false, true) => pick::<4, false, true>(isa),
        (4, true, true) => pick::<4, true, true>(isa),
        (2, false, false) => pick::<2, false, false>(isa),
        (2, true, false) => pick::<2, true, false>(isa),
        (2, false, true) => pick::<2, false, true>(isa),
        (2, true, true) => pick::<2, true, true>(isa),
        _ => unreachable!("PackedFormat::new admits 2 or 4 bits"),
    };
    let kp = PackedFormat::padded_k(k);
    let args = PArgs {
        w: weights.as_ptr(),
        row_bytes: format.row_bytes(k),
        scale_off: kp * format.bits() as usize / 8,
        nb: kp / QK,
        group_shift: (format.group() / QK).max(1).trailing_zeros(),
        zero: (1u32 << (format.bits() - 1)) as f32,
        n,
        m: acts.m,
        kp: acts.kp(),
        nbp: acts.nbp,
        qs: acts.qs.as_ptr(),
        d: acts.d.as_ptr(),
        s: acts.s.as_ptr(),
        out: out.as_mut_ptr(),
    };
    // SAFETY: `matmul_packed_with` checked the CPU and every size behind these pointers; tasks
    // write disjoint column ranges of `out`.
    split_rows(n, acts.m, kp, &|n0, n1| unsafe { kernel(&args, n0, n1) });
}
