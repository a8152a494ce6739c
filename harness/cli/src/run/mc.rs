//! Multiple-choice scoring by log-likelihood, as lm-evaluation-harness does for MMLU: the
//! model's log-probability of each continuation (" A", " B", ...) after the prompt; the most
//! likely one is the answer. The subject's shared prefix (description and few-shot exemplars) is
//! run once and its KV cache forked for every item (unless sharing is turned off, to measure what
//! it saves), and items are scored in batches. A paged cache shares the prefix's blocks; a
//! contiguous one copies its whole reservation per fork.

use anyhow::{Context, Result};
use effbench_core::model::{argmax, log_softmax, logits_rows};
use std::sync::Arc;

use effbench_core::{KvCacheBuilder, KvShape, KvUsage, LoadedModel, LogitsFor, SeqChunk};
use effbench_datasets::{McItem, McPrompt};
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
    /// Tokens after the shared prefix, or the whole context when it cannot be split there.
    rest: Vec<u32>,
    shares_prefix: bool,
    continuations: Vec<Vec<u32>>,
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
        let context = prompt.context();
        let shares_prefix = shared_len > 0;
        let rest = full[shared_len..].to_vec();
        let mut continuations = Vec::with_capacity(prompt.continuations.len());
        for cont in &prompt.continuations {
            // lm-eval's split: encode(context + continuation) minus encode(context).
            let joined = loaded.encode(&format!("{context}{cont}"))?;
            let ids = if joined.len() > full.len() && joined.starts_with(&full) {
                joined[full.len()..].to_vec()
            } else {
                loaded.tokenizer_ids_without_specials(cont)?
            };
            anyhow::ensure!(
                !ids.is_empty(),
                "continuation {cont:?} of item {} tokenizes to nothing",
                item.id
            );
            continuations.push(ids);
        }
        let max_cont = continuations.iter().map(Vec::len).max().unwrap_or(1);
        longest = longest.max(full.len() + max_cont);
        prepared.push(Prepared {
            item,
            rest,
            shares_prefix,
            continuations,
            context_tokens: full.len(),
        });
    }

    let model = &loaded.model;
    let shape = KvShape::of(model.config());
    let batch_size = batch_size.max(1);
    // Live at once: the prefix, and for each item of a batch its own sequence plus one fork
    // for a multi-token continuation.
    let mut cache = kv
        .cache
        .build(shape, longest, 1 + 2 * batch_size, model.device())?;
    const PREFIX: u64 = 0;
    if prepared.iter().any(|p| p.shares_prefix) {
        model.forward(
            &[SeqChunk::new(PREFIX, prefix_ids.clone(), LogitsFor::None)],
            cache.as_mut(),
        )?;
        stats.forward_tokens += prefix_ids.len();
        stats.observe(cache.usage());
    }

    for group in prepared.chunks(batch_size) {
        let mut chunks = Vec::with_capacity(group.len());
        for (i, p) in group.iter().enumerate() {
            let seq = 1 + i as u64;
            if p.shares_prefix {
                cache.fork(PREFIX, seq)?;
            }
            chunks.push(SeqChunk::new(seq, p.rest.clone(), LogitsFor::Last));
        }
        let out = model
            .forward(&chunks, cache.as_mut())
            .context("scoring a batch of items")?;
        stats.forward_tokens += chunks.iter().map(|c| c.tokens.len()).sum::<usize>();
        stats.observe(cache.usage());
        let mut records = Vec::with_capacity(group.len());
        for (i, p) in group.iter().enumerate() {
            let seq = 1 + i as u64;
            let last = out.per_chunk[i].as_ref().expect("asked for last logits");
            let first_lp = log_softmax(&logits_rows(last)?[0]);
            let mut logprobs = Vec::with_capacity(p.continuations.len());
            for (c, cont) in p.continuations.iter().enumerate() {
                let mut lp = first_lp[cont[0] as usize];
                if cont.len() > 1 {
                    // Multi-token continuation: feed all but its last token on a fork of the
                    // item's cache and add the log-probability of each next token.
                    let fork = 1_000_000 + c as u64;
                    cache.fork(seq, fork)?;
                    let out = model.forward(
                        &[SeqChunk::new(
                            fork,
                            cont[..cont.len() - 1].to_vec(),
                            LogitsFor::All,
                        )],
                        cache.as_mut(),
                    )?;
                    stats.forward_tokens += cont.len() - 1;
                    stats.observe(cache.usage());
                    let rows = logits_rows(out.per_chunk[0].as_ref().expect("all logits"))?;
                    for (row, &next) in rows.iter().zip(&cont[1..]) {
                        lp += log_softmax(row)[next as usize];
                    }
                    cache.remove(fork);
                }
                logprobs.push(lp);
            }
            cache.remove(seq);
            let pred = argmax(&logprobs);
            records.push(ItemRecord {
                item: p.item.id.clone(),
                subject: p.item.subject.clone(),
                pred,
                answer: p.item.answer,
                correct: pred == p.item.answer,
                logprobs,
                context_tokens: p.context_tokens,
            });
        }
        // A batch's records are handed over, and stored, together: matmul rounding depends on
        // how many rows share a pass, so a resumed run must meet exactly the batches of an
        // uninterrupted one, and it does only if a kill never leaves half a batch recorded.
        on_batch(records)?;
    }
    Ok(())
}
