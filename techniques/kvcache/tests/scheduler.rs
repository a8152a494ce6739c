//! The continuous-batching scheduler on a tiny seeded model: preempted and resumed sequences
//! produce exactly the tokens they produce alone, with either cache; bad requests are refused and
//! the rest completes; every block goes back to the pool.

use candle_core::Device;
use effbench_core::decode::{DecodingStrategy, GenerateRequest, Greedy, PlainDecoding};
use effbench_core::model::{log_softmax, logits_rows};
use effbench_core::testing::{tiny_config, tiny_source};
use effbench_core::{
    Architecture, AsStored, ContiguousKvCache, KvCache, KvShape, LogitsFor, Model, SeqChunk,
};
use effbench_kvcache::{serve, summarize, PagedKvCache, Request, SchedulerConfig};

fn tiny_model() -> Model {
    let cfg = tiny_config(Architecture::Qwen2);
    Model::load(&mut tiny_source(&cfg, 42), &AsStored, &Device::Cpu).unwrap()
}

fn requests() -> Vec<Request> {
    (0..8u64)
        .map(|i| Request {
            id: 100 + i,
            arrival_s: i as f64 * 1e-4,
            prompt: (0..(5 + 3 * i as u32))
                .map(|t| (t * 13 + i as u32 * 7) % 96)
                .collect(),
            max_new_tokens: 12 + 2 * i as usize,
            forked_from: None,
        })
        .collect()
}

fn alone(model: &Model, r: &Request) -> Vec<u32> {
    let mut cache = ContiguousKvCache::new(KvShape::of(model.config()), 128, &Device::Cpu);
    PlainDecoding::new(Greedy)
        .generate(
            model,
            &mut cache,
            &GenerateRequest {
                seq: r.id,
                prompt: r.prompt.clone(),
                max_new_tokens: r.max_new_tokens,
                stop_tokens: vec![],
                prefill_chunk: 0,
            },
            &mut |_| {},
        )
        .unwrap()
        .tokens
}

#[test]
fn preempted_sequences_resume_with_the_tokens_they_make_alone() {
    let model = tiny_model();
    let shape = KvShape::of(model.config());
    let reqs = requests();
    let want: Vec<Vec<u32>> = reqs.iter().map(|r| alone(&model, r)).collect();
    let config = SchedulerConfig {
        max_running: 8,
        max_batched_tokens: 64,
        max_model_len: 128,
    };
    // 16 blocks of 4 tokens: the longest request (26 + 26 tokens) fits alone, but all eight
    // together need about 80 blocks, so the scheduler must preempt.
    let mut paged = PagedKvCache::new(shape, 4, 16, &Device::Cpu).unwrap();
    let run = serve(&model, &mut paged, reqs.clone(), &config).unwrap();
    assert!(run.preemptions > 0, "the budget should force preemption");
    for (o, w) in run.outcomes.iter().zip(&want) {
        assert!(o.refused.is_none(), "{:?}", o.refused);
        assert_eq!(&o.tokens, w, "request {}", o.id);
        assert_eq!(o.token_times_s.len(), o.tokens.len());
    }
    assert_eq!(paged.free_blocks(), 16, "every block back on the free list");
    assert_eq!(paged.usage().bytes_reserved, 0);

    // The contiguous cache under a budget of two whole reservations: same tokens, fewer at once.
    let budget = 2 * 128 * shape.bytes_per_token();
    let mut contiguous = ContiguousKvCache::with_budget(shape, 128, budget, &Device::Cpu);
    let crun = serve(&model, &mut contiguous, reqs.clone(), &config).unwrap();
    for (o, w) in crun.outcomes.iter().zip(&want) {
        assert_eq!(&o.tokens, w, "request {}", o.id);
    }
    let s = summarize(&crun, budget);
    assert_eq!(s.peak_running, 2);
    assert_eq!(
        s.preemptions, 0,
        "whole reservations never run out mid-sequence"
    );
    assert!(s.waste_pct > 50.0, "{}", s.waste_pct);
    assert_eq!(contiguous.usage().sequences, 0);

    // The same budget in blocks holds many more sequences at once, and wastes little.
    let mut paged = PagedKvCache::with_budget(shape, 4, budget, &Device::Cpu).unwrap();
    let prun = serve(&model, &mut paged, reqs, &config).unwrap();
    let p = summarize(&prun, budget);
    for (o, w) in prun.outcomes.iter().zip(&want) {
        assert_eq!(&o.tokens, w, "request {}", o.id);
    }
    assert!(
        p.peak_running > 2 * s.peak_running,
        "{} vs {}",
        p.peak_running,
        s.peak_running
    );
    assert!(p.waste_pct < 10.0, "{}", p.waste_pct);
    assert!(p.internal_fragmentation_pct < s.internal_fragmentation_pct);
}

