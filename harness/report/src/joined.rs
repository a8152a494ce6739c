//! One model's techniques across several suites (`effbench run --suite wikitext-2,mmlu-lite`):
//! a row per technique with its memory, its speed (from whichever suite's run measured it)
//! and every suite's quality figures beside each other, so one table answers "what does int4
//! cost in perplexity, in accuracy and in speed".

use serde::Serialize;

use crate::error::{ReportError, Result};
use crate::schema::{Quality, RunReport, Speed};
use crate::tables::{markdown_table, mib};

/// One suite's figures for one technique.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum SuiteFigures {
    Perplexity {
        suite: String,
        ppl: f64,
        ppl_stderr: f64,
        /// Against the baseline on the same tokens; None for the baseline.
        ratio: Option<f64>,
        kl_mean: Option<f64>,
        top1_agreement: Option<f64>,
    },
    Accuracy {
        suite: String,
        n: usize,
        mean: f64,
        stderr: f64,
        /// The paired test against the baseline; None for the baseline.
        vs_baseline: Option<String>,
        significant: bool,
    },
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct JoinedRow {
    pub technique: String,
    pub label: String,
    pub weight_bytes: usize,
    pub bits_per_weight: Option<f64>,
    pub prefill_tok_per_s: Option<f64>,
    pub decode_tok_per_s: Option<f64>,
    /// Over the baseline's, measured in the same run.
    pub prefill_speedup: Option<f64>,
    pub decode_speedup: Option<f64>,
    pub suites: Vec<SuiteFigures>,
}

fn figures(suite: &str, q: &Quality) -> SuiteFigures {
    match q {
        Quality::Perplexity {
            ppl,
            ppl_stderr,
            vs_baseline,
            ..
        } => SuiteFigures::Perplexity {
            suite: suite.to_string(),
            ppl: *ppl,
            ppl_stderr: *ppl_stderr,
            ratio: vs_baseline.as_ref().map(|d| d.ratio),
            kl_mean: vs_baseline.as_ref().map(|d| d.kl_mean),
            top1_agreement: vs_baseline.as_ref().map(|d| d.top1_agreement),
        },
        Quality::Accuracy {
            n,
            mean,
            stderr,
            vs_baseline,
            ..
        } => SuiteFigures::Accuracy {
            suite: suite.to_string(),
            n: *n,
            mean: *mean,
            stderr: *stderr,
            vs_baseline: vs_baseline.as_ref().map(|d| d.verdict.clone()),
            significant: vs_baseline.as_ref().is_some_and(|d| d.significant),
        },
    }
}

/// The rows, in the first run's technique order. Every run must be of the same model file
/// and compare the same techniques against the same baseline; routing rows exist only in the
/// suites that score items one by one, so they are left out of that check and the rows come
/// from the first run that has the most.
pub fn rows(runs: &[RunReport]) -> Result<Vec<JoinedRow>> {
    let Some(first) = runs.first() else {
        return Err(ReportError::Incomparable("no runs given".into()));
    };
    let models = |r: &'_ RunReport| -> Vec<String> {
        r.techniques
            .iter()
            .filter(|t| t.routing.is_none())
            .map(|t| t.technique.clone())
            .collect()
    };
    let names = models(first);
    for r in &runs[1..] {
        let other = models(r);
        if r.model.sha256 != first.model.sha256 || other != names || r.baseline != first.baseline {
            return Err(ReportError::Incomparable(format!(
                "run `{}` ({}; {}) and run `{}` ({}; {}) are not the same model and techniques (hint: join the suites of one multi-suite run)",
                r.run_id,
                r.model.name,
                other.join(","),
                first.run_id,
                first.model.name,
                names.join(",")
            )));
        }
    }
    // Speed is a property of the weights, not of the suite: take the first run that measured it.
    let speed_of = |technique: &str| -> Option<&Speed> {
        runs.iter()
            .find_map(|r| r.technique(technique).and_then(|t| t.speed.as_ref()))
    };
    let base_speed = speed_of(&first.baseline);
    let widest = runs
        .iter()
        .rev()
        .max_by_key(|r| r.techniques.len())
        .unwrap_or(first);
    Ok(widest
        .techniques
        .iter()
        .map(|t| {
            let speed = speed_of(&t.technique);
            let ratio = |f: fn(&Speed) -> f64| match (speed, base_speed) {
                (Some(s), Some(b)) if f(b) > 0.0 => Some(f(s) / f(b)),
                _ => None,
            };
            JoinedRow {
                technique: t.technique.clone(),
                label: t.label.clone(),
                weight_bytes: t.memory.weight_bytes,
                bits_per_weight: t.memory.bits_per_weight,
                prefill_tok_per_s: speed.map(|s| s.prefill_tok_per_s),
                decode_tok_per_s: speed.map(|s| s.decode_tok_per_s),
                prefill_speedup: ratio(|s| s.prefill_tok_per_s),
                decode_speedup: ratio(|s| s.decode_tok_per_s),
                suites: runs
                    .iter()
                    .filter_map(|r| {
                        r.technique(&t.technique)
                            .map(|x| figures(&r.suite.name, &x.quality))
                    })
                    .collect(),
            }
        })
        .collect())
}

