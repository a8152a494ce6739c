//! `effbench merge`: the shards of a run become one run directory that `report` and `compare`
//! cannot tell from a single-machine run. Quality merges exactly (every record is copied once);
//! each speed figure stays the measurement of the one node that owned it, labelled with that
//! node's hardware. Any mismatch is refused, naming the shard and the field.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{bail, Context, Result};

use effbench_report::records::GenRecord;

use super::mc::ItemRecord;
use super::ppl::WindowRecord;
use super::record::{self, PriceConfig, TechniqueMeasure};
use super::shard::{ShardDone, DONE_FILE};
use super::store::{Keyed, RunDir, RunLock};
use super::{ppl, report, suite_kind, RunManifest, SuiteKind};
use crate::hint::hinted;

#[derive(Clone, Debug)]
pub struct MergeConfig {
    /// The run directory holding the shard-I-of-N/ directories, or the shard directories
    /// themselves.
    pub dirs: Vec<PathBuf>,
    /// Where the merged run is written (default: the directory the shards sit in).
    pub out: Option<PathBuf>,
    /// Print the summary as JSON.
    pub json: bool,
    pub prices: PriceConfig,
}

struct ShardRun {
    dir: RunDir,
    manifest: RunManifest,
    done: ShardDone,
    /// Held while merging, so a `--resume` of the shard cannot change its records under us.
    _lock: Option<RunLock>,
}

impl ShardRun {
    fn name(&self) -> String {
        format!(
            "shard {}/{} ({})",
            self.done.shard.index,
            self.done.shard.count,
            self.dir.path.display()
        )
    }
}

fn shard_dirs(dirs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for dir in dirs {
        if dir.join("run.json").exists() && dir.join(DONE_FILE).exists() {
            out.push(dir.clone());
            continue;
        }
        let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| {
                p.is_dir()
                    && p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("shard-"))
            })
            .collect();
        found.sort();
        if found.is_empty() {
            return Err(hinted(
                format!("{} holds no shard-I-of-N directories", dir.display()),
                "pass the run directory that the {shard} runs wrote into",
            ));
        }
        out.extend(found);
    }
    Ok(out)
}

fn load_shard(dir: &Path) -> Result<ShardRun> {
    let run = RunDir {
        path: dir.to_path_buf(),
    };
    // First: a shard still running has no done file yet, and the useful thing to say is who is
    // writing it.
    let lock = RunLock::acquire_existing(dir)?.map_err(|held| {
        crate::error::EvalError::msg(format!(
            "shard {} is still being written by {held} (hint: wait for it to finish, then merge)",
            dir.display()
        ))
    })?;
    let manifest: RunManifest = run.read_json("run.json")?;
    let Some(shard) = manifest.settings.shard else {
        return Err(hinted(
            format!("{} is a whole run, not a shard", dir.display()),
            "merge joins the directories that runs with {shard} I/N write",
        ));
    };
    if !dir.join(DONE_FILE).exists() {
        return Err(hinted(
            format!(
                "shard {}/{} in {} has not finished (no {DONE_FILE})",
                shard.index,
                shard.count,
                dir.display()
            ),
            "re-run that array task with {resume}",
        ));
    }
    let done: ShardDone = run.read_json(DONE_FILE)?;
    Ok(ShardRun {
        dir: run,
        manifest,
        done,
        _lock: lock,
    })
}

/// One field that must agree across shards, as text for the message.
fn agreeing_fields(m: &RunManifest) -> Vec<(&'static str, String)> {
    let s = &m.settings;
    vec![
        ("suite", s.suite.clone()),
        ("suite manifest", s.manifest_hash.clone()),
        ("model", s.model.clone()),
        ("model sha256", m.provenance.model_sha256.clone()),
        ("techniques", s.techniques.join(",")),
        ("shots", s.shots.to_string()),
        ("seed", s.seed.to_string()),
        ("subjects", s.subjects.join(",")),
        ("items per subject", format!("{:?}", s.items_per_subject)),
        (
            "speed, decoding and serving settings",
            s.measurement.clone().unwrap_or_default(),
        ),
        ("effbench version", m.provenance.effbench_version.clone()),
        ("device", m.provenance.device.clone()),
        ("run id", m.run_id.clone()),
    ]
}