#[test]
fn bad_requests_are_refused_and_the_rest_completes() {
    let model = tiny_model();
    let shape = KvShape::of(model.config());
    let mut reqs = requests();
    reqs.truncate(3);
    let good: Vec<u64> = reqs.iter().map(|r| r.id).collect();
    reqs.push(Request {
        id: 1,
        arrival_s: 0.0,
        prompt: vec![1; 120],
        max_new_tokens: 20,
        forked_from: None,
    });
    reqs.push(Request {
        id: 2,
        arrival_s: 0.0,
        prompt: vec![1; 70],
        max_new_tokens: 10,
        forked_from: None,
    });
    reqs.push(Request {
        id: 3,
        arrival_s: 0.0,
        prompt: vec![],
        max_new_tokens: 10,
        forked_from: None,
    });
    reqs.sort_by(|a, b| a.arrival_s.total_cmp(&b.arrival_s));
    let config = SchedulerConfig {
        max_running: 4,
        max_batched_tokens: 256,
        max_model_len: 128,
    };
    // 16 blocks of 4 = 64 tokens: request 2 (80 tokens) fits the context but not the budget.
    let mut cache = PagedKvCache::new(shape, 4, 16, &Device::Cpu).unwrap();
    let run = serve(&model, &mut cache, reqs, &config).unwrap();
    let by_id = |id: u64| run.outcomes.iter().find(|o| o.id == id).unwrap();
    let ctx = by_id(1).refused.clone().unwrap();
    assert!(
        ctx.contains("longer than the model context of 128"),
        "{ctx}"
    );
    let budget = by_id(2).refused.clone().unwrap();
    assert!(
        budget.contains("whole budget")
            && budget.contains("larger KV budget")
            && !budget.contains("--"),
        "{budget}"
    );
    assert!(by_id(3).refused.clone().unwrap().contains("empty prompt"));
    for id in good {
        let o = by_id(id);
        assert!(o.refused.is_none());
        assert!(!o.tokens.is_empty() && o.tokens.len() == o.token_times_s.len());
    }
    let s = summarize(&run, 16 * cache.block_bytes());
    assert_eq!((s.completed, s.refused), (3, 3));
    assert!(s.ttft_ms.unwrap().p50 > 0.0 && s.tpot_ms.unwrap().p99 > 0.0);
}

/// Stops each request after a token it names, and keeps what it is told as requests finish.
struct StopAfter {
    stop_token: std::collections::HashMap<u64, u32>,
    finished: Vec<(u64, Vec<u32>)>,
}

impl effbench_kvcache::Watcher for StopAfter {
    fn stop(&mut self, id: u64, tokens: &[u32]) -> bool {
        tokens.last() == self.stop_token.get(&id)
    }

    fn finished(
        &mut self,
        outcome: &effbench_kvcache::Outcome,
    ) -> Result<(), effbench_kvcache::WatcherError> {
        self.finished.push((outcome.id, outcome.tokens.clone()));
        Ok(())
    }
}

#[test]
fn a_watcher_stops_requests_early_and_hears_each_finish_once() {
    let model = tiny_model();
    let shape = KvShape::of(model.config());
    let reqs = requests();
    let alone: Vec<Vec<u32>> = reqs.iter().map(|r| alone(&model, r)).collect();
    // Each request stops at the first occurrence of its own fourth token.
    let mut watcher = StopAfter {
        stop_token: reqs.iter().zip(&alone).map(|(r, t)| (r.id, t[3])).collect(),
        finished: Vec::new(),
    };
    let config = SchedulerConfig {
        max_running: 3,
        max_batched_tokens: 64,
        max_model_len: 128,
    };
    let mut paged = PagedKvCache::new(shape, 4, 64, &Device::Cpu).unwrap();
    let run =
        effbench_kvcache::serve_watched(&model, &mut paged, reqs.clone(), &config, &mut watcher)
            .unwrap();
    for (o, full) in run.outcomes.iter().zip(&alone) {
        let cut = full.iter().position(|&t| t == full[3]).unwrap() + 1;
        assert_eq!(o.tokens, full[..cut], "request {}", o.id);
    }
    let mut heard: Vec<u64> = watcher.finished.iter().map(|f| f.0).collect();
    heard.sort();
    assert_eq!(heard, reqs.iter().map(|r| r.id).collect::<Vec<_>>());
    for (id, tokens) in &watcher.finished {
        let o = run.outcomes.iter().find(|o| o.id == *id).unwrap();
        assert_eq!(&o.tokens, tokens);
    }
    assert_eq!(
        paged.free_blocks(),
        64,
        "stopped requests give their blocks back"
    );
}

/// Asks for each output token's log-probability.
struct KeepLogprobs;

impl effbench_kvcache::Watcher for KeepLogprobs {
    fn token_logprobs(&self) -> bool {
        true
    }
}

