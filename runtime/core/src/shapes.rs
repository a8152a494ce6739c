//! Published model shapes with random weights made on the target device, for speed at sizes no
//! checkpoint on hand has (an 8B Llama on a GPU). A forward pass costs the same whatever the
//! values, so decode speed at a shape needs only its tensors; every report of such a run must
//! say the weights are synthetic, and no quality figure may come from one.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};

use crate::config::{Architecture, ModelConfig, RopeStyle};
use crate::error::{CoreError, Result};
use crate::linear::SourceTensor;
use crate::source::TensorMapSource;

/// A named shape and where its numbers come from.
pub struct KnownShape {
    pub name: &'static str,
    /// The published checkpoint whose `config.json` gives the shape.
    pub from: &'static str,
    pub config: ModelConfig,
}

/// The fields every shape here shares; each shape overrides its sizes.
fn base(architecture: Architecture) -> ModelConfig {
    ModelConfig {
        architecture,
        hidden_size: 0,
        intermediate_size: 0,
        num_layers: 0,
        num_heads: 0,
        num_kv_heads: 0,
        head_dim: 0,
        vocab_size: 0,
        rms_norm_eps: 1e-5,
        rope_theta: 10_000.0,
        rope_scaling: None,
        rope_style: RopeStyle::Halves,
        max_position_embeddings: 32_768,
        tie_word_embeddings: false,
        qkv_bias: architecture == Architecture::Qwen2,
        block: Default::default(),
    }
}

/// Every shape `--synthetic` accepts.
pub fn known_shapes() -> Vec<KnownShape> {
    use Architecture::{Llama, Qwen2};
    vec![
        KnownShape {
            name: "llama-3.1-8b",
            from: "meta-llama/Llama-3.1-8B",
            config: ModelConfig {
                hidden_size: 4096,
                intermediate_size: 14336,
                num_layers: 32,
                num_heads: 32,
                num_kv_heads: 8,
                head_dim: 128,
                vocab_size: 128_256,
                rope_theta: 500_000.0,
                ..base(Llama)
            },
        },
        KnownShape {
            name: "qwen2.5-1.5b",
            from: "Qwen/Qwen2.5-1.5B",
            config: ModelConfig {
                hidden_size: 1536,
                intermediate_size: 8960,
                num_layers: 28,
                num_heads: 12,
                num_kv_heads: 2,
                head_dim: 128,
                vocab_size: 151_936,
                rope_theta: 1_000_000.0,
                tie_word_embeddings: true,
                ..base(Qwen2)
            },
        },
        KnownShape {
            name: "qwen2.5-0.5b",
            from: "Qwen/Qwen2.5-0.5B",
            config: ModelConfig {
                hidden_size: 896,
                intermediate_size: 4864,
                num_layers: 24,
                num_heads: 14,
                num_kv_heads: 2,
                head_dim: 64,
                vocab_size: 151_936,
                rope_theta: 1_000_000.0,
                tie_word_embeddings: true,
                ..base(Qwen2)
            },
        },
        KnownShape {
            name: "smollm2-135m",
            from: "HuggingFaceTB/SmolLM2-135M",
            config: ModelConfig {
                hidden_size: 576,
                intermediate_size: 1536,
                num_layers: 30,
                num_heads: 9,
                num_kv_heads: 3,
                head_dim: 64,
                vocab_size: 49_152,
                rope_theta: 100_000.0,
                tie_word_embeddings: true,
                ..base(Llama)
            },
        },
    ]
}

