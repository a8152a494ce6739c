//! What a run records beside quality, per technique: its speed (llama-bench's pp and tg on the
//! same loaded model), its memory, and its energy where the machine can measure it. Each
//! technique's figures are one work unit, written atomically once measured, so a resumed run
//! neither loses nor repeats them. At the end the whole run becomes `report.json` (the results
//! schema that `report` and `compare` read), `report.md` and the quality-vs-cost plot.

use std::collections::BTreeMap;

use crate::error::Result;
use effbench_core::KvShape;
use effbench_hw::gpu_sampler::{GpuMeasurement, GpuSampler};
use effbench_report::schema::{
    DecodingReport, Energy, Memory, RoutingReport, ServingReport, Speed,
};
use effbench_report::{Price, PriceTable};
use serde::{Deserialize, Serialize};

use super::store::RunDir;
use crate::session::Session;
use crate::speed;

#[derive(Clone, Debug)]
pub struct SpeedConfig {
    /// Skip the per-technique speed test (then no cost or latency figures).
    pub no_speed: bool,
    /// Prompt tokens of the prefill speed test (llama-bench pp).
    pub speed_prompt: usize,
    /// Tokens of the decode speed test (llama-bench tg).
    pub speed_gen: usize,
    /// Measured repetitions of each speed test, after a warm-up; medians are reported.
    pub speed_reps: usize,
}

/// Serving: each row serves the same seeded request trace under continuous batching at a KV
/// budget (serve-bench's scheduler), so caches that waste less, and weights that make a step
/// cheaper, show up as concurrency and throughput.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// Serve the request trace with every row (throughput, TTFT, TPOT, peak concurrency).
    pub serve: bool,
    /// Requests in the generated chat-like trace.
    pub serve_requests: usize,
    /// Mean arrivals per second (Poisson); inf sends every request at once.
    pub serve_rate: f64,
    /// Seed of the trace.
    pub serve_seed: u64,
    /// KV cache budget each row serves in, MiB.
    pub kv_budget_mib: usize,
    /// Replay this JSONL trace instead of generating one: one request per line,
    /// {"arrival_s", "prompt_tokens" or "prompt", "output_tokens"}.
    pub trace: Option<std::path::PathBuf>,
    /// The scheduler's limits: most sequences together, most tokens a pass, longest sequence.
    pub scheduler: effbench_kvcache::SchedulerConfig,
    /// Text that fills prompts given only as lengths (a known text name or a path).
    pub filler_text: String,
}

