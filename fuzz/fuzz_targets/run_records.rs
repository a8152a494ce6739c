#![no_main]
//! The per-technique item records that `--resume` and `merge` read back. The first byte picks
//! the record type: multiple-choice items or perplexity windows.

use effbench_report::records::{parse_records, ItemRecord, Keyed, Records, WindowRecord};
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;

fn check<R: DeserializeOwned + Keyed>(data: &[u8]) {
    let Ok(Records {
        records,
        complete_len,
    }) = parse_records::<R>(data)
    else {
        return;
    };
    // The kept prefix ends a line, and what is cut off is at most one partial line.
    assert!(complete_len <= data.len());
    assert!(complete_len == 0 || data[complete_len - 1] == b'\n');
    assert!(!data[complete_len..].contains(&b'\n'));
    assert!(records.iter().all(|(k, r)| *k == r.key()));
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    if pick % 2 == 0 {
        check::<ItemRecord>(body);
    } else {
        check::<WindowRecord>(body);
    }
});
