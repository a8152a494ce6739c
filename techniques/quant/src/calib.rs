//! Calibration data for GPTQ, and the Hessians `H = X^T X` of every linear input.
//!
//! **Corpus.** Text the model family generates itself: SmolLM2-135M-Instruct continues a fixed
//! list of 16 varied English prompts, sampled at temperature 0.8 / top-p 0.95 from a fixed seed,
//! and the documents are cached as text. No download, no overlap with WikiText-2 or MMLU, and
//! reproducible from the seed; the price is that it is a small model's prose, not human text
//! (data-free calibration of this kind is studied in e.g. LLM-QAT, Liu et al. 2023). Any model
//! is calibrated on windows of this text tokenized with its own tokenizer.
//!
//! **Hessians.** The model is loaded under [`CapturePolicy`], which wraps each f16 matrix in a
//! [`LinearWeight`] that adds `x^T x` of its input to a shared sum: q/k/v share one input, as do
//! gate/up, so each distinct input is summed once. Running a block over the calibration
//! sequences ([`BlockStates`]) thus yields its Hessians without hooks in the model.
//!
//! **Sequential calibration.** GPTQ as published quantizes block by block and feeds each block
//! the outputs of the blocks already quantized, so a layer's error feedback also corrects for
//! the drift of its inputs. [`Hessians::replace`] swaps a matrix for its quantized values, after
//! which the model multiplies by them. [`BlockStates`] keeps the calibration sequences' hidden
//! states between blocks, so the pipeline runs block `i` once to record its inputs and once
//! more, quantized, to make block `i + 1`'s: two sweeps of the model in all, where a full
//! forward pass per block would cost about `L / 2` sweeps. Without it, every layer sees the
//! unquantized (f16) model's activations (one sweep), which at 2 bits leaves each layer blind to
//! the damage upstream.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use candle_core::{DType, Tensor};
use effbench_core::decode::{Sampler, TemperatureTopP};
use effbench_core::linear::{Dequantize, SourceTensor};
use effbench_core::model::logits_rows;
use effbench_core::{
    ContiguousKvCache, KvCache, KvShape, LinearWeight, LoadedModel, LogitsFor, SeqChunk,
    WeightPolicy, WeightRole,
};

use crate::error::{QuantError, Result};
use crate::linalg::gram_acc;

/// The prompts the calibration documents start from: encyclopedic, narrative, technical,
/// conversational and instructional English, none taken from an evaluation set.
pub const SEED_PROMPTS: [&str; 16] = [
    "The history of the city begins",
    "Once upon a time, in a small village by the sea,",
    "In this tutorial, we will learn how to",
    "The main causes of the economic crisis were",
    "Dear Sarah,\n\nThank you for your letter.",
    "Photosynthesis is the process by which",
    "The committee met on Tuesday to discuss",
    "Here is a recipe for a simple vegetable soup:",
    "The museum's new exhibition explores",
    "When I was a child, my grandfather told me",
    "The following guidelines explain how to",
    "Volcanoes form when",
    "The football season ended with",
    "In the early nineteenth century, trade between",
    "To install the software, first",
    "The novel tells the story of",
];

/// Generates `docs` documents of up to `tokens` new tokens each with `model`, `batch` sequences
/// per forward pass. Deterministic for a seed (each document has its own sampler stream).
pub fn generate_corpus(
    model: &LoadedModel,
    docs: usize,
    tokens: usize,
    seed: u64,
    batch: usize,
    mut progress: impl FnMut(usize),
) -> Result<Vec<String>> {
    let stop = model.stop_tokens();
    let mut out = Vec::with_capacity(docs);
    for start in (0..docs).step_by(batch.max(1)) {
        let ids: Vec<usize> = (start..(start + batch.max(1)).min(docs)).collect();
        let prompts: Vec<Vec<u32>> = ids
            .iter()
            .map(|&i| model.encode(SEED_PROMPTS[i % SEED_PROMPTS.len()]))
            .collect::<std::result::Result<_, _>>()?;
        let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
        let mut cache = ContiguousKvCache::new(
            KvShape::of(model.model.config()),
            longest + tokens + 1,
            model.model.device(),
        );
        let mut samplers: Vec<TemperatureTopP> = ids
            .iter()
            .map(|&i| TemperatureTopP::new(0.8, 0.95, seed.wrapping_mul(1_000_003) + i as u64))
            .collect();
        let mut seqs: Vec<Vec<u32>> = prompts.clone();
        let mut live: Vec<usize> = (0..ids.len()).collect();
        let mut chunks: Vec<SeqChunk> = prompts
            .iter()
            .enumerate()
            .map(|(j, p)| SeqChunk::new(j as u64, p.clone(), LogitsFor::Last))
            .collect();
        for _ in 0..tokens {
            let logits = model.model.forward(&chunks, &mut cache)?;
            let mut next_live = Vec::new();
            let mut next_chunks = Vec::new();
            for (&j, l) in live.iter().zip(logits.per_chunk) {
                let l = l.ok_or_else(|| QuantError::Invalid("no logits for a sequence".into()))?;
                let row = logits_rows(&l)?.pop().unwrap_or_default();
                let t = samplers[j].sample(&row);
                if stop.contains(&t) {
                    cache.remove(j as u64);
                    continue;
                }
                seqs[j].push(t);
                next_live.push(j);
                next_chunks.push(SeqChunk::new(j as u64, vec![t], LogitsFor::Last));
            }
            live = next_live;
            chunks = next_chunks;
            if live.is_empty() {
                break;
            }
        }
        for s in &seqs {
            out.push(model.decode(s)?);
        }
        progress(out.len());
    }
    Ok(out)
}

