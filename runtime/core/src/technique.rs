//! What every technique crate declares about its names, so the engine can list, parse and stack
//! them from one registry without knowing any technique's grammar itself.

/// What a technique changes. A stacked technique (`int4-gptq+spec:ngram+kv:paged`) takes at
/// most one of each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TechniqueKind {
    /// The weights the model runs with: their format, or another model altogether.
    Weights,
    /// How tokens are generated from the same model.
    Decoding,
    /// How the KV cache stores keys and values.
    KvCache,
    /// Which model answers each query: a cascade from a cheap model to the base one.
    Routing,
}

impl TechniqueKind {
    pub fn describe(self) -> &'static str {
        match self {
            Self::Weights => "weights",
            Self::Decoding => "decoding",
            Self::KvCache => "KV cache",
            Self::Routing => "routing",
        }
    }
}

/// A family of technique names: its kind, its syntax, and a line of help.
#[derive(Debug, Clone, Copy)]
pub struct TechniqueGrammar {
    pub kind: TechniqueKind,
    /// e.g. `kv:contiguous | kv:paged[:BLOCK]`.
    pub syntax: &'static str,
    pub help: &'static str,
}
