//! Activation quantization to 8-bit blocks (ggml's Q8_1 semantics, our own memory layout).
//!
//! Each block of 32 activations becomes `q = round_ties_even(x * (127 / amax))`, with the scale
//! `d = amax / 127` rounded to f16 (as ggml's Q8_0/Q8_1 blocks store it; kept in f32 so the
//! kernels convert nothing), and `s = d * sum(q)`, the term that lets a weight format with an
//! offset (`value = d*q + m`) fold the offset into one multiply per block. That is ggml's x86
//! rule to the bit (its reciprocal, its rounding, its f16 scale), so every 8-bit activation and
//! scale equals the one llama.cpp computes from the same input. Keeping `d` in full f32 and
//! quantizing by `1 / d` instead moved 8-window perplexity by up to 0.5% against
//! `llama-perplexity`: a few roundings flip and small models amplify them
//! (`results/peer-perplexity-ggml-rounding/`).
//!
//! `s` is kept one of two ways ([`BlockSums`]): exactly, or rounded to f16 as ggml's Q8_1 does
//! for the formats whose offset llama.cpp folds in with it (Q4_1, Q5_1).
//!
//! The scalar and SIMD quantizers produce bit-identical blocks (same reciprocal, same IEEE
//! multiply, same ties-to-even rounding), so the only difference between the SIMD kernels and
//! the scalar reference is the order of the f32 accumulation.

/// Activation rows are grouped by this many in the block-sum array, so a tile kernel loads the
/// sums of up to this many rows with one vector load.
pub(crate) const ROW_GROUP: usize = 4;

/// Elements per quantization block, the same for every format in this crate.
pub(crate) const QK: usize = 32;

/// How a block's `s = d * sum(q)` is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BlockSums {
    /// `d * sum(q)` exactly (an f16 `d` times a sum of at most 12 bits fits f32's mantissa), so
    /// an offset folded in through `s` gives what the integer zero point gives: Q4_0 and Q5_0,
    /// whose `-8d` / `-16d` the tile kernels fold in that way, and our own packed formats.
    Exact,
    /// Rounded to f16 from the unrounded `d`, as ggml's Q8_1 stores it: for Q4_1 and Q5_1,
    /// whose offset llama.cpp folds in with that f16 sum.
    GgmlF16,
}

/// Reusable buffer for the quantized activations of one matmul call.
///
/// Pass the same `Scratch` to successive [`matmul_with`](crate::matmul_with) calls to avoid the
/// allocation; it grows to the largest `(m, k)` seen and never shrinks.
///
/// Blocks per row are padded to an even count (`nbp`) with zero blocks, so the 512-bit kernels
/// can always take blocks two at a time: a padding block has scale 0 and contributes nothing.
#[derive(Debug, Default, Clone)]
pub struct Scratch {
    /// `m` rows of `nbp * 32` quantized values, row-major.
    pub(crate) qs: Vec<i8>,
    /// Block scales `d`, `[row][block]`.
    pub(crate) d: Vec<f32>,
    /// Block sums `s = d * sum(q)`, `[row / ROW_GROUP][block][row % ROW_GROUP]`, so the sums of
    /// the rows of one tile at one block (and the next) are adjacent. Missing rows are zero.
    pub(crate) s: Vec<f32>,
    pub(crate) m: usize,
    pub(crate) k: usize,
    /// Blocks per row, rounded up to even.
    pub(crate) nbp: usize,
    /// The same activations in the 256-element blocks the K-quant kernels take.
    pub(crate) kacts: crate::kquants::KActs,
    /// The same activations in the one-block-per-lane layout of `lanes_avx512.rs`.
    #[cfg(target_arch = "x86_64")]
    pub(crate) lanes: Vec<Line>,
}

/// A 512-bit vector's worth of bytes, aligned so the kernels' loads never split cache lines.
#[cfg(target_arch = "x86_64")]
#[derive(Debug, Clone, Copy)]
#[repr(align(64))]
pub(crate) struct Line(pub(crate) [u8; 64]);

impl Scratch {
    /// An empty scratch buffer; it allocates on first use.
    pub fn new() -> Self {
        Self::default()
    }

    /// Row stride of `qs`.
    pub(crate) fn kp(&self) -> usize {
        self.nbp * QK
    }

    fn reset(&mut self, m: usize, k: usize) {
        let nbp = (k / QK).div_ceil(2) * 2;
        let groups = m.div_ceil(ROW_GROUP);
        self.m = m;
        self.k = k;
        self.nbp = nbp;
        self.qs.clear();
        self.qs.resize(m * nbp * QK, 0);
        self.d.clear();
        self.d.resize(m * nbp, 0.0);
        self.s.clear();
        self.s.resize(groups * nbp * ROW_GROUP, 0.0);
    }

