//! Q4_K and Q6_K, ggml's K-quants: the bulk of a Q4_K_M checkpoint.
//!
//! Both store super-blocks of 256 weights with one f16 scale `d` and small integer scales per
//! sub-block, so the whole super-block's dot product can be accumulated in integers and scaled
//! once, as ggml does against its Q8_K activations:
//!
//! - Q4_K (144 bytes): f16 `d`, f16 `dmin`, 12 bytes of eight 6-bit scales `sc_j` and eight 6-bit
//!   mins `m_j`, 128 bytes of nibbles. In each 64-element chunk `i` the 32 bytes `qs[32i..]` hold
//!   elements `64i..64i+32` in their low nibbles (sub-block `2i`) and `64i+32..64i+64` in their
//!   high nibbles (sub-block `2i+1`). `w = d * sc_j * q - dmin * m_j`.
//! - Q6_K (210 bytes): `ql[128]` low nibbles, `qh[64]` high bit pairs, `sc[16]` i8 scales, f16
//!   `d`. Within each 128-element half `h`, element `l` (`l < 32`) takes the low nibble of
//!   `ql[64h+l]` and bits 0-1 of `qh[32h+l]`; `l+32` the low nibble of `ql[64h+l+32]` and bits
//!   2-3; `l+64` the high nibble of `ql[64h+l]` and bits 4-5; `l+96` the high nibble of
//!   `ql[64h+l+32]` and bits 6-7. `w = d * sc_j * (q - 32)` with `j = element / 16`.
//!
//! Activations are quantized once per call to 8 bits per 256 by ggml's Q8_K rule (the value of
//! largest magnitude maps to -127; `d8` kept in f32), with `s = d8 * sum(q8)` per 16 elements. Then per super-block, weight row
//! `r` and activation row `c`:
//!
//! `out += d_r * d8_c * sum_j sc_j * dot(q_j, q8_j) + sum_t off_t * s_t`
//!
//! where the integer sum is `maddubs` (u8 weights x i8 activations) followed by a 16-bit multiply
//! by the sub-block scale (`madd`, or `vpdpwssd` with VNNI), and the offsets (`-dmin * m_j`, or
//! `-32 * d * sc_j`) meet the 16-element sums `s_t` in one float multiply-add per 16 lanes. The
//! offsets never touch the 256 integer lanes.
//!
//! Tiles of `R` weight rows x `C` activation rows decode each weight chunk once for `C`
//! activation rows (prefill) and keep `R` chains independent (decode). Every output is summed in
//! the same order whatever tile it lands in, so results do not depend on `m` or the thread count.
//!
//! On AVX-512 VNNI both take `kquants_avx512.rs` instead: weight rows decoded once per pass
//! into an interleaved layout that `vpdpbusd` multiplies without the 16-bit step.

use half::f16;

use crate::formats::WeightFormat;

/// Elements per super-block.
pub(crate) const QK_K: usize = 256;
/// Elements per activation partial sum `s`: Q6_K's sub-block (Q4_K's are two of these).
const QS: usize = 16;
/// Partial sums per super-block.
pub(crate) const NS: usize = QK_K / QS;

/// Activations of one call quantized for the K-quant kernels.
#[derive(Debug, Default, Clone)]
pub(crate) struct KActs {
    /// `m` rows of `k` quantized values.
    pub qs: Vec<i8>,
    /// Super-block scales `d8`, `[row][super-block]`.
    pub d: Vec<f32>,
    /// `d8 * sum(q8)` per 16 elements, `[row][super-block][16]`.
    pub s: Vec<f32>,
    pub m: usize,
    pub k: usize,
}

impl KActs {
    /// Sizes the buffers for `m` rows of `k`. Their old contents are left in place: `quantize`
    /// overwrites every element, and clearing first would cost a pass over `m * k` bytes.
    fn reset(&mut self, m: usize, k: usize) {
        let nsb = k / QK_K;
        self.m = m;
        self.k = k;
        self.qs.resize(m * k, 0);
        self.d.resize(m * nsb, 0.0);
        self.s.resize(m * nsb * NS, 0.0);
    }

