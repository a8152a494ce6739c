//! Development timing: min-of-N per kernel variant (robust on a shared machine).
use effbench_kernels::{matmul_with, Isa, Scratch, WeightFormat};
use std::time::Instant;

fn main() {
    // Inside the pool, as a runtime should run its forward pass: each matmul then starts its
    // tasks from a worker thread instead of waking the pool from outside.
    let pool = rayon::ThreadPoolBuilder::new().build().unwrap();
    if std::env::var("OUTSIDE").is_ok() {
        body()
    } else {
        pool.install(body)
    }
}

fn body() {
    let shapes = [(1536usize, 576usize), (576, 1536), (49152, 576)];
    let fmt = match std::env::args().nth(1).as_deref() {
        Some("q4_0") => WeightFormat::Q4_0,
        Some("q8_0") => WeightFormat::Q8_0,
        _ => WeightFormat::Q4_1,
    };
    let mut seed = 12345u64;
    let mut rnd = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for (n, k) in shapes {
        let mut w = vec![0u8; fmt.matrix_bytes(n, k)];
        for (i, b) in w.iter_mut().enumerate() {
            *b = rnd() as u8;
            if i % fmt.block_bytes() == 1 || (fmt == WeightFormat::Q4_1 && i % 20 == 3) {
                *b = 0x20; // small f16 scales
            }
        }
        for m in [1usize, 128, 512] {
            let x: Vec<f32> = (0..m * k)
                .map(|_| (rnd() % 2000) as f32 / 1000.0 - 1.0)
                .collect();
            let mut out = vec![0f32; m * n];
            let mut scratch = Scratch::new();
            let mut line = format!("{fmt:?} n={n:5} k={k:4} m={m:3}:");
            for isa in Isa::available().into_iter().filter(|&i| i != Isa::Scalar) {
                let iters = if m == 1 { 300 } else { 10 }.min(if n > 10000 { 30 } else { 1000 });
                let mut best = f64::MAX;
                for _ in 0..iters {
                    let t = Instant::now();
                    matmul_with(isa, fmt, &w, n, k, &x, m, &mut out, &mut scratch).unwrap();
                    best = best.min(t.elapsed().as_secs_f64());
                }
                let gbs = w.len() as f64 / best / 1e9;
                let gmac = (n * k * m) as f64 / best / 1e9;
                line += &format!(
                    "  {isa:?} {:8.1}us ({gbs:5.1} GB/s, {gmac:6.1} GMAC/s)",
                    best * 1e6
                );
            }
            println!("{line}");
        }
    }
}
