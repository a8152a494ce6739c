//! llama-bench's two tests on our engine: `pp N` (prefill N tokens in one pass) and `tg N`
//! (decode N tokens one at a time), each repeated after a warm-up and reported as mean ± sd
//! tok/s, tokenization excluded.

use std::time::Instant;

use anyhow::Result;
use clap::Args;
use effbench_core::{ContiguousKvCache, KvShape, LogitsFor, SeqChunk};
use serde::Serialize;
use tabled::{builder::Builder, settings::Style};

use crate::common::{load_model, mib, ModelArgs};

#[derive(Args)]
pub struct BenchArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Prompt tokens for the prefill test (0 skips it).
    #[arg(long, short = 'p', default_value_t = 512)]
    n_prompt: usize,
    /// Tokens generated for the decode test (0 skips it).
    #[arg(long, short = 'n', default_value_t = 128)]
    n_gen: usize,
    /// Measured repetitions of each test, after one warm-up run.
    #[arg(long, short = 'r', default_value_t = 5)]
    repetitions: usize,
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct TestResult {
    test: String,
    tokens: usize,
    mean_tok_per_s: f64,
    sd_tok_per_s: f64,
    samples_tok_per_s: Vec<f64>,
}

#[derive(Serialize)]
struct BenchReport {
    model: String,
    variant: String,
    weight_bytes: usize,
    /// Bits per weight of the blocks' linear layers, scales included.
    block_bits_per_weight: f64,
    threads: usize,
    repetitions: usize,
    results: Vec<TestResult>,
}

/// Token ids spread over the vocabulary from a fixed seed, as llama-bench uses random tokens:
/// speed must not depend on the text.
fn bench_tokens(n: usize, vocab: usize) -> Vec<u32> {
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

fn mean_sd(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = if xs.len() > 1 {
        xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}

pub fn run(args: BenchArgs) -> Result<()> {
    let session = load_model(&args.model)?;
    let model = &session.loaded.model;
    let cfg = model.config();
    let capacity = args.n_prompt.max(args.n_gen + 1).max(1);
    let mut results = Vec::new();

    if args.n_prompt > 0 {
        let tokens = bench_tokens(args.n_prompt, cfg.vocab_size);
        let mut samples = Vec::new();
        for rep in 0..=args.repetitions {
            let mut cache = ContiguousKvCache::new(KvShape::of(cfg), capacity, model.device());
            let t = Instant::now();
            model.forward(
                &[SeqChunk::new(0, tokens.clone(), LogitsFor::Last)],
                &mut cache,
            )?;
            let secs = t.elapsed().as_secs_f64();
            if rep > 0 {
                samples.push(args.n_prompt as f64 / secs);
            }
        }
        let (mean, sd) = mean_sd(&samples);
        results.push(TestResult {
            test: format!("pp{}", args.n_prompt),
            tokens: args.n_prompt,
            mean_tok_per_s: mean,
            sd_tok_per_s: sd,
            samples_tok_per_s: samples,
        });
    }
    if args.n_gen > 0 {
        let tokens = bench_tokens(args.n_gen, cfg.vocab_size);
        let mut samples = Vec::new();
        for rep in 0..=args.repetitions {
            let mut cache = ContiguousKvCache::new(KvShape::of(cfg), capacity, model.device());
            let t = Instant::now();
            for &tok in &tokens {
                model.forward(&[SeqChunk::new(0, vec![tok], LogitsFor::Last)], &mut cache)?;
            }
            let secs = t.elapsed().as_secs_f64();
            if rep > 0 {
                samples.push(args.n_gen as f64 / secs);
            }
        }
        let (mean, sd) = mean_sd(&samples);
        results.push(TestResult {
            test: format!("tg{}", args.n_gen),
            tokens: args.n_gen,
            mean_tok_per_s: mean,
            sd_tok_per_s: sd,
            samples_tok_per_s: samples,
        });
    }
    let report = BenchReport {
        model: session.loaded.path.display().to_string(),
        variant: model.label().to_string(),
        weight_bytes: model.weight_bytes().total,
        block_bits_per_weight: model.weight_bytes().block_bits_per_weight,
        threads: session.threads,
        repetitions: args.repetitions,
        results,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let mut b = Builder::default();
    b.push_record(["model", "variant", "size", "threads", "test", "t/s"]);
    let name = session
        .loaded
        .path
        .file_name()
        .map_or_else(|| report.model.clone(), |n| n.to_string_lossy().to_string());
    for r in &report.results {
        b.push_record([
            name.clone(),
            report.variant.clone(),
            mib(report.weight_bytes),
            report.threads.to_string(),
            r.test.clone(),
            format!("{:.2} ± {:.2}", r.mean_tok_per_s, r.sd_tok_per_s),
        ]);
    }
    println!("{}", b.build().with(Style::markdown()));
    Ok(())
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
    fn bench_tokens_are_fixed_and_in_range() {
        let a = bench_tokens(100, 1000);
        assert_eq!(a, bench_tokens(100, 1000));
        assert!(a.iter().all(|&t| t < 900));
    }
}
