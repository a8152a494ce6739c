//! `effbench run` and `effbench merge` as the command line states them: the clap arguments and
//! their conversion into the engine's plain configuration (`effbench_eval::run`).

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use effbench_eval::run::{self as engine, shard, BuildInfo, KvChoice, RunConfig};
use effbench_eval::run::{DecodingConfig, PriceConfig, Printed, ServeConfig, SpeedConfig};

#[derive(Args, Clone)]
pub struct RunArgs {
    /// mmlu-lite (stratified MMLU subset), mmlu (all 14,042 items), core (the battery: 350
    /// items from each of arc_easy, arc_challenge, hellaswag, piqa, winogrande, boolq,
    /// openbookqa, sciq, commonsense_qa, social_iqa, as OLMES renders them 0-shot), one of
    /// those tasks by name (every item), lambada (every passage's last word: greedy accuracy and
    /// perplexity), gsm8k (200 math word problems answered by greedy
    /// generation, 8-shot chain of thought, exact match), olmes:TASK/VARIANT (e.g.
    /// olmes:arc_easy/rc_5shot),
    /// mc:PATH (your own JSONL, MMLU CSV directory, cais/mmlu JSON/parquet file, or OLMES
    /// requests.jsonl[.gz]), wikitext-2 (perplexity, KL and
    /// top-1 agreement against the baseline), or ppl:PATH (the same on your own text). Several,
    /// comma-separated (e.g. wikitext-2,mmlu-lite), run one after another under one run
    /// directory, the speed test in the first only, and table.md joins them: a row per
    /// technique with memory, speed and every suite's quality.
    #[arg(long, default_value = "mmlu-lite")]
    pub suite: String,
    /// Known model name or path (as for `generate`).
    #[arg(long, short, default_value = crate::common::DEFAULT_MODEL)]
    pub model: String,
    /// Techniques to compare, the baseline first, comma-separated: f16, as-stored, int4-gptq,
    /// student:M, spec:ngram, kv:paged, or stacks of one per kind such as
    /// int4-gptq+spec:ngram+kv:paged (see --help for every name).
    #[arg(long, value_delimiter = ',', default_value = "f16,as-stored", long_help = techniques_long_help())]
    pub techniques: Vec<String>,
    /// A student to evaluate beside the teacher (--model): adds the technique student:MODEL.
    #[arg(long)]
    pub student: Option<String>,
    /// Items per subject for mmlu-lite (default 10), per task for core (default 350).
    #[arg(long)]
    pub items_per_subject: Option<usize>,
    /// Every item of the suite instead of the stratified subset.
    #[arg(long)]
    pub full: bool,
    /// Few-shot exemplars per question (5 is MMLU's published setting).
    #[arg(long, default_value_t = 0)]
    pub shots: usize,
    /// Directory of `<subject>_dev.csv` exemplars; default: the shared mmlu-dev copy if present,
    /// else exemplars come from other test items, which are then not scored.
    #[arg(long)]
    pub dev_dir: Option<PathBuf>,
    /// Only these subjects (comma-separated, as in `high_school_biology`).
    #[arg(long, value_delimiter = ',')]
    pub subjects: Vec<String>,
    /// Seed of the subset sampler (and of test-split exemplars).
    #[arg(long, default_value_t = effbench_datasets::DEFAULT_SEED)]
    pub seed: u64,
    /// Stop at the first malformed dataset row instead of skipping and counting it.
    #[arg(long)]
    pub strict: bool,
    /// Items per forward pass.
    #[arg(long, default_value_t = 4)]
    pub batch: usize,
    /// Generative suites: most problems decoded together (continuous batching).
    #[arg(long, default_value_t = 32)]
    pub gen_batch: usize,
    /// Generative suites: cap every problem's generated tokens at this (the task's own limit
    /// otherwise; GSM8K's is 512). Part of what the suite is, so it changes the manifest.
    #[arg(long)]
    pub max_gen_tokens: Option<usize>,
    /// Generative suites: problems on which a decoding row (spec:...), which answers as its
    /// base row did, generates again plainly and with its draft, compared token for token;
    /// 0 skips the check.
    #[arg(long, default_value_t = 8)]
    pub decoding_check: usize,
    /// Where run directories go.
    #[arg(long, default_value = "results")]
    pub out: PathBuf,
    /// Name of the run directory (default: suite, model, shots and a timestamp).
    #[arg(long)]
    pub run_id: Option<String>,
    /// Continue an interrupted run: the named one, or the latest with the same settings.
    #[arg(long, num_args = 0..=1, default_missing_value = "latest")]
    pub resume: Option<String>,
    #[arg(long, short, default_value_t = 0)]
    pub threads: usize,
    /// auto, cpu, cuda or cuda:N (see `effbench generate --help`).
    #[arg(long, default_value = "auto", value_parser = crate::common::check_device)]
    pub device: String,
    /// Perplexity suites: tokens per window.
    #[arg(long, default_value_t = 512)]
    pub ctx: usize,
    /// Perplexity suites: windows to evaluate, from the start of the text.
    #[arg(long, default_value_t = 8)]
    pub chunks: usize,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// Run only shard I of N (0-based) of the work, for a Slurm job array or a Kubernetes
    /// Indexed Job: quality units are (item, technique) pairs, perplexity windows and speed
    /// tests whole techniques. Every shard needs the same --run-id; `effbench merge` joins them.
    #[arg(long)]
    pub shard: Option<shard::Shard>,
    #[command(flatten)]
    pub speed: SpeedArgs,
    #[command(flatten)]
    pub serve: ServeArgs,
    #[command(flatten)]
    pub prices: PriceArgs,
    /// Multiple-choice suites: the KV cache that scores items (paged shares the few-shot
    /// prefix's blocks; contiguous copies it per item).
    #[arg(long, value_enum, default_value_t = KvArg::Contiguous)]
    pub kv: KvArg,
    /// Multiple-choice suites: run every item's full prompt instead of computing the subject's
    /// few-shot prefix once and sharing its KV (to measure what sharing saves).
    #[arg(long)]
    pub no_prefix_sharing: bool,
    /// Routing rows (route:CHEAP@...): the accuracy loss, in points, within which a cascade
    /// counts as no worse than its base model when the sweep picks the largest share of items
    /// the cheap model may keep.
    #[arg(long, default_value_t = 1.0)]
    pub route_margin: f64,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvArg {
    Contiguous,
    Paged,
}

#[derive(Args, Clone, Debug)]
pub struct SpeedArgs {
    /// Skip the per-technique speed test (then no cost or latency figures).
    #[arg(long)]
    pub no_speed: bool,
    #[command(flatten)]
    pub prefill: PrefillSpeedArgs,
    /// Tokens of the decode speed test (llama-bench tg).
    #[arg(long, default_value_t = 128)]
    pub speed_gen: usize,
}

/// The prefill test's length and the repetitions of every speed test: `run`'s, and spec-bench's,
/// whose decode test length is its `-n`.
#[derive(Args, Clone, Debug)]
pub struct PrefillSpeedArgs {
    /// Prompt tokens of the prefill speed test (llama-bench pp).
    #[arg(long, default_value_t = 512)]
    pub speed_prompt: usize,
    /// Measured repetitions of each speed test, after a warm-up; medians are reported.
    #[arg(long, default_value_t = 3)]
    pub speed_reps: usize,
}

/// Serving: each row serves the same seeded request trace under continuous batching at a KV
/// budget (serve-bench's scheduler), so caches that waste less, and weights that make a step
/// cheaper, show up as concurrency and throughput.
#[derive(Args, Clone, Debug)]
pub struct ServeArgs {
    /// Serve the request trace with every row (throughput, TTFT, TPOT, peak concurrency).
    #[arg(long)]
    pub serve: bool,
    /// Requests in the generated chat-like trace.
    #[arg(long, default_value_t = 16)]
    pub serve_requests: usize,
    /// Mean arrivals per second (Poisson); inf sends every request at once.
    #[arg(long, default_value_t = 8.0)]
    pub serve_rate: f64,
    /// Seed of the trace.
    #[arg(long, default_value_t = 0)]
    pub serve_seed: u64,
    /// KV cache budget each row serves in, MiB.
    #[arg(long, default_value_t = 512)]
    pub kv_budget_mib: usize,
}

#[derive(Args, Clone, Debug, Default)]
pub struct PriceArgs {
    /// Price the hardware at this many dollars per hour instead of the price table's entry.
    #[arg(long)]
    pub price_per_hour: Option<f64>,
    /// Price as this entry of the price table (e.g. h100-80gb, aws-c7a); default: the entry
    /// matching the run's GPU, or its CPU vendor priced per thread used.
    #[arg(long)]
    pub instance: Option<String>,
    /// A price table of your own (TOML, the shape of harness/report/prices.toml).
    #[arg(long)]
    pub prices: Option<std::path::PathBuf>,
}

#[derive(Args)]
pub struct MergeArgs {
    /// The run directory holding the shard-I-of-N/ directories, or the shard directories
    /// themselves.
    #[arg(required = true)]
    pub dirs: Vec<PathBuf>,
    /// Where the merged run is written (default: the directory the shards sit in).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub prices: PriceArgs,
}

fn techniques_long_help() -> String {
    format!(
        "Techniques to compare, the baseline first, comma-separated. Each is a name from the \
         registry below, or a stack of one name per kind joined with +. A decoding technique \
         leaves log-likelihoods unchanged: its quality is the same row without it (copied \
         from that row when it is in the run), and its speed is timed on real prompts against \
         plain decoding with the same weights, output compared token for token.\n\n{}",
        effbench_eval::technique::help()
    )
}

impl From<KvArg> for KvChoice {
    fn from(kv: KvArg) -> Self {
        match kv {
            KvArg::Contiguous => Self::Contiguous,
            KvArg::Paged => Self::Paged,
        }
    }
}

impl From<SpeedArgs> for SpeedConfig {
    fn from(a: SpeedArgs) -> Self {
        Self {
            no_speed: a.no_speed,
            speed_prompt: a.prefill.speed_prompt,
            speed_gen: a.speed_gen,
            speed_reps: a.prefill.speed_reps,
        }
    }
}

impl From<ServeArgs> for ServeConfig {
    fn from(a: ServeArgs) -> Self {
        Self {
            serve: a.serve,
            serve_requests: a.serve_requests,
            serve_rate: a.serve_rate,
            serve_seed: a.serve_seed,
            kv_budget_mib: a.kv_budget_mib,
            ..ServeConfig::default()
        }
    }
}

impl From<PriceArgs> for PriceConfig {
    fn from(a: PriceArgs) -> Self {
        Self {
            price_per_hour: a.price_per_hour,
            instance: a.instance,
            prices: a.prices,
        }
    }
}

impl From<RunArgs> for RunConfig {
    fn from(a: RunArgs) -> Self {
        Self {
            suite: a.suite,
            model: a.model,
            techniques: a.techniques,
            student: a.student,
            items_per_subject: a.items_per_subject,
            full: a.full,
            shots: a.shots,
            dev_dir: a.dev_dir,
            subjects: a.subjects,
            seed: a.seed,
            strict: a.strict,
            batch: a.batch,
            gen_batch: a.gen_batch,
            max_gen_tokens: a.max_gen_tokens,
            decoding_check: a.decoding_check,
            out: a.out,
            run_id: a.run_id,
            resume: a.resume,
            threads: a.threads,
            device: a.device,
            ctx: a.ctx,
            chunks: a.chunks,
            print: if a.json {
                Printed::SummaryJson
            } else {
                Printed::Markdown
            },
            shard: a.shard,
            speed: a.speed.into(),
            decoding: DecodingConfig::default(),
            serve: a.serve.into(),
            prices: a.prices.into(),
            kv: a.kv.into(),
            no_prefix_sharing: a.no_prefix_sharing,
            route_margin: a.route_margin,
            build: BuildInfo {
                git_commit: crate::common::GIT_COMMIT.into(),
                git_dirty: crate::common::git_dirty(),
            },
            command: std::env::args().collect(),
        }
    }
}

pub fn run(args: RunArgs) -> Result<()> {
    engine::run(args.into())?;
    Ok(())
}

pub fn merge(args: MergeArgs) -> Result<()> {
    engine::merge::merge(engine::merge::MergeConfig {
        dirs: args.dirs,
        out: args.out,
        json: args.json,
        prices: args.prices.into(),
    })?;
    Ok(())
}
