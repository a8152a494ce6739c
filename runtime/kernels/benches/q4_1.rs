//! Q4_1 matmul on SmolLM2-135M's shapes: this crate's kernels against candle's `QMatMul` on the
//! same bytes. Throughput is the weight bytes read per call, so for m = 1 (decode, bandwidth
//! bound) criterion's GB/s compares directly with the machine's memory bandwidth; for m = 128
//! it is the same bytes reused 128 times, i.e. only a relative figure.
//!
//! Threads come from rayon's global pool for both sides: set RAYON_NUM_THREADS.

use std::hint::black_box;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use effbench_kernels::{matmul_with, Isa, Scratch, WeightFormat};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// (n, k) of SmolLM2-135M: MLP gate/up, MLP down, and the tied embedding as LM head.
const SHAPES: [(usize, usize, &str); 3] = [
    (1536, 576, "gate_up"),
    (576, 1536, "down"),
    (49152, 576, "lm_head"),
];

fn bench(c: &mut Criterion) {
    let dev = Device::Cpu;
    let mut rng = StdRng::seed_from_u64(0);
    let threads = rayon::current_num_threads();
    let best = Isa::best();
    for (n, k, name) in SHAPES {
        let wf: Vec<f32> = (0..n * k).map(|_| rng.random_range(-0.1f32..0.1)).collect();
        let qt = QTensor::quantize(
            &Tensor::from_vec(wf, (n, k), &dev).unwrap(),
            GgmlDType::Q4_1,
        )
        .unwrap();
        let bytes = qt.data().unwrap().into_owned();
        let qmm = QMatMul::from_qtensor(qt).unwrap();
        for m in [1usize, 128] {
            let x: Vec<f32> = (0..m * k).map(|_| rng.random_range(-1f32..1.0)).collect();
            let xt = Tensor::from_vec(x.clone(), (m, k), &dev).unwrap();
            let mut out = vec![0f32; m * n];
            let mut scratch = Scratch::new();

            let mut g = c.benchmark_group(format!("q4_1/{name}_n{n}_k{k}/m{m}/t{threads}"));
            g.throughput(Throughput::Bytes(bytes.len() as u64));
            if m * n * k > 1 << 30 {
                // candle takes seconds per call here; criterion's minimum of 10 samples is enough.
                g.sample_size(10);
            }
            let mut isas = vec![best];
            if best != Isa::Avx2 && Isa::available().contains(&Isa::Avx2) {
                isas.push(Isa::Avx2);
            }
            for isa in isas {
                g.bench_function(BenchmarkId::new("ours", format!("{isa:?}")), |b| {
                    b.iter(|| {
                        let f = WeightFormat::Q4_1;
                        matmul_with(isa, f, &bytes, n, k, &x, m, &mut out, &mut scratch).unwrap();
                        black_box(&out);
                    })
                });
            }
            g.bench_function("candle", |b| {
                b.iter(|| black_box(qmm.forward(&xt).unwrap()))
            });
            g.finish();
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
