#![no_main]
//! `report.json` (results schema 2) as `report` and `compare` read it, then everything they
//! render from it. A 0xFF byte (never in valid JSON) splits the input into two runs, so the
//! joined table and the comparison see runs that differ.

use std::path::Path;

use effbench_report::RunReport;
use libfuzzer_sys::fuzz_target;

mod render;

fuzz_target!(|data: &[u8]| {
    let runs: Vec<RunReport> = data
        .split(|&b| b == 0xff)
        .take(2)
        .filter_map(|doc| RunReport::from_slice(Path::new("report.json"), doc).ok())
        .collect();
    render::render_all(&runs);
});
