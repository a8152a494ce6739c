//! The routing technique's name: `route:CHEAP@[SIGNAL:]THRESHOLD` or `route:CHEAP@sweep`.

use std::fmt;

use effbench_core::technique::{TechniqueGrammar, TechniqueKind};

use crate::signal::Signal;

pub const GRAMMAR: TechniqueGrammar = TechniqueGrammar {
    kind: TechniqueKind::Routing,
    syntax: "route:CHEAP@[SIGNAL:]THRESHOLD | route:CHEAP@sweep",
    help: "a cascade: CHEAP, a weights technique (e.g. int2-gptq or student:M), answers every \
           item first; items whose confidence is below THRESHOLD (0..1) go to the row's own \
           weights, and the rest keep the cheap answer. SIGNAL is margin (the top choice's \
           probability minus the runner-up's; the default for multiple choice), prob (the top \
           choice's probability) or logprob (the answer tokens' geometric-mean probability; the \
           default for generative answers). `sweep` evaluates every threshold from the \
           records, e.g. route:int2-gptq@0.5, route:student:M@prob:0.9, route:int4@sweep",
};

/// The cheap model's answer is kept above this confidence.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Threshold {
    /// One threshold in [0, 1].
    At(f64),
    /// Every threshold the records distinguish.
    Sweep,
}

/// A parsed routing name.
#[derive(Clone, Debug, PartialEq)]
pub struct RouteSpec {
    /// The cheap technique's own name, validated by the caller against the registry.
    pub cheap: String,
    pub threshold: Threshold,
    /// `None` takes the default for the suite's kind ([`Signal::default_for`]).
    pub signal: Option<Signal>,
}

const EXPECTED: &str =
    "expected route:CHEAP@THRESHOLD, e.g. route:int2-gptq@0.5, or route:CHEAP@sweep";

impl RouteSpec {
    /// None when `name` is not a routing name (does not start with "route:"); else the spec or a
    /// one-line reason.
    pub fn parse(name: &str) -> Option<Result<RouteSpec, String>> {
        let rest = name.strip_prefix("route:")?;
        Some(parse_rest(rest).map_err(|why| format!("`{name}`: {why} ({EXPECTED})")))
    }

    /// The signal this row uses: the one named, else the default for the suite's kind.
    pub fn signal_for(&self, multiple_choice: bool) -> Signal {
        self.signal
            .unwrap_or_else(|| Signal::default_for(multiple_choice))
    }
}

fn parse_rest(rest: &str) -> Result<RouteSpec, String> {
    // The last `@`, so that a cheap technique whose own name holds an `@` stays whole.
    let (cheap, tail) = rest.rsplit_once('@').ok_or("no `@` before the threshold")?;
    if cheap.is_empty() {
        return Err("no cheap technique before `@`".into());
    }
    // A routing row's cheap side is one weights technique; a stack or a list here would be
    // split by the caller's own `+` and `,` parsing before it ever reached us.
    if let Some(c) = cheap
        .chars()
        .find(|c| *c == '+' || *c == ',' || c.is_whitespace())
    {
        return Err(format!(
            "the cheap technique `{cheap}` contains {}; it must be one weights technique",
            match c {
                '+' => "`+`".to_string(),
                ',' => "`,`".to_string(),
                _ => "whitespace".to_string(),
            }
        ));
    }
    let (signal, value) = match tail.split_once(':') {
        Some((s, v)) => (
            Some(
                Signal::parse(s)
                    .ok_or_else(|| format!("unknown signal `{s}` (margin, prob or logprob)"))?,
            ),
            v,
        ),
        None => (None, tail),
    };
    let threshold = if value == "sweep" {
        Threshold::Sweep
    } else if value.is_empty() {
        return Err("no threshold after `@`".into());
    } else {
        let t: f64 = value
            .parse()
            .map_err(|_| format!("threshold `{value}` is not a number or `sweep`"))?;
        if !t.is_finite() {
            return Err(format!("threshold `{value}` is not a finite number"));
        }
        if !(0.0..=1.0).contains(&t) {
            return Err(format!("threshold {value} is outside 0..1"));
        }
        // -0 would print as `-0` and never round-trip to the same name.
        Threshold::At(if t == 0.0 { 0.0 } else { t })
    };
    Ok(RouteSpec {
        cheap: cheap.to_string(),
        threshold,
        signal,
    })
}

