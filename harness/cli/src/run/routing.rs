//! Routing rows (`f16+route:int2-gptq@0.5`): a cascade built from the records of two rows of the
//! same run, without running either model again. Every item's log-likelihoods are recorded, so
//! the cheap row's confidence on each item says whether it keeps the item or hands it to the
//! base row, and the cascade's answer is the record of whichever model kept it. The sweep
//! (`@sweep`, and beside every routing row) evaluates every threshold the same way.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use effbench_datasets::{McItem, ScoreNorm};
use effbench_report::schema::{Energy, Memory, RoutingReport, Speed};
use effbench_routing::{Outcome, RouteSpec, Signal, SweepOptions, Threshold};

use super::mc::{scores_by, ItemRecord};
use super::record::TechniqueMeasure;
use super::store::{self, RunDir};

/// Adds, before each routing row, the two rows it is built from when the list lacks them
/// earlier; a later listing of such a row is then the same row, not a second one.
pub fn with_route_rows(techniques: &[String]) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for t in techniques {
        if out.contains(t) {
            continue;
        }
        if let Some((cheap, base)) = super::technique_stack(t)?.route_rows() {
            if cheap == base {
                bail!("technique `{t}` routes from `{base}` to itself (hint: route to a cheaper model, e.g. f16+route:int2-gptq@0.5)");
            }
            for needed in [base, cheap] {
                if !out.contains(&needed) {
                    out.push(needed);
                }
            }
        }
        out.push(t.clone());
    }
    Ok(out)
}

/// Whether a technique name is a routing row.
pub fn is_route(technique: &str) -> bool {
    super::technique_stack(technique).is_ok_and(|s| s.routing.is_some())
}

/// A routing row, built.
pub struct RouteRow {
    pub label: String,
    pub records: BTreeMap<String, ItemRecord>,
    pub measure: TechniqueMeasure,
    /// The sweep's section of the summary.
    pub markdown: String,
}

/// Machine time of one item through a row: the tokens it ran (the context once, then every
/// continuation) at the row's measured prefill speed.
fn item_seconds(record: &ItemRecord, speed: &Speed) -> f64 {
    let tokens = record.context_tokens + record.continuation_tokens.iter().sum::<usize>();
    tokens as f64 / speed.prefill_tok_per_s
}

/// The cheap row's confidence in its answer. A single continuation (LAMBADA's last word) has
/// no rival to compare with, so it is judged by its mean token log-probability whatever the
/// signal.
fn confidence(signal: Signal, record: &ItemRecord, norm: ScoreNorm) -> Option<f64> {
    if record.logprobs.len() == 1 || signal == Signal::MeanLogprob {
        let i = record.pred.min(record.logprobs.len().checked_sub(1)?);
        let tokens = record.continuation_tokens.get(i).copied().unwrap_or(1);
        return effbench_routing::answer_confidence(record.logprobs[i], tokens);
    }
    effbench_routing::choice_confidence(signal, &scores_by(record, norm)?)
}

/// A row's measured speed: from this run, else from the suite of the same multi-suite run that
/// measured it (speed is measured in the first suite only).
fn row_speed(
    run_dir: &RunDir,
    measures: &BTreeMap<String, TechniqueMeasure>,
    technique: &str,
) -> Option<Speed> {
    if let Some(s) = measures.get(technique).and_then(|m| m.speed.clone()) {
        return Some(s);
    }
    let parent = run_dir.path.parent()?;
    if !super::is_suites_run(parent) {
        return None;
    }
    let file = format!("measure-{}.json", store::file_key(technique));
    std::fs::read_dir(parent)
        .ok()?
        .flatten()
        .filter(|e| e.path() != run_dir.path)
        .find_map(|e| {
            let m: TechniqueMeasure = RunDir { path: e.path() }.read_json(&file).ok()?;
            m.speed
        })
}

pub struct RouteInputs<'a> {
    pub run_dir: &'a RunDir,
    pub technique: &'a str,
    pub route: &'a RouteSpec,
    /// The base row's name (the stack's weights).
    pub base: &'a str,
    /// The run's baseline row, which the main table compares every row with.
    pub baseline: &'a str,
    pub items: &'a [McItem],
    pub records: &'a BTreeMap<String, BTreeMap<String, ItemRecord>>,
    pub measures: &'a BTreeMap<String, TechniqueMeasure>,
    pub options: &'a SweepOptions,
}

