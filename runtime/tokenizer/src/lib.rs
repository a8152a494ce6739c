//! effbench-tokenizer: one `tokenizers::Tokenizer` for a model, whether it ships a Hugging Face
//! `tokenizer.json` or only a GGUF file.
//!
//! For a GGUF file the tokenizer is rebuilt from the file's own metadata (`tokenizer.ggml.*`) so
//! that it yields the same token ids as llama.cpp does for that file; scores measured here are then
//! comparable with llama.cpp's (perplexity over the same tokens, the same prompt lengths).
//!
//! # What "the same ids as llama.cpp" means
//!
//! The reference is `llama_tokenize(text, add_special = false, parse_special = true)`:
//!
//! - **Parse special.** Control, unknown and user-defined tokens written in the text (for example
//!   `<|im_start|>`) become their single id, as llama.cpp does with `parse_special = true`. Control
//!   and unknown tokens are registered as *special* added tokens and user-defined ones as plain
//!   added tokens, so `tokenizer.set_encode_special_tokens(true)` gives llama.cpp's
//!   `parse_special = false`: control tokens are then tokenized as text while user-defined tokens
//!   are still matched, exactly as llama.cpp does.
//! - **No BOS unless the file asks.** The post-processor adds BOS (and EOS) only when
//!   `tokenizer.ggml.add_bos_token` (`add_eos_token`) says so, or, when the key is absent, when
//!   llama.cpp's default for that tokenizer type does. Both SmolLM2 and Qwen2.5 GGUFs say false.
//! - **Pre-tokenizer.** `tokenizer.ggml.pre` selects the list of split regexes llama.cpp uses
//!   (`llm_tokenizer_bpe` in llama.cpp's `src/llama-vocab.cpp`); each regex splits the pieces the
//!   previous one produced, which is a `Sequence` of isolating `Split`s here. A missing `pre` key
//!   means llama.cpp's "default" list, as in llama.cpp; a `pre` value this crate does not know is
//!   an error, as it is in llama.cpp.
//! - **No normalizer.** llama.cpp does not normalize BPE input (Qwen2's tokenizer.json asks for
//!   NFC), so neither does a GGUF-built tokenizer.
//!
//! Known gaps with llama.cpp, none reachable with the supported models' vocabularies:
//! llama.cpp splits special tokens longest-token-first while `tokenizers` splits
//! leftmost-longest, which differ only when two special tokens overlap in the text; llama.cpp's
//! per-model token attribute hacks (`lstrip`/`rstrip` for phi-3 and some BERTs) are not copied; and
//! for SentencePiece (`llama`) vocabularies, merges of equal score are ordered by token id rather
//! than by position.

mod bpe;
mod gguf;
pub mod gguf_header;
mod spm;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::io::Seek;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{Content, Value};
pub use tokenizers::Tokenizer;

pub use gguf::{special_tokens, SpecialTokens};

