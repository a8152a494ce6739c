//! `effbench report` and `effbench compare` on recorded runs (schema 1 and 2 fixtures).

use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../report/tests/fixtures")
        .join(name)
}

fn copy_fixture(name: &str, to: &Path) -> PathBuf {
    let dir = to.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    for e in std::fs::read_dir(fixture(name)).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
    }
    dir
}

fn effbench(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_effbench"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn report_regenerates_tables_and_plot_at_a_given_price() {
    let tmp = tempfile::tempdir().unwrap();
    let run = copy_fixture("v2-ppl", tmp.path());
    let out = effbench(&["report", run.to_str().unwrap(), "--price-per-hour", "3.6"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let md = String::from_utf8_lossy(&out.stdout);
    assert!(md.contains("| Technique") && md.contains("Data takeaway"));
    // $3.60/h = $0.001/s; the fixture's baseline decodes at 96.5 tok/s: $10.36 per 1M output.
    assert!(md.contains("$10.36"), "{md}");
    assert!(run.join("quality-vs-cost.svg").exists());
    assert!(run.join("report.md").exists());

    let out = effbench(&["report", run.to_str().unwrap(), "--json"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["run"]["schema_version"], 2);
    assert!(v["priced"]["rows"].as_array().unwrap().len() == 2);
}

#[test]
fn report_reads_schema_1_runs_and_writes_the_index() {
    let tmp = tempfile::tempdir().unwrap();
    copy_fixture("v1-mmlu", tmp.path());
    copy_fixture("v2-ppl", tmp.path());
    let out = effbench(&["report", "--index", tmp.path().to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let index = std::fs::read_to_string(tmp.path().join("README.md")).unwrap();
    assert!(
        index.contains("[v1-mmlu]") && index.contains("[v2-ppl]"),
        "{index}"
    );
    assert!(index.contains("effbench run --suite mmlu-lite"), "{index}");
}

#[test]
fn bad_report_input_gets_one_line_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let out = effbench(&["report", tmp.path().to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a run directory"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    let a = copy_fixture("v2-ppl", tmp.path());
    let b = copy_fixture("v1-mmlu", tmp.path());
    let out = effbench(&["compare", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("different items"), "{err}");

    let out = effbench(&["report", a.to_str().unwrap(), "--instance", "nope"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown instance `nope`") && err.contains("h100-80gb"),
        "{err}"
    );
}
