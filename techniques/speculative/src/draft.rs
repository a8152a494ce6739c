//! Drafts: cheap proposers of the next few tokens.

use std::sync::Arc;

use effbench_core::model::logits_rows;
use effbench_core::{KvCache, LogitsFor, Model, Result, SeqChunk, SeqId};

use crate::accept::{Picker, Proposed};

/// Proposes continuations of the accepted sequence. A draft keeps whatever state it needs (a
/// KV cache) and rolls it back when the target rejects its tokens.
pub trait Draft: Send {
    fn name(&self) -> String;
    /// A new generation of `prompt` starts (a model draft prefills its cache here).
    fn begin(&mut self, seq: SeqId, prompt: &[u32]) -> Result<()>;
    /// Up to `k` tokens continuing `context` (the prompt and every accepted token), each drawn
    /// by `picker`'s rule. Fewer (or none) is allowed: the target then decodes one token.
    fn propose(&mut self, context: &[u32], k: usize, picker: &mut Picker) -> Result<Vec<Proposed>>;
    /// The target kept `context`: drop any state for tokens past it (rejected proposals).
    fn rollback(&mut self, context: &[u32]) -> Result<()>;
    /// Forward passes run by the last generation, for cost accounting (0 for model-free drafts).
    fn forward_passes(&self) -> usize {
        0
    }
}

impl Draft for Box<dyn Draft> {
    fn name(&self) -> String {
        self.as_ref().name()
    }

    fn begin(&mut self, seq: SeqId, prompt: &[u32]) -> Result<()> {
        self.as_mut().begin(seq, prompt)
    }

    fn propose(&mut self, context: &[u32], k: usize, picker: &mut Picker) -> Result<Vec<Proposed>> {
        self.as_mut().propose(context, k, picker)
    }

    fn rollback(&mut self, context: &[u32]) -> Result<()> {
        self.as_mut().rollback(context)
    }

    fn forward_passes(&self) -> usize {
        self.as_ref().forward_passes()
    }
}

/// Any [`Model`] as a draft: a smaller model with the same tokenizer, the target's first layers
/// ([`Model::first_layers`]), or the target loaded under a cheaper weight policy.
pub struct ModelDraft {
    model: Arc<Model>,
    cache: Box<dyn KvCache>,
    seq: SeqId,
    /// The tokens whose K/V the cache holds, to find what to roll back and what to feed.
    cached: Vec<u32>,
    forwards: usize,
}

impl ModelDraft {
    /// `cache` must be sized for the draft model's config (it may be contiguous or paged).
    pub fn new(model: Arc<Model>, cache: Box<dyn KvCache>) -> Self {
        Self {
            model,
            cache,
            seq: 0,
            cached: Vec::new(),
            forwards: 0,
        }
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The draft's cache and the tokens it holds, for checks that rollback left it consistent.
    pub fn cache_state(&mut self) -> (&mut dyn KvCache, &[u32], SeqId) {
        (self.cache.as_mut(), &self.cached, self.seq)
    }

    fn keep(&mut self, len: usize) -> Result<()> {
        if len < self.cached.len() {
            self.cache.truncate(self.seq, len)?;
            self.cached.truncate(len);
        }
        Ok(())
    }
}

impl Draft for ModelDraft {
    fn name(&self) -> String {
        format!("model: {}", self.model.label())
    }

    fn begin(&mut self, seq: SeqId, prompt: &[u32]) -> Result<()> {
        self.cache.remove(self.seq);
        self.seq = seq;
        self.cached.clear();
        self.forwards = 0;
        // The last prompt token is fed by the first proposal, which needs its logits.
        if prompt.len() > 1 {
            let head = &prompt[..prompt.len() - 1];
            self.model.forward(
                &[SeqChunk::new(seq, head.to_vec(), LogitsFor::None)],
                self.cache.as_mut(),
            )?;
            self.forwards += 1;
            self.cached.extend_from_slice(head);
        }
        Ok(())
    }