/// Builds a routing row from its two rows' records and writes what it found beside them:
/// `routing-<technique>.json` (the sweep) and `.svg` (its curve).
pub fn build(inp: &RouteInputs) -> Result<RouteRow> {
    let RouteInputs {
        run_dir,
        technique,
        route,
        base,
        baseline,
        ..
    } = *inp;
    let cheap = route.cheap.as_str();
    let rows_of = |name: &str| {
        inp.records
            .get(name)
            .with_context(|| format!("routing row `{technique}` needs row `{name}` scored first"))
    };
    let (cheap_rows, base_rows) = (rows_of(cheap)?, rows_of(base)?);
    let speed_of = |name: &str| {
        row_speed(run_dir, inp.measures, name).with_context(|| {
            format!(
                "routing row `{technique}` prices each item from the measured speed of `{name}`, which this run did not measure (hint: drop --no-speed)"
            )
        })
    };
    let (cheap_speed, base_speed) = (speed_of(cheap)?, speed_of(base)?);
    let single_answer = cheap_rows.values().all(|r| r.logprobs.len() == 1);
    let signal = match route.signal {
        _ if single_answer => Signal::MeanLogprob,
        Some(s) => s,
        None => Signal::Margin,
    };
    let mut outcomes = Vec::with_capacity(inp.items.len());
    for item in inp.items {
        let (Some(c), Some(b)) = (cheap_rows.get(&item.id), base_rows.get(&item.id)) else {
            bail!(
                "routing row `{technique}`: item `{}` is not recorded by both `{cheap}` and `{base}` (hint: finish the run with --resume)",
                item.id
            );
        };
        let norm = item.rendered.as_ref().map_or(ScoreNorm::Raw, |r| r.norm);
        let confidence = confidence(signal, c, norm).with_context(|| {
            format!(
                "routing row `{technique}`: `{cheap}`'s record of item `{}` has no {} confidence (records written before continuation lengths were kept; rescore that row)",
                item.id,
                signal.name()
            )
        })?;
        outcomes.push(Outcome {
            item: item.id.clone(),
            cheap_correct: c.correct,
            base_correct: b.correct,
            confidence,
            cheap_cost: item_seconds(c, &cheap_speed),
            base_cost: item_seconds(b, &base_speed),
        });
    }
    let sweep = effbench_routing::sweep(&outcomes, signal, inp.options)
        .with_context(|| format!("routing row `{technique}`"))?;
    let (threshold, threshold_source) = match route.threshold {
        Threshold::At(t) => (t, "given".to_string()),
        Threshold::Sweep => (
            sweep.routable.threshold,
            format!("sweep: {}", sweep.routable.method),
        ),
    };
    let point = effbench_routing::cascade(&outcomes, threshold)?;
    let records: BTreeMap<String, ItemRecord> = outcomes
        .iter()
        .map(|o| {
            let from = if effbench_routing::keeps(o.confidence, threshold) {
                cheap_rows
            } else {
                base_rows
            };
            (o.item.clone(), from[&o.item].clone())
        })
        .collect();
    // The main table prices every row on the baseline's request shape (its speed test's prompt
    // and generated tokens), so a cascade there is the cheap row's request plus the escalated
    // share of the base row's: all to the cheap row costs exactly what the cheap row costs.
    let cost_ratio_vs_baseline = row_speed(run_dir, inp.measures, baseline).map(|shape| {
        let request = |s: &Speed| {
            shape.prompt_tokens as f64 / s.prefill_tok_per_s
                + shape.generated_tokens as f64 / s.decode_tok_per_s
        };
        let escalated = (point.n - point.cheap_served) as f64 / point.n as f64;
        (request(&cheap_speed) + escalated * request(&base_speed)) / request(&shape)
    });
    let weight_bytes = |name: &str| inp.measures.get(name).map_or(0, |m| m.memory.weight_bytes);
    let mut params = BTreeMap::new();
    params.insert("cheap".into(), cheap.to_string());
    params.insert("base".into(), base.to_string());
    params.insert("signal".into(), signal.name().to_string());
    params.insert("signal_definition".into(), signal.describe().to_string());
    let measure = TechniqueMeasure {
        params,
        speed: None,
        // Both models stay loaded: any item may need either.
        memory: Memory {
            weight_bytes: weight_bytes(cheap) + weight_bytes(base),
            bits_per_weight: None,
            kv_bytes_per_token: None,
        },
        energy: Energy::NotMeasured {
            reason: "a cascade is priced from its two rows' speeds, not run".into(),
        },
        gpu: None,
        decoding: None,
        serving: None,
        routing: Some(RoutingReport {
            cheap: cheap.to_string(),
            base: base.to_string(),
            signal: signal.name().to_string(),
            threshold,
            threshold_source,
            items: point.n,
            cheap_served: point.cheap_served,
            cost_ratio_vs_base: point.cost_ratio,
            cost_ratio_vs_baseline,
        }),
    };
    let key = store::file_key(technique);
    run_dir.write_json(&format!("routing-{key}.json"), &sweep)?;
    let title = format!("{technique}: accuracy against machine time");
    let svg_name = format!("routing-{key}.svg");
    run_dir.write_atomic(&svg_name, effbench_routing::svg(&sweep, &title)?.as_bytes())?;
    // The section's own heading names the cheap and base rows; the row's name goes under it.
    let markdown = format!(
        "\n{}\nRow `{technique}`. Curve: [{svg_name}]({svg_name}); every threshold: `routing-{key}.json`.\n",
        effbench_routing::markdown(&sweep, cheap, base)
    );
    Ok(RouteRow {
        label: format!(
            "cascade {cheap} -> {base}, {} >= {threshold:.2}",
            signal.name()
        ),
        records,
        measure,
        markdown,
    })
}

