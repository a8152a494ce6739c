//! Means, standard errors and percentiles shared by the other modules.

use crate::StatsError;

/// Rejects NaN and ±∞, naming the first offender so a caller can find the bad item.
pub(crate) fn check_finite(values: &[f64]) -> Result<(), StatsError> {
    match values.iter().position(|v| !v.is_finite()) {
        Some(index) => Err(StatsError::NonFinite {
            index,
            value: values[index],
        }),
        None => Ok(()),
    }
}

fn check_len(values: &[f64], needed: usize) -> Result<(), StatsError> {
    if values.len() < needed {
        return Err(StatsError::TooFew {
            needed,
            got: values.len(),
        });
    }
    check_finite(values)
}

/// Arithmetic mean. Errors on an empty slice or a non-finite value.
pub fn mean(values: &[f64]) -> Result<f64, StatsError> {
    check_len(values, 1)?;
    Ok(values.iter().sum::<f64>() / values.len() as f64)
}

/// Sample standard deviation (divisor n − 1), as lm-evaluation-harness's `sample_stddev`.
///
/// Two passes rather than llama.cpp's Σx² − (Σx)²: the one-pass form loses every digit when the
/// spread is small against the mean (per-token NLLs around 3 with a spread of 1e-4, say).
pub fn sample_std_dev(values: &[f64]) -> Result<f64, StatsError> {
    check_len(values, 2)?;
    let m = values.iter().sum::<f64>() / values.len() as f64;
    let ss: f64 = values.iter().map(|v| (v - m) * (v - m)).sum();
    Ok((ss / (values.len() - 1) as f64).sqrt())
}

/// (mean, standard error of the mean), SE = sample standard deviation / √n.
///
/// This is lm-evaluation-harness's `mean_stderr`, and equals llama.cpp's
/// √((⟨x²⟩ − ⟨x⟩²)/(n − 1)) used for "Mean KLD ± err" and "PPL ± err".
pub fn mean_stderr(values: &[f64]) -> Result<(f64, f64), StatsError> {
    let sd = sample_std_dev(values)?;
    let m = values.iter().sum::<f64>() / values.len() as f64;
    Ok((m, sd / (values.len() as f64).sqrt()))
}

/// The `fraction` quantile of ascending `sorted` values by linear interpolation between order
/// statistics: position h = fraction·(n − 1), value v[⌊h⌋] + (h − ⌊h⌋)·(v[⌊h⌋+1] − v[⌊h⌋]).
///
/// This is llama.cpp's `percentile` lambda in `tools/perplexity/perplexity.cpp` (there in `f32`),
/// and also NumPy's default and Hyndman–Fan type 7, so "99.0% KLD" here is the figure llama.cpp
/// prints for the same values. Fractions ≤ 0 give the minimum, ≥ 1 the maximum; an empty slice
/// gives NaN. The slice must already be sorted (see [`median_sorted`]).
pub fn percentile_sorted(sorted: &[f64], fraction: f64) -> f64 {
    let n = sorted.len();
    if n == 0 || fraction.is_nan() {
        return f64::NAN;
    }
    if fraction <= 0.0 {
        return sorted[0];
    }
    if fraction >= 1.0 {
        return sorted[n - 1];
    }
    let h = fraction * (n - 1) as f64;
    let lo = h.floor() as usize;
    let t = h - lo as f64;
    let hi = (lo + 1).min(n - 1);
    (1.0 - t) * sorted[lo] + t * sorted[hi]
}

/// Median of ascending `sorted` values: the middle one, or the mean of the two middle ones
/// (llama.cpp's "Median KLD"; the same as `percentile_sorted(sorted, 0.5)`). NaN when empty.
pub fn median_sorted(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        0.5 * (sorted[n / 2 - 1] + sorted[n / 2])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lm_eval_mean_stderr() {
        // 81 correct of 263: lm-eval's mean_stderr on the 0/1 list, computed with its own Python
        // code (sample_stddev / sqrt(n)) = 0.028521463691154974.
        let mut v = vec![1.0; 81];
        v.extend(std::iter::repeat_n(0.0, 182));
        let (m, se) = mean_stderr(&v).unwrap();
        assert!((m - 81.0 / 263.0).abs() < 1e-15);
        assert!((se - 0.028521463691154974).abs() < 1e-15);
    }

    #[test]
    fn stderr_by_hand() {
        // [1, 2, 3]: mean 2, sample sd 1, SE 1/√3.
        let (m, se) = mean_stderr(&[1.0, 2.0, 3.0]).unwrap();
        assert_eq!(m, 2.0);
        assert!((se - 1.0 / 3f64.sqrt()).abs() < 1e-15);
        assert_eq!(
            mean_stderr(&[1.0]),
            Err(StatsError::TooFew { needed: 2, got: 1 })
        );
        assert!(matches!(
            mean(&[1.0, f64::NAN]),
            Err(StatsError::NonFinite { index: 1, .. })
        ));
    }

    #[test]
    fn percentiles_by_linear_interpolation() {
        // 1..=10: h = f·9. p90 → h = 8.1 → 9 + 0.1 = 9.1; p99 → h = 8.91 → 9.91; p95 → 9.55;
        // p10 → h = 0.9 → 1.9; median 5.5 (NumPy `np.percentile` gives the same, type 7).
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        assert!(close(percentile_sorted(&v, 0.90), 9.1));
        assert!(close(percentile_sorted(&v, 0.95), 9.55));
        assert!(close(percentile_sorted(&v, 0.99), 9.91));
        assert!(close(percentile_sorted(&v, 0.10), 1.9));
        assert!(close(percentile_sorted(&v, 0.5), 5.5));
        assert_eq!(median_sorted(&v), 5.5);
        assert_eq!(percentile_sorted(&v, 0.0), 1.0);
        assert_eq!(percentile_sorted(&v, 1.0), 10.0);
        assert_eq!(percentile_sorted(&[4.0], 0.99), 4.0);
        assert!(percentile_sorted(&[], 0.5).is_nan());
        assert_eq!(median_sorted(&[1.0, 2.0, 7.0]), 2.0);
    }
}
