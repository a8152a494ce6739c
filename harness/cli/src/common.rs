//! The model arguments every model-running command shares, as clap parses them; loading,
//! device selection and path resolution are effbench-eval's (`effbench_eval::session`).

use anyhow::{bail, Result};
use clap::Args;

pub const DEFAULT_MODEL: &str = "smollm2-135m-instruct";

/// The commit this binary was built from, as results record it.
pub const GIT_COMMIT: &str = match option_env!("EFFBENCH_GIT_COMMIT") {
    Some(c) => c,
    None => "unknown",
};

/// Whether the tree this binary was built from differed from [`GIT_COMMIT`]; None if unknown.
pub fn git_dirty() -> Option<bool> {
    option_env!("EFFBENCH_GIT_DIRTY").and_then(|d| d.parse().ok())
}

#[derive(Args, Clone, Debug)]
pub struct ModelArgs {
    /// A known model name (see `effbench fetch --list`; fetched on first use) or a path to a
    /// .gguf file, a .safetensors file, or a Hugging Face model directory.
    #[arg(long, short, default_value = DEFAULT_MODEL)]
    pub model: String,
    /// Weight format at run time: as-stored (the checkpoint's own format), f16 or f32
    /// (dequantized: the "f16 baseline" of a model published only quantized), or a
    /// quantization technique from that f16 form (see `effbench run --help`: int4, int2-gptq,
    /// int4-g32-sym, ...; GPTQ results are cached).
    #[arg(long, value_parser = parse_weights, default_value = "as-stored")]
    pub weights: WeightsArg,
    /// Kernel threads; 0 uses every logical core.
    #[arg(long, short, default_value_t = 0)]
    pub threads: usize,
    /// auto, cpu, cuda or cuda:N. auto takes the first CUDA GPU when effbench was built with
    /// the `cuda` feature and a driver answers, else the CPU, and says which and why.
    #[arg(long, default_value = "auto", value_parser = check_device)]
    pub device: String,
}

impl Default for ModelArgs {
    fn default() -> Self {
        Self {
            model: DEFAULT_MODEL.into(),
            weights: WeightsArg::AsStored,
            threads: 0,
            device: "auto".into(),
        }
    }
}

pub use effbench_eval::WeightsArg;

/// `--weights`: a weights format of the model's own checkpoint (`as-stored`, `f16`, `f32` or a
/// quantization technique), parsed by the technique registry.
pub fn parse_weights(name: &str) -> Result<WeightsArg> {
    let stack = effbench_eval::Stack::parse(name)?;
    match (&stack.weights, &stack.decoding, &stack.kv) {
        (effbench_eval::technique::Weights::Format(w), None, None) => Ok(*w),
        _ => bail!(
            "`{name}` is not a weights format (hint: --weights takes f16, f32, as-stored or a quantization such as int4-gptq; stacks and students go to `effbench run --techniques`)"
        ),
    }
}

pub use effbench_eval::session::{
    mib, parse_device, resolve_model_path, resolve_text, select_device, DeviceSpec, Session,
};

impl ModelArgs {
    /// The engine's plain form of these arguments.
    pub fn config(&self) -> effbench_eval::session::ModelConfig {
        effbench_eval::session::ModelConfig {
            model: self.model.clone(),
            weights: self.weights,
            threads: self.threads,
            device: self.device.clone(),
        }
    }
}

pub fn load_model(args: &ModelArgs) -> Result<Session> {
    Ok(effbench_eval::session::load_model(&args.config())?)
}

/// clap's value parser for `--device`: rejects a misspelt device before any work starts.
pub fn check_device(spec: &str) -> Result<String> {
    parse_device(spec)?;
    Ok(spec.trim().to_string())
}

/// A library error whose hint names settings in words, with the flags that set them on this
/// command line added to the hint: libraries do not know which command runs them. An error
/// without a hint passes unchanged.
pub fn name_flags(e: impl Into<anyhow::Error>, flags: &str) -> anyhow::Error {
    let e = e.into();
    let msg = e.to_string();
    match msg.strip_suffix(')') {
        Some(head) if head.contains("(hint: ") => anyhow::anyhow!("{head}: {flags})"),
        _ => e,
    }
}
