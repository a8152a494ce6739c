//! `--device` on every model-running command, and `effbench hw`'s account of the GPU, on a
//! build and machine without one (CI's): `cuda` is a one-line error naming the fix, a misspelt
//! device is refused, `auto` says it took the CPU and why, and `hw` says why there is no GPU.

use std::path::Path;
use std::process::Command;

use effbench_core::testing::write_tiny_gguf;

fn effbench(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_effbench"))
        .args(args)
        .env(
            "EFFBENCH_CACHE",
            std::env::temp_dir().join("effbench-device-test-cache"),
        )
        .output()
        .expect("run effbench");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn one_error_line(stderr: &str) -> String {
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "want exactly one error line: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    errors[0].to_string()
}

/// Every command that runs a model, with the arguments it needs besides the model. The model is
/// a path that does not exist: the device must be checked before anything is loaded or fetched.
const MODEL_COMMANDS: &[&[&str]] = &[
    &["generate", "-p", "hi"],
    &["perplexity"],
    &["bench"],
    &["demo"],
    &["run", "--techniques", "f16"],
    &["serve-bench"],
    &["spec-bench", "--draft", "ngram"],
    &["distill", "--out", "/nonexistent/effbench-student"],
    &["distill", "eval", "--student", "/nonexistent/student"],
];

fn with_device<'a>(cmd: &[&'a str], device: &'a str) -> Vec<&'a str> {
    let mut args = cmd.to_vec();
    args.extend(["-m", "/nonexistent/model.gguf", "--device", device]);
    args
}

#[cfg(not(feature = "cuda"))]
#[test]
fn cuda_without_the_feature_is_one_line_naming_the_fix_on_every_command() {
    for cmd in MODEL_COMMANDS {
        for device in ["cuda", "cuda:1"] {
            let (code, _, err) = effbench(&with_device(cmd, device));
            assert_eq!(code, 1, "{cmd:?} --device {device}: {err}");
            let line = one_error_line(&err);
            let named = format!("device `{device}`");
            for needle in [
                named.as_str(),
                "`cuda` feature",
                "scripts/build-cuda.sh",
                "--device cpu",
            ] {
                assert!(
                    line.contains(needle),
                    "{cmd:?}: `{needle}` missing from: {line}"
                );
            }
        }
    }
}

#[test]
fn a_misspelt_device_is_refused_on_every_command() {
    for cmd in MODEL_COMMANDS {
        for device in ["bogus", "cuda:x", "gpu", "cuda:-1"] {
            let (code, _, err) = effbench(&with_device(cmd, device));
            assert_ne!(code, 0, "{cmd:?} --device {device}");
            assert!(
                err.contains("unknown device") && err.contains("auto, cpu, cuda or cuda:N"),
                "{cmd:?} --device {device}: {err}"
            );
            assert!(!err.contains("panicked"), "{err}");
        }
    }
}

#[test]
fn cpu_is_taken_without_a_word_and_auto_says_what_it_chose_once() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny.gguf");
    write_tiny_gguf(&model, None);
    let model = model.to_str().unwrap();

    // The tiny model has no tokenizer: the command fails after the device and the load.
    let (code, _, err) = effbench(&["generate", "-m", model, "-p", "hi", "--device", "cpu"]);
    assert_ne!(code, 0);
    assert!(one_error_line(&err).contains("tokenizer"), "{err}");
    assert!(!err.contains("device:"), "cpu needs no note: {err}");

    let (_, _, err) = effbench(&["generate", "-m", model, "-p", "hi", "--device", "auto"]);
    let notes: Vec<&str> = err.lines().filter(|l| l.starts_with("device:")).collect();
    assert_eq!(notes.len(), 1, "{err}");
    if cfg!(feature = "cuda") {
        assert!(notes[0].contains("auto: built with `cuda`"), "{err}");
    } else {
        assert_eq!(
            notes[0], "device: cpu (auto: this build has no `cuda` feature)",
            "{err}"
        );
    }
}

#[test]
fn quantize_runs_on_the_cpu_and_says_so_for_cuda() {
    let (code, _, err) = effbench(&[
        "quantize",
        "-m",
        "/nonexistent/model.gguf",
        "--out",
        "/nonexistent/q.gguf",
        "--device",
        "cuda",
    ]);
    assert_eq!(code, 1, "{err}");
    let line = one_error_line(&err);
    assert!(
        line.contains("CPU only") && line.contains("--device cpu"),
        "{line}"
    );
}

#[test]
fn hw_says_why_there_is_no_gpu_and_that_the_build_has_no_cuda() {
    let (code, out, err) = effbench(&["hw", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let gpus = &v["gpus"];
    if gpus["available"] == false {
        let reason = gpus["reason"].as_str().expect("a reason");
        assert!(reason.starts_with("no GPU: "), "{reason}");
        let driver_there = Path::new("/proc/driver/nvidia/version").exists()
            || Path::new("/dev/nvidiactl").exists();
        if !driver_there {
            assert!(reason.contains("no NVIDIA driver"), "{reason}");
        }
    }
    let compute = &v["gpu_compute"];
    assert_eq!(compute["built_with_cuda"], cfg!(feature = "cuda"), "{v}");
    if !cfg!(feature = "cuda") {
        assert_eq!(compute["auto_device"], "cpu");
        let reason = compute["reason"].as_str().expect("a reason");
        assert!(
            reason.contains("built without the `cuda` feature"),
            "{reason}"
        );
    }

    // The table says the same in words.
    let (code, out, _) = effbench(&["hw"]);
    assert_eq!(code, 0);
    assert!(out.contains("GPU compute"), "{out}");
    if gpus["available"] == false {
        assert!(out.contains("no GPU: "), "{out}");
    }
}
