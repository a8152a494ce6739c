//! Diagnosis of int2 (or int4) quantization on a real checkpoint: each variant of the method
//! (RTN or GPTQ; sequential or f16-input calibration; where GPTQ fits a group's grid; f16 or
//! quantized head) is quantized in-process and scored on the same things:
//! - WikiText-2 perplexity over the first `--chunks` windows of 512 tokens (llama.cpp's method);
//! - per-layer reconstruction error `||X (W - Q)^T||^2 / ||X W^T||^2` for a few matrices, with
//!   `X` the f16 model's inputs on held-out calibration windows (not those GPTQ saw).
//!
//! ```sh
//! cargo run --release -p effbench-eval --example quant_diagnose -- --bits 2 --group 32 \
//!   --variants rtn,gptq-par-blockstart,gptq-par,gptq-seq,rtn-f16head,gptq-seq-f16head
//! ```
//!
//! Needs the SmolLM2 checkpoint, WikiText-2 and the cached calibration text (written by the
//! first `effbench quantize --method gptq`).

use std::collections::BTreeMap;
use std::time::Instant;

use candle_core::Device;
use effbench_eval::perplexity::{perplexity, PerplexityOptions};
use effbench_quant::calib::{calibration_windows, run_calibration};
use effbench_quant::gptq::{reconstruction_error, GptqOptions, GroupFit};
use effbench_quant::pipeline::{
    load_for_quantization, load_quantized, quantize_loaded, GptqSettings,
};
use effbench_quant::{Method, QuantSpec, Recipe};

/// Per probed matrix: held-out Hessian, f16 values, rows, columns.
type Probed = BTreeMap<String, (Vec<f32>, Vec<f32>, usize, usize)>;

