//! Generative tasks: a prompt the model continues greedily until a stop sequence or a token
//! limit, and a gold answer the output is matched against. GSM8K is the one shipped: OLMES'
//! 8-shot chain-of-thought prompts, answers extracted by lm-evaluation-harness's two rules.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::item::{natural_cmp, BadRow};
use crate::manifest::{ContentHasher, SuiteManifest};
use crate::sample::Stratified;

/// One generative problem.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenItem {
    /// `<task>/<doc_id>`.
    pub id: String,
    /// The task, normalised like a subject.
    pub subject: String,
    /// The whole prompt, few-shot exemplars included, as the task file renders it.
    pub prompt: String,
    /// Generation stops before the first of these appears in the output.
    pub until: Vec<String>,
    /// The task's own limit on generated tokens.
    pub max_new_tokens: usize,
    /// The reference answer, e.g. `18`.
    pub gold: String,
}

impl Stratified for GenItem {
    fn id(&self) -> &str {
        &self.id
    }
    fn subject(&self) -> &str {
        &self.subject
    }
}

/// A generative task file as loaded: its problems in file order, every row it could not use,
/// and the task's primary metric as its config names it.
#[derive(Clone, Debug)]
pub struct GenLoad {
    pub items: Vec<GenItem>,
    pub skipped: Vec<BadRow>,
}

/// The most tokens a task may ask for per problem: OLMES' GSM8K asks for 512, and a file asking
/// for far more is more likely corrupt than patient.
pub const MAX_GEN_TOKENS: usize = 4096;

/// The problems in canonical order (subject, then natural id).
pub fn sorted_gen_items(items: &[GenItem]) -> Vec<GenItem> {
    let mut all = items.to_vec();
    all.sort_by(|a, b| {
        a.subject
            .cmp(&b.subject)
            .then_with(|| natural_cmp(&a.id, &b.id))
    });
    all
}

/// Bumped if the serialisation below changes, so old and new hashes never match.
const GEN_HASH_DOMAIN: &[u8] = b"effbench-gen-v1\n";

impl SuiteManifest {
    /// The identity of a generative suite. The hash covers, in canonical order, each problem's
    /// id, subject, prompt, stop sequences, token limit and gold answer, every string as its
    /// UTF-8 length (u64 little-endian) and bytes, every count as u64 little-endian.
    pub fn for_generation(
        name: impl Into<String>,
        seed: u64,
        per_subject: Option<usize>,
        items: &[GenItem],
    ) -> Self {
        let sorted = sorted_gen_items(items);
        let mut h = ContentHasher::new(GEN_HASH_DOMAIN);
        for item in &sorted {
            h.text(&item.id);
            h.text(&item.subject);
            h.text(&item.prompt);
            h.texts(&item.until);
            h.num(item.max_new_tokens);
            h.text(&item.gold);
        }
        SuiteManifest {
            name: name.into(),
            seed,
            per_subject,
            item_ids: sorted.iter().map(|i| i.id.clone()).collect(),
            content_hash: h.finish(),
            subjects: items
                .iter()
                .map(|i| i.subject.as_str())
                .collect::<BTreeSet<_>>()
                .len(),
            items: items.len(),
        }
    }
}

/// What [`extract_strict`] and [`extract_flexible`] return when the output has no answer, as
/// lm-eval's regex filter does.
pub const INVALID_ANSWER: &str = "[invalid]";

