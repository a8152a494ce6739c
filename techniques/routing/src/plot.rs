//! The sweep as a quality-vs-cost SVG and as a markdown section.

use plotters::prelude::*;

use effbench_stats::format_p_value;

use crate::cascade::{margin_points, Point, RoutingError, Sweep};

/// At most this many rows in the markdown table: enough to read the curve's shape, few enough
/// to read at all.
const MAX_ROWS: usize = 15;

/// At most this many dots and frontier vertices in the SVG: a sweep over 100k items has 100k
/// points, which would make a 10 MB file that draws no differently at 900 pixels wide.
const MAX_DRAWN: usize = 1000;

fn plot_err<E: std::fmt::Display>(e: E) -> RoutingError {
    RoutingError::Plot(e.to_string())
}

/// The quality-vs-cost curve as SVG: x = cost_ratio (cost against always using the base model),
/// y = accuracy (%), every point, the Pareto frontier as a line, the all-cheap and all-base ends
/// and the routable point labelled. The base model alone (cost ratio 1) is marked for reference:
/// the all-base end lies right of it by the cheap model's own pass.
pub fn svg(sweep: &Sweep, title: &str) -> Result<String, RoutingError> {
    let points = &sweep.points;
    let (Some(all_base), Some(all_cheap)) = (points.first(), points.last()) else {
        return Err(RoutingError::Plot("a sweep without points".into()));
    };
    let routable = &points[sweep.routable.index.min(points.len() - 1)];
    let xy = |p: &Point| (p.cost_ratio, 100.0 * p.accuracy);
    let base_alone: (f64, f64) = (1.0, 100.0 * all_base.base_accuracy);

    let (mut xmin, mut xmax, mut ymin, mut ymax) =
        (base_alone.0, base_alone.0, base_alone.1, base_alone.1);
    for p in points {
        let (x, y) = xy(p);
        xmin = xmin.min(x);
        xmax = xmax.max(x);
        ymin = ymin.min(y);
        ymax = ymax.max(y);
    }
    let xpad = ((xmax - xmin) * 0.08).max(0.02);
    let ypad = ((ymax - ymin) * 0.12).max(1.0);
    let (xmin, xmax) = ((xmin - xpad).max(0.0), xmax + xpad);
    let (ymin, ymax) = ((ymin - ypad).max(0.0), (ymax + ypad).min(100.0));

    let mut frontier: Vec<(f64, f64)> = points.iter().filter(|p| p.pareto).map(xy).collect();
    frontier.sort_by(|a, b| a.0.total_cmp(&b.0));
    let frontier = thin(&frontier, MAX_DRAWN);
    let dots = thin(points, MAX_DRAWN);

    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (900, 560)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 22))
            .margin(20)
            .x_label_area_size(50)
            .y_label_area_size(70)
            .build_cartesian_2d(xmin..xmax, ymin..ymax)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc("cost against always using the base model (1 = base model alone)")
            .y_desc("accuracy (%)")
            .light_line_style(RGBColor(246, 246, 246))
            .draw()
            .map_err(plot_err)?;

        let grey = RGBColor(150, 150, 150);
        chart
            .draw_series(dots.iter().map(|p| Circle::new(xy(p), 2, grey.filled())))
            .map_err(plot_err)?
            .label(format!("threshold ({} signal)", sweep.signal.name()))
            .legend(move |(x, y)| Circle::new((x + 10, y), 3, grey.filled()));

        let red = RGBColor(214, 96, 77);
        let frontier_style = ShapeStyle::from(&red).stroke_width(2);
        chart
            .draw_series(LineSeries::new(frontier, frontier_style))
            .map_err(plot_err)?
            .label("Pareto frontier")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], frontier_style));

        let black = RGBColor(20, 20, 20);
        let blue = RGBColor(33, 102, 172);
        let green = RGBColor(27, 120, 55);
        let labelled = [
            (xy(all_base), "all to base".to_string(), black),
            (xy(all_cheap), "all to cheap".to_string(), black),
            (
                xy(routable),
                format!(
                    "routable: {:.1}% to cheap",
                    100.0 * sweep.routable.share_cheap
                ),
                green,
            ),
        ];
        chart
            .draw_series(labelled.into_iter().map(|(at, label, colour)| {
                EmptyElement::at(at)
                    + Circle::new((0, 0), 6, colour.filled())
                    + Text::new(label, (10, -14), ("sans-serif", 14))
            }))
            .map_err(plot_err)?;
        chart
            .draw_series(std::iter::once(
                EmptyElement::at(base_alone)
                    + Rectangle::new([(-5, -5), (5, 5)], blue.stroke_width(2))
                    + Text::new("base model alone", (10, 6), ("sans-serif", 14)),
            ))
            .map_err(plot_err)?;

        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(RGBColor(200, 200, 200))
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(plot_err)?;
        root.present().map_err(plot_err)?;
    }
    Ok(out)
}

