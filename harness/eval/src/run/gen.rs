//! Generative suites (GSM8K): every problem's prompt continued greedily, through the
//! continuous-batching scheduler, until a stop sequence, an end-of-sequence token or its token
//! limit; the answer is taken from the output by lm-eval's strict and flexible rules and matched
//! exactly. Records are written as each problem finishes, so a killed run resumes where it was.

use std::collections::BTreeMap;
use std::time::Instant;

use std::path::PathBuf;

use crate::error::{bail, Context, Result};
use effbench_core::{KvCacheBuilder, KvShape, LoadedModel, LogitsFor, SeqChunk};
use effbench_datasets::{GenItem, GenerativeTask, SuiteManifest};
use effbench_kvcache::{Outcome, Request, SchedulerConfig, SharedPrefix, Watcher, WatcherError};
use effbench_report::records::GenRecord;

use super::report::{self, TaskOutcomes};
use super::{
    measure_if_owned, open_run, record, routing, shared_quality_row, technique_label,
    technique_session, technique_stack, OpenedRun, RunConfig, RunSettings,
};
use crate::hint::hinted;

/// The metric a generative task's rows are compared on: lm-eval's flexible extraction, which
/// takes the last number as OLMES' own GSM8K scorer does.
const PRIMARY_METRIC: &str = "exact_match_flexible";

/// The cache sequence holding the prompts' shared few-shot prefix; problems are numbered from 0.
const PREFIX_SEQ: u64 = u64::MAX;

/// Output tokens decoded back to text when checking for a stop sequence: enough to hold any of
/// the tasks' stop strings, few enough that the check stays cheap at every step.
const STOP_CHECK_TOKENS: usize = 16;

