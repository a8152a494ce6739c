//! Byte-level BPE (`tokenizer.ggml.model = "gpt2"`) as llama.cpp runs it: its pre-tokenizer
//! regexes, its merge ranks, byte-level encoding.

use std::collections::{HashMap, HashSet};

use candle_core::quantized::gguf_file::Value;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{PreTokenizerWrapper, SplitDelimiterBehavior, Tokenizer};

use crate::gguf::{self, Vocab, KEY_MERGES, KEY_PRE};
use crate::TokenizerError;

/// llama.cpp's GPT-2 regex. llama.cpp matches this string and runs a hand-written splitter whose
/// last rule is `\s+` (lone whitespace before a non-space), the alternative GPT-2's own regex ends
/// with; it is spelled out here so the regex engine does the same.
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

/// llama.cpp's rewrite of Llama 3's `(?i:'s|...)`: its regex engines lack inline flags, and
/// `(?i:)` would also fold a few non-ASCII letters that llama.cpp does not.
const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Qwen2's regex as llama.cpp rewrites it (see [`LLAMA3`]): single digits.
const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// One llama.cpp pre-tokenizer type (`LLAMA_VOCAB_PRE_TYPE_*`).
struct PreType {
    /// Applied in order, each splitting the pieces the previous one left.
    regexes: &'static [&'static str],
    /// llama.cpp's `ignore_merges`: a piece that is a whole token is taken as is.
    ignore_merges: bool,
    /// llama.cpp's default for `add_bos` when the file does not say.
    add_bos: bool,
}

const DEFAULT: PreType = PreType {
    regexes: &[r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", r"[0-9][0-9][0-9]"],
    ignore_merges: false,
    add_bos: false,
};

/// The `tokenizer.ggml.pre` values supported, each with llama.cpp's settings for it
/// (`llama_vocab::impl::load` and `llm_tokenizer_bpe` in llama.cpp's `src/llama-vocab.cpp`).
fn pre_type(pre: &str) -> Option<PreType> {
    let llama3 = PreType {
        regexes: &[LLAMA3],
        ignore_merges: true,
        add_bos: true,
    };
    let plain = |regexes| PreType {
        regexes,
        ignore_merges: false,
        add_bos: false,
    };
    Some(match pre {
        "default" => DEFAULT,
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0"
        | "lfm2" => llama3,
        "dbrx" | "smaug-bpe" => plain(&[LLAMA3]),
        "falcon" => plain(&[r"[\p{P}\$\+<=>\^~\|`]+", GPT2, r"[0-9][0-9][0-9]"]),
        "starcoder" | "refact" | "command-r" | "smollm" | "codeshell" | "exaone" | "minerva-7b" => {
            plain(&[r"\p{N}", GPT2])
        }
        "gpt-2" | "phi-2" | "gigachat" | "mpt" | "olmo" | "jais" | "exaone4" | "trillion" => {
            plain(&[GPT2])
        }
        "qwen2" | "deepseek-r1-qwen" | "megrez" | "stablelm2" | "hunyuan" => plain(&[QWEN2]),
        _ => return None,
    })
}

const SUPPORTED_PRE: &str = "default, llama3 (and its aliases), dbrx, smaug-bpe, falcon, \
     starcoder, refact, command-r, smollm, codeshell, exaone, minerva-7b, gpt-2, phi-2, gigachat, \
     mpt, olmo, jais, exaone4, trillion, qwen2, deepseek-r1-qwen, megrez, stablelm2, hunyuan";

pub(crate) fn default_add_bos(pre: &str) -> bool {
    pre_type(pre).is_some_and(|p| p.add_bos)
}

pub(crate) fn build(
    md: &HashMap<String, Value>,
    vocab: &Vocab,
) -> Result<Tokenizer, TokenizerError> {
    // Like llama.cpp, a file without a pre-tokenizer type gets the "default" one.
    let pre = match md.get(KEY_PRE) {
        None => "default",
        Some(v) => gguf::string(v).ok_or_else(|| gguf::bad(KEY_PRE, "not a string"))?,
    };
    let pre_type = pre_type(pre).ok_or_else(|| TokenizerError::UnsupportedPre {
        pre: pre.to_string(),
        supported: SUPPORTED_PRE.to_string(),
    })?;

    let merges = read_merges(md, vocab)?;
    let bpe = BPE::builder()
        .vocab_and_merges(vocab.bpe_vocab(), merges)
        .ignore_merges(pre_type.ignore_merges)
        .build()
        .map_err(|e| TokenizerError::Build {
            reason: format!("BPE model: {e}"),
        })?;

    let mut steps = Vec::with_capacity(pre_type.regexes.len() + 1);
    for re in pre_type.regexes {
        let split = Split::new(
            SplitPattern::Regex((*re).to_string()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(|e| TokenizerError::Build {
            reason: format!("pre-tokenizer regex {re:?}: {e}"),
        })?;
        steps.push(PreTokenizerWrapper::Split(split));
    }
    // The regexes above did the splitting; this only maps bytes to GPT-2's printable characters.
    steps.push(PreTokenizerWrapper::ByteLevel(ByteLevel::new(
        false, false, false,
    )));

    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer.with_pre_tokenizer(Some(Sequence::new(steps)));
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));
    crate::finish(md, vocab, tokenizer)
}

/// Merges in rank order, parsed as llama.cpp does: split at the first space after the first byte
/// (so a merge may start with a space), and the first occurrence of a pair sets its rank.
fn read_merges(
    md: &HashMap<String, Value>,
    vocab: &Vocab,
) -> Result<Vec<(String, String)>, TokenizerError> {
    let raw = md
        .get(KEY_MERGES)
        .ok_or(TokenizerError::MissingKey { key: KEY_MERGES })?;
    let raw = gguf::array(raw, KEY_MERGES)?;
    let mut merges = Vec::with_capacity(raw.len());
    let mut seen = HashSet::with_capacity(raw.len());
    for (index, v) in raw.iter().enumerate() {
        let bad = |merge: &str, reason: &str| TokenizerError::BadMerge {
            index,
            merge: merge.to_string(),
            reason: reason.to_string(),
        };
        let Value::String(m) = v else {
            return Err(bad(&format!("{v:?}"), "not a string"));
        };
        let Some(pos) = m.bytes().skip(1).position(|b| b == b' ').map(|p| p + 1) else {
            return Err(bad(m, "no space separating the two parts"));
        };
        let (left, right) = (&m[..pos], &m[pos + 1..]);
        if right.is_empty() {
            return Err(bad(m, "empty right part"));
        }
        for part in [left, right] {
            if vocab.id(part).is_none() {
                return Err(bad(m, &format!("{part:?} is not a token")));
            }
        }
        // llama.cpp would merge to a missing token and then spell it out in bytes; no real
        // vocabulary does this, and `tokenizers` cannot express it.
        if vocab.id(&format!("{left}{right}")).is_none() {
            return Err(bad(m, "the merged pair is not a token"));
        }
        if seen.insert((left, right)) {
            merges.push((left.to_string(), right.to_string()));
        }
    }
    Ok(merges)
}
