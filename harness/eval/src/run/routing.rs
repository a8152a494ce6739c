//! Routing rows (`f16+route:int2-gptq@0.5`): a cascade built from the records of two rows of the
//! same run, without running either model again. Every item's log-likelihoods are recorded, so
//! the cheap row's confidence on each item says whether it keeps the item or hands it to the
//! base row, and the cascade's answer is the record of whichever model kept it. The sweep
//! (`@sweep`, and beside every routing row) evaluates every threshold the same way. Multiple
//! choice and generated answers share all of it but the confidence and an item's price.

use std::collections::BTreeMap;

use crate::error::{bail, Context, Result};
use effbench_datasets::{GenItem, McItem, ScoreNorm};
use effbench_report::records::GenRecord;
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
pub struct RouteRow<R> {
    pub label: String,
    pub records: BTreeMap<String, R>,
    pub measure: TechniqueMeasure,
    /// The sweep's section of the summary.
    pub markdown: String,
}

/// What a cascade needs from one row's record of an item, beyond the cheap row's confidence.
pub trait Routed: Clone {
    fn correct(&self) -> bool;
    /// Machine seconds the item took through a row measured at `speed`.
    fn seconds(&self, speed: &Speed) -> f64;
}

impl Routed for ItemRecord {
    fn correct(&self) -> bool {
        self.correct
    }

    /// Scoring runs no decode step: the context once, then every continuation, all at the
    /// row's measured prefill speed.
    fn seconds(&self, speed: &Speed) -> f64 {
        let tokens = self.context_tokens + self.continuation_tokens.iter().sum::<usize>();
        tokens as f64 / speed.prefill_tok_per_s
    }
}

impl Routed for GenRecord {
    fn correct(&self) -> bool {
        self.correct
    }

    /// The whole prompt at the prefill speed, as if it ran alone (the run shares the few-shot
    /// prefix across problems, which a served request would not), then every generated token,
    /// the one that ended it included, at the decode speed: the request shape of the main
    /// table, with this item's own lengths.
    fn seconds(&self, speed: &Speed) -> f64 {
        self.prompt_tokens as f64 / speed.prefill_tok_per_s
            + self.tokens.len() as f64 / speed.decode_tok_per_s
    }
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

/// The cheap row's confidence in a generated answer: the geometric-mean probability of every
/// token it generated.
fn gen_confidence(record: &GenRecord) -> Option<f64> {
    let (sum, tokens) = record.answer_logprob()?;
    effbench_routing::answer_confidence(sum, tokens)
}

/// Refuses a routing row whose signal needs choices to compare, in a suite of generated
/// answers, before anything runs.
pub fn check_generative(technique: &str) -> Result<()> {
    let Some(route) = super::technique_stack(technique)?.routing else {
        return Ok(());
    };
    match route.signal_for(false) {
        Signal::MeanLogprob => Ok(()),
        other => bail!(
            "technique `{technique}`: the {} signal compares an item's answer choices, and a generated answer has none (hint: route:{}@logprob:T, or a bare threshold, which takes logprob for generated answers)",
            other.name(),
            route.cheap
        ),
    }
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

pub struct RouteInputs<'a, R> {
    pub run_dir: &'a RunDir,
    pub technique: &'a str,
    pub route: &'a RouteSpec,
    /// The base row's name (the stack's weights).
    pub base: &'a str,
    /// The run's baseline row, which the main table compares every row with.
    pub baseline: &'a str,
    pub records: &'a BTreeMap<String, BTreeMap<String, R>>,
    pub measures: &'a BTreeMap<String, TechniqueMeasure>,
    pub options: &'a SweepOptions,
}

impl<R> RouteInputs<'_, R> {
    fn rows_of(&self, name: &str) -> Result<&BTreeMap<String, R>> {
        self.records.get(name).with_context(|| {
            format!(
                "routing row `{}` needs row `{name}` scored first",
                self.technique
            )
        })
    }
}

