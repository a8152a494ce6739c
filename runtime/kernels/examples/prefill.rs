//! Repeated matmul calls of one shape, timed one by one: on a machine shared with other jobs the
//! fastest call is the figure that the load disturbs least (criterion's mean and median move
//! with it). Valgrind 3.19 cannot decode AVX-512, and this VM exposes no hardware counters, so
//! instruction counts of the AVX-512 kernels have to come from their disassembly instead.
//!
//! `RAYON_NUM_THREADS=1 target/release/examples/prefill q4_k 512 1536 1536 20`
//!
//! Arguments: format (q4_0, q4_1, q8_0, q5_0, q5_1, q4_k, q6_k), m, n, k, calls (default 10).
//! Weights are random floats quantized by candle.

use std::time::Instant;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use effbench_kernels::{matmul_with, Isa, Scratch, WeightFormat};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: prefill FORMAT M N K [CALLS]";
    // Weights are quantized by candle from random floats, as the prefill bench makes them, so
    // no block layout is written by hand here.
    let (format, dtype) = match args.get(1).map(String::as_str) {
        Some("q4_0") => (WeightFormat::Q4_0, GgmlDType::Q4_0),
        Some("q4_1") => (WeightFormat::Q4_1, GgmlDType::Q4_1),
        Some("q8_0") => (WeightFormat::Q8_0, GgmlDType::Q8_0),
        Some("q5_0") => (WeightFormat::Q5_0, GgmlDType::Q5_0),
        Some("q5_1") => (WeightFormat::Q5_1, GgmlDType::Q5_1),
        Some("q4_k") => (WeightFormat::Q4_K, GgmlDType::Q4K),
        Some("q6_k") => (WeightFormat::Q6_K, GgmlDType::Q6K),
        _ => panic!("{usage}"),
    };
    let dim = |i: usize| -> usize { args.get(i).and_then(|v| v.parse().ok()).expect(usage) };
    let (m, n, k) = (dim(2), dim(3), dim(4));
    let mut rng = StdRng::seed_from_u64(0);
    let wf: Vec<f32> = (0..n * k).map(|_| rng.random_range(-0.1f32..0.1)).collect();
    let w = QTensor::quantize(&Tensor::from_vec(wf, (n, k), &Device::Cpu).unwrap(), dtype)
        .unwrap()
        .data()
        .unwrap()
        .into_owned();
    let x: Vec<f32> = (0..m * k).map(|_| rng.random_range(-1f32..1.0)).collect();
    let mut out = vec![0f32; m * n];
    let isa = Isa::best();
    let calls = args.get(5).map_or(10, |v| v.parse().expect(usage));
    let mut scratch = Scratch::new();
    let mut times = Vec::new();
    for _ in 0..calls {
        let t = Instant::now();
        matmul_with(isa, format, &w, n, k, &x, m, &mut out, &mut scratch).unwrap();
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let macs = (m * n * k) as f64;
    let checksum: f64 = out.iter().map(|&v| v as f64).sum();
    println!(
        "{format:?} {isa:?} m={m} n={n} k={k} threads={}: fastest {:.2} ms ({:.1} GMAC/s), \
         median {:.2} ms; checksum {checksum:.6e}",
        rayon::current_num_threads(),
        times[0] * 1e3,
        macs / times[0] / 1e9,
        times[times.len() / 2] * 1e3,
    );
}
