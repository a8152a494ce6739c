//! Inputs the fuzzer (fuzz/, docs/fuzzing.md) found to crash `report` or `compare`, reduced to
//! the edit of a real fixture that triggers each, with the answer they must get now.

use std::path::{Path, PathBuf};

use effbench_report::{compare, tables, v1, Price, ReportError, RunReport};

fn fixture(run: &str, file: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(run)
        .join(file);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn edited(bytes: &[u8], edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let mut v: serde_json::Value = serde_json::from_slice(bytes).unwrap();
    edit(&mut v);
    serde_json::to_vec(&v).unwrap()
}

#[test]
fn a_report_without_techniques_is_malformed_not_a_panic() {
    let bytes = edited(&fixture("v2-ppl", "report.json"), |v| {
        v["techniques"] = serde_json::json!([]);
    });
    let err = RunReport::from_slice(Path::new("report.json"), &bytes).unwrap_err();
    assert!(matches!(err, ReportError::Malformed { ref reason, .. } if reason == "no techniques"));
    let summary = edited(&fixture("v1-mmlu", "summary.json"), |v| {
        v["techniques"] = serde_json::json!([]);
    });
    let err = v1::from_slices(Path::new("r"), &fixture("v1-mmlu", "run.json"), &summary);
    assert!(matches!(err, Err(ReportError::Malformed { .. })));
}

#[test]
fn hashes_and_commits_with_wide_characters_are_shortened_by_character() {
    // The 12th byte falls inside "é": slicing by bytes panicked.
    let hash = "abcdefghijkéz-rest";
    let bytes = edited(&fixture("v2-ppl", "report.json"), |v| {
        v["suite"]["manifest_hash"] = hash.into();
        v["provenance"]["git_commit"] = hash.into();
    });
    let report = RunReport::from_slice(Path::new("report.json"), &bytes).unwrap();
    let view = tables::view(&report, &Price::per_hour(1.0));
    assert!(tables::markdown(&report, &view).contains("abcdefghijké"));
    let mut other = report.clone();
    other.suite.manifest_hash = "0123456789abcdef".into();
    let err = compare::compare_markdown(
        &[report.clone(), other],
        &[Price::per_hour(1.0), Price::per_hour(1.0)],
    )
    .unwrap_err();
    assert!(err.to_string().contains("abcdefghijké"), "{err}");
    let md = compare::compare_markdown(&[report], &[Price::per_hour(1.0)]).unwrap();
    assert!(md.contains("abcdefghijké"), "{md}");
}
