//! `effbench run` with its --out on a tmpfs too small to finish, on the real SmolLM2: at every
//! size tried it stops with one error line naming the path (no panic, nonzero exit), leaves no
//! torn file and no stray temporary, and once the tmpfs is remounted larger, `--resume` ends
//! with exactly the records of a run that never ran out of space.
//!
//! Mounting needs root, which CI has; elsewhere the test skips with a message, unless
//! EFFBENCH_REQUIRE_ASSETS=1 asks for every real-asset test to run.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::*;

const PAGE: u64 = 4096;

/// A tmpfs mounted on a fresh directory, unmounted when dropped (also when the test panics).
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: PathBuf, bytes: u64) -> Result<Self, String> {
        std::fs::create_dir_all(&path).unwrap();
        let o = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}")])
            .arg("tmpfs")
            .arg(&path)
            .output()
            .map_err(|e| format!("running mount: {e}"))?;
        if !o.status.success() {
            return Err(String::from_utf8_lossy(&o.stderr).trim().to_string());
        }
        Ok(Self { path })
    }

    fn resize(&self, bytes: u64) {
        let o = Command::new("mount")
            .args(["-o", &format!("remount,size={bytes}")])
            .arg(&self.path)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "remount: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a child killed mid-write may still be closing its files.
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// What the finished run's files take on a tmpfs, in whole pages: a mount one page smaller
/// cannot hold them all, so a run there must fail, however small its last temporary is.
fn pages_needed(dir: &Path) -> u64 {
    files(dir)
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len().div_ceil(PAGE))
        .sum::<u64>()
}

#[test]
fn a_full_disk_stops_cleanly_and_resume_completes() {
    if !ready(&["smollm2-135m-instruct", "mmlu"]) {
        return;
    }
    // Spread over what the run needs, so the disk fills while scoring (the first page holds
    // run.json), during the speed test's record, while rendering the report and at the very
    // last file.
    fill_the_disk_then_resume(&mmlu_args(), "measure-f16.json", &[0.1, 0.3, 0.6, 0.95]);
}

/// A perplexity run writes the baseline's log-probabilities (`baseline-logprobs.f16`, most of
/// the run's bytes) before each window's record, and every later technique reads them back
/// for its KL: a full disk cuts that file too, and the resumed run must still end with the
/// KL of an uninterrupted run, bit for bit.
#[test]
fn a_full_disk_in_a_perplexity_run_rewrites_the_baseline_rows_on_resume() {
    if !ready(&["smollm2-135m-instruct", "wikitext-2"]) {
        return;
    }
    let args = strings(&[
        "run",
        "--suite",
        "wikitext-2",
        "--ctx",
        "64",
        "--chunks",
        "3",
        "--techniques",
        "f16,as-stored",
        "--threads",
        "2",
        "--run-id",
        "r",
        "--speed-prompt",
        "16",
        "--speed-gen",
        "4",
        "--speed-reps",
        "1",
    ]);
    // The baseline's rows are nearly all of the bytes: three sizes cut them at different
    // windows, and one page short of the whole run fails at the last file.
    fill_the_disk_then_resume(&args, "measure-as-stored.json", &[0.15, 0.5, 0.85, 1.0]);
}

/// Runs `args` on tmpfs mounts of each fraction of the pages the whole run needs (at most one
/// page short of it), then remounts larger and resumes.
fn fill_the_disk_then_resume(args: &[String], last_measure: &str, fractions: &[f64]) {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let reference_out = tmp.path().join("reference");
    run_ok(args, &reference_out, false);
    let reference = records(&reference_out);
    let needed = pages_needed(&reference_out);

    // At most two pages short of the reference: a run's files differ from the reference's by
    // a few bytes (its timing figures), which can move one file across a page boundary, so one
    // page short is not always short.
    let mut sizes: Vec<u64> = fractions
        .iter()
        .map(|f| ((needed as f64 * f).round() as u64).clamp(2, needed - 2))
        .collect();
    sizes.dedup();
    let mut failed_while_scoring = 0;
    let mut failed_after_scoring = 0;
    for (i, pages) in sizes.iter().enumerate() {
        let mount = match Tmpfs::mount(tmp.path().join(format!("mnt-{i}")), pages * PAGE) {
            Ok(m) => m,
            Err(why) => {
                assert_ne!(
                    std::env::var("EFFBENCH_REQUIRE_ASSETS").as_deref(),
                    Ok("1"),
                    "cannot mount a tmpfs (this test needs root): {why}"
                );
                eprintln!("skipping: cannot mount a tmpfs (this test needs root): {why}");
                return;
            }
        };
        let out = &mount.path;
        let o = command(args, out, false).output().unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success(),
            "{pages} pages: the run fit in {} pages, the reference needed {needed}",
            pages
        );
        assert!(!stderr.contains("panicked"), "{pages} pages: {stderr}");
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(errors.len(), 1, "{pages} pages: {stderr}");
        assert!(
            errors[0].contains(&out.display().to_string())
                && errors[0].contains("No space left on device"),
            "{pages} pages: the error should name the path and the cause: {}",
            errors[0]
        );
        eprintln!("{pages} pages: {}", errors[0]);
        // What a reader finds now: whole JSON files, whole record lines, no temporaries.
        assert_untorn(out, false);
        let partial = records(out).len();
        if partial < reference.len() {
            failed_while_scoring += 1;
        } else {
            failed_after_scoring += 1;
        }

        mount.resize(2 * needed * PAGE);
        run_ok(args, out, true);
        assert_eq!(
            records(out),
            reference,
            "{pages} pages: records after resume"
        );
        for file in ["r/report.json", "r/summary.json"] {
            json(&out.join(file));
        }
        json(&out.join("r").join(last_measure));
        assert!(out.join("r/summary.md").exists());
        assert_untorn(out, false);
    }
    assert!(
        failed_while_scoring > 0 && failed_after_scoring > 0,
        "the sizes {sizes:?} of {needed} pages should fill the disk both while scoring and after: {failed_while_scoring} and {failed_after_scoring}"
    );
}
