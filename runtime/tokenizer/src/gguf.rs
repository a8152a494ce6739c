//! Reading the `tokenizer.ggml.*` metadata of a GGUF file the way llama.cpp's `llama_vocab::load`
//! does, including its guesses about which tokens are special.

use std::collections::HashMap;

use candle_core::quantized::gguf_file::Value;

use crate::TokenizerError;

pub(crate) const KEY_MODEL: &str = "tokenizer.ggml.model";
pub(crate) const KEY_PRE: &str = "tokenizer.ggml.pre";
pub(crate) const KEY_TOKENS: &str = "tokenizer.ggml.tokens";
pub(crate) const KEY_TOKEN_TYPE: &str = "tokenizer.ggml.token_type";
pub(crate) const KEY_MERGES: &str = "tokenizer.ggml.merges";
pub(crate) const KEY_SCORES: &str = "tokenizer.ggml.scores";
pub(crate) const KEY_ADD_SPACE_PREFIX: &str = "tokenizer.ggml.add_space_prefix";
const KEY_ADD_BOS: &str = "tokenizer.ggml.add_bos_token";
const KEY_ADD_EOS: &str = "tokenizer.ggml.add_eos_token";
const KEY_BOS: &str = "tokenizer.ggml.bos_token_id";
const KEY_EOS: &str = "tokenizer.ggml.eos_token_id";
const KEY_EOT: &str = "tokenizer.ggml.eot_token_id";
const KEY_EOM: &str = "tokenizer.ggml.eom_token_id";
const KEY_UNK: &str = "tokenizer.ggml.unknown_token_id";
// The GGUF spec spells it this way.
const KEY_SEP: &str = "tokenizer.ggml.seperator_token_id";
const KEY_PAD: &str = "tokenizer.ggml.padding_token_id";
const KEY_FIM_PRE: &str = "tokenizer.ggml.fim_pre_token_id";
const KEY_FIM_SUF: &str = "tokenizer.ggml.fim_suf_token_id";
const KEY_FIM_MID: &str = "tokenizer.ggml.fim_mid_token_id";
const KEY_FIM_PAD: &str = "tokenizer.ggml.fim_pad_token_id";
const KEY_FIM_REP: &str = "tokenizer.ggml.fim_rep_token_id";
const KEY_FIM_SEP: &str = "tokenizer.ggml.fim_sep_token_id";

// Token texts llama.cpp recognises when the matching id key is absent; it also promotes every
// token it finds this way to a control token, which changes how text containing it is split.
const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
];
const EOM_TEXTS: &[&str] = &["<|eom_id|>"];
const FIM_PRE_TEXTS: &[&str] = &[
    "<|fim_prefix|>",
    "<fim-prefix>",
    "<fim_prefix>",
    "<｜fim▁begin｜>",
    "<PRE>",
    "▁<PRE>",
    "<|code_prefix|>",
    "<|prefix|>",
];
const FIM_SUF_TEXTS: &[&str] = &[
    "<|fim_suffix|>",
    "<fim-suffix>",
    "<fim_suffix>",
    "<｜fim▁hole｜>",
    "<SUF>",
    "▁<SUF>",
    "<|code_suffix|>",
    "<|suffix|>",
];
const FIM_MID_TEXTS: &[&str] = &[
    "<|fim_middle|>",
    "<fim-middle>",
    "<fim_middle>",
    "<｜fim▁end｜>",
    "<MID>",
    "▁<MID>",
    "<|code_middle|>",
    "<|middle|>",
];
const FIM_PAD_TEXTS: &[&str] = &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"];
const FIM_REP_TEXTS: &[&str] = &[
    "<|fim_repo|>",
    "<|repo_name|>",
    "<fim-repo>",
    "<REPO>",
    "<reponame>",
];
const FIM_SEP_TEXTS: &[&str] = &["<|file_sep|>"];
// Always end-of-generation (and always promoted to control) in llama.cpp, whatever the keys say.
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];

/// How a GGUF token is matched in text (llama.cpp's token attributes, reduced to what
/// tokenization needs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Produced by the model's algorithm only (normal, byte, unused, undefined).
    Plain,
    /// Control or unknown: matched in text only with parse-special.
    Special,
    /// User-defined: always matched in text.
    UserDefined,
}

/// The vocabulary part of the metadata, common to every tokenizer model.
pub(crate) struct Vocab {
    pub tokens: Vec<String>,
    pub kinds: Vec<Kind>,
    pub ids: HashMap<String, u32>,
}

