//! Finding real model files for integration tests, which skip (or fail, in CI) when one is absent.

use std::path::PathBuf;

/// effbench's asset cache: `$EFFBENCH_CACHE`, else `<user cache dir>/effbench`.
pub fn cache_dir() -> PathBuf {
    match std::env::var_os("EFFBENCH_CACHE") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => dirs::cache_dir()
            .unwrap_or_else(|| PathBuf::from(".cache"))
            .join("effbench"),
    }
}

/// `<cache>/<asset>/<file>` when it exists. When it does not, panics if
/// `EFFBENCH_REQUIRE_ASSETS=1` (so CI cannot pass by skipping) and otherwise prints why the test
/// is skipped and returns `None`.
pub fn asset(asset: &str, file: &str) -> Option<PathBuf> {
    let path = cache_dir().join(asset).join(file);
    if path.is_file() {
        return Some(path);
    }
    if std::env::var("EFFBENCH_REQUIRE_ASSETS").as_deref() == Ok("1") {
        panic!(
            "test asset missing: {} (hint: run scripts/fetch-test-assets.sh, or point EFFBENCH_CACHE at a cache that has it)",
            path.display()
        );
    }
    eprintln!(
        "skipping: test asset {} not found (run scripts/fetch-test-assets.sh to fetch it)",
        path.display()
    );
    None
}
