//! One decoder for the Llama family (llama, qwen2, qwen3) and Gemma 3: pre-norm RMSNorm, RoPE,
//! grouped-query attention, a gated MLP, and Gemma's extras where the config asks for them
//! (q/k norms, sandwich norms, scaled embeddings, GELU, sliding-window layers with their own
//! RoPE base, soft-capped logits). Its forward pass takes a batch of sequence chunks of any
//! lengths, so prefill, single-token decode, speculative verification and continuous batching
//! share it.

use std::borrow::Cow;
use std::sync::Arc;

use candle_core::quantized::{QStorage, QTensor};
use candle_core::{DType, Device, DeviceLocation, Tensor};

use crate::config::{Activation, ModelConfig, RopeStyle};
use crate::elementwise;
use crate::error::{CoreError, Result};
use crate::kv::{ContiguousKvCache, KvCache, KvShape, SeqId};
use crate::linear::{LinearWeight, SourceTensor, WeightPolicy, WeightRole};
use crate::source::WeightSource;

/// Which of a chunk's positions need logits. Generation needs only the last; perplexity and
/// speculative verification need all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogitsFor {
    None,
    Last,
    All,
}

/// New tokens for one sequence. Their positions continue from what the cache already holds.
#[derive(Debug, Clone)]
pub struct SeqChunk {
    pub seq: SeqId,
    pub tokens: Vec<u32>,
    pub logits: LogitsFor,
}

impl SeqChunk {
    pub fn new(seq: SeqId, tokens: Vec<u32>, logits: LogitsFor) -> Self {
        Self {
            seq,
            tokens,
            logits,
        }
    }
}

/// Logits per chunk, in batch order: (positions wanted, vocab) f32, or None.
#[derive(Debug)]
pub struct BatchLogits {
    pub per_chunk: Vec<Option<Tensor>>,
}

/// Where a GGML embedding table's lookups happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmbeddingPlacement {
    /// Host memory: the quantized table is read in place (a borrowed slice, no copy) and only
    /// the looked-up rows are dequantized, so a 150k-token vocabulary does not cost a gigabyte
    /// of f32.
    QuantizedRowsOnHost,
    /// An accelerator: the table is dequantized once, at load, to an f16 copy held on the
    /// device, and a lookup is an `index_select` there. Reading the quantized rows on the host
    /// would copy the whole table off the device on every forward pass.
    F16OnDevice,
}

impl EmbeddingPlacement {
    pub fn for_location(location: DeviceLocation) -> Self {
        match location {
            DeviceLocation::Cpu => Self::QuantizedRowsOnHost,
            DeviceLocation::Cuda { .. } | DeviceLocation::Metal { .. } => Self::F16OnDevice,
        }
    }
}

/// Token embeddings: a GGML table kept in its own format on the host, or a dense table on the
/// model's device (see [`EmbeddingPlacement`]).
#[derive(Debug)]
enum Embeddings {
    GgmlRows {
        table: Arc<QTensor>,
        row_bytes: usize,
    },
    Dense(Tensor),
}

impl Embeddings {
    fn new(
        source: SourceTensor,
        dtype: Option<DType>,
        device: &Device,
        placement: EmbeddingPlacement,
    ) -> Result<Self> {
        Ok(match (source, dtype) {
            (SourceTensor::Ggml(q), None) if placement == EmbeddingPlacement::F16OnDevice => {
                Self::Dense(q.dequantize_f16(device)?)
            }
            (SourceTensor::Ggml(q), None) => {
                let (rows, cols) = q.shape().dims2()?;
                let block = q.dtype().block_size();
                if !cols.is_multiple_of(block) {
                    return Err(CoreError::Invalid(format!(
                        "embedding width {cols} is not a multiple of block size {block}"
                    )));
                }
                let row_bytes = cols / block * q.dtype().type_size();
                debug_assert_eq!(row_bytes * rows, q.storage_size_in_bytes());
                Self::GgmlRows {
                    table: q,
                    row_bytes,
                }
            }
            (SourceTensor::Ggml(q), Some(DType::F16)) => {
                Self::Dense(q.dequantize_f16(&q.device())?)
            }
            (source, dtype) => {
                let t = source.to_f32()?;
                Self::Dense(match dtype {
                    Some(d) => t.to_dtype(d)?,
                    None => t,
                })
            }
        })
    }

