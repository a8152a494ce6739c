//! `spec-bench` end to end on SmolLM2 (a run whose report.json the report crate reads), and `run --techniques spec:...` refusing a draft whose
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
fn spec_bench_is_a_run_whose_report_has_every_draft_and_keeps_greedy_output() {
    let (Some(smol), Some(_)) = (
        effbench_assets::cached_path_or_skip("smollm2-135m-instruct"),
        effbench_assets::cached_path_or_skip("wikitext-2"),
    ) else {
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
        "--ctx",
        "64",
        // The prefill test is not what this checks: a short one keeps the test quick.
        "--speed-prompt",
        "32",
        "--speed-reps",
        "1",
        "--json",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    // What it prints is the run's report.json, in the schema `report` and `compare` read.
    let printed: effbench_report::RunReport = serde_json::from_str(&stdout).unwrap();
    let report = effbench_report::RunReport::load_dir(&out_dir).unwrap();
    assert_eq!(printed, report);
    assert_eq!(report.baseline, "f32");
    assert!(report.provenance.git_dirty.is_some() || report.provenance.git_commit == "unknown");
    // The plain row, then three drafts, each at k=2 and adaptive up to 2.
    let names: Vec<&str> = report
        .techniques
        .iter()
        .map(|t| t.technique.as_str())
        .collect();
    assert_eq!(names.len(), 7, "{names:?}");
    assert!(names.contains(&"f32+spec:ngram@2"), "{names:?}");
    assert!(names.contains(&"f32+spec:layers:6@adaptive:2"), "{names:?}");
    let base = report.baseline().unwrap();
    assert!(base.decoding.is_none());
    for t in report.techniques.iter().skip(1) {
        let d = t
            .decoding
            .as_ref()
            .unwrap_or_else(|| panic!("{}", t.technique));
        // Dense weights: greedy speculative output is plain greedy output.
        assert_eq!((d.identical, d.compared), (1, 1), "{}: {d:?}", t.technique);
        assert!(d.mismatched.is_empty() && d.sampling.is_none());
        assert!(d.speedup > 0.0);
        assert_eq!(d.per_kind.len(), 1);
        assert_eq!(d.per_kind[0].kind, "code");
        assert_eq!(d.per_kind[0].identical, 1);
        // Verifying up to 2 drafts scores up to 3 tokens in a pass.
        assert_eq!(d.verify_cost_ms.len(), 3, "{}", t.technique);
        // Decoding leaves log-likelihoods as they are: the row scores as its weights do.
        assert_eq!(d.quality_from.as_deref(), Some("f32"));
        assert_eq!(
            t.quality.headline(),
            base.quality.headline(),
            "{}",
            t.technique
        );
    }
    // The model drafting for itself has every proposal accepted.
    let own = report
        .techniques
        .iter()
        .find(|t| t.technique == format!("f32+spec:model:{smol}@2"))
        .unwrap();
    assert_eq!(own.decoding.as_ref().unwrap().acceptance_rate, Some(1.0));
    let md = std::fs::read_to_string(out_dir.join("report.md")).unwrap();
    assert!(
        md.contains("By prompt type") && md.contains("Theory"),
        "{md}"
    );

    // `effbench report` reads it like any run.
    let (code, stdout, stderr) = effbench(&["report", out_dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("f32+spec:ngram@2"), "{stdout}");
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
