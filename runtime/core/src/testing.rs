//! Tiny models built from a fixed seed, for tests that must not depend on downloaded weights.

use std::collections::HashMap;
use std::path::Path;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};

use crate::config::{Activation, Architecture, BlockDetails, ModelConfig, RopeStyle};
use crate::linear::SourceTensor;
use crate::source::TensorMapSource;

/// A small but complete shape: GQA (4 query heads over 2 KV heads), several layers. Qwen3's has
/// q/k norms and a head_dim (24) that is not hidden / heads (16), as Qwen3-0.6B's is not. Gemma 3's
/// has every Gemma detail switched on, with a window of 4 keys on every other layer, so short
/// sequences already slide, and a query scale and a logit cap that differ from the defaults.
pub fn tiny_config(architecture: Architecture) -> ModelConfig {
    let block = match architecture {
        Architecture::Gemma3 => BlockDetails {
            qk_norm: true,
            sandwich_norms: true,
            scale_embeddings: true,
            activation: Activation::GeluTanh,
            sliding_window: Some(4),
            sliding_window_pattern: 2,
            rope_local_theta: Some(100.0),
            attention_scale: Some(0.2),
            final_logit_softcap: Some(5.0),
        },
        Architecture::Qwen3 => BlockDetails {
            qk_norm: true,
            ..BlockDetails::default()
        },
        Architecture::Llama | Architecture::Qwen2 | Architecture::Phi3 => BlockDetails::default(),
    };
    ModelConfig {
        architecture,
        hidden_size: 64,
        intermediate_size: 128,
        num_layers: 3,
        num_heads: 4,
        num_kv_heads: 2,
        head_dim: if architecture == Architecture::Qwen3 {
            24
        } else {
            16
        },
        vocab_size: 96,
        rms_norm_eps: 1e-5,
        rope_theta: 10_000.0,
        rope_scaling: None,
        rope_style: RopeStyle::Halves,
        max_position_embeddings: 512,
        // Llama and Phi-3 checkpoints keep their own head.
        tie_word_embeddings: !matches!(architecture, Architecture::Llama | Architecture::Phi3),
        qkv_bias: architecture == Architecture::Qwen2,
        block,
    }
}

/// The largest absolute difference between two tensors of one shape.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .and_then(|d| d.abs())
        .and_then(|d| d.max_all())
        .and_then(|d| d.to_scalar::<f32>())
        .expect("two tensors of one shape")
}

/// Every position's logits, (len, vocab), of `tokens` in one prefill from an empty cache.
pub fn prefill_logits(model: &crate::Model, tokens: &[u32]) -> Tensor {
    let mut cache = crate::ContiguousKvCache::new(
        crate::KvShape::of(model.config()),
        tokens.len(),
        model.device(),
    );
    model
        .forward(
            &[crate::SeqChunk::new(
                0,
                tokens.to_vec(),
                crate::LogitsFor::All,
            )],
            &mut cache,
        )
        .expect("a forward pass")
        .per_chunk
        .swap_remove(0)
        .expect("logits were asked for")
}

