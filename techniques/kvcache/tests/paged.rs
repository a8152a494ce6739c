//! The paged cache against the contiguous one on tiny seeded models: the same logits for the same
//! batches (block-boundary lengths, forks with copy-on-write, rollback), the same greedy tokens,
//! and every block back on the free list at the end.

use candle_core::{DType, Device, Tensor};
use effbench_core::decode::{DecodingStrategy, GenerateRequest, Greedy, PlainDecoding};
use effbench_core::testing::{max_abs_diff, tiny_config, tiny_source};
use effbench_core::{
    Architecture, AsStored, ContiguousKvCache, CoreError, KvCache, KvShape, LogitsFor, Model,
    SeqChunk,
};
use effbench_kvcache::PagedKvCache;

fn tiny_model(arch: Architecture) -> Model {
    let cfg = tiny_config(arch);
    Model::load(&mut tiny_source(&cfg, 42), &AsStored, &Device::Cpu).unwrap()
}

fn contiguous(model: &Model) -> ContiguousKvCache {
    ContiguousKvCache::new(KvShape::of(model.config()), 256, &Device::Cpu)
}

fn paged(model: &Model, block_size: usize, blocks: usize) -> PagedKvCache {
    PagedKvCache::new(
        KvShape::of(model.config()),
        block_size,
        blocks,
        &Device::Cpu,
    )
    .unwrap()
}

/// Deterministic token ids of any length, all inside the tiny vocabulary.
fn tokens(len: usize, salt: u32) -> Vec<u32> {
    (0..len as u32)
        .map(|i| (i * 37 + salt * 11 + 5) % 96)
        .collect()
}

/// Logits of `tokens` alone, computed from scratch in a contiguous cache.
fn fresh_logits(model: &Model, tokens: &[u32]) -> Tensor {
    let mut cache = contiguous(model);
    model
        .forward(
            &[SeqChunk::new(0, tokens.to_vec(), LogitsFor::All)],
            &mut cache,
        )
        .unwrap()
        .per_chunk[0]
        .clone()
        .unwrap()
}

fn run(model: &Model, cache: &mut dyn KvCache, batch: &[SeqChunk]) -> Vec<Tensor> {
    model
        .forward(batch, cache)
        .unwrap()
        .per_chunk
        .into_iter()
        .map(Option::unwrap)
        .collect()
}

#[test]
fn paged_and_contiguous_give_the_same_logits_for_a_batch() {
    // Gemma 3's tiny shape slides a window of 4 keys, so decode steps drop whole blocks.
    for arch in [
        Architecture::Llama,
        Architecture::Qwen2,
        Architecture::Qwen3,
        Architecture::Gemma3,
    ] {
        let model = tiny_model(arch);
        // Block size 4: lengths just under, at, and just over block boundaries.
        let lens = [3usize, 4, 5, 8, 9, 1];
        let prompts: Vec<Vec<u32>> = lens
            .iter()
            .enumerate()
            .map(|(i, &l)| tokens(l, i as u32))
            .collect();
        let mut a = contiguous(&model);
        let mut b = paged(&model, 4, 64);
        let prefill: Vec<SeqChunk> = prompts
            .iter()
            .enumerate()
            .map(|(i, p)| SeqChunk::new(i as u64, p.clone(), LogitsFor::All))
            .collect();
        for (x, y) in run(&model, &mut a, &prefill)
            .iter()
            .zip(run(&model, &mut b, &prefill))
        {
            let d = max_abs_diff(x, &y);
            assert!(d < 1e-4, "{arch:?} prefill: {d}");
        }
        // Decode steps across the next block boundary of every sequence.
        for step in 0..5u32 {
            let batch: Vec<SeqChunk> = (0..lens.len())
                .map(|i| SeqChunk::new(i as u64, vec![(step * 7 + i as u32) % 96], LogitsFor::Last))
                .collect();
            for (x, y) in run(&model, &mut a, &batch)
                .iter()
                .zip(run(&model, &mut b, &batch))
            {
                let d = max_abs_diff(x, &y);
                assert!(d < 1e-4, "{arch:?} decode step {step}: {d}");
            }
        }
        for (i, &l) in lens.iter().enumerate() {
            assert_eq!(b.seq_len(i as u64), l + 5);
            assert_eq!(b.block_table(i as u64).unwrap().len(), (l + 5).div_ceil(4));
        }
        // Memory taken a block at a time: reserved bytes cover the tokens plus under a block each.
        let u = b.usage();
        assert_eq!(
            u.bytes_used,
            u.tokens * KvShape::of(model.config()).bytes_per_token()
        );
        assert!(u.bytes_reserved - u.bytes_used < lens.len() * b.block_bytes());
    }
}

