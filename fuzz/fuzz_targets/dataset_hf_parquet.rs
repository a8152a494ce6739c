#![no_main]
//! cais/mmlu parquet, through the parquet crate's row reader.

use effbench_datasets::Layout;
use libfuzzer_sys::fuzz_target;

mod checks;

fuzz_target!(
    init: {
        // libfuzzer-sys aborts in its panic hook, before any catch_unwind runs; the loader
        // contains the parquet decoder's panics on purpose, so go back to the default hook. A
        // panic that escapes the loader still aborts the run (libfuzzer-sys catches it).
        drop(std::panic::take_hook());
    },
    |data: &[u8]| {
        checks::load_both_ways("test.parquet", data, Layout::HfParquet);
    }
);
