//! `kv:f16`: the contiguous cache storing K and V in f16, as llama.cpp's cache does by default.
//! Half the KV bytes of effbench's f32 cache, for the rounding of K and V to f16.

use std::sync::Arc;

use candle_core::{DType, Device};
use effbench_core::technique::{TechniqueGrammar, TechniqueKind};
use effbench_core::{ContiguousBuilder, KvCache, KvCacheBuilder, KvShape};

pub const GRAMMAR: TechniqueGrammar = TechniqueGrammar {
    kind: TechniqueKind::KvCache,
    syntax: "kv:f16",
    help: "the contiguous cache storing K and V in f16 (llama.cpp's default cache type): half \
           the KV bytes of the f32 cache",
};

#[derive(Debug, Clone, Copy)]
pub struct F16Cache;

impl KvCacheBuilder for F16Cache {
    fn build(
        &self,
        shape: KvShape,
        seq_tokens: usize,
        live_seqs: usize,
        device: &Device,
    ) -> effbench_core::Result<Box<dyn KvCache>> {
        ContiguousBuilder { dtype: DType::F16 }.build(shape, seq_tokens, live_seqs, device)
    }

    fn build_for_budget(
        &self,
        shape: KvShape,
        max_seq_len: usize,
        budget_bytes: usize,
        device: &Device,
    ) -> effbench_core::Result<Box<dyn KvCache>> {
        ContiguousBuilder { dtype: DType::F16 }.build_for_budget(
            shape,
            max_seq_len,
            budget_bytes,
            device,
        )
    }

    fn describe(&self) -> String {
        "contiguous f16".into()
    }

    fn bytes_per_token(&self, shape: KvShape) -> usize {
        shape.with_dtype(DType::F16).bytes_per_token()
    }
}

/// The registry's parser.
pub fn parse(name: &str) -> Option<Result<Arc<dyn KvCacheBuilder>, String>> {
    (name == "kv:f16").then(|| Ok(Arc::new(F16Cache) as _))
}

#[cfg(test)]
mod tests {
    use super::*;
    use effbench_core::testing::{tiny_config, tiny_source};
    use effbench_core::{Architecture, AsStored, LogitsFor, Model, SeqChunk};

    #[test]
    fn only_its_own_name_parses() {
        assert!(parse("kv:f16").is_some_and(|r| r.is_ok()));
        assert!(parse("kv:paged").is_none());
        assert!(parse("kv:f16:2").is_none());
    }

    /// The same logits as the f32 cache within f16 rounding of K and V, in half the bytes.
    #[test]
    fn scores_like_the_f32_cache_in_half_the_bytes() {
        let cfg = tiny_config(Architecture::Llama);
        let model = Model::load(&mut tiny_source(&cfg, 7), &AsStored, &Device::Cpu).unwrap();
        let tokens: Vec<u32> = (0..40u32).map(|i| (i * 37 + 5) % 96).collect();
        let shape = KvShape::of(model.config());
        let run = |builder: &dyn KvCacheBuilder| {
            let mut cache = builder.build(shape, 64, 1, &Device::Cpu).unwrap();
            let out = model
                .forward(
                    &[SeqChunk::new(0, tokens.clone(), LogitsFor::All)],
                    cache.as_mut(),
                )
                .unwrap();
            let logits = out.per_chunk[0].clone().unwrap();
            (logits, cache.usage().bytes_used)
        };
        let (f32_logits, f32_bytes) = run(&ContiguousBuilder { dtype: DType::F32 });
        let (f16_logits, f16_bytes) = run(&F16Cache);
        assert_eq!(f16_bytes * 2, f32_bytes);
        assert_eq!(F16Cache.bytes_per_token(shape) * 2, shape.bytes_per_token());
        let diff = (f32_logits - f16_logits)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff > 0.0 && diff < 1e-2, "max |logit difference| {diff}");
    }
}
