//! What `report`, `compare` and a multi-suite `run` draw from runs read back from disk: the
//! technique and cost tables, the joined table, and the cross-run comparison. None of it may
//! panic on a run that parsed, whatever its figures and strings.

use effbench_report::{compare, joined, tables, Price, RunReport};

pub fn render_all(runs: &[RunReport]) {
    let price = Price::per_hour(2.5);
    for r in runs {
        let view = tables::view(r, &price);
        let _ = tables::markdown(r, &view);
    }
    if let Ok(rows) = joined::rows(runs) {
        let _ = joined::markdown(runs, &rows);
    }
    let prices = vec![price; runs.len()];
    let _ = compare::compare_markdown(runs, &prices);
}
