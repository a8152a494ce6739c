//! The cascade at one threshold, the sweep over every threshold, its Pareto frontier, the
//! oracle bound and the share routable at no significant loss.
//!
//! Every figure is computed from counts (how many items kept, how many of them each model gets
//! right, the discordant pairs against the base model) and from costs summed exactly, so a
//! point of the sweep is bit for bit the point [`cascade`] computes at its threshold, and
//! neither depends on the order of the items.

use serde::{Deserialize, Serialize};

use effbench_stats::{
    ln_choose, mcnemar_exact, normal_interval, normal_quantile, wilson_interval, Interval,
    StatsError,
};

use crate::signal::Signal;

/// Confidence level of every two-sided interval here, as in the rest of effbench's tables.
const CONFIDENCE: f64 = 0.95;

/// One item as both models answered it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub item: String,
    pub cheap_correct: bool,
    pub base_correct: bool,
    /// The cheap model's confidence in its answer, in [0, 1] ([`crate::signal`]).
    pub confidence: f64,
    /// What answering this item cost each model, in any one unit (the caller passes seconds of
    /// machine time per item).
    pub cheap_cost: f64,
    pub base_cost: f64,
}

/// Why a cascade could not be evaluated.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RoutingError {
    /// A paired comparison needs a standard error, which needs two items.
    #[error("routing needs at least 2 items with both models' outcomes, got {got}")]
    TooFewItems { got: usize },
    #[error("item `{item}`: confidence {value} is not in 0..1")]
    BadConfidence { item: String, value: f64 },
    #[error("item `{item}`: {model} cost {value} is not a finite non-negative number")]
    BadCost {
        item: String,
        model: &'static str,
        value: f64,
    },
    #[error("the base model's costs sum to {total}, so the cascade's cost has nothing to be compared against")]
    BadBaseTotal { total: f64 },
    #[error("threshold {value} is not in 0..1")]
    BadThreshold { value: f64 },
    #[error("{name} must be {expected}, got {value}")]
    BadOption {
        name: &'static str,
        expected: &'static str,
        value: f64,
    },
    #[error(transparent)]
    Stats(#[from] StatsError),
    #[error("plotting failed: {0}")]
    Plot(String),
}

/// The cheap model keeps an item when its confidence is at least the threshold; a threshold of
/// 1 sends every item to the base model (even a confidence that rounds to exactly 1.0).
///
/// Without the second rule `@1` would still keep the answers a saturated softmax scores 1.0,
/// and there would be no threshold meaning "always the base model".
pub fn keeps(confidence: f64, threshold: f64) -> bool {
    confidence >= threshold && threshold < 1.0
}

/// The cascade at one threshold.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub threshold: f64,
    pub n: usize,
    /// Items whose cheap answer was kept.
    pub cheap_served: usize,
    pub share_cheap: f64,
    pub accuracy: f64,
    pub cheap_accuracy: f64,
    pub base_accuracy: f64,
    /// accuracy − base_accuracy, paired on the same items.
    pub delta: f64,
    /// Paired standard error of `delta`, as [`effbench_stats::compare_binary`] reports it.
    pub stderr: f64,
    /// 95 %, paired: delta ± 1.96·stderr (compare_binary's ci).
    pub delta_ci: Interval,
    /// McNemar's exact test, cascade against the base model.
    pub p_value: f64,
    /// Σ cheap_cost over all items + Σ base_cost over the escalated ones: the cheap model runs
    /// on every item, since its confidence is what decides.
    pub cost: f64,
    /// cost / Σ base_cost: what the cascade costs against always using the base model alone.
    pub cost_ratio: f64,
    /// 1 − cost_ratio; negative when the cheap pass costs more than the escalations save.
    pub saving: f64,
    /// On the quality-vs-cost Pareto frontier of the sweep (false from [`cascade`]).
    pub pareto: bool,
}

/// Settings of the routable-share test.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SweepOptions {
    /// The non-inferiority margin: a loss smaller than this (as a fraction, 0.01 = 1 accuracy
    /// point) counts as no loss.
    pub margin: f64,
    /// Family-wise error rate of the whole scan.
    pub alpha: f64,
}

