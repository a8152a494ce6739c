use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum QuantError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Core(#[from] effbench_core::CoreError),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error(transparent)]
    Kernel(#[from] effbench_kernels::KernelError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {detail}")]
    BadFile { path: PathBuf, detail: String },
    #[error("GPTQ on `{name}`: {detail}")]
    Gptq { name: String, detail: String },
}

pub type Result<T> = std::result::Result<T, QuantError>;

impl From<QuantError> for effbench_core::CoreError {
    fn from(e: QuantError) -> Self {
        match e {
            QuantError::Core(c) => c,
            other => effbench_core::CoreError::Invalid(other.to_string()),
        }
    }
}
