//! One continuous-batching decode step on SmolLM2-135M-Instruct (Q4_1 as stored): a forward pass
//! that adds one token to each of B sequences of 150 tokens, with the contiguous and the paged
//! cache. Separates what each cache costs per step from what it buys in concurrency: the
//! serve-bench throughput difference is the product of both.
//!
//! Reads the model from effbench's cache; skips when it is not there. Threads: RAYON_NUM_THREADS.

use candle_core::Device;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use effbench_core::{AsStored, ContiguousKvCache, KvCache, KvShape, LogitsFor, SeqChunk};
use effbench_kvcache::PagedKvCache;

const CONTEXT: usize = 150;

fn bench(c: &mut Criterion) {
    let Some(path) = effbench_assets::cached_path("smollm2-135m-instruct") else {
        eprintln!("skipping: smollm2-135m-instruct is not cached (scripts/fetch-test-assets.sh)");
        return;
    };
    let m = effbench_core::load(&path, &AsStored, &Device::Cpu).expect("load SmolLM2");
    let model = &m.model;
    let shape = KvShape::of(model.config());
    let mut group = c.benchmark_group("decode_step");
    group.sample_size(10);
    // `cargo test --all-targets` runs each bench once, unoptimised: the small batches suffice
    // to check it works, and keep CI short.
    let measuring = std::env::args().any(|a| a == "--bench");
    let batches: &[usize] = if measuring { &[1, 8, 32, 64] } else { &[1, 8] };
    for &batch in batches {
        group.throughput(Throughput::Elements(batch as u64));
        for paged in [false, true] {
            let mut cache: Box<dyn KvCache> = if paged {
                let blocks = batch * (CONTEXT + 1).div_ceil(16);
                Box::new(PagedKvCache::new(shape, 16, blocks, &Device::Cpu).unwrap())
            } else {
                Box::new(ContiguousKvCache::new(shape, CONTEXT + 1, &Device::Cpu))
            };
            let prompts: Vec<SeqChunk> = (0..batch)
                .map(|i| {
                    let tokens = (0..CONTEXT as u32).map(|t| (t * 7 + i as u32) % 40_000);
                    SeqChunk::new(i as u64, tokens.collect(), LogitsFor::None)
                })
                .collect();
            model.forward(&prompts, cache.as_mut()).unwrap();
            let step: Vec<SeqChunk> = (0..batch)
                .map(|i| SeqChunk::new(i as u64, vec![100 + i as u32], LogitsFor::Last))
                .collect();
            let name = if paged { "paged" } else { "contiguous" };
            group.bench_with_input(BenchmarkId::new(name, batch), &batch, |b, _| {
                b.iter(|| {
                    let out = model.forward(&step, cache.as_mut()).unwrap();
                    for i in 0..batch {
                        cache.truncate(i as u64, CONTEXT).unwrap();
                    }
                    out
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