#[test]
fn greedy_generations_are_identical_token_for_token() {
    let model = tiny_model(Architecture::Qwen2);
    let request = GenerateRequest {
        seq: 7,
        prompt: tokens(11, 3),
        max_new_tokens: 40,
        stop_tokens: vec![],
        prefill_chunk: 5,
    };
    let mut a = contiguous(&model);
    let mut b = paged(&model, 16, 8);
    let ta = PlainDecoding::new(Greedy)
        .generate(&model, &mut a, &request, &mut |_| {})
        .unwrap()
        .tokens;
    let tb = PlainDecoding::new(Greedy)
        .generate(&model, &mut b, &request, &mut |_| {})
        .unwrap()
        .tokens;
    assert_eq!(ta.len(), 40);
    assert_eq!(ta, tb);
}

#[test]
fn forks_share_blocks_and_copy_on_first_divergent_write() {
    let model = tiny_model(Architecture::Llama);
    let mut cache = paged(&model, 4, 32);
    // 6 tokens: one full block and a half-filled one, both shared by the forks.
    let prefix = tokens(6, 1);
    model
        .forward(
            &[SeqChunk::new(0, prefix.clone(), LogitsFor::None)],
            &mut cache,
        )
        .unwrap();
    cache.fork(0, 1).unwrap();
    cache.fork(0, 2).unwrap();
    let table = cache.block_table(0).unwrap().to_vec();
    assert_eq!(table.len(), 2);
    assert_eq!(cache.block_table(1).unwrap(), table.as_slice());
    assert_eq!(cache.refcount(table[0]), 3);
    assert_eq!(cache.free_blocks(), 30, "forks took no blocks");
    let before = cache.usage();

    let tail1 = vec![9, 10, 11];
    let tail2 = vec![50];
    let tail0 = vec![70, 71];
    let out = run(
        &model,
        &mut cache,
        &[
            SeqChunk::new(1, tail1.clone(), LogitsFor::All),
            SeqChunk::new(2, tail2.clone(), LogitsFor::All),
            SeqChunk::new(0, tail0.clone(), LogitsFor::All),
        ],
    );
    for (tail, got) in [&tail1, &tail2, &tail0].iter().zip(&out) {
        let mut full = prefix.clone();
        full.extend(tail.iter());
        let want = fresh_logits(&model, &full);
        let d = max_abs_diff(got, &want.narrow(0, prefix.len(), tail.len()).unwrap());
        assert!(d < 1e-4, "{d}");
    }
    // The full first block is still shared by all three; each wrote into its own copy of the
    // half-filled one.
    let t0 = cache.block_table(0).unwrap().to_vec();
    let t1 = cache.block_table(1).unwrap().to_vec();
    let t2 = cache.block_table(2).unwrap().to_vec();
    assert_eq!((t0[0], t1[0], t2[0]), (table[0], table[0], table[0]));
    assert_eq!(cache.refcount(table[0]), 3);
    let second: std::collections::HashSet<u32> = [t0[1], t1[1], t2[1]].into();
    assert_eq!(second.len(), 3, "each sequence has its own second block");
    // Shared tokens are stored once: the forks held 6 tokens' worth, not 18.
    assert_eq!(
        before.bytes_used,
        6 * KvShape::of(model.config()).bytes_per_token()
    );
    assert_eq!(before.tokens, 18);

    for s in 0..3 {
        cache.remove(s);
    }
    assert_eq!(cache.free_blocks(), 32);
    assert!((0..32).all(|b| cache.refcount(b) == 0));
}

