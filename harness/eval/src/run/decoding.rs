//! A decoding technique's speed in a run: the row's weights generating on real prompts
//! (spec-bench's prose, code and summarization set, or a prompt file), plainly and with the
//! technique, with the same KV cache, token for token compared; per prompt type, with the
//! acceptance and cost figures that explain the speedup (or its absence) and Leviathan et al.'s
//! predicted speedup beside it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use crate::error::{Context, Result};
use effbench_core::decode::{
    DecodingStrategy, GenerateOutput, GenerateRequest, Greedy, PlainDecoding, TemperatureTopP,
};
use effbench_core::timing::percentile;
use effbench_core::{KvCacheBuilder, KvShape, LoadedModel, LogitsFor, Model, SeqChunk};
use effbench_report::schema::{DecodingKind, DecodingReport, SuiteCheck};
use effbench_speculative::{
    prompts, speedup_theory, KSchedule, Picker, SpecStats, SpecTechnique, SpeculativeDecoding,
};

use crate::draft::{build_draft, decode_seconds};
use crate::WeightsArg;

/// What a decoding row is timed on, and how tokens are picked.
#[derive(Clone, Debug)]
pub struct DecodingConfig {
    /// Prompt types, in order: prose, code, summarization, or a prompt file's own.
    pub kinds: Vec<String>,
    /// Prompts of each type (0: all in the file).
    pub per_type: usize,
    /// A JSONL prompt file ({"type", "id", "prompt"} per line) instead of the built-in one.
    pub prompt_file: Option<PathBuf>,
    /// 0 is greedy (output identical to plain greedy); above 0 samples with the rejection rule.
    pub temperature: f32,
    pub top_p: f32,
    pub seed: u64,
}

impl Default for DecodingConfig {
    /// One prompt of each built-in type, greedy: what a run times a decoding row on.
    fn default() -> Self {
        Self {
            kinds: prompts::KINDS.iter().map(|k| k.to_string()).collect(),
            per_type: 1,
            prompt_file: None,
            temperature: 0.0,
            top_p: 1.0,
            seed: 0,
        }
    }
}

impl DecodingConfig {
    fn greedy(&self) -> bool {
        self.temperature <= 0.0
    }

    fn sampling(&self) -> Option<String> {
        (!self.greedy()).then(|| {
            format!(
                "temperature {}, top-p {}, seed {}",
                self.temperature, self.top_p, self.seed
            )
        })
    }

    fn prompts(&self) -> Result<Vec<prompts::Prompt>> {
        let all = match &self.prompt_file {
            Some(p) => prompts::parse(
                &std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
            )
            .with_context(|| format!("reading {}", p.display()))?,
            None => prompts::parse(prompts::BUILTIN)?,
        };
        Ok(prompts::select(&all, &self.kinds, self.per_type)?)
    }
}

/// What the measurement gives the row: the comparison, and the per-prompt speculative decode
/// speeds (the row's decode samples).
pub struct Measured {
    pub report: DecodingReport,
    pub spec_samples: Vec<f64>,
    pub spec_tokens: usize,
}

/// One prompt's plain and speculative generations.
struct PromptRun {
    kind: String,
    plain_tokens: usize,
    /// Plain decoding's seconds, the mean of a run before and one after the speculative one.
    plain_seconds: f64,
    spec_tokens: usize,
    spec_seconds: f64,
    identical: bool,
    stats: SpecStats,
}