impl Default for ServeConfig {
    /// What a run serves with `serve` set: a small chat-like trace in 512 MiB.
    fn default() -> Self {
        Self {
            serve: false,
            serve_requests: 16,
            serve_rate: 8.0,
            serve_seed: 0,
            kv_budget_mib: 512,
            trace: None,
            scheduler: effbench_kvcache::SchedulerConfig::default(),
            filler_text: "wikitext-2".into(),
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct PriceConfig {
    /// Price the hardware at this many dollars per hour instead of the price table's entry.
    pub price_per_hour: Option<f64>,
    /// Price as this entry of the price table (e.g. h100-80gb, aws-c7a); default: the entry
    /// matching the run's GPU, or its CPU vendor priced per thread used.
    pub instance: Option<String>,
    /// A price table of your own (TOML, the shape of harness/report/prices.toml).
    pub prices: Option<std::path::PathBuf>,
}

impl PriceConfig {
    pub fn price_for(&self, report: &effbench_report::RunReport) -> Result<Price> {
        if let Some(p) = self.price_per_hour {
            if !(p > 0.0 && p.is_finite()) {
                return Err(crate::hint::hinted(
                    format!("a price of {p} dollars an hour"),
                    "{price_per_hour} takes a positive number of dollars",
                ));
            }
            return Ok(Price::per_hour(p));
        }
        let table = match &self.prices {
            Some(path) => PriceTable::load(path)?,
            None => PriceTable::shipped(),
        };
        let threads = report.provenance.threads;
        Ok(match &self.instance {
            Some(name) => table.price(table.get(name)?, threads)?,
            None => table
                .for_hardware(
                    &report.provenance.hardware,
                    &report.provenance.device,
                    threads,
                )
                .map_err(|e| {
                    crate::hint::hinted(
                        e.to_string(),
                        "{price_per_hour} USD, or {instance} with an entry of the price table",
                    )
                })?,
        })
    }
}

/// One technique's measurements besides quality: `measure-<technique>.json` in the run dir.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TechniqueMeasure {
    /// What identifies the technique beyond its name, e.g. a student's file and hash.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    pub speed: Option<Speed>,
    pub memory: Memory,
    pub energy: Energy,
    /// NVML's view of the speed test on a GPU, or why there is none (absent in runs recorded
    /// before GPU support).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<GpuMeasurement>,
    /// A decoding technique's comparison with plain decoding on real prompts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decoding: Option<DecodingReport>,
    /// The row serving the request trace, when the run serves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving: Option<ServingReport>,
    /// A routing row's cascade figures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing: Option<RoutingReport>,
}

/// How often the NVML sampler reads power, clock and memory during the speed test.
const GPU_SAMPLE_INTERVAL: std::time::Duration = std::time::Duration::from_millis(50);

fn file_name(technique: &str) -> String {
    format!("measure-{}.json", super::store::file_key(technique))
}

/// Measures a technique once; a resumed run reads the recorded figures back.
pub fn measure(
    run_dir: &RunDir,
    technique: &str,
    stack: &crate::Stack,
    session: &Session,
    args: &SpeedConfig,
    serve: &ServeConfig,
    prompts: &super::decoding::DecodingConfig,
) -> Result<TechniqueMeasure> {
    let name = file_name(technique);
    if run_dir.path.join(&name).exists() {
        return run_dir.read_json(&name);
    }
    let model = &session.loaded.model;
    // The single-stream tests, decoding and serving run in the row's own KV cache.
    let kv = stack.kv_or_contiguous();
    let bytes = model.weight_bytes();
    let memory = Memory {
        weight_bytes: bytes.total,
        bits_per_weight: Some(bytes.block_bits_per_weight),
        kv_bytes_per_token: Some(kv.bytes_per_token(KvShape::of(model.config()))),
    };
    let gpu_index = match model.device().location() {
        candle_core::DeviceLocation::Cuda { gpu_id } => Some(gpu_id as u32),
        _ => None,
    };
    let mut decoding = None;
    let (speed, energy, gpu) = if args.no_speed {
        let reason = "speed test skipped: the run asked for none".to_string();
        (
            None,
            Energy::NotMeasured {
                reason: reason.clone(),
            },
            GpuMeasurement::not_measured(reason),
        )
    } else if let Some(spec) = &stack.decoding {
        // Prefill is the weights' own; decoding is timed on real prompts against the same
        // weights decoding plainly, since a draft's acceptance depends on the text.
        eprintln!(
            "{technique}: speed test pp{} ({} repetitions), then speculative against plain decoding on real prompts, {} new tokens each",
            args.speed_prompt, args.speed_reps, args.speed_gen
        );
        let pp = speed::prefill_in(model, args.speed_prompt.max(1), args.speed_reps.max(1), kv)?;
        let m =
            super::decoding::measure(&session.loaded, spec, kv, args.speed_gen.max(2), prompts)?;
        let reason = "energy is read over the tg test, which a decoding technique replaces with real prompts".to_string();
        let speed = Speed {
            prefill_tok_per_s: pp.median(),
            decode_tok_per_s: m.report.spec_tok_per_s,
            prompt_tokens: pp.tokens,
            generated_tokens: m.spec_tokens,
            prefill_samples: pp.samples_tok_per_s,
            decode_samples: m.spec_samples,
        };
        decoding = Some(m.report);
        (
            Some(speed),
            Energy::NotMeasured {
                reason: reason.clone(),
            },
            GpuMeasurement::not_measured(reason),
        )
    } else {
        eprintln!(
            "{technique}: speed test pp{} and tg{}, {} repetitions",
            args.speed_prompt, args.speed_gen, args.speed_reps
        );
        // NVML is sampled through both tests (peak memory); energy is the decode test's.
        let sampler = match gpu_index {
            Some(i) => GpuSampler::start(i, GPU_SAMPLE_INTERVAL),
            None => GpuSampler::not_started("the model ran on the CPU, not a GPU"),
        };
        let pp = speed::prefill_in(model, args.speed_prompt.max(1), args.speed_reps.max(1), kv)?;
        let rapl = effbench_hw::rapl::RaplCounters::open();
        sampler.mark_window_start();
        let before = rapl.as_ref().ok().and_then(|r| r.read());
        let tg = speed::decode_in(model, args.speed_gen.max(1), args.speed_reps.max(1), kv)?;
        let after = rapl.as_ref().ok().and_then(|r| r.read());
        sampler.mark_window_end();
        // The warm-up run decodes too, so divide by every token decoded.
        let decoded = args.speed_gen.max(1) * (args.speed_reps.max(1) + 1);
        let gpu = sampler.finish(decoded);
        let energy = match (gpu_index, &gpu) {
            // On a GPU the board's energy is the figure; the CPU package would miss it.
            (Some(i), GpuMeasurement::Measured(f)) => match f.joules_per_output_token {
                Some(j) => Energy::Measured {
                    joules_per_output_token: j,
                    source: format!(
                        "{} over the decode test, GPU {i} board only",
                        f.energy_source.as_deref().unwrap_or("NVML")
                    ),
                },
                None => Energy::NotMeasured {
                    reason: f
                        .not_measured
                        .get("joules_per_output_token")
                        .or_else(|| f.not_measured.get("energy_joules"))
                        .cloned()
                        .unwrap_or_else(|| "NVML gave no energy figure".into()),
                },
            },
            (Some(_), GpuMeasurement::NotMeasured { reason }) => Energy::NotMeasured {
                reason: format!("GPU run without NVML: {reason}"),
            },
            (None, _) => match (&rapl, before, after) {
                (Ok(r), Some(b), Some(a)) => Energy::Measured {
                    joules_per_output_token: r.joules_between(&b, &a) / decoded as f64,
                    source: "RAPL package energy over the decode test, whole machine".into(),
                },
                (Err(reason), _, _) => Energy::NotMeasured {
                    reason: reason.clone(),
                },
                _ => Energy::NotMeasured {
                    reason: "RAPL counters could not be read".into(),
                },
            },
        };
        let speed = Speed {
            prefill_tok_per_s: pp.median(),
            decode_tok_per_s: tg.median(),
            prompt_tokens: pp.tokens,
            generated_tokens: tg.tokens,
            prefill_samples: pp.samples_tok_per_s,
            decode_samples: tg.samples_tok_per_s,
        };
        (Some(speed), energy, gpu)
    };
    let mut params = BTreeMap::new();
    if decoding.is_some() {
        params.insert(
            "decode_speed".into(),
            "speculative, greedy, on real prompts (see the decoding table)".into(),
        );
    }
    if stack.student().is_some() {
        let path = &session.loaded.path;
        params.insert("model_path".into(), path.display().to_string());
        params.insert("model_sha256".into(), crate::session::model_sha256(path)?);
    }
    let serving = if serve.serve {
        Some(super::serving::measure(
            run_dir,
            &session.loaded,
            kv,
            serve,
        )?)
    } else {
        None
    };
    let m = TechniqueMeasure {
        params,
        speed,
        memory,
        energy,
        gpu: Some(gpu),
        decoding,
        serving,
        routing: None,
    };
    run_dir.write_json(&name, &m)?;
    Ok(m)
}

/// Writes `report.json`, `report.md` and the plot, and returns the markdown.
pub fn publish_report(
    run_dir: &RunDir,
    report: &effbench_report::RunReport,
    prices: &PriceConfig,
) -> Result<String> {
    run_dir.write_json(effbench_report::schema::REPORT_FILE, report)?;
    let price = prices.price_for(report)?;
    let rendered = effbench_report::render_dir(report, &price, &run_dir.path).map_err(|e| {
        let what = format!("rendering the report in {}", run_dir.path.display());
        match &e {
            effbench_report::ReportError::Io { source, .. }
                if source.kind() == std::io::ErrorKind::StorageFull =>
            {
                crate::hint::hinted(format!("{what}: {e}"), super::store::DISK_FULL_HINT)
            }
            _ => crate::error::EvalError::from(e).within(what),
        }
    })?;
    Ok(rendered.markdown)
}

pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// Flags worth keeping with the results, beyond the settings that identify the run.
pub fn flags(pairs: &[(&str, String)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

fn provenance(
    manifest: &super::RunManifest,
    device: &str,
    flags: BTreeMap<String, String>,
) -> effbench_report::schema::Provenance {
    let p = &manifest.provenance;
    effbench_report::schema::Provenance {
        effbench_version: p.effbench_version.clone(),
        git_commit: p.git_commit.clone(),
        git_dirty: p.git_dirty,
        command: p.command.clone(),
        hardware: p.hardware.clone(),
        threads: p.threads,
        device: device.to_string(),
        started: p.started.clone(),
        finished: Some(now_rfc3339()),
        flags,
    }
}

fn model_info(manifest: &super::RunManifest) -> effbench_report::schema::ModelInfo {
    effbench_report::schema::ModelInfo {
        name: manifest.settings.model.clone(),
        path: manifest.provenance.model_path.clone(),
        sha256: manifest.provenance.model_sha256.clone(),
    }
}

type Measured = (
    BTreeMap<String, String>,
    Option<Speed>,
    Memory,
    Energy,
    Option<GpuMeasurement>,
    Option<DecodingReport>,
    Option<ServingReport>,
    Option<RoutingReport>,
);

fn measured(measures: &BTreeMap<String, TechniqueMeasure>, technique: &str) -> Measured {
    match measures.get(technique) {
        Some(m) => (
            m.params.clone(),
            m.speed.clone(),
            m.memory.clone(),
            m.energy.clone(),
            m.gpu.clone(),
            m.decoding.clone(),
            m.serving.clone(),
            m.routing.clone(),
        ),
        None => (
            BTreeMap::new(),
            None,
            Memory {
                weight_bytes: 0,
                bits_per_weight: None,
                kv_bytes_per_token: None,
            },
            Energy::NotMeasured {
                reason: "not measured in this run".into(),
            },
            None,
            None,
            None,
            None,
        ),
    }
}

/// A run scored right or wrong per item (multiple choice, or generation and exact match) as the
/// results schema.
pub fn mc_report(
    kind: effbench_report::schema::SuiteKind,
    manifest: &super::RunManifest,
    summary: &super::report::Summary,
    measures: &BTreeMap<String, TechniqueMeasure>,
    device: &str,
    flags: BTreeMap<String, String>,
) -> effbench_report::RunReport {
    use effbench_report::schema::{AccuracyDelta, Quality, TechniqueReport};
    let techniques = summary
        .techniques
        .iter()
        .map(|t| {
            let (params, speed, memory, energy, gpu, decoding, serving, routing) =
                measured(measures, &t.technique);
            let ci = t.accuracy.table_interval();
            TechniqueReport {
                technique: t.technique.clone(),
                label: t.label.clone(),
                params,
                quality: Quality::Accuracy {
                    n: t.accuracy.n,
                    correct: t.accuracy.correct,
                    mean: t.accuracy.mean,
                    stderr: t.accuracy.stderr,
                    ci_low: ci.lo,
                    ci_high: ci.hi,
                    vs_baseline: t.vs_baseline.as_ref().map(|c| AccuracyDelta {
                        delta: c.delta,
                        p_value: c.p_value,
                        significant: c.significant,
                        verdict: c.verdict.clone(),
                        resolution: c.power_note.clone(),
                    }),
                    per_subject: t
                        .per_subject
                        .iter()
                        .map(|(k, v)| (k.clone(), (v.correct, v.n)))
                        .collect(),
                },
                speed,
                memory,
                energy,
                quality_seconds: t.seconds,
                gpu,
                decoding,
                serving,
                routing,
            }
        })
        .collect();
    effbench_report::RunReport {
        schema_version: effbench_report::SCHEMA_VERSION,
        run_id: manifest.run_id.clone(),
        suite: effbench_report::schema::SuiteInfo {
            name: manifest.suite.name.clone(),
            kind,
            size: summary.items,
            shots: manifest.settings.shots,
            seed: manifest.settings.seed,
            manifest_hash: manifest.settings.manifest_hash.clone(),
        },
        model: model_info(manifest),
        provenance: provenance(manifest, device, flags),
        baseline: summary.baseline.clone(),
        techniques,
    }
}

/// A perplexity run as the results schema.
pub fn ppl_report(
    manifest: &super::RunManifest,
    rows: &[super::ppl::PplTechniqueSummary],
    measures: &BTreeMap<String, TechniqueMeasure>,
    device: &str,
    flags: BTreeMap<String, String>,
) -> effbench_report::RunReport {
    use effbench_report::schema::{PerplexityDelta, Quality, TechniqueReport};
    let techniques = rows
        .iter()
        .map(|r| {
            let (params, speed, memory, energy, gpu, decoding, serving, routing) =
                measured(measures, &r.technique);
            TechniqueReport {
                technique: r.technique.clone(),
                label: r.label.clone(),
                params,
                quality: Quality::Perplexity {
                    tokens: r.perplexity.n_tokens,
                    ppl: r.perplexity.ppl,
                    ppl_stderr: r.perplexity.ppl_stderr,
                    vs_baseline: r.vs_baseline.as_ref().map(|c| PerplexityDelta {
                        ratio: c.perplexity.ratio,
                        ln_ratio_stderr: c.perplexity.ln_ratio_stderr,
                        kl_mean: c.kl.mean,
                        top1_agreement: c.same_top.rate,
                    }),
                },
                speed,
                memory,
                energy,
                quality_seconds: r.seconds,
                gpu,
                decoding,
                serving,
                routing,
            }
        })
        .collect();
    effbench_report::RunReport {
        schema_version: effbench_report::SCHEMA_VERSION,
        run_id: manifest.run_id.clone(),
        suite: effbench_report::schema::SuiteInfo {
            name: manifest.suite.name.clone(),
            kind: effbench_report::schema::SuiteKind::Perplexity,
            size: rows.first().map_or(0, |r| r.perplexity.n_tokens),
            shots: 0,
            seed: manifest.settings.seed,
            manifest_hash: manifest.settings.manifest_hash.clone(),
        },
        model: model_info(manifest),
        provenance: provenance(manifest, device, flags),
        baseline: manifest.settings.techniques[0].clone(),
        techniques,
    }
}
