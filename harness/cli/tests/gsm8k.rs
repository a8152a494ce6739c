//! GSM8K on the real SmolLM2: problems are answered by greedy generation through the batched
//! scheduler, cut at the task's stop sequences or its token limit, scored by lm-eval's strict
//! and flexible rules, recorded as they finish and not generated again on resume.

use std::path::Path;
use std::process::Command;

fn effbench(out: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_effbench"))
        .args(["run", "--suite", "gsm8k", "--threads", "2", "--no-speed"])
        .args(extra)
        .arg("--out")
        .arg(out)
        .output()
        .expect("run effbench")
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// lm-eval's exact match as GSM8K configures it, for answers as the rules extract them.
fn lm_eval_match(answer: &str, gold: &str) -> bool {
    let cleaned = answer.replace([',', '$'], "");
    cleaned.strip_suffix('.').unwrap_or(&cleaned) == gold
}

#[test]
fn gsm8k_generates_stops_scores_and_resumes() {
    if !effbench_assets::cached_or_skip(&["smollm2-135m-instruct", "olmes-tasks"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--items-per-subject",
        "3",
        "--max-gen-tokens",
        "40",
        "--techniques",
        "as-stored,int4",
        "--run-id",
        "g",
    ];
    let out = effbench(dir.path(), &args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = dir.path().join("g");
    let report = json(&run.join("report.json"));
    assert_eq!(report["suite"]["kind"], "generation");
    assert_eq!(report["suite"]["size"], 3);
    assert_eq!(report["suite"]["shots"], 8);
    let summary = json(&run.join("summary.json"));
    let task = &summary["tasks"]["tasks"][0];
    assert_eq!(task["task"], "gsm8k");
    assert_eq!(task["metric"], "exact_match_flexible");
    for row in task["rows"].as_array().unwrap() {
        let metrics = row["metrics"].as_object().unwrap();
        assert!(metrics.contains_key("exact_match_strict"), "{row}");
        assert!(metrics.contains_key("exact_match_flexible"), "{row}");
    }

    let records_path = run.join("items-as-stored.jsonl");
    let records = std::fs::read_to_string(&records_path).unwrap();
    let lines: Vec<serde_json::Value> = records
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    for r in &lines {
        let tokens = r["tokens"].as_array().unwrap().len();
        let output = r["output"].as_str().unwrap();
        let gold = r["gold"].as_str().unwrap();
        assert!((1..=40).contains(&tokens), "{r}");
        match r["finish"].as_str().unwrap() {
            "limit" => assert_eq!(tokens, 40, "{r}"),
            "stop" | "eos" => {}
            other => panic!("unknown finish {other}"),
        }
        assert!(
            !output.contains("\n\n") && !output.contains("Question:"),
            "output runs past a stop sequence: {r}"
        );
        assert!(
            r["prompt_tokens"].as_u64().unwrap() > 500,
            "8-shot prompt: {r}"
        );
        let flexible = r["flexible"].as_str().unwrap();
        assert_eq!(
            r["flexible_correct"].as_bool().unwrap(),
            lm_eval_match(flexible, gold),
            "{r}"
        );
        assert_eq!(r["correct"], r["flexible_correct"], "{r}");
        if flexible != "[invalid]" {
            assert!(output.contains(flexible), "{r}");
        }
    }

    // Resumed with every answer recorded: nothing is generated again.
    let again = effbench(dir.path(), &[&args[..], &["--resume", "g"]].concat());
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(std::fs::read_to_string(&records_path).unwrap(), records);

    // Few-shot is the task's own, and generation does not shard yet: both are refused.
    let shots = effbench(dir.path(), &["--shots", "5"]);
    assert!(!shots.status.success());
    assert!(String::from_utf8_lossy(&shots.stderr).contains("--shots"));
    let shard = effbench(dir.path(), &["--shard", "0/2", "--run-id", "s"]);
    assert!(!shard.status.success());
    assert!(String::from_utf8_lossy(&shard.stderr).contains("do not shard"));
    assert!(!dir.path().join("s").exists());
}
