//! `effbench spec-bench`: speculative decoding against plain decoding of the same target with
//! the same KV cache, per draft, k and prompt type, with the acceptance and cost figures that
//! explain the speedup (or its absence) and Leviathan et al.'s predicted speedup beside it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use effbench_core::decode::{
    DecodingStrategy, GenerateOutput, GenerateRequest, Greedy, PlainDecoding, TemperatureTopP,
};
use effbench_core::timing::percentile;
use effbench_core::{ContiguousKvCache, KvCache, KvShape, LogitsFor, Model, SeqChunk};
use effbench_eval::draft::{build_draft, decode_seconds, NamedDraft};
use effbench_speculative::{
    prompts, speedup_theory, DraftSpec, KSchedule, Picker, SpecStats, SpeculativeDecoding,
};
use serde::Serialize;
use tabled::{builder::Builder, settings::Style};

use crate::common::{load_model, ModelArgs};

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
    /// New tokens per generation.
    #[arg(long, short = 'n', default_value_t = 128)]
    max_tokens: usize,
    /// 0 is greedy (output identical to plain greedy); above 0 samples with the rejection rule.
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Directory for results.md and results.json.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

/// Plain decoding of one prompt: the baseline every speculative run of it is compared with.
#[derive(Serialize, Clone)]
struct PlainRecord {
    prompt_id: String,
    kind: String,
    prompt_tokens: usize,
    output_tokens: usize,
    ttft_ms: f64,
    decode_seconds: f64,
}

#[derive(Serialize, Clone)]
struct SpecRecord {
    prompt_id: String,
    kind: String,
    draft: String,
    k: String,
    output_tokens: usize,
    ttft_ms: f64,
    decode_seconds: f64,
    identical_to_plain: bool,
    stats: SpecStats,
}

/// One row of the table: a draft and k on one prompt type, summed over its prompts.
#[derive(Serialize)]
struct Row {
    kind: String,
    draft: String,
    k: String,
    acceptance_rate: Option<f64>,
    accepted_per_step: Option<f64>,
    tokens_per_step: Option<f64>,
    /// Drafting time per drafted token / plain decoding time per token.
    cost_ratio: Option<f64>,
    /// Verification pass time / plain decoding time per token.
    verify_ratio: Option<f64>,
    plain_tpot_ms: f64,
    spec_tpot_ms: f64,
    plain_tok_per_s: f64,
    spec_tok_per_s: f64,
    speedup: f64,
    theoretical_speedup: Option<f64>,
    /// The same expectation with the measured verification cost in place of one target step:
    /// tokens per step (1-α^(k+1))/(1-α) over k·c + verify/target.
    theory_with_measured_verify: Option<f64>,
    identical: String,
}

#[derive(Serialize)]
struct Report {
    target: String,
    variant: String,
    threads: usize,
    max_tokens: usize,
    temperature: f32,
    top_p: f32,
    command: Vec<String>,
    git_commit: String,
    git_dirty: Option<bool>,
    hardware_cpu: String,
    rows: Vec<Row>,
    /// Median time of one target forward pass over m new tokens (all logits), after the first
    /// prompt: what verifying m-1 drafted tokens costs next to decoding one.
    verify_cost_ms: Vec<(usize, f64)>,
    plain: Vec<PlainRecord>,
    speculative: Vec<SpecRecord>,
}

