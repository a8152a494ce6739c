//! The original MMLU release: one CSV file per subject and split, `question,c0,c1,c2,c3,answer`.

use std::fs;
use std::path::{Path, PathBuf};

use super::{newline_offsets, parse_answer, read_bytes, strip_bom, utf8_reason, Sink};
use crate::error::{Error, Result};
use crate::item::{normalize_subject, Layout, LoadReport, McItem, Split};

const FIELDS: usize = 6;

/// One `<subject>_<split>.csv` file. The subject and split come from the file name (a name
/// without a split suffix is a test file named after its subject). A first row whose first
/// field is `question` and last is `answer` is a header; otherwise every row is data. The
/// answer may be a letter (`A`-`D`) or a 0-based index (`0`-`3`).
pub fn load_mmlu_csv(path: impl AsRef<Path>, strict: bool) -> Result<LoadReport> {
    let path = path.as_ref();
    let (split, subject) = split_of(path);
    let mut sink = Sink::new(Layout::MmluCsv(split), strict);
    read_file(&mut sink, path, &subject, split)?;
    Ok(sink.finish())
}

/// One MMLU CSV file's contents; `name` gives the subject and split as a file name would.
pub(crate) fn load_bytes(name: &Path, bytes: &[u8], strict: bool) -> Result<LoadReport> {
    let (split, subject) = split_of(name);
    let mut sink = Sink::new(Layout::MmluCsv(split), strict);
    read_body(&mut sink, name, bytes, &subject, split)?;
    Ok(sink.finish())
}

/// Every `<subject>_<split>.csv` in `dir` (or in `dir/<split>/`, as the original tarball
/// unpacks), in file-name order.
pub fn load_mmlu_csv_dir(dir: impl AsRef<Path>, split: Split, strict: bool) -> Result<LoadReport> {
    let dir = dir.as_ref();
    let files = files_of(dir, split)?;
    if files.is_empty() {
        return Err(Error::UnknownLayout {
            path: dir.to_path_buf(),
            why: format!("no *{} files in it", split.suffix()),
        });
    }
    let mut sink = Sink::new(Layout::MmluCsvDir(split), strict);
    for file in files {
        let (_, subject) = split_of(&file);
        read_file(&mut sink, &file, &subject, split)?;
    }
    Ok(sink.finish())
}

pub(crate) fn sniff_dir(dir: &Path) -> Result<Layout> {
    for split in [Split::Test, Split::Dev, Split::Val] {
        if !files_of(dir, split)?.is_empty() {
            return Ok(Layout::MmluCsvDir(split));
        }
    }
    Err(Error::UnknownLayout {
        path: dir.to_path_buf(),
        why: "a directory with no *_test.csv, *_dev.csv or *_val.csv files".into(),
    })
}

/// The split and normalised subject a file name implies.
pub(crate) fn split_of(path: &Path) -> (Split, String) {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    for split in [Split::Test, Split::Dev, Split::Val] {
        if let Some(subject) = name.strip_suffix(split.suffix()) {
            return (split, normalize_subject(subject));
        }
    }
    let stem = path
        .file_stem()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    (Split::Test, normalize_subject(&stem))
}

fn files_of(dir: &Path, split: Split) -> Result<Vec<PathBuf>> {
    let mut files = list(dir, split.suffix())?;
    if files.is_empty() {
        let sub = dir.join(match split {
            Split::Test => "test",
            Split::Dev => "dev",
            Split::Val => "val",
        });
        if sub.is_dir() {
            files = list(&sub, split.suffix())?;
        }
    }
    Ok(files)
}

fn list(dir: &Path, suffix: &str) -> Result<Vec<PathBuf>> {
    let io = |source| Error::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        let matches = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with(suffix));
        if matches && path.is_file() {
            files.push(path);
        }
    }
    // read_dir order differs between file systems; ids must not.
    files.sort();
    Ok(files)
}

fn read_file(sink: &mut Sink, path: &Path, subject: &str, split: Split) -> Result<()> {
    read_body(sink, path, &read_bytes(path)?, subject, split)
}

fn read_body(
    sink: &mut Sink,
    path: &Path,
    bytes: &[u8],
    subject: &str,
    split: Split,
) -> Result<()> {
    let body = strip_bom(bytes);
    // The csv crate's line count skips newlines inside quoted fields, so count from the byte
    // offset instead. A record's offset can point at the previous row's `\n` (after a `\r`) or at
    // blank lines the reader skips, so step over those first.
    let newlines = newline_offsets(body);
    let line_of = |pos: Option<&csv::Position>| {
        let Some(pos) = pos else { return 0 };
        let mut at = pos.byte() as usize;
        while body.get(at).is_some_and(|&b| b == b'\r' || b == b'\n') {
            at += 1;
        }
        newlines.partition_point(|&nl| nl < at) + 1
    };
    // Flexible and byte-level, so a short row or a bad byte is one bad row, not a failed file.
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(body);
    let mut record = csv::ByteRecord::new();
    let mut first = true;
    let mut last_error_at = None;
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                let at = e.position().map(|p| p.byte());
                let line = line_of(e.position());
                sink.bad(path, line, format!("malformed CSV: {e}"))?;
                // A reader that fails twice at one place would fail forever; the rest is lost.
                if at.is_some() && std::mem::replace(&mut last_error_at, at) == at {
                    return Err(Error::MalformedFile {
                        path: path.to_path_buf(),
                        reason: format!("CSV reader stuck at line {line}"),
                    });
                }
                continue;
            }
        }
        let line = line_of(record.position());
        if std::mem::take(&mut first) && is_header(&record) {
            continue;
        }
        match row(&record) {
            Ok((question, choices, answer)) => {
                let item = McItem {
                    id: sink.next_id(split, subject),
                    subject: subject.to_string(),
                    question,
                    choices,
                    answer,
                    rendered: None,
                };
                sink.push(path, line, item)?;
            }
            Err(reason) => sink.bad(path, line, reason)?,
        }
    }
    Ok(())
}

fn is_header(record: &csv::ByteRecord) -> bool {
    let field = |i: usize| record.get(i).map(|f| f.trim_ascii().to_ascii_lowercase());
    field(0).as_deref() == Some(b"question".as_slice())
        && record.len() > 1
        && field(record.len() - 1).as_deref() == Some(b"answer".as_slice())
}

fn row(record: &csv::ByteRecord) -> std::result::Result<(String, Vec<String>, usize), String> {
    if record.len() != FIELDS {
        return Err(format!(
            "expected {FIELDS} fields (question, 4 choices, answer), found {}",
            record.len()
        ));
    }
    let mut texts = Vec::with_capacity(FIELDS);
    for (i, field) in record.iter().enumerate() {
        let text = std::str::from_utf8(field)
            .map_err(|e| format!("field {}: {}", i + 1, utf8_reason(e)))?;
        texts.push(text.to_string());
    }
    let answer = parse_answer(&texts[5], 4)?;
    let choices = texts[1..5].to_vec();
    Ok((std::mem::take(&mut texts[0]), choices, answer))
}
