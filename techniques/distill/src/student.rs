//! The trainable student: the Llama-family decoder of effbench-core (pre-norm RMSNorm, RoPE on
//! halves, grouped-query attention, SwiGLU), written with ops that candle can differentiate.
//!
//! effbench-core's `Model` is inference-only (its fused RMSNorm, softmax and RoPE kernels have no
//! backward pass, and its weights sit behind `LinearWeight`). candle-transformers' llama returns
//! only the last position's logits and its qwen2 always carries q/k/v biases, while
//! distillation needs every position's logits for either family; so the student is written here,
//! about a hundred lines, over candle-nn's `Linear` and `Embedding`.
//!
//! Every `Var` is named as in a Hugging Face checkpoint (`model.layers.3.self_attn.q_proj.weight`)
//! and kept in Hugging Face layout (q/k rows not permuted), so saving the `VarMap` writes a
//! checkpoint that `effbench_core::load` and `transformers` read as they are.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::{Embedding, Linear, Module, VarMap};
use effbench_core::source::{hf_name, WeightSource};
use effbench_core::{ModelConfig, RopeStyle};

use crate::error::{io, DistillError, Result};

/// Which teacher layers the student keeps, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerSelection {
    /// Layers 0, 2, 4, …: DistilBERT's "one layer out of two".
    EveryOther,
    /// Explicit teacher layer indices, strictly increasing.
    List(Vec<usize>),
    /// Every layer: the student starts as a dense copy of the teacher.
    All,
}