impl Default for SweepOptions {
    fn default() -> Self {
        Self {
            margin: 0.01,
            alpha: 0.05,
        }
    }
}

/// The best any router could do with these two models: send to the cheap model every item where
/// it is right or where the base model is wrong too, so that nothing is lost.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Oracle {
    pub n: usize,
    pub share: f64,
    /// Wilson 95 %.
    pub ci: Interval,
}

/// The largest share the fixed-sequence test lets go to the cheap model ([`sweep`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Routable {
    pub threshold: f64,
    pub share_cheap: f64,
    /// Wilson 95 % on cheap_served / n.
    pub share_ci: Interval,
    pub delta: f64,
    /// The point's two-sided 95 % interval.
    pub delta_ci: Interval,
    /// The one-sided (1 − alpha) lower bound on delta that the test compared with −margin.
    pub delta_lower: f64,
    pub saving: f64,
    pub margin: f64,
    pub alpha: f64,
    /// Index of the routable point in [`Sweep::points`].
    pub index: usize,
    /// One sentence, for reports.
    pub method: String,
}

/// The cascade at every threshold the records distinguish.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sweep {
    pub signal: Signal,
    pub n: usize,
    /// By threshold descending, so by cheap share ascending: the first is threshold 1 (every
    /// item to the base model), the last threshold 0 (every item kept by the cheap model).
    pub points: Vec<Point>,
    pub routable: Routable,
    pub oracle: Oracle,
}

/// The cascade at `threshold`: items the cheap model [`keeps`] take its answer, the rest the
/// base model's.
pub fn cascade(outcomes: &[Outcome], threshold: f64) -> Result<Point, RoutingError> {
    let totals = Totals::of(outcomes)?;
    if !(0.0..=1.0).contains(&threshold) {
        return Err(RoutingError::BadThreshold { value: threshold });
    }
    let mut kept = Kept::default();
    let mut cost = ExactSum::default();
    for o in outcomes {
        cost.add(o.cheap_cost);
        if keeps(o.confidence, threshold) {
            kept.add(o);
        } else {
            cost.add(o.base_cost);
        }
    }
    Ok(point(threshold, &totals, &kept, cost.value()))
}

/// The cascade at threshold 0, every distinct confidence and 1 (one point per distinct number
/// of items kept), its Pareto frontier, the oracle bound, and the routable share.
///
/// One sort and one pass with running counts: O(n log n), plus a McNemar tail per point, which
/// the tail summation of `mcnemar_p` keeps to O(√n) however many pairs are discordant.
///
/// The routable share is found by fixed-sequence non-inferiority testing. The points are tested
/// in order of increasing cheap share, each for H0: delta ≤ −margin against H1: delta > −margin
/// with the one-sided paired z test at level alpha (the lower bound delta − z₁₋α·stderr must
/// exceed −margin), and the scan stops at the first point that fails; the routable point is the
/// last that passed. Because each hypothesis is tested only when every one before it was
/// rejected, the chance of wrongly declaring any loss-free share stays at alpha over the whole
/// scan, with no split of alpha across the thresholds. The tempting rule, "the largest share
/// whose difference is not significant", gets both things wrong: failing to find a loss is not
/// evidence of none (a small suite finds none anywhere), and picking the best-looking of many
/// thresholds after the fact finds a spuriously harmless one by chance.
pub fn sweep(
    outcomes: &[Outcome],
    signal: Signal,
    options: &SweepOptions,
) -> Result<Sweep, RoutingError> {
    let totals = Totals::of(outcomes)?;
    check_options(options)?;

    let mut order: Vec<&Outcome> = outcomes.iter().collect();
    order.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));

    // Starts as "everything escalated" and loses each kept item's base cost.
    let mut cost = ExactSum::default();
    for o in outcomes {
        cost.add(o.cheap_cost);
        cost.add(o.base_cost);
    }
    let mut kept = Kept::default();
    let mut points = vec![point(1.0, &totals, &kept, cost.value())];
    let mut i = 0;
    while i < order.len() {
        let value = order[i].confidence;
        while i < order.len() && order[i].confidence == value {
            kept.add(order[i]);
            cost.add(-order[i].base_cost);
            i += 1;
        }
        // At threshold 1 nothing is kept; items of confidence 1 join at the next threshold down.
        if value < 1.0 {
            points.push(point(value, &totals, &kept, cost.value()));
        }
    }
    // Every item kept: threshold 0, however confident the least confident item was (and +0
    // rather than a -0 confidence).
    let at_zero = point(0.0, &totals, &kept, cost.value());
    let last = points.last_mut().expect("the all-base point");
    if last.cheap_served == totals.n {
        *last = at_zero;
    } else {
        points.push(at_zero);
    }

    mark_pareto(&mut points);
    let routable = routable(&points, options)?;
    let oracle = oracle(outcomes)?;
    Ok(Sweep {
        signal,
        n: totals.n,
        points,
        routable,
        oracle,
    })
}

