//! Techniques stacked with `+` in one `effbench run` on the real SmolLM2: a decoding technique
//! shares its weights' quality records and gives plain decoding's greedy output on dense
//! weights; a paged KV cache scores like the contiguous one within float noise and serves
//! where the contiguous one cannot; a conflicting stack is refused in one line before anything
//! starts.

use std::path::Path;
use std::process::Command;

mod support;
use support::technique_records as records;

fn effbench(out: &Path, techniques: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_effbench"))
        .args([
            "run",
            "--suite",
            "mmlu-lite",
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
            "12",
            "--speed-reps",
            "1",
            "--run-id",
            "stack",
            "--serve",
            "--serve-requests",
            "4",
            "--kv-budget-mib",
            "48",
            "--out",
        ])
        .arg(out)
        .output()
        .expect("run effbench")
}

#[test]
fn stacked_rows_share_quality_keep_greedy_output_and_page_like_contiguous() {
    if !effbench_assets::cached_or_skip(&["smollm2-135m-instruct", "mmlu"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = effbench(dir.path(), "f32,f32+spec:ngram,f32+kv:paged");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = dir.path().join("stack");

    let plain = records(&run, "f32.jsonl");
    assert_eq!(plain.len(), 6);
    let spec = records(&run, "f32_spec_ngram");
    assert_eq!(
        spec, plain,
        "a decoding row's quality records are its weights' records"
    );

    let paged = records(&run, "f32_kv_paged");
    assert_eq!(paged.len(), plain.len());
    for (item, p) in &paged {
        let c = &plain[item];
        let lp = |v: &serde_json::Value| -> Vec<f64> {
            v["logprobs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        };
        for (a, b) in lp(p).iter().zip(lp(c)) {
            assert!((a - b).abs() < 1e-3, "{item}: paged {a} vs contiguous {b}");
        }
        assert_eq!(p["pred"], c["pred"], "{item}");
    }

    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("report.json")).unwrap()).unwrap();
    let row = report["techniques"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["technique"] == "f32+spec:ngram")
        .unwrap();
    let d = &row["decoding"];
    assert_eq!(d["quality_from"], "f32", "{d}");
    assert_eq!(d["compared"], 3, "{d}");
    assert_eq!(
        d["identical"], 3,
        "greedy speculative decoding on f32 weights must give plain decoding's tokens: {d}"
    );
    assert!(d["spec_tok_per_s"].as_f64().unwrap() > 0.0);
    assert_eq!(row["speed"]["decode_tok_per_s"], d["spec_tok_per_s"]);
    let md = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(md.contains("### Decoding"), "{md}");
    // Provenance says whether the binary's tree matched its commit.
    assert!(report["provenance"]["git_dirty"].is_boolean(), "{report}");

    // Every row served the same trace in 48 MiB of KV: SmolLM2's f32 K/V for one 2048-token
    // reservation is 90 MiB, so the contiguous cache admits nothing and the paged one serves
    // every request in blocks.
    let serving = |name: &str| {
        report["techniques"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["technique"] == name)
            .unwrap()["serving"]
            .clone()
    };
    let contiguous = serving("f32");
    assert_eq!(contiguous["requests"], 4, "{contiguous}");
    assert_eq!(contiguous["refused"], 4, "{contiguous}");
    let paged = serving("f32+kv:paged");
    assert_eq!(paged["completed"], 4, "{paged}");
    assert!(paged["output_tok_per_s"].as_f64().unwrap() > 0.0, "{paged}");
    assert!(
        paged["cache"].as_str().unwrap().starts_with("paged"),
        "{paged}"
    );
    assert!(md.contains("Served throughput"), "{md}");
}

#[test]
fn a_conflicting_stack_is_refused_in_one_line_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    for (techniques, said) in [
        ("f16,int4+f16", "two weights techniques"),
        ("f16,spec:ngram+spec:layers:2", "two decoding techniques"),
        ("f16,int4+awq", "unknown technique `awq`"),
    ] {
        let out = effbench(dir.path(), techniques);
        assert!(!out.status.success(), "{techniques}");
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.trim_end().lines().last().unwrap_or_default();
        assert!(last.contains(said), "{techniques}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{techniques}: {err}");
    }
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "nothing is written for a refused run"
    );
}
