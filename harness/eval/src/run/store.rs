//! A run's directory: its manifest, and one append-only JSONL file of item records per
//! technique. Records are written and synced as soon as their batch is scored, so a run killed at
//! any moment loses at most the batch in flight, and `--resume` skips every recorded item.
//!
//! One process writes a run directory at a time: [`RunLock`] holds an OS advisory lock on
//! [`LOCK_FILE`] for the writer's whole life. Two writers would score and append every item
//! twice; the kernel drops the lock when its holder dies, so a killed run never blocks its own
//! `--resume`.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::{Context, Result};
use effbench_report::records::{parse_records, RecordsError};
use serde::{de::DeserializeOwned, Serialize};

/// A technique's name as a file-name part. Names like `student:/models/x.gguf` carry path
/// separators; those get a hash suffix so two techniques never share a file.
pub fn file_key(technique: &str) -> String {
    let safe: String = technique
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if safe == technique {
        return safe;
    }
    use sha2::{Digest, Sha256};
    let hash = hex::encode(Sha256::digest(technique.as_bytes()));
    let tail: String = safe
        .chars()
        .rev()
        .take(48)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("{tail}-{}", &hash[..8])
}

pub struct RunDir {
    pub path: PathBuf,
}

impl RunDir {
    pub fn new(path: PathBuf) -> Result<Self> {
        std::fs::create_dir_all(&path)
            .with_context(|| format!("creating results directory {}", path.display()))?;
        Ok(Self { path })
    }

    /// Writes a whole file so that readers see the old or the new content, never a mix.
    pub fn write_atomic(&self, name: &str, bytes: &[u8]) -> Result<()> {
        write_atomic(&self.path.join(name), bytes)
    }

    pub fn write_json<T: Serialize>(&self, name: &str, value: &T) -> Result<()> {
        self.write_atomic(name, &serde_json::to_vec_pretty(value)?)
    }

    pub fn read_json<T: DeserializeOwned>(&self, name: &str) -> Result<T> {
        let path = self.path.join(name);
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))
    }

    pub fn records_path(&self, technique: &str) -> PathBuf {
        self.path
            .join(format!("items-{}.jsonl", file_key(technique)))
    }

    /// Replaces a technique's whole records file, atomically: for records made elsewhere
    /// (shards joined, a routing row derived from its two rows) rather than scored one by one.
    pub fn write_records<R: Serialize>(
        &self,
        technique: &str,
        records: &BTreeMap<String, R>,
    ) -> Result<()> {
        write_atomic(
            &self.records_path(technique),
            &record_lines(records.values())?,
        )
    }

    /// Every complete record of a technique, keyed by item id. A line cut short by a kill is
    /// dropped and cut from the file, so the item is scored again, once.
    pub fn load_records<R: DeserializeOwned + Keyed>(
        &self,
        technique: &str,
    ) -> Result<BTreeMap<String, R>> {
        let path = self.records_path(technique);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let parsed = parse_records::<R>(&bytes).map_err(|e| match e {
            RecordsError::Duplicate { line, key } => crate::error::EvalError::msg(format!(
                "{}:{line}: item `{key}` is recorded twice (hint: the run directory was edited by hand; delete the duplicate line)",
                path.display()
            )),
            RecordsError::Unreadable { line, reason } => crate::error::EvalError::msg(format!(
                "{}:{line}: unreadable record: {reason} (hint: only the last line may be incomplete after a kill)",
                path.display()
            )),
        })?;
        if parsed.complete_len != bytes.len() {
            OpenOptions::new()
                .write(true)
                .open(&path)?
                .set_len(parsed.complete_len as u64)
                .with_context(|| format!("trimming a partial record from {}", path.display()))?;
        }
        Ok(parsed.records)
    }

    pub fn appender(&self, technique: &str) -> Result<RecordWriter> {
        let path = self.records_path(technique);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        Ok(RecordWriter { file, path })
    }
}

pub use effbench_report::records::Keyed;

/// Records as a records file holds them: one JSON object per line.
pub fn record_lines<'a, R: Serialize + 'a>(
    records: impl IntoIterator<Item = &'a R>,
) -> Result<Vec<u8>> {
    let mut lines = Vec::new();
    for record in records {
        serde_json::to_writer(&mut lines, record)?;
        lines.push(b'\n');
    }
    Ok(lines)
}

pub struct RecordWriter {
    file: File,
    path: PathBuf,
}

impl RecordWriter {
    /// One `write` of the whole line, then fsync: the record is on disk before the next item
    /// starts, and a kill can only leave a partial last line, which loading drops.
    pub fn append<R: Serialize>(&mut self, record: &R) -> Result<()> {
        self.append_all(std::slice::from_ref(record))
    }

