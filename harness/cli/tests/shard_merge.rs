//! Sharded runs on the real SmolLM2 and MMLU: shards merge into exactly the single-machine
//! run's results, and every inconsistency is refused with the shard and field named.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn ready() -> bool {
    effbench_assets::cached_or_skip(&["smollm2-135m-instruct", "mmlu", "wikitext-2"])
}

fn effbench(args: &[&str], out: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_effbench"))
        .args(args)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap()
}

const MC: &[&str] = &[
    "run",
    "--suite",
    "mmlu-lite",
    "--subjects",
    "anatomy,astronomy",
    "--items-per-subject",
    "3",
    "--techniques",
    "f16,as-stored",
    "--threads",
    "2",
    "--speed-prompt",
    "16",
    "--speed-gen",
    "4",
    "--speed-reps",
    "1",
];

fn with(base: &[&str], extra: &[&str]) -> Vec<String> {
    base.iter().chain(extra).map(|s| s.to_string()).collect()
}

fn run_ok(args: &[String], out: &Path) {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = effbench(&refs, out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn records(dir: &Path, technique: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join(format!("items-{technique}.jsonl")))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn merge(dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_effbench"))
        .args(["merge"])
        .arg(dir)
        .output()
        .unwrap()
}

#[test]
fn shards_merge_into_the_single_machine_run() {
    if !ready() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path();
    run_ok(&with(MC, &["--run-id", "whole"]), out);
    for i in 0..3 {
        run_ok(
            &with(MC, &["--run-id", "sharded", "--shard", &format!("{i}/3")]),
            out,
        );
    }
    let sharded: PathBuf = out.join("sharded");
    let m = merge(&sharded);
    assert!(m.status.success(), "{}", String::from_utf8_lossy(&m.stderr));

    // Quality merges exactly: the same items, predictions and log-likelihoods.
    for t in ["f16", "as-stored"] {
        let (a, b) = (records(&out.join("whole"), t), records(&sharded, t));
        assert_eq!(a.len(), 6);
        let mut a = a;
        a.sort_by_key(|r| r["item"].as_str().unwrap().to_string());
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x["item"], y["item"]);
            assert_eq!(x["pred"], y["pred"]);
            for (p, q) in x["logprobs"]
                .as_array()
                .unwrap()
                .iter()
                .zip(y["logprobs"].as_array().unwrap())
            {
                assert!((p.as_f64().unwrap() - q.as_f64().unwrap()).abs() < 1e-3);
            }
        }
    }
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(sharded.join("report.json")).unwrap()).unwrap();
    let whole: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("whole/report.json")).unwrap()).unwrap();
    assert_eq!(
        report["suite"]["manifest_hash"],
        whole["suite"]["manifest_hash"]
    );
    assert_eq!(report["provenance"]["flags"]["shards"], "3");
    for (t, w) in report["techniques"]
        .as_array()
        .unwrap()
        .iter()
        .zip(whole["techniques"].as_array().unwrap())
    {
        assert_eq!(t["quality"]["correct"], w["quality"]["correct"]);
        // Speed comes from the one node that owned it, and says which.
        assert!(t["params"]["measured_on"]
            .as_str()
            .unwrap()
            .contains("shard"));
        assert!(t["speed"]["decode_tok_per_s"].as_f64().unwrap() > 0.0);
    }
    // `report` reads the merged run like any other.
    let r = Command::new(env!("CARGO_BIN_EXE_effbench"))
        .args(["report"])
        .arg(&sharded)
        .output()
        .unwrap();
    assert!(r.status.success());

    // Re-running a finished shard with --resume repeats nothing.
    let before = std::fs::read_to_string(sharded.join("shard-1-of-3/items-f16.jsonl")).unwrap();
    run_ok(
        &with(MC, &["--run-id", "sharded", "--shard", "1/3", "--resume"]),
        out,
    );
    let after = std::fs::read_to_string(sharded.join("shard-1-of-3/items-f16.jsonl")).unwrap();
    assert_eq!(before, after);
}

