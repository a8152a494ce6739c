//! The exponentials of attention's softmax, sixteen lanes at a time.
//!
//! A call of libm's `expf` per attention score was a fifth of an f16 prefill of 512 tokens on
//! SmolLM2-135M (perf: `__expf_fma` and the softmax loop around it), and it grows with the
//! context in every decode step. Here `exp` is a polynomial evaluated on whole AVX-512 vectors.
//!
//! A row's result depends only on that row: the same lanes, the same order of the sum, for any
//! call it comes in. So a query scored alone or among a speculative chunk's rows gets the same
//! probabilities bit for bit, as the row-wise attention promises.

/// The largest element (negative infinity for an empty slice). NaNs are skipped, as by
/// `f32::max`.
pub fn max(xs: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if has_avx512f() {
        // SAFETY: the features were detected just above.
        return unsafe { simd::max(xs) };
    }
    xs.iter().copied().fold(f32::NEG_INFINITY, f32::max)
}

/// Replaces every `x` with `exp(x - shift)` and returns the sum of the results. With `shift` the
/// row's maximum, these are the softmax's numerators and its denominator. An `x` of negative
/// infinity (a masked score) gives exactly 0.
pub fn exp_shifted_sum(xs: &mut [f32], shift: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if has_avx512f() {
        // SAFETY: the features were detected just above.
        return unsafe { simd::exp_shifted_sum(xs, shift) };
    }
    let mut sum = 0.0;
    for x in xs.iter_mut() {
        *x = (*x - shift).exp();
        sum += *x;
    }
    sum
}

/// Replaces every `x` with `exp(x - max)`, `max` the largest element, and returns their sum:
/// a softmax's numerators and denominator, as every attention path computes them.
pub fn exp_from_max(xs: &mut [f32]) -> f32 {
    let shift = max(xs);
    exp_shifted_sum(xs, shift)
}

#[cfg(target_arch = "x86_64")]
fn has_avx512f() -> bool {
    is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("fma")
}

#[cfg(target_arch = "x86_64")]
mod simd {
    use std::arch::x86_64::*;

    /// Tail lanes `0..len % 16` of a vector.
    #[inline(always)]
    fn tail_mask(len: usize) -> __mmask16 {
        ((1u32 << (len % 16)) - 1) as __mmask16
    }

    #[target_feature(enable = "avx512f,fma")]
    pub(super) unsafe fn max(xs: &[f32]) -> f32 {
        let (p, len) = (xs.as_ptr(), xs.len());
        let mut acc = _mm512_set1_ps(f32::NEG_INFINITY);
        let mut i = 0;
        while i + 16 <= len {
            // `max_ps(v, acc)` returns `acc` where `v` is NaN, so NaNs are skipped.
            acc = _mm512_max_ps(_mm512_loadu_ps(p.add(i)), acc);
            i += 16;
        }
        if i < len {
            let v = _mm512_mask_loadu_ps(acc, tail_mask(len), p.add(i));
            acc = _mm512_max_ps(v, acc);
        }
        _mm512_reduce_max_ps(acc)
    }

