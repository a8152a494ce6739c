//! The m-curve: what a pass over m = 1..9 activation rows costs against one row, for every
//! weight format, on Qwen2.5-1.5B's MLP up projection (8960 x 1536). Speculative decoding
//! verifies k drafted tokens in one pass of k + 1 rows, and pays off only if that pass costs
//! little more than a decode step: on decode-bound shapes each weight load should serve all m
//! rows. The target is at most 1.3x the m = 1 time for m <= 5.
//!
//! A forward pass streams its weights from memory, so the bench cycles through copies of the
//! matrix totalling `M_CURVE_POOL_MB` (default 1024 MB, past this machine's last-level cache)
//! instead of re-reading one matrix from cache. Throughput is the weight bytes of one call.
//! Threads: RAYON_NUM_THREADS. `M_CURVE_FORMATS=q5_0,q5_1` limits the run to those labels (a
//! criterion filter would still quantize and copy every format's pool first).
//! `cargo bench -p effbench-kernels --bench m_curve`.

use std::hint::black_box;
use std::time::Duration;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use effbench_kernels::{matmul, matmul_f16, matmul_packed, PackedFormat, WeightFormat};
use half::f16;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const N: usize = 8960;
const K: usize = 1536;
const MS: [usize; 7] = [1, 2, 3, 4, 5, 8, 9];

enum Weights {
    Ggml(WeightFormat, GgmlDType),
    Packed(PackedFormat),
    F16,
}

fn pool_bytes() -> usize {
    std::env::var("M_CURVE_POOL_MB")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1024)
        << 20
}

/// The labels `M_CURVE_FORMATS` (comma-separated) asks for; every format when unset.
fn wanted(label: &str) -> bool {
    std::env::var("M_CURVE_FORMATS")
        .map(|v| v.split(',').any(|f| f.trim() == label))
        .unwrap_or(true)
}

fn bench(c: &mut Criterion) {
    let dev = Device::Cpu;
    let mut rng = StdRng::seed_from_u64(0);
    let threads = rayon::current_num_threads();
    let wf: Vec<f32> = (0..N * K).map(|_| rng.random_range(-0.1f32..0.1)).collect();
    let w32 = Tensor::from_vec(wf.clone(), (N, K), &dev).unwrap();
    let formats = [
        ("q4_0", Weights::Ggml(WeightFormat::Q4_0, GgmlDType::Q4_0)),
        ("q4_1", Weights::Ggml(WeightFormat::Q4_1, GgmlDType::Q4_1)),
        ("q8_0", Weights::Ggml(WeightFormat::Q8_0, GgmlDType::Q8_0)),
        ("q5_0", Weights::Ggml(WeightFormat::Q5_0, GgmlDType::Q5_0)),
        ("q5_1", Weights::Ggml(WeightFormat::Q5_1, GgmlDType::Q5_1)),
        ("q4_k", Weights::Ggml(WeightFormat::Q4_K, GgmlDType::Q4K)),
        ("q6_k", Weights::Ggml(WeightFormat::Q6_K, GgmlDType::Q6K)),
        (
            "int4-g128-sym",
            Weights::Packed(PackedFormat::new(4, 128, false).unwrap()),
        ),
        (
            "int4-g128-asym",
            Weights::Packed(PackedFormat::new(4, 128, true).unwrap()),
        ),
        (
            "int2-g32-asym",
            Weights::Packed(PackedFormat::new(2, 32, true).unwrap()),
        ),
        ("f16", Weights::F16),
    ];
    for (label, weights) in formats {
        if !wanted(label) {
            continue;
        }
        let one: Vec<u8> = match &weights {
            Weights::Ggml(_, dtype) => QTensor::quantize(&w32, *dtype)
                .unwrap()
                .data()
                .unwrap()
                .into_owned(),
            Weights::Packed(f) => {
                let g = f.groups_per_row(K);
                let q: Vec<u8> = (0..N * K)
                    .map(|_| rng.random_range(0..(1u32 << f.bits())) as u8)
                    .collect();
                let d = vec![f16::from_f32(0.01); N * g];
                let m = vec![f16::from_f32(-0.05); N * g];
                f.pack(&q, &d, &m, N, K).unwrap()
            }
            Weights::F16 => wf
                .iter()
                .flat_map(|&v| f16::from_f32(v).to_le_bytes())
                .collect(),
        };
        let copies = pool_bytes().div_ceil(one.len()).max(1);
        let pool: Vec<Vec<u8>> = (0..copies).map(|_| one.clone()).collect();
        let f16_pool: Vec<Vec<f16>> = match weights {
            Weights::F16 => pool
                .iter()
                .map(|b| {
                    b.chunks_exact(2)
                        .map(|p| f16::from_le_bytes([p[0], p[1]]))
                        .collect()
                })
                .collect(),
            _ => Vec::new(),
        };
        let mut g = c.benchmark_group(format!("m_curve/{label}/t{threads}"));
        g.throughput(Throughput::Bytes(one.len() as u64));
        g.sample_size(20);
        g.warm_up_time(Duration::from_millis(500));
        g.measurement_time(Duration::from_secs(2));
        for m in MS {
            let x: Vec<f32> = (0..m * K).map(|_| rng.random_range(-1f32..1.0)).collect();
            let mut out = vec![0f32; m * N];
            let mut next = 0usize;
            g.bench_function(BenchmarkId::from_parameter(m), |b| {
                b.iter(|| {
                    next = (next + 1) % copies;
                    match &weights {
                        Weights::Ggml(f, _) => matmul(*f, &pool[next], N, K, &x, m, &mut out),
                        Weights::Packed(f) => matmul_packed(*f, &pool[next], N, K, &x, m, &mut out),
                        Weights::F16 => matmul_f16(&f16_pool[next], N, K, &x, m, &mut out),
                    }
                    .unwrap();
                    black_box(&out);
                })
            });
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
