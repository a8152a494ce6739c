//! The per-technique item records a run appends (`items-<technique>.jsonl`), which `--resume`,
//! `merge` and the summaries read back. The CLI owns the files; the parsing lives here so it is
//! a library function that can be tested and fuzzed on bytes alone.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A record's identity within its technique's file: no two lines may share it.
pub trait Keyed {
    fn key(&self) -> String;
}

/// One multiple-choice item as one technique scored it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ItemRecord {
    pub item: String,
    pub subject: String,
    /// Log-likelihood of each continuation, summed over its tokens.
    pub logprobs: Vec<f64>,
    pub pred: usize,
    pub answer: usize,
    pub correct: bool,
    pub context_tokens: usize,
    /// What each length-normalised metric divides by, one entry per continuation: its tokens
    /// (llama.cpp's per-token mean), its characters with the target delimiter (OLMES'
    /// `acc_per_char`) and the choice's characters without it (lm-eval's `acc_norm`). Empty in
    /// records written before these metrics existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub continuation_tokens: Vec<usize>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub continuation_chars: Vec<usize>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub choice_chars: Vec<usize>,
    /// Leading tokens every continuation shares (after one shared context), and their summed
    /// log-probability: llama.cpp's per-token mean leaves them out, as its common prefix.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub shared_lead_tokens: usize,
    #[serde(default, skip_serializing_if = "is_zero_f64")]
    pub shared_lead_logprob: f64,
    /// Per continuation, whether each of its tokens is the model's most likely next token
    /// (lm-eval's `is_greedy`). Empty in records written before it was kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub greedy: Vec<bool>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn is_zero_f64(x: &f64) -> bool {
    *x == 0.0
}

impl Keyed for ItemRecord {
    fn key(&self) -> String {
        self.item.clone()
    }
}

/// One generative problem as one technique answered it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GenRecord {
    pub item: String,
    pub subject: String,
    pub prompt_tokens: usize,
    /// Every token generated, the one that ended it included, so two decoding techniques'
    /// outputs can be compared token for token.
    pub tokens: Vec<u32>,
    /// The text the task scores: the output cut before its first stop sequence, without a
    /// final end-of-sequence token.
    pub output: String,
    /// Why generation ended: `stop` (a stop sequence), `eos` (an end-of-sequence token) or
    /// `limit` (the token limit).
    pub finish: String,
    pub gold: String,
    /// The answer by lm-eval's strict and flexible rules (`[invalid]` when there is none).
    pub strict: String,
    pub flexible: String,
    pub strict_correct: bool,
    pub flexible_correct: bool,
    /// On the task's primary metric.
    pub correct: bool,
    /// The log-probability of each token of `tokens` under the distribution greedy decoding
    /// chose it from: a routing row's confidence in the answer. Empty in records written before
    /// they were kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub token_logprobs: Vec<f64>,
}

impl GenRecord {
    /// Σ log-probability over the generated tokens and how many there are, when every token's
    /// log-probability was recorded.
    pub fn answer_logprob(&self) -> Option<(f64, usize)> {
        (!self.tokens.is_empty() && self.token_logprobs.len() == self.tokens.len())
            .then(|| (self.token_logprobs.iter().sum(), self.tokens.len()))
    }
}

impl Keyed for GenRecord {
    fn key(&self) -> String {
        self.item.clone()
    }
}

/// One perplexity window as one technique scored it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WindowRecord {
    pub window: usize,
    /// Negative log-likelihood of each scored token, in order.
    pub nll: Vec<f64>,
    /// KL(baseline || technique) per scored token; absent for the baseline itself.
    pub kl: Option<Vec<f64>>,
    /// Whether both put the same token first, per scored token.
    pub same_top: Option<Vec<bool>>,
}

impl Keyed for WindowRecord {
    fn key(&self) -> String {
        // Zero-padded so the map's order is the windows' order.
        format!("{:06}", self.window)
    }
}

/// Why a records file cannot be used; the line counts from 1.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RecordsError {
    #[error("line {line}: unreadable record: {reason}")]
    Unreadable { line: usize, reason: String },
    #[error("line {line}: item `{key}` is recorded twice")]
    Duplicate { line: usize, key: String },
}

