//! The decoder's shape, read from whichever checkpoint format the weights came in.

use std::collections::HashMap;
use std::path::Path;

use candle_core::quantized::gguf_file::Value;
use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};

// Sanity caps for checkpoint shapes: the largest published models have hidden 16384,
// intermediate 53248, 126 layers, 128 heads, head_dim 256, vocabularies of 256k and contexts of
// 1M; these leave room above that while keeping any allocation sized from them bounded.
const MAX_HIDDEN: usize = 1 << 16;
const MAX_INTERMEDIATE: usize = 1 << 18;
const MAX_LAYERS: usize = 1024;
const MAX_HEADS: usize = 1024;
const MAX_HEAD_DIM: usize = 1024;
const MAX_VOCAB: usize = 1 << 22;
const MAX_POSITIONS: usize = 1 << 24;

/// The decoder-only variants one decoder covers; they differ only in the details recorded in
/// [`ModelConfig`] (bias on q/k/v, tied head, q/k norms, Gemma's [`BlockDetails`]), so one code path
/// serves all of them and every technique works on each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Architecture {
    Llama,
    Qwen2,
    Qwen3,
    Gemma3,
    /// Phi-3: a Llama block whose q/k/v and gate/up matrices are stored fused; the sources
    /// split them at load ([`crate::source`]), so the decoder sees Llama's names.
    Phi3,
}

impl Architecture {
    pub const SUPPORTED: &'static str = "llama, qwen2, qwen3, gemma3, phi3";

    pub fn parse(name: &str) -> Result<Self> {
        match name.to_ascii_lowercase().as_str() {
            "llama" | "llamaforcausallm" | "mistral" => Ok(Self::Llama),
            "qwen2" | "qwen2forcausallm" => Ok(Self::Qwen2),
            "qwen3" | "qwen3forcausallm" => Ok(Self::Qwen3),
            "gemma3" | "gemma3_text" | "gemma3forcausallm" => Ok(Self::Gemma3),
            "phi3" | "phi3forcausallm" => Ok(Self::Phi3),
            _ => Err(CoreError::UnsupportedArchitecture {
                arch: name.to_string(),
                supported: Self::SUPPORTED.to_string(),
            }),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Llama => "llama",
            Self::Qwen2 => "qwen2",
            Self::Qwen3 => "qwen3",
            Self::Gemma3 => "gemma3",
            Self::Phi3 => "phi3",
        }
    }
}

/// The MLP's gate activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// SwiGLU's SiLU (Llama, Qwen).
    #[default]
    Silu,
    /// GELU with the tanh approximation (Gemma's `gelu_pytorch_tanh`).
    GeluTanh,
}

/// What sets a Gemma block apart from a Llama one. The default is a Llama block, so older
/// configs without these fields read back unchanged.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct BlockDetails {
    /// RMSNorm over each head of q and of k before RoPE.
    pub qk_norm: bool,
    /// Norms on the attention and MLP outputs before each residual add, besides the pre-norms.
    pub sandwich_norms: bool,
    /// Embeddings multiplied by sqrt(hidden_size) on lookup.
    pub scale_embeddings: bool,
    pub activation: Activation,
    /// Keys a sliding-window layer sees: a query at position p attends to p - window + 1..=p.
    pub sliding_window: Option<usize>,
    /// Every `sliding_window_pattern`-th layer (the last of each group) attends globally and
    /// the others slide; 0 makes every layer slide. Ignored without a window.
    pub sliding_window_pattern: usize,
    /// RoPE base of the sliding-window layers, when it differs from the global layers'.
    pub rope_local_theta: Option<f64>,
    /// Attention's query scale when it is not 1/sqrt(head_dim) (Gemma's query_pre_attn_scalar).
    pub attention_scale: Option<f64>,
    /// Logits become cap * tanh(logits / cap).
    pub final_logit_softcap: Option<f64>,
}

impl BlockDetails {
    /// Qwen3: a Llama block with q/k norms.
    fn qwen3() -> Self {
        Self {
            qk_norm: true,
            ..Self::default()
        }
    }

    /// Gemma 3 as its reference implementations build it.
    fn gemma3() -> Self {
        Self {
            qk_norm: true,
            sandwich_norms: true,
            scale_embeddings: true,
            activation: Activation::GeluTanh,
            sliding_window: None,
            sliding_window_pattern: 6,
            rope_local_theta: Some(10_000.0),
            attention_scale: None,
            final_logit_softcap: None,
        }
    }
}

/// How RoPE pairs up the dimensions of a head. GGUF conversion permutes llama's q/k rows so that
/// ggml can rotate adjacent pairs; Hugging Face checkpoints (and GGUF qwen2) rotate the two halves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RopeStyle {
    Interleaved,
    Halves,
}

/// RoPE frequency scaling for contexts past the pretraining length.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rope_type", rename_all = "snake_case")]
pub enum RopeScaling {
    /// Llama 3.1's (`rope_type: "llama3"` in config.json): frequencies whose wavelength is
    /// longer than `original_max_position_embeddings / low_freq_factor` are divided by
    /// `factor`, those shorter than `original_max_position_embeddings / high_freq_factor` are
    /// kept, and those between are blended.
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: usize,
    },
    /// One divisor per frequency (head_dim / 2 of them), as llama.cpp's converter stores llama3
    /// scaling in a GGUF file (`rope_freqs.weight`). A config.json written from it says
    /// `rope_type: "frequency_factors"`, which only effbench reads back.
    FrequencyFactors { factors: Vec<f64> },
}

