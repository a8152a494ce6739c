//! llama-bench's two speed tests on a loaded model: `pp N` (prefill N tokens in one pass) and
//! `tg N` (decode N tokens one at a time), repeated after a warm-up, tokenization excluded.
//! `effbench bench` prints them and `effbench run` records them per technique, so both quote
//! the same measurement.
//!
//! Like llama-bench's `-d D`, a test can start at a depth: the KV cache already holds `D`
//! tokens, prefilled before the clock starts, and the test's tokens come after them
//! (`pp512 @ d512`, `tg128 @ d512`). That measures attention over a longer context.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use effbench_core::error::{CoreError, Result};
use effbench_core::kv::{KvCache, KvCacheBuilder, KvShape, CONTIGUOUS_F32};
use effbench_core::model::{LogitsFor, Model, SeqChunk};

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
    prefill_at(model, n, 0, repetitions, kv)
}

/// [`prefill_in`] after `depth` tokens already in the cache (llama-bench's `pp N @ dD`).
pub fn prefill_at(
    model: &Model,
    n: usize,
    depth: usize,
    repetitions: usize,
    kv: &dyn KvCacheBuilder,
) -> Result<SpeedSamples> {
    let test = test_name("pp", n, depth);
    let start = Start::new(model, kv, &test, n, depth, n.max(1))?;
    start.time(test, repetitions, |tokens, cache| {
        model.forward(
            &[SeqChunk::new(SEQ, tokens.to_vec(), LogitsFor::Last)],
            cache,
        )?;
        Ok(())
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
    decode_at(model, n, 0, repetitions, kv)
}

/// [`decode_in`] after `depth` tokens already in the cache (llama-bench's `tg N @ dD`).
pub fn decode_at(
    model: &Model,
    n: usize,
    depth: usize,
    repetitions: usize,
    kv: &dyn KvCacheBuilder,
) -> Result<SpeedSamples> {
    let test = test_name("tg", n, depth);
    // One token of slack, as this test always reserved.
    let start = Start::new(model, kv, &test, n, depth, n + 1)?;
    start.time(test, repetitions, |tokens, cache| {
        for &tok in tokens {
            model.forward(&[SeqChunk::new(SEQ, vec![tok], LogitsFor::Last)], cache)?;
        }
        Ok(())
    })
}

/// llama-bench's name for a test: `pp512`, `tg128`, and at a depth `pp512 @ d512`.
pub fn test_name(kind: &str, n: usize, depth: usize) -> String {
    if depth == 0 {
        format!("{kind}{n}")
    } else {
        format!("{kind}{n} @ d{depth}")
    }
}

/// The one sequence a speed test runs.
const SEQ: u64 = 0;

/// Tokens of the untimed prefill that brings a cache to its depth, per forward pass: the size
/// of llama.cpp's default micro-batch, so a deep context does not need one huge attention pass.
const DEPTH_CHUNK: usize = 512;

/// Where each repetition of a test starts, and the tokens it times.
///
/// At depth 0 every repetition gets a fresh, empty cache, as these tests always did. At a
/// depth, the cache is built and prefilled with the context once (untimed), and each
/// repetition truncates it back to the context before its clock starts: llama-bench restores
/// a saved state instead, to the same effect.
struct Start<'a> {
    model: &'a Model,
    kv: &'a dyn KvCacheBuilder,
    depth: usize,
    /// Tokens the cache is built for: the context, then the test's `room`.
    capacity: usize,
    /// The test's tokens, after the context's.
    tokens: Vec<u32>,
    /// The context, before it is prefilled.
    context: Vec<u32>,
    /// The prefilled cache between repetitions (depth > 0 only).
    kept: Option<Box<dyn KvCache>>,
}

impl<'a> Start<'a> {
    fn new(
        model: &'a Model,
        kv: &'a dyn KvCacheBuilder,
        test: &str,
        n: usize,
        depth: usize,
        room: usize,
    ) -> Result<Self> {
        let context_len = model.config().max_position_embeddings;
        if depth + n > context_len {
            return Err(CoreError::Invalid(format!(
                "{test} needs {} positions, beyond the model's context of {context_len} (hint: a smaller depth or fewer test tokens)",
                depth + n
            )));
        }
        // One stream from a fixed seed: at depth 0 the test's tokens are what they always were.
        let mut tokens = bench_tokens(depth + n, model.config().vocab_size);
        let test_tokens = tokens.split_off(depth);
        Ok(Self {
            model,
            kv,
            depth,
            capacity: depth + room,
            tokens: test_tokens,
            context: tokens,
            kept: None,
        })
    }

    /// The cache the next repetition starts from, holding exactly the context.
    fn cache(&mut self) -> Result<Box<dyn KvCache>> {
        if let Some(mut cache) = self.kept.take() {
            cache.truncate(SEQ, self.depth)?;
            return Ok(cache);
        }
        let mut cache = self.kv.build(
            KvShape::of(self.model.config()),
            self.capacity,
            1,
            self.model.device(),
        )?;
        for chunk in self.context.chunks(DEPTH_CHUNK) {
            self.model.forward(
                &[SeqChunk::new(SEQ, chunk.to_vec(), LogitsFor::None)],
                cache.as_mut(),
            )?;
        }
        self.model.device().synchronize()?;
        Ok(cache)
    }

    /// Hands a used cache back for the next repetition to reuse (at a depth only).
    fn keep(&mut self, cache: Box<dyn KvCache>) {
        if self.depth > 0 {
            self.kept = Some(cache);
        }
    }

    /// `test`'s samples: `pass` runs the test's tokens into a cache at the start, once to warm
    /// up and then `repetitions` times on the clock.
    fn time(
        mut self,
        test: String,
        repetitions: usize,
        pass: impl Fn(&[u32], &mut dyn KvCache) -> Result<()>,
    ) -> Result<SpeedSamples> {
        let n = self.tokens.len();
        let mut samples = Vec::with_capacity(repetitions);
        for rep in 0..=repetitions {
            let mut cache = self.cache()?;
            let t = Instant::now();
            pass(&self.tokens, cache.as_mut())?;
            // A GPU runs passes asynchronously: the clock stops when they have finished.
            self.model.device().synchronize()?;
            if rep > 0 {
                samples.push(n as f64 / t.elapsed().as_secs_f64());
            }
            self.keep(cache);
        }
        Ok(SpeedSamples {
            test,
            tokens: n,
            samples_tok_per_s: samples,
        })
    }
}

/// Memory one decode step of a tg test of `n_gen` tokens at `depth` reads on average: every
/// block weight, the output head (the embedding table when tied), one embedding row, and the
/// K/V of the context so far. The machine's bandwidth over this is the decode roofline.
pub fn decode_bytes_per_token(model: &Model, n_gen: usize, depth: usize) -> f64 {
    let w = model.weight_bytes();
    let vocab = model.config().vocab_size.max(1);
    // A tied head that shares the GGML table reports no bytes of its own but reads all of them.
    let head = if w.output_head == 0 {
        w.embeddings
    } else {
        w.output_head
    };
    let embedding_row = w.embeddings as f64 / vocab as f64;
    // The tg test starts from a cache holding `depth` tokens, so a step attends to those,
    // (n_gen - 1) / 2 earlier tokens of its own on average, and itself.
    let mean_context = depth as f64 + (n_gen.max(1) - 1) as f64 / 2.0 + 1.0;
    let kv = KvShape::of(model.config()).bytes_per_token() as f64 * mean_context;
    (w.linear + w.norms_and_biases + head) as f64 + embedding_row + kv
}

/// Multiply-adds times two per prefilled token in the linear layers and head: the GEMM peak
/// over this bounds prefill from above (attention's share is left out).
pub fn prefill_flops_per_token(model: &Model) -> f64 {
    let weights: usize = model
        .linear_weights()
        .iter()
        .map(|(_, w)| w.in_features() * w.out_features())
        .sum();
    2.0 * weights as f64
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

    /// The tiny test model with a context of `positions`.
    fn tiny_model(positions: usize) -> Model {
        use effbench_core::testing::{tiny_config, tiny_source};
        let mut cfg = tiny_config(effbench_core::Architecture::Llama);
        cfg.max_position_embeddings = positions;
        Model::load(
            &mut tiny_source(&cfg, 42),
            &effbench_core::AsStored,
            &candle_core::Device::Cpu,
        )
        .unwrap()
    }

    #[test]
    fn test_names_follow_llama_bench() {
        assert_eq!(test_name("pp", 512, 0), "pp512");
        assert_eq!(test_name("tg", 128, 0), "tg128");
        assert_eq!(test_name("pp", 512, 512), "pp512 @ d512");
        assert_eq!(test_name("tg", 128, 4096), "tg128 @ d4096");
    }

    #[test]
    fn tests_run_at_a_depth() {
        let model = tiny_model(1024);
        let pp = prefill_at(&model, 8, 20, 2, &CONTIGUOUS_F32).unwrap();
        assert_eq!(pp.test, "pp8 @ d20");
        assert_eq!(pp.tokens, 8);
        assert_eq!(pp.samples_tok_per_s.len(), 2);
        // A context longer than one prefill chunk.
        let tg = decode_at(&model, 4, DEPTH_CHUNK + 3, 2, &CONTIGUOUS_F32).unwrap();
        assert_eq!(tg.test, "tg4 @ d515");
        assert_eq!(tg.samples_tok_per_s.len(), 2);
        assert!(tg
            .samples_tok_per_s
            .iter()
            .all(|x| x.is_finite() && *x > 0.0));
        // Depth 0 is the plain test.
        assert_eq!(
            decode_in(&model, 3, 1, &CONTIGUOUS_F32).unwrap().test,
            "tg3"
        );
        assert_eq!(
            prefill_in(&model, 3, 1, &CONTIGUOUS_F32).unwrap().test,
            "pp3"
        );
    }

    #[test]
    fn a_depth_beyond_the_context_is_an_error() {
        let model = tiny_model(512);
        let err = decode_at(&model, 8, 510, 1, &CONTIGUOUS_F32)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("tg8 @ d510 needs 518 positions, beyond the model's context of 512"),
            "{err}"
        );
        let err = prefill_at(&model, 512, 1, 1, &CONTIGUOUS_F32)
            .unwrap_err()
            .to_string();
        assert!(err.contains("pp512 @ d1 needs 513 positions"), "{err}");
        // Exactly the context fits.
        decode_at(&model, 2, 510, 1, &CONTIGUOUS_F32).unwrap();
    }

    #[test]
    fn a_repetition_starts_from_exactly_the_context() {
        let model = tiny_model(1024);
        let n = 5;
        let depth = DEPTH_CHUNK + 10;
        let mut start = Start::new(&model, &CONTIGUOUS_F32, "tg5 @ d522", n, depth, n + 1).unwrap();
        for _ in 0..3 {
            let mut cache = start.cache().unwrap();
            assert_eq!(cache.seq_len(SEQ), depth);
            for &tok in &start.tokens {
                model
                    .forward(
                        &[SeqChunk::new(SEQ, vec![tok], LogitsFor::None)],
                        cache.as_mut(),
                    )
                    .unwrap();
            }
            assert_eq!(cache.seq_len(SEQ), depth + n);
            start.keep(cache);
        }
        // The context and the test's tokens are one stream, as at depth 0.
        let mut all = start.context.clone();
        all.extend(&start.tokens);
        assert_eq!(all, bench_tokens(depth + n, model.config().vocab_size));
    }

    #[test]
    fn bench_tokens_are_fixed_and_in_range() {
        let a = bench_tokens(100, 1000);
        assert_eq!(a, bench_tokens(100, 1000));
        assert!(a.iter().all(|&t| t < 900));
    }
}
