//! Paired comparison of two techniques scored on the same items.
//!
//! Pairing is what makes a small quality drop measurable: two quantizations of one model get
//! most items right or wrong together, so the noise in their *difference* is far smaller than the
//! noise in either accuracy. lm-evaluation-harness compares models with an unpaired test only.

use serde::{Deserialize, Serialize};

use crate::accuracy::confidence_label;
use crate::descriptive::{check_finite, percentile_sorted};
use crate::{
    binomial_cdf, check_unit_open, normal_interval, normal_sf, Interval, SplitMix64, StatsError,
};

/// The two kinds of disagreement between a baseline `a` and a technique `b` on binary outcomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Discordant {
    /// Items the baseline got right and the technique got wrong (b10 in McNemar's notation).
    pub a_right_b_wrong: usize,
    /// Items the baseline got wrong and the technique got right (b01).
    pub a_wrong_b_right: usize,
}

impl Discordant {
    pub fn total(&self) -> usize {
        self.a_right_b_wrong + self.a_wrong_b_right
    }
}

/// McNemar's exact test: the two-sided exact binomial p-value on the discordant pairs,
/// p = min(1, 2·P\[X ≤ min(b01, b10)\]) with X ~ Bin(b01 + b10, ½); 1 when there are none.
///
/// Exact rather than the χ² form because the discordant counts of a compression technique
/// against its own baseline are often a few dozen, where the χ² approximation is poor.
pub fn mcnemar_exact(b01: u64, b10: u64) -> f64 {
    let n = b01 + b10;
    let k = b01.min(b10);
    // P[X ≤ k] ≥ ½ exactly when 2k + 1 ≥ n, so the doubled tail is capped at 1; deciding that
    // from the counts keeps a balanced split at exactly 1 rather than 1 − 1e-15.
    if 2 * k + 1 >= n {
        return 1.0;
    }
    (2.0 * binomial_cdf(k, n, 0.5)).min(1.0)
}

/// A percentile bootstrap of the mean paired difference.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct BootstrapResult {
    pub resamples: usize,
    pub seed: u64,
    pub confidence: f64,
    /// The (α/2, 1 − α/2) percentiles of the resampled deltas, by [`crate::percentile_sorted`].
    pub ci: Interval,
    /// Two-sided p-value of "no difference", see [`paired_bootstrap`].
    pub p_value: f64,
    /// Standard deviation of the resampled deltas.
    pub stderr: f64,
}

/// Paired bootstrap of mean(b) − mean(a): resample item indices with replacement `resamples`
/// times with a [`SplitMix64`] seeded by `seed`, so the result is identical everywhere.
///
/// The p-value is the shifted-bootstrap test (Efron & Tibshirani 1993, §16.4): the resampled
/// deltas minus the observed delta stand in for the null distribution, and
/// p = (1 + #{|δ* − δ̂| ≥ |δ̂|}) / (resamples + 1). The +1s keep p above zero, as a finite
/// number of resamples cannot show a probability smaller than about 1/resamples.
pub fn paired_bootstrap(
    a: &[f64],
    b: &[f64],
    resamples: usize,
    confidence: f64,
    seed: u64,
) -> Result<BootstrapResult, StatsError> {
    check_unit_open("confidence", confidence)?;
    if resamples == 0 {
        return Err(StatsError::InvalidParameter {
            name: "resamples",
            expected: "at least 1",
            value: 0.0,
        });
    }
    let d = differences(a, b)?;
    Ok(bootstrap_differences(&d, resamples, confidence, seed))
}