/// A markdown section: one paragraph with the routable share (with interval), its accuracy delta
/// (with interval) and saving, the oracle bound, the signal's definition; then a table of the
/// Pareto points (threshold, share to cheap, accuracy, delta vs base with CI, p, cost ratio,
/// saving), at most 15 rows (thinned evenly if more), always including both ends and the
/// routable point.
pub fn markdown(sweep: &Sweep, cheap: &str, base: &str) -> String {
    let r = &sweep.routable;
    let o = &sweep.oracle;
    let pct = |x: f64| format!("{:.1}%", 100.0 * x);
    let pt = |x: f64| format!("{:+.1}", 100.0 * x);
    let cost = |saving: f64| {
        if saving >= 0.0 {
            format!("{} less cost than `{base}` alone", pct(saving))
        } else {
            format!("{} more cost than `{base}` alone", pct(-saving))
        }
    };
    let mut out = format!("### Routing: `{cheap}` first, then `{base}`\n\n");
    out.push_str(&format!(
        "On {} items `{cheap}` answers first and keeps its answer when its confidence is at \
         least a threshold; the rest go to `{base}`. ",
        sweep.n
    ));
    if r.index == 0 {
        out.push_str(&format!(
            "**No share of the items ({} to the cheap model) can be routed with the loss shown \
             to stay under {} pt**: already at the most confident threshold tested the cascade \
             may lose more. ",
            pct(r.share_cheap),
            margin_points(r.margin)
        ));
    } else {
        out.push_str(&format!(
            "At threshold {}, **{} of the items (95% CI {}–{}) go to the cheap model with \
             the loss shown to stay under {} pt**: accuracy {} pt against `{base}` alone \
             (95% CI {}..{}), for {} (the cheap model's pass over every item included). ",
            threshold(r.threshold),
            pct(r.share_cheap),
            pct(r.share_ci.lo),
            pct(r.share_ci.hi),
            margin_points(r.margin),
            pt(r.delta),
            pt(r.delta_ci.lo),
            pt(r.delta_ci.hi),
            cost(r.saving),
        ));
    }
    out.push_str(&format!(
        "Shown to stay under the margin means {}. An oracle that sent the cheap model exactly the items it \
         gets right or `{base}` gets wrong too would route {} (95% CI {}–{}). Confidence: {}\n\n",
        r.method,
        pct(o.share),
        pct(o.ci.lo),
        pct(o.ci.hi),
        sweep.signal.describe()
    ));

    out.push_str(
        "| threshold | to cheap | accuracy | Δ vs base (95% CI) | p | cost ratio | saving | |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for i in table_rows(sweep) {
        let p = &sweep.points[i];
        let mut notes = Vec::new();
        if i == 0 {
            notes.push("all to base");
        }
        if i == sweep.points.len() - 1 {
            notes.push("all to cheap");
        }
        if i == r.index {
            notes.push("**routable**");
        }
        if !p.pareto {
            notes.push("off the frontier");
        }
        // "p=0.31" and "p<0.001" as "0.31" and "<0.001" under a "p" heading.
        let p_value = format_p_value(p.p_value);
        let p_value = p_value
            .strip_prefix("p=")
            .or_else(|| p_value.strip_prefix('p'))
            .unwrap_or(&p_value);
        out.push_str(&format!(
            "| {} | {} | {} | {} pt ({}..{}) | {} | {:.3} | {} | {} |\n",
            threshold(p.threshold),
            pct(p.share_cheap),
            pct(p.accuracy),
            pt(p.delta),
            pt(p.delta_ci.lo),
            pt(p.delta_ci.hi),
            p_value,
            p.cost_ratio,
            pct(p.saving),
            notes.join(", ")
        ));
    }
    out
}

/// At most `max` of `items`, evenly spaced, the first and last included.
fn thin<T: Clone>(items: &[T], max: usize) -> Vec<T> {
    if items.len() <= max || max < 2 {
        return items.to_vec();
    }
    let step = (items.len() - 1) as f64 / (max - 1) as f64;
    (0..max)
        .map(|j| items[(j as f64 * step).round() as usize].clone())
        .collect()
}

/// The Pareto points plus both ends and the routable point, thinned evenly to [`MAX_ROWS`]
/// (the three required rows always stay), in sweep order.
fn table_rows(sweep: &Sweep) -> Vec<usize> {
    let last = sweep.points.len() - 1;
    let mut required = vec![0, last, sweep.routable.index.min(last)];
    required.sort_unstable();
    required.dedup();
    let others: Vec<usize> = (0..=last)
        .filter(|&i| sweep.points[i].pareto && !required.contains(&i))
        .collect();
    let room = MAX_ROWS.saturating_sub(required.len());
    let mut rows = required;
    if others.len() <= room {
        rows.extend(others);
    } else if room > 0 {
        // Evenly spaced picks across the frontier, first and last included.
        let step = (others.len() - 1) as f64 / (room - 1).max(1) as f64;
        rows.extend((0..room).map(|j| others[(j as f64 * step).round() as usize]));
    }
    rows.sort_unstable();
    rows.dedup();
    rows
}