/// Times `technique` against plain decoding of the same weights and KV cache on the config's
/// prompts, `max_tokens` new tokens each. A draft model loads as stored.
pub fn measure(
    target: &LoadedModel,
    technique: &SpecTechnique,
    kv: &dyn KvCacheBuilder,
    max_tokens: usize,
    config: &DecodingConfig,
) -> Result<Measured> {
    let chosen = config.prompts()?;
    let encoded: Vec<(prompts::Prompt, Vec<u32>)> = chosen
        .into_iter()
        .map(|p| {
            let ids = target.encode(&prompts::chat_text(&target.tokenizer, &p.prompt))?;
            Ok((p, ids))
        })
        .collect::<Result<_>>()?;
    let kmax = technique.k.max_k();
    let capacity = encoded.iter().map(|e| e.1.len()).max().unwrap_or(0) + max_tokens + kmax + 2;
    let draft = build_draft(&technique.draft, target, WeightsArg::AsStored, capacity)?;
    let shape = KvShape::of(target.model.config());
    let device = target.model.device();
    let request = |ids: &[u32]| GenerateRequest {
        seq: 0,
        prompt: ids.to_vec(),
        max_new_tokens: max_tokens,
        stop_tokens: target.stop_tokens(),
        prefill_chunk: 0,
    };
    let plain = |ids: &[u32]| -> Result<GenerateOutput> {
        let mut cache = kv.build(shape, capacity, 1, device)?;
        let mut strategy: Box<dyn DecodingStrategy> = if config.greedy() {
            Box::new(PlainDecoding::new(Greedy))
        } else {
            Box::new(PlainDecoding::new(TemperatureTopP::new(
                config.temperature,
                config.top_p,
                config.seed,
            )))
        };
        Ok(strategy.generate(&target.model, cache.as_mut(), &request(ids), &mut |_| {})?)
    };
    // Warm-up: page the weights in and start the thread pool before anything is timed.
    plain(&encoded[0].1[..encoded[0].1.len().min(16)])?;
    let verify_cost_ms = forward_cost_curve(&target.model, kv, &encoded[0].1, kmax + 1, capacity)?;

    let mut runs = Vec::new();
    let mut mismatched = Vec::new();
    let mut spec_samples = Vec::new();
    for (p, ids) in &encoded {
        // Plain decoding before and after, averaged, so drift in machine load hits both sides.
        let before = plain(ids)?;
        let mut strategy = SpeculativeDecoding::new(
            (draft.make)(),
            Picker::sampling(config.temperature, config.top_p, config.seed),
            technique.k,
        );
        let mut cache = kv.build(shape, capacity, 1, device)?;
        let out = strategy.generate(&target.model, cache.as_mut(), &request(ids), &mut |_| {})?;
        let after = plain(ids)?;
        let identical = out.tokens == before.tokens;
        if !identical {
            mismatched.push(p.id.clone());
        }
        let decoded = out.tokens.len().saturating_sub(1);
        let seconds = decode_seconds(&out);
        eprintln!(
            "  {} {}: {:.1} tok/s decode speculative, {:.1} plain, acceptance {}",
            p.id,
            draft.label,
            decoded as f64 / seconds.max(1e-9),
            before.tokens.len().saturating_sub(1) as f64 / decode_seconds(&before).max(1e-9),
            strategy
                .stats()
                .acceptance_rate()
                .map_or("-".into(), |a| format!("{a:.2}"))
        );
        spec_samples.push(decoded as f64 / seconds.max(1e-9));
        runs.push(PromptRun {
            kind: p.kind.clone(),
            plain_tokens: before.tokens.len().saturating_sub(1),
            plain_seconds: (decode_seconds(&before) + decode_seconds(&after)) / 2.0,
            spec_tokens: decoded,
            spec_seconds: seconds,
            identical,
            stats: strategy.stats().clone(),
        });
    }
    let all: Vec<&PromptRun> = runs.iter().collect();
    let total = summarize("all", &all, technique.k);
    let mut by_kind: BTreeMap<&str, Vec<&PromptRun>> = BTreeMap::new();
    for r in &runs {
        by_kind.entry(r.kind.as_str()).or_default().push(r);
    }
    // In the order the types were asked for, not alphabetical.
    let per_kind = config
        .kinds
        .iter()
        .filter_map(|k| {
            by_kind
                .get(k.as_str())
                .map(|rs| summarize(k, rs, technique.k))
        })
        .collect();
    let mut stats = SpecStats::default();
    for r in &runs {
        stats.add(&r.stats);
    }
    let k = match technique.k {
        KSchedule::Fixed(k) => k.to_string(),
        KSchedule::Adaptive { max } => format!(
            "adaptive<={max} (mean {:.1})",
            stats.k_requested as f64 / stats.target_steps.max(1) as f64
        ),
    };
    let mut counts: Vec<(String, usize)> = Vec::new();
    for r in &runs {
        match counts.iter_mut().find(|(k, _)| *k == r.kind) {
            Some((_, n)) => *n += 1,
            None => counts.push((r.kind.clone(), 1)),
        }
    }
    Ok(Measured {
        report: DecodingReport {
            draft: draft.label.clone(),
            k,
            prompts: counts
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect::<Vec<_>>()
                .join(", "),
            max_tokens,
            plain_tok_per_s: total.plain_tok_per_s,
            spec_tok_per_s: total.spec_tok_per_s,
            speedup: total.speedup,
            acceptance_rate: total.acceptance_rate,
            accepted_per_step: total.accepted_per_step,
            identical: total.identical,
            compared: runs.len(),
            mismatched,
            quality_from: None,
            suite_check: None,
            sampling: config.sampling(),
            per_kind,
            verify_cost_ms,
        },
        spec_tokens: runs.iter().map(|r| r.spec_tokens).sum(),
        spec_samples,
    })
}

