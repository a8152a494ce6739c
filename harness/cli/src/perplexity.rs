use anyhow::Result;
use clap::Args;
use effbench_eval::perplexity::{perplexity, PerplexityOptions};
use effbench_kvcache::KvDtype;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::common::{encode_leading, load_model, resolve_text, ModelArgs, Session};

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

pub struct PplSettings {
    pub ctx: usize,
    pub chunks: Option<usize>,
    pub first_scored: Option<usize>,
    pub kv_dtype: KvDtype,
    pub json: bool,
}

pub fn run(args: PerplexityArgs) -> Result<()> {
    let session = load_model(&args.model)?;
    run_on_session(
        &session,
        &args.file,
        &PplSettings {
            ctx: args.ctx,
            chunks: args.chunks,
            first_scored: args.first_scored,
            kv_dtype: args.kv_dtype,
            json: args.json,
        },
    )
}

pub fn run_on_session(session: &Session, file: &str, s: &PplSettings) -> Result<()> {
    let path = resolve_text(file)?;
    let text = effbench_datasets::read_corpus(&path)?;
    let loaded = &session.loaded;
    let tokens = encode_leading(loaded, &text, s.chunks.map(|c| c * s.ctx))?;
    let mut opts = PerplexityOptions::llama_cpp(s.ctx);
    opts.max_chunks = s.chunks;
    opts.kv_dtype = s.kv_dtype.dtype();
    opts.bos = loaded.window_bos();
    if let Some(f) = s.first_scored {
        opts.first_scored = f;
    }
    let total = s
        .chunks
        .unwrap_or(tokens.len() / s.ctx.max(1))
        .min(tokens.len() / s.ctx.max(1));
    let bar = ProgressBar::new(total as u64);
    bar.set_style(
        ProgressStyle::with_template("perplexity [{bar:30}] {pos}/{len} windows {msg} ETA {eta}")
            .expect("valid template"),
    );
    let start = std::time::Instant::now();
    let result = perplexity(
        &loaded.model,
        &tokens,
        &opts,
        |_, _, ppl| {
            bar.inc(1);
            bar.set_message(format!("ppl {ppl:.4}"));
        },
        |_, _| {},
    )?;
    bar.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();
    if s.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "model": loaded.path.display().to_string(),
                "variant": loaded.model.label(),
                "file": path.display().to_string(),
                "threads": session.threads,
                "result": result,
                "seconds": seconds,
                "tokens_per_second": (result.chunks * s.ctx) as f64 / seconds,
            }))?
        );
    } else {
        println!(
            "perplexity: {:.4} ± {:.4} ({} windows of {} tokens, {} scored, {}, {:.1}s)",
            result.perplexity,
            result.perplexity_stderr,
            result.chunks,
            result.ctx,
            result.scored_tokens,
            loaded.model.label(),
            seconds
        );
    }
    Ok(())
}
