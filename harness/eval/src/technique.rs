//! Techniques as registered values. Each technique crate declares its names' grammar and a
//! parser; [`REGISTRY`] lists them, one line each, and is the only place a name is parsed.
//! A [`Stack`] joins up to one technique of each kind with `+`:
//! `int4-gptq+spec:ngram+kv:paged`, or `f16+route:int2-gptq@0.5`.

use candle_core::{DType, Device};
use effbench_core::technique::{TechniqueGrammar, TechniqueKind};
use std::sync::Arc;

use effbench_core::{AsStored, Dequantize, KvCacheBuilder, WeightPolicy};
use effbench_kvcache::technique as kv_cache;
use effbench_quant::{Method, QuantPolicy, Recipe};
use effbench_routing::RouteSpec;
use effbench_speculative::{technique as speculative, SpecTechnique};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TechniqueError {
    #[error("unknown technique `{part}` (known: {known})")]
    Unknown { part: String, known: String },
    #[error("`{name}` stacks two {kind} techniques, `{first}` and `{second}`; a stack takes at most one of each kind (weights, decoding, KV cache)")]
    Conflict {
        name: String,
        kind: &'static str,
        first: String,
        second: String,
    },
    #[error(
        "technique `{name}` has an empty part; stack techniques as A+B (e.g. int4+spec:ngram)"
    )]
    EmptyPart { name: String },
    #[error("{0}")]
    Invalid(String),
    #[error("`{name}` routes to `{cheap}`, which is not a weights technique ({reason}); the cheap model of a cascade is a format of the weights or a student, e.g. route:int2-gptq@0.5")]
    CheapNotWeights {
        name: String,
        cheap: String,
        reason: String,
    },
    #[error("`{name}` stacks routing with a {kind} technique; a routing row is built from the records of its two weights rows, so it takes only a weights part (e.g. f16+route:int2-gptq@0.5)")]
    RoutingStacked { name: String, kind: &'static str },
}

/// The weights a technique runs the model with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightsArg {
    AsStored,
    F16,
    F32,
    /// int4/int2 from the f16 form of the checkpoint (`effbench-quant`).
    Quant(Recipe),
}

impl WeightsArg {
    /// The policy that loads a checkpoint this way onto `device`; None for GPTQ, which loads
    /// from a quantized file instead. On a GPU, int4/int2 formats with a GGML type run on
    /// candle's quantized CUDA kernels; effbench's own packed formats have no CUDA kernel and
    /// are dequantized to f16 as they load, which their label says ("int4 storage, f16
    /// compute").
    /// The registry's name for these weights, which parses back to them: what a command that
    /// takes weights as a flag names its row in a run.
    pub fn technique_name(self) -> String {
        match self {
            Self::AsStored => "as-stored".into(),
            Self::F16 => "f16".into(),
            Self::F32 => "f32".into(),
            Self::Quant(r) => format!(
                "{}-{}{}",
                r.spec,
                r.method.name(),
                if r.f16_head { "-f16head" } else { "" }
            ),
        }
    }

    pub fn policy(self, device: &Device) -> Option<Box<dyn WeightPolicy>> {
        Some(match self {
            Self::AsStored => Box::new(AsStored),
            Self::F16 => Box::new(Dequantize(DType::F16)),
            Self::F32 => Box::new(Dequantize(DType::F32)),
            Self::Quant(r) if r.method == Method::Rtn => Box::new(QuantPolicy::rtn(r, device)),
            Self::Quant(_) => return None,
        })
    }
}

/// What the weights part of a stack names: a format of the model's own weights, or another
/// model (a student) in their place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Weights {
    Format(WeightsArg),
    Student(String),
}

/// One parsed part of a technique name. A KV-cache technique is its builder, so the engine
/// makes caches without knowing their types.
#[derive(Clone, Debug)]
pub enum Part {
    Weights(Weights),
    Decoding(SpecTechnique),
    Kv(Arc<dyn KvCacheBuilder>),
    Routing(RouteSpec),
}

impl Part {
    fn kind(&self) -> TechniqueKind {
        match self {
            Self::Weights(_) => TechniqueKind::Weights,
            Self::Decoding(_) => TechniqueKind::Decoding,
            Self::Kv(_) => TechniqueKind::KvCache,
            Self::Routing(_) => TechniqueKind::Routing,
        }
    }
}

/// A family's parser: `None` for a name that is not its own, else the value or why not.
pub type ParseFn<T> = fn(&str) -> Option<Result<T, String>>;

/// A family's parser, by the kind of value it makes.
#[derive(Clone, Copy)]
pub enum Parser {
    Weights(ParseFn<Weights>),
    Decoding(ParseFn<SpecTechnique>),
    Kv(ParseFn<Arc<dyn KvCacheBuilder>>),
    Routing(ParseFn<RouteSpec>),
}

