use std::path::PathBuf;

/// Every failure of distillation, phrased for the person running it: the cause in one line and,
/// where it helps, what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum DistillError {
    #[error("the student's vocabulary ({student} tokens) differs from the teacher's ({teacher}): distillation compares the two distributions token by token, so both must use one tokenizer (hint: start the student from this teacher's own layers, or from a config with vocab_size {teacher})")]
    VocabularyMismatch { teacher: usize, student: usize },
    #[error("the student's tokenizer differs from the teacher's: {detail}; the distributions would be compared for different tokens (hint: use a student built on the teacher's tokenizer)")]
    TokenizerMismatch { detail: String },
    #[error("checkpoint {path} does not match its config.json: {detail} (hint: the weights come from another model or the files were mixed up; write the checkpoint again or point at the directory it was saved to)")]
    CheckpointMismatch { path: PathBuf, detail: String },
    #[error("bad layer selection: {0} (hint: a selection is teacher layer indices like 0,2,4 in increasing order, `every-other` or `all`)")]
    BadLayers(String),
    #[error("{path} already holds a checkpoint at step {step}")]
    CheckpointExists { path: PathBuf, step: usize },
    #[error("{path} holds no checkpoint to resume")]
    NoCheckpoint { path: PathBuf },
    #[error("{path} gives no training sequence (hint: it needs at least 16 tokens)")]
    TextTooShort { path: PathBuf },
    #[error("no seed prompts in {path}")]
    NoSeedPrompts { path: PathBuf },
    #[error("nothing to train on: {0}")]
    NoData(String),
    #[error("cannot read or write {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {detail}")]
    BadFile { path: PathBuf, detail: String },
    #[error("invalid option: {0}")]
    Invalid(String),
    #[error(
        "training diverged at step {step}: the loss is {loss} (hint: a lower learning rate or a longer warm-up)"
    )]
    Diverged { step: usize, loss: f32 },
    /// The caller's own failure to find a model it named, passed through unchanged.
    #[error(transparent)]
    Resolve(Box<dyn std::error::Error + Send + Sync>),
    #[error(transparent)]
    Core(#[from] effbench_core::CoreError),
    #[error("tensor operation failed: {0}")]
    Candle(String),
}

impl From<candle_core::Error> for DistillError {
    fn from(e: candle_core::Error) -> Self {
        // candle errors can carry backtraces over several lines; users get one.
        let s = e.to_string();
        Self::Candle(s.lines().next().unwrap_or("").trim().to_string())
    }
}

pub type Result<T, E = DistillError> = std::result::Result<T, E>;

pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> DistillError + '_ {
    move |source| DistillError::Io {
        path: path.to_path_buf(),
        source,
    }
}
