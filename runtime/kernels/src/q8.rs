//! Activation quantization to 8-bit blocks (ggml's Q8_1 semantics, our own memory layout).
//!
//! Each block of 32 activations becomes `q = round_ties_even(x / d)` with `d = amax / 127`, plus
//! `s = d * sum(q)`, the term that lets a weight format with an offset (`value = d*q + m`) fold
//! the offset into one multiply per block. Unlike ggml we keep `d` and `s` in f32: it costs the
//! kernel no conversion and removes the f16 rounding of the scale from the error budget.
//!
//! The scalar and SIMD quantizers produce bit-identical blocks (same reciprocal, same IEEE
//! multiply, same ties-to-even rounding), so the only difference between the SIMD kernels and
//! the scalar reference is the order of the f32 accumulation.

/// Activation rows are grouped by this many in the block-sum array, so a tile kernel loads the
/// sums of up to this many rows with one vector load.
pub(crate) const ROW_GROUP: usize = 4;

/// Elements per quantization block, the same for every format in this crate.
pub(crate) const QK: usize = 32;

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
    pub(crate) fn quantize(&mut self, x: &[f32], m: usize, k: usize) {
        self.reset(m, k);
        #[cfg(target_arch = "x86_64")]
        if crate::x86::has_avx2() {
            for row in 0..m {
                // SAFETY: AVX2/FMA/F16C were detected at runtime just above.
                unsafe { self.quantize_row_avx2(x, row) };
            }
            return;
        }
        for row in 0..m {
            self.quantize_row_scalar(x, row);
        }
    }

    /// Portable quantizer; also what the reference kernels use.
    pub(crate) fn quantize_scalar(&mut self, x: &[f32], m: usize, k: usize) {
        self.reset(m, k);
        for row in 0..m {
            self.quantize_row_scalar(x, row);
        }
    }

    fn quantize_row_scalar(&mut self, x: &[f32], row: usize) {
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
            let d = amax / 127.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            let mut sum = 0i32;
            for (q, &v) in qs.iter_mut().zip(xs) {
                *q = (v * id).round_ties_even() as i8;
                sum += *q as i32;
            }
            self.d[row * nbp + b] = d;
            self.s[s_index(nbp, row, b)] = d * sum as f32;
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn quantize_row_avx2(&mut self, x: &[f32], row: usize) {
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
            let d = amax / 127.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
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
            self.s[s_index(nbp, row, b)] = d * sum as f32;
        }
    }
}

/// Index of row `c`, block `b` in `Scratch::s` for `nbp` (padded) blocks per row.
pub(crate) fn s_index(nbp: usize, c: usize, b: usize) -> usize {
    ((c / ROW_GROUP) * nbp + b) * ROW_GROUP + c % ROW_GROUP
}
