//! AVX2 kernels (with an AVX-VNNI variant) for `out = x · Wᵀ` on GGML weight blocks.
//!
//! The work unit is a tile of `R` weight rows by `C` activation rows. For every block of 32
//! elements the `R` weight blocks are unpacked once and reused against `C` activation blocks, so
//! prefill pays the nibble unpacking and scale conversion `C` times less often than a
//! row-by-row dot product; decode (`C = 1`) still gets `R` independent accumulator chains.
//!
//! Per (weight block, activation block) pair the integer dot product of 32 u8 x i8 lanes is
//! `maddubs` + `madd` (AVX2) or one `dpbusd` (VNNI), then one convert and two float ops apply the
//! two block scales. The block offset `m` never touches the 32 lanes: its contribution is
//! `m * s`, where `s = d8 * sum(q8)` was computed when the activations were quantized.

use std::arch::x86_64::*;

use crate::q8::{QK, ROW_GROUP};

/// Whether the baseline SIMD path (AVX2 + FMA + F16C) can run.
pub(crate) fn has_avx2() -> bool {
    is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c")
}

/// Whether AVX-VNNI (VEX-encoded `vpdpbusd`, as on Intel client cores) is available.
pub(crate) fn has_avxvnni() -> bool {
    has_avx2() && is_x86_feature_detected!("avxvnni")
}

/// Whether the 512-bit kernels (`avx512.rs`) can run.
pub(crate) fn has_avx512() -> bool {
    has_avx2()
        && is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("avx512vnni")
}

/// Prefetches into L1 the `len` bytes that lie `distance` bytes past `p`, one request per cache
/// line (nothing when `distance` is 0). The address may lie past the end of the weights: a
/// prefetch never faults, and `wrapping_add` keeps the pointer arithmetic defined.
#[inline(always)]
pub(crate) unsafe fn prefetch_ahead(p: *const u8, distance: usize, len: usize) {
    if distance == 0 {
        return;
    }
    let ahead = p.wrapping_add(distance);
    let mut at = 0;
    while at < len {
        _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(at).cast());
        at += 64;
    }
}

/// Everything a tile kernel needs, as raw pointers so the rayon tasks can share it.
#[derive(Clone, Copy)]
pub(crate) struct Args {
    pub w: *const u8,
    pub row_bytes: usize,
    pub nb: usize,
    pub n: usize,
    pub m: usize,
    /// Row stride of `qs` (`nbp * 32`).
    pub kp: usize,
    /// Row stride of `d`: blocks per row padded to even (see `Scratch`).
    pub nbp: usize,
    pub qs: *const i8,
    pub d: *const f32,
    pub s: *const f32,
    pub out: *mut f32,
    /// How far ahead the weights are prefetched (`crate::prefetch_distance`).
    pub prefetch: usize,
}

// SAFETY: the pointers are only read, except `out`, which the tasks write at disjoint columns.
unsafe impl Send for Args {}
unsafe impl Sync for Args {}

/// 32 unsigned x 32 signed bytes, summed in groups of four into 8 i32 lanes.
pub(crate) trait Dot {
    unsafe fn dot(u: __m256i, s: __m256i) -> __m256i;
}

pub(crate) struct Avx2Dot;
impl Dot for Avx2Dot {
    #[inline(always)]
    unsafe fn dot(u: __m256i, s: __m256i) -> __m256i {
        // Cannot saturate: |u| <= 128 and |s| <= 127, so a pair sum is at most 32512.
        _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1))
    }
}

pub(crate) struct AvxVnniDot;
impl Dot for AvxVnniDot {
    #[inline(always)]
    unsafe fn dot(u: __m256i, s: __m256i) -> __m256i {
        _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), u, s)
    }
}

/// A weight block format, decoded to vectors.
pub(crate) trait SimdFormat {
    const BLOCK_BYTES: usize;
    /// Whether blocks carry an offset `m` (otherwise the `m * s` term is skipped).
    const HAS_MIN: bool;
    /// A decoded block of 32 weights, in whatever form `dot` wants.
    type W: Copy;
    /// The block's weights and `[d, m, _, _]`.
    unsafe fn load(p: *const u8) -> (Self::W, __m128);
    unsafe fn dot<D: Dot>(w: Self::W, a: __m256i) -> __m256i;
}

/// 16 bytes of nibbles to 32 u8 lanes: low nibbles (elements 0..16) in the low 128 bits and
/// high nibbles (elements 16..32) in the high 128 bits, matching the activation block order.
#[inline(always)]
unsafe fn unpack_nibbles(p: *const u8) -> __m256i {
    let raw = _mm256_broadcastsi128_si256(_mm_loadu_si128(p.cast()));
    let shifted = _mm256_srlv_epi64(raw, _mm256_setr_epi64x(0, 0, 4, 4));
    _mm256_and_si256(shifted, _mm256_set1_epi8(0x0f))
}