fn bootstrap_differences(
    d: &[f64],
    resamples: usize,
    confidence: f64,
    seed: u64,
) -> BootstrapResult {
    let n = d.len();
    let nf = n as f64;
    // Compare sums, not means: on 0/±1 data the sums are exact integers, so ties at the
    // boundary |S* − S| = |S| are counted exactly rather than by rounding luck.
    let observed: f64 = d.iter().sum();
    let mut rng = SplitMix64::new(seed);
    let mut deltas = Vec::with_capacity(resamples);
    let mut extreme = 0usize;
    for _ in 0..resamples {
        let mut s = 0.0;
        for _ in 0..n {
            s += d[rng.below(n as u64) as usize];
        }
        if (s - observed).abs() >= observed.abs() {
            extreme += 1;
        }
        deltas.push(s / nf);
    }
    deltas.sort_by(f64::total_cmp);
    let alpha = 1.0 - confidence;
    let m = deltas.iter().sum::<f64>() / resamples as f64;
    let var = if resamples > 1 {
        deltas.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (resamples - 1) as f64
    } else {
        0.0
    };
    BootstrapResult {
        resamples,
        seed,
        confidence,
        ci: Interval {
            lo: percentile_sorted(&deltas, alpha / 2.0),
            hi: percentile_sorted(&deltas, 1.0 - alpha / 2.0),
        },
        p_value: (extreme + 1) as f64 / (resamples + 1) as f64,
        stderr: var.sqrt(),
    }
}

/// bᵢ − aᵢ, after checking the pairing and the values.
fn differences(a: &[f64], b: &[f64]) -> Result<Vec<f64>, StatsError> {
    if a.len() != b.len() {
        return Err(StatsError::LengthMismatch {
            a: a.len(),
            b: b.len(),
        });
    }
    if a.len() < 2 {
        return Err(StatsError::TooFew {
            needed: 2,
            got: a.len(),
        });
    }
    check_finite(a)?;
    check_finite(b)?;
    Ok(a.iter().zip(b).map(|(x, y)| y - x).collect())
}

/// Which test's p-value decides significance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PairedTest {
    /// [`mcnemar_exact`]; used for binary outcomes.
    McNemarExact,
    /// [`paired_bootstrap`]; used for per-item scores when resampling is enabled.
    PairedBootstrap,
    /// Normal approximation δ̂/SE; used for per-item scores with resampling disabled.
    PairedZ,
}

impl PairedTest {
    fn label(self) -> &'static str {
        match self {
            PairedTest::McNemarExact => "McNemar",
            PairedTest::PairedBootstrap => "bootstrap",
            PairedTest::PairedZ => "paired z",
        }
    }
}

/// Settings for [`compare_binary`] and [`compare_scores`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct CompareOptions {
    /// Confidence level of the intervals; the verdict calls p < 1 − confidence significant.
    pub confidence: f64,
    /// Bootstrap resamples; 0 skips the bootstrap.
    pub bootstrap_resamples: usize,
    pub seed: u64,
}

impl Default for CompareOptions {
    /// 95 %, 10,000 resamples (percentile endpoints then move by well under 0.1 point between
    /// seeds on suites of a few hundred items), seed 0.
    fn default() -> Self {
        Self {
            confidence: 0.95,
            bootstrap_resamples: 10_000,
            seed: 0,
        }
    }
}

/// Technique `b` against baseline `a` on the same `n` items.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PairedComparison {
    pub n: usize,
    pub mean_a: f64,
    pub mean_b: f64,
    /// mean_b − mean_a; negative is a drop.
    pub delta: f64,
    /// Paired standard error: sample sd of (bᵢ − aᵢ) / √n, the lm-eval `mean_stderr` of the
    /// differences.
    pub stderr: f64,
    pub confidence: f64,
    /// delta ± z·stderr.
    pub ci: Interval,
    /// Binary outcomes only.
    pub discordant: Option<Discordant>,
    /// Binary outcomes only.
    pub mcnemar_p: Option<f64>,
    /// Present when `bootstrap_resamples` > 0.
    pub bootstrap: Option<BootstrapResult>,
    /// The test whose p-value is in `p_value`.
    pub test: PairedTest,
    pub p_value: f64,
}