fn check_consistent(shards: &[ShardRun]) -> Result<usize> {
    let first = &shards[0];
    let count = first.done.shard.count;
    let reference = agreeing_fields(&first.manifest);
    for s in &shards[1..] {
        if s.done.shard.count != count {
            bail!(
                "{} is one of {} shards, but {} is one of {count}",
                s.name(),
                s.done.shard.count,
                first.name()
            );
        }
        for ((field, want), (_, got)) in reference.iter().zip(agreeing_fields(&s.manifest)) {
            if *want != got {
                return Err(hinted(
                    format!(
                        "{}: {field} is `{got}`, but {} has `{want}`",
                        s.name(),
                        first.name()
                    ),
                    "every shard must run the same command apart from {shard}",
                ));
            }
        }
    }
    let mut seen: BTreeMap<usize, &ShardRun> = BTreeMap::new();
    for s in shards {
        if let Some(other) = seen.insert(s.done.shard.index, s) {
            bail!("{} and {} are the same shard", s.name(), other.name());
        }
    }
    if let Some(missing) = (0..count).find(|i| !seen.contains_key(i)) {
        bail!("shard {missing}/{count} is missing (hint: run it, or pass its directory too)");
    }
    Ok(count)
}

/// Every record of `technique` across the shards, refusing one recorded twice.
fn union_records<R: serde::de::DeserializeOwned + Keyed>(
    shards: &[ShardRun],
    technique: &str,
) -> Result<BTreeMap<String, R>> {
    let mut all: BTreeMap<String, R> = BTreeMap::new();
    let mut owner: BTreeMap<String, String> = BTreeMap::new();
    for s in shards {
        for (key, r) in s.dir.load_records::<R>(technique)? {
            if let Some(first) = owner.get(&key) {
                return Err(hinted(
                    format!(
                        "`{key}` of technique `{technique}` is recorded by both {first} and {}; a shard scored work it does not own",
                        s.name()
                    ),
                    "were the shards run with different {shard} counts?",
                ));
            }
            owner.insert(key.clone(), s.name());
            all.insert(key, r);
        }
    }
    Ok(all)
}

fn require_complete<R>(
    records: &BTreeMap<String, R>,
    expected: &[String],
    technique: &str,
) -> Result<()> {
    if let Some(missing) = expected.iter().find(|k| !records.contains_key(*k)) {
        return Err(hinted(
            format!("`{missing}` of technique `{technique}` is missing from every shard"),
            "re-run the shard that owns it with {resume}",
        ));
    }
    if records.len() != expected.len() {
        let extra = records
            .keys()
            .find(|k| !expected.contains(k))
            .cloned()
            .unwrap_or_default();
        bail!("`{extra}` of technique `{technique}` is not part of the suite manifest");
    }
    Ok(())
}

/// Every technique's records joined across the shards, each checked complete against the
/// suite's units and written to the merged run.
fn merged_records<R: serde::de::DeserializeOwned + serde::Serialize + Keyed>(
    shards: &[ShardRun],
    techniques: &[String],
    expected: &[String],
    out: &RunDir,
) -> Result<BTreeMap<String, BTreeMap<String, R>>> {
    let mut all = BTreeMap::new();
    for t in techniques {
        let records: BTreeMap<String, R> = union_records(shards, t)?;
        require_complete(&records, expected, t)?;
        out.write_records(t, &records)?;
        all.insert(t.clone(), records);
    }
    Ok(all)
}

/// Each technique's speed from the one shard that measured it, labelled with that node.
fn collect_measures(
    shards: &[ShardRun],
    techniques: &[String],
) -> Result<BTreeMap<String, TechniqueMeasure>> {
    let mut out = BTreeMap::new();
    for t in techniques {
        for s in shards {
            let name = format!("measure-{}.json", super::store::file_key(t));
            if s.dir.path.join(&name).exists() {
                let mut m: TechniqueMeasure = s.dir.read_json(&name)?;
                let p = &s.manifest.provenance;
                m.params.insert(
                    "measured_on".into(),
                    format!(
                        "{} (shard {}/{})",
                        effbench_report::tables::hardware_summary(&p.hardware, "cpu", p.threads),
                        s.done.shard.index,
                        s.done.shard.count
                    ),
                );
                out.insert(t.clone(), m);
                break;
            }
        }
    }
    Ok(out)
}