pub(crate) struct Q4_1;
impl SimdFormat for Q4_1 {
    const BLOCK_BYTES: usize = 20;
    const HAS_MIN: bool = true;
    type W = __m256i;
    #[inline(always)]
    unsafe fn load(p: *const u8) -> (__m256i, __m128) {
        // d and m are adjacent f16s: one 32-bit load and one conversion yield both.
        let dm = _mm_cvtph_ps(_mm_cvtsi32_si128(p.cast::<i32>().read_unaligned()));
        (unpack_nibbles(p.add(4)), dm)
    }
    #[inline(always)]
    unsafe fn dot<D: Dot>(w: __m256i, a: __m256i) -> __m256i {
        D::dot(w, a)
    }
}

pub(crate) struct Q4_0;
impl SimdFormat for Q4_0 {
    const BLOCK_BYTES: usize = 18;
    const HAS_MIN: bool = true;
    type W = __m256i;
    #[inline(always)]
    unsafe fn load(p: *const u8) -> (__m256i, __m128) {
        // d * (q - 8) = d * q + (-8 d): the Q4_1 form, so the same m * s correction applies.
        let d = _mm_cvtph_ps(_mm_cvtsi32_si128(p.cast::<u16>().read_unaligned() as i32));
        let d = _mm_permute_ps::<0>(d);
        (
            unpack_nibbles(p.add(2)),
            _mm_mul_ps(d, _mm_setr_ps(1.0, -8.0, 0.0, 0.0)),
        )
    }
    #[inline(always)]
    unsafe fn dot<D: Dot>(w: __m256i, a: __m256i) -> __m256i {
        D::dot(w, a)
    }
}

/// A Q5 block's 16 nibble bytes and its `qh` word to 32 u8 lanes of 5-bit values, in the lane
/// order of [`unpack_nibbles`]: bit `j` of `qh` is bit 4 of lane `j`.
#[inline(always)]
unsafe fn unpack_q5(qh: *const u8, nibbles: *const u8) -> __m256i {
    let bits = _mm256_set1_epi32(qh.cast::<i32>().read_unaligned());
    // Lane j takes byte j / 8 of qh (each 128-bit half holds all four bytes, so the in-lane
    // shuffle reaches them), then keeps its own bit j % 8 of it.
    let bytes = _mm256_shuffle_epi8(
        bits,
        _mm256_setr_epi64x(
            0,
            0x0101_0101_0101_0101,
            0x0202_0202_0202_0202,
            0x0303_0303_0303_0303,
        ),
    );
    let bit = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
    let set = _mm256_cmpeq_epi8(_mm256_and_si256(bytes, bit), bit);
    _mm256_or_si256(
        unpack_nibbles(nibbles),
        _mm256_and_si256(set, _mm256_set1_epi8(0x10)),
    )
}

pub(crate) struct Q5_1;
impl SimdFormat for Q5_1 {
    const BLOCK_BYTES: usize = 24;
    const HAS_MIN: bool = true;
    type W = __m256i;
    #[inline(always)]
    unsafe fn load(p: *const u8) -> (__m256i, __m128) {
        let dm = _mm_cvtph_ps(_mm_cvtsi32_si128(p.cast::<i32>().read_unaligned()));
        (unpack_q5(p.add(4), p.add(8)), dm)
    }
    #[inline(always)]
    unsafe fn dot<D: Dot>(w: __m256i, a: __m256i) -> __m256i {
        D::dot(w, a)
    }
}

pub(crate) struct Q5_0;
impl SimdFormat for Q5_0 {
    const BLOCK_BYTES: usize = 22;
    const HAS_MIN: bool = true;
    type W = __m256i;
    #[inline(always)]
    unsafe fn load(p: *const u8) -> (__m256i, __m128) {
        // d * (q - 16) = d * q + (-16 d), as Q4_0 folds its 8: the weights stay unsigned for
        // the u8 x i8 dot product.
        let d = _mm_cvtph_ps(_mm_cvtsi32_si128(p.cast::<u16>().read_unaligned() as i32));
        let d = _mm_permute_ps::<0>(d);
        (
            unpack_q5(p.add(2), p.add(6)),
            _mm_mul_ps(d, _mm_setr_ps(1.0, -16.0, 0.0, 0.0)),
        )
    }
    #[inline(always)]
    unsafe fn dot<D: Dot>(w: __m256i, a: __m256i) -> __m256i {
        D::dot(w, a)
    }
}

pub(crate) struct Q8_0;
impl SimdFormat for Q8_0 {
    const BLOCK_BYTES: usize = 34;
    const HAS_MIN: bool = false;
    /// `(|w|, w)`: the u8 x i8 instructions need one unsigned operand, so the weight's sign
    /// moves onto the activation.
    type W = (__m256i, __m256i);
    #[inline(always)]
    unsafe fn load(p: *const u8) -> ((__m256i, __m256i), __m128) {
        let d = _mm_cvtph_ps(_mm_cvtsi32_si128(p.cast::<u16>().read_unaligned() as i32));
        let w = _mm256_loadu_si256(p.add(2).cast());
        ((_mm256_abs_epi8(w), w), d)
    }
    #[inline(always)]
    unsafe fn dot<D: Dot>(w: (__m256i, __m256i), a: __m256i) -> __m256i {
        D::dot(w.0, _mm256_sign_epi8(a, w.1))
    }
}

