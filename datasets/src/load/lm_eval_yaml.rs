//! A user's own lm-evaluation-harness task YAML: the subset of lm-eval's `ConfigurableTask` that
//! a task file can express without Python, scored as lm-eval scores it.
//!
//! A task file names its data (`dataset_path: json` or `parquet`, `dataset_kwargs.data_files`,
//! relative to the YAML's own folder), its output type, and three Jinja templates over one
//! document: `doc_to_text` (the prompt), `doc_to_choice` (the answer texts) and `doc_to_target`
//! (the gold). They are resolved as lm-eval's `doc_to_text` / `doc_to_choice` /
//! `doc_to_target` resolve them (`lm_eval/api/task.py`):
//!
//! - a value that is exactly one of the document's field names is that field's value;
//! - an integer is used as is, and a YAML list (or map's values) of choices as is;
//! - anything else is a template, rendered with the document's fields as variables. With
//!   choices configured, a rendered text or target that is all digits becomes an integer; a
//!   rendered target like `[...]` is read as a Python list (several golds, which is refused);
//!   rendered choices are read as a Python list literal (`ast.literal_eval`), and a choices
//!   template that is one `{{ expression }}` is evaluated as an expression so a list comes back as
//!   a list;
//! - a string gold is the index of the choice it equals.
//!
//! Templates render like lm-eval's Jinja: undefined variables are errors, a trailing newline is
//! kept, `True`/`False`/`None` and lists print as Python prints them, Python's string and dict
//! methods work (`.strip()`, `.split()`, `.lower()`, ...), and so do `list.index(x)` and the
//! `regex_replace` filter. Templates are code, as lm-eval's are: each render is bounded in steps
//! (fuel) and its output in length, but a template can still build a large value.
//!
//! What a task does that this loader cannot reproduce (a `!function` hook, `process_docs`,
//! few-shot settings, prompt sources, includes, an unknown key) is refused with a one-line error
//! naming the key and the file, never silently scored differently.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::path::{Path, PathBuf};

use minijinja::value::{from_args, Value as JValue, ValueKind};
use minijinja::{Environment, ErrorKind, Expression, Template, UndefinedBehavior};
use serde_json::{Map, Value};
use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::TScalarStyle;
use yaml_rust2::yaml::Hash;
use yaml_rust2::Yaml;

use super::{json, parquet, read_bytes, Sink};
use crate::error::{Error, Result};
use crate::gen::{GenItem, GenLoad, MAX_GEN_TOKENS};
use crate::item::{normalize_subject, BadRow, Layout, LoadReport, McItem, Rendered, ScoreNorm};

/// What a task file asks to be scored.
#[derive(Clone, Debug)]
pub enum LmEvalTask {
    /// `multiple_choice` (one continuation per choice, the task's `acc` or `acc_norm`) and
    /// `loglikelihood` (one continuation, right when greedy decoding would produce it): items
    /// scored by log-likelihood.
    Scored(LoadReport),
    /// `generate_until`: problems answered by greedy generation.
    Generation(GenLoad),
}

/// A task file larger than this is not a task file.
pub const MAX_TASK_YAML_BYTES: usize = 1 << 20;

/// lm-eval's limit on generated tokens when a task names none (`DEFAULT_MAX_GEN_TOKS`).
const DEFAULT_MAX_GEN_TOKS: usize = 256;

/// As in the other layouts: one answer letter each.
const MAX_CHOICES: usize = 26;

/// Nesting deeper than this is not a task config (and deep trees are dropped recursively).
const MAX_YAML_DEPTH: usize = 32;

/// YAML aliases copy the node they name; this bounds the copies (the "billion laughs" file).
const MAX_YAML_NODES: usize = 100_000;

/// The most data files one task may name.
const MAX_DATA_FILES: usize = 256;

/// Template steps one render may take: a task's templates take tens.
const TEMPLATE_FUEL: u64 = 200_000;

/// The longest text one template may render.
const MAX_RENDERED_BYTES: usize = 1 << 20;

/// Loads an lm-eval task YAML and the data files it names (relative to the YAML's folder).
/// Bad documents are skipped and reported with their data file and line (row for parquet), or
/// with `strict` the first is an error; a file that cannot be used at all is an
/// [`Error::TaskYaml`] naming the key at fault.
pub fn load_lm_eval_yaml(path: impl AsRef<Path>, strict: bool) -> Result<LmEvalTask> {
    let path = path.as_ref();
    let yaml = read_bytes(path)?;
    let base = path.parent().unwrap_or_else(|| Path::new(""));
    load_lm_eval_yaml_bytes(path, &yaml, base, strict)
}

/// [`load_lm_eval_yaml`] for a task file already in memory: `name` stands for the file in
/// messages, and data files are read relative to `base_dir`.
pub fn load_lm_eval_yaml_bytes(
    name: impl AsRef<Path>,
    yaml: &[u8],
    base_dir: impl AsRef<Path>,
    strict: bool,
) -> Result<LmEvalTask> {
    let name = name.as_ref();
    let config = Config::parse(name, yaml)?;
    let mut files = Vec::with_capacity(config.data_files.len());
    for rel in &config.data_files {
        let path = base_dir.as_ref().join(rel);
        let bytes = read_bytes(&path)?;
        files.push((path, bytes));
    }
    load_docs(name, &config, &files, strict)
}

/// A task file and its documents both in memory, for fuzzing and for callers whose data does
/// not come from files: the YAML's `data_files` are checked but not read, and `data` (JSON, JSON
/// Lines, or parquet as the YAML's `dataset_path` says) stands for them, named `data_name`.
pub fn load_lm_eval_yaml_with_data(
    name: impl AsRef<Path>,
    yaml: &[u8],
    data_name: impl AsRef<Path>,
    data: &[u8],
    strict: bool,
) -> Result<LmEvalTask> {
    let name = name.as_ref();
    let config = Config::parse(name, yaml)?;
    let files = [(data_name.as_ref().to_path_buf(), data.to_vec())];
    load_docs(name, &config, &files, strict)
}

// ---------------------------------------------------------------------------------------------
// The task config.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OutputType {
    MultipleChoice,
    Loglikelihood,
    GenerateUntil,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Json,
    Parquet,
}

/// A `doc_to_*` value as the YAML gives it.
#[derive(Clone, Debug)]
enum Spec {
    /// A field name or a Jinja template (which it is depends on the document's fields).
    Template(String),
    Int(i64),
    List(Vec<String>),
}

struct Config {
    subject: String,
    output: OutputType,
    format: Format,
    data_files: Vec<PathBuf>,
    text: Spec,
    choice: Option<Spec>,
    target: Spec,
    description: Option<Spec>,
    target_delimiter: String,
    until: Vec<String>,
    max_gen_toks: usize,
    norm: ScoreNorm,
}

