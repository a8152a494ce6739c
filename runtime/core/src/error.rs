use std::path::PathBuf;

/// Every failure of the runtime, phrased for the person running effbench: the cause in one line,
/// and where it helps, what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a GGUF or safetensors model (hint: pass a .gguf file, a .safetensors file, or a directory with config.json and *.safetensors)")]
    UnknownFormat { path: PathBuf },
    #[error("{path}: corrupt or truncated GGUF: {detail} (hint: download it again)")]
    BadGguf { path: PathBuf, detail: String },
    #[error("{path}: corrupt safetensors: {detail} (hint: the header disagrees with the file; re-download it)")]
    BadSafetensors { path: PathBuf, detail: String },
    #[error("{path}: bad config.json: {detail}")]
    BadConfig { path: PathBuf, detail: String },
    #[error("unsupported architecture `{arch}` (supported: {supported})")]
    UnsupportedArchitecture { arch: String, supported: String },
    #[error("tensor `{name}` has unsupported type {dtype} (supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K..Q8_K)")]
    UnsupportedTensorType { name: String, dtype: String },
    #[error("model is missing tensor `{name}` (hint: the file is incomplete or not a {arch} checkpoint)")]
    MissingTensor { name: String, arch: String },
    #[error("model metadata is missing `{key}`")]
    MissingMetadata { key: String },
    #[error("model metadata describes an impossible model: {detail} (hint: the file is corrupt; re-download it)")]
    BadMetadata { detail: String },
    #[error("tensor `{name}` has shape {got:?}, expected {expected:?}")]
    ShapeMismatch {
        name: String,
        got: Vec<usize>,
        expected: Vec<usize>,
    },
    #[error("tokenizer: {0}")]
    Tokenizer(#[from] effbench_tokenizer::TokenizerError),
    #[error("sequence {seq} would reach {needed} tokens, beyond the cache capacity of {capacity} (hint: fewer new tokens or a shorter context)")]
    CacheFull {
        seq: u64,
        needed: usize,
        capacity: usize,
    },
    /// The cache has no room now; it may have later, when other sequences finish or are
    /// preempted. A scheduler catches this one.
    #[error("KV cache budget exhausted: sequence {seq} needs {needed_bytes} more bytes, {free_bytes} free (hint: a larger KV budget, or fewer sequences at once)")]
    KvBudgetExhausted {
        seq: u64,
        needed_bytes: usize,
        free_bytes: usize,
    },
    #[error("unknown sequence {0} in the KV cache")]
    UnknownSequence(u64),
    #[error("token id {token} is outside the vocabulary of {vocab}")]
    TokenOutOfRange { token: u32, vocab: usize },
    #[error("invalid input: {0}")]
    Invalid(String),
    /// A model feature this version does not implement, named.
    #[error("{0}")]
    Unsupported(String),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

pub type Result<T, E = CoreError> = std::result::Result<T, E>;
