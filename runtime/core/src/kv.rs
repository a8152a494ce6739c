//! The KV cache seam. The decoder hands each layer's new K/V to a [`KvCache`] and attends over
//! whatever it returns, so contiguous and paged caches plug into the same forward pass.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use serde::Serialize;

use crate::config::ModelConfig;
use crate::error::{CoreError, Result};

pub type SeqId = u64;

/// Memory accounting every cache reports, so techniques compare on the same terms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct KvUsage {
    /// Bytes set aside for K/V, whether or not they hold anything yet.
    pub bytes_reserved: usize,
    /// Bytes holding K/V of tokens actually processed.
    pub bytes_used: usize,
    pub sequences: usize,
    pub tokens: usize,
}

impl KvUsage {
    pub fn waste_fraction(&self) -> f64 {
        if self.bytes_reserved == 0 {
            0.0
        } else {
            1.0 - self.bytes_used as f64 / self.bytes_reserved as f64
        }
    }
}

/// A KV-cache technique's builder: the engine says how long one sequence may grow and how many
/// sequences live at once, and the technique makes its cache for that. This is the seam a
/// KV-cache technique plugs into; the engine never names a cache type.
pub trait KvCacheBuilder: std::fmt::Debug + Send + Sync {
    /// A cache for up to `live_seqs` sequences of up to `seq_tokens` tokens each.
    fn build(
        &self,
        shape: KvShape,
        seq_tokens: usize,
        live_seqs: usize,
        device: &Device,
    ) -> Result<Box<dyn KvCache>>;
    /// A cache holding at most `budget_bytes` of K/V for sequences of up to `max_seq_len`
    /// tokens, as a server sizes it: what fits the budget is the cache's own business (whole
    /// reservations, or blocks).
    fn build_for_budget(
        &self,
        shape: KvShape,
        max_seq_len: usize,
        budget_bytes: usize,
        device: &Device,
    ) -> Result<Box<dyn KvCache>>;
    /// How results describe the cache, e.g. `contiguous f32`, `paged (16-token blocks) f32`.
    fn describe(&self) -> String;
    /// K and V of one token over all layers, as this cache stores them.
    fn bytes_per_token(&self, shape: KvShape) -> usize {
        shape.bytes_per_token()
    }
}

/// The cache a row runs in when its technique names none.
pub const CONTIGUOUS_F32: ContiguousBuilder = ContiguousBuilder { dtype: DType::F32 };

/// The runtime's own cache: one contiguous buffer per sequence, at `dtype`.
#[derive(Debug, Clone, Copy)]
pub struct ContiguousBuilder {
    pub dtype: DType,
}

impl KvCacheBuilder for ContiguousBuilder {
    fn build(
        &self,
        shape: KvShape,
        seq_tokens: usize,
        _live_seqs: usize,
        device: &Device,
    ) -> Result<Box<dyn KvCache>> {
        Ok(Box::new(ContiguousKvCache::new(
            shape.with_dtype(self.dtype),
            seq_tokens,
            device,
        )))
    }

    fn build_for_budget(
        &self,
        shape: KvShape,
        max_seq_len: usize,
        budget_bytes: usize,
        device: &Device,
    ) -> Result<Box<dyn KvCache>> {
        Ok(Box::new(ContiguousKvCache::with_budget(
            shape.with_dtype(self.dtype),
            max_seq_len,
            budget_bytes,
            device,
        )))
    }

    fn describe(&self) -> String {
        format!("contiguous {:?}", self.dtype).to_lowercase()
    }

    fn bytes_per_token(&self, shape: KvShape) -> usize {
        shape.with_dtype(self.dtype).bytes_per_token()
    }
}

