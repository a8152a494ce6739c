//! SentencePiece vocabularies (`tokenizer.ggml.model = "llama"`) as llama.cpp runs them: spaces
//! become `▁`, a space is prepended to each run of text, and adjacent pieces merge, highest score
//! first, while their concatenation is a token; characters left outside the vocabulary are spelled
//! as `<0xXX>` byte tokens.
//!
//! `tokenizers` has no score-driven merger, so the scores become BPE merges: every way of
//! splitting a token into two tokens is a merge, ranked by the whole token's score. Merging by
//! rank then picks the same pair llama.cpp picks, except among pairs of equal score, which
//! llama.cpp takes leftmost first and this takes in token-id order.

use std::collections::HashMap;

use candle_core::quantized::gguf_file::Value;
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::{Prepend, Replace, Sequence as NormalizerSequence};
use tokenizers::{DecoderWrapper, NormalizerWrapper, Tokenizer};

use crate::gguf::{self, Vocab, KEY_ADD_SPACE_PREFIX, KEY_SCORES};
use crate::TokenizerError;

const SPACE: &str = "▁";

pub(crate) fn build(
    md: &HashMap<String, Value>,
    vocab: &Vocab,
) -> Result<Tokenizer, TokenizerError> {
    let scores = read_scores(md, vocab.tokens.len())?;
    let merges = merges_from_scores(vocab, &scores);
    let build_err = |what: &str, e: &dyn std::fmt::Display| TokenizerError::Build {
        reason: format!("{what}: {e}"),
    };

    let mut builder = BPE::builder()
        .vocab_and_merges(vocab.bpe_vocab(), merges)
        .byte_fallback(true);
    let unk = gguf::read_id(md, "tokenizer.ggml.unknown_token_id", vocab.tokens.len())
        .or_else(|| vocab.id("<unk>"));
    if let Some(unk) = unk {
        builder = builder.unk_token(vocab.tokens[unk as usize].clone());
    }
    let bpe = builder.build().map_err(|e| build_err("BPE model", &e))?;

    let add_space_prefix = gguf::read_bool(md, KEY_ADD_SPACE_PREFIX).unwrap_or(true);
    let escape = Replace::new(" ", SPACE).map_err(|e| build_err("normalizer", &e))?;
    let mut normalizers: Vec<NormalizerWrapper> = Vec::new();
    if add_space_prefix {
        // Applied to each run of text between added tokens, as llama.cpp prefixes every text
        // fragment that follows a special token (or starts the input).
        normalizers.push(Prepend::new(SPACE.to_string()).into());
    }
    normalizers.push(escape.into());

    let mut decoders: Vec<DecoderWrapper> = vec![
        Replace::new(SPACE, " ")
            .map_err(|e| build_err("decoder", &e))?
            .into(),
        ByteFallback::new().into(),
        Fuse::new().into(),
    ];
    if add_space_prefix {
        decoders.push(Strip::new(' ', 1, 0).into());
    }

    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer.with_normalizer(Some(NormalizerSequence::new(normalizers)));
    tokenizer.with_decoder(Some(DecoderSequence::new(decoders)));
    crate::finish(md, vocab, tokenizer)
}

fn read_scores(md: &HashMap<String, Value>, n: usize) -> Result<Vec<f32>, TokenizerError> {
    // llama.cpp scores every token 0 when the key is absent.
    let Some(raw) = md.get(KEY_SCORES) else {
        return Ok(vec![0.0; n]);
    };
    let raw = gguf::array(raw, KEY_SCORES)?;
    if raw.len() != n {
        return Err(gguf::bad(
            KEY_SCORES,
            format!("{} scores for {n} tokens", raw.len()),
        ));
    }
    raw.iter()
        .enumerate()
        .map(|(i, v)| match v {
            Value::F32(x) => Ok(*x),
            other => gguf::int(other)
                .map(|x| x as f32)
                .ok_or_else(|| gguf::bad(KEY_SCORES, format!("entry {i} is not a number"))),
        })
        .collect()
}

fn merges_from_scores(vocab: &Vocab, scores: &[f32]) -> Vec<(String, String)> {
    let mut ranked: Vec<(f32, u32, usize)> = Vec::new();
    for (id, text) in vocab.tokens.iter().enumerate() {
        for (split, _) in text.char_indices().skip(1) {
            let (left, right) = text.split_at(split);
            if vocab.id(left).is_some() && vocab.id(right).is_some() {
                ranked.push((scores[id], id as u32, split));
            }
        }
    }
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    ranked
        .into_iter()
        .map(|(_, id, split)| {
            let (left, right) = vocab.tokens[id as usize].split_at(split);
            (left.to_string(), right.to_string())
        })
        .collect()
}
