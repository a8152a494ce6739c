#![no_main]
//! A Hugging Face `tokenizer.json` as `from_tokenizer_json` loads it, then a short text through
//! the loaded tokenizer both ways.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(tokenizer) = effbench_tokenizer::from_tokenizer_json_bytes(data) else {
        return;
    };
    if let Ok(enc) = tokenizer.encode("Hi there 12 naïve\n", true) {
        let _ = tokenizer.decode(enc.get_ids(), false);
    }
});
