//! A paged KV cache, after vLLM's PagedAttention: K/V live in one preallocated pool of
//! fixed-size blocks; each sequence owns a block table, so memory is taken a block at a time as
//! it grows instead of reserved for its maximum length. Blocks are reference-counted, so forks
//! (a shared prompt prefix, beam candidates) share them and copy one only when a sequence first
//! writes into a block another still reads. Attention reads K/V through the block table.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use effbench_core::{CoreError, KvCache, KvShape, KvUsage, Result, SeqId};
use half::f16;
use rayon::prelude::*;

pub const DEFAULT_BLOCK_SIZE: usize = 16;

/// A storage type for K/V in the pool; attention always computes in f32.
pub trait KvElem: Copy + Default + Send + Sync + 'static {
    fn from_f32(x: f32) -> Self;
    fn to_f32(self) -> f32;
    fn dot(q: &[f32], k: &[Self]) -> f32;
    /// `out += p * v`
    fn axpy(out: &mut [f32], p: f32, v: &[Self]);
}

impl KvElem for f32 {
    fn from_f32(x: f32) -> Self {
        x
    }

    fn to_f32(self) -> f32 {
        self
    }

    fn dot(q: &[f32], k: &[f32]) -> f32 {
        // Eight independent partial sums let the compiler vectorise; one running sum cannot be
        // reordered under strict float semantics.
        let mut acc = [0f32; 8];
        let (qc, qr) = q.split_at(q.len() / 8 * 8);
        let (kc, kr) = k.split_at(qc.len());
        for (a, b) in qc.chunks_exact(8).zip(kc.chunks_exact(8)) {
            for l in 0..8 {
                acc[l] += a[l] * b[l];
            }
        }
        let tail: f32 = qr.iter().zip(kr).map(|(a, b)| a * b).sum();
        acc.iter().sum::<f32>() + tail
    }

    fn axpy(out: &mut [f32], p: f32, v: &[f32]) {
        for (o, x) in out.iter_mut().zip(v) {
            *o += p * x;
        }
    }
}

impl KvElem for f16 {
    fn from_f32(x: f32) -> Self {
        f16::from_f32(x)
    }

    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }

    fn dot(q: &[f32], k: &[f16]) -> f32 {
        let mut acc = [0f32; 8];
        let (qc, qr) = q.split_at(q.len() / 8 * 8);
        let (kc, kr) = k.split_at(qc.len());
        for (a, b) in qc.chunks_exact(8).zip(kc.chunks_exact(8)) {
            for l in 0..8 {
                acc[l] += a[l] * b[l].to_f32();
            }
        }
        let tail: f32 = qr.iter().zip(kr).map(|(a, b)| a * b.to_f32()).sum();
        acc.iter().sum::<f32>() + tail
    }

    fn axpy(out: &mut [f32], p: f32, v: &[f16]) {
        for (o, x) in out.iter_mut().zip(v) {
            *o += p * x.to_f32();
        }
    }
}

/// Geometry of the pool: where slot `slot` of KV head `head` in block `block` starts.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    num_kv_heads: usize,
    block_size: usize,
    head_dim: usize,
}

impl Geometry {
    fn block_elems(&self) -> usize {
        self.num_kv_heads * self.block_size * self.head_dim
    }

    fn offset(&self, block: u32, head: usize, slot: usize) -> usize {
        ((block as usize * self.num_kv_heads + head) * self.block_size + slot) * self.head_dim
    }
}

/// Per layer, the K and the V of every block: (block, kv_head, slot, head_dim) row-major, so one
/// head's keys within a block are contiguous.
struct Pool<E> {
    k: Vec<Vec<E>>,
    v: Vec<Vec<E>>,
}

impl<E: KvElem> Pool<E> {
    fn new(layers: usize, elems: usize) -> Self {
        Self {
            k: (0..layers).map(|_| vec![E::default(); elems]).collect(),
            v: (0..layers).map(|_| vec![E::default(); elems]).collect(),
        }
    }

