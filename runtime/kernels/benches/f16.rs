//! f16-weight matmul with f32 activations: this crate's kernels against candle's f16 matmul
//! as effbench used it (activations rounded to f16, `matmul` against the transposed weight,
//! result widened to f32), on SmolLM2-135M's and Qwen2.5-1.5B's shapes.
//!
//! Throughput is the weight bytes per call, so for m = 1 (decode) criterion's GB/s compares
//! directly with memory bandwidth; for m = 128 the same bytes serve 128 rows, a relative figure.
//! Threads come from rayon's global pool for both sides: set RAYON_NUM_THREADS. Our kernels run
//! inside the pool (`install`), as the model's forward pass calls them.

use std::hint::black_box;

use candle_core::{DType, Device, Tensor};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use effbench_kernels::{matmul_f16_with, F16Path};
use half::f16;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// (n, k, name): SmolLM2's MLP up, MLP down and tied head; Qwen2.5-1.5B's MLP up and down.
const SHAPES: [(usize, usize, &str); 5] = [
    (1536, 576, "smollm2_gate_up"),
    (576, 1536, "smollm2_down"),
    (49152, 576, "smollm2_head"),
    (8960, 1536, "qwen1.5b_gate_up"),
    (1536, 8960, "qwen1.5b_down"),
];

fn bench(c: &mut Criterion) {
    let dev = Device::Cpu;
    let mut rng = StdRng::seed_from_u64(0);
    let threads = rayon::current_num_threads();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    for (n, k, name) in SHAPES {
        let w: Vec<f16> = (0..n * k)
            .map(|_| f16::from_f32(rng.random_range(-0.1f32..0.1)))
            .collect();
        let wt = Tensor::from_vec(w.clone(), (n, k), &dev).unwrap();
        for m in [1usize, 128] {
            let x: Vec<f32> = (0..m * k).map(|_| rng.random_range(-1f32..1.0)).collect();
            let xt = Tensor::from_vec(x.clone(), (m, k), &dev).unwrap();
            let mut out = vec![0f32; m * n];

            let mut g = c.benchmark_group(format!("f16/{name}_n{n}_k{k}/m{m}/t{threads}"));
            g.throughput(Throughput::Bytes((n * k * 2) as u64));
            g.sample_size(if n * k * m > 1 << 28 { 10 } else { 30 });
            let paths: &[F16Path] = if m == 1 {
                &[F16Path::Gemv, F16Path::Gemm]
            } else {
                &[F16Path::Gemm]
            };
            for &path in paths {
                g.bench_function(BenchmarkId::new("ours", format!("{path:?}")), |b| {
                    pool.install(|| {
                        b.iter(|| {
                            matmul_f16_with(path, &w, n, k, &x, m, &mut out).unwrap();
                            black_box(&out);
                        })
                    })
                });
            }
            g.bench_function("candle", |b| {
                b.iter(|| {
                    let y = xt
                        .to_dtype(DType::F16)
                        .unwrap()
                        .matmul(&wt.t().unwrap())
                        .unwrap()
                        .to_dtype(DType::F32)
                        .unwrap();
                    black_box(y)
                })
            });
            g.finish();
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
