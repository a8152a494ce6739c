//! A run's directory: its manifest, and one append-only JSONL file of item records per
//! technique. Records are written and synced as soon as their batch is scored, so a run killed at
//! any moment loses at most the batch in flight, and `--resume` skips every recorded item.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
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
            RecordsError::Duplicate { line, key } => anyhow::anyhow!(
                "{}:{line}: item `{key}` is recorded twice (hint: the run directory was edited by hand; delete the duplicate line)",
                path.display()
            ),
            RecordsError::Unreadable { line, reason } => anyhow::anyhow!(
                "{}:{line}: unreadable record: {reason} (hint: only the last line may be incomplete after a kill)",
                path.display()
            ),
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
        let mut lines = Vec::new();
        for record in records {
            serde_json::to_writer(&mut lines, record)?;
            lines.push(b'\n');
        }
        self.file
            .write_all(&lines)
            .and_then(|_| self.file.sync_data())
            .with_context(|| format!("appending to {}", self.path.display()))
    }
}

pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_data()?;
    // Temporary files are created private; results are meant to be read and shared.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    }
    tmp.persist(path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
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
