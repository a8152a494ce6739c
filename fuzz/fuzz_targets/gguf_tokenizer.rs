#![no_main]
//! The tokenizer built from a GGUF file's `tokenizer.ggml.*` metadata, as `effbench generate`
//! builds it: header walk, candle's reader, then the tokenizer and its special tokens, which
//! then tokenize and detokenize a short text.

use std::io::Cursor;

use candle_core::quantized::gguf_file::Content;
use effbench_tokenizer::gguf_header::GgufHeader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if GgufHeader::from_bytes(data).is_err() {
        return;
    }
    let Ok(content) = Content::read(&mut Cursor::new(data)) else {
        return;
    };
    let special = effbench_tokenizer::special_tokens(&content.metadata);
    let Ok(tokenizer) = effbench_tokenizer::from_gguf_metadata(&content.metadata) else {
        return;
    };
    let vocab = tokenizer.get_vocab_size(true) as u32;
    for id in [special.bos, special.eos, special.eot].into_iter().flatten() {
        assert!(id < vocab, "special id {id} outside a vocabulary of {vocab}");
    }
    if let Ok(enc) = tokenizer.encode("Hi <|im_start|> 12 naïve\n", true) {
        let _ = tokenizer.decode(enc.get_ids(), false);
    }
});