pub fn run(args: SpecBenchArgs) -> Result<()> {
    if args.k.is_empty() || args.k.contains(&0) {
        bail!("--k needs counts of at least 1 (e.g. --k 2,4,8)");
    }
    if args.max_tokens < 2 {
        bail!("-n must be at least 2: decode speed is measured after the first token");
    }
    let specs: Vec<DraftSpec> = args
        .draft
        .iter()
        .map(|d| d.parse())
        .collect::<Result<_, _>>()?;
    let all = match &args.prompt_file {
        Some(p) => prompts::parse(
            &std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
        )?,
        None => prompts::parse(prompts::BUILTIN)?,
    };
    let chosen = prompts::select(&all, &args.prompts, args.per_type)?;

    let session = load_model(&args.model)?;
    let target = &session.loaded;
    let encoded: Vec<(prompts::Prompt, Vec<u32>)> = chosen
        .into_iter()
        .map(|p| {
            let ids = target.encode(&prompts::chat_text(&target.tokenizer, &p.prompt))?;
            Ok((p, ids))
        })
        .collect::<Result<_>>()?;
    let kmax = *args.k.iter().max().expect("k is not empty");
    let capacity =
        encoded.iter().map(|e| e.1.len()).max().unwrap_or(0) + args.max_tokens + kmax + 2;
    let drafts: Vec<NamedDraft> = specs
        .iter()
        .map(|s| build_draft(s, target, args.model.weights, capacity))
        .collect::<Result<_>>()?;
    let mut schedules: Vec<(String, KSchedule)> = args
        .k
        .iter()
        .map(|&k| (k.to_string(), KSchedule::Fixed(k)))
        .collect();
    if args.adaptive {
        schedules.push((
            format!("adaptive<={kmax}"),
            KSchedule::Adaptive { max: kmax },
        ));
    }
    let picker = || Picker::sampling(args.temperature, args.top_p, args.seed);
    let new_cache = || {
        ContiguousKvCache::new(
            KvShape::of(target.model.config()),
            capacity,
            target.model.device(),
        )
    };
    let request = |ids: &[u32]| GenerateRequest {
        seq: 0,
        prompt: ids.to_vec(),
        max_new_tokens: args.max_tokens,
        stop_tokens: target.stop_tokens(),
        prefill_chunk: 0,
    };
    let plain_generate = |ids: &[u32]| -> Result<GenerateOutput> {
        let mut strategy: Box<dyn DecodingStrategy> = if args.temperature > 0.0 {
            Box::new(PlainDecoding::new(TemperatureTopP::new(
                args.temperature,
                args.top_p,
                args.seed,
            )))
        } else {
            Box::new(PlainDecoding::new(Greedy))
        };
        Ok(strategy.generate(&target.model, &mut new_cache(), &request(ids), &mut |_| {})?)
    };

    // Warm-up: page the weights in and start the thread pool before anything is timed.
    plain_generate(&encoded[0].1[..encoded[0].1.len().min(16)])?;
    let verify_cost_ms = forward_cost_curve(&target.model, &encoded[0].1, kmax + 1, capacity)?;
    let total = encoded.len() * (2 + drafts.len() * schedules.len());
    let mut done = 0;
    let mut plain_records = Vec::new();
    let mut spec_records = Vec::new();
    for (p, ids) in &encoded {
        // Plain decoding before and after the speculative runs of the prompt, averaged, so
        // drift in machine load over the prompt's runs hits both sides alike.
        let before = plain_generate(ids)?;
        done += 1;
        let mut outs = Vec::new();
        for d in &drafts {
            for (k_label, schedule) in &schedules {
                let mut strategy = SpeculativeDecoding::new((d.make)(), picker(), *schedule);
                let out = strategy.generate(
                    &target.model,
                    &mut new_cache(),
                    &request(ids),
                    &mut |_| {},
                )?;
                done += 1;
                eprintln!(
                    "[{done}/{total}] {} {} k={k_label}: {:.1} tok/s decode, acceptance {}",
                    p.id,
                    d.label,
                    (out.tokens.len().saturating_sub(1)) as f64 / decode_seconds(&out).max(1e-9),
                    strategy
                        .stats()
                        .acceptance_rate()
                        .map_or("-".into(), |a| format!("{a:.2}"))
                );
                outs.push((
                    d.label.clone(),
                    k_label.clone(),
                    out,
                    strategy.stats().clone(),
                ));
            }
        }
        let after = plain_generate(ids)?;
        done += 1;
        let plain_tokens = before.tokens.clone();
        let plain_decode = (decode_seconds(&before) + decode_seconds(&after)) / 2.0;
        let m = before.trace.metrics();
        eprintln!(
            "[{done}/{total}] {} plain: {:.1} tok/s decode (runs before/after: {:.2}s, {:.2}s)",
            p.id,
            (plain_tokens.len().saturating_sub(1)) as f64 / plain_decode.max(1e-9),
            decode_seconds(&before),
            decode_seconds(&after)
        );
        plain_records.push(PlainRecord {
            prompt_id: p.id.clone(),
            kind: p.kind.clone(),
            prompt_tokens: ids.len(),
            output_tokens: plain_tokens.len(),
            ttft_ms: m.ttft_ms.unwrap_or(0.0),
            decode_seconds: plain_decode,
        });
        for (draft, k, out, stats) in outs {
            spec_records.push(SpecRecord {
                prompt_id: p.id.clone(),
                kind: p.kind.clone(),
                draft,
                k,
                output_tokens: out.tokens.len(),
                ttft_ms: out.trace.metrics().ttft_ms.unwrap_or(0.0),
                decode_seconds: decode_seconds(&out),
                identical_to_plain: out.tokens == plain_tokens,
                stats,
            });
        }
    }

    let rows = summarize(&args, &drafts, &schedules, &plain_records, &spec_records);
    let report = Report {
        target: session.loaded.path.display().to_string(),
        variant: target.model.label().to_string(),
        threads: session.threads,
        max_tokens: args.max_tokens,
        temperature: args.temperature,
        top_p: args.top_p,
        command: std::env::args().collect(),
        git_commit: crate::common::GIT_COMMIT.into(),
        git_dirty: crate::common::git_dirty(),
        hardware_cpu: effbench_hw::detect().cpu.brand,
        rows,
        verify_cost_ms,
        plain: plain_records,
        speculative: spec_records,
    };
    let md = markdown(&report);
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::write(dir.join("results.md"), &md)?;
        std::fs::write(
            dir.join("results.json"),
            serde_json::to_string_pretty(&report)?,
        )?;
        eprintln!("wrote {}/results.{{md,json}}", dir.display());
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{md}");
    }
    Ok(())
}

