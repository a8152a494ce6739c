//! `effbench serve-bench`: one request trace served by the continuous-batching scheduler under
//! the same KV memory budget with a contiguous and a paged cache, as a run whose rows are
//! `W+kv:contiguous` and `W+kv:paged:BLOCK`: what paging buys in waste, concurrency,
//! throughput and latency, in the run's report.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use effbench_eval::run::serving::check_trace;
use effbench_eval::run::{views, ServeConfig};
use effbench_kvcache::{KvDtype, SchedulerConfig};

use crate::common::ModelArgs;
use crate::view::{self, ViewArgs};

#[derive(Args, Clone)]
pub struct ServeBenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Which KV cache serves the trace.
    #[arg(long, value_enum, default_value_t = CacheChoice::Both)]
    pub cache: CacheChoice,
    /// KV memory budget, the same for every cache.
    #[arg(long, default_value_t = 512)]
    pub kv_budget_mib: usize,
    /// Tokens per block of the paged cache.
    #[arg(long, default_value_t = effbench_kvcache::DEFAULT_BLOCK_SIZE)]
    pub block_size: usize,
    /// K/V storage type (f16: the contiguous cache only, as the technique kv:f16).
    #[arg(long, default_value_t = KvDtype::F32)]
    pub kv_dtype: KvDtype,
    /// Requests in the generated trace.
    #[arg(long, default_value_t = 200)]
    pub requests: usize,
    /// Mean arrivals per second (Poisson); `inf` sends every request at once.
    #[arg(long, default_value_t = 8.0)]
    pub rate: f64,
    /// Seed of the trace (arrivals, lengths, and which text fills each prompt).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Replay a JSONL trace instead: one request per line, {"arrival_s", "prompt_tokens" or
    /// "prompt", "output_tokens"}.
    #[arg(long)]
    pub trace: Option<PathBuf>,
    /// Longest sequence (prompt plus output) served; the contiguous cache reserves this much
    /// for every sequence.
    #[arg(long, default_value_t = 2048)]
    pub max_model_len: usize,
    /// Most sequences decoded together.
    #[arg(long, default_value_t = 64)]
    pub max_running: usize,
    /// Most tokens in one forward pass.
    #[arg(long, default_value_t = 2048)]
    pub max_batched_tokens: usize,
    /// Text that fills prompts given only as lengths.
    #[arg(long, default_value = "wikitext-2")]
    pub filler_text: String,
    /// Skip each row's single-stream speed test (pp/tg): then its single-stream cost and
    /// latency are not measured, only what it served.
    #[arg(long)]
    pub no_speed: bool,
    #[command(flatten)]
    pub view: ViewArgs,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheChoice {
    Contiguous,
    Paged,
    Both,
}

pub fn run(args: ServeBenchArgs) -> Result<()> {
    if args.kv_budget_mib == 0 {
        bail!("--kv-budget-mib must be at least 1");
    }
    let techniques = views::serving_rows(
        &args.model.weights.technique_name(),
        args.cache != CacheChoice::Paged,
        args.cache != CacheChoice::Contiguous,
        args.kv_dtype,
        args.block_size,
    )?;
    let mut config = view::config(&args.model, &args.view, techniques);
    config.speed.no_speed = args.no_speed;
    config.serve = ServeConfig {
        serve: true,
        serve_requests: args.requests,
        serve_rate: args.rate,
        serve_seed: args.seed,
        kv_budget_mib: args.kv_budget_mib,
        trace: args.trace,
        scheduler: SchedulerConfig {
            max_running: args.max_running,
            max_batched_tokens: args.max_batched_tokens,
            max_model_len: args.max_model_len,
        },
        filler_text: args.filler_text,
    };
    // Before any model loads, so a bad line fails fast.
    check_trace(&config.serve)?;
    view::run(config).map(drop)
}
