use anyhow::Result;
use clap::Args;
use effbench_eval::perplexity::{text_perplexity, TextSettings};
use effbench_kvcache::KvDtype;

use crate::common::{load_model, resolve_text, ModelArgs, Session};

#[derive(Args)]
pub struct PerplexityArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Text file, or `wikitext-2` (the WikiText-2 raw test split, fetched on first use).
    #[arg(long, short, default_value = "wikitext-2")]
    file: String,
    /// Tokens per window.
    #[arg(long, default_value_t = 512)]
    ctx: usize,
    /// Windows to evaluate (default: the whole text).
    #[arg(long)]
    chunks: Option<usize>,
    /// First position in each window whose prediction is scored. Default ctx/2, as llama.cpp's
    /// perplexity tool; 0 scores every token after the first.
    #[arg(long)]
    first_scored: Option<usize>,
    /// Storage type of the KV cache.
    #[arg(long, default_value_t = KvDtype::F32)]
    kv_dtype: KvDtype,
    #[arg(long)]
    json: bool,
}

pub fn run(args: PerplexityArgs) -> Result<()> {
    let session = load_model(&args.model)?;
    let settings = TextSettings {
        ctx: args.ctx,
        chunks: args.chunks,
        first_scored: args.first_scored,
        kv_dtype: args.kv_dtype,
    };
    run_on_session(&session, &args.file, &settings, args.json)
}

pub fn run_on_session(session: &Session, file: &str, s: &TextSettings, json: bool) -> Result<()> {
    let path = resolve_text(file)?;
    let bar = effbench_eval::progress::bar(
        0,
        "perplexity [{bar:30}] {pos}/{len} windows {msg} ETA {eta}",
    );
    let out = text_perplexity(session, &path, s, |done, total, ppl| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
        bar.set_message(format!("ppl {ppl:.4}"));
    })?;
    bar.finish_and_clear();
    if json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("{out}");
    }
    Ok(())
}