fn arg(args: &[String], name: &str, default: &str) -> String {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| default.to_string())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let bits: u32 = arg(&args, "--bits", "2").parse()?;
    let group: usize = arg(&args, "--group", "32").parse()?;
    let sym = args.iter().any(|a| a == "--sym");
    let chunks: usize = arg(&args, "--chunks", "4").parse()?;
    let calib_n: usize = arg(&args, "--calib-sequences", "128").parse()?;
    let calib_len: usize = arg(&args, "--calib-len", "128").parse()?;
    let model_name = arg(&args, "--model", "smollm2-135m-instruct");
    let variants = arg(
        &args,
        "--variants",
        "rtn,gptq-par-blockstart,gptq-par,gptq-seq",
    );
    let probe = arg(
        &args,
        "--probe",
        "blk.0.attn_k.weight,blk.5.ffn_down.weight,blk.15.attn_q.weight,blk.29.ffn_down.weight",
    );
    let spec = QuantSpec::new(bits, group, sym)?;
    let device = Device::Cpu;

    let path = effbench_assets::cached_path(&model_name).ok_or("model not cached")?;
    let wiki = effbench_assets::cached_path("wikitext-2").ok_or("wikitext-2 not cached")?;
    let corpus_file = effbench_assets::cache_dir()
        .join("calibration")
        .join("selfgen-v1-smollm2-seed0-128x160.json");
    let docs: Vec<String> = serde_json::from_str(&std::fs::read_to_string(&corpus_file)?)?;

    // Calibration windows, and held-out windows after them in the same text.
    let (probe_model, probe_h) = load_for_quantization(&path, &device)?;
    let all = calibration_windows(&probe_model, &docs, calib_n + 16, calib_len)?;
    let (windows, held_out) = all.split_at(calib_n);
    let text = std::fs::read_to_string(&wiki)?;
    let tokens = probe_model.encode(&text[..(chunks * 512 * 8).min(text.len())])?;
    // WikiText-2 windows far past the scored ones: what the model is evaluated on, for
    // diagnosis only (the published calibration never reads WikiText-2).
    let mut cut = 400_000;
    while !text.is_char_boundary(cut) {
        cut += 1;
    }
    let wiki_tokens = probe_model.encode(&text[cut..cut + 800_000])?;
    let wiki_windows: Vec<Vec<u32>> = wiki_tokens
        .chunks_exact(calib_len)
        .map(<[u32]>::to_vec)
        .collect();
    let (wiki_probe, wiki_calib) = wiki_windows.split_at(16);

    // Held-out Hessians (f16 inputs) and the f16 values of the probed matrices.
    let probes: Vec<String> = probe.split(',').map(str::to_string).collect();
    let weights: BTreeMap<String, _> = probe_model.model.linear_weights().into_iter().collect();
    let num_layers = probe_model.model.config().num_layers;
    // Held-out Hessians: self-generated text GPTQ did not see, and WikiText-2.
    let mut held: [Probed; 2] = Default::default();
    for (i, probed) in held.iter_mut().enumerate() {
        probe_h.select(0..num_layers, false);
        let probe_windows = if i == 0 { held_out } else { wiki_probe };
        run_calibration(&probe_model.model, probe_windows, 8, false)?;
        probe_h.clear();
        for name in &probes {
            let key = effbench_quant::calib::input_key(name).0;
            let w = &weights[name];
            let (n, k) = (w.out_features(), w.in_features());
            let v: Vec<f32> = effbench_quant::pipeline::weight_values(w.as_ref())?;
            // q/k/v share one input, recorded once: probe at most one matrix per input.
            let (h, _) = probe_h
                .take(&key)
                .ok_or_else(|| format!("probe {name}: no held-out input {key} (probed twice?)"))?;
            probed.insert(name.clone(), (h, v, n, k));
        }
    }
    for name in &probes {
        let trace = |h: &[f32], k: usize| (0..k).map(|c| h[c * k + c] as f64).sum::<f64>();
        let (h0, _, _, k) = &held[0][name];
        let (h1, ..) = &held[1][name];
        println!(
            "{name}: mean |x|^2 per token, held-out calibration text {:.3e}, WikiText-2 {:.3e} (ratio {:.2})",
            trace(h0, *k),
            trace(h1, *k),
            trace(h0, *k) / trace(h1, *k)
        );
    }
    drop(probe_model);

    for variant in variants.split(',') {
        let parts: Vec<&str> = variant.split('-').collect();
        let method = Method::parse(parts[0])?;
        let f16_head = parts.contains(&"f16head");
        let mut settings = GptqSettings {
            sequential: !parts.contains(&"par"),
            ..GptqSettings::default()
        };
        if parts.contains(&"blockstart") {
            settings.options.group_fit = GroupFit::BlockStart;
        }
        if let Some(d) = parts.iter().find_map(|p| p.strip_prefix("damp")) {
            settings.options = GptqOptions {
                damp: d.parse()?,
                ..settings.options
            };
        }
        let recipe = Recipe {
            method,
            spec,
            f16_head,
        };
        let t = Instant::now();
        let (loaded, hessians) = load_for_quantization(&path, &device)?;
        let calib = if parts.contains(&"wikicalib") {
            &wiki_calib[..calib_n.min(wiki_calib.len())]
        } else {
            windows
        };
        let (matrices, _) =
            quantize_loaded(&loaded, &hessians, recipe, calib, &settings, &mut |_| {})?;
        drop(loaded);
        let qtime = t.elapsed().as_secs_f64();
        let mut errs = Vec::new();
        for (i, label) in ["calib-text", "wikitext"].iter().enumerate() {
            let mut e_s = Vec::new();
            for name in &probes {
                let (h, v, n, k) = &held[i][name];
                let q = matrices[name].dequantize();
                let e = reconstruction_error(h, v, &q, *n, *k);
                let zero = vec![0f32; v.len()];
                let base = reconstruction_error(h, v, &zero, *n, *k);
                e_s.push(format!("{:.4}", e / base));
            }
            errs.push(format!("{label}: {}", e_s.join(" ")));
        }
        let m = load_quantized(&path, recipe, &matrices, &device)?;
        let mut opts = PerplexityOptions::llama_cpp(512);
        opts.max_chunks = Some(chunks);
        opts.bos = m.window_bos();
        let ppl = perplexity(&m.model, &tokens, &opts, |_, _, _| {}, |_, _| {})?;
        println!(
            "{spec} {variant:<28} ppl {:>12.2} ± {:<10.2} quantize {qtime:>6.1} s  rel layer err (f16 inputs; {probe}) {}",
            ppl.perplexity,
            ppl.perplexity_stderr,
            errs.join(" | ")
        );
    }
    Ok(())
}
