//! llama-bench's two tests on our engine: `pp N` (prefill N tokens in one pass) and `tg N`
//! (decode N tokens one at a time), each repeated after a warm-up and reported as mean ± sd
//! tok/s, tokenization excluded. `--depth D` starts both after D tokens already in the KV
//! cache, as llama-bench's `-d D` (`pp512 @ d512`).

use anyhow::Result;
use clap::Args;
use effbench_eval::bench::{bench, synthetic, BenchSettings, Subject};
use effbench_eval::run::BuildInfo;

use crate::common::{load_model, select_device, ModelArgs};

#[derive(Args)]
pub struct BenchArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Prompt tokens for the prefill test (0 skips it).
    #[arg(long, short = 'p', default_value_t = 512)]
    n_prompt: usize,
    /// Tokens generated for the decode test (0 skips it).
    #[arg(long, short = 'n', default_value_t = 128)]
    n_gen: usize,
    /// Measured repetitions of each test, after one warm-up run.
    #[arg(long, short = 'r', default_value_t = 5)]
    repetitions: usize,
    /// Tokens already in the KV cache when each test starts, as llama-bench's `-d`: they are
    /// prefilled before the clock starts, and the tests run after them (`pp512 @ d512`,
    /// `tg128 @ d512`). Depth plus a test's tokens must fit the model's context.
    #[arg(long, short = 'd', default_value_t = 0)]
    depth: usize,
    /// Time a published shape with random f16 weights made on the device instead of a
    /// checkpoint (llama-3.1-8b, qwen2.5-1.5b, qwen2.5-0.5b, smollm2-135m): speed at sizes no
    /// file on hand has. Labelled synthetic in every output; --model and --weights are unused.
    #[arg(long, value_name = "SHAPE", conflicts_with_all = ["model", "weights"])]
    synthetic: Option<String>,
    #[arg(long)]
    json: bool,
}

fn subject(args: &BenchArgs) -> Result<Subject> {
    match &args.synthetic {
        Some(shape) => {
            let device = select_device(&args.model.device)?;
            Ok(synthetic(shape, args.model.threads, &device)?)
        }
        None => {
            let session = load_model(&args.model)?;
            Ok(Subject {
                variant: session.loaded.model.label().to_string(),
                name: session.loaded.path.display().to_string(),
                model: session.loaded.model,
                threads: session.threads,
            })
        }
    }
}

pub fn run(args: BenchArgs) -> Result<()> {
    let settings = BenchSettings {
        n_prompt: args.n_prompt,
        n_gen: args.n_gen,
        repetitions: args.repetitions,
        depth: args.depth,
    };
    let build = BuildInfo {
        git_commit: crate::common::GIT_COMMIT.into(),
        git_dirty: crate::common::git_dirty(),
    };
    let report = bench(&subject(&args)?, settings, &build)
        .map_err(|e| crate::common::name_flags(e, "lower --depth, -p or -n"))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!("{}", report.markdown());
    Ok(())
}
