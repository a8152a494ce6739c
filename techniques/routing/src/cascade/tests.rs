use effbench_stats::{compare_binary, CompareOptions, SplitMix64};

use super::*;

fn item(
    name: &str,
    confidence: f64,
    cheap_correct: bool,
    base_correct: bool,
    cheap_cost: f64,
    base_cost: f64,
) -> Outcome {
    Outcome {
        item: name.to_string(),
        cheap_correct,
        base_correct,
        confidence,
        cheap_cost,
        base_cost,
    }
}

/// Six items, cheap cost 1 and base cost 4 each (Σ cheap 6, Σ base 24).
///
/// | item | confidence | cheap | base |
/// |------|-----------|-------|------|
/// | a    | 0.9       | right | right |
/// | b    | 0.8       | right | wrong |
/// | c    | 0.6       | wrong | right |
/// | d    | 0.4       | wrong | wrong |
/// | e    | 0.3       | right | right |
/// | f    | 0.1       | wrong | right |
fn six() -> Vec<Outcome> {
    [
        ("a", 0.9, true, true),
        ("b", 0.8, true, false),
        ("c", 0.6, false, true),
        ("d", 0.4, false, false),
        ("e", 0.3, true, true),
        ("f", 0.1, false, true),
    ]
    .into_iter()
    .map(|(n, c, cheap, base)| item(n, c, cheap, base, 1.0, 4.0))
    .collect()
}