impl PairedComparison {
    /// Whether the difference is significant at level `alpha` (p < alpha) by `test`.
    pub fn significant(&self, alpha: f64) -> bool {
        self.p_value < alpha
    }

    /// The interval printed next to the test: the bootstrap percentile interval when the
    /// bootstrap is the test, so the two cannot disagree; otherwise delta ± z·stderr.
    pub fn reported_ci(&self) -> Interval {
        match (self.test, &self.bootstrap) {
            (PairedTest::PairedBootstrap, Some(bs)) => bs.ci,
            _ => self.ci,
        }
    }

    /// One line for a table, in points (× 100), e.g.
    /// `-0.8 pt (95% CI -2.1..+0.5, McNemar p=0.31, n.s.)`; "significant" when
    /// p < 1 − confidence.
    pub fn verdict(&self) -> String {
        let ci = self.reported_ci();
        let alpha = 1.0 - self.confidence;
        format!(
            "{:+.1} pt ({} CI {:+.1}..{:+.1}, {} {}, {})",
            100.0 * self.delta,
            confidence_label(self.confidence),
            100.0 * ci.lo,
            100.0 * ci.hi,
            self.test.label(),
            format_p_value(self.p_value),
            if self.significant(alpha) {
                "significant"
            } else {
                "n.s."
            }
        )
    }
}

/// `p=0.31` (two decimals from 0.1), `p=0.035` (two significant figures below 0.1), `p<0.001`.
pub fn format_p_value(p: f64) -> String {
    if p.is_nan() {
        "p=NaN".to_string()
    } else if p < 0.001 {
        "p<0.001".to_string()
    } else if p < 0.1 {
        let decimals = (1 - p.log10().floor() as i32).max(0) as usize;
        format!("p={p:.decimals$}")
    } else {
        format!("p={p:.2}")
    }
}

/// Compares binary outcomes (correct / wrong per item) of baseline `a` and technique `b`.
/// Significance is McNemar's exact test; the bootstrap, if enabled, is reported alongside.
pub fn compare_binary(
    a: &[bool],
    b: &[bool],
    options: &CompareOptions,
) -> Result<PairedComparison, StatsError> {
    let discordant = Discordant {
        a_right_b_wrong: a.iter().zip(b).filter(|(&x, &y)| x && !y).count(),
        a_wrong_b_right: a.iter().zip(b).filter(|(&x, &y)| !x && y).count(),
    };
    let to_f64 = |v: &[bool]| {
        v.iter()
            .map(|&c| f64::from(u8::from(c)))
            .collect::<Vec<_>>()
    };
    let mut cmp = compare(&to_f64(a), &to_f64(b), options)?;
    let p = mcnemar_exact(
        discordant.a_wrong_b_right as u64,
        discordant.a_right_b_wrong as u64,
    );
    cmp.discordant = Some(discordant);
    cmp.mcnemar_p = Some(p);
    cmp.test = PairedTest::McNemarExact;
    cmp.p_value = p;
    Ok(cmp)
}

/// Compares per-item scores (e.g. a probability of the right answer, or 0/1 as `f64`).
/// Significance is the paired bootstrap, or the paired z approximation when
/// `bootstrap_resamples` is 0.
pub fn compare_scores(
    a: &[f64],
    b: &[f64],
    options: &CompareOptions,
) -> Result<PairedComparison, StatsError> {
    compare(a, b, options)
}

