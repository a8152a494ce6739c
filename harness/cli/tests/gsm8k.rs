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

/// A user's own lm-eval `generate_until` task file, given as `mc:PATH`, is answered by
/// generation and scored by the same rules as GSM8K.
#[test]
fn an_lm_eval_generate_until_yaml_runs_as_a_generative_suite() {
    if !effbench_assets::cached_or_skip(&["smollm2-135m-instruct"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("arith.jsonl"),
        concat!(
            "{\"question\": \"What is 2 + 2?\", \"answer\": \"2 + 2 = 4\\n#### 4\"}\n",
            "{\"question\": \"What is 10 - 3?\", \"answer\": \"10 - 3 = 7\\n#### 7\"}\n",
            "{\"question\": \"What is 3 x 3?\"}\n",
        ),
    )
    .unwrap();
    let yaml = dir.path().join("arith.yaml");
    std::fs::write(
        &yaml,
        concat!(
            "task: arith\n",
            "dataset_path: json\n",
            "dataset_kwargs:\n  data_files:\n    test: arith.jsonl\n",
            "test_split: test\n",
            "output_type: generate_until\n",
            "doc_to_text: \"Question: {{question}}\\nAnswer:\"\n",
            "doc_to_target: \"{{answer.split('####')[-1].strip()}}\"\n",
            "generation_kwargs:\n  until: [\"\\n\"]\n  max_gen_toks: 12\n",
        ),
    )
    .unwrap();
    let suite = format!("mc:{}", yaml.display());
    let out = Command::new(env!("CARGO_BIN_EXE_effbench"))
        .args(["run", "--suite", &suite, "--threads", "2", "--no-speed"])
        .args(["--techniques", "as-stored", "--run-id", "y", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // The row without an answer is reported with its line, not scored.
    assert!(stderr.contains("arith.jsonl:3"), "{stderr}");
    let run = dir.path().join("y");
    assert_eq!(
        json(&run.join("report.json"))["suite"]["kind"],
        "generation"
    );
    let records = std::fs::read_to_string(run.join("items-as-stored.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = records
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    let golds: Vec<&str> = lines.iter().map(|r| r["gold"].as_str().unwrap()).collect();
    assert_eq!(golds, ["4", "7"]);
    for r in &lines {
        assert!(r["tokens"].as_array().unwrap().len() <= 12, "{r}");
        assert!(!r["output"].as_str().unwrap().contains('\n'), "{r}");
    }
}