#[test]
fn merge_refuses_missing_doubled_and_mismatched_shards() {
    if !ready() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path();
    for i in 0..2 {
        run_ok(
            &with(
                MC,
                &["--run-id", "r", "--shard", &format!("{i}/2"), "--no-speed"],
            ),
            out,
        );
    }
    let run = out.join("r");
    let err = |o: Output| {
        assert!(!o.status.success());
        String::from_utf8_lossy(&o.stderr).to_string()
    };

    // A missing shard.
    let only_first = out.join("r/shard-0-of-2");
    let e = err(Command::new(env!("CARGO_BIN_EXE_effbench"))
        .arg("merge")
        .arg(&only_first)
        .output()
        .unwrap());
    assert!(e.contains("shard 1/2 is missing"), "{e}");

    // An item recorded by two shards.
    let f0 = run.join("shard-0-of-2/items-f16.jsonl");
    let f1 = run.join("shard-1-of-2/items-f16.jsonl");
    let original = std::fs::read_to_string(&f1).unwrap();
    let stolen = std::fs::read_to_string(&f0)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_string();
    std::fs::write(&f1, format!("{original}{stolen}\n")).unwrap();
    let e = err(merge(&run));
    assert!(
        e.contains("is recorded by both shard 0/2") && e.contains("f16"),
        "{e}"
    );
    std::fs::write(&f1, &original).unwrap();

    // An item no shard recorded.
    let kept: String = original.lines().skip(1).map(|l| format!("{l}\n")).collect();
    std::fs::write(&f1, kept).unwrap();
    let e = err(merge(&run));
    assert!(e.contains("is missing from every shard"), "{e}");
    std::fs::write(&f1, &original).unwrap();

    // A shard of another suite manifest under the same run id.
    let other = with(MC, &["--run-id", "r", "--shard", "1/2", "--no-speed"])
        .into_iter()
        .map(|a| if a == "3" { "4".to_string() } else { a })
        .collect::<Vec<_>>();
    std::fs::remove_dir_all(run.join("shard-1-of-2")).unwrap();
    run_ok(&other, out);
    let e = err(merge(&run));
    assert!(
        e.contains("shard 1/2") && e.contains("suite manifest"),
        "{e}"
    );

    // An unfinished shard.
    std::fs::remove_file(run.join("shard-1-of-2/shard.json")).unwrap();
    let e = err(merge(&run));
    assert!(
        e.contains("has not finished") && e.contains("--resume"),
        "{e}"
    );
}

#[test]
fn perplexity_shards_keep_each_window_with_its_baseline() {
    if !ready() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path();
    let ppl = [
        "run",
        "--suite",
        "wikitext-2",
        "--ctx",
        "128",
        "--chunks",
        "3",
        "--techniques",
        "f16,as-stored",
        "--threads",
        "2",
        "--no-speed",
    ];
    run_ok(&with(&ppl, &["--run-id", "whole"]), out);
    for i in 0..2 {
        run_ok(
            &with(&ppl, &["--run-id", "p", "--shard", &format!("{i}/2")]),
            out,
        );
    }
    let m = merge(&out.join("p"));
    assert!(m.status.success(), "{}", String::from_utf8_lossy(&m.stderr));
    let read = |d: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(out.join(d).join("summary.json")).unwrap()).unwrap()
    };
    let (a, b) = (read("whole"), read("p"));
    let kl = |v: &serde_json::Value| v[1]["vs_baseline"]["kl"]["mean"].as_f64().unwrap();
    let ppl_of = |v: &serde_json::Value| v[1]["perplexity"]["ppl"].as_f64().unwrap();
    assert!((kl(&a) - kl(&b)).abs() < 1e-9, "{} vs {}", kl(&a), kl(&b));
    assert!((ppl_of(&a) - ppl_of(&b)).abs() < 1e-9);
}
