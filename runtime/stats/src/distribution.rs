//! Comparing next-token distributions (KL divergence, top-1 agreement) and perplexity, defined
//! as llama.cpp's `llama-perplexity` (with `--kl-divergence`) defines them, so effbench's figures
//! can be set beside llama.cpp's for the same model and text.
//!
//! One deliberate difference: llama.cpp stores the baseline's log-probabilities in 16 bits and
//! drops tokens with base log-probability below −16 from the KL sum; here rows are `f64` (or
//! `f32` widened) and every token with non-zero base probability counts. The two agree to about
//! 1e-6 on ordinary rows, and this one is the exact definition.

use serde::{Deserialize, Serialize};

use crate::descriptive::{check_finite, median_sorted, percentile_sorted};
use crate::{mean_stderr, StatsError};

/// Log-softmax of one row of logits, in `f64` whatever the input width:
/// (xᵢ − m) − ln Σⱼ exp(xⱼ − m) with m = maxⱼ xⱼ, so no exp overflows and the largest term is
/// exactly 1. Subtracting m before ln Σ (not m + ln Σ as one number) keeps full precision when
/// logits are large. Entries of −∞ get −∞; a row that is all −∞, or holds NaN or +∞, gives NaN.
pub fn log_softmax<T: Copy + Into<f64>>(logits: &[T]) -> Vec<f64> {
    let row: Vec<f64> = logits.iter().map(|&x| x.into()).collect();
    let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !max.is_finite() || row.iter().any(|x| x.is_nan()) {
        return vec![f64::NAN; row.len()];
    }
    let ln_sum = row.iter().map(|x| (x - max).exp()).sum::<f64>().ln();
    row.into_iter().map(|x| (x - max) - ln_sum).collect()
}

/// KL(P_base ‖ P_other) = Σᵢ p_base,i · (ln p_base,i − ln p_other,i), in nats, from two rows of
/// log-probabilities over the same vocabulary (e.g. from [`log_softmax`]).
///
/// Tokens with p_base = 0 (log-probability −∞) contribute 0; a token the baseline gives mass
/// and the other rules out gives +∞, which is the true divergence. Rounding can leave a
/// near-zero result slightly negative (llama.cpp prints such negative minimum KLDs too); it is
/// not clamped, so means over many tokens stay unbiased.
///
/// # Panics
/// If the rows differ in length: they describe different vocabularies, a caller bug.
pub fn kl_divergence<T: Copy + Into<f64>>(base_logprobs: &[T], other_logprobs: &[T]) -> f64 {
    assert_eq!(
        base_logprobs.len(),
        other_logprobs.len(),
        "kl_divergence: rows differ in vocabulary size"
    );
    let mut sum = 0.0;
    for (&b, &o) in base_logprobs.iter().zip(other_logprobs) {
        let b: f64 = b.into();
        if b == f64::NEG_INFINITY {
            continue;
        }
        let o: f64 = o.into();
        sum += b.exp() * (b - o);
    }
    sum
}

/// [`kl_divergence`] of two rows of raw logits (each log-softmaxed in `f64` first).
///
/// # Panics
/// If the rows differ in length.
pub fn kl_divergence_from_logits<T: Copy + Into<f64>>(
    base_logits: &[T],
    other_logits: &[T],
) -> f64 {
    kl_divergence(&log_softmax(base_logits), &log_softmax(other_logits))
}

