//! effbench-kvcache: what paging the KV cache buys. A paged cache with prefix sharing, a
//! continuous-batching scheduler that runs any [`effbench_core::KvCache`] under a memory budget,
//! seeded request traces, and the serving metrics (waste, concurrency, throughput, latency).

use std::path::PathBuf;

pub mod f16;
pub mod metrics;
pub mod paged;
pub mod scheduler;
pub mod technique;
pub mod trace;

pub use metrics::{summarize, Percentiles, Summary};
pub use paged::{PagedKvCache, DEFAULT_BLOCK_SIZE};
pub use scheduler::{
    serve, serve_watched, Outcome, Request, SchedulerConfig, ServeRun, SharedPrefix, Watcher,
    WatcherError,
};
pub use technique::{KvDtype, KvTechnique};
pub use trace::{TraceEntry, TraceSpec};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Core(#[from] effbench_core::CoreError),
    #[error("cannot read or write {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: {detail} (hint: {hint})")]
    Trace {
        path: PathBuf,
        line: usize,
        detail: String,
        hint: &'static str,
    },
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Watcher(WatcherError),
}