#[test]
fn kept_token_logprobs_are_the_chosen_tokens_under_one_pass_over_the_whole_sequence() {
    let model = tiny_model();
    let shape = KvShape::of(model.config());
    let reqs = requests();
    let config = SchedulerConfig {
        max_running: 8,
        max_batched_tokens: 64,
        max_model_len: 128,
    };
    // The budget of the preemption test: recomputed sequences must keep the log-probabilities
    // of the tokens they had already produced, and add one per new token only.
    let mut paged = PagedKvCache::new(shape, 4, 16, &Device::Cpu).unwrap();
    let run = effbench_kvcache::serve_watched(
        &model,
        &mut paged,
        reqs.clone(),
        &config,
        &mut KeepLogprobs,
    )
    .unwrap();
    assert!(run.preemptions > 0, "the budget should force preemption");
    for (o, r) in run.outcomes.iter().zip(&reqs) {
        assert_eq!(o.token_logprobs.len(), o.tokens.len(), "request {}", o.id);
        // Every output token but the last, fed after the prompt in one pass: the row before
        // each output token is the distribution it was chosen from.
        let mut cache = ContiguousKvCache::new(shape, 128, &Device::Cpu);
        let mut seq = r.prompt.clone();
        seq.extend(&o.tokens[..o.tokens.len() - 1]);
        let out = model
            .forward(&[SeqChunk::new(1, seq, LogitsFor::All)], &mut cache)
            .unwrap();
        let rows = logits_rows(out.per_chunk[0].as_ref().unwrap()).unwrap();
        for (i, (&token, &lp)) in o.tokens.iter().zip(&o.token_logprobs).enumerate() {
            let row = log_softmax(&rows[r.prompt.len() - 1 + i]);
            assert!(
                (lp - row[token as usize]).abs() < 1e-4,
                "request {} token {i}: {lp} against {}",
                o.id,
                row[token as usize]
            );
            // Greedy: the chosen token is the most likely one.
            assert!(row.iter().all(|&x| x <= row[token as usize] + 1e-4));
        }
    }
    // Serving benchmarks do not ask, and pay nothing for them.
    let mut paged = PagedKvCache::new(shape, 4, 64, &Device::Cpu).unwrap();
    let plain = serve(&model, &mut paged, reqs, &config).unwrap();
    assert!(plain.outcomes.iter().all(|o| o.token_logprobs.is_empty()));
}

#[test]
fn requests_forked_from_a_shared_prefix_make_the_tokens_they_make_alone() {
    let model = tiny_model();
    let shape = KvShape::of(model.config());
    let prefix: Vec<u32> = (0..21u32).map(|t| (t * 29 + 3) % 96).collect();
    let mut reqs: Vec<Request> = requests();
    for r in &mut reqs {
        let mut prompt = prefix.clone();
        prompt.extend(&r.prompt);
        r.prompt = prompt;
        r.forked_from = Some(effbench_kvcache::SharedPrefix {
            seq: 999,
            len: prefix.len(),
        });
    }
    let want: Vec<Vec<u32>> = reqs
        .iter()
        .map(|r| {
            let mut plain = r.clone();
            plain.forked_from = None;
            alone(&model, &plain)
        })
        .collect();
    // Blocks of 4 tokens, 40 of them: the prefix's 6 stay shared while the requests preempt
    // each other, and every preempted request forks the prefix again on readmission.
    let mut paged = PagedKvCache::new(shape, 4, 40, &Device::Cpu).unwrap();
    model
        .forward(
            &[effbench_core::SeqChunk::new(
                999,
                prefix.clone(),
                effbench_core::LogitsFor::None,
            )],
            &mut paged,
        )
        .unwrap();
    let config = SchedulerConfig {
        max_running: 8,
        max_batched_tokens: 64,
        max_model_len: 128,
    };
    let run = serve(&model, &mut paged, reqs.clone(), &config).unwrap();
    assert!(run.preemptions > 0, "the budget should force preemption");
    for (o, w) in run.outcomes.iter().zip(&want) {
        assert!(o.refused.is_none(), "{:?}", o.refused);
        assert_eq!(&o.tokens, w, "request {}", o.id);
    }
    assert_eq!(
        paged.seq_len(999),
        prefix.len(),
        "the prefix is left as it was"
    );
    paged.remove(999);
    assert_eq!(paged.free_blocks(), 40);

    // A prefix as long as the prompt leaves nothing to run: refused, not run from a stale fork.
    let mut whole = reqs[0].clone();
    whole.forked_from = Some(effbench_kvcache::SharedPrefix {
        seq: 999,
        len: whole.prompt.len(),
    });
    let mut contiguous = ContiguousKvCache::new(shape, 128, &Device::Cpu);
    let run = serve(&model, &mut contiguous, vec![whole], &config).unwrap();
    assert!(run.outcomes[0]
        .refused
        .as_deref()
        .unwrap()
        .contains("shared prefix"));
}
