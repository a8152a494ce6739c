//! `effbench run` killed with SIGKILL at many moments, each followed by `--resume`, on the real
//! SmolLM2: every chain of kills ends with exactly the uninterrupted run's records (none lost,
//! none repeated, every log-likelihood bit-identical) and its final outputs, and no kill ever
//! leaves a torn JSON file for a reader. Covers a single-suite run, a multi-suite run and a
//! shard.
//!
//! The kill moments are drawn with a fixed seed from the whole of the reference run's wall time
//! (one per stratum, so they spread over startup, scoring, the speed test and report writing);
//! each attempt is killed that long after it starts. A resumed attempt has less left to do, so
//! one that finishes before its moment is checked as a finished run and the next attempt starts
//! a new run: the count of kills, not attempts, is what the test guarantees. Report writing
//! lasts milliseconds, so one more run is killed as each of a list of files appears.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use support::*;

struct Scenario {
    name: &'static str,
    args: Vec<String>,
    /// The run directory below `--out`: `--resume` applies once it exists.
    run_dir: &'static str,
    /// Files in order of writing, each naming the phase that ends when it appears or, with
    /// `Full`, when it has as many lines as the reference's. Those the reference lacks (a speed
    /// test another shard owns) are dropped.
    milestones: Vec<(&'static str, &'static str, Reached)>,
    /// JSON files a finished run has, below `--out`.
    outputs: Vec<&'static str>,
    /// Files whose appearance triggers a kill, in order of writing: timed kills rarely land in
    /// the milliseconds of report writing, these do.
    triggers: Vec<&'static str>,
}

#[derive(Clone, Copy)]
enum Reached {
    Exists,
    Full,
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |t| t.matches('\n').count())
}

impl Scenario {
    fn phase(&self, out: &Path, reference: &Path) -> &'static str {
        for (phase, file, reached) in &self.milestones {
            let path = out.join(file);
            let done = match reached {
                Reached::Exists => path.exists(),
                Reached::Full => path.exists() && lines(&path) >= lines(&reference.join(file)),
            };
            if !done {
                return phase;
            }
        }
        "exit"
    }

    fn assert_finished(&self, out: &Path, reference: &BTreeMap<String, String>) {
        let got = records(out);
        let lost: Vec<&String> = reference.keys().filter(|k| !got.contains_key(*k)).collect();
        assert!(lost.is_empty(), "{}: records lost: {lost:?}", self.name);
        assert_eq!(got.len(), reference.len(), "{}: extra records", self.name);
        for (k, line) in reference {
            assert_eq!(
                &got[k], line,
                "{}: {k} differs from the reference",
                self.name
            );
        }
        for file in &self.outputs {
            json(&out.join(file));
        }
        assert_untorn(out, false);
    }
}

struct Outcome {
    kills: usize,
    finished_runs: usize,
    phases: BTreeMap<&'static str, usize>,
    reference: Duration,
    total: Duration,
}

