//! The KV-cache techniques' names: `kv:contiguous` and `kv:paged[:BLOCK]`.

use effbench_core::technique::{TechniqueGrammar, TechniqueKind};

use crate::DEFAULT_BLOCK_SIZE;

pub const GRAMMAR: TechniqueGrammar = TechniqueGrammar {
    kind: TechniqueKind::KvCache,
    syntax: "kv:contiguous | kv:paged[:BLOCK]",
    help: "the KV cache: one contiguous buffer per sequence, or fixed blocks of BLOCK tokens \
           (default 16) that a shared prefix's sequences share",
};

/// Which KV cache a technique runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvTechnique {
    Contiguous,
    Paged { block_size: usize },
}

impl KvTechnique {
    /// Parses a `kv:` name; `None` when `name` is not a KV-cache technique at all.
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
            _ => Err(format!(
                "`{name}` is not a KV cache (grammar: {})",
                GRAMMAR.syntax
            )),
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
        assert!(KvTechnique::parse("kv:ring").unwrap().is_err());
        assert_eq!(KvTechnique::parse("int4"), None);
    }
}
