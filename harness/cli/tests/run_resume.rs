//! `effbench run` on the real SmolLM2 and MMLU: the same run twice gives bit-identical per-item
//! log-likelihoods, and a run killed with SIGKILL then resumed ends with exactly the records of
//! an uninterrupted run, none scored twice.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod support;

fn assets_ready() -> bool {
    support::ready(&["smollm2-135m-instruct", "mmlu"])
}

/// The crash-safety tests' smallest run (3 subjects x 4 items, f16, a tiny speed test).
fn run_args(out: &Path, extra: &[&str]) -> Vec<String> {
    let mut args = support::mmlu_args();
    args.push("--out".into());
    args.push(out.display().to_string());
    args.extend(support::strings(extra));
    args
}

fn effbench(args: &[String]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_effbench"))
        .args(args)
        .output()
        .expect("run effbench")
}

/// Item id -> (raw JSON line), asserting no item appears twice.
fn records(out: &Path) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(out.join("r").join("items-f16.jsonl")).unwrap();
    let mut map = BTreeMap::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let id = v["item"].as_str().unwrap().to_string();
        assert!(
            map.insert(id.clone(), line.to_string()).is_none(),
            "{id} scored twice"
        );
    }
    map
}

#[test]
fn deterministic_and_resumable_after_sigkill() {
    if !assets_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (a, b, killed) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("killed"),
    );
    for out in [&a, &b] {
        let o = effbench(&run_args(out, &[]));
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let ra = records(&a);
    assert_eq!(ra.len(), 12);
    // Same settings, same machine: every log-likelihood bit-identical (JSON floats round-trip).
    assert_eq!(ra, records(&b));
    assert!(a.join("r").join("summary.md").exists());

    // Where a kill can stop a run: after whole batches (of 4), plus a cut line. Resuming from
    // there meets exactly the uninterrupted run's batches, so every float is bit-identical.
    let cut = dir.path().join("cut");
    copy_dir(&a, &cut);
    let items = cut.join("r").join("items-f16.jsonl");
    let text = std::fs::read_to_string(&items).unwrap();
    let mut kept: String = text.lines().take(4).map(|l| format!("{l}\n")).collect();
    kept.push_str(&text.lines().nth(4).unwrap()[..20]);
    std::fs::write(&items, kept).unwrap();
    // As a run recorded before its measurement settings were kept: it still resumes.
    let run_json = cut.join("r").join("run.json");
    let mut manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&run_json).unwrap()).unwrap();
    let measurement = manifest["settings"]
        .as_object_mut()
        .unwrap()
        .remove("measurement")
        .expect("run.json records the measurement settings");
    assert!(
        measurement.as_str().unwrap().contains("pp16 tg4 x1"),
        "{measurement}"
    );
    std::fs::write(&run_json, manifest.to_string()).unwrap();
    let o = effbench(&run_args(&cut, &["--resume"]));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(records(&cut), ra);

    let mut child = Command::new(env!("CARGO_BIN_EXE_effbench"))
        .args(run_args(&killed, &[]))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let file = killed.join("r").join("items-f16.jsonl");
    let start = Instant::now();
    loop {
        let lines = std::fs::read_to_string(&file)
            .map(|t| t.lines().count())
            .unwrap_or(0);
        if lines >= 3 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "no records appeared"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    let partial = std::fs::read_to_string(&file).unwrap().lines().count();
    assert!(partial < 12, "the run finished before it could be killed");

    let o = effbench(&run_args(&killed, &["--resume"]));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(records(&killed), ra);
    let summary = |p: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(p.join("r").join("summary.json")).unwrap())
            .unwrap()
    };
    assert_eq!(
        summary(&killed)["techniques"][0]["accuracy"],
        summary(&a)["techniques"][0]["accuracy"]
    );

    // The speed test's token counts are part of the run: a resume asking for others is
    // refused, rather than keeping figures timed over another count.
    let mut other = run_args(&a, &["--resume"]);
    let at = other.iter().position(|a| a == "--speed-gen").unwrap();
    other[at + 1] = "8".into();
    let o = effbench(&other);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("was started with other settings"), "{err}");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn unknown_technique_is_a_one_line_error() {
    let o = effbench(&[
        "run".to_string(),
        "--techniques".to_string(),
        "f16,int3".to_string(),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("unknown technique `int3`"), "{err}");
    assert_eq!(err.lines().filter(|l| l.starts_with("error:")).count(), 1);
}
