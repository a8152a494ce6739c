//! Bad input gets a one-line error naming the cause and a non-zero exit, never a panic.

use std::path::Path;
use std::process::Command;

use effbench_core::testing::write_tiny_gguf;

fn effbench(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_effbench"))
        .args(args)
        .env(
            "EFFBENCH_CACHE",
            std::env::temp_dir().join("effbench-bad-input-cache"),
        )
        .output()
        .expect("run effbench");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn assert_one_line_error(stderr: &str, needle: &str) {
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(
        errors.len(),
        1,
        "want exactly one error line, got: {stderr}"
    );
    assert!(
        errors[0].contains(needle),
        "error line should mention `{needle}`: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn truncated_gguf() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    write_tiny_gguf(&path, None);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let (code, err) = effbench(&["generate", "-m", path.to_str().unwrap(), "-p", "hi"]);
    assert_ne!(code, 0);
    assert_one_line_error(&err, "truncated");
}

#[test]
fn gguf_with_wrong_magic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    std::fs::write(&path, b"GGUXnot really a model at all").unwrap();
    let (code, err) = effbench(&["generate", "-m", path.to_str().unwrap(), "-p", "hi"]);
    assert_ne!(code, 0);
    assert_one_line_error(&err, "wrong magic");
}

#[test]
fn gguf_missing_a_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    write_tiny_gguf(&path, Some("blk.1.ffn_up.weight"));
    let (code, err) = effbench(&["generate", "-m", path.to_str().unwrap(), "-p", "hi"]);
    assert_ne!(code, 0);
    assert_one_line_error(&err, "blk.1.ffn_up.weight");
}

#[test]
fn gguf_without_tokenizer_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    write_tiny_gguf(&path, None);
    let (code, err) = effbench(&["generate", "-m", path.to_str().unwrap(), "-p", "hi"]);
    assert_ne!(code, 0);
    assert_one_line_error(&err, "tokenizer");
}

fn write_safetensors_dir(dir: &Path) {
    effbench_core::testing::write_tiny_safetensors(dir, 7);
}

#[test]
fn safetensors_without_tokenizer() {
    let dir = tempfile::tempdir().unwrap();
    write_safetensors_dir(dir.path());
    let (code, err) = effbench(&["generate", "-m", dir.path().to_str().unwrap(), "-p", "hi"]);
    assert_ne!(code, 0);
    assert_one_line_error(&err, "tokenizer.json");
}

#[test]
fn safetensors_header_that_lies_about_sizes() {
    let dir = tempfile::tempdir().unwrap();
    write_safetensors_dir(dir.path());
    // A minimal tokenizer so the failure is the weights, not the tokenizer.
    std::fs::write(
        dir.path().join("tokenizer.json"),
        r#"{"version":"1.0","model":{"type":"WordLevel","vocab":{"a":0,"[UNK]":1},"unk_token":"[UNK]"}}"#,
    )
    .unwrap();
    let file = dir.path().join("model.safetensors");
    let mut bytes = std::fs::read(&file).unwrap();
    // Drop the last quarter of the data while the header still promises all of it.
    bytes.truncate(bytes.len() * 3 / 4);
    std::fs::write(&file, bytes).unwrap();
    let (code, err) = effbench(&["generate", "-m", dir.path().to_str().unwrap(), "-p", "hi"]);
    assert_ne!(code, 0);
    assert_one_line_error(&err, "safetensors");
}

#[test]
fn unknown_model_name() {
    let (code, err) = effbench(&["generate", "-m", "no-such-model-7b", "-p", "hi"]);
    assert_ne!(code, 0);
    assert_one_line_error(&err, "unknown model `no-such-model-7b`");
    assert!(
        err.contains("smollm2-135m-instruct"),
        "lists known names: {err}"
    );
}

#[test]
fn unknown_asset_for_fetch() {
    let (code, err) = effbench(&["fetch", "no-such-dataset"]);
    assert_ne!(code, 0);
    assert_one_line_error(&err, "no-such-dataset");
}

/// A length of 2^62 in the first metadata key used to abort the process (signal 6) inside
/// candle's reader, asking for 4 EiB; it must be an ordinary one-line error instead.
#[test]
fn gguf_whose_first_key_claims_2_pow_62_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    write_tiny_gguf(&path, None);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[24..32].copy_from_slice(&(1u64 << 62).to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_effbench"))
        .args(["generate", "-m", path.to_str().unwrap(), "-p", "hi"])
        .output()
        .expect("run effbench");
    let err = String::from_utf8_lossy(&out.stderr);
    // `code()` is None when a signal ended the process.
    let code = out.status.code();
    assert!(code.is_some_and(|c| c != 0), "{:?}: {err}", out.status);
    assert_one_line_error(
        &err,
        "metadata key 0 at byte 24 claims 4611686018427387904 bytes",
    );
}
