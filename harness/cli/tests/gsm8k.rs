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

    // Few-shot is the task's own: refused.
    let shots = effbench(dir.path(), &["--shots", "5"]);
    assert!(!shots.status.success());
    assert!(String::from_utf8_lossy(&shots.stderr).contains("--shots"));
}

/// GSM8K shards as multiple choice does, by (problem, technique) pair: two shards answer every
/// problem once between them, and merged they give the single-machine run's answers and table.
#[test]
fn gsm8k_shards_merge_into_the_single_machine_run() {
    if !effbench_assets::cached_or_skip(&["smollm2-135m-instruct", "olmes-tasks"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--items-per-subject",
        "4",
        "--max-gen-tokens",
        "24",
        "--techniques",
        "as-stored,int4",
    ];
    let whole = effbench(dir.path(), &[&args[..], &["--run-id", "whole"]].concat());
    assert!(
        whole.status.success(),
        "{}",
        String::from_utf8_lossy(&whole.stderr)
    );
    for shard in ["0/2", "1/2"] {
        let out = effbench(
            dir.path(),
            &[&args[..], &["--run-id", "split", "--shard", shard]].concat(),
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let split = dir.path().join("split");
    let mut per_shard = Vec::new();
    for shard in ["shard-0-of-2", "shard-1-of-2"] {
        let n: usize = ["as-stored", "int4"]
            .iter()
            .map(|t| {
                std::fs::read_to_string(split.join(shard).join(format!("items-{t}.jsonl")))
                    .map_or(0, |s| s.lines().count())
            })
            .sum();
        per_shard.push(n);
    }
    assert_eq!(per_shard.iter().sum::<usize>(), 8, "{per_shard:?}");
    assert!(
        per_shard.iter().all(|&n| n < 8),
        "one shard did all the work: {per_shard:?}"
    );

    let merged = Command::new(env!("CARGO_BIN_EXE_effbench"))
        .arg("merge")
        .arg(&split)
        .output()
        .unwrap();
    assert!(
        merged.status.success(),
        "{}",
        String::from_utf8_lossy(&merged.stderr)
    );
    let answers = |run: &Path, t: &str| -> Vec<(String, serde_json::Value, bool)> {
        let mut v: Vec<(String, serde_json::Value, bool)> =
            std::fs::read_to_string(run.join(format!("items-{t}.jsonl")))
                .unwrap()
                .lines()
                .map(|l| {
                    let r: serde_json::Value = serde_json::from_str(l).unwrap();
                    (
                        r["item"].as_str().unwrap().to_string(),
                        r["tokens"].clone(),
                        r["correct"].as_bool().unwrap(),
                    )
                })
                .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    for t in ["as-stored", "int4"] {
        assert_eq!(
            answers(&split, t),
            answers(&dir.path().join("whole"), t),
            "{t}"
        );
    }
    let summary = |run: &Path| json(&run.join("summary.json"))["tasks"].clone();
    assert_eq!(summary(&split), summary(&dir.path().join("whole")));
    assert_eq!(
        json(&split.join("report.json"))["suite"]["kind"],
        "generation"
    );
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

/// A decoding row answers GSM8K as its base row did, and proves it on the suite's own problems:
/// the first problems are generated again plainly and with the draft, and on SmolLM2's Q4_1
/// weights greedy speculative output equals plain output token for token. The check is recorded
/// once and read back on resume.
#[test]
fn a_decoding_row_checks_its_shared_answers_against_plain_decoding() {
    if !effbench_assets::cached_or_skip(&["smollm2-135m-instruct", "olmes-tasks"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let run_args = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_effbench"))
            .args(["run", "--suite", "gsm8k", "--threads", "2"])
            .args(["--items-per-subject", "3", "--max-gen-tokens", "48"])
            .args(["--techniques", "as-stored,as-stored+spec:ngram:2"])
            .args(["--decoding-check", "2", "--run-id", "c"])
            .args([
                "--speed-prompt",
                "16",
                "--speed-gen",
                "16",
                "--speed-reps",
                "1",
            ])
            .args(extra)
            .arg("--out")
            .arg(dir.path())
            .output()
            .expect("run effbench")
    };
    let out = run_args(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let run = dir.path().join("c");
    let report = json(&run.join("report.json"));
    let row = report["techniques"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["technique"] == "as-stored+spec:ngram:2")
        .expect("the decoding row");
    let check = &row["decoding"]["suite_check"];
    assert_eq!(check["suite"], "gsm8k", "{row}");
    assert_eq!(check["compared"], 2, "{check}");
    assert_eq!(check["identical"], 2, "{check}");
    assert_eq!(check["mismatched"].as_array().unwrap().len(), 0, "{check}");
    assert!(check["plain_tok_per_s"].as_f64().unwrap() > 0.0, "{check}");
    assert!(check["same_as_scored"].as_u64().unwrap() <= 2, "{check}");
    let table = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(
        table.contains("identical to plain decoding on 2/2"),
        "{table}"
    );

    // Resumed: the recorded check is read back, not generated again.
    let check_file = std::fs::read_dir(&run)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("check-")
        })
        .expect("the recorded check");
    let recorded = std::fs::read_to_string(&check_file).unwrap();
    let again = run_args(&["--resume", "c"]);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{stderr}");
    assert!(!stderr.contains("generated again"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&check_file).unwrap(), recorded);
}