pub trait KvCache: Send {
    /// Tokens of `seq` already in the cache: the position of its next token.
    fn seq_len(&self, seq: SeqId) -> usize;
    /// Makes room for `seq` to grow by `new_tokens`, creating it if new. Called once per
    /// forward before any layer appends, so a cache can refuse a batch before doing work.
    fn reserve(&mut self, seq: SeqId, new_tokens: usize) -> Result<()>;
    /// Stores `layer`'s K and V, each (kv_heads, new_tokens, head_dim), at positions
    /// `seq_len..seq_len+new_tokens`, and returns all of the sequence's K and V for the layer,
    /// (kv_heads, seq_len+new_tokens, head_dim).
    fn append(
        &mut self,
        layer: usize,
        seq: SeqId,
        k: &Tensor,
        v: &Tensor,
    ) -> Result<(Tensor, Tensor)>;
    /// Marks `new_tokens` as stored in every layer; positions advance only here.
    fn commit(&mut self, seq: SeqId, new_tokens: usize) -> Result<()>;
    /// Drops everything after the first `len` tokens (rejected speculative tokens).
    fn truncate(&mut self, seq: SeqId, len: usize) -> Result<()>;
    fn remove(&mut self, seq: SeqId);
    /// Starts `to` as a copy of `from`'s tokens, so a shared prompt prefix (few-shot
    /// exemplars, a system prompt) is computed once. A paged cache can share blocks instead.
    fn fork(&mut self, from: SeqId, to: SeqId) -> Result<()>;
    fn usage(&self) -> KvUsage;

    /// Stores the chunk's K and V, each (kv_heads, n, head_dim), and returns causal grouped-query
    /// attention of `q`, (heads, n, head_dim) f32 after RoPE, over the whole sequence (or, with
    /// a `window`, over each query's last `window` positions, itself included), as
    /// (heads, n, head_dim) f32. The default asks [`KvCache::append`] for the sequence's K/V as
    /// contiguous tensors; a cache that stores K/V elsewhere (in blocks) overrides this to
    /// attend where the K/V lie instead of gathering them.
    fn attend(
        &mut self,
        layer: usize,
        seq: SeqId,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        window: Option<usize>,
    ) -> Result<Tensor> {
        let start = self.seq_len(seq);
        let (k_all, v_all) = self.append(layer, seq, k, v)?;
        contiguous_attention(q, &k_all, &v_all, start, window)
    }

    /// Most tokens one sequence could ever hold here, alone in an empty cache; None when only
    /// the model's context bounds it. A scheduler refuses requests longer than this up front
    /// rather than waiting forever for room that cannot appear.
    fn max_tokens_per_seq(&self) -> Option<usize> {
        None
    }
}

/// Causal grouped-query attention over contiguous K/V: `q` (heads, n, head_dim) at positions
/// `start..start+n`, `k_all`/`v_all` (kv_heads, start+n, head_dim), each query seeing its last
/// `window` positions when there is a window. Returns (heads, n, head_dim).
pub fn contiguous_attention(
    q: &Tensor,
    k_all: &Tensor,
    v_all: &Tensor,
    start: usize,
    window: Option<usize>,
) -> Result<Tensor> {
    let (_, n, _) = q.dims3()?;
    if window == Some(0) {
        return Err(CoreError::Invalid("an attention window of 0 keys".into()));
    }
    if n <= ROWWISE_MAX_ROWS {
        if let Some(out) = rowwise_attention(q, k_all, v_all, start, window)? {
            return Ok(out);
        }
    }
    matmul_attention(q, k_all, v_all, start, window)
}

/// The first key position a query at `pos` sees.
pub fn first_visible(pos: usize, window: Option<usize>) -> usize {
    window.map_or(0, |w| (pos + 1).saturating_sub(w))
}

/// [`contiguous_attention`] through candle's batched matmuls and a causal mask: the route of
/// prefill chunks, and of any device.
fn matmul_attention(
    q: &Tensor,
    k_all: &Tensor,
    v_all: &Tensor,
    start: usize,
    window: Option<usize>,
) -> Result<Tensor> {
    let (nh, n, hd) = q.dims3()?;
    let nkv = k_all.dims()[0];
    let total = start + n;
    // Grouped-query attention without repeating K/V: the query heads that share a KV head are
    // stacked along the row axis and multiplied by that head's K/V once.
    let group = nh / nkv;
    let q = q.reshape((nkv, group * n, hd))?;
    let scale = 1.0 / (hd as f64).sqrt();
    let scores = q.matmul(&k_all.t()?)?;
    let probs = match masked_softmax_on_cpu(&scores, scale, n, start, window)? {
        Some(probs) => probs,
        None => {
            let scores = (scores * scale)?;
            // A single query sees every key unless a window hides the oldest.
            let hides_any = n > 1 || first_visible(start, window) > 0;
            let scores = if hides_any {
                let mask = causal_mask(n, start, window, q.device())?;
                scores
                    .reshape((nkv, group, n, total))?
                    .broadcast_add(&mask)?
                    .reshape((nkv, group * n, total))?
            } else {
                scores
            };
            candle_nn::ops::softmax_last_dim(&scores)?
        }
    };
    Ok(probs.matmul(&v_all.contiguous()?)?.reshape((nh, n, hd))?)
}