impl RopeScaling {
    /// The divisor of each of the `head_dim / 2` RoPE frequencies of base `theta`.
    pub fn frequency_factors(&self, head_dim: usize, theta: f64) -> Vec<f64> {
        match self {
            Self::FrequencyFactors { factors } => factors.clone(),
            Self::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            } => {
                // llama.cpp's convert_hf_to_gguf.py, which Hugging Face's and candle's
                // scaled frequencies equal.
                let old_context = *original_max_position_embeddings as f64;
                let low_freq_wavelen = old_context / low_freq_factor;
                let high_freq_wavelen = old_context / high_freq_factor;
                (0..head_dim / 2)
                    .map(|i| {
                        let freq = 1.0 / theta.powf(2.0 * i as f64 / head_dim as f64);
                        let wavelen = 2.0 * std::f64::consts::PI / freq;
                        if wavelen < high_freq_wavelen {
                            1.0
                        } else if wavelen > low_freq_wavelen {
                            *factor
                        } else {
                            let smooth = (old_context / wavelen - low_freq_factor)
                                / (high_freq_factor - low_freq_factor);
                            1.0 / ((1.0 - smooth) / factor + smooth)
                        }
                    })
                    .collect()
            }
        }
    }

    /// Reads config.json's `rope_scaling` (or transformers' newer `rope_parameters`): None for
    /// plain RoPE, an error naming the type for one not supported.
    fn from_hf(value: &serde_json::Value) -> std::result::Result<Option<Self>, String> {
        let Some(obj) = value.as_object() else {
            return match value {
                serde_json::Value::Null => Ok(None),
                other => Err(format!("rope_scaling {other} is not an object")),
            };
        };
        let rope_type = obj
            .get("rope_type")
            .or_else(|| obj.get("type"))
            .and_then(|t| t.as_str());
        match rope_type {
            None if obj.keys().all(|k| k == "rope_theta") => Ok(None),
            None => Err("rope_scaling has no rope_type".into()),
            Some("default") => Ok(None),
            Some("llama3") => {
                let num = |key: &str| -> std::result::Result<f64, String> {
                    obj.get(key)
                        .and_then(|v| v.as_f64())
                        .ok_or_else(|| format!("llama3 rope_scaling has no number `{key}`"))
                };
                let original = num("original_max_position_embeddings")?;
                if original.fract() != 0.0 || !(1.0..=MAX_POSITIONS as f64).contains(&original) {
                    return Err(format!(
                        "llama3 rope_scaling's original_max_position_embeddings is {original}"
                    ));
                }
                Ok(Some(Self::Llama3 {
                    factor: num("factor")?,
                    low_freq_factor: num("low_freq_factor")?,
                    high_freq_factor: num("high_freq_factor")?,
                    original_max_position_embeddings: original as usize,
                }))
            }
            Some("frequency_factors") => serde_json::from_value(value.clone())
                .map(Some)
                .map_err(|e| format!("rope_scaling: {e}")),
            Some(t @ ("longrope" | "su")) => Err(format!(
                "rope_scaling type `{t}` (Phi-3's long-context scaling) is not supported yet \
                 (llama3 is)"
            )),
            Some(other) => Err(format!(
                "rope_scaling type `{other}` is not supported yet (llama3 is)"
            )),
        }
    }

    fn check(&self, head_dim: usize) -> std::result::Result<(), String> {
        let bad = |v: f64| !(v.is_finite() && v > 0.0);
        match self {
            Self::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings: _,
            } => {
                for (name, v) in [
                    ("factor", *factor),
                    ("low_freq_factor", *low_freq_factor),
                    ("high_freq_factor", *high_freq_factor),
                ] {
                    if bad(v) {
                        return Err(format!("llama3 rope_scaling's {name} is {v}"));
                    }
                }
                if high_freq_factor <= low_freq_factor {
                    return Err(format!(
                        "llama3 rope_scaling's high_freq_factor {high_freq_factor} is not above \
                         its low_freq_factor {low_freq_factor}"
                    ));
                }
            }
            Self::FrequencyFactors { factors } => {
                if factors.len() != head_dim / 2 {
                    return Err(format!(
                        "{} RoPE frequency factors for a head_dim of {head_dim}",
                        factors.len()
                    ));
                }
                if let Some(v) = factors.iter().find(|&&v| bad(v)) {
                    return Err(format!("a RoPE frequency factor is {v}"));
                }
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub architecture: Architecture,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub vocab_size: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    /// Frequency scaling of the (global layers') RoPE; None is plain RoPE.
    #[serde(default)]
    pub rope_scaling: Option<RopeScaling>,
    pub rope_style: RopeStyle,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
    pub qkv_bias: bool,
    #[serde(default)]
    pub block: BlockDetails,
}

impl ModelConfig {
    /// Reads the `<arch>.*` keys llama.cpp's converter writes.
    pub fn from_gguf_metadata(md: &HashMap<String, Value>, vocab_size: usize) -> Result<Self> {
        let arch_name = md
            .get("general.architecture")
            .and_then(|v| v.to_string().ok())
            .ok_or_else(|| CoreError::MissingMetadata {
                key: "general.architecture".into(),
            })?
            .clone();
        let architecture = Architecture::parse(&arch_name)?;
        let get_u = |key: &str| -> Result<usize> {
            let full = format!("{arch_name}.{key}");
            md.get(&full)
                .and_then(value_as_u64)
                .map(|v| v as usize)
                .ok_or(CoreError::MissingMetadata { key: full })
        };
        let get_f = |key: &str| -> Option<f64> {
            md.get(&format!("{arch_name}.{key}")).and_then(|v| match v {
                Value::F32(x) => Some(*x as f64),
                Value::F64(x) => Some(*x),
                _ => None,
            })
        };
        let hidden_size = get_u("embedding_length")?;
        let num_heads = get_u("attention.head_count")?;
        let num_kv_heads = get_u("attention.head_count_kv").unwrap_or(num_heads);
        let head_dim = match get_u("attention.key_length") {
            Ok(d) => d,
            // Checked by `check_sane` below; a zero here only avoids the division.
            Err(_) => hidden_size.checked_div(num_heads).unwrap_or(0),
        };
        let rope_style = match architecture {
            Architecture::Llama => RopeStyle::Interleaved,
            // llama.cpp's converter permutes only llama's q/k rows.
            // llama.cpp rotates phi3 as NEOX (halves) and its converter leaves phi3's fused rows
            // as they are.
            Architecture::Qwen2
            | Architecture::Qwen3
            | Architecture::Gemma3
            | Architecture::Phi3 => RopeStyle::Halves,
        };
        let bad = |detail: String| CoreError::BadMetadata {
            detail: format!("{detail} (GGUF keys `{arch_name}.*`)"),
        };
        // llama.cpp reads a scaling type (linear when unsaid) and a factor; llama3 scaling has
        // neither, only the `rope_freqs.weight` tensor.
        let scaling_type = md
            .get(&format!("{arch_name}.rope.scaling.type"))
            .and_then(|v| v.to_string().ok())
            .map(|s| s.to_ascii_lowercase());
        let scaling_factor = get_f("rope.scaling.factor")
            .or_else(|| get_f("rope.scale_linear"))
            .filter(|&f| f != 0.0 && f != 1.0);
        match (scaling_type.as_deref(), scaling_factor) {
            (None | Some("none"), None) | (Some("linear"), None) => {}
            (ty, _) => {
                return Err(CoreError::Unsupported(format!(
                    "RoPE scaling type `{}` (GGUF `{arch_name}.rope.scaling.*`) is not supported \
                     yet (llama3's rope_freqs is)",
                    ty.unwrap_or("linear")
                )))
            }
        }
        let block = match architecture {
            Architecture::Gemma3 => {
                let mut block = BlockDetails::gemma3();
                block.sliding_window = get_u("attention.sliding_window").ok().filter(|&w| w > 0);
                match md.get(&format!("{arch_name}.attention.sliding_window_pattern")) {
                    None => {}
                    Some(v) => {
                        match value_as_u64(v) {
                            Some(p) => block.sliding_window_pattern = p as usize,
                            None => return Err(bad(
                                "attention.sliding_window_pattern is not one number; per-layer \
                                 patterns are not supported yet"
                                    .into(),
                            )),
                        }
                    }
                }
                if let Some(base) = get_f("rope.freq_base_swa") {
                    block.rope_local_theta = Some(base);
                }
                block.final_logit_softcap = get_f("final_logit_softcapping").filter(|&c| c != 0.0);
                if get_f("attn_logit_softcapping").is_some_and(|c| c != 0.0) {
                    return Err(bad(
                        "attention logit soft-capping (Gemma 2) is not supported yet".into(),
                    ));
                }
                // gemma_pytorch's rule, which llama.cpp follows: the 62-layer 27B model scales
                // queries by hidden/heads instead of its head_dim.
                let layers = get_u("block_count")?;
                if layers == 62 && num_heads > 0 {
                    block.attention_scale = Some(1.0 / ((hidden_size / num_heads) as f64).sqrt());
                }
                block
            }
            Architecture::Qwen3 => BlockDetails::qwen3(),
            Architecture::Phi3 => {
                // Partial rotary (Phi-4-mini's 0.75) writes a rope dimension count below the
                // head size; the decoder rotates whole heads.
                let head = get_u("attention.key_length").unwrap_or(head_dim);
                if let Ok(rot) = get_u("rope.dimension_count") {
                    if rot != head {
                        return Err(CoreError::Unsupported(format!(
                            "partial rotary embedding ({arch_name}.rope.dimension_count {rot} of \
                             head size {head}) is not supported yet"
                        )));
                    }
                }
                // `attention.sliding_window` (2047 in Phi-3-mini-4k) is ignored, as llama.cpp
                // ignores it: its phi3.cpp sets swa_type NONE ("Phi SWA is currently disabled",
                // llama.cpp PR 13676). It matters only past the window.
                BlockDetails::default()
            }
            Architecture::Llama | Architecture::Qwen2 => BlockDetails::default(),
        };
        let default_eps = match architecture {
            Architecture::Gemma3 | Architecture::Qwen3 => 1e-6,
            _ => 1e-5,
        };
        let config = Self {
            architecture,
            hidden_size,
            intermediate_size: get_u("feed_forward_length")?,
            num_layers: get_u("block_count")?,
            num_heads,
            num_kv_heads,
            head_dim,
            vocab_size,
            rms_norm_eps: get_f("attention.layer_norm_rms_epsilon").unwrap_or(default_eps),
            rope_theta: get_f("rope.freq_base").unwrap_or(10_000.0),
            // llama3 scaling comes as the `rope_freqs.weight` tensor, which the GGUF source reads.
            rope_scaling: None,
            rope_style,
            max_position_embeddings: get_u("context_length").unwrap_or(4096),
            // Decided by the loader from whether `output.weight` exists.
            tie_word_embeddings: false,
            qkv_bias: architecture == Architecture::Qwen2,
            block,
        };
        config.check_sane().map_err(bad)?;
        Ok(config)
    }

    /// Reads a Hugging Face `config.json`.
    pub fn from_hf_config_json(path: &Path) -> Result<Self> {
        let text = std::fs::read(path).map_err(|source| CoreError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_hf_config_bytes(&text, path)
    }

    /// [`ModelConfig::from_hf_config_json`] on the file's bytes; `path` is only for messages.
    pub fn from_hf_config_bytes(text: &[u8], path: &Path) -> Result<Self> {
        let bad = |detail: String| CoreError::BadConfig {
            path: path.to_path_buf(),
            detail,
        };
        let raw: HfConfig = serde_json::from_slice(text).map_err(|e| bad(e.to_string()))?;
        let arch_name = raw
            .model_type
            .clone()
            .or_else(|| raw.architectures.as_ref().and_then(|a| a.first().cloned()))
            .ok_or_else(|| bad("neither `model_type` nor `architectures` is set".into()))?;
        let architecture = Architecture::parse(&arch_name)?;
        // An explicit head_dim may differ from hidden / heads (Qwen3-0.6B: 128 against 64).
        if raw.num_attention_heads == 0
            || (raw.head_dim.is_none() && !raw.hidden_size.is_multiple_of(raw.num_attention_heads))
        {
            return Err(bad(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                raw.hidden_size, raw.num_attention_heads
            )));
        }
        if let Some(act) = raw
            .hidden_act
            .as_deref()
            .filter(|a| architecture != Architecture::Gemma3 && !matches!(*a, "silu" | "swish"))
        {
            return Err(bad(format!(
                "hidden_act `{act}` is not supported (silu is)"
            )));
        }
        let block = match architecture {
            Architecture::Gemma3 => raw.gemma3_block().map_err(bad)?,
            Architecture::Qwen3 => BlockDetails::qwen3(),
            // Phi-3's `sliding_window` (2047 in Phi-3-mini-4k) is ignored, as llama.cpp
            // ignores it (its phi3.cpp: "Phi SWA is currently disabled", PR 13676), so a
            // safetensors and a GGUF copy run the same model. It matters only past the window.
            Architecture::Phi3 => BlockDetails::default(),
            // Mistral (read as llama) slides every layer where its config sets a window
            // (Mistral-7B-v0.1: 4096); Qwen2's `sliding_window` is off unless
            // use_sliding_window says otherwise, which is refused below.
            Architecture::Llama => BlockDetails {
                sliding_window: raw.sliding_window.filter(|&w| w > 0),
                sliding_window_pattern: 0,
                ..BlockDetails::default()
            },
            Architecture::Qwen2 => BlockDetails::default(),
        };
        if let Some(f) = raw.partial_rotary_factor.filter(|&f| f != 1.0) {
            return Err(bad(format!(
                "partial_rotary_factor {f} is not supported yet (the decoder rotates whole heads)"
            )));
        }
        if raw.use_sliding_window == Some(true) {
            return Err(bad(
                "use_sliding_window (Qwen's windows on some layers) is not supported yet".into(),
            ));
        }
        // transformers 5 names it rope_parameters, with rope_theta inside.
        let rope_parameters = raw.rope_parameters.as_ref().or(raw.rope_scaling.as_ref());
        let rope_scaling = match rope_parameters {
            Some(v) => RopeScaling::from_hf(v).map_err(bad)?,
            None => None,
        };
        let rope_theta = raw
            .rope_parameters
            .as_ref()
            .and_then(|p| p.get("rope_theta"))
            .and_then(|t| t.as_f64())
            .or(raw.rope_theta);
        let config = Self {
            architecture,
            hidden_size: raw.hidden_size,
            intermediate_size: raw.intermediate_size,
            num_layers: raw.num_hidden_layers,
            num_heads: raw.num_attention_heads,
            num_kv_heads: raw.num_key_value_heads.unwrap_or(raw.num_attention_heads),
            head_dim: raw
                .head_dim
                .unwrap_or(raw.hidden_size / raw.num_attention_heads),
            vocab_size: raw.vocab_size,
            rms_norm_eps: raw.rms_norm_eps.unwrap_or(1e-6),
            rope_theta: rope_theta.unwrap_or(10_000.0),
            rope_scaling,
            rope_style: RopeStyle::Halves,
            max_position_embeddings: raw.max_position_embeddings.unwrap_or(4096),
            // Gemma's configs leave the (tied) default unsaid.
            tie_word_embeddings: raw
                .tie_word_embeddings
                .unwrap_or(architecture == Architecture::Gemma3),
            qkv_bias: raw
                .attention_bias
                .unwrap_or(architecture == Architecture::Qwen2),
            block,
        };
        config.check_sane().map_err(bad)?;
        Ok(config)
    }

    /// Refuses shapes no real checkpoint has, before anything is sized from them: zero or
    /// absurdly large dimensions, heads that do not divide, non-finite constants. The caps are
    /// several times the largest published models', so they only stop corrupt files.
    pub fn check_sane(&self) -> std::result::Result<(), String> {
        let caps = [
            ("hidden_size", self.hidden_size, MAX_HIDDEN),
            (
                "intermediate_size",
                self.intermediate_size,
                MAX_INTERMEDIATE,
            ),
            ("num_layers", self.num_layers, MAX_LAYERS),
            ("num_heads", self.num_heads, MAX_HEADS),
            ("num_kv_heads", self.num_kv_heads, MAX_HEADS),
            ("head_dim", self.head_dim, MAX_HEAD_DIM),
            ("vocab_size", self.vocab_size, MAX_VOCAB),
            (
                "max_position_embeddings",
                self.max_position_embeddings,
                MAX_POSITIONS,
            ),
        ];
        for (name, value, cap) in caps {
            if value == 0 || value > cap {
                return Err(format!("{name} is {value}; expected 1..={cap}"));
            }
        }
        if !self.num_heads.is_multiple_of(self.num_kv_heads) {
            return Err(format!(
                "num_heads {} is not a multiple of num_kv_heads {}",
                self.num_heads, self.num_kv_heads
            ));
        }
        // RoPE rotates dimensions in pairs.
        if !self.head_dim.is_multiple_of(2) {
            return Err(format!("head_dim {} is odd", self.head_dim));
        }
        if !(self.rms_norm_eps.is_finite() && self.rms_norm_eps > 0.0) {
            return Err(format!("rms_norm_eps is {}", self.rms_norm_eps));
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 0.0) {
            return Err(format!("rope_theta is {}", self.rope_theta));
        }
        if let Some(scaling) = &self.rope_scaling {
            scaling.check(self.head_dim)?;
        }
        let b = &self.block;
        if b.sliding_window == Some(0) {
            return Err("sliding_window is 0".into());
        }
        for (name, value) in [
            ("rope_local_theta", b.rope_local_theta),
            ("attention_scale", b.attention_scale),
            ("final_logit_softcap", b.final_logit_softcap),
        ] {
            if let Some(v) = value.filter(|v| !(v.is_finite() && *v > 0.0)) {
                return Err(format!("{name} is {v}"));
            }
        }
        Ok(())
    }

    /// The Hugging Face `config.json` for this shape, so checkpoints we write load elsewhere too.
    pub fn to_hf_config_json(&self) -> serde_json::Value {
        let (model_type, class) = match self.architecture {
            Architecture::Llama if self.block.sliding_window.is_some() => {
                ("mistral", "MistralForCausalLM")
            }
            Architecture::Llama => ("llama", "LlamaForCausalLM"),
            Architecture::Qwen2 => ("qwen2", "Qwen2ForCausalLM"),
            Architecture::Qwen3 => ("qwen3", "Qwen3ForCausalLM"),
            Architecture::Gemma3 => ("gemma3_text", "Gemma3ForCausalLM"),
            Architecture::Phi3 => ("phi3", "Phi3ForCausalLM"),
        };
        let mut json = serde_json::json!({
            "model_type": model_type,
            "architectures": [class],
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "vocab_size": self.vocab_size,
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "rope_scaling": self.rope_scaling,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            "attention_bias": self.qkv_bias,
            "torch_dtype": "float32",
        });
        if self.architecture != Architecture::Gemma3 {
            json["hidden_act"] = "silu".into();
        }
        if self.architecture == Architecture::Llama {
            if let Some(w) = self.block.sliding_window {
                json["sliding_window"] = w.into();
            }
        }
        if self.architecture == Architecture::Qwen3 {
            // As Qwen3's own configs say (readers such as candle-transformers' require them).
            json["use_sliding_window"] = false.into();
            json["sliding_window"] = serde_json::Value::Null;
            json["max_window_layers"] = self.num_layers.into();
        }
        if self.architecture == Architecture::Gemma3 {
            let b = &self.block;
            // Hugging Face writes it as an integer (256; 168 for the 27B), and readers such as
            // candle-transformers' take it as one.
            let scalar = b
                .attention_scale
                .map_or(self.head_dim as f64, |s| 1.0 / (s * s));
            let query_pre_attn_scalar = if scalar.fract() == 0.0 && scalar < 1e15 {
                serde_json::json!(scalar as u64)
            } else {
                serde_json::json!(scalar)
            };
            let extra = serde_json::json!({
                "hidden_activation": "gelu_pytorch_tanh",
                "sliding_window": b.sliding_window,
                "sliding_window_pattern": b.sliding_window_pattern,
                "rope_local_base_freq": b.rope_local_theta,
                "query_pre_attn_scalar": query_pre_attn_scalar,
                "final_logit_softcapping": b.final_logit_softcap,
            });
            for (k, v) in extra.as_object().expect("an object") {
                json[k] = v.clone();
            }
        }
        json
    }

    /// Whether `layer` attends through a sliding window (and which, when it does).
    pub fn sliding_window_of(&self, layer: usize) -> Option<usize> {
        let window = self.block.sliding_window?;
        let p = self.block.sliding_window_pattern;
        (p == 0 || layer % p < p - 1).then_some(window)
    }

    pub fn kv_dim(&self) -> usize {
        self.num_kv_heads * self.head_dim
    }

    pub fn q_dim(&self) -> usize {
        self.num_heads * self.head_dim
    }

    /// Bytes of K and V one token occupies across all layers, at `bytes_per_element`.
    pub fn kv_bytes_per_token(&self, bytes_per_element: usize) -> usize {
        2 * self.num_layers * self.kv_dim() * bytes_per_element
    }
}

pub(crate) fn value_as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::U8(x) => Some(*x as u64),
        Value::U16(x) => Some(*x as u64),
        Value::U32(x) => Some(*x as u64),
        Value::U64(x) => Some(*x),
        Value::I8(x) if *x >= 0 => Some(*x as u64),
        Value::I16(x) if *x >= 0 => Some(*x as u64),
        Value::I32(x) if *x >= 0 => Some(*x as u64),
        Value::I64(x) if *x >= 0 => Some(*x as u64),
        _ => None,
    }
}