    /// Several records in one `write`, then fsync: a kill leaves all of them, none, or a cut
    /// tail that loading drops (a cut can only end the file, so the records before it stand).
    pub fn append_all<R: Serialize>(&mut self, records: &[R]) -> Result<()> {
        let lines = record_lines(records)?;
        let before = self.file.metadata().map(|m| m.len());
        let written = self
            .file
            .write_all(&lines)
            .and_then(|_| self.file.sync_data());
        if let Err(e) = written {
            // A full disk can take part of the batch: cut it off, so the file holds only whole
            // lines even for a reader that never resumes. Shrinking needs no free space.
            if let Ok(len) = before {
                let _ = self.file.set_len(len);
            }
            return Err(io_error(
                e,
                &format!("appending to {}", self.path.display()),
            ));
        }
        Ok(())
    }
}

/// What to do about a full disk: the run resumes where the last synced record left it.
pub const DISK_FULL_HINT: &str = "free space there, then repeat the command with {resume}";

/// An I/O error with its path; a full disk gets a hint, since it is the one cause the user fixes
/// outside effbench and then resumes from.
fn io_error(e: std::io::Error, what: &str) -> crate::error::EvalError {
    if e.kind() == std::io::ErrorKind::StorageFull {
        crate::hint::hinted(format!("{what}: {e}"), DISK_FULL_HINT)
    } else {
        crate::error::EvalError::from(e).within(what)
    }
}

/// `op`'s I/O error, named by `what` (a path) and hinted as [`io_error`] does.
pub fn with_path<T>(op: std::io::Result<T>, what: impl FnOnce() -> String) -> Result<T> {
    op.map_err(|e| io_error(e, &what()))
}

/// [`effbench_report::write_atomic`], with the run's wording for a full disk.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    effbench_report::write_atomic(path, bytes).map_err(|e| match e {
        effbench_report::ReportError::Io { path, source } => {
            io_error(source, &format!("writing {}", path.display()))
        }
        other => other.into(),
    })
}

/// The lock file in a run directory. It is never deleted: a writer that unlinked it could race
/// one that had just opened it, and two processes would hold "the" lock on two files.
pub const LOCK_FILE: &str = "effbench.lock";

/// Who holds (or last held) a run directory, as written in its lock file.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct LockHolder {
    pub pid: u32,
    pub host: String,
    pub since: String,
}

impl std::fmt::Display for LockHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "effbench pid {} on {} (since {})",
            self.pid, self.host, self.since
        )
    }
}

/// What a lock attempt found when the directory was taken.
#[derive(Debug)]
pub struct Held {
    /// `None` when the holder has not written its name yet or the file was edited.
    pub holder: Option<LockHolder>,
}

impl std::fmt::Display for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.holder {
            Some(h) => h.fmt(f),
            None => f.write_str("another process (pid not recorded)"),
        }
    }
}

/// An exclusive advisory lock (`flock`) on a run directory, released when dropped or when the
/// process dies, however it dies.
#[derive(Debug)]
pub struct RunLock {
    file: File,
}

impl RunLock {
    /// Takes the lock on `dir` (which must exist), or reports who holds it. A lock file left by
    /// a dead writer is taken over; the note says whose it was, since that run was cut short.
    pub fn acquire(dir: &Path) -> Result<std::result::Result<RunLock, Held>> {
        let path = dir.join(LOCK_FILE);
        let mut file = with_path(
            OpenOptions::new()
                .create(true)
                .truncate(false)
                .read(true)
                .write(true)
                .open(&path),
            || format!("opening {}", path.display()),
        )?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Ok(Err(Held {
                    holder: read_holder(&mut file, 20),
                }))
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(io_error(e, &format!("locking {}", path.display())))
            }
        }
        if let Some(dead) = read_holder(&mut file, 1) {
            eprintln!(
                "note: {} was left locked by {dead}, which is gone; taking it over",
                dir.display()
            );
        }
        let me = LockHolder {
            pid: std::process::id(),
            host: host_name(),
            since: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        };
        let mut text = serde_json::to_vec(&me)?;
        text.push(b'\n');
        // Written in place (not renamed over): the lock belongs to this inode.
        with_path(
            file.set_len(0)
                .and_then(|_| file.seek(SeekFrom::Start(0)))
                .and_then(|_| file.write_all(&text)),
            || format!("writing {}", path.display()),
        )?;
        remove_stray_temporaries(dir);
        Ok(Ok(RunLock { file }))
    }

    /// Takes the lock on `dir` if it has a lock file, or reports who holds it; a directory
    /// without one was never locked (or predates locking), so there is nothing to take.
    pub fn acquire_existing(dir: &Path) -> Result<std::result::Result<Option<RunLock>, Held>> {
        if !dir.join(LOCK_FILE).exists() {
            return Ok(Ok(None));
        }
        Ok(Self::acquire(dir)?.map(Some))
    }
}

