//! The results schema: one `report.json` per run directory, versioned, holding every measured
//! figure a table or plot is drawn from. Prices are not part of it: they are applied when a
//! report is rendered, so one run can be priced for several machines or price lists.
//!
//! Version history:
//! - 1: `run.json` (manifest and provenance) plus `summary.json` (quality only). Read through
//!   [`crate::v1`].
//! - 2: `report.json` as defined here: quality, speed, memory and energy per technique, plus
//!   provenance with start and end time. Later optional fields, which older readers ignore and
//!   older files lack: `gpu` per technique (NVML samples of a GPU run); `decoding.sampling`,
//!   `decoding.per_kind` and `decoding.verify_cost_ms` (spec-bench's figures); the serving
//!   row's waste, fragmentation, p95s, scheduler, refusals and output hashes (serve-bench's).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{ReportError, Result};

pub const SCHEMA_VERSION: u32 = 2;
pub const REPORT_FILE: &str = "report.json";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunReport {
    pub schema_version: u32,
    pub run_id: String,
    pub suite: SuiteInfo,
    pub model: ModelInfo,
    pub provenance: Provenance,
    /// The technique every other one is compared with; the first row of every table.
    pub baseline: String,
    pub techniques: Vec<TechniqueReport>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SuiteInfo {
    /// e.g. `mmlu-lite`, `wikitext-2 (ctx 512, 8 windows)`.
    pub name: String,
    pub kind: SuiteKind,
    /// Items (multiple choice) or scored tokens (perplexity).
    pub size: usize,
    pub shots: usize,
    pub seed: u64,
    /// What was scored, hashed: two runs compare only when these are equal.
    pub manifest_hash: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum SuiteKind {
    MultipleChoice,
    Perplexity,
    /// Problems answered by greedy generation and exact match (GSM8K).
    Generation,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelInfo {
    /// As the user named it: a known name or a path.
    pub name: String,
    pub path: String,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Provenance {
    pub effbench_version: String,
    pub git_commit: String,
    /// Whether the tree the binary was built from differed from `git_commit` (tracked files);
    /// absent in results written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_dirty: Option<bool>,
    pub command: Vec<String>,
    pub hardware: effbench_hw::HardwareInfo,
    pub threads: usize,
    pub device: String,
    /// RFC 3339, UTC.
    pub started: String,
    pub finished: Option<String>,
    /// Every other setting that changes what was measured (few-shot source, context length...).
    #[serde(default)]
    pub flags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TechniqueReport {
    /// The name given on the command line, e.g. `f16`, `as-stored`, `int4-gptq`.
    pub technique: String,
    /// What it is, e.g. "f16, dequantized from Q4_1".
    pub label: String,
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    pub quality: Quality,
    pub speed: Option<Speed>,
    pub memory: Memory,
    pub energy: Energy,
    /// Time spent scoring the suite with this technique, when measured in one invocation.
    pub quality_seconds: Option<f64>,
    /// What NVML saw while the speed test ran: the GPU, peak memory, power, energy, SM clock;
    /// or why nothing was measured (a CPU run, no NVML). Absent in reports written before
    /// GPU support, and in those that predate a measurement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<effbench_hw::gpu_sampler::GpuMeasurement>,
    /// A decoding technique's own measurement (absent for rows that decode plainly).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decoding: Option<DecodingReport>,
    /// The row serving a seeded request trace under continuous batching at a KV budget
    /// (absent unless the run served).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving: Option<ServingReport>,
    /// A cascade's own figures: which model served how many items, and what they cost (absent
    /// for rows that are one model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing: Option<RoutingReport>,
}

/// A routing row: a cheap model answers every item first and hands the ones it is unsure of to
/// the base model. Its quality is the cascade's answers; its cost is the cheap model's on every
/// item plus the base model's on the escalated ones, from both rows' measured speeds and the
/// tokens each item ran.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RoutingReport {
    /// The rows it is built from, by technique name.
    pub cheap: String,
    pub base: String,
    /// The confidence signal, e.g. `margin`, and the threshold the cheap model's confidence must
    /// reach to keep an item.
    pub signal: String,
    pub threshold: f64,
    /// `given`, or how the sweep chose it.
    pub threshold_source: String,
    pub items: usize,
    /// Items the cheap model answered alone.
    pub cheap_served: usize,
    /// Machine time of the cascade on the suite's items (each at its own tokens) against the
    /// base model's alone.
    pub cost_ratio_vs_base: f64,
    /// What the main table prices: the cheap row's cost per request of the baseline's measured
    /// shape plus the escalated share of the base row's, against the baseline's.
    pub cost_ratio_vs_baseline: Option<f64>,
}

/// One row serving a request trace: the scheduler admits requests while the row's KV cache
/// has room in the budget, so what a cache wastes shows up as concurrency and throughput.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServingReport {
    /// e.g. `paged (16-token blocks) f32`.
    pub cache: String,
    pub kv_budget_bytes: usize,
    /// How the trace was made, e.g. `16 requests, Poisson rate 8/s, seed 0, ...`.
    pub trace: String,
    pub requests: usize,
    pub completed: usize,
    pub refused: usize,
    pub output_tokens: usize,
    /// Output tokens per second from the first arrival to the last token.
    pub output_tok_per_s: f64,
    pub ttft_ms_p50: Option<f64>,
    pub ttft_ms_p99: Option<f64>,
    pub tpot_ms_p50: Option<f64>,
    pub tpot_ms_p99: Option<f64>,
    pub peak_running: usize,
    pub mean_running: f64,
    pub preemptions: usize,
    /// Peak KV bytes the cache held (reserved) and held K/V in (used).
    pub peak_kv_reserved_bytes: usize,
    pub peak_kv_used_bytes: usize,
    /// Reserved KV bytes not holding K/V, averaged over the run weighted by step time (absent
    /// in reports written before it was recorded, as are the fields below).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waste_pct: Option<f64>,
    /// The share of a finished sequence's reservation it never filled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internal_fragmentation_pct: Option<f64>,
    /// The share of the budget holding K/V, averaged like `waste_pct`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_used_pct: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_ms_p95: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpot_ms_p95: Option<f64>,
    /// The scheduler's limits: most sequences together, most tokens a pass, longest sequence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler: Option<String>,
    /// Why requests were refused, the first few, as `request id: reason`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refusals: Vec<String>,
    /// A hash of each request's output tokens, in trace order (empty for a refused one), so
    /// rows serving the same trace can be compared token for token.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub output_hashes: Vec<String>,
}

/// A decoding technique (speculative decoding) measured against the same weights decoding
/// plainly, on the same real prompts: what it buys, and proof that greedy output is unchanged.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DecodingReport {
    /// e.g. `ngram:3`, `model:qwen2.5-coder-0.5b-instruct`.
    pub draft: String,
    /// Draft tokens per step: `4`, or `adaptive<=8 (mean 3.2)`.
    pub k: String,
    /// Prompt types and how many of each, e.g. `prose 1, code 1, summarization 1`.
    pub prompts: String,
    /// New tokens asked of each generation.
    pub max_tokens: usize,
    /// Decode tokens per second over all prompts, plain and speculative.
    pub plain_tok_per_s: f64,
    pub spec_tok_per_s: f64,
    pub speedup: f64,
    /// Drafted tokens the target accepted.
    pub acceptance_rate: Option<f64>,
    /// Mean accepted draft tokens per target step.
    pub accepted_per_step: Option<f64>,
    /// Prompts whose greedy output equalled plain decoding's, of all prompts.
    pub identical: usize,
    pub compared: usize,
    /// Prompts whose output differed (greedy decoding must give none).
    #[serde(default)]
    pub mismatched: Vec<String>,
    /// The row whose quality records this one shares (decoding leaves log-likelihoods as
    /// they are), when that row was in the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality_from: Option<String>,
    /// How tokens were picked when not greedily, e.g. `temperature 0.7, top-p 0.9, seed 0`:
    /// then outputs may differ from plain decoding's by design (absent: greedy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampling: Option<String>,
    /// The same comparison per prompt type, with the cost figures that explain the speedup
    /// (absent in reports written before it was recorded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub per_kind: Vec<DecodingKind>,
    /// Median milliseconds of one forward pass of the row's model over m = 1, 2, ... new
    /// tokens: what verifying m - 1 drafted tokens costs next to decoding one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verify_cost_ms: Vec<(usize, f64)>,
    /// In a generative suite, where the row shares its base row's answers: some of the suite's
    /// own problems generated again, plainly and with the draft, and compared token for token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suite_check: Option<SuiteCheck>,
}

/// A decoding row's greedy answers on a generative suite's problems, regenerated one stream at
/// a time plainly and with the draft, each as long as the answer the suite scored: the check
/// that the answers the row shares with its base row are the answers it would give.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SuiteCheck {
    pub suite: String,
    /// Problems regenerated, the suite's first in its order.
    pub compared: usize,
    /// Problems whose speculative output equalled plain decoding's, token for token.
    pub identical: usize,
    #[serde(default)]
    pub mismatched: Vec<String>,
    /// Problems whose plain single-stream output equalled the answer the suite scored, which
    /// was decoded in batches with a shared few-shot prefix; a difference there comes from
    /// batching's float order at a near-tie, not from the draft.
    pub same_as_scored: usize,
    /// Decode tokens per second over these problems.
    pub plain_tok_per_s: f64,
    pub spec_tok_per_s: f64,
    pub acceptance_rate: Option<f64>,
}

/// A decoding technique on the prompts of one type, against plain decoding of the same prompts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DecodingKind {
    /// e.g. `prose`, `code`, `summarization`.
    pub kind: String,
    pub prompts: usize,
    pub acceptance_rate: Option<f64>,
    pub accepted_per_step: Option<f64>,
    /// Tokens each target step produced, accepted drafts plus the target's own.
    pub tokens_per_step: Option<f64>,
    /// Drafting time per drafted token over plain decoding time per token (c).
    pub cost_ratio: Option<f64>,
    /// One verification pass over plain decoding time per token.
    pub verify_ratio: Option<f64>,
    pub plain_tok_per_s: f64,
    pub spec_tok_per_s: f64,
    pub speedup: f64,
    /// Leviathan et al.'s expected speedup at the measured acceptance and cost ratio.
    pub theoretical_speedup: Option<f64>,
    /// The same with the measured verification cost in place of one target step.
    pub theory_with_measured_verify: Option<f64>,
    pub identical: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Quality {
    Accuracy {
        n: usize,
        correct: usize,
        mean: f64,
        stderr: f64,
        /// 95% Wilson interval.
        ci_low: f64,
        ci_high: f64,
        vs_baseline: Option<AccuracyDelta>,
        /// Accuracy per subject, as (correct, n).
        #[serde(default)]
        per_subject: BTreeMap<String, (usize, usize)>,
    },
    Perplexity {
        tokens: usize,
        ppl: f64,
        ppl_stderr: f64,
        vs_baseline: Option<PerplexityDelta>,
    },
}

impl Quality {
    /// The figure a plot puts on its quality axis: accuracy in %, or perplexity.
    pub fn headline(&self) -> f64 {
        match self {
            Self::Accuracy { mean, .. } => 100.0 * mean,
            Self::Perplexity { ppl, .. } => *ppl,
        }
    }

    pub fn higher_is_better(&self) -> bool {
        matches!(self, Self::Accuracy { .. })
    }

    /// Whether the change from the baseline is statistically significant at 5%.
    pub fn significant_change(&self) -> bool {
        match self {
            Self::Accuracy { vs_baseline, .. } => {
                vs_baseline.as_ref().is_some_and(|d| d.significant)
            }
            Self::Perplexity { vs_baseline, .. } => {
                vs_baseline.as_ref().is_some_and(|d| d.significant())
            }
        }
    }
}

/// A paired comparison on the same items (McNemar's exact test).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AccuracyDelta {
    /// Technique minus baseline, as a fraction.
    pub delta: f64,
    pub p_value: f64,
    pub significant: bool,
    /// e.g. "-0.2 pt (95% CI -0.9..+0.6, McNemar p=1.00, n.s.)".
    pub verdict: String,
    /// What the suite could have detected, e.g. "n=570 detects ≥6.8 pt (80% power...)".
    pub resolution: String,
}

