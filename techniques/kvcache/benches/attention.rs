//! Decode-step attention for one sequence and one layer on SmolLM2-135M's shapes (9 query heads
//! over 3 KV heads of 64): the contiguous cache (candle matmuls over its buffer) against the
//! paged cache's kernel reading K/V through the block table, at several context lengths.
//!
//! Threads come from rayon's global pool: set RAYON_NUM_THREADS.

use std::hint::black_box;

use candle_core::{DType, Device};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use effbench_core::testing::seeded_tensor;
use effbench_core::{ContiguousKvCache, KvCache, KvShape};
use effbench_kvcache::PagedKvCache;

fn bench(c: &mut Criterion) {
    let shape = KvShape {
        num_layers: 1,
        num_kv_heads: 3,
        head_dim: 64,
        dtype: DType::F32,
    };
    let dev = Device::Cpu;
    let mut group = c.benchmark_group("decode_attention");
    for ctx in [128usize, 512, 2048] {
        let mut contiguous = ContiguousKvCache::new(shape, ctx + 1, &dev);
        let mut paged = PagedKvCache::new(shape, 16, (ctx + 1).div_ceil(16), &dev).unwrap();
        let k = seeded_tensor(&[3, ctx, 64], 1.0, 1);
        let v = seeded_tensor(&[3, ctx, 64], 1.0, 2);
        let caches: [&mut dyn KvCache; 2] = [&mut contiguous, &mut paged];
        for cache in caches {
            cache.reserve(0, ctx + 1).unwrap();
            cache.append(0, 0, &k, &v).unwrap();
            cache.commit(0, ctx).unwrap();
        }
        let q = seeded_tensor(&[9, 1, 64], 1.0, 3);
        let k1 = seeded_tensor(&[3, 1, 64], 1.0, 4);
        let v1 = seeded_tensor(&[3, 1, 64], 1.0, 5);
        // Without a commit each call rewrites the same slot, so the context stays `ctx`.
        group.bench_with_input(BenchmarkId::new("contiguous", ctx), &ctx, |b, _| {
            b.iter(|| black_box(contiguous.attend(0, 0, &q, &k1, &v1, None).unwrap()))
        });
        group.bench_with_input(BenchmarkId::new("paged", ctx), &ctx, |b, _| {
            b.iter(|| black_box(paged.attend(0, 0, &q, &k1, &v1, None).unwrap()))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
