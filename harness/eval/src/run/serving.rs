//! A row serving a request trace in a run: serve-bench's continuous-batching scheduler over the
//! row's weights and KV cache at a KV budget, on a seeded chat-like trace every row shares.

use anyhow::{bail, Context, Result};
use effbench_core::{KvCacheBuilder, KvShape, LoadedModel};
use effbench_kvcache::{serve, summarize, Request, SchedulerConfig, TraceEntry, TraceSpec};
use effbench_report::schema::ServingReport;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::session::{encode_leading, resolve_text};

use super::record::ServeConfig;

/// Prompts given by length are cut from this text, as serve-bench does by default.
const FILLER_TEXT: &str = "wikitext-2";

pub fn measure(
    loaded: &LoadedModel,
    builder: &dyn KvCacheBuilder,
    args: &ServeConfig,
) -> Result<ServingReport> {
    anyhow::ensure!(
        args.kv_budget_mib > 0,
        "the KV budget must be at least 1 MiB"
    );
    let spec = TraceSpec::chat_like(args.serve_requests, args.serve_rate, args.serve_seed);
    let entries = spec.generate()?;
    let requests = build_requests(loaded, &entries, FILLER_TEXT, args.serve_seed)?;
    let config = SchedulerConfig::default();
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
    let run = serve(&loaded.model, cache.as_mut(), requests, &config)?;
    let s = summarize(&run, budget);
    eprintln!(
        "  served {:.1} output tok/s, peak {} sequences, {} preemptions, {} refused",
        s.output_tok_per_s, s.peak_running, s.preemptions, s.refused
    );
    Ok(ServingReport {
        cache: builder.describe(),
        kv_budget_bytes: budget,
        trace: spec.describe(),
        requests: s.requests,
        completed: s.completed,
        refused: s.refused,
        output_tokens: s.output_tokens,
        output_tok_per_s: s.output_tok_per_s,
        ttft_ms_p50: s.ttft_ms.as_ref().map(|p| p.p50),
        ttft_ms_p99: s.ttft_ms.as_ref().map(|p| p.p99),
        tpot_ms_p50: s.tpot_ms.as_ref().map(|p| p.p50),
        tpot_ms_p99: s.tpot_ms.as_ref().map(|p| p.p99),
        peak_running: s.peak_running,
        mean_running: s.mean_running,
        preemptions: s.preemptions,
        peak_kv_reserved_bytes: s.peak_bytes_reserved,
        peak_kv_used_bytes: s.peak_bytes_used,
    })
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
