//! effbench-kvcache: what paging the KV cache buys. A paged cache with prefix sharing, a
//! continuous-batching scheduler that runs any [`effbench_core::KvCache`] under a memory budget,
//! seeded request traces, and the serving metrics (waste, concurrency, throughput, latency).

pub mod paged;

pub use paged::{PagedKvCache, DEFAULT_BLOCK_SIZE};