/// Keys that change nothing effbench scores: labels, and settings of lm-eval features that only
/// act on few-shot examples (refused separately unless 0-shot) or decontamination reports.
const IGNORED_KEYS: &[&str] = &[
    "metadata",
    "tag",
    "group",
    "group_alias",
    "task_alias",
    "dataset_name",
    "training_split",
    "fewshot_split",
    "should_decontaminate",
    "doc_to_decontamination_query",
    "unsafe_code",
];

/// Keys that change what is scored and that this loader does not reproduce, with what to do.
const REFUSED_KEYS: &[(&str, &str)] = &[
    (
        "process_docs",
        "documents are rewritten by Python; apply it to the data file first",
    ),
    ("process_results", "results are scored by Python"),
    (
        "fewshot_config",
        "few-shot prompts are not built from task YAML",
    ),
    (
        "use_prompt",
        "promptsource templates are not available; write the template out",
    ),
    (
        "include",
        "includes are not followed; copy the included keys into this file",
    ),
    (
        "gen_prefix",
        "an answer prefix changes the prompt; put it in doc_to_text",
    ),
    ("doc_to_image", "multimodal tasks are not supported"),
    ("doc_to_audio", "multimodal tasks are not supported"),
    (
        "custom_dataset",
        "a Python dataset builder is not supported",
    ),
    ("class", "a Python task class is not supported"),
];

fn yaml_error(path: &Path, reason: impl Into<String>) -> Error {
    Error::TaskYaml {
        path: path.to_path_buf(),
        reason: one_line(reason.into()),
    }
}

fn one_line(s: String) -> String {
    if s.contains(['\n', '\r']) {
        s.split(['\n', '\r'])
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    } else {
        s
    }
}

impl Config {
    fn parse(path: &Path, bytes: &[u8]) -> Result<Config> {
        let err = |reason: String| yaml_error(path, reason);
        if bytes.len() > MAX_TASK_YAML_BYTES {
            return Err(err(format!(
                "{} bytes; a task file is at most {MAX_TASK_YAML_BYTES}",
                bytes.len()
            )));
        }
        let text = std::str::from_utf8(super::strip_bom(bytes))
            .map_err(|e| err(format!("not UTF-8 text ({})", super::utf8_reason(e))))?;
        let root = parse_yaml(text).map_err(err)?;
        let map = match root {
            Yaml::Hash(h) => h,
            _ => return Err(err("not a mapping of task keys".into())),
        };
        let mut keys: BTreeMap<String, Yaml> = BTreeMap::new();
        for (k, v) in map {
            let Yaml::String(k) = k else {
                return Err(err(format!("key {} is not a name", describe(&k))));
            };
            keys.insert(k, v);
        }
        for (key, why) in REFUSED_KEYS {
            if keys.contains_key(*key) {
                return Err(err(format!("`{key}` is not supported: {why}")));
            }
        }
        const KNOWN: &[&str] = &[
            "task",
            "output_type",
            "dataset_path",
            "dataset_kwargs",
            "test_split",
            "validation_split",
            "doc_to_text",
            "doc_to_choice",
            "doc_to_target",
            "target_delimiter",
            "fewshot_delimiter",
            "generation_kwargs",
            "num_fewshot",
            "metric_list",
            "description",
            "repeats",
            "filter_list",
        ];
        if let Some(unknown) = keys
            .keys()
            .find(|k| !KNOWN.contains(&k.as_str()) && !IGNORED_KEYS.contains(&k.as_str()))
        {
            return Err(err(format!(
                "unknown key `{unknown}`: it may change what is scored, so the file is refused"
            )));
        }
        let get = |k: &str| keys.get(k).filter(|v| !matches!(v, Yaml::Null));
        let string = |k: &str| -> Result<Option<String>> {
            match get(k) {
                None => Ok(None),
                Some(Yaml::String(s)) => Ok(Some(s.clone())),
                Some(other) => Err(err(format!("`{k}` is {}, not text", describe(other)))),
            }
        };

        let subject = match get("task") {
            None => path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            Some(Yaml::String(s)) => s.clone(),
            Some(Yaml::Array(_)) => {
                return Err(err(
                    "`task` is a list: a group of tasks; give each task its own file".into(),
                ))
            }
            Some(other) => return Err(err(format!("`task` is {}, not a name", describe(other)))),
        };
        let subject = Some(normalize_subject(&subject.replace(':', "_")))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "lm_eval".to_string());

        let output = match string("output_type")?.as_deref() {
            Some("multiple_choice") => OutputType::MultipleChoice,
            Some("loglikelihood") => OutputType::Loglikelihood,
            Some("generate_until") => OutputType::GenerateUntil,
            Some(other) => {
                return Err(err(format!(
                    "`output_type: {other}` is not supported (multiple_choice, loglikelihood or generate_until)"
                )))
            }
            None => {
                return Err(err(
                    "missing `output_type` (lm-eval's default is generate_until; write it out)"
                        .into(),
                ))
            }
        };

        match get("num_fewshot") {
            None | Some(Yaml::Integer(0)) => {}
            Some(v) => {
                return Err(err(format!(
                    "`num_fewshot: {}`: few-shot prompts are not built from task YAML; use 0 or leave it out",
                    describe(v)
                )))
            }
        }
        match get("repeats") {
            None | Some(Yaml::Integer(1)) => {}
            Some(v) => {
                return Err(err(format!(
                    "`repeats: {}`: each document is scored once",
                    describe(v)
                )))
            }
        }
        if get("filter_list").is_some() && output != OutputType::GenerateUntil {
            return Err(err(
                "`filter_list` on a log-likelihood task is not supported".into(),
            ));
        }

        let format = match string("dataset_path")?.as_deref() {
            Some("json") => Format::Json,
            Some("parquet") => Format::Parquet,
            Some(other) => {
                return Err(err(format!(
                    "`dataset_path: {other}`: only local files are read; use `dataset_path: json` (JSON or JSON Lines) or `parquet` with `dataset_kwargs.data_files`"
                )))
            }
            None => {
                return Err(err(
                    "missing `dataset_path` (json or parquet, with dataset_kwargs.data_files)"
                        .into(),
                ))
            }
        };
        let split = match string("test_split")? {
            Some(s) => Some(s),
            None => string("validation_split")?,
        };
        let data_files = data_files(get("dataset_kwargs"), split.as_deref()).map_err(err)?;