/// The shape called `name`, or an error listing the known ones.
pub fn known_shape(name: &str) -> Result<KnownShape> {
    let mut shapes = known_shapes();
    match shapes.iter().position(|s| s.name == name) {
        Some(i) => Ok(shapes.swap_remove(i)),
        None => Err(CoreError::Invalid(format!(
            "unknown model shape `{name}` (known: {})",
            shapes.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// Every tensor of a model of `config`, random normal (std 0.02, as Llama's initialisation) in
/// `dtype` for matrices and f32 ones for norms, made directly on `device` so an 8B model never
/// passes through host memory.
pub fn random_source(
    config: &ModelConfig,
    dtype: DType,
    device: &Device,
) -> Result<TensorMapSource> {
    let (h, ffn) = (config.hidden_size, config.intermediate_size);
    let matrix = |rows: usize, cols: usize| -> Result<SourceTensor> {
        Ok(SourceTensor::Dense(
            Tensor::randn(0f32, 0.02, (rows, cols), device)?.to_dtype(dtype)?,
        ))
    };
    let ones = |n: usize| -> Result<SourceTensor> {
        Ok(SourceTensor::Dense(Tensor::ones(n, DType::F32, device)?))
    };
    let zeros = |n: usize| -> Result<SourceTensor> {
        Ok(SourceTensor::Dense(Tensor::zeros(n, DType::F32, device)?))
    };
    let mut t: HashMap<String, SourceTensor> = HashMap::new();
    t.insert("token_embd.weight".into(), matrix(config.vocab_size, h)?);
    for i in 0..config.num_layers {
        let p = format!("blk.{i}");
        t.insert(format!("{p}.attn_q.weight"), matrix(config.q_dim(), h)?);
        t.insert(format!("{p}.attn_k.weight"), matrix(config.kv_dim(), h)?);
        t.insert(format!("{p}.attn_v.weight"), matrix(config.kv_dim(), h)?);
        t.insert(
            format!("{p}.attn_output.weight"),
            matrix(h, config.q_dim())?,
        );
        t.insert(format!("{p}.ffn_gate.weight"), matrix(ffn, h)?);
        t.insert(format!("{p}.ffn_up.weight"), matrix(ffn, h)?);
        t.insert(format!("{p}.ffn_down.weight"), matrix(h, ffn)?);
        t.insert(format!("{p}.attn_norm.weight"), ones(h)?);
        t.insert(format!("{p}.ffn_norm.weight"), ones(h)?);
        if config.qkv_bias {
            t.insert(format!("{p}.attn_q.bias"), zeros(config.q_dim())?);
            t.insert(format!("{p}.attn_k.bias"), zeros(config.kv_dim())?);
            t.insert(format!("{p}.attn_v.bias"), zeros(config.kv_dim())?);
        }
    }
    t.insert("output_norm.weight".into(), ones(h)?);
    if !config.tie_word_embeddings {
        t.insert("output.weight".into(), matrix(config.vocab_size, h)?);
    }
    Ok(TensorMapSource::new(config.clone(), t))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AsStored, Model};

    #[test]
    fn shapes_are_consistent_and_unknown_names_list_the_known() {
        for s in known_shapes() {
            let c = &s.config;
            assert_eq!(c.head_dim * c.num_heads, c.hidden_size, "{}", s.name);
            assert_eq!(c.num_heads % c.num_kv_heads, 0, "{}", s.name);
        }
        let err = known_shape("llama-9b").err().unwrap().to_string();
        assert!(err.contains("llama-3.1-8b") && !err.contains('\n'), "{err}");
    }

    /// The smallest shape builds and runs: its f16 matrices hold the bytes the shape implies.
    #[test]
    fn a_random_model_of_a_known_shape_loads_and_runs() {
        let s = known_shape("smollm2-135m").unwrap();
        let mut source = random_source(&s.config, DType::F16, &Device::Cpu).unwrap();
        let model = Model::load(&mut source, &AsStored, &Device::Cpu).unwrap();
        let c = &s.config;
        let per_layer = 2 * c.q_dim() * c.hidden_size
            + 2 * c.kv_dim() * c.hidden_size
            + 3 * c.intermediate_size * c.hidden_size;
        assert_eq!(model.weight_bytes().linear, 2 * c.num_layers * per_layer);
        let mut cache = crate::ContiguousKvCache::new(crate::KvShape::of(c), 8, &Device::Cpu);
        let out = model
            .forward(
                &[crate::SeqChunk::new(
                    0,
                    vec![1, 2, 3],
                    crate::LogitsFor::Last,
                )],
                &mut cache,
            )
            .unwrap();
        let logits = out.per_chunk[0].as_ref().unwrap();
        assert_eq!(logits.dims(), &[1, c.vocab_size]);
    }
}
