//! `effbench bench --depth N`, llama-bench's `-d N`: the tests start after N tokens already in the
//! KV cache, say so in their names, count that context in the decode roofline's bytes, and a
//! depth the model's context cannot hold is one clear error, not a panic.

use std::path::Path;
use std::process::Command;

fn effbench(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_effbench"))
        .args(args)
        .args(["--device", "cpu"])
        .env(
            "EFFBENCH_CACHE",
            std::env::temp_dir().join("effbench-bench-depth-test-cache"),
        )
        .output()
        .expect("run effbench")
}

/// The tiny Llama model (512 positions) as a safetensors directory with a minimal tokenizer:
/// `bench` loads a tokenizer with every model, though it times token ids only.
fn write_tiny_model(dir: &Path) {
    effbench_core::testing::write_tiny_safetensors(dir, 7);
    std::fs::write(
        dir.join("tokenizer.json"),
        r#"{"version":"1.0","model":{"type":"WordLevel","vocab":{"a":0,"[UNK]":1},"unk_token":"[UNK]"}}"#,
    )
    .unwrap();
}

fn bench_json(model: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "bench", "-m", model, "-t", "1", "-p", "4", "-n", "3", "-r", "2", "--json",
    ];
    args.extend(extra);
    let o = effbench(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn tests_of(v: &serde_json::Value) -> Vec<String> {
    v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["test"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn depth_names_the_tests_and_counts_its_context() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_model(dir.path());
    let model = dir.path().to_str().unwrap();

    let plain = bench_json(model, &[]);
    assert_eq!(tests_of(&plain), ["pp4", "tg3"]);
    assert_eq!(plain["depth"], 0);
    // The binary's commit, for a comparison script to record.
    assert!(plain["git_commit"].as_str().is_some_and(|c| !c.is_empty()));
    assert!(plain.get("git_dirty").is_some());

    let deep = bench_json(model, &["--depth", "300"]);
    assert_eq!(tests_of(&deep), ["pp4 @ d300", "tg3 @ d300"]);
    assert_eq!(deep["depth"], 300);
    for r in deep["results"].as_array().unwrap() {
        let samples = r["samples_tok_per_s"].as_array().unwrap();
        assert_eq!(samples.len(), 2, "{r}");
        assert!(samples.iter().all(|x| x.as_f64().unwrap() > 0.0), "{r}");
    }
    // Each decode step also reads the depth's K/V: the tiny model stores 3 layers x 2 KV heads
    // x 16 dims x (K and V) in f32 per token, 768 bytes.
    let extra = deep["decode_bytes_per_token"].as_f64().unwrap()
        - plain["decode_bytes_per_token"].as_f64().unwrap();
    assert_eq!(extra, 300.0 * 768.0);

    // -d is the short form, as in llama-bench; the table shows the name too.
    let o = effbench(&[
        "bench", "-m", model, "-t", "1", "-p", "0", "-n", "2", "-r", "1", "-d", "8",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(table.contains("| tg2 @ d8 "), "{table}");
    assert!(!table.contains("pp0"), "{table}");
}

#[test]
fn a_depth_beyond_the_context_is_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_model(dir.path());
    let model = dir.path().to_str().unwrap();

    let o = effbench(&[
        "bench", "-m", model, "-t", "1", "-p", "0", "-n", "8", "-r", "1", "-d", "510",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("panicked"), "{err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert!(
        errors[0].contains("tg8 @ d510 needs 518 positions, beyond the model's context of 512"),
        "{err}"
    );
    assert!(errors[0].contains("lower --depth"), "{err}");
}