/// `count` windows of `len` tokens from `docs` tokenized with `model`'s tokenizer: documents
/// are concatenated (each with the tokenizer's own BOS, if it adds one) and cut consecutively.
pub fn calibration_windows(
    model: &LoadedModel,
    docs: &[String],
    count: usize,
    len: usize,
) -> Result<Vec<Vec<u32>>> {
    let mut stream = Vec::new();
    for d in docs {
        stream.extend(model.encode(d)?);
        if stream.len() >= count * len {
            break;
        }
    }
    if stream.len() < count * len {
        return Err(QuantError::Invalid(format!(
            "the calibration corpus has {} tokens, fewer than {count} x {len} (hint: fewer or shorter calibration sequences)",
            stream.len()
        )));
    }
    Ok(stream
        .chunks_exact(len)
        .take(count)
        .map(<[u32]>::to_vec)
        .collect())
}

/// Which input a matrix reads, and whether it is the one matrix that records it: q/k/v read the
/// attention block's normalised input, gate/up the MLP's.
pub fn input_key(name: &str) -> (String, bool) {
    if name == "output.weight" {
        return ("output".into(), true);
    }
    let Some(rest) = name.strip_prefix("blk.") else {
        return (name.into(), true);
    };
    let (layer, matrix) = rest.split_once('.').unwrap_or((rest, ""));
    match matrix {
        "attn_q.weight" | "attn_k.weight" | "attn_v.weight" => {
            (format!("blk.{layer}.attn_in"), matrix == "attn_q.weight")
        }
        "ffn_gate.weight" | "ffn_up.weight" => {
            (format!("blk.{layer}.ffn_in"), matrix == "ffn_gate.weight")
        }
        _ => (name.trim_end_matches(".weight").into(), true),
    }
}

/// Running `X^T X` per input, for the layers currently selected (each holds `k^2` floats, 320 MB
/// for an 8960-wide input, so the pipeline records one block at a time).
#[derive(Debug, Default)]
pub struct Hessians {
    sums: Mutex<HashMap<String, (Vec<f32>, usize)>>,
    /// Matrices already quantized, by canonical name: forward passes multiply by these instead.
    replaced: Mutex<HashMap<String, Arc<dyn LinearWeight>>>,
    /// The blocks and whether the head are being recorded; None outside calibration passes.
    active: Mutex<Option<(std::ops::Range<usize>, bool)>>,
}

/// What [`layer_of`] gives the output head when told no layer count.
pub const HEAD_LAYER: usize = usize::MAX;

/// The block index of a matrix name; the output head counts as the layer after the last.
pub fn layer_of(name: &str, num_layers: usize) -> usize {
    name.strip_prefix("blk.")
        .and_then(|r| r.split('.').next())
        .and_then(|i| i.parse().ok())
        .unwrap_or(num_layers)
}

/// The error a capturing matrix past the selected layers returns to end a calibration forward
/// pass early: nothing after the last selected layer is needed.
const STOP: &str = "effbench-quant: calibration pass complete";

impl Hessians {
    /// Whether a forward pass can stop before `layer`: it and everything after it are outside
    /// the selection.
    fn past_selection(&self, layer: usize) -> bool {
        match &*self.active.lock().expect("no panics while held") {
            Some((blocks, head)) => !head && (layer == HEAD_LAYER || layer >= blocks.end),
            None => false,
        }
    }