/// KL divergence when only the baseline's top-k tokens were stored: the divergence between the
/// two distributions coarsened to k + 1 outcomes (the k stored tokens and "everything else").
///
/// By the log-sum inequality this is a lower bound on the full KL, equal to it when the rest
/// holds one token or none of the base mass; with k = 32–100 it is within a few percent of the
/// full value on ordinary text, at a fraction of the storage.
///
/// `base_indices[j]` is the vocabulary index of the stored `base_logprobs[j]`;
/// `other_logprobs` is the other model's full row of log-probabilities.
///
/// # Panics
/// If `base_indices` and `base_logprobs` differ in length or an index is out of range.
pub fn kl_divergence_top_k<T: Copy + Into<f64>>(
    base_indices: &[u32],
    base_logprobs: &[T],
    other_logprobs: &[T],
) -> f64 {
    assert_eq!(
        base_indices.len(),
        base_logprobs.len(),
        "kl_divergence_top_k: indices and log-probabilities differ in length"
    );
    let mut sum = 0.0;
    let mut mass_base = 0.0;
    let mut mass_other = 0.0;
    for (&i, &b) in base_indices.iter().zip(base_logprobs) {
        let b: f64 = b.into();
        let o: f64 = other_logprobs[i as usize].into();
        mass_other += o.exp();
        if b == f64::NEG_INFINITY {
            continue;
        }
        let p = b.exp();
        mass_base += p;
        sum += p * (b - o);
    }
    let rest_base = 1.0 - mass_base;
    // Below ~1e-12 the "rest" is rounding error in the stored mass, not probability.
    if rest_base > 1e-12 {
        let rest_other = (1.0 - mass_other).max(f64::MIN_POSITIVE);
        sum += rest_base * (rest_base.ln() - rest_other.ln());
    }
    sum
}

/// Index of the largest entry, the first one on ties (as llama.cpp's argmax in its KL pass);
/// NaNs are skipped. `None` for an empty or all-NaN row.
pub(crate) fn argmax<T: Copy + Into<f64>>(row: &[T]) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, &x) in row.iter().enumerate() {
        let x: f64 = x.into();
        if x.is_nan() {
            continue;
        }
        match best {
            Some((_, b)) if x <= b => {}
            _ => best = Some((i, x)),
        }
    }
    best.map(|(i, _)| i)
}

/// Per-token KL divergence as llama.cpp summarises it ("====== KL divergence statistics ======").
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct KlSummary {
    pub n: usize,
    pub mean: f64,
    /// Standard error of the mean: sample sd / √n (llama.cpp's "Mean KLD ± err").
    pub mean_stderr: f64,
    pub median: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub min: f64,
}

impl KlSummary {
    /// From per-token KL values in any order. Needs two or more, all finite.
    /// Percentiles by linear interpolation, as llama.cpp ([`crate::percentile_sorted`]).
    pub fn from_values(values: &[f64]) -> Result<Self, StatsError> {
        let (mean, mean_stderr) = mean_stderr(values)?;
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        Ok(Self {
            n: values.len(),
            mean,
            mean_stderr,
            median: median_sorted(&sorted),
            p90: percentile_sorted(&sorted, 0.90),
            p95: percentile_sorted(&sorted, 0.95),
            p99: percentile_sorted(&sorted, 0.99),
            p999: percentile_sorted(&sorted, 0.999),
            max: sorted[sorted.len() - 1],
            min: sorted[0],
        })
    }
}

/// Share of tokens where both models' most likely next token is the same (llama.cpp's
/// "Same top p").
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct TopAgreement {
    pub n: usize,
    pub same: usize,
    pub rate: f64,
    /// √(rate(1 − rate)/(n − 1)), llama.cpp's "±".
    pub stderr: f64,
}

impl TopAgreement {
    pub fn from_counts(same: usize, n: usize) -> Result<Self, StatsError> {
        if same > n {
            return Err(StatsError::CountsOutOfRange { correct: same, n });
        }
        if n < 2 {
            return Err(StatsError::TooFew { needed: 2, got: n });
        }
        let rate = same as f64 / n as f64;
        Ok(Self {
            n,
            same,
            rate,
            stderr: (rate * (1.0 - rate) / (n - 1) as f64).sqrt(),
        })
    }
}

/// [`KlSummary`] and [`TopAgreement`] over the same tokens.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct TokenDivergenceReport {
    pub kl: KlSummary,
    pub top1: TopAgreement,
}

/// Collects per-token KL and top-1 agreement one position at a time, so a caller never holds
/// more than one pair of vocabulary-sized rows.
#[derive(Clone, Debug, Default)]
pub struct TokenDivergence {
    kl: Vec<f64>,
    same_top: usize,
}

impl TokenDivergence {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one position from two rows of raw logits; returns its KL.
    pub fn push_logits<T: Copy + Into<f64>>(
        &mut self,
        base_logits: &[T],
        other_logits: &[T],
    ) -> f64 {
        // Argmax on the logits, not the log-probabilities: subtracting the log-sum-exp can round
        // two close logits into a tie and move the first-max choice.
        let same = argmax(base_logits) == argmax(other_logits);
        let kl = kl_divergence_from_logits(base_logits, other_logits);
        self.push_value(kl, same);
        kl
    }

