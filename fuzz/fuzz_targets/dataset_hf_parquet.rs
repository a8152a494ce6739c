#![no_main]
//! cais/mmlu parquet, through the parquet crate's row reader.

use effbench_datasets::Layout;
use libfuzzer_sys::fuzz_target;

mod checks;

fuzz_target!(|data: &[u8]| {
    checks::load_both_ways("test.parquet", data, Layout::HfParquet);
});