    /// Records only the inputs of blocks in `layers` (and of the output head if `head`) from
    /// now on.
    pub fn select(&self, layers: std::ops::Range<usize>, head: bool) {
        *self.active.lock().expect("no panics while held") = Some((layers, head));
    }

    /// Ends recording: the model runs normally again.
    pub fn clear(&self) {
        *self.active.lock().expect("no panics while held") = None;
    }

    fn add(&self, key: &str, layer: usize, x: &Tensor) -> effbench_core::Result<()> {
        let wanted = {
            match &*self.active.lock().expect("no panics while held") {
                Some((_, head)) if layer == HEAD_LAYER => *head,
                Some((blocks, _)) => blocks.contains(&layer),
                None => false,
            }
        };
        if !wanted {
            return Ok(());
        }
        let k = *x.dims().last().expect("at least 1-d");
        let x = x.to_dtype(DType::F32)?.flatten_to(x.rank() - 2)?;
        let t = x.elem_count() / k;
        let xs: Vec<f32> = x.flatten_all()?.to_vec1()?;
        let mut sums = self.sums.lock().expect("no panics while held");
        let entry = sums
            .entry(key.to_string())
            .or_insert_with(|| (vec![0f32; k * k], 0));
        gram_acc(&mut entry.0, k, &xs, t);
        entry.1 += t;
        Ok(())
    }

    /// From now on forward passes multiply by `weight` in place of the matrix `name`.
    pub fn replace(&self, name: &str, weight: Arc<dyn LinearWeight>) {
        self.replaced
            .lock()
            .expect("no panics while held")
            .insert(name.to_string(), weight);
    }

    fn replacement(&self, name: &str) -> Option<Arc<dyn LinearWeight>> {
        self.replaced
            .lock()
            .expect("no panics while held")
            .get(name)
            .cloned()
    }

    /// The mean `X^T X / tokens` of an input and its token count, removed from the store.
    pub fn take(&self, key: &str) -> Option<(Vec<f32>, usize)> {
        let (mut h, t) = self
            .sums
            .lock()
            .expect("no panics while held")
            .remove(key)?;
        let scale = 1.0 / t.max(1) as f32;
        h.iter_mut().for_each(|v| *v *= scale);
        Some((h, t))
    }
}

/// A matrix that records its input's Hessian before multiplying.
#[derive(Debug)]
struct CapturingLinear {
    name: String,
    inner: Arc<dyn LinearWeight>,
    key: Option<String>,
    layer: usize,
    hessians: Arc<Hessians>,
}

impl LinearWeight for CapturingLinear {
    fn forward(&self, x: &Tensor) -> effbench_core::Result<Tensor> {
        if self.hessians.past_selection(self.layer) {
            return Err(effbench_core::CoreError::Invalid(STOP.into()));
        }
        if let Some(key) = &self.key {
            self.hessians.add(key, self.layer, x)?;
        }
        match self.hessians.replacement(&self.name) {
            Some(w) => w.forward(x),
            None => self.inner.forward(x),
        }
    }
    fn in_features(&self) -> usize {
        self.inner.in_features()
    }
    fn out_features(&self) -> usize {
        self.inner.out_features()
    }
    fn storage_bytes(&self) -> usize {
        self.inner.storage_bytes()
    }
    fn format(&self) -> String {
        self.inner.format()
    }
    fn dequantize(&self) -> effbench_core::Result<Tensor> {
        self.inner.dequantize()
    }
}

/// Loads the f16 model (dequantized from the checkpoint; matmuls in f32) with every matrix
/// able to record its input Hessian into `hessians` (for the layers [`Hessians::select`] names).
#[derive(Debug)]
pub struct CapturePolicy {
    pub hessians: Arc<Hessians>,
}

impl WeightPolicy for CapturePolicy {
    fn build(
        &self,
        name: &str,
        role: WeightRole,
        source: SourceTensor,
    ) -> effbench_core::Result<Arc<dyn LinearWeight>> {
        // The f16 values, multiplied in f32: the same weights as the f16 model, but candle's
        // f32 matmul is several times faster than its f16 one on CPUs without native f16
        // arithmetic, and calibration is most of GPTQ's time.
        let f16 = Dequantize(DType::F16).build(name, role, source)?;
        let inner: Arc<dyn LinearWeight> =
            Arc::new(effbench_core::linear::DenseLinear::new(f16.dequantize()?)?);
        let (key, owner) = input_key(name);
        Ok(Arc::new(CapturingLinear {
            name: name.to_string(),
            inner,
            key: owner.then_some(key),
            layer: layer_of(name, HEAD_LAYER),
            hessians: self.hessians.clone(),
        }))
    }

