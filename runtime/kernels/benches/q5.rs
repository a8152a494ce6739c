//! Q5_0 and Q5_1 matmul on Qwen2.5-Coder-0.5B's shapes (its Q4_K_M file stores most matrices
//! as Q5_0): this crate's kernels against candle's `QMatMul` on the same bytes. Throughput is
//! the weight bytes read per call, so for m = 1 (decode) criterion's GB/s compares with the
//! machine's bandwidth; for m = 64 it is the same bytes reused 64 times, a relative figure.
//!
//! Threads come from rayon's global pool for both sides: set RAYON_NUM_THREADS.

use std::hint::black_box;
use std::time::Duration;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use effbench_kernels::{matmul_with, Isa, Scratch, WeightFormat};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// (n, k) of Qwen2.5-0.5B: attention q/o, MLP gate/up, attention k.
const SHAPES: [(usize, usize, &str); 3] = [
    (896, 896, "attn_q"),
    (4864, 896, "gate_up"),
    (128, 896, "attn_k"),
];

fn bench(c: &mut Criterion) {
    let dev = Device::Cpu;
    let mut rng = StdRng::seed_from_u64(0);
    let threads = rayon::current_num_threads();
    let best = Isa::best();
    let formats = [
        (WeightFormat::Q5_0, GgmlDType::Q5_0, "q5_0"),
        (WeightFormat::Q5_1, GgmlDType::Q5_1, "q5_1"),
    ];
    for (format, dtype, fname) in formats {
        for (n, k, name) in SHAPES {
            let wf: Vec<f32> = (0..n * k).map(|_| rng.random_range(-0.1f32..0.1)).collect();
            let qt =
                QTensor::quantize(&Tensor::from_vec(wf, (n, k), &dev).unwrap(), dtype).unwrap();
            let bytes = qt.data().unwrap().into_owned();
            let qmm = QMatMul::from_qtensor(qt).unwrap();
            for m in [1usize, 64] {
                let x: Vec<f32> = (0..m * k).map(|_| rng.random_range(-1f32..1.0)).collect();
                let xt = Tensor::from_vec(x.clone(), (m, k), &dev).unwrap();
                let mut out = vec![0f32; m * n];
                let mut scratch = Scratch::new();

                let mut g = c.benchmark_group(format!("{fname}/{name}_n{n}_k{k}/m{m}/t{threads}"));
                g.throughput(Throughput::Bytes(bytes.len() as u64));
                g.sample_size(10);
                g.warm_up_time(Duration::from_millis(500));
                g.measurement_time(Duration::from_secs(2));
                g.bench_function(BenchmarkId::new("ours", format!("{best:?}")), |b| {
                    b.iter(|| {
                        matmul_with(best, format, &bytes, n, k, &x, m, &mut out, &mut scratch)
                            .unwrap();
                        black_box(&out);
                    })
                });
                g.bench_function("candle", |b| {
                    b.iter(|| black_box(qmm.forward(&xt).unwrap()))
                });
                g.finish();
            }
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
