//! The engine's allocation pattern, and the allocator setting it needs.
//!
//! Every op of a forward pass allocates its output, and a prefill's activations are megabytes
//! each (Qwen2.5-1.5B's MLP at 512 tokens: 18 MiB). glibc serves blocks that large with `mmap`
//! and gives them back with `munmap` (or trims them off the heap top) as soon as they are freed,
//! so the next pass faults every page in again and the kernel zeroes each one, on whichever
//! thread touches it first. A profile of Qwen2.5-1.5B pp512 put about 5% of the time in those
//! faults and the pass 19-23% slower than with the memory kept. llama.cpp sidesteps the same
//! cost by planning one compute buffer per graph and reusing it.

/// Largest block glibc may serve from `mmap` on 64-bit (`DEFAULT_MMAP_THRESHOLD_MAX`); larger
/// values are refused by `mallopt`. Activations stay under it and come from the heap; weight
/// tensors above it are still mapped and returned to the system when a model is dropped.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 32 << 20;

/// Freed memory at the heap top is returned to the system only beyond this much, so one pass's
/// activations are still mapped when the next pass needs them.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD: libc::c_int = 1 << 30;

/// Each heap growth asks for this much beyond the request, so a pass grows the heap a few times
/// instead of once per activation. Untouched pages cost no resident memory.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TOP_PAD: libc::c_int = 256 << 20;

/// Makes the C allocator keep freed activation buffers for reuse instead of returning them to
/// the system. Call once at process start, before any worker thread exists. Returns whether the
/// setting took effect (only on glibc; other allocators are left as they are).
pub fn retain_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only stores these tunables; it is safe to call at any time, and
        // calling it before other threads start avoids racing their arenas' first use.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
                && libc::mallopt(libc::M_TOP_PAD, TOP_PAD) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}
