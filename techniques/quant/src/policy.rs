//! The quantized model as a [`WeightPolicy`]: each block matrix (and the output head, unless
//! kept in f16) becomes int4/int2 as it loads; embeddings stay f16.

use std::collections::HashMap;
use std::sync::Arc;

use candle_core::{DType, Device};
use effbench_core::linear::{Dequantize, SourceTensor};
use effbench_core::{LinearWeight, WeightPolicy, WeightRole};

use crate::rtn::rtn;
use crate::spec::{Method, Recipe};

/// The f16 form of a checkpoint matrix (the starting point of every method), as f32 values.
pub fn f16_values(source: &SourceTensor) -> effbench_core::Result<(Vec<f32>, usize, usize)> {
    let t = match source {
        SourceTensor::Ggml(q) => q.dequantize_f16(&q.device())?,
        SourceTensor::Dense(t) => t.to_dtype(DType::F16)?,
    };
    let (n, k) = t.dims2()?;
    let v = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
    Ok((v, n, k))
}

#[derive(Debug)]
pub struct QuantPolicy {
    recipe: Recipe,
    /// Matrices quantized beforehand (by GPTQ, or read from a file), by canonical name.
    prebuilt: HashMap<String, Arc<dyn LinearWeight>>,
    device: Device,
}

impl QuantPolicy {
    /// Round to nearest as each matrix loads.
    pub fn rtn(recipe: Recipe, device: &Device) -> Self {
        Self {
            recipe,
            prebuilt: HashMap::new(),
            device: device.clone(),
        }
    }

    /// Matrices already quantized; any other block matrix is an error (a file or GPTQ run that
    /// missed one should not silently fall back to another method).
    pub fn prebuilt(
        recipe: Recipe,
        prebuilt: HashMap<String, Arc<dyn LinearWeight>>,
        device: &Device,
    ) -> Self {
        Self {
            recipe,
            prebuilt,
            device: device.clone(),
        }
    }

    pub fn recipe(&self) -> Recipe {
        self.recipe
    }

    /// e.g. "int4-g128-asym GPTQ, f16 head"; on a GPU, where the format has no kernel there,
    /// "int4-g128-asym GPTQ (int4 storage, f16 compute), f16 head".
    pub fn describe_recipe(&self) -> String {
        format!(
            "{} {}{}{}",
            self.recipe.spec,
            self.recipe.method.name().to_uppercase(),
            crate::linear::compute_note(self.recipe.spec, &self.device)
                .map_or_else(String::new, |n| format!(" ({n})")),
            if self.recipe.f16_head {
                ", f16 head"
            } else {
                ""
            }
        )
    }
}

impl WeightPolicy for QuantPolicy {
    fn build(
        &self,
        name: &str,
        role: WeightRole,
        source: SourceTensor,
    ) -> effbench_core::Result<Arc<dyn LinearWeight>> {
        if let Some(w) = self.prebuilt.get(name) {
            return Ok(w.clone());
        }
        if role == WeightRole::OutputHead && self.recipe.f16_head {
            return Dequantize(DType::F16).build(name, role, source);
        }
        if self.recipe.method != Method::Rtn || !self.prebuilt.is_empty() {
            return Err(effbench_core::CoreError::Invalid(format!(
                "no {} result for `{name}` (hint: delete the quantized file and quantize again)",
                self.recipe.canonical()
            )));
        }
        let (w, n, k) = f16_values(&source)?;
        Ok(rtn(self.recipe.spec, &w, n, k).to_linear(&self.device)?)
    }

    fn embedding_dtype(&self) -> Option<DType> {
        Some(DType::F16)
    }

    fn describe(&self, source_format: &str) -> String {
        format!(
            "{}, from f16 dequantized from {source_format}",
            self.describe_recipe()
        )
    }
}
