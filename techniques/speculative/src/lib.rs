//! effbench-speculative: speculative decoding as a [`DecodingStrategy`].
//!
//! A [`Draft`] proposes up to k tokens; the target scores the last accepted token and all k
//! proposals in one forward pass and keeps the longest prefix its own decoding rule agrees with,
//! plus one token of its own. Greedy decoding keeps the target's argmax, so the output is the
//! target's plain greedy output; sampling uses the rejection rule of Leviathan et al. (2023) and
//! Chen et al. (2023), so the output follows the target's distribution exactly. Rejected tokens
//! are rolled back in the target's and the draft's KV caches through [`KvCache::truncate`].
//!
//! Three drafts: [`ModelDraft`] runs any [`Model`] sharing the target's tokenizer (a smaller
//! model, or the target's own first layers via [`Model::first_layers`], or the target under a
//! cheaper `WeightPolicy`); [`NgramDraft`] copies the continuation of an earlier occurrence of
//! the context's last n tokens (prompt lookup), with no model at all.
//!
//! [`DecodingStrategy`]: effbench_core::decode::DecodingStrategy
//! [`KvCache::truncate`]: effbench_core::KvCache::truncate
//! [`Model`]: effbench_core::Model
//! [`Model::first_layers`]: effbench_core::Model::first_layers

mod accept;
mod compat;
mod draft;
pub mod prompts;
mod strategy;
pub mod technique;

pub use accept::{Picker, Proposed, Verdict};
pub use compat::{check_draft_model, check_same_tokenizer, DraftSpec};
pub use draft::{Draft, ModelDraft, NgramDraft};
pub use strategy::{speedup_theory, KSchedule, SpecStats, SpeculativeDecoding};
pub use technique::SpecTechnique;

/// Failures outside the decoding loop itself (which reports through `effbench_core::CoreError`).
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("{0}")]
    TokenizerMismatch(String),
    #[error(
        "invalid draft `{spec}`: {reason} (expected model:NAME_OR_PATH, layers:N or ngram[:N])"
    )]
    InvalidDraft { spec: String, reason: String },
    #[error("bad prompt file: {0}")]
    Prompts(String),
    #[error(transparent)]
    Core(#[from] effbench_core::CoreError),
    #[error("tokenizer: {0}")]
    Tokenizer(#[from] effbench_tokenizer::TokenizerError),
}