/// The items where routing to the cheap model loses nothing, with a Wilson interval.
fn oracle(outcomes: &[Outcome]) -> Result<Oracle, RoutingError> {
    let n = outcomes.len();
    let safe = outcomes
        .iter()
        .filter(|o| o.cheap_correct || !o.base_correct)
        .count();
    Ok(Oracle {
        n,
        share: safe as f64 / n as f64,
        ci: wilson_interval(safe, n, CONFIDENCE)?,
    })
}

fn check_options(options: &SweepOptions) -> Result<(), RoutingError> {
    if !(0.0..1.0).contains(&options.margin) {
        return Err(RoutingError::BadOption {
            name: "margin",
            expected: "in [0, 1) (0.01 is one accuracy point)",
            value: options.margin,
        });
    }
    // Above 0.5 the one-sided z would be negative: a "bound" above the estimate itself.
    if !(options.alpha > 0.0 && options.alpha < 0.5) {
        return Err(RoutingError::BadOption {
            name: "alpha",
            expected: "strictly between 0 and 0.5",
            value: options.alpha,
        });
    }
    Ok(())
}

/// Fixed-sequence non-inferiority testing over `points` in order of increasing cheap share.
fn routable(points: &[Point], options: &SweepOptions) -> Result<Routable, RoutingError> {
    let z = normal_quantile(1.0 - options.alpha);
    let lower = |p: &Point| p.delta - z * p.stderr;
    let passed = points[1..]
        .iter()
        .take_while(|&p| lower(p) > -options.margin)
        .count();
    let index = passed; // points[0] is the all-base point, kept when nothing passed.
    let p = &points[index];
    let method = format!(
        "fixed-sequence non-inferiority: thresholds are tested from the most confident down, \
         each with a one-sided paired z test at alpha = {} that the cascade loses less than {} pt \
         of accuracy against the base model alone, stopping at the first that fails, which \
         keeps the chance of any false claim at alpha over the whole scan without splitting it",
        options.alpha,
        margin_points(options.margin)
    );
    Ok(Routable {
        threshold: p.threshold,
        share_cheap: p.share_cheap,
        share_ci: wilson_interval(p.cheap_served, p.n, CONFIDENCE)?,
        delta: p.delta,
        delta_ci: p.delta_ci,
        delta_lower: lower(p),
        saving: p.saving,
        margin: options.margin,
        alpha: options.alpha,
        index,
        method,
    })
}

