//! The perplexity suite on the real SmolLM2: techniques that change the numerics more diverge
//! more from the baseline, and a technique close to the baseline stays close.

use std::process::Command;

#[test]
fn kl_and_agreement_order_the_techniques() {
    let ready = effbench_assets::cached_path("smollm2-135m-instruct").is_some()
        && effbench_assets::cached_path("wikitext-2").is_some();
    if !ready {
        assert_ne!(
            std::env::var("EFFBENCH_REQUIRE_ASSETS").as_deref(),
            Ok("1"),
            "SmolLM2 or WikiText-2 not cached (run scripts/fetch-test-assets.sh)"
        );
        eprintln!("skipping: SmolLM2 or WikiText-2 not cached");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_effbench"))
        .args([
            "run",
            "--suite",
            "wikitext-2",
            "--ctx",
            "256",
            "--chunks",
            "2",
            "--techniques",
            "f32,f16,as-stored",
            "--threads",
            "2",
            "--run-id",
            "p",
            "--speed-prompt",
            "32",
            "--speed-gen",
            "4",
            "--speed-reps",
            "1",
            "--json",
            "--out",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = summary.as_array().unwrap();
    assert_eq!(rows.len(), 3);
    assert!(rows[0]["vs_baseline"].is_null());
    let kl = |i: usize| rows[i]["vs_baseline"]["kl"]["mean"].as_f64().unwrap();
    let same = |i: usize| rows[i]["vs_baseline"]["same_top"]["rate"].as_f64().unwrap();
    let ppl = |i: usize| rows[i]["perplexity"]["ppl"].as_f64().unwrap();
    // f16 weights differ from f32 only by rounding; Q4_1's kernel also quantizes activations.
    assert!(kl(1) < 1e-3, "f16 vs f32 KL {}", kl(1));
    assert!(
        kl(2) > kl(1),
        "Q4_1 {} should diverge more than f16 {}",
        kl(2),
        kl(1)
    );
    assert!(kl(2) < 0.05, "Q4_1 vs f32 KL {}", kl(2));
    assert!(same(1) > 0.97 && same(2) > 0.9);
    for i in 1..3 {
        assert!((ppl(i) / ppl(0) - 1.0).abs() < 0.02);
    }
    assert_eq!(rows[0]["perplexity"]["n_tokens"].as_u64(), Some(2 * 127));

    // The run's full report: every technique measured for speed and memory, and priced.
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("p/report.json")).unwrap()).unwrap();
    assert_eq!(report["schema_version"], 2);
    assert!(report["provenance"]["finished"].is_string());
    let techniques = report["techniques"].as_array().unwrap();
    assert_eq!(techniques.len(), 3);
    for t in techniques {
        assert!(
            t["speed"]["decode_tok_per_s"].as_f64().unwrap() > 0.0,
            "{t}"
        );
        assert!(t["memory"]["weight_bytes"].as_u64().unwrap() > 0, "{t}");
    }
    // f32 weights are twice the bytes of f16 ones.
    let bpw = |i: usize| techniques[i]["memory"]["bits_per_weight"].as_f64().unwrap();
    assert_eq!((bpw(0), bpw(1)), (32.0, 16.0));
    let md = std::fs::read_to_string(dir.path().join("p/report.md")).unwrap();
    assert!(md.contains("Data takeaway") && md.contains("$/1M output tokens"));
    assert!(dir.path().join("p/quality-vs-cost.svg").exists());
}

#[test]
fn a_student_is_scored_beside_its_teacher_and_a_foreign_vocabulary_is_refused() {
    if !effbench_assets::cached_or_skip(&[
        "smollm2-135m-instruct",
        "wikitext-2",
        "qwen2.5-coder-0.5b-instruct",
    ]) {
        return;
    }
    let smollm = effbench_assets::cached_path("smollm2-135m-instruct").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let run = |run_id: &str, student: &str| {
        Command::new(env!("CARGO_BIN_EXE_effbench"))
            .args([
                "run",
                "--suite",
                "wikitext-2",
                "--ctx",
                "128",
                "--chunks",
                "1",
                "--techniques",
                "as-stored",
                "--student",
                student,
                "--no-speed",
                "--threads",
                "2",
                "--json",
                "--run-id",
                run_id,
                "--out",
            ])
            .arg(dir.path())
            .output()
            .unwrap()
    };
    // The teacher as its own student: the same logits, so divergence only from storing the
    // baseline's log-probabilities in f16.
    let out = run("same", smollm.to_str().unwrap());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let student = &rows[1];
    assert!(student["label"]
        .as_str()
        .unwrap()
        .starts_with("student SmolLM2"));
    let kl = student["vs_baseline"]["kl"]["mean"].as_f64().unwrap();
    assert!(kl < 1e-4, "KL {kl}");
    assert_eq!(
        student["vs_baseline"]["same_top"]["rate"].as_f64(),
        Some(1.0)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("same/report.json")).unwrap())
            .unwrap();
    assert_eq!(
        report["techniques"][1]["params"]["model_sha256"].as_str(),
        Some("b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53")
    );

    // Qwen's tokenizer is not SmolLM2's: refused before anything is scored.
    let out = run("foreign", "qwen2.5-coder-0.5b-instruct");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot be compared token by token") && err.contains("49152 and 151936"),
        "{err}"
    );
    assert!(!dir.path().join("foreign").exists());
}
