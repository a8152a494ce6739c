//! `effbench run --suite wikitext-2,mmlu-lite` on the real SmolLM2: one run directory holding a
//! run per suite, and a joined table with a row per technique carrying every suite's figures
//! and the speed measured once; resuming re-scores nothing, and other techniques under the same
//! run id are refused.

use std::path::Path;
use std::process::Command;

fn effbench(out: &Path, techniques: &str, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_effbench"))
        .args([
            "run",
            "--suite",
            "wikitext-2,mmlu-lite",
            "--ctx",
            "128",
            "--chunks",
            "2",
            "--subjects",
            "anatomy,astronomy",
            "--items-per-subject",
            "3",
            "--techniques",
            techniques,
            "--threads",
            "2",
            "--speed-prompt",
            "16",
            "--speed-gen",
            "4",
            "--speed-reps",
            "1",
            "--out",
        ])
        .arg(out)
        .args(extra)
        .output()
        .expect("run effbench")
}

fn modified(path: &Path) -> std::time::SystemTime {
    std::fs::metadata(path).unwrap().modified().unwrap()
}

#[test]
fn suites_join_into_one_table_and_resume() {
    if !effbench_assets::cached_or_skip(&["smollm2-135m-instruct", "wikitext-2", "mmlu"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let first = effbench(dir.path(), "f16,int2", &["--run-id", "both"]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let run = dir.path().join("both");
    let table: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("table.json")).unwrap()).unwrap();
    let rows = table.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for row in rows {
        let suites = row["suites"].as_array().unwrap();
        assert_eq!(suites[0]["kind"], "perplexity", "{row}");
        assert_eq!(suites[1]["kind"], "accuracy", "{row}");
        assert_eq!(suites[1]["n"], 6, "{row}");
        // The speed test ran once, in the first suite, and its figures reach the table.
        assert!(row["decode_tok_per_s"].as_f64().unwrap() > 0.0, "{row}");
    }
    let speed = |suite: &str| {
        let m: serde_json::Value = serde_json::from_slice(
            &std::fs::read(run.join(suite).join("measure-f16.json")).unwrap(),
        )
        .unwrap();
        m["speed"].clone()
    };
    assert!(speed("wikitext-2").is_object());
    assert!(speed("mmlu-lite").is_null());
    // int2 RTN on a 135M model is far from f16, and its weights are smaller.
    let int2 = &rows[1];
    assert!(int2["suites"][0]["ratio"].as_f64().unwrap() > 2.0, "{int2}");
    assert!(int2["suites"][1]["vs_baseline"]
        .as_str()
        .unwrap()
        .contains("McNemar"));
    assert!(int2["weight_bytes"].as_u64() < rows[0]["weight_bytes"].as_u64());
    let md = std::fs::read_to_string(run.join("table.md")).unwrap();
    assert!(md.contains("| int2") && md.contains("PPL ratio"), "{md}");

    // Resuming the finished run scores nothing again: the records stay as they were.
    let records = run.join("mmlu-lite/items-int2.jsonl");
    let before = modified(&records);
    let again = effbench(dir.path(), "f16,int2", &["--resume"]);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(modified(&records), before);
    assert_eq!(std::fs::read_to_string(run.join("table.md")).unwrap(), md);

    // `effbench report` rejoins a multi-suite run from its suites' reports.
    std::fs::remove_file(run.join("table.md")).unwrap();
    let report = Command::new(env!("CARGO_BIN_EXE_effbench"))
        .arg("report")
        .arg(&run)
        .output()
        .unwrap();
    assert!(report.status.success());
    assert_eq!(std::fs::read_to_string(run.join("table.md")).unwrap(), md);

    // The same run id with other techniques would mix results.
    let other = effbench(dir.path(), "f16,int4", &["--run-id", "both"]);
    assert!(!other.status.success());
    let err = String::from_utf8_lossy(&other.stderr);
    assert!(err.contains("other suites, model or techniques"), "{err}");
}
