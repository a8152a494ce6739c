//! How confident the cheap model is in its own answer, from what effbench already records.
//!
//! Every signal is in [0, 1] so that one threshold grammar serves them all, and each is
//! computed from the scores the task's metric already ranks, so routing needs no extra pass.

use serde::{Deserialize, Serialize};

/// A confidence signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Signal {
    /// p(top choice) − p(runner-up), with p the softmax of the choices' scores.
    Margin,
    /// p(top choice).
    TopProb,
    /// exp(mean token log-probability) of a generated answer.
    MeanLogprob,
}

impl Signal {
    /// The name used in technique names: "margin", "prob", "logprob".
    pub fn name(self) -> &'static str {
        match self {
            Self::Margin => "margin",
            Self::TopProb => "prob",
            Self::MeanLogprob => "logprob",
        }
    }

    /// Parses [`Signal::name`], or the serde name (`top-prob`, `mean-logprob`) as written in
    /// result files.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "margin" => Some(Self::Margin),
            "prob" | "top-prob" => Some(Self::TopProb),
            "logprob" | "mean-logprob" => Some(Self::MeanLogprob),
            _ => None,
        }
    }

    /// The definition in one sentence, for reports.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Margin => {
                "margin is the probability of the cheap model's top-scoring choice minus that of \
                 its runner-up, with probabilities the softmax of the scores the task's metric \
                 ranks the choices by (0 when two choices tie, 1 when one takes all the mass)."
            }
            Self::TopProb => {
                "prob is the probability of the cheap model's top-scoring choice, the softmax of \
                 the scores the task's metric ranks the choices by."
            }
            Self::MeanLogprob => {
                "logprob is the geometric-mean probability of the cheap model's answer tokens, \
                 exp(sum of their log-probabilities / number of tokens)."
            }
        }
    }

    /// Margin for multiple choice, where it separates a clear winner from a near tie better
    /// than the top probability alone; the answer's own probability for generative tasks,
    /// which have no runner-up to compare with.
    pub fn default_for(multiple_choice: bool) -> Self {
        if multiple_choice {
            Self::Margin
        } else {
            Self::MeanLogprob
        }
    }
}

/// Multiple choice: `scores` are what the task's metric takes the argmax of (log-likelihoods,
/// possibly length-normalised). p = softmax(scores). Margin = p(top) − p(second); TopProb =
/// p(top). One choice: Margin 1.0, TopProb 1.0. None for MeanLogprob, for empty scores, or when
/// no score is finite; also None when a score is NaN or +∞, which no softmax can normalise.
/// −∞ scores are allowed (probability 0). Numerically stable (subtract the max).
pub fn choice_confidence(signal: Signal, scores: &[f64]) -> Option<f64> {
    if signal == Signal::MeanLogprob
        || scores.is_empty()
        || scores.iter().any(|s| s.is_nan() || *s == f64::INFINITY)
    {
        return None;
    }
    let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if max == f64::NEG_INFINITY {
        return None;
    }
    // After subtracting the max the top term is exactly 1, so Z >= 1 and nothing overflows.
    let mut z = 0.0;
    let mut top_seen = false;
    let mut second: f64 = 0.0;
    for &s in scores {
        let e = (s - max).exp();
        z += e;
        // The first score equal to the max is the top; a second one is a tie for the top.
        if s == max && !top_seen {
            top_seen = true;
        } else {
            second = second.max(e);
        }
    }
    let p = match signal {
        Signal::Margin => (1.0 - second) / z,
        Signal::TopProb => 1.0 / z,
        Signal::MeanLogprob => unreachable!("returned above"),
    };
    Some(p.clamp(0.0, 1.0))
}

