//! The commands that are views over a run (`spec-bench`, `serve-bench`, `distill eval`): each
//! asks its question in its own flags, as a run of preset techniques, so it writes the same
//! run directory and versioned `report.json` as `effbench run`, which `report` and `compare`
//! read.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::{Args, FromArgMatches};
use effbench_eval::run::{Printed, RunConfig};

use crate::common::ModelArgs;
use crate::run::{PriceArgs, RunArgs};

/// Where a view's run goes, what its rows' quality is scored on, and what it prints.
#[derive(Args, Clone)]
pub struct ViewArgs {
    /// Quality suite every row is also scored on (any suite of `effbench run --suite`). A
    /// decoding row shares its weights' scores; a few short windows by default, since speed
    /// is this command's question.
    #[arg(long, default_value = "wikitext-2")]
    pub suite: String,
    /// Perplexity suites: tokens per window.
    #[arg(long, default_value_t = 256)]
    pub ctx: usize,
    /// Perplexity suites: windows scored.
    #[arg(long, default_value_t = 1)]
    pub chunks: usize,
    /// The run directory: report.json (the results schema `effbench report` and `compare`
    /// read), report.md, summary and records. Default: results/<run-id>.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the interrupted run in --out (or the latest with the same settings).
    #[arg(long)]
    pub resume: bool,
    /// Print report.json instead of the tables.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub prices: PriceArgs,
}

/// `effbench run`'s settings with every flag at its default: what a view does not set is
/// what a plain run would do, stated once in `RunArgs`.
fn run_defaults() -> RunConfig {
    let matches = <RunArgs as Args>::augment_args(clap::Command::new("run"))
        .no_binary_name(true)
        .get_matches_from(Vec::<String>::new());
    RunArgs::from_arg_matches(&matches)
        .expect("run's defaults parse")
        .into()
}

/// A run of `techniques` (the baseline first) on the model, placed and scored as `view` says.
pub fn config(model: &ModelArgs, view: &ViewArgs, techniques: Vec<String>) -> RunConfig {
    let mut c = run_defaults();
    c.model = model.model.clone();
    c.threads = model.threads;
    c.device = model.device.clone();
    c.techniques = techniques;
    c.suite = view.suite.clone();
    c.ctx = view.ctx;
    c.chunks = view.chunks;
    c.prices = view.prices.clone().into();
    c.print = if view.json {
        Printed::ReportJson
    } else {
        Printed::Markdown
    };
    place(&mut c, view.out.as_deref(), view.resume);
    c
}

/// `--out DIR` names the run directory itself: its parent holds it, its name is the run id.
pub fn place(c: &mut RunConfig, dir: Option<&Path>, resume: bool) {
    if let Some(dir) = dir {
        let name = dir.file_name().map(|n| n.to_string_lossy().to_string());
        c.out = match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        c.run_id = name;
    }
    c.resume = resume.then(|| c.run_id.clone().unwrap_or_else(|| "latest".into()));
}

/// Runs the view's run; the directory it wrote.
pub fn run(config: RunConfig) -> Result<PathBuf> {
    Ok(effbench_eval::run::run(config)?)
}