#[inline(always)]
unsafe fn hsum(v: __m256) -> f32 {
    let x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    let x = _mm_add_ss(x, _mm_movehdup_ps(x));
    _mm_cvtss_f32(x)
}

/// One `R x C` tile over the full depth `k`: weight rows `n0..n0+R`, activation rows
/// `c0..c0+C`, with `c0` a multiple of `ROW_GROUP` (the block sums are loaded per group).
// Index loops: `r` and `c` address several tile arrays and memory offsets at once.
#[allow(clippy::needless_range_loop)]
#[inline(always)]
unsafe fn tile<F: SimdFormat, D: Dot, const R: usize, const C: usize>(
    a: &Args,
    n0: usize,
    c0: usize,
) {
    debug_assert!(c0.is_multiple_of(ROW_GROUP) && C <= ROW_GROUP);
    let mut acc = [[_mm256_setzero_ps(); C]; R];
    let mut acc_min = [_mm_setzero_ps(); R];
    let w0 = a.w.add(n0 * a.row_bytes);
    for b in 0..a.nb {
        let mut wq = [std::mem::zeroed::<F::W>(); R];
        let mut d4 = [_mm256_setzero_ps(); R];
        // Block sums of rows c0..c0+4; lanes past C belong to missing rows and are ignored.
        let s8 = _mm_loadu_ps(a.s.add(((c0 / ROW_GROUP) * a.nbp + b) * ROW_GROUP));
        for r in 0..R {
            let (w, dm) = F::load(w0.add(r * a.row_bytes + b * F::BLOCK_BYTES));
            wq[r] = w;
            d4[r] = _mm256_broadcastss_ps(dm);
            if F::HAS_MIN {
                acc_min[r] = _mm_fmadd_ps(_mm_permute_ps::<0x55>(dm), s8, acc_min[r]);
            }
        }
        for c in 0..C {
            let q8 = _mm256_loadu_si256(a.qs.add((c0 + c) * a.kp + b * QK).cast());
            let d8 = _mm256_broadcast_ss(&*a.d.add((c0 + c) * a.nbp + b));
            for r in 0..R {
                let p = _mm256_cvtepi32_ps(F::dot::<D>(wq[r], q8));
                acc[r][c] = _mm256_fmadd_ps(p, _mm256_mul_ps(d4[r], d8), acc[r][c]);
            }
        }
    }
    for r in 0..R {
        let mut mins = [0f32; 4];
        _mm_storeu_ps(mins.as_mut_ptr(), acc_min[r]);
        for c in 0..C {
            *a.out.add((c0 + c) * a.n + n0 + r) = hsum(acc[r][c]) + mins[c];
        }
    }
}

#[inline(always)]
unsafe fn tile_c<F: SimdFormat, D: Dot, const R: usize>(a: &Args, n0: usize, c0: usize, c: usize) {
    match c {
        4 => tile::<F, D, R, 4>(a, n0, c0),
        3 => tile::<F, D, R, 3>(a, n0, c0),
        2 => tile::<F, D, R, 2>(a, n0, c0),
        1 => tile::<F, D, R, 1>(a, n0, c0),
        _ => unreachable!(),
    }
}

/// Output columns (weight rows) `n0..n1` for every activation row. Each group of `R` weight
/// rows (a few KiB) stays in L1 while all activation rows stream past it.
#[inline(always)]
unsafe fn rows<F: SimdFormat, D: Dot>(a: &Args, n0: usize, n1: usize) {
    // A 4 x 4 tile keeps 16 accumulators plus 12 weight-side vectors live: it fits the 32
    // registers that AVX-512 builds may use even in 256-bit code, and spills with AVX2's 16.
    const R: usize = if cfg!(target_feature = "avx512vl") {
        4
    } else {
        2
    };
    const C: usize = ROW_GROUP;
    // Decode (one activation row) takes one weight row at a time: a single sequential
    // stream, where R rows side by side are R interleaved streams that DRAM serves at about
    // half the rate (see avx512.rs). Each output's arithmetic is the same either way.
    let r_max = if a.m == 1 { 1 } else { R };
    let mut r = n0;
    while r < n1 {
        let rr = r_max.min(n1 - r);
        let mut c = 0;
        while c < a.m {
            let cc = C.min(a.m - c);
            match rr {
                4 => tile_c::<F, D, 4>(a, r, c, cc),
                3 => tile_c::<F, D, 3>(a, r, c, cc),
                2 => tile_c::<F, D, 2>(a, r, c, cc),
                1 => tile_c::<F, D, 1>(a, r, c, cc),
                _ => unreachable!(),
            }
            c += cc;
        }
        r += rr;
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn rows_avx2<F: SimdFormat>(a: &Args, n0: usize, n1: usize) {
    rows::<F, Avx2Dot>(a, n0, n1)
}

#[target_feature(enable = "avx2,fma,f16c,avxvnni")]
pub(crate) unsafe fn rows_avxvnni<F: SimdFormat>(a: &Args, n0: usize, n1: usize) {
    rows::<F, AvxVnniDot>(a, n0, n1)
}
