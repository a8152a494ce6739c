//! effbench: measured answers to "what does each inference-efficiency technique buy on this
//! hardware, and what does it cost in quality?"

mod bench;
mod common;
mod distill;
mod fetch;
mod generate;
mod hw;
mod perplexity;
mod quantize;
mod report;
mod run;
mod serve;
mod speculative;
mod view;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "effbench",
    version,
    about = "Benchmark and evaluation harness for LLM inference efficiency techniques",
    long_about = "effbench measures what inference-efficiency techniques (quantization, distillation, \
speculative decoding, paged KV cache) buy in latency, memory and cost on the hardware in front of \
you, and what they cost in quality.\n\nWith no command it runs the default demo: fetch \
SmolLM2-135M-Instruct on first use, generate a greedy continuation, and measure its perplexity \
on WikiText-2."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Show the detected hardware: CPU, SIMD features, RAM, NVIDIA GPUs.
    Hw(hw::HwArgs),
    /// Download models and datasets into the local cache, checksum-verified.
    Fetch(fetch::FetchArgs),
    /// Generate text from a prompt, streaming it, then print the timing figures.
    Generate(generate::GenerateArgs),
    /// Perplexity over a text file, by llama.cpp's method (comparable figures).
    Perplexity(perplexity::PerplexityArgs),
    /// Prefill and decode speed, llama-bench style (pp/tg tok/s, mean ± sd over repetitions).
    Bench(bench::BenchArgs),
    /// Evaluate techniques side by side on a quality suite (MMLU), every item recorded as it
    /// is scored; prints the comparison table and writes results/<run-id>/.
    Run(Box<run::RunArgs>),
    /// Regenerate a recorded run's tables, takeaways and quality-vs-cost plot (optionally at
    /// another price), or with --index write results/README.md.
    Report(report::ReportArgs),
    /// Join the shards of a run (`run --shard I/N` on a Slurm array or Kubernetes Indexed Job)
    /// into one run, checking that nothing is missing, doubled or mismatched.
    Merge(run::MergeArgs),
    /// Put runs of the same suite from different machines or versions side by side.
    Compare(report::CompareArgs),
    /// Serve a request trace with continuous batching under one KV memory budget, contiguous vs
    /// paged cache: waste, concurrency, throughput, TTFT/TPOT percentiles. A run with
    /// W+kv:contiguous and W+kv:paged rows; writes the run's report.json.
    ServeBench(serve::ServeBenchArgs),
    /// Train a smaller student from a teacher by knowledge distillation (`distill eval`: teacher
    /// and students side by side, as a perplexity run with student:M rows).
    Distill(Box<distill::DistillArgs>),
    /// Quantize a model's weights to int4/int2 (RTN or GPTQ) once and write a GGUF file
    /// (plus a sidecar for effbench's own packed formats) that `--model FILE` loads again.
    Quantize(quantize::QuantizeArgs),
    /// The default job: generate and perplexity on the default model.
    Demo(generate::DemoArgs),
    /// Speculative decoding against plain decoding: acceptance, draft cost, speedup vs theory.
    /// A run with W+spec:DRAFT@K rows; writes the run's report.json.
    SpecBench(speculative::SpecBenchArgs),
}

fn main() -> ExitCode {
    effbench_core::allocator::retain_freed_memory();
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Hw(a)) => hw::run(a),
        Some(Command::Fetch(a)) => fetch::run(a),
        Some(Command::Generate(a)) => generate::run(a),
        Some(Command::Perplexity(a)) => perplexity::run(a),
        Some(Command::Bench(a)) => bench::run(a),
        Some(Command::Demo(a)) => generate::demo(a),
        Some(Command::Distill(a)) => distill::run(*a),
        Some(Command::Run(a)) => run::run(*a),
        Some(Command::Report(a)) => report::report(a),
        Some(Command::Compare(a)) => report::compare(a),
        Some(Command::Merge(a)) => run::merge(a),
        Some(Command::ServeBench(a)) => serve::run(a),
        Some(Command::SpecBench(a)) => speculative::run(a),
        Some(Command::Quantize(a)) => quantize::run(a),
        None => generate::demo(generate::DemoArgs::default()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let flag = |field: &str| format!("--{}", field.replace('_', "-"));
            eprintln!(
                "error: {}",
                effbench_eval::error::one_line(e.as_ref(), flag)
            );
            ExitCode::FAILURE
        }
    }
}
