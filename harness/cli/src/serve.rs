//! `effbench serve-bench`: one request trace served by the continuous-batching scheduler under
//! the same KV memory budget with a contiguous and a paged cache; what paging buys in waste,
//! concurrency, throughput and latency.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use effbench_core::{ContiguousKvCache, KvCache, KvShape};
use effbench_eval::run::serving::build_requests;
use effbench_kvcache::trace::{read_jsonl, write_jsonl};
use effbench_kvcache::KvDtype;
use effbench_kvcache::{
    serve, summarize, PagedKvCache, Percentiles, SchedulerConfig, Summary, TraceSpec,
};
use serde::Serialize;

use crate::common::{load_model, ModelArgs};

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
    /// K/V storage type.
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
    /// Directory for summary.md, summary.json and the trace.
    #[arg(long, default_value = "results/serve-bench")]
    pub out: PathBuf,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheChoice {
    Contiguous,
    Paged,
    Both,
}

#[derive(Serialize)]
struct CacheResult {
    cache: String,
    /// What the budget holds: whole reservations or blocks.
    capacity: String,
    /// Budget that no allocation can use: less than one reservation or one block.
    unaddressable_budget_pct: f64,
    summary: Summary,
    refused: Vec<(u64, String)>,
}

#[derive(Serialize)]
struct ServeBenchReport {
    command: Vec<String>,
    git_commit: String,
    git_dirty: Option<bool>,
    model: String,
    model_label: String,
    threads: usize,
    kv_budget_mib: usize,
    kv_dtype: KvDtype,
    kv_bytes_per_token: usize,
    block_size: usize,
    scheduler: SchedulerConfig,
    trace: String,
    results: Vec<CacheResult>,
    /// Requests whose greedy tokens are identical under both caches, of those both completed.
    /// With weights as stored (Q4_1) the kernels quantize activations to 8 bits, so the caches'
    /// float-rounding differences in attention can flip a near-tie; with `--weights f32` they
    /// must all agree.
    identical_tokens: Option<(usize, usize)>,
}

pub fn run(args: ServeBenchArgs) -> Result<()> {
    if args.kv_budget_mib == 0 {
        bail!("--kv-budget-mib must be at least 1");
    }
    let (entries, trace_label) = match &args.trace {
        Some(path) => (read_jsonl(path)?, format!("file {}", path.display())),
        None => {
            let spec = TraceSpec::chat_like(args.requests, args.rate, args.seed);
            let label = format!("generated: {}", spec.describe());
            (spec.generate()?, label)
        }
    };
    // The trace is read before the model loads, so a bad line fails fast.
    let session = load_model(&args.model)?;
    let loaded = &session.loaded;
    let requests = build_requests(loaded, &entries, &args.filler_text, args.seed)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    write_jsonl(&args.out.join("trace.jsonl"), &entries)?;

    let shape = KvShape::of(loaded.model.config()).with_dtype(args.kv_dtype.dtype());
    let budget = args.kv_budget_mib * 1024 * 1024;
    let config = SchedulerConfig {
        max_running: args.max_running,
        max_batched_tokens: args.max_batched_tokens,
        max_model_len: args.max_model_len,
    };
    let device = loaded.model.device();
    let mut results = Vec::new();
    let mut tokens_by_cache = Vec::new();
    for choice in [CacheChoice::Contiguous, CacheChoice::Paged] {
        if args.cache != CacheChoice::Both && args.cache != choice {
            continue;
        }
        let (mut cache, capacity, addressable): (Box<dyn KvCache>, String, usize) = match choice {
            CacheChoice::Contiguous => {
                let per_seq = args.max_model_len * shape.bytes_per_token();
                let seqs = budget / per_seq;
                (
                    Box::new(ContiguousKvCache::with_budget(
                        shape,
                        args.max_model_len,
                        budget,
                        device,
                    )),
                    format!("{seqs} reservations of {} tokens", args.max_model_len),
                    seqs * per_seq,
                )
            }
            _ => {
                let c = PagedKvCache::with_budget(shape, args.block_size, budget, device)?;
                let cap = format!(
                    "{} blocks of {} tokens ({} tokens)",
                    c.num_blocks(),
                    c.block_size(),
                    c.num_blocks() * c.block_size()
                );
                let bytes = c.num_blocks() * c.block_bytes();
                (Box::new(c), cap, bytes)
            }
        };
        let name = format!("{choice:?}").to_lowercase();
        eprintln!(
            "serving {} requests with the {name} cache ({capacity})",
            requests.len()
        );
        let run = serve(&loaded.model, cache.as_mut(), requests.clone(), &config)?;
        let summary = summarize(&run, budget);
        eprintln!(
            "  {name}: {:.1} output tok/s, waste {:.1}%, peak {} sequences, {} preemptions",
            summary.output_tok_per_s, summary.waste_pct, summary.peak_running, summary.preemptions
        );
        let refused = run
            .outcomes
            .iter()
            .filter_map(|o| o.refused.clone().map(|r| (o.id, r)))
            .collect();
        tokens_by_cache.push(
            run.outcomes
                .iter()
                .map(|o| o.tokens.clone())
                .collect::<Vec<_>>(),
        );
        results.push(CacheResult {
            cache: name,
            capacity,
            unaddressable_budget_pct: 100.0 * (1.0 - addressable as f64 / budget as f64),
            summary,
            refused,
        });
    }
    let identical_tokens = (tokens_by_cache.len() == 2).then(|| {
        let both: Vec<_> = tokens_by_cache[0]
            .iter()
            .zip(&tokens_by_cache[1])
            .filter(|(a, b)| !a.is_empty() && !b.is_empty())
            .collect();
        (both.iter().filter(|(a, b)| a == b).count(), both.len())
    });
    let report = ServeBenchReport {
        command: std::env::args().collect(),
        git_commit: crate::common::GIT_COMMIT.into(),
        git_dirty: crate::common::git_dirty(),
        model: args.model.model.clone(),
        model_label: loaded.model.label().to_string(),
        threads: session.threads,
        kv_budget_mib: args.kv_budget_mib,
        kv_dtype: args.kv_dtype,
        kv_bytes_per_token: shape.bytes_per_token(),
        block_size: args.block_size,
        scheduler: config,
        trace: trace_label,
        results,
        identical_tokens,
    };
    let md = markdown(&report);
    std::fs::write(
        args.out.join("summary.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    std::fs::write(args.out.join("summary.md"), &md)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{md}");
    }
    for r in &report.results {
        for (id, why) in r.refused.iter().take(5) {
            eprintln!("refused request {id} ({}): {why}", r.cache);
        }
    }
    Ok(())
}

