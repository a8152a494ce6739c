//! llama-bench's two tests on our engine, `pp N` and `tg N` at a depth, as `effbench bench`
//! reports them, with what the roofline needs; and the synthetic-weights models that time a
//! published shape no file on hand has.

use crate::error::Result;
use candle_core::{DType, Device};
use effbench_core::{Dequantize, Model};
use serde::Serialize;

use crate::run::BuildInfo;
use crate::speed;

/// What was timed: a checkpoint, or a shape with synthetic weights.
pub struct Subject {
    pub model: Model,
    /// The checkpoint's path, or `synthetic:SHAPE`.
    pub name: String,
    pub variant: String,
    pub threads: usize,
}

/// A known shape (`llama-3.1-8b`, `qwen2.5-1.5b`, ...) with random f16 weights made on `device`.
pub fn synthetic(shape: &str, threads: usize, device: &Device) -> Result<Subject> {
    let threads = effbench_core::threads::set_threads(threads);
    let known = effbench_core::shapes::known_shape(shape)?;
    let mut source = effbench_core::shapes::random_source(&known.config, DType::F16, device)?;
    let model = Model::load(&mut source, &Dequantize(DType::F16), device)?;
    Ok(Subject {
        model,
        name: format!("synthetic:{}", known.name),
        variant: format!(
            "f16, synthetic random weights in the shape of {}",
            known.from
        ),
        threads,
    })
}

/// The tests to run; a count of 0 skips its test.
#[derive(Clone, Copy, Debug)]
pub struct BenchSettings {
    pub n_prompt: usize,
    pub n_gen: usize,
    pub repetitions: usize,
    /// Tokens in the KV cache before each test (llama-bench's `-d`).
    pub depth: usize,
}

#[derive(Debug, Serialize)]
pub struct TestResult {
    pub test: String,
    pub tokens: usize,
    pub mean_tok_per_s: f64,
    pub sd_tok_per_s: f64,
    pub samples_tok_per_s: Vec<f64>,
}

/// `effbench bench --json`.
#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub model: String,
    pub variant: String,
    /// `cpu`, `cuda:0`.
    pub device: String,
    pub weight_bytes: usize,
    /// Bits per weight of the blocks' linear layers, scales included.
    pub block_bits_per_weight: f64,
    /// Memory one decode step of the tg test reads on average: every block weight, the output
    /// head (the embedding table when tied), one embedding row, and the K/V of the context so
    /// far (the depth's included). The machine's bandwidth divided by this is the decode
    /// roofline.
    pub decode_bytes_per_token: f64,
    /// Multiply-adds times two per prefilled token in the linear layers and head: the GEMM
    /// peak divided by this bounds prefill from above (attention's share is left out).
    pub prefill_flops_per_token: f64,
    pub threads: usize,
    pub repetitions: usize,
    /// Tokens in the KV cache before each test (llama-bench's `n_depth`).
    pub depth: usize,
    /// The commit the binary was built from, and whether its tree differed from it, as every
    /// result records them.
    pub git_commit: String,
    pub git_dirty: Option<bool>,
    pub results: Vec<TestResult>,
}

/// Times `subject` in an f32 contiguous cache, as llama-bench's tests.
impl BenchReport {
    /// llama-bench's table: a row per test, mean ± sd tok/s.
    pub fn markdown(&self) -> String {
        let name = std::path::Path::new(&self.model)
            .file_name()
            .map_or_else(|| self.model.clone(), |n| n.to_string_lossy().to_string());
        let rows = self.results.iter().map(|r| {
            vec![
                name.clone(),
                self.variant.clone(),
                crate::session::mib(self.weight_bytes),
                self.threads.to_string(),
                r.test.clone(),
                format!("{:.2} ± {:.2}", r.mean_tok_per_s, r.sd_tok_per_s),
            ]
        });
        effbench_report::markdown_table(
            &["model", "variant", "size", "threads", "test", "t/s"],
            rows.collect(),
        )
    }
}

pub fn bench(subject: &Subject, s: BenchSettings, build: &BuildInfo) -> Result<BenchReport> {
    let model = &subject.model;
    let kv = &effbench_core::CONTIGUOUS_F32;
    let mut measured = Vec::new();
    if s.n_prompt > 0 {
        measured.push(speed::prefill_at(
            model,
            s.n_prompt,
            s.depth,
            s.repetitions,
            kv,
        )?);
    }
    if s.n_gen > 0 {
        measured.push(speed::decode_at(
            model,
            s.n_gen,
            s.depth,
            s.repetitions,
            kv,
        )?);
    }
    let results = measured
        .into_iter()
        .map(|m| TestResult {
            test: m.test.clone(),
            tokens: m.tokens,
            mean_tok_per_s: m.mean(),
            sd_tok_per_s: m.sd(),
            samples_tok_per_s: m.samples_tok_per_s,
        })
        .collect();
    Ok(BenchReport {
        model: subject.name.clone(),
        variant: subject.variant.clone(),
        device: crate::session::device_label(model.device()),
        weight_bytes: model.weight_bytes().total,
        block_bits_per_weight: model.weight_bytes().block_bits_per_weight,
        decode_bytes_per_token: speed::decode_bytes_per_token(model, s.n_gen, s.depth),
        prefill_flops_per_token: speed::prefill_flops_per_token(model),
        threads: subject.threads,
        repetitions: s.repetitions,
        depth: s.depth,
        git_commit: build.git_commit.clone(),
        git_dirty: build.git_dirty,
        results,
    })
}
