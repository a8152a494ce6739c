//! Qwen2.5-Coder-0.5B-Instruct as stored: its Q4_K_M file holds most matrices as Q5_0 (with
//! Q8_0, Q4_K and Q6_K), so this is the end-to-end check of the Q5 kernels on real weights.
//! Last-token logits on our kernels are compared with candle's kernels on the same bytes and
//! with the model dequantized to f32, and the greedy continuation of a code prompt must be code.
//!
//! Both kernel paths quantize activations to 8 bits per block of 32 (ggml's Q8_0/Q8_1 rule;
//! candle also rounds the block scales to f16), so neither matches f32 exactly. That rounding is
//! the only error either adds to the same weights, so candle's distance from f32 measures what
//! 8-bit activations cost this model, and ours must be of the same size. A misread block (a
//! wrong `qh` bit, a wrong offset) moves logits by whole units, far beyond that.
//!
//! candle's path is chosen with `EFFBENCH_CANDLE_KERNELS`, which `GgmlLinear` reads at load
//! time. Setting a variable races with any thread reading the environment, so this file holds
//! one test, and its own test binary nothing else.
//!
//! Reads the model from effbench's cache (`scripts/fetch-test-assets.sh`). Without it the test
//! skips, unless EFFBENCH_REQUIRE_ASSETS=1 (as in `scripts/test.sh` and CI), where it fails.

use std::sync::Arc;

use candle_core::quantized::{gguf_file, GgmlDType};
use candle_core::{DType, Device};
use effbench_core::decode::{DecodingStrategy, GenerateRequest, Greedy, PlainDecoding};
use effbench_core::linear::{GgmlLinear, CANDLE_ONLY_ENV};
use effbench_core::{
    AsStored, ContiguousKvCache, KvShape, LoadedModel, LogitsFor, SeqChunk, WeightPolicy,
};

const NAME: &str = "qwen2.5-coder-0.5b-instruct";
const PROMPT: &str = "def fibonacci(n):";

fn load(policy: &dyn WeightPolicy, candle_kernels: bool) -> LoadedModel {
    let path = effbench_assets::cached_path(NAME).expect("checked by the caller");
    if candle_kernels {
        std::env::set_var(CANDLE_ONLY_ENV, "1");
    }
    let loaded = effbench_core::load(&path, policy, &Device::Cpu);
    std::env::remove_var(CANDLE_ONLY_ENV);
    loaded.expect("load Qwen2.5-Coder-0.5B")
}

fn last_logits(m: &LoadedModel, prompt: &[u32]) -> Vec<f32> {
    let mut cache = ContiguousKvCache::new(KvShape::of(m.model.config()), 64, &Device::Cpu);
    let out = m
        .model
        .forward(
            &[SeqChunk::new(0, prompt.to_vec(), LogitsFor::Last)],
            &mut cache,
        )
        .unwrap();
    let logits = out.per_chunk[0].as_ref().unwrap();
    logits.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

fn greedy(m: &LoadedModel, prompt: &[u32], tokens: usize) -> String {
    let mut cache = ContiguousKvCache::new(KvShape::of(m.model.config()), 128, &Device::Cpu);
    let request = GenerateRequest {
        seq: 0,
        prompt: prompt.to_vec(),
        max_new_tokens: tokens,
        stop_tokens: m.stop_tokens(),
        prefill_chunk: 0,
    };
    let out = PlainDecoding::new(Greedy)
        .generate(&m.model, &mut cache, &request, &mut |_| {})
        .unwrap();
    m.decode(&out.tokens).unwrap()
}

/// Root-mean-square difference of two logit vectors.
fn rms_diff(a: &[f32], b: &[f32]) -> f64 {
    let sum: f64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 - y as f64).powi(2))
        .sum();
    (sum / a.len() as f64).sqrt()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()))
}

fn argmax(v: &[f32]) -> usize {
    effbench_core::model::argmax(v)
}

#[test]
fn qwen05_q5_logits_match_candle_and_f32_and_greedy_code_is_sensible() {
    let Some(path) = effbench_assets::cached_path_or_skip(NAME) else {
        return;
    };
    // The comparison below means something only if the Q5_0 matrices take our kernels.
    let mut file = std::fs::File::open(&path).unwrap();
    let content = gguf_file::Content::read(&mut file).unwrap();
    let attn_q = content
        .tensor(&mut file, "blk.0.attn_q.weight", &Device::Cpu)
        .unwrap();
    assert_eq!(attn_q.dtype(), GgmlDType::Q5_0);
    assert!(GgmlLinear::new(Arc::new(attn_q)).unwrap().uses_own_kernel());

    let ours = load(&AsStored, false);
    let prompt = ours.encode(PROMPT).unwrap();
    let formats: Vec<String> = ours
        .model
        .linear_weights()
        .iter()
        .map(|(_, w)| w.format())
        .collect();
    let q5 = formats.iter().filter(|f| *f == "Q5_0").count();
    assert!(q5 >= 100, "expected most matrices as Q5_0: {formats:?}");
    let logits_ours = last_logits(&ours, &prompt);
    let text = greedy(&ours, &prompt, 40);
    eprintln!("ours, greedy: {PROMPT}{text}");
    drop(ours);

    let candle = load(&AsStored, true);
    let logits_candle = last_logits(&candle, &prompt);
    drop(candle);

    let dense = load(&effbench_core::Dequantize(DType::F32), false);
    let logits_f32 = last_logits(&dense, &prompt);
    drop(dense);

    let ours_f32 = rms_diff(&logits_ours, &logits_f32);
    let candle_f32 = rms_diff(&logits_candle, &logits_f32);
    let ours_candle = rms_diff(&logits_ours, &logits_candle);
    let spread = rms_diff(&logits_f32, &vec![0.0; logits_f32.len()]);
    eprintln!(
        "rms logit differences: ours-f32 {ours_f32:.4}, candle-f32 {candle_f32:.4}, \
         ours-candle {ours_candle:.4} (rms logit {spread:.2}); max |ours - f32| {:.4}, \
         max |candle - f32| {:.4}",
        max_diff(&logits_ours, &logits_f32),
        max_diff(&logits_candle, &logits_f32),
    );

    // The same next token as both references.
    assert_eq!(argmax(&logits_ours), argmax(&logits_f32), "ours vs f32");
    assert_eq!(
        argmax(&logits_ours),
        argmax(&logits_candle),
        "ours vs candle"
    );
    // 8-bit activations cost ours about what they cost candle; a factor 2 leaves room for the
    // two rounding patterns to fall differently.
    assert!(
        ours_f32 <= 2.0 * candle_f32,
        "ours is {ours_f32} from f32, candle {candle_f32}"
    );
    assert!(
        ours_candle <= 2.0 * candle_f32,
        "ours is {ours_candle} from candle, which is {candle_f32} from f32"
    );

    // A code model continuing a function header writes its body: here the base cases first
    // (`if n <= 0: ... return 0`).
    assert!(
        text.starts_with("\n    ") && text.contains("if n") && text.contains("return"),
        "greedy continuation: {text:?}"
    );
}