pub fn merge(args: MergeConfig) -> Result<std::path::PathBuf> {
    let dirs = shard_dirs(&args.dirs)?;
    let mut shards = dirs
        .iter()
        .map(|d| load_shard(d))
        .collect::<Result<Vec<_>>>()?;
    shards.sort_by_key(|s| s.done.shard.index);
    let count = check_consistent(&shards)?;
    let out_path = match &args.out {
        Some(p) => p.clone(),
        None => shards[0]
            .dir
            .path
            .parent()
            .map(Path::to_path_buf)
            .ok_or_else(|| {
                hinted(
                    "the shard directory has no parent to merge into",
                    "{out} DIR",
                )
            })?,
    };
    let out = RunDir::new(out_path)?;
    let _out_lock = RunLock::acquire(&out.path)?.map_err(|held| {
        hinted(
            format!("{} is being written by {held}", out.path.display()),
            "wait for it to finish, or merge into another {out}",
        )
    })?;
    let first = &shards[0];
    let mut manifest = first.manifest.clone();
    manifest.settings.shard = None;
    let techniques = manifest.settings.techniques.clone();
    let labels = first.done.labels.clone();
    let measures = collect_measures(&shards, &techniques)?;
    let hardware: Vec<String> = shards
        .iter()
        .map(|s| {
            let p = &s.manifest.provenance;
            format!(
                "{}: {}",
                s.done.shard.index,
                effbench_report::tables::hardware_summary(&p.hardware, "cpu", p.threads)
            )
        })
        .collect();
    let flags = record::flags(&[
        ("shards", count.to_string()),
        ("shard_hardware", hardware.join("; ")),
        (
            "fewshot_source",
            first.manifest.provenance.fewshot_source.clone(),
        ),
    ]);
    out.write_json("run.json", &manifest)?;
    let no_seconds = BTreeMap::new();
    let (md, full, summary_json) = match suite_kind(&manifest.settings.suite)? {
        SuiteKind::MultipleChoice => {
            let all: BTreeMap<String, BTreeMap<String, ItemRecord>> =
                merged_records(&shards, &techniques, &manifest.suite.item_ids, &out)?;
            // The summary needs each item's id and subject, which the records carry, and for a
            // battery each task's metric, which the suite's source does.
            let norms = super::suite_norms(&manifest.settings.suite)?;
            let any = &all[&techniques[0]];
            let items: Vec<effbench_datasets::McItem> = manifest
                .suite
                .item_ids
                .iter()
                .map(|id| effbench_datasets::McItem {
                    id: id.clone(),
                    subject: any[id].subject.clone(),
                    question: String::new(),
                    choices: Vec::new(),
                    answer: any[id].answer,
                    rendered: norms.get(&any[id].subject).map(|&norm| {
                        effbench_datasets::Rendered {
                            contexts: Vec::new(),
                            continuations: Vec::new(),
                            norm,
                        }
                    }),
                })
                .collect();
            let summary = report::summarize(&manifest, &items, &all, &labels, &no_seconds)?;
            let md = report::markdown(&manifest, &summary);
            let full = record::mc_report(
                effbench_report::schema::SuiteKind::MultipleChoice,
                &manifest,
                &summary,
                &measures,
                &manifest.provenance.device,
                flags,
            );
            (md, full, serde_json::to_value(&summary)?)
        }
        SuiteKind::Generation(_) => {
            let all: BTreeMap<String, BTreeMap<String, GenRecord>> =
                merged_records(&shards, &techniques, &manifest.suite.item_ids, &out)?;
            // The summary groups problems by task and scores the records' own verdicts; the
            // prompts it does not read are not in the run directory.
            let any = &all[&techniques[0]];
            let items: Vec<effbench_datasets::GenItem> = manifest
                .suite
                .item_ids
                .iter()
                .map(|id| effbench_datasets::GenItem {
                    id: id.clone(),
                    subject: any[id].subject.clone(),
                    prompt: String::new(),
                    until: Vec::new(),
                    max_new_tokens: 0,
                    gold: any[id].gold.clone(),
                })
                .collect();
            let summary = super::gen::summarize(&manifest, &items, &all, &labels, &no_seconds)?;
            let md = report::markdown(&manifest, &summary);
            let full = record::mc_report(
                effbench_report::schema::SuiteKind::Generation,
                &manifest,
                &summary,
                &measures,
                &manifest.provenance.device,
                flags,
            );
            (md, full, serde_json::to_value(&summary)?)
        }
        SuiteKind::Perplexity(_) => {
            let windows = first.done.total_units;
            let expected: Vec<String> = (0..windows).map(|w| format!("{w:06}")).collect();
            let all: BTreeMap<String, BTreeMap<String, WindowRecord>> =
                merged_records(&shards, &techniques, &expected, &out)?;
            let summary = ppl::summarize(&techniques, &all, &labels, &no_seconds)?;
            let md = ppl::markdown(
                &format!("{} on {}", manifest.suite.name, manifest.settings.model),
                &summary,
            );
            let full = record::ppl_report(
                &manifest,
                &summary,
                &measures,
                &manifest.provenance.device,
                flags,
            );
            (md, full, serde_json::to_value(&summary)?)
        }
    };
    for (t, m) in &measures {
        out.write_json(&format!("measure-{}.json", super::store::file_key(t)), m)?;
    }
    let report_md = record::publish_report(&out, &full, &args.prices)?;
    eprintln!(
        "merged {count} shards into {} ({} techniques)",
        out.path.display(),
        techniques.len()
    );
    super::publish_summary(
        &out,
        &summary_json,
        &full,
        &format!("{md}\n{report_md}"),
        if args.json {
            super::Printed::SummaryJson
        } else {
            super::Printed::Markdown
        },
    )
}
