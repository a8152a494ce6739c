//! Corrupted copies of a real GGUF header, each loaded the way `effbench generate` loads a model
//! (`GgufSource::open`, and the tokenizer from the file's metadata): none may panic, abort, take
//! a second, or ask the allocator for a single block larger than the file plus a small constant.
//!
//! This file is its own test binary because it installs a global allocator that records the
//! largest single request.

use std::alloc::{GlobalAlloc, Layout, System};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use candle_core::Device;
use effbench_core::source::GgufSource;

struct Counting;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to `System`; the counter only observes sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The counter is process-wide; tests that read it must not overlap.
static SERIAL: Mutex<()> = Mutex::new(());

/// What a load may take beyond the file's length. A clean load of the SmolLM2 header prefix
/// needs nothing beyond it (its largest block, about 2.3 MB for the tokenizer's vocabulary, is
/// about half the prefix); small truncated files measured up to 7 KiB over, the 8 KiB read
/// buffers.
const SLACK: usize = 64 << 10;

const PREFIX: usize = 4 << 20;
const CASES: usize = 300;

/// The outcome of loading `path` both ways: error lines (empty when both loaded), the largest
/// single allocation, and the time taken. Panics are caught and reported as errors of the test.
fn load(path: &Path) -> (Vec<String>, usize, Duration) {
    LARGEST.store(0, Ordering::Relaxed);
    let start = Instant::now();
    let source = catch_unwind(AssertUnwindSafe(|| {
        GgufSource::open(path, &Device::Cpu).map(|_| ())
    }));
    let tokenizer = catch_unwind(AssertUnwindSafe(|| {
        effbench_tokenizer::from_gguf_file(path).map(|_| ())
    }));
    let elapsed = start.elapsed();
    let largest = LARGEST.load(Ordering::Relaxed);
    let mut errors = Vec::new();
    match source {
        Err(_) => panic!("GgufSource::open panicked on {}", path.display()),
        Ok(Err(e)) => errors.push(e.to_string()),
        Ok(Ok(())) => {}
    }
    match tokenizer {
        Err(_) => panic!("from_gguf_file panicked on {}", path.display()),
        Ok(Err(e)) => errors.push(e.to_string()),
        Ok(Ok(())) => {}
    }
    (errors, largest, elapsed)
}

/// splitmix64: a fixed seed gives the same mutations on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

/// Byte offsets of a valid GGUF (v2/v3) header's fields, by kind: the counts and lengths a
/// reader sizes things from, the type ids, the string lengths inside arrays. Also the header's
/// end. Walks a file known to be valid, so it trusts what it reads.
struct Fields {
    counts: Vec<usize>,
    types: Vec<usize>,
    array_strings: Vec<usize>,
    end: usize,
}

fn fields(b: &[u8]) -> Fields {
    let u32_at = |p: usize| u32::from_le_bytes(b[p..p + 4].try_into().unwrap());
    let u64_at = |p: usize| u64::from_le_bytes(b[p..p + 8].try_into().unwrap()) as usize;
    let mut f = Fields {
        counts: vec![8, 16],
        types: Vec::new(),
        array_strings: Vec::new(),
        end: 0,
    };
    let fixed = |t: u32| match t {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        10..=12 => 8,
        _ => 0,
    };
    let mut p = 24;
    for _ in 0..u64_at(16) {
        f.counts.push(p);
        p += 8 + u64_at(p);
        f.types.push(p);
        let t = u32_at(p);
        p += 4;
        match t {
            8 => {
                f.counts.push(p);
                p += 8 + u64_at(p);
            }
            9 => {
                f.types.push(p);
                let et = u32_at(p);
                f.counts.push(p + 4);
                let n = u64_at(p + 4);
                p += 12;
                if et == 8 {
                    for _ in 0..n {
                        f.array_strings.push(p);
                        p += 8 + u64_at(p);
                    }
                } else {
                    p += n * fixed(et);
                }
            }
            t => p += fixed(t),
        }
    }
    for _ in 0..u64_at(8) {
        f.counts.push(p);
        p += 8 + u64_at(p);
        f.counts.push(p);
        let dims = u32_at(p) as usize;
        for d in 0..dims {
            f.counts.push(p + 4 + 8 * d);
        }
        p += 4 + 8 * dims;
        f.types.push(p);
        f.counts.push(p + 4);
        p += 12;
    }
    f.end = p;
    f
}

