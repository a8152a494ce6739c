//! Q4_K and Q6_K matmul on Qwen2.5-Coder-1.5B's shapes: this crate's kernels against candle's
//! `QMatMul` on the same bytes. Throughput is the weight bytes read per call, so for m = 1
//! (decode, bandwidth bound) criterion's GB/s compares directly with the machine's memory
//! bandwidth; for m = 64 it is the same bytes reused 64 times, i.e. only a relative figure.
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

/// (n, k) of Qwen2.5-1.5B: attention q/o, MLP gate/up, MLP down, k/v, and the output head
/// (Q6_K in the checkpoint; the only shape here that does not fit the last-level cache, so the
/// only m = 1 figure that measures memory rather than cache bandwidth).
const SHAPES: [(usize, usize, &str); 5] = [
    (1536, 1536, "attn_q"),
    (8960, 1536, "gate_up"),
    (1536, 8960, "down"),
    (256, 1536, "attn_kv"),
    (151936, 1536, "lm_head"),
];

fn bench(c: &mut Criterion) {
    let dev = Device::Cpu;
    let mut rng = StdRng::seed_from_u64(0);
    let threads = rayon::current_num_threads();
    let best = Isa::best();
    let formats = [
        (WeightFormat::Q4_K, GgmlDType::Q4K, "q4_k"),
        (WeightFormat::Q6_K, GgmlDType::Q6K, "q6_k"),
    ];
    for (format, dtype, fname) in formats {
        for (n, k, name) in SHAPES {
            let wf: Vec<f32> = (0..n * k).map(|_| rng.random_range(-0.1f32..0.1)).collect();
            let qt =
                QTensor::quantize(&Tensor::from_vec(wf, (n, k), &dev).unwrap(), dtype).unwrap();
            let bytes = qt.data().unwrap().into_owned();
            let qmm = QMatMul::from_qtensor(qt).unwrap();
            for m in [1usize, 64] {
                if name == "lm_head" && (m > 1 || format == WeightFormat::Q4_K) {
                    // Prefill computes logits for the last token only.
                    continue;
                }
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