/// A generated (or single-continuation) answer: exp(sum_logprob / tokens), the geometric-mean
/// probability of its tokens, in [0, 1]. None for tokens == 0 or a NaN sum; also None for a
/// sum of +∞, which is no log-probability. A slightly positive sum (rounding) gives 1.
pub fn answer_confidence(sum_logprob: f64, tokens: usize) -> Option<f64> {
    if tokens == 0 || sum_logprob.is_nan() || sum_logprob == f64::INFINITY {
        return None;
    }
    Some((sum_logprob / tokens as f64).exp().min(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12
    }

    #[test]
    fn softmax_by_hand() {
        // p = (0.6, 0.3, 0.1) exactly: margin 0.6 − 0.3, top 0.6. Order does not matter.
        let s = [0.6f64.ln(), 0.3f64.ln(), 0.1f64.ln()];
        let m = choice_confidence(Signal::Margin, &s).unwrap();
        let p = choice_confidence(Signal::TopProb, &s).unwrap();
        assert!(close(m, 0.3), "{m}");
        assert!(close(p, 0.6), "{p}");
        let r = [s[2], s[0], s[1]];
        assert!(close(choice_confidence(Signal::Margin, &r).unwrap(), 0.3));
        // Shifting every score (unnormalised log-likelihoods) changes nothing.
        let shifted: Vec<f64> = s.iter().map(|x| x - 1000.0).collect();
        assert!(close(
            choice_confidence(Signal::Margin, &shifted).unwrap(),
            0.3
        ));
        assert!(close(
            choice_confidence(Signal::TopProb, &shifted).unwrap(),
            0.6
        ));
        // Scores far apart: no overflow, the top takes everything.
        assert_eq!(choice_confidence(Signal::TopProb, &[0.0, -1e6]), Some(1.0));
        assert_eq!(choice_confidence(Signal::Margin, &[1e6, 0.0]), Some(1.0));
    }

    #[test]
    fn ties_have_zero_margin() {
        let s = [-1.0, -1.0, -3.0];
        assert_eq!(choice_confidence(Signal::Margin, &s), Some(0.0));
        let p = choice_confidence(Signal::TopProb, &s).unwrap();
        assert!(close(p, 1.0 / (2.0 + (-2.0f64).exp())));
    }

    #[test]
    fn negative_infinity_is_probability_zero() {
        let s = [
            f64::NEG_INFINITY,
            0.4f64.ln(),
            0.1f64.ln(),
            f64::NEG_INFINITY,
        ];
        assert!(close(choice_confidence(Signal::TopProb, &s).unwrap(), 0.8));
        assert!(close(choice_confidence(Signal::Margin, &s).unwrap(), 0.6));
        // Only one finite choice: it takes all the mass.
        let one = [f64::NEG_INFINITY, -5.0];
        assert_eq!(choice_confidence(Signal::Margin, &one), Some(1.0));
        assert_eq!(choice_confidence(Signal::TopProb, &one), Some(1.0));
        // None finite: no distribution.
        let none = [f64::NEG_INFINITY; 3];
        assert_eq!(choice_confidence(Signal::Margin, &none), None);
    }

    #[test]
    fn one_choice_empty_and_bad_scores() {
        assert_eq!(choice_confidence(Signal::Margin, &[-7.5]), Some(1.0));
        assert_eq!(choice_confidence(Signal::TopProb, &[-7.5]), Some(1.0));
        assert_eq!(choice_confidence(Signal::Margin, &[]), None);
        assert_eq!(choice_confidence(Signal::MeanLogprob, &[-1.0, -2.0]), None);
        assert_eq!(choice_confidence(Signal::TopProb, &[-1.0, f64::NAN]), None);
        assert_eq!(
            choice_confidence(Signal::TopProb, &[-1.0, f64::INFINITY]),
            None
        );
    }

    #[test]
    fn answer_confidence_is_the_geometric_mean() {
        // Four tokens of probability 0.5 each: sum ln = 4 ln 0.5, mean probability 0.5.
        assert!(close(answer_confidence(4.0 * 0.5f64.ln(), 4).unwrap(), 0.5));
        // Tokens 0.9 and 0.1: geometric mean √0.09 = 0.3.
        let sum = 0.9f64.ln() + 0.1f64.ln();
        assert!(close(answer_confidence(sum, 2).unwrap(), 0.3));
        assert_eq!(answer_confidence(0.0, 3), Some(1.0));
        assert_eq!(answer_confidence(1e-12, 3), Some(1.0));
        assert_eq!(answer_confidence(f64::NEG_INFINITY, 3), Some(0.0));
        assert_eq!(answer_confidence(-1.0, 0), None);
        assert_eq!(answer_confidence(f64::NAN, 3), None);
        assert_eq!(answer_confidence(f64::INFINITY, 3), None);
    }

    #[test]
    fn names_round_trip() {
        for s in [Signal::Margin, Signal::TopProb, Signal::MeanLogprob] {
            assert_eq!(Signal::parse(s.name()), Some(s));
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(Signal::parse(json.trim_matches('"')), Some(s));
            assert!(s.describe().starts_with(s.name()), "{}", s.describe());
        }
        assert_eq!(
            serde_json::to_string(&Signal::TopProb).unwrap(),
            "\"top-prob\""
        );
        assert_eq!(Signal::parse("entropy"), None);
    }
}
