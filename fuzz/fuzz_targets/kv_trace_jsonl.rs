#![no_main]
//! Request traces for the serving benchmark. A trace that loads must be sorted, timed and
//! complete, and must read back the same after being written.

use std::path::Path;

use effbench_kvcache::trace::read_jsonl_from;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("trace.jsonl");
    let Ok(entries) = read_jsonl_from(data, path) else {
        return;
    };
    assert!(!entries.is_empty());
    for e in &entries {
        assert!(e.arrival_s.is_finite() && e.arrival_s >= 0.0);
        assert!(e.prompt.is_some() || e.prompt_tokens.is_some());
    }
    assert!(entries.windows(2).all(|w| w[0].arrival_s <= w[1].arrival_s));
    let mut written = Vec::new();
    for e in &entries {
        serde_json::to_writer(&mut written, e).unwrap();
        written.push(b'\n');
    }
    let back = read_jsonl_from(&written[..], path).expect("a written trace reads back");
    assert_eq!(back, entries);
});
