//! The acceptance rule: which proposed tokens the target keeps, and what it emits instead.

use effbench_core::decode::{Sampler, TemperatureTopP};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A sparse distribution over tokens, as [`TemperatureTopP::distribution`] gives it.
pub type Dist = Vec<(u32, f32)>;

/// One proposed token and the draft distribution it was drawn from. `q: None` is a point mass
/// on `token`: a deterministic proposal (greedy draft, n-gram lookup).
#[derive(Debug, Clone, PartialEq)]
pub struct Proposed {
    pub token: u32,
    pub q: Option<Dist>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    /// The proposal is rejected; the target emits this token in its place.
    Reject(u32),
}

/// The decoding rule shared by draft and target: greedy, or seeded temperature/top-p sampling.
pub struct Picker {
    sampling: Option<TemperatureTopP>,
    rng: StdRng,
}

impl Picker {
    pub fn greedy() -> Self {
        Self {
            sampling: None,
            rng: StdRng::seed_from_u64(0),
        }
    }

    /// Temperature 0 (or below) is greedy.
    pub fn sampling(temperature: f32, top_p: f32, seed: u64) -> Self {
        Self {
            sampling: (temperature > 0.0).then(|| TemperatureTopP::new(temperature, top_p, seed)),
            rng: StdRng::seed_from_u64(seed),
        }
    }

    pub fn is_greedy(&self) -> bool {
        self.sampling.is_none()
    }

    /// The target's distribution for one row of logits (a point mass when greedy).
    pub fn target_distribution(&self, logits: &[f32]) -> Dist {
        match &self.sampling {
            Some(s) => s.distribution(logits),
            None => vec![(argmax(logits), 1.0)],
        }
    }

    /// A draft model's pick: argmax when greedy, else a sample of the same transform of the
    /// draft's logits, with the distribution it came from.
    pub fn draft_pick(&mut self, logits: &[f32]) -> Proposed {
        match &self.sampling {
            None => Proposed {
                token: argmax(logits),
                q: None,
            },
            Some(s) => {
                let q = s.distribution(logits);
                let token = draw(&q, self.rng.random());
                Proposed { token, q: Some(q) }
            }
        }
    }

    /// The target's own token from a row of logits (the first token and the bonus token).
    pub fn target_pick(&mut self, logits: &[f32]) -> u32 {
        match &self.sampling {
            None => argmax(logits),
            Some(_) => {
                let p = self.target_distribution(logits);
                draw(&p, self.rng.random())
            }
        }
    }

    /// Greedy: keep the proposal iff it is the target's argmax. Sampling: keep it with
    /// probability min(1, p(x)/q(x)), else emit a sample of the residual max(0, p - q),
    /// renormalised; then every emitted token is distributed as p (Leviathan et al., Thm 1).
    pub fn verify(&mut self, logits: &[f32], proposed: &Proposed) -> Verdict {
        if self.is_greedy() {
            let best = argmax(logits);
            return if best == proposed.token {
                Verdict::Accept
            } else {
                Verdict::Reject(best)
            };
        }
        let p = self.target_distribution(logits);
        let u: f64 = self.rng.random();
        let residual = rejection_step(&p, proposed, u);
        match residual {
            None => Verdict::Accept,
            Some(r) => Verdict::Reject(draw(&r, self.rng.random())),
        }
    }
}

/// One step of the rejection rule with uniform draw `u`: None to accept, else the (unnormalised)
/// residual distribution to resample from.
pub(crate) fn rejection_step(p: &Dist, proposed: &Proposed, u: f64) -> Option<Dist> {
    let prob = |d: &Dist, t: u32| d.iter().find(|e| e.0 == t).map_or(0.0, |e| e.1 as f64);
    let px = prob(p, proposed.token);
    let qx = proposed.q.as_ref().map_or(1.0, |q| prob(q, proposed.token));
    // Accept with probability min(1, px/qx), written without dividing by a possibly tiny qx.
    if u * qx < px {
        return None;
    }
    let mut residual: Dist = p
        .iter()
        .map(|&(t, pt)| {
            let qt = match &proposed.q {
                Some(q) => prob(q, t),
                None => f64::from(u8::from(t == proposed.token)),
            };
            (t, (pt as f64 - qt).max(0.0) as f32)
        })
        .filter(|e| e.1 > 0.0)
        .collect();
    // p == q up to rounding leaves no residual mass; p itself is then the right law.
    if residual.is_empty() {
        residual = p.clone();
    }
    Some(residual)
}

