//! The prompt sets speculative decoding is measured on, by type, because its gain depends on
//! how much of the output the draft can guess: free prose, code (editing code the prompt
//! holds, and writing new code), and summarization of a text the prompt holds.
//! The prompts live in `prompts.jsonl` next to this crate's Cargo.toml, one JSON object a line:
//! `{"type": "prose"|"code"|"summarization", "id": "...", "prompt": "..."}`.

use serde::Deserialize;
use tokenizers::Tokenizer;

use crate::SpecError;

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Prompt {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
    pub prompt: String,
}

/// The built-in prompt file.
pub const BUILTIN: &str = include_str!("../prompts.jsonl");

pub const KINDS: [&str; 3] = ["prose", "code", "summarization"];

pub fn parse(jsonl: &str) -> Result<Vec<Prompt>, SpecError> {
    jsonl
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| SpecError::Prompts(format!("line {}: {e}", i + 1)))
        })
        .collect()
}

/// The prompts of the given types, at most `per_type` of each (0: all), in file order.
pub fn select(all: &[Prompt], kinds: &[String], per_type: usize) -> Result<Vec<Prompt>, SpecError> {
    let mut out = Vec::new();
    for kind in kinds {
        let of_kind: Vec<&Prompt> = all.iter().filter(|p| &p.kind == kind).collect();
        if of_kind.is_empty() {
            let known: Vec<&str> = all.iter().map(|p| p.kind.as_str()).collect();
            return Err(SpecError::Prompts(format!(
                "no prompts of type `{kind}` (types here: {})",
                dedup(known).join(", ")
            )));
        }
        let take = if per_type == 0 {
            of_kind.len()
        } else {
            per_type
        };
        out.extend(of_kind.into_iter().take(take).cloned());
    }
    Ok(out)
}

fn dedup(mut v: Vec<&str>) -> Vec<&str> {
    v.sort_unstable();
    v.dedup();
    v
}

/// The text an instruct model sees: ChatML (the template of Qwen2.5 and SmolLM2 instruct
/// models, whose tokenizers hold `<|im_start|>`) with a one-line system turn; a model without
/// ChatML tokens gets the prompt as raw text.
pub fn chat_text(tokenizer: &Tokenizer, user: &str) -> String {
    if tokenizer.token_to_id("<|im_start|>").is_some() {
        format!(
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
        )
    } else {
        user.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_prompts_cover_every_type() {
        let all = parse(BUILTIN).unwrap();
        for kind in KINDS {
            assert!(all.iter().filter(|p| p.kind == kind).count() >= 2, "{kind}");
        }
        let two = select(&all, &["code".to_string()], 2).unwrap();
        assert_eq!(two.len(), 2);
        assert!(select(&all, &["poetry".to_string()], 0).is_err());
    }
}