/// A margin in accuracy points, at most two decimals: 0.05 is "5", not 100 × 0.05 =
/// "5.000000000000001".
pub(crate) fn margin_points(margin: f64) -> String {
    let s = format!("{:.2}", 100.0 * margin);
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Flags the points no other point beats: none with cost ≤ and accuracy ≥, one of them strict.
fn mark_pareto(points: &mut [Point]) {
    let mut order: Vec<usize> = (0..points.len()).collect();
    order.sort_by(|&a, &b| {
        points[a]
            .cost
            .total_cmp(&points[b].cost)
            .then(points[b].accuracy.total_cmp(&points[a].accuracy))
    });
    // Everything strictly cheaper dominates at equal or better accuracy; at equal cost only a
    // strictly better accuracy does, so exact duplicates both stay on the frontier.
    let mut best_cheaper = f64::NEG_INFINITY;
    let mut i = 0;
    while i < order.len() {
        let cost = points[order[i]].cost;
        let group_best = points[order[i]].accuracy;
        let mut j = i;
        while j < order.len() && points[order[j]].cost == cost {
            let p = &mut points[order[j]];
            p.pareto = !(best_cheaper >= p.accuracy || group_best > p.accuracy);
            j += 1;
        }
        best_cheaper = best_cheaper.max(group_best);
        i = j;
    }
}

/// What does not change with the threshold, checked once.
struct Totals {
    n: usize,
    cheap_right: usize,
    base_right: usize,
    base_cost: f64,
}

impl Totals {
    fn of(outcomes: &[Outcome]) -> Result<Self, RoutingError> {
        if outcomes.len() < 2 {
            return Err(RoutingError::TooFewItems {
                got: outcomes.len(),
            });
        }
        let mut base_cost = ExactSum::default();
        for o in outcomes {
            if !(0.0..=1.0).contains(&o.confidence) {
                return Err(RoutingError::BadConfidence {
                    item: o.item.clone(),
                    value: o.confidence,
                });
            }
            for (model, value) in [("cheap", o.cheap_cost), ("base", o.base_cost)] {
                if !(value.is_finite() && value >= 0.0) {
                    return Err(RoutingError::BadCost {
                        item: o.item.clone(),
                        model,
                        value,
                    });
                }
            }
            base_cost.add(o.base_cost);
        }
        let base_cost = base_cost.value();
        if !(base_cost.is_finite() && base_cost > 0.0) {
            return Err(RoutingError::BadBaseTotal { total: base_cost });
        }
        Ok(Self {
            n: outcomes.len(),
            cheap_right: outcomes.iter().filter(|o| o.cheap_correct).count(),
            base_right: outcomes.iter().filter(|o| o.base_correct).count(),
            base_cost,
        })
    }
}

/// Running counts over the items the cheap model keeps. Escalated items take the base model's
/// answer, so they never differ from it: only kept items can be discordant.
#[derive(Default)]
struct Kept {
    n: usize,
    cheap_right: usize,
    base_right: usize,
    /// Cheap right where the base model is wrong: the cascade gains an item.
    gained: usize,
    /// Cheap wrong where the base model is right: the cascade loses one.
    lost: usize,
}

impl Kept {
    fn add(&mut self, o: &Outcome) {
        self.n += 1;
        self.cheap_right += usize::from(o.cheap_correct);
        self.base_right += usize::from(o.base_correct);
        self.gained += usize::from(o.cheap_correct && !o.base_correct);
        self.lost += usize::from(!o.cheap_correct && o.base_correct);
    }
}

fn point(threshold: f64, totals: &Totals, kept: &Kept, cost: f64) -> Point {
    let n = totals.n;
    let nf = n as f64;
    let right = totals.base_right - kept.base_right + kept.cheap_right;
    let (delta, stderr) = paired_delta(n, kept.gained, kept.lost);
    let cost_ratio = cost / totals.base_cost;
    Point {
        threshold,
        n,
        cheap_served: kept.n,
        share_cheap: kept.n as f64 / nf,
        accuracy: right as f64 / nf,
        cheap_accuracy: totals.cheap_right as f64 / nf,
        base_accuracy: totals.base_right as f64 / nf,
        delta,
        stderr,
        delta_ci: normal_interval(delta, stderr, CONFIDENCE),
        p_value: mcnemar_p(kept.gained as u64, kept.lost as u64),
        cost,
        cost_ratio,
        saving: 1.0 - cost_ratio,
        pareto: false,
    }
}

/// compare_binary's delta and paired standard error from the discordant counts: the per-item
/// differences are +1 (`gained` items), −1 (`lost`) and 0, so their mean and sample standard
/// deviation need only the counts. The delta is exactly compare_binary's (an integer over n);
/// the standard error differs from its item-by-item sum by rounding only.
fn paired_delta(n: usize, gained: usize, lost: usize) -> (f64, f64) {
    let nf = n as f64;
    let delta = (gained as f64 - lost as f64) / nf;
    let same = (n - gained - lost) as f64;
    let ss = gained as f64 * (1.0 - delta) * (1.0 - delta)
        + lost as f64 * (1.0 + delta) * (1.0 + delta)
        + same * delta * delta;
    (delta, (ss / (nf - 1.0)).sqrt() / nf.sqrt())
}

/// Below this many pairs on the smaller side, [`effbench_stats::mcnemar_exact`] itself runs.
const MCNEMAR_DIRECT: u64 = 64;

/// McNemar's exact two-sided p-value, min(1, 2·P[X ≤ k]) with X ~ Bin(b01 + b10, ½) and k the
/// smaller count.
///
/// For up to [`MCNEMAR_DIRECT`] pairs on the smaller side this is `mcnemar_exact`, bit for bit.
/// Above, `mcnemar_exact` costs O(k) log-gamma terms, which over a sweep of 100k thresholds
/// with thousands of discordant pairs each would take minutes; here the tail is summed from its
/// largest term down by the ratio C(m, i−1)/C(m, i) = i/(m − i + 1) until the terms stop
/// mattering (below 1e-17 of the sum), which is O(√m) terms and agrees with `mcnemar_exact` to
/// its own accuracy (about 1e-11 relative).
pub(crate) fn mcnemar_p(b01: u64, b10: u64) -> f64 {
    let m = b01 + b10;
    let k = b01.min(b10);
    if k <= MCNEMAR_DIRECT || 2 * k + 1 >= m {
        return mcnemar_exact(b01, b10);
    }
    // ln P[X = k], written as mcnemar_exact's own terms are.
    let ln_top = ln_choose(m, k) + k as f64 * 0.5f64.ln() + (m - k) as f64 * (-0.5f64).ln_1p();
    let mut term = 1.0;
    let mut sum = 1.0;
    let mut i = k;
    while i > 0 {
        term *= i as f64 / (m - i + 1) as f64;
        sum += term;
        if term < 1e-17 * sum {
            break;
        }
        i -= 1;
    }
    (2.0 * ln_top.exp() * sum).min(1.0)
}

/// Shewchuk's exact summation (as Python's `math.fsum`): the sum of every value added, rounded
/// once. A running cost that gains and loses items in confidence order then equals the cost
/// summed in item order bit for bit, where a plain running sum would drift by rounding.
#[derive(Clone, Debug, Default)]
struct ExactSum {
    /// Non-overlapping, by increasing magnitude; their exact sum is the total.
    partials: Vec<f64>,
}

impl ExactSum {
    fn add(&mut self, mut x: f64) {
        let mut kept = 0;
        for j in 0..self.partials.len() {
            let mut y = self.partials[j];
            if x.abs() < y.abs() {
                std::mem::swap(&mut x, &mut y);
            }
            let hi = x + y;
            let lo = y - (hi - x);
            if lo != 0.0 {
                self.partials[kept] = lo;
                kept += 1;
            }
            x = hi;
        }
        self.partials.truncate(kept);
        if x != 0.0 {
            self.partials.push(x);
        }
    }

    /// The exact sum rounded to nearest, ties to even (CPython's `math_fsum` final step).
    fn value(&self) -> f64 {
        let p = &self.partials;
        let Some(mut n) = p.len().checked_sub(1) else {
            return 0.0;
        };
        let mut hi = p[n];
        let mut lo = 0.0;
        while n > 0 {
            let x = hi;
            n -= 1;
            let y = p[n];
            hi = x + y;
            lo = y - (hi - x);
            if lo != 0.0 {
                break;
            }
        }
        // The partials below may push a halfway `lo` off the tie, the other way from how
        // `x + y` rounded it.
        if n > 0 && ((lo < 0.0 && p[n - 1] < 0.0) || (lo > 0.0 && p[n - 1] > 0.0)) {
            let y = lo * 2.0;
            let x = hi + y;
            if y == x - hi {
                hi = x;
            }
        }
        hi
    }
}

#[cfg(test)]
mod tests;
