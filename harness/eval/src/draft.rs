//! The draft of a speculative-decoding technique, built once per row and instanced per
//! generation, and the decode time both spec-bench and a run report.

use std::sync::Arc;

use crate::error::{Context, Result};
use effbench_core::decode::GenerateOutput;
use effbench_core::{ContiguousKvCache, KvShape, LoadedModel, Model};
use effbench_speculative::{
    check_draft_model, check_same_tokenizer, Draft, DraftSpec, ModelDraft, NgramDraft,
};

use crate::session::resolve_model_path;
use crate::WeightsArg;

/// A draft by its label, and how to make a fresh instance of it for each generation.
pub struct NamedDraft {
    pub label: String,
    pub make: Box<dyn Fn() -> Box<dyn Draft>>,
}

/// A draft ready to make fresh instances of; a draft model loads with `draft_weights`.
pub fn build_draft(
    spec: &DraftSpec,
    target: &LoadedModel,
    draft_weights: WeightsArg,
    capacity: usize,
) -> Result<NamedDraft> {
    let label = spec.label();
    Ok(match spec {
        DraftSpec::Ngram(n) => {
            let n = *n;
            NamedDraft {
                label,
                make: Box::new(move || Box::new(NgramDraft::new(n))),
            }
        }
        DraftSpec::Layers(n) => {
            let model = Arc::new(target.model.first_layers(*n)?);
            NamedDraft {
                label,
                make: Box::new(move || model_draft(&model, capacity)),
            }
        }
        DraftSpec::Model(name) => {
            let path = resolve_model_path(name)?;
            let tokenizer = effbench_core::loader::tokenizer_of(&path)?;
            check_same_tokenizer(&target.tokenizer, &tokenizer)?;
            let policy = crate::session::load_policy(draft_weights, target.model.device())?;
            let loaded = effbench_core::load(&path, policy.as_ref(), target.model.device())
                .with_context(|| format!("loading draft {}", path.display()))?;
            check_draft_model(target.model.config(), loaded.model.config())?;
            let model = Arc::new(loaded.model);
            NamedDraft {
                label,
                make: Box::new(move || model_draft(&model, capacity)),
            }
        }
    })
}

fn model_draft(model: &Arc<Model>, capacity: usize) -> Box<dyn Draft> {
    let cache = ContiguousKvCache::new(KvShape::of(model.config()), capacity, model.device());
    Box::new(ModelDraft::new(model.clone(), Box::new(cache)))
}

/// The seconds a generation spent decoding, after its first token.
pub fn decode_seconds(out: &GenerateOutput) -> f64 {
    let m = out.trace.metrics();
    match (m.total_ms, m.ttft_ms) {
        (Some(t), Some(f)) => (t - f) / 1e3,
        _ => 0.0,
    }
}
