//! Accuracy of n binary outcomes, with its standard error and confidence intervals.

use serde::{Deserialize, Serialize};

use crate::{check_unit_open, two_sided_z, StatsError};

/// A closed interval [lo, hi].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub lo: f64,
    pub hi: f64,
}

impl Interval {
    pub fn contains(&self, x: f64) -> bool {
        self.lo <= x && x <= self.hi
    }

    pub fn width(&self) -> f64 {
        self.hi - self.lo
    }
}

/// Accuracy over `n` items with `correct` right.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Accuracy {
    pub n: usize,
    pub correct: usize,
    /// correct / n.
    pub mean: f64,
    /// lm-evaluation-harness's `mean_stderr`: √(p(1−p)/(n−1)).
    pub stderr: f64,
    /// Confidence level of both intervals, e.g. 0.95.
    pub confidence: f64,
    /// mean ± z·stderr. Can leave [0, 1] and has zero width at 0 % or 100 %.
    pub normal: Interval,
    /// Wilson score interval; the one tables show.
    pub wilson: Interval,
}

impl Accuracy {
    /// From per-item outcomes, at 95 % confidence.
    pub fn from_outcomes(outcomes: &[bool]) -> Result<Self, StatsError> {
        let correct = outcomes.iter().filter(|&&c| c).count();
        Self::with_confidence(correct, outcomes.len(), 0.95)
    }

    /// From counts, at 95 % confidence.
    pub fn from_counts(correct: usize, n: usize) -> Result<Self, StatsError> {
        Self::with_confidence(correct, n, 0.95)
    }

    /// From counts at any confidence level in (0, 1). Needs n ≥ 2, since the standard error
    /// divides by n − 1 (as lm-evaluation-harness's does).
    pub fn with_confidence(correct: usize, n: usize, confidence: f64) -> Result<Self, StatsError> {
        check_unit_open("confidence", confidence)?;
        if correct > n {
            return Err(StatsError::CountsOutOfRange { correct, n });
        }
        if n < 2 {
            return Err(StatsError::TooFew { needed: 2, got: n });
        }
        let p = correct as f64 / n as f64;
        // Identical to √(Σ(xᵢ − p)²/(n−1)) / √n on the 0/1 list, without building it.
        let stderr = (p * (1.0 - p) / (n - 1) as f64).sqrt();
        Ok(Self {
            n,
            correct,
            mean: p,
            stderr,
            confidence,
            normal: normal_interval(p, stderr, confidence),
            wilson: wilson_interval(correct, n, confidence)?,
        })
    }

    /// The interval a results table shows: Wilson.
    ///
    /// The normal interval has the wrong coverage exactly where effbench looks: a 135M model
    /// near chance on 10-item subjects, or a technique near 0 % or 100 % on a small suite, where
    /// ±1.96·SE can be zero-width or leave [0, 1]. Wilson does not, and matches the normal
    /// interval once n·p and n·(1−p) are large.
    pub fn table_interval(&self) -> Interval {
        self.wilson
    }

    /// e.g. `30.8 ± 2.9 % (95% CI 25.5..36.6, n=263)`, in percentage points with the Wilson
    /// interval.
    pub fn summary(&self) -> String {
        let ci = self.table_interval();
        format!(
            "{:.1} ± {:.1} % ({} CI {:.1}..{:.1}, n={})",
            100.0 * self.mean,
            100.0 * self.stderr,
            confidence_label(self.confidence),
            100.0 * ci.lo,
            100.0 * ci.hi,
            self.n
        )
    }
}

/// "95%" for 0.95, "99.9%" for 0.999.
pub(crate) fn confidence_label(confidence: f64) -> String {
    let pct = 100.0 * confidence;
    if (pct - pct.round()).abs() < 1e-9 {
        format!("{pct:.0}%")
    } else {
        format!("{pct}%")
    }
}

/// mean ± z·stderr with z the two-sided normal quantile for `confidence` (1.959964 at 0.95).
pub fn normal_interval(mean: f64, stderr: f64, confidence: f64) -> Interval {
    let z = two_sided_z(confidence);
    Interval {
        lo: mean - z * stderr,
        hi: mean + z * stderr,
    }
}

