//! Quantization on the real SmolLM2-135M-Instruct checkpoint from effbench's cache
//! (`scripts/fetch-test-assets.sh`). Without it these skip, unless EFFBENCH_REQUIRE_ASSETS=1
//! (as in `scripts/test.sh` and CI), where a missing asset fails the test.

use std::collections::BTreeMap;
use std::path::PathBuf;

use candle_core::Device;
use effbench_core::{ContiguousKvCache, KvShape, LoadedModel, LogitsFor, SeqChunk};
use effbench_quant::calib::{calibration_windows, generate_corpus, run_calibration};
use effbench_quant::gptq::{gptq, reconstruction_error, GptqOptions};
use effbench_quant::pipeline::{
    load_for_quantization, quantize_loaded, weight_values, GptqSettings,
};
use effbench_quant::{rtn, QuantPolicy, QuantSpec, Recipe};

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

fn last_logits(m: &LoadedModel, text: &str) -> Vec<f32> {
    let ids = m.encode(text).unwrap();
    let mut cache = ContiguousKvCache::new(KvShape::of(m.model.config()), 64, &Device::Cpu);
    let out = m
        .model
        .forward(&[SeqChunk::new(0, ids, LogitsFor::Last)], &mut cache)
        .unwrap();
    out.per_chunk[0]
        .as_ref()
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

#[test]
fn gptq_reconstructs_real_layers_better_than_rtn() {
    let Some(path) = asset("smollm2-135m-instruct") else {
        return;
    };
    let (loaded, hessians) = load_for_quantization(&path, &Device::Cpu).unwrap();
    // A small self-generated calibration set (the CLI uses 128 x 128 tokens).
    let docs = generate_corpus(&loaded, 8, 80, 1, 8, |_| {}).unwrap();
    let windows = calibration_windows(&loaded, &docs, 8, 64).unwrap();
    hessians.select(0..2, false);
    run_calibration(&loaded.model, &windows, 8, false).unwrap();
    let weights: BTreeMap<String, _> = loaded.model.linear_weights().into_iter().collect();
    for (name, key) in [
        ("blk.0.attn_k.weight", "blk.0.attn_in"),
        ("blk.1.ffn_down.weight", "blk.1.ffn_down"),
    ] {
        let (h, tokens) = hessians.take(key).expect("captured");
        assert_eq!(tokens, 8 * 64);
        let w = &weights[name];
        let (n, k) = (w.out_features(), w.in_features());
        let values: Vec<f32> = weight_values(w.as_ref()).unwrap();
        for spec in [
            QuantSpec::new(4, 128, false).unwrap(),
            QuantSpec::new(2, 32, false).unwrap(),
        ] {
            let g = gptq(spec, &values, n, k, &h, GptqOptions::default()).unwrap();
            let r = rtn(spec, &values, n, k);
            let eg = reconstruction_error(&h, &values, &g.dequantize(), n, k);
            let er = reconstruction_error(&h, &values, &r.dequantize(), n, k);
            eprintln!("{name} {spec}: ||X(W-Q)^T||^2 gptq {eg:.4e} rtn {er:.4e}");
            assert!(eg < 0.9 * er, "{name} {spec}: gptq {eg} not below rtn {er}");
        }
    }
}

#[test]
fn written_file_loads_to_the_same_logits() {
    let Some(path) = asset("smollm2-135m-instruct") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // int2-g32 lives in the packed sidecar; int4-g32-sym is GGML Q4_0 throughout.
    for (technique, sidecar) in [("int2-g32", true), ("int4-g32-sym-f16head", false)] {
        let recipe = Recipe::parse_technique(technique).unwrap().unwrap();
        let (loaded, hessians) = load_for_quantization(&path, &Device::Cpu).unwrap();
        let mut quiet = |_: &str| {};
        let (matrices, _) = quantize_loaded(
            &loaded,
            &hessians,
            recipe,
            &[],
            &GptqSettings::default(),
            &mut quiet,
        )
        .unwrap();
        drop(loaded);
        let out = dir.path().join(format!("{technique}.gguf"));
        effbench_quant::file::write(&path, recipe, &matrices, &out).unwrap();
        assert_eq!(effbench_quant::file::sidecar_path(&out).exists(), sidecar);

        let in_memory =
            effbench_core::load(&path, &QuantPolicy::rtn(recipe, &Device::Cpu), &Device::Cpu)
                .unwrap();
        let (from_file, read_recipe) = effbench_quant::file::load(&out).unwrap();
        assert_eq!(read_recipe, recipe);
        assert_eq!(
            in_memory.model.weight_bytes().linear,
            from_file.model.weight_bytes().linear
        );
        let prompt = "The capital of France is";
        let (a, b) = (
            last_logits(&in_memory, prompt),
            last_logits(&from_file, prompt),
        );
        assert!(a == b, "{technique}: logits differ after the round trip");
        if !sidecar {
            // A pure-GGML file is an ordinary GGUF: the core loader reads it as stored, and
            // llama.cpp's file type says Q4_0.
            let plain = effbench_core::load(&out, &effbench_core::AsStored, &Device::Cpu).unwrap();
            assert_eq!(plain.source_format, "Q4_0");
            assert!(last_logits(&plain, prompt) == a);
        }
    }
}

/// Windows of `len` tokens of WikiText-2 from byte `from` on. The published calibration never
/// reads WikiText-2; these tests do only to get real text without generating it (slow in a
/// debug build), and score on other windows of it.
fn wiki_windows(m: &LoadedModel, from: usize, count: usize, len: usize) -> Option<Vec<Vec<u32>>> {
    let path = asset("wikitext-2")?;
    let text = std::fs::read_to_string(path).unwrap();
    let ids = m.encode(&text[from..from + count * len * 8]).unwrap();
    Some(
        ids.chunks_exact(len)
            .take(count)
            .map(<[u32]>::to_vec)
            .collect(),
    )
}

#[test]
fn sequential_calibration_runs_later_blocks_on_the_quantized_ones() {
    let Some(path) = asset("smollm2-135m-instruct") else {
        return;
    };
    let (loaded, hessians) = load_for_quantization(&path, &Device::Cpu).unwrap();
    let Some(windows) = wiki_windows(&loaded, 400_000, 4, 64) else {
        return;
    };
    let block1_input = || {
        hessians.select(1..2, false);
        run_calibration(&loaded.model, &windows, 4, false).unwrap();
        hessians.clear();
        hessians.take("blk.1.attn_in").unwrap().0
    };
    let before = block1_input();
    let spec = QuantSpec::new(2, 32, false).unwrap();
    for (name, w) in loaded.model.linear_weights() {
        if name.starts_with("blk.0.") {
            let (n, k) = (w.out_features(), w.in_features());
            let v: Vec<f32> = weight_values(w.as_ref()).unwrap();
            let q = candle_core::Tensor::from_vec(
                rtn(spec, &v, n, k).dequantize(),
                (n, k),
                &Device::Cpu,
            )
            .unwrap();
            hessians.replace(
                &name,
                std::sync::Arc::new(effbench_core::linear::DenseLinear::new(q).unwrap()),
            );
        }
    }
    let after = block1_input();
    let diff: f64 = before
        .iter()
        .zip(&after)
        .map(|(a, b)| ((a - b) as f64).powi(2))
        .sum();
    let norm: f64 = before.iter().map(|a| (*a as f64).powi(2)).sum();
    assert!(
        diff > 1e-4 * norm,
        "block 1's input did not change when block 0 was quantized: {diff} vs {norm}"
    );
}

/// The pipeline's sequential mode feeds block 1 the outputs of the quantized block 0: on those
/// inputs its block-1 matrices reconstruct better than the ones calibrated on the f16 model's
/// activations (the mode that made int2 GPTQ worse than RTN end to end).
#[test]
fn sequential_gptq_fits_the_inputs_the_quantized_model_sees() {
    let Some(path) = asset("smollm2-135m-instruct") else {
        return;
    };
    let recipe = Recipe::parse_technique("int2-gptq-g32-f16head")
        .unwrap()
        .unwrap();
    let mut quiet = |_: &str| {};
    let mut results = Vec::new();
    for sequential in [false, true] {
        let (full, hessians) = load_for_quantization(&path, &Device::Cpu).unwrap();
        let Some(windows) = wiki_windows(&full, 400_000, 8, 128) else {
            return;
        };
        // The first two blocks are enough, and keep the debug build's GPTQ short.
        let loaded = LoadedModel {
            model: full.model.first_layers(2).unwrap(),
            tokenizer: full.tokenizer.clone(),
            special: full.special.clone(),
            path: full.path.clone(),
            format: full.format,
            source_format: full.source_format.clone(),
        };
        let settings = GptqSettings {
            sequential,
            ..GptqSettings::default()
        };
        let (matrices, _) =
            quantize_loaded(&loaded, &hessians, recipe, &windows, &settings, &mut quiet).unwrap();
        results.push((loaded, hessians, windows, matrices));
    }
    // Block 1's inputs with block 0 quantized: the sequential run left its quantized block 0
    // in place.
    let (loaded, hessians, windows, seq) = &results[1];
    hessians.select(1..2, false);
    run_calibration(&loaded.model, windows, 8, false).unwrap();
    hessians.clear();
    let h = hessians.take("blk.1.ffn_in").unwrap().0;
    let par = &results[0].3;
    let weights: BTreeMap<String, _> = loaded.model.linear_weights().into_iter().collect();
    let w = &weights["blk.1.ffn_up.weight"];
    let (n, k) = (w.out_features(), w.in_features());
    let v: Vec<f32> = weight_values(w.as_ref()).unwrap();
    let name = "blk.1.ffn_up.weight";
    let e_seq = reconstruction_error(&h, &v, &seq[name].dequantize(), n, k);
    let e_par = reconstruction_error(&h, &v, &par[name].dequantize(), n, k);
    eprintln!("{name} on quantized inputs: sequential {e_seq:.4e}, f16-input {e_par:.4e}");
    assert!(
        e_seq < 0.95 * e_par,
        "sequential {e_seq} not below f16-input calibration {e_par}"
    );
}