impl Vocab {
    pub fn read(md: &HashMap<String, Value>) -> Result<Self, TokenizerError> {
        let raw = md
            .get(KEY_TOKENS)
            .ok_or(TokenizerError::MissingKey { key: KEY_TOKENS })?;
        let raw = array(raw, KEY_TOKENS)?;
        if raw.is_empty() {
            return Err(bad(KEY_TOKENS, "the vocabulary is empty"));
        }
        let mut tokens = Vec::with_capacity(raw.len());
        let mut ids = HashMap::with_capacity(raw.len());
        for (i, v) in raw.iter().enumerate() {
            let Value::String(s) = v else {
                return Err(bad(KEY_TOKENS, format!("entry {i} is not a string")));
            };
            let id = u32::try_from(i).map_err(|_| bad(KEY_TOKENS, "more than 2^32 tokens"))?;
            // llama.cpp renames empty tokens rather than rejecting the file.
            let text = if s.is_empty() {
                format!("[EMPTY_{i}]")
            } else {
                s.clone()
            };
            if let Some(first) = ids.insert(text.clone(), id) {
                return Err(TokenizerError::DuplicateToken {
                    token: text,
                    first,
                    second: id,
                });
            }
            tokens.push(text);
        }

        let mut kinds = vec![Kind::Plain; tokens.len()];
        if let Some(types) = md.get(KEY_TOKEN_TYPE) {
            let types = array(types, KEY_TOKEN_TYPE)?;
            // llama.cpp indexes the types by token id without checking; a file whose arrays
            // disagree in length is corrupt either way.
            if types.len() != tokens.len() {
                return Err(bad(
                    KEY_TOKEN_TYPE,
                    format!("{} types for {} tokens", types.len(), tokens.len()),
                ));
            }
            for (i, (kind, t)) in kinds.iter_mut().zip(types).enumerate() {
                let t = int(t)
                    .ok_or_else(|| bad(KEY_TOKEN_TYPE, format!("entry {i} is not an integer")))?;
                // GGUF token types: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte.
                *kind = match t {
                    2 | 3 => Kind::Special,
                    4 => Kind::UserDefined,
                    _ => Kind::Plain,
                };
            }
        }

        let mut vocab = Vocab { tokens, kinds, ids };
        vocab.promote_guessed_control_tokens(md);
        Ok(vocab)
    }

    fn promote_guessed_control_tokens(&mut self, md: &HashMap<String, Value>) {
        let n = self.tokens.len();
        let mut texts: Vec<&str> = EOG_TEXTS.to_vec();
        for (key, list) in guessed_by_text() {
            if read_id(md, key, n).is_none() {
                texts.extend_from_slice(list);
            }
        }
        for text in texts {
            if let Some(&id) = self.ids.get(text) {
                self.kinds[id as usize] = Kind::Special;
            }
        }
    }

    /// The token ids in the map type `tokenizers`' BPE wants.
    pub fn bpe_vocab(&self) -> tokenizers::models::bpe::Vocab {
        self.ids.iter().map(|(t, id)| (t.clone(), *id)).collect()
    }

    pub fn id(&self, text: &str) -> Option<u32> {
        self.ids.get(text).copied()
    }
}

fn guessed_by_text() -> [(&'static str, &'static [&'static str]); 8] {
    [
        (KEY_EOT, EOT_TEXTS),
        (KEY_EOM, EOM_TEXTS),
        (KEY_FIM_PRE, FIM_PRE_TEXTS),
        (KEY_FIM_SUF, FIM_SUF_TEXTS),
        (KEY_FIM_MID, FIM_MID_TEXTS),
        (KEY_FIM_PAD, FIM_PAD_TEXTS),
        (KEY_FIM_REP, FIM_REP_TEXTS),
        (KEY_FIM_SEP, FIM_SEP_TEXTS),
    ]
}

/// Special token ids and BOS/EOS policy of a GGUF file, as llama.cpp reads them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpecialTokens {
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    /// End of turn (`<|im_end|>` for ChatML models): from its key, else guessed from the token
    /// texts llama.cpp knows, in llama.cpp's list order.
    pub eot: Option<u32>,
    /// End of message (`<|eom_id|>`, Llama 3.1 tool calls).
    pub eom: Option<u32>,
    pub unk: Option<u32>,
    pub sep: Option<u32>,
    pub pad: Option<u32>,
    /// Every id that ends generation (llama.cpp's `special_eog_ids`), sorted.
    pub eog: Vec<u32>,
    /// Whether a prompt starts with BOS (`tokenizer.ggml.add_bos_token`, else llama.cpp's default
    /// for the tokenizer type).
    pub add_bos: bool,
    /// Whether a prompt ends with EOS (`tokenizer.ggml.add_eos_token`, else false).
    pub add_eos: bool,
}

impl SpecialTokens {
    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.binary_search(&id).is_ok()
    }
}

