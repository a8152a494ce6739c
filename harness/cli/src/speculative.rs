//! `effbench spec-bench`: speculative decoding against plain decoding of the same weights, per
//! draft, k and prompt type, as a run: the plain row first, then a `+spec:DRAFT@K` row for
//! every draft and k. The engine times each on the prompts and writes the per-type acceptance,
//! cost and theory table into the run's report.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use effbench_eval::run::{views, DecodingConfig};

use crate::common::ModelArgs;
use crate::run::PrefillSpeedArgs;
use crate::view::{self, ViewArgs};

#[derive(Args)]
pub struct SpecBenchArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Drafts, comma-separated: model:NAME_OR_PATH (same tokenizer as the target), layers:N
    /// (the target's first N layers and its head), ngram[:N] (prompt lookup, n-grams up to N).
    #[arg(long, value_delimiter = ',', required = true)]
    draft: Vec<String>,
    /// Tokens drafted per target step, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "2,4,8")]
    k: Vec<usize>,
    /// Also run adaptive k (up to the largest --k), chosen from the running acceptance rate.
    #[arg(long)]
    adaptive: bool,
    /// Prompt types: prose, code, summarization.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "prose,code,summarization"
    )]
    prompts: Vec<String>,
    /// Prompts per type (0: all in the file).
    #[arg(long, default_value_t = 2)]
    per_type: usize,
    /// A JSONL prompt file instead of the built-in one ({"type", "id", "prompt"} per line).
    #[arg(long)]
    prompt_file: Option<PathBuf>,
    /// New tokens per generation (and of the plain row's tg test).
    #[arg(long, short = 'n', default_value_t = 128)]
    max_tokens: usize,
    /// 0 is greedy (output identical to plain greedy); above 0 samples with the rejection rule.
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    speed: PrefillSpeedArgs,
    #[command(flatten)]
    view: ViewArgs,
}

pub fn run(args: SpecBenchArgs) -> Result<()> {
    if args.max_tokens < 2 {
        bail!("-n must be at least 2: decode speed is measured after the first token");
    }
    let base = args.model.weights.technique_name();
    let techniques = views::speculative_rows(&base, &args.draft, &args.k, args.adaptive)?;
    let mut config = view::config(&args.model, &args.view, techniques);
    config.speed.speed_gen = args.max_tokens;
    config.speed.speed_prompt = args.speed.speed_prompt;
    config.speed.speed_reps = args.speed.speed_reps;
    config.decoding = DecodingConfig {
        kinds: args.prompts,
        per_type: args.per_type,
        prompt_file: args.prompt_file,
        temperature: args.temperature,
        top_p: args.top_p,
        seed: args.seed,
    };
    view::run(config).map(drop)
}
