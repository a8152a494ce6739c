//! Where the teacher's logits come from. effbench-core's inference model implements this, so the
//! teacher runs in its checkpoint's own (quantized) format with the fast kernels; a cache of
//! top-k logits on disk could implement it too.

use candle_core::Tensor;
use effbench_core::{ContiguousKvCache, KvShape, LogitsFor, Model, SeqChunk};

use crate::error::{DistillError, Result};

pub trait Teacher {
    fn vocab_size(&self) -> usize;
    /// Logits (T, vocab) for every position of one sequence. Never differentiated.
    fn logits(&self, tokens: &[u32]) -> Result<Tensor>;
}

impl Teacher for Model {
    fn vocab_size(&self) -> usize {
        self.config().vocab_size
    }

    fn logits(&self, tokens: &[u32]) -> Result<Tensor> {
        let mut cache =
            ContiguousKvCache::new(KvShape::of(self.config()), tokens.len(), self.device());
        let out = self.forward(
            &[SeqChunk::new(0, tokens.to_vec(), LogitsFor::All)],
            &mut cache,
        )?;
        out.per_chunk
            .into_iter()
            .next()
            .flatten()
            .ok_or_else(|| DistillError::Invalid("the teacher returned no logits".into()))
    }
}