/// The figures of a set of prompts' runs, summed over them.
fn summarize(kind: &str, runs: &[&PromptRun], schedule: KSchedule) -> DecodingKind {
    let mut stats = SpecStats::default();
    for r in runs {
        stats.add(&r.stats);
    }
    let plain_tokens: usize = runs.iter().map(|r| r.plain_tokens).sum();
    let plain_seconds: f64 = runs.iter().map(|r| r.plain_seconds).sum();
    let spec_tokens: usize = runs.iter().map(|r| r.spec_tokens).sum();
    let spec_seconds: f64 = runs.iter().map(|r| r.spec_seconds).sum();
    let plain_tpot = plain_seconds / plain_tokens.max(1) as f64;
    let spec_tpot = spec_seconds / spec_tokens.max(1) as f64;
    let cost_ratio = stats.draft_seconds_per_token().map(|s| s / plain_tpot);
    let verify_ratio = stats.verify_seconds_per_step().map(|s| s / plain_tpot);
    // Adaptive k has no one k: the theory is asked at the mean it chose.
    let k = match schedule {
        KSchedule::Fixed(k) => k,
        KSchedule::Adaptive { .. } => {
            let mean = stats.k_requested as f64 / stats.target_steps.max(1) as f64;
            mean.round().max(1.0) as usize
        }
    };
    let alpha = stats.acceptance_rate();
    let theory = alpha.zip(cost_ratio).map(|(a, c)| speedup_theory(a, k, c));
    DecodingKind {
        kind: kind.to_string(),
        prompts: runs.len(),
        acceptance_rate: alpha,
        accepted_per_step: stats.accepted_per_step(),
        tokens_per_step: stats.tokens_per_step(),
        cost_ratio,
        verify_ratio,
        plain_tok_per_s: 1.0 / plain_tpot.max(1e-12),
        spec_tok_per_s: 1.0 / spec_tpot.max(1e-12),
        speedup: plain_tpot / spec_tpot.max(1e-12),
        theoretical_speedup: theory,
        // One target step costs 1 in the theory's denominator; the measured verification
        // pass costs `v` instead.
        theory_with_measured_verify: match (theory, cost_ratio, verify_ratio) {
            (Some(t), Some(c), Some(v)) => Some(t * (k as f64 * c + 1.0) / (k as f64 * c + v)),
            _ => None,
        },
        identical: runs.iter().filter(|r| r.identical).count(),
    }
}

/// Median milliseconds of a forward pass over m = 1..=max_m new tokens after `prompt`, in the
/// row's KV cache, rolled back after each pass.
fn forward_cost_curve(
    model: &Model,
    kv: &dyn KvCacheBuilder,
    prompt: &[u32],
    max_m: usize,
    capacity: usize,
) -> Result<Vec<(usize, f64)>> {
    let mut cache = kv.build(KvShape::of(model.config()), capacity, 1, model.device())?;
    model.forward(
        &[SeqChunk::new(0, prompt.to_vec(), LogitsFor::None)],
        cache.as_mut(),
    )?;
    // The pass sizes take turns, after one untimed round: timed one size after another, the
    // first size timed (m = 1) read above m = 2 on the packed int4 format, while the machine
    // and the weights' pages were still settling.
    const TIMED_ROUNDS: usize = 5;
    let mut samples = vec![Vec::with_capacity(TIMED_ROUNDS); max_m];
    for round in 0..=TIMED_ROUNDS {
        for (i, m) in (1..=max_m).enumerate() {
            let tokens: Vec<u32> = prompt.iter().copied().cycle().take(m).collect();
            let t = Instant::now();
            model.forward(&[SeqChunk::new(0, tokens, LogitsFor::All)], cache.as_mut())?;
            let ms = t.elapsed().as_secs_f64() * 1e3;
            cache.truncate(0, prompt.len())?;
            if round > 0 {
                samples[i].push(ms);
            }
        }
    }
    Ok(samples
        .iter()
        .enumerate()
        .map(|(i, s)| (i + 1, percentile(s, 50.0).unwrap_or(0.0)))
        .collect())
}