#[derive(Debug, Deserialize)]
struct HfConfig {
    model_type: Option<String>,
    architectures: Option<Vec<String>>,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    vocab_size: usize,
    rms_norm_eps: Option<f64>,
    rope_theta: Option<f64>,
    max_position_embeddings: Option<usize>,
    tie_word_embeddings: Option<bool>,
    attention_bias: Option<bool>,
    rope_scaling: Option<serde_json::Value>,
    rope_parameters: Option<serde_json::Value>,
    // Gemma 3.
    sliding_window: Option<usize>,
    sliding_window_pattern: Option<usize>,
    #[serde(rename = "_sliding_window_pattern")]
    sliding_window_pattern_private: Option<usize>,
    layer_types: Option<Vec<String>>,
    rope_local_base_freq: Option<f64>,
    query_pre_attn_scalar: Option<f64>,
    final_logit_softcapping: Option<f64>,
    attn_logit_softcapping: Option<f64>,
    hidden_activation: Option<String>,
    hidden_act: Option<String>,
    use_sliding_window: Option<bool>,
    partial_rotary_factor: Option<f64>,
}

impl HfConfig {
    fn gemma3_block(&self) -> std::result::Result<BlockDetails, String> {
        let mut block = BlockDetails::gemma3();
        if self.attn_logit_softcapping.is_some() {
            return Err("attn_logit_softcapping (Gemma 2) is not supported yet".into());
        }
        if let Some(act) = self
            .hidden_activation
            .as_deref()
            .filter(|a| !matches!(*a, "gelu_pytorch_tanh" | "gelu_tanh"))
        {
            return Err(format!(
                "hidden_activation `{act}` is not supported (gelu_pytorch_tanh is)"
            ));
        }
        block.sliding_window = self.sliding_window.filter(|&w| w > 0);
        if let Some(p) = self
            .sliding_window_pattern
            .or(self.sliding_window_pattern_private)
        {
            block.sliding_window_pattern = p;
        }
        // Newer configs spell the pattern out layer by layer; the decoder takes it as a period.
        if let Some(types) = &self.layer_types {
            let period = types
                .iter()
                .position(|t| t == "full_attention")
                .map_or(0, |i| i + 1);
            let expected = |i: usize| {
                if period == 0 || i % period < period - 1 {
                    "sliding_attention"
                } else {
                    "full_attention"
                }
            };
            if types.iter().enumerate().any(|(i, t)| t != expected(i)) {
                return Err("layer_types is not a repeating sliding/full pattern".into());
            }
            block.sliding_window_pattern = period;
        }
        if let Some(base) = self.rope_local_base_freq {
            block.rope_local_theta = Some(base);
        }
        let head_dim = self
            .head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads.max(1));
        block.attention_scale = self
            .query_pre_attn_scalar
            .filter(|&s| s != head_dim as f64)
            .map(|s| 1.0 / s.sqrt());
        block.final_logit_softcap = self.final_logit_softcapping;
        Ok(block)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GGUF metadata of architecture `arch` with the `<arch>.*` keys given, as u32s.
    fn gguf_metadata(arch: &str, keys: &[(&str, u32)]) -> HashMap<String, Value> {
        let mut md = HashMap::new();
        md.insert(
            "general.architecture".to_string(),
            Value::String(arch.into()),
        );
        for (k, v) in keys {
            md.insert(format!("{arch}.{k}"), Value::U32(*v));
        }
        md
    }