    /// Quantizes `x` (`m` rows of `k`, `k` a multiple of 256); `simd` picks the AVX2 quantizer,
    /// which produces the same bytes as the scalar one. Prefill-sized inputs are split over the
    /// current rayon pool by super-block, which changes no byte of the result.
    pub fn quantize(&mut self, x: &[f32], m: usize, k: usize, simd: bool) {
        self.reset(m, k);
        let n_blocks = m * (k / QK_K);
        let block = |(((xs, qs), d), s): BlockSlices| {
            #[cfg(target_arch = "x86_64")]
            if simd {
                // SAFETY: the caller asks for SIMD only where AVX2 was detected.
                *d = unsafe { quantize_block_avx2(xs, qs, s) };
                return;
            }
            let _ = simd;
            *d = quantize_block_scalar(xs, qs, s);
        };
        let x = &x[..n_blocks * QK_K];
        if n_blocks >= MIN_PARALLEL_BLOCKS && rayon::current_num_threads() > 1 {
            use rayon::prelude::*;
            x.par_chunks_exact(QK_K)
                .zip(self.qs.par_chunks_exact_mut(QK_K))
                .zip(self.d.par_iter_mut())
                .zip(self.s.par_chunks_exact_mut(NS))
                .with_min_len(MIN_PARALLEL_BLOCKS / 4)
                .for_each(block);
        } else {
            x.chunks_exact(QK_K)
                .zip(self.qs.chunks_exact_mut(QK_K))
                .zip(self.d.iter_mut())
                .zip(self.s.chunks_exact_mut(NS))
                .for_each(block);
        }
    }
}

/// One super-block's input, and its quantized values, scale and partial sums to fill.
type BlockSlices<'a> = (((&'a [f32], &'a mut [i8]), &'a mut f32), &'a mut [f32]);

/// Super-blocks below which quantizing on one thread beats waking the pool (a decode step's
/// activations are 6-35 of them).
const MIN_PARALLEL_BLOCKS: usize = 256;

/// Quantizes one super-block `xs` into `qs` and its 16-element partial sums `s`; returns `d`.
fn quantize_block_scalar(xs: &[f32], qs: &mut [i8], s: &mut [f32]) -> f32 {
    let (hi, lo) = xs
        .iter()
        .fold((0f32, 0f32), |(hi, lo), &v| (hi.max(v), lo.min(v)));
    let (d, id) = q8k_scale(hi, lo);
    for ((x16, q16), s) in xs.chunks_exact(QS).zip(qs.chunks_exact_mut(QS)).zip(s) {
        let mut sum = 0i32;
        for (q, &v) in q16.iter_mut().zip(x16) {
            *q = (v * id).round_ties_even() as i8;
            sum += *q as i32;
        }
        *s = d * sum as f32;
    }
    d
}

/// [`quantize_block_scalar`] with AVX2; the same bytes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn quantize_block_avx2(xs: &[f32], qs: &mut [i8], s: &mut [f32]) -> f32 {
    use std::arch::x86_64::*;
    debug_assert!(xs.len() == QK_K && qs.len() == QK_K && s.len() == NS);
    let p = xs.as_ptr();
    let mut hi = _mm256_setzero_ps();
    let mut lo = _mm256_setzero_ps();
    for i in 0..QK_K / 8 {
        let v = _mm256_loadu_ps(p.add(8 * i));
        hi = _mm256_max_ps(hi, v);
        lo = _mm256_min_ps(lo, v);
    }
    let reduce = |v: __m256, f: unsafe fn(__m128, __m128) -> __m128| {
        let x4 = f(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let x2 = f(x4, _mm_movehl_ps(x4, x4));
        _mm_cvtss_f32(f(x2, _mm_movehdup_ps(x2)))
    };
    let (d, id) = q8k_scale(
        reduce(hi, |a, b| _mm_max_ps(a, b)),
        reduce(lo, |a, b| _mm_min_ps(a, b)),
    );
    let vid = _mm256_set1_ps(id);
    // packs_epi32/packs_epi16 interleave 128-bit lanes; this puts them back in order.
    let unshuffle = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    let hsum = |v: __m256i| {
        let s4 = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
        let s2 = _mm_add_epi32(s4, _mm_unpackhi_epi64(s4, s4));
        _mm_cvtsi128_si32(_mm_add_epi32(s2, _mm_shuffle_epi32(s2, 0b01)))
    };
    // Round to nearest, ties to even (the default MXCSR mode), as the scalar path. With the
    // largest magnitude at 127 no product rounds past 127, so nothing is clamped.
    let quant = |q: *const f32| _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(q), vid));
    let dst = qs.as_mut_ptr();
    for g in 0..QK_K / 32 {
        let q = p.add(32 * g);
        let (q0, q1, q2, q3) = (
            quant(q),
            quant(q.add(8)),
            quant(q.add(16)),
            quant(q.add(24)),
        );
        s[2 * g] = d * hsum(_mm256_add_epi32(q0, q1)) as f32;
        s[2 * g + 1] = d * hsum(_mm256_add_epi32(q2, q3)) as f32;
        let packed = _mm256_packs_epi16(_mm256_packs_epi32(q0, q1), _mm256_packs_epi32(q2, q3));
        let packed = _mm256_permutevar8x32_epi32(packed, unshuffle);
        _mm256_storeu_si256(dst.add(32 * g).cast(), packed);
    }
    d
}

