//! The draft-and-verify loop.

use std::time::Instant;

use effbench_core::decode::{DecodingStrategy, GenerateOutput, GenerateRequest};
use effbench_core::model::logits_rows;
use effbench_core::timing::GenerationTrace;
use effbench_core::{KvCache, LogitsFor, Model, Result, SeqChunk};
use serde::Serialize;

use crate::accept::{Picker, Verdict};
use crate::draft::Draft;

/// How many tokens to draft per target step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KSchedule {
    Fixed(usize),
    /// Re-chosen every step in 0..=max to maximise the expected speedup
    /// (1-α^(k+1)) / ((1-α)(k·c+1)) under the running acceptance rate α (decayed counts) and
    /// the measured cost ratio c of a drafted token to a target step.
    Adaptive {
        max: usize,
    },
}

impl KSchedule {
    pub fn max_k(&self) -> usize {
        match *self {
            Self::Fixed(k) | Self::Adaptive { max: k } => k,
        }
    }
}

/// What one generation did, for the acceptance and cost figures.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SpecStats {
    /// Verification forward passes of the target (one per step; the prefill is not counted).
    pub target_steps: usize,
    pub proposed: usize,
    pub accepted: usize,
    /// Seconds spent drafting, and in the draft's prompt prefill (part of TTFT).
    pub draft_seconds: f64,
    pub draft_prefill_seconds: f64,
    pub draft_forwards: usize,
    /// Seconds in the target's verification passes.
    pub verify_seconds: f64,
    /// Sum of the k asked for at each step (the draft may return fewer).
    pub k_requested: usize,
}

impl SpecStats {
    /// Fraction of proposed tokens the target kept.
    pub fn acceptance_rate(&self) -> Option<f64> {
        (self.proposed > 0).then(|| self.accepted as f64 / self.proposed as f64)
    }

    pub fn accepted_per_step(&self) -> Option<f64> {
        (self.target_steps > 0).then(|| self.accepted as f64 / self.target_steps as f64)
    }

    /// Tokens emitted per target step: accepted proposals plus the target's own token.
    pub fn tokens_per_step(&self) -> Option<f64> {
        (self.target_steps > 0)
            .then(|| (self.accepted + self.target_steps) as f64 / self.target_steps as f64)
    }

    /// Seconds of drafting per proposed token.
    pub fn draft_seconds_per_token(&self) -> Option<f64> {
        (self.proposed > 0).then(|| self.draft_seconds / self.proposed as f64)
    }

    pub fn verify_seconds_per_step(&self) -> Option<f64> {
        (self.target_steps > 0).then(|| self.verify_seconds / self.target_steps as f64)
    }

    pub fn add(&mut self, o: &SpecStats) {
        self.target_steps += o.target_steps;
        self.proposed += o.proposed;
        self.accepted += o.accepted;
        self.draft_seconds += o.draft_seconds;
        self.draft_prefill_seconds += o.draft_prefill_seconds;
        self.draft_forwards += o.draft_forwards;
        self.verify_seconds += o.verify_seconds;
        self.k_requested += o.k_requested;
    }
}

/// Leviathan et al. (2023), eq. 1 and Thm 3.8: expected walltime improvement with acceptance
/// rate `alpha`, `k` drafted tokens per step and cost ratio `c` (draft token / target step).
pub fn speedup_theory(alpha: f64, k: usize, c: f64) -> f64 {
    let a = alpha.clamp(0.0, 0.999_999);
    (1.0 - a.powi(k as i32 + 1)) / ((1.0 - a) * (k as f64 * c + 1.0))
}

/// Draft-and-verify decoding. Size the target's cache for the prompt, the output and k more
/// tokens: verification writes all k proposals before the rejected ones are rolled back.
pub struct SpeculativeDecoding<D: Draft = Box<dyn Draft>> {
    pub draft: D,
    pub picker: Picker,
    pub schedule: KSchedule,
    last_stats: SpecStats,
}