/// Where a generative suite's problems come from.
pub enum GenSource {
    /// A task shipped in OLMES' wheel (`--suite gsm8k`).
    Olmes(&'static GenerativeTask),
    /// A user's lm-eval `generate_until` task file (`--suite mc:task.yaml`).
    TaskYaml(std::path::PathBuf),
}

impl GenSource {
    /// Worked examples in every prompt.
    fn shots(&self) -> usize {
        match self {
            GenSource::Olmes(task) => task.shots,
            // The loader refuses any `num_fewshot` but 0.
            GenSource::TaskYaml(_) => 0,
        }
    }
}

/// The problems a generative suite scores: the task's seeded subset (or all of it), each token
/// limit capped by `--max-gen-tokens`.
fn load_problems(
    args: &RunConfig,
    source: &GenSource,
) -> Result<(Vec<GenItem>, Option<usize>, usize)> {
    let (load, default_items, origin) = match source {
        GenSource::Olmes(task) => {
            if args.shots != 0 {
                return Err(hinted(
                    format!(
                        "suite `{}` is scored as OLMES renders it, {}",
                        args.suite, task.about
                    ),
                    "drop {shots}",
                ));
            }
            let wheel =
                effbench_assets::fetch("olmes-tasks", &effbench_assets::FetchOptions::default())
                    .context("fetching the OLMES task files")?;
            let load = effbench_datasets::load_olmes_generation(
                &wheel,
                task.olmes_task,
                task.olmes_variant,
                task.name,
                args.strict,
            )?;
            let origin = format!("OLMES {}/{}", task.olmes_task, task.olmes_variant);
            (load, Some(task.default_items), origin)
        }
        GenSource::TaskYaml(path) => {
            if args.shots != 0 {
                return Err(hinted(
                    format!(
                        "suite `{}` renders its prompts as its task file says",
                        args.suite
                    ),
                    "drop {shots}",
                ));
            }
            let effbench_datasets::LmEvalTask::Generation(load) =
                effbench_datasets::load_lm_eval_yaml(path, args.strict)?
            else {
                bail!("{} is not a generate_until task", path.display());
            };
            (load, None, path.display().to_string())
        }
    };
    super::refuse_empty(&args.suite, &load.skipped, load.items.is_empty())?;
    super::print_skipped(&load.skipped);
    let per_task = if args.full {
        None
    } else {
        args.items_per_subject.or(default_items)
    };
    let mut items = match per_task {
        Some(k) => effbench_datasets::stratified_subset(&load.items, k, args.seed),
        None => effbench_datasets::sorted_gen_items(&load.items),
    };
    if let Some(cap) = args.max_gen_tokens {
        if cap == 0 {
            return Err(hinted(
                "a cap of 0 generated tokens leaves nothing to score",
                "{max_gen_tokens} of at least 1",
            ));
        }
        for item in &mut items {
            item.max_new_tokens = item.max_new_tokens.min(cap);
        }
    }
    eprintln!(
        "{}: {} problems from {origin} ({} in the file), primary metric {PRIMARY_METRIC}",
        args.suite,
        items.len(),
        load.items.len()
    );
    Ok((items, per_task, load.skipped.len()))
}

pub fn run_gen(
    args: &RunConfig,
    source: &GenSource,
    model_path: &std::path::Path,
    threads: usize,
) -> Result<PathBuf> {
    let (items, per_task, skipped) = load_problems(args, source)?;
    let manifest = SuiteManifest::for_generation(args.suite.clone(), args.seed, per_task, &items);
    let settings = RunSettings {
        suite: args.suite.clone(),
        model: args.model.clone(),
        techniques: args.techniques.clone(),
        items_per_subject: per_task,
        // The task's own exemplars, in every prompt.
        shots: source.shots(),
        seed: args.seed,
        subjects: Vec::new(),
        manifest_hash: manifest.content_hash.clone(),
        shard: args.shard,
        measurement: Some(super::measurement_settings(args)),
    };
    let OpenedRun {
        dir: run_dir,
        manifest: run_manifest,
        lock: _lock,
    } = open_run(
        args,
        &settings,
        &manifest,
        model_path,
        threads,
        "as the task renders them",
        skipped,
    )?;

    let mut all: BTreeMap<String, BTreeMap<String, GenRecord>> = BTreeMap::new();
    let mut measures = BTreeMap::new();
    let mut seconds = BTreeMap::new();
    let mut labels = BTreeMap::new();
    let mut routing_md = String::new();
    let route_options = effbench_routing::SweepOptions {
        margin: args.route_margin / 100.0,
        ..Default::default()
    };
    for technique in &args.techniques {
        let stack = technique_stack(technique)?;
        if let Some(route) = &stack.routing {
            let row = routing::build_gen(
                &routing::RouteInputs {
                    run_dir: &run_dir,
                    technique,
                    route,
                    base: &stack.weights_name,
                    baseline: &args.techniques[0],
                    records: &all,
                    measures: &measures,
                    options: &route_options,
                },
                &items,
            )?;
            row.join_run(
                &run_dir,
                technique,
                &mut labels,
                &mut all,
                &mut measures,
                &mut routing_md,
            )?;
            continue;
        }
        let mut done: BTreeMap<String, GenRecord> = run_dir.load_records(technique)?;
        let session = technique_session(model_path, technique, threads, &args.device)?;
        labels.insert(technique.clone(), technique_label(technique, &session));
        // A shard answers the (problem, technique) pairs it owns, as multiple choice does.
        let owned = |i: &&GenItem| args.shard.is_none_or(|s| s.owns_item(technique, &i.id));
        let owned_count = items.iter().filter(owned).count();
        let pending: Vec<&GenItem> = items
            .iter()
            .filter(owned)
            .filter(|i| !done.contains_key(&i.id))
            .collect();
        let quality_base = shared_quality_row(args, technique)?;
        if let Some(base) = &quality_base {
            // Greedy decoding with a draft gives exactly the tokens of plain decoding (tested in
            // effbench-speculative), so a decoding row answers as its base row did.
            let missing: Vec<GenRecord> = pending
                .iter()
                .filter_map(|i| all[base].get(&i.id))
                .cloned()
                .collect();
            eprintln!(
                "{technique}: answers shared with `{base}` ({} copied; greedy decoding with a draft gives the same tokens)",
                missing.len()
            );
            run_dir.appender(technique)?.append_all(&missing)?;
            for r in missing {
                done.insert(r.item.clone(), r);
            }
        } else if !pending.is_empty() {
            let bar = crate::progress::counted(
                owned_count as u64,
                done.len() as u64,
                format!("{technique} ({})", session.loaded.model.label()),
                "problems",
            );
            let start = Instant::now();
            let mut writer = run_dir.appender(technique)?;
            let builder = stack.kv.clone().unwrap_or_else(|| args.kv.builder());
            let mut correct = done.values().filter(|r| r.correct).count();
            let shared = shared_prompt_prefix(&session.loaded, &items)?;
            generate(
                &session.loaded,
                &pending,
                &shared,
                args.gen_batch,
                builder.as_ref(),
                |record| {
                    writer.append(&record)?;
                    correct += usize::from(record.correct);
                    done.insert(record.item.clone(), record);
                    bar.inc(1);
                    bar.set_message(format!(
                        "exact match {:.1}%",
                        100.0 * correct as f64 / done.len() as f64
                    ));
                    Ok(())
                },
            )?;
            bar.finish_and_clear();
            let elapsed = start.elapsed().as_secs_f64();
            eprintln!("{technique}: {elapsed:.1} s for {} problems", pending.len());
            seconds.insert(technique.clone(), elapsed);
        }
        all.insert(technique.clone(), done);
        measure_if_owned(args, &run_dir, technique, &session, &mut measures)?;
        if let Some(base) = &quality_base {
            check_shared_answers(
                args,
                &run_dir,
                technique,
                &session,
                &items,
                &all[base],
                &mut measures,
            )?;
        }
    }

    if let Some(shard) = args.shard {
        let counts = all.iter().map(|(t, r)| (t.clone(), r.len())).collect();
        return super::finish_shard(&run_dir, shard, labels, counts, items.len());
    }
    let summary = summarize(&run_manifest, &items, &all, &labels, &seconds)?;
    let md = report::markdown(&run_manifest, &summary) + &routing_md;
    let flags = record::flags(&[
        ("gen_batch", args.gen_batch.to_string()),
        ("skipped_rows", skipped.to_string()),
    ]);
    let full = record::mc_report(
        effbench_report::schema::SuiteKind::Generation,
        &run_manifest,
        &summary,
        &measures,
        &run_manifest.provenance.device,
        flags,
    );
    let report_md = record::publish_report(&run_dir, &full, &args.prices)?;
    super::publish_summary(
        &run_dir,
        &summary,
        &full,
        &format!("{md}\n{report_md}"),
        args.print,
    )
}

/// A decoding row answers as its base row did; this generates the suite's first problems again
/// with the row's weights and KV cache, plainly and with its draft, and attaches the comparison
/// to the row's decoding report. Recorded in the run directory once, so a resumed run reads it
/// back instead of generating again.
fn check_shared_answers(
    args: &RunConfig,
    run_dir: &super::store::RunDir,
    technique: &str,
    session: &crate::session::Session,
    items: &[GenItem],
    scored: &BTreeMap<String, GenRecord>,
    measures: &mut BTreeMap<String, record::TechniqueMeasure>,
) -> Result<()> {
    let stack = technique_stack(technique)?;
    let (Some(spec), Some(decoding)) = (
        stack.decoding.as_ref(),
        measures
            .get_mut(technique)
            .and_then(|m| m.decoding.as_mut()),
    ) else {
        // Without the speed test a row has no decoding report to hold the check.
        return Ok(());
    };
    if args.decoding_check == 0 {
        return Ok(());
    }
    let file = format!("check-{}.json", super::store::file_key(technique));
    let check = if run_dir.path.join(&file).exists() {
        run_dir.read_json(&file)?
    } else {
        let answers: Vec<super::decoding::ScoredAnswer> = items
            .iter()
            .take(args.decoding_check)
            .map(|i| {
                let record = scored
                    .get(&i.id)
                    .with_context(|| format!("no scored answer for problem {}", i.id))?;
                Ok(super::decoding::ScoredAnswer {
                    id: &i.id,
                    prompt: session.loaded.encode(&i.prompt)?,
                    tokens: &record.tokens,
                })
            })
            .collect::<Result<_>>()?;
        eprintln!(
            "{technique}: the first {} problems' answers generated again, plainly and with the draft, one stream each",
            answers.len()
        );
        let kv = stack.kv.clone().unwrap_or_else(|| args.kv.builder());
        let check = super::decoding::check_answers(
            &args.suite,
            &session.loaded,
            spec,
            kv.as_ref(),
            &answers,
        )?;
        run_dir.write_json(&file, &check)?;
        check
    };
    eprintln!(
        "{technique}: speculative output identical to plain decoding on {}/{} problems",
        check.identical, check.compared
    );
    decoding.suite_check = Some(check);
    Ok(())
}

/// The run's summary: every technique on the primary metric, and the per-task view with both
/// extraction rules.
pub(super) fn summarize(
    manifest: &super::RunManifest,
    items: &[GenItem],
    records: &BTreeMap<String, BTreeMap<String, GenRecord>>,
    labels: &BTreeMap<String, String>,
    seconds: &BTreeMap<String, f64>,
) -> Result<report::Summary> {
    let mut by_task: BTreeMap<&str, Vec<&GenItem>> = BTreeMap::new();
    for item in items {
        by_task.entry(item.subject.as_str()).or_default().push(item);
    }
    let mut tasks = Vec::new();
    for (task, task_items) in by_task {
        let mut rows = Vec::new();
        for t in &manifest.settings.techniques {
            let rs: Vec<&GenRecord> = task_items
                .iter()
                .map(|i| {
                    records[t].get(&i.id).with_context(|| {
                        format!("technique {t} has no record for problem {}", i.id)
                    })
                })
                .collect::<Result<_>>()?;
            let rate = |f: fn(&GenRecord) -> bool| {
                rs.iter().filter(|r| f(r)).count() as f64 / rs.len() as f64
            };
            let metrics = BTreeMap::from([
                ("exact_match_strict".to_string(), rate(|r| r.strict_correct)),
                (
                    "exact_match_flexible".to_string(),
                    rate(|r| r.flexible_correct),
                ),
            ]);
            rows.push((t.clone(), rs.iter().map(|r| r.correct).collect(), metrics));
        }
        tasks.push(TaskOutcomes {
            task: task.to_string(),
            metric: PRIMARY_METRIC.to_string(),
            rows,
        });
    }
    let battery = report::battery_of(tasks)?;
    report::summarize_outcomes(
        manifest,
        items,
        records,
        |r| r.correct,
        labels,
        seconds,
        Some(battery),
    )
}

/// The tokens every prompt of the suite starts with (the few-shot exemplars), less one so each
/// problem still runs a token of its own. Taken over the whole suite, not the problems still
/// pending, so a resumed run computes every problem exactly as an uninterrupted one.
fn shared_prompt_prefix(loaded: &LoadedModel, items: &[GenItem]) -> Result<Vec<u32>> {
    let mut shared: Option<Vec<u32>> = None;
    for item in items {
        let ids = loaded.encode(&item.prompt)?;
        let keep = match &shared {
            None => ids.len().saturating_sub(1),
            Some(s) => s.iter().zip(&ids).take_while(|(a, b)| a == b).count(),
        }
        .min(ids.len().saturating_sub(1));
        let mut prefix = shared.unwrap_or(ids);
        prefix.truncate(keep);
        shared = Some(prefix);
    }
    Ok(shared.unwrap_or_default())
}

/// Generates an answer for every problem in `items`, at most `batch` decoded together, each a
/// fork of the `shared` prefix's KV (computed once) when there is one, and hands each record to
/// `on_record` as its problem finishes.
fn generate(
    loaded: &LoadedModel,
    items: &[&GenItem],
    shared: &[u32],
    batch: usize,
    builder: &dyn KvCacheBuilder,
    on_record: impl FnMut(GenRecord) -> Result<()>,
) -> Result<()> {
    if batch == 0 {
        return Err(hinted(
            "a batch of 0 problems decodes nothing",
            "{gen_batch} of at least 1",
        ));
    }
    let context = loaded.model.config().max_position_embeddings;
    let mut requests = Vec::with_capacity(items.len());
    let forked_from = (!shared.is_empty()).then_some(SharedPrefix {
        seq: PREFIX_SEQ,
        len: shared.len(),
    });
    for (i, item) in items.iter().enumerate() {
        let prompt = loaded.encode(&item.prompt)?;
        crate::error::ensure!(
            prompt.starts_with(shared),
            "problem {}'s prompt does not start with the suite's shared prefix",
            item.id
        );
        if prompt.len() + item.max_new_tokens > context {
            return Err(hinted(
                format!(
                    "problem {}: prompt {} + {} new tokens is longer than the model's context of {context}",
                    item.id,
                    prompt.len(),
                    item.max_new_tokens
                ),
                format!(
                    "{{max_gen_tokens}} {}",
                    context.saturating_sub(prompt.len()).max(1)
                ),
            ));
        }
        requests.push(Request {
            id: i as u64,
            arrival_s: 0.0,
            prompt,
            max_new_tokens: item.max_new_tokens,
            forked_from,
        });
    }
    let longest = requests
        .iter()
        .map(|r| r.prompt.len() + r.max_new_tokens)
        .max()
        .unwrap_or(1);
    // Live at once: the shared prefix and `batch` problems.
    let mut cache = builder.build(
        KvShape::of(loaded.model.config()),
        longest,
        batch + 1,
        loaded.model.device(),
    )?;
    if !shared.is_empty() {
        loaded.model.forward(
            &[SeqChunk::new(PREFIX_SEQ, shared.to_vec(), LogitsFor::None)],
            cache.as_mut(),
        )?;
    }
    let config = SchedulerConfig {
        max_running: batch,
        max_model_len: context,
        ..SchedulerConfig::default()
    };
    let mut watcher = Answers {
        loaded,
        items,
        prompt_tokens: requests.iter().map(|r| r.prompt.len()).collect(),
        stop_tokens: loaded.stop_tokens(),
        on_record,
    };
    let run = effbench_kvcache::serve_watched(
        &loaded.model,
        cache.as_mut(),
        requests,
        &config,
        &mut watcher,
    )?;
    if let Some(o) = run.outcomes.iter().find(|o| o.refused.is_some()) {
        bail!(
            "problem {} was refused: {}",
            items[o.id as usize].id,
            o.refused.as_deref().unwrap_or_default()
        );
    }
    Ok(())
}

/// Stops each problem at its stop sequences or an end-of-sequence token, and turns each
/// finished one into its record.
struct Answers<'a, F> {
    loaded: &'a LoadedModel,
    items: &'a [&'a GenItem],
    prompt_tokens: Vec<usize>,
    stop_tokens: Vec<u32>,
    on_record: F,
}