fn regex(cell: &'static OnceLock<Regex>, pattern: &str) -> &'static Regex {
    cell.get_or_init(|| Regex::new(pattern).expect("a valid built-in pattern"))
}

/// lm-eval's `strict-match`: the number after `#### ` (its `gsm8k` task), or else after `the
/// answer is` (its `gsm8k-cot` task; matched without regard to case here because OLMES' shots
/// write "So the answer is N."). The first match counts.
pub fn extract_strict(output: &str) -> String {
    static HASHES: OnceLock<Regex> = OnceLock::new();
    static SENTENCE: OnceLock<Regex> = OnceLock::new();
    let hashes = regex(&HASHES, r"#### (-?[0-9.,]+)");
    let sentence = regex(&SENTENCE, r"(?i)the answer is (-?[0-9.,]+)");
    hashes
        .captures(output)
        .or_else(|| sentence.captures(output))
        .map_or_else(|| INVALID_ANSWER.to_string(), |c| c[1].trim().to_string())
}

/// lm-eval's `flexible-extract`: the last match of `(-?[$0-9.,]{2,})|(-?[0-9]+)`, i.e. the
/// last number in the output (with its `$`, commas and a trailing full stop, which the exact
/// match then ignores).
pub fn extract_flexible(output: &str) -> String {
    static LAST: OnceLock<Regex> = OnceLock::new();
    let re = regex(&LAST, r"(-?[$0-9.,]{2,})|(-?[0-9]+)");
    re.captures_iter(output)
        .last()
        .and_then(|c| c.get(1).or_else(|| c.get(2)))
        .map_or_else(
            || INVALID_ANSWER.to_string(),
            |m| m.as_str().trim().to_string(),
        )
}

/// lm-eval's `exact_match` as GSM8K configures it: commas, `$`, anything up to `#### ` and a
/// trailing full stop are removed from both sides, case is ignored, and the rest must be equal.
pub fn exact_match(prediction: &str, gold: &str) -> bool {
    static IGNORE: OnceLock<Vec<Regex>> = OnceLock::new();
    let ignore = IGNORE.get_or_init(|| {
        [",", r"\$", r"(?s).*#### ", r"\.$"]
            .iter()
            .map(|p| Regex::new(p).expect("a valid built-in pattern"))
            .collect()
    });
    let clean = |s: &str| {
        ignore
            .iter()
            .fold(s.to_string(), |acc, re| {
                re.replace_all(&acc, "").into_owned()
            })
            .to_lowercase()
    };
    clean(prediction) == clean(gold)
}

/// The output as the task sees it: cut before the first stop sequence, if any appears.
pub fn cut_at_stop<'a>(output: &'a str, until: &[String]) -> (&'a str, bool) {
    match until
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| output.find(s.as_str()))
        .min()
    {
        Some(at) => (&output[..at], true),
        None => (output, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_takes_the_first_marked_answer() {
        assert_eq!(extract_strict("so 3+4=7\n#### 7"), "7");
        assert_eq!(extract_strict("#### 1,234.\n#### 9"), "1,234.");
        assert_eq!(extract_strict("So the answer is 18."), "18.");
        assert_eq!(extract_strict("THE ANSWER IS -5"), "-5");
        // `####` wins over the sentence even when the sentence comes first.
        assert_eq!(extract_strict("The answer is 3. #### 4"), "4");
        assert_eq!(extract_strict("the answer is twelve"), INVALID_ANSWER);
        assert_eq!(extract_strict("####7"), INVALID_ANSWER);
        assert_eq!(extract_strict(""), INVALID_ANSWER);
    }

    #[test]
    fn flexible_takes_the_last_number_as_lm_eval_does() {
        assert_eq!(extract_flexible("So the answer is 18."), "18.");
        // A single digit only matches the second alternative.
        assert_eq!(extract_flexible("She has 12 apples, eats 5"), "5");
        assert_eq!(extract_flexible("It costs $1,000.50 in total"), "$1,000.50");
        assert_eq!(extract_flexible("-5 degrees"), "-5");
        // `-` then one digit: the first alternative needs two characters after the sign.
        assert_eq!(extract_flexible("from -7"), "-7");
        // Commas and stops glue to the numbers they touch, as in Python's `re`.
        assert_eq!(extract_flexible("pick 3, 4."), "4.");
        assert_eq!(extract_flexible("pick 3,4"), "3,4");
        assert_eq!(extract_flexible("no digits here."), INVALID_ANSWER);
        // A lone "." or "," is not a number, but ".." is two characters of the class.
        assert_eq!(extract_flexible("wait.. 2"), "2");
        assert_eq!(extract_flexible("wait.."), "..");
    }

    #[test]
    fn exact_match_ignores_what_lm_eval_ignores() {
        assert!(exact_match("18.", "18"));
        assert!(exact_match("$1,000", "1000"));
        assert!(exact_match("1,234.", "1234"));
        assert!(exact_match("x #### 72", "72"));
        assert!(!exact_match("18.0", "18"));
        assert!(!exact_match(INVALID_ANSWER, "18"));
        assert!(!exact_match("-18", "18"));
        // Only one trailing stop goes.
        assert!(!exact_match("18..", "18"));
    }

    #[test]
    fn cut_at_the_earliest_stop() {
        let until = vec!["Question:".to_string(), "\n\n".to_string()];
        assert_eq!(
            cut_at_stop("A is 4.\n\nQuestion: B", &until),
            ("A is 4.", true)
        );
        assert_eq!(cut_at_stop("A Question: is\n\n", &until), ("A ", true));
        assert_eq!(cut_at_stop("no stop", &until), ("no stop", false));
        assert_eq!(cut_at_stop("x", &[String::new()]), ("x", false));
    }
}