    /// Quantizes `x` (`m` rows of `k`), choosing the fastest quantizer this CPU supports.
    pub(crate) fn quantize(&mut self, x: &[f32], m: usize, k: usize, sums: BlockSums) {
        self.reset(m, k);
        #[cfg(target_arch = "x86_64")]
        if crate::x86::has_avx2() {
            for row in 0..m {
                // SAFETY: AVX2/FMA/F16C were detected at runtime just above.
                unsafe { self.quantize_row_avx2(x, row, sums) };
            }
            return;
        }
        for row in 0..m {
            self.quantize_row_scalar(x, row, sums);
        }
    }

    /// Portable quantizer; also what the reference kernels use.
    pub(crate) fn quantize_scalar(&mut self, x: &[f32], m: usize, k: usize, sums: BlockSums) {
        self.reset(m, k);
        for row in 0..m {
            self.quantize_row_scalar(x, row, sums);
        }
    }

    fn quantize_row_scalar(&mut self, x: &[f32], row: usize, sums: BlockSums) {
        let k = self.k;
        let src = &x[row * k..(row + 1) * k];
        let (kp, nbp) = (self.kp(), self.nbp);
        let dst = &mut self.qs[row * kp..row * kp + k];
        for (b, (xs, qs)) in src
            .chunks_exact(QK)
            .zip(dst.chunks_exact_mut(QK))
            .enumerate()
        {
            let amax = xs.iter().fold(0f32, |a, &v| a.max(v.abs()));
            let (d, id) = scale(amax);
            let mut sum = 0i32;
            for (q, &v) in qs.iter_mut().zip(xs) {
                *q = (v * id).round_ties_even() as i8;
                sum += *q as i32;
            }
            self.d[row * nbp + b] = d;
            self.s[s_index(nbp, row, b)] = block_sum(amax, d, sum, sums);
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn quantize_row_avx2(&mut self, x: &[f32], row: usize, sums: BlockSums) {
        use std::arch::x86_64::*;
        let k = self.k;
        let src = &x[row * k..(row + 1) * k];
        let (kp, nbp) = (self.kp(), self.nbp);
        let dst = &mut self.qs[row * kp..row * kp + k];
        let abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
        // packs_epi32/packs_epi16 interleave 128-bit lanes; this puts the 32-bit groups back
        // in element order.
        let unshuffle = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        for (b, (xs, qs)) in src
            .chunks_exact(QK)
            .zip(dst.chunks_exact_mut(QK))
            .enumerate()
        {
            let p = xs.as_ptr();
            let v0 = _mm256_loadu_ps(p);
            let v1 = _mm256_loadu_ps(p.add(8));
            let v2 = _mm256_loadu_ps(p.add(16));
            let v3 = _mm256_loadu_ps(p.add(24));
            let mx = _mm256_max_ps(
                _mm256_max_ps(_mm256_and_ps(v0, abs_mask), _mm256_and_ps(v1, abs_mask)),
                _mm256_max_ps(_mm256_and_ps(v2, abs_mask), _mm256_and_ps(v3, abs_mask)),
            );
            let m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
            let m2 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
            let m1 = _mm_max_ss(m2, _mm_movehdup_ps(m2));
            let amax = _mm_cvtss_f32(m1);
            let (d, id) = scale(amax);
            let vid = _mm256_set1_ps(id);
            // The default MXCSR rounding is to nearest, ties to even: same as the scalar path.
            let q0 = _mm256_cvtps_epi32(_mm256_mul_ps(v0, vid));
            let q1 = _mm256_cvtps_epi32(_mm256_mul_ps(v1, vid));
            let q2 = _mm256_cvtps_epi32(_mm256_mul_ps(v2, vid));
            let q3 = _mm256_cvtps_epi32(_mm256_mul_ps(v3, vid));
            let sum4 = _mm256_add_epi32(_mm256_add_epi32(q0, q1), _mm256_add_epi32(q2, q3));
            let s4 = _mm_add_epi32(
                _mm256_castsi256_si128(sum4),
                _mm256_extracti128_si256(sum4, 1),
            );
            let s2 = _mm_add_epi32(s4, _mm_unpackhi_epi64(s4, s4));
            let s1 = _mm_add_epi32(s2, _mm_shuffle_epi32(s2, 0b01));
            let sum = _mm_cvtsi128_si32(s1);
            let packed = _mm256_packs_epi16(_mm256_packs_epi32(q0, q1), _mm256_packs_epi32(q2, q3));
            let packed = _mm256_permutevar8x32_epi32(packed, unshuffle);
            _mm256_storeu_si256(qs.as_mut_ptr().cast(), packed);
            self.d[row * nbp + b] = d;
            self.s[s_index(nbp, row, b)] = block_sum(amax, d, sum, sums);
        }
    }
}

/// A block's scale `d` (at f16 precision) and the multiplier that quantizes it, for a block whose
/// largest magnitude is `amax`. ggml multiplies by `127 / amax` rather than `1 / d`; the two differ
/// in the last bit often enough to flip roundings.
fn scale(amax: f32) -> (f32, f32) {
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    (to_f16_precision(amax / 127.0), id)
}

/// A block's `s = d * sum(q)`, from its `amax`, its f16-precision scale `d` and `sum(q)`.
fn block_sum(amax: f32, d: f32, sum: i32, sums: BlockSums) -> f32 {
    match sums {
        BlockSums::Exact => d * sum as f32,
        BlockSums::GgmlF16 => to_f16_precision(amax / 127.0 * sum as f32),
    }
}

/// `v` rounded to the nearest f16, except beyond f16's range (|v| > 65504, activations above
/// about 8.3 million), where ggml's block would hold infinity and NaN the output; there `v` stays
/// as it is.
fn to_f16_precision(v: f32) -> f32 {
    let h = half::f16::from_f32(v);
    if h.is_finite() {
        h.to_f32()
    } else {
        v
    }
}

/// Index of row `c`, block `b` in `Scratch::s` for `nbp` (padded) blocks per row.
pub(crate) fn s_index(nbp: usize, c: usize, b: usize) -> usize {
    ((c / ROW_GROUP) * nbp + b) * ROW_GROUP + c % ROW_GROUP
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ggml's x86 quantizer, written out from its source (`quantize_row_q8_0`/`_q8_1` in
    /// `ggml-cpu/arch/x86/quants.c`): one block's values, `d` and `s` (Q8_1's f16 sum).
    fn ggml_block(xs: &[f32]) -> ([i8; QK], f32, f32) {
        let amax = xs.iter().fold(0f32, |a, &v| a.max(v.abs()));
        let d = amax / 127.0;
        let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        let mut q = [0i8; QK];
        let mut sum = 0i32;
        for (q, &v) in q.iter_mut().zip(xs) {
            *q = (v * id).round_ties_even() as i8;
            sum += i32::from(*q);
        }
        let f16 = |v: f32| half::f16::from_f32(v).to_f32();
        (q, f16(d), f16(d * sum as f32))
    }

    /// A block maximum and a value below it that `x * (127 / amax)` and `x * (1 / (amax / 127))`
    /// round to different integers.
    fn value_that_tells_the_rules_apart() -> (f32, f32) {
        for i in 0..1000 {
            let amax = 1.0 + i as f32 / 997.0;
            let (new_id, old_id) = (127.0 / amax, 1.0 / (amax / 127.0));
            for q in 0..126 {
                let mid = (q as f32 + 0.5) / new_id;
                for j in 0..8u32 {
                    for x in [
                        f32::from_bits(mid.to_bits() + j),
                        f32::from_bits(mid.to_bits() - j),
                    ] {
                        if (x * new_id).round_ties_even() != (x * old_id).round_ties_even() {
                            return (amax, x);
                        }
                    }
                }
            }
        }
        panic!("no value tells the two rules apart");
    }

    #[test]
    fn blocks_are_ggml_blocks_to_the_bit() {
        let (m, k) = (64, 4 * QK);
        let mut state = 0x9e37_79b9_u32;
        let mut x: Vec<f32> = (0..m * k)
            .map(|_| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (state >> 8) as f32 / (1 << 24) as f32 * 6.0 - 3.0
            })
            .collect();
        // The rule is only tested where it matters: the first block gets a value that rounds
        // differently when multiplied by `1 / d`, the rule this quantizer used before.
        let (amax, flip) = value_that_tells_the_rules_apart();
        x[0] = amax;
        x[1] = flip;
        // The rest of the block below 1, so `amax` (at least 1) is its maximum.
        x[2..QK].iter_mut().for_each(|v| *v /= 4.0);
        for sums in [BlockSums::Exact, BlockSums::GgmlF16] {
            let (mut simd, mut scalar) = (Scratch::new(), Scratch::new());
            simd.quantize(&x, m, k, sums);
            scalar.quantize_scalar(&x, m, k, sums);
            for s in [&simd, &scalar] {
                for (i, xs) in x.chunks_exact(QK).enumerate() {
                    let (row, b) = (i / (k / QK), i % (k / QK));
                    let (q, d, s_ggml) = ggml_block(xs);
                    let at = row * s.kp() + b * QK;
                    assert_eq!(&s.qs[at..at + QK], &q[..], "block {i}");
                    assert_eq!(s.d[row * s.nbp + b], d, "block {i}");
                    let sum: i32 = q.iter().map(|&q| i32::from(q)).sum();
                    let want = match sums {
                        BlockSums::Exact => d * sum as f32,
                        BlockSums::GgmlF16 => s_ggml,
                    };
                    assert_eq!(s.s[s_index(s.nbp, row, b)], want, "block {i}");
                }
            }
        }
    }
}