/// The scale `d` and its inverse for a super-block whose largest value is `hi` and smallest `lo`,
/// by ggml's Q8_K rule (which llama.cpp's figures are computed with, both its reference
/// quantizer and its x86 repacked one): the value of largest magnitude maps to -127, so no value
/// needs clamping. A tie between `hi` and `-lo` takes `hi`; either gives the same products.
fn q8k_scale(hi: f32, lo: f32) -> (f32, f32) {
    let max = if hi >= -lo { hi } else { lo };
    if max == 0.0 {
        return (0.0, 0.0);
    }
    let id = -127.0 / max;
    (1.0 / id, id)
}

/// Q4_K's eight 6-bit scales and mins, as in ggml's `get_scale_min_k4`.
fn q4k_scale_min(j: usize, s: &[u8]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        (
            (s[j + 4] & 0xf) | ((s[j - 4] >> 6) << 4),
            (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
        )
    }
}

/// The same unpacking on three 32-bit words at once: the eight scales and the eight mins as the
/// bytes of two u64s (what the SIMD kernels load into vectors).
#[inline(always)]
pub(crate) fn q4k_scales_mins_packed(s: &[u8]) -> (u64, u64) {
    const LOW6: u32 = 0x3f3f_3f3f;
    const LOW4: u32 = 0x0f0f_0f0f;
    const LOW2: u32 = 0x0303_0303;
    let word = |i: usize| u32::from_le_bytes([s[i], s[i + 1], s[i + 2], s[i + 3]]);
    let (u0, u1, u2) = (word(0), word(4), word(8));
    let sc_lo = u0 & LOW6;
    let sc_hi = (u2 & LOW4) | (((u0 >> 6) & LOW2) << 4);
    let m_lo = u1 & LOW6;
    let m_hi = ((u2 >> 4) & LOW4) | (((u1 >> 6) & LOW2) << 4);
    (
        sc_lo as u64 | (sc_hi as u64) << 32,
        m_lo as u64 | (m_hi as u64) << 32,
    )
}

/// One super-block in the form every kernel here computes with:
/// `w[i] = d * scale[i / 16] * q[i] + off[i / 16]`.
struct Decoded {
    d: f32,
    scale: [i32; NS],
    off: [f32; NS],
    q: [i32; QK_K],
}