/// A threshold in at most four decimals, without trailing zeros.
fn threshold(t: f64) -> String {
    let s = format!("{t:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "0" && t > 0.0 {
        return format!("{t:.1e}");
    }
    s.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cascade::{sweep, Outcome, SweepOptions};
    use crate::signal::Signal;

    /// The cheap model answers as the base model does on the confident half and loses every
    /// fifth item of the other half, so accuracy falls step by step as the share grows: one
    /// Pareto point per step.
    fn outcomes(n: usize) -> Vec<Outcome> {
        (0..n)
            .map(|i| {
                let base_correct = i % 4 != 0;
                Outcome {
                    item: format!("q{i}"),
                    cheap_correct: base_correct && !(i >= n / 2 && i % 5 == 0),
                    base_correct,
                    confidence: 1.0 - i as f64 / n as f64,
                    cheap_cost: 0.1,
                    base_cost: 1.0,
                }
            })
            .collect()
    }

    #[test]
    fn svg_of_a_two_point_sweep() {
        // Every confidence 1: only the two ends.
        let mut o = outcomes(4);
        for x in &mut o {
            x.confidence = 1.0;
        }
        let s = sweep(&o, Signal::Margin, &SweepOptions::default()).unwrap();
        assert_eq!(s.points.len(), 2);
        let svg = svg(&s, "int2 before f16").unwrap();
        assert!(svg.contains("<svg"), "{svg}");
        assert!(svg.contains("int2 before f16"));
        assert!(svg.contains("all to cheap"));
        assert!(svg.contains("Pareto frontier"));
    }

    #[test]
    fn svg_of_a_long_sweep() {
        let s = sweep(&outcomes(300), Signal::TopProb, &SweepOptions::default()).unwrap();
        let svg = svg(&s, "t").unwrap();
        assert!(svg.contains("<svg") && svg.contains("routable"));
        // One dot per point at least.
        assert!(svg.matches("<circle").count() >= s.points.len());
    }

    #[test]
    fn markdown_names_the_routable_share_and_keeps_the_table_short() {
        let s = sweep(&outcomes(300), Signal::TopProb, &SweepOptions::default()).unwrap();
        assert!(s.routable.index > 0, "{:?}", s.routable);
        let md = markdown(&s, "int2-gptq", "f16");
        let share = format!("{:.1}%", 100.0 * s.routable.share_cheap);
        assert!(md.contains(&format!("**{share} of the items")), "{md}");
        assert!(md.contains("the loss shown to stay under 1 pt"), "{md}");
        assert!(md.contains("fixed-sequence"));
        assert!(md.contains(Signal::TopProb.describe()));
        assert!(md.contains(&format!("{:.1}%", 100.0 * s.oracle.share)));
        let rows: Vec<&str> = md
            .lines()
            .filter(|l| l.starts_with("| ") && !l.starts_with("| threshold"))
            .collect();
        assert!(rows.len() <= MAX_ROWS, "{}", rows.len());
        assert!(s.points.iter().filter(|p| p.pareto).count() > MAX_ROWS);
        assert!(rows[0].starts_with("| 1 | 0.0% |") && rows[0].contains("all to base"));
        assert!(rows.last().unwrap().starts_with("| 0 | 100.0% |"));
        assert_eq!(
            rows.iter().filter(|r| r.contains("**routable**")).count(),
            1
        );
    }

    #[test]
    fn markdown_when_nothing_is_routable() {
        let mut o = outcomes(40);
        for x in &mut o {
            x.cheap_correct = false;
            x.base_correct = true;
        }
        let s = sweep(&o, Signal::Margin, &SweepOptions::default()).unwrap();
        let md = markdown(&s, "int2", "f16");
        assert!(
            md.contains("No share of the items (0.0% to the cheap model)"),
            "{md}"
        );
    }

    #[test]
    fn thinning_keeps_the_required_rows() {
        let s = sweep(&outcomes(500), Signal::Margin, &SweepOptions::default()).unwrap();
        let rows = table_rows(&s);
        assert!(rows.len() <= MAX_ROWS);
        assert!(rows.contains(&0) && rows.contains(&(s.points.len() - 1)));
        assert!(rows.contains(&s.routable.index));
        assert!(rows.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn long_sweeps_are_thinned_for_drawing() {
        let s = sweep(&outcomes(3000), Signal::Margin, &SweepOptions::default()).unwrap();
        assert!(s.points.len() > 2 * MAX_DRAWN);
        let svg = svg(&s, "t").unwrap();
        let dots = svg.matches("<circle").count();
        assert!((MAX_DRAWN..MAX_DRAWN + 10).contains(&dots), "{dots}");
        let v: Vec<usize> = (0..10).collect();
        assert_eq!(thin(&v, 4), [0, 3, 6, 9]);
        assert_eq!(thin(&v, 20), v);
        let md = markdown(&s, "a", "b");
        assert!(md.contains("| <0.001 |") && !md.contains("p<"), "{md}");
    }

    #[test]
    fn thresholds_print_short() {
        assert_eq!(threshold(1.0), "1");
        assert_eq!(threshold(0.0), "0");
        assert_eq!(threshold(0.5), "0.5");
        assert_eq!(threshold(0.123456), "0.1235");
        assert_eq!(threshold(0.00001), "1.0e-5");
    }
}
