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
}