fn kill_and_resume(mut s: Scenario, kills: usize, seed: u64) -> Outcome {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let reference_out = tmp.path().join("reference");
    let wall = run_ok(&s.args, &reference_out, false);
    let reference = records(&reference_out);
    assert!(
        !reference.is_empty(),
        "{}: the reference recorded nothing",
        s.name
    );
    s.assert_finished(&reference_out, &reference);
    s.milestones
        .retain(|(_, file, _)| reference_out.join(file).exists());

    let mut rng = Rng::new(seed);
    let mut strata: Vec<usize> = (0..kills).collect();
    let mut phases = BTreeMap::new();
    let (mut done_kills, mut finished_runs, mut attempts) = (0, 0, 0);
    let mut out = tmp.path().join("run-0");
    let stderr = tmp.path().join("stderr");
    while done_kills < kills {
        if attempts % kills == 0 {
            rng.shuffle(&mut strata);
        }
        let stratum = strata[attempts % kills];
        attempts += 1;
        assert!(
            attempts <= 3 * kills,
            "{}: {attempts} attempts for {done_kills} kills: runs finish before their kill moments",
            s.name
        );
        let moment = wall.mul_f64((stratum as f64 + rng.unit()) / kills as f64);
        let resume = out.join(s.run_dir).exists();
        let mut child = spawn(command(&s.args, &out, resume), &stderr);
        if let Some(status) = wait_up_to(&mut child, moment) {
            assert!(
                status.success(),
                "{}: attempt {attempts} failed: {}",
                s.name,
                std::fs::read_to_string(&stderr).unwrap()
            );
            s.assert_finished(&out, &reference);
            finished_runs += 1;
            out = tmp.path().join(format!("run-{finished_runs}"));
            continue;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        done_kills += 1;
        *phases.entry(s.phase(&out, &reference_out)).or_insert(0) += 1;
        assert_untorn(&out, true);
    }
    run_ok(&s.args, &out, out.join(s.run_dir).exists());
    s.assert_finished(&out, &reference);

    // One more run, killed as each trigger file appears.
    let out = tmp.path().join("triggered");
    let mut triggered = 0;
    for trigger in &s.triggers {
        let mut child = spawn(
            command(&s.args, &out, out.join(s.run_dir).exists()),
            &stderr,
        );
        let seen = loop {
            if out.join(trigger).exists() {
                break true;
            }
            if let Some(status) = child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "{}: {}",
                    s.name,
                    std::fs::read_to_string(&stderr).unwrap()
                );
                break false;
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        assert!(
            seen,
            "{}: the run finished without writing {trigger}",
            s.name
        );
        child.kill().unwrap();
        child.wait().unwrap();
        triggered += 1;
        *phases.entry(s.phase(&out, &reference_out)).or_insert(0) += 1;
        assert_untorn(&out, true);
    }
    run_ok(&s.args, &out, true);
    s.assert_finished(&out, &reference);

    let outcome = Outcome {
        kills: done_kills + triggered,
        finished_runs: finished_runs + 2,
        phases,
        reference: wall,
        total: started.elapsed(),
    };
    eprintln!(
        "{}: reference run {:.1} s; {done_kills} timed kills over {attempts} attempts and {triggered} triggered ones, {} finished runs checked; kills by phase {:?}; {:.0} s in all",
        s.name,
        outcome.reference.as_secs_f64(),
        outcome.finished_runs,
        outcome.phases,
        outcome.total.as_secs_f64()
    );
    outcome
}

/// Kills landed both while items were being scored and after the last one was recorded
/// (speed test, report writing, exit): a schedule that only ever hit one phase would not test
/// the other's writes.
fn assert_spread(o: &Outcome, scoring: &[&str]) {
    let during: usize = scoring.iter().map(|p| o.phases.get(p).unwrap_or(&0)).sum();
    assert!(during > 0, "no kill landed while scoring: {:?}", o.phases);
    assert!(
        during < o.kills,
        "every kill landed while scoring: {:?}",
        o.phases
    );
}

#[test]
fn single_suite_survives_twenty_kills() {
    if !ready(&["smollm2-135m-instruct", "mmlu"]) {
        return;
    }
    let _serial = serial();
    let s = Scenario {
        name: "mmlu-lite",
        args: mmlu_args(),
        run_dir: "r",
        milestones: vec![
            ("startup", "r/run.json", Reached::Exists),
            ("model load", "r/items-f16.jsonl", Reached::Exists),
            ("scoring", "r/items-f16.jsonl", Reached::Full),
            ("speed test", "r/measure-f16.json", Reached::Exists),
            ("report", "r/summary.md", Reached::Exists),
        ],
        outputs: vec![
            "r/run.json",
            "r/kv-f16.json",
            "r/measure-f16.json",
            "r/report.json",
            "r/summary.json",
        ],
        triggers: vec![
            "r/run.json",
            "r/kv-f16.json",
            "r/measure-f16.json",
            "r/report.json",
            "r/summary.json",
        ],
    };
    let o = kill_and_resume(s, 20, 23);
    assert!(o.kills >= 20);
    assert_spread(&o, &["scoring"]);
    assert!(
        o.phases.get("report").is_some_and(|&n| n >= 2),
        "{:?}",
        o.phases
    );
}

#[test]
fn multi_suite_survives_kills() {
    if !ready(&["smollm2-135m-instruct", "mmlu", "wikitext-2"]) {
        return;
    }
    let _serial = serial();
    let s = Scenario {
        name: "wikitext-2,mmlu-lite",
        args: suites_args(),
        run_dir: "r",
        milestones: vec![
            ("startup", "r/wikitext-2/run.json", Reached::Exists),
            (
                "wikitext-2 scoring",
                "r/wikitext-2/items-f16.jsonl",
                Reached::Full,
            ),
            (
                "speed test",
                "r/wikitext-2/measure-f16.json",
                Reached::Exists,
            ),
            (
                "wikitext-2 report",
                "r/wikitext-2/summary.md",
                Reached::Exists,
            ),
            ("mmlu-lite startup", "r/mmlu-lite/run.json", Reached::Exists),
            (
                "mmlu-lite scoring",
                "r/mmlu-lite/items-f16.jsonl",
                Reached::Full,
            ),
            (
                "mmlu-lite report",
                "r/mmlu-lite/summary.md",
                Reached::Exists,
            ),
            ("joined table", "r/table.json", Reached::Exists),
        ],
        outputs: vec![
            "r/suites.json",
            "r/table.json",
            "r/wikitext-2/report.json",
            "r/wikitext-2/summary.json",
            "r/mmlu-lite/report.json",
            "r/mmlu-lite/summary.json",
        ],
        triggers: vec![
            "r/wikitext-2/baseline-logprobs.f16",
            "r/wikitext-2/measure-f16.json",
            "r/mmlu-lite/run.json",
            "r/mmlu-lite/report.json",
            "r/table.md",
        ],
    };
    let o = kill_and_resume(s, 8, 2301);
    assert!(o.kills >= 8);
    assert_spread(&o, &["wikitext-2 scoring", "mmlu-lite scoring"]);
}

#[test]
fn shard_survives_kills() {
    if !ready(&["smollm2-135m-instruct", "mmlu"]) {
        return;
    }
    let _serial = serial();
    let mut args = mmlu_args();
    args.extend(strings(&["--shard", "1/2"]));
    let s = Scenario {
        name: "shard 1/2",
        args,
        run_dir: "r/shard-1-of-2",
        milestones: vec![
            ("startup", "r/shard-1-of-2/run.json", Reached::Exists),
            (
                "model load",
                "r/shard-1-of-2/items-f16.jsonl",
                Reached::Exists,
            ),
            ("scoring", "r/shard-1-of-2/items-f16.jsonl", Reached::Full),
            // Present only if this shard owns the speed test.
            (
                "speed test",
                "r/shard-1-of-2/measure-f16.json",
                Reached::Exists,
            ),
            ("finish", "r/shard-1-of-2/shard.json", Reached::Exists),
        ],
        outputs: vec!["r/shard-1-of-2/run.json", "r/shard-1-of-2/shard.json"],
        triggers: vec!["r/shard-1-of-2/run.json", "r/shard-1-of-2/items-f16.jsonl"],
    };
    let o = kill_and_resume(s, 8, 2302);
    assert!(o.kills >= 8);
    assert_spread(&o, &["scoring"]);
}