    fn copy_block(&mut self, g: &Geometry, from: u32, to: u32) {
        let n = g.block_elems();
        let (src, dst) = (from as usize * n, to as usize * n);
        for layer in self.k.iter_mut().chain(self.v.iter_mut()) {
            layer.copy_within(src..src + n, dst);
        }
    }

    /// Writes `new` tokens of K and V, given as (kv_heads, new, head_dim) f32, at positions
    /// `start..start+new` of the sequence whose table is `blocks`.
    #[allow(clippy::too_many_arguments)]
    fn write(
        &mut self,
        g: &Geometry,
        layer: usize,
        blocks: &[u32],
        start: usize,
        new: usize,
        k: &[f32],
        v: &[f32],
    ) {
        let hd = g.head_dim;
        for h in 0..g.num_kv_heads {
            for t in 0..new {
                let pos = start + t;
                let dst = g.offset(blocks[pos / g.block_size], h, pos % g.block_size);
                let src = (h * new + t) * hd;
                for d in 0..hd {
                    self.k[layer][dst + d] = E::from_f32(k[src + d]);
                    self.v[layer][dst + d] = E::from_f32(v[src + d]);
                }
            }
        }
    }

    /// Causal grouped-query attention read straight from the blocks: for each query row, one pass
    /// over the sequence's blocks for the scores, a softmax, one pass for the weighted values. No
    /// K/V is copied; the only scratch is one row of scores.
    #[allow(clippy::too_many_arguments)]
    fn attend(
        &self,
        g: &Geometry,
        layer: usize,
        blocks: &[u32],
        q: &[f32],
        heads: usize,
        n: usize,
        start: usize,
        window: Option<usize>,
    ) -> Vec<f32> {
        let hd = g.head_dim;
        let group = heads / g.num_kv_heads;
        let scale = 1.0 / (hd as f32).sqrt();
        let (kp, vp) = (&self.k[layer], &self.v[layer]);
        let mut out = vec![0f32; heads * n * hd];
        out.par_chunks_mut(hd).enumerate().for_each(|(row, o)| {
            let (qh, i) = (row / n, row % n);
            let h = qh / group;
            let visible = start + i + 1;
            // Positions before `oldest` fell out of a sliding window; whole blocks of them are
            // skipped.
            let oldest = effbench_core::kv::first_visible(start + i, window);
            let qrow = &q[row * hd..(row + 1) * hd];
            let mut scores = Vec::with_capacity(visible - oldest);
            for (b, &block) in blocks.iter().enumerate() {
                let first = b * g.block_size;
                if first >= visible {
                    break;
                }
                let base = g.offset(block, h, 0);
                let from = oldest.saturating_sub(first).min(g.block_size);
                for s in from..g.block_size.min(visible - first) {
                    scores.push(E::dot(qrow, &kp[base + s * hd..base + (s + 1) * hd]) * scale);
                }
            }
            let sum = effbench_kernels::softmax::exp_from_max(&mut scores);
            for (b, &block) in blocks.iter().enumerate() {
                let first = b * g.block_size;
                if first >= visible {
                    break;
                }
                let base = g.offset(block, h, 0);
                let from = oldest.saturating_sub(first).min(g.block_size);
                for s in from..g.block_size.min(visible - first) {
                    let p = scores[first + s - oldest] / sum;
                    E::axpy(o, p, &vp[base + s * hd..base + (s + 1) * hd]);
                }
            }
        });
        out
    }

