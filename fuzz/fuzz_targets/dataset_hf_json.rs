#![no_main]
//! cais/mmlu rows as JSONL, a JSON array, or a datasets-server `{"rows": [...]}` object.

use effbench_datasets::Layout;
use libfuzzer_sys::fuzz_target;

mod checks;

fuzz_target!(|data: &[u8]| {
    checks::load_both_ways("test.json", data, Layout::HfJson);
});
