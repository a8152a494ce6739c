//! One attention row's softmax numerators and denominator: libm's `expf` per score (the loop
//! `effbench_kernels::softmax` replaced) against the vector `exp`, at decode-step context
//! lengths. Throughput is scores per second.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use effbench_kernels::softmax;

fn scores(len: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 7919) % 2000) as f32 / 100.0 - 10.0)
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("softmax_row");
    for len in [128, 512, 2048] {
        let xs = scores(len);
        let mut buf = xs.clone();
        g.throughput(Throughput::Elements(len as u64));
        g.bench_with_input(BenchmarkId::new("libm_expf", len), &xs, |b, xs| {
            b.iter(|| {
                buf.copy_from_slice(xs);
                let max = buf.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut sum = 0.0;
                for x in buf.iter_mut() {
                    *x = (*x - max).exp();
                    sum += *x;
                }
                black_box(sum)
            })
        });
        let mut buf = xs.clone();
        g.bench_with_input(BenchmarkId::new("vector_exp", len), &xs, |b, xs| {
            b.iter(|| {
                buf.copy_from_slice(xs);
                let max = softmax::max(&buf);
                black_box(softmax::exp_shifted_sum(&mut buf, max))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
