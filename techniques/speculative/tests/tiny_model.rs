//! Speculative decoding on tiny seeded models (no downloads): exactness of greedy output for
//! every draft kind, consistency of both caches after rollback, and the sampled output's law.

use std::sync::Arc;

use candle_core::Device;
use effbench_core::decode::{DecodingStrategy, GenerateRequest, Greedy, PlainDecoding};
use effbench_core::model::logits_rows;
use effbench_core::testing::{tiny_config, tiny_source};
use effbench_core::{
    Architecture, AsStored, ContiguousKvCache, KvCache, KvShape, LogitsFor, Model, SeqChunk,
};
use effbench_speculative::{Draft, KSchedule, ModelDraft, NgramDraft, Picker, SpeculativeDecoding};

const CAPACITY: usize = 256;

fn tiny(arch: Architecture, seed: u64) -> Arc<Model> {
    let cfg = tiny_config(arch);
    Arc::new(Model::load(&mut tiny_source(&cfg, seed), &AsStored, &Device::Cpu).unwrap())
}

fn cache(model: &Model) -> ContiguousKvCache {
    ContiguousKvCache::new(KvShape::of(model.config()), CAPACITY, &Device::Cpu)
}

fn model_draft(model: &Arc<Model>) -> ModelDraft {
    ModelDraft::new(model.clone(), Box::new(cache(model)))
}

fn request(prompt: &[u32], n: usize, stop: Vec<u32>) -> GenerateRequest {
    GenerateRequest {
        seq: 3,
        prompt: prompt.to_vec(),
        max_new_tokens: n,
        stop_tokens: stop,
        prefill_chunk: 0,
    }
}

/// Prompts with repeats, so n-gram lookup has something to propose.
const PROMPTS: [&[u32]; 4] = [
    &[5, 17, 3, 88, 42, 42, 7, 60, 1],
    &[1, 2, 3, 4, 1, 2, 3, 4, 1, 2],
    &[90, 11, 90, 11, 90],
    &[64, 8, 33, 21, 8, 33, 50, 12, 64, 8],
];

/// Every draft kind: the target's first layer, the target itself, a different model, n-grams.
fn draft(kind: usize, target: &Arc<Model>, other: &Arc<Model>) -> Box<dyn Draft> {
    match kind {
        0 => Box::new(model_draft(&Arc::new(target.first_layers(1).unwrap()))),
        1 => Box::new(model_draft(target)),
        2 => Box::new(model_draft(other)),
        _ => Box::new(NgramDraft::new(3)),
    }
}

fn plain_greedy(target: &Model, req: &GenerateRequest) -> Vec<u32> {
    PlainDecoding::new(Greedy)
        .generate(target, &mut cache(target), req, &mut |_| {})
        .unwrap()
        .tokens
}

#[test]
fn greedy_speculative_output_equals_plain_greedy_for_every_draft() {
    for arch in [Architecture::Llama, Architecture::Qwen2] {
        let target = tiny(arch, 42);
        let other = tiny(arch, 7);
        for prompt in PROMPTS {
            let req = request(prompt, 40, Vec::new());
            let plain = plain_greedy(&target, &req);
            for kind in 0..4 {
                for k in [1, 3, 8] {
                    let d = draft(kind, &target, &other);
                    let name = d.name();
                    let mut spec =
                        SpeculativeDecoding::new(d, Picker::greedy(), KSchedule::Fixed(k));
                    let mut streamed = Vec::new();
                    let out = spec
                        .generate(&target, &mut cache(&target), &req, &mut |t| {
                            streamed.push(t)
                        })
                        .unwrap();
                    assert_eq!(out.tokens, plain, "{arch:?} {name} k={k} prompt {prompt:?}");
                    assert_eq!(streamed, plain);
                    let s = spec.stats();
                    assert_eq!(s.accepted + s.target_steps + 1, plain.len(), "{name} k={k}");
                    if kind == 1 {
                        // The target drafting for itself agrees with itself every time.
                        assert_eq!(s.acceptance_rate(), Some(1.0), "{s:?}");
                    }
                }
            }
        }
    }
}