/// One to three random corruptions of `clean`, aimed mostly at the fields readers trust.
fn mutate(clean: &[u8], f: &Fields, rng: &mut Rng) -> (Vec<u8>, Vec<String>) {
    let mut b = clean.to_vec();
    let mut did = Vec::new();
    for _ in 0..1 + rng.below(3) {
        let field = match rng.below(4) {
            0 => rng.pick(&f.counts),
            1 => rng.pick(&f.types),
            2 => rng.pick(&f.array_strings),
            _ => rng.below(f.end.min(b.len()).max(1)),
        };
        let len = b.len();
        match rng.below(5) {
            0 if field < len => {
                let at = (field + rng.below(8)).min(len - 1);
                let bit = rng.below(8);
                b[at] ^= 1 << bit;
                did.push(format!("flip bit {bit} of byte {at}"));
            }
            1 if field + 4 <= len => {
                let random = rng.next() as u32;
                let v = rng.pick(&[u32::MAX, 1 << 31, 0, 5, 13, 31, random]);
                b[field..field + 4].copy_from_slice(&v.to_le_bytes());
                did.push(format!("u32 {v} at {field}"));
            }
            2 if field + 8 <= len => {
                let random = rng.next();
                let v = rng.pick(&[
                    u64::MAX,
                    1 << 62,
                    1 << 32,
                    len as u64,
                    (len - field) as u64,
                    0,
                    random,
                ]);
                b[field..field + 8].copy_from_slice(&v.to_le_bytes());
                did.push(format!("u64 {v} at {field}"));
            }
            3 if field < len => {
                let n = (1 + rng.below(256)).min(len - field);
                b[field..field + n].fill(0);
                did.push(format!("zero {n} bytes at {field}"));
            }
            _ => {
                let cut = if rng.below(2) == 0 {
                    rng.below(len.min(f.end))
                } else {
                    field.min(len)
                };
                b.truncate(cut);
                did.push(format!("truncate to {cut}"));
            }
        }
    }
    (b, did)
}

#[test]
fn corrupted_headers_of_a_real_gguf_fail_cleanly_and_within_bounds() {
    let Some(model) = effbench_assets::cached_path_or_skip("smollm2-135m-instruct") else {
        return;
    };
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut clean = vec![0u8; PREFIX];
    let mut file = std::fs::File::open(&model).unwrap();
    std::io::Read::read_exact(&mut file, &mut clean).unwrap();
    let f = fields(&clean);
    assert!(f.end < PREFIX, "the header fits in the prefix");
    assert!(f.array_strings.len() > 40_000, "tokens and merges found");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    std::fs::write(&path, &clean).unwrap();
    let (errors, largest, elapsed) = load(&path);
    eprintln!("clean prefix: {errors:?}, largest block {largest} bytes, {elapsed:?}");
    // The prefix holds the whole header but not the tensor data; the tokenizer needs only the
    // header and loads.
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("truncated"), "{errors:?}");
    assert!(
        largest <= PREFIX + SLACK,
        "clean load took a block of {largest}"
    );

    let mut rng = Rng(0x5EED_0023);
    let (mut failed, mut worst, mut slowest) = (0, 0, Duration::ZERO);
    for case in 0..CASES {
        let (bytes, did) = mutate(&clean, &f, &mut rng);
        std::fs::write(&path, &bytes).unwrap();
        let (errors, largest, mut elapsed) = load(&path);
        if elapsed >= Duration::from_secs(1) {
            // On a shared 2-core machine a compile can stall one load; a load that is slow by
            // itself is slow twice.
            elapsed = load(&path).2;
        }
        for e in &errors {
            assert!(
                !e.contains('\n'),
                "case {case} ({did:?}): multi-line error: {e}"
            );
        }
        assert!(
            largest <= bytes.len() + SLACK,
            "case {case} ({did:?}): a block of {largest} bytes for a {}-byte file; errors {errors:?}",
            bytes.len()
        );
        assert!(
            elapsed < Duration::from_secs(1),
            "case {case} ({did:?}): took {elapsed:?}"
        );
        failed += usize::from(errors.len() == 2);
        worst = worst.max(largest.saturating_sub(bytes.len()));
        slowest = slowest.max(elapsed);
    }
    eprintln!(
        "{CASES} cases: {failed} refused by both loaders; largest block beyond the file {worst} bytes; slowest {slowest:?}"
    );
}

/// The case that aborted the process before: the first key claims 2^62 bytes.
#[test]
fn a_first_key_of_2_pow_62_bytes_is_a_one_line_error() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    effbench_core::testing::write_tiny_gguf(&path, None);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[24..32].copy_from_slice(&(1u64 << 62).to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let (errors, largest, _) = load(&path);
    assert_eq!(errors.len(), 2, "{errors:?}");
    for e in &errors {
        assert!(!e.contains('\n'), "{e}");
        assert!(
            e.contains("metadata key 0 at byte 24 claims 4611686018427387904 bytes but only"),
            "{e}"
        );
    }
    assert!(largest <= bytes.len() + SLACK, "{largest}");
}
