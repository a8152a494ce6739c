//! What the crash-safety tests share: small real runs on SmolLM2, reading their records, and
//! checking that no file a reader would read is torn.
// Each test binary uses part of this module.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub fn ready(assets: &[&str]) -> bool {
    effbench_assets::cached_or_skip(assets)
}

/// The tests of one binary run one at a time: they time runs, and two at once on a small
/// machine would move every kill moment.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// 3 subjects x 4 items, one technique, a tiny speed test: the smallest run with every phase.
pub fn mmlu_args() -> Vec<String> {
    strings(&[
        "run",
        "--suite",
        "mmlu-lite",
        "--subjects",
        "abstract_algebra,anatomy,astronomy",
        "--items-per-subject",
        "4",
        "--techniques",
        "f16",
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
    ])
}

/// Two suites under one run directory, each tiny.
pub fn suites_args() -> Vec<String> {
    strings(&[
        "run",
        "--suite",
        "wikitext-2,mmlu-lite",
        "--ctx",
        "64",
        "--chunks",
        "2",
        "--subjects",
        "anatomy,astronomy",
        "--items-per-subject",
        "4",
        "--techniques",
        "f16",
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
    ])
}

pub fn command(args: &[String], out: &Path, resume: bool) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_effbench"));
    c.args(args).arg("--out").arg(out);
    if resume {
        c.arg("--resume");
    }
    c
}

/// Runs to the end; panics with its stderr unless it succeeds.
pub fn run_ok(args: &[String], out: &Path, resume: bool) -> Duration {
    let start = Instant::now();
    let o = command(args, out, resume).output().unwrap();
    assert!(
        o.status.success(),
        "effbench {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    start.elapsed()
}

/// Waits for `child` up to `limit`: its status if it ended, `None` if it still runs.
pub fn wait_up_to(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(5)));
    }
}

/// A child whose stderr goes to a file, so a failure can be shown after it is killed.
pub fn spawn(mut c: Command, stderr: &Path) -> Child {
    c.stdout(Stdio::null())
        .stderr(std::fs::File::create(stderr).unwrap())
        .spawn()
        .unwrap()
}

/// Every item record under `out` (any `items-*.jsonl`, at any depth), keyed by its file's path
/// below `out` and its item or window: the raw line, so equal maps mean bit-identical floats.
/// Panics on an item recorded twice, a line cut short or one that does not parse.
pub fn records(out: &Path) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for file in files(out) {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        if !(name.starts_with("items-") && name.ends_with(".jsonl")) {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            text.is_empty() || text.ends_with('\n'),
            "{} ends in a cut line",
            file.display()
        );
        let rel = file.strip_prefix(out).unwrap().display().to_string();
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{rel}: unreadable record {line:?}: {e}"));
            let id = match (&v["item"], &v["window"]) {
                (serde_json::Value::String(s), _) => s.clone(),
                (_, serde_json::Value::Number(n)) => n.to_string(),
                _ => panic!("{rel}: record without item or window: {line}"),
            };
            let key = format!("{rel} {id}");
            assert!(
                map.insert(key.clone(), line.to_string()).is_none(),
                "{key} recorded twice"
            );
        }
    }
    map
}

/// The file directly in `dir` whose name starts with `prefix` and ends with `suffix`: technique
/// names with `+`, `:` or `@` get a hash after their file-safe form, so tests find them by it.
pub fn file_named(dir: &Path, prefix: &str, suffix: &str) -> PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix) && n.ends_with(suffix))
        })
        .unwrap_or_else(|| panic!("no {prefix}*{suffix} in {}", dir.display()))
}

/// One technique's item records in a run directory, parsed and keyed by item, from the
/// `items-<key>*.jsonl` file its file-safe name `key` starts.
pub fn technique_records(run: &Path, key: &str) -> BTreeMap<String, serde_json::Value> {
    std::fs::read_to_string(file_named(run, &format!("items-{key}"), ".jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["item"].as_str().unwrap().to_string(), v)
        })
        .collect()
}

/// Every file below `dir`, sorted.
pub fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if e.file_type().unwrap().is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// What a reader may find at any moment, even just after a kill: every JSON file whole, every
/// record line but a JSONL file's last complete. A stray temporary is allowed only if `after_kill`
/// (the next writer removes them); otherwise none may be left.
pub fn assert_untorn(dir: &Path, after_kill: bool) {
    for file in files(dir) {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with(".tmp") || name.ends_with(".tmp") {
            assert!(after_kill, "stray temporary {} left behind", file.display());
            continue;
        }
        let text = || std::fs::read_to_string(&file).unwrap();
        if name.ends_with(".json") {
            if let Err(e) = serde_json::from_str::<serde_json::Value>(&text()) {
                panic!("{} is torn: {e}", file.display());
            }
        } else if name.ends_with(".jsonl") {
            let text = text();
            let complete = match text.rfind('\n') {
                Some(end) => &text[..end],
                None => "",
            };
            for line in complete.lines() {
                if let Err(e) = serde_json::from_str::<serde_json::Value>(line) {
                    panic!("{}: torn record {line:?}: {e}", file.display());
                }
            }
            if !after_kill {
                assert!(
                    text.is_empty() || text.ends_with('\n'),
                    "{} ends in a cut line",
                    file.display()
                );
            }
        }
    }
}

/// A JSON file's value, panicking with the path if it is missing or torn.
pub fn json(path: &Path) -> serde_json::Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{} missing: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} unparseable: {e}", path.display()))
}

/// A fixed-seed generator (splitmix64), so the kill schedule is the same on every machine.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// In [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
}
