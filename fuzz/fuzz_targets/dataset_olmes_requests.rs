#![no_main]
//! OLMES request files: one rendered (document, choice) request per line, grouped into items;
//! gzipped input is expanded first.

use effbench_datasets::Layout;
use libfuzzer_sys::fuzz_target;

mod checks;

fuzz_target!(|data: &[u8]| {
    checks::load_both_ways("requests.jsonl", data, Layout::OlmesRequests);
});