#[test]
fn adaptive_k_and_stop_tokens_keep_greedy_output() {
    let target = tiny(Architecture::Llama, 42);
    let other = tiny(Architecture::Llama, 7);
    let prompt = PROMPTS[0];
    let full = plain_greedy(&target, &request(prompt, 40, Vec::new()));
    // Stop on the tenth token's value: plain decoding stops at its first occurrence.
    let req = request(prompt, 40, vec![full[9]]);
    let plain = PlainDecoding::new(Greedy)
        .generate(&target, &mut cache(&target), &req, &mut |_| {})
        .unwrap();
    assert!(plain.stopped_on_token);
    for kind in 0..4 {
        let mut target_cache = cache(&target);
        let mut spec = SpeculativeDecoding::new(
            draft(kind, &target, &other),
            Picker::greedy(),
            KSchedule::Adaptive { max: 6 },
        );
        let out = spec
            .generate(&target, &mut target_cache, &req, &mut |_| {})
            .unwrap();
        assert_eq!(out.tokens, plain.tokens, "{}", spec.draft.name());
        assert!(out.stopped_on_token);
        // Like plain decoding, the cache ends holding everything but the last output token.
        assert_eq!(
            target_cache.seq_len(req.seq),
            prompt.len() + out.tokens.len() - 1
        );
    }
}

fn last_logits(model: &Model, cache: &mut dyn KvCache, seq: u64, tokens: &[u32]) -> Vec<f32> {
    let out = model
        .forward(
            &[SeqChunk::new(seq, tokens.to_vec(), LogitsFor::Last)],
            cache,
        )
        .unwrap();
    logits_rows(&out.per_chunk[0].clone().unwrap())
        .unwrap()
        .pop()
        .unwrap()
}

fn assert_close(a: &[f32], b: &[f32], what: &str) {
    let d = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max);
    assert!(d < 1e-4, "{what}: logits differ by {d}");
}

#[test]
fn rollback_leaves_both_caches_equal_to_a_fresh_computation() {
    // Llama: untied embeddings, so the two seeds disagree (tied ones mostly echo the input).
    let target = tiny(Architecture::Llama, 42);
    let other = tiny(Architecture::Llama, 7);
    let prompt = PROMPTS[3];
    let mut target_cache = cache(&target);
    let req = request(prompt, 30, Vec::new());
    // A disagreeing draft under sampling: many rejections, each rolled back in both caches.
    let mut spec = SpeculativeDecoding::new(
        model_draft(&other),
        Picker::sampling(1.0, 1.0, 5),
        KSchedule::Fixed(4),
    );
    let out = spec
        .generate(&target, &mut target_cache, &req, &mut |_| {})
        .unwrap();
    let s = spec.stats().clone();
    assert!(s.accepted > 0 && s.proposed > s.accepted, "{s:?}");
    let mut all = prompt.to_vec();
    all.extend_from_slice(&out.tokens);
    let n = all.len();

    // Target: holds everything but the last token, and continues exactly like a fresh cache.
    assert_eq!(target_cache.seq_len(req.seq), n - 1);
    let used = last_logits(&target, &mut target_cache, req.seq, &all[n - 1..]);
    let want = last_logits(&target, &mut cache(&target), 0, &all);
    assert_close(&used, &want, "target cache after rollback");

    // Draft: holds a prefix of the accepted sequence (nothing rejected), equal to a fresh
    // computation of it.
    let (draft_cache, cached, seq) = spec.draft.cache_state();
    let cached = cached.to_vec();
    assert!(cached.len() >= prompt.len(), "{}", cached.len());
    assert_eq!(&all[..cached.len()], &cached[..]);
    assert_eq!(draft_cache.seq_len(seq), cached.len());
    let used = last_logits(&other, draft_cache, seq, &all[cached.len()..]);
    let want = last_logits(&other, &mut cache(&other), 0, &all);
    assert_close(&used, &want, "draft cache after rollback");
}