/// Median milliseconds of a forward pass over m = 1..=max_m new tokens after `prompt`.
fn forward_cost_curve(
    model: &Model,
    prompt: &[u32],
    max_m: usize,
    capacity: usize,
) -> Result<Vec<(usize, f64)>> {
    let mut cache = ContiguousKvCache::new(KvShape::of(model.config()), capacity, model.device());
    model.forward(
        &[SeqChunk::new(0, prompt.to_vec(), LogitsFor::None)],
        &mut cache,
    )?;
    let mut curve = Vec::new();
    for m in 1..=max_m {
        let tokens: Vec<u32> = prompt.iter().copied().cycle().take(m).collect();
        let mut samples = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            model.forward(
                &[SeqChunk::new(0, tokens.clone(), LogitsFor::All)],
                &mut cache,
            )?;
            samples.push(t.elapsed().as_secs_f64() * 1e3);
            cache.truncate(0, prompt.len())?;
        }
        curve.push((m, percentile(&samples, 50.0).unwrap_or(0.0)));
    }
    Ok(curve)
}

fn summarize(
    args: &SpecBenchArgs,
    drafts: &[NamedDraft],
    schedules: &[(String, KSchedule)],
    plain: &[PlainRecord],
    spec: &[SpecRecord],
) -> Vec<Row> {
    let mut rows = Vec::new();
    for kind in &args.prompts {
        let plains: BTreeMap<&str, &PlainRecord> = plain
            .iter()
            .filter(|p| &p.kind == kind)
            .map(|p| (p.prompt_id.as_str(), p))
            .collect();
        let plain_tokens: usize = plains
            .values()
            .map(|p| p.output_tokens.saturating_sub(1))
            .sum();
        let plain_seconds: f64 = plains.values().map(|p| p.decode_seconds).sum();
        let plain_tpot = plain_seconds / plain_tokens.max(1) as f64;
        for d in drafts {
            for (k_label, schedule) in schedules {
                let runs: Vec<&SpecRecord> = spec
                    .iter()
                    .filter(|r| &r.kind == kind && r.draft == d.label && &r.k == k_label)
                    .collect();
                if runs.is_empty() {
                    continue;
                }
                let mut stats = SpecStats::default();
                for r in &runs {
                    stats.add(&r.stats);
                }
                let tokens: usize = runs.iter().map(|r| r.output_tokens.saturating_sub(1)).sum();
                let seconds: f64 = runs.iter().map(|r| r.decode_seconds).sum();
                let spec_tpot = seconds / tokens.max(1) as f64;
                let cost_ratio = stats.draft_seconds_per_token().map(|s| s / plain_tpot);
                let verify_ratio = stats.verify_seconds_per_step().map(|s| s / plain_tpot);
                let k_mean = stats.k_requested as f64 / stats.target_steps.max(1) as f64;
                let k_for_theory = match schedule {
                    KSchedule::Fixed(k) => *k,
                    KSchedule::Adaptive { .. } => k_mean.round().max(1.0) as usize,
                };
                let identical = runs.iter().filter(|r| r.identical_to_plain).count();
                rows.push(Row {
                    kind: kind.clone(),
                    draft: d.label.clone(),
                    k: if matches!(schedule, KSchedule::Adaptive { .. }) {
                        format!("{k_label} (mean {k_mean:.1})")
                    } else {
                        k_label.clone()
                    },
                    acceptance_rate: stats.acceptance_rate(),
                    accepted_per_step: stats.accepted_per_step(),
                    tokens_per_step: stats.tokens_per_step(),
                    cost_ratio,
                    verify_ratio,
                    plain_tpot_ms: plain_tpot * 1e3,
                    spec_tpot_ms: spec_tpot * 1e3,
                    plain_tok_per_s: 1.0 / plain_tpot,
                    spec_tok_per_s: 1.0 / spec_tpot,
                    speedup: plain_tpot / spec_tpot,
                    theoretical_speedup: match (stats.acceptance_rate(), cost_ratio) {
                        (Some(a), Some(c)) => Some(speedup_theory(a, k_for_theory, c)),
                        _ => None,
                    },
                    theory_with_measured_verify: match (
                        stats.acceptance_rate(),
                        cost_ratio,
                        verify_ratio,
                    ) {
                        (Some(a), Some(c), Some(v)) => Some(
                            speedup_theory(a, k_for_theory, c) * (k_for_theory as f64 * c + 1.0)
                                / (k_for_theory as f64 * c + v),
                        ),
                        _ => None,
                    },
                    identical: format!("{identical}/{}", runs.len()),
                });
            }
        }
    }
    rows
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".into(), |v| format!("{v:.digits$}"))
}