fn compare(a: &[f64], b: &[f64], options: &CompareOptions) -> Result<PairedComparison, StatsError> {
    check_unit_open("confidence", options.confidence)?;
    let d = differences(a, b)?;
    let n = d.len();
    let nf = n as f64;
    let delta = d.iter().sum::<f64>() / nf;
    let ss: f64 = d.iter().map(|x| (x - delta) * (x - delta)).sum();
    let stderr = (ss / (nf - 1.0)).sqrt() / nf.sqrt();
    let bootstrap = (options.bootstrap_resamples > 0).then(|| {
        bootstrap_differences(
            &d,
            options.bootstrap_resamples,
            options.confidence,
            options.seed,
        )
    });
    let (test, p_value) = match &bootstrap {
        Some(bs) => (PairedTest::PairedBootstrap, bs.p_value),
        None => (PairedTest::PairedZ, paired_z_p(delta, stderr)),
    };
    Ok(PairedComparison {
        n,
        mean_a: a.iter().sum::<f64>() / nf,
        mean_b: b.iter().sum::<f64>() / nf,
        delta,
        stderr,
        confidence: options.confidence,
        ci: normal_interval(delta, stderr, options.confidence),
        discordant: None,
        mcnemar_p: None,
        bootstrap,
        test,
        p_value,
    })
}

