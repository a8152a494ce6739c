use anyhow::{bail, Result};
use clap::Args;
use tabled::{builder::Builder, settings::Style};

#[derive(Args)]
pub struct FetchArgs {
    /// Asset names (see --list).
    names: Vec<String>,
    /// Show every known asset and whether it is cached.
    #[arg(long)]
    list: bool,
    /// Download again even if a verified copy is cached.
    #[arg(long)]
    force: bool,
}

pub fn run(args: FetchArgs) -> Result<()> {
    if args.list || args.names.is_empty() {
        let mut b = Builder::default();
        b.push_record(["name", "kind", "size", "cached", "path"]);
        for s in effbench_assets::list() {
            b.push_record([
                s.name.to_string(),
                s.kind.to_string(),
                crate::common::mib(s.size as usize),
                if s.cached { "yes" } else { "no" }.to_string(),
                s.path.display().to_string(),
            ]);
        }
        println!("{}", b.build().with(Style::markdown()));
        println!("cache: {}", effbench_assets::cache_dir().display());
        if args.names.is_empty() && !args.list {
            bail!("no asset named (hint: `effbench fetch smollm2-135m-instruct`, or --list)");
        }
        return Ok(());
    }
    let opts = effbench_assets::FetchOptions::default();
    for name in &args.names {
        if args.force {
            let spec = effbench_assets::lookup(name)?;
            let path = spec.path_in(&effbench_assets::cache_dir());
            // Removing the file is enough: a missing file is never taken for a cached one.
            if path.exists() {
                std::fs::remove_file(&path)?;
            }
        }
        let path = effbench_assets::fetch(name, &opts)?;
        println!("{name}: {}", path.display());
    }
    Ok(())
}