    fn embedding_dtype(&self) -> Option<DType> {
        Some(DType::F16)
    }

    fn describe(&self, source_format: &str) -> String {
        Dequantize(DType::F16).describe(source_format)
    }
}

/// Runs `windows` through `model` in batches of `batch` sequences. The output head runs (and
/// so records its input) only when `head` is set: the logits are thrown away.
pub fn run_calibration(
    model: &effbench_core::Model,
    windows: &[Vec<u32>],
    batch: usize,
    head: bool,
) -> Result<()> {
    let want = if head {
        LogitsFor::All
    } else {
        LogitsFor::None
    };
    let len = windows.iter().map(Vec::len).max().unwrap_or(0);
    for chunk in windows.chunks(batch.max(1)) {
        let mut cache = ContiguousKvCache::new(KvShape::of(model.config()), len, model.device());
        let seqs: Vec<SeqChunk> = chunk
            .iter()
            .enumerate()
            .map(|(i, w)| SeqChunk::new(i as u64, w.clone(), want))
            .collect();
        match model.forward(&seqs, &mut cache) {
            Err(effbench_core::CoreError::Invalid(m)) if m == STOP => {}
            other => {
                other?;
            }
        }
    }
    Ok(())
}

/// The calibration sequences' hidden states between two blocks, so that a pipeline can run
/// the model one block at a time: every block runs over them once to record its inputs and,
/// when its quantized form must feed the next block, once more, instead of a full pass per
/// block.
#[derive(Debug)]
pub struct BlockStates {
    /// Per batch of sequences: its chunks and their hidden states (rows in chunk order).
    batches: Vec<(Vec<SeqChunk>, Tensor)>,
    /// The block whose input the states are.
    next_block: usize,
}

impl BlockStates {
    /// The embeddings of `windows`, `batch` sequences per pass: block 0's input.
    pub fn embed(model: &effbench_core::Model, windows: &[Vec<u32>], batch: usize) -> Result<Self> {
        let batches = windows
            .chunks(batch.max(1))
            .map(|chunk| {
                let seqs: Vec<SeqChunk> = chunk
                    .iter()
                    .enumerate()
                    .map(|(i, w)| SeqChunk::new(i as u64, w.clone(), LogitsFor::None))
                    .collect();
                let x = model.embed_sequences(&seqs)?;
                Ok((seqs, x))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            batches,
            next_block: 0,
        })
    }

    /// The block these states are the input of (the model's block count after the last).
    pub fn next_block(&self) -> usize {
        self.next_block
    }

    /// Runs the next block over every batch with its weights as they are now (recording its
    /// inputs if `hessians` selects it); with `advance` its outputs replace the states.
    pub fn run_next_block(&mut self, model: &effbench_core::Model, advance: bool) -> Result<()> {
        for (seqs, x) in &mut self.batches {
            let out = model.run_block(self.next_block, seqs, x)?;
            if advance {
                *x = out;
            }
        }
        if advance {
            self.next_block += 1;
        }
        Ok(())
    }

    /// Records the output head's input (the final norm of states past the last block) as the
    /// Hessian `output`, without the vocabulary-wide matmul a forward pass would spend on it.
    pub fn record_head_input(
        &self,
        model: &effbench_core::Model,
        hessians: &Hessians,
    ) -> Result<()> {
        if self.next_block != model.config().num_layers {
            return Err(QuantError::Invalid(format!(
                "the head's input needs the states after block {}, not before block {}",
                model.config().num_layers - 1,
                self.next_block
            )));
        }
        hessians.select(0..0, true);
        for (_, x) in &self.batches {
            hessians.add("output", HEAD_LAYER, &model.head_input(x)?)?;
        }
        hessians.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::input_key;

    #[test]
    fn shared_inputs_are_recorded_once() {
        assert_eq!(
            input_key("blk.3.attn_k.weight"),
            ("blk.3.attn_in".into(), false)
        );
        assert_eq!(
            input_key("blk.3.attn_q.weight"),
            ("blk.3.attn_in".into(), true)
        );
        assert_eq!(
            input_key("blk.3.ffn_up.weight"),
            ("blk.3.ffn_in".into(), false)
        );
        assert_eq!(
            input_key("blk.3.ffn_down.weight"),
            ("blk.3.ffn_down".into(), true)
        );
        assert_eq!(input_key("output.weight"), ("output".into(), true));
    }
}
