#![no_main]
//! OLMES generation requests (GSM8K): one `generate_until` request per line, each a problem with
//! its prompt, stop sequences, token limit and gold answer; the answer rules run on every prompt.

use effbench_datasets::{
    exact_match, extract_flexible, extract_strict, load_generation_bytes, MAX_GEN_TOKENS,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::path::Path::new("requests.jsonl");
    let Ok(load) = load_generation_bytes(path, data, "gsm8k", false) else {
        panic!("a lenient load reports bad rows instead of failing");
    };
    let mut ids = std::collections::BTreeSet::new();
    for item in &load.items {
        assert!(ids.insert(item.id.clone()), "duplicate id {}", item.id);
        assert!(!item.prompt.is_empty());
        assert!(!item.gold.is_empty());
        assert!((1..=MAX_GEN_TOKENS).contains(&item.max_new_tokens));
        let strict = extract_strict(&item.prompt);
        let flexible = extract_flexible(&item.prompt);
        assert!(strict == "[invalid]" || item.prompt.contains(strict.as_str()));
        assert!(flexible == "[invalid]" || item.prompt.contains(flexible.as_str()));
        let _ = exact_match(&flexible, &item.gold);
    }
    for bad in &load.skipped {
        assert!(bad.line >= 1);
    }
    // Strict mode stops at the first bad row, or agrees with the lenient load.
    match load_generation_bytes(path, data, "gsm8k", true) {
        Ok(strict) => {
            assert!(load.skipped.is_empty());
            assert_eq!(strict.items, load.items);
        }
        Err(_) => assert!(!load.skipped.is_empty()),
    }
});