    fn storage_bytes(&self) -> usize {
        match self {
            Self::GgmlRows { table, .. } => table.storage_size_in_bytes(),
            Self::Dense(t) => t.elem_count() * t.dtype().size_in_bytes(),
        }
    }

    fn lookup(&self, tokens: &[u32], device: &Device) -> Result<Tensor> {
        match self {
            Self::Dense(t) => {
                let ids = Tensor::new(tokens, device)?;
                Ok(t.index_select(&ids, 0)?.to_dtype(DType::F32)?)
            }
            Self::GgmlRows { table, row_bytes } => {
                let (_, cols) = table.shape().dims2()?;
                // Host storage lends its bytes; anything else would hand back a copy of the
                // whole table, which is what this layout exists to avoid.
                let Cow::Borrowed(data) = table.data()? else {
                    return Err(CoreError::Invalid(
                        "a quantized embedding table read row by row must live in host memory"
                            .into(),
                    ));
                };
                let mut rows = Vec::with_capacity(tokens.len());
                for &t in tokens {
                    let start = t as usize * row_bytes;
                    let bytes = &data[start..start + row_bytes];
                    let storage =
                        QStorage::from_data(Cow::Borrowed(bytes), &Device::Cpu, table.dtype())?;
                    let row = QTensor::new(storage, (1, cols))?;
                    rows.push(row.dequantize(&Device::Cpu)?);
                }
                Ok(Tensor::cat(&rows, 0)?.to_device(device)?)
            }
        }
    }
}

#[derive(Debug)]
struct Layer {
    attn_norm: Tensor,
    q: Arc<dyn LinearWeight>,
    k: Arc<dyn LinearWeight>,
    v: Arc<dyn LinearWeight>,
    q_bias: Option<Tensor>,
    k_bias: Option<Tensor>,
    v_bias: Option<Tensor>,
    o: Arc<dyn LinearWeight>,
    ffn_norm: Tensor,
    gate: Arc<dyn LinearWeight>,
    up: Arc<dyn LinearWeight>,
    down: Arc<dyn LinearWeight>,
    /// Gemma: RMSNorm weights over each head of q and k, and on the attention and MLP outputs.
    q_norm: Option<Tensor>,
    k_norm: Option<Tensor>,
    post_attn_norm: Option<Tensor>,
    post_ffn_norm: Option<Tensor>,
    /// Keys this layer sees when it slides, which also selects the local RoPE tables.
    window: Option<usize>,
}

/// RoPE's cos and sin tables for one base.
#[derive(Debug, Clone)]
struct RopeTables {
    cos: Tensor,
    sin: Tensor,
}

/// Where every byte of the weights went, for the memory column of reports.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct WeightBytes {
    pub linear: usize,
    pub embeddings: usize,
    pub output_head: usize,
    pub norms_and_biases: usize,
    pub total: usize,
    /// Bits per weight over the linear layers of the blocks, scales included.
    pub block_bits_per_weight: f64,
}

#[derive(Debug)]
pub struct Model {
    config: ModelConfig,
    embeddings: Embeddings,
    layers: Vec<Layer>,
    final_norm: Tensor,
    /// None when tied to the (GGML) embedding table and built from it.
    output_head: Arc<dyn LinearWeight>,
    output_head_tied: bool,
    rope: RopeTables,
    /// The sliding-window layers' tables, where their base differs.
    rope_local: Option<RopeTables>,
    device: Device,
    label: String,
}

impl Model {
    /// Builds the decoder from any [`WeightSource`], each matrix shaped by `policy`.
    pub fn load(
        source: &mut dyn WeightSource,
        policy: &dyn WeightPolicy,
        device: &Device,
    ) -> Result<Self> {
        let placement = EmbeddingPlacement::for_location(device.location());
        Self::load_placed(source, policy, device, placement)
    }