        let spec = |k: &str, lists: bool| -> Result<Option<Spec>> {
            match get(k) {
                None => Ok(None),
                Some(Yaml::String(s)) => Ok(Some(Spec::Template(s.clone()))),
                Some(Yaml::Integer(i)) if !lists => Ok(Some(Spec::Int(*i))),
                Some(Yaml::Array(items)) if lists => items
                    .iter()
                    .map(|v| match v {
                        Yaml::String(s) => Ok(s.clone()),
                        other => Err(err(format!(
                            "`{k}`: choice {} is not text",
                            describe(other)
                        ))),
                    })
                    .collect::<Result<Vec<_>>>()
                    .map(|l| Some(Spec::List(l))),
                Some(Yaml::Hash(h)) if lists => h
                    .iter()
                    .map(|(_, v)| match v {
                        Yaml::String(s) => Ok(s.clone()),
                        other => Err(err(format!(
                            "`{k}`: choice {} is not text",
                            describe(other)
                        ))),
                    })
                    .collect::<Result<Vec<_>>>()
                    .map(|l| Some(Spec::List(l))),
                Some(other) => Err(err(format!(
                    "`{k}` is {}; expected a template{}",
                    describe(other),
                    if lists {
                        " or a list"
                    } else {
                        " or an integer"
                    }
                ))),
            }
        };
        let text =
            spec("doc_to_text", false)?.ok_or_else(|| err("missing `doc_to_text`".into()))?;
        let target =
            spec("doc_to_target", false)?.ok_or_else(|| err("missing `doc_to_target`".into()))?;
        let choice = spec("doc_to_choice", true)?;
        let description = match get("description") {
            None => None,
            Some(Yaml::String(s)) if s.is_empty() => None,
            Some(Yaml::String(s)) => Some(Spec::Template(s.clone())),
            Some(other) => {
                return Err(err(format!(
                    "`description` is {}, not text",
                    describe(other)
                )))
            }
        };
        if output == OutputType::MultipleChoice && choice.is_none() {
            return Err(err(
                "missing `doc_to_choice`: a multiple_choice task needs its choices".into(),
            ));
        }
        let target_delimiter = string("target_delimiter")?.unwrap_or_else(|| " ".into());
        let fewshot_delimiter = string("fewshot_delimiter")?.unwrap_or_else(|| "\n\n".into());

        let (until, max_gen_toks) = if output == OutputType::GenerateUntil {
            generation(get("generation_kwargs"), &fewshot_delimiter).map_err(err)?
        } else {
            (Vec::new(), DEFAULT_MAX_GEN_TOKS)
        };
        let norm = match output {
            OutputType::MultipleChoice => mc_norm(get("metric_list")).map_err(err)?,
            OutputType::Loglikelihood => ScoreNorm::Greedy,
            // Not a log-likelihood task; the field is unused.
            OutputType::GenerateUntil => ScoreNorm::Raw,
        };
        Ok(Config {
            subject,
            output,
            format,
            data_files,
            text,
            choice,
            target,
            description,
            target_delimiter,
            until,
            max_gen_toks,
            norm,
        })
    }
}

fn describe(v: &Yaml) -> String {
    match v {
        Yaml::String(s) => format!("`{s}`"),
        Yaml::Integer(i) => i.to_string(),
        Yaml::Real(r) => r.clone(),
        Yaml::Boolean(b) => b.to_string(),
        Yaml::Null => "null".into(),
        Yaml::Array(_) => "a list".into(),
        Yaml::Hash(_) => "a mapping".into(),
        Yaml::Alias(_) | Yaml::BadValue => "not a value".into(),
    }
}

/// `dataset_kwargs.data_files`: one path, a list, or a map from split to path(s); with a map,
/// the entry of the task's test split (else its validation split).
fn data_files(
    kwargs: Option<&Yaml>,
    split: Option<&str>,
) -> std::result::Result<Vec<PathBuf>, String> {
    let Some(Yaml::Hash(kwargs)) = kwargs else {
        return Err("missing `dataset_kwargs.data_files` (the data file(s) to read)".into());
    };
    let mut files = None;
    for (k, v) in kwargs {
        match k.as_str() {
            Some("data_files") => files = Some(v),
            // Only meaningful to hub loading scripts.
            Some("trust_remote_code") => {}
            Some(other) => return Err(format!("`dataset_kwargs.{other}` is not supported")),
            None => return Err("a `dataset_kwargs` key is not a name".into()),
        }
    }
    let files = files.ok_or("missing `dataset_kwargs.data_files` (the data file(s) to read)")?;
    let chosen = match files {
        Yaml::Hash(by_split) => {
            let Some(split) = split else {
                return Err(
                    "`data_files` is a map of splits but neither `test_split` nor `validation_split` says which to score"
                        .into(),
                );
            };
            let names: Vec<String> = by_split
                .keys()
                .map(|k| k.as_str().map_or_else(|| describe(k), String::from))
                .collect();
            by_split
                .iter()
                .find(|(k, _)| k.as_str() == Some(split))
                .map(|(_, v)| v)
                .ok_or_else(|| {
                    format!(
                        "`data_files` has no `{split}` entry (it has {})",
                        names.join(", ")
                    )
                })?
        }
        other => other,
    };
    let list: Vec<&Yaml> = match chosen {
        Yaml::Array(items) => items.iter().collect(),
        one => vec![one],
    };
    if list.is_empty() {
        return Err("`data_files` names no file".into());
    }
    if list.len() > MAX_DATA_FILES {
        return Err(format!(
            "`data_files` names {} files; at most {MAX_DATA_FILES}",
            list.len()
        ));
    }
    list.into_iter()
        .map(|v| {
            let Yaml::String(s) = v else {
                return Err(format!("`data_files`: {} is not a path", describe(v)));
            };
            if s.contains("://") {
                return Err(format!(
                    "`data_files`: `{s}` is remote; only local files are read"
                ));
            }
            if s.contains(['*', '?', '[']) {
                return Err(format!(
                    "`data_files`: `{s}` is a pattern; list the files instead"
                ));
            }
            if s.is_empty() {
                return Err("`data_files`: an empty path".into());
            }
            Ok(PathBuf::from(s))
        })
        .collect()
}

/// `generation_kwargs`: the stop sequences and token limit; sampling is refused, since effbench
/// decodes greedily.
fn generation(
    kwargs: Option<&Yaml>,
    fewshot_delimiter: &str,
) -> std::result::Result<(Vec<String>, usize), String> {
    // lm-eval stops at the few-shot delimiter when a task names no stop sequence.
    let default_until = vec![fewshot_delimiter.to_string()];
    let kwargs = match kwargs {
        None => return Ok((default_until, DEFAULT_MAX_GEN_TOKS)),
        Some(Yaml::Hash(h)) => h,
        Some(other) => {
            return Err(format!(
                "`generation_kwargs` is {}, not a mapping",
                describe(other)
            ))
        }
    };
    let get = |k: &str| {
        kwargs
            .iter()
            .find(|(key, _)| key.as_str() == Some(k))
            .map(|(_, v)| v)
            .filter(|v| !matches!(v, Yaml::Null))
    };
    let until = match get("until") {
        None => default_until,
        Some(Yaml::String(s)) => vec![s.clone()],
        Some(Yaml::Array(items)) => items
            .iter()
            .map(|v| match v {
                Yaml::String(s) => Ok(s.clone()),
                other => Err(format!(
                    "`generation_kwargs.until`: {} is not text",
                    describe(other)
                )),
            })
            .collect::<std::result::Result<_, _>>()?,
        Some(other) => {
            return Err(format!(
                "`generation_kwargs.until` is {}, not a list of text",
                describe(other)
            ))
        }
    };
    let max = match get("max_gen_toks") {
        None => DEFAULT_MAX_GEN_TOKS,
        Some(Yaml::Integer(n)) if (1..=MAX_GEN_TOKENS as i64).contains(n) => *n as usize,
        Some(other) => {
            return Err(format!(
                "`generation_kwargs.max_gen_toks: {}` is not between 1 and {MAX_GEN_TOKENS}",
                describe(other)
            ))
        }
    };
    let do_sample = match get("do_sample") {
        None => None,
        Some(Yaml::Boolean(b)) => Some(*b),
        Some(other) => {
            return Err(format!(
                "`generation_kwargs.do_sample` is {}, not true or false",
                describe(other)
            ))
        }
    };
    let temperature = match get("temperature") {
        None => 0.0,
        Some(Yaml::Integer(i)) => *i as f64,
        Some(Yaml::Real(r)) => r.parse::<f64>().unwrap_or(f64::NAN),
        Some(other) => {
            return Err(format!(
                "`generation_kwargs.temperature` is {}, not a number",
                describe(other)
            ))
        }
    };
    let sampling = do_sample == Some(true) || (do_sample.is_none() && temperature != 0.0);
    if sampling {
        return Err(
            "`generation_kwargs` asks for sampling (do_sample or a temperature above 0); effbench generates greedily"
                .into(),
        );
    }
    Ok((until, max))
}

