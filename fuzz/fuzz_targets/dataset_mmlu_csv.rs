#![no_main]
//! One original-release MMLU CSV file. The first byte picks the file name, because the split in
//! the name decides the id scheme.

use effbench_datasets::{Layout, Split};
use libfuzzer_sys::fuzz_target;

mod checks;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let (name, split) = match pick % 4 {
        0 => ("astronomy_test.csv", Split::Test),
        1 => ("astronomy_dev.csv", Split::Dev),
        2 => ("astronomy_val.csv", Split::Val),
        _ => ("High School Biology.csv", Split::Test),
    };
    checks::load_both_ways(name, body, Layout::MmluCsv(split));
});
