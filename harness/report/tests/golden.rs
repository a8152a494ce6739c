//! Golden files for the rendered report, reading of the previous schema, and comparisons.
//! Set UPDATE_GOLDEN=1 to rewrite the golden files after an intended change, then review the
//! diff like any other.

use std::path::{Path, PathBuf};

use effbench_report::schema::{Quality, SuiteKind};
use effbench_report::{compare, joined, render_dir, tables, PriceTable, RunReport};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn check_golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (hint: UPDATE_GOLDEN=1)", path.display()));
    assert_eq!(
        actual,
        expected,
        "{} differs from the rendered output (UPDATE_GOLDEN=1 rewrites it)",
        path.display()
    );
}

/// A copy of a fixture run directory to render into, so the fixtures stay untouched.
fn scratch(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(fixture(name)).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
    }
    dir
}

fn shipped_price(report: &RunReport) -> effbench_report::Price {
    PriceTable::shipped()
        .for_hardware(
            &report.provenance.hardware,
            &report.provenance.device,
            report.provenance.threads,
        )
        .unwrap()
}

#[test]
fn schema_2_report_renders_to_the_golden_markdown_and_json() {
    let dir = scratch("v2-ppl");
    let report = RunReport::load_dir(dir.path()).unwrap();
    let price = shipped_price(&report);
    let rendered = render_dir(&report, &price, dir.path()).unwrap();
    check_golden("v2-ppl.md", &rendered.markdown);
    check_golden(
        "v2-ppl.view.json",
        &(serde_json::to_string_pretty(&rendered.view).unwrap() + "\n"),
    );
    let svg = std::fs::read_to_string(rendered.plot.expect("a priced run has a plot")).unwrap();
    assert!(svg.starts_with("<svg"));
    assert!(svg.contains("Pareto frontier"));
    assert!(svg.contains("as-stored"));
    // The file on disk is the markdown returned.
    let on_disk = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
    assert_eq!(on_disk, rendered.markdown);
}

#[test]
fn schema_2_round_trips_through_json() {
    let report = RunReport::load_dir(&fixture("v2-ppl")).unwrap();
    let text = serde_json::to_string(&report).unwrap();
    let back: RunReport = serde_json::from_str(&text).unwrap();
    assert_eq!(back, report);
}

#[test]
fn schema_1_multiple_choice_run_reads_back() {
    let report = RunReport::load_dir(&fixture("v1-mmlu")).unwrap();
    assert_eq!(report.schema_version, effbench_report::SCHEMA_VERSION);
    assert_eq!(report.suite.kind, SuiteKind::MultipleChoice);
    assert_eq!(report.suite.size, 570);
    assert_eq!(report.baseline, "f16");
    let stored = report.technique("as-stored").unwrap();
    match &stored.quality {
        Quality::Accuracy {
            correct,
            n,
            vs_baseline,
            per_subject,
            ..
        } => {
            assert_eq!((*correct, *n), (123, 570));
            assert!(!vs_baseline.as_ref().unwrap().significant);
            assert_eq!(per_subject.len(), 57);
        }
        other => panic!("expected accuracy, got {other:?}"),
    }
    // Schema 1 recorded no speed: it reads as absent, and the tables say so.
    assert!(stored.speed.is_none());
    let view = tables::view(&report, &shipped_price(&report));
    assert!(view.technique_takeaway.contains("speed was not measured"));
    let md = tables::markdown(&report, &view);
    check_golden("v1-mmlu.md", &md);
}

#[test]
fn schema_1_perplexity_run_reads_back() {
    let report = RunReport::load_dir(&fixture("v1-ppl")).unwrap();
    assert_eq!(report.suite.kind, SuiteKind::Perplexity);
    match &report.technique("as-stored").unwrap().quality {
        Quality::Perplexity {
            ppl, vs_baseline, ..
        } => {
            assert!((ppl - 24.4611).abs() < 1e-3);
            let d = vs_baseline.as_ref().unwrap();
            assert!((d.kl_mean - 0.00282).abs() < 1e-5);
            // ln(1.0037) / 0.00182 = 2.03 standard errors: significant at 5%.
            assert!(d.significant());
        }
        other => panic!("expected perplexity, got {other:?}"),
    }
}

#[test]
fn a_newer_schema_is_refused_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("v2-ppl/report.json")).unwrap())
            .unwrap();
    v["schema_version"] = 99.into();
    std::fs::write(dir.path().join("report.json"), v.to_string()).unwrap();
    let err = RunReport::load_dir(dir.path()).unwrap_err().to_string();
    assert!(err.contains("newer") && err.contains("upgrade"), "{err}");
    let empty = tempfile::tempdir().unwrap();
    let err = RunReport::load_dir(empty.path()).unwrap_err().to_string();
    assert!(err.contains("not a run directory"), "{err}");
}

#[test]
fn compare_aligns_same_suite_runs_and_refuses_different_manifests() {
    let a = RunReport::load_dir(&fixture("v2-ppl")).unwrap();
    let mut b = a.clone();
    b.run_id = "other-machine".into();
    b.provenance.threads = 1;
    let prices = vec![shipped_price(&a), shipped_price(&b)];
    let md = compare::compare_markdown(&[a.clone(), b.clone()], &prices).unwrap();
    assert!(md.contains("other-machine") && md.contains(&a.run_id));
    assert!(md.contains("2 threads") && md.contains("1 threads"));

    let mmlu = RunReport::load_dir(&fixture("v1-mmlu")).unwrap();
    let err = compare::compare_markdown(&[a, mmlu], &prices)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cannot be compared") && err.contains("different items"),
        "{err}"
    );
}

/// `run --suite A,B`'s joined table: a row per technique, the speed from the run that measured
/// it, each suite's columns in order; runs of other techniques are refused.
#[test]
fn suites_join_by_technique_into_the_golden_table() {
    let ppl = RunReport::load_dir(&fixture("v2-ppl")).unwrap();
    let mut acc = ppl.clone();
    acc.suite.name = "mmlu-lite".into();
    acc.suite.kind = SuiteKind::MultipleChoice;
    for (i, t) in acc.techniques.iter_mut().enumerate() {
        t.speed = None;
        t.quality = Quality::Accuracy {
            n: 100,
            correct: 50 + i,
            mean: (50 + i) as f64 / 100.0,
            stderr: 0.05,
            ci_low: 0.4,
            ci_high: 0.6,
            vs_baseline: None,
            per_subject: Default::default(),
        };
    }
    let runs = [ppl.clone(), acc.clone()];
    let rows = joined::rows(&runs).unwrap();
    check_golden("joined.md", &joined::markdown(&runs, &rows));
    assert_eq!(rows.len(), ppl.techniques.len());
    for (row, t) in rows.iter().zip(&ppl.techniques) {
        assert_eq!(row.suites.len(), 2);
        assert_eq!(
            row.decode_tok_per_s,
            t.speed.as_ref().map(|s| s.decode_tok_per_s)
        );
    }
    assert_eq!(rows[0].decode_speedup, Some(1.0));
    acc.techniques.pop();
    let err = joined::rows(&[ppl, acc]).unwrap_err().to_string();
    assert!(err.contains("not the same model and techniques"), "{err}");
}