/// The multiple-choice metric: the first of `acc` (raw log-likelihood) and `acc_norm` (per
/// character of the choice) that `metric_list` names; `acc` without one.
fn mc_norm(list: Option<&Yaml>) -> std::result::Result<ScoreNorm, String> {
    let Some(list) = list else {
        return Ok(ScoreNorm::Raw);
    };
    let Yaml::Array(entries) = list else {
        return Err(format!("`metric_list` is {}, not a list", describe(list)));
    };
    let mut names = Vec::new();
    for entry in entries {
        let name = match entry {
            Yaml::Hash(h) => h
                .iter()
                .find(|(k, _)| k.as_str() == Some("metric"))
                .and_then(|(_, v)| v.as_str()),
            Yaml::String(s) => Some(s.as_str()),
            _ => None,
        };
        match name {
            Some("acc") => return Ok(ScoreNorm::Raw),
            Some("acc_norm") => return Ok(ScoreNorm::PerChoiceChar),
            Some(other) => names.push(other.to_string()),
            None => return Err("a `metric_list` entry has no `metric` name".into()),
        }
    }
    Err(format!(
        "`metric_list` names no multiple-choice metric effbench scores (acc or acc_norm); it has [{}]",
        names.join(", ")
    ))
}

// ---------------------------------------------------------------------------------------------
// YAML: read through the event parser so tags (`!function`) are seen, aliases are bounded, and
// nesting is limited.

fn parse_yaml(text: &str) -> std::result::Result<Yaml, String> {
    struct Frame {
        node: Yaml,
        anchor: usize,
        key: Option<Yaml>,
        size: usize,
        depth: usize,
    }
    let mut parser = Parser::new_from_str(text);
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, (Yaml, usize, usize)> = HashMap::new();
    let mut docs: Vec<Yaml> = Vec::new();
    let mut total = 0usize;
    let mut top_key: Option<String> = None;
    let hook = |tag: &Option<Tag>, value: &str, top_key: &Option<String>| {
        let Some(Tag { handle, suffix }) = tag else {
            return Ok(());
        };
        if handle == "tag:yaml.org,2002:" {
            return Ok(());
        }
        let at = top_key
            .as_deref()
            .map_or_else(String::new, |k| format!("`{k}`: "));
        let shown = if value.is_empty() {
            String::new()
        } else {
            format!(" {value}")
        };
        Err(format!(
            "{at}`{handle}{suffix}{shown}`: Python hooks (YAML tags such as !function) are not supported; write the value as a Jinja template"
        ))
    };
    loop {
        let (event, mark) = parser.next_token().map_err(|e| format!("not YAML: {e}"))?;
        let (node, anchor, size, depth) = match event {
            Event::StreamEnd => break,
            Event::Nothing | Event::StreamStart | Event::DocumentStart | Event::DocumentEnd => {
                continue
            }
            Event::SequenceStart(anchor, ref tag) | Event::MappingStart(anchor, ref tag) => {
                hook(tag, "", &top_key)?;
                if stack.len() >= MAX_YAML_DEPTH {
                    return Err(format!(
                        "nested deeper than {MAX_YAML_DEPTH} levels (line {})",
                        mark.line()
                    ));
                }
                let node = if matches!(event, Event::SequenceStart(..)) {
                    Yaml::Array(Vec::new())
                } else {
                    Yaml::Hash(Hash::new())
                };
                stack.push(Frame {
                    node,
                    anchor,
                    key: None,
                    size: 1,
                    depth: 1,
                });
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let Some(frame) = stack.pop() else {
                    return Err("unbalanced YAML".into());
                };
                if frame.key.is_some() {
                    return Err("a mapping key has no value".into());
                }
                (frame.node, frame.anchor, frame.size, frame.depth)
            }
            Event::Scalar(value, style, anchor, tag) => {
                hook(&tag, &value, &top_key)?;
                let node = match (&tag, style) {
                    (_, s) if s != TScalarStyle::Plain => Yaml::String(value),
                    // A core tag (`!!str`, `!!int`): as the YAML loader resolves it.
                    (Some(Tag { suffix, .. }), _) => match suffix.as_str() {
                        "str" => Yaml::String(value),
                        "int" => value.parse().map_or(Yaml::BadValue, Yaml::Integer),
                        "bool" => match value.as_str() {
                            "true" | "True" | "TRUE" => Yaml::Boolean(true),
                            "false" | "False" | "FALSE" => Yaml::Boolean(false),
                            _ => Yaml::BadValue,
                        },
                        "null" => Yaml::Null,
                        _ => Yaml::from_str(&value),
                    },
                    (None, _) => Yaml::from_str(&value),
                };
                (node, anchor, 1, 1)
            }
            Event::Alias(id) => {
                let Some((node, size, depth)) = anchors.get(&id) else {
                    return Err(format!("unknown alias (line {})", mark.line()));
                };
                if total.saturating_add(*size) > MAX_YAML_NODES {
                    return Err(format!(
                        "expands to more than {MAX_YAML_NODES} values through aliases"
                    ));
                }
                (node.clone(), 0, *size, *depth)
            }
        };
        total = total.saturating_add(size);
        if total > MAX_YAML_NODES {
            return Err(format!("more than {MAX_YAML_NODES} values"));
        }
        if stack.len() + depth > MAX_YAML_DEPTH {
            return Err(format!(
                "nested deeper than {MAX_YAML_DEPTH} levels (line {})",
                mark.line()
            ));
        }
        if anchor > 0 {
            anchors.insert(anchor, (node.clone(), size, depth));
        }
        let level = stack.len();
        let Some(frame) = stack.last_mut() else {
            docs.push(node);
            continue;
        };
        frame.size = frame.size.saturating_add(size);
        frame.depth = frame.depth.max(depth + 1);
        match &mut frame.node {
            Yaml::Array(items) => items.push(node),
            Yaml::Hash(map) => match frame.key.take() {
                None => {
                    if level == 1 {
                        top_key = node.as_str().map(String::from);
                    }
                    frame.key = Some(node);
                }
                Some(key) => {
                    if map.contains_key(&key) {
                        return Err(format!("key {} appears twice", describe(&key)));
                    }
                    map.insert(key, node);
                }
            },
            _ => return Err("unbalanced YAML".into()),
        }
    }
    match docs.len() {
        0 => Err("empty: no task keys".into()),
        1 => Ok(docs.pop().unwrap_or(Yaml::Null)),
        n => Err(format!("{n} YAML documents; a task file holds one")),
    }
}

