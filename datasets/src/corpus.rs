//! Plain-text corpora for perplexity (WikiText-2).

use std::path::Path;

use crate::error::{Error, Result};
use crate::load::{read_bytes, strip_bom};

/// Reads a corpus as UTF-8 with every CRLF turned into LF (and a leading BOM dropped).
///
/// The canonical WikiText-2 raw test file, and llama.cpp's reference perplexities, use LF;
/// some copies (including `../shared/data`) have CRLF, and the extra `\r` tokens would
/// change tokenization and so every perplexity figure. A lone `\r` is left alone.
pub fn read_corpus(path: impl AsRef<Path>) -> Result<String> {
    let path = path.as_ref();
    let bytes = read_bytes(path)?;
    let body = strip_bom(&bytes);
    let text = std::str::from_utf8(body).map_err(|e| {
        let byte = e.valid_up_to() + (bytes.len() - body.len());
        Error::NotUtf8 {
            path: path.to_path_buf(),
            line: 1 + bytes[..byte].iter().filter(|&&b| b == b'\n').count(),
            byte,
        }
    })?;
    Ok(text.replace("\r\n", "\n"))
}