/// A routing row in a multiple-choice suite.
pub fn build_mc(inp: &RouteInputs<ItemRecord>, items: &[McItem]) -> Result<RouteRow<ItemRecord>> {
    let single_answer = inp
        .rows_of(&inp.route.cheap)?
        .values()
        .all(|r| r.logprobs.len() == 1);
    let signal = match inp.route.signal {
        _ if single_answer => Signal::MeanLogprob,
        Some(s) => s,
        None => Signal::Margin,
    };
    let ids: Vec<&str> = items.iter().map(|i| i.id.as_str()).collect();
    build(
        inp,
        signal,
        &ids,
        |i, record| {
            let norm = items[i]
                .rendered
                .as_ref()
                .map_or(ScoreNorm::Raw, |r| r.norm);
            confidence(signal, record, norm)
        },
        "records written before continuation lengths were kept",
    )
}

/// A routing row in a suite of generated answers, on the answers' mean token log-probability.
pub fn build_gen(inp: &RouteInputs<GenRecord>, items: &[GenItem]) -> Result<RouteRow<GenRecord>> {
    check_generative(inp.technique)?;
    let ids: Vec<&str> = items.iter().map(|i| i.id.as_str()).collect();
    build(
        inp,
        Signal::MeanLogprob,
        &ids,
        |_, record| gen_confidence(record),
        "records written before token log-probabilities were kept",
    )
}

