//! `out (m, n) = x (m, k) · Wᵀ` for f16 weights and f32 activations.
//!
//! candle 0.9 multiplies an f16 matrix by rounding the activations to f16 and running the
//! `gemm` crate's f16 kernel, then widening the result: an extra rounding of every activation,
//! three passes over the data, and (on this crate's benchmark) a fraction of what the same
//! weights reach through an f32 GEMM. Here the activations stay f32 and only the weights are
//! widened, where they are used:
//!
//! - **few rows** (`m <= GEMV_MAX_M`: decode, short verification chunks): a matrix-vector
//!   product that converts 16 weights per instruction (F16C `vcvtph2ps`, AVX-512 or AVX2) and
//!   feeds each converted vector to FMAs against up to four activation rows, one weight row at
//!   a time so the weights stream sequentially. Each output is summed in the same order for any
//!   `m` on this path. This runs at memory bandwidth, which is the decode limit.
//! - **many rows** (prefill): panels of weight rows are widened to f32 into a per-thread buffer
//!   small enough to stay in L2, and multiplied by the `gemm` crate's f32 kernel (packed,
//!   blocked, FMA). The widening costs one instruction per 16 weights against `m` FMAs per
//!   weight, so at `m = 128` it is noise.
//!
//! Work is split over weight rows by the same rule as the quantized kernels (`split_rows`), so
//! each output is computed by one task and results do not depend on the thread count.

use std::cell::RefCell;

use half::f16;

use crate::KernelError;

/// Activation rows up to which the matrix-vector kernel beats widening a panel for `gemm`.
pub const GEMV_MAX_M: usize = 16;

/// Bytes of f32 weights per widened panel: well inside a 1-2 MiB L2 next to `gemm`'s own
/// packing buffers.
const PANEL_BYTES: usize = 256 * 1024;

/// How an f16 matmul is computed; [`matmul_f16`] picks by `m`, benchmarks and tests pick both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum F16Path {
    /// Matrix-vector products with on-the-fly F16C widening.
    Gemv,
    /// f32 panels through the `gemm` crate.
    Gemm,
}

/// `out (m, n) = x (m, k) · Wᵀ` for a row-major `(n, k)` f16 matrix `W`, accumulating in f32.
pub fn matmul_f16(
    weights: &[f16],
    n: usize,
    k: usize,
    x: &[f32],
    m: usize,
    out: &mut [f32],
) -> Result<(), KernelError> {
    let path = if m <= GEMV_MAX_M {
        F16Path::Gemv
    } else {
        F16Path::Gemm
    };
    matmul_f16_with(path, weights, n, k, x, m, out)
}

/// [`matmul_f16`] along an explicit path.
pub fn matmul_f16_with(
    path: F16Path,
    weights: &[f16],
    n: usize,
    k: usize,
    x: &[f32],
    m: usize,
    out: &mut [f32],
) -> Result<(), KernelError> {
    check_f16_sizes(weights, n, k, x, m, out)?;
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        out.fill(0.0);
        return Ok(());
    }
    let args = F16Args {
        w: weights.as_ptr(),
        x: x.as_ptr(),
        out: out.as_mut_ptr(),
        n,
        k,
        m,
        prefetch: crate::prefetch_distance(),
    };
    match path {
        // SAFETY: `check_f16_sizes` proved every range the kernels touch; tasks write disjoint
        // columns of `out`.
        F16Path::Gemv => {
            crate::split_rows_weighted(n, m, k, 4, &|n0, n1| unsafe { gemv_rows(&args, n0, n1) })
        }
        F16Path::Gemm => gemm_panels(&args),
    }
    Ok(())
}

/// The portable oracle: every weight widened exactly, products accumulated in f64.
pub fn matmul_f16_reference(
    weights: &[f16],
    n: usize,
    k: usize,
    x: &[f32],
    m: usize,
    out: &mut [f32],
) -> Result<(), KernelError> {
    check_f16_sizes(weights, n, k, x, m, out)?;
    for c in 0..m {
        let xr = &x[c * k..(c + 1) * k];
        for r in 0..n {
            let wr = &weights[r * k..(r + 1) * k];
            let dot: f64 = wr.iter().zip(xr).map(|(w, x)| w.to_f64() * *x as f64).sum();
            out[c * n + r] = dot as f32;
        }
    }
    Ok(())
}

fn check_f16_sizes(
    weights: &[f16],
    n: usize,
    k: usize,
    x: &[f32],
    m: usize,
    out: &[f32],
) -> Result<(), KernelError> {
    if weights.len() != n * k {
        return Err(KernelError::F16Len {
            n,
            k,
            expected: n * k,
            got: weights.len(),
        });
    }
    crate::check_activations(n, k, x, m, out)
}

#[derive(Clone, Copy)]
struct F16Args {
    w: *const f16,
    x: *const f32,
    out: *mut f32,
    n: usize,
    k: usize,
    m: usize,
    /// How far ahead the weights are prefetched (`crate::prefetch_distance`).
    prefetch: usize,
}