/// `n` items with confidences from a few tied values, some 0 and 1 exactly, and the rest
/// continuous; correctness correlated with confidence; costs that are not round numbers.
fn random(n: usize, seed: u64) -> Vec<Outcome> {
    let mut rng = SplitMix64::new(seed);
    let mut unit = move || (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    (0..n)
        .map(|i| {
            let r = unit();
            let confidence = if r < 0.05 {
                1.0
            } else if r < 0.08 {
                0.0
            } else if r < 0.4 {
                [0.25, 0.5, 0.75, 0.9][(unit() * 4.0) as usize]
            } else {
                unit()
            };
            let cheap_correct = unit() < 0.3 + 0.6 * confidence;
            let base_correct = unit() < 0.75;
            item(
                &format!("q{i}"),
                confidence,
                cheap_correct,
                base_correct,
                0.01 + 0.1 * unit(),
                0.5 + 2.0 * unit(),
            )
        })
        .collect()
}

#[test]
fn cascade_by_hand() {
    let o = six();
    // Threshold 0.5 keeps a, b, c (confidence ≥ 0.5). The cascade answers a right, b right
    // (cheap), c wrong (cheap), then d wrong, e right, f right (base): 4/6. The base model alone
    // gets a, c, e, f: 4/6; cheap alone a, b, e: 3/6. Gained b, lost c: delta 0, McNemar p 1.
    // Cost: 6 × 1 (cheap everywhere) + 3 × 4 (d, e, f escalated) = 18; against 24, ratio 0.75.
    let p = cascade(&o, 0.5).unwrap();
    assert_eq!(p.threshold, 0.5);
    assert_eq!((p.n, p.cheap_served), (6, 3));
    assert_eq!(p.share_cheap, 0.5);
    assert_eq!(p.accuracy, 4.0 / 6.0);
    assert_eq!(p.base_accuracy, 4.0 / 6.0);
    assert_eq!(p.cheap_accuracy, 3.0 / 6.0);
    assert_eq!(p.delta, 0.0);
    assert_eq!(p.p_value, 1.0);
    assert_eq!((p.cost, p.cost_ratio, p.saving), (18.0, 0.75, 0.25));
    // Differences (0, +1, −1, 0, 0, 0): sample variance 2/5, stderr √(0.4/6).
    assert!((p.stderr - (0.4f64 / 6.0).sqrt()).abs() < 1e-15);
    assert!(!p.pareto);

    // Threshold 0.7 keeps a, b: 5/6 right (c now escalated and right), delta +1/6.
    // Cost 6 + 4 × 4 = 22, ratio 22/24.
    let p = cascade(&o, 0.7).unwrap();
    assert_eq!(p.cheap_served, 2);
    assert_eq!(p.accuracy, 5.0 / 6.0);
    assert_eq!(p.delta, 1.0 / 6.0);
    assert_eq!(p.p_value, 1.0);
    assert_eq!(p.cost, 22.0);
    assert_eq!(p.cost_ratio, 22.0 / 24.0);

    // A confidence equal to the threshold is kept.
    assert_eq!(cascade(&o, 0.6).unwrap().cheap_served, 3);
    assert_eq!(cascade(&o, 0.6000001).unwrap().cheap_served, 2);
}

#[test]
fn keeps_never_at_one() {
    assert!(keeps(0.5, 0.5));
    assert!(!keeps(0.49, 0.5));
    assert!(keeps(0.0, 0.0));
    assert!(keeps(1.0, 0.999));
    assert!(!keeps(1.0, 1.0));
}

#[test]
fn threshold_zero_is_the_cheap_model_and_one_the_base_model() {
    // Costs in quarters so that every sum is exact and can be checked with `==`.
    let mut o = random(300, 7);
    for (i, x) in o.iter_mut().enumerate() {
        x.cheap_cost = 0.25 * (i % 3) as f64;
        x.base_cost = 1.0 + 0.25 * (i % 5) as f64;
    }
    let count = |f: &dyn Fn(&Outcome) -> bool| o.iter().filter(|&x| f(x)).count();
    let n = o.len() as f64;
    let cheap_right = count(&|x| x.cheap_correct) as f64;
    let base_right = count(&|x| x.base_correct) as f64;
    let sum_cheap: f64 = o.iter().map(|x| x.cheap_cost).sum();
    let sum_base: f64 = o.iter().map(|x| x.base_cost).sum();

    let zero = cascade(&o, 0.0).unwrap();
    assert_eq!(zero.cheap_served, o.len());
    assert_eq!(zero.share_cheap, 1.0);
    assert_eq!(zero.accuracy, cheap_right / n);
    assert_eq!(zero.cost, sum_cheap);
    assert_eq!(zero.cost_ratio, sum_cheap / sum_base);
    let gained = count(&|x| x.cheap_correct && !x.base_correct) as f64;
    let lost = count(&|x| !x.cheap_correct && x.base_correct) as f64;
    assert_eq!(zero.delta, (gained - lost) / n);

    // The cheap model still ran on every item before escalating it.
    let one = cascade(&o, 1.0).unwrap();
    assert_eq!(one.cheap_served, 0);
    assert_eq!(one.accuracy, base_right / n);
    assert_eq!(one.delta, 0.0);
    assert_eq!(one.stderr, 0.0);
    assert_eq!(one.delta_ci, Interval { lo: 0.0, hi: 0.0 });
    assert_eq!(one.p_value, 1.0);
    assert_eq!(one.cost, sum_cheap + sum_base);
    assert_eq!(one.cost_ratio, (sum_cheap + sum_base) / sum_base);
    assert_eq!(one.saving, 1.0 - (sum_cheap + sum_base) / sum_base);
    assert!(one.saving < 0.0);
    // Items of confidence exactly 1 are escalated too at threshold 1.
    assert!(o.iter().any(|x| x.confidence == 1.0));
}

#[test]
fn cascade_matches_compare_binary_on_the_explicit_vectors() {
    let options = CompareOptions {
        bootstrap_resamples: 0,
        ..CompareOptions::default()
    };
    for (n, seed) in [(40, 1), (500, 2), (3000, 3)] {
        let o = random(n, seed);
        let base: Vec<bool> = o.iter().map(|x| x.base_correct).collect();
        for t in [0.0, 0.1, 0.3, 0.5, 0.75, 0.9, 0.99, 1.0] {
            let routed: Vec<bool> = o
                .iter()
                .map(|x| {
                    if keeps(x.confidence, t) {
                        x.cheap_correct
                    } else {
                        x.base_correct
                    }
                })
                .collect();
            let want = compare_binary(&base, &routed, &options).unwrap();
            let got = cascade(&o, t).unwrap();
            let d = want.discordant.unwrap();
            assert_eq!(got.delta, want.delta, "n {n} t {t}");
            assert_eq!(got.accuracy, want.mean_b);
            assert_eq!(got.base_accuracy, want.mean_a);
            // The standard error from counts and from the item-by-item sum differ by rounding.
            assert!(
                (got.stderr - want.stderr).abs() <= 1e-11 * want.stderr,
                "{} {}",
                got.stderr,
                want.stderr
            );
            assert!((got.delta_ci.lo - want.ci.lo).abs() <= 1e-12);
            assert!((got.delta_ci.hi - want.ci.hi).abs() <= 1e-12);
            if d.a_right_b_wrong.min(d.a_wrong_b_right) as u64 <= MCNEMAR_DIRECT {
                assert_eq!(got.p_value, want.p_value, "n {n} t {t}");
            } else {
                assert!(
                    (got.p_value - want.p_value).abs() <= 1e-9 * want.p_value,
                    "{} {}",
                    got.p_value,
                    want.p_value
                );
            }
        }
    }
}

#[test]
fn fast_mcnemar_tail_matches_mcnemar_exact() {
    let pairs = [
        (65, 66),
        (65, 67),
        (65, 100),
        (66, 200),
        (100, 150),
        (150, 100),
        (500, 560),
        (1000, 1063),
        (1000, 1100),
        (1000, 1400),
        (2500, 2600),
        (3000, 4000),
        (9000, 9200),
        (5000, 6500),
    ];
    for (a, b) in pairs {
        let want = mcnemar_exact(a, b);
        let got = mcnemar_p(a, b);
        assert!(want > 1e-300, "{a} {b} {want}");
        assert!(
            (got - want).abs() <= 1e-9 * want,
            "({a}, {b}): {got:e} vs {want:e}"
        );
    }
    // Balanced splits are 1 exactly, small counts are mcnemar_exact itself.
    assert_eq!(mcnemar_p(5000, 5001), 1.0);
    assert_eq!(mcnemar_p(3, 12), mcnemar_exact(3, 12));
    assert_eq!(mcnemar_p(0, 0), 1.0);
    // A tail below f64's range is 0 both ways.
    assert_eq!(mcnemar_exact(100, 100_000), 0.0);
    assert_eq!(mcnemar_p(100, 100_000), 0.0);
}

#[test]
fn sweep_equals_cascade_at_each_threshold() {
    let o = random(500, 42);
    let s = sweep(&o, Signal::Margin, &SweepOptions::default()).unwrap();
    assert_eq!(s.n, 500);
    assert_eq!(s.points.first().unwrap().threshold, 1.0);
    assert_eq!(s.points.first().unwrap().cheap_served, 0);
    assert_eq!(s.points.last().unwrap().threshold, 0.0);
    assert_eq!(s.points.last().unwrap().cheap_served, 500);
    for w in s.points.windows(2) {
        assert!(w[0].threshold > w[1].threshold);
        assert!(w[0].cheap_served < w[1].cheap_served);
    }
    for p in &s.points {
        let want = cascade(&o, p.threshold).unwrap();
        assert_eq!(
            Point {
                pareto: false,
                ..p.clone()
            },
            want
        );
    }
    // Every candidate threshold (0, each confidence, 1) lands on a point with its number kept.
    let mut candidates: Vec<f64> = o.iter().map(|x| x.confidence).collect();
    candidates.extend([0.0, 1.0]);
    for t in candidates {
        let c = cascade(&o, t).unwrap();
        let p = s
            .points
            .iter()
            .find(|p| p.cheap_served == c.cheap_served)
            .unwrap_or_else(|| panic!("no point keeps {} (threshold {t})", c.cheap_served));
        assert_eq!(
            Point {
                threshold: t,
                pareto: false,
                ..p.clone()
            },
            c
        );
    }
    // One point per distinct confidence below 1, plus threshold 1; threshold 0 stands in for
    // the lowest confidence.
    let mut distinct: Vec<f64> = o
        .iter()
        .map(|x| x.confidence)
        .filter(|&c| c < 1.0)
        .collect();
    distinct.sort_by(f64::total_cmp);
    distinct.dedup();
    assert_eq!(s.points.len(), distinct.len() + 1);
}

#[test]
fn sweep_does_not_depend_on_item_order() {
    let o = random(800, 9);
    let mut r = o.clone();
    r.reverse();
    r.swap(3, 700);
    let a = sweep(&o, Signal::TopProb, &SweepOptions::default()).unwrap();
    let b = sweep(&r, Signal::TopProb, &SweepOptions::default()).unwrap();
    assert_eq!(a, b);
}

#[test]
fn sweep_ends_when_every_confidence_is_one_or_none_is_zero() {
    let mut o = six();
    for x in &mut o {
        x.confidence = 1.0;
    }
    let s = sweep(&o, Signal::Margin, &SweepOptions::default()).unwrap();
    let kept: Vec<(f64, usize)> = s
        .points
        .iter()
        .map(|p| (p.threshold, p.cheap_served))
        .collect();
    assert_eq!(kept, [(1.0, 0), (0.0, 6)]);

    let s = sweep(&six(), Signal::Margin, &SweepOptions::default()).unwrap();
    let kept: Vec<(f64, usize)> = s
        .points
        .iter()
        .map(|p| (p.threshold, p.cheap_served))
        .collect();
    assert_eq!(
        kept,
        [
            (1.0, 0),
            (0.9, 1),
            (0.8, 2),
            (0.6, 3),
            (0.4, 4),
            (0.3, 5),
            (0.0, 6)
        ]
    );
}

#[test]
fn pareto_flags_match_brute_force() {
    for seed in 0..5 {
        let o = random(400, 100 + seed);
        let s = sweep(&o, Signal::Margin, &SweepOptions::default()).unwrap();
        let dominated = |p: &Point| {
            s.points.iter().any(|q| {
                q.cost <= p.cost
                    && q.accuracy >= p.accuracy
                    && (q.cost < p.cost || q.accuracy > p.accuracy)
            })
        };
        for p in &s.points {
            assert_eq!(p.pareto, !dominated(p), "threshold {}", p.threshold);
        }
        assert!(s.points.iter().any(|p| p.pareto));
    }
}

#[test]
fn pareto_keeps_exact_ties_and_drops_equal_cost_worse_points() {
    let base = cascade(&six(), 0.5).unwrap();
    let at = |cost: f64, accuracy: f64| Point {
        cost,
        accuracy,
        ..base.clone()
    };
    let mut points = vec![
        at(2.0, 0.5),
        at(1.0, 0.4),
        at(2.0, 0.5),
        at(2.0, 0.45),
        at(3.0, 0.5),
        at(3.0, 0.6),
        at(0.5, 0.1),
    ];
    mark_pareto(&mut points);
    let flags: Vec<bool> = points.iter().map(|p| p.pareto).collect();
    assert_eq!(flags, [true, true, true, false, false, true, true]);
}

#[test]
fn oracle_by_hand() {
    // Safe to route: a (cheap right), b (cheap right), d (both wrong), e (cheap right).
    // Not: c and f (cheap wrong, base right). 4/6.
    let s = sweep(&six(), Signal::Margin, &SweepOptions::default()).unwrap();
    assert_eq!(s.oracle.n, 6);
    assert_eq!(s.oracle.share, 4.0 / 6.0);
    assert_eq!(
        s.oracle.ci,
        effbench_stats::wilson_interval(4, 6, 0.95).unwrap()
    );
}

/// `count` items at `confidence` with the given outcomes, cheap cost 1, base cost 10.
fn block(
    out: &mut Vec<Outcome>,
    count: usize,
    confidence: f64,
    cheap_correct: bool,
    base_correct: bool,
) {
    for _ in 0..count {
        let name = format!("i{}", out.len());
        out.push(item(
            &name,
            confidence,
            cheap_correct,
            base_correct,
            1.0,
            10.0,
        ));
    }
}

#[test]
fn routable_when_the_cheap_model_matches_on_confident_items() {
    // 300 confident items (each its own confidence) where the cheap model answers as the base
    // model does, then 100 unconfident ones it gets wrong and the base model right.
    let mut o = Vec::new();
    for i in 0..300 {
        let right = i % 10 < 7;
        block(&mut o, 1, 0.99 - 0.0003 * i as f64, right, right);
    }
    for i in 0..100 {
        block(&mut o, 1, 0.3 - 0.002 * i as f64, false, true);
    }
    let s = sweep(&o, Signal::Margin, &SweepOptions::default()).unwrap();
    let r = &s.routable;
    // Up to 300 kept: delta 0 with stderr 0, a lower bound of 0 > −0.01. One loss (301 kept):
    // delta −1/400 = −0.0025, stderr 0.05/20 = 0.0025, bound −0.0025 − 1.645 × 0.0025 =
    // −0.0066 > −0.01, passes. Two losses: delta −0.005, stderr √(1.99/399)/20 = 0.00353,
    // bound −0.0108 < −0.01, fails and stops the scan.
    assert_eq!(s.points[r.index].cheap_served, 301);
    assert_eq!(r.share_cheap, 301.0 / 400.0);
    assert_eq!(r.delta, -1.0 / 400.0);
    assert!((r.delta_lower - (-0.0025 - 1.6448536269514722 * 0.0025)).abs() < 1e-9);
    assert_eq!(
        r.share_ci,
        effbench_stats::wilson_interval(301, 400, 0.95).unwrap()
    );
    // Cost: 400 cheap + 99 escalated × 10 = 1390 against 4000.
    assert_eq!(r.saving, 1.0 - 1390.0 / 4000.0);
    assert_eq!(r.threshold, s.points[r.index].threshold);
    assert_eq!((r.margin, r.alpha), (0.01, 0.05));
    assert!(r.method.contains("fixed-sequence"));
    assert!(r.method.contains("loses less than 1 pt"), "{}", r.method);
    assert_eq!(margin_points(0.05), "5");
    assert_eq!(margin_points(0.005), "0.5");
    assert_eq!(margin_points(0.0), "0");

    // A wider margin lets more through; a stricter alpha no more.
    let wide = sweep(
        &o,
        Signal::Margin,
        &SweepOptions {
            margin: 0.05,
            alpha: 0.05,
        },
    )
    .unwrap();
    assert!(wide.routable.share_cheap > r.share_cheap);
    let strict = sweep(
        &o,
        Signal::Margin,
        &SweepOptions {
            margin: 0.01,
            alpha: 0.001,
        },
    )
    .unwrap();
    assert!(strict.routable.share_cheap <= r.share_cheap);
}

#[test]
fn nothing_routable_when_the_cheap_model_is_much_worse() {
    // The 40 most confident items tie; the cheap model loses 20 of them.
    let mut o = Vec::new();
    block(&mut o, 20, 0.95, false, true);
    block(&mut o, 20, 0.95, true, true);
    for i in 0..360 {
        block(&mut o, 1, 0.9 * (1.0 - i as f64 / 360.0), i % 2 == 0, true);
    }
    let s = sweep(&o, Signal::TopProb, &SweepOptions::default()).unwrap();
    let r = &s.routable;
    assert_eq!(r.index, 0);
    assert_eq!(r.threshold, 1.0);
    assert_eq!(r.share_cheap, 0.0);
    assert_eq!(r.share_ci.lo, 0.0);
    assert_eq!(r.delta, 0.0);
    // Routing nothing still pays for the cheap pass: 400 against 4000.
    assert_eq!(r.saving, 1.0 - 4400.0 / 4000.0);
    assert!(r.saving < 0.0);
    assert_eq!(s.points[1].cheap_served, 40);
    assert_eq!(s.points[1].delta, -20.0 / 400.0);
}

#[test]
fn fixed_sequence_stops_at_the_first_failure() {
    // First 20 items (confidence 0.9): the cheap model loses 10. Next 40 (0.8): it wins 30 the
    // base model misses, so by then the cascade is 10 items ahead. The rest agree.
    let mut o = Vec::new();
    block(&mut o, 10, 0.9, false, true);
    block(&mut o, 10, 0.9, true, true);
    block(&mut o, 30, 0.8, true, false);
    block(&mut o, 10, 0.8, true, true);
    for i in 0..140 {
        let right = i % 3 != 0;
        block(&mut o, 1, 0.5 - 0.003 * i as f64, right, right);
    }
    let options = SweepOptions::default();
    let s = sweep(&o, Signal::Margin, &options).unwrap();
    let z = normal_quantile(1.0 - options.alpha);
    let passes = |p: &Point| p.delta - z * p.stderr > -options.margin;
    assert_eq!(s.points[1].cheap_served, 20);
    assert!(!passes(&s.points[1]));
    // The next point and every one after it would pass on its own.
    assert_eq!(s.points[2].cheap_served, 60);
    assert_eq!(s.points[2].delta, 20.0 / 200.0);
    assert!(s.points[2..].iter().all(passes));
    // ...but the scan stopped at the first failure.
    assert_eq!(s.routable.index, 0);
    assert_eq!(s.routable.share_cheap, 0.0);
}

#[test]
fn errors_name_the_item() {
    assert_eq!(cascade(&[], 0.5), Err(RoutingError::TooFewItems { got: 0 }));
    assert_eq!(
        sweep(&six()[..1], Signal::Margin, &SweepOptions::default()),
        Err(RoutingError::TooFewItems { got: 1 })
    );

    let mut o = six();
    o[2].confidence = f64::NAN;
    let e = cascade(&o, 0.5).unwrap_err();
    assert!(matches!(&e, RoutingError::BadConfidence { item, .. } if item == "c"));
    assert_eq!(e.to_string(), "item `c`: confidence NaN is not in 0..1");
    o[2].confidence = 1.5;
    assert!(matches!(
        sweep(&o, Signal::Margin, &SweepOptions::default()),
        Err(RoutingError::BadConfidence { .. })
    ));

    let mut o = six();
    o[4].base_cost = -1.0;
    let e = sweep(&o, Signal::Margin, &SweepOptions::default()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "item `e`: base cost -1 is not a finite non-negative number"
    );
    o[4].base_cost = 4.0;
    o[0].cheap_cost = f64::INFINITY;
    assert!(matches!(
        cascade(&o, 0.5),
        Err(RoutingError::BadCost { model: "cheap", .. })
    ));

    let mut o = six();
    for x in &mut o {
        x.base_cost = 0.0;
    }
    assert_eq!(
        cascade(&o, 0.5),
        Err(RoutingError::BadBaseTotal { total: 0.0 })
    );

    assert_eq!(
        cascade(&six(), 1.5),
        Err(RoutingError::BadThreshold { value: 1.5 })
    );
    assert!(cascade(&six(), f64::NAN).is_err());

    for (margin, alpha) in [
        (-0.01, 0.05),
        (1.0, 0.05),
        (f64::NAN, 0.05),
        (0.01, 0.0),
        (0.01, 0.5),
    ] {
        assert!(
            matches!(
                sweep(&six(), Signal::Margin, &SweepOptions { margin, alpha }),
                Err(RoutingError::BadOption { .. })
            ),
            "{margin} {alpha}"
        );
    }
}

#[test]
fn exact_sum_is_order_free_and_correctly_rounded() {
    // 1 + 1e-16 + 1e-16 is 1.0000000000000002 exactly rounded; a plain left-to-right sum gives 1.
    let mut s = ExactSum::default();
    for x in [1.0, 1e-16, 1e-16] {
        s.add(x);
    }
    assert_eq!(s.value(), 1.0000000000000002);
    // Adding and taking away returns exactly to where it was.
    let mut s = ExactSum::default();
    for x in [0.1, 0.2, 0.3, -0.2, -0.1] {
        s.add(x);
    }
    assert_eq!(s.value(), 0.3);
    s.add(-0.3);
    assert_eq!(s.value(), 0.0);
    // Python: math.fsum([1e100, 1.0, -1e100, 1e-100, 1e50, -1.0, -1e50]) == 1e-100.
    let mut s = ExactSum::default();
    for x in [1e100, 1.0, -1e100, 1e-100, 1e50, -1.0, -1e50] {
        s.add(x);
    }
    assert_eq!(s.value(), 1e-100);
    // Halfway case: 1 + 2⁻⁵³ + 2⁻¹⁰⁶ rounds up (Python's fsum test suite).
    let mut s = ExactSum::default();
    for x in [1.0, 2f64.powi(-53), 2f64.powi(-106)] {
        s.add(x);
    }
    assert_eq!(s.value(), 1.0 + 2f64.powi(-52));
}

#[test]
fn large_sweep_runs_in_one_pass() {
    // 100k items with thousands of discordant pairs: one sort and one pass; the McNemar tails
    // cost O(√m) each. Checks the ends only; the equality with `cascade` is tested above.
    let o = random(100_000, 5);
    let s = sweep(&o, Signal::Margin, &SweepOptions::default()).unwrap();
    assert_eq!(s.points.last().unwrap().cheap_served, 100_000);
    assert_eq!(
        s.points[0],
        Point {
            pareto: s.points[0].pareto,
            ..cascade(&o, 1.0).unwrap()
        }
    );
    let last = s.points.last().unwrap();
    assert_eq!(
        last,
        &Point {
            pareto: last.pareto,
            ..cascade(&o, 0.0).unwrap()
        }
    );
}
