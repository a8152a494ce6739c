//! Minimum detectable difference (MDD) of a suite at its size.
//!
//! A table that reports "−0.8 pt, n.s." must also say whether the suite could have seen a
//! 0.8-point drop at all. The MDD is the smallest |delta| that a two-sided test at level α
//! detects with probability `power`; a change smaller than the MDD is usually reported "n.s."
//! whether or not it is real.
//!
//! # Paired (same items, McNemar)
//!
//! With discordance rate π (share of items where the two techniques disagree), Connor's (1987,
//! Biometrics 43:207) sample size for McNemar's test is
//!
//! n = (z₁₋α/₂·√π + z₁₋β·√(π − δ²))² / δ²,
//!
//! which [`paired_mdd`] solves for δ. It is slightly smaller than the common shortcut
//! MDD ≈ (z₁₋α/₂ + z₁₋β)·√(π/n), which drops the δ² term. At α = 0.05 and power 0.8,
//! z₁₋α/₂ + z₁₋β = 1.959964 + 0.841621 = 2.801585.
//!
//! **Which π.** The measured discordance of the pair when it has been run
//! ([`discordance_rate`]). Before that, [`assumed_discordance`] = 2p(1−p) at the baseline's
//! accuracy p: the disagreement of two techniques with accuracy p whose errors are independent.
//! A technique's errors are positively correlated with its own baseline's (a quantized model
//! fails mostly where the original fails), and non-negative correlation gives π ≤ 2p(1−p), so
//! the assumption can only overstate the MDD: a suite it calls adequate is adequate.
//!
//! # Unpaired (two independent runs)
//!
//! For two accuracies near p from independent samples of n items each (what an unpaired test,
//! or comparing against a published number, can resolve): MDD = (z₁₋α/₂ + z₁₋β)·√(2p(1−p)/n).
//!
//! Both use the normal approximation; McNemar's exact test is slightly more conservative at very
//! small discordant counts, so read the MDD as a lower bound there.

use serde::{Deserialize, Serialize};

use crate::{check_unit_open, normal_cdf, normal_quantile, StatsError};

/// Test level and target power.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PowerSpec {
    /// Two-sided significance level.
    pub alpha: f64,
    /// Probability of detecting a difference of exactly the MDD.
    pub power: f64,
}

impl Default for PowerSpec {
    /// α = 0.05 two-sided, power 0.8: the conventional design point.
    fn default() -> Self {
        Self {
            alpha: 0.05,
            power: 0.8,
        }
    }
}

impl PowerSpec {
    fn z(&self) -> Result<(f64, f64), StatsError> {
        check_unit_open("alpha", self.alpha)?;
        check_unit_open("power", self.power)?;
        Ok((
            normal_quantile(1.0 - self.alpha / 2.0),
            normal_quantile(self.power),
        ))
    }
}

fn check_discordance(discordance: f64) -> Result<(), StatsError> {
    if (0.0..=1.0).contains(&discordance) {
        Ok(())
    } else {
        Err(StatsError::InvalidParameter {
            name: "discordance",
            expected: "in [0, 1]",
            value: discordance,
        })
    }
}

fn check_n(n: usize) -> Result<(), StatsError> {
    if n == 0 {
        Err(StatsError::TooFew { needed: 1, got: 0 })
    } else {
        Ok(())
    }
}

/// The disagreement of two independent techniques at accuracy `baseline_accuracy` = p:
/// 2p(1−p), an upper bound on the discordance of any pair with non-negatively correlated
/// errors (see the module documentation). 0.42 at p = 0.3, 0.5 at p = 0.5.
pub fn assumed_discordance(baseline_accuracy: f64) -> f64 {
    2.0 * baseline_accuracy * (1.0 - baseline_accuracy)
}

/// Share of items on which `a` and `b` disagree.
pub fn discordance_rate(a: &[bool], b: &[bool]) -> Result<f64, StatsError> {
    if a.len() != b.len() {
        return Err(StatsError::LengthMismatch {
            a: a.len(),
            b: b.len(),
        });
    }
    check_n(a.len())?;
    let differ = a.iter().zip(b).filter(|(x, y)| x != y).count();
    Ok(differ as f64 / a.len() as f64)
}