    /// The sequence's K/V for one layer as contiguous f32 (kv_heads, len, head_dim). Only the
    /// [`KvCache::append`] contract needs this; the forward pass attends through the blocks.
    fn gather(&self, g: &Geometry, layer: usize, blocks: &[u32], len: usize) -> [Vec<f32>; 2] {
        let hd = g.head_dim;
        let mut out = [
            Vec::with_capacity(g.num_kv_heads * len * hd),
            Vec::with_capacity(g.num_kv_heads * len * hd),
        ];
        for h in 0..g.num_kv_heads {
            for pos in 0..len {
                let at = g.offset(blocks[pos / g.block_size], h, pos % g.block_size);
                for d in 0..hd {
                    out[0].push(self.k[layer][at + d].to_f32());
                    out[1].push(self.v[layer][at + d].to_f32());
                }
            }
        }
        out
    }
}

enum Storage {
    F32(Pool<f32>),
    F16(Pool<f16>),
}

macro_rules! with_pool {
    ($storage:expr, $pool:ident => $body:expr) => {
        match $storage {
            Storage::F32($pool) => $body,
            Storage::F16($pool) => $body,
        }
    };
}

#[derive(Debug, Clone, Default)]
struct SeqBlocks {
    blocks: Vec<u32>,
    len: usize,
}

/// The paged cache. Runs on the CPU: its attention kernel reads the pool's memory directly.
pub struct PagedKvCache {
    shape: KvShape,
    geometry: Geometry,
    num_blocks: usize,
    storage: Storage,
    refcount: Vec<u32>,
    /// Free blocks, taken from the end.
    free: Vec<u32>,
    seqs: HashMap<SeqId, SeqBlocks>,
    device: Device,
}

impl PagedKvCache {
    pub fn new(
        shape: KvShape,
        block_size: usize,
        num_blocks: usize,
        device: &Device,
    ) -> Result<Self> {
        if block_size == 0 {
            return Err(CoreError::Invalid(
                "block size must be at least 1 token".into(),
            ));
        }
        if !device.is_cpu() {
            return Err(CoreError::Invalid(
                "the paged KV cache runs on the CPU (hint: run it on the CPU, or use the contiguous cache)"
                    .into(),
            ));
        }
        if num_blocks > u32::MAX as usize {
            return Err(CoreError::Invalid(format!(
                "{num_blocks} blocks is more than a block table can address"
            )));
        }
        let geometry = Geometry {
            num_kv_heads: shape.num_kv_heads,
            block_size,
            head_dim: shape.head_dim,
        };
        let elems = num_blocks * geometry.block_elems();
        let storage = match shape.dtype {
            DType::F32 => Storage::F32(Pool::new(shape.num_layers, elems)),
            DType::F16 => Storage::F16(Pool::new(shape.num_layers, elems)),
            other => {
                return Err(CoreError::Invalid(format!(
                    "the paged KV cache stores f32 or f16, not {other:?}"
                )))
            }
        };
        Ok(Self {
            shape,
            geometry,
            num_blocks,
            storage,
            refcount: vec![0; num_blocks],
            free: (0..num_blocks as u32).rev().collect(),
            seqs: HashMap::new(),
            device: device.clone(),
        })
    }

    /// As many blocks as `budget_bytes` holds.
    pub fn with_budget(
        shape: KvShape,
        block_size: usize,
        budget_bytes: usize,
        device: &Device,
    ) -> Result<Self> {
        let block_bytes = block_size * shape.bytes_per_token();
        Self::new(shape, block_size, budget_bytes / block_bytes.max(1), device)
    }

    pub fn block_size(&self) -> usize {
        self.geometry.block_size
    }

    pub fn num_blocks(&self) -> usize {
        self.num_blocks
    }

    pub fn free_blocks(&self) -> usize {
        self.free.len()
    }

    /// Bytes of one block across all layers, K and V.
    pub fn block_bytes(&self) -> usize {
        self.geometry.block_size * self.shape.bytes_per_token()
    }

    /// The block table of `seq`, for tests and diagnostics.
    pub fn block_table(&self, seq: SeqId) -> Option<&[u32]> {
        self.seqs.get(&seq).map(|s| s.blocks.as_slice())
    }

    pub fn refcount(&self, block: u32) -> u32 {
        self.refcount[block as usize]
    }

