//! The MMLU prompt, character for character as lm-evaluation-harness builds it (tasks/mmlu/default).

use crate::item::{choice_letter, subject_display, McItem, ScoreNorm};

/// One item ready to score: the model's log-likelihood of each continuation after
/// `shared_prefix + question` decides the answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct McPrompt {
    /// Description line plus exemplars: the same for every item of a subject at a given
    /// number of shots, so its KV cache can be computed once and reused.
    pub shared_prefix: String,
    /// The item itself, ending in `Answer:` with no trailing space.
    pub question: String,
    /// Per choice, what stands in place of `question` when the choices differ before their
    /// continuation (WinoGrande's partial scoring); `None` when every choice follows `question`.
    pub choice_questions: Option<Vec<String>>,
    /// `" A"`, `" B"`, ...: the space belongs to the continuation, as in lm-eval.
    pub continuations: Vec<String>,
    /// Index of the right continuation.
    pub answer: usize,
    /// How the answer is picked from the continuations' log-likelihoods.
    pub norm: ScoreNorm,
    /// Characters of each choice without the target delimiter, for lm-eval's `acc_norm`.
    pub choice_chars: Vec<usize>,
}

impl McPrompt {
    /// The whole context of the first choice (of every choice, unless they differ), for
    /// callers that do not reuse the prefix.
    pub fn context(&self) -> String {
        self.context_for(0)
    }

    /// The whole context choice `c` is scored after.
    pub fn context_for(&self, c: usize) -> String {
        let question = match &self.choice_questions {
            Some(q) => &q[c],
            None => &self.question,
        };
        format!("{}{question}", self.shared_prefix)
    }
}

/// `The following are multiple choice questions (with answers) about {subject}.\n\n`, with the
/// subject's underscores as spaces.
pub fn description(subject: &str) -> String {
    format!(
        "The following are multiple choice questions (with answers) about {}.\n\n",
        subject_display(subject)
    )
}

/// `{question, stripped}\nA. {c0}\nB. {c1}\n...\nAnswer:`. Only the question is stripped;
/// lm-eval's template leaves the choices as stored.
pub fn question_block(item: &McItem) -> String {
    let mut s = String::with_capacity(item.question.len() + 64);
    s.push_str(py_strip(&item.question));
    s.push('\n');
    for (i, choice) in item.choices.iter().enumerate() {
        s.push(choice_letter(i));
        s.push_str(". ");
        s.push_str(choice);
        s.push('\n');
    }
    s.push_str("Answer:");
    s
}

/// The description followed by each exemplar as `{question_block} {letter}\n\n`.
pub fn shared_prefix(subject: &str, exemplars: &[McItem]) -> String {
    let mut s = description(subject);
    for ex in exemplars {
        s.push_str(&question_block(ex));
        s.push(' ');
        s.push(choice_letter(ex.answer));
        s.push_str("\n\n");
    }
    s
}

/// `n` continuations: `" A"`, `" B"`, ...
pub fn continuations(n: usize) -> Vec<String> {
    (0..n).map(|i| format!(" {}", choice_letter(i))).collect()
}

/// The prompt for `item` after `exemplars` (empty for 0-shot). Exemplars are expected to share
/// the item's subject; the description line is the item's. An item whose file rendered its own
/// prompt is scored as rendered, and takes no exemplars (the file's variant fixes the shots).
pub fn build_prompt(item: &McItem, exemplars: &[McItem]) -> McPrompt {
    if let Some(r) = &item.rendered {
        let per_choice = r.contexts.len() > 1;
        return McPrompt {
            shared_prefix: String::new(),
            question: if per_choice {
                String::new()
            } else {
                r.contexts[0].clone()
            },
            choice_questions: per_choice.then(|| r.contexts.clone()),
            continuations: r.continuations.clone(),
            answer: item.answer,
            norm: r.norm,
            choice_chars: item.choices.iter().map(|c| c.chars().count()).collect(),
        };
    }
    McPrompt {
        shared_prefix: shared_prefix(&item.subject, exemplars),
        question: question_block(item),
        choice_questions: None,
        continuations: continuations(item.choices.len()),
        answer: item.answer,
        norm: ScoreNorm::Raw,
        choice_chars: vec![1; item.choices.len()],
    }
}

/// Python's `str.strip()`: Unicode whitespace plus the ASCII separators U+001C..U+001F, which
/// Python counts as whitespace and Rust does not.
fn py_strip(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strip_matches_python() {
        assert_eq!(py_strip("\u{1f} \t q \u{a0}\n"), "q");
        assert_eq!(py_strip("a b"), "a b");
    }
}
