//! The KV-cache techniques' names: `kv:contiguous` and `kv:paged[:BLOCK]`.

use candle_core::{DType, Device};
use effbench_core::technique::{TechniqueGrammar, TechniqueKind};
use effbench_core::{ContiguousBuilder, KvCache, KvCacheBuilder, KvShape};

use crate::{PagedKvCache, DEFAULT_BLOCK_SIZE};

pub const GRAMMAR: TechniqueGrammar = TechniqueGrammar {
    kind: TechniqueKind::KvCache,
    syntax: "kv:contiguous | kv:paged[:BLOCK]",
    help: "the KV cache: one contiguous buffer per sequence, or fixed blocks of BLOCK tokens \
           (default 16) that a shared prefix's sequences share",
};

/// What a KV cache stores K and V as. llama.cpp's default cache is f16; effbench's is f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KvDtype {
    F32,
    F16,
}

impl KvDtype {
    pub fn dtype(self) -> DType {
        match self {
            Self::F32 => DType::F32,
            Self::F16 => DType::F16,
        }
    }
}

impl std::str::FromStr for KvDtype {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "f32" => Ok(Self::F32),
            "f16" => Ok(Self::F16),
            other => Err(format!(
                "unknown KV cache type `{other}` (expected f32 or f16)"
            )),
        }
    }
}

impl std::fmt::Display for KvDtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
        })
    }
}

/// Which KV cache a technique runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvTechnique {
    Contiguous,
    Paged { block_size: usize },
}

impl KvTechnique {
    /// Parses a `kv:contiguous` or `kv:paged[:BLOCK]` name; `None` for any other name, so
    /// other KV-cache families can own other `kv:` names.
    pub fn parse(name: &str) -> Option<Result<Self, String>> {
        let rest = name.strip_prefix("kv:")?;
        Some(match rest.split_once(':') {
            None if rest == "contiguous" => Ok(Self::Contiguous),
            None if rest == "paged" => Ok(Self::Paged {
                block_size: DEFAULT_BLOCK_SIZE,
            }),
            Some(("paged", n)) => match n.parse::<usize>() {
                Ok(b) if b > 0 => Ok(Self::Paged { block_size: b }),
                _ => Err(format!(
                    "`{name}`: the block size is a count of tokens of at least 1 (e.g. kv:paged:16)"
                )),
            },
            // Another family's `kv:` name (or none's): the registry asks the others.
            _ => return None,
        })
    }

    /// The paged cache's block size, `None` for the contiguous cache.
    pub fn paged_block_size(self) -> Option<usize> {
        match self {
            Self::Contiguous => None,
            Self::Paged { block_size } => Some(block_size),
        }
    }
}

impl KvCacheBuilder for KvTechnique {
    fn build(
        &self,
        shape: KvShape,
        seq_tokens: usize,
        live_seqs: usize,
        device: &Device,
    ) -> effbench_core::Result<Box<dyn KvCache>> {
        match *self {
            Self::Contiguous => {
                ContiguousBuilder { dtype: DType::F32 }.build(shape, seq_tokens, live_seqs, device)
            }
            // Each live sequence's own blocks plus one partly filled block; only blocks in use
            // count as held memory, so the pool's size costs nothing until touched.
            Self::Paged { block_size } => Ok(Box::new(PagedKvCache::new(
                shape,
                block_size,
                (seq_tokens.div_ceil(block_size) + 1) * live_seqs.max(1),
                device,
            )?)),
        }
    }

    fn build_for_budget(
        &self,
        shape: KvShape,
        max_seq_len: usize,
        budget_bytes: usize,
        device: &Device,
    ) -> effbench_core::Result<Box<dyn KvCache>> {
        match *self {
            Self::Contiguous => ContiguousBuilder { dtype: DType::F32 }.build_for_budget(
                shape,
                max_seq_len,
                budget_bytes,
                device,
            ),
            Self::Paged { block_size } => Ok(Box::new(PagedKvCache::with_budget(
                shape,
                block_size,
                budget_bytes,
                device,
            )?)),
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Contiguous => "contiguous f32".into(),
            Self::Paged { block_size } => format!("paged ({block_size}-token blocks) f32"),
        }
    }
}

/// The registry's parser: a `kv:contiguous` or `kv:paged` name as the builder it names.
pub fn parse(name: &str) -> Option<Result<std::sync::Arc<dyn KvCacheBuilder>, String>> {
    KvTechnique::parse(name).map(|r| r.map(|k| std::sync::Arc::new(k) as _))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_others_are_not_ours() {
        assert_eq!(
            KvTechnique::parse("kv:contiguous"),
            Some(Ok(KvTechnique::Contiguous))
        );
        assert_eq!(
            KvTechnique::parse("kv:paged"),
            Some(Ok(KvTechnique::Paged { block_size: 16 }))
        );
        assert_eq!(
            KvTechnique::parse("kv:paged:32"),
            Some(Ok(KvTechnique::Paged { block_size: 32 }))
        );
        assert!(KvTechnique::parse("kv:paged:0").unwrap().is_err());
        assert_eq!(KvTechnique::parse("kv:ring"), None);
        assert_eq!(KvTechnique::parse("int4"), None);
    }
}
