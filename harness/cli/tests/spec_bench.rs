//! `spec-bench` end to end on SmolLM2, and `run --techniques spec:...` refusing a draft whose
//! tokenizer differs from the target's. Assets come from effbench's cache; without them these
//! skip, unless EFFBENCH_REQUIRE_ASSETS=1 (as in `scripts/test.sh` and CI).

use std::process::Command;

fn effbench(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_effbench"))
        .args(args)
        .output()
        .expect("run effbench");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn spec_bench_reports_every_draft_and_keeps_greedy_output() {
    let Some(smol) = effbench_assets::cached_path_or_skip("smollm2-135m-instruct") else {
        return;
    };
    let smol = smol.display().to_string();
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("spec");
    let (code, stdout, stderr) = effbench(&[
        "spec-bench",
        "--model",
        &smol,
        "--weights",
        "f32",
        "--draft",
        &format!("ngram,layers:6,model:{smol}"),
        "--k",
        "2",
        "--adaptive",
        "--prompts",
        "code",
        "--per-type",
        "1",
        "-n",
        "12",
        "--threads",
        "2",
        "--json",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let rows = report["rows"].as_array().unwrap();
    // Three drafts, each at k=2 and adaptive.
    assert_eq!(rows.len(), 6, "{stdout}");
    for row in rows {
        // Dense weights: greedy speculative output is plain greedy output.
        assert_eq!(row["identical"], "1/1", "{row}");
        assert!(row["speedup"].as_f64().unwrap() > 0.0);
    }
    // The model drafting for itself has every proposal accepted.
    let own = rows
        .iter()
        .find(|r| r["draft"].as_str().unwrap().starts_with("model:") && r["k"] == "2")
        .unwrap();
    assert_eq!(own["acceptance_rate"].as_f64(), Some(1.0), "{own}");
    assert_eq!(report["verify_cost_ms"].as_array().unwrap().len(), 3);
    assert!(out_dir.join("results.md").exists() && out_dir.join("results.json").exists());
}

#[test]
fn run_refuses_a_spec_draft_with_another_tokenizer() {
    let (Some(smol), Some(qwen)) = (
        effbench_assets::cached_path_or_skip("smollm2-135m-instruct"),
        effbench_assets::cached_path_or_skip("qwen2.5-coder-0.5b-instruct"),
    ) else {
        return;
    };
    let technique = format!("spec:model:{}", qwen.display());
    let (code, _, stderr) = effbench(&[
        "run",
        "--model",
        smol.to_str().unwrap(),
        "--techniques",
        &format!("as-stored,{technique}"),
    ]);
    assert_ne!(code, 0);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("tokenizer differs"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
