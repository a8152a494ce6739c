//! A decoding technique's speed in a run: the row's weights generating greedily on real
//! prompts (spec-bench's prose, code and summarization set), plainly and with the technique,
//! with the same KV cache, token for token compared.

use anyhow::Result;
use effbench_core::decode::{
    DecodingStrategy, GenerateOutput, GenerateRequest, Greedy, PlainDecoding,
};
use effbench_core::{KvCacheBuilder, KvShape, LoadedModel};
use effbench_report::schema::{DecodingReport, SuiteCheck};
use effbench_speculative::{
    prompts, KSchedule, Picker, SpecStats, SpecTechnique, SpeculativeDecoding,
};

use crate::draft::{build_draft, decode_seconds};
use crate::WeightsArg;

/// Prompts of each type the run times: spec-bench's default types, one each.
const PER_TYPE: usize = 1;

/// What the measurement gives the row: the comparison, and the per-prompt speculative decode
/// speeds (the row's decode samples).
pub struct Measured {
    pub report: DecodingReport,
    pub spec_samples: Vec<f64>,
    pub spec_tokens: usize,
}

/// Times `technique` against plain greedy decoding of the same weights and KV cache on the
/// built-in prompts, `max_tokens` new tokens each. A draft model loads as stored.
pub fn measure(
    target: &LoadedModel,
    technique: &SpecTechnique,
    kv: &dyn KvCacheBuilder,
    max_tokens: usize,
) -> Result<Measured> {
    let all = prompts::parse(prompts::BUILTIN)?;
    let kinds: Vec<String> = prompts::KINDS.iter().map(|k| k.to_string()).collect();
    let chosen = prompts::select(&all, &kinds, PER_TYPE)?;
    let encoded: Vec<(prompts::Prompt, Vec<u32>)> = chosen
        .into_iter()
        .map(|p| {
            let ids = target.encode(&prompts::chat_text(&target.tokenizer, &p.prompt))?;
            Ok((p, ids))
        })
        .collect::<Result<_>>()?;
    let kmax = match technique.k {
        KSchedule::Fixed(k) => k,
        KSchedule::Adaptive { max } => max,
    };
    let capacity = encoded.iter().map(|e| e.1.len()).max().unwrap_or(0) + max_tokens + kmax + 2;
    let draft = build_draft(&technique.draft, target, WeightsArg::AsStored, capacity)?;
    let request = |ids: &[u32]| GenerateRequest {
        seq: 0,
        prompt: ids.to_vec(),
        max_new_tokens: max_tokens,
        stop_tokens: target.stop_tokens(),
        prefill_chunk: 0,
    };
    let plain = |ids: &[u32]| -> Result<GenerateOutput> {
        let mut cache = kv.build(
            KvShape::of(target.model.config()),
            capacity,
            1,
            target.model.device(),
        )?;
        Ok(PlainDecoding::new(Greedy).generate(
            &target.model,
            cache.as_mut(),
            &request(ids),
            &mut |_| {},
        )?)
    };
    // Warm-up: page the weights in and start the thread pool before anything is timed.
    plain(&encoded[0].1[..encoded[0].1.len().min(16)])?;

    let mut stats = SpecStats::default();
    let (mut plain_tokens, mut plain_seconds) = (0usize, 0.0f64);
    let (mut spec_tokens, mut spec_seconds) = (0usize, 0.0f64);
    let mut spec_samples = Vec::new();
    let mut mismatched = Vec::new();
    for (p, ids) in &encoded {
        // Plain decoding before and after, averaged, so drift in machine load hits both sides.
        let before = plain(ids)?;
        let mut strategy =
            SpeculativeDecoding::new((draft.make)(), Picker::sampling(0.0, 1.0, 0), technique.k);
        let mut cache = kv.build(
            KvShape::of(target.model.config()),
            capacity,
            1,
            target.model.device(),
        )?;
        let out = strategy.generate(&target.model, cache.as_mut(), &request(ids), &mut |_| {})?;
        let after = plain(ids)?;
        if out.tokens != before.tokens {
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
        spec_tokens += decoded;
        spec_seconds += seconds;
        plain_tokens += before.tokens.len().saturating_sub(1);
        plain_seconds += (decode_seconds(&before) + decode_seconds(&after)) / 2.0;
        stats.add(strategy.stats());
    }
    let plain_tok_per_s = plain_tokens as f64 / plain_seconds.max(1e-9);
    let spec_tok_per_s = spec_tokens as f64 / spec_seconds.max(1e-9);
    let k = match technique.k {
        KSchedule::Fixed(k) => k.to_string(),
        KSchedule::Adaptive { max } => format!(
            "adaptive<={max} (mean {:.1})",
            stats.k_requested as f64 / stats.target_steps.max(1) as f64
        ),
    };
    Ok(Measured {
        report: DecodingReport {
            draft: draft.label.clone(),
            k,
            prompts: kinds
                .iter()
                .map(|k| format!("{k} {PER_TYPE}"))
                .collect::<Vec<_>>()
                .join(", "),
            max_tokens,
            plain_tok_per_s,
            spec_tok_per_s,
            speedup: spec_tok_per_s / plain_tok_per_s,
            acceptance_rate: stats.acceptance_rate(),
            accepted_per_step: stats.accepted_per_step(),
            identical: encoded.len() - mismatched.len(),
            compared: encoded.len(),
            mismatched,
            quality_from: None,
            suite_check: None,
        },
        spec_samples,
        spec_tokens,
    })
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
    let kmax = match technique.k {
        KSchedule::Fixed(k) => k,
        KSchedule::Adaptive { max } => max,
    };
    let capacity = answers
        .iter()
        .map(|a| a.prompt.len() + a.tokens.len())
        .max()
        .unwrap_or(0)
        + kmax
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
