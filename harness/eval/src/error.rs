//! The engine's error: what each layer below it can refuse, the engine's own refusals (with or
//! without a hint naming settings), and context added on the way up. The binary shows the
//! cause chain on one line, so a context's text is its own words only: the cause it wraps is
//! the next link of the chain, not part of its message (as `anyhow`'s context does).

use std::fmt::Display;

use crate::hint::Hinted;

/// The engine's result.
pub type Result<T, E = EvalError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A refusal with a hint that names settings as `{field}` (see [`crate::hint`]).
    #[error(transparent)]
    Hinted(#[from] Hinted),
    /// A refusal of the engine's own, whole in its words.
    #[error("{0}")]
    Message(String),
    /// What the engine was doing when `source` failed.
    #[error("{context}")]
    Context {
        context: String,
        #[source]
        source: Box<EvalError>,
    },
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error(transparent)]
    Model(#[from] effbench_core::CoreError),
    #[error(transparent)]
    Quant(#[from] effbench_quant::QuantError),
    #[error(transparent)]
    Speculative(#[from] effbench_speculative::SpecError),
    #[error(transparent)]
    KvCache(#[from] effbench_kvcache::Error),
    #[error(transparent)]
    Distill(#[from] effbench_distill::DistillError),
    #[error(transparent)]
    Routing(#[from] effbench_routing::RoutingError),
    #[error(transparent)]
    Dataset(#[from] effbench_datasets::Error),
    #[error(transparent)]
    Report(#[from] effbench_report::ReportError),
    #[error(transparent)]
    Records(#[from] effbench_report::records::RecordsError),
    #[error(transparent)]
    Stats(#[from] effbench_stats::StatsError),
    #[error(transparent)]
    Asset(#[from] effbench_assets::AssetError),
    #[error(transparent)]
    Technique(#[from] crate::technique::TechniqueError),
}

impl EvalError {
    /// A refusal in the engine's own words.
    pub fn msg(message: impl Display) -> Self {
        EvalError::Message(message.to_string())
    }

    /// This error under `context`: what the engine was doing when it failed.
    pub fn within(self, context: impl Display) -> Self {
        wrap(self, context)
    }

    /// The hint this error or any cause under it carries, if one does.
    pub fn hinted(&self) -> Option<&Hinted> {
        match self {
            EvalError::Hinted(h) => Some(h),
            EvalError::Context { source, .. } => source.hinted(),
            _ => None,
        }
    }
}

/// An error and its causes on one line, joined by `: `, so that the hint at the end of the
/// root cause shows; a cause that an outer message already ends with (as `path: cause`) is not
/// repeated. Hints name settings by field (`{run_id}`); `setting` words each as its user
/// knows it (the binary: as a flag).
pub fn one_line(
    error: &(dyn std::error::Error + 'static),
    setting: impl Fn(&str) -> String,
) -> String {
    let mut words: Vec<String> = Vec::new();
    let mut next = Some(error);
    while let Some(cause) = next {
        // A context holds its cause boxed, and the box is what the chain hands on. A hint only
        // ever travels inside `EvalError::Hinted` (`hint::hinted` makes nothing else).
        let engine = cause
            .downcast_ref::<EvalError>()
            .or_else(|| cause.downcast_ref::<Box<EvalError>>().map(|b| &**b));
        let worded = match engine {
            Some(EvalError::Hinted(hinted)) => hinted.render(&setting),
            _ => cause.to_string(),
        };
        if !words.last().is_some_and(|w| w.ends_with(&worded)) {
            words.push(worded);
        }
        next = cause.source();
    }
    words.join(": ")
}

/// Context on the way up, as `anyhow::Context` gives it.
pub trait Context<T> {
    fn context(self, context: impl Display) -> Result<T>;
    fn with_context<C: Display>(self, context: impl FnOnce() -> C) -> Result<T>;
}

impl<T, E: Into<EvalError>> Context<T> for std::result::Result<T, E> {
    fn context(self, context: impl Display) -> Result<T> {
        self.map_err(|e| wrap(e.into(), context))
    }

    fn with_context<C: Display>(self, context: impl FnOnce() -> C) -> Result<T> {
        self.map_err(|e| wrap(e.into(), context()))
    }
}

impl<T> Context<T> for Option<T> {
    fn context(self, context: impl Display) -> Result<T> {
        self.ok_or_else(|| EvalError::msg(context))
    }

    fn with_context<C: Display>(self, context: impl FnOnce() -> C) -> Result<T> {
        self.ok_or_else(|| EvalError::msg(context()))
    }
}

fn wrap(source: EvalError, context: impl Display) -> EvalError {
    EvalError::Context {
        context: context.to_string(),
        source: Box::new(source),
    }
}

/// Return early with a refusal in the engine's words.
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err($crate::error::EvalError::Message(format!($($arg)*)))
    };
}

/// Refuse unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($arg:tt)*) => {
        if !$cond {
            $crate::error::bail!($($arg)*);
        }
    };
}

pub(crate) use {bail, ensure};

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(e: &EvalError) -> Vec<String> {
        let mut out = vec![e.to_string()];
        let mut next = std::error::Error::source(e);
        while let Some(cause) = next {
            out.push(cause.to_string());
            next = cause.source();
        }
        out
    }

    #[test]
    fn context_is_a_link_of_its_own_as_anyhow_words_it() {
        let failed: std::result::Result<(), std::io::Error> = Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no such file",
        ));
        let e = failed.context("reading run.json").unwrap_err();
        assert_eq!(chain(&e), ["reading run.json", "no such file"]);
        let outer = Err::<(), _>(e).context("resuming").unwrap_err();
        assert_eq!(
            chain(&outer),
            ["resuming", "reading run.json", "no such file"]
        );
    }

    #[test]
    fn a_hint_is_found_under_any_context() {
        let e = crate::hint::hinted("run exists", "pass {resume}");
        let outer = Err::<(), _>(e).context("starting the run").unwrap_err();
        let hinted = outer.hinted().expect("the hint under the context");
        assert_eq!(
            hinted.render(|f| format!("--{f}")),
            "run exists (hint: pass --resume)"
        );
        assert!(EvalError::msg("plain").hinted().is_none());
    }

    #[test]
    fn one_line_joins_the_chain_words_hints_as_flags_and_repeats_no_cause() {
        let e = crate::hint::hinted("run `twin` exists", "pass {run_id} or {resume}");
        let e = e.within("starting the run");
        let flag = |f: &str| format!("--{}", f.replace('_', "-"));
        assert_eq!(
            one_line(&e, flag),
            "starting the run: run `twin` exists (hint: pass --run-id or --resume)"
        );
        // A message that already ends with its cause (as `path: cause`) does not repeat it.
        let io = std::io::Error::other("disk full");
        let e = EvalError::from(io).within("writing x.json: disk full");
        assert_eq!(one_line(&e, flag), "writing x.json: disk full");
    }

    #[test]
    fn bail_and_ensure_word_the_refusal() {
        fn refuse(n: usize) -> Result<usize> {
            ensure!(n > 1, "need at least 2 observations, got {n}");
            if n > 10 {
                bail!("too many: {n}");
            }
            Ok(n)
        }
        assert_eq!(refuse(3).unwrap(), 3);
        assert_eq!(
            refuse(0).unwrap_err().to_string(),
            "need at least 2 observations, got 0"
        );
        assert_eq!(refuse(11).unwrap_err().to_string(), "too many: 11");
    }
}