/// The smallest |delta| a paired (McNemar) comparison on `n` items with discordance rate
/// `discordance` detects at `spec`: Connor's formula solved for δ (module docs).
///
/// `None` when no difference is detectable: |δ| can never exceed π (all disagreements in one
/// direction), so a suite that cannot detect δ = π cannot detect anything — e.g. π = 0.
pub fn paired_mdd(n: usize, discordance: f64, spec: PowerSpec) -> Result<Option<f64>, StatsError> {
    check_n(n)?;
    check_discordance(discordance)?;
    let (za, zb) = spec.z()?;
    let pi = discordance;
    let root_n = (n as f64).sqrt();
    // g is increasing in δ, so its single root on (0, π] can be bracketed and bisected.
    let g = |d: f64| d * root_n - za * pi.sqrt() - zb * (pi - d * d).max(0.0).sqrt();
    if pi == 0.0 || g(pi) < 0.0 {
        return Ok(None);
    }
    let (mut lo, mut hi) = (0.0, pi);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if g(mid) < 0.0 {
            lo = mid;
        } else {
            hi = mid;
        }
        if hi - lo <= 1e-15 * hi {
            break;
        }
    }
    Ok(Some(hi))
}

/// Power of a two-sided paired (McNemar) test at level `alpha` to detect a true difference
/// `delta` on `n` items with discordance `discordance` (Connor 1987):
/// Φ((|δ|√n − z₁₋α/₂√π) / √(π − δ²)). Needs |δ| ≤ π.
pub fn paired_power(n: usize, delta: f64, discordance: f64, alpha: f64) -> Result<f64, StatsError> {
    check_n(n)?;
    check_discordance(discordance)?;
    check_unit_open("alpha", alpha)?;
    let d = delta.abs();
    if d > discordance {
        return Err(StatsError::InvalidParameter {
            name: "|delta|",
            expected: "at most the discordance rate",
            value: d,
        });
    }
    let za = normal_quantile(1.0 - alpha / 2.0);
    let pi = discordance;
    let num = d * (n as f64).sqrt() - za * pi.sqrt();
    let var = pi - d * d;
    if var <= 0.0 {
        // Every disagreement goes one way: the outcome is certain given n.
        return Ok(if num > 0.0 { 1.0 } else { 0.0 });
    }
    Ok(normal_cdf(num / var.sqrt()))
}

/// Items a paired suite needs to detect `delta` at `spec` with discordance `discordance`:
/// Connor's n, rounded up. Needs 0 < |δ| ≤ π.
pub fn items_needed_paired(
    delta: f64,
    discordance: f64,
    spec: PowerSpec,
) -> Result<usize, StatsError> {
    check_discordance(discordance)?;
    let (za, zb) = spec.z()?;
    let d = delta.abs();
    if !(d > 0.0 && d <= discordance) {
        return Err(StatsError::InvalidParameter {
            name: "|delta|",
            expected: "in (0, discordance]",
            value: d,
        });
    }
    let pi = discordance;
    let root = za * pi.sqrt() + zb * (pi - d * d).sqrt();
    Ok((root * root / (d * d)).ceil() as usize)
}

/// Smallest |delta| between two accuracies near `p`, each measured on its own `n_per_side`
/// independent items, detectable at `spec`: (z₁₋α/₂ + z₁₋β)·√(2p(1−p)/n).
pub fn unpaired_mdd(n_per_side: usize, p: f64, spec: PowerSpec) -> Result<f64, StatsError> {
    check_n(n_per_side)?;
    if !(0.0..=1.0).contains(&p) {
        return Err(StatsError::InvalidParameter {
            name: "p",
            expected: "in [0, 1]",
            value: p,
        });
    }
    let (za, zb) = spec.z()?;
    Ok((za + zb) * (2.0 * p * (1.0 - p) / n_per_side as f64).sqrt())
}

