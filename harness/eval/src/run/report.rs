//! The run's summary: accuracy with its interval per technique, paired comparisons against the
//! baseline, what the suite can and cannot detect, and per-subject accuracy.

use std::collections::BTreeMap;

use crate::error::{Context, Result};
use effbench_datasets::{McItem, ScoreNorm, Stratified};
use effbench_stats::{compare_binary, Accuracy, CompareOptions, PowerSpec, SuitePower};
use serde::{Deserialize, Serialize};

use super::mc::{pred_by, ItemRecord};
use super::RunManifest;

#[derive(Debug, Serialize, Deserialize)]
pub struct TechniqueSummary {
    pub technique: String,
    pub label: String,
    pub accuracy: Accuracy,
    /// Scoring time in this invocation (absent when every item was already recorded).
    pub seconds: Option<f64>,
    pub per_subject: BTreeMap<String, SubjectScore>,
    /// Against the baseline (the first technique), on the same items.
    pub vs_baseline: Option<Comparison>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SubjectScore {
    pub correct: usize,
    pub n: usize,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Comparison {
    pub delta: f64,
    pub p_value: f64,
    pub significant: bool,
    pub verdict: String,
    pub power: Option<SuitePower>,
    pub power_note: String,
}

impl Comparison {
    /// `outcomes` against the baseline's on the same items (McNemar, and the change those
    /// items detect at the measured discordance), with the difference's paired standard error.
    fn paired(base: &[bool], outcomes: &[bool]) -> Result<(Self, f64)> {
        let cmp = compare_binary(base, outcomes, &CompareOptions::default())?;
        let power = SuitePower::measured(base, outcomes, PowerSpec::default()).ok();
        Ok((
            Comparison {
                delta: cmp.delta,
                p_value: cmp.p_value,
                significant: cmp.significant(0.05),
                verdict: cmp.verdict(),
                power_note: power.map_or_else(|| "-".into(), |p| p.note()),
                power,
            },
            cmp.stderr,
        ))
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Summary {
    pub schema_version: u32,
    pub run_id: String,
    pub suite: String,
    pub items: usize,
    pub manifest_hash: String,
    pub shots: usize,
    pub baseline: String,
    pub techniques: Vec<TechniqueSummary>,
    /// The suite's resolution before any comparison: MDD at the baseline's accuracy assuming
    /// independent errors (an upper bound; measured discordance is lower).
    pub baseline_power_note: String,
    /// For a battery of tasks (items with rendered prompts): each task on its own metric,
    /// compared with the baseline, and the mean over tasks. Absent for MMLU-style suites.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tasks: Option<Battery>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Battery {
    pub tasks: Vec<TaskSummary>,
    /// Per technique, the unweighted mean over tasks of each task's primary metric.
    pub mean: Vec<BatteryMean>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct TaskSummary {
    pub task: String,
    pub n: usize,
    /// The task's primary metric, e.g. `acc_per_char`.
    pub metric: String,
    pub rows: Vec<TaskRow>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct TaskRow {
    pub technique: String,
    /// On the primary metric.
    pub accuracy: Accuracy,
    /// Every accuracy the records allow: acc, acc_norm, acc_per_char, acc_per_token.
    pub metrics: BTreeMap<String, f64>,
    pub vs_baseline: Option<Comparison>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct BatteryMean {
    pub technique: String,
    pub mean: f64,
    /// Against the baseline: the mean of the tasks' paired differences, with a normal interval
    /// from their paired standard errors (tasks are independent item sets, so variances add).
    pub delta: Option<f64>,
    pub delta_ci: Option<effbench_stats::Interval>,
}

pub fn summarize(
    manifest: &RunManifest,
    items: &[McItem],
    records: &BTreeMap<String, BTreeMap<String, ItemRecord>>,
    labels: &BTreeMap<String, String>,
    seconds: &BTreeMap<String, f64>,
) -> Result<Summary> {
    let tasks = battery(items, records, &manifest.settings.techniques)?;
    summarize_outcomes(
        manifest,
        items,
        records,
        |r| r.correct,
        labels,
        seconds,
        tasks,
    )
}

/// The summary of any suite scored right or wrong per item: `records` per technique by item id,
/// `correct` the verdict on the suite's primary metric, `tasks` its per-task view if it has one.
pub fn summarize_outcomes<T: Stratified, R>(
    manifest: &RunManifest,
    items: &[T],
    records: &BTreeMap<String, BTreeMap<String, R>>,
    correct: impl Fn(&R) -> bool,
    labels: &BTreeMap<String, String>,
    seconds: &BTreeMap<String, f64>,
    tasks: Option<Battery>,
) -> Result<Summary> {
    let techniques = &manifest.settings.techniques;
    let baseline = &techniques[0];
    let outcomes = |t: &str| -> Result<Vec<bool>> {
        let recs = &records[t];
        items
            .iter()
            .map(|i| {
                recs.get(i.id())
                    .map(&correct)
                    .with_context(|| format!("technique {t} has no record for item {}", i.id()))
            })
            .collect()
    };
    let base = outcomes(baseline)?;
    let mut out = Vec::new();
    for t in techniques {
        let o = outcomes(t)?;
        let accuracy = Accuracy::from_outcomes(&o)?;
        let mut per_subject: BTreeMap<String, SubjectScore> = BTreeMap::new();
        for (item, &c) in items.iter().zip(&o) {
            let s = per_subject
                .entry(item.subject().to_string())
                .or_insert(SubjectScore { correct: 0, n: 0 });
            s.n += 1;
            s.correct += usize::from(c);
        }
        let vs_baseline = if t == baseline {
            None
        } else {
            Some(Comparison::paired(&base, &o)?.0)
        };
        out.push(TechniqueSummary {
            technique: t.clone(),
            label: labels.get(t).cloned().unwrap_or_default(),
            accuracy,
            seconds: seconds.get(t).copied(),
            per_subject,
            vs_baseline,
        });
    }
    let base_acc = out[0].accuracy.mean;
    let baseline_power_note = SuitePower::assumed(items.len(), base_acc, PowerSpec::default())
        .map_or_else(|e| e.to_string(), |p| p.note());
    Ok(Summary {
        schema_version: super::SCHEMA_VERSION,
        run_id: manifest.run_id.clone(),
        suite: manifest.suite.name.clone(),
        items: items.len(),
        manifest_hash: manifest.suite.content_hash.clone(),
        shots: manifest.settings.shots,
        baseline: baseline.clone(),
        techniques: out,
        baseline_power_note,
        tasks,
    })
}

/// One task's outcomes for the per-task view: per technique (the baseline first), each item's
/// outcome on the primary metric in one fixed item order, and every metric's accuracy.
pub struct TaskOutcomes {
    pub task: String,
    pub metric: String,
    pub rows: Vec<(String, Vec<bool>, BTreeMap<String, f64>)>,
}

/// The per-task view of a battery: `None` unless the items carry rendered prompts (whose
/// metric each task names).
fn battery(
    items: &[McItem],
    records: &BTreeMap<String, BTreeMap<String, ItemRecord>>,
    techniques: &[String],
) -> Result<Option<Battery>> {
    let mut by_task: BTreeMap<&str, (ScoreNorm, Vec<&McItem>)> = BTreeMap::new();
    for item in items {
        let Some(r) = &item.rendered else {
            return Ok(None);
        };
        by_task
            .entry(item.subject.as_str())
            .or_insert_with(|| (r.norm, Vec::new()))
            .1
            .push(item);
    }
    let mut tasks = Vec::new();
    for (task, (norm, task_items)) in &by_task {
        let mut rows = Vec::new();
        for t in techniques {
            let rs: Vec<&ItemRecord> = task_items
                .iter()
                .map(|i| {
                    records[t]
                        .get(&i.id)
                        .with_context(|| format!("technique {t} has no record for item {}", i.id))
                })
                .collect::<Result<_>>()?;
            let mut metrics = BTreeMap::new();
            if *norm == ScoreNorm::Greedy {
                let n = rs.len() as f64;
                let right = rs.iter().filter(|r| r.correct).count() as f64;
                metrics.insert(norm.metric().to_string(), right / n);
                // lm-eval's `perplexity` for LAMBADA: exp of minus the mean, over passages, of
                // the target word's log-likelihood.
                let mean_ll = rs.iter().map(|r| r.logprobs[r.answer]).sum::<f64>() / n;
                metrics.insert("perplexity".to_string(), (-mean_ll).exp());
            }
            for other in ScoreNorm::ALL
                .into_iter()
                .filter(|_| *norm != ScoreNorm::Greedy)
            {
                let preds: Option<Vec<usize>> = rs.iter().map(|r| pred_by(r, other)).collect();
                if let Some(preds) = preds {
                    let right = rs
                        .iter()
                        .zip(&preds)
                        .filter(|(r, &p)| p == r.answer)
                        .count();
                    metrics.insert(other.metric().to_string(), right as f64 / rs.len() as f64);
                }
            }
            rows.push((t.clone(), rs.iter().map(|r| r.correct).collect(), metrics));
        }
        tasks.push(TaskOutcomes {
            task: task.to_string(),
            metric: norm.metric().to_string(),
            rows,
        });
    }
    battery_of(tasks).map(Some)
}

/// Each task compared with the baseline (its first row), and the mean over tasks.
pub fn battery_of(inputs: Vec<TaskOutcomes>) -> Result<Battery> {
    let mut tasks = Vec::new();
    let mut order: Vec<String> = Vec::new();
    let mut deltas: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    let mut means: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for input in inputs {
        let Some((baseline, base, _)) = input.rows.first() else {
            continue;
        };
        let (baseline, base) = (baseline.clone(), base.clone());
        let n = base.len();
        let mut rows = Vec::new();
        for (t, outcomes, metrics) in input.rows {
            if !order.contains(&t) {
                order.push(t.clone());
            }
            let accuracy = Accuracy::from_outcomes(&outcomes)?;
            means.entry(t.clone()).or_default().push(accuracy.mean);
            let vs_baseline = if t == baseline {
                None
            } else {
                let (comparison, stderr) = Comparison::paired(&base, &outcomes)?;
                deltas
                    .entry(t.clone())
                    .or_default()
                    .push((comparison.delta, stderr));
                Some(comparison)
            };
            rows.push(TaskRow {
                technique: t,
                accuracy,
                metrics,
                vs_baseline,
            });
        }
        tasks.push(TaskSummary {
            task: input.task,
            n,
            metric: input.metric,
            rows,
        });
    }
    let n_tasks = tasks.len() as f64;
    let mean = order
        .iter()
        .map(|t| {
            let mean = means[t].iter().sum::<f64>() / n_tasks;
            let (delta, delta_ci) = match deltas.get(t) {
                None => (None, None),
                Some(d) => {
                    let delta = d.iter().map(|x| x.0).sum::<f64>() / n_tasks;
                    let stderr = d.iter().map(|x| x.1 * x.1).sum::<f64>().sqrt() / n_tasks;
                    (
                        Some(delta),
                        Some(effbench_stats::normal_interval(delta, stderr, 0.95)),
                    )
                }
            };
            BatteryMean {
                technique: t.clone(),
                mean,
                delta,
                delta_ci,
            }
        })
        .collect();
    Ok(Battery { tasks, mean })
}

fn pct(x: f64) -> String {
    format!("{:.1}", 100.0 * x)
}

pub fn markdown(manifest: &RunManifest, s: &Summary) -> String {
    let mut md = String::new();
    md.push_str(&format!(
        "## {} on {} ({}-shot, {} items, manifest {})\n\n",
        s.suite,
        manifest.settings.model,
        s.shots,
        s.items,
        &s.manifest_hash[..12.min(s.manifest_hash.len())]
    ));
    md.push_str("| Technique | Weights | Accuracy % (95% CI) | Quality impact vs baseline | Suite resolution | Time |\n");
    md.push_str("|---|---|---|---|---|---|\n");
    for t in &s.techniques {
        let ci = t.accuracy.table_interval();
        let (impact, resolution) = match &t.vs_baseline {
            None => ("baseline".to_string(), s.baseline_power_note.clone()),
            Some(c) => (c.verdict.clone(), c.power_note.clone()),
        };
        md.push_str(&format!(
            "| {} | {} | {} ± {} ({}..{}) | {} | {} | {} |\n",
            t.technique,
            t.label,
            pct(t.accuracy.mean),
            pct(t.accuracy.stderr),
            pct(ci.lo),
            pct(ci.hi),
            impact,
            resolution,
            t.seconds
                .map_or_else(|| "(recorded)".to_string(), |x| format!("{x:.0} s")),
        ));
    }
    md.push_str(
        "\nAccuracy ± standard error as lm-evaluation-harness computes it; the interval is Wilson's. \
Quality impact: paired difference on the same items, McNemar's exact test; n.s. = not significant at 5%. \
Suite resolution: the smallest change this many items detects with 80% power.\n",
    );
    if let Some(b) = &s.tasks {
        md.push_str(&battery_markdown(b));
    }
    md.push_str("\n<details><summary>Per-subject accuracy %</summary>\n\n| Subject | n |");
    for t in &s.techniques {
        md.push_str(&format!(" {} |", t.technique));
    }
    md.push_str("\n|---|---|");
    for _ in &s.techniques {
        md.push_str("---|");
    }
    md.push('\n');
    for (subject, score) in &s.techniques[0].per_subject {
        md.push_str(&format!("| {subject} | {} |", score.n));
        for t in &s.techniques {
            let sc = &t.per_subject[subject];
            md.push_str(&format!(" {} |", pct(sc.correct as f64 / sc.n as f64)));
        }
        md.push('\n');
    }
    md.push_str("\n</details>\n");
    md
}

fn battery_markdown(b: &Battery) -> String {
    let mut md = String::from("\n### Tasks\n\n| Task | n | Metric |");
    for m in &b.mean {
        md.push_str(&format!(" {} |", m.technique));
    }
    md.push_str(" Detectable (80% power) |\n|---|---|---|");
    for _ in &b.mean {
        md.push_str("---|");
    }
    md.push_str("---|\n");
    for task in &b.tasks {
        md.push_str(&format!("| {} | {} | {} |", task.task, task.n, task.metric));
        for row in &task.rows {
            match &row.vs_baseline {
                None => md.push_str(&format!(" {} |", pct(row.accuracy.mean))),
                Some(c) => md.push_str(&format!(
                    " {} ({:+.1}{}) |",
                    pct(row.accuracy.mean),
                    100.0 * c.delta,
                    if c.significant { ", significant" } else { "" }
                )),
            }
        }
        let mdd = task
            .rows
            .iter()
            .filter_map(|r| {
                let power = r.vs_baseline.as_ref()?.power.as_ref()?;
                Some(match power.mdd {
                    Some(m) => format!("{} {:.1} pt", r.technique, 100.0 * m),
                    None => format!("{} none", r.technique),
                })
            })
            .collect::<Vec<_>>();
        md.push_str(&format!(
            " {} |\n",
            if mdd.is_empty() {
                "-".to_string()
            } else {
                mdd.join("; ")
            }
        ));
    }
    let perplexities: Vec<String> = b
        .tasks
        .iter()
        .filter_map(|task| {
            let per_row: Option<Vec<String>> = task
                .rows
                .iter()
                .map(|r| {
                    let ppl = r.metrics.get("perplexity")?;
                    Some(format!("{} {ppl:.2}", r.technique))
                })
                .collect();
            Some(format!("{}: {}", task.task, per_row?.join(", ")))
        })
        .collect();
    md.push_str("| **mean over tasks** | | |");
    for m in &b.mean {
        match (m.delta, m.delta_ci) {
            (Some(d), Some(ci)) => md.push_str(&format!(
                " {} ({:+.1}, 95% CI {:+.1}..{:+.1}) |",
                pct(m.mean),
                100.0 * d,
                100.0 * ci.lo,
                100.0 * ci.hi
            )),
            _ => md.push_str(&format!(" {} |", pct(m.mean))),
        }
    }
    md.push_str(" |\n");
    if !perplexities.is_empty() {
        md.push_str(&format!(
            "\nPerplexity of the target word (lm-eval's LAMBADA `perplexity`, lower is better): {}.\n",
            perplexities.join("; ")
        ));
    }
    md.push_str(
        "\nEach task on its primary metric (OLMES' choice: acc = raw log-likelihood, acc_per_char = \
divided by the continuation's characters; acc_greedy = the target is what greedy decoding \
gives), % and the paired difference from the baseline in points \
(McNemar's exact test on that task's items). Detectable: the smallest change the task's items detect \
with 80% power at the measured discordance, per technique. The mean over tasks weighs every task \
alike; its interval adds the tasks' paired variances. Every other metric (acc, acc_norm, \
acc_per_char, acc_per_token; for GSM8K exact_match_strict and exact_match_flexible, the answer \
taken by lm-eval's strict or flexible rule) is in summary.json.\n",
    );
    md
}