    #[test]
    fn unknown_architecture_is_named() {
        let err = Architecture::parse("gptneox").unwrap_err().to_string();
        assert!(err.contains("gptneox") && err.contains("llama"), "{err}");
    }

    #[test]
    fn hf_config_round_trips() {
        let cfg = ModelConfig {
            architecture: Architecture::Qwen2,
            hidden_size: 64,
            intermediate_size: 128,
            num_layers: 2,
            num_heads: 4,
            num_kv_heads: 2,
            head_dim: 16,
            vocab_size: 100,
            rms_norm_eps: 1e-6,
            rope_theta: 1e6,
            rope_scaling: None,
            rope_style: RopeStyle::Halves,
            max_position_embeddings: 256,
            tie_word_embeddings: true,
            qkv_bias: true,
            block: BlockDetails::default(),
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, cfg.to_hf_config_json().to_string()).unwrap();
        assert_eq!(ModelConfig::from_hf_config_json(&path).unwrap(), cfg);
    }

    #[test]
    fn qwen3_config_json_round_trips_with_its_own_head_dim() {
        let cfg = crate::testing::tiny_config(Architecture::Qwen3);
        let json = cfg.to_hf_config_json();
        let back =
            ModelConfig::from_hf_config_bytes(json.to_string().as_bytes(), Path::new("c.json"))
                .unwrap();
        assert_eq!(back, cfg);
        assert!(back.block.qk_norm && !back.qkv_bias && back.head_dim == 24);
        let mut gelu = json.clone();
        gelu["hidden_act"] = "gelu".into();
        let err = ModelConfig::from_hf_config_bytes(gelu.to_string().as_bytes(), Path::new("c"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("hidden_act `gelu` is not supported"), "{err}");
        let mut windowed = json.clone();
        windowed["use_sliding_window"] = true.into();
        let err =
            ModelConfig::from_hf_config_bytes(windowed.to_string().as_bytes(), Path::new("c"))
                .unwrap_err()
                .to_string();
        assert!(err.contains("use_sliding_window"), "{err}");
    }

    #[test]
    fn rope_scaling_reads_llama3_and_refuses_other_types_in_one_line() {
        let base = crate::testing::tiny_config(Architecture::Llama).to_hf_config_json();
        let parse = |scaling: serde_json::Value| {
            let mut json = base.clone();
            json["rope_scaling"] = scaling;
            ModelConfig::from_hf_config_bytes(json.to_string().as_bytes(), Path::new("c.json"))
        };
        let llama31 = serde_json::json!({
            "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192, "rope_type": "llama3"
        });
        let cfg = parse(llama31.clone()).unwrap();
        assert_eq!(
            cfg.rope_scaling,
            Some(RopeScaling::Llama3 {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 8192
            })
        );
        // Written back as Hugging Face writes it.
        assert_eq!(cfg.to_hf_config_json()["rope_scaling"], llama31);
        assert_eq!(parse(serde_json::Value::Null).unwrap().rope_scaling, None);
        assert_eq!(
            parse(serde_json::json!({"rope_type": "default"}))
                .unwrap()
                .rope_scaling,
            None
        );
        for (scaling, needle) in [
            (
                serde_json::json!({"type": "linear", "factor": 2.0}),
                "rope_scaling type `linear` is not supported",
            ),
            (
                serde_json::json!({"rope_type": "yarn", "factor": 4.0,
                    "original_max_position_embeddings": 32768}),
                "rope_scaling type `yarn` is not supported",
            ),
            (
                serde_json::json!({"type": "dynamic", "factor": 2.0}),
                "`dynamic`",
            ),
            (
                serde_json::json!({"rope_type": "llama3", "factor": 8.0}),
                "no number `original_max_position_embeddings`",
            ),
            (
                serde_json::json!({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 4.0,
                    "high_freq_factor": 1.0, "original_max_position_embeddings": 8192}),
                "not above",
            ),
            (serde_json::json!({"factor": 2.0}), "no rope_type"),
        ] {
            let err = parse(scaling.clone()).unwrap_err().to_string();
            assert!(err.contains(needle), "{scaling}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
        // transformers 5's rope_parameters, rope_theta inside.
        let mut json = base.clone();
        json["rope_parameters"] = serde_json::json!({"rope_type": "default", "rope_theta": 5e5});
        let cfg =
            ModelConfig::from_hf_config_bytes(json.to_string().as_bytes(), Path::new("c.json"))
                .unwrap();
        assert_eq!((cfg.rope_theta, cfg.rope_scaling), (5e5, None));
    }

    #[test]
    fn gguf_rope_scaling_other_than_llama3_is_refused_in_one_line() {
        let mut md = gguf_metadata(
            "llama",
            &[
                ("embedding_length", 64),
                ("feed_forward_length", 128),
                ("block_count", 2),
                ("attention.head_count", 4),
            ],
        );
        ModelConfig::from_gguf_metadata(&md, 96).unwrap();
        md.insert(
            "llama.rope.scaling.type".into(),
            Value::String("none".into()),
        );
        ModelConfig::from_gguf_metadata(&md, 96).unwrap();
        md.insert("llama.rope.scaling.factor".into(), Value::F32(4.0));
        md.insert(
            "llama.rope.scaling.type".into(),
            Value::String("yarn".into()),
        );
        let err = ModelConfig::from_gguf_metadata(&md, 96)
            .unwrap_err()
            .to_string();
        assert!(err.contains("RoPE scaling type `yarn`"), "{err}");
        assert!(!err.contains('\n'), "{err}");
        md.remove("llama.rope.scaling.type");
        let err = ModelConfig::from_gguf_metadata(&md, 96)
            .unwrap_err()
            .to_string();
        assert!(err.contains("`linear`"), "{err}");
    }

    #[test]
    fn impossible_shapes_are_refused_before_use() {
        let base = crate::testing::tiny_config(Architecture::Llama).to_hf_config_json();
        for (key, value, needle) in [
            (
                "num_attention_heads",
                serde_json::json!(0),
                "num_attention_heads 0",
            ),
            ("num_hidden_layers", serde_json::json!(0), "num_layers is 0"),
            (
                "num_hidden_layers",
                serde_json::json!(1u64 << 40),
                "num_layers is",
            ),
            ("vocab_size", serde_json::json!(u64::MAX), "vocab_size is"),
            (
                "intermediate_size",
                serde_json::json!(1u64 << 30),
                "intermediate_size",
            ),
            (
                "num_key_value_heads",
                serde_json::json!(3),
                "not a multiple of num_kv_heads 3",
            ),
            ("head_dim", serde_json::json!(15), "head_dim 15 is odd"),
            ("rms_norm_eps", serde_json::json!(-1.0), "rms_norm_eps"),
            (
                "max_position_embeddings",
                serde_json::json!(0),
                "max_position_embeddings",
            ),
        ] {
            let mut json = base.clone();
            json[key] = value;
            let err = ModelConfig::from_hf_config_bytes(
                json.to_string().as_bytes(),
                Path::new("config.json"),
            )
            .unwrap_err()
            .to_string();
            assert!(err.contains(needle), "{key}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
    }

    #[test]
    fn gguf_metadata_with_zero_heads_is_an_error_not_a_division_by_zero() {
        let mut md = gguf_metadata(
            "llama",
            &[
                ("embedding_length", 64),
                ("feed_forward_length", 128),
                ("block_count", 2),
                ("attention.head_count", 0),
            ],
        );
        let err = ModelConfig::from_gguf_metadata(&md, 96)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("head_dim is 0") || err.contains("num_heads is 0"),
            "{err}"
        );
        md.insert("llama.attention.head_count".into(), Value::U32(4));
        md.insert("llama.block_count".into(), Value::U64(u64::MAX));
        let err = ModelConfig::from_gguf_metadata(&md, 96)
            .unwrap_err()
            .to_string();
        assert!(err.contains("num_layers is"), "{err}");
        md.insert("llama.block_count".into(), Value::U32(2));
        ModelConfig::from_gguf_metadata(&md, 96).unwrap();
        md.insert(
            "llama.rope.scaling.type".into(),
            Value::String("linear".into()),
        );
        md.insert("llama.rope.scaling.factor".into(), Value::F32(8.0));
        let err = ModelConfig::from_gguf_metadata(&md, 96)
            .unwrap_err()
            .to_string();
        assert!(err.contains("RoPE scaling type `linear`"), "{err}");
    }

    /// Gemma 3's keys as llama.cpp's converter writes them (Gemma-3-270M's values), and what
    /// the decoder makes of them: every sixth layer global with the file's RoPE base, the rest
    /// sliding with base 10,000.
    #[test]
    fn gemma3_metadata_gives_its_block_details() {
        let mut md = gguf_metadata(
            "gemma3",
            &[
                ("embedding_length", 640),
                ("feed_forward_length", 2048),
                ("block_count", 18),
                ("attention.head_count", 4),
                ("attention.head_count_kv", 1),
                ("attention.key_length", 256),
                ("attention.sliding_window", 512),
                ("context_length", 32768),
            ],
        );
        md.insert("gemma3.rope.freq_base".into(), Value::F32(1e6));
        let cfg = ModelConfig::from_gguf_metadata(&md, 262_144).unwrap();
        assert_eq!(cfg.architecture, Architecture::Gemma3);
        assert_eq!((cfg.head_dim, cfg.rope_style), (256, RopeStyle::Halves));
        assert!(cfg.block.qk_norm && cfg.block.sandwich_norms && cfg.block.scale_embeddings);
        assert_eq!(cfg.block.activation, Activation::GeluTanh);
        assert_eq!(cfg.rms_norm_eps, 1e-6);
        let windows: Vec<Option<usize>> = (0..18).map(|l| cfg.sliding_window_of(l)).collect();
        for (l, w) in windows.iter().enumerate() {
            let global = l % 6 == 5;
            assert_eq!(*w, (!global).then_some(512), "layer {l}");
        }
        assert_eq!(cfg.block.rope_local_theta, Some(10_000.0));
        assert_eq!(cfg.block.attention_scale, None);
        md.insert("gemma3.attn_logit_softcapping".into(), Value::F32(50.0));
        let err = ModelConfig::from_gguf_metadata(&md, 262_144)
            .unwrap_err()
            .to_string();
        assert!(err.contains("soft-capping"), "{err}");
    }

    #[test]
    fn gemma3_config_json_round_trips_and_reads_layer_types() {
        let cfg = crate::testing::tiny_config(Architecture::Gemma3);
        let json = cfg.to_hf_config_json();
        let back =
            ModelConfig::from_hf_config_bytes(json.to_string().as_bytes(), Path::new("c.json"))
                .unwrap();
        assert_eq!(back, cfg);
        let mut json = json;
        json["layer_types"] =
            serde_json::json!(["sliding_attention", "full_attention", "sliding_attention"]);
        json["sliding_window_pattern"] = serde_json::Value::Null;
        let back =
            ModelConfig::from_hf_config_bytes(json.to_string().as_bytes(), Path::new("c.json"))
                .unwrap();
        assert_eq!(back.block.sliding_window_pattern, 2);
        json["layer_types"] =
            serde_json::json!(["full_attention", "sliding_attention", "sliding_attention"]);
        let err =
            ModelConfig::from_hf_config_bytes(json.to_string().as_bytes(), Path::new("c.json"))
                .unwrap_err()
                .to_string();
        assert!(err.contains("layer_types"), "{err}");
        json["layer_types"] = serde_json::Value::Null;
        json["rope_scaling"] = serde_json::json!({"rope_type": "linear", "factor": 8.0});
        let err =
            ModelConfig::from_hf_config_bytes(json.to_string().as_bytes(), Path::new("c.json"))
                .unwrap_err()
                .to_string();
        assert!(err.contains("rope_scaling"), "{err}");
    }

    /// Phi-3's config.json: round-trips; its `sliding_window` is ignored as llama.cpp ignores
    /// it; longrope/su scaling and partial rotary are refused in one line.
    #[test]
    fn phi3_config_json_reads_and_refuses_in_one_line() {
        let cfg = crate::testing::tiny_config(Architecture::Phi3);
        let json = cfg.to_hf_config_json();
        assert_eq!(json["model_type"], "phi3");
        let parse = |json: &serde_json::Value| {
            ModelConfig::from_hf_config_bytes(json.to_string().as_bytes(), Path::new("c.json"))
        };
        assert_eq!(parse(&json).unwrap(), cfg);
        assert_eq!(
            Architecture::parse("Phi3ForCausalLM").unwrap(),
            Architecture::Phi3
        );
        let mut windowed = json.clone();
        windowed["sliding_window"] = 2047.into();
        assert_eq!(parse(&windowed).unwrap().block.sliding_window, None);
        for (key, value, needle) in [
            (
                "rope_scaling",
                serde_json::json!({"type": "longrope", "short_factor": [1.0],
                    "long_factor": [1.0]}),
                "rope_scaling type `longrope` (Phi-3's long-context scaling)",
            ),
            (
                "rope_scaling",
                serde_json::json!({"type": "su", "short_factor": [1.0], "long_factor": [1.0]}),
                "`su`",
            ),
            (
                "partial_rotary_factor",
                serde_json::json!(0.75),
                "partial_rotary_factor 0.75",
            ),
        ] {
            let mut j = json.clone();
            j[key] = value;
            let err = parse(&j).unwrap_err().to_string();
            assert!(err.contains(needle), "{key}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
        let mut whole = json.clone();
        whole["partial_rotary_factor"] = 1.0.into();
        parse(&whole).unwrap();
    }

    #[test]
    fn malformed_config_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, r#"{"model_type": "llama"}"#).unwrap();
        let err = ModelConfig::from_hf_config_json(&path)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("config.json") && err.contains("hidden_size"),
            "{err}"
        );
    }
}