fn speed_cell(tok_per_s: Option<f64>, speedup: Option<f64>) -> String {
    match (tok_per_s, speedup) {
        (Some(v), Some(x)) => format!("{v:.1} ({x:.2}x)"),
        (Some(v), None) => format!("{v:.1}"),
        _ => "not measured".into(),
    }
}

/// Perplexities (and their ratios) span from ~1 to ~1e7 at 2 bits: fixed decimals below 1e4,
/// three significant figures above.
fn large_or_fixed(v: f64, decimals: usize) -> String {
    if v.abs() < 1e4 {
        format!("{v:.decimals$}")
    } else {
        format!("{v:.2e}")
    }
}

/// The joined table as markdown: `rows` are [`rows`] of the same (non-empty) `runs`.
pub fn markdown(runs: &[RunReport], rows: &[JoinedRow]) -> String {
    let first = &runs[0];
    let mut header: Vec<String> = [
        "Technique",
        "Weights",
        "Weight bytes",
        "Block bpw",
        "Prefill tok/s (vs baseline)",
        "Decode tok/s (vs baseline)",
    ]
    .map(String::from)
    .to_vec();
    for r in runs {
        match r.techniques.first().map(|t| &t.quality) {
            Some(Quality::Perplexity { .. }) => {
                let s = &r.suite.name;
                header.push(format!("{s}: PPL"));
                header.push("PPL ratio".into());
                header.push("Mean KL".into());
                header.push("Same top-1".into());
            }
            _ => {
                header.push(format!("{}: accuracy", r.suite.name));
                header.push(format!("vs {} (paired)", first.baseline));
            }
        }
    }
    let body = rows
        .iter()
        .map(|row| {
            // A figure against the baseline is absent for the baseline itself, and for a
            // technique the run could not compare (then "-", not "baseline").
            let missing = if row.technique == first.baseline {
                "baseline"
            } else {
                "-"
            };
            let mut cells = vec![
                row.technique.clone(),
                row.label.clone(),
                mib(row.weight_bytes),
                row.bits_per_weight
                    .map_or("-".into(), |b| format!("{b:.2}")),
                speed_cell(row.prefill_tok_per_s, row.prefill_speedup),
                speed_cell(row.decode_tok_per_s, row.decode_speedup),
            ];
            for f in &row.suites {
                match f {
                    SuiteFigures::Perplexity {
                        ppl,
                        ppl_stderr,
                        ratio,
                        kl_mean,
                        top1_agreement,
                        ..
                    } => {
                        // The error in the value's own notation: "3.50e4 ± 3.76e3".
                        cells.push(if ppl.abs() < 1e4 {
                            format!("{ppl:.2} ± {ppl_stderr:.2}")
                        } else {
                            format!("{ppl:.2e} ± {ppl_stderr:.2e}")
                        });
                        cells.push(ratio.map_or(missing.into(), |r| large_or_fixed(r, 3)));
                        cells.push(kl_mean.map_or("-".into(), |k| format!("{k:.3}")));
                        cells.push(
                            top1_agreement.map_or("-".into(), |a| format!("{:.1} %", 100.0 * a)),
                        );
                    }
                    SuiteFigures::Accuracy {
                        mean,
                        stderr,
                        vs_baseline,
                        ..
                    } => {
                        cells.push(format!("{:.1} ± {:.1} %", 100.0 * mean, 100.0 * stderr));
                        cells.push(vs_baseline.clone().unwrap_or_else(|| missing.into()));
                    }
                }
            }
            cells
        })
        .collect();
    let header_refs: Vec<&str> = header.iter().map(String::as_str).collect();
    let speed_note = match runs
        .iter()
        .find(|r| r.techniques.iter().any(|t| t.speed.is_some()))
    {
        Some(r) => format!(
            "Speed: medians of the speed test in run `{}` ({} threads, {}).",
            r.run_id, r.provenance.threads, r.provenance.device
        ),
        None => "Speed was not measured in this run.".into(),
    };
    format!(
        "## {} on {}: {}\n\n{}\n\n{speed_note} Quality: each suite's own run directory, beside this file, holds its per-item records and full report.\n",
        names_of(runs),
        first.model.name,
        first
            .techniques
            .iter()
            .map(|t| t.technique.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        markdown_table(&header_refs, body)
    )
}

fn names_of(runs: &[RunReport]) -> String {
    runs.iter()
        .map(|r| r.suite.name.as_str())
        .collect::<Vec<_>>()
        .join(" + ")
}
