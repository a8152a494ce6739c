//! Bad quantization settings get a one-line error naming the cause, before any model loads.

use std::process::Command;

fn effbench(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_effbench"))
        .args(args)
        .env(
            "EFFBENCH_CACHE",
            std::env::temp_dir().join("effbench-quant-cli-cache"),
        )
        .output()
        .expect("run effbench");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn assert_one_line_error(args: &[&str], needle: &str) {
    let (code, stderr) = effbench(args);
    assert_ne!(code, 0, "{args:?} should fail");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(
        errors.len(),
        1,
        "want one error line for {args:?}, got: {stderr}"
    );
    assert!(errors[0].contains(needle), "`{needle}` not in: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn bad_quantization_settings_are_one_line_errors() {
    assert_one_line_error(
        &["run", "--techniques", "f16,int3"],
        "unknown technique `int3`",
    );
    assert_one_line_error(&["run", "--techniques", "f16,int4-g48"], "group size 48");
    assert_one_line_error(
        &["run", "--techniques", "int2-gptq-awq"],
        "unknown part `awq`",
    );
    assert_one_line_error(&["bench", "--weights", "int2-g128"], "group size 128");
    assert_one_line_error(&["quantize", "--bits", "3", "--out", "x.gguf"], "3-bit");
    assert_one_line_error(
        &[
            "quantize", "--bits", "2", "--group", "128", "--out", "x.gguf",
        ],
        "group size 128",
    );
    assert_one_line_error(&["quantize", "--method", "awq", "--out", "x.gguf"], "`awq`");
    assert_one_line_error(&["quantize", "--out", "x.bin"], "should end in .gguf");
}