/// One problem of a generative suite and the answer the suite scored for it.
pub struct ScoredAnswer<'a> {
    pub id: &'a str,
    pub prompt: Vec<u32>,
    /// Every token generated, the one that ended the answer included.
    pub tokens: &'a [u32],
}

/// Generates each answer again with the row's weights and KV cache, plainly and with
/// `technique`'s draft, one stream each and as many tokens as the scored answer has (so the
/// check costs no more than the answers did), and compares the outputs token for token.
pub fn check_answers(
    suite: &str,
    target: &LoadedModel,
    technique: &SpecTechnique,
    kv: &dyn KvCacheBuilder,
    answers: &[ScoredAnswer],
) -> Result<SuiteCheck> {
    let capacity = answers
        .iter()
        .map(|a| a.prompt.len() + a.tokens.len())
        .max()
        .unwrap_or(0)
        + technique.k.max_k()
        + 2;
    let draft = build_draft(&technique.draft, target, WeightsArg::AsStored, capacity)?;
    let request = |answer: &ScoredAnswer| GenerateRequest {
        seq: 0,
        prompt: answer.prompt.clone(),
        max_new_tokens: answer.tokens.len(),
        stop_tokens: target.stop_tokens(),
        prefill_chunk: 0,
    };
    let cache = || {
        kv.build(
            KvShape::of(target.model.config()),
            capacity,
            1,
            target.model.device(),
        )
    };
    let mut stats = SpecStats::default();
    let (mut plain_tokens, mut plain_seconds) = (0usize, 0.0f64);
    let (mut spec_tokens, mut spec_seconds) = (0usize, 0.0f64);
    let (mut mismatched, mut same_as_scored) = (Vec::new(), 0);
    for answer in answers {
        let plain = PlainDecoding::new(Greedy).generate(
            &target.model,
            cache()?.as_mut(),
            &request(answer),
            &mut |_| {},
        )?;
        let mut strategy =
            SpeculativeDecoding::new((draft.make)(), Picker::sampling(0.0, 1.0, 0), technique.k);
        let spec = strategy.generate(
            &target.model,
            cache()?.as_mut(),
            &request(answer),
            &mut |_| {},
        )?;
        let identical = spec.tokens == plain.tokens;
        if !identical {
            mismatched.push(answer.id.to_string());
        }
        let scored = plain.tokens == answer.tokens;
        same_as_scored += usize::from(scored);
        eprintln!(
            "  {} {}: speculative {} plain decoding, which {} the scored (batched) answer",
            answer.id,
            draft.label,
            if identical { "equals" } else { "DIFFERS from" },
            if scored { "equals" } else { "differs from" },
        );
        plain_tokens += plain.tokens.len().saturating_sub(1);
        plain_seconds += decode_seconds(&plain);
        spec_tokens += spec.tokens.len().saturating_sub(1);
        spec_seconds += decode_seconds(&spec);
        stats.add(strategy.stats());
    }
    Ok(SuiteCheck {
        suite: suite.to_string(),
        compared: answers.len(),
        identical: answers.len() - mismatched.len(),
        mismatched,
        same_as_scored,
        plain_tok_per_s: plain_tokens as f64 / plain_seconds.max(1e-9),
        spec_tok_per_s: spec_tokens as f64 / spec_seconds.max(1e-9),
        acceptance_rate: stats.acceptance_rate(),
    })
}
