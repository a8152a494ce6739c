//! Quality against cost as an SVG, with the Pareto frontier drawn: the techniques no other one
//! beats on both axes at once.

use std::path::Path;

use plotters::prelude::*;

use crate::error::{ReportError, Result};
use crate::tables::ReportView;

/// A technique's place on the plot.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub label: String,
    /// $/1M output tokens.
    pub cost: f64,
    pub quality: f64,
    /// Half-width of the 95% interval on quality, when known.
    pub quality_error: Option<f64>,
    pub is_baseline: bool,
}

/// Indices of the points on the frontier, cheapest first. A point is on it when every cheaper
/// (or equally cheap) point has worse quality.
pub fn pareto_frontier(points: &[Point], higher_is_better: bool) -> Vec<usize> {
    let mut order: Vec<usize> = (0..points.len()).collect();
    let better = |a: f64, b: f64| if higher_is_better { a > b } else { a < b };
    order.sort_by(|&a, &b| {
        points[a].cost.total_cmp(&points[b].cost).then_with(|| {
            if better(points[a].quality, points[b].quality) {
                std::cmp::Ordering::Less
            } else {
                std::cmp::Ordering::Greater
            }
        })
    });
    let mut frontier = Vec::new();
    let mut best: Option<f64> = None;
    for i in order {
        if best.is_none_or(|b| better(points[i].quality, b)) {
            best = Some(points[i].quality);
            frontier.push(i);
        }
    }
    frontier
}

fn map_err<E: std::fmt::Display>(e: E) -> ReportError {
    ReportError::Plot(e.to_string())
}

/// Draws the plot to `path`. Techniques without a speed measurement have no cost and are left
/// out; with fewer than one priced point there is nothing to draw and no file is written.
pub fn quality_vs_cost_svg(
    v: &ReportView,
    points: &[Point],
    higher_is_better: bool,
    quality_axis: &str,
    path: &Path,
) -> Result<bool> {
    if points.is_empty() {
        return Ok(false);
    }
    let frontier = pareto_frontier(points, higher_is_better);
    let (mut xmin, mut xmax) = points.iter().fold((f64::MAX, f64::MIN), |(lo, hi), p| {
        (lo.min(p.cost), hi.max(p.cost))
    });
    let (mut ymin, mut ymax) = points.iter().fold((f64::MAX, f64::MIN), |(lo, hi), p| {
        let e = p.quality_error.unwrap_or(0.0);
        (lo.min(p.quality - e), hi.max(p.quality + e))
    });
    let xpad = ((xmax - xmin) * 0.15).max(xmax.abs() * 0.1).max(1e-9);
    let ypad = ((ymax - ymin) * 0.15).max(ymax.abs() * 0.02).max(1e-9);
    xmin = (xmin - xpad).max(0.0);
    xmax += xpad;
    ymin -= ypad;
    ymax += ypad;

    // Drawn in memory and written atomically: plotters writes its file as it goes, so a full
    // disk would leave half a plot and an error that names no file.
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 560)).into_drawing_area();
        root.fill(&WHITE).map_err(map_err)?;
        let title = format!("{} on {}: quality vs cost", v.suite, v.model);
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 22))
            .margin(20)
            .x_label_area_size(50)
            .y_label_area_size(70)
            .build_cartesian_2d(xmin..xmax, ymin..ymax)
            .map_err(map_err)?;
        chart
            .configure_mesh()
            .x_desc(format!(
                "$ per 1M output tokens ({}, ${:.4}/h)",
                v.price.basis, v.price.usd_per_hour
            ))
            .y_desc(quality_axis)
            .light_line_style(RGBColor(246, 246, 246))
            .draw()
            .map_err(map_err)?;

        let frontier_style = ShapeStyle::from(&RGBColor(214, 96, 77)).stroke_width(2);
        chart
            .draw_series(LineSeries::new(
                frontier
                    .iter()
                    .map(|&i| (points[i].cost, points[i].quality)),
                frontier_style,
            ))
            .map_err(map_err)?
            .label("Pareto frontier (ringed)")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], frontier_style));

        // Ring the frontier's points: with one point on it there is no line to see.
        chart
            .draw_series(frontier.iter().map(|&i| {
                Circle::new(
                    (points[i].cost, points[i].quality),
                    10,
                    ShapeStyle::from(&RGBColor(214, 96, 77)).stroke_width(2),
                )
            }))
            .map_err(map_err)?;
        for p in points {
            if let Some(e) = p.quality_error {
                chart
                    .draw_series(std::iter::once(PathElement::new(
                        vec![(p.cost, p.quality - e), (p.cost, p.quality + e)],
                        RGBColor(150, 150, 150),
                    )))
                    .map_err(map_err)?;
            }
        }
        let blue = RGBColor(33, 102, 172);
        let black = RGBColor(20, 20, 20);
        chart
            .draw_series(points.iter().map(|p| {
                let colour = if p.is_baseline { black } else { blue };
                EmptyElement::at((p.cost, p.quality))
                    + Circle::new((0, 0), 6, colour.filled())
                    + Text::new(p.label.clone(), (10, -14), ("sans-serif", 14))
            }))
            .map_err(map_err)?;
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(RGBColor(200, 200, 200))
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(map_err)?;
        root.present().map_err(map_err)?;
    }
    crate::write_atomic(path, svg.as_bytes())?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(cost: f64, quality: f64) -> Point {
        Point {
            label: format!("{cost}/{quality}"),
            cost,
            quality,
            quality_error: None,
            is_baseline: false,
        }
    }

    #[test]
    fn frontier_drops_dominated_points() {
        // (2, 50) is beaten by (1, 60): cheaper and better.
        let pts = [p(4.0, 70.0), p(2.0, 50.0), p(1.0, 60.0), p(3.0, 65.0)];
        assert_eq!(pareto_frontier(&pts, true), vec![2, 3, 0]);
    }

    #[test]
    fn frontier_for_lower_is_better() {
        // Perplexity: lower is better.
        let pts = [p(4.0, 10.0), p(2.0, 12.0), p(1.0, 30.0), p(3.0, 13.0)];
        assert_eq!(pareto_frontier(&pts, false), vec![2, 1, 0]);
    }
}
