//! effbench's own int4/int2 kernels against dense f16 and f32 (candle's matmul, what the f16
//! baseline runs) and against the Q4_1 kernel (int4 g32 asymmetric, bit for bit), on the
//! projection shapes of Qwen2.5-1.5B (MLP up, MLP down) and SmolLM2-135M (MLP up).
//!
//! m = 1 is decode (matrix-vector, bound by memory bandwidth); m = 128 is prefill. Criterion's
//! throughput is each format's own weight bytes per call, so for m = 1 its GB/s compares with
//! the machine's bandwidth; speedups come from the times. Threads: RAYON_NUM_THREADS.

use std::hint::black_box;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use effbench_kernels::{matmul, matmul_packed, PackedFormat, WeightFormat};
use half::f16;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const SHAPES: [(usize, usize, &str); 3] = [
    (8960, 1536, "qwen1.5b_up"),
    (1536, 8960, "qwen1.5b_down"),
    (1536, 576, "smollm2_up"),
];

fn packed(f: PackedFormat, n: usize, k: usize, rng: &mut StdRng) -> Vec<u8> {
    let g = f.groups_per_row(k);
    let q: Vec<u8> = (0..n * k)
        .map(|_| rng.random_range(0..(1u32 << f.bits())) as u8)
        .collect();
    let d: Vec<f16> = (0..n * g).map(|_| f16::from_f32(0.01)).collect();
    let m: Vec<f16> = (0..n * g).map(|_| f16::from_f32(-0.05)).collect();
    f.pack(&q, &d, &m, n, k).unwrap()
}

fn bench(c: &mut Criterion) {
    let dev = Device::Cpu;
    let mut rng = StdRng::seed_from_u64(0);
    let threads = rayon::current_num_threads();
    for (n, k, name) in SHAPES {
        let wf: Vec<f32> = (0..n * k).map(|_| rng.random_range(-0.1f32..0.1)).collect();
        let w32 = Tensor::from_vec(wf, (n, k), &dev).unwrap();
        let w16 = w32.to_dtype(DType::F16).unwrap();
        let q41 = QTensor::quantize(&w32, GgmlDType::Q4_1)
            .unwrap()
            .data()
            .unwrap()
            .into_owned();
        let formats = [
            ("int4-g128-sym", PackedFormat::new(4, 128, false).unwrap()),
            ("int4-g128-asym", PackedFormat::new(4, 128, true).unwrap()),
            ("int2-g32-asym", PackedFormat::new(2, 32, true).unwrap()),
            ("int2-g16-asym", PackedFormat::new(2, 16, true).unwrap()),
        ];
        let packed: Vec<_> = formats
            .iter()
            .map(|&(label, f)| (label, f, packed(f, n, k, &mut rng)))
            .collect();
        for m in [1usize, 128] {
            let x: Vec<f32> = (0..m * k).map(|_| rng.random_range(-1f32..1.0)).collect();
            let x32 = Tensor::from_vec(x.clone(), (m, k), &dev).unwrap();
            let x16 = x32.to_dtype(DType::F16).unwrap();
            let mut out = vec![0f32; m * n];
            let mut g = c.benchmark_group(format!("packed/{name}_n{n}_k{k}/m{m}/t{threads}"));
            g.sample_size(20);
            g.throughput(Throughput::Bytes((n * k * 4) as u64));
            g.bench_function(BenchmarkId::new("f32", "candle"), |b| {
                b.iter(|| black_box(x32.matmul(&w32.t().unwrap()).unwrap()))
            });
            g.throughput(Throughput::Bytes((n * k * 2) as u64));
            g.bench_function(BenchmarkId::new("f16", "candle"), |b| {
                b.iter(|| black_box(x16.matmul(&w16.t().unwrap()).unwrap()))
            });
            g.throughput(Throughput::Bytes(q41.len() as u64));
            g.bench_function(BenchmarkId::new("int4-g32-asym", "Q4_1"), |b| {
                b.iter(|| {
                    matmul(WeightFormat::Q4_1, &q41, n, k, &x, m, &mut out).unwrap();
                    black_box(&out);
                })
            });
            for (label, f, bytes) in &packed {
                g.throughput(Throughput::Bytes(bytes.len() as u64));
                g.bench_function(BenchmarkId::new(*label, "packed"), |b| {
                    b.iter(|| {
                        matmul_packed(*f, bytes, n, k, &x, m, &mut out).unwrap();
                        black_box(&out);
                    })
                });
            }
            g.finish();
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
