//! Prefill-shaped matmuls: a 512-row prompt pass (`PREFILL_M`) on the shapes of the models the
//! project's llama-bench comparison uses, Qwen2.5-Coder-1.5B (Q4_K_M: Q4_K and Q6_K; k = 1536
//! or 8960) and SmolLM2-135M (Q4_0, Q4_1, Q8_0; k = 576), and Q5_0, which most of
//! Qwen2.5-Coder-0.5B's Q4_K_M matrices are. Throughput is in multiply-accumulates
//! (criterion's "elements"), so formats and shapes compare directly.
//!
//! Threads: RAYON_NUM_THREADS. `PREFILL_FORMATS=q4_k,q6_k` limits the run to those labels.
//! `cargo bench -p effbench-kernels --bench prefill`.

use std::hint::black_box;
use std::time::Duration;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use effbench_kernels::{matmul_with, Isa, Scratch, WeightFormat};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// (n, k, label): Qwen2.5-1.5B attention q/o, MLP gate/up and down; SmolLM2-135M attention
/// q/o, k/v, MLP gate/up and down.
const SHAPES: [(usize, usize, &str); 7] = [
    (1536, 1536, "qwen_attn_q"),
    (8960, 1536, "qwen_gate_up"),
    (1536, 8960, "qwen_down"),
    (576, 576, "smol_attn_q"),
    (192, 576, "smol_attn_kv"),
    (1536, 576, "smol_gate_up"),
    (576, 1536, "smol_down"),
];

fn env_m() -> usize {
    std::env::var("PREFILL_M")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512)
}

fn wanted(label: &str) -> bool {
    std::env::var("PREFILL_FORMATS")
        .map(|v| v.split(',').any(|f| f.trim() == label))
        .unwrap_or(true)
}

fn bench(c: &mut Criterion) {
    let dev = Device::Cpu;
    let mut rng = StdRng::seed_from_u64(0);
    let threads = rayon::current_num_threads();
    let isa = Isa::best();
    let m = env_m();
    let formats = [
        (WeightFormat::Q4_K, GgmlDType::Q4K, "q4_k"),
        (WeightFormat::Q6_K, GgmlDType::Q6K, "q6_k"),
        (WeightFormat::Q4_0, GgmlDType::Q4_0, "q4_0"),
        (WeightFormat::Q4_1, GgmlDType::Q4_1, "q4_1"),
        (WeightFormat::Q5_0, GgmlDType::Q5_0, "q5_0"),
        (WeightFormat::Q8_0, GgmlDType::Q8_0, "q8_0"),
    ];
    for (format, dtype, label) in formats {
        if !wanted(label) {
            continue;
        }
        for (n, k, shape) in SHAPES {
            if !k.is_multiple_of(format.block_elems()) {
                continue;
            }
            let wf: Vec<f32> = (0..n * k).map(|_| rng.random_range(-0.1f32..0.1)).collect();
            let w = QTensor::quantize(&Tensor::from_vec(wf, (n, k), &dev).unwrap(), dtype)
                .unwrap()
                .data()
                .unwrap()
                .into_owned();
            let x: Vec<f32> = (0..m * k).map(|_| rng.random_range(-1f32..1.0)).collect();
            let mut out = vec![0f32; m * n];
            let mut scratch = Scratch::new();
            let mut g = c.benchmark_group(format!("prefill/{label}/{shape}_n{n}_k{k}/t{threads}"));
            g.throughput(Throughput::Elements((m * n * k) as u64));
            g.sample_size(10);
            g.warm_up_time(Duration::from_millis(500));
            g.measurement_time(Duration::from_secs(3));
            g.bench_function(format!("m{m}/{isa:?}"), |b| {
                b.iter(|| {
                    matmul_with(isa, format, &w, n, k, &x, m, &mut out, &mut scratch).unwrap();
                    black_box(&out);
                })
            });
            g.finish();
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
