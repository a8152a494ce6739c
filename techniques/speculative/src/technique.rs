//! The speculative-decoding techniques' names: `spec:DRAFT[@K|@adaptive]`.

use effbench_core::technique::{TechniqueGrammar, TechniqueKind};

use crate::{DraftSpec, KSchedule};

pub const GRAMMAR: TechniqueGrammar = TechniqueGrammar {
    kind: TechniqueKind::Decoding,
    syntax: "spec:ngram[:N] | spec:model:M | spec:layers:N, then optionally @K or @adaptive[:MAX]",
    help: "speculative decoding: a draft proposes K tokens a step (default 4) that the model \
           verifies in one pass; ngram looks the continuation up in the prompt, model:M runs a \
           smaller model with the same tokenizer, layers:N the model's own first N layers; \
           @adaptive picks K each step up to 8 (or MAX)",
};

/// Draft tokens per step when the name gives no `@K`: the middle of spec-bench's 2, 4, 8.
pub const DEFAULT_K: usize = 4;
/// The ceiling of `@adaptive`.
pub const ADAPTIVE_MAX_K: usize = 8;

/// A speculative-decoding technique: the draft and how many tokens it proposes a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecTechnique {
    pub draft: DraftSpec,
    pub k: KSchedule,
}

impl SpecTechnique {
    /// Parses a `spec:ngram`, `spec:model` or `spec:layers` name; `None` for any other name.
    pub fn parse(name: &str) -> Option<Result<Self, String>> {
        let rest = name.strip_prefix("spec:")?;
        // Only this family's draft kinds; another family may own other `spec:` names.
        let kind = rest.split([':', '@']).next().unwrap_or_default();
        if !["ngram", "model", "layers"].contains(&kind) {
            return None;
        }
        let (draft, k) = match rest.rsplit_once('@') {
            Some((draft, "adaptive")) => (
                draft,
                Ok(KSchedule::Adaptive {
                    max: ADAPTIVE_MAX_K,
                }),
            ),
            Some((draft, a)) if a.starts_with("adaptive:") => (
                draft,
                match a["adaptive:".len()..].parse::<usize>() {
                    Ok(max) if max > 0 => Ok(KSchedule::Adaptive { max }),
                    _ => Err(format!(
                        "`{name}`: after @adaptive: comes the largest draft length (at least 1)"
                    )),
                },
            ),
            Some((draft, k)) => (
                draft,
                match k.parse::<usize>() {
                    Ok(k) if k > 0 => Ok(KSchedule::Fixed(k)),
                    _ => Err(format!(
                        "`{name}`: after @ comes the draft length K (at least 1) or `adaptive`"
                    )),
                },
            ),
            None => (rest, Ok(KSchedule::Fixed(DEFAULT_K))),
        };
        Some(k.and_then(|k| {
            let draft = draft
                .parse::<DraftSpec>()
                .map_err(|e| format!("`{name}`: {e} (grammar: {})", GRAMMAR.syntax))?;
            Ok(Self { draft, k })
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_with_their_draft_length() {
        let t = SpecTechnique::parse("spec:ngram").unwrap().unwrap();
        assert_eq!(t.draft, DraftSpec::Ngram(DraftSpec::DEFAULT_NGRAM));
        assert_eq!(t.k, KSchedule::Fixed(DEFAULT_K));
        let t = SpecTechnique::parse("spec:model:qwen2.5-coder-0.5b-instruct@8")
            .unwrap()
            .unwrap();
        assert_eq!(
            t.draft,
            DraftSpec::Model("qwen2.5-coder-0.5b-instruct".into())
        );
        assert_eq!(t.k, KSchedule::Fixed(8));
        let t = SpecTechnique::parse("spec:layers:4@adaptive")
            .unwrap()
            .unwrap();
        assert_eq!(
            t.k,
            KSchedule::Adaptive {
                max: ADAPTIVE_MAX_K
            }
        );
        let t = SpecTechnique::parse("spec:ngram:3@adaptive:4")
            .unwrap()
            .unwrap();
        assert_eq!(t.draft, DraftSpec::Ngram(3));
        assert_eq!(t.k, KSchedule::Adaptive { max: 4 });
        assert!(SpecTechnique::parse("spec:ngram@adaptive:0")
            .unwrap()
            .is_err());
        assert!(SpecTechnique::parse("spec:ngram@0").unwrap().is_err());
        assert_eq!(SpecTechnique::parse("spec:beam"), None);
        assert!(SpecTechnique::parse("spec:layers:x").unwrap().is_err());
        assert_eq!(SpecTechnique::parse("kv:paged"), None);
    }
}
