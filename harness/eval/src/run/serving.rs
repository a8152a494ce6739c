//! A row serving a request trace in a run: serve-bench's continuous-batching scheduler over the
//! row's weights and KV cache at a KV budget, on a seeded chat-like trace (or a trace file)
//! every row shares.

use crate::error::{bail, Context, Result};
use effbench_core::{KvCacheBuilder, KvShape, LoadedModel};
use effbench_kvcache::trace::read_jsonl;
use effbench_kvcache::{serve, summarize, Request, TraceEntry, TraceSpec};
use effbench_report::schema::ServingReport;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::hint::hinted;
use crate::session::{encode_leading, resolve_text};
use sha2::{Digest, Sha256};

use super::record::ServeConfig;
use super::store::RunDir;

/// The trace the run's rows served, one request a line, as a file trace is read.
pub const TRACE_FILE: &str = "trace.jsonl";

/// Requests whose refusal a row prints and records; the count covers the rest.
const REFUSALS_SHOWN: usize = 5;

/// Serves the run's trace (the config's file, or its seeded chat-like trace) with the row's
/// weights and KV cache at the budget. The trace is written to the run directory once, so
/// what every row served can be read back.
pub fn measure(
    run_dir: &RunDir,
    loaded: &LoadedModel,
    builder: &dyn KvCacheBuilder,
    args: &ServeConfig,
) -> Result<ServingReport> {
    if args.kv_budget_mib == 0 {
        return Err(hinted(
            "a KV budget of 0 MiB holds nothing",
            "{kv_budget_mib} takes at least 1",
        ));
    }
    let (entries, trace) = trace_entries(args)?;
    if !run_dir.path.join(TRACE_FILE).exists() {
        let mut jsonl = String::new();
        for e in &entries {
            jsonl.push_str(&serde_json::to_string(e)?);
            jsonl.push('\n');
        }
        run_dir.write_atomic(TRACE_FILE, jsonl.as_bytes())?;
    }
    let requests = build_requests(loaded, &entries, &args.filler_text, args.serve_seed)?;
    let config = &args.scheduler;
    let budget = args.kv_budget_mib * 1024 * 1024;
    let mut cache = builder.build_for_budget(
        KvShape::of(loaded.model.config()),
        config.max_model_len,
        budget,
        loaded.model.device(),
    )?;
    eprintln!(
        "  serving {} requests in a {} MiB {} cache",
        requests.len(),
        args.kv_budget_mib,
        builder.describe()
    );
    let run = serve(&loaded.model, cache.as_mut(), requests, config)?;
    let s = summarize(&run, budget);
    eprintln!(
        "  served {:.1} output tok/s, waste {:.1}%, peak {} sequences, {} preemptions, {} refused",
        s.output_tok_per_s, s.waste_pct, s.peak_running, s.preemptions, s.refused
    );
    let refusals: Vec<String> = run
        .outcomes
        .iter()
        .filter_map(|o| Some(format!("{}: {}", o.id, o.refused.as_ref()?)))
        .take(REFUSALS_SHOWN)
        .collect();
    for r in &refusals {
        eprintln!("  refused request {r}");
    }
    let output_hashes = run
        .outcomes
        .iter()
        .map(|o| {
            if o.refused.is_some() {
                return String::new();
            }
            let mut h = Sha256::new();
            for t in &o.tokens {
                h.update(t.to_le_bytes());
            }
            // 64 bits tell outputs apart; the full digest would only make the file longer.
            hex::encode(&h.finalize()[..8])
        })
        .collect();
    let pct = |p: &Option<effbench_kvcache::Percentiles>,
               f: fn(&effbench_kvcache::Percentiles) -> f64| { p.as_ref().map(f) };
    Ok(ServingReport {
        cache: builder.describe(),
        kv_budget_bytes: budget,
        trace,
        requests: s.requests,
        completed: s.completed,
        refused: s.refused,
        output_tokens: s.output_tokens,
        output_tok_per_s: s.output_tok_per_s,
        ttft_ms_p50: pct(&s.ttft_ms, |p| p.p50),
        ttft_ms_p99: pct(&s.ttft_ms, |p| p.p99),
        tpot_ms_p50: pct(&s.tpot_ms, |p| p.p50),
        tpot_ms_p99: pct(&s.tpot_ms, |p| p.p99),
        peak_running: s.peak_running,
        mean_running: s.mean_running,
        preemptions: s.preemptions,
        peak_kv_reserved_bytes: s.peak_bytes_reserved,
        peak_kv_used_bytes: s.peak_bytes_used,
        waste_pct: Some(s.waste_pct),
        internal_fragmentation_pct: Some(s.internal_fragmentation_pct),
        budget_used_pct: Some(s.budget_used_pct),
        ttft_ms_p95: pct(&s.ttft_ms, |p| p.p95),
        tpot_ms_p95: pct(&s.tpot_ms, |p| p.p95),
        scheduler: Some(format!(
            "max {} sequences, {} tokens a pass, {} tokens a sequence",
            config.max_running, config.max_batched_tokens, config.max_model_len
        )),
        refusals,
        output_hashes,
    })
}

/// The trace every row serves, and how it was made.
fn trace_entries(args: &ServeConfig) -> Result<(Vec<TraceEntry>, String)> {
    Ok(match &args.trace {
        Some(path) => (read_jsonl(path)?, format!("file {}", path.display())),
        None => {
            let spec = TraceSpec::chat_like(args.serve_requests, args.serve_rate, args.serve_seed);
            (spec.generate()?, spec.describe())
        }
    })
}

/// Reads the trace before any model loads, so a bad line fails fast.
pub fn check_trace(args: &ServeConfig) -> Result<()> {
    trace_entries(args).map(|_| ())
}

/// The trace's requests as token ids: a prompt given as text is encoded, one given as a length
/// is cut at a seeded offset from `filler_text` (a known text name or path).
pub fn build_requests(
    loaded: &LoadedModel,
    entries: &[TraceEntry],
    filler_text: &str,
    seed: u64,
) -> Result<Vec<Request>> {
    let longest = entries
        .iter()
        .filter_map(|e| e.prompt_tokens)
        .max()
        .unwrap_or(0);
    let filler = if longest > 0 {
        let path = resolve_text(filler_text)?;
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let tokens = encode_leading(loaded, &text, Some(longest.max(1) * 16))?;
        if tokens.len() < longest {
            bail!(
                "filler text {} has {} tokens, fewer than the longest prompt ({longest})",
                path.display(),
                tokens.len()
            );
        }
        tokens
    } else {
        Vec::new()
    };
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed_f111);
    entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let prompt = match (&e.prompt, e.prompt_tokens) {
                (Some(text), _) => loaded.encode(text)?,
                (None, Some(n)) => {
                    let start = rng.random_range(0..=filler.len() - n);
                    filler[start..start + n].to_vec()
                }
                (None, None) => unreachable!("the trace reader requires one"),
            };
            Ok(Request {
                id: i as u64,
                arrival_s: e.arrival_s,
                prompt,
                max_new_tokens: e.output_tokens,
                forked_from: None,
            })
        })
        .collect()
}