/// Builds a routing row from its two rows' records over `items` (ids, in the suite's order),
/// the cheap row's confidence in item `i` from `confidence(i, record)`, and writes what it found
/// beside them: `routing-<technique>.json` (the sweep) and `.svg` (its curve). `no_confidence`
/// says which records lack a confidence.
fn build<R: Routed>(
    inp: &RouteInputs<R>,
    signal: Signal,
    items: &[&str],
    confidence: impl Fn(usize, &R) -> Option<f64>,
    no_confidence: &str,
) -> Result<RouteRow<R>> {
    let RouteInputs {
        run_dir,
        technique,
        route,
        base,
        baseline,
        ..
    } = *inp;
    let cheap = route.cheap.as_str();
    let (cheap_rows, base_rows) = (inp.rows_of(cheap)?, inp.rows_of(base)?);
    let speed_of = |name: &str| {
        row_speed(run_dir, inp.measures, name).ok_or_else(|| {
            crate::hint::hinted(
                format!("routing row `{technique}` prices each item from the measured speed of `{name}`, which this run did not measure"),
                "drop {no_speed}",
            )
        })
    };
    let (cheap_speed, base_speed) = (speed_of(cheap)?, speed_of(base)?);
    let mut outcomes = Vec::with_capacity(items.len());
    for (i, &item) in items.iter().enumerate() {
        let (Some(c), Some(b)) = (cheap_rows.get(item), base_rows.get(item)) else {
            return Err(crate::hint::hinted(
                format!("routing row `{technique}`: item `{item}` is not recorded by both `{cheap}` and `{base}`"),
                "finish the run with {resume}",
            ));
        };
        let confidence = confidence(i, c).with_context(|| {
            format!(
                "routing row `{technique}`: `{cheap}`'s record of item `{item}` has no {} confidence ({no_confidence}; rescore that row)",
                signal.name()
            )
        })?;
        outcomes.push(Outcome {
            item: item.to_string(),
            cheap_correct: c.correct(),
            base_correct: b.correct(),
            confidence,
            cheap_cost: c.seconds(&cheap_speed),
            base_cost: b.seconds(&base_speed),
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
    let records: BTreeMap<String, R> = outcomes
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

impl<R: serde::Serialize> RouteRow<R> {
    /// Makes the row one of the run's: its records file is replaced with the cascade's (they
    /// are derived, so a rerun rewrites them whole rather than appending), and its label,
    /// records, measure and summary section join the run's.
    pub fn join_run(
        self,
        run_dir: &RunDir,
        technique: &str,
        labels: &mut BTreeMap<String, String>,
        records: &mut BTreeMap<String, BTreeMap<String, R>>,
        measures: &mut BTreeMap<String, TechniqueMeasure>,
        summary: &mut String,
    ) -> Result<()> {
        eprintln!("{technique}: {}", self.label);
        run_dir.write_records(technique, &self.records)?;
        labels.insert(technique.to_string(), self.label);
        records.insert(technique.to_string(), self.records);
        measures.insert(technique.to_string(), self.measure);
        summary.push_str(&self.markdown);
        Ok(())
    }
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

    fn speed(prefill: f64, decode: f64) -> Speed {
        Speed {
            prefill_tok_per_s: prefill,
            decode_tok_per_s: decode,
            prompt_tokens: 20,
            generated_tokens: 10,
            prefill_samples: vec![],
            decode_samples: vec![],
        }
    }

    fn measured(speed: Speed) -> TechniqueMeasure {
        TechniqueMeasure {
            params: BTreeMap::new(),
            speed: Some(speed),
            memory: Memory {
                weight_bytes: 100,
                bits_per_weight: None,
                kv_bytes_per_token: None,
            },
            energy: Energy::NotMeasured { reason: "".into() },
            gpu: None,
            decoding: None,
            serving: None,
            routing: None,
        }
    }

    /// A generated answer of `probs.len()` tokens, each generated with that probability.
    fn answer(item: &str, probs: &[f64], correct: bool) -> GenRecord {
        GenRecord {
            item: item.into(),
            subject: "gsm8k".into(),
            prompt_tokens: 10,
            tokens: (0..probs.len() as u32).collect(),
            output: format!("{item} {correct}"),
            finish: "stop".into(),
            gold: "1".into(),
            strict: "1".into(),
            flexible: "1".into(),
            strict_correct: correct,
            flexible_correct: correct,
            correct,
            token_logprobs: probs.iter().map(|p| p.ln()).collect(),
        }
    }

    fn gen_item(id: &str) -> GenItem {
        GenItem {
            id: id.into(),
            subject: "gsm8k".into(),
            prompt: String::new(),
            gold: "1".into(),
            until: vec![],
            max_new_tokens: 8,
        }
    }

    /// Four problems. The cheap row's confidences (geometric-mean token probabilities) are
    /// a 0.6 (√(0.9·0.4)), b 0.2, c 0.5, d 0.9; it is right on a and c, the base row on a
    /// and b. Every item's prompt is 10 tokens; the cheap row runs 100 tok/s prefill and 20
    /// tok/s decode, the base row 50 and 5, and every base answer is 2 tokens, so a base item
    /// costs 10/50 + 2/5 = 0.6 s and the cheap items 0.1 + 0.05 per token: 0.2, 0.15, 0.3 and
    /// 0.15 s (0.8 s in all, against the base row's 2.4 s).
    fn gen_rows() -> BTreeMap<String, BTreeMap<String, GenRecord>> {
        let cheap = [
            answer("a", &[0.9, 0.4], true),
            answer("b", &[0.2], false),
            answer("c", &[0.5, 0.5, 0.5, 0.5], true),
            answer("d", &[0.9], false),
        ];
        let base = [
            answer("a", &[0.7, 0.7], true),
            answer("b", &[0.7, 0.7], true),
            answer("c", &[0.7, 0.7], false),
            answer("d", &[0.7, 0.7], false),
        ];
        let by_item = |rs: &[GenRecord]| rs.iter().map(|r| (r.item.clone(), r.clone())).collect();
        BTreeMap::from([
            ("int4".to_string(), by_item(&cheap)),
            ("f16".to_string(), by_item(&base)),
        ])
    }

    fn build_gen_at(
        technique: &str,
        records: &BTreeMap<String, BTreeMap<String, GenRecord>>,
        dir: &std::path::Path,
    ) -> Result<RouteRow<GenRecord>> {
        let measures = BTreeMap::from([
            ("int4".to_string(), measured(speed(100.0, 20.0))),
            ("f16".to_string(), measured(speed(50.0, 5.0))),
        ]);
        let stack = super::super::technique_stack(technique)?;
        let items: Vec<GenItem> = ["a", "b", "c", "d"].map(gen_item).to_vec();
        build_gen(
            &RouteInputs {
                run_dir: &RunDir {
                    path: dir.to_path_buf(),
                },
                technique,
                route: stack.routing.as_ref().unwrap(),
                base: &stack.weights_name,
                baseline: "f16",
                records,
                measures: &measures,
                options: &SweepOptions::default(),
            },
            &items,
        )
    }

    #[test]
    fn a_generative_cascade_keeps_confident_cheap_answers_and_prices_prompt_and_decode() {
        let dir = tempfile::tempdir().unwrap();
        let rows = gen_rows();
        let from = |row: &RouteRow<GenRecord>| -> String {
            row.records
                .iter()
                .map(|(item, r)| {
                    assert_eq!(r.item, *item);
                    if *r == rows["int4"][item] {
                        'C'
                    } else {
                        assert_eq!(*r, rows["f16"][item]);
                        'B'
                    }
                })
                .collect()
        };
        // (threshold, which row answers a b c d, items kept, cost ratio against the base row)
        for (threshold, want, kept, ratio) in [
            // b escalated: 0.8 + 0.6 = 1.4 s.
            ("0.4", "CBCC", 3, 1.4 / 2.4),
            // Only d kept: 0.8 + 3 · 0.6 = 2.6 s.
            ("0.7", "BBBC", 1, 2.6 / 2.4),
            ("0", "CCCC", 4, 0.8 / 2.4),
            // Everything escalated: both rows on every item.
            ("1", "BBBB", 0, 3.2 / 2.4),
        ] {
            for name in [
                format!("f16+route:int4@{threshold}"),
                format!("f16+route:int4@logprob:{threshold}"),
            ] {
                let row = build_gen_at(&name, &rows, dir.path()).unwrap();
                assert_eq!(from(&row), want, "{name}");
                let r = row.measure.routing.as_ref().unwrap();
                assert_eq!(r.signal, "logprob", "{name}");
                assert_eq!(r.cheap_served, kept, "{name}");
                assert!(
                    (r.cost_ratio_vs_base - ratio).abs() < 1e-12,
                    "{name}: {r:?}"
                );
                // On the baseline's request shape (20 prompt, 10 generated tokens): the cheap
                // row's 20/100 + 10/20 = 0.7 s plus the escalated share of the base row's
                // 20/50 + 10/5 = 2.4 s, against 2.4 s.
                let escalated = (4 - kept) as f64 / 4.0;
                let want_baseline = (0.7 + escalated * 2.4) / 2.4;
                let got = r.cost_ratio_vs_baseline.unwrap();
                assert!((got - want_baseline).abs() < 1e-12, "{name}: {got}");
                assert_eq!(row.measure.memory.weight_bytes, 200, "both models");
            }
        }
        // The sweep picks a threshold whose records it then takes, and writes its curve.
        let row = build_gen_at("f16+route:int4@sweep", &rows, dir.path()).unwrap();
        let r = row.measure.routing.unwrap();
        assert!(r.threshold_source.starts_with("sweep"), "{r:?}");
        let key = store::file_key("f16+route:int4@sweep");
        let sweep: serde_json::Value = serde_json::from_slice(
            &std::fs::read(dir.path().join(format!("routing-{key}.json"))).unwrap(),
        )
        .unwrap();
        let served: Vec<u64> = sweep["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["cheap_served"].as_u64().unwrap())
            .collect();
        // One point per distinct number of cheap answers kept, all-base first.
        assert_eq!(served, [0, 1, 2, 3, 4]);
        assert!(dir.path().join(format!("routing-{key}.svg")).exists());
    }

    #[test]
    fn a_generative_cascade_needs_every_token_logprob_and_the_logprob_signal() {
        let dir = tempfile::tempdir().unwrap();
        let mut rows = gen_rows();
        let old = rows.get_mut("int4").unwrap().get_mut("c").unwrap();
        old.token_logprobs.clear();
        let err = build_gen_at("f16+route:int4@0.5", &rows, dir.path())
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("item `c`") && err.contains("token log-probabilities"),
            "{err}"
        );
        // The base row's answers need none: it never decides.
        let mut rows = gen_rows();
        rows.get_mut("f16")
            .unwrap()
            .get_mut("c")
            .unwrap()
            .token_logprobs
            .clear();
        assert!(build_gen_at("f16+route:int4@0.5", &rows, dir.path()).is_ok());

        for refused in ["f16+route:int4@margin:0.5", "f16+route:int4@prob:0.9"] {
            let err = check_generative(refused).unwrap_err().to_string();
            assert!(err.contains("route:int4@logprob:T"), "{err}");
            assert_eq!(err.lines().count(), 1, "{err}");
        }
        for fine in [
            "f16+route:int4@0.5",
            "f16+route:int4@logprob:0.5",
            "f16+route:int4@sweep",
            "f16",
        ] {
            check_generative(fine).unwrap();
        }
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
        assert!((r.seconds(&speed) - 0.2).abs() < 1e-12);
    }
}