    #[target_feature(enable = "avx512f,fma")]
    pub(super) unsafe fn exp_shifted_sum(xs: &mut [f32], shift: f32) -> f32 {
        let (p, len) = (xs.as_mut_ptr(), xs.len());
        let shift = _mm512_set1_ps(shift);
        let mut sum = _mm512_setzero_ps();
        let mut i = 0;
        while i + 16 <= len {
            let e = exp(_mm512_sub_ps(_mm512_loadu_ps(p.add(i)), shift));
            _mm512_storeu_ps(p.add(i), e);
            sum = _mm512_add_ps(sum, e);
            i += 16;
        }
        if i < len {
            let k = tail_mask(len);
            let e = exp(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, p.add(i)), shift));
            _mm512_mask_storeu_ps(p.add(i), k, e);
            sum = _mm512_mask_add_ps(sum, k, sum, e);
        }
        _mm512_reduce_add_ps(sum)
    }

    /// `e^x` within 2 ulp over f32's range: `x = n ln 2 + r` with `|r| <= ln 2 / 2`, a degree-6
    /// polynomial for `e^r` (Cephes' `expf` coefficients), and `2^n` applied by `scalef`, which
    /// underflows to 0 and overflows to infinity by itself. Inputs are clamped first so that
    /// negative infinity gives 0 rather than `-inf - -inf`; NaN stays NaN.
    #[inline(always)]
    unsafe fn exp(x: __m512) -> __m512 {
        // max/min return their second operand when either is NaN, so a NaN `x` passes through.
        let x = _mm512_max_ps(_mm512_set1_ps(-104.0), x);
        let x = _mm512_min_ps(_mm512_set1_ps(89.0), x);
        let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E)),
        );
        // ln 2 in two parts, the first exact in few bits, so `n * LN2_HI` is exact.
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693_359_4), x);
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.121_944_4e-4), r);
        let mut q = _mm512_set1_ps(1.987_569_1e-4);
        for c in [
            1.398_199_9e-3,
            8.333_452e-3,
            4.166_579_6e-2,
            1.666_666_5e-1,
            0.5,
        ] {
            q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(c));
        }
        let r2 = _mm512_mul_ps(r, r);
        let e_r = _mm512_add_ps(_mm512_fmadd_ps(q, r2, r), _mm512_set1_ps(1.0));
        _mm512_scalef_ps(e_r, n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scores(len: usize, seed: u32) -> Vec<f32> {
        crate::hashed_values(len, seed, -30, 10)
    }

    #[test]
    fn exp_is_within_two_ulp_of_f64_exp_over_the_whole_range() {
        let mut xs: Vec<f32> = (-1040..=890).map(|i| i as f32 / 10.0).collect();
        xs.extend(scores(1000, 7));
        xs.extend([0.0, -0.0, 1e-30, -1e-30, 88.7, -87.3, -103.9]);
        let mut got = xs.clone();
        exp_shifted_sum(&mut got, 0.0);
        for (&x, &e) in xs.iter().zip(&got) {
            let want = (x as f64).exp();
            if want < f32::MIN_POSITIVE as f64 {
                // Below the normal range only the magnitude matters to a softmax.
                assert!(
                    (e as f64 - want).abs() < 2.0 * f32::MIN_POSITIVE as f64,
                    "exp({x})"
                );
                continue;
            }
            let ulp = (want as f32).to_bits().abs_diff(e.to_bits());
            assert!(ulp <= 2, "exp({x}) = {e}, want {want} ({ulp} ulp)");
        }
    }

    #[test]
    fn masked_and_extreme_scores() {
        let mut xs = vec![f32::NEG_INFINITY, -1e9, 0.0, f32::NAN, 1e9];
        exp_shifted_sum(&mut xs, 0.0);
        assert_eq!(
            xs[0].to_bits(),
            0f32.to_bits(),
            "a masked score gives exactly 0"
        );
        assert_eq!(xs[1], 0.0);
        assert_eq!(xs[2], 1.0);
        assert!(xs[3].is_nan(), "NaN stays NaN");
        assert_eq!(xs[4], f32::INFINITY);
        assert_eq!(max(&[]), f32::NEG_INFINITY);
        assert_eq!(max(&[f32::NAN, -3.0, f32::NAN]), -3.0);
        assert_eq!(max(&[f32::NEG_INFINITY; 3]), f32::NEG_INFINITY);
    }

    #[test]
    fn softmax_rows_sum_to_one_and_match_f64() {
        for len in [1, 5, 15, 16, 17, 31, 32, 33, 100, 513] {
            let xs = scores(len, len as u32);
            let m = max(&xs);
            assert_eq!(m, xs.iter().copied().fold(f32::NEG_INFINITY, f32::max));
            let mut e = xs.clone();
            let sum = exp_from_max(&mut e);
            let want: Vec<f64> = xs.iter().map(|&x| (x as f64 - m as f64).exp()).collect();
            let want_sum: f64 = want.iter().sum();
            assert!((sum as f64 / want_sum - 1.0).abs() < 1e-5, "sum, len {len}");
            for (p, w) in e.iter().zip(&want) {
                assert!(
                    (*p as f64 / sum as f64 - w / want_sum).abs() < 1e-6,
                    "len {len}"
                );
            }
        }
    }

    #[test]
    fn an_element_gets_the_same_bits_in_the_body_and_in_the_tail() {
        // The body's full vectors and the masked tail evaluate one polynomial, so a score's
        // probability does not depend on where in its row it falls.
        let long = scores(40, 3);
        for len in 1..=long.len() {
            let mut row = long[..len].to_vec();
            exp_shifted_sum(&mut row, 2.0);
            for (j, &e) in row.iter().enumerate() {
                let mut one = [long[j]];
                exp_shifted_sum(&mut one, 2.0);
                assert_eq!(e.to_bits(), one[0].to_bits(), "len {len}, element {j}");
            }
        }
    }
}
