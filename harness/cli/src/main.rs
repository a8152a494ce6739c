//! effbench: measured answers to "what does each inference-efficiency technique buy on this
//! hardware, and what does it cost in quality?"

mod bench;
mod common;
mod fetch;
mod generate;
mod hw;
mod perplexity;
mod quantize;
mod run;

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
    Run(run::RunArgs),
    /// Quantize a model's weights to int4/int2 (RTN or GPTQ) once and write a GGUF file
    /// (plus a sidecar for effbench's own packed formats) that `--model FILE` loads again.
    Quantize(quantize::QuantizeArgs),
    /// The default job: generate and perplexity on the default model.
    Demo(generate::DemoArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Hw(a)) => hw::run(a),
        Some(Command::Fetch(a)) => fetch::run(a),
        Some(Command::Generate(a)) => generate::run(a),
        Some(Command::Perplexity(a)) => perplexity::run(a),
        Some(Command::Bench(a)) => bench::run(a),
        Some(Command::Demo(a)) => generate::demo(a),
        Some(Command::Run(a)) => run::run(a),
        Some(Command::Quantize(a)) => quantize::run(a),
        None => generate::demo(generate::DemoArgs::default()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the cause chain joined, so the hint at the end of the root cause shows.
            let msg: Vec<String> = e.chain().map(|c| c.to_string()).collect();
            eprintln!("error: {}", msg.join(": "));
            ExitCode::FAILURE
        }
    }
}