// ---------------------------------------------------------------------------------------------
// Templates.

/// A `doc_to_*` spec ready to apply to documents.
enum Compiled<'e> {
    Template {
        source: &'e str,
        template: Template<'e, 'e>,
        /// The same source as one expression, when it is exactly `{{ expression }}`.
        expression: Option<Expression<'e, 'e>>,
    },
    Int(i64),
    List(Vec<String>),
}

/// What a spec gives for one document, before the output type decides what it means.
#[derive(Debug)]
enum Got {
    Text(String),
    Int(i64),
    /// Several values (refused as a gold or a prompt).
    List,
}

fn environment<'e>() -> Environment<'e> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(TEMPLATE_FUEL));
    let mut syntax = minijinja::syntax::SyntaxConfig::builder();
    syntax.keep_trailing_newline(true);
    if let Ok(syntax) = syntax.build() {
        env.set_syntax(syntax);
    }
    env.set_formatter(|out, state, value| match value.kind() {
        ValueKind::None | ValueKind::Bool | ValueKind::Seq | ValueKind::Map => out
            .write_str(&py_repr(value))
            .map_err(|_| minijinja::Error::new(ErrorKind::WriteFailure, "write failed")),
        _ => minijinja::escape_formatter(out, state, value),
    });
    env.set_unknown_method_callback(|state, value, method, args| {
        if method == "index" {
            if let Some(s) = value.as_str() {
                let (needle,): (&str,) = from_args(args)?;
                return s
                    .find(needle)
                    .map(|at| JValue::from(s[..at].chars().count()))
                    .ok_or_else(|| {
                        minijinja::Error::new(ErrorKind::InvalidOperation, "substring not found")
                    });
            }
            if value.kind() == ValueKind::Seq {
                let (needle,): (JValue,) = from_args(args)?;
                for (i, item) in value.try_iter()?.enumerate() {
                    if item == needle {
                        return Ok(JValue::from(i));
                    }
                }
                return Err(minijinja::Error::new(
                    ErrorKind::InvalidOperation,
                    format!("{} is not in list", py_repr(&needle)),
                ));
            }
        }
        minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)
    });
    env.add_filter("regex_replace", regex_replace);
    env
}

/// lm-eval's `regex_replace` filter: Python's `re.sub(pattern, repl, string, count)`.
fn regex_replace(
    string: &str,
    pattern: &str,
    repl: &str,
    count: Option<usize>,
) -> std::result::Result<String, minijinja::Error> {
    let re = regex::RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| {
            minijinja::Error::new(ErrorKind::InvalidOperation, format!("regex_replace: {e}"))
        })?;
    // Python's `\1` and `\g<name>` group references in the regex crate's `${1}` spelling.
    let mut rust_repl = String::with_capacity(repl.len());
    let mut chars = repl.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '$' => rust_repl.push_str("$$"),
            '\\' => match chars.peek().copied() {
                Some(d) if d.is_ascii_digit() => {
                    let mut group = String::new();
                    while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
                        group.push(d);
                        chars.next();
                    }
                    rust_repl.push_str(&format!("${{{group}}}"));
                }
                Some('g') => {
                    chars.next();
                    let mut group = String::new();
                    if chars.peek() == Some(&'<') {
                        chars.next();
                        for d in chars.by_ref() {
                            if d == '>' {
                                break;
                            }
                            group.push(d);
                        }
                    }
                    rust_repl.push_str(&format!("${{{group}}}"));
                }
                Some('n') => {
                    chars.next();
                    rust_repl.push('\n');
                }
                Some('t') => {
                    chars.next();
                    rust_repl.push('\t');
                }
                Some('\\') => {
                    chars.next();
                    rust_repl.push('\\');
                }
                _ => rust_repl.push('\\'),
            },
            c => rust_repl.push(c),
        }
    }
    // Built step by step, so a replacement that would grow past the render limit stops first.
    let refs = rust_repl.matches("${").count();
    let limit = count.filter(|&c| c > 0).unwrap_or(usize::MAX);
    let too_long = || {
        minijinja::Error::new(
            ErrorKind::InvalidOperation,
            format!("regex_replace: result longer than {MAX_RENDERED_BYTES} bytes"),
        )
    };
    let mut out = String::new();
    let mut last = 0;
    for caps in re.captures_iter(string).take(limit) {
        let Some(m) = caps.get(0) else { continue };
        let growth = refs
            .saturating_mul(m.len())
            .saturating_add(rust_repl.len())
            .saturating_add(m.start() - last);
        if out.len().saturating_add(growth) > MAX_RENDERED_BYTES {
            return Err(too_long());
        }
        out.push_str(&string[last..m.start()]);
        caps.expand(&rust_repl, &mut out);
        last = m.end();
    }
    out.push_str(&string[last..]);
    if out.len() > MAX_RENDERED_BYTES {
        return Err(too_long());
    }
    Ok(out)
}

fn compile<'e>(
    env: &'e Environment<'e>,
    path: &Path,
    key: &str,
    spec: &'e Spec,
) -> Result<Compiled<'e>> {
    Ok(match spec {
        Spec::Int(i) => Compiled::Int(*i),
        Spec::List(l) => Compiled::List(l.clone()),
        Spec::Template(source) => {
            let template = env.template_from_str(source).map_err(|e| {
                yaml_error(path, format!("`{key}`: template does not compile: {e}"))
            })?;
            let expression = single_expression(source).and_then(|e| env.compile_expression(e).ok());
            Compiled::Template {
                source,
                template,
                expression,
            }
        }
    })
}

/// The expression inside a template that is exactly `{{ expression }}`, if it is one.
fn single_expression(source: &str) -> Option<&str> {
    let inner = source.trim().strip_prefix("{{")?.strip_suffix("}}")?;
    let inner = inner.strip_prefix('-').unwrap_or(inner);
    let inner = inner.strip_suffix('-').unwrap_or(inner);
    if inner.contains("{{") || inner.contains("}}") || inner.contains("{%") || inner.contains("{#")
    {
        return None;
    }
    Some(inner)
}

