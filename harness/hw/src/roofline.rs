//! The machine's two roofs, measured rather than looked up: memory bandwidth (a STREAM-style
//! triad, and a read-only sweep) and f32 GEMM throughput. Decoding one token reads every weight
//! once, so `bandwidth / bytes read per token` is the fastest decode the machine allows; prefill
//! does 2 flops per weight per token, so `GEMM peak / (2 * weights)` bounds it from above.
//!
//! Specs sheets would be wrong here: a VM gets a share of the socket's bandwidth and its cores may
//! be throttled, so only a measurement on this machine says what an engine could reach on it.

use std::time::Instant;

use serde::{Deserialize, Serialize};

/// One thread count's measured roofs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Roofline {
    pub threads: usize,
    /// STREAM triad `a[i] = b[i] + s * c[i]` over f32 arrays far larger than the caches, counting
    /// STREAM's 3 x 4 bytes per element (write-allocate traffic not counted, as STREAM does).
    pub triad_gb_per_s: f64,
    /// A sum over one large array: reads only, the access pattern of a decode step's weights.
    pub read_gb_per_s: f64,
    /// f32 GEMM (`gemm`, the crate candle's CPU matmul runs on) on square matrices.
    pub gemm_f32_gflop_per_s: f64,
    /// Bytes per array of the bandwidth tests, and the GEMM's side.
    pub array_bytes: usize,
    pub gemm_size: usize,
    /// Repetitions; each figure is their median.
    pub repetitions: usize,
}

impl Roofline {
    /// The decode ceiling for a model that reads `bytes_per_token` per generated token, by the
    /// triad bandwidth (the definition of the roofline).
    pub fn decode_tok_per_s(&self, bytes_per_token: f64) -> f64 {
        self.triad_gb_per_s * 1e9 / bytes_per_token
    }
}

/// Settings of a calibration; the defaults take about 10 s on 2 threads.
#[derive(Clone, Copy, Debug)]
pub struct CalibrateOptions {
    /// Each bandwidth array; several times the largest last-level cache.
    pub array_bytes: usize,
    pub gemm_size: usize,
    pub repetitions: usize,
}

impl Default for CalibrateOptions {
    fn default() -> Self {
        Self {
            array_bytes: 256 << 20,
            gemm_size: 1024,
            repetitions: 5,
        }
    }
}

/// Measures the roofs with `threads` threads.
pub fn calibrate(threads: usize, options: CalibrateOptions) -> Roofline {
    let threads = threads.max(1);
    let reps = options.repetitions.max(1);
    let n = (options.array_bytes / 4).max(threads * 16);
    let mut a = vec![0f32; n];
    // Distinct values so no sweep can be folded away, and pages touched before timing.
    let b: Vec<f32> = (0..n).map(|i| (i % 1024) as f32).collect();
    let c: Vec<f32> = (0..n).map(|i| (i % 7) as f32 * 0.5).collect();
    let triad = median(
        (0..reps + 1)
            .map(|_| {
                let seconds = time(|| triad_parallel(&mut a, &b, &c, 3.0, threads));
                (3 * 4 * n) as f64 / seconds / 1e9
            })
            .skip(1)
            .collect(),
    );
    let mut checksum = 0f64;
    let read = median(
        (0..reps + 1)
            .map(|_| {
                let mut sum = 0f64;
                let seconds = time(|| sum = sum_parallel(&b, threads));
                checksum += sum;
                (4 * n) as f64 / seconds / 1e9
            })
            .skip(1)
            .collect(),
    );
    std::hint::black_box((checksum, &a));
    drop((a, b, c));
    let gemm = gemm_gflops(options.gemm_size, threads, reps);
    Roofline {
        threads,
        triad_gb_per_s: triad,
        read_gb_per_s: read,
        gemm_f32_gflop_per_s: gemm,
        array_bytes: 4 * n,
        gemm_size: options.gemm_size,
        repetitions: reps,
    }
}