/// Everything that can go wrong while loading or building a tokenizer.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("tokenizer not found: {} (hint: check the path, or fetch the model with `effbench fetch NAME`)", path.display())]
    NotFound { path: PathBuf },

    #[error("cannot load tokenizer {}: {reason} (hint: the file must be a Hugging Face tokenizer.json; re-download it if it is truncated)", path.display())]
    Json { path: PathBuf, reason: String },

    #[error("cannot read GGUF metadata from {}: {reason} (hint: check that this is a complete GGUF file; re-download it with `effbench fetch NAME`)", path.display())]
    Gguf { path: PathBuf, reason: String },

    #[error("GGUF metadata has no `{key}` (hint: this file carries no usable tokenizer; load the model's tokenizer.json instead)")]
    MissingKey { key: &'static str },

    #[error("GGUF metadata `{key}` is malformed: {reason} (hint: the file may be corrupt or from an unsupported converter; load the model's tokenizer.json instead)")]
    BadValue { key: &'static str, reason: String },

    #[error("unsupported GGUF tokenizer model `{model}` (hint: supported models are `gpt2` (byte-level BPE) and `llama` (SentencePiece); load the model's tokenizer.json instead)")]
    UnsupportedModel { model: String },

    #[error("unsupported GGUF pre-tokenizer `{pre}` (hint: supported are {supported}; load the model's tokenizer.json instead)")]
    UnsupportedPre { pre: String, supported: String },

    #[error("malformed BPE merge #{index} {merge:?} in `tokenizer.ggml.merges`: {reason} (hint: the file may be corrupt; re-download it or load the model's tokenizer.json instead)")]
    BadMerge {
        index: usize,
        merge: String,
        reason: String,
    },

    #[error("duplicate token {token:?} in `tokenizer.ggml.tokens` at ids {first} and {second} (hint: llama.cpp rejects this file too; re-convert it or load the model's tokenizer.json instead)")]
    DuplicateToken {
        token: String,
        first: u32,
        second: u32,
    },

    #[error("cannot build tokenizer: {reason} (hint: this is a bug in effbench-tokenizer; report it with the model file's name)")]
    Build { reason: String },
}

/// Loads a Hugging Face `tokenizer.json` as it is.
pub fn from_tokenizer_json(path: &Path) -> Result<Tokenizer, TokenizerError> {
    if !path.is_file() {
        return Err(TokenizerError::NotFound {
            path: path.to_path_buf(),
        });
    }
    let bytes = std::fs::read(path).map_err(|e| TokenizerError::Json {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    from_tokenizer_json_bytes(&bytes).map_err(|e| match e {
        TokenizerError::Json { reason, .. } => TokenizerError::Json {
            path: path.to_path_buf(),
            reason,
        },
        other => other,
    })
}

/// [`from_tokenizer_json`] on the file's bytes (errors name the path `<memory>`).
pub fn from_tokenizer_json_bytes(bytes: &[u8]) -> Result<Tokenizer, TokenizerError> {
    let err = |reason: String| TokenizerError::Json {
        path: PathBuf::from("<memory>"),
        reason,
    };
    // tokenizers 0.22 panics (`expect("Helper")` in its decoder deserializer) when the JSON
    // under `"decoder"` does not parse: a file cut right after `"decoder":`, as a truncated
    // download can be, or a string with a lone surrogate escape. Parsing the file with that
    // subtree decoded in full first makes those an error without a panic message; catching the
    // unwind covers what it does not.
    #[derive(serde::Deserialize)]
    struct Probe {
        #[allow(dead_code)]
        decoder: Option<serde_json::Value>,
    }
    serde_json::from_slice::<Probe>(bytes).map_err(|e| err(format!("not valid JSON: {e}")))?;
    std::panic::catch_unwind(|| Tokenizer::from_bytes(bytes))
        .map_err(|_| err("the tokenizers crate panicked while reading it".into()))?
        .map_err(|e| err(one_line(&e.to_string())))
}

/// Builds the tokenizer llama.cpp would use for a GGUF file, from its metadata
/// (`Content.metadata` of `candle_core::quantized::gguf_file::Content`).
pub fn from_gguf_metadata(md: &HashMap<String, Value>) -> Result<Tokenizer, TokenizerError> {
    let model = md.get(gguf::KEY_MODEL).ok_or(TokenizerError::MissingKey {
        key: gguf::KEY_MODEL,
    })?;
    let model = gguf::string(model).ok_or_else(|| gguf::bad(gguf::KEY_MODEL, "not a string"))?;
    match model {
        "gpt2" => bpe::build(md, &gguf::Vocab::read(md)?),
        "llama" => spm::build(md, &gguf::Vocab::read(md)?),
        other => Err(TokenizerError::UnsupportedModel {
            model: other.to_string(),
        }),
    }
}

/// Text where tokenizers usually part ways: prose, code, digits, whitespace runs, non-ASCII.
const PROBE: &str = "The capital of France is the city of Paris.\n def f(x):\n    return x**2 + 3.14159  # ok\n\tnaïve café 東京 12345678 !!! déjà vu";

/// Why `a` and `b` would give different token ids for some text, or `None` when they are one
/// tokenizer as far as ids go: same size, the same token at every id, and the same split of a
/// probe text (two files can share a vocabulary and differ in merges or pre-tokenization).
/// Speculative decoding, distillation and token-level comparisons all need this.
pub fn vocabulary_difference(a: &Tokenizer, b: &Tokenizer) -> Option<String> {
    let (na, nb) = (a.get_vocab_size(true), b.get_vocab_size(true));
    let mut vocab: Vec<(String, u32)> = a.get_vocab(true).into_iter().collect();
    vocab.sort_by_key(|e| e.1);
    for (token, id) in &vocab {
        let theirs = b.id_to_token(*id);
        if theirs.as_deref() != Some(token.as_str()) {
            return Some(format!(
                "token id {id} is {token:?} in one and {} in the other ({na} vs {nb} tokens)",
                theirs.map_or("absent".to_string(), |t| format!("{t:?}"))
            ));
        }
    }
    if na != nb {
        return Some(format!("vocabularies of {na} and {nb} tokens"));
    }
    let ids = |t: &Tokenizer| t.encode(PROBE, false).map(|e| e.get_ids().to_vec());
    match (ids(a), ids(b)) {
        (Ok(x), Ok(y)) if x == y => None,
        (Ok(x), Ok(y)) => Some(format!(
            "the same text splits differently ({} vs {} tokens)",
            x.len(),
            y.len()
        )),
        (Err(e), _) | (_, Err(e)) => Some(format!("a probe text does not tokenize: {e}")),
    }
}

/// Reads a GGUF file's metadata (not its tensors) and builds its tokenizer, see
/// [`from_gguf_metadata`].
pub fn from_gguf_file(path: &Path) -> Result<Tokenizer, TokenizerError> {
    let content = read_gguf_content(path)?;
    from_gguf_metadata(&content.metadata)
}

/// Reads the special tokens of a GGUF file, see [`special_tokens`].
pub fn special_tokens_from_gguf_file(path: &Path) -> Result<SpecialTokens, TokenizerError> {
    Ok(special_tokens(&read_gguf_content(path)?.metadata))
}

fn read_gguf_content(path: &Path) -> Result<Content, TokenizerError> {
    let gguf_err = |reason: String| TokenizerError::Gguf {
        path: path.to_path_buf(),
        reason,
    };
    let mut file = std::fs::File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => TokenizerError::NotFound {
            path: path.to_path_buf(),
        },
        _ => gguf_err(e.to_string()),
    })?;
    // candle sizes its allocations from the header's counts; only a header that passed the
    // bounded walk reaches it. Tensor data is not needed here, so its extent is not checked.
    gguf_header::GgufHeader::read(&mut file).map_err(|e| gguf_err(e.to_string()))?;
    file.rewind().map_err(|e| gguf_err(e.to_string()))?;
    Content::read(&mut std::io::BufReader::new(file))
        .map_err(|e| gguf_err(one_line(&e.to_string())))
}

/// candle's errors may carry a backtrace on the lines after the message.
fn one_line(s: &str) -> String {
    s.lines().next().unwrap_or("").trim().to_string()
}

/// Registers the vocabulary's control and user-defined tokens as added tokens and sets the
/// BOS/EOS policy: the steps every GGUF tokenizer model shares.
pub(crate) fn finish(
    md: &HashMap<String, Value>,
    vocab: &gguf::Vocab,
    mut tokenizer: Tokenizer,
) -> Result<Tokenizer, TokenizerError> {
    use tokenizers::processors::template::{SpecialToken, TemplateProcessing};
    use tokenizers::AddedToken;

    // `normalized(false)` puts every added token in one leftmost-longest pass over the raw text,
    // the closest `tokenizers` comes to llama.cpp's single longest-first pass.
    let added = |kind: gguf::Kind| -> Vec<AddedToken> {
        vocab
            .tokens
            .iter()
            .zip(&vocab.kinds)
            .filter(|(_, k)| **k == kind)
            .map(|(text, _)| {
                AddedToken::from(text.clone(), kind == gguf::Kind::Special).normalized(false)
            })
            .collect()
    };
    tokenizer.add_special_tokens(&added(gguf::Kind::Special));
    tokenizer.add_tokens(&added(gguf::Kind::UserDefined));

    let special = special_tokens(md);
    let required = |wanted: bool, id: Option<u32>, name: &str, key: &'static str| {
        if !wanted {
            return Ok(None);
        }
        let id = id.ok_or_else(|| {
            gguf::bad(
                key,
                format!("asks for a {name} token but the file names no valid {name} id"),
            )
        })?;
        let text = vocab
            .tokens
            .get(id as usize)
            .ok_or_else(|| gguf::bad(key, format!("names {name} id {id} beyond the vocabulary")))?;
        SpecialToken::new(name.to_string(), vec![id], vec![text.clone()])
            .map(Some)
            .map_err(|e| TokenizerError::Build {
                reason: e.to_string(),
            })
    };
    let bos = required(
        special.add_bos,
        special.bos,
        "bos",
        "tokenizer.ggml.add_bos_token",
    )?;
    let eos = required(
        special.add_eos,
        special.eos,
        "eos",
        "tokenizer.ggml.add_eos_token",
    )?;
    if bos.is_some() || eos.is_some() {
        // Template pieces refer to the names "bos"/"eos", not to the token texts, so a text with
        // ':' or ' ' in it cannot confuse the template parser.
        let wrap = |sequence: &str, suffix: &str| -> Vec<String> {
            let bos = bos.as_ref().map(|_| format!("bos{suffix}"));
            let eos = eos.as_ref().map(|_| format!("eos{suffix}"));
            bos.into_iter()
                .chain([format!("{sequence}{suffix}")])
                .chain(eos)
                .collect()
        };
        let build_err = |reason: String| TokenizerError::Build { reason };
        let template = TemplateProcessing::builder()
            .try_single(wrap("$A", ""))
            .map_err(build_err)?
            .try_pair([wrap("$A", ""), wrap("$B", ":1")].concat())
            .map_err(build_err)?
            .special_tokens(bos.into_iter().chain(eos).collect::<Vec<_>>())
            .build()
            .map_err(|e| build_err(e.to_string()))?;
        tokenizer.with_post_processor(Some(template));
    }
    Ok(tokenizer)
}
