//! One thread-count setting for every kernel. candle's dense matmuls read RAYON_NUM_THREADS and
//! its quantized ones use rayon's global pool, so both are set, once, before any work starts.

use std::sync::OnceLock;

static CONFIGURED: OnceLock<usize> = OnceLock::new();

/// Sets the kernels' thread count; 0 means all logical cores. Returns the count in effect.
/// Only the first call in a process takes effect, because rayon's global pool is built once.
pub fn set_threads(requested: usize) -> usize {
    *CONFIGURED.get_or_init(|| {
        let n = if requested == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            requested
        };
        // Edition 2021: set_var is safe here, and this runs before any worker thread exists.
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global();
        n
    })
}

pub fn threads() -> usize {
    CONFIGURED
        .get()
        .copied()
        .unwrap_or_else(rayon::current_num_threads)
}