fn markdown(r: &Report) -> String {
    let mut b = Builder::default();
    b.push_record([
        "prompts",
        "draft",
        "k",
        "α (accept)",
        "accepted/step",
        "c (draft/target)",
        "verify/target",
        "plain TPOT ms",
        "spec TPOT ms",
        "plain tok/s",
        "spec tok/s",
        "speedup",
        "theory",
        "theory (measured verify)",
        "same output",
    ]);
    for row in &r.rows {
        b.push_record([
            row.kind.clone(),
            row.draft.clone(),
            row.k.clone(),
            opt(row.acceptance_rate, 2),
            opt(row.accepted_per_step, 2),
            opt(row.cost_ratio, 3),
            opt(row.verify_ratio, 2),
            format!("{:.1}", row.plain_tpot_ms),
            format!("{:.1}", row.spec_tpot_ms),
            format!("{:.1}", row.plain_tok_per_s),
            format!("{:.1}", row.spec_tok_per_s),
            format!("{:.2}x", row.speedup),
            row.theoretical_speedup
                .map_or("-".into(), |t| format!("{t:.2}x")),
            row.theory_with_measured_verify
                .map_or("-".into(), |t| format!("{t:.2}x")),
            row.identical.clone(),
        ]);
    }
    let mode = if r.temperature > 0.0 {
        format!(
            "sampling (temperature {}, top-p {})",
            r.temperature, r.top_p
        )
    } else {
        "greedy".to_string()
    };
    format!(
        "Target {} ({}), {} threads on {}, {} new tokens per prompt, {mode}.\n\n{}\n",
        r.target,
        r.variant,
        r.threads,
        r.hardware_cpu,
        r.max_tokens,
        b.build().with(Style::markdown())
    ) + &curve_markdown(&r.verify_cost_ms)
}

fn curve_markdown(curve: &[(usize, f64)]) -> String {
    let one = curve.first().map_or(1.0, |c| c.1);
    let mut b = Builder::default();
    b.push_record(["tokens per target pass", "ms (median of 5)", "x one token"]);
    for (m, ms) in curve {
        b.push_record([
            m.to_string(),
            format!("{ms:.1}"),
            format!("{:.2}", ms / one),
        ]);
    }
    format!(
        "\nCost of one target forward pass by tokens scored (verifying k drafts scores k+1):\n\n{}\n",
        b.build().with(Style::markdown())
    )
}
