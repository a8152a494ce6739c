//! The GPTQ (and RTN) quantized-file cache behind the quantization techniques: a checkpoint is
//! quantized once per recipe and calibration, and every later run loads the file.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::error::{Context, Result};
use candle_core::Device;
use effbench_quant::calib::{calibration_windows, generate_corpus};
use effbench_quant::pipeline::{load_for_quantization, quantize_loaded, GptqSettings};
use effbench_quant::{Method, Recipe};

/// The model that writes the calibration text (see `effbench_quant::calib`).
const CORPUS_MODEL: &str = "smollm2-135m-instruct";

/// GPTQ's calibration text: self-generated sequences (see docs/techniques.md).
#[derive(Clone, Debug)]
pub struct Calibration {
    /// Sequences of self-generated text.
    pub sequences: usize,
    /// Tokens per sequence.
    pub len: usize,
    /// Seed of the calibration text.
    pub seed: u64,
}

impl Default for Calibration {
    fn default() -> Self {
        Self {
            sequences: 128,
            len: 128,
            seed: 0,
        }
    }
}

/// What quantizing one checkpoint to one recipe made and cost; kept beside a cached file.
#[derive(serde::Serialize)]
pub struct Report {
    pub recipe: String,
    pub source: PathBuf,
    pub files: Vec<PathBuf>,
    pub quantize: effbench_quant::pipeline::QuantizeReport,
    pub wall_seconds: f64,
}

impl std::fmt::Display for Report {
    /// What was quantized, how long each part took, and the files written, a line each.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let q = &self.quantize;
        write!(
            f,
            "{}: {} matrices in {:.1} s ({} calibration tokens, {} passes, calibration {:.1} s, quantization {:.1} s)",
            self.recipe,
            q.matrices,
            q.total_seconds,
            q.calibration_tokens,
            q.passes,
            q.calibration_seconds,
            q.quantize_seconds
        )?;
        for file in &self.files {
            write!(f, "\nwrote {}", file.display())?;
        }
        Ok(())
    }
}

/// Quantizes the checkpoint at `path` to `recipe` (GPTQ calibrated on `calib`) into `out`.
pub fn quantize_to(path: &Path, recipe: Recipe, calib: &Calibration, out: &Path) -> Result<Report> {
    let start = Instant::now();
    let device = Device::Cpu;
    let (loaded, hessians) = load_for_quantization(path, &device)
        .with_context(|| format!("loading {}", path.display()))?;
    let windows = if recipe.method == Method::Gptq {
        let docs = calibration_corpus(calib)?;
        calibration_windows(&loaded, &docs, calib.sequences, calib.len)?
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
pub fn calibration_corpus(calib: &Calibration) -> Result<Vec<String>> {
    // A quarter more tokens than needed: re-tokenized by another model's tokenizer, or cut
    // short by an end-of-turn token, a document may come out shorter.
    let new_tokens = calib.len + calib.len / 4;
    let dir = effbench_assets::cache_dir().join("calibration");
    let file = dir.join(format!(
        "selfgen-v1-smollm2-seed{}-{}x{}.json",
        calib.seed, calib.sequences, new_tokens
    ));
    if let Ok(text) = std::fs::read_to_string(&file) {
        if let Ok(docs) = serde_json::from_str::<Vec<String>>(&text) {
            return Ok(docs);
        }
    }
    eprintln!(
        "generating the calibration text ({} documents of {} tokens with {CORPUS_MODEL}, seed {}); cached in {}",
        calib.sequences,
        new_tokens,
        calib.seed,
        file.display()
    );
    let gen_path = crate::session::resolve_model_path(CORPUS_MODEL)?;
    let gen = effbench_core::load(&gen_path, &effbench_core::AsStored, &Device::Cpu)?;
    let docs = generate_corpus(&gen, calib.sequences, new_tokens, calib.seed, 32, |done| {
        eprintln!("  {done}/{} documents", calib.sequences)
    })?;
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(format!(".tmp-{}", std::process::id()));
    std::fs::write(&tmp, serde_json::to_string(&docs)?)?;
    std::fs::rename(&tmp, &file)?;
    Ok(docs)
}

/// The quantized file for `recipe` of the checkpoint at `path`, quantizing on first use. The
/// cache key is the checkpoint's sha256, the recipe and the calibration settings; files are
/// written under temporary names and renamed, so an interrupted run leaves no partial entry.
pub fn cached(path: &Path, recipe: Recipe, calib: &Calibration) -> Result<PathBuf> {
    let sha = effbench_assets::sha256_file(path)?;
    let dir = effbench_assets::cache_dir().join("quantized");
    let file = dir.join(format!(
        "{}-{}-{}-c{}x{}s{}.gguf",
        &sha[..16],
        recipe.canonical(),
        effbench_quant::pipeline::GPTQ_REVISION,
        calib.sequences,
        calib.len,
        calib.seed
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