impl<D: Draft> SpeculativeDecoding<D> {
    pub fn new(draft: D, picker: Picker, schedule: KSchedule) -> Self {
        Self {
            draft,
            picker,
            schedule,
            last_stats: SpecStats::default(),
        }
    }

    /// Figures of the most recent `generate` call.
    pub fn stats(&self) -> &SpecStats {
        &self.last_stats
    }
}

struct Adaptive {
    max: usize,
    idle: usize,
    accepted: f64,
    proposed: f64,
}

impl Adaptive {
    const DECAY: f64 = 0.8;
    const PROBE_EVERY: usize = 16;

    fn update(&mut self, accepted: usize, proposed: usize) {
        self.accepted = self.accepted * Self::DECAY + accepted as f64;
        self.proposed = self.proposed * Self::DECAY + proposed as f64;
    }

    fn choose(&mut self, stats: &SpecStats) -> usize {
        // A weak prior (α = 0.5) until a few steps are in.
        let alpha = (self.accepted + 1.0) / (self.proposed + 2.0);
        let c = match (
            stats.draft_seconds_per_token(),
            stats.verify_seconds_per_step(),
        ) {
            (Some(d), Some(v)) if v > 0.0 => d / v,
            _ => 0.1,
        };
        // k = 0 is plain decoding (speedup 1): chosen when drafting cannot pay. The estimate
        // only moves while drafting, so every PROBE_EVERY idle steps one step drafts a token.
        let k = (0..=self.max)
            .max_by(|&a, &b| speedup_theory(alpha, a, c).total_cmp(&speedup_theory(alpha, b, c)))
            .unwrap_or(0);
        if k > 0 {
            self.idle = 0;
            return k;
        }
        self.idle += 1;
        if self.idle >= Self::PROBE_EVERY {
            self.idle = 0;
            return 1;
        }
        0
    }
}

impl<D: Draft> DecodingStrategy for SpeculativeDecoding<D> {
    fn name(&self) -> String {
        let k = match self.schedule {
            KSchedule::Fixed(k) => format!("k={k}"),
            KSchedule::Adaptive { max } => format!("adaptive k<={max}"),
        };
        format!("speculative ({}, {k})", self.draft.name())
    }

