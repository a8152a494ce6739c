use anyhow::Result;
use clap::Args;
use tabled::{builder::Builder, settings::Style};

#[derive(Args)]
pub struct HwArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: HwArgs) -> Result<()> {
    let info = effbench_hw::detect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&info)?);
        return Ok(());
    }
    let mut b = Builder::default();
    b.push_record(["field", "value"]);
    for (k, v) in info.rows() {
        b.push_record([k, v]);
    }
    println!("{}", b.build().with(Style::markdown()));
    Ok(())
}