/// A writer that refuses to grow past [`MAX_RENDERED_BYTES`].
struct Capped(Vec<u8>);

impl io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.0.len() + buf.len() > MAX_RENDERED_BYTES {
            return Err(io::Error::other(format!(
                "renders more than {MAX_RENDERED_BYTES} bytes"
            )));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn render(template: &Template<'_, '_>, ctx: &JValue) -> std::result::Result<String, String> {
    let mut out = Capped(Vec::new());
    template
        .render_captured_to(ctx.clone(), &mut out)
        .map_err(|e| jinja_reason(&e))?;
    String::from_utf8(out.0).map_err(|_| "rendered invalid UTF-8".to_string())
}

fn jinja_reason(e: &minijinja::Error) -> String {
    let mut reason = e.to_string();
    if let Some(detail) = e.detail() {
        if !reason.contains(detail) {
            reason = format!("{reason}: {detail}");
        }
    }
    one_line(reason)
}

/// The document as template variables.
fn jinja_value(v: &Value) -> JValue {
    match v {
        Value::Null => JValue::from(()),
        Value::Bool(b) => JValue::from(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                JValue::from(i)
            } else if let Some(u) = n.as_u64() {
                JValue::from(u)
            } else {
                JValue::from(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Value::String(s) => JValue::from(s.as_str()),
        Value::Array(a) => JValue::from(a.iter().map(jinja_value).collect::<Vec<_>>()),
        Value::Object(o) => JValue::from(
            o.iter()
                .map(|(k, v)| (k.clone(), jinja_value(v)))
                .collect::<BTreeMap<String, JValue>>(),
        ),
    }
}

/// A value as Python's `repr` (and so Jinja2's rendering of a list) spells it.
fn py_repr(v: &JValue) -> String {
    let mut out = String::new();
    py_repr_into(v, &mut out, 0);
    out
}

fn py_repr_into(v: &JValue, out: &mut String, depth: usize) {
    if depth > 64 {
        out.push_str("...");
        return;
    }
    match v.kind() {
        ValueKind::None | ValueKind::Undefined => out.push_str("None"),
        ValueKind::Bool => out.push_str(if v.is_true() { "True" } else { "False" }),
        ValueKind::String => py_str_repr(v.as_str().unwrap_or_default(), out),
        ValueKind::Seq | ValueKind::Iterable => {
            out.push('[');
            if let Ok(items) = v.try_iter() {
                for (i, item) in items.enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    py_repr_into(&item, out, depth + 1);
                }
            }
            out.push(']');
        }
        ValueKind::Map => {
            out.push('{');
            if let Ok(keys) = v.try_iter() {
                for (i, key) in keys.enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    py_repr_into(&key, out, depth + 1);
                    out.push_str(": ");
                    let value = v.get_item(&key).unwrap_or_default();
                    py_repr_into(&value, out, depth + 1);
                }
            }
            out.push('}');
        }
        _ => out.push_str(&v.to_string()),
    }
}

fn py_str_repr(s: &str, out: &mut String) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

/// Python's `ast.literal_eval` for what a rendered choice list or target can hold: strings,
/// numbers, `True`/`False`/`None`, and lists or tuples of them.
fn literal_eval(text: &str) -> std::result::Result<JValue, String> {
    let mut p = Lit {
        s: text.as_bytes(),
        text,
        at: 0,
    };
    let v = p.value(0)?;
    p.space();
    if p.at != p.s.len() {
        return Err(format!("unexpected text at byte {}", p.at));
    }
    Ok(v)
}

struct Lit<'a> {
    s: &'a [u8],
    text: &'a str,
    at: usize,
}