/// The complete records of a file, and how many leading bytes hold them.
#[derive(Debug)]
pub struct Records<R> {
    pub records: BTreeMap<String, R>,
    /// Bytes up to the end of the last complete line. Anything after it is a line cut short by
    /// a kill, which the caller trims so the item is scored again, once.
    pub complete_len: usize,
}

/// Parses a records file. Only the last line may be incomplete (no `\n`): it is left out, never
/// an error, whatever its bytes. A kill can cut a line inside a multi-byte character, so the cut
/// line is set aside before anything is decoded as UTF-8.
pub fn parse_records<R: DeserializeOwned + Keyed>(
    bytes: &[u8],
) -> Result<Records<R>, RecordsError> {
    let mut records = BTreeMap::new();
    let mut complete_len = 0;
    let mut rest = bytes;
    let mut line_no = 0;
    while let Some(end) = rest.iter().position(|&b| b == b'\n') {
        line_no += 1;
        let line = &rest[..end];
        let unreadable = |reason: String| RecordsError::Unreadable {
            line: line_no,
            reason,
        };
        let text = std::str::from_utf8(line).map_err(|e| unreadable(e.to_string()))?;
        let record: R =
            serde_json::from_str(text.trim_end()).map_err(|e| unreadable(e.to_string()))?;
        let key = record.key();
        if records.contains_key(&key) {
            return Err(RecordsError::Duplicate { line: line_no, key });
        }
        records.insert(key, record);
        complete_len += end + 1;
        rest = &rest[end + 1..];
    }
    Ok(Records {
        records,
        complete_len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_last_line_is_left_out_even_inside_a_character() {
        let line = br#"{"window":1,"nll":[0.5],"kl":null,"same_top":null}"#;
        let mut bytes = line.to_vec();
        bytes.push(b'\n');
        let whole = bytes.len();
        // "é" is two bytes; the kill came between them.
        bytes.extend_from_slice(&"{\"window\":2,\"x\":\"é".as_bytes()[..17]);
        let r = parse_records::<WindowRecord>(&bytes).unwrap();
        assert_eq!(r.complete_len, whole);
        assert_eq!(r.records.len(), 1);
        assert_eq!(r.records["000001"].nll, vec![0.5]);
    }

    #[test]
    fn generated_records_without_token_logprobs_still_read() {
        let old = r#"{"item":"g/0","subject":"g","prompt_tokens":5,"tokens":[7,8],"output":"4","finish":"eos","gold":"4","strict":"4","flexible":"4","strict_correct":true,"flexible_correct":true,"correct":true}"#;
        let r = parse_records::<GenRecord>(format!("{old}\n").as_bytes()).unwrap();
        let r = &r.records["g/0"];
        assert!(r.token_logprobs.is_empty());
        assert_eq!(r.answer_logprob(), None);
        // Written back, an old record is the line it was read from.
        assert_eq!(serde_json::to_string(r).unwrap(), old);
        let new = GenRecord {
            token_logprobs: vec![-0.5, -0.25],
            ..r.clone()
        };
        assert_eq!(new.answer_logprob(), Some((-0.75, 2)));
        let back: GenRecord = serde_json::from_str(&serde_json::to_string(&new).unwrap()).unwrap();
        assert_eq!(back, new);
    }

    #[test]
    fn bad_and_duplicate_lines_name_their_line() {
        let rec = r#"{"item":"a/0","subject":"a","logprobs":[-1.0,-2.0],"pred":0,"answer":0,"correct":true,"context_tokens":9}"#;
        let text = format!("{rec}\n{rec}\n");
        let err = parse_records::<ItemRecord>(text.as_bytes()).unwrap_err();
        assert_eq!(
            err,
            RecordsError::Duplicate {
                line: 2,
                key: "a/0".into()
            }
        );
        let err = parse_records::<ItemRecord>(b"{}\n").unwrap_err();
        assert!(matches!(err, RecordsError::Unreadable { line: 1, .. }));
        let err = parse_records::<ItemRecord>(b"\xff\n").unwrap_err();
        assert!(matches!(err, RecordsError::Unreadable { line: 1, .. }));
    }
}
