//! `effbench report RUN` regenerates a recorded run's tables and plot (at another price if
//! asked), or a multi-suite run's joined table; `effbench compare RUN RUN...` puts runs side by side; `effbench report --index DIR`
//! writes the index of published runs.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use effbench_eval::run::PriceConfig;
use effbench_report::RunReport;

use crate::run::PriceArgs;

#[derive(Args)]
pub struct ReportArgs {
    /// Run directories (under results/), or with --index the results directory to index.
    #[arg(required = true)]
    runs: Vec<PathBuf>,
    #[command(flatten)]
    prices: PriceArgs,
    /// Print the priced report (schema, rows, takeaways) as JSON instead of markdown.
    #[arg(long)]
    json: bool,
    /// Write DIR/README.md listing every published run with the command that reproduces it.
    #[arg(long)]
    index: bool,
}

#[derive(Args)]
pub struct CompareArgs {
    /// Two or more run directories of the same suite manifest.
    #[arg(required = true, num_args = 2..)]
    runs: Vec<PathBuf>,
    #[command(flatten)]
    prices: PriceArgs,
}

pub fn report(args: ReportArgs) -> Result<()> {
    if args.index {
        for dir in &args.runs {
            let path = effbench_report::index::write_index(dir)?;
            eprintln!("wrote {}", path.display());
        }
        return Ok(());
    }
    let prices = PriceConfig::from(args.prices);
    for dir in &args.runs {
        if effbench_eval::run::is_suites_run(dir) {
            let (md, rows) = effbench_eval::run::join_suites(dir)?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!("{md}");
            }
            continue;
        }
        let run = RunReport::load_dir(dir)?;
        let price = prices.price_for(&run)?;
        let rendered = effbench_report::render_dir(&run, &price, dir)?;
        if args.json {
            let out = serde_json::json!({ "run": run, "priced": rendered.view });
            println!("{}", serde_json::to_string_pretty(&out)?);
        } else {
            println!("{}", rendered.markdown);
            if let Some(plot) = rendered.plot {
                eprintln!("plot: {}", plot.display());
            }
        }
    }
    Ok(())
}

pub fn compare(args: CompareArgs) -> Result<()> {
    if args.runs.len() < 2 {
        bail!("compare needs at least two run directories");
    }
    let runs = args
        .runs
        .iter()
        .map(|d| RunReport::load_dir(d))
        .collect::<Result<Vec<_>, _>>()?;
    let price_config = PriceConfig::from(args.prices);
    let prices = runs
        .iter()
        .map(|r| price_config.price_for(r))
        .collect::<Result<Vec<_>, _>>()?;
    println!(
        "{}",
        effbench_report::compare::compare_markdown(&runs, &prices)?
    );
    Ok(())
}
