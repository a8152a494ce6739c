//! Multiple-choice scoring by log-likelihood, as lm-evaluation-harness does for MMLU: the
//! model's log-probability of each continuation (" A", " B", ...) after the prompt; the most
//! likely one is the answer. The subject's shared prefix (description and few-shot exemplars) is
//! run once and its KV cache forked for every item (unless sharing is turned off, to measure what
//! it saves), and items are scored in batches. A paged cache shares the prefix's blocks; a
//! contiguous one copies its whole reservation per fork.

use crate::error::{Context, Result};
use effbench_core::model::{argmax, log_softmax, logits_rows};
use std::sync::Arc;

use effbench_core::{KvCacheBuilder, KvShape, KvUsage, LoadedModel, LogitsFor, SeqChunk};
use effbench_datasets::{McItem, McPrompt, ScoreNorm};
use serde::{Deserialize, Serialize};

pub use effbench_report::records::ItemRecord;

/// Which KV cache scores the items, and whether items share the subject prefix's KV.
#[derive(Debug, Clone)]
pub struct KvPlan {
    pub cache: Arc<dyn KvCacheBuilder>,
    pub share_prefix: bool,
}

impl KvPlan {
    /// As `kv-<technique>.json` records it.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "cache": self.cache.describe(), "share_prefix": self.share_prefix })
    }
}

/// KV memory and work over a run: the peak bytes the cache held, and the tokens run through the
/// model (the prefix once per subject with sharing, once per item without).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct KvStats {
    pub peak_bytes_reserved: usize,
    pub peak_bytes_used: usize,
    pub forward_tokens: usize,
}

impl KvStats {
    fn observe(&mut self, usage: KvUsage) {
        self.peak_bytes_reserved = self.peak_bytes_reserved.max(usage.bytes_reserved);
        self.peak_bytes_used = self.peak_bytes_used.max(usage.bytes_used);
    }
}

struct Prepared<'a> {
    item: &'a McItem,
    prompt: &'a McPrompt,
    /// Per distinct context, the tokens after the shared prefix (the whole context when it
    /// cannot be split there). One for most tasks; one per choice for WinoGrande.
    rests: Vec<Vec<u32>>,
    shares_prefix: bool,
    /// Per choice: which of `rests` it follows, and its tokens.
    continuations: Vec<(usize, Vec<u32>)>,
    context_tokens: usize,
}

/// Scores one subject's items: all share `prompts[i].shared_prefix`.
pub fn score_group(
    loaded: &LoadedModel,
    batch_size: usize,
    items: &[(&McItem, McPrompt)],
    kv: &KvPlan,
    stats: &mut KvStats,
    mut on_batch: impl FnMut(Vec<ItemRecord>) -> Result<()>,
) -> Result<()> {
    if items.is_empty() {
        return Ok(());
    }
    // What the items share is taken on token ids, not text: BPE merges across the end of the
    // exemplars (a trailing newline joins the next word), so the text prefix's own tokenization
    // is rarely a prefix of an item's. Each item shares the longest common prefix of its own
    // tokenization and the prefix text's, so every item still sees exactly the tokens it would
    // alone. That length depends on the item alone, never on which other items are scored with
    // it, so a resumed run or a shard computes each item exactly as a whole run does.
    let fulls = items
        .iter()
        .map(|(_, prompt)| Ok(loaded.encode(&prompt.context())?))
        .collect::<Result<Vec<Vec<u32>>>>()?;
    let prefix_text_ids = if kv.share_prefix {
        loaded.encode(&items[0].1.shared_prefix)?
    } else {
        Vec::new()
    };
    let mut by_shared_len: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
    for (i, full) in fulls.iter().enumerate() {
        let common = prefix_text_ids
            .iter()
            .zip(full)
            .take_while(|(a, b)| a == b)
            .count();
        // At least one token of each item runs after the prefix, to give its logits.
        let shared = common.min(full.len().saturating_sub(1));
        by_shared_len.entry(shared).or_default().push(i);
    }
    for (shared_len, members) in by_shared_len {
        let group_items: Vec<(&McItem, McPrompt)> = members
            .iter()
            .map(|&i| (items[i].0, items[i].1.clone()))
            .collect();
        let group_fulls: Vec<Vec<u32>> = members.iter().map(|&i| fulls[i].clone()).collect();
        score_sharing(
            loaded,
            batch_size,
            &group_items,
            group_fulls,
            shared_len,
            kv,
            stats,
            &mut on_batch,
        )?;
    }
    Ok(())
}