fn pct(p: &Option<Percentiles>) -> String {
    match p {
        Some(p) => format!("{:.0} / {:.0} / {:.0}", p.p50, p.p95, p.p99),
        None => "-".into(),
    }
}

fn markdown(r: &ServeBenchReport) -> String {
    let mut s = format!(
        "# serve-bench: {} ({})\n\nKV budget {} MiB ({} bytes per token, {:?}), block size {}, max model len {}, max running {}, max batched tokens {}, {} threads.\nTrace: {}.\n\n",
        r.model, r.model_label, r.kv_budget_mib, r.kv_bytes_per_token, r.kv_dtype, r.block_size,
        r.scheduler.max_model_len, r.scheduler.max_running, r.scheduler.max_batched_tokens,
        r.threads, r.trace
    );
    s.push_str("| cache | capacity at budget | waste % | internal frag. % | unaddressable budget % | budget holding K/V % | peak seqs | mean seqs | preemptions | output tok/s | TTFT p50/p95/p99 ms | TPOT p50/p95/p99 ms | completed | refused |\n");
    s.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---:|\n");
    for c in &r.results {
        let m = &c.summary;
        s.push_str(&format!(
            "| {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {:.1} | {} | {:.1} | {} | {} | {} | {} |\n",
            c.cache,
            c.capacity,
            m.waste_pct,
            m.internal_fragmentation_pct,
            c.unaddressable_budget_pct,
            m.budget_used_pct,
            m.peak_running,
            m.mean_running,
            m.preemptions,
            m.output_tok_per_s,
            pct(&m.ttft_ms),
            pct(&m.tpot_ms),
            m.completed,
            m.refused
        ));
    }
    if let Some((same, of)) = r.identical_tokens {
        s.push_str(&format!(
            "\nRequests with token-for-token identical greedy output under both caches: {same} of {of}.\n"
        ));
    }
    s.push_str("\nWaste: reserved KV bytes not holding K/V, averaged over the run (weighted by step time). Internal fragmentation: share of a finished sequence's reservation it never filled. Clock: measured step times; idle gaps jump to the next arrival.\n");
    s.push_str(&format!("\nCommand: `{}`\n", r.command.join(" ")));
    s
}
