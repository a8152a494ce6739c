//! What every model-running command shares: resolving a model name or path, threads, device
//! and the weight policy.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use candle_core::Device;
use clap::Args;
use effbench_core::{LoadedModel, WeightPolicy};

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

/// The policy, for commands that load weights directly and so cannot take a GPTQ file.
pub fn load_policy(weights: WeightsArg, device: &Device) -> Result<Box<dyn WeightPolicy>> {
    weights.policy(device).context(
        "GPTQ weights come from a quantized file (hint: `effbench quantize --method gptq ... --out FILE`, then pass FILE as the model)",
    )
}

/// What `--device` names: `auto`, `cpu`, `cuda` or `cuda:N`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceSpec {
    Auto,
    Cpu,
    Cuda(usize),
}

pub const DEVICE_HELP: &str = "expected auto, cpu, cuda or cuda:N";

/// Parses `--device`; the syntax only (whether CUDA is there is [`select_device`]'s business).
pub fn parse_device(spec: &str) -> Result<DeviceSpec> {
    Ok(match spec.trim() {
        "auto" => DeviceSpec::Auto,
        "cpu" => DeviceSpec::Cpu,
        "cuda" => DeviceSpec::Cuda(0),
        s => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(n)) => DeviceSpec::Cuda(n),
            _ => bail!("unknown device `{spec}` ({DEVICE_HELP})"),
        },
    })
}

/// clap's value parser for `--device`: rejects a misspelt device before any work starts.
pub fn check_device(spec: &str) -> Result<String> {
    parse_device(spec).map(|_| spec.trim().to_string())
}

/// Whether this binary was built with the `cuda` feature.
pub const BUILT_WITH_CUDA: bool = cfg!(feature = "cuda");

/// The device `--device` names, as one line of error with the fix where it cannot be had.
/// `auto` takes the first CUDA GPU when built with `cuda` and a driver answers, else the CPU,
/// and says which and why once per process.
pub fn select_device(spec: &str) -> Result<Device> {
    match parse_device(spec)? {
        DeviceSpec::Cpu => Ok(Device::Cpu),
        DeviceSpec::Cuda(n) => cuda_device(n).map_err(|cause| {
            let spec = spec.trim();
            if BUILT_WITH_CUDA {
                anyhow::anyhow!(
                    "device `{spec}`: no usable CUDA GPU {n} ({cause}) (hint: check the driver with nvidia-smi and the index against `effbench hw`, or use --device cpu)"
                )
            } else {
                anyhow::anyhow!(
                    "device `{spec}` needs a build with the `cuda` feature, and this one has none (hint: scripts/build-cuda.sh builds it, see docs/gpu-usage.md; or use --device cpu)"
                )
            }
        }),
        DeviceSpec::Auto => {
            let (device, why) = match cuda_device(0) {
                Ok(d) => (d, "auto: built with `cuda`, and CUDA GPU 0 answered".to_string()),
                Err(cause) if BUILT_WITH_CUDA => (
                    Device::Cpu,
                    format!("auto: built with `cuda`, but no CUDA GPU answered: {cause}"),
                ),
                Err(_) => (
                    Device::Cpu,
                    "auto: this build has no `cuda` feature".to_string(),
                ),
            };
            // A run loads one model per technique; say the choice once, not each time.
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| eprintln!("device: {} ({why})", device_label(&device)));
            Ok(device)
        }
    }
}