/// Scores items that share their first `shared_len` tokens: the prefix once, then each item's
/// rest on a fork of it.
#[allow(clippy::too_many_arguments)]
fn score_sharing(
    loaded: &LoadedModel,
    batch_size: usize,
    items: &[(&McItem, McPrompt)],
    fulls: Vec<Vec<u32>>,
    shared_len: usize,
    kv: &KvPlan,
    stats: &mut KvStats,
    on_batch: &mut impl FnMut(Vec<ItemRecord>) -> Result<()>,
) -> Result<()> {
    let prefix_ids = fulls[0][..shared_len].to_vec();
    let mut prepared = Vec::with_capacity(items.len());
    let mut longest = prefix_ids.len();
    for ((item, prompt), full) in items.iter().zip(fulls) {
        let shares_prefix = shared_len > 0;
        let mut contexts: Vec<(String, Vec<u32>)> = vec![(prompt.context(), full)];
        let mut continuations = Vec::with_capacity(prompt.continuations.len());
        for (c, cont) in prompt.continuations.iter().enumerate() {
            let context = prompt.context_for(c);
            let variant = match contexts.iter().position(|(text, _)| *text == context) {
                Some(v) => v,
                None => {
                    let ids = loaded.encode(&context)?;
                    crate::error::ensure!(
                        ids.starts_with(&prefix_ids),
                        "item {}: choice {c}'s context does not start with the shared prefix",
                        item.id
                    );
                    contexts.push((context.clone(), ids));
                    contexts.len() - 1
                }
            };
            let full = &contexts[variant].1;
            // lm-eval's split: encode(context + continuation) minus encode(context).
            let joined = loaded.encode(&format!("{context}{cont}"))?;
            let ids = if joined.len() > full.len() && joined.starts_with(full) {
                joined[full.len()..].to_vec()
            } else {
                loaded.tokenizer_ids_without_specials(cont)?
            };
            crate::error::ensure!(
                !ids.is_empty(),
                "continuation {cont:?} of item {} tokenizes to nothing",
                item.id
            );
            longest = longest.max(full.len() + ids.len());
            continuations.push((variant, ids));
        }
        prepared.push(Prepared {
            item,
            prompt,
            context_tokens: contexts[0].1.len(),
            rests: contexts
                .into_iter()
                .map(|(_, ids)| ids[shared_len..].to_vec())
                .collect(),
            shares_prefix,
            continuations,
        });
    }
    let most_contexts = prepared.iter().map(|p| p.rests.len()).max().unwrap_or(1);
    let most_forks = prepared
        .iter()
        .map(|p| {
            p.continuations
                .iter()
                .filter(|(_, ids)| ids.len() > 1)
                .count()
        })
        .max()
        .unwrap_or(0);

    let model = &loaded.model;
    let shape = KvShape::of(model.config());
    let batch_size = batch_size.max(1);
    // Live at once: the prefix, and for each item of a batch a sequence per context and a fork
    // per multi-token continuation.
    let mut cache = kv.cache.build(
        shape,
        longest,
        1 + batch_size * (most_contexts + most_forks),
        model.device(),
    )?;
    const PREFIX: u64 = 0;
    const FORKS: u64 = 1 << 32;
    if prepared.iter().any(|p| p.shares_prefix) {
        model.forward(
            &[SeqChunk::new(PREFIX, prefix_ids.clone(), LogitsFor::None)],
            cache.as_mut(),
        )?;
        stats.forward_tokens += prefix_ids.len();
        stats.observe(cache.usage());
    }

    for group in prepared.chunks(batch_size) {
        let mut chunks = Vec::new();
        // Each item's first chunk; its contexts' chunks follow in order.
        let mut first_chunk = Vec::with_capacity(group.len());
        for p in group {
            first_chunk.push(chunks.len());
            for rest in &p.rests {
                let seq = 1 + chunks.len() as u64;
                if p.shares_prefix {
                    cache.fork(PREFIX, seq)?;
                }
                chunks.push(SeqChunk::new(seq, rest.clone(), LogitsFor::Last));
            }
        }
        let out = model
            .forward(&chunks, cache.as_mut())
            .context("scoring a batch of items")?;
        stats.forward_tokens += chunks.iter().map(|c| c.tokens.len()).sum::<usize>();
        stats.observe(cache.usage());
        // Every multi-token continuation of the batch runs in one more pass, each on a fork of
        // its context: all but its last token, for the log-probability of each next one.
        let mut forks = Vec::new();
        for (p, &first) in group.iter().zip(&first_chunk) {
            for (variant, cont) in &p.continuations {
                if cont.len() > 1 {
                    let fork = FORKS + forks.len() as u64;
                    cache.fork(1 + (first + variant) as u64, fork)?;
                    forks.push(SeqChunk::new(
                        fork,
                        cont[..cont.len() - 1].to_vec(),
                        LogitsFor::All,
                    ));
                }
            }
        }
        let fork_out = if forks.is_empty() {
            None
        } else {
            let out = model
                .forward(&forks, cache.as_mut())
                .context("scoring a batch's continuations")?;
            stats.forward_tokens += forks.iter().map(|c| c.tokens.len()).sum::<usize>();
            stats.observe(cache.usage());
            Some(out)
        };
        let mut next_fork = 0;
        let mut records = Vec::with_capacity(group.len());
        for (p, &first) in group.iter().zip(&first_chunk) {
            let mut first_lps = Vec::with_capacity(p.rests.len());
            for v in 0..p.rests.len() {
                let last = out.per_chunk[first + v]
                    .as_ref()
                    .expect("asked for last logits");
                first_lps.push(log_softmax(&logits_rows(last)?[0]));
            }
            // Each continuation's per-token log-probabilities, in order, and whether each token
            // was the most likely one.
            let mut token_lps: Vec<Vec<f64>> = Vec::with_capacity(p.continuations.len());
            let mut greedy = Vec::with_capacity(p.continuations.len());
            for (variant, cont) in &p.continuations {
                let first_row = &first_lps[*variant];
                let mut lps = vec![first_row[cont[0] as usize]];
                let mut all_top = is_top(first_row, cont[0]);
                if cont.len() > 1 {
                    let out = fork_out.as_ref().expect("forks ran");
                    let rows = logits_rows(out.per_chunk[next_fork].as_ref().expect("all logits"))?;
                    for (row, &next) in rows.iter().zip(&cont[1..]) {
                        let row = log_softmax(row);
                        all_top &= is_top(&row, next);
                        lps.push(row[next as usize]);
                    }
                    next_fork += 1;
                }
                token_lps.push(lps);
                greedy.push(all_top);
            }
            let logprobs: Vec<f64> = token_lps
                .iter()
                .map(|lps| lps[1..].iter().fold(lps[0], |sum, lp| sum + lp))
                .collect();
            // llama.cpp's per-token mean leaves out the tokens every choice starts with (they
            // sit in its common prefix); only meaningful when the choices share one context.
            let shared_lead = if p.rests.len() == 1 {
                shared_lead_tokens(p.continuations.iter().map(|(_, ids)| ids.as_slice()))
            } else {
                0
            };
            let shared_lead_logprob = token_lps[0][..shared_lead].iter().sum::<f64>();
            let mut record = ItemRecord {
                item: p.item.id.clone(),
                subject: p.item.subject.clone(),
                pred: 0,
                answer: p.item.answer,
                correct: false,
                logprobs,
                context_tokens: p.context_tokens,
                continuation_tokens: p.continuations.iter().map(|(_, ids)| ids.len()).collect(),
                continuation_chars: p
                    .prompt
                    .continuations
                    .iter()
                    .map(|c| c.chars().count())
                    .collect(),
                choice_chars: p.prompt.choice_chars.clone(),
                shared_lead_tokens: shared_lead,
                shared_lead_logprob,
                greedy,
            };
            if p.prompt.norm == ScoreNorm::Greedy {
                record.correct = record.greedy[record.answer];
                record.pred = record.answer;
            } else {
                record.pred = pred_by(&record, p.prompt.norm).expect("lengths recorded");
                record.correct = record.pred == record.answer;
            }
            records.push(record);
        }
        for f in &forks {
            cache.remove(f.seq);
        }
        for seq in 1..=chunks.len() as u64 {
            cache.remove(seq);
        }
        // A batch's records are handed over, and stored, together: matmul rounding depends on
        // how many rows share a pass, so a resumed run must meet exactly the batches of an
        // uninterrupted one, and it does only if a kill never leaves half a batch recorded.
        on_batch(records)?;
    }
    Ok(())
}