    fn generate(
        &mut self,
        model: &Model,
        cache: &mut dyn KvCache,
        request: &GenerateRequest,
        on_token: &mut dyn FnMut(u32),
    ) -> Result<GenerateOutput> {
        let mut stats = SpecStats::default();
        let mut trace = GenerationTrace::start(request.prompt.len());
        let mut tokens = Vec::new();
        if request.max_new_tokens == 0 || request.prompt.is_empty() {
            self.last_stats = stats;
            return Ok(GenerateOutput {
                tokens,
                trace,
                stopped_on_token: false,
            });
        }
        let seq = request.seq;
        let chunk = if request.prefill_chunk == 0 {
            request.prompt.len()
        } else {
            request.prefill_chunk
        };
        let pieces: Vec<&[u32]> = request.prompt.chunks(chunk).collect();
        let mut last_logits = None;
        for (i, piece) in pieces.iter().enumerate() {
            let want = if i + 1 == pieces.len() {
                LogitsFor::Last
            } else {
                LogitsFor::None
            };
            let out = model.forward(&[SeqChunk::new(seq, piece.to_vec(), want)], cache)?;
            last_logits = out.per_chunk.into_iter().next().flatten();
        }
        let t = Instant::now();
        self.draft.begin(seq, &request.prompt)?;
        stats.draft_prefill_seconds = t.elapsed().as_secs_f64();
        let row = match last_logits {
            Some(l) => logits_rows(&l)?.pop().unwrap_or_default(),
            None => {
                return Err(effbench_core::CoreError::Invalid(
                    "prefill gave no logits".into(),
                ))
            }
        };
        let first = self.picker.target_pick(&row);
        trace.record_token();
        tokens.push(first);
        on_token(first);
        let mut context = request.prompt.clone();
        context.push(first);
        let mut stopped = request.stop_tokens.contains(&first);
        let mut adaptive = match self.schedule {
            KSchedule::Adaptive { max } => Some(Adaptive {
                max,
                idle: 0,
                accepted: 0.0,
                proposed: 0.0,
            }),
            KSchedule::Fixed(_) => None,
        };

        'steps: while !stopped && tokens.len() < request.max_new_tokens {
            let remaining = request.max_new_tokens - tokens.len();
            let want_k = match (&mut adaptive, self.schedule) {
                (Some(a), _) => a.choose(&stats),
                (None, s) => s.max_k(),
            };
            // A step emits at most k+1 tokens: never draft past the requested length.
            let k = want_k.min(remaining - 1);
            let t = Instant::now();
            let mut proposal = if k > 0 {
                self.draft.propose(&context, k, &mut self.picker)?
            } else {
                Vec::new()
            };
            proposal.truncate(k);
            stats.draft_seconds += t.elapsed().as_secs_f64();
            stats.k_requested += k;

            // Verify: the last accepted token and every proposal, scored in one pass.
            let base = cache.seq_len(seq);
            let mut chunk = Vec::with_capacity(proposal.len() + 1);
            chunk.push(*context.last().expect("context holds the prompt"));
            chunk.extend(proposal.iter().map(|p| p.token));
            let t = Instant::now();
            let out = model.forward(&[SeqChunk::new(seq, chunk, LogitsFor::All)], cache)?;
            let rows = match out.per_chunk.into_iter().next().flatten() {
                Some(l) => logits_rows(&l)?,
                None => {
                    return Err(effbench_core::CoreError::Invalid(
                        "verification gave no logits".into(),
                    ))
                }
            };
            let mut emitted = Vec::with_capacity(proposal.len() + 1);
            let mut rejected = false;
            for (row, prop) in rows.iter().zip(&proposal) {
                match self.picker.verify(row, prop) {
                    Verdict::Accept => emitted.push(prop.token),
                    Verdict::Reject(t) => {
                        emitted.push(t);
                        rejected = true;
                        break;
                    }
                }
            }
            let accepted = if rejected {
                emitted.len() - 1
            } else {
                emitted.push(self.picker.target_pick(&rows[proposal.len()]));
                proposal.len()
            };
            // The target keeps the fed token and the accepted proposals; the token it emitted
            // itself is fed with the next step.
            cache.truncate(seq, base + 1 + accepted)?;
            stats.verify_seconds += t.elapsed().as_secs_f64();
            stats.target_steps += 1;
            stats.proposed += proposal.len();
            stats.accepted += accepted;
            if let Some(a) = adaptive.as_mut() {
                if !proposal.is_empty() {
                    a.update(accepted, proposal.len());
                }
            }

            for tok in emitted {
                trace.record_token();
                tokens.push(tok);
                on_token(tok);
                context.push(tok);
                if request.stop_tokens.contains(&tok) {
                    stopped = true;
                    break 'steps;
                }
                if tokens.len() >= request.max_new_tokens {
                    break 'steps;
                }
            }
            self.draft.rollback(&context)?;
        }
        // Leave the cache as plain decoding does: the prompt and every output token but the
        // last, even when a stop token ended the generation inside a step's accepted run.
        let keep = request.prompt.len() + tokens.len() - 1;
        if cache.seq_len(seq) > keep {
            cache.truncate(seq, keep)?;
        }
        self.draft.rollback(&context)?;
        stats.draft_forwards = self.draft.forward_passes();
        self.last_stats = stats;
        Ok(GenerateOutput {
            tokens,
            trace,
            stopped_on_token: stopped,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn theory_matches_the_paper_limits() {
        // α = 0: every step yields exactly the target's token, and drafting only costs.
        assert!((speedup_theory(0.0, 4, 0.0) - 1.0).abs() < 1e-12);
        assert!((speedup_theory(0.0, 4, 0.25) - 0.5).abs() < 1e-12);
        // α = 0.8, k = 4, free draft: (1 - 0.8^5) / 0.2 = 3.3616 tokens per step.
        assert!((speedup_theory(0.8, 4, 0.0) - 3.3616).abs() < 1e-9);
    }
}