    /// [`Model::load`] with the embedding layout chosen by the caller: tests run the
    /// accelerator's layout on the CPU, where it can be checked against the host one.
    pub fn load_placed(
        source: &mut dyn WeightSource,
        policy: &dyn WeightPolicy,
        device: &Device,
        embedding_placement: EmbeddingPlacement,
    ) -> Result<Self> {
        let config = source.config().clone();
        let label = policy.describe(&source.format());
        let hidden = config.hidden_size;
        let dense = |source: &mut dyn WeightSource, name: &str| -> Result<Tensor> {
            Ok(source.tensor(name)?.to_f32()?.to_device(device)?)
        };
        let expect = |name: &str, t: &SourceTensor, shape: &[usize]| -> Result<()> {
            if t.dims() != shape {
                return Err(CoreError::ShapeMismatch {
                    name: name.into(),
                    got: t.dims(),
                    expected: shape.to_vec(),
                });
            }
            Ok(())
        };
        let embd_source = source.tensor("token_embd.weight")?;
        expect(
            "token_embd.weight",
            &embd_source,
            &[config.vocab_size, hidden],
        )?;
        let mut layers = Vec::with_capacity(config.num_layers);
        for i in 0..config.num_layers {
            let mut linear = |suffix: &str,
                              role: WeightRole,
                              out: usize,
                              inp: usize|
             -> Result<Arc<dyn LinearWeight>> {
                let name = format!("blk.{i}.{suffix}");
                let t = source.tensor(&name)?;
                expect(&name, &t, &[out, inp])?;
                policy.build(&name, role, t)
            };
            let q = linear(
                "attn_q.weight",
                WeightRole::Attention,
                config.q_dim(),
                hidden,
            )?;
            let k = linear(
                "attn_k.weight",
                WeightRole::Attention,
                config.kv_dim(),
                hidden,
            )?;
            let v = linear(
                "attn_v.weight",
                WeightRole::Attention,
                config.kv_dim(),
                hidden,
            )?;
            let o = linear(
                "attn_output.weight",
                WeightRole::Attention,
                hidden,
                config.q_dim(),
            )?;
            let ffn = config.intermediate_size;
            let gate = linear("ffn_gate.weight", WeightRole::Mlp, ffn, hidden)?;
            let up = linear("ffn_up.weight", WeightRole::Mlp, ffn, hidden)?;
            let down = linear("ffn_down.weight", WeightRole::Mlp, hidden, ffn)?;
            let mut optional_norm = |present: bool, suffix: &str, len: usize| -> Result<_> {
                if !present {
                    return Ok(None);
                }
                let name = format!("blk.{i}.{suffix}");
                let t = source.tensor(&name)?;
                expect(&name, &t, &[len])?;
                Ok(Some(t.to_f32()?.to_device(device)?))
            };
            let b = &config.block;
            let q_norm = optional_norm(b.qk_norm, "attn_q_norm.weight", config.head_dim)?;
            let k_norm = optional_norm(b.qk_norm, "attn_k_norm.weight", config.head_dim)?;
            let post_attn_norm =
                optional_norm(b.sandwich_norms, "post_attention_norm.weight", hidden)?;
            let post_ffn_norm = optional_norm(b.sandwich_norms, "post_ffw_norm.weight", hidden)?;
            let (q_bias, k_bias, v_bias) = if config.qkv_bias {
                (
                    Some(dense(source, &format!("blk.{i}.attn_q.bias"))?),
                    Some(dense(source, &format!("blk.{i}.attn_k.bias"))?),
                    Some(dense(source, &format!("blk.{i}.attn_v.bias"))?),
                )
            } else {
                (None, None, None)
            };
            layers.push(Layer {
                attn_norm: dense(source, &format!("blk.{i}.attn_norm.weight"))?,
                ffn_norm: dense(source, &format!("blk.{i}.ffn_norm.weight"))?,
                q,
                k,
                v,
                q_bias,
                k_bias,
                v_bias,
                o,
                gate,
                up,
                down,
                q_norm,
                k_norm,
                post_attn_norm,
                post_ffn_norm,
                window: config.sliding_window_of(i),
            });
        }
        let final_norm = dense(source, "output_norm.weight")?;
        let (output_head, output_head_tied) = if source.has("output.weight") {
            let t = source.tensor("output.weight")?;
            expect("output.weight", &t, &[config.vocab_size, hidden])?;
            (
                policy.build("output.weight", WeightRole::OutputHead, t)?,
                false,
            )
        } else {
            (
                policy.build("output.weight", WeightRole::OutputHead, embd_source.clone())?,
                true,
            )
        };
        let embeddings = Embeddings::new(
            embd_source,
            policy.embedding_dtype(),
            device,
            embedding_placement,
        )?;
        let (cos, sin) = rope_tables(&config, device)?;
        let rope_local = match config.block.rope_local_theta {
            Some(theta) if config.block.sliding_window.is_some() && theta != config.rope_theta => {
                // llama.cpp scales only the global layers' RoPE.
                let local = ModelConfig {
                    rope_theta: theta,
                    rope_scaling: None,
                    ..config.clone()
                };
                let (cos, sin) = rope_tables(&local, device)?;
                Some(RopeTables { cos, sin })
            }
            _ => None,
        };
        Ok(Self {
            config,
            embeddings,
            layers,
            final_norm,
            output_head,
            output_head_tied,
            rope: RopeTables { cos, sin },
            rope_local,
            device: device.clone(),
            label,
        })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// How reports name this variant, e.g. "Q4_1 as stored".
    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn weight_bytes(&self) -> WeightBytes {
        let mut linear = 0;
        let mut weights = 0usize;
        let mut small = self.final_norm.elem_count() * 4;
        for l in &self.layers {
            for w in [&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down] {
                linear += w.storage_bytes();
                weights += w.in_features() * w.out_features();
            }
            small += (l.attn_norm.elem_count() + l.ffn_norm.elem_count()) * 4;
            let optional = [
                &l.q_bias,
                &l.k_bias,
                &l.v_bias,
                &l.q_norm,
                &l.k_norm,
                &l.post_attn_norm,
                &l.post_ffn_norm,
            ];
            for b in optional.into_iter().flatten() {
                small += b.elem_count() * 4;
            }
        }
        let embeddings = self.embeddings.storage_bytes();
        // A tied head built from a GGML table shares its bytes; a dequantized copy does not.
        let shares_table =
            self.output_head_tied && matches!(self.embeddings, Embeddings::GgmlRows { .. });
        let output_head = if shares_table {
            0
        } else {
            self.output_head.storage_bytes()
        };
        WeightBytes {
            linear,
            embeddings,
            output_head,
            norms_and_biases: small,
            total: linear + embeddings + output_head + small,
            block_bits_per_weight: linear as f64 * 8.0 / weights.max(1) as f64,
        }
    }

    /// The linear layers of the blocks and the head, by canonical name, for techniques that
    /// inspect or transform weights.
    pub fn linear_weights(&self) -> Vec<(String, Arc<dyn LinearWeight>)> {
        let mut out = Vec::new();
        for (i, l) in self.layers.iter().enumerate() {
            for (n, w) in [
                ("attn_q", &l.q),
                ("attn_k", &l.k),
                ("attn_v", &l.v),
                ("attn_output", &l.o),
                ("ffn_gate", &l.gate),
                ("ffn_up", &l.up),
                ("ffn_down", &l.down),
            ] {
                out.push((format!("blk.{i}.{n}.weight"), w.clone()));
            }
        }
        out.push(("output.weight".into(), self.output_head.clone()));
        out
    }

    /// Runs one forward pass over every chunk of the batch, appending their K/V to `cache`.
    pub fn forward(&self, batch: &[SeqChunk], cache: &mut dyn KvCache) -> Result<BatchLogits> {
        // Inside the rayon pool each kernel's parallel loop starts on a warm worker; called from
        // outside, every one of the ~200 matmuls of a decode step pays a cross-thread wake-up.
        let mut result = None;
        rayon::scope(|_| result = Some(self.forward_in_pool(batch, cache)));
        result.expect("rayon::scope runs its body")
    }

    fn forward_in_pool(&self, batch: &[SeqChunk], cache: &mut dyn KvCache) -> Result<BatchLogits> {
        let mut tokens = Vec::new();
        let mut starts = Vec::with_capacity(batch.len());
        for chunk in batch {
            self.check_tokens(chunk)?;
            if batch.iter().filter(|c| c.seq == chunk.seq).count() > 1 {
                return Err(CoreError::Invalid(format!(
                    "sequence {} appears twice in one batch",
                    chunk.seq
                )));
            }
            let start = cache.seq_len(chunk.seq);
            if start + chunk.tokens.len() > self.rope.cos.dims()[0] {
                return Err(CoreError::CacheFull {
                    seq: chunk.seq,
                    needed: start + chunk.tokens.len(),
                    capacity: self.rope.cos.dims()[0],
                });
            }
            cache.reserve(chunk.seq, chunk.tokens.len())?;
            starts.push(start);
            tokens.extend_from_slice(&chunk.tokens);
        }

        let mut x = self.embed(&tokens)?;
        for layer_idx in 0..self.layers.len() {
            x = self.block(layer_idx, x, batch, &starts, cache)?;
        }
        for chunk in batch {
            cache.commit(chunk.seq, chunk.tokens.len())?;
        }

        // The rows that want logits go through the output head in one matmul: per chunk, a
        // decode batch of 64 sequences would read the vocabulary-sized head 64 times.
        let mut wanted = Vec::with_capacity(batch.len());
        let mut spans = Vec::with_capacity(batch.len());
        let (mut offset, mut row) = (0, 0);
        for chunk in batch {
            let n = chunk.tokens.len();
            let rows = match chunk.logits {
                LogitsFor::None => None,
                LogitsFor::Last => Some(x.narrow(0, offset + n - 1, 1)?),
                LogitsFor::All => Some(x.narrow(0, offset, n)?),
            };
            spans.push(rows.as_ref().map(|r| {
                let span = (row, r.dims()[0]);
                row += span.1;
                span
            }));
            wanted.extend(rows);
            offset += n;
        }
        let logits = match wanted.len() {
            0 => None,
            1 => Some(wanted.pop().expect("one")),
            _ => Some(Tensor::cat(&wanted, 0)?),
        }
        .map(|rows| self.logits_of(&rows))
        .transpose()?;
        let per_chunk = spans
            .into_iter()
            .map(|span| match (span, &logits) {
                (Some((start, len)), Some(l)) => Ok(Some(l.narrow(0, start, len)?)),
                _ => Ok(None),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(BatchLogits { per_chunk })
    }

    /// The embeddings of `tokens`, scaled where the architecture scales them.
    fn embed(&self, tokens: &[u32]) -> Result<Tensor> {
        let x = self.embeddings.lookup(tokens, &self.device)?;
        if self.config.block.scale_embeddings {
            // In f32, as llama.cpp scales; Hugging Face rounds the factor to the weights' dtype.
            let scale = (self.config.hidden_size as f32).sqrt();
            return Ok((x * scale as f64)?);
        }
        Ok(x)
    }

    /// A chunk has tokens, and each is in the vocabulary.
    fn check_tokens(&self, chunk: &SeqChunk) -> Result<()> {
        if chunk.tokens.is_empty() {
            return Err(CoreError::Invalid(format!(
                "chunk for sequence {} has no tokens",
                chunk.seq
            )));
        }
        let vocab = self.config.vocab_size;
        match chunk.tokens.iter().find(|&&t| t as usize >= vocab) {
            Some(&token) => Err(CoreError::TokenOutOfRange { token, vocab }),
            None => Ok(()),
        }
    }

    /// Decoder block `layer_idx` on the hidden states `x` of `batch` (rows in chunk order),
    /// whose chunks start at positions `starts`; their K/V go to `cache`, already reserved.
    fn block(
        &self,
        layer_idx: usize,
        x: Tensor,
        batch: &[SeqChunk],
        starts: &[usize],
        cache: &mut dyn KvCache,
    ) -> Result<Tensor> {
        let layer = &self.layers[layer_idx];
        let eps = self.config.rms_norm_eps as f32;
        let h = candle_nn::ops::rms_norm(&x, &layer.attn_norm, eps)?;
        let q = add_bias(layer.q.forward(&h)?, &layer.q_bias)?;
        let k = add_bias(layer.k.forward(&h)?, &layer.k_bias)?;
        let v = add_bias(layer.v.forward(&h)?, &layer.v_bias)?;
        let mut outputs = Vec::with_capacity(batch.len());
        let mut offset = 0;
        for (chunk, &start) in batch.iter().zip(starts) {
            let n = chunk.tokens.len();
            let attn = self.attend_chunk(
                layer_idx,
                chunk.seq,
                start,
                &q.narrow(0, offset, n)?,
                &k.narrow(0, offset, n)?,
                &v.narrow(0, offset, n)?,
                cache,
            )?;
            outputs.push(attn);
            offset += n;
        }
        let attn = if outputs.len() == 1 {
            outputs.pop().expect("one output")
        } else {
            Tensor::cat(&outputs, 0)?
        };
        let post_norm = |t: Tensor, norm: &Option<Tensor>| -> Result<Tensor> {
            Ok(match norm {
                Some(w) => candle_nn::ops::rms_norm(&t, w, eps)?,
                None => t,
            })
        };
        let attn_out = post_norm(layer.o.forward(&attn)?, &layer.post_attn_norm)?;
        let x = elementwise::add(&x, &attn_out)?;
        let h = candle_nn::ops::rms_norm(&x, &layer.ffn_norm, eps)?;
        let gate = layer.gate.forward(&h)?;
        let up = layer.up.forward(&h)?;
        let gated = match self.config.block.activation {
            Activation::Silu => elementwise::silu_mul(&gate, &up)?,
            Activation::GeluTanh => elementwise::gelu_tanh_mul(&gate, &up)?,
        };
        let mlp_out = post_norm(layer.down.forward(&gated)?, &layer.post_ffn_norm)?;
        elementwise::add(&x, &mlp_out)
    }

    #[allow(clippy::too_many_arguments)]
    fn attend_chunk(
        &self,
        layer: usize,
        seq: SeqId,
        start: usize,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        cache: &mut dyn KvCache,
    ) -> Result<Tensor> {
        let cfg = &self.config;
        let n = q.dims()[0];
        let (nh, nkv, hd) = (cfg.num_heads, cfg.num_kv_heads, cfg.head_dim);
        let l = &self.layers[layer];
        let eps = cfg.rms_norm_eps as f32;
        // Per-head RMSNorm: each head's head_dim values are one row.
        let head_norm = |t: &Tensor, heads: usize, norm: &Option<Tensor>| -> Result<Tensor> {
            Ok(match norm {
                Some(w) => candle_nn::ops::rms_norm(&t.reshape((n * heads, hd))?, w, eps)?
                    .reshape((n, heads * hd))?,
                None => t.clone(),
            })
        };
        let mut q = head_norm(q, nh, &l.q_norm)?;
        let k = head_norm(k, nkv, &l.k_norm)?;
        // Caches scale scores by 1/sqrt(head_dim); another scale is folded into q.
        if let Some(scale) = cfg.block.attention_scale {
            q = (q * (scale * (hd as f64).sqrt()))?;
        }
        let heads_first = |t: &Tensor, heads: usize| -> Result<Tensor> {
            Ok(t.reshape((n, heads, hd))?
                .transpose(0, 1)?
                .contiguous()?
                .unsqueeze(0)?)
        };
        let tables = match (l.window, &self.rope_local) {
            (Some(_), Some(local)) => local,
            _ => &self.rope,
        };
        let cos = tables.cos.narrow(0, start, n)?;
        let sin = tables.sin.narrow(0, start, n)?;
        let rope = |t: Tensor| -> Result<Tensor> {
            Ok(match cfg.rope_style {
                RopeStyle::Interleaved => candle_nn::rotary_emb::rope_i(&t, &cos, &sin)?,
                RopeStyle::Halves => candle_nn::rotary_emb::rope(&t, &cos, &sin)?,
            }
            .squeeze(0)?)
        };
        let q = rope(heads_first(&q, nh)?)?;
        let k = rope(heads_first(&k, nkv)?)?;
        let v = heads_first(v, nkv)?.squeeze(0)?;
        let out = cache.attend(layer, seq, &q, &k, &v, l.window)?;
        Ok(out.transpose(0, 1)?.contiguous()?.reshape((n, nh * hd))?)
    }
}

// ---- One block at a time over whole sequences. ----
// GPTQ's calibration runs every block over the same sequences twice (once to record its
// inputs, once more after quantizing it); a full forward pass per block would redo every block
// before it.

impl Model {
    /// The embeddings of whole sequences (each chunk from position 0; its `seq` ids distinct),
    /// rows in chunk order: the input of block 0 for [`Model::run_block`].
    pub fn embed_sequences(&self, batch: &[SeqChunk]) -> Result<Tensor> {
        let mut tokens = Vec::new();
        for chunk in batch {
            self.check_tokens(chunk)?;
            tokens.extend_from_slice(&chunk.tokens);
        }
        self.embed(&tokens)
    }

    /// Block `layer` over the hidden states `x` of the whole sequences `batch` (from
    /// [`Model::embed_sequences`] or from block `layer - 1`), with a cache of its own.
    pub fn run_block(&self, layer: usize, batch: &[SeqChunk], x: &Tensor) -> Result<Tensor> {
        if layer >= self.layers.len() {
            return Err(CoreError::Invalid(format!(
                "block {layer} of a model with {} blocks",
                self.layers.len()
            )));
        }
        let longest = batch.iter().map(|c| c.tokens.len()).max().unwrap_or(0);
        let mut cache = ContiguousKvCache::new(KvShape::of(&self.config), longest, &self.device);
        for chunk in batch {
            cache.reserve(chunk.seq, chunk.tokens.len())?;
        }
        let starts = vec![0; batch.len()];
        let mut result = None;
        rayon::scope(|_| {
            result = Some(self.block(layer, x.clone(), batch, &starts, &mut cache));
        });
        result.expect("rayon::scope runs its body")
    }

    /// Logits of hidden states after the last block: final norm, output head, and the soft cap
    /// where the architecture has one.
    pub fn logits_of(&self, x: &Tensor) -> Result<Tensor> {
        let logits = self.output_head.forward(&self.head_input(x)?)?;
        Ok(match self.config.block.final_logit_softcap {
            Some(cap) => ((logits / cap)?.tanh()? * cap)?,
            None => logits,
        })
    }

    /// What the output head multiplies for hidden states after the last block: their final
    /// norm.
    pub fn head_input(&self, x: &Tensor) -> Result<Tensor> {
        Ok(candle_nn::ops::rms_norm(
            &x.contiguous()?,
            &self.final_norm,
            self.config.rms_norm_eps as f32,
        )?)
    }
}

fn add_bias(x: Tensor, bias: &Option<Tensor>) -> Result<Tensor> {
    Ok(match bias {
        Some(b) => x.broadcast_add(b)?,
        None => x,
    })
}

/// RoPE's cos and sin tables, (positions, head_dim / 2) f32, for positions up to the config's
/// context (capped at 32k), with the config's frequency scaling. The inference model and the
/// distillation student share them.
pub fn rope_tables(cfg: &ModelConfig, device: &Device) -> Result<(Tensor, Tensor)> {
    // Long-context models advertise up to 128k positions; tables past what a benchmark uses
    // would only cost memory.
    let positions = cfg.max_position_embeddings.clamp(1, 32_768);
    let half = cfg.head_dim / 2;
    let factors = cfg
        .rope_scaling
        .as_ref()
        .map(|s| s.frequency_factors(cfg.head_dim, cfg.rope_theta));
    let inv_freq: Vec<f32> = (0..half)
        .map(|i| {
            let power = cfg.rope_theta.powf(2.0 * i as f64 / cfg.head_dim as f64);
            // Unscaled, the division stays in f32 as it always was, so every figure measured
            // before scaling existed is reproduced bit for bit.
            match &factors {
                None => 1.0 / power as f32,
                Some(f) => (1.0 / (power * f[i])) as f32,
            }
        })
        .collect();
    let mut cos = Vec::with_capacity(positions * half);
    let mut sin = Vec::with_capacity(positions * half);
    for p in 0..positions {
        for f in &inv_freq {
            let angle = p as f32 * f;
            cos.push(angle.cos());
            sin.push(angle.sin());
        }
    }
    Ok((
        Tensor::from_vec(cos, (positions, half), device)?,
        Tensor::from_vec(sin, (positions, half), device)?,
    ))
}

/// Log-probabilities of a row of logits, in f64: one implementation for the runtime and the
/// statistics alike.
pub use effbench_stats::log_softmax;

pub fn logits_rows(t: &Tensor) -> Result<Vec<Vec<f32>>> {
    Ok(t.to_dtype(DType::F32)?.to_vec2::<f32>()?)
}

/// The first index of the largest value, as numpy's `argmax` (and lm-eval, which uses it):
/// ties go to the earliest. Every greedy choice in effbench goes through this one function, so
/// plain and speculative decoding break ties alike. 0 for an empty row.
pub fn argmax<T: PartialOrd>(row: &[T]) -> usize {
    let mut best = 0;
    for (i, v) in row.iter().enumerate() {
        if *v > row[best] {
            best = i;
        }
    }
    best
}

// ---- Self-drafting: a cheaper model made of the target's own weights. ----
// Speculative decoding's self-draft (the target's first layers plus its output head) shares
// every weight with the target: only Arcs and tensor handles are cloned, no bytes.

impl Embeddings {
    fn share(&self) -> Self {
        match self {
            Self::GgmlRows { table, row_bytes } => Self::GgmlRows {
                table: table.clone(),
                row_bytes: *row_bytes,
            },
            Self::Dense(t) => Self::Dense(t.clone()),
        }
    }
}

impl Layer {
    fn share(&self) -> Self {
        Self {
            attn_norm: self.attn_norm.clone(),
            q: self.q.clone(),
            k: self.k.clone(),
            v: self.v.clone(),
            q_bias: self.q_bias.clone(),
            k_bias: self.k_bias.clone(),
            v_bias: self.v_bias.clone(),
            o: self.o.clone(),
            ffn_norm: self.ffn_norm.clone(),
            gate: self.gate.clone(),
            up: self.up.clone(),
            down: self.down.clone(),
            q_norm: self.q_norm.clone(),
            k_norm: self.k_norm.clone(),
            post_attn_norm: self.post_attn_norm.clone(),
            post_ffn_norm: self.post_ffn_norm.clone(),
            window: self.window,
        }
    }
}

impl Model {
    /// The first `layers` decoder blocks followed by this model's final norm and output head,
    /// sharing their weights: an early-exit draft for speculative decoding. Its config has
    /// `num_layers = layers`, so a KV cache sized from it holds only those layers.
    pub fn first_layers(&self, layers: usize) -> Result<Model> {
        if layers == 0 || layers > self.layers.len() {
            return Err(CoreError::Invalid(format!(
                "a draft of the first {layers} layers needs 1..={} (the model's layer count)",
                self.layers.len()
            )));
        }
        let mut config = self.config.clone();
        config.num_layers = layers;
        Ok(Model {
            config,
            embeddings: self.embeddings.share(),
            layers: self.layers[..layers].iter().map(Layer::share).collect(),
            final_norm: self.final_norm.clone(),
            output_head: self.output_head.clone(),
            output_head_tied: self.output_head_tied,
            rope: self.rope.clone(),
            rope_local: self.rope_local.clone(),
            device: self.device.clone(),
            label: format!("{} (first {layers} layers)", self.label),
        })
    }
}