#[test]
fn rollback_then_continue_equals_a_fresh_computation() {
    let model = tiny_model(Architecture::Qwen2);
    let mut cache = paged(&model, 4, 16);
    let prompt = tokens(13, 2);
    model
        .forward(
            &[SeqChunk::new(0, prompt.clone(), LogitsFor::None)],
            &mut cache,
        )
        .unwrap();
    assert_eq!(cache.free_blocks(), 12);
    // Reject the last 6 tokens, across a block boundary: blocks past the kept ones go back.
    cache.truncate(0, 7).unwrap();
    assert_eq!(cache.seq_len(0), 7);
    assert_eq!(cache.free_blocks(), 14);
    let tail = vec![80, 81, 82, 83, 84];
    let got = run(
        &model,
        &mut cache,
        &[SeqChunk::new(0, tail.clone(), LogitsFor::All)],
    );
    let mut full = prompt[..7].to_vec();
    full.extend(&tail);
    let want = fresh_logits(&model, &full);
    let d = max_abs_diff(&got[0], &want.narrow(0, 7, 5).unwrap());
    assert!(d < 1e-4, "{d}");

    // Rolling back a fork must not disturb the sequence it shares blocks with.
    cache.fork(0, 1).unwrap();
    cache.truncate(1, 2).unwrap();
    model
        .forward(
            &[SeqChunk::new(1, vec![1, 2, 3], LogitsFor::None)],
            &mut cache,
        )
        .unwrap();
    let got = run(
        &model,
        &mut cache,
        &[SeqChunk::new(0, vec![90], LogitsFor::Last)],
    );
    full.push(90);
    let want = fresh_logits(&model, &full);
    let d = max_abs_diff(&got[0], &want.narrow(0, full.len() - 1, 1).unwrap());
    assert!(d < 1e-4, "{d}");
    cache.remove(0);
    cache.remove(1);
    assert_eq!(cache.free_blocks(), 16);
}

#[test]
fn out_of_blocks_is_refused_cleanly_and_recovers() {
    let model = tiny_model(Architecture::Llama);
    let mut cache = paged(&model, 4, 5);
    model
        .forward(
            &[SeqChunk::new(0, tokens(12, 0), LogitsFor::None)],
            &mut cache,
        )
        .unwrap();
    assert_eq!(cache.free_blocks(), 2);
    let err = model
        .forward(
            &[SeqChunk::new(1, tokens(9, 1), LogitsFor::Last)],
            &mut cache,
        )
        .unwrap_err();
    assert!(matches!(err, CoreError::KvBudgetExhausted { .. }), "{err}");
    assert!(err.to_string().contains("larger KV budget"), "{err}");
    // A library names settings, not the flags of one command line.
    assert!(!err.to_string().contains("--"), "{err}");
    // Nothing was taken by the refused request.
    assert_eq!(cache.free_blocks(), 2);
    assert_eq!(cache.seq_len(1), 0);
    assert_eq!(cache.max_tokens_per_seq(), Some(20));
    cache.remove(0);
    let got = run(
        &model,
        &mut cache,
        &[SeqChunk::new(1, tokens(9, 1), LogitsFor::All)],
    );
    assert!(max_abs_diff(&got[0], &fresh_logits(&model, &tokens(9, 1))) < 1e-4);
}

#[test]
fn f16_storage_stays_close_to_the_contiguous_f16_cache() {
    let model = tiny_model(Architecture::Llama);
    let shape = KvShape::of(model.config()).with_dtype(DType::F16);
    let mut a = ContiguousKvCache::new(shape, 64, &Device::Cpu);
    let mut b = PagedKvCache::new(shape, 8, 8, &Device::Cpu).unwrap();
    let batch = [SeqChunk::new(0, tokens(20, 4), LogitsFor::All)];
    let d = max_abs_diff(
        &run(&model, &mut a, &batch)[0],
        &run(&model, &mut b, &batch)[0],
    );
    assert!(d < 1e-4, "{d}");
    let u = b.usage();
    assert_eq!(u.bytes_used, 20 * shape.bytes_per_token());
    assert_eq!(
        shape.bytes_per_token() * 2,
        KvShape::of(model.config()).bytes_per_token()
    );
}

#[test]
fn bad_configurations_are_refused() {
    let model = tiny_model(Architecture::Llama);
    let shape = KvShape::of(model.config());
    let err = PagedKvCache::new(shape, 0, 8, &Device::Cpu).err().unwrap();
    assert!(err.to_string().contains("block size"), "{err}");
    let err = PagedKvCache::new(shape.with_dtype(DType::BF16), 16, 8, &Device::Cpu)
        .err()
        .unwrap();
    assert!(err.to_string().contains("f32 or f16"), "{err}");
    let mut cache = paged(&model, 4, 4);
    assert!(matches!(
        cache.fork(3, 4),
        Err(CoreError::UnknownSequence(3))
    ));
}