impl<F: FnMut(GenRecord) -> Result<()>> Watcher for Answers<'_, F> {
    // A routing row trusts a cheap row's answer by its tokens' mean log-probability.
    fn token_logprobs(&self) -> bool {
        true
    }

    fn stop(&mut self, id: u64, tokens: &[u32]) -> bool {
        if tokens.last().is_some_and(|t| self.stop_tokens.contains(t)) {
            return true;
        }
        let until = &self.items[id as usize].until;
        let tail = &tokens[tokens.len().saturating_sub(STOP_CHECK_TOKENS)..];
        self.loaded
            .decode(tail)
            .is_ok_and(|text| effbench_datasets::cut_at_stop(&text, until).1)
    }

    fn finished(&mut self, outcome: &Outcome) -> std::result::Result<(), WatcherError> {
        let item = self.items[outcome.id as usize];
        let record = answer_record(
            self.loaded,
            item,
            self.prompt_tokens[outcome.id as usize],
            outcome,
            &self.stop_tokens,
        )?;
        (self.on_record)(record).map_err(|e| -> WatcherError { e.into() })
    }
}

fn answer_record(
    loaded: &LoadedModel,
    item: &GenItem,
    prompt_tokens: usize,
    outcome: &Outcome,
    stop_tokens: &[u32],
) -> Result<GenRecord> {
    let tokens: &[u32] = &outcome.tokens;
    let ended_by_eos = tokens.last().is_some_and(|t| stop_tokens.contains(t));
    let text_tokens = if ended_by_eos {
        &tokens[..tokens.len() - 1]
    } else {
        tokens
    };
    let text = loaded.decode(text_tokens)?;
    let (output, stopped) = effbench_datasets::cut_at_stop(&text, &item.until);
    let finish = if stopped {
        "stop"
    } else if ended_by_eos {
        "eos"
    } else {
        "limit"
    };
    let strict = effbench_datasets::extract_strict(output);
    let flexible = effbench_datasets::extract_flexible(output);
    let strict_correct = effbench_datasets::exact_match(&strict, &item.gold);
    let flexible_correct = effbench_datasets::exact_match(&flexible, &item.gold);
    Ok(GenRecord {
        item: item.id.clone(),
        subject: item.subject.clone(),
        prompt_tokens,
        tokens: tokens.to_vec(),
        output: output.to_string(),
        finish: finish.to_string(),
        gold: item.gold.clone(),
        strict,
        flexible,
        strict_correct,
        flexible_correct,
        correct: flexible_correct,
        token_logprobs: outcome.token_logprobs.clone(),
    })
}