/// Where a [`SuitePower`]'s discordance came from.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum DiscordanceSource {
    /// Measured on the pair being compared.
    Measured,
    /// 2p(1−p) at the given baseline accuracy (see [`assumed_discordance`]).
    AssumedIndependent { baseline_accuracy: f64 },
    /// Supplied by the caller (e.g. from an earlier run of a similar technique).
    Given,
}

/// The resolution of a paired suite, ready for a table footnote.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SuitePower {
    pub n: usize,
    pub discordance: f64,
    pub source: DiscordanceSource,
    pub spec: PowerSpec,
    /// `None` when nothing is detectable (see [`paired_mdd`]).
    pub mdd: Option<f64>,
}

impl SuitePower {
    pub fn new(
        n: usize,
        discordance: f64,
        source: DiscordanceSource,
        spec: PowerSpec,
    ) -> Result<Self, StatsError> {
        Ok(Self {
            n,
            discordance,
            source,
            spec,
            mdd: paired_mdd(n, discordance, spec)?,
        })
    }

    /// With the discordance measured between baseline `a` and technique `b`.
    pub fn measured(a: &[bool], b: &[bool], spec: PowerSpec) -> Result<Self, StatsError> {
        let pi = discordance_rate(a, b)?;
        Self::new(a.len(), pi, DiscordanceSource::Measured, spec)
    }

    /// Before any technique has run: discordance 2p(1−p) at the baseline's accuracy.
    pub fn assumed(n: usize, baseline_accuracy: f64, spec: PowerSpec) -> Result<Self, StatsError> {
        if !(0.0..=1.0).contains(&baseline_accuracy) {
            return Err(StatsError::InvalidParameter {
                name: "baseline_accuracy",
                expected: "in [0, 1]",
                value: baseline_accuracy,
            });
        }
        Self::new(
            n,
            assumed_discordance(baseline_accuracy),
            DiscordanceSource::AssumedIndependent { baseline_accuracy },
            spec,
        )
    }

    /// Whether a true change of `delta` (fraction, e.g. −0.01 for −1 point) is at least the MDD.
    pub fn can_detect(&self, delta: f64) -> bool {
        self.mdd.is_some_and(|m| delta.abs() >= m)
    }

