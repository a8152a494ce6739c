//! The run's summary: accuracy with its interval per technique, paired comparisons against the
//! baseline, what the suite can and cannot detect, and per-subject accuracy.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use effbench_datasets::McItem;
use effbench_stats::{compare_binary, Accuracy, CompareOptions, PowerSpec, SuitePower};
use serde::{Deserialize, Serialize};

use super::mc::ItemRecord;
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
}

pub fn summarize(
    manifest: &RunManifest,
    items: &[McItem],
    records: &BTreeMap<String, BTreeMap<String, ItemRecord>>,
    labels: &BTreeMap<String, String>,
    seconds: &BTreeMap<String, f64>,
) -> Result<Summary> {
    let techniques = &manifest.settings.techniques;
    let baseline = &techniques[0];
    let outcomes = |t: &str| -> Result<Vec<bool>> {
        let recs = &records[t];
        items
            .iter()
            .map(|i| {
                recs.get(&i.id)
                    .map(|r| r.correct)
                    .with_context(|| format!("technique {t} has no record for item {}", i.id))
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
                .entry(item.subject.clone())
                .or_insert(SubjectScore { correct: 0, n: 0 });
            s.n += 1;
            s.correct += usize::from(c);
        }
        let vs_baseline = if t == baseline {
            None
        } else {
            let cmp = compare_binary(&base, &o, &CompareOptions::default())?;
            let power = SuitePower::measured(&base, &o, PowerSpec::default()).ok();
            Some(Comparison {
                delta: cmp.delta,
                p_value: cmp.p_value,
                significant: cmp.significant(0.05),
                verdict: cmp.verdict(),
                power_note: power.map_or_else(|| "-".into(), |p| p.note()),
                power,
            })
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
    })
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
