//! Which drafts may serve a target: a draft's token ids must mean what the target's mean.

use std::path::Path;
use std::str::FromStr;

use effbench_core::ModelConfig;
use tokenizers::Tokenizer;

use crate::SpecError;

/// Speculative decoding compares token ids, so the draft's vocabulary must map every id to the
/// same token as the target's. The error names the first id that differs.
pub fn check_same_tokenizer(target: &Tokenizer, draft: &Tokenizer) -> Result<(), SpecError> {
    match effbench_tokenizer::vocabulary_difference(target, draft) {
        None => Ok(()),
        Some(why) => Err(SpecError::TokenizerMismatch(format!(
            "the draft's tokenizer differs from the target's: {why} (hint: speculative decoding needs a draft with the target's tokenizer, e.g. qwen2.5-coder-0.5b-instruct for qwen2.5-coder-1.5b-instruct, or a layers:N / ngram draft)"
        ))),
    }
}

/// The draft model must not propose ids the target has no embedding for.
pub fn check_draft_model(target: &ModelConfig, draft: &ModelConfig) -> Result<(), SpecError> {
    if draft.vocab_size > target.vocab_size {
        return Err(SpecError::TokenizerMismatch(format!(
            "the draft's output layer covers {} token ids, the target's only {} (hint: pick a draft of the same model family)",
            draft.vocab_size, target.vocab_size
        )));
    }
    Ok(())
}

/// A draft as the command line names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DraftSpec {
    /// A separate model (known name or path) sharing the target's tokenizer.
    Model(String),
    /// The target's first N layers and its output head.
    Layers(usize),
    /// Prompt lookup with n-grams of up to N tokens.
    Ngram(usize),
}

impl DraftSpec {
    pub const DEFAULT_NGRAM: usize = 3;

    /// A short label for tables and file names.
    pub fn label(&self) -> String {
        match self {
            Self::Model(m) => {
                // A known name as given; a path by its file name, without a model extension
                // (names like qwen2.5-coder-0.5b hold dots of their own).
                let name = Path::new(m)
                    .file_name()
                    .map_or(m.clone(), |s| s.to_string_lossy().to_string());
                let name = [".gguf", ".safetensors"]
                    .iter()
                    .find_map(|ext| name.strip_suffix(ext))
                    .map_or(name.clone(), str::to_string);
                format!("model:{name}")
            }
            Self::Layers(n) => format!("layers:{n}"),
            Self::Ngram(n) => format!("ngram:{n}"),
        }
    }
}

impl FromStr for DraftSpec {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, SpecError> {
        let bad = |reason: &str| SpecError::InvalidDraft {
            spec: s.to_string(),
            reason: reason.to_string(),
        };
        let (kind, arg) = match s.split_once(':') {
            Some((k, a)) => (k, Some(a)),
            None => (s, None),
        };
        let count = |a: Option<&str>, what: &str| -> Result<usize, SpecError> {
            let n: usize = a
                .ok_or_else(|| bad(&format!("{what} needs a count")))?
                .parse()
                .map_err(|_| bad(&format!("{what} count is not a number")))?;
            if n == 0 {
                return Err(bad(&format!("{what} count must be at least 1")));
            }
            Ok(n)
        };
        match kind {
            "model" => match arg {
                Some(m) if !m.is_empty() => Ok(Self::Model(m.to_string())),
                _ => Err(bad("model: needs a model name or path")),
            },
            "layers" => Ok(Self::Layers(count(arg, "layers")?)),
            "ngram" => match arg {
                None => Ok(Self::Ngram(Self::DEFAULT_NGRAM)),
                a => Ok(Self::Ngram(count(a, "ngram")?)),
            },
            _ => Err(bad("unknown draft kind")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draft_specs_parse_and_refuse_nonsense() {
        assert_eq!(
            "model:qwen".parse::<DraftSpec>().unwrap(),
            DraftSpec::Model("qwen".into())
        );
        assert_eq!(
            "layers:8".parse::<DraftSpec>().unwrap(),
            DraftSpec::Layers(8)
        );
        assert_eq!("ngram".parse::<DraftSpec>().unwrap(), DraftSpec::Ngram(3));
        let qwen: DraftSpec = "model:/m/qwen2.5-coder-0.5b-instruct.Q4_K_M.gguf"
            .parse()
            .unwrap();
        assert_eq!(qwen.label(), "model:qwen2.5-coder-0.5b-instruct.Q4_K_M");
        let known: DraftSpec = "model:qwen2.5-coder-0.5b-instruct".parse().unwrap();
        assert_eq!(known.label(), "model:qwen2.5-coder-0.5b-instruct");
        assert_eq!("ngram:5".parse::<DraftSpec>().unwrap(), DraftSpec::Ngram(5));
        for bad in ["layers", "layers:0", "layers:x", "model:", "medusa:3"] {
            assert!(bad.parse::<DraftSpec>().is_err(), "{bad}");
        }
    }
}