    /// Free blocks a sequence needs to grow by `new_tokens`: fresh blocks plus copies of shared
    /// blocks it would write into.
    pub fn blocks_needed(&self, seq: SeqId, new_tokens: usize) -> usize {
        let empty = SeqBlocks::default();
        let s = self.seqs.get(&seq).unwrap_or(&empty);
        let (fresh, cow) = self.plan(s, new_tokens);
        fresh + cow.len()
    }

    fn plan(&self, s: &SeqBlocks, new_tokens: usize) -> (usize, Vec<usize>) {
        if new_tokens == 0 {
            return (0, Vec::new());
        }
        let bs = self.geometry.block_size;
        let needed = (s.len + new_tokens).div_ceil(bs);
        let first_written = s.len / bs;
        let cow = (first_written..needed.min(s.blocks.len()))
            .filter(|&i| self.refcount[s.blocks[i] as usize] > 1)
            .collect();
        (needed.saturating_sub(s.blocks.len()), cow)
    }

    fn release(&mut self, block: u32) {
        let rc = &mut self.refcount[block as usize];
        debug_assert!(*rc > 0, "block {block} released twice");
        *rc -= 1;
        if *rc == 0 {
            self.free.push(block);
        }
    }

    fn seq(&self, seq: SeqId) -> Result<&SeqBlocks> {
        self.seqs.get(&seq).ok_or(CoreError::UnknownSequence(seq))
    }
}

fn f32_data(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
}

impl KvCache for PagedKvCache {
    fn seq_len(&self, seq: SeqId) -> usize {
        self.seqs.get(&seq).map_or(0, |s| s.len)
    }

    fn reserve(&mut self, seq: SeqId, new_tokens: usize) -> Result<()> {
        let mut s = self.seqs.remove(&seq).unwrap_or_default();
        let (fresh, cow) = self.plan(&s, new_tokens);
        if fresh + cow.len() > self.free.len() {
            let needed_bytes = (fresh + cow.len()) * self.block_bytes();
            let free_bytes = self.free.len() * self.block_bytes();
            if !s.blocks.is_empty() || s.len > 0 {
                self.seqs.insert(seq, s);
            }
            return Err(CoreError::KvBudgetExhausted {
                seq,
                needed_bytes,
                free_bytes,
            });
        }
        // Copy-on-write: a block others still read is copied before this sequence writes into it.
        for i in cow {
            let old = s.blocks[i];
            let new = self.free.pop().expect("counted above");
            with_pool!(&mut self.storage, pool => pool.copy_block(&self.geometry, old, new));
            self.refcount[new as usize] = 1;
            self.release(old);
            s.blocks[i] = new;
        }
        for _ in 0..fresh {
            let b = self.free.pop().expect("counted above");
            self.refcount[b as usize] = 1;
            s.blocks.push(b);
        }
        self.seqs.insert(seq, s);
        Ok(())
    }

    fn append(
        &mut self,
        layer: usize,
        seq: SeqId,
        k: &Tensor,
        v: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let (nkv, new, hd) = k.dims3()?;
        let (kd, vd) = (f32_data(k)?, f32_data(v)?);
        let s = self.seq(seq)?;
        let (start, blocks) = (s.len, s.blocks.clone());
        if (start + new).div_ceil(self.geometry.block_size) > blocks.len() {
            return Err(CoreError::Invalid(format!(
                "sequence {seq}: append of {new} tokens without a reserve"
            )));
        }
        let g = self.geometry;
        let [ka, va] = with_pool!(&mut self.storage, pool => {
            pool.write(&g, layer, &blocks, start, new, &kd, &vd);
            pool.gather(&g, layer, &blocks, start + new)
        });
        let dims = (nkv, start + new, hd);
        Ok((
            Tensor::from_vec(ka, dims, &self.device)?,
            Tensor::from_vec(va, dims, &self.device)?,
        ))
    }