/// A family of names: its grammar and its parser.
pub struct Registered {
    pub grammar: TechniqueGrammar,
    pub parse: Parser,
}

impl Registered {
    pub const fn weights(grammar: TechniqueGrammar, parse: ParseFn<Weights>) -> Self {
        Self {
            grammar,
            parse: Parser::Weights(parse),
        }
    }

    pub const fn decoding(grammar: TechniqueGrammar, parse: ParseFn<SpecTechnique>) -> Self {
        Self {
            grammar,
            parse: Parser::Decoding(parse),
        }
    }

    pub const fn kv(grammar: TechniqueGrammar, parse: ParseFn<Arc<dyn KvCacheBuilder>>) -> Self {
        Self {
            grammar,
            parse: Parser::Kv(parse),
        }
    }

    pub const fn routing(grammar: TechniqueGrammar, parse: ParseFn<RouteSpec>) -> Self {
        Self {
            grammar,
            parse: Parser::Routing(parse),
        }
    }

    fn parse(&self, name: &str) -> Option<Result<Part, String>> {
        Some(match self.parse {
            Parser::Weights(p) => p(name)?.map(Part::Weights),
            Parser::Decoding(p) => p(name)?.map(Part::Decoding),
            Parser::Kv(p) => p(name)?.map(Part::Kv),
            Parser::Routing(p) => p(name)?.map(Part::Routing),
        })
    }
}

/// The model's own weights in a plain format: the engine's built-in family.
pub const WEIGHT_FORMATS: TechniqueGrammar = TechniqueGrammar {
    kind: TechniqueKind::Weights,
    syntax: "f16 | f32 | as-stored",
    help: "the checkpoint's weights dequantized to f16 or f32 (the f16 baseline of a model \
           published only quantized), or in its own stored format (e.g. Q4_1)",
};

fn weight_format(name: &str) -> Option<Result<Weights, String>> {
    let w = match name {
        "f16" | "fp16" => WeightsArg::F16,
        "f32" => WeightsArg::F32,
        "as-stored" | "stored" => WeightsArg::AsStored,
        _ => return None,
    };
    Some(Ok(Weights::Format(w)))
}

fn quantized(name: &str) -> Option<Result<Weights, String>> {
    Recipe::parse_technique(name)
        .map_err(|e| e.to_string())
        .transpose()
        .map(|r| r.map(|r| Weights::Format(WeightsArg::Quant(r))))
}

fn student(name: &str) -> Option<Result<Weights, String>> {
    effbench_distill::technique::parse_student(name).map(|r| r.map(Weights::Student))
}

/// Every technique family, one registration line each.
pub const REGISTRY: &[Registered] = &[
    Registered::weights(WEIGHT_FORMATS, weight_format),
    Registered::weights(effbench_quant::spec::GRAMMAR, quantized),
    Registered::weights(effbench_distill::technique::GRAMMAR, student),
    Registered::decoding(speculative::GRAMMAR, SpecTechnique::parse),
    Registered::kv(kv_cache::GRAMMAR, kv_cache::parse),
    Registered::kv(effbench_kvcache::f16::GRAMMAR, effbench_kvcache::f16::parse),
    Registered::routing(effbench_routing::GRAMMAR, RouteSpec::parse),
];

