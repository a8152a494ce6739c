//! Decoding strategies: how the next tokens are chosen. Plain autoregressive decoding with a
//! [`Sampler`] lives here; speculative decoding implements the same [`DecodingStrategy`].

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::error::Result;
use crate::kv::{KvCache, SeqId};
use crate::model::{logits_rows, LogitsFor, Model, SeqChunk};
use crate::timing::GenerationTrace;

/// Picks one token from a row of logits.
pub trait Sampler: Send {
    fn sample(&mut self, logits: &[f32]) -> u32;
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Greedy;

impl Sampler for Greedy {
    fn sample(&mut self, logits: &[f32]) -> u32 {
        crate::model::argmax(logits) as u32
    }
}

/// Temperature then nucleus (top-p) sampling, seeded so a run can be repeated exactly.
#[derive(Debug, Clone)]
pub struct TemperatureTopP {
    pub temperature: f32,
    pub top_p: f32,
    rng: StdRng,
}

impl TemperatureTopP {
    pub fn new(temperature: f32, top_p: f32, seed: u64) -> Self {
        Self {
            temperature,
            top_p: top_p.clamp(f32::MIN_POSITIVE, 1.0),
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// The distribution sampling draws from, as (token, probability), most likely first.
    pub fn distribution(&self, logits: &[f32]) -> Vec<(u32, f32)> {
        let t = self.temperature.max(1e-6);
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut probs: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .map(|(i, &l)| (i as u32, ((l - max) / t).exp()))
            .collect();
        probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let total: f32 = probs.iter().map(|p| p.1).sum();
        let mut kept = 0.0;
        let mut cut = probs.len();
        for (i, p) in probs.iter().enumerate() {
            kept += p.1 / total;
            if kept >= self.top_p {
                cut = i + 1;
                break;
            }
        }
        probs.truncate(cut);
        let kept_total: f32 = probs.iter().map(|p| p.1).sum();
        for p in &mut probs {
            p.1 /= kept_total;
        }
        probs
    }
}

impl Sampler for TemperatureTopP {
    fn sample(&mut self, logits: &[f32]) -> u32 {
        if self.temperature <= 0.0 {
            return Greedy.sample(logits);
        }
        let dist = self.distribution(logits);
        let r: f32 = self.rng.random();
        let mut acc = 0.0;
        for &(tok, p) in &dist {
            acc += p;
            if r < acc {
                return tok;
            }
        }
        dist.last().map_or(0, |d| d.0)
    }
}

/// What a generation asks for.
#[derive(Debug, Clone)]
pub struct GenerateRequest {
    pub seq: SeqId,
    pub prompt: Vec<u32>,
    pub max_new_tokens: usize,
    /// Generation stops after emitting any of these (end-of-generation tokens).
    pub stop_tokens: Vec<u32>,
    /// Prompt tokens per forward pass during prefill; 0 means all at once.
    pub prefill_chunk: usize,
}

#[derive(Debug, Clone)]
pub struct GenerateOutput {
    pub tokens: Vec<u32>,
    pub trace: GenerationTrace,
    pub stopped_on_token: bool,
}

/// A way to turn a prompt into new tokens with a model and a cache.
pub trait DecodingStrategy {
    fn name(&self) -> String;
    /// `on_token` sees each token as soon as it is chosen, for streaming.
    fn generate(
        &mut self,
        model: &Model,
        cache: &mut dyn KvCache,
        request: &GenerateRequest,
        on_token: &mut dyn FnMut(u32),
    ) -> Result<GenerateOutput>;
}

/// One token per forward pass, chosen by a sampler.
pub struct PlainDecoding<S: Sampler> {
    pub sampler: S,
}

impl<S: Sampler> PlainDecoding<S> {
    pub fn new(sampler: S) -> Self {
        Self { sampler }
    }
}

impl<S: Sampler> DecodingStrategy for PlainDecoding<S> {
    fn name(&self) -> String {
        "plain".into()
    }

    fn generate(
        &mut self,
        model: &Model,
        cache: &mut dyn KvCache,
        request: &GenerateRequest,
        on_token: &mut dyn FnMut(u32),
    ) -> Result<GenerateOutput> {
        let mut trace = GenerationTrace::start(request.prompt.len());
        let mut tokens = Vec::new();
        if request.max_new_tokens == 0 {
            return Ok(GenerateOutput {
                tokens,
                trace,
                stopped_on_token: false,
            });
        }
        let chunk = if request.prefill_chunk == 0 {
            request.prompt.len().max(1)
        } else {
            request.prefill_chunk
        };
        let mut last_logits = None;
        let pieces: Vec<&[u32]> = request.prompt.chunks(chunk).collect();
        for (i, piece) in pieces.iter().enumerate() {
            let want = if i + 1 == pieces.len() {
                LogitsFor::Last
            } else {
                LogitsFor::None
            };
            let out = model.forward(&[SeqChunk::new(request.seq, piece.to_vec(), want)], cache)?;
            last_logits = out.per_chunk.into_iter().next().flatten();
        }
        let mut stopped = false;
        loop {
            let logits = match last_logits.take() {
                Some(l) => l,
                None => break,
            };
            let row = logits_rows(&logits)?.pop().unwrap_or_default();
            let token = self.sampler.sample(&row);
            trace.record_token();
            tokens.push(token);
            on_token(token);
            if request.stop_tokens.contains(&token) {
                stopped = true;
                break;
            }
            if tokens.len() >= request.max_new_tokens {
                break;
            }
            let out = model.forward(
                &[SeqChunk::new(request.seq, vec![token], LogitsFor::Last)],
                cache,
            )?;
            last_logits = out.per_chunk.into_iter().next().flatten();
        }
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
    fn top_p_keeps_the_smallest_nucleus() {
        let s = TemperatureTopP::new(1.0, 0.5, 0);
        let logits = [2.0f32.ln(), 1.0f32.ln(), 1.0f32.ln()];
        // Probabilities 0.5, 0.25, 0.25: the top token alone reaches p=0.5.
        let d = s.distribution(&logits);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].0, 0);
    }

    #[test]
    fn seeded_sampling_repeats_and_follows_the_distribution() {
        let logits = [0.0f32, 1.0, 2.0];
        let mut a = TemperatureTopP::new(1.0, 1.0, 7);
        let mut b = TemperatureTopP::new(1.0, 1.0, 7);
        let xs: Vec<u32> = (0..2000).map(|_| a.sample(&logits)).collect();
        let ys: Vec<u32> = (0..2000).map(|_| b.sample(&logits)).collect();
        assert_eq!(xs, ys);
        let top = xs.iter().filter(|&&t| t == 2).count() as f64 / 2000.0;
        // softmax([0,1,2])[2] = 0.665
        assert!((top - 0.665).abs() < 0.04, "{top}");
        assert_eq!(Greedy.sample(&logits), 2);
    }
}