/// Deterministic pseudo-random values in [-scale, scale), the same on every machine.
pub fn seeded_tensor(shape: &[usize], scale: f32, seed: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let data: Vec<f32> = (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect();
    Tensor::from_vec(data, shape, &Device::Cpu).expect("shape matches data")
}

/// The bit patterns of an f32 tensor's values, for tests that demand equality to the bit.
pub fn f32_bits(t: &Tensor) -> Vec<u32> {
    t.flatten_all()
        .and_then(|t| t.to_vec1::<f32>())
        .expect("an f32 tensor")
        .iter()
        .map(|v| v.to_bits())
        .collect()
}

/// Every tensor of a model of `config`, dense f32, by canonical name, in Hugging Face layout
/// (q/k rows not permuted).
pub fn tiny_weights(config: &ModelConfig, seed: u64) -> HashMap<String, Tensor> {
    let mut w = HashMap::new();
    let h = config.hidden_size;
    let mut s = seed;
    let mut next = |shape: &[usize], scale: f32| {
        s += 1;
        seeded_tensor(shape, scale, s)
    };
    w.insert(
        "token_embd.weight".into(),
        next(&[config.vocab_size, h], 1.0),
    );
    for i in 0..config.num_layers {
        let p = format!("blk.{i}");
        let lin = 1.0 / (h as f32).sqrt();
        w.insert(
            format!("{p}.attn_q.weight"),
            next(&[config.q_dim(), h], lin),
        );
        w.insert(
            format!("{p}.attn_k.weight"),
            next(&[config.kv_dim(), h], lin),
        );
        w.insert(
            format!("{p}.attn_v.weight"),
            next(&[config.kv_dim(), h], lin),
        );
        w.insert(
            format!("{p}.attn_output.weight"),
            next(&[h, config.q_dim()], lin),
        );
        let ffn = config.intermediate_size;
        w.insert(format!("{p}.ffn_gate.weight"), next(&[ffn, h], lin));
        w.insert(format!("{p}.ffn_up.weight"), next(&[ffn, h], lin));
        w.insert(
            format!("{p}.ffn_down.weight"),
            next(&[h, ffn], 1.0 / (ffn as f32).sqrt()),
        );
        let ones = |n: usize, s: &mut dyn FnMut(&[usize], f32) -> Tensor| {
            (s(&[n], 0.1) + 1.0).expect("add")
        };
        w.insert(format!("{p}.attn_norm.weight"), ones(h, &mut next));
        w.insert(format!("{p}.ffn_norm.weight"), ones(h, &mut next));
        if config.block.qk_norm {
            let hd = config.head_dim;
            w.insert(format!("{p}.attn_q_norm.weight"), ones(hd, &mut next));
            w.insert(format!("{p}.attn_k_norm.weight"), ones(hd, &mut next));
        }
        if config.block.sandwich_norms {
            w.insert(
                format!("{p}.post_attention_norm.weight"),
                ones(h, &mut next),
            );
            w.insert(format!("{p}.post_ffw_norm.weight"), ones(h, &mut next));
        }
        if config.qkv_bias {
            w.insert(format!("{p}.attn_q.bias"), next(&[config.q_dim()], 0.1));
            w.insert(format!("{p}.attn_k.bias"), next(&[config.kv_dim()], 0.1));
            w.insert(format!("{p}.attn_v.bias"), next(&[config.kv_dim()], 0.1));
        }
    }
    w.insert(
        "output_norm.weight".into(),
        (next(&[h], 0.1) + 1.0).expect("add"),
    );
    if !config.tie_word_embeddings {
        w.insert(
            "output.weight".into(),
            next(&[config.vocab_size, h], 1.0 / (h as f32).sqrt()),
        );
    }
    w
}

pub fn tiny_source(config: &ModelConfig, seed: u64) -> TensorMapSource {
    let tensors = tiny_weights(config, seed)
        .into_iter()
        .map(|(k, v)| (k, SourceTensor::Dense(v)))
        .collect();
    TensorMapSource::new(config.clone(), tensors)
}

/// GGUF's llama layout: q/k rows permuted so adjacent dimensions form RoPE pairs, as llama.cpp's
/// converter writes them.
pub fn permute_for_interleaved_rope(w: &Tensor, heads: usize) -> Tensor {
    let (out, inp) = w.dims2().expect("2d");
    let hd = out / heads;
    w.reshape((heads, 2, hd / 2, inp))
        .and_then(|t| t.transpose(1, 2))
        .and_then(|t| t.contiguous())
        .and_then(|t| t.reshape((out, inp)))
        .expect("permute")
}

/// The tiny Llama model as a Hugging Face directory: `config.json` and `model.safetensors`
/// holding [`tiny_weights`] of `seed` under their Hugging Face names (no tokenizer).
pub fn write_tiny_safetensors(dir: &Path, seed: u64) {
    write_hf_checkpoint(dir, &tiny_config(Architecture::Llama), seed);
}

/// [`tiny_weights`] of `config` and `seed` as a Hugging Face directory (`config.json`,
/// `model.safetensors`), as that architecture's checkpoints hold them (Gemma's norms less 1).
pub fn write_hf_checkpoint(dir: &Path, config: &ModelConfig, seed: u64) {
    std::fs::write(
        dir.join("config.json"),
        config.to_hf_config_json().to_string(),
    )
    .expect("write config.json");
    let tensors = crate::source::to_hf_tensors(config.architecture, tiny_weights(config, seed))
        .expect("every tiny tensor has a Hugging Face name");
    candle_core::safetensors::save(&tensors, dir.join("model.safetensors"))
        .expect("write model.safetensors");
}

/// [`tiny_weights`] of `config` and `seed` as a GGUF file the way llama.cpp's converter writes
/// that architecture: its `<arch>.*` shape keys, llama's q/k rows permuted for interleaved RoPE
/// (the GGUF reader takes every llama file as permuted),
/// phi3's q/k/v fused into `attn_qkv` and gate/up into one `ffn_up` of 2 * n_ff rows (gate
/// first), matrices of `dtype` and vectors in f32, no tokenizer.
pub fn write_gguf_checkpoint(path: &Path, config: &ModelConfig, seed: u64, dtype: GgmlDType) {
    // tiny_weights are in Hugging Face layout; GGUF llama is read as interleaved.
    let permute = config.architecture == Architecture::Llama;
    let mut weights = tiny_weights(config, seed);
    if config.architecture == Architecture::Phi3 {
        for i in 0..config.num_layers {
            for (fused, parts) in [
                ("attn_qkv", &["attn_q", "attn_k", "attn_v"][..]),
                ("ffn_up", &["ffn_gate", "ffn_up"][..]),
            ] {
                let pieces: Vec<Tensor> = parts
                    .iter()
                    .map(|p| {
                        weights
                            .remove(&format!("blk.{i}.{p}.weight"))
                            .expect("tiny")
                    })
                    .collect();
                weights.insert(
                    format!("blk.{i}.{fused}.weight"),
                    Tensor::cat(&pieces, 0).expect("fuse"),
                );
            }
        }
    }
    let mut q = Vec::new();
    for (name, t) in weights {
        let t = if permute && name.ends_with("attn_q.weight") {
            permute_for_interleaved_rope(&t, config.num_heads)
        } else if permute && name.ends_with("attn_k.weight") {
            permute_for_interleaved_rope(&t, config.num_kv_heads)
        } else {
            t
        };
        let ty = if t.rank() == 2 { dtype } else { GgmlDType::F32 };
        q.push((name, QTensor::quantize(&t, ty).expect("GGUF tensor")));
    }
    if let Some(scaling) = &config.rope_scaling {
        let factors: Vec<f32> = scaling
            .frequency_factors(config.head_dim, config.rope_theta)
            .into_iter()
            .map(|f| f as f32)
            .collect();
        let n = factors.len();
        let t = Tensor::from_vec(factors, n, &Device::Cpu).expect("factors");
        q.push((
            crate::source::ROPE_FREQS.to_string(),
            QTensor::quantize(&t, GgmlDType::F32).expect("GGUF tensor"),
        ));
    }
    let a = config.architecture.name();
    let u32_of = |v: usize| Value::U32(v as u32);
    let mut md: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String(a.into())),
        (format!("{a}.embedding_length"), u32_of(config.hidden_size)),
        (
            format!("{a}.feed_forward_length"),
            u32_of(config.intermediate_size),
        ),
        (format!("{a}.block_count"), u32_of(config.num_layers)),
        (
            format!("{a}.attention.head_count"),
            u32_of(config.num_heads),
        ),
        (
            format!("{a}.attention.head_count_kv"),
            u32_of(config.num_kv_heads),
        ),
        (format!("{a}.attention.key_length"), u32_of(config.head_dim)),
        (
            format!("{a}.attention.value_length"),
            u32_of(config.head_dim),
        ),
        (
            format!("{a}.attention.layer_norm_rms_epsilon"),
            Value::F32(config.rms_norm_eps as f32),
        ),
        (
            format!("{a}.rope.freq_base"),
            Value::F32(config.rope_theta as f32),
        ),
        (
            format!("{a}.context_length"),
            u32_of(config.max_position_embeddings),
        ),
    ];
    let b = &config.block;
    if let Some(w) = b.sliding_window {
        md.push((format!("{a}.attention.sliding_window"), u32_of(w)));
        md.push((
            format!("{a}.attention.sliding_window_pattern"),
            u32_of(b.sliding_window_pattern),
        ));
    }
    if let Some(base) = b.rope_local_theta {
        md.push((format!("{a}.rope.freq_base_swa"), Value::F32(base as f32)));
    }
    if let Some(cap) = b.final_logit_softcap {
        md.push((
            format!("{a}.final_logit_softcapping"),
            Value::F32(cap as f32),
        ));
    }
    let md_refs: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let t_refs: Vec<(&str, &QTensor)> = q.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut f = std::fs::File::create(path).expect("create the GGUF");
    gguf_file::write(&mut f, &md_refs, &t_refs).expect("write the GGUF");
}