// SAFETY: `w` and `x` are only read; tasks write `out` at disjoint columns.
unsafe impl Send for F16Args {}
unsafe impl Sync for F16Args {}

/// Output columns `n0..n1` of every activation row, by matrix-vector products.
unsafe fn gemv_rows(a: &F16Args, n0: usize, n1: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        if simd::has_avx512f() {
            return simd::gemv_avx512(a, n0, n1);
        }
        if crate::x86::has_avx2() {
            return simd::gemv_avx2(a, n0, n1);
        }
    }
    gemv_scalar(a, n0, n1);
}

unsafe fn gemv_scalar(a: &F16Args, n0: usize, n1: usize) {
    let k = a.k;
    for r in n0..n1 {
        let w = std::slice::from_raw_parts(a.w.add(r * k), k);
        for c in 0..a.m {
            let x = std::slice::from_raw_parts(a.x.add(c * k), k);
            let dot: f32 = w.iter().zip(x).map(|(w, x)| w.to_f32() * x).sum();
            *a.out.add(c * a.n + r) = dot;
        }
    }
}

/// Weight rows per widened panel: a multiple of 16 (`gemm`'s widest f32 microkernel).
fn panel_rows(k: usize) -> usize {
    (PANEL_BYTES / 4 / k / 16 * 16).clamp(16, 512)
}

/// Every activation row times the whole matrix, one widened panel per task. Panels start at
/// multiples of [`panel_rows`] whatever the thread count: `gemm` blocks a call by its width, so
/// the same panel must reach it as the same call for results not to depend on the threads.
fn gemm_panels(a: &F16Args) {
    let nc = panel_rows(a.k);
    let panels = a.n.div_ceil(nc);
    let panel = |p: usize| {
        let r = p * nc;
        // SAFETY: rows r..r+rows lie inside the (n, k) matrix that `check_f16_sizes` proved.
        unsafe { gemm_panel(a, r, nc.min(a.n - r)) }
    };
    let threads = rayon::current_num_threads();
    let cold = rayon::current_thread_index().is_none();
    if panels == 1 || threads == 1 || (cold && a.n * a.m * a.k < crate::MIN_COLD_WORK) {
        (0..panels).for_each(panel);
    } else {
        use rayon::prelude::*;
        (0..panels).into_par_iter().with_max_len(1).for_each(panel);
    }
}