/// Wilson score interval for `correct` successes in `n` trials (Wilson 1927):
/// (p̂ + z²/2n ± z·√(p̂(1−p̂)/n + z²/4n²)) / (1 + z²/n). Needs n ≥ 1.
pub fn wilson_interval(correct: usize, n: usize, confidence: f64) -> Result<Interval, StatsError> {
    check_unit_open("confidence", confidence)?;
    if correct > n {
        return Err(StatsError::CountsOutOfRange { correct, n });
    }
    if n == 0 {
        return Err(StatsError::TooFew { needed: 1, got: 0 });
    }
    let z = two_sided_z(confidence);
    let nf = n as f64;
    let p = correct as f64 / nf;
    let z2n = z * z / nf;
    let centre = (p + z2n / 2.0) / (1.0 + z2n);
    let half = z / (1.0 + z2n) * (p * (1.0 - p) / nf + z2n / (4.0 * nf)).sqrt();
    // At 0 or n successes the exact bound is 0 or 1; rounding can put it a hair outside.
    let lo = if correct == 0 { 0.0 } else { centre - half };
    let hi = if correct == n { 1.0 } else { centre + half };
    Ok(Interval {
        lo: lo.max(0.0),
        hi: hi.min(1.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn wilson_81_of_263() {
        // 81/263 is the worked example of Newcombe (1998), Stat. Med. 17:857, whose Wilson
        // interval is 0.2553–0.3662; full digits from the closed form in Python with
        // z = NormalDist().inv_cdf(0.975).
        let a = Accuracy::from_counts(81, 263).unwrap();
        assert!(close(a.mean, 0.30798479087452474, 1e-15));
        assert!(close(a.wilson.lo, 0.2552885198782743, 1e-13));
        assert!(close(a.wilson.hi, 0.3662095769828001, 1e-13));
        assert!(close(a.wilson.lo, 0.2553, 5e-5) && close(a.wilson.hi, 0.3662, 5e-5));
        // lm-eval mean_stderr on the 0/1 list (Python, its own code): 0.028521463691154974.
        assert!(close(a.stderr, 0.028521463691154974, 1e-15));
        assert!(close(a.normal.lo, 0.25208374925349397, 1e-13));
        assert!(close(a.normal.hi, 0.3638858324955555, 1e-13));
        assert_eq!(a.table_interval(), a.wilson);
        assert_eq!(a.summary(), "30.8 ± 2.9 % (95% CI 25.5..36.6, n=263)");
    }

    #[test]
    fn wilson_behaves_at_the_edges() {
        // 0/10: normal interval is [0, 0]; Wilson upper bound is z²/(n + z²) = 0.2775 (by hand,
        // z = 1.959964).
        let a = Accuracy::from_counts(0, 10).unwrap();
        assert_eq!(a.normal, Interval { lo: 0.0, hi: 0.0 });
        assert_eq!(a.wilson.lo, 0.0);
        let z2 = 1.959963984540054f64.powi(2);
        assert!(close(a.wilson.hi, z2 / (10.0 + z2), 1e-14));
        let b = Accuracy::from_counts(10, 10).unwrap();
        assert_eq!(b.wilson.hi, 1.0);
        assert!(close(b.wilson.lo, 10.0 / (10.0 + z2), 1e-14));
        // 1/20: normal interval dips below 0, Wilson does not.
        let c = Accuracy::from_counts(1, 20).unwrap();
        assert!(c.normal.lo < 0.0);
        assert!(c.wilson.lo > 0.0);
    }

    #[test]
    fn outcomes_and_errors() {
        let a = Accuracy::from_outcomes(&[true, false, true, true]).unwrap();
        assert_eq!((a.correct, a.n), (3, 4));
        assert!(close(a.stderr, (0.75f64 * 0.25 / 3.0).sqrt(), 1e-15));
        assert_eq!(
            Accuracy::from_counts(1, 1),
            Err(StatsError::TooFew { needed: 2, got: 1 })
        );
        assert_eq!(
            Accuracy::from_counts(5, 4),
            Err(StatsError::CountsOutOfRange { correct: 5, n: 4 })
        );
        assert!(Accuracy::with_confidence(3, 4, 1.0).is_err());
        // 99 % intervals are wider.
        let w99 = Accuracy::with_confidence(81, 263, 0.99).unwrap();
        let w95 = Accuracy::from_counts(81, 263).unwrap();
        assert!(w99.wilson.width() > w95.wilson.width());
        assert_eq!(confidence_label(0.99), "99%");
        assert_eq!(confidence_label(0.999), "99.9%");
    }
}