/// Inverse-CDF draw from an unnormalised sparse distribution.
pub(crate) fn draw(d: &Dist, u: f64) -> u32 {
    let total: f64 = d.iter().map(|e| e.1 as f64).sum();
    let target = u * total;
    let mut acc = 0.0;
    for &(t, w) in d {
        acc += w as f64;
        if target < acc {
            return t;
        }
    }
    d.last().map_or(0, |e| e.0)
}

fn argmax(logits: &[f32]) -> u32 {
    effbench_core::decode::Greedy.sample(logits)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rule's output law, by exhaustive integration over u: P(accept x)·δx + P(reject)·r.
    fn output_law(p: &Dist, q: &Dist, vocab: u32) -> Vec<f64> {
        let mut law = vec![0.0; vocab as usize];
        let prob = |d: &Dist, t: u32| d.iter().find(|e| e.0 == t).map_or(0.0, |e| e.1 as f64);
        for x in 0..vocab {
            let qx = prob(q, x);
            if qx == 0.0 {
                continue;
            }
            let proposed = Proposed {
                token: x,
                q: Some(q.clone()),
            };
            // Acceptance is a threshold in u, so the accepted mass is its position.
            let accept = (prob(p, x) / qx).min(1.0);
            law[x as usize] += qx * accept;
            if accept < 1.0 {
                let r = rejection_step(p, &proposed, 0.999_999).expect("rejected");
                let total: f64 = r.iter().map(|e| e.1 as f64).sum();
                for (t, w) in r {
                    law[t as usize] += qx * (1.0 - accept) * w as f64 / total;
                }
            }
        }
        law
    }

    #[test]
    fn rejection_rule_reproduces_the_target_law_exactly() {
        let p: Dist = vec![(0, 0.5), (1, 0.3), (2, 0.2)];
        let q: Dist = vec![(1, 0.6), (2, 0.1), (3, 0.3)];
        let law = output_law(&p, &q, 4);
        for (t, want) in [(0, 0.5), (1, 0.3), (2, 0.2), (3, 0.0)] {
            assert!(
                (law[t] - want).abs() < 1e-6,
                "token {t}: {} vs {want}",
                law[t]
            );
        }
    }

    #[test]
    fn point_mass_proposal_is_kept_with_probability_p() {
        let p: Dist = vec![(0, 0.7), (1, 0.3)];
        let prop = Proposed { token: 1, q: None };
        assert!(rejection_step(&p, &prop, 0.29).is_none());
        let r = rejection_step(&p, &prop, 0.31).expect("rejected");
        // Rejection resamples p without the proposed token.
        assert_eq!(r, vec![(0, 0.7)]);
    }

    #[test]
    fn sampled_picks_follow_the_target_law() {
        // Many seeded draws of verify() against a disagreeing q: empirical law within 0.02 of p.
        let logits = [0.0f32, 1.0, 2.0, -1.0];
        let mut picker = Picker::sampling(1.0, 1.0, 11);
        let p = picker.target_distribution(&logits);
        let q: Dist = vec![(0, 0.7), (3, 0.3)];
        let n = 20_000;
        let mut counts = [0usize; 4];
        for _ in 0..n {
            let x = draw(&q, picker.rng.random());
            let tok = match picker.verify(
                &logits,
                &Proposed {
                    token: x,
                    q: Some(q.clone()),
                },
            ) {
                Verdict::Accept => x,
                Verdict::Reject(t) => t,
            };
            counts[tok as usize] += 1;
        }
        for &(t, pt) in &p {
            let got = counts[t as usize] as f64 / n as f64;
            assert!((got - pt as f64).abs() < 0.02, "token {t}: {got} vs {pt}");
        }
    }

    #[test]
    fn greedy_verify_keeps_only_the_argmax() {
        let mut picker = Picker::greedy();
        let logits = [0.0f32, 3.0, 1.0];
        let keep = Proposed { token: 1, q: None };
        let wrong = Proposed { token: 2, q: None };
        assert_eq!(picker.verify(&logits, &keep), Verdict::Accept);
        assert_eq!(picker.verify(&logits, &wrong), Verdict::Reject(1));
    }
}