/// Perplexity ratio and divergence from the baseline on the same tokens.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PerplexityDelta {
    /// technique / baseline perplexity.
    pub ratio: f64,
    /// Standard error of ln(ratio), from the paired per-token differences.
    pub ln_ratio_stderr: f64,
    /// Mean KL(baseline || technique) per token, nats.
    pub kl_mean: f64,
    /// How often both put the same token first.
    pub top1_agreement: f64,
}

impl PerplexityDelta {
    /// Two-sided 5% test on ln(ratio).
    pub fn significant(&self) -> bool {
        self.ln_ratio_stderr > 0.0 && (self.ratio.ln() / self.ln_ratio_stderr).abs() > 1.959964
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Speed {
    /// Prefill tokens per second (llama-bench `pp`): median of the repetitions.
    pub prefill_tok_per_s: f64,
    /// Decode tokens per second (llama-bench `tg`): median of the repetitions.
    pub decode_tok_per_s: f64,
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    pub prefill_samples: Vec<f64>,
    pub decode_samples: Vec<f64>,
}

impl Speed {
    /// Time per output token in milliseconds.
    pub fn tpot_ms(&self) -> f64 {
        1000.0 / self.decode_tok_per_s
    }

    /// Time to first token for the measured prompt length, in milliseconds.
    pub fn ttft_ms(&self) -> f64 {
        1000.0 * self.prompt_tokens as f64 / self.prefill_tok_per_s
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Memory {
    /// Every weight in memory: linear layers, embeddings, output head, norms.
    pub weight_bytes: usize,
    /// Bits per weight over the blocks' linear layers, scales included.
    pub bits_per_weight: Option<f64>,
    /// K and V of one token over all layers.
    pub kv_bytes_per_token: Option<usize>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum Energy {
    Measured {
        joules_per_output_token: f64,
        /// e.g. "RAPL package domain", "NVML power samples".
        source: String,
    },
    NotMeasured {
        reason: String,
    },
}

impl RunReport {
    pub fn technique(&self, name: &str) -> Option<&TechniqueReport> {
        self.techniques.iter().find(|t| t.technique == name)
    }

    pub fn baseline(&self) -> Option<&TechniqueReport> {
        self.technique(&self.baseline)
    }

    /// Reads a run directory: `report.json` (schema 2), else the schema-1 pair.
    pub fn load_dir(dir: &Path) -> Result<Self> {
        let path = dir.join(REPORT_FILE);
        if path.exists() {
            return Self::load_file(&path);
        }
        if dir.join("run.json").exists() {
            return crate::v1::load_dir(dir);
        }
        Err(ReportError::NotARun(dir.to_path_buf()))
    }

    pub fn load_file(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| ReportError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_slice(path, &bytes)
    }

    /// A `report.json` already in memory; `path` names it in messages.
    pub fn from_slice(path: &Path, bytes: &[u8]) -> Result<Self> {
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| ReportError::Malformed {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        let version = value
            .get("schema_version")
            .and_then(|v| v.as_u64())
            .ok_or_else(|| ReportError::Malformed {
                path: path.to_path_buf(),
                reason: "no schema_version".into(),
            })? as u32;
        if version > SCHEMA_VERSION {
            return Err(ReportError::TooNew {
                path: path.to_path_buf(),
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        let report: Self = serde_json::from_value(value).map_err(|e| ReportError::Malformed {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        report.check(path)?;
        Ok(report)
    }

    /// What every table assumes of a run read back: at least one technique, since the baseline
    /// row is drawn from one. effbench never writes a run without; a file edited by hand may.
    pub(crate) fn check(&self, path: &Path) -> Result<()> {
        if self.techniques.is_empty() {
            return Err(ReportError::Malformed {
                path: path.to_path_buf(),
                reason: "no techniques".into(),
            });
        }
        Ok(())
    }
}