/// Every family's syntax, for error messages: `f16 | f32 | as-stored; int4|int2[...]; ...`.
pub fn known_syntax() -> String {
    REGISTRY
        .iter()
        .map(|r| r.grammar.syntax)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The registry as help text: one paragraph per family, grouped by kind.
pub fn help() -> String {
    let mut out = String::from(
        "Stack techniques of different kinds with `+`, at most one of each kind (weights, \
         decoding, KV cache), e.g. int4-gptq+spec:ngram+kv:paged. Without a weights part a \
         stack runs the checkpoint as stored. A routing part stacks only with weights: \
         f16+route:int2-gptq@0.5 is a cascade from int2-gptq to f16.\n",
    );
    for kind in [
        TechniqueKind::Weights,
        TechniqueKind::Decoding,
        TechniqueKind::KvCache,
        TechniqueKind::Routing,
    ] {
        out.push_str(&format!("\n{}:\n", kind.describe()));
        for r in REGISTRY.iter().filter(|r| r.grammar.kind == kind) {
            out.push_str(&format!(
                "  {}\n      {}\n",
                r.grammar.syntax, r.grammar.help
            ));
        }
    }
    out
}

fn parse_part(part: &str) -> Result<Part, TechniqueError> {
    REGISTRY
        .iter()
        .find_map(|r| r.parse(part))
        .ok_or_else(|| TechniqueError::Unknown {
            part: part.to_string(),
            known: known_syntax(),
        })?
        .map_err(TechniqueError::Invalid)
}

/// A technique as a run takes it: weights, and optionally a decoding technique and a KV cache.
#[derive(Clone, Debug)]
pub struct Stack {
    /// The name as given, which results are keyed by.
    pub name: String,
    pub weights: Weights,
    /// The name of the weights part as given (`as-stored` when the name has none).
    pub weights_name: String,
    pub decoding: Option<SpecTechnique>,
    pub kv: Option<Arc<dyn KvCacheBuilder>>,
    /// The KV part's name as given, if any.
    pub kv_name: Option<String>,
    /// A cascade whose base model is this stack's weights.
    pub routing: Option<RouteSpec>,
}

impl Stack {
    pub fn parse(name: &str) -> Result<Self, TechniqueError> {
        let mut seen: Vec<(TechniqueKind, &str)> = Vec::new();
        let mut weights = None;
        let mut decoding = None;
        let mut kv = None;
        let mut routing = None;
        for piece in name.split('+') {
            let piece = piece.trim();
            if piece.is_empty() {
                return Err(TechniqueError::EmptyPart { name: name.into() });
            }
            let part = parse_part(piece)?;
            if let Some((_, first)) = seen.iter().find(|(k, _)| *k == part.kind()) {
                return Err(TechniqueError::Conflict {
                    name: name.into(),
                    kind: part.kind().describe(),
                    first: first.to_string(),
                    second: piece.to_string(),
                });
            }
            seen.push((part.kind(), piece));
            match part {
                Part::Weights(w) => weights = Some((w, piece.to_string())),
                Part::Decoding(d) => decoding = Some(d),
                Part::Kv(k) => kv = Some((k, piece.to_string())),
                Part::Routing(r) => routing = Some(r),
            }
        }
        if let Some(route) = &routing {
            if let Some((kind, _)) = seen
                .iter()
                .find(|(k, _)| !matches!(k, TechniqueKind::Weights | TechniqueKind::Routing))
            {
                return Err(TechniqueError::RoutingStacked {
                    name: name.into(),
                    kind: kind.describe(),
                });
            }
            let cheap_is_weights = match parse_part(&route.cheap) {
                Ok(Part::Weights(_)) => Ok(()),
                Ok(other) => Err(format!("it is a {} technique", other.kind().describe())),
                Err(e) => Err(e.to_string()),
            };
            if let Err(reason) = cheap_is_weights {
                return Err(TechniqueError::CheapNotWeights {
                    name: name.into(),
                    cheap: route.cheap.clone(),
                    reason,
                });
            }
        }
        let (weights, weights_name) =
            weights.unwrap_or((Weights::Format(WeightsArg::AsStored), "as-stored".into()));
        let (kv, kv_name) = match kv {
            Some((k, n)) => (Some(k), Some(n)),
            None => (None, None),
        };
        Ok(Self {
            name: name.to_string(),
            weights,
            weights_name,
            decoding,
            kv,
            kv_name,
            routing,
        })
    }

    /// The two rows a routing row is built from, by name: the cheap model's and the base
    /// model's (this stack's weights).
    pub fn route_rows(&self) -> Option<(String, String)> {
        let route = self.routing.as_ref()?;
        Some((route.cheap.clone(), self.weights_name.clone()))
    }

    /// The same stack without its decoding technique, by name (`as-stored+kv:paged` for
    /// `as-stored+spec:ngram+kv:paged`): the row whose log-likelihoods this one shares, since
    /// decoding changes how tokens are produced, not what the model computes.
    pub fn without_decoding(&self) -> Option<String> {
        self.decoding.as_ref()?;
        Some(match &self.kv_name {
            Some(kv) => format!("{}+{kv}", self.weights_name),
            None => self.weights_name.clone(),
        })
    }

    /// The KV cache the row runs in: its own, else the runtime's contiguous f32 cache.
    pub fn kv_or_contiguous(&self) -> &dyn KvCacheBuilder {
        match &self.kv {
            Some(kv) => kv.as_ref(),
            None => &effbench_core::CONTIGUOUS_F32,
        }
    }

    /// Whether the weights are another model rather than the checkpoint's own.
    pub fn student(&self) -> Option<&str> {
        match &self.weights {
            Weights::Student(m) => Some(m),
            Weights::Format(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_weights_format_is_named_as_the_registry_parses_it() {
        for name in [
            "as-stored",
            "f16",
            "f32",
            "int4",
            "int2-gptq",
            "int4-g32-sym-f16head",
        ] {
            let Weights::Format(w) = Stack::parse(name).unwrap().weights else {
                panic!("{name} is a format");
            };
            let again = Stack::parse(&w.technique_name()).unwrap().weights;
            assert_eq!(
                again,
                Weights::Format(w),
                "{name} -> {}",
                w.technique_name()
            );
        }
    }

    #[test]
    fn a_stack_takes_one_of_each_kind_in_any_order() {
        let s = Stack::parse("kv:paged+int4-gptq+spec:ngram").unwrap();
        assert!(
            matches!(s.weights, Weights::Format(WeightsArg::Quant(r)) if r.method == Method::Gptq)
        );
        assert_eq!(s.weights_name, "int4-gptq");
        assert!(s.decoding.is_some());
        assert_eq!(
            s.kv.as_ref().unwrap().describe(),
            "paged (16-token blocks) f32"
        );
        assert_eq!(s.kv_name.as_deref(), Some("kv:paged"));
        assert_eq!(s.without_decoding().as_deref(), Some("int4-gptq+kv:paged"));
    }

    #[test]
    fn a_stack_without_weights_runs_the_checkpoint_as_stored() {
        let s = Stack::parse("spec:ngram").unwrap();
        assert_eq!(s.weights, Weights::Format(WeightsArg::AsStored));
        assert_eq!(s.without_decoding().as_deref(), Some("as-stored"));
        assert_eq!(Stack::parse("f16").unwrap().without_decoding(), None);
    }

    #[test]
    fn a_conflicting_stack_is_refused_in_one_line() {
        let err = Stack::parse("int4+f16").unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(
                err,
                TechniqueError::Conflict {
                    kind: "weights",
                    ..
                }
            ),
            "{msg}"
        );
        assert!(!msg.contains('\n'));
        assert!(matches!(
            Stack::parse("spec:ngram+spec:layers:2").unwrap_err(),
            TechniqueError::Conflict {
                kind: "decoding",
                ..
            }
        ));
        assert!(matches!(
            Stack::parse("kv:paged+kv:contiguous").unwrap_err(),
            TechniqueError::Conflict {
                kind: "KV cache",
                ..
            }
        ));
        assert!(matches!(
            Stack::parse("student:m+int4").unwrap_err(),
            TechniqueError::Conflict {
                kind: "weights",
                ..
            }
        ));
    }

    #[test]
    fn an_unknown_name_lists_the_grammar() {
        let msg = Stack::parse("int4+awq").unwrap_err().to_string();
        assert!(msg.contains("unknown technique `awq`"), "{msg}");
        for r in REGISTRY {
            assert!(msg.contains(r.grammar.syntax), "{msg}");
        }
        assert!(matches!(
            Stack::parse("int4++kv:paged").unwrap_err(),
            TechniqueError::EmptyPart { .. }
        ));
        assert!(matches!(
            Stack::parse("int3").unwrap_err(),
            TechniqueError::Unknown { .. }
        ));
        assert!(matches!(
            Stack::parse("int4-g7").unwrap_err(),
            TechniqueError::Invalid(_)
        ));
    }

    #[test]
    fn a_routing_row_names_its_cheap_and_base_rows() {
        let s = Stack::parse("f16+route:int2-gptq@0.5").unwrap();
        assert_eq!(
            s.route_rows(),
            Some(("int2-gptq".to_string(), "f16".to_string()))
        );
        let s = Stack::parse("route:student:m@sweep").unwrap();
        assert_eq!(
            s.route_rows(),
            Some(("student:m".to_string(), "as-stored".to_string()))
        );
        assert_eq!(Stack::parse("f16").unwrap().route_rows(), None);
    }

    #[test]
    fn a_cascade_takes_only_weights_in_one_line() {
        for (name, want_stacked) in [
            ("f16+route:int2@0.5+spec:ngram", true),
            ("kv:paged+route:int2@0.5", true),
            ("f16+route:spec:ngram@0.5", false),
            ("f16+route:awq@0.5", false),
        ] {
            let err = Stack::parse(name).unwrap_err();
            let msg = err.to_string();
            assert!(!msg.contains('\n'), "{msg}");
            match want_stacked {
                true => assert!(
                    matches!(err, TechniqueError::RoutingStacked { .. }),
                    "{msg}"
                ),
                false => assert!(
                    matches!(err, TechniqueError::CheapNotWeights { .. }),
                    "{msg}"
                ),
            }
        }
        assert!(matches!(
            Stack::parse("route:int2@0.5+route:int4@0.5").unwrap_err(),
            TechniqueError::Conflict {
                kind: "routing",
                ..
            }
        ));
    }

    #[test]
    fn help_lists_every_family_under_its_kind() {
        let h = help();
        for r in REGISTRY {
            assert!(h.contains(r.grammar.syntax));
        }
        assert!(h.find("weights:").unwrap() < h.find("decoding:").unwrap());
        assert!(h.contains("routing:"));
    }
}
