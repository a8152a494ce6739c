//! One writer per run directory, on the real SmolLM2: two runs with one --run-id never both
//! score; a lock left by a dead process is taken over; merge refuses a shard still being
//! written; multi-suite and shard runs honour a lock held on their directories.

mod support;

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use support::*;

const LOCK_FILE: &str = "effbench.lock";

/// The smallest useful run: 4 items, no speed test.
fn tiny_args() -> Vec<String> {
    strings(&[
        "run",
        "--suite",
        "mmlu-lite",
        "--subjects",
        "anatomy",
        "--items-per-subject",
        "4",
        "--techniques",
        "f16",
        "--threads",
        "2",
        "--run-id",
        "r",
        "--no-speed",
    ])
}

fn error_lines(stderr: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter(|l| l.starts_with("error:"))
        .map(String::from)
        .collect()
}

/// Holds `dir`'s lock from this process, naming this process in it, as a live run would.
fn hold_lock(dir: &Path) -> File {
    std::fs::create_dir_all(dir).unwrap();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(dir.join(LOCK_FILE))
        .unwrap();
    f.try_lock().unwrap();
    f.set_len(0).unwrap();
    write!(
        f,
        r#"{{"pid":{},"host":"test-host","since":"2026-01-01T00:00:00Z"}}"#,
        std::process::id()
    )
    .unwrap();
    f
}

/// Waits until `dir`'s lock file names `pid`, i.e. the run holds its directory.
fn wait_for_holder(dir: &Path, pid: u32) {
    let start = Instant::now();
    let want = format!("\"pid\":{pid},");
    while !std::fs::read_to_string(dir.join(LOCK_FILE)).is_ok_and(|t| t.contains(&want)) {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "pid {pid} never locked {}",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn two_runs_with_one_run_id_one_proceeds() {
    if !ready(&["smollm2-135m-instruct", "mmlu"]) {
        return;
    }
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let args = mmlu_args();
    let a = command(&args, tmp.path(), false)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let b = command(&args, tmp.path(), false)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (pa, pb) = (a.id(), b.id());
    let (oa, ob) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let ((winner, _), (loser_pid, loser)) = match (oa.status.success(), ob.status.success()) {
        (true, false) => ((pa, oa), (pb, ob)),
        (false, true) => ((pb, ob), (pa, oa)),
        (x, y) => panic!(
            "exactly one run may proceed; a succeeded: {x}, b succeeded: {y}\n{}\n{}",
            String::from_utf8_lossy(&oa.stderr),
            String::from_utf8_lossy(&ob.stderr)
        ),
    };
    let errors = error_lines(&loser.stderr);
    assert_eq!(errors.len(), 1, "pid {loser_pid}: {errors:?}");
    assert!(
        errors[0].contains(&format!("pid {winner} ")) && errors[0].contains("--run-id"),
        "the refusal should name the holder, pid {winner}, and a way out: {}",
        errors[0]
    );
    let recs = records(tmp.path());
    assert_eq!(recs.len(), 12, "every item scored exactly once");
    // A clean finish leaves the lock file empty: nobody to report as a dead holder.
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("r").join(LOCK_FILE)).unwrap(),
        ""
    );
}

#[test]
fn a_dead_holders_lock_is_taken_over() {
    if !ready(&["smollm2-135m-instruct", "mmlu"]) {
        return;
    }
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let args = tiny_args();
    let run = tmp.path().join("r");

    // A lock file naming a process that has exited, and nothing else: that run died before it
    // wrote run.json, so --resume starts it.
    let mut dead = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = dead.id();
    dead.wait().unwrap();
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(
        run.join(LOCK_FILE),
        format!(r#"{{"pid":{dead_pid},"host":"test-host","since":"2026-01-01T00:00:00Z"}}"#),
    )
    .unwrap();
    let o = command(&args, tmp.path(), true).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.lines()
            .any(|l| l.starts_with("note:") && l.contains(&format!("pid {dead_pid} "))),
        "no note about the dead holder: {err}"
    );
    assert_eq!(records(tmp.path()).len(), 4);

    // A real run killed while it holds the lock: the kernel released it, the file still names
    // the killed process, and --resume takes over.
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("r");
    let stderr = tmp.path().join("stderr");
    let mut child = spawn(command(&args, tmp.path(), false), &stderr);
    let killed = child.id();
    wait_for_holder(&run, killed);
    while !run.join("run.json").exists() {
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let o = command(&args, tmp.path(), true).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains(&format!("pid {killed} ")) && err.contains("taking it over"),
        "{err}"
    );
    assert_eq!(records(tmp.path()).len(), 4);
}

#[test]
fn merge_refuses_a_shard_still_being_written() {
    if !ready(&["smollm2-135m-instruct", "mmlu"]) {
        return;
    }
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let mut args = tiny_args();
    args.extend(strings(&["--shard", "0/2"]));
    let shard = tmp.path().join("r").join("shard-0-of-2");
    let stderr = tmp.path().join("stderr");
    let mut child = spawn(command(&args, tmp.path(), false), &stderr);
    let pid = child.id();
    wait_for_holder(&shard, pid);
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_effbench"))
        .arg("merge")
        .arg(tmp.path().join("r"))
        .output()
        .unwrap();
    let still_running = child.try_wait().unwrap().is_none();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        still_running,
        "the shard finished before merge could be tried"
    );
    assert!(!o.status.success());
    let errors = error_lines(&o.stderr);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("shard-0-of-2")
            && errors[0].contains("still being written")
            && errors[0].contains(&format!("pid {pid} ")),
        "{}",
        errors[0]
    );
}

#[test]
fn multi_suite_and_shard_runs_honour_a_held_lock() {
    if !ready(&["smollm2-135m-instruct", "mmlu", "wikitext-2"]) {
        return;
    }
    let _serial = serial();
    let me = format!("pid {} ", std::process::id());
    let refused = |args: &[String], out: &Path, what: &str| {
        let o = command(args, out, false).output().unwrap();
        assert!(!o.status.success(), "{what}: ran under a held lock");
        let errors = error_lines(&o.stderr);
        assert_eq!(errors.len(), 1, "{what}: {errors:?}");
        assert!(errors[0].contains(&me), "{what}: {}", errors[0]);
    };

    // The multi-suite run's own directory.
    let tmp = tempfile::tempdir().unwrap();
    let held = hold_lock(&tmp.path().join("r"));
    refused(&suites_args(), tmp.path(), "multi-suite, parent held");
    drop(held);

    // One suite's directory inside it (the first suite, so the refusal comes before any work).
    let tmp = tempfile::tempdir().unwrap();
    let held = hold_lock(&tmp.path().join("r").join("mmlu-lite"));
    let mut args = suites_args();
    args[2] = "mmlu-lite,wikitext-2".into();
    refused(&args, tmp.path(), "multi-suite, suite held");
    drop(held);

    // A shard's directory.
    let tmp = tempfile::tempdir().unwrap();
    let held = hold_lock(&tmp.path().join("r").join("shard-1-of-2"));
    let mut args = tiny_args();
    args.extend(strings(&["--shard", "1/2"]));
    refused(&args, tmp.path(), "shard");
    drop(held);
}