fn decode(format: WeightFormat, b: &[u8]) -> Decoded {
    let mut q = [0i32; QK_K];
    let mut scale = [0i32; NS];
    let mut off = [0f32; NS];
    match format {
        WeightFormat::Q4_K => {
            let d = f16::from_le_bytes([b[0], b[1]]).to_f32();
            let dmin = f16::from_le_bytes([b[2], b[3]]).to_f32();
            let qs = &b[16..144];
            for i in 0..4 {
                for l in 0..32 {
                    q[64 * i + l] = (qs[32 * i + l] & 0xf) as i32;
                    q[64 * i + 32 + l] = (qs[32 * i + l] >> 4) as i32;
                }
            }
            for t in 0..NS {
                let (sc, m) = q4k_scale_min(t / 2, &b[4..16]);
                scale[t] = sc as i32;
                off[t] = -dmin * m as f32;
            }
            Decoded { d, scale, off, q }
        }
        WeightFormat::Q6_K => {
            let (ql, qh) = (&b[0..128], &b[128..192]);
            let d = f16::from_le_bytes([b[208], b[209]]).to_f32();
            for h in 0..2 {
                let (ql, qh, q) = (&ql[64 * h..], &qh[32 * h..], &mut q[128 * h..]);
                for l in 0..32 {
                    q[l] = ((ql[l] & 0xf) | ((qh[l] & 3) << 4)) as i32;
                    q[l + 32] = ((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) as i32;
                    q[l + 64] = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32;
                    q[l + 96] = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32;
                }
            }
            for t in 0..NS {
                scale[t] = b[192 + t] as i8 as i32;
                off[t] = scale[t] as f32 * (-32.0 * d);
            }
            Decoded { d, scale, off, q }
        }
        _ => unreachable!("not a K-quant: {format:?}"),
    }
}

/// Dequantizes an `(n, k)` K-quant matrix to f32 with ggml's (and candle's) rounding.
pub(crate) fn dequantize(format: WeightFormat, weights: &[u8], n: usize, k: usize) -> Vec<f32> {
    let bb = format.block_bytes();
    let mut out = Vec::with_capacity(n * k);
    for b in weights[..format.matrix_bytes(n, k)].chunks_exact(bb) {
        let x = decode(format, b);
        match format {
            WeightFormat::Q4_K => {
                let dmin = f16::from_le_bytes([b[2], b[3]]).to_f32();
                for (i, &q) in x.q.iter().enumerate() {
                    let (sc, m) = q4k_scale_min(i / 32, &b[4..16]);
                    out.push((x.d * sc as f32) * q as f32 - dmin * m as f32);
                }
            }
            _ => out.extend(
                x.q.iter()
                    .enumerate()
                    .map(|(i, &q)| x.d * x.scale[i / QS] as f32 * (q - 32) as f32),
            ),
        }
    }
    out
}

/// The scalar kernel on already-quantized activations: the portable path and the tests' oracle.
pub(crate) fn matmul_scalar(
    format: WeightFormat,
    weights: &[u8],
    n: usize,
    k: usize,
    acts: &KActs,
    out: &mut [f32],
) {
    let nsb = k / QK_K;
    let bb = format.block_bytes();
    for row in 0..n {
        let blocks: Vec<Decoded> = weights[row * nsb * bb..(row + 1) * nsb * bb]
            .chunks_exact(bb)
            .map(|b| decode(format, b))
            .collect();
        for c in 0..acts.m {
            let mut sum = 0f32;
            for (b, w) in blocks.iter().enumerate() {
                let sb = c * nsb + b;
                let a = &acts.qs[sb * QK_K..(sb + 1) * QK_K];
                let mut sumi = 0i32;
                let mut offs = 0f32;
                for t in 0..NS {
                    let dot: i32 = (t * QS..(t + 1) * QS).map(|i| w.q[i] * a[i] as i32).sum();
                    sumi += w.scale[t] * dot;
                    offs += w.off[t] * acts.s[sb * NS + t];
                }
                sum += w.d * acts.d[sb] * sumi as f32 + offs;
            }
            out[c * n + row] = sum;
        }
    }
}

pub(crate) use simd::*;

#[cfg(not(target_arch = "x86_64"))]
mod simd {}

#[cfg(target_arch = "x86_64")]
mod simd {
    use std::arch::x86_64::*;

    use super::{q4k_scales_mins_packed, KActs, NS, QK_K};

    /// Everything a tile kernel needs, as raw pointers so the rayon tasks can share it.
    #[derive(Clone, Copy)]
    pub(crate) struct KArgs {
        pub w: *const u8,
        pub row_bytes: usize,
        /// Super-blocks per row.
        pub nsb: usize,
        pub n: usize,
        pub m: usize,
        /// Row stride of `qs` (`k`).
        pub k: usize,
        pub qs: *const i8,
        pub d: *const f32,
        pub s: *const f32,
        pub out: *mut f32,
        /// How far ahead the weights are prefetched (`crate::prefetch_distance`).
        pub prefetch: usize,
    }

    // SAFETY: the pointers are only read, except `out`, which tasks write at disjoint columns.
    unsafe impl Send for KArgs {}
    unsafe impl Sync for KArgs {}

    impl KArgs {
        pub(crate) fn new(
            format: crate::WeightFormat,
            weights: &[u8],
            n: usize,
            acts: &KActs,
            out: &mut [f32],
        ) -> Self {
            let nsb = acts.k / QK_K;
            KArgs {
                w: weights.as_ptr(),
                row_bytes: nsb * format.block_bytes(),
                nsb,
                n,
                m: acts.m,
                k: acts.k,
                qs: acts.qs.as_ptr(),
                d: acts.d.as_ptr(),
                s: acts.s.as_ptr(),
                out: out.as_mut_ptr(),
                prefetch: crate::prefetch_distance(),
            }
        }
    }

    /// Q4_K's 256-bit kernels.
    pub(crate) struct Q4K;
    /// Q6_K's 256-bit kernels.
    pub(crate) struct Q6K;

    // ---------------------------------------------------------------------------------------
    // 256-bit kernels (AVX2, AVX-VNNI): a super-block is 8 chunks of 32 elements.
    // ---------------------------------------------------------------------------------------

    /// `acc + madd(prod, scales)` on 16-bit lanes.
    pub(crate) trait Madd16 {
        unsafe fn madd(acc: __m256i, prod: __m256i, scales: __m256i) -> __m256i;
    }

    pub(crate) struct Avx2Madd;
    impl Madd16 for Avx2Madd {
        #[inline(always)]
        unsafe fn madd(acc: __m256i, prod: __m256i, scales: __m256i) -> __m256i {
            _mm256_add_epi32(acc, _mm256_madd_epi16(prod, scales))
        }
    }

    pub(crate) struct VnniMadd;
    impl Madd16 for VnniMadd {
        #[inline(always)]
        unsafe fn madd(acc: __m256i, prod: __m256i, scales: __m256i) -> __m256i {
            _mm256_dpwssd_avx_epi32(acc, prod, scales)
        }
    }

    /// A K-quant decoded for the 256-bit kernels.
    pub(crate) trait K256 {
        const BLOCK_BYTES: usize;
        /// Per super-block: the 16-bit scales (both 128-bit halves), `d` broadcast, and the 16
        /// offsets as two vectors of 8.
        unsafe fn prepare(p: *const u8) -> ([__m256i; 2], __m256, [__m256; 2]);
        /// Chunk `i` (elements `32i..32i+32`): 32 u8 weights and the scale of each 16-bit lane.
        unsafe fn chunk(p: *const u8, scales: &[__m256i; 2], i: usize) -> (__m256i, __m256i);
    }

    /// Bytes that make `shuffle_epi8` broadcast 16-bit word `lo` into the low 128 bits and word
    /// `hi` into the high 128 bits.
    #[inline(always)]
    unsafe fn word_pick(lo: usize, hi: usize) -> __m256i {
        let pick = |w: usize| (((2 * w + 1) << 8) | (2 * w)) as i16;
        _mm256_setr_m128i(_mm_set1_epi16(pick(lo)), _mm_set1_epi16(pick(hi)))
    }

    impl K256 for Q4K {
        const BLOCK_BYTES: usize = 144;
        #[inline(always)]
        unsafe fn prepare(p: *const u8) -> ([__m256i; 2], __m256, [__m256; 2]) {
            let dm = _mm_cvtph_ps(_mm_cvtsi32_si128(p.cast::<i32>().read_unaligned()));
            let (sc, mins) = q4k_scales_mins_packed(std::slice::from_raw_parts(p.add(4), 12));
            let sc16 = _mm_cvtepu8_epi16(_mm_cvtsi64_si128(sc as i64));
            let scales = _mm256_broadcastsi128_si256(sc16);
            let neg_dmin =
                _mm256_broadcastss_ps(_mm_sub_ps(_mm_setzero_ps(), _mm_permute_ps::<0x55>(dm)));
            let dup = _mm_setr_epi8(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
            let mins = _mm_shuffle_epi8(_mm_cvtsi64_si128(mins as i64), dup);
            let off0 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(mins));
            let off1 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128::<8>(mins)));
            (
                [scales, scales],
                _mm256_broadcastss_ps(dm),
                [_mm256_mul_ps(off0, neg_dmin), _mm256_mul_ps(off1, neg_dmin)],
            )
        }
        #[inline(always)]
        unsafe fn chunk(p: *const u8, scales: &[__m256i; 2], i: usize) -> (__m256i, __m256i) {
            // Chunk i is sub-block i: the low nibbles of qs[32(i/2)..] for even i, the high
            // nibbles for odd i.
            let raw = _mm256_loadu_si256(p.add(16 + 32 * (i / 2)).cast());
            let raw = if i.is_multiple_of(2) {
                raw
            } else {
                _mm256_srli_epi16::<4>(raw)
            };
            let w = _mm256_and_si256(raw, _mm256_set1_epi8(0x0f));
            (w, _mm256_shuffle_epi8(scales[0], word_pick(i, i)))
        }
    }

    impl K256 for Q6K {
        const BLOCK_BYTES: usize = 210;
        #[inline(always)]
        unsafe fn prepare(p: *const u8) -> ([__m256i; 2], __m256, [__m256; 2]) {
            let d = _mm256_broadcastss_ps(_mm_cvtph_ps(_mm_cvtsi32_si128(
                p.add(208).cast::<u16>().read_unaligned() as i32,
            )));
            let sc8 = _mm_loadu_si128(p.add(192).cast());
            let sc16 = _mm256_cvtepi8_epi16(sc8);
            let scales = [
                _mm256_permute2x128_si256::<0x00>(sc16, sc16),
                _mm256_permute2x128_si256::<0x11>(sc16, sc16),
            ];
            let neg32d = _mm256_mul_ps(d, _mm256_set1_ps(-32.0));
            let off0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(sc8));
            let off1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128::<8>(sc8)));
            (
                scales,
                d,
                [_mm256_mul_ps(off0, neg32d), _mm256_mul_ps(off1, neg32d)],
            )
        }
        #[inline(always)]
        unsafe fn chunk(p: *const u8, scales: &[__m256i; 2], i: usize) -> (__m256i, __m256i) {
            // Chunk i: half h = i / 4, position j = i % 4 within it (see the module comment).
            let (h, j) = (i / 4, i % 4);
            let ql = _mm256_loadu_si256(p.add(64 * h + 32 * (j % 2)).cast());
            let qh = _mm256_loadu_si256(p.add(128 + 32 * h).cast());
            let lo = if j < 2 {
                ql
            } else {
                _mm256_srli_epi16::<4>(ql)
            };
            let hi = match j {
                0 => _mm256_slli_epi16::<4>(qh),
                1 => _mm256_slli_epi16::<2>(qh),
                2 => qh,
                _ => _mm256_srli_epi16::<2>(qh),
            };
            let w = _mm256_or_si256(
                _mm256_and_si256(lo, _mm256_set1_epi8(0x0f)),
                _mm256_and_si256(hi, _mm256_set1_epi8(0x30)),
            );
            // Lanes 0..8 cover sub-block 2i and lanes 8..16 sub-block 2i + 1, both in the
            // 128-bit half of the scales that holds sub-blocks 8(i / 4)..
            let s = &scales[i / 4];
            let w0 = (2 * i) % 8;
            (w, _mm256_shuffle_epi8(*s, word_pick(w0, w0 + 1)))
        }
    }

    #[inline(always)]
    unsafe fn hsum256(v: __m256) -> f32 {
        let x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let x = _mm_add_ps(x, _mm_movehl_ps(x, x));
        let x = _mm_add_ss(x, _mm_movehdup_ps(x));
        _mm_cvtss_f32(x)
    }

    // Index loops: `r` and `c` address several tile arrays and memory offsets at once.
    #[allow(clippy::needless_range_loop)]
    #[inline(always)]
    unsafe fn tile256<F: K256, M: Madd16, const R: usize, const C: usize>(
        a: &KArgs,
        n0: usize,
        c0: usize,
    ) {
        let mut acc = [[_mm256_setzero_ps(); C]; R];
        for b in 0..a.nsb {
            let mut scales = [[_mm256_setzero_si256(); 2]; R];
            let mut d = [_mm256_setzero_ps(); R];
            let mut off = [[_mm256_setzero_ps(); 2]; R];
            let mut p = [std::ptr::null::<u8>(); R];
            for r in 0..R {
                p[r] = a.w.add((n0 + r) * a.row_bytes + b * F::BLOCK_BYTES);
                (scales[r], d[r], off[r]) = F::prepare(p[r]);
            }
            let mut acci = [[_mm256_setzero_si256(); C]; R];
            for i in 0..QK_K / 32 {
                let mut w = [_mm256_setzero_si256(); R];
                let mut sc = [_mm256_setzero_si256(); R];
                for r in 0..R {
                    (w[r], sc[r]) = F::chunk(p[r], &scales[r], i);
                }
                for c in 0..C {
                    let q8 =
                        _mm256_loadu_si256(a.qs.add((c0 + c) * a.k + b * QK_K + 32 * i).cast());
                    for r in 0..R {
                        let prod = _mm256_maddubs_epi16(w[r], q8);
                        acci[r][c] = M::madd(acci[r][c], prod, sc[r]);
                    }
                }
            }
            for c in 0..C {
                let sb = (c0 + c) * a.nsb + b;
                let d8 = _mm256_set1_ps(*a.d.add(sb));
                let s0 = _mm256_loadu_ps(a.s.add(sb * NS));
                let s1 = _mm256_loadu_ps(a.s.add(sb * NS + 8));
                for r in 0..R {
                    let scaled = _mm256_cvtepi32_ps(acci[r][c]);
                    let mut v = _mm256_fmadd_ps(scaled, _mm256_mul_ps(d[r], d8), acc[r][c]);
                    v = _mm256_fmadd_ps(off[r][0], s0, v);
                    acc[r][c] = _mm256_fmadd_ps(off[r][1], s1, v);
                }
            }
        }
        for r in 0..R {
            for c in 0..C {
                *a.out.add((c0 + c) * a.n + n0 + r) = hsum256(acc[r][c]);
            }
        }
    }

    #[inline(always)]
    unsafe fn rows256<F: K256, M: Madd16>(a: &KArgs, n0: usize, n1: usize) {
        if a.m == 1 {
            // One row at a time, as the 512-bit kernels (see there).
            for r in n0..n1 {
                tile256::<F, M, 1, 1>(a, r, 0);
            }
            return;
        }
        // One weight row against 4 activation rows: 4 integer and 4 float accumulators, the
        // weight chunk and its scales fit the 16 registers.
        for r in n0..n1 {
            let mut c = 0;
            while c < a.m {
                let cc = 4.min(a.m - c);
                match cc {
                    4 => tile256::<F, M, 1, 4>(a, r, c),
                    3 => tile256::<F, M, 1, 3>(a, r, c),
                    2 => tile256::<F, M, 1, 2>(a, r, c),
                    _ => tile256::<F, M, 1, 1>(a, r, c),
                }
                c += cc;
            }
        }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn rows_avx2<F: K256>(a: &KArgs, n0: usize, n1: usize) {
        rows256::<F, Avx2Madd>(a, n0, n1)
    }

    #[target_feature(enable = "avx2,fma,f16c,avxvnni")]
    pub(crate) unsafe fn rows_avxvnni<F: K256>(a: &KArgs, n0: usize, n1: usize) {
        rows256::<F, VnniMadd>(a, n0, n1)
    }
}