/// Writes the tiny Llama model as an f32 GGUF with its shape metadata and no tokenizer, leaving
/// out the tensor named `skip`: for tests of how commands meet damaged or incomplete files.
pub fn write_tiny_gguf(path: &Path, skip: Option<&str>) {
    let cfg = tiny_config(Architecture::Llama);
    let q: Vec<(String, QTensor)> = tiny_weights(&cfg, 7)
        .into_iter()
        .filter(|(n, _)| Some(n.as_str()) != skip)
        .map(|(n, t)| {
            (
                n,
                QTensor::quantize(&t, GgmlDType::F32).expect("f32 GGUF tensor"),
            )
        })
        .collect();
    let u32_of = |v: usize| Value::U32(v as u32);
    let md: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String("llama".into())),
        ("llama.embedding_length".into(), u32_of(cfg.hidden_size)),
        (
            "llama.feed_forward_length".into(),
            u32_of(cfg.intermediate_size),
        ),
        ("llama.block_count".into(), u32_of(cfg.num_layers)),
        ("llama.attention.head_count".into(), u32_of(cfg.num_heads)),
        (
            "llama.attention.head_count_kv".into(),
            u32_of(cfg.num_kv_heads),
        ),
    ];
    let md_refs: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let t_refs: Vec<(&str, &QTensor)> = q.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut f = std::fs::File::create(path).expect("create the GGUF");
    gguf_file::write(&mut f, &md_refs, &t_refs).expect("write the GGUF");
}
