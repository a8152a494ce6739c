//! llama-bench's two tests on our engine: `pp N` (prefill N tokens in one pass) and `tg N`
//! (decode N tokens one at a time), each repeated after a warm-up and reported as mean ± sd
//! tok/s, tokenization excluded.

use anyhow::Result;
use clap::Args;
use effbench_core::speed;
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

pub fn run(args: BenchArgs) -> Result<()> {
    let session = load_model(&args.model)?;
    let model = &session.loaded.model;
    let mut results = Vec::new();
    let mut measured = Vec::new();
    if args.n_prompt > 0 {
        measured.push(speed::prefill(model, args.n_prompt, args.repetitions)?);
    }
    if args.n_gen > 0 {
        measured.push(speed::decode(model, args.n_gen, args.repetitions)?);
    }
    for m in measured {
        results.push(TestResult {
            test: m.test.clone(),
            tokens: m.tokens,
            mean_tok_per_s: m.mean(),
            sd_tok_per_s: m.sd(),
            samples_tok_per_s: m.samples_tok_per_s,
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