/// Reads the special tokens from GGUF metadata. Missing or out-of-range ids are `None`; unlike
/// llama.cpp no legacy default ids are invented for them.
pub fn special_tokens(md: &HashMap<String, Value>) -> SpecialTokens {
    let tokens: Vec<&str> = md
        .get(KEY_TOKENS)
        .and_then(|v| match v {
            Value::Array(a) => Some(
                a.iter()
                    .map(|t| match t {
                        Value::String(s) => s.as_str(),
                        _ => "",
                    })
                    .collect(),
            ),
            _ => None,
        })
        .unwrap_or_default();
    let n = tokens.len();
    let mut first_id: HashMap<&str, u32> = HashMap::with_capacity(n);
    for (i, t) in tokens.iter().enumerate() {
        if let Ok(id) = u32::try_from(i) {
            first_id.entry(t).or_insert(id);
        }
    }
    let by_text = |list: &[&str]| list.iter().find_map(|t| first_id.get(t).copied());
    let id_or_guess = |key: &str, list: &[&str]| read_id(md, key, n).or_else(|| by_text(list));

    let eot = id_or_guess(KEY_EOT, EOT_TEXTS);
    let eom = id_or_guess(KEY_EOM, EOM_TEXTS);
    let mut eog: Vec<u32> = [
        id_or_guess(KEY_FIM_PAD, FIM_PAD_TEXTS),
        id_or_guess(KEY_FIM_REP, FIM_REP_TEXTS),
        id_or_guess(KEY_FIM_SEP, FIM_SEP_TEXTS),
    ]
    .into_iter()
    .flatten()
    .collect();
    eog.extend(EOG_TEXTS.iter().filter_map(|t| first_id.get(t).copied()));
    let eos = read_id(md, KEY_EOS, n);
    eog.extend([eos, eot, eom].into_iter().flatten());
    eog.sort_unstable();
    eog.dedup();

    let model = md.get(KEY_MODEL).and_then(string).unwrap_or_default();
    let pre = md.get(KEY_PRE).and_then(string).unwrap_or_default();
    let default_add_bos = match model {
        "llama" => true,
        "gpt2" => crate::bpe::default_add_bos(pre),
        _ => false,
    };

    SpecialTokens {
        bos: read_id(md, KEY_BOS, n),
        eos,
        eot,
        eom,
        unk: read_id(md, KEY_UNK, n),
        sep: read_id(md, KEY_SEP, n),
        pad: read_id(md, KEY_PAD, n),
        eog,
        add_bos: read_bool(md, KEY_ADD_BOS).unwrap_or(default_add_bos),
        add_eos: read_bool(md, KEY_ADD_EOS).unwrap_or(false),
    }
}

pub(crate) fn read_id(md: &HashMap<String, Value>, key: &str, n_tokens: usize) -> Option<u32> {
    let id = int(md.get(key)?)?;
    let id = u32::try_from(id).ok()?;
    ((id as usize) < n_tokens).then_some(id)
}

pub(crate) fn read_bool(md: &HashMap<String, Value>, key: &str) -> Option<bool> {
    match md.get(key)? {
        Value::Bool(b) => Some(*b),
        v => int(v).map(|i| i != 0),
    }
}

pub(crate) fn string(v: &Value) -> Option<&str> {
    match v {
        Value::String(s) => Some(s),
        _ => None,
    }
}

pub(crate) fn array<'a>(v: &'a Value, key: &'static str) -> Result<&'a [Value], TokenizerError> {
    match v {
        Value::Array(a) => Ok(a),
        other => Err(bad(
            key,
            format!("expected an array, found {:?}", other.value_type()),
        )),
    }
}

pub(crate) fn int(v: &Value) -> Option<i64> {
    Some(match *v {
        Value::U8(x) => x.into(),
        Value::I8(x) => x.into(),
        Value::U16(x) => x.into(),
        Value::I16(x) => x.into(),
        Value::U32(x) => x.into(),
        Value::I32(x) => x.into(),
        Value::U64(x) => i64::try_from(x).ok()?,
        Value::I64(x) => x,
        _ => return None,
    })
}

pub(crate) fn bad(key: &'static str, reason: impl Into<String>) -> TokenizerError {
    TokenizerError::BadValue {
        key,
        reason: reason.into(),
    }
}