    fn attend(
        &mut self,
        layer: usize,
        seq: SeqId,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        window: Option<usize>,
    ) -> Result<Tensor> {
        let (heads, n, hd) = q.dims3()?;
        let new = k.dims()[1];
        if new != n || hd != self.geometry.head_dim || heads % self.geometry.num_kv_heads != 0 {
            return Err(CoreError::Invalid(format!(
                "attention shapes disagree: q {:?}, k {:?}",
                q.dims(),
                k.dims()
            )));
        }
        let s = self.seq(seq)?;
        let start = s.len;
        if (start + n).div_ceil(self.geometry.block_size) > s.blocks.len() {
            return Err(CoreError::Invalid(format!(
                "sequence {seq}: attend over {n} new tokens without a reserve"
            )));
        }
        let (kd, vd, qd) = (f32_data(k)?, f32_data(v)?, f32_data(q)?);
        let g = self.geometry;
        // The block table is borrowed from `seqs` while the pool is written: disjoint fields.
        let blocks = &self.seqs[&seq].blocks;
        let out = with_pool!(&mut self.storage, pool => {
            pool.write(&g, layer, blocks, start, n, &kd, &vd);
            pool.attend(&g, layer, blocks, &qd, heads, n, start, window)
        });
        Ok(Tensor::from_vec(out, (heads, n, hd), &self.device)?)
    }

    fn commit(&mut self, seq: SeqId, new_tokens: usize) -> Result<()> {
        let bs = self.geometry.block_size;
        let s = self
            .seqs
            .get_mut(&seq)
            .ok_or(CoreError::UnknownSequence(seq))?;
        if (s.len + new_tokens).div_ceil(bs) > s.blocks.len() {
            return Err(CoreError::Invalid(format!(
                "sequence {seq}: commit of {new_tokens} tokens beyond its blocks"
            )));
        }
        s.len += new_tokens;
        Ok(())
    }

    fn truncate(&mut self, seq: SeqId, len: usize) -> Result<()> {
        let bs = self.geometry.block_size;
        let s = self
            .seqs
            .get_mut(&seq)
            .ok_or(CoreError::UnknownSequence(seq))?;
        s.len = s.len.min(len);
        let keep = s.len.div_ceil(bs);
        let dropped: Vec<u32> = s.blocks.drain(keep..).collect();
        for b in dropped {
            self.release(b);
        }
        Ok(())
    }

    fn remove(&mut self, seq: SeqId) {
        if let Some(s) = self.seqs.remove(&seq) {
            for b in s.blocks {
                self.release(b);
            }
        }
    }

    fn fork(&mut self, from: SeqId, to: SeqId) -> Result<()> {
        let src = self.seq(from)?;
        let shared = SeqBlocks {
            blocks: src.blocks[..src.len.div_ceil(self.geometry.block_size)].to_vec(),
            len: src.len,
        };
        self.remove(to);
        for &b in &shared.blocks {
            self.refcount[b as usize] += 1;
        }
        self.seqs.insert(to, shared);
        Ok(())
    }

    fn usage(&self) -> KvUsage {
        let bs = self.geometry.block_size;
        // A shared block holds its tokens once, however many tables point at it.
        let mut filled: HashMap<u32, usize> = HashMap::new();
        let mut tokens = 0;
        for s in self.seqs.values() {
            tokens += s.len;
            for (i, &b) in s.blocks.iter().enumerate() {
                let n = s.len.saturating_sub(i * bs).min(bs);
                let e = filled.entry(b).or_default();
                *e = (*e).max(n);
            }
        }
        let per_token = self.shape.bytes_per_token();
        let in_use = self.num_blocks - self.free.len();
        KvUsage {
            bytes_reserved: in_use * self.block_bytes(),
            bytes_used: filled.values().sum::<usize>() * per_token,
            sequences: self.seqs.len(),
            tokens,
        }
    }

    fn max_tokens_per_seq(&self) -> Option<usize> {
        Some(self.num_blocks * self.geometry.block_size)
    }
}