/// Replaces a routing row's records file with its cascade's records: they are derived, so a
/// rerun rewrites them whole rather than appending.
pub fn write_records(
    run_dir: &RunDir,
    technique: &str,
    records: &BTreeMap<String, ItemRecord>,
) -> Result<()> {
    store::write_atomic(
        &run_dir.records_path(technique),
        &store::record_lines(records.values())?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_routing_row_brings_its_two_rows_before_it() {
        assert_eq!(
            with_route_rows(&names(&["f16+route:int2-gptq@0.5"])).unwrap(),
            names(&["f16", "int2-gptq", "f16+route:int2-gptq@0.5"])
        );
        // Listed later, the cheap row moves up and is not scored twice.
        assert_eq!(
            with_route_rows(&names(&["f16", "f16+route:int4@sweep", "int4"])).unwrap(),
            names(&["f16", "int4", "f16+route:int4@sweep"])
        );
        assert!(with_route_rows(&names(&["int4+route:int4@0.5"])).is_err());
    }

    fn record(logprobs: &[f64], pred: usize, tokens: &[usize]) -> ItemRecord {
        ItemRecord {
            item: "t/0".into(),
            subject: "t".into(),
            logprobs: logprobs.to_vec(),
            pred,
            answer: 0,
            correct: pred == 0,
            context_tokens: 10,
            continuation_tokens: tokens.to_vec(),
            continuation_chars: vec![],
            choice_chars: vec![],
            shared_lead_tokens: 0,
            shared_lead_logprob: 0.0,
            greedy: vec![],
        }
    }

    #[test]
    fn confidence_reads_the_metric_scores_or_a_lone_answer() {
        let r = record(&[0.6f64.ln(), 0.3f64.ln(), 0.1f64.ln()], 0, &[1, 1, 1]);
        let margin = confidence(Signal::Margin, &r, ScoreNorm::Raw).unwrap();
        assert!((margin - 0.3).abs() < 1e-12, "{margin}");
        let prob = confidence(Signal::TopProb, &r, ScoreNorm::Raw).unwrap();
        assert!((prob - 0.6).abs() < 1e-12, "{prob}");
        // Per token: 2 tokens make the first choice's mean ln(0.6)/2.
        let r = record(&[0.36f64.ln(), 0.5f64.ln()], 1, &[2, 1]);
        let p = confidence(Signal::MeanLogprob, &r, ScoreNorm::Raw).unwrap();
        assert!((p - 0.5).abs() < 1e-12, "{p}");
        let lone = record(&[0.25f64.ln()], 0, &[2]);
        let p = confidence(Signal::Margin, &lone, ScoreNorm::Greedy).unwrap();
        assert!((p - 0.5).abs() < 1e-12, "{p}");
    }

    #[test]
    fn an_item_costs_its_tokens_at_the_rows_prefill_speed() {
        let speed = Speed {
            prefill_tok_per_s: 100.0,
            decode_tok_per_s: 10.0,
            prompt_tokens: 512,
            generated_tokens: 128,
            prefill_samples: vec![],
            decode_samples: vec![],
        };
        let r = record(&[-1.0, -2.0], 0, &[3, 7]);
        assert!((item_seconds(&r, &speed) - 0.2).abs() < 1e-12);
    }
}