fn time(f: impl FnOnce()) -> f64 {
    let start = Instant::now();
    f();
    start.elapsed().as_secs_f64()
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    effbench_stats::median_sorted(&xs)
}

fn triad_parallel(a: &mut [f32], b: &[f32], c: &[f32], s: f32, threads: usize) {
    let chunk = a.len().div_ceil(threads);
    std::thread::scope(|scope| {
        for ((a, b), c) in a
            .chunks_mut(chunk)
            .zip(b.chunks(chunk))
            .zip(c.chunks(chunk))
        {
            scope.spawn(move || {
                for ((a, &b), &c) in a.iter_mut().zip(b).zip(c) {
                    *a = b + s * c;
                }
            });
        }
    });
}

fn sum_parallel(xs: &[f32], threads: usize) -> f64 {
    let chunk = xs.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = xs
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    // Eight independent accumulators: one would chain every add through one
                    // register and measure add latency, not memory.
                    let mut acc = [0f32; 8];
                    let mut lanes = part.chunks_exact(8);
                    for block in &mut lanes {
                        for (a, x) in acc.iter_mut().zip(block) {
                            *a += x;
                        }
                    }
                    let tail: f32 = lanes.remainder().iter().sum();
                    acc.iter().map(|&a| a as f64).sum::<f64>() + tail as f64
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0.0)).sum()
    })
}

fn gemm_gflops(size: usize, threads: usize, reps: usize) -> f64 {
    let n = size.max(16);
    let a: Vec<f32> = (0..n * n).map(|i| ((i % 13) as f32 - 6.0) * 0.01).collect();
    let b: Vec<f32> = (0..n * n).map(|i| ((i % 11) as f32 - 5.0) * 0.01).collect();
    let mut c = vec![0f32; n * n];
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build();
    let run = |c: &mut [f32]| {
        let parallelism = if threads == 1 {
            gemm::Parallelism::None
        } else {
            gemm::Parallelism::Rayon(threads)
        };
        // SAFETY: row-major n x n operands, each its own allocation of n * n elements.
        unsafe {
            gemm::gemm(
                n,
                n,
                n,
                c.as_mut_ptr(),
                1,
                n as isize,
                false,
                a.as_ptr(),
                1,
                n as isize,
                b.as_ptr(),
                1,
                n as isize,
                0.0,
                1.0,
                false,
                false,
                false,
                parallelism,
            )
        }
    };
    let samples = (0..reps + 1)
        .map(|_| {
            let seconds = match &pool {
                Ok(pool) => pool.install(|| time(|| run(&mut c))),
                Err(_) => time(|| run(&mut c)),
            };
            2.0 * (n * n * n) as f64 / seconds / 1e9
        })
        .skip(1)
        .collect();
    std::hint::black_box(&c);
    median(samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_and_triad_compute_what_they_time() {
        let xs: Vec<f32> = (0..1003).map(|i| i as f32).collect();
        assert_eq!(sum_parallel(&xs, 3), (1002 * 1003 / 2) as f64);
        let mut a = vec![0f32; 1003];
        let c = vec![2f32; 1003];
        triad_parallel(&mut a, &xs, &c, 0.5, 2);
        assert!(a.iter().enumerate().all(|(i, &v)| v == i as f32 + 1.0));
    }

    #[test]
    fn a_small_calibration_gives_positive_finite_roofs() {
        let r = calibrate(
            2,
            CalibrateOptions {
                array_bytes: 8 << 20,
                gemm_size: 128,
                repetitions: 2,
            },
        );
        for v in [r.triad_gb_per_s, r.read_gb_per_s, r.gemm_f32_gflop_per_s] {
            assert!(v.is_finite() && v > 0.0, "{r:?}");
        }
        // The ceiling it implies scales inversely with bytes per token.
        let (small, big) = (r.decode_tok_per_s(1e6), r.decode_tok_per_s(2e6));
        assert!((small / big - 2.0).abs() < 1e-9);
    }
}
