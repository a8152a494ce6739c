//! Schema 1 (effbench 0.1 before reports): `run.json` holds the manifest and provenance,
//! `summary.json` the quality summary. It recorded no speed, memory or end time; those read
//! back as absent, never as zero.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::error::{ReportError, Result};
use crate::schema::{
    AccuracyDelta, Energy, Memory, ModelInfo, PerplexityDelta, Provenance, Quality, RunReport,
    SuiteInfo, SuiteKind, TechniqueReport, SCHEMA_VERSION,
};

#[derive(Deserialize)]
struct RunJson {
    run_id: String,
    settings: Settings,
    suite: SuiteJson,
    provenance: ProvenanceJson,
}

#[derive(Deserialize)]
struct Settings {
    suite: String,
    model: String,
    techniques: Vec<String>,
    shots: usize,
    seed: u64,
    manifest_hash: String,
}

#[derive(Deserialize)]
struct SuiteJson {
    name: String,
}

#[derive(Deserialize)]
struct ProvenanceJson {
    effbench_version: String,
    git_commit: String,
    #[serde(default)]
    git_dirty: Option<bool>,
    started: String,
    command: Vec<String>,
    hardware: effbench_hw::HardwareInfo,
    threads: usize,
    model_path: String,
    model_sha256: String,
    fewshot_source: String,
}

#[derive(Deserialize)]
struct McSummary {
    items: usize,
    techniques: Vec<McTechnique>,
}

#[derive(Deserialize)]
struct McTechnique {
    technique: String,
    label: String,
    accuracy: AccuracyJson,
    seconds: Option<f64>,
    per_subject: BTreeMap<String, SubjectJson>,
    vs_baseline: Option<ComparisonJson>,
}

#[derive(Deserialize)]
struct AccuracyJson {
    n: usize,
    correct: usize,
    mean: f64,
    stderr: f64,
    wilson: Interval,
}

#[derive(Deserialize)]
struct Interval {
    lo: f64,
    hi: f64,
}

#[derive(Deserialize)]
struct SubjectJson {
    correct: usize,
    n: usize,
}

#[derive(Deserialize)]
struct ComparisonJson {
    delta: f64,
    p_value: f64,
    significant: bool,
    verdict: String,
    power_note: String,
}

#[derive(Deserialize)]
struct PplTechnique {
    technique: String,
    label: String,
    perplexity: PplJson,
    vs_baseline: Option<PplComparisonJson>,
    seconds: Option<f64>,
}

#[derive(Deserialize)]
struct PplJson {
    n_tokens: usize,
    ppl: f64,
    ppl_stderr: f64,
}

#[derive(Deserialize)]
struct PplComparisonJson {
    perplexity: RatioJson,
    kl: KlJson,
    same_top: SameTopJson,
}

#[derive(Deserialize)]
struct RatioJson {
    ratio: f64,
    ln_ratio_stderr: f64,
}

#[derive(Deserialize)]
struct KlJson {
    mean: f64,
}

