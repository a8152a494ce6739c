//! `effbench quantize`: int4/int2 weights, by RTN or GPTQ, written once to a file that
//! `--model FILE` (and, when every matrix is a GGML type, llama.cpp) loads again. Also the
//! cache behind the GPTQ techniques of `run`, `bench` and friends.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::Device;
use clap::Args;
use effbench_quant::calib::{calibration_windows, generate_corpus};
use effbench_quant::pipeline::{load_for_quantization, quantize_loaded, GptqSettings};
use effbench_quant::{Method, QuantSpec, Recipe};

/// The model that writes the calibration text (see `effbench_quant::calib`).
const CORPUS_MODEL: &str = "smollm2-135m-instruct";

#[derive(Args, Clone, Debug)]
pub struct CalibArgs {
    /// GPTQ calibration: sequences of self-generated text (see docs/techniques.md).
    #[arg(long, default_value_t = 128)]
    pub calib_sequences: usize,
    /// GPTQ calibration: tokens per sequence.
    #[arg(long, default_value_t = 128)]
    pub calib_len: usize,
    /// Seed of the calibration text.
    #[arg(long, default_value_t = 0)]
    pub calib_seed: u64,
}

impl Default for CalibArgs {
    fn default() -> Self {
        Self {
            calib_sequences: 128,
            calib_len: 128,
            calib_seed: 0,
        }
    }
}

#[derive(Args)]
pub struct QuantizeArgs {
    /// Known model name or path to a GGUF checkpoint.
    #[arg(long, short, default_value = crate::common::DEFAULT_MODEL)]
    model: String,
    /// rtn (round to nearest) or gptq.
    #[arg(long, default_value = "gptq")]
    method: String,
    /// 4 or 2.
    #[arg(long, default_value_t = 4)]
    bits: u32,
    /// Weights per scale: int4 32/64/128 (default 128), int2 16/32/64 (default 32).
    #[arg(long)]
    group: Option<usize>,
    /// Symmetric grid (one f16 scale per group) instead of scale + offset.
    #[arg(long)]
    sym: bool,
    /// Keep the output head in f16, as well as the embeddings.
    #[arg(long)]
    f16_head: bool,
    /// Where to write the GGUF (a `.packed.safetensors` sidecar goes beside it when a format
    /// has no GGML type).
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    calib: CalibArgs,
    #[arg(long, short, default_value_t = 0)]
    threads: usize,
    /// Quantization runs on the CPU (GPTQ's Hessians and updates are CPU matmuls): auto and cpu
    /// take it, cuda is refused. The file it writes loads on any device.
    #[arg(long, default_value = "auto", value_parser = crate::common::check_device)]
    device: String,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: QuantizeArgs) -> Result<()> {
    let method = Method::parse(&args.method)?;
    let group = args
        .group
        .unwrap_or_else(|| effbench_quant::spec::default_group(args.bits));
    let recipe = Recipe {
        method,
        spec: QuantSpec::new(args.bits, group, args.sym)?,
        f16_head: args.f16_head,
    };
    if args.out.extension().is_none_or(|e| e != "gguf") {
        bail!(
            "--out `{}` should end in .gguf (hint: --out model-int4.gguf)",
            args.out.display()
        );
    }
    if let crate::common::DeviceSpec::Cuda(_) = crate::common::parse_device(&args.device)? {
        bail!(
            "quantize runs on the CPU only: GPTQ's Hessians and updates are CPU matmuls (hint: --device cpu; the file it writes then runs on the GPU with --model FILE --device {})",
            args.device
        );
    }
    effbench_core::threads::set_threads(args.threads);
    let path = crate::common::resolve_model_path(&args.model)?;
    let report = quantize_to(&path, recipe, &args.calib, &args.out)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{}: {} matrices in {:.1} s ({} calibration tokens, {} passes, calibration {:.1} s, quantization {:.1} s)",
            recipe.canonical(),
            report.quantize.matrices,
            report.quantize.total_seconds,
            report.quantize.calibration_tokens,
            report.quantize.passes,
            report.quantize.calibration_seconds,
            report.quantize.quantize_seconds
        );
        for f in &report.files {
            println!("wrote {}", f.display());
        }
    }
    Ok(())
}

#[derive(serde::Serialize)]
struct Report {
    recipe: String,
    source: PathBuf,
    files: Vec<PathBuf>,
    quantize: effbench_quant::pipeline::QuantizeReport,
    wall_seconds: f64,
}