impl LayerSelection {
    /// Parses `every-other`, `all`, or a list such as `0,2,5,7`.
    pub fn parse(text: &str) -> Result<Self> {
        match text.trim() {
            "every-other" | "" => Ok(Self::EveryOther),
            "all" => Ok(Self::All),
            list => {
                let layers = list
                    .split(',')
                    .map(|s| {
                        s.trim().parse::<usize>().map_err(|_| {
                            DistillError::BadLayers(format!("`{s}` is not a layer index"))
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok(Self::List(layers))
            }
        }
    }

    /// The teacher layer indices to keep, checked against a teacher of `teacher_layers` layers.
    pub fn resolve(&self, teacher_layers: usize) -> Result<Vec<usize>> {
        let layers: Vec<usize> = match self {
            Self::EveryOther => (0..teacher_layers).step_by(2).collect(),
            Self::All => (0..teacher_layers).collect(),
            Self::List(l) => l.clone(),
        };
        if layers.is_empty() {
            return Err(DistillError::BadLayers("no layers selected".into()));
        }
        if let Some(&bad) = layers.iter().find(|&&l| l >= teacher_layers) {
            return Err(DistillError::BadLayers(format!(
                "layer {bad} does not exist: the teacher has layers 0..{}",
                teacher_layers - 1
            )));
        }
        if layers.windows(2).any(|w| w[0] >= w[1]) {
            return Err(DistillError::BadLayers(format!(
                "{layers:?} is not strictly increasing"
            )));
        }
        Ok(layers)
    }
}

struct Block {
    input_norm: Tensor,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    post_norm: Tensor,
    gate: Linear,
    up: Linear,
    down: Linear,
}

pub struct Student {
    config: ModelConfig,
    varmap: VarMap,
    embed: Embedding,
    blocks: Vec<Block>,
    final_norm: Tensor,
    /// None when tied to the embedding table.
    lm_head: Option<Tensor>,
    rope_cos: Tensor,
    rope_sin: Tensor,
    device: Device,
}

/// Every tensor a checkpoint of `config` holds, by Hugging Face name, with its shape.
pub fn expected_tensors(config: &ModelConfig) -> Vec<(String, Vec<usize>)> {
    let h = config.hidden_size;
    let ffn = config.intermediate_size;
    let mut out = vec![
        (
            "model.embed_tokens.weight".to_string(),
            vec![config.vocab_size, h],
        ),
        ("model.norm.weight".to_string(), vec![h]),
    ];
    if !config.tie_word_embeddings {
        out.push(("lm_head.weight".into(), vec![config.vocab_size, h]));
    }
    for i in 0..config.num_layers {
        let p = format!("model.layers.{i}");
        out.extend([
            (format!("{p}.input_layernorm.weight"), vec![h]),
            (format!("{p}.post_attention_layernorm.weight"), vec![h]),
            (
                format!("{p}.self_attn.q_proj.weight"),
                vec![config.q_dim(), h],
            ),
            (
                format!("{p}.self_attn.k_proj.weight"),
                vec![config.kv_dim(), h],
            ),
            (
                format!("{p}.self_attn.v_proj.weight"),
                vec![config.kv_dim(), h],
            ),
            (
                format!("{p}.self_attn.o_proj.weight"),
                vec![h, config.q_dim()],
            ),
            (format!("{p}.mlp.gate_proj.weight"), vec![ffn, h]),
            (format!("{p}.mlp.up_proj.weight"), vec![ffn, h]),
            (format!("{p}.mlp.down_proj.weight"), vec![h, ffn]),
        ]);
        if config.qkv_bias {
            out.extend([
                (format!("{p}.self_attn.q_proj.bias"), vec![config.q_dim()]),
                (format!("{p}.self_attn.k_proj.bias"), vec![config.kv_dim()]),
                (format!("{p}.self_attn.v_proj.bias"), vec![config.kv_dim()]),
            ]);
        }
    }
    out
}

/// GGUF stores llama's q/k rows permuted so ggml can rotate adjacent pairs; Hugging Face layout
/// rotates halves. This undoes `effbench_core::testing::permute_for_interleaved_rope`.
pub fn unpermute_interleaved_rope(w: &Tensor, heads: usize) -> Result<Tensor> {
    let (out, inp) = w.dims2()?;
    let hd = out / heads;
    Ok(w.reshape((heads, hd / 2, 2, inp))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((out, inp))?)
}

impl Student {
    /// A student of `config` from tensors already in Hugging Face names and layout.
    pub fn from_hf_tensors(
        mut config: ModelConfig,
        tensors: HashMap<String, Tensor>,
        device: &Device,
    ) -> Result<Self> {
        config.rope_style = RopeStyle::Halves;
        let varmap = VarMap::new();
        {
            let mut data = varmap.data().lock().expect("varmap lock");
            for (name, t) in tensors {
                let t = t.to_dtype(DType::F32)?.to_device(device)?;
                data.insert(name, Var::from_tensor(&t)?);
            }
        }
        Self::build(config, varmap, device)
    }

    /// A student made of the teacher's embeddings, final norm, head, and the blocks in `layers`
    /// (teacher indices), dequantized to f32.
    pub fn from_teacher(
        teacher: &mut dyn WeightSource,
        selection: &LayerSelection,
        device: &Device,
    ) -> Result<Self> {
        let teacher_config = teacher.config().clone();
        let layers = selection.resolve(teacher_config.num_layers)?;
        let mut config = teacher_config.clone();
        config.num_layers = layers.len();
        // A Phi-3 block is a Llama one whose checkpoint fuses q/k/v and gate/up; the teacher's
        // source hands them out split, and the student keeps them split, as a llama (RoPE on
        // halves, as Hugging Face's llama rotates).
        if config.architecture == effbench_core::Architecture::Phi3 {
            config.architecture = effbench_core::Architecture::Llama;
        }
        let arch = config.architecture;
        let mut tensors = HashMap::new();
        let mut take = |canonical: &str, student_name: String| -> Result<()> {
            let mut t = teacher.tensor(canonical)?.to_f32()?;
            if teacher_config.rope_style == RopeStyle::Interleaved {
                if canonical.ends_with("attn_q.weight") {
                    t = unpermute_interleaved_rope(&t, teacher_config.num_heads)?;
                } else if canonical.ends_with("attn_k.weight") {
                    t = unpermute_interleaved_rope(&t, teacher_config.num_kv_heads)?;
                }
            }
            tensors.insert(student_name, t);
            Ok(())
        };
        for name in ["token_embd.weight", "output_norm.weight"] {
            take(name, hf_name(arch, name).expect("known name"))?;
        }
        if !teacher_config.tie_word_embeddings {
            take("output.weight", "lm_head.weight".into())?;
        }
        let mut suffixes = vec![
            "attn_norm.weight",
            "ffn_norm.weight",
            "attn_q.weight",
            "attn_k.weight",
            "attn_v.weight",
            "attn_output.weight",
            "ffn_gate.weight",
            "ffn_up.weight",
            "ffn_down.weight",
        ];
        if teacher_config.qkv_bias {
            suffixes.extend(["attn_q.bias", "attn_k.bias", "attn_v.bias"]);
        }
        for (student_idx, &teacher_idx) in layers.iter().enumerate() {
            for suffix in &suffixes {
                let student_name =
                    hf_name(arch, &format!("blk.{student_idx}.{suffix}")).expect("known name");
                take(&format!("blk.{teacher_idx}.{suffix}"), student_name)?;
            }
        }
        Self::from_hf_tensors(config, tensors, device)
    }

    /// A student of `config` at random: N(0, 0.02)-sized weights as Hugging Face initialises
    /// Llama (uniform here, with the same standard deviation, so the same `seed` gives the same
    /// student on every machine), norms at one, biases at zero.
    pub fn random(config: ModelConfig, seed: u64, device: &Device) -> Result<Self> {
        let std = 0.02f32;
        let half_width = std * 3f32.sqrt();
        let mut tensors = HashMap::new();
        for (i, (name, shape)) in expected_tensors(&config).into_iter().enumerate() {
            let t = if name.ends_with("norm.weight") {
                Tensor::ones(shape.as_slice(), DType::F32, device)?
            } else if name.ends_with(".bias") {
                Tensor::zeros(shape.as_slice(), DType::F32, device)?
            } else {
                effbench_core::testing::seeded_tensor(&shape, half_width, seed ^ (i as u64 + 1))
            };
            tensors.insert(name, t);
        }
        Self::from_hf_tensors(config, tensors, device)
    }

    /// Reads a checkpoint directory written by [`Student::save`] (or any Hugging Face llama/qwen2
    /// checkpoint in f32/f16/bf16), refusing one whose tensors do not match its `config.json`.
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        let config = ModelConfig::from_hf_config_json(&dir.join("config.json"))?;
        let weights = dir.join("model.safetensors");
        if !weights.is_file() {
            return Err(DistillError::CheckpointMismatch {
                path: dir.to_path_buf(),
                detail: "there is no model.safetensors".into(),
            });
        }
        let mut tensors = candle_core::safetensors::load(&weights, device).map_err(|e| {
            DistillError::BadFile {
                path: weights.clone(),
                detail: e.to_string().lines().next().unwrap_or("").to_string(),
            }
        })?;
        let mut config = config;
        // As in effbench-core's loader: no head tensor means the head is the embedding table.
        config.tie_word_embeddings = !tensors.contains_key("lm_head.weight");
        let mismatch = |detail: String| DistillError::CheckpointMismatch {
            path: dir.to_path_buf(),
            detail,
        };
        let mut wanted = HashMap::new();
        for (name, shape) in expected_tensors(&config) {
            match tensors.get(&name) {
                None => return Err(mismatch(format!("tensor `{name}` is missing"))),
                Some(t) if t.dims() != shape.as_slice() => {
                    return Err(mismatch(format!(
                        "tensor `{name}` has shape {:?} but the config implies {shape:?}",
                        t.dims()
                    )))
                }
                Some(_) => {}
            }
            wanted.insert(name.clone(), tensors.remove(&name).expect("checked"));
        }
        // Buffers such as rotary inverse frequencies are harmless; another layer is not.
        if let Some(extra) = tensors.keys().find(|k| k.contains(".layers.")) {
            return Err(mismatch(format!(
                "tensor `{extra}` is not part of a {}-layer model",
                config.num_layers
            )));
        }
        Self::from_hf_tensors(config, wanted, device)
    }

    fn build(config: ModelConfig, varmap: VarMap, device: &Device) -> Result<Self> {
        // The trainable student is a Llama-style block; training Gemma's would need its norms,
        // GELU and windows in this graph too.
        if config.block != effbench_core::BlockDetails::default() {
            return Err(DistillError::Invalid(format!(
                "a {} student is not supported yet: distillation students are llama or qwen2 \
                 blocks",
                config.architecture.name()
            )));
        }
        let vars = varmap.data().lock().expect("varmap lock").clone();
        let get = |name: &str, shape: &[usize]| -> Result<Tensor> {
            let var = vars.get(name).ok_or_else(|| {
                DistillError::Invalid(format!("student tensor `{name}` was never set"))
            })?;
            if var.dims() != shape {
                return Err(DistillError::Invalid(format!(
                    "student tensor `{name}` has shape {:?}, expected {shape:?}",
                    var.dims()
                )));
            }
            Ok(var.as_tensor().clone())
        };
        let h = config.hidden_size;
        let ffn = config.intermediate_size;
        let linear = |name: &str, out: usize, inp: usize, bias: bool| -> Result<Linear> {
            let w = get(&format!("{name}.weight"), &[out, inp])?;
            let b = if bias {
                Some(get(&format!("{name}.bias"), &[out])?)
            } else {
                None
            };
            Ok(Linear::new(w, b))
        };
        let mut blocks = Vec::with_capacity(config.num_layers);
        for i in 0..config.num_layers {
            let p = format!("model.layers.{i}");
            let bias = config.qkv_bias;
            blocks.push(Block {
                input_norm: get(&format!("{p}.input_layernorm.weight"), &[h])?,
                post_norm: get(&format!("{p}.post_attention_layernorm.weight"), &[h])?,
                q: linear(&format!("{p}.self_attn.q_proj"), config.q_dim(), h, bias)?,
                k: linear(&format!("{p}.self_attn.k_proj"), config.kv_dim(), h, bias)?,
                v: linear(&format!("{p}.self_attn.v_proj"), config.kv_dim(), h, bias)?,
                o: linear(&format!("{p}.self_attn.o_proj"), h, config.q_dim(), false)?,
                gate: linear(&format!("{p}.mlp.gate_proj"), ffn, h, false)?,
                up: linear(&format!("{p}.mlp.up_proj"), ffn, h, false)?,
                down: linear(&format!("{p}.mlp.down_proj"), h, ffn, false)?,
            });
        }
        let embed_w = get("model.embed_tokens.weight", &[config.vocab_size, h])?;
        let lm_head = if config.tie_word_embeddings {
            None
        } else {
            Some(get("lm_head.weight", &[config.vocab_size, h])?)
        };
        let (rope_cos, rope_sin) = effbench_core::model::rope_tables(&config, device)?;
        Ok(Self {
            embed: Embedding::new(embed_w, h),
            final_norm: get("model.norm.weight", &[h])?,
            blocks,
            lm_head,
            rope_cos,
            rope_sin,
            device: device.clone(),
            config,
            varmap,
        })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The trainable parameters, in a fixed (name) order.
    pub fn vars(&self) -> Vec<Var> {
        let data = self.varmap.data().lock().expect("varmap lock");
        let mut named: Vec<(&String, &Var)> = data.iter().collect();
        named.sort_by(|a, b| a.0.cmp(b.0));
        named.into_iter().map(|(_, v)| v.clone()).collect()
    }

    /// One parameter by its Hugging Face name, for inspection.
    pub fn tensor(&self, name: &str) -> Option<Tensor> {
        let data = self.varmap.data().lock().expect("varmap lock");
        data.get(name).map(|v| v.as_tensor().clone())
    }

    pub fn num_parameters(&self) -> usize {
        self.vars().iter().map(|v| v.elem_count()).sum()
    }

    /// Logits (T, vocab) for every position of one sequence, differentiable in the weights.
    pub fn forward(&self, tokens: &[u32]) -> Result<Tensor> {
        let cfg = &self.config;
        let t = tokens.len();
        if t == 0 {
            return Err(DistillError::Invalid("empty sequence".into()));
        }
        if t > self.rope_cos.dims()[0] {
            return Err(DistillError::Invalid(format!(
                "sequence of {t} tokens exceeds the student's {} positions",
                self.rope_cos.dims()[0]
            )));
        }
        if let Some(&bad) = tokens.iter().find(|&&x| x as usize >= cfg.vocab_size) {
            return Err(DistillError::Invalid(format!(
                "token id {bad} is outside the student's vocabulary of {}",
                cfg.vocab_size
            )));
        }
        let (nh, nkv, hd) = (cfg.num_heads, cfg.num_kv_heads, cfg.head_dim);
        let eps = cfg.rms_norm_eps as f32;
        let ids = Tensor::new(tokens, &self.device)?;
        let mut x = self.embed.forward(&ids)?;
        let cos = self.rope_cos.narrow(0, 0, t)?;
        let sin = self.rope_sin.narrow(0, 0, t)?;
        let mask = causal_mask(t, &self.device)?;
        let scale = 1.0 / (hd as f64).sqrt();
        for b in &self.blocks {
            let h = candle_nn::ops::rms_norm_slow(&x, &b.input_norm, eps)?;
            let heads = |y: Tensor, n: usize| -> Result<Tensor> {
                Ok(y.reshape((1, t, n, hd))?.transpose(1, 2)?.contiguous()?)
            };
            let q = candle_nn::rotary_emb::rope_slow(&heads(b.q.forward(&h)?, nh)?, &cos, &sin)?;
            let k = candle_nn::rotary_emb::rope_slow(&heads(b.k.forward(&h)?, nkv)?, &cos, &sin)?;
            let v = heads(b.v.forward(&h)?, nkv)?;
            let (k, v) = (repeat_kv(k, nh / nkv)?, repeat_kv(v, nh / nkv)?);
            let scores = (q.matmul(&k.t()?)? * scale)?.broadcast_add(&mask)?;
            let probs = candle_nn::ops::softmax(&scores, D::Minus1)?;
            let attn = probs.matmul(&v)?.transpose(1, 2)?.reshape((t, nh * hd))?;
            x = (x + b.o.forward(&attn)?)?;
            let h = candle_nn::ops::rms_norm_slow(&x, &b.post_norm, eps)?;
            let act = (b.gate.forward(&h)?.silu()? * b.up.forward(&h)?)?;
            x = (x + b.down.forward(&act)?)?;
        }
        let x = candle_nn::ops::rms_norm_slow(&x, &self.final_norm, eps)?;
        let head = self.lm_head.as_ref().unwrap_or(self.embed.embeddings());
        Ok(x.matmul(&head.t()?)?)
    }

    /// Writes `model.safetensors` and `config.json` into `dir` (created if needed). The weights
    /// go to a temporary file first, so an interrupted save never leaves a torn checkpoint.
    /// `extra_config` (e.g. bos/eos token ids) is merged into `config.json`.
    pub fn save(&self, dir: &Path, extra_config: &serde_json::Value) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let tmp = dir.join("model.safetensors.tmp");
        self.varmap.save(&tmp)?;
        let weights = dir.join("model.safetensors");
        std::fs::rename(&tmp, &weights).map_err(io(&weights))?;
        let mut json = self.config.to_hf_config_json();
        if let (Some(obj), Some(extra)) = (json.as_object_mut(), extra_config.as_object()) {
            for (k, v) in extra {
                obj.insert(k.clone(), v.clone());
            }
        }
        let path = dir.join("config.json");
        let text = serde_json::to_string_pretty(&json).expect("json");
        std::fs::write(&path, text).map_err(io(&path))?;
        Ok(())
    }
}

/// K/V heads shared by `group` query heads, repeated so each query head has its own.
fn repeat_kv(x: Tensor, group: usize) -> Result<Tensor> {
    if group == 1 {
        return Ok(x);
    }
    let (b, nkv, t, hd) = x.dims4()?;
    Ok(x.unsqueeze(2)?
        .broadcast_as((b, nkv, group, t, hd))?
        .reshape((b, nkv * group, t, hd))?)
}

fn causal_mask(t: usize, device: &Device) -> Result<Tensor> {
    let mask: Vec<f32> = (0..t)
        .flat_map(|i| (0..t).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Ok(Tensor::from_vec(mask, (t, t), device)?)
}

/// bos/eos ids for a student's config.json, as Hugging Face checkpoints carry them, so
/// generation with the student stops where the teacher's does.
pub fn special_token_config(teacher: &effbench_core::LoadedModel) -> serde_json::Value {
    let mut extra = serde_json::json!({});
    if let Some(bos) = teacher.special.bos {
        extra["bos_token_id"] = bos.into();
    }
    match teacher.special.eog.as_slice() {
        [] => {}
        [one] => extra["eos_token_id"] = (*one).into(),
        many => extra["eos_token_id"] = many.to_vec().into(),
    }
    extra
}

/// The teacher's tokenizer beside the student in `out` (tokenizer.json and
/// tokenizer_config.json), so effbench and Hugging Face tools tokenize the student exactly as
/// the teacher.
pub fn write_tokenizer_files(teacher: &effbench_core::LoadedModel, out: &Path) -> Result<()> {
    let path = out.join("tokenizer.json");
    teacher
        .tokenizer
        .save(&path, false)
        .map_err(|e| DistillError::BadFile {
            path: path.clone(),
            detail: format!("writing the tokenizer: {e}"),
        })?;
    let token = |id: Option<u32>| id.and_then(|i| teacher.tokenizer.id_to_token(i));
    let config = serde_json::json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": token(teacher.special.bos),
        "eos_token": token(teacher.special.eos),
    });
    let path = out.join("tokenizer_config.json");
    let text = serde_json::to_string_pretty(&config).expect("a JSON value serialises");
    std::fs::write(&path, text).map_err(io(&path))
}
