//! What every model-running command and the run engine share: resolving a model name or path,
//! threads, device and the weight policy, and loading the model with them.

use std::path::PathBuf;

use crate::error::{bail, Context, Result};
use candle_core::Device;
use effbench_core::{LoadedModel, WeightPolicy};

use crate::hint::hinted;
use crate::quantized::Calibration;
use crate::WeightsArg;
use sha2::{Digest, Sha256};

/// Which model to load and how: the plain form of the binary's model arguments.
#[derive(Clone, Debug)]
pub struct ModelConfig {
    /// A known model name (fetched on first use) or a path to a model file or directory.
    pub model: String,
    pub weights: WeightsArg,
    /// Kernel threads; 0 uses every logical core.
    pub threads: usize,
    /// `auto`, `cpu`, `cuda` or `cuda:N`.
    pub device: String,
}

/// The policy, for commands that load weights directly and so cannot take a GPTQ file.
pub fn load_policy(weights: WeightsArg, device: &Device) -> Result<Box<dyn WeightPolicy>> {
    weights.policy(device).context(
        "GPTQ weights come from a quantized file (hint: quantize the model to a file once, then load that file as stored)",
    )
}

/// A device by name: `auto`, `cpu`, `cuda` or `cuda:N`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceSpec {
    Auto,
    Cpu,
    Cuda(usize),
}

pub const DEVICE_HELP: &str = "expected auto, cpu, cuda or cuda:N";

/// Parses a device name; the syntax only (whether CUDA is there is [`select_device`]'s business).
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

/// Whether this binary was built with the `cuda` feature.
pub const BUILT_WITH_CUDA: bool = cfg!(feature = "cuda");

/// The device `spec` names, as one line of error with the fix where it cannot be had.
/// `auto` takes the first CUDA GPU when built with `cuda` and a driver answers, else the CPU,
/// and says which and why once per process.
pub fn select_device(spec: &str) -> Result<Device> {
    match parse_device(spec)? {
        DeviceSpec::Cpu => Ok(Device::Cpu),
        DeviceSpec::Cuda(n) => cuda_device(n).map_err(|cause| {
            let spec = spec.trim();
            if BUILT_WITH_CUDA {
                hinted(
                    format!("device `{spec}`: no usable CUDA GPU {n} ({cause})"),
                    "check the driver with nvidia-smi and the GPU's index, or use {device} cpu",
                )
            } else {
                hinted(
                    format!("device `{spec}` needs a build with the `cuda` feature, and this one has none"),
                    "scripts/build-cuda.sh builds it, see docs/gpu-usage.md; or use {device} cpu",
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

/// A model loaded for one command or one row of a run, with what loading it took.
pub struct Session {
    pub loaded: LoadedModel,
    pub threads: usize,
    pub load_seconds: f64,
}

pub fn load_model(args: &ModelConfig) -> Result<Session> {
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
            let file = crate::quantized::cached(&path, recipe, &Calibration::default())?;
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

/// What identifies a model's weights: a file's sha256, or for a Hugging Face directory (a
/// distilled student) the sha256 over its config.json and .safetensors files' own, by name,
/// since a directory has no bytes of its own to hash.
pub fn model_sha256(path: &std::path::Path) -> Result<String> {
    if !path.is_dir() {
        return Ok(effbench_assets::sha256_file(path)?);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .with_context(|| format!("reading {}", path.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "safetensors")
                || p.file_name().is_some_and(|n| n == "config.json")
        })
        .collect();
    files.sort();
    let mut h = Sha256::new();
    for f in &files {
        h.update(f.file_name().unwrap_or_default().as_encoded_bytes());
        h.update(effbench_assets::sha256_file(f)?.as_bytes());
    }
    Ok(hex::encode(h.finalize()))
}

/// Whether this binary can run a model on a GPU: a property of the build as much as of the
/// machine, so it is reported beside what NVML sees (`gpus`).
#[derive(Debug, serde::Serialize)]
pub struct GpuCompute {
    /// Built with the `cuda` feature.
    pub built_with_cuda: bool,
    /// The device the `auto` setting takes.
    pub auto_device: String,
    /// Why `auto` does not take a GPU; absent when it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What `auto` takes on this machine with this build, and why not a GPU when it does not.
pub fn gpu_compute(hw: &effbench_hw::HardwareInfo) -> GpuCompute {
    let built_with_cuda = BUILT_WITH_CUDA;
    if !built_with_cuda {
        let seen = match &hw.gpus {
            effbench_hw::GpuReport::Nvidia { devices, .. } if !devices.is_empty() => format!(
                "; NVML sees {} GPU(s): scripts/build-cuda.sh builds a binary that uses them",
                devices.len()
            ),
            _ => String::new(),
        };
        return GpuCompute {
            built_with_cuda,
            auto_device: "cpu".into(),
            reason: Some(format!(
                "no GPU compute: built without the `cuda` feature{seen}"
            )),
        };
    }
    match select_device("cuda:0") {
        Ok(d) => GpuCompute {
            built_with_cuda,
            auto_device: device_label(&d),
            reason: None,
        },
        Err(e) => GpuCompute {
            built_with_cuda,
            auto_device: "cpu".into(),
            reason: Some(format!("no GPU compute: {e:#}")),
        },
    }
}