/// Whether `token` is the (first) most likely entry of `row`, as greedy decoding picks.
fn is_top(row: &[f64], token: u32) -> bool {
    argmax(row) == token as usize
}

/// How many leading tokens every continuation shares, leaving each at least one of its own;
/// none when there is only one continuation (nothing to compare it with).
fn shared_lead_tokens<'a>(continuations: impl Iterator<Item = &'a [u32]>) -> usize {
    let mut continuations = continuations.peekable();
    let Some(first) = continuations.next() else {
        return 0;
    };
    if continuations.peek().is_none() {
        return 0;
    }
    let mut shared = first.len().saturating_sub(1);
    for other in continuations {
        let common = first.iter().zip(other).take_while(|(a, b)| a == b).count();
        shared = shared.min(common).min(other.len().saturating_sub(1));
    }
    shared
}

/// The continuation `norm` picks from a record's log-likelihoods and lengths; `None` where the
/// metric needs lengths the record lacks (written before they were recorded).
pub fn pred_by(record: &ItemRecord, norm: ScoreNorm) -> Option<usize> {
    scores_by(record, norm).map(|scores| argmax(&scores))
}

/// What `norm` takes the argmax of: each continuation's log-likelihood, divided by its length
/// for the length-normalised metrics; `None` as for [`pred_by`].
pub fn scores_by(record: &ItemRecord, norm: ScoreNorm) -> Option<Vec<f64>> {
    let n = record.logprobs.len();
    let divisors: Option<&[usize]> = match norm {
        // Not a choice among continuations: the record's `correct` says whether its one
        // continuation is the greedy one.
        ScoreNorm::Greedy => return None,
        ScoreNorm::Raw => None,
        ScoreNorm::PerChoiceChar => Some(&record.choice_chars),
        ScoreNorm::PerChar => Some(&record.continuation_chars),
        ScoreNorm::PerToken => Some(&record.continuation_tokens),
    };
    if divisors.is_some_and(|d| d.len() != n) {
        return None;
    }
    if n == 0 {
        return None;
    }
    let scores: Vec<f64> = (0..n)
        .map(|i| {
            let mut ll = record.logprobs[i];
            let mut len = divisors.map_or(0, |d| d[i]);
            if norm == ScoreNorm::PerToken && record.shared_lead_tokens < len {
                ll -= record.shared_lead_logprob;
                len -= record.shared_lead_tokens;
            }
            if len > 0 {
                ll / len as f64
            } else {
                ll
            }
        })
        .collect();
    Some(scores)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(logprobs: &[f64], tokens: &[usize], chars: &[usize], choice: &[usize]) -> ItemRecord {
        ItemRecord {
            item: "t/0".into(),
            subject: "t".into(),
            logprobs: logprobs.to_vec(),
            pred: 0,
            answer: 0,
            correct: false,
            context_tokens: 10,
            continuation_tokens: tokens.to_vec(),
            continuation_chars: chars.to_vec(),
            choice_chars: choice.to_vec(),
            shared_lead_tokens: 0,
            shared_lead_logprob: 0.0,
            greedy: Vec::new(),
        }
    }

    #[test]
    fn each_metric_picks_by_its_own_length() {
        // " cat" (4 chars, 1 token) at -4.0 against " a large dog" (11 chars, 3 tokens) at
        // -6.6: raw picks the short one; per character -1.0 vs -0.6 picks the long one; lm-eval's
        // acc_norm, without the space, -4/3 = -1.33 vs -6.6/10 = -0.66 also picks the long
        // one; per token -4.0 vs -2.2 picks the long one.
        let r = record(&[-4.0, -6.6], &[1, 3], &[4, 11], &[3, 10]);
        assert_eq!(pred_by(&r, ScoreNorm::Raw), Some(0));
        assert_eq!(pred_by(&r, ScoreNorm::PerChar), Some(1));
        assert_eq!(pred_by(&r, ScoreNorm::PerChoiceChar), Some(1));
        assert_eq!(pred_by(&r, ScoreNorm::PerToken), Some(1));
        // Where the normalisations part ways: -3.0 over 2 tokens / 10 chars against -4.0 over
        // 4 tokens / 8 chars: per token -1.5 vs -1.0 picks 1; per char -0.3 vs -0.5 picks 0.
        let r = record(&[-3.0, -4.0], &[2, 4], &[10, 8], &[9, 7]);
        assert_eq!(pred_by(&r, ScoreNorm::PerToken), Some(1));
        assert_eq!(pred_by(&r, ScoreNorm::PerChar), Some(0));
        assert_eq!(pred_by(&r, ScoreNorm::PerChoiceChar), Some(0));
    }

    #[test]
    fn per_token_leaves_out_the_tokens_every_choice_starts_with() {
        // Both continuations start with the same token, at -2.0. Over all their tokens,
        // -2.9/2 = -1.45 against -4.4/4 = -1.1 picks 1, with or without the shared token left
        // out ((-2.9+2.0)/1 = -0.9 against (-4.4+2.0)/3 = -0.8).
        let mut r = record(&[-2.9, -4.4], &[2, 4], &[5, 9], &[4, 8]);
        assert_eq!(pred_by(&r, ScoreNorm::PerToken), Some(1));
        r.shared_lead_tokens = 1;
        r.shared_lead_logprob = -2.0;
        // (-2.9 + 2.0) / 1 = -0.9 against (-4.4 + 2.0) / 3 = -0.8.
        assert_eq!(pred_by(&r, ScoreNorm::PerToken), Some(1));
        r.logprobs = vec![-2.7, -4.4];
        // (-2.7 + 2.0) / 1 = -0.7 against -0.8: now 0, though over all tokens -1.35 < -1.1.
        assert_eq!(pred_by(&r, ScoreNorm::PerToken), Some(0));
        // Other metrics ignore the shared lead.
        assert_eq!(pred_by(&r, ScoreNorm::Raw), Some(0));
        assert_eq!(
            shared_lead_tokens([&[5u32, 6, 7][..], &[5, 6, 9], &[5, 8]].into_iter()),
            1
        );
        assert_eq!(shared_lead_tokens([&[5u32][..], &[5, 6]].into_iter()), 0);
        // One continuation shares nothing with anyone.
        assert_eq!(shared_lead_tokens([&[5u32, 6, 7][..]].into_iter()), 0);
    }

    #[test]
    fn greedy_means_the_first_most_likely_token() {
        assert!(is_top(&[-3.0, -0.5, -2.0], 1));
        assert!(!is_top(&[-3.0, -0.5, -2.0], 2));
        // A tie goes to the lower id, as argmax and greedy decoding pick it.
        assert!(is_top(&[-1.0, -1.0], 0));
        assert!(!is_top(&[-1.0, -1.0], 1));
        let r = record(&[-2.0], &[1], &[5], &[4]);
        assert_eq!(pred_by(&r, ScoreNorm::Greedy), None);
    }

    #[test]
    fn ties_go_to_the_earlier_choice_and_missing_lengths_give_none() {
        let r = record(&[-2.0, -2.0], &[1, 1], &[2, 2], &[1, 1]);
        assert_eq!(pred_by(&r, ScoreNorm::Raw), Some(0));
        // A record written before lengths were kept answers only the raw metric.
        let old = record(&[-2.0, -1.0], &[], &[], &[]);
        assert_eq!(pred_by(&old, ScoreNorm::Raw), Some(1));
        assert_eq!(pred_by(&old, ScoreNorm::PerToken), None);
        assert_eq!(pred_by(&old, ScoreNorm::PerChar), None);
    }
}
