//! effbench-core: the model runtime every effbench technique plugs into.
//!
//! A technique is a value handed to this runtime, never a fork of it:
//! - how weights are stored and multiplied is a [`linear::LinearWeight`], chosen per matrix by a
//!   [`linear::WeightPolicy`] at load time;
//! - the KV cache is a [`kv::KvCache`];
//! - how tokens are chosen is a [`decode::DecodingStrategy`].
//!
//! The forward pass ([`model::Model::forward`]) takes a batch of per-sequence chunks of any length,
//! so prefill, decode, speculative verification and continuous batching are one code path.

pub mod allocator;
pub mod config;
pub mod decode;
pub mod elementwise;
pub mod error;
pub mod kv;
pub mod linear;
pub mod loader;
pub mod model;
pub mod shapes;
pub mod source;
pub mod technique;
pub mod testing;
pub mod threads;
pub mod timing;

/// The bounded GGUF header walk that runs before candle's reader; it lives in
/// `effbench-tokenizer`, the lowest crate that reads GGUF files.
pub use effbench_tokenizer::gguf_header;

pub use config::{Activation, Architecture, BlockDetails, ModelConfig, RopeScaling, RopeStyle};
pub use error::{CoreError, Result};
pub use kv::{
    ContiguousBuilder, ContiguousKvCache, KvCache, KvCacheBuilder, KvShape, KvUsage, SeqId,
    CONTIGUOUS_F32,
};
pub use linear::{AsStored, Dequantize, LinearWeight, SourceTensor, WeightPolicy, WeightRole};
pub use loader::{load, LoadedModel, Vocabulary};
pub use model::{BatchLogits, EmbeddingPlacement, LogitsFor, Model, SeqChunk, WeightBytes};
