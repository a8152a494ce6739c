//! effbench-stats: the statistics that let a quality table tell a real drop from noise.
//!
//! Pure functions on `f64`, no I/O, no global state, identical results on every machine (the
//! bootstrap uses an in-crate [`SplitMix64`], never the OS). Each figure is defined as the tool a
//! user will compare against defines it:
//!
//! - **Accuracy** ([`Accuracy`]): mean, standard error exactly as lm-evaluation-harness's
//!   `mean_stderr` (sample standard deviation / √n, i.e. √(p(1−p)/(n−1))), and two 95% intervals:
//!   the normal one (mean ± 1.96·SE) and the Wilson score interval. **Tables show Wilson**
//!   ([`Accuracy::table_interval`]): it stays inside [0, 1] and keeps its coverage near 0 % and
//!   100 % and on small per-subject counts, where the normal interval collapses to zero width.
//! - **Paired comparison** of two techniques on the same items ([`compare_binary`],
//!   [`compare_scores`]): delta b − a with its paired SE and interval, McNemar's exact test
//!   ([`mcnemar_exact`]), a seeded paired bootstrap ([`paired_bootstrap`]), and a one-line
//!   verdict such as `-0.8 pt (95% CI -2.1..+0.5, McNemar p=0.31, n.s.)`.
//! - **Minimum detectable difference** of a suite at its size ([`paired_mdd`],
//!   [`unpaired_mdd`], [`SuitePower`]), so a table can say that 570 items cannot see a 1-point
//!   drop.
//! - **Distribution comparison** as llama.cpp's `llama-perplexity --kl-divergence` reports it
//!   ([`kl_divergence`], [`log_softmax`], [`TokenDivergence`], [`KlSummary`]), percentiles by
//!   llama.cpp's linear interpolation ([`percentile_sorted`]), and perplexity with its
//!   delta-method error ([`Perplexity`], [`PerplexityComparison`]).
//! - **Special functions** ([`normal_cdf`], [`normal_quantile`], [`ln_gamma`], [`binomial_cdf`]).
//!
//! ```
//! use effbench_stats::{compare_binary, Accuracy, CompareOptions, PowerSpec, SuitePower};
//!
//! // 570 items: both right on 170, only the baseline on 6, only the technique on 2.
//! let mut base = vec![true; 176];
//! base.extend([false; 394]);
//! let mut tech = vec![true; 170];
//! tech.extend([false; 6]);
//! tech.extend([true; 2]);
//! tech.extend([false; 392]);
//!
//! let acc = Accuracy::from_outcomes(&base)?;
//! assert_eq!(acc.summary(), "30.9 ± 1.9 % (95% CI 27.2..34.8, n=570)");
//!
//! let cmp = compare_binary(&base, &tech, &CompareOptions::default())?;
//! assert_eq!(cmp.verdict(), "-0.7 pt (95% CI -1.7..+0.3, McNemar p=0.29, n.s.)");
//!
//! // Could this suite have seen a 1-point drop? Not at this pair's 1.4 % discordance.
//! let power = SuitePower::measured(&base, &tech, PowerSpec::default())?;
//! assert!(!power.can_detect(-0.01));
//! # Ok::<(), effbench_stats::StatsError>(())
//! ```

mod accuracy;
mod descriptive;
mod distribution;
mod paired;
mod power;
mod rng;
mod special;

pub use accuracy::{normal_interval, wilson_interval, Accuracy, Interval};
pub use descriptive::{mean, mean_stderr, median_sorted, percentile_sorted, sample_std_dev};
pub use distribution::{
    kl_divergence, kl_divergence_from_logits, kl_divergence_top_k, log_softmax, KlSummary,
    Perplexity, PerplexityComparison, TokenDivergence, TokenDivergenceReport, TopAgreement,
};
pub use paired::{
    compare_binary, compare_scores, format_p_value, mcnemar_exact, paired_bootstrap,
    BootstrapResult, CompareOptions, Discordant, PairedComparison, PairedTest,
};
pub use power::{
    assumed_discordance, discordance_rate, items_needed_paired, paired_mdd, paired_power,
    unpaired_mdd, DiscordanceSource, PowerSpec, SuitePower,
};
pub use rng::SplitMix64;
pub use special::{
    binomial_cdf, binomial_sf, ln_choose, ln_gamma, normal_cdf, normal_pdf, normal_quantile,
    normal_sf,
};

/// Why a statistic could not be computed from the data given.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StatsError {
    /// Too few observations for the statistic (a standard error needs two).
    #[error("need at least {needed} observations, got {got}")]
    TooFew { needed: usize, got: usize },
    /// Paired data whose two sides have different lengths.
    #[error("paired samples differ in length: {a} vs {b}")]
    LengthMismatch { a: usize, b: usize },
    /// A parameter outside its domain, such as a confidence level of 1.5.
    #[error("{name} must be {expected}, got {value}")]
    InvalidParameter {
        name: &'static str,
        expected: &'static str,
        value: f64,
    },
    /// More successes than trials.
    #[error("{correct} correct out of {n} items")]
    CountsOutOfRange { correct: usize, n: usize },
    /// A NaN or infinite observation, which would silently poison every figure derived from it.
    #[error("non-finite value {value} at index {index}")]
    NonFinite { index: usize, value: f64 },
}

/// Checks a confidence level or power lies strictly between 0 and 1.
fn check_unit_open(name: &'static str, value: f64) -> Result<(), StatsError> {
    if value > 0.0 && value < 1.0 {
        Ok(())
    } else {
        Err(StatsError::InvalidParameter {
            name,
            expected: "strictly between 0 and 1",
            value,
        })
    }
}

/// z such that a two-sided interval at `confidence` is ± z standard errors.
fn two_sided_z(confidence: f64) -> f64 {
    normal_quantile(0.5 + confidence / 2.0)
}
