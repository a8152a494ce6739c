//! Speculative decoding on real checkpoints from effbench's cache (`scripts/fetch-test-assets.sh`).
//! Without them these skip, unless EFFBENCH_REQUIRE_ASSETS=1 (as in `scripts/test.sh` and CI),
//! where a missing asset fails the test.

use std::path::PathBuf;
use std::sync::Arc;

use candle_core::{DType, Device};
use effbench_core::decode::{DecodingStrategy, GenerateRequest, Greedy, PlainDecoding};
use effbench_core::model::logits_rows;
use effbench_core::{
    AsStored, ContiguousKvCache, Dequantize, KvShape, LoadedModel, LogitsFor, Model, SeqChunk,
};

use effbench_speculative::{
    check_same_tokenizer, prompts, Draft, KSchedule, ModelDraft, NgramDraft, Picker,
    SpeculativeDecoding,
};

fn asset(name: &str) -> Option<PathBuf> {
    if let Some(p) = effbench_assets::cached_path(name) {
        return Some(p);
    }
    if std::env::var("EFFBENCH_REQUIRE_ASSETS").as_deref() == Ok("1") {
        panic!("asset `{name}` is not cached (run scripts/fetch-test-assets.sh)");
    }
    eprintln!("skipping: asset `{name}` not cached (run scripts/fetch-test-assets.sh)");
    None
}

fn cache(model: &Model, capacity: usize) -> ContiguousKvCache {
    ContiguousKvCache::new(KvShape::of(model.config()), capacity, &Device::Cpu)
}

fn chat_prompt(m: &LoadedModel, p: &prompts::Prompt) -> Vec<u32> {
    m.encode(&prompts::chat_text(&m.tokenizer, &p.prompt))
        .unwrap()
}

/// One greedy generation: (prompt, plain output, speculative output, prompt id and draft).
type Run = (Vec<u32>, Vec<u32>, Vec<u32>, String);

/// Greedy output of every draft kind against plain greedy decoding, on chat prompts of each type.
fn greedy_runs(m: &LoadedModel, n: usize) -> Vec<Run> {
    let layers = m.model.config().num_layers;
    let all = prompts::parse(prompts::BUILTIN).unwrap();
    let kinds: Vec<String> = prompts::KINDS.iter().map(|k| k.to_string()).collect();
    let mut runs = Vec::new();
    for p in prompts::select(&all, &kinds, 1).unwrap() {
        let prompt = chat_prompt(m, &p);
        let capacity = prompt.len() + n + 8;
        let req = GenerateRequest {
            seq: 0,
            prompt: prompt.clone(),
            max_new_tokens: n,
            stop_tokens: m.stop_tokens(),
            prefill_chunk: 0,
        };
        let plain = PlainDecoding::new(Greedy)
            .generate(&m.model, &mut cache(&m.model, capacity), &req, &mut |_| {})
            .unwrap()
            .tokens;
        assert!(plain.len() >= 8, "{}: {plain:?}", p.id);
        // The first 8 of 30 layers, the whole model as its own draft, and prompt lookup.
        let drafts: Vec<(Box<dyn Draft>, usize)> = vec![
            (self_draft(&m.model, 8, capacity), 4),
            (self_draft(&m.model, layers, capacity), 3),
            (Box::new(NgramDraft::new(3)), 4),
        ];
        for (draft, k) in drafts {
            let name = format!("{} with {}", p.id, draft.name());
            let mut spec = SpeculativeDecoding::new(draft, Picker::greedy(), KSchedule::Fixed(k));
            let out = spec
                .generate(&m.model, &mut cache(&m.model, capacity), &req, &mut |_| {})
                .unwrap();
            let rate = spec.stats().acceptance_rate().unwrap_or(0.0);
            let name = if name.contains(&format!("first {layers} layers")) {
                format!("{name} (self, acceptance {rate})")
            } else {
                name
            };
            runs.push((prompt.clone(), plain.clone(), out.tokens, name));
        }
    }
    runs
}

/// With dense weights, scoring k tokens in one pass changes logits only by float noise
/// (~5e-5 on SmolLM2), so speculative greedy output is plain greedy output, token for token.
#[test]
fn smollm2_speculative_greedy_equals_plain_greedy_for_every_draft() {
    let Some(path) = asset("smollm2-135m-instruct") else {
        return;
    };
    let m = effbench_core::load(&path, &Dequantize(DType::F32), &Device::Cpu).unwrap();
    for (_, plain, spec, name) in greedy_runs(&m, 24) {
        assert_eq!(
            m.decode(&spec).unwrap(),
            m.decode(&plain).unwrap(),
            "{name}"
        );
        assert_eq!(spec, plain, "{name}");
    }
}

