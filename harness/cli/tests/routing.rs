//! Routing rows in one `effbench run` on the real SmolLM2: a cascade is built from its two rows'
//! records, item by item, exactly as its threshold says; threshold 0 is the cheap row and 1 the
//! base row; its cost is recomputed here from the records and the measured speeds; the sweep
//! is written beside it; and what it cannot do is refused in one line.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

mod support;

fn effbench(out: &Path, techniques: &str, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_effbench"))
        .args([
            "run",
            "--suite",
            "mmlu-lite",
            "--subjects",
            "anatomy,astronomy",
            "--items-per-subject",
            "6",
            "--techniques",
            techniques,
            "--threads",
            "2",
            "--speed-prompt",
            "16",
            "--speed-gen",
            "4",
            "--speed-reps",
            "1",
            "--run-id",
            "route",
            "--out",
        ])
        .arg(out)
        .args(extra)
        .output()
        .expect("run effbench")
}

/// A technique's records keyed by item; the file is named by the technique's file-safe form.
fn records(run: &Path, technique: &str) -> BTreeMap<String, Value> {
    let key: String = technique
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    support::technique_records(run, &key)
}

/// The softmax margin between the top two choices' log-likelihoods (MMLU's metric is the raw
/// log-likelihood), computed here independently of effbench-routing.
fn margin(record: &Value) -> f64 {
    let ll: Vec<f64> = record["logprobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let max = ll.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let mut p: Vec<f64> = ll.iter().map(|l| (l - max).exp()).collect();
    let z: f64 = p.iter().sum();
    p.iter_mut().for_each(|x| *x /= z);
    p.sort_by(|a, b| b.partial_cmp(a).unwrap());
    p[0] - p[1]
}

/// Machine seconds of one item: its tokens at the row's measured prefill speed.
fn seconds(record: &Value, prefill_tok_per_s: f64) -> f64 {
    let continuation: u64 = record["continuation_tokens"]
        .as_array()
        .map_or(0, |a| a.iter().map(|v| v.as_u64().unwrap()).sum());
    (record["context_tokens"].as_u64().unwrap() + continuation) as f64 / prefill_tok_per_s
}

#[test]
fn a_cascade_takes_each_item_from_the_row_its_threshold_picks_and_costs_both() {
    if !effbench_assets::cached_or_skip(&["smollm2-135m-instruct", "mmlu"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // The cheap row (as stored) and the base row (f16) are added by the run.
    let rows = "f16+route:as-stored@0,f16+route:as-stored@1,f16+route:as-stored@0.6,f16+route:as-stored@sweep";
    let out = effbench(dir.path(), rows, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = dir.path().join("route");
    let cheap = records(&run, "as-stored");
    let base = records(&run, "f16");
    assert_eq!(cheap.len(), 12);
    assert_eq!(records(&run, "f16+route:as-stored@0"), cheap);
    assert_eq!(records(&run, "f16+route:as-stored@1"), base);

    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("report.json")).unwrap()).unwrap();
    let rows: Vec<&Value> = report["techniques"].as_array().unwrap().iter().collect();
    let names: Vec<&str> = rows
        .iter()
        .map(|t| t["technique"].as_str().unwrap())
        .collect();
    assert_eq!(&names[..2], ["f16", "as-stored"], "{names:?}");
    let row = |name: &str| *rows.iter().find(|t| t["technique"] == name).unwrap();
    let pp = |name: &str| row(name)["speed"]["prefill_tok_per_s"].as_f64().unwrap();
    let (pp_cheap, pp_base) = (pp("as-stored"), pp("f16"));
    let base_total: f64 = base.values().map(|r| seconds(r, pp_base)).sum();

    for name in [
        "f16+route:as-stored@0",
        "f16+route:as-stored@1",
        "f16+route:as-stored@0.6",
        "f16+route:as-stored@sweep",
    ] {
        let routing = &row(name)["routing"];
        assert_eq!(routing["cheap"], "as-stored", "{name}");
        assert_eq!(routing["base"], "f16", "{name}");
        assert_eq!(routing["signal"], "margin", "{name}");
        let t = routing["threshold"].as_f64().unwrap();
        let routed = records(&run, name);
        let mut kept = 0;
        let mut cost = 0.0;
        for (item, c) in &cheap {
            cost += seconds(c, pp_cheap);
            let keeps = margin(c) >= t && t < 1.0;
            let want = if keeps { c } else { &base[item] };
            if keeps {
                kept += 1;
            } else {
                cost += seconds(&base[item], pp_base);
            }
            assert_eq!(&routed[item], want, "{name}: item {item}");
        }
        assert_eq!(routing["cheap_served"].as_u64().unwrap(), kept, "{name}");
        let ratio = routing["cost_ratio_vs_base"].as_f64().unwrap();
        assert!(
            (ratio - cost / base_total).abs() < 1e-9,
            "{name}: cost ratio {ratio} against {} recomputed",
            cost / base_total
        );
        // The main table prices the cascade on the baseline's request shape: the cheap row's
        // request plus the escalated share of the base row's.
        let speed = |name: &str| &row(name)["speed"];
        let shape = speed("f16");
        let request = |s: &Value| {
            shape["prompt_tokens"].as_f64().unwrap() / s["prefill_tok_per_s"].as_f64().unwrap()
                + shape["generated_tokens"].as_f64().unwrap()
                    / s["decode_tok_per_s"].as_f64().unwrap()
        };
        let escalated = (12 - kept) as f64 / 12.0;
        let want = (request(speed("as-stored")) + escalated * request(shape)) / request(shape);
        let got = routing["cost_ratio_vs_baseline"].as_f64().unwrap();
        assert!((got - want).abs() < 1e-9, "{name}: {got} against {want}");
    }
    assert_eq!(row("f16+route:as-stored@0")["routing"]["cheap_served"], 12);
    assert_eq!(row("f16+route:as-stored@1")["routing"]["cheap_served"], 0);

    let beside = |ext: &str| support::file_named(&run, "routing-f16_route_as-stored_sweep", ext);
    let sweep: Value =
        serde_json::from_str(&std::fs::read_to_string(beside(".json")).unwrap()).unwrap();
    let points = sweep["points"].as_array().unwrap();
    assert!(points.len() >= 2);
    assert_eq!(points[0]["cheap_served"], 0);
    assert_eq!(points.last().unwrap()["cheap_served"], 12);
    let svg = std::fs::read_to_string(beside(".svg")).unwrap();
    assert!(svg.contains("<svg"));
    let summary = std::fs::read_to_string(run.join("summary.md")).unwrap();
    assert!(
        summary.contains("### Routing: `as-stored` first, then `f16`")
            && summary.contains("Row `f16+route:as-stored@sweep`."),
        "{summary}"
    );
    let table = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(table.contains("cascade: as-stored alone on"), "{table}");
}

#[test]
fn what_a_cascade_cannot_do_is_refused_in_one_line_before_scoring() {
    let dir = tempfile::tempdir().unwrap();
    for (rows, extra, want) in [
        (
            "f16+route:spec:ngram@0.5",
            &[][..],
            "not a weights technique",
        ),
        (
            "f16+route:as-stored@0.5+kv:paged",
            &[][..],
            "stacks routing",
        ),
        ("f16+route:f16@0.5", &[][..], "to itself"),
        ("f16+route:as-stored@1.5", &[][..], "outside 0..1"),
        (
            "f16+route:as-stored@0.5",
            &["--no-speed"][..],
            "measured speeds",
        ),
        (
            "f16+route:as-stored@0.5",
            &["--shard", "0/2"][..],
            "shards split",
        ),
    ] {
        let out = effbench(dir.path(), rows, extra);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{rows} {extra:?}");
        assert!(err.contains(want), "{rows} {extra:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{rows} {extra:?}: {err}");
        assert!(
            !dir.path().join("route").join("run.json").exists(),
            "{rows} {extra:?} started a run"
        );
    }
}

fn gsm8k(out: &Path, techniques: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_effbench"))
        .args([
            "run",
            "--suite",
            "gsm8k",
            "--items-per-subject",
            "4",
            "--max-gen-tokens",
            "8",
            "--techniques",
            techniques,
            "--threads",
            "2",
            "--speed-prompt",
            "16",
            "--speed-gen",
            "4",
            "--speed-reps",
            "1",
            "--run-id",
            "gen",
            "--out",
        ])
        .arg(out)
        .output()
        .expect("run effbench")
}

/// The geometric-mean probability of a generated answer's tokens, from its recorded
/// log-probabilities, computed here independently of effbench-routing.
fn answer_confidence(record: &Value) -> f64 {
    let lps: Vec<f64> = record["token_logprobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(
        lps.len(),
        record["tokens"].as_array().unwrap().len(),
        "{record}"
    );
    assert!(lps.iter().all(|l| l.is_finite() && *l <= 0.0), "{record}");
    (lps.iter().sum::<f64>() / lps.len() as f64).exp()
}

/// Machine seconds of one generated answer: its prompt at the row's prefill speed and every
/// generated token at its decode speed.
fn gen_seconds(record: &Value, speed: &Value) -> f64 {
    record["prompt_tokens"].as_f64().unwrap() / speed["prefill_tok_per_s"].as_f64().unwrap()
        + record["tokens"].as_array().unwrap().len() as f64
            / speed["decode_tok_per_s"].as_f64().unwrap()
}

#[test]
fn a_generative_cascade_keeps_the_cheap_answer_its_token_logprobs_trust() {
    if !effbench_assets::cached_or_skip(&["smollm2-135m-instruct", "olmes-tasks"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Margin and prob compare answer choices, which a generated answer lacks.
    let refused = gsm8k(dir.path(), "f16+route:as-stored@margin:0.5");
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(err.contains("@logprob:"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(!dir.path().join("gen").join("run.json").exists());

    let names = [
        "f16+route:as-stored@0",
        "f16+route:as-stored@1",
        "f16+route:as-stored@logprob:0.5",
        "f16+route:as-stored@sweep",
    ];
    let out = gsm8k(dir.path(), &names.join(","));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = dir.path().join("gen");
    let cheap = records(&run, "as-stored");
    let base = records(&run, "f16");
    assert_eq!(cheap.len(), 4);
    assert_eq!(records(&run, names[0]), cheap);
    assert_eq!(records(&run, names[1]), base);

    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["suite"]["kind"], "generation");
    let rows = report["techniques"].as_array().unwrap();
    let row = |name: &str| rows.iter().find(|t| t["technique"] == name).unwrap();
    let (cheap_speed, base_speed) = (&row("as-stored")["speed"], &row("f16")["speed"]);
    let base_total: f64 = base.values().map(|r| gen_seconds(r, base_speed)).sum();
    for name in names {
        let routing = &row(name)["routing"];
        assert_eq!(routing["signal"], "logprob", "{name}");
        let t = routing["threshold"].as_f64().unwrap();
        let routed = records(&run, name);
        let (mut kept, mut cost) = (0, 0.0);
        for (item, c) in &cheap {
            cost += gen_seconds(c, cheap_speed);
            let keeps = answer_confidence(c) >= t && t < 1.0;
            if keeps {
                kept += 1;
            } else {
                cost += gen_seconds(&base[item], base_speed);
            }
            let want = if keeps { c } else { &base[item] };
            assert_eq!(&routed[item], want, "{name}: item {item}");
        }
        assert_eq!(routing["cheap_served"].as_u64().unwrap(), kept, "{name}");
        let ratio = routing["cost_ratio_vs_base"].as_f64().unwrap();
        assert!(
            (ratio - cost / base_total).abs() < 1e-9,
            "{name}: cost ratio {ratio} against {} recomputed",
            cost / base_total
        );
    }
    let summary = std::fs::read_to_string(run.join("summary.md")).unwrap();
    assert!(
        summary.contains("### Routing: `as-stored` first, then `f16`")
            && summary.contains("Row `f16+route:as-stored@sweep`."),
        "{summary}"
    );
}