impl fmt::Display for RouteSpec {
    /// The canonical name: `route:int2-gptq@0.5`, `route:student:m@prob:0.9`, `route:x@sweep`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "route:{}@", self.cheap)?;
        if let Some(s) = self.signal {
            write!(f, "{}:", s.name())?;
        }
        match self.threshold {
            // f64's Display is the shortest text that parses back to the same value.
            Threshold::At(t) => write!(f, "{t}"),
            Threshold::Sweep => f.write_str("sweep"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(name: &str) -> RouteSpec {
        RouteSpec::parse(name)
            .expect("a routing name")
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    fn err(name: &str) -> String {
        let e = RouteSpec::parse(name)
            .expect("a routing name")
            .expect_err(name);
        assert!(!e.contains('\n'), "one line: {e}");
        assert!(!e.contains("--"), "no CLI flags: {e}");
        assert!(e.starts_with(&format!("`{name}`: ")), "{e}");
        assert!(e.contains("route:CHEAP@THRESHOLD"), "{e}");
        e
    }

    #[test]
    fn good_names() {
        assert_eq!(
            ok("route:int2-gptq@0.5"),
            RouteSpec {
                cheap: "int2-gptq".into(),
                threshold: Threshold::At(0.5),
                signal: None
            }
        );
        assert_eq!(
            ok("route:student:qwen2.5-coder-0.5b-instruct@sweep"),
            RouteSpec {
                cheap: "student:qwen2.5-coder-0.5b-instruct".into(),
                threshold: Threshold::Sweep,
                signal: None
            }
        );
        assert_eq!(
            ok("route:int4@prob:0.9"),
            RouteSpec {
                cheap: "int4".into(),
                threshold: Threshold::At(0.9),
                signal: Some(Signal::TopProb)
            }
        );
        assert_eq!(
            ok("route:a@margin:sweep"),
            RouteSpec {
                cheap: "a".into(),
                threshold: Threshold::Sweep,
                signal: Some(Signal::Margin)
            }
        );
        assert_eq!(ok("route:x@logprob:1").signal, Some(Signal::MeanLogprob));
        assert_eq!(ok("route:x@0").threshold, Threshold::At(0.0));
        assert_eq!(ok("route:x@1").threshold, Threshold::At(1.0));
        // The last `@` splits, so a cheap name may hold one.
        assert_eq!(ok("route:student:m@v2@0.25").cheap, "student:m@v2");
    }

    #[test]
    fn errors_are_one_line_and_say_what_is_expected() {
        assert!(err("route:int2").contains("no `@`"));
        assert!(err("route:@0.5").contains("no cheap technique"));
        assert!(err("route:int4+spec:ngram@0.5").contains("`+`"));
        assert!(err("route:int4,f16@0.5").contains("`,`"));
        assert!(err("route:int 4@0.5").contains("whitespace"));
        assert_eq!(
            err("route:int2@1.5"),
            "`route:int2@1.5`: threshold 1.5 is outside 0..1 (expected route:CHEAP@THRESHOLD, \
             e.g. route:int2-gptq@0.5, or route:CHEAP@sweep)"
        );
        assert!(err("route:int2@-0.1").contains("outside 0..1"));
        assert!(err("route:int2@NaN").contains("not a finite number"));
        assert!(err("route:int2@inf").contains("not a finite number"));
        assert!(err("route:int2@high").contains("not a number or `sweep`"));
        assert!(err("route:int2@").contains("no threshold"));
        assert!(err("route:int2@prob:").contains("no threshold"));
        assert!(err("route:int2@entropy:0.5").contains("unknown signal `entropy`"));
    }

    #[test]
    fn other_names_are_not_ours() {
        assert_eq!(RouteSpec::parse("int2-gptq"), None);
        assert_eq!(RouteSpec::parse("student:m"), None);
        assert_eq!(RouteSpec::parse("route"), None);
        assert_eq!(RouteSpec::parse("routes:x@0.5"), None);
    }

    #[test]
    fn display_round_trips() {
        for name in [
            "route:int2-gptq@0.5",
            "route:student:m@prob:0.9",
            "route:x@sweep",
            "route:a@margin:sweep",
            "route:b@logprob:0.125",
            "route:c@0",
            "route:c@1",
            "route:student:m@v2@0.3",
        ] {
            let spec = ok(name);
            assert_eq!(spec.to_string(), name);
            assert_eq!(ok(&spec.to_string()), spec);
        }
        // Non-canonical spellings print canonically and still parse to the same spec.
        for (name, canonical) in [
            ("route:x@0.50", "route:x@0.5"),
            ("route:x@-0", "route:x@0"),
            ("route:x@1e-1", "route:x@0.1"),
            ("route:x@top-prob:.9", "route:x@prob:0.9"),
        ] {
            let spec = ok(name);
            assert_eq!(spec.to_string(), canonical);
            assert_eq!(ok(canonical), spec);
        }
    }

    #[test]
    fn grammar_is_routing() {
        assert_eq!(GRAMMAR.kind, TechniqueKind::Routing);
        assert_eq!(GRAMMAR.kind.describe(), "routing");
        assert!(GRAMMAR.help.contains("margin") && GRAMMAR.help.contains("sweep"));
    }

    #[test]
    fn default_signal_follows_the_suite() {
        assert_eq!(ok("route:x@0.5").signal_for(true), Signal::Margin);
        assert_eq!(ok("route:x@0.5").signal_for(false), Signal::MeanLogprob);
        assert_eq!(ok("route:x@prob:0.5").signal_for(false), Signal::TopProb);
    }
}
