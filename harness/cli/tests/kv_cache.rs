//! The KV-cache options end to end on the real SmolLM2: 5-shot items that share the subject's
//! prefix through a paged cache score exactly as items that run their whole prompt, with less
//! KV memory and fewer tokens through the model; and `serve-bench` refuses requests that can
//! never fit while serving the rest.

use std::path::Path;
use std::process::Command;

fn assets_ready(names: &[&str]) -> bool {
    let ready = names
        .iter()
        .all(|n| effbench_assets::cached_path(n).is_some());
    if !ready {
        if std::env::var("EFFBENCH_REQUIRE_ASSETS").as_deref() == Ok("1") {
            panic!("{names:?} not all cached (run scripts/fetch-test-assets.sh)");
        }
        eprintln!("skipping: {names:?} not all cached (run scripts/fetch-test-assets.sh)");
    }
    ready
}

fn effbench(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_effbench"))
        .args(args)
        .output()
        .expect("run effbench")
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn prefix_sharing_scores_the_same_with_less_kv() {
    if !assets_ready(&["smollm2-135m-instruct", "mmlu"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let mut logprobs = Vec::new();
    let mut stats = Vec::new();
    for (id, extra) in [("shared", None), ("unshared", Some("--no-prefix-sharing"))] {
        let mut args = vec![
            "run",
            "--suite",
            "mmlu-lite",
            "--shots",
            "5",
            "--subjects",
            "abstract_algebra",
            "--items-per-subject",
            "3",
            "--techniques",
            "as-stored",
            "--kv",
            "paged",
            "--threads",
            "2",
            "--out",
            out,
            "--run-id",
            id,
        ];
        args.extend(extra);
        let o = effbench(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let run = dir.path().join(id);
        let items = std::fs::read_to_string(run.join("items-as-stored.jsonl")).unwrap();
        let lp: Vec<Vec<f64>> = items
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                serde_json::from_value(v["logprobs"].clone()).unwrap()
            })
            .collect();
        assert_eq!(lp.len(), 3);
        logprobs.push(lp);
        stats.push(json(&run.join("kv-as-stored.json"))["stats"].clone());
    }
    for (a, b) in logprobs[0]
        .iter()
        .flatten()
        .zip(logprobs[1].iter().flatten())
    {
        assert!((a - b).abs() < 1e-4, "{a} vs {b}");
    }
    let n = |s: &serde_json::Value, k: &str| s[k].as_u64().unwrap();
    // Three items each carrying ~350 tokens of exemplars: sharing runs them once.
    assert!(
        n(&stats[0], "forward_tokens") * 3 < n(&stats[1], "forward_tokens") * 2,
        "{stats:?}"
    );
    assert!(
        n(&stats[0], "peak_bytes_reserved") * 3 < n(&stats[1], "peak_bytes_reserved") * 2,
        "{stats:?}"
    );
}

#[test]
fn serve_bench_refuses_what_cannot_fit_and_serves_the_rest() {
    if !assets_ready(&["smollm2-135m-instruct", "wikitext-2"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace.jsonl");
    // 40 MiB of f32 KV holds 56 blocks of 16 tokens (896 tokens) for SmolLM2.
    std::fs::write(
        &trace,
        concat!(
            "{\"arrival_s\": 0.0, \"prompt\": \"The capital of France is\", \"output_tokens\": 4}\n",
            "{\"arrival_s\": 0.1, \"prompt_tokens\": 1100, \"output_tokens\": 4}\n",
            "{\"arrival_s\": 0.2, \"prompt_tokens\": 900, \"output_tokens\": 4}\n",
            "{\"arrival_s\": 0.3, \"prompt_tokens\": 30, \"output_tokens\": 3}\n",
        ),
    )
    .unwrap();
    let out = dir.path().join("out");
    let o = effbench(&[
        "serve-bench",
        "--cache",
        "paged",
        "--kv-budget-mib",
        "40",
        "--max-model-len",
        "1024",
        "--threads",
        "2",
        "--trace",
        trace.to_str().unwrap(),
        "--no-speed",
        "--ctx",
        "64",
        "--out",
        out.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(
        stderr.contains("longer than the model context of 1024"),
        "{stderr}"
    );
    assert!(stderr.contains("whole budget"), "{stderr}");
    // A run: its report.json is the schema `report` and `compare` read.
    let report = effbench_report::RunReport::load_dir(&out).unwrap();
    assert_eq!(report.baseline, "as-stored+kv:paged:16");
    let paged = report.techniques[0].serving.as_ref().unwrap();
    assert_eq!(paged.completed, 2, "{paged:?}");
    assert_eq!(paged.refused, 2);
    assert_eq!(paged.output_tokens, 7);
    assert_eq!(paged.refusals.len(), 2);
    assert!(paged.waste_pct.is_some());
    // A hash per request, empty for the refused ones.
    assert_eq!(
        paged.output_hashes.iter().filter(|h| h.is_empty()).count(),
        2
    );
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("### Serving") && md.contains("Waste %"), "{md}");
    assert!(out.join("trace.jsonl").exists());
    let again = effbench_kvcache::trace::read_jsonl(&out.join("trace.jsonl")).unwrap();
    assert_eq!(again.len(), 4);

    // A malformed trace names its line and exits non-zero.
    std::fs::write(&trace, "{\"arrival_s\": 0.0, \"output_tokens\": 4}\n").unwrap();
    let o = effbench(&["serve-bench", "--trace", trace.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        stderr.contains("trace.jsonl:1:") && stderr.contains("hint"),
        "{stderr}"
    );
}