/// The target's sampling law of each output position, computed exactly by enumerating every
/// prefix (the vocabulary is 96 tokens and top-p keeps few of them).
fn exact_marginals(target: &Model, picker: &Picker, prompt: &[u32], depth: usize) -> Vec<Vec<f64>> {
    let vocab = target.config().vocab_size;
    let mut marginals = vec![vec![0.0; vocab]; depth];
    let mut frontier: Vec<(Vec<u32>, f64)> = vec![(Vec::new(), 1.0)];
    for marginal in &mut marginals {
        let mut next = Vec::new();
        for (prefix, w) in frontier {
            let mut all = prompt.to_vec();
            all.extend_from_slice(&prefix);
            let row = last_logits(target, &mut cache(target), 0, &all);
            for (t, p) in picker.target_distribution(&row) {
                marginal[t as usize] += w * p as f64;
                let mut longer = prefix.clone();
                longer.push(t);
                next.push((longer, w * p as f64));
            }
        }
        frontier = next;
    }
    marginals
}

/// Pearson's chi-square of observed counts against a law, cells with expectation under 5 pooled,
/// and the 0.999 quantile of its null distribution (Wilson-Hilferty approximation).
fn chi_square(counts: &[usize], law: &[f64]) -> (f64, f64) {
    let n: usize = counts.iter().sum();
    let (mut stat, mut df) = (0.0, 0usize);
    let (mut pooled_obs, mut pooled_exp) = (0.0, 0.0);
    for (&c, &p) in counts.iter().zip(law) {
        let e = p * n as f64;
        if e < 5.0 {
            pooled_obs += c as f64;
            pooled_exp += e;
        } else {
            stat += (c as f64 - e).powi(2) / e;
            df += 1;
        }
    }
    if pooled_exp > 0.0 {
        stat += (pooled_obs - pooled_exp).powi(2) / pooled_exp.max(1e-9);
        df += 1;
    }
    let df = (df - 1) as f64;
    let z = 3.09;
    let h = 2.0 / (9.0 * df);
    (stat, df * (1.0 - h + z * h.sqrt()).powi(3))
}

#[test]
fn sampled_speculative_output_follows_the_target_distribution() {
    let target = tiny(Architecture::Llama, 42);
    let other = tiny(Architecture::Llama, 7);
    let (temperature, top_p) = (0.4, 0.9);
    // The prompt repeats its start followed by the target's greedy continuation, so the n-gram
    // draft proposes tokens the target often, but not always, keeps.
    let start: &[u32] = &[64, 8, 33, 21, 8, 33, 50, 12, 64, 8];
    let mut prompt = start.to_vec();
    prompt.extend(plain_greedy(&target, &request(start, 6, Vec::new())));
    prompt.extend_from_slice(start);
    let law = |m: &Model| exact_marginals(m, &Picker::sampling(temperature, top_p, 0), &prompt, 3);
    let (exact, draft_law) = (law(&target), law(&other));

    let samples = 3000;
    for kind in [2usize, 3] {
        let mut counts = vec![vec![0usize; 96]; 3];
        let mut stats = effbench_speculative::SpecStats::default();
        for seed in 0..samples {
            let mut spec = SpeculativeDecoding::new(
                draft(kind, &target, &other),
                Picker::sampling(temperature, top_p, seed),
                KSchedule::Fixed(2),
            );
            let req = request(&prompt, 4, Vec::new());
            let out = spec
                .generate(&target, &mut cache(&target), &req, &mut |_| {})
                .unwrap();
            stats.add(spec.stats());
            for (pos, &t) in out.tokens.iter().take(3).enumerate() {
                counts[pos][t as usize] += 1;
            }
        }
        // Both branches of the rule ran many times.
        let rejected = stats.proposed - stats.accepted;
        assert!(
            stats.accepted >= 50 && rejected >= 50,
            "kind {kind}: {stats:?}"
        );
        // Position 0 comes from the prefill; 1 and 2 went through the rejection rule.
        for pos in 1..3 {
            let (stat, crit) = chi_square(&counts[pos], &exact[pos]);
            assert!(
                stat < crit,
                "kind {kind} position {pos}: chi-square {stat:.1} against the target's law exceeds {crit:.1}"
            );
            // The test can tell the laws apart: the draft's own law is rejected outright.
            let (stat_draft, _) = chi_square(&counts[pos], &draft_law[pos]);
            assert!(
                stat_draft > 3.0 * crit,
                "kind {kind} position {pos}: {stat_draft:.1}"
            );
        }
    }
}
