//! The loss curve as an SVG.

use std::path::Path;

use plotters::prelude::*;

use crate::error::{DistillError, Result};
use crate::train::StepReport;

/// A labelled line: legend text, colour, (tokens, nats) points.
type Series = (&'static str, RGBColor, Vec<(f64, f64)>);

/// Plots the KD term and the cross-entropy of every step against training tokens.
pub fn loss_curve_svg(steps: &[StepReport], path: &Path, title: &str) -> Result<()> {
    let bad = |e: &dyn std::fmt::Display| DistillError::BadFile {
        path: path.to_path_buf(),
        detail: format!("plotting failed: {e}"),
    };
    if steps.is_empty() {
        return Err(DistillError::NoData("no steps logged yet to plot".into()));
    }
    let x_max = steps.iter().map(|s| s.tokens).max().unwrap_or(1).max(1) as f64;
    let finite = |v: f32| v.is_finite().then_some(v as f64);
    let series: [Series; 2] = [
        (
            "KL(teacher_T || student_T), nats/token",
            RGBColor(31, 119, 180),
            steps
                .iter()
                .filter_map(|s| finite(s.kl).map(|v| (s.tokens as f64, v)))
                .collect(),
        ),
        (
            "next-token cross-entropy, nats/token",
            RGBColor(214, 39, 40),
            steps
                .iter()
                .filter_map(|s| finite(s.ce).map(|v| (s.tokens as f64, v)))
                .collect(),
        ),
    ];
    let y_max = series
        .iter()
        .flat_map(|s| s.2.iter().map(|p| p.1))
        .fold(0.0f64, f64::max)
        * 1.05;
    let root = SVGBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| bad(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max.max(1e-3))
        .map_err(|e| bad(&e))?;
    chart
        .configure_mesh()
        .x_desc("training tokens")
        .y_desc("nats per token")
        .draw()
        .map_err(|e| bad(&e))?;
    for (label, color, points) in series {
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(|e| bad(&e))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| bad(&e))?;
    root.present().map_err(|e| bad(&e))?;
    Ok(())
}
