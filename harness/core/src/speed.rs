//! llama-bench's two speed tests on a loaded model: `pp N` (prefill N tokens in one pass) and
//! `tg N` (decode N tokens one at a time), repeated after a warm-up, tokenization excluded.
//! `effbench bench` prints them and `effbench run` records them per technique, so both quote
//! the same measurement.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::kv::{KvCacheBuilder, KvShape, CONTIGUOUS_F32};
use crate::model::{LogitsFor, Model, SeqChunk};

/// One test's repetitions, in tokens per second.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SpeedSamples {
    /// `pp512`, `tg128`: llama-bench's names.
    pub test: String,
    pub tokens: usize,
    pub samples_tok_per_s: Vec<f64>,
}

impl SpeedSamples {
    pub fn mean(&self) -> f64 {
        mean_sd(&self.samples_tok_per_s).0
    }

    pub fn sd(&self) -> f64 {
        mean_sd(&self.samples_tok_per_s).1
    }

    /// The median resists the one repetition a noisy machine slows down.
    pub fn median(&self) -> f64 {
        let mut xs = self.samples_tok_per_s.clone();
        xs.sort_by(f64::total_cmp);
        effbench_stats::median_sorted(&xs)
    }
}

/// Mean and sample standard deviation (n - 1), as llama-bench reports.
pub fn mean_sd(xs: &[f64]) -> (f64, f64) {
    if xs.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = if xs.len() > 1 {
        xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}

/// Token ids spread over the vocabulary from a fixed seed, as llama-bench uses random tokens:
/// speed must not depend on the text.
pub fn bench_tokens(n: usize, vocab: usize) -> Vec<u32> {
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            // Stay inside the ordinary vocabulary; special tokens sit at its end.
            (state % (vocab as u64 * 9 / 10)) as u32
        })
        .collect()
}

/// Prefill of `n` tokens in one forward pass, `repetitions` times after one warm-up.
pub fn prefill(model: &Model, n: usize, repetitions: usize) -> Result<SpeedSamples> {
    prefill_in(model, n, repetitions, &CONTIGUOUS_F32)
}

/// [`prefill`] into the KV cache `kv` builds.
pub fn prefill_in(
    model: &Model,
    n: usize,
    repetitions: usize,
    kv: &dyn KvCacheBuilder,
) -> Result<SpeedSamples> {
    let tokens = bench_tokens(n, model.config().vocab_size);
    let mut samples = Vec::with_capacity(repetitions);
    for rep in 0..=repetitions {
        let mut cache = kv.build(KvShape::of(model.config()), n.max(1), 1, model.device())?;
        let t = Instant::now();
        model.forward(
            &[SeqChunk::new(0, tokens.clone(), LogitsFor::Last)],
            cache.as_mut(),
        )?;
        // A GPU runs the pass asynchronously: the clock stops when it has finished.
        model.device().synchronize()?;
        if rep > 0 {
            samples.push(n as f64 / t.elapsed().as_secs_f64());
        }
    }
    Ok(SpeedSamples {
        test: format!("pp{n}"),
        tokens: n,
        samples_tok_per_s: samples,
    })
}

/// Decode of `n` tokens one forward pass each from an empty cache, as llama-bench's `tg`.
pub fn decode(model: &Model, n: usize, repetitions: usize) -> Result<SpeedSamples> {
    decode_in(model, n, repetitions, &CONTIGUOUS_F32)
}

/// [`decode`] into the KV cache `kv` builds.
pub fn decode_in(
    model: &Model,
    n: usize,
    repetitions: usize,
    kv: &dyn KvCacheBuilder,
) -> Result<SpeedSamples> {
    let tokens = bench_tokens(n, model.config().vocab_size);
    let mut samples = Vec::with_capacity(repetitions);
    for rep in 0..=repetitions {
        let mut cache = kv.build(KvShape::of(model.config()), n + 1, 1, model.device())?;
        let t = Instant::now();
        for &tok in &tokens {
            model.forward(
                &[SeqChunk::new(0, vec![tok], LogitsFor::Last)],
                cache.as_mut(),
            )?;
        }
        model.device().synchronize()?;
        if rep > 0 {
            samples.push(n as f64 / t.elapsed().as_secs_f64());
        }
    }
    Ok(SpeedSamples {
        test: format!("tg{n}"),
        tokens: n,
        samples_tok_per_s: samples,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_sample_sd() {
        let (m, sd) = mean_sd(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]);
        assert!((m - 5.0).abs() < 1e-12);
        assert!((sd - 2.138089935).abs() < 1e-6);
    }

    #[test]
    fn median_of_even_and_odd_counts() {
        let s = |xs: &[f64]| SpeedSamples {
            test: "t".into(),
            tokens: 1,
            samples_tok_per_s: xs.to_vec(),
        };
        assert_eq!(s(&[3.0, 1.0, 2.0]).median(), 2.0);
        assert_eq!(s(&[4.0, 1.0, 2.0, 3.0]).median(), 2.5);
    }

    #[test]
    fn bench_tokens_are_fixed_and_in_range() {
        let a = bench_tokens(100, 1000);
        assert_eq!(a, bench_tokens(100, 1000));
        assert!(a.iter().all(|&t| t < 900));
    }
}