/// How results name a device: `cpu`, `cuda:0`.
pub fn device_label(device: &Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => "cpu".into(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

/// CUDA GPU `n`, or why not (the caller words the error).
#[cfg(not(feature = "cuda"))]
fn cuda_device(_n: usize) -> std::result::Result<Device, String> {
    Err("built without the `cuda` feature".into())
}

/// One [`Device`] per GPU for the whole process: candle tells devices apart by instance, so
/// models loaded for the same GPU must share it (and its context, stream and cuBLAS handle).
#[cfg(feature = "cuda")]
fn cuda_device(n: usize) -> std::result::Result<Device, String> {
    use std::collections::BTreeMap;
    use std::sync::Mutex;
    static DEVICES: Mutex<BTreeMap<usize, Device>> = Mutex::new(BTreeMap::new());
    let mut devices = DEVICES.lock().expect("device cache");
    if let Some(d) = devices.get(&n) {
        return Ok(d.clone());
    }
    match Device::new_cuda(n) {
        Ok(d) => {
            devices.insert(n, d.clone());
            Ok(d)
        }
        // candle may append a backtrace; the first line is the driver's answer.
        Err(e) => Err(e
            .to_string()
            .lines()
            .next()
            .unwrap_or("unknown error")
            .to_string()),
    }
}

/// A known asset name is fetched on first use; anything else must be an existing path.
pub fn resolve_model_path(model: &str) -> Result<PathBuf> {
    let path = PathBuf::from(model);
    if path.exists() {
        return Ok(path);
    }
    match effbench_assets::lookup(model) {
        Ok(_) => effbench_assets::fetch(model, &effbench_assets::FetchOptions::default())
            .with_context(|| format!("fetching model `{model}`")),
        Err(_) => {
            let known: Vec<&str> = effbench_assets::known()
                .iter()
                .filter(|a| a.kind == effbench_assets::AssetKind::Model)
                .map(|a| a.name.as_str())
                .collect();
            bail!(
                "unknown model `{model}`: not a file and not a known name (known: {}; or pass a path to a .gguf or model directory)",
                known.join(", ")
            )
        }
    }
}

pub struct Session {
    pub loaded: LoadedModel,
    pub threads: usize,
    pub load_seconds: f64,
}

pub fn load_model(args: &ModelArgs) -> Result<Session> {
    let threads = effbench_core::threads::set_threads(args.threads);
    let device = select_device(&args.device)?;
    let path = resolve_model_path(&args.model)?;
    let start = std::time::Instant::now();
    let loaded = match (args.weights.policy(&device), args.weights) {
        // A file `effbench quantize` wrote may hold packed matrices in a sidecar.
        (Some(_), WeightsArg::AsStored) if is_quantized_file(&path) => {
            effbench_quant::file::load_on(&path, &device)?.0
        }
        (Some(policy), _) => effbench_core::load(&path, policy.as_ref(), &device)?,
        (None, WeightsArg::Quant(recipe)) => {
            let file =
                crate::quantize::cached(&path, recipe, &crate::quantize::CalibArgs::default())?;
            effbench_quant::file::load_on(&file, &device)?.0
        }
        (None, _) => unreachable!("only GPTQ has no direct policy"),
    };
    Ok(Session {
        loaded,
        threads,
        load_seconds: start.elapsed().as_secs_f64(),
    })
}

fn is_quantized_file(path: &std::path::Path) -> bool {
    path.extension().is_some_and(|e| e == "gguf")
        && matches!(effbench_quant::file::recipe_of(path), Ok(Some(_)))
}

pub fn mib(bytes: usize) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// The text file, or a known dataset name fetched on first use.
pub fn resolve_text(file: &str) -> Result<PathBuf> {
    let path = PathBuf::from(file);
    if path.exists() {
        return Ok(path);
    }
    if effbench_assets::lookup(file).is_ok() {
        return effbench_assets::fetch(file, &effbench_assets::FetchOptions::default())
            .with_context(|| format!("fetching `{file}`"));
    }
    bail!("text file `{file}` not found (hint: pass a path, or `wikitext-2` to fetch WikiText-2)")
}

/// Tokens of the start of `text`, enough for `needed` tokens when given. Tokenizing all of
/// WikiText-2 takes seconds; English runs about 4 bytes a token, so 8 bytes a token is ample.
pub fn encode_leading(loaded: &LoadedModel, text: &str, needed: Option<usize>) -> Result<Vec<u32>> {
    let mut end = text.len();
    if let Some(needed) = needed {
        end = end.min(needed.saturating_mul(8).max(4096));
        while !text.is_char_boundary(end) {
            end -= 1;
        }
    }
    Ok(loaded.encode(&text[..end])?)
}