/// Two-sided normal p-value of δ̂/SE. A zero SE means every item moved by exactly δ̂: no noise,
/// so any nonzero shift is certain and a zero one is no evidence at all.
fn paired_z_p(delta: f64, stderr: f64) -> f64 {
    if stderr == 0.0 {
        return if delta == 0.0 { 1.0 } else { 0.0 };
    }
    (2.0 * normal_sf((delta / stderr).abs())).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds paired outcomes with the given cell counts (both right, a only, b only, neither).
    fn pairs(both: usize, a_only: usize, b_only: usize, neither: usize) -> (Vec<bool>, Vec<bool>) {
        let mut a = Vec::new();
        let mut b = Vec::new();
        for (count, x, y) in [
            (both, true, true),
            (a_only, true, false),
            (b_only, false, true),
            (neither, false, false),
        ] {
            a.extend(std::iter::repeat_n(x, count));
            b.extend(std::iter::repeat_n(y, count));
        }
        (a, b)
    }

    #[test]
    fn mcnemar_exact_by_hand() {
        // b01 = 3, b10 = 12: 2·P[X ≤ 3], X ~ Bin(15, ½) = 2·576/32768 = 0.03515625 (by hand).
        assert!((mcnemar_exact(3, 12) - 0.03515625).abs() < 1e-14);
        assert_eq!(mcnemar_exact(12, 3), mcnemar_exact(3, 12));
        assert_eq!(mcnemar_exact(0, 0), 1.0);
        // Balanced or one-apart splits: 2·P[X ≤ k] ≥ 1, capped exactly.
        assert_eq!(mcnemar_exact(2, 1), 1.0);
        assert_eq!(mcnemar_exact(0, 1), 1.0);
        // 2·P[X ≤ 1 | Bin(4, ½)] = 2·5/16 = 0.625 (by hand).
        assert!((mcnemar_exact(1, 3) - 0.625).abs() < 1e-15);
        assert_eq!(mcnemar_exact(5, 5), 1.0);
        // 0 vs 6: 2/64 = 0.03125 (by hand).
        assert!((mcnemar_exact(0, 6) - 0.03125).abs() < 1e-15);
    }

    #[test]
    fn compare_binary_counts_and_delta() {
        // 100 items: 50 both right, 12 only a, 3 only b, 35 neither.
        // acc a = 62 %, acc b = 53 %, delta −9 pt.
        let (a, b) = pairs(50, 12, 3, 35);
        let opts = CompareOptions {
            bootstrap_resamples: 2000,
            ..CompareOptions::default()
        };
        let c = compare_binary(&a, &b, &opts).unwrap();
        assert_eq!(
            c.discordant,
            Some(Discordant {
                a_right_b_wrong: 12,
                a_wrong_b_right: 3
            })
        );
        assert!((c.mean_a - 0.62).abs() < 1e-15 && (c.mean_b - 0.53).abs() < 1e-15);
        assert!((c.delta + 0.09).abs() < 1e-15);
        // d has 3 × (+1), 12 × (−1), 85 × 0; Σ(d − δ)² = Σd² − nδ² = 15 − 100·0.0081 = 14.19;
        // SE = √(14.19/99)/10 (by hand).
        assert!((c.stderr - (14.19f64 / 99.0).sqrt() / 10.0).abs() < 1e-15);
        assert_eq!(c.test, PairedTest::McNemarExact);
        assert!((c.p_value - 0.03515625).abs() < 1e-14);
        assert!(c.significant(0.05));
        assert!(!c.significant(0.01));
        assert_eq!(
            c.verdict(),
            "-9.0 pt (95% CI -16.4..-1.6, McNemar p=0.035, significant)"
        );
    }

    #[test]
    fn verdict_not_significant() {
        // 570 items (mmlu-lite): 6 lost, 2 gained → −0.7 pt, McNemar 2·P[X ≤ 2 | Bin(8,½)]
        // = 2·37/256 = 0.2890625 (by hand).
        let (a, b) = pairs(170, 6, 2, 392);
        let c = compare_binary(&a, &b, &CompareOptions::default()).unwrap();
        assert!((c.p_value - 0.2890625).abs() < 1e-14);
        assert!(!c.significant(0.05));
        assert_eq!(
            c.verdict(),
            "-0.7 pt (95% CI -1.7..+0.3, McNemar p=0.29, n.s.)"
        );
    }

    #[test]
    fn identical_outcomes() {
        let (a, b) = pairs(30, 0, 0, 20);
        let c = compare_binary(&a, &b, &CompareOptions::default()).unwrap();
        assert_eq!(c.delta, 0.0);
        assert_eq!(c.stderr, 0.0);
        assert_eq!(c.p_value, 1.0);
        assert_eq!(c.bootstrap.unwrap().p_value, 1.0);
        assert_eq!(
            c.verdict(),
            "+0.0 pt (95% CI +0.0..+0.0, McNemar p=1.00, n.s.)"
        );
    }

    #[test]
    fn bootstrap_is_reproducible() {
        let (a, b) = pairs(300, 20, 9, 241);
        let fa: Vec<f64> = a.iter().map(|&x| f64::from(u8::from(x))).collect();
        let fb: Vec<f64> = b.iter().map(|&x| f64::from(u8::from(x))).collect();
        let r1 = paired_bootstrap(&fa, &fb, 3000, 0.95, 7).unwrap();
        let r2 = paired_bootstrap(&fa, &fb, 3000, 0.95, 7).unwrap();
        assert_eq!(r1, r2);
        // Another seed draws other resamples (the interval's ends sit on the k/570 grid, so
        // they may coincide; the p-value and spread do not).
        let r3 = paired_bootstrap(&fa, &fb, 3000, 0.95, 8).unwrap();
        assert_ne!(r1, r3);
        // Observed delta −11/570 lies inside; bootstrap SE close to the analytic paired SE
        // √((29/570 − (11/570)²)·570/569 / 570) ≈ 0.00935.
        let delta = -11.0 / 570.0;
        assert!(r1.ci.contains(delta));
        let analytic = ((29.0 / 570.0 - delta * delta) * 570.0 / 569.0 / 570.0f64).sqrt();
        assert!((r1.stderr / analytic - 1.0).abs() < 0.08, "{}", r1.stderr);
        // 20 vs 9 discordant: McNemar 2·P[X ≤ 9 | Bin(29, ½)] ≈ 0.061; the bootstrap agrees
        // roughly.
        assert!(r1.p_value > 0.02 && r1.p_value < 0.12, "{}", r1.p_value);
    }

    #[test]
    fn bootstrap_ci_covers_true_delta() {
        // Synthetic population: baseline right with prob 0.6; the technique flips a right
        // answer to wrong with prob 0.10 and a wrong one to right with prob 0.05, so the true
        // delta is −0.6·0.10 + 0.4·0.05 = −0.04. Over 200 simulated 400-item suites a 95 %
        // interval should cover −0.04 about 190 times (binomial sd ≈ 3).
        let truth = -0.04;
        let mut gen = SplitMix64::new(2024);
        let mut unif = move || (gen.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let mut covered_bs = 0;
        let mut covered_normal = 0;
        for trial in 0..200 {
            let mut a = Vec::new();
            let mut b = Vec::new();
            for _ in 0..400 {
                let x = unif() < 0.6;
                let flip = if x { unif() < 0.10 } else { unif() < 0.05 };
                a.push(x);
                b.push(x != flip);
            }
            let opts = CompareOptions {
                bootstrap_resamples: 1000,
                seed: trial,
                ..CompareOptions::default()
            };
            let c = compare_binary(&a, &b, &opts).unwrap();
            covered_bs += usize::from(c.bootstrap.unwrap().ci.contains(truth));
            covered_normal += usize::from(c.ci.contains(truth));
        }
        assert!(
            (178..=199).contains(&covered_bs),
            "bootstrap {covered_bs}/200"
        );
        assert!(
            (178..=199).contains(&covered_normal),
            "normal {covered_normal}/200"
        );
    }

    #[test]
    fn scores_use_bootstrap_or_z() {
        let a = [0.2, 0.4, 0.6, 0.8, 0.5, 0.3];
        let b = [0.3, 0.5, 0.7, 0.9, 0.6, 0.4];
        // Every item +0.1: SE 0 (up to rounding), so the z test is certain.
        let z = compare_scores(
            &a,
            &b,
            &CompareOptions {
                bootstrap_resamples: 0,
                ..CompareOptions::default()
            },
        )
        .unwrap();
        assert_eq!(z.test, PairedTest::PairedZ);
        assert!((z.delta - 0.1).abs() < 1e-12);
        assert!(z.p_value < 1e-6);
        let bs = compare_scores(&a, &b, &CompareOptions::default()).unwrap();
        assert_eq!(bs.test, PairedTest::PairedBootstrap);
        // No resample can move the mean difference towards zero, so only the +1 remains.
        assert!((bs.p_value - 1.0 / 10_001.0).abs() < 1e-15);
        assert_eq!(bs.reported_ci(), bs.bootstrap.unwrap().ci);
    }

    #[test]
    fn errors() {
        let opts = CompareOptions::default();
        assert_eq!(
            compare_binary(&[true, false], &[true], &opts),
            Err(StatsError::LengthMismatch { a: 2, b: 1 })
        );
        assert_eq!(
            compare_binary(&[true], &[true], &opts),
            Err(StatsError::TooFew { needed: 2, got: 1 })
        );
        assert!(matches!(
            compare_scores(&[0.0, f64::NAN], &[0.0, 1.0], &opts),
            Err(StatsError::NonFinite { index: 1, .. })
        ));
        assert!(paired_bootstrap(&[0.0, 1.0], &[1.0, 1.0], 0, 0.95, 0).is_err());
    }

    #[test]
    fn p_value_formatting() {
        assert_eq!(format_p_value(0.31), "p=0.31");
        assert_eq!(format_p_value(0.03515625), "p=0.035");
        assert_eq!(format_p_value(0.0012), "p=0.0012");
        assert_eq!(format_p_value(0.0004), "p<0.001");
        assert_eq!(format_p_value(1.0), "p=1.00");
    }

    #[test]
    fn serialises() {
        let (a, b) = pairs(5, 1, 2, 3);
        let c = compare_binary(&a, &b, &CompareOptions::default()).unwrap();
        let json = serde_json::to_string(&c).unwrap();
        // serde_json's default float parsing may move the last bit, so compare loosely.
        let back: PairedComparison = serde_json::from_str(&json).unwrap();
        assert_eq!(back.discordant, c.discordant);
        assert_eq!(back.test, PairedTest::McNemarExact);
        assert!((back.delta - c.delta).abs() < 1e-15);
        assert!(json.contains("\"mcnemar_p\""));
    }
}