fn quantize_to(path: &Path, recipe: Recipe, calib: &CalibArgs, out: &Path) -> Result<Report> {
    let start = Instant::now();
    let device = Device::Cpu;
    let (loaded, hessians) = load_for_quantization(path, &device)
        .with_context(|| format!("loading {}", path.display()))?;
    let windows = if recipe.method == Method::Gptq {
        let docs = calibration_corpus(calib)?;
        calibration_windows(&loaded, &docs, calib.calib_sequences, calib.calib_len)?
    } else {
        Vec::new()
    };
    let mut say = |m: &str| eprintln!("{m}");
    let (matrices, report) = quantize_loaded(
        &loaded,
        &hessians,
        recipe,
        &windows,
        &GptqSettings::default(),
        &mut say,
    )?;
    drop(loaded);
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let files = effbench_quant::file::write(path, recipe, &matrices, out)?;
    Ok(Report {
        recipe: recipe.canonical(),
        source: path.to_path_buf(),
        files,
        quantize: report,
        wall_seconds: start.elapsed().as_secs_f64(),
    })
}

/// The calibration documents, generated on first use and cached as JSON.
pub fn calibration_corpus(calib: &CalibArgs) -> Result<Vec<String>> {
    // A quarter more tokens than needed: re-tokenized by another model's tokenizer, or cut
    // short by an end-of-turn token, a document may come out shorter.
    let new_tokens = calib.calib_len + calib.calib_len / 4;
    let dir = effbench_assets::cache_dir().join("calibration");
    let file = dir.join(format!(
        "selfgen-v1-smollm2-seed{}-{}x{}.json",
        calib.calib_seed, calib.calib_sequences, new_tokens
    ));
    if let Ok(text) = std::fs::read_to_string(&file) {
        if let Ok(docs) = serde_json::from_str::<Vec<String>>(&text) {
            return Ok(docs);
        }
    }
    eprintln!(
        "generating the calibration text ({} documents of {} tokens with {CORPUS_MODEL}, seed {}); cached in {}",
        calib.calib_sequences,
        new_tokens,
        calib.calib_seed,
        file.display()
    );
    let gen_path = crate::common::resolve_model_path(CORPUS_MODEL)?;
    let gen = effbench_core::load(&gen_path, &effbench_core::AsStored, &Device::Cpu)?;
    let docs = generate_corpus(
        &gen,
        calib.calib_sequences,
        new_tokens,
        calib.calib_seed,
        32,
        |done| eprintln!("  {done}/{} documents", calib.calib_sequences),
    )?;
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(format!(".tmp-{}", std::process::id()));
    std::fs::write(&tmp, serde_json::to_string(&docs)?)?;
    std::fs::rename(&tmp, &file)?;
    Ok(docs)
}

/// The quantized file for `recipe` of the checkpoint at `path`, quantizing on first use. The
/// cache key is the checkpoint's sha256, the recipe and the calibration settings; files are
/// written under temporary names and renamed, so an interrupted run leaves no partial entry.
pub fn cached(path: &Path, recipe: Recipe, calib: &CalibArgs) -> Result<PathBuf> {
    let sha = effbench_assets::sha256_file(path)?;
    let dir = effbench_assets::cache_dir().join("quantized");
    let file = dir.join(format!(
        "{}-{}-{}-c{}x{}s{}.gguf",
        &sha[..16],
        recipe.canonical(),
        effbench_quant::pipeline::GPTQ_REVISION,
        calib.calib_sequences,
        calib.calib_len,
        calib.calib_seed
    ));
    if file.exists() {
        eprintln!("{}: cached {}", recipe.canonical(), file.display());
        return Ok(file);
    }
    eprintln!(
        "{}: quantizing {} (first use)",
        recipe.canonical(),
        path.display()
    );
    let report = quantize_to(path, recipe, calib, &file)?;
    // What the quantization cost (calibration and GPTQ time) stays beside the file: a run that
    // reuses it can still say how long it took to make.
    let report_path = PathBuf::from(format!("{}.report.json", file.display()));
    crate::run::store::write_atomic(&report_path, &serde_json::to_vec_pretty(&report)?)?;
    eprintln!(
        "{}: quantized in {:.1} s, cached as {}",
        recipe.canonical(),
        report.wall_seconds,
        file.display()
    );
    Ok(file)
}