/// Quantized weights too: the kernels give each activation row the same integer products and
/// summation order however many rows share a call, and attention runs short chunks row by
/// row, so a verification pass scores each token exactly as a one-token pass does and
/// speculative greedy output is plain greedy output, token for token.
#[test]
fn smollm2_q4_1_speculative_greedy_equals_plain_greedy_for_every_draft() {
    let Some(path) = asset("smollm2-135m-instruct") else {
        return;
    };
    let m = effbench_core::load(&path, &AsStored, &Device::Cpu).unwrap();
    for (_, plain, spec, name) in greedy_runs(&m, 24) {
        assert_eq!(spec, plain, "{name}");
    }
}

/// The logits of a chunk of up to 16 tokens, row by row, against one-token passes over the same
/// cache contents: bit for bit, on a K-quant checkpoint (Q4_K and Q6_K blocks).
#[test]
fn qwen_q4_k_m_chunk_rows_equal_one_token_passes() {
    let Some(path) = asset("qwen2.5-coder-1.5b-instruct") else {
        return;
    };
    let m = effbench_core::load(&path, &AsStored, &Device::Cpu).unwrap();
    let prompt = m.encode("def fibonacci(n):\n    ").unwrap();
    let next = m
        .encode("if n < 2:\n        return n\n    return fibonacci(n - 1)")
        .unwrap();
    for k in [2, 5, 8, 9, 16] {
        let chunk = &next[..k.min(next.len())];
        let capacity = prompt.len() + chunk.len() + 1;
        let mut c = cache(&m.model, capacity);
        m.model
            .forward(&[SeqChunk::new(0, prompt.clone(), LogitsFor::None)], &mut c)
            .unwrap();
        let out = m
            .model
            .forward(&[SeqChunk::new(0, chunk.to_vec(), LogitsFor::All)], &mut c)
            .unwrap();
        let together = logits_rows(&out.per_chunk[0].clone().unwrap()).unwrap();
        let mut c = cache(&m.model, capacity);
        m.model
            .forward(&[SeqChunk::new(0, prompt.clone(), LogitsFor::None)], &mut c)
            .unwrap();
        for (i, &t) in chunk.iter().enumerate() {
            let out = m
                .model
                .forward(&[SeqChunk::new(0, vec![t], LogitsFor::Last)], &mut c)
                .unwrap();
            let alone = logits_rows(&out.per_chunk[0].clone().unwrap())
                .unwrap()
                .pop()
                .unwrap();
            assert!(
                together[i] == alone,
                "k = {}: row {i} differs from its one-token pass (max |diff| {})",
                chunk.len(),
                together[i]
                    .iter()
                    .zip(&alone)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0f32, f32::max)
            );
        }
    }
}

fn self_draft(target: &Model, layers: usize, capacity: usize) -> Box<dyn Draft> {
    let model = Arc::new(target.first_layers(layers).unwrap());
    let c = cache(&model, capacity);
    Box::new(ModelDraft::new(model, Box::new(c)))
}

#[test]
fn a_draft_with_another_tokenizer_is_refused_and_a_sibling_accepted() {
    let (Some(smol), Some(q05), Some(q15)) = (
        asset("smollm2-135m-instruct"),
        asset("qwen2.5-coder-0.5b-instruct"),
        asset("qwen2.5-coder-1.5b-instruct"),
    ) else {
        return;
    };
    let (smol, q05, q15) = (
        effbench_core::loader::tokenizer_of(&smol).unwrap(),
        effbench_core::loader::tokenizer_of(&q05).unwrap(),
        effbench_core::loader::tokenizer_of(&q15).unwrap(),
    );
    check_same_tokenizer(&q15, &q05).expect("Qwen2.5-Coder 0.5B shares the 1.5B's tokenizer");
    let err = check_same_tokenizer(&q15, &smol).unwrap_err().to_string();
    assert!(err.contains("differs from the target's"), "{err}");
    assert!(!err.contains('\n'), "one line: {err}");
    assert!(check_same_tokenizer(&smol, &q15).is_err());
}
