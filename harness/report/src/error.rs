use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a results file effbench can read: {reason}")]
    Malformed { path: PathBuf, reason: String },
    #[error(
        "{path}: results schema version {found} is newer than this effbench reads ({supported}) (hint: upgrade effbench)"
    )]
    TooNew {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("{0} is not a run directory: it has no report.json or run.json (hint: pass a directory under results/)")]
    NotARun(PathBuf),
    #[error("price table: {0}")]
    Prices(String),
    #[error("runs cannot be compared: {0}")]
    Incomparable(String),
    #[error("plot: {0}")]
    Plot(String),
}

pub type Result<T> = std::result::Result<T, ReportError>;