#[cfg(test)]
mod quantize_tests {
    use super::*;

    /// The pooled quantizer must give the bytes of one thread quantizing block by block, also
    /// when the buffers still hold a larger earlier call's values (reset no longer clears them).
    #[test]
    fn pooled_quantize_equals_serial_blocks_and_overwrites_old_contents() {
        let (m, k) = (40, 2048);
        let x: Vec<f32> = (0..m * k)
            .map(|i| ((i as u32).wrapping_mul(2654435761) % 10007) as f32 / 997.0 - 5.0)
            .collect();
        let mut expect = (
            vec![0i8; m * k],
            vec![0f32; m * k / QK_K],
            vec![0f32; m * k / QS],
        );
        for sb in 0..m * k / QK_K {
            expect.1[sb] = quantize_block_scalar(
                &x[sb * QK_K..][..QK_K],
                &mut expect.0[sb * QK_K..][..QK_K],
                &mut expect.2[sb * NS..][..NS],
            );
        }
        #[cfg(target_arch = "x86_64")]
        let simd = crate::x86::has_avx2();
        #[cfg(not(target_arch = "x86_64"))]
        let simd = false;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        let mut acts = KActs::default();
        let big: Vec<f32> = x.iter().chain(&x).map(|v| v * 3.0).collect();
        pool.install(|| acts.quantize(&big, 2 * m, k, simd));
        assert!(
            2 * m * k / QK_K >= MIN_PARALLEL_BLOCKS,
            "takes the pooled path"
        );
        pool.install(|| acts.quantize(&x, m, k, simd));
        assert_eq!((acts.qs, acts.d, acts.s), expect);
    }
}