    /// e.g. `n=570 detects ≥3.7 pt (80% power, α=0.05, discordance 10.0% measured)`.
    pub fn note(&self) -> String {
        let source = match self.source {
            DiscordanceSource::Measured => "measured".to_string(),
            DiscordanceSource::AssumedIndependent { baseline_accuracy } => {
                format!("assumed 2p(1-p) at p={baseline_accuracy:.3}")
            }
            DiscordanceSource::Given => "given".to_string(),
        };
        let what = match self.mdd {
            Some(m) => format!("detects ≥{:.1} pt", 100.0 * m),
            None => "cannot detect any change".to_string(),
        };
        format!(
            "n={} {} ({:.0}% power, α={}, discordance {:.1}% {})",
            self.n,
            what,
            100.0 * self.spec.power,
            self.spec.alpha,
            100.0 * self.discordance,
            source
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const Z_SUM: f64 = 1.959963984540054 + 0.8416212335729144;

    #[test]
    fn mmlu_lite_cannot_see_one_point() {
        // 570 items at a typical quantization discordance of 10 %: the shortcut gives
        // 2.801585·√(0.1/570) = 0.037108 (by hand); Connor's exact root is a little lower,
        // 0.0370312 (bisection of the same equation in Python with NormalDist quantiles).
        let spec = PowerSpec::default();
        let m = paired_mdd(570, 0.10, spec).unwrap().unwrap();
        let shortcut = Z_SUM * (0.1f64 / 570.0).sqrt();
        assert!((shortcut - 0.037108).abs() < 1e-6);
        assert!(m < shortcut && m > 0.99 * shortcut);
        assert!((m - 0.0370312).abs() < 1e-7, "{m}");
        let suite = SuitePower::new(570, 0.10, DiscordanceSource::Measured, spec).unwrap();
        assert!(!suite.can_detect(-0.01));
        assert!(suite.can_detect(-0.05));
        assert_eq!(
            suite.note(),
            "n=570 detects ≥3.7 pt (80% power, α=0.05, discordance 10.0% measured)"
        );
        // Even at a very low 3 % discordance, 1 point stays out of reach.
        let low = paired_mdd(570, 0.03, spec).unwrap().unwrap();
        assert!(low > 0.01, "{low}");
    }

    #[test]
    fn assumed_discordance_is_conservative() {
        // SmolLM2-135M is near 30 % on MMLU: π = 2·0.3·0.7 = 0.42; shortcut 2.8016·√(0.42/570)
        // = 7.60 pt, Connor's root 7.589 pt (Python).
        let s = SuitePower::assumed(570, 0.3, PowerSpec::default()).unwrap();
        assert!((s.discordance - 0.42).abs() < 1e-15);
        let m = s.mdd.unwrap();
        assert!((m - 0.0758914).abs() < 1e-6, "{m}");
        assert!(s.note().contains("assumed 2p(1-p) at p=0.300"));
    }

    #[test]
    fn items_needed_inverts_mdd() {
        // 1 point at 10 % discordance: Connor n = (1.959964·√0.1 + 0.841621·√(0.1 − 1e-4))²
        // / 1e-4 = 7846.52 → 7847 (evaluated in Python).
        let spec = PowerSpec::default();
        let n = items_needed_paired(-0.01, 0.10, spec).unwrap();
        assert_eq!(n, 7847);
        let m = paired_mdd(n, 0.10, spec).unwrap().unwrap();
        assert!(m <= 0.01 && m > 0.0099, "{m}");
        let m_short = paired_mdd(n - 1, 0.10, spec).unwrap().unwrap();
        assert!(m_short > 0.01);
        // Power at the MDD is the requested power.
        let pw = paired_power(570, 0.0370312, 0.10, 0.05).unwrap();
        assert!((pw - 0.8).abs() < 1e-4, "{pw}");
    }

    #[test]
    fn unpaired_is_wider_than_paired() {
        // 2.801585·√(2·0.3·0.7/570) = 0.07604 (by hand).
        let u = unpaired_mdd(570, 0.3, PowerSpec::default()).unwrap();
        assert!((u - 0.07604).abs() < 1e-5, "{u}");
        let p = paired_mdd(570, 0.10, PowerSpec::default())
            .unwrap()
            .unwrap();
        assert!(u > 2.0 * p);
    }

    #[test]
    fn degenerate_cases() {
        let spec = PowerSpec::default();
        assert_eq!(paired_mdd(570, 0.0, spec).unwrap(), None);
        // 5 items, 20 % discordance: even δ = π is undetectable.
        assert_eq!(paired_mdd(5, 0.2, spec).unwrap(), None);
        let s = SuitePower::new(5, 0.2, DiscordanceSource::Given, spec).unwrap();
        assert!(!s.can_detect(0.2));
        assert!(s.note().contains("cannot detect any change"));
        assert!(paired_mdd(0, 0.1, spec).is_err());
        assert!(paired_mdd(10, 1.5, spec).is_err());
        assert!(items_needed_paired(0.2, 0.1, spec).is_err());
        assert!(paired_power(10, 0.2, 0.1, 0.05).is_err());
        let bad = PowerSpec {
            alpha: 0.05,
            power: 1.0,
        };
        assert!(paired_mdd(570, 0.1, bad).is_err());
    }

    #[test]
    fn measured_discordance() {
        let a = [true, true, false, false, true];
        let b = [true, false, false, true, true];
        assert!((discordance_rate(&a, &b).unwrap() - 0.4).abs() < 1e-15);
        let s = SuitePower::measured(&a, &b, PowerSpec::default()).unwrap();
        assert_eq!(s.source, DiscordanceSource::Measured);
        assert_eq!(s.n, 5);
    }
}