/// The CPU route's `softmax(scores * scale + causal mask)` over the last axis, as one pass per
/// row split over the pool: candle runs the scale and the mask on one thread (at pp512 on
/// Qwen2.5-1.5B, 3M scores a layer, about 3% of the pass), and exponentiates the masked half of
/// every row with a libm call per score. Each row scales its visible scores, takes their max,
/// exponentiates and sums them with `effbench_kernels::softmax` (within 2 ulp of exact) and
/// divides; masked scores are 0. Rows are `[kv head][query head in group][query]` with `n`
/// queries, the first at position `start`. None unless `scores` is contiguous f32 on the CPU.
fn masked_softmax_on_cpu(
    scores: &Tensor,
    scale: f64,
    n: usize,
    start: usize,
    window: Option<usize>,
) -> Result<Option<Tensor>> {
    use effbench_kernels::softmax;
    use rayon::prelude::*;
    if !scores.device().is_cpu() || scores.dtype() != DType::F32 || !scores.is_contiguous() {
        return Ok(None);
    }
    let total = start + n;
    let (storage, layout) = scores.storage_and_layout();
    let candle_core::Storage::Cpu(cpu) = &*storage else {
        return Ok(None);
    };
    let src = &cpu.as_slice::<f32>()?[layout.start_offset()..][..scores.elem_count()];
    // candle's affine: `v * mul + add` with both converted to the tensor's dtype.
    let (mul, add) = (scale as f32, 0f32);
    let mut out = effbench_kernels::elementwise::zeros(src.len());
    // Only the visible keys are exponentiated; the masked ones are exactly 0, as exp(-inf) is.
    let row = |r: usize, src: &[f32], dst: &mut [f32]| {
        let pos = start + r % n;
        let first = first_visible(pos, window);
        dst[..first].fill(0.0);
        dst[pos + 1..].fill(0.0);
        let visible = &mut dst[first..=pos];
        for (d, &v) in visible.iter_mut().zip(&src[first..=pos]) {
            *d = v * mul + add;
        }
        let sum = softmax::exp_from_max(visible);
        for d in visible.iter_mut() {
            *d /= sum;
        }
    };
    if src.len() >= effbench_kernels::elementwise::MIN_PARALLEL_LEN {
        out.par_chunks_mut(total)
            .zip(src.par_chunks(total))
            .enumerate()
            .for_each(|(r, (dst, src))| row(r, src, dst));
    } else {
        for (r, (dst, src)) in out.chunks_mut(total).zip(src.chunks(total)).enumerate() {
            row(r, src, dst);
        }
    }
    drop(storage);
    Ok(Some(Tensor::from_vec(out, scores.dims(), scores.device())?))
}

/// Chunks of up to this many queries (decode, speculative verification, small batches) attend
/// row by row; longer ones (prefill) go through candle's batched matmuls.
pub const ROWWISE_MAX_ROWS: usize = 16;