    /// Adds one position from two rows of log-probabilities; returns its KL.
    pub fn push_logprobs<T: Copy + Into<f64>>(
        &mut self,
        base_logprobs: &[T],
        other_logprobs: &[T],
    ) -> f64 {
        let same = argmax(base_logprobs) == argmax(other_logprobs);
        let kl = kl_divergence(base_logprobs, other_logprobs);
        self.push_value(kl, same);
        kl
    }

    /// Adds one position computed elsewhere (e.g. with [`kl_divergence_top_k`]).
    pub fn push_value(&mut self, kl: f64, same_top: bool) {
        self.kl.push(kl);
        self.same_top += usize::from(same_top);
    }

    pub fn len(&self) -> usize {
        self.kl.len()
    }

    pub fn is_empty(&self) -> bool {
        self.kl.is_empty()
    }

    /// The per-token KL values in the order pushed.
    pub fn values(&self) -> &[f64] {
        &self.kl
    }

    pub fn report(&self) -> Result<TokenDivergenceReport, StatsError> {
        Ok(TokenDivergenceReport {
            kl: KlSummary::from_values(&self.kl)?,
            top1: TopAgreement::from_counts(self.same_top, self.kl.len())?,
        })
    }
}

/// Perplexity from per-token negative log-likelihoods (nats), with llama.cpp's error.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Perplexity {
    pub n_tokens: usize,
    pub mean_nll: f64,
    /// sd(NLL) / √n.
    pub mean_nll_stderr: f64,
    /// exp(mean NLL).
    pub ppl: f64,
    /// Delta method: d exp(x)/dx = exp(x), so SE(PPL) = PPL · SE(mean NLL) (llama.cpp's
    /// "PPL = … +/- …").
    pub ppl_stderr: f64,
}

impl Perplexity {
    /// Needs two or more finite NLLs.
    pub fn from_nlls(nlls: &[f64]) -> Result<Self, StatsError> {
        let (mean_nll, mean_nll_stderr) = mean_stderr(nlls)?;
        let ppl = mean_nll.exp();
        Ok(Self {
            n_tokens: nlls.len(),
            mean_nll,
            mean_nll_stderr,
            ppl,
            ppl_stderr: ppl * mean_nll_stderr,
        })
    }
}

/// A model's perplexity against a baseline's on the same tokens, with the paired errors that
/// llama.cpp prints as "Mean ln(PPL(Q)/PPL(base))", "Mean PPL(Q)/PPL(base)" and
/// "Mean PPL(Q)-PPL(base)". Pairing by token removes the text's own difficulty from the error,
/// which is why a 1 % perplexity change is resolvable on a few thousand tokens.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PerplexityComparison {
    pub base: Perplexity,
    pub other: Perplexity,
    /// mean(NLL_other) − mean(NLL_base) = ln(PPL_other / PPL_base).
    pub ln_ratio: f64,
    /// sd(NLL_other − NLL_base)/√n; the same as llama.cpp's √(σ_o² + σ_b² − 2·cov).
    pub ln_ratio_stderr: f64,
    pub ratio: f64,
    pub ratio_stderr: f64,
    pub diff: f64,
    pub diff_stderr: f64,
    /// Correlation of the per-token NLLs ("Cor(ln(PPL(Q)), ln(PPL(base)))"); `None` when either
    /// side has no spread.
    pub correlation: Option<f64>,
}