#[derive(Deserialize)]
struct SameTopJson {
    rate: f64,
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| ReportError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn parse<T: serde::de::DeserializeOwned>(path: &Path, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| ReportError::Malformed {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

fn not_recorded() -> Energy {
    Energy::NotMeasured {
        reason: "not recorded by results schema 1".into(),
    }
}

fn memory_unknown() -> Memory {
    Memory {
        weight_bytes: 0,
        bits_per_weight: None,
        kv_bytes_per_token: None,
    }
}

pub fn load_dir(dir: &Path) -> Result<RunReport> {
    let run = read(&dir.join("run.json"))?;
    let summary = read(&dir.join("summary.json"))?;
    from_slices(dir, &run, &summary)
}

/// A schema-1 run from the contents of its `run.json` and `summary.json`; `dir` names them in
/// messages.
pub fn from_slices(dir: &Path, run_json: &[u8], summary_json: &[u8]) -> Result<RunReport> {
    let run: RunJson = parse(&dir.join("run.json"), run_json)?;
    let summary_path = dir.join("summary.json");
    let perplexity = run.settings.suite == "wikitext-2"
        || run.settings.suite == "perplexity"
        || run.settings.suite.starts_with("ppl:");
    let (kind, size, techniques) = if perplexity {
        let rows: Vec<PplTechnique> = parse(&summary_path, summary_json)?;
        let size = rows.first().map_or(0, |r| r.perplexity.n_tokens);
        let techniques = rows
            .into_iter()
            .map(|r| TechniqueReport {
                decoding: None,
                serving: None,
                routing: None,
                technique: r.technique,
                label: r.label,
                params: BTreeMap::new(),
                quality: Quality::Perplexity {
                    tokens: r.perplexity.n_tokens,
                    ppl: r.perplexity.ppl,
                    ppl_stderr: r.perplexity.ppl_stderr,
                    vs_baseline: r.vs_baseline.map(|c| PerplexityDelta {
                        ratio: c.perplexity.ratio,
                        ln_ratio_stderr: c.perplexity.ln_ratio_stderr,
                        kl_mean: c.kl.mean,
                        top1_agreement: c.same_top.rate,
                    }),
                },
                speed: None,
                memory: memory_unknown(),
                energy: not_recorded(),
                quality_seconds: r.seconds,
                gpu: None,
            })
            .collect();
        (SuiteKind::Perplexity, size, techniques)
    } else {
        let s: McSummary = parse(&summary_path, summary_json)?;
        let techniques = s
            .techniques
            .into_iter()
            .map(|t| TechniqueReport {
                decoding: None,
                serving: None,
                routing: None,
                technique: t.technique,
                label: t.label,
                params: BTreeMap::new(),
                quality: Quality::Accuracy {
                    n: t.accuracy.n,
                    correct: t.accuracy.correct,
                    mean: t.accuracy.mean,
                    stderr: t.accuracy.stderr,
                    ci_low: t.accuracy.wilson.lo,
                    ci_high: t.accuracy.wilson.hi,
                    vs_baseline: t.vs_baseline.map(|c| AccuracyDelta {
                        delta: c.delta,
                        p_value: c.p_value,
                        significant: c.significant,
                        verdict: c.verdict,
                        resolution: c.power_note,
                    }),
                    per_subject: t
                        .per_subject
                        .into_iter()
                        .map(|(k, v)| (k, (v.correct, v.n)))
                        .collect(),
                },
                speed: None,
                memory: memory_unknown(),
                energy: not_recorded(),
                quality_seconds: t.seconds,
                gpu: None,
            })
            .collect();
        (SuiteKind::MultipleChoice, s.items, techniques)
    };
    let mut flags = BTreeMap::new();
    flags.insert("fewshot_source".into(), run.provenance.fewshot_source);
    flags.insert("read_from_schema".into(), "1".into());
    let report = RunReport {
        schema_version: SCHEMA_VERSION,
        run_id: run.run_id,
        suite: SuiteInfo {
            name: run.suite.name,
            kind,
            size,
            shots: run.settings.shots,
            seed: run.settings.seed,
            manifest_hash: run.settings.manifest_hash,
        },
        model: ModelInfo {
            name: run.settings.model,
            path: run.provenance.model_path,
            sha256: run.provenance.model_sha256,
        },
        provenance: Provenance {
            effbench_version: run.provenance.effbench_version,
            git_commit: run.provenance.git_commit,
            git_dirty: run.provenance.git_dirty,
            command: run.provenance.command,
            hardware: run.provenance.hardware,
            threads: run.provenance.threads,
            device: "cpu".into(),
            started: run.provenance.started,
            finished: None,
            flags,
        },
        baseline: run.settings.techniques.first().cloned().unwrap_or_default(),
        techniques,
    };
    report.check(&summary_path)?;
    Ok(report)
}
