//! Hugging Face parquet exports (`cais/mmlu`, and the standard tasks' rows), read through the
//! parquet crate's row API.

use std::path::Path;

use parquet::file::metadata::ParquetMetaData;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::Field;
use serde_json::{Map, Number, Value};

use super::hf_tasks::HfTask;
use super::json::{fields, Schema};
use super::parquet_pages::{check_footer, check_pages};
use super::Sink;
use crate::error::{Error, Result};
use crate::item::{Layout, LoadReport};

/// Longest decoder message kept: a UTF-8 failure quotes every byte of the value.
const MAX_REASON: usize = 240;

/// cais/mmlu rows (`question`, `subject`, `choices`, `answer`), or rows of a standard task in
/// the layout the JSON loader reads (`ai2_arc`, `hellaswag`, `piqa`, ...), from one parquet file.
/// Bad rows are numbered by row (from 1) in place of a line. A row the decoder itself cannot
/// read (e.g. invalid UTF-8) fails the file, because the row reader cannot step past it.
pub fn load_hf_parquet(path: impl AsRef<Path>, strict: bool) -> Result<LoadReport> {
    let path = path.as_ref();
    // Read whole: the page check and the row reader both need the chunks, and a dataset file is
    // small next to the memory a run needs anyway.
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    load(path, bytes::Bytes::from(bytes), strict)
}

/// One parquet file's contents; `name` is for messages only.
pub(crate) fn load_bytes(name: &Path, bytes: &[u8], strict: bool) -> Result<LoadReport> {
    load(name, bytes::Bytes::copy_from_slice(bytes), strict)
}

fn load(path: &Path, input: bytes::Bytes, strict: bool) -> Result<LoadReport> {
    let mut sink = Sink::new(Layout::HfParquet, strict);
    // `cais/mmlu` rows, or a standard task's as the hub exports it, told apart by the first
    // row's columns as the JSON loader tells them apart by its fields.
    let mut schema: Option<Schema> = None;
    for_each_row(path, input, |line, row| {
        let row = row.and_then(|obj| {
            let schema =
                *schema.get_or_insert_with(|| HfTask::sniff(&obj).map_or(Schema::Hf, Schema::Task));
            fields(schema, &Value::Object(obj))
        });
        match row {
            Ok(f) => {
                let item = f.into_item(&mut sink, line);
                sink.push(path, line, item)
            }
            Err(reason) => sink.bad(path, line, reason),
        }
    })?;
    Ok(sink.finish())
}

/// Hands every row of a parquet file to `each` as a JSON object, numbered from 1, or the reason
/// it could not be converted. A row the decoder itself cannot read fails the file.
pub(crate) fn for_each_row(
    path: &Path,
    input: bytes::Bytes,
    mut each: impl FnMut(usize, std::result::Result<Map<String, Value>, String>) -> Result<()>,
) -> Result<()> {
    let pq = |reason: String| Error::Parquet {
        path: path.to_path_buf(),
        reason: shorten(reason),
    };
    check_footer(&input).map_err(|e| pq(format!("footer: {e}")))?;
    let reader = SerializedFileReader::new(input.clone()).map_err(|e| pq(e.to_string()))?;
    check_column_chunks(reader.metadata(), &input).map_err(pq)?;
    let mut rows = reader.get_row_iter(None).map_err(|e| pq(e.to_string()))?;
    for line in 1.. {
        // The parquet crate's page decoders assert on some corrupt pages (a dictionary page
        // shorter than its header says) instead of returning an error. Only its own call is
        // guarded, so a panic in this crate's code still surfaces as one.
        let next = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| rows.next()))
            .map_err(|_| pq(format!("row {line}: the decoder failed on a corrupt page")))?;
        let Some(row) = next else { break };
        let row = row.map_err(|e| pq(format!("row {line}: {e}")))?;
        let mut obj = Map::new();
        let mut converted = Ok(());
        for (name, field) in row.get_column_iter() {
            match json(field) {
                Ok(v) => {
                    obj.insert(name.clone(), v);
                }
                Err(reason) => {
                    converted = Err(format!("field `{name}`: {reason}"));
                    break;
                }
            }
        }
        each(line, converted.map(|()| obj))?;
    }
    Ok(())
}

/// Refuses column chunks that lie outside the file, and pages whose headers claim more than
/// their bytes can hold. The parquet crate asserts on a negative offset or length from the
/// footer (a panic, not an error), and sizes a page's buffer from its header before reading it,
/// so a corrupt file must be caught before the row reader gets to it.
fn check_column_chunks(
    meta: &ParquetMetaData,
    input: &bytes::Bytes,
) -> std::result::Result<(), String> {
    let file_len = input.len() as u64;
    // Every chunk's range first, so a chunk outside the file is reported as such even when an
    // earlier chunk's pages are also bad.
    let mut chunks = Vec::new();
    for (g, group) in meta.row_groups().iter().enumerate() {
        for column in group.columns() {
            let start = column
                .dictionary_page_offset()
                .unwrap_or_else(|| column.data_page_offset());
            let len = column.compressed_size();
            let inside = start >= 0
                && len >= 0
                && (start as u64)
                    .checked_add(len as u64)
                    .is_some_and(|end| end <= file_len);
            if !inside {
                return Err(format!(
                    "row group {g}, column `{}`: chunk at offset {start} of length {len} is outside the {file_len}-byte file",
                    column.column_path()
                ));
            }
            chunks.push((g, column, start as usize..(start + len) as usize));
        }
    }
    for (g, column, range) in chunks {
        check_pages(&input[range])
            .map_err(|e| format!("row group {g}, column `{}`: {e}", column.column_path()))?;
    }
    Ok(())
}

/// The parquet value as the JSON the cais/mmlu schema check expects.
fn json(field: &Field) -> std::result::Result<Value, String> {
    Ok(match field {
        Field::Null => Value::Null,
        Field::Bool(b) => Value::Bool(*b),
        Field::Byte(v) => Value::from(*v),
        Field::Short(v) => Value::from(*v),
        Field::Int(v) => Value::from(*v),
        Field::Long(v) => Value::from(*v),
        Field::UByte(v) => Value::from(*v),
        Field::UShort(v) => Value::from(*v),
        Field::UInt(v) => Value::from(*v),
        Field::ULong(v) => Value::from(*v),
        Field::Float(v) => Number::from_f64(f64::from(*v)).map_or(Value::Null, Value::Number),
        Field::Double(v) => Number::from_f64(*v).map_or(Value::Null, Value::Number),
        Field::Str(s) => Value::String(s.clone()),
        // Some writers store text without the UTF8 annotation.
        Field::Bytes(b) => Value::String(
            std::str::from_utf8(b.data())
                .map_err(super::utf8_reason)?
                .to_string(),
        ),
        Field::ListInternal(list) => Value::Array(
            list.elements()
                .iter()
                .map(json)
                .collect::<std::result::Result<_, _>>()?,
        ),
        // A struct column, such as ai2_arc's `choices: {text, label}`. Nesting is bounded by the
        // schema, which the footer walk has checked against the file.
        Field::Group(row) => Value::Object(
            row.get_column_iter()
                .map(|(name, value)| Ok((name.clone(), json(value)?)))
                .collect::<std::result::Result<Map<_, _>, String>>()?,
        ),
        other => return Err(format!("unsupported parquet value {other}")),
    })
}

fn shorten(mut s: String) -> String {
    if s.len() > MAX_REASON {
        let mut cut = MAX_REASON;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}
