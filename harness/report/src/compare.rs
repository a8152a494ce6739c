//! Runs from different machines or effbench versions side by side, aligned by model and
//! technique. Only runs of the same suite manifest compare: anything else scored other items.

use crate::cost::{cost, Price};
use crate::error::{ReportError, Result};
use crate::schema::RunReport;
use crate::tables::hardware_summary;

/// Refuses runs that did not score the same items, naming the first that differs.
pub fn check_comparable(runs: &[RunReport]) -> Result<()> {
    let Some(first) = runs.first() else {
        return Err(ReportError::Incomparable("no runs given".into()));
    };
    for r in &runs[1..] {
        if r.suite.manifest_hash != first.suite.manifest_hash {
            return Err(ReportError::Incomparable(format!(
                "run `{}` scored suite manifest {} ({}, {}) but run `{}` scored {} ({}, {}); they measured different items, so their figures do not compare (hint: compare runs of the same suite, seed, shots and subjects)",
                r.run_id,
                short(&r.suite.manifest_hash),
                r.suite.name,
                r.suite.size,
                first.run_id,
                short(&first.suite.manifest_hash),
                first.suite.name,
                first.suite.size
            )));
        }
    }
    Ok(())
}

fn short(hash: &str) -> &str {
    crate::tables::short_hash(hash)
}

/// One row per (model, technique, run); rows of the same model and technique sit together.
/// Speeds stay per machine: a row is one run's measurement, never an average over machines.
pub fn compare_markdown(runs: &[RunReport], prices: &[Price]) -> Result<String> {
    check_comparable(runs)?;
    let mut keys: Vec<(String, String)> = Vec::new();
    for r in runs {
        for t in &r.techniques {
            let key = (r.model.name.clone(), t.label.clone());
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
    }
    let mut b = tabled::builder::Builder::default();
    b.push_record([
        "Model",
        "Technique",
        "Run",
        "Hardware",
        "effbench",
        "Quality",
        "Prefill tok/s",
        "Decode tok/s",
        "$/1M output",
    ]);
    for (model, label) in &keys {
        for (run, price) in runs.iter().zip(prices) {
            if &run.model.name != model {
                continue;
            }
            let Some(t) = run.techniques.iter().find(|t| &t.label == label) else {
                continue;
            };
            let quality = match &t.quality {
                crate::schema::Quality::Accuracy { mean, stderr, .. } => {
                    format!("{:.1} ± {:.1}% acc", 100.0 * mean, 100.0 * stderr)
                }
                crate::schema::Quality::Perplexity {
                    ppl, ppl_stderr, ..
                } => format!("ppl {ppl:.3} ± {ppl_stderr:.3}"),
            };
            let (pp, tg, out) = match &t.speed {
                Some(s) => (
                    format!("{:.1}", s.prefill_tok_per_s),
                    format!("{:.1}", s.decode_tok_per_s),
                    format!("${:.4}", cost(s, price).usd_per_million_output),
                ),
                None => ("-".into(), "-".into(), "-".into()),
            };
            b.push_record([
                model.clone(),
                format!("{} ({})", t.technique, t.label),
                run.run_id.clone(),
                hardware_summary(
                    &run.provenance.hardware,
                    &run.provenance.device,
                    run.provenance.threads,
                ),
                format!(
                    "{} ({})",
                    run.provenance.effbench_version,
                    short(&run.provenance.git_commit)
                ),
                quality,
                pp,
                tg,
                out,
            ]);
        }
    }
    let first = &runs[0];
    Ok(format!(
        "## Comparison: {} ({} {}, manifest {})\n\n{}\n\nEach row is one run's own measurement on its own machine; speeds and costs are never averaged across machines. Costs use each run's own hardware price.\n",
        first.suite.name,
        first.suite.size,
        match first.suite.kind {
            crate::schema::SuiteKind::MultipleChoice => "items",
            crate::schema::SuiteKind::Generation => "problems",
            crate::schema::SuiteKind::Perplexity => "scored tokens",
        },
        short(&first.suite.manifest_hash),
        b.build().with(tabled::settings::Style::markdown())
    ))
}