thread_local! {
    static PANEL: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Output columns `r..r + rows` of every activation row.
unsafe fn gemm_panel(a: &F16Args, r: usize, rows: usize) {
    let k = a.k;
    let run = |panel: &mut Vec<f32>| {
        panel.resize(rows * k, 0.0);
        widen(std::slice::from_raw_parts(a.w.add(r * k), rows * k), panel);
        // dst (m, rows) at column r of out (row stride n); lhs x (m, k) row-major;
        // rhs = panelᵀ (k, rows): element (kk, j) is panel[j * k + kk].
        gemm::gemm(
            a.m,
            rows,
            k,
            a.out.add(r),
            1,
            a.n as isize,
            false,
            a.x,
            1,
            k as isize,
            panel.as_ptr(),
            k as isize,
            1,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    };
    PANEL.with(|cell| match cell.try_borrow_mut() {
        Ok(mut panel) => run(&mut panel),
        // A rayon worker waiting inside our own par_iter can be handed another matmul on the
        // same thread; that nested call gets a panel of its own.
        Err(_) => run(&mut Vec::new()),
    });
}

/// f16 to f32, 16 (AVX-512) or 8 (F16C) at a time.
fn widen(src: &[f16], dst: &mut [f32]) {
    debug_assert_eq!(src.len(), dst.len());
    #[cfg(target_arch = "x86_64")]
    {
        if simd::has_avx512f() {
            // SAFETY: feature detected; equal lengths checked by the callers.
            return unsafe { simd::widen_avx512(src, dst) };
        }
        if crate::x86::has_avx2() {
            // SAFETY: as above.
            return unsafe { simd::widen_f16c(src, dst) };
        }
    }
    for (d, s) in dst.iter_mut().zip(src) {
        *d = s.to_f32();
    }
}

#[cfg(target_arch = "x86_64")]
mod simd {
    use std::arch::x86_64::*;

    use half::f16;

    use super::F16Args;

    pub(super) fn has_avx512f() -> bool {
        crate::x86::has_avx2() && is_x86_feature_detected!("avx512f")
    }

    /// One weight row at a time, so the weights are read as one sequential stream: four rows
    /// read side by side (sharing each activation load) streamed a third slower from DRAM on
    /// this machine's Zen 5, with or without software prefetch. Each widened weight vector
    /// feeds up to four activation rows, so a short chunk (speculative verification) costs
    /// little more than one row. Every output is summed in the same order whatever the number
    /// of rows, so a row's result does not depend on the chunk it came in.
    #[target_feature(enable = "avx2,fma,f16c,avx512f")]
    pub(super) unsafe fn gemv_avx512(a: &F16Args, n0: usize, n1: usize) {
        for r in n0..n1 {
            let mut c = 0;
            while c < a.m {
                let cc = 4.min(a.m - c);
                match cc {
                    4 => dot_avx512::<4>(a, r, c),
                    3 => dot_avx512::<3>(a, r, c),
                    2 => dot_avx512::<2>(a, r, c),
                    _ => dot_avx512::<1>(a, r, c),
                }
                c += cc;
            }
        }
    }

    /// Weight row `r` against activation rows `c0..c0 + C`, four accumulators per row:
    /// independent FMA chains to cover the FMA latency.
    #[allow(clippy::needless_range_loop)]
    #[inline(always)]
    unsafe fn dot_avx512<const C: usize>(a: &F16Args, r: usize, c0: usize) {
        let k = a.k;
        let w = a.w.add(r * k);
        let x = |c: usize| a.x.add((c0 + c) * k);
        let mut acc = [[_mm512_setzero_ps(); 4]; C];
        let mut i = 0;
        while i + 64 <= k {
            crate::x86::prefetch_ahead(w.add(i).cast(), a.prefetch, 128);
            for j in 0..4 {
                let w0 = _mm512_cvtph_ps(_mm256_loadu_si256(w.add(i + 16 * j).cast()));
                for c in 0..C {
                    acc[c][j] =
                        _mm512_fmadd_ps(w0, _mm512_loadu_ps(x(c).add(i + 16 * j)), acc[c][j]);
                }
            }
            i += 64;
        }
        while i + 16 <= k {
            let w0 = _mm512_cvtph_ps(_mm256_loadu_si256(w.add(i).cast()));
            for c in 0..C {
                acc[c][0] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x(c).add(i)), acc[c][0]);
            }
            i += 16;
        }
        for c in 0..C {
            let acc = &acc[c];
            let s = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
            *a.out.add((c0 + c) * a.n + r) = _mm512_reduce_add_ps(s) + tail(w, x(c), i, k);
        }
    }

    /// [`gemv_avx512`] with 256-bit vectors; two activation rows per widened weight vector
    /// keep the accumulators within AVX2's 16 registers.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn gemv_avx2(a: &F16Args, n0: usize, n1: usize) {
        for r in n0..n1 {
            let mut c = 0;
            while c < a.m {
                let cc = 2.min(a.m - c);
                match cc {
                    2 => dot_avx2::<2>(a, r, c),
                    _ => dot_avx2::<1>(a, r, c),
                }
                c += cc;
            }
        }
    }

    #[allow(clippy::needless_range_loop)]
    #[inline(always)]
    unsafe fn dot_avx2<const C: usize>(a: &F16Args, r: usize, c0: usize) {
        let k = a.k;
        let w = a.w.add(r * k);
        let x = |c: usize| a.x.add((c0 + c) * k);
        let mut acc = [[_mm256_setzero_ps(); 4]; C];
        let mut i = 0;
        while i + 32 <= k {
            for j in 0..4 {
                let w0 = _mm256_cvtph_ps(_mm_loadu_si128(w.add(i + 8 * j).cast()));
                for c in 0..C {
                    acc[c][j] =
                        _mm256_fmadd_ps(w0, _mm256_loadu_ps(x(c).add(i + 8 * j)), acc[c][j]);
                }
            }
            i += 32;
        }
        while i + 8 <= k {
            let w0 = _mm256_cvtph_ps(_mm_loadu_si128(w.add(i).cast()));
            for c in 0..C {
                acc[c][0] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x(c).add(i)), acc[c][0]);
            }
            i += 8;
        }
        for c in 0..C {
            let acc = &acc[c];
            let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
            *a.out.add((c0 + c) * a.n + r) = hsum256(s) + tail(w, x(c), i, k);
        }
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn hsum256(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }

    /// Elements `i..k` that did not fill a vector.
    #[inline(always)]
    unsafe fn tail(w: *const f16, x: *const f32, i: usize, k: usize) -> f32 {
        (i..k).map(|j| (*w.add(j)).to_f32() * *x.add(j)).sum()
    }

    #[target_feature(enable = "avx2,fma,f16c,avx512f")]
    pub(super) unsafe fn widen_avx512(src: &[f16], dst: &mut [f32]) {
        let n = src.len().min(dst.len());
        let (s, d) = (src.as_ptr(), dst.as_mut_ptr());
        let mut i = 0;
        while i + 16 <= n {
            _mm512_storeu_ps(
                d.add(i),
                _mm512_cvtph_ps(_mm256_loadu_si256(s.add(i).cast())),
            );
            i += 16;
        }
        for j in i..n {
            *d.add(j) = (*s.add(j)).to_f32();
        }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn widen_f16c(src: &[f16], dst: &mut [f32]) {
        let n = src.len().min(dst.len());
        let (s, d) = (src.as_ptr(), dst.as_mut_ptr());
        let mut i = 0;
        while i + 8 <= n {
            _mm256_storeu_ps(d.add(i), _mm256_cvtph_ps(_mm_loadu_si128(s.add(i).cast())));
            i += 8;
        }
        for j in i..n {
            *d.add(j) = (*s.add(j)).to_f32();
        }
    }
}
