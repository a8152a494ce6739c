#![no_main]
//! A user's own multiple-choice set: `{"question", "choices", "answer"}` per line.

use effbench_datasets::Layout;
use libfuzzer_sys::fuzz_target;

mod checks;

fuzz_target!(|data: &[u8]| {
    checks::load_both_ways("custom.jsonl", data, Layout::CustomJsonl);
});
