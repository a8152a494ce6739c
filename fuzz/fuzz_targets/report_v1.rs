#![no_main]
//! A schema-1 run: `run.json` and `summary.json`, split at a 0xFF byte (never in valid JSON),
//! read as `report` reads old runs, then rendered.

use std::path::Path;

use effbench_report::v1;
use libfuzzer_sys::fuzz_target;

mod render;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(2, |&b| b == 0xff);
    let run = parts.next().unwrap_or_default();
    let summary = parts.next().unwrap_or_default();
    if let Ok(report) = v1::from_slices(Path::new("results/run"), run, summary) {
        render::render_all(&[report]);
    }
});