impl PerplexityComparison {
    pub fn from_nlls(base_nlls: &[f64], other_nlls: &[f64]) -> Result<Self, StatsError> {
        if base_nlls.len() != other_nlls.len() {
            return Err(StatsError::LengthMismatch {
                a: base_nlls.len(),
                b: other_nlls.len(),
            });
        }
        check_finite(base_nlls)?;
        check_finite(other_nlls)?;
        let base = Perplexity::from_nlls(base_nlls)?;
        let other = Perplexity::from_nlls(other_nlls)?;
        let n = base_nlls.len() as f64;
        let diffs: Vec<f64> = base_nlls
            .iter()
            .zip(other_nlls)
            .map(|(b, o)| o - b)
            .collect();
        let (ln_ratio, ln_ratio_stderr) = mean_stderr(&diffs)?;
        let sample_cov = base_nlls
            .iter()
            .zip(other_nlls)
            .map(|(b, o)| (b - base.mean_nll) * (o - other.mean_nll))
            .sum::<f64>()
            / (n - 1.0);
        // Covariance of the two *means*, which is what the error of a difference needs.
        let cov_means = sample_cov / n;
        let denom = base.mean_nll_stderr * other.mean_nll_stderr;
        let correlation = (denom > 0.0).then(|| cov_means / denom);
        let ratio = ln_ratio.exp();
        let diff_var = other.ppl_stderr * other.ppl_stderr + base.ppl_stderr * base.ppl_stderr
            - 2.0 * other.ppl * base.ppl * cov_means;
        Ok(Self {
            base,
            other,
            ln_ratio,
            ln_ratio_stderr,
            ratio,
            ratio_stderr: ratio * ln_ratio_stderr,
            diff: other.ppl - base.ppl,
            diff_stderr: diff_var.max(0.0).sqrt(),
            correlation,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SplitMix64;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn log_softmax_values_and_stability() {
        // [1, 2, 3]: xᵢ − ln(e + e² + e³), Python: −2.40760596444438, −1.40760596444438,
        // −0.40760596444438.
        let lp = log_softmax(&[1.0f32, 2.0, 3.0]);
        assert!(close(lp[0], -2.40760596444438, 1e-14));
        assert!(close(lp[1], -1.4076059644443801, 1e-14));
        assert!(close(lp[2], -0.40760596444438013, 1e-14));
        // Huge logits must not overflow: [1000, 1000] → [−ln 2, −ln 2].
        let lp = log_softmax(&[1000.0f64, 1000.0]);
        assert!(close(lp[0], -std::f64::consts::LN_2, 1e-15));
        assert!(close(lp[1], -std::f64::consts::LN_2, 1e-15));
        let lp = log_softmax(&[0.0f64, f64::NEG_INFINITY]);
        assert_eq!(lp, vec![0.0, f64::NEG_INFINITY]);
        assert!(log_softmax(&[f64::NAN, 1.0]).iter().all(|x| x.is_nan()));
        assert!(log_softmax::<f64>(&[]).is_empty());
    }

    #[test]
    fn kl_of_identical_rows_is_zero() {
        let lp = log_softmax(&[0.3f32, -1.2, 2.5, 0.0, 7.0]);
        assert_eq!(kl_divergence(&lp, &lp), 0.0);
        assert_eq!(
            kl_divergence_from_logits(&[1.0f32, 2.0], &[1.0f32, 2.0]),
            0.0
        );
        // Logits shifted by a constant are the same distribution.
        assert!(
            kl_divergence_from_logits(&[1.0f64, 2.0, 3.0], &[11.0f64, 12.0, 13.0]).abs() < 1e-15
        );
    }

    #[test]
    fn kl_two_token_examples_by_hand() {
        // P = (½, ½), Q = (¼, ¾): ½ln(½/¼) + ½ln(½/¾) = ½ln(4/3) = 0.14384103622589042.
        let base = [0.5f64.ln(), 0.5f64.ln()];
        let other = [0.25f64.ln(), 0.75f64.ln()];
        assert!(close(
            kl_divergence(&base, &other),
            0.14384103622589042,
            1e-15
        ));
        // The same from logits: (0, 0) and (0, ln 3).
        assert!(close(
            kl_divergence_from_logits(&[0.0, 0.0], &[0.0, 3f64.ln()]),
            0.14384103622589042,
            1e-15
        ));
        // P = (0.9, 0.1), Q = (0.6, 0.4): 0.9 ln 1.5 + 0.1 ln 0.25 = 0.22628916118535888.
        let base = [0.9f64.ln(), 0.1f64.ln()];
        let other = [0.6f64.ln(), 0.4f64.ln()];
        assert!(close(
            kl_divergence(&base, &other),
            0.22628916118535888,
            1e-15
        ));
        // f32 rows are widened, not computed in f32.
        let b32 = [0.9f32.ln(), 0.1f32.ln()];
        let o32 = [0.6f32.ln(), 0.4f32.ln()];
        assert!(close(kl_divergence(&b32, &o32), 0.22628916118535888, 1e-6));
        // Zero base mass contributes nothing; zero other mass where base has some is infinite.
        assert_eq!(
            kl_divergence(&[0.0, f64::NEG_INFINITY], &[0.0, f64::NEG_INFINITY]),
            0.0
        );
        assert_eq!(
            kl_divergence(&[0.5f64.ln(), 0.5f64.ln()], &[0.0, f64::NEG_INFINITY]),
            f64::INFINITY
        );
    }

    #[test]
    fn top_k_kl_is_a_lower_bound() {
        // P = (0.7, 0.2, 0.1), Q = (0.5, 0.3, 0.2). Full KL 0.0851228259572216; top-1 keeps
        // {0, rest}: 0.7 ln(0.7/0.5) + 0.3 ln(0.3/0.5) = 0.08228287850505178; top-2 leaves a
        // single-token rest, so it equals the full KL (Python).
        let p = [0.7f64.ln(), 0.2f64.ln(), 0.1f64.ln()];
        let q = [0.5f64.ln(), 0.3f64.ln(), 0.2f64.ln()];
        assert!(close(kl_divergence(&p, &q), 0.0851228259572216, 1e-15));
        assert!(close(
            kl_divergence_top_k(&[0], &p[..1], &q),
            0.08228287850505178,
            1e-15
        ));
        assert!(close(
            kl_divergence_top_k(&[0, 1], &p[..2], &q),
            0.0851228259572216,
            1e-15
        ));
        assert!(close(
            kl_divergence_top_k(&[0, 1, 2], &p, &q),
            0.0851228259572216,
            1e-15
        ));
    }

    #[test]
    fn argmax_first_on_ties() {
        assert_eq!(argmax(&[1.0f32, 3.0, 3.0, 2.0]), Some(1));
        assert_eq!(argmax(&[f64::NAN, 1.0]), Some(1));
        assert_eq!(argmax::<f64>(&[]), None);
    }

    #[test]
    fn kl_summary_percentiles() {
        // 0.001, 0.002, …, 0.200. Python: mean 0.1005, SE 0.004092676385936225; linear
        // interpolation p90 0.1801, p95 0.19005, p99 0.19801, p99.9 0.199801.
        let mut v: Vec<f64> = (1..=200).map(|i| f64::from(i) * 0.001).collect();
        v.reverse();
        let s = KlSummary::from_values(&v).unwrap();
        assert_eq!(s.n, 200);
        assert!(close(s.mean, 0.1005, 1e-15));
        assert!(close(s.mean_stderr, 0.004092676385936225, 1e-15));
        assert!(close(s.median, 0.1005, 1e-15));
        assert!(close(s.p90, 0.1801, 1e-15));
        assert!(close(s.p95, 0.19005, 1e-15));
        assert!(close(s.p99, 0.19801, 1e-15));
        assert!(close(s.p999, 0.199801, 1e-15));
        assert_eq!((s.min, s.max), (0.001, 0.2));
        assert!(KlSummary::from_values(&[0.1]).is_err());
        assert!(KlSummary::from_values(&[0.1, f64::INFINITY]).is_err());
    }

    #[test]
    fn token_divergence_accumulates() {
        let mut acc = TokenDivergence::new();
        acc.push_logits(&[0.0f32, 0.0], &[0.0f32, 3f32.ln()]);
        acc.push_logits(&[2.0f32, 0.0], &[2.0f32, 0.0]);
        acc.push_logprobs(&[0.9f64.ln(), 0.1f64.ln()], &[0.6f64.ln(), 0.4f64.ln()]);
        acc.push_value(0.0, false);
        assert_eq!(acc.len(), 4);
        let r = acc.report().unwrap();
        // Top-1: row 1 ties in the base (first max, index 0) but the other picks 1 → differ;
        // rows 2 and 3 agree; row 4 was pushed as differing → 2 of 4.
        assert_eq!(r.top1.same, 2);
        assert!(close(r.top1.rate, 0.5, 0.0));
        // llama.cpp's "Same top p" error √(p(1−p)/(n−1)) = √(0.25/3).
        assert!(close(r.top1.stderr, (0.25f64 / 3.0).sqrt(), 1e-15));
        let mean = (0.14384103622589042 + 0.22628916118535888) / 4.0;
        assert!(close(r.kl.mean, mean, 1e-7));
    }

    #[test]
    fn perplexity_by_hand() {
        // NLLs 1, 2, 3: mean 2, SE 1/√3; PPL e² = 7.38905609893065, ± e²/√3 = 4.266073527774857.
        let p = Perplexity::from_nlls(&[1.0, 2.0, 3.0]).unwrap();
        assert!(close(p.ppl, 2f64.exp(), 1e-15));
        assert!(close(p.ppl_stderr, 4.266073527774857, 1e-14));
        assert!(Perplexity::from_nlls(&[1.0]).is_err());
    }

    #[test]
    fn perplexity_comparison_by_hand() {
        // Other = base + 0.5 on every token: ln ratio 0.5 with zero error, correlation 1,
        // diff e^2.5 − e², diff error (e^2.5 − e²)/√3 = 2.767492639838283 (the variances and
        // covariance combine to a perfect square).
        let c = PerplexityComparison::from_nlls(&[1.0, 2.0, 3.0], &[1.5, 2.5, 3.5]).unwrap();
        assert!(close(c.ln_ratio, 0.5, 1e-15));
        assert!(close(c.ln_ratio_stderr, 0.0, 1e-15));
        assert!(close(c.ratio, 0.5f64.exp(), 1e-15));
        assert!(close(c.correlation.unwrap(), 1.0, 1e-15));
        assert!(close(c.diff, 2.5f64.exp() - 2f64.exp(), 1e-14));
        assert!(close(c.diff_stderr, 2.767492639838283, 1e-7));
    }

    #[test]
    fn matches_llama_cpp_one_pass_formulas() {
        // llama.cpp accumulates Σx, Σx², Σxy and forms f = Σx/n,
        // err = √((Σx²/n − f²)/(n − 1)); cov = (Σxy/n − (Σx/n)(Σy/n))/(n − 1).
        let mut rng = SplitMix64::new(9);
        let mut u = move || (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let base: Vec<f64> = (0..5000).map(|_| 1.0 + 4.0 * u()).collect();
        let other: Vec<f64> = base.iter().map(|b| b + 0.3 * u() - 0.1).collect();
        let n = base.len() as f64;
        let (sx, sx2) = base
            .iter()
            .fold((0.0, 0.0), |(s, s2), x| (s + x, s2 + x * x));
        let (sy, sy2) = other
            .iter()
            .fold((0.0, 0.0), |(s, s2), y| (s + y, s2 + y * y));
        let sxy: f64 = base.iter().zip(&other).map(|(x, y)| x * y).sum();
        let err = |s: f64, s2: f64| ((s2 / n - (s / n).powi(2)) / (n - 1.0)).sqrt();
        let (eb, eo) = (err(sx, sx2), err(sy, sy2));
        let cov = (sxy / n - (sx / n) * (sy / n)) / (n - 1.0);
        let ln_ratio_unc = (eo * eo + eb * eb - 2.0 * cov).sqrt();
        let c = PerplexityComparison::from_nlls(&base, &other).unwrap();
        assert!(close(c.base.mean_nll_stderr, eb, 1e-12));
        assert!(close(c.other.ppl_stderr, (sy / n).exp() * eo, 1e-9));
        assert!(close(c.ln_ratio_stderr, ln_ratio_unc, 1e-9));
        assert!(close(c.correlation.unwrap(), cov / (eb * eo), 1e-9));
    }

    #[test]
    fn serialises() {
        // serde_json's default float parsing may move the last bit, so compare loosely.
        let c = PerplexityComparison::from_nlls(&[1.0, 2.0, 3.0], &[1.5, 2.0, 3.5]).unwrap();
        let back: PerplexityComparison =
            serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back.base.n_tokens, 3);
        assert!(close(back.diff_stderr, c.diff_stderr, 1e-12));
        assert!(close(
            back.correlation.unwrap(),
            c.correlation.unwrap(),
            1e-12
        ));
    }
}