/// Attention of a few new tokens, one query row at a time: per head and row, a dot product
/// with each visible cached key, a softmax and a weighted sum of the values, read in place from
/// the cache's buffers. Each row's arithmetic is the same however many rows share the call, so
/// scoring k draft tokens in one pass gives each exactly the output of a pass of its own, and
/// greedy speculative decoding reproduces plain greedy decoding bit for bit. At these sizes it
/// is also faster than candle's route: two batched matmuls whose packing, the copy of the
/// strided V view and the intermediate tensors cost more than the arithmetic. Row `i` sits at
/// position `start + i` and sees keys `0..=start + i`, so no mask is built. None when the
/// tensors are not f32 on the CPU with unit stride along the head dimension.
fn rowwise_attention(
    q: &Tensor,
    k_all: &Tensor,
    v_all: &Tensor,
    start: usize,
    window: Option<usize>,
) -> Result<Option<Tensor>> {
    use candle_core::Storage;
    let f32_cpu = |t: &Tensor| t.dtype() == DType::F32 && t.device().is_cpu();
    if !(f32_cpu(q) && f32_cpu(k_all) && f32_cpu(v_all)) {
        return Ok(None);
    }
    let (nh, n, hd) = q.dims3()?;
    let (nkv, total, kv_hd) = k_all.dims3()?;
    if kv_hd != hd
        || v_all.dims3()? != (nkv, total, hd)
        || nkv == 0
        || nh % nkv != 0
        || total != start + n
    {
        return Ok(None);
    }
    let q = q.contiguous()?;
    let (q_storage, q_layout) = q.storage_and_layout();
    let (k_storage, k_layout) = k_all.storage_and_layout();
    let (v_storage, v_layout) = v_all.storage_and_layout();
    let (Storage::Cpu(qc), Storage::Cpu(kc), Storage::Cpu(vc)) =
        (&*q_storage, &*k_storage, &*v_storage)
    else {
        return Ok(None);
    };
    let (ks, vs) = (k_layout.stride(), v_layout.stride());
    if ks[2] != 1 || vs[2] != 1 {
        return Ok(None);
    }
    let qd = &qc.as_slice::<f32>()?[q_layout.start_offset()..][..nh * n * hd];
    let kd = &kc.as_slice::<f32>()?[k_layout.start_offset()..];
    let vd = &vc.as_slice::<f32>()?[v_layout.start_offset()..];
    let group = nh / nkv;
    let scale = 1.0 / (hd as f32).sqrt();
    // Output row `row` is head `row / n`, query `row % n`, as q is laid out.
    let attend_row = |row: usize, out: &mut [f32]| {
        let (h, i) = (row / n, row % n);
        let g = h / group;
        let visible = start + i + 1;
        let first = first_visible(start + i, window);
        let qh = &qd[row * hd..(row + 1) * hd];
        let mut scores: Vec<f32> = (first..visible)
            .map(|j| dot(qh, &kd[g * ks[0] + j * ks[1]..][..hd]) * scale)
            .collect();
        let sum = effbench_kernels::softmax::exp_from_max(&mut scores);
        let inv = 1.0 / sum;
        out.fill(0.0);
        for (j, &p) in (first..).zip(&scores) {
            let p = p * inv;
            let vr = &vd[g * vs[0] + j * vs[1]..][..hd];
            for (o, v) in out.iter_mut().zip(vr) {
                *o += p * v;
            }
        }
    };
    let mut out = vec![0f32; nh * n * hd];
    // Long contexts split the rows across the pool; at decode lengths a task costs more than
    // a row.
    if nh * n * total * hd >= 1 << 18 {
        use rayon::prelude::*;
        out.par_chunks_mut(hd)
            .enumerate()
            .for_each(|(row, o)| attend_row(row, o));
    } else {
        for (row, o) in out.chunks_mut(hd).enumerate() {
            attend_row(row, o);
        }
    }
    Ok(Some(Tensor::from_vec(out, (nh, n, hd), q.device())?))
}