impl Drop for RunLock {
    /// An empty lock file marks a clean finish, so the next writer has no dead holder to report.
    fn drop(&mut self) {
        let _ = self.file.set_len(0);
    }
}

/// The holder named in a lock file, read up to `tries` times 10 ms apart: a live holder writes
/// its name just after locking, so a reader refused the lock may find the file still empty.
fn read_holder(file: &mut File, tries: usize) -> Option<LockHolder> {
    for attempt in 0..tries {
        if attempt > 0 {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let mut text = String::new();
        if file.seek(SeekFrom::Start(0)).is_ok() && file.read_to_string(&mut text).is_ok() {
            if let Ok(h) = serde_json::from_str(text.trim()) {
                return Some(h);
            }
        }
    }
    None
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "an unknown host".into())
}

/// Temporary files a killed writer left behind: [`write_atomic`]'s `.tmpXXXXXX` and the report
/// crate's `NAME.tmp`. Under the lock nobody else is writing them, so they are garbage.
fn remove_stray_temporaries(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        if is_file && is_stray_temporary(&entry.file_name()) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Whether a run directory entry is a temporary of an atomic write (see
/// [`remove_stray_temporaries`]).
pub fn is_stray_temporary(name: &std::ffi::OsStr) -> bool {
    let name = name.to_string_lossy();
    name.starts_with(".tmp") || name.ends_with(".tmp")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Rec {
        item: String,
        value: f64,
    }

    impl Keyed for Rec {
        fn key(&self) -> String {
            self.item.clone()
        }
    }

    #[test]
    fn records_survive_a_cut_last_line_and_floats_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path().join("r")).unwrap();
        let mut w = run.appender("t").unwrap();
        let v = -1.234_567_890_123_456_7e-3;
        w.append(&Rec {
            item: "a".into(),
            value: v,
        })
        .unwrap();
        w.append(&Rec {
            item: "b".into(),
            value: 2.0,
        })
        .unwrap();
        drop(w);
        // A kill in the middle of a write leaves a partial line.
        let mut f = OpenOptions::new()
            .append(true)
            .open(run.records_path("t"))
            .unwrap();
        f.write_all(br#"{"item":"c","val"#).unwrap();
        let recs: BTreeMap<String, Rec> = run.load_records("t").unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(recs["a"].value.to_bits(), v.to_bits());
        // The partial line is gone, so appending continues cleanly.
        let mut w = run.appender("t").unwrap();
        w.append(&Rec {
            item: "c".into(),
            value: 3.0,
        })
        .unwrap();
        let recs: BTreeMap<String, Rec> = run.load_records("t").unwrap();
        assert_eq!(recs.len(), 3);
    }

    #[test]
    fn the_lock_has_one_holder_and_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let first = RunLock::acquire(dir.path()).unwrap().unwrap();
        // flock conflicts between two opens even within one process, as between two runs.
        let held = RunLock::acquire(dir.path()).unwrap().unwrap_err();
        let holder = held
            .holder
            .as_ref()
            .expect("the holder's name is in the file");
        assert_eq!(holder.pid, std::process::id());
        assert!(held
            .to_string()
            .contains(&format!("pid {}", std::process::id())));
        drop(first);
        // A clean release empties the file: the next holder has no dead run to report.
        assert_eq!(
            std::fs::read_to_string(dir.path().join(LOCK_FILE)).unwrap(),
            ""
        );
        let again = RunLock::acquire(dir.path()).unwrap();
        assert!(again.is_ok());
    }

    #[test]
    fn stray_temporaries_go_when_the_lock_is_taken() {
        let dir = tempfile::tempdir().unwrap();
        for name in [".tmpAbC123", "report.tmp", "run.json"] {
            std::fs::write(dir.path().join(name), "x").unwrap();
        }
        let _lock = RunLock::acquire(dir.path()).unwrap().unwrap();
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        left.sort();
        assert_eq!(left, [LOCK_FILE, "run.json"]);
    }

    #[test]
    fn a_duplicate_record_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path().to_path_buf()).unwrap();
        let mut w = run.appender("t").unwrap();
        w.append(&Rec {
            item: "a".into(),
            value: 1.0,
        })
        .unwrap();
        w.append(&Rec {
            item: "a".into(),
            value: 1.0,
        })
        .unwrap();
        let err = run.load_records::<Rec>("t").unwrap_err().to_string();
        assert!(err.contains("recorded twice"), "{err}");
    }
}
