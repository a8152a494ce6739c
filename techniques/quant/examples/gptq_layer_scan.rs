//! GPTQ against RTN on single matrices of a real checkpoint, across GPTQ's settings: the
//! relative output error `||X (W - Q)^T||^2 / ||X W^T||^2` on the calibration tokens
//! themselves, on held-out calibration text, and on WikiText-2 (diagnosis only: the published
//! calibration never reads WikiText-2). A method that wins on its own tokens and loses on
//! others is fitting noise in the Hessian.
//!
//! ```sh
//! cargo run --release -p effbench-quant --example gptq_layer_scan -- --bits 2 --group 32 \
//!   --layers blk.5.ffn_down.weight,blk.15.attn_q.weight --damps 0.01,0.1,1
//! ```

use std::collections::BTreeMap;

use candle_core::Device;
use effbench_quant::calib::{calibration_windows, input_key, layer_of, run_calibration};
use effbench_quant::gptq::{gptq, reconstruction_error, GptqOptions, GroupFit};
use effbench_quant::pipeline::load_for_quantization;
use effbench_quant::{rtn, QuantSpec};

fn arg(args: &[String], name: &str, default: &str) -> String {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| default.to_string())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let spec = QuantSpec::new(
        arg(&args, "--bits", "2").parse()?,
        arg(&args, "--group", "32").parse()?,
        args.iter().any(|a| a == "--sym"),
    )?;
    let calib_n: usize = arg(&args, "--calib-sequences", "128").parse()?;
    let calib_len = 128;
    let layers = arg(
        &args,
        "--layers",
        "blk.5.ffn_down.weight,blk.15.attn_q.weight",
    );
    let damps: Vec<f32> = arg(&args, "--damps", "0.01,0.1,1")
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let device = Device::Cpu;
    let path = effbench_assets::cached_path("smollm2-135m-instruct").ok_or("model not cached")?;
    let wiki = effbench_assets::cached_path("wikitext-2").ok_or("wikitext-2 not cached")?;
    let corpus_file = effbench_assets::cache_dir()
        .join("calibration")
        .join("selfgen-v1-smollm2-seed0-128x160.json");
    let docs: Vec<String> = serde_json::from_str(&std::fs::read_to_string(&corpus_file)?)?;
    let (loaded, hessians) = load_for_quantization(&path, &device)?;
    let all = calibration_windows(&loaded, &docs, 144, calib_len)?;
    let text = std::fs::read_to_string(&wiki)?;
    let wiki_tokens = loaded.encode(&text[400_000..500_000])?;
    let wiki_windows: Vec<Vec<u32>> = wiki_tokens
        .chunks_exact(calib_len)
        .take(16)
        .map(<[u32]>::to_vec)
        .collect();
    let names: Vec<&str> = layers.split(',').collect();
    let num_layers = loaded.model.config().num_layers;
    let deepest = names
        .iter()
        .map(|n| layer_of(n, num_layers))
        .max()
        .unwrap_or(0);
    let weights: BTreeMap<String, _> = loaded.model.linear_weights().into_iter().collect();
    let mut sets: Vec<BTreeMap<String, Vec<f32>>> = Vec::new();
    for windows in [&all[..calib_n], &all[128..144], &wiki_windows[..]] {
        hessians.select(0..deepest + 1, false);
        run_calibration(&loaded.model, windows, 8, false)?;
        hessians.clear();
        let mut m = BTreeMap::new();
        for name in &names {
            let key = input_key(name).0;
            m.insert(name.to_string(), hessians.take(&key).ok_or("no input")?.0);
        }
        sets.push(m);
    }
    for name in &names {
        let w = &weights[*name];
        let (n, k) = (w.out_features(), w.in_features());
        let v: Vec<f32> = effbench_quant::pipeline::weight_values(w.as_ref())?;
        let zero = vec![0f32; v.len()];
        let rel = |q: &[f32]| -> Vec<String> {
            sets.iter()
                .map(|s| {
                    let h = &s[*name];
                    format!(
                        "{:.4}",
                        reconstruction_error(h, &v, q, n, k)
                            / reconstruction_error(h, &v, &zero, n, k)
                    )
                })
                .collect()
        };
        println!(
            "{name} {spec} ({calib_n} x {calib_len} calibration tokens); errors on calibration / held-out / WikiText-2"
        );
        println!(
            "  rtn                       {}",
            rel(&rtn(spec, &v, n, k).dequantize()).join(" / ")
        );
        for &damp in &damps {
            let fits: &[GroupFit] = if args.iter().any(|a| a == "--both-fits") {
                &[GroupFit::BlockStart, GroupFit::Updated]
            } else {
                &[GroupFit::BlockStart]
            };
            for &fit in fits {
                let opts = GptqOptions {
                    damp,
                    group_fit: fit,
                    ..GptqOptions::default()
                };
                let q = gptq(spec, &v, n, k, &sets[0][*name], opts)?;
                println!(
                    "  gptq damp {damp:<5} {:<11} {}",
                    format!("{fit:?}"),
                    rel(&q.dequantize()).join(" / ")
                );
            }
        }
    }
    Ok(())
}