    fn propose(&mut self, context: &[u32], k: usize, picker: &mut Picker) -> Result<Vec<Proposed>> {
        if k == 0 || context.is_empty() {
            return Ok(Vec::new());
        }
        // Keep the longest cached prefix of the context, leaving at least one token to feed.
        let common = self
            .cached
            .iter()
            .zip(context)
            .take_while(|(a, b)| a == b)
            .count()
            .min(context.len() - 1);
        self.keep(common)?;
        let mut feed = context[common..].to_vec();
        let mut out = Vec::with_capacity(k);
        loop {
            let logits = self.model.forward(
                &[SeqChunk::new(self.seq, feed.clone(), LogitsFor::Last)],
                self.cache.as_mut(),
            )?;
            self.forwards += 1;
            self.cached.extend_from_slice(&feed);
            let row = match logits.per_chunk.into_iter().next().flatten() {
                Some(t) => logits_rows(&t)?.pop().unwrap_or_default(),
                None => break,
            };
            let pick = picker.draft_pick(&row);
            feed = vec![pick.token];
            out.push(pick);
            // The last proposal is not fed: if all are accepted it goes in with the next step.
            if out.len() == k {
                break;
            }
        }
        Ok(out)
    }

    fn rollback(&mut self, context: &[u32]) -> Result<()> {
        let common = self
            .cached
            .iter()
            .zip(context)
            .take_while(|(a, b)| a == b)
            .count();
        self.keep(common)
    }

    fn forward_passes(&self) -> usize {
        self.forwards
    }
}

/// Prompt lookup decoding (as in vLLM's `ngram` and transformers' `prompt_lookup_num_tokens`):
/// find the most recent earlier occurrence of the context's last n tokens, longest n first, and
/// propose what followed it. Costs microseconds; wins where the output copies its input.
#[derive(Debug, Clone)]
pub struct NgramDraft {
    pub max_n: usize,
    pub min_n: usize,
}

impl NgramDraft {
    pub fn new(max_n: usize) -> Self {
        Self {
            max_n: max_n.max(1),
            min_n: 1,
        }
    }

    /// The continuation proposal as plain tokens.
    pub fn lookup(&self, context: &[u32], k: usize) -> Vec<u32> {
        let len = context.len();
        for n in (self.min_n..=self.max_n).rev() {
            if len <= n {
                continue;
            }
            let suffix = &context[len - n..];
            // Earlier occurrences only: the suffix itself starts at len - n.
            for start in (0..len - n).rev() {
                if &context[start..start + n] == suffix {
                    let from = start + n;
                    let to = (from + k).min(len);
                    return context[from..to].to_vec();
                }
            }
        }
        Vec::new()
    }
}

impl Draft for NgramDraft {
    fn name(&self) -> String {
        format!("ngram (n {}..={})", self.min_n, self.max_n)
    }

    fn begin(&mut self, _seq: SeqId, _prompt: &[u32]) -> Result<()> {
        Ok(())
    }

    fn propose(
        &mut self,
        context: &[u32],
        k: usize,
        _picker: &mut Picker,
    ) -> Result<Vec<Proposed>> {
        Ok(self
            .lookup(context, k)
            .into_iter()
            .map(|token| Proposed { token, q: None })
            .collect())
    }

    fn rollback(&mut self, _context: &[u32]) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ngram_proposes_what_followed_the_latest_match() {
        let d = NgramDraft::new(3);
        // "1 2 3" occurs at 0 and 5; the latest earlier one (5) was followed by 9 9.
        let ctx = [1, 2, 3, 4, 5, 1, 2, 3, 9, 9, 7, 1, 2, 3];
        assert_eq!(d.lookup(&ctx, 2), vec![9, 9]);
        assert_eq!(d.lookup(&ctx, 8), vec![9, 9, 7, 1, 2, 3]);
        // Longest n first: "7 2 3" never occurred, "2 3" did.
        let ctx = [2, 3, 8, 6, 7, 2, 3];
        assert_eq!(d.lookup(&ctx, 1), vec![8]);
        assert!(d.lookup(&[1, 2, 3], 4).is_empty());
    }
}