/// Eight independent partial sums, so the compiler can keep them in one vector register.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ac
        .remainder()
        .iter()
        .zip(bc.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ac.zip(bc) {
        for ((s, x), y) in acc.iter_mut().zip(x).zip(y) {
            *s += x * y;
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Row i (absolute position start+i) may attend to keys 0..=start+i, or to the last `window`
/// of them.
fn causal_mask(n: usize, start: usize, window: Option<usize>, device: &Device) -> Result<Tensor> {
    if device.is_cpu() {
        causal_mask_from_host(n, start, window, device)
    } else {
        causal_mask_on_device(n, start, window, device)
    }
}

fn causal_mask_from_host(
    n: usize,
    start: usize,
    window: Option<usize>,
    device: &Device,
) -> Result<Tensor> {
    let total = start + n;
    let mask: Vec<f32> = (0..n)
        .flat_map(|i| {
            let first = first_visible(start + i, window);
            (0..total).map(move |j| {
                if j > start + i || j < first {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
        })
        .collect();
    Ok(Tensor::from_vec(mask, (n, total), device)?)
}

/// The mask made on the device from two position ranges: an accelerator receives n + total
/// indices instead of the n x total mask, once per layer of every prefill chunk.
fn causal_mask_on_device(
    n: usize,
    start: usize,
    window: Option<usize>,
    device: &Device,
) -> Result<Tensor> {
    let total = start + n;
    let rows = Tensor::arange(start as u32, total as u32, device)?.reshape((n, 1))?;
    let cols = Tensor::arange(0u32, total as u32, device)?.reshape((1, total))?;
    let future = cols.broadcast_gt(&rows)?;
    let blocked = Tensor::new(f32::NEG_INFINITY, device)?.broadcast_as((n, total))?;
    let mut open = Tensor::zeros((n, total), DType::F32, device)?;
    if let Some(w) = window {
        // Key j is too old for the row at position p when j + w <= p.
        let cols_plus_w =
            Tensor::arange(w as u32, (total + w) as u32, device)?.reshape((1, total))?;
        open = cols_plus_w
            .broadcast_le(&rows)?
            .where_cond(&blocked, &open)?;
    }
    Ok(future.where_cond(&blocked, &open)?)
}

/// Shape of the K/V a model produces, which every cache needs to size itself.
#[derive(Debug, Clone, Copy)]
pub struct KvShape {
    pub num_layers: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub dtype: DType,
}

impl KvShape {
    pub fn of(config: &ModelConfig) -> Self {
        Self {
            num_layers: config.num_layers,
            num_kv_heads: config.num_kv_heads,
            head_dim: config.head_dim,
            dtype: DType::F32,
        }
    }

    /// Stores K/V at `dtype`. llama.cpp's default cache is f16; matching it matters when
    /// comparing perplexity with llama.cpp, because the rounding moves it by about half a percent.
    pub fn with_dtype(mut self, dtype: DType) -> Self {
        self.dtype = dtype;
        self
    }

    pub fn bytes_per_token(&self) -> usize {
        2 * self.num_layers * self.num_kv_heads * self.head_dim * self.dtype.size_in_bytes()
    }
}

struct SeqBuffers {
    len: usize,
    layers: Vec<(Tensor, Tensor)>,
}

/// Each sequence reserves room for `max_seq_len` tokens up front, as static-batch servers and
/// the usual Hugging Face generation loop do.
pub struct ContiguousKvCache {
    shape: KvShape,
    max_seq_len: usize,
    /// How many reservations the memory budget holds; unbounded without a budget.
    max_sequences: usize,
    device: Device,
    seqs: HashMap<SeqId, SeqBuffers>,
}

impl ContiguousKvCache {
    pub fn new(shape: KvShape, max_seq_len: usize, device: &Device) -> Self {
        Self {
            shape,
            max_seq_len,
            max_sequences: usize::MAX,
            device: device.clone(),
            seqs: HashMap::new(),
        }
    }

    /// A cache that holds at most `budget_bytes` of reservations: as many sequences as whole
    /// `max_seq_len` reservations fit.
    pub fn with_budget(
        shape: KvShape,
        max_seq_len: usize,
        budget_bytes: usize,
        device: &Device,
    ) -> Self {
        let per_seq = max_seq_len * shape.bytes_per_token();
        Self {
            max_sequences: budget_bytes / per_seq.max(1),
            ..Self::new(shape, max_seq_len, device)
        }
    }

    pub fn max_seq_len(&self) -> usize {
        self.max_seq_len
    }

    fn bytes_per_seq(&self) -> usize {
        self.max_seq_len * self.shape.bytes_per_token()
    }

    /// Refuses a new reservation the budget cannot hold.
    fn check_room_for_new(&self, seq: SeqId) -> Result<()> {
        if self.seqs.len() >= self.max_sequences {
            let free = self.max_sequences.saturating_sub(self.seqs.len()) * self.bytes_per_seq();
            return Err(CoreError::KvBudgetExhausted {
                seq,
                needed_bytes: self.bytes_per_seq(),
                free_bytes: free,
            });
        }
        Ok(())
    }

    fn seq_mut(&mut self, seq: SeqId) -> Result<&mut SeqBuffers> {
        self.seqs
            .get_mut(&seq)
            .ok_or(CoreError::UnknownSequence(seq))
    }
}

impl KvCache for ContiguousKvCache {
    fn seq_len(&self, seq: SeqId) -> usize {
        self.seqs.get(&seq).map_or(0, |s| s.len)
    }

    fn reserve(&mut self, seq: SeqId, new_tokens: usize) -> Result<()> {
        let len = self.seq_len(seq);
        if len + new_tokens > self.max_seq_len {
            return Err(CoreError::CacheFull {
                seq,
                needed: len + new_tokens,
                capacity: self.max_seq_len,
            });
        }
        if !self.seqs.contains_key(&seq) {
            self.check_room_for_new(seq)?;
            let dims = (
                self.shape.num_kv_heads,
                self.max_seq_len,
                self.shape.head_dim,
            );
            let mut layers = Vec::with_capacity(self.shape.num_layers);
            for _ in 0..self.shape.num_layers {
                layers.push((
                    Tensor::zeros(dims, self.shape.dtype, &self.device)?,
                    Tensor::zeros(dims, self.shape.dtype, &self.device)?,
                ));
            }
            self.seqs.insert(seq, SeqBuffers { len: 0, layers });
        }
        Ok(())
    }

    fn append(
        &mut self,
        layer: usize,
        seq: SeqId,
        k: &Tensor,
        v: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let dtype = self.shape.dtype;
        let buffers = self.seq_mut(seq)?;
        let start = buffers.len;
        let new = k.dims()[1];
        let (kb, vb) = &buffers.layers[layer];
        kb.slice_set(&k.to_dtype(dtype)?.contiguous()?, 1, start)?;
        vb.slice_set(&v.to_dtype(dtype)?.contiguous()?, 1, start)?;
        let (k_all, v_all) = (kb.narrow(1, 0, start + new)?, vb.narrow(1, 0, start + new)?);
        // Attention runs in f32 whatever the storage type.
        if dtype == DType::F32 {
            Ok((k_all, v_all))
        } else {
            Ok((k_all.to_dtype(DType::F32)?, v_all.to_dtype(DType::F32)?))
        }
    }

    fn commit(&mut self, seq: SeqId, new_tokens: usize) -> Result<()> {
        self.seq_mut(seq)?.len += new_tokens;
        Ok(())
    }

    fn truncate(&mut self, seq: SeqId, len: usize) -> Result<()> {
        let buffers = self.seq_mut(seq)?;
        buffers.len = buffers.len.min(len);
        Ok(())
    }

    fn remove(&mut self, seq: SeqId) {
        self.seqs.remove(&seq);
    }

    fn fork(&mut self, from: SeqId, to: SeqId) -> Result<()> {
        let src = self
            .seqs
            .get(&from)
            .ok_or(CoreError::UnknownSequence(from))?;
        let len = src.len;
        if !self.seqs.contains_key(&to) {
            self.check_room_for_new(to)?;
        }
        let src = &self.seqs[&from];
        let mut layers = Vec::with_capacity(src.layers.len());
        for (k, v) in &src.layers {
            // A contiguous cache owns its buffers outright: the copy is the whole reservation.
            layers.push((k.copy()?, v.copy()?));
        }
        self.seqs.insert(to, SeqBuffers { len, layers });
        Ok(())
    }

    fn usage(&self) -> KvUsage {
        let per_token = self.shape.bytes_per_token();
        let tokens: usize = self.seqs.values().map(|s| s.len).sum();
        KvUsage {
            bytes_reserved: self.seqs.len() * self.max_seq_len * per_token,
            bytes_used: tokens * per_token,
            sequences: self.seqs.len(),
            tokens,
        }
    }

    fn max_tokens_per_seq(&self) -> Option<usize> {
        Some(if self.max_sequences == 0 {
            0
        } else {
            self.max_seq_len
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pooled softmax replaces three candle ops in every prefill: its probabilities must be
    /// candle's to within the rounding of a vectorised `exp` (causal, windowed, after a prefix),
    /// masked keys exactly 0, and the pooled (large) and one-thread (small) paths equal bit for
    /// bit.
    #[test]
    fn pooled_masked_softmax_matches_candles_ops() {
        let pool = |threads| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
        };
        let (one, two) = (pool(1), pool(2));
        for (nkv, group, n, start, window) in [
            (2, 3, 128, 0, None),
            (1, 4, 96, 64, Some(100)),
            (2, 2, 48, 100, None),
            (1, 4, 40, 30, Some(25)),
            (1, 2, 3, 5, None),
            (2, 1, 1, 9, Some(4)),
        ] {
            let total = start + n;
            let scores = (seeded((nkv, group * n, total), 7 + n as u64) * 40.0).unwrap();
            let scale = 1.0 / 64f64.sqrt();
            let run = |pool: &rayon::ThreadPool| {
                let probs = pool
                    .install(|| masked_softmax_on_cpu(&scores, scale, n, start, window))
                    .unwrap()
                    .expect("CPU f32 takes the pooled route");
                crate::testing::f32_bits(&probs)
            };
            let ours = run(&two);
            assert_eq!(ours, run(&one), "pool sizes differ: n {n}, start {start}");
            let scaled = (&scores * scale).unwrap();
            let mask = causal_mask(n, start, window, &Device::Cpu).unwrap();
            let masked = scaled
                .reshape((nkv, group, n, total))
                .unwrap()
                .broadcast_add(&mask)
                .unwrap()
                .reshape((nkv, group * n, total))
                .unwrap();
            let candle =
                crate::testing::f32_bits(&candle_nn::ops::softmax_last_dim(&masked).unwrap());
            for (&o, &c) in ours.iter().zip(&candle) {
                let (o, c) = (f32::from_bits(o), f32::from_bits(c));
                if c == 0.0 {
                    assert_eq!(o.to_bits(), 0, "a masked key: n {n}, start {start}");
                } else {
                    assert!(
                        (o - c).abs() <= 1e-6 * c.max(1e-3),
                        "{o} vs candle's {c}: n {n}, start {start}, window {window:?}"
                    );
                }
            }
        }
    }

    fn seeded(dims: (usize, usize, usize), seed: u64) -> Tensor {
        let mut state = seed;
        let data: Vec<f32> = (0..dims.0 * dims.1 * dims.2)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 33) as f32 / (1u64 << 31) as f32) - 0.5
            })
            .collect();
        Tensor::from_vec(data, dims, &Device::Cpu).unwrap()
    }

    #[test]
    fn both_causal_masks_block_exactly_the_future_and_the_too_old() {
        for window in [None, Some(1), Some(3), Some(100)] {
            for (n, start) in [(1, 0), (3, 0), (4, 5), (7, 2)] {
                let host = causal_mask_from_host(n, start, window, &Device::Cpu).unwrap();
                let device = causal_mask_on_device(n, start, window, &Device::Cpu).unwrap();
                assert_eq!(host.dims(), &[n, start + n]);
                let rows = host.to_vec2::<f32>().unwrap();
                assert_eq!(rows, device.to_vec2::<f32>().unwrap());
                for (i, row) in rows.iter().enumerate() {
                    let p = start + i;
                    for (j, &m) in row.iter().enumerate() {
                        let seen = j <= p && window.is_none_or(|w| p - j < w);
                        let want = if seen { 0.0 } else { f32::NEG_INFINITY };
                        assert_eq!(m, want, "{window:?} n {n} start {start} row {i} col {j}");
                    }
                }
            }
        }
    }

    /// A windowed query equals an unwindowed one given only the keys inside its window: the
    /// window is a slice of the sequence, whichever path computes it.
    #[test]
    fn a_window_is_attention_over_the_last_keys_only() {
        let (nh, nkv, hd) = (4, 2, 16);
        let k_buf = seeded((nkv, 40, hd), 21);
        let v_buf = seeded((nkv, 40, hd), 22);
        for (start, n, w) in [(10, 1, 4), (0, 1, 3), (3, 5, 2), (12, 20, 7), (5, 30, 8)] {
            let total = start + n;
            let q = seeded((nh, n, hd), 23 + total as u64);
            let (k_all, v_all) = (
                k_buf.narrow(1, 0, total).unwrap(),
                v_buf.narrow(1, 0, total).unwrap(),
            );
            let got = contiguous_attention(&q, &k_all, &v_all, start, Some(w)).unwrap();
            for i in 0..n {
                let p = start + i;
                let first = first_visible(p, Some(w));
                let alone = matmul_attention(
                    &q.narrow(1, i, 1).unwrap(),
                    &k_buf.narrow(1, first, p + 1 - first).unwrap(),
                    &v_buf.narrow(1, first, p + 1 - first).unwrap(),
                    p - first,
                    None,
                )
                .unwrap();
                let diff = (got.narrow(1, i, 1).unwrap() - alone)
                    .unwrap()
                    .abs()
                    .unwrap()
                    .max_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap();
                assert!(diff < 1e-5, "start {start} n {n} w {w} row {i}: {diff}");
            }
        }
    }

    /// The row-by-row path against candle's masked matmuls, with grouped-query heads and K/V
    /// as strided views into a larger reservation, as the cache hands them over.
    #[test]
    fn rowwise_attention_matches_the_matmul_path() {
        let (nh, nkv, hd) = (6, 2, 20);
        for (start, n, window) in [
            (0, 1, None),
            (1, 1, None),
            (6, 1, None),
            (32, 1, None),
            (0, 2, None),
            (5, 3, None),
            (20, 16, None),
            (32, 1, Some(5)),
            (20, 16, Some(9)),
        ] {
            let total = start + n;
            let k_buf = seeded((nkv, 40, hd), 1);
            let v_buf = seeded((nkv, 40, hd), 2);
            let k_all = k_buf.narrow(1, 0, total).unwrap();
            let v_all = v_buf.narrow(1, 0, total).unwrap();
            let q = seeded((nh, n, hd), 3 + total as u64);
            let rowwise = rowwise_attention(&q, &k_all, &v_all, start, window)
                .unwrap()
                .expect("f32 CPU tensors take the row-wise path");
            let want = matmul_attention(&q, &k_all, &v_all, start, window).unwrap();
            let diff = (rowwise - want)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(diff < 1e-5, "start {start}, n {n}: max abs diff {diff}");
        }
    }

    /// A query row's output does not depend on how many rows share the call: row `i` of an
    /// `n`-row chunk equals, bit for bit, one query alone at its position over the keys it
    /// sees. This is what lets a speculative verification pass reproduce plain decoding.
    #[test]
    fn rowwise_attention_rows_do_not_depend_on_the_chunk() {
        let (nh, nkv, hd) = (4, 2, 64);
        let (start, n) = (9, 7);
        let k_buf = seeded((nkv, 32, hd), 11);
        let v_buf = seeded((nkv, 32, hd), 12);
        let q = seeded((nh, n, hd), 13);
        let chunk = contiguous_attention(
            &q,
            &k_buf.narrow(1, 0, start + n).unwrap(),
            &v_buf.narrow(1, 0, start + n).unwrap(),
            start,
            None,
        )
        .unwrap();
        for i in 0..n {
            let visible = start + i + 1;
            let alone = contiguous_attention(
                &q.narrow(1, i, 1).unwrap(),
                &k_buf.narrow(1, 0, visible).unwrap(),
                &v_buf.narrow(1, 0, visible).unwrap(),
                start + i,
                None,
            )
            .unwrap();
            let row = chunk.narrow(1, i, 1).unwrap();
            assert_eq!(
                row.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                alone.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                "row {i}"
            );
        }
    }
}
