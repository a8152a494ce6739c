//! effbench-report: the results schema, the cost model, and what is drawn from them: the
//! technique and cost tables with their takeaways, the quality-vs-cost plot, comparisons across
//! runs, and the index of published runs.

pub mod compare;
pub mod cost;
pub mod error;
pub mod index;
pub mod joined;
pub mod plot;
pub mod records;
pub mod schema;
pub mod tables;
pub mod v1;

use std::path::{Path, PathBuf};

pub use cost::{cost, Cost, Price, PriceTable};
pub use error::{ReportError, Result};
pub use schema::{RunReport, SCHEMA_VERSION};
pub use tables::{markdown_table, ReportView};

pub const MARKDOWN_FILE: &str = "report.md";
pub const PLOT_FILE: &str = "quality-vs-cost.svg";

/// What rendering a run wrote.
#[derive(Debug)]
pub struct Rendered {
    pub view: ReportView,
    pub markdown: String,
    pub plot: Option<PathBuf>,
}

/// Applies `price`, writes `report.md` and the plot into `dir`, and returns the view.
pub fn render_dir(report: &RunReport, price: &Price, dir: &Path) -> Result<Rendered> {
    let view = tables::view(report, price);
    let mut markdown = tables::markdown(report, &view);
    let higher_is_better = report
        .techniques
        .first()
        .is_none_or(|t| t.quality.higher_is_better());
    let points = plot_points(report, &view);
    let plot_path = dir.join(PLOT_FILE);
    let axis = if higher_is_better {
        "accuracy % (higher is better)"
    } else {
        "perplexity (lower is better)"
    };
    let plot = if plot::quality_vs_cost_svg(&view, &points, higher_is_better, axis, &plot_path)? {
        markdown.push_str(&format!("\n![quality vs cost]({PLOT_FILE})\n"));
        Some(plot_path)
    } else {
        None
    };
    write_atomic(&dir.join(MARKDOWN_FILE), markdown.as_bytes())?;
    Ok(Rendered {
        view,
        markdown,
        plot,
    })
}

fn plot_points(report: &RunReport, view: &ReportView) -> Vec<plot::Point> {
    view.rows
        .iter()
        .filter_map(|r| {
            let cost = r.cost?;
            let t = report.technique(&r.technique)?;
            let quality_error = match &t.quality {
                schema::Quality::Accuracy {
                    ci_low, ci_high, ..
                } => Some(100.0 * (ci_high - ci_low) / 2.0),
                // A perplexity's own interval reflects the text, not the technique: the paired
                // comparison in the table is the one that says whether two differ.
                schema::Quality::Perplexity { .. } => None,
            };
            Some(plot::Point {
                label: r.technique.clone(),
                cost: cost.usd_per_million_output,
                quality: r.quality,
                quality_error,
                is_baseline: r.is_baseline,
            })
        })
        .collect()
}

/// Readers see the old file or the new one, never half of one: the bytes go to a uniquely
/// named temporary in the same directory, are synced, and the temporary is renamed over
/// `path`. On any error the temporary is deleted (a full disk leaves the old file and no stray),
/// and the error names `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let io = |source| ReportError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    tmp.as_file_mut()
        .write_all(bytes)
        .and_then(|_| tmp.as_file().sync_data())
        .map_err(io)?;
    // Temporary files are created private; results are meant to be read and shared.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(io)?;
    }
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}
