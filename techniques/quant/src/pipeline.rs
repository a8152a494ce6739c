//! Quantizing a whole checkpoint: every linear matrix of the blocks, plus the output head unless
//! the recipe keeps it in f16, from the f16 form of the checkpoint.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use effbench_core::linear::DenseLinear;
use effbench_core::{LinearWeight, LoadedModel};

use crate::calib::{input_key, layer_of, BlockStates, CapturePolicy, Hessians};
use crate::error::{QuantError, Result};
use crate::gptq::{gptq, GptqOptions};
use crate::policy::QuantPolicy;
use crate::rtn::{rtn, QuantizedMatrix};
use crate::spec::{Method, Recipe};

/// Names what GPTQ's output depends on beyond the recipe and calibration text, for cache keys:
/// files quantized before sequential calibration (which collapsed at int2) must not be reused,
/// nor files whose Hessians were summed by another product (`seq2`: [`crate::linalg::gram_acc`];
/// at int2 the last-bit differences flip enough roundings to change the file).
pub const GPTQ_REVISION: &str = "seq2";

/// Calibration and GPTQ settings.
#[derive(Debug, Clone)]
pub struct GptqSettings {
    pub options: GptqOptions,
    /// Sequences per calibration forward pass.
    pub batch: usize,
    /// Calibrate block `i` on the outputs of the already-quantized blocks `0..i` (GPTQ as
    /// published); when false every block sees the f16 model's activations. The model runs a
    /// block at a time over the calibration states: each block twice when sequential (to
    /// record, then quantized), once otherwise.
    pub sequential: bool,
}

impl Default for GptqSettings {
    fn default() -> Self {
        Self {
            options: GptqOptions::default(),
            batch: 8,
            sequential: true,
        }
    }
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct QuantizeReport {
    pub matrices: usize,
    pub calibration_tokens: usize,
    /// Runs of every block over the calibration sequences.
    pub passes: usize,
    pub calibration_seconds: f64,
    pub quantize_seconds: f64,
    pub total_seconds: f64,
}

/// The checkpoint loaded as f16 with Hessian capture, ready for [`quantize_loaded`] (and for
/// tokenizing calibration text with its tokenizer).
pub fn load_for_quantization(path: &Path, device: &Device) -> Result<(LoadedModel, Arc<Hessians>)> {
    let hessians = Arc::new(Hessians::default());
    let policy = CapturePolicy {
        hessians: hessians.clone(),
    };
    let loaded = effbench_core::load(path, &policy, device)?;
    Ok((loaded, hessians))
}

/// Quantizes every matrix of `loaded` (from [`load_for_quantization`]) per `recipe`; GPTQ
/// calibrates on `windows` (token ids in this model's vocabulary).
pub fn quantize_loaded(
    loaded: &LoadedModel,
    hessians: &Hessians,
    recipe: Recipe,
    windows: &[Vec<u32>],
    settings: &GptqSettings,
    progress: &mut dyn FnMut(&str),
) -> Result<(BTreeMap<String, QuantizedMatrix>, QuantizeReport)> {
    let start = Instant::now();
    let model = &loaded.model;
    let num_layers = model.config().num_layers;
    let matrices: Vec<(String, Arc<dyn LinearWeight>)> = model
        .linear_weights()
        .into_iter()
        .filter(|(name, _)| !(recipe.f16_head && name == "output.weight"))
        .collect();
    let mut report = QuantizeReport {
        matrices: matrices.len(),
        ..Default::default()
    };
    let mut out = BTreeMap::new();
    if recipe.method == Method::Rtn {
        for (name, w) in &matrices {
            let (n, k) = (w.out_features(), w.in_features());
            out.insert(
                name.clone(),
                rtn(recipe.spec, &weight_values(w.as_ref())?, n, k),
            );
        }
        report.quantize_seconds = start.elapsed().as_secs_f64();
        report.total_seconds = report.quantize_seconds;
        return Ok((out, report));
    }
    if windows.is_empty() {
        return Err(QuantError::Invalid(
            "GPTQ needs calibration sequences (hint: at least one calibration sequence)".into(),
        ));
    }
    report.calibration_tokens = windows.iter().map(Vec::len).sum();
    report.passes = if settings.sequential { 2 } else { 1 };
    let mut states = BlockStates::embed(model, windows, settings.batch)?;
    for layer in 0..=num_layers {
        let wanted: Vec<&(String, Arc<dyn LinearWeight>)> = matrices
            .iter()
            .filter(|(name, _)| layer_of(name, num_layers) == layer)
            .collect();
        if wanted.is_empty() {
            // The head kept in f16: nothing to calibrate.
            continue;
        }
        let t = Instant::now();
        if layer == num_layers {
            progress(&format!(
                "calibrating the output head on {} tokens",
                report.calibration_tokens
            ));
            states.record_head_input(model, hessians)?;
        } else {
            progress(&format!(
                "calibrating block {} of {num_layers} on {} tokens",
                layer + 1,
                report.calibration_tokens
            ));
            hessians.select(layer..layer + 1, false);
            // f16-input calibration keeps the unquantized block's outputs as the next block's
            // input; sequential calibration reruns the block once quantized, below.
            let ran = states.run_next_block(model, !settings.sequential);
            hessians.clear();
            ran?;
        }
        report.calibration_seconds += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let mut taken: HashMap<String, Vec<f32>> = HashMap::new();
        for (name, w) in wanted {
            let key = input_key(name).0;
            if !taken.contains_key(&key) {
                let (h, _) = hessians.take(&key).ok_or_else(|| QuantError::Gptq {
                    name: name.clone(),
                    detail: format!("no activations were recorded for input `{key}`"),
                })?;
                taken.insert(key.clone(), h);
            }
            let (n, k) = (w.out_features(), w.in_features());
            let q = gptq(
                recipe.spec,
                &weight_values(w.as_ref())?,
                n,
                k,
                &taken[&key],
                settings.options,
            )
            .map_err(|detail| QuantError::Gptq {
                name: name.clone(),
                detail,
            })?;
            if settings.sequential {
                let deq = Tensor::from_vec(q.dequantize(), (n, k), model.device())?;
                hessians.replace(name, Arc::new(DenseLinear::new(deq)?));
            }
            out.insert(name.clone(), q);
            if name.ends_with("ffn_down.weight") || name == "output.weight" {
                progress(&format!(
                    "quantized {name} ({:.1} s so far)",
                    start.elapsed().as_secs_f64()
                ));
            }
        }
        report.quantize_seconds += t.elapsed().as_secs_f64();
        if settings.sequential && layer < num_layers {
            let t = Instant::now();
            states.run_next_block(model, true)?;
            report.calibration_seconds += t.elapsed().as_secs_f64();
        }
    }
    report.total_seconds = start.elapsed().as_secs_f64();
    Ok((out, report))
}

/// The runtime model for quantized matrices: the checkpoint loaded again with them in place.
pub fn load_quantized(
    path: &Path,
    recipe: Recipe,
    matrices: &BTreeMap<String, QuantizedMatrix>,
    device: &Device,
) -> Result<LoadedModel> {
    let mut prebuilt = HashMap::new();
    for (name, q) in matrices {
        prebuilt.insert(name.clone(), q.to_linear(device)?);
    }
    let policy = QuantPolicy::prebuilt(recipe, prebuilt, device);
    Ok(effbench_core::load(path, &policy, device)?)
}

/// A linear layer's weights as row-major f32 values, `out_features x in_features`: what RTN
/// and GPTQ quantize.
pub fn weight_values(w: &dyn LinearWeight) -> Result<Vec<f32>> {
    Ok(w.dequantize()?
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1()?)
}