impl Lit<'_> {
    fn space(&mut self) {
        while self.s.get(self.at).is_some_and(u8::is_ascii_whitespace) {
            self.at += 1;
        }
    }

    fn value(&mut self, depth: usize) -> std::result::Result<JValue, String> {
        if depth > 32 {
            return Err("nested too deeply".into());
        }
        self.space();
        match self.s.get(self.at) {
            None => Err("ends early".into()),
            Some(b'[') | Some(b'(') => {
                let close = if self.s[self.at] == b'[' { b']' } else { b')' };
                self.at += 1;
                let mut items = Vec::new();
                loop {
                    self.space();
                    if self.s.get(self.at) == Some(&close) {
                        self.at += 1;
                        return Ok(JValue::from(items));
                    }
                    items.push(self.value(depth + 1)?);
                    self.space();
                    match self.s.get(self.at) {
                        Some(b',') => self.at += 1,
                        Some(c) if *c == close => {}
                        _ => return Err(format!("expected `,` at byte {}", self.at)),
                    }
                }
            }
            Some(b'\'') | Some(b'"') => {
                let mut out = String::new();
                // Adjacent literals concatenate, as in Python.
                while let Some(&q) = self.s.get(self.at).filter(|c| **c == b'\'' || **c == b'"') {
                    self.at += 1;
                    self.string_body(q, &mut out)?;
                    self.space();
                }
                Ok(JValue::from(out))
            }
            Some(_) => {
                let start = self.at;
                while self.s.get(self.at).is_some_and(|c| {
                    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'+' | b'.' | b'_')
                }) {
                    self.at += 1;
                }
                let word = &self.text[start..self.at];
                match word {
                    "True" => Ok(JValue::from(true)),
                    "False" => Ok(JValue::from(false)),
                    "None" => Ok(JValue::from(())),
                    _ => {
                        let digits = word.replace('_', "");
                        if let Ok(i) = digits.parse::<i64>() {
                            Ok(JValue::from(i))
                        } else if let Ok(f) = digits.parse::<f64>() {
                            Ok(JValue::from(f))
                        } else {
                            Err(format!("`{word}` is not a literal"))
                        }
                    }
                }
            }
        }
    }

    fn string_body(&mut self, quote: u8, out: &mut String) -> std::result::Result<(), String> {
        loop {
            let rest = &self.text[self.at..];
            let Some(c) = rest.chars().next() else {
                return Err("unterminated string".into());
            };
            self.at += c.len_utf8();
            match c {
                c if c as u32 == quote as u32 => return Ok(()),
                '\n' => return Err("newline in a string".into()),
                '\\' => {
                    let Some(e) = self.text[self.at..].chars().next() else {
                        return Err("unterminated string".into());
                    };
                    self.at += e.len_utf8();
                    match e {
                        'n' => out.push('\n'),
                        't' => out.push('\t'),
                        'r' => out.push('\r'),
                        '0' => out.push('\0'),
                        '\\' | '\'' | '"' => out.push(e),
                        '\n' => {}
                        'x' | 'u' | 'U' => {
                            let n = match e {
                                'x' => 2,
                                'u' => 4,
                                _ => 8,
                            };
                            let hex = self.text.get(self.at..self.at + n).ok_or("short escape")?;
                            let code = u32::from_str_radix(hex, 16)
                                .map_err(|_| format!("bad escape \\{e}{hex}"))?;
                            out.push(char::from_u32(code).ok_or("bad escape")?);
                            self.at += n;
                        }
                        other => {
                            out.push('\\');
                            out.push(other);
                        }
                    }
                }
                c => out.push(c),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Documents.

struct Specs<'e> {
    text: Compiled<'e>,
    choice: Option<Compiled<'e>>,
    target: Compiled<'e>,
    description: Option<Compiled<'e>>,
}

impl Specs<'_> {
    /// `doc_to_text` / `doc_to_target` (and `description`), as lm-eval resolves them.
    fn resolve(
        &self,
        which: Which,
        doc: &Map<String, Value>,
        ctx: &JValue,
    ) -> std::result::Result<Got, String> {
        let (spec, key) = match which {
            Which::Text => (&self.text, "doc_to_text"),
            Which::Target => (&self.target, "doc_to_target"),
            Which::Description => match &self.description {
                Some(d) => (d, "description"),
                None => return Ok(Got::Text(String::new())),
            },
        };
        let digits_are_indices = self.choice.is_some() && which != Which::Description;
        match spec {
            Compiled::Int(i) => Ok(Got::Int(*i)),
            Compiled::List(_) => Ok(Got::List),
            Compiled::Template {
                source, template, ..
            } => {
                if let Some(v) = doc.get(*source) {
                    return field(v).map_err(|e| format!("{key}: field `{source}` {e}"));
                }
                let s = render(template, ctx).map_err(|e| format!("{key}: {e}"))?;
                if digits_are_indices && !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
                    return s
                        .parse::<i64>()
                        .map(Got::Int)
                        .map_err(|_| format!("{key}: index `{s}` is too large"));
                }
                if which == Which::Target && s.len() >= 2 && s.starts_with('[') && s.ends_with(']')
                {
                    // lm-eval reads it as a Python list, and keeps the text if that fails.
                    if let Ok(v) = literal_eval(&s) {
                        if v.kind() == ValueKind::Seq {
                            return Ok(Got::List);
                        }
                    }
                }
                Ok(Got::Text(s))
            }
        }
    }

    /// `doc_to_choice`: the answer texts.
    fn choices(
        &self,
        doc: &Map<String, Value>,
        ctx: &JValue,
    ) -> std::result::Result<Vec<String>, String> {
        let Some(spec) = &self.choice else {
            return Err("no doc_to_choice".into());
        };
        let value = match spec {
            Compiled::Int(_) => return Err("doc_to_choice is not a list".into()),
            Compiled::List(l) => return check_choices(l.clone()),
            Compiled::Template {
                source,
                template,
                expression,
            } => {
                if let Some(v) = doc.get(*source) {
                    jinja_value(v)
                } else {
                    let evaluated = match expression {
                        Some(e) => Some(
                            e.eval(ctx.clone())
                                .map_err(|e| format!("doc_to_choice: {}", jinja_reason(&e)))?,
                        ),
                        None => None,
                    };
                    match evaluated {
                        Some(v) if v.kind() == ValueKind::Seq => v,
                        Some(v) if v.kind() == ValueKind::String => {
                            literal_eval(v.as_str().unwrap_or_default())
                                .map_err(|e| format!("doc_to_choice: not a list ({e})"))?
                        }
                        _ => {
                            let s =
                                render(template, ctx).map_err(|e| format!("doc_to_choice: {e}"))?;
                            literal_eval(&s).map_err(|e| {
                                format!("doc_to_choice: `{}` is not a list ({e})", clip(&s))
                            })?
                        }
                    }
                }
            }
        };
        if value.kind() != ValueKind::Seq {
            return Err(format!(
                "doc_to_choice gave {}, not a list",
                clip(&py_repr(&value))
            ));
        }
        let len = value.len().unwrap_or(0);
        if !(2..=MAX_CHOICES).contains(&len) {
            return Err(format!("expected 2 to {MAX_CHOICES} choices, found {len}"));
        }
        let items = value.try_iter().map_err(|e| jinja_reason(&e))?;
        let texts = items
            .enumerate()
            .map(|(i, c)| {
                c.as_str()
                    .map(String::from)
                    .ok_or_else(|| format!("choice {i} is {}, not text", clip(&py_repr(&c))))
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        check_choices(texts)
    }
}

fn check_choices(choices: Vec<String>) -> std::result::Result<Vec<String>, String> {
    if !(2..=MAX_CHOICES).contains(&choices.len()) {
        return Err(format!(
            "expected 2 to {MAX_CHOICES} choices, found {}",
            choices.len()
        ));
    }
    Ok(choices)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Which {
    Text,
    Target,
    Description,
}

/// A field returned as is: lm-eval hands the value itself to the task (a bool counts as 0 or
/// 1, as in Python).
fn field(v: &Value) -> std::result::Result<Got, String> {
    match v {
        Value::String(s) => Ok(Got::Text(s.clone())),
        Value::Bool(b) => Ok(Got::Int(i64::from(*b))),
        Value::Number(n) => n
            .as_i64()
            .map(Got::Int)
            .ok_or_else(|| format!("is {n}, not an index")),
        Value::Array(_) => Ok(Got::List),
        Value::Null => Err("is null".into()),
        Value::Object(_) => Err("is an object".into()),
    }
}

fn clip(s: &str) -> String {
    const MAX: usize = 80;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut cut = MAX;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}...", &s[..cut])
}

/// The scored form of one document.
enum Built {
    Mc(McItem),
    Gen(GenItem),
}

/// Whether `doc_to_text` picks the gold context (WinoGrande's form: each choice completes the
/// context, and the target is the shared continuation), as decided by the first document.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Question,
    ContextPerChoice,
}

fn build(
    config: &Config,
    specs: &Specs<'_>,
    doc: &Map<String, Value>,
    id: String,
    mode: &mut Option<Mode>,
) -> std::result::Result<Built, String> {
    let ctx = JValue::from(
        doc.iter()
            .map(|(k, v)| (k.clone(), jinja_value(v)))
            .collect::<BTreeMap<String, JValue>>(),
    );
    let description = match specs.resolve(Which::Description, doc, &ctx)? {
        Got::Text(s) => s,
        Got::Int(i) => i.to_string(),
        Got::List => return Err("description gave a list".into()),
    };
    let text = specs.resolve(Which::Text, doc, &ctx)?;
    let target = specs.resolve(Which::Target, doc, &ctx)?;
    let subject = config.subject.clone();
    let delim = &config.target_delimiter;
    let need_text = |got: Got| match got {
        Got::Text(s) if s.is_empty() && description.is_empty() => {
            Err("doc_to_text rendered an empty prompt".to_string())
        }
        Got::Text(s) => Ok(s),
        Got::Int(i) => Err(format!("doc_to_text gave the number {i}, not a prompt")),
        Got::List => Err("doc_to_text gave a list, not a prompt".into()),
    };
    match config.output {
        OutputType::GenerateUntil => {
            let question = need_text(text)?;
            let gold = match target {
                Got::Text(s) => s,
                Got::Int(i) => i.to_string(),
                Got::List => {
                    return Err("doc_to_target gave several gold answers; one is supported".into())
                }
            };
            if gold.trim().is_empty() {
                return Err("doc_to_target gave an empty gold answer".into());
            }
            Ok(Built::Gen(GenItem {
                id,
                subject,
                prompt: format!("{description}{question}"),
                until: config.until.clone(),
                max_new_tokens: config.max_gen_toks,
                gold,
            }))
        }
        OutputType::Loglikelihood => {
            let question = need_text(text)?;
            // lm-eval scores the target exactly as rendered: no delimiter is added.
            let continuation = match target {
                Got::Text(s) if !s.is_empty() => s,
                Got::Text(_) => return Err("doc_to_target gave an empty continuation".into()),
                Got::Int(i) => return Err(format!("doc_to_target gave the number {i}, not text")),
                Got::List => return Err("doc_to_target gave a list, not text".into()),
            };
            let choice = continuation
                .strip_prefix(' ')
                .unwrap_or(&continuation)
                .to_string();
            Ok(Built::Mc(McItem {
                id,
                subject,
                question: question.clone(),
                choices: vec![choice],
                answer: 0,
                rendered: Some(Rendered {
                    contexts: vec![format!("{description}{question}")],
                    continuations: vec![continuation],
                    norm: ScoreNorm::Greedy,
                }),
            }))
        }
        OutputType::MultipleChoice => {
            let choices = specs.choices(doc, &ctx)?;
            let n = choices.len();
            let this = match text {
                Got::Int(_) => Mode::ContextPerChoice,
                _ => Mode::Question,
            };
            let first = *mode.get_or_insert(this);
            if first != this {
                return Err(match first {
                    Mode::Question => "doc_to_text gave an index here but a prompt for the first document".into(),
                    Mode::ContextPerChoice => "doc_to_text gave a prompt here but an index (one context per choice) for the first document".into(),
                });
            }
            let index = |i: i64, what: &str| -> std::result::Result<usize, String> {
                usize::try_from(i)
                    .ok()
                    .filter(|&a| a < n)
                    .ok_or_else(|| format!("{what} {i} is not a choice index below {n}"))
            };
            let (question, answer, contexts, continuations) = match text {
                Got::Int(gold) => {
                    let answer = index(gold, "doc_to_text's gold")?;
                    let continuation = match target {
                        Got::Text(s) => s,
                        Got::Int(i) => i.to_string(),
                        Got::List => {
                            return Err(
                                "doc_to_target gave a list, not the shared continuation".into()
                            )
                        }
                    };
                    let contexts = choices
                        .iter()
                        .map(|c| format!("{description}{c}"))
                        .collect();
                    let cont = format!("{delim}{continuation}");
                    (continuation, answer, contexts, vec![cont; n])
                }
                other => {
                    let question = need_text(other)?;
                    let answer = match target {
                        Got::Int(i) => index(i, "target")?,
                        Got::Text(s) => choices.iter().position(|c| *c == s).ok_or_else(|| {
                            format!("target `{}` is not one of the choices", clip(&s))
                        })?,
                        Got::List => {
                            return Err(
                                "doc_to_target gave several gold answers; one is supported".into()
                            )
                        }
                    };
                    let contexts = vec![format!("{description}{question}")];
                    let continuations = choices.iter().map(|c| format!("{delim}{c}")).collect();
                    (question, answer, contexts, continuations)
                }
            };
            Ok(Built::Mc(McItem {
                id,
                subject,
                question,
                choices,
                answer,
                rendered: Some(Rendered {
                    contexts,
                    continuations,
                    norm: config.norm,
                }),
            }))
        }
    }
}

/// The document's own `id` (text or number), if it has one.
fn doc_id(doc: &Map<String, Value>) -> Option<String> {
    match doc.get("id")? {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn load_docs(
    name: &Path,
    config: &Config,
    files: &[(PathBuf, Vec<u8>)],
    strict: bool,
) -> Result<LmEvalTask> {
    let env = environment();
    let specs = Specs {
        text: compile(&env, name, "doc_to_text", &config.text)?,
        target: compile(&env, name, "doc_to_target", &config.target)?,
        choice: match &config.choice {
            Some(c) => Some(compile(&env, name, "doc_to_choice", c)?),
            None => None,
        },
        description: match &config.description {
            Some(d) => Some(compile(&env, name, "description", d)?),
            None => None,
        },
    };
    let mut sink = Sink::new(Layout::LmEvalYaml, strict);
    let mut gen_items: Vec<GenItem> = Vec::new();
    let mut gen_skipped: Vec<BadRow> = Vec::new();
    let mut gen_seen: BTreeSet<String> = BTreeSet::new();
    let mut mode = None;
    let mut row = 0usize;
    for (path, bytes) in files {
        let mut each =
            |line: usize, doc: std::result::Result<Map<String, Value>, String>| -> Result<()> {
                let this_row = row;
                row += 1;
                let built = doc.and_then(|doc| {
                    let id = format!(
                        "{}/{}",
                        config.subject,
                        doc_id(&doc).unwrap_or_else(|| this_row.to_string())
                    );
                    build(config, &specs, &doc, id, &mut mode)
                });
                match built {
                    Ok(Built::Mc(item)) => sink.push(path, line, item),
                    Ok(Built::Gen(item)) => {
                        if !gen_seen.insert(item.id.clone()) {
                            let reason = format!("duplicate id `{}`", item.id);
                            bad_gen(path, line, reason, strict, &mut gen_skipped)
                        } else {
                            gen_items.push(item);
                            Ok(())
                        }
                    }
                    Err(reason) if config.output == OutputType::GenerateUntil => {
                        bad_gen(path, line, reason, strict, &mut gen_skipped)
                    }
                    Err(reason) => sink.bad(path, line, reason),
                }
            };
        match config.format {
            Format::Json => {
                for (line, record) in json::records(path, bytes)? {
                    let doc = record.and_then(|v| match v {
                        Value::Object(o) => Ok(o),
                        _ => Err("row is not a JSON object".to_string()),
                    });
                    each(line, doc)?;
                }
            }
            Format::Parquet => {
                parquet::for_each_row(path, bytes::Bytes::copy_from_slice(bytes), &mut each)?;
            }
        }
    }
    Ok(match config.output {
        OutputType::GenerateUntil => LmEvalTask::Generation(GenLoad {
            items: gen_items,
            skipped: gen_skipped,
        }),
        _ => LmEvalTask::Scored(sink.finish()),
    })
}

fn bad_gen(
    path: &Path,
    line: usize,
    reason: String,
    strict: bool,
    skipped: &mut Vec<BadRow>,
) -> Result<()> {
    if strict {
        return Err(Error::BadRow {
            file: path.to_path_buf(),
            line,
            reason,
        });
    }
    skipped.push(BadRow {
        file: path.to_path_buf(),
        line,
        reason,
    });
    Ok(())
}
