use std::io::Write;

use anyhow::{Context, Result};
use clap::Args;
use effbench_core::decode::{
    DecodingStrategy, GenerateRequest, Greedy, PlainDecoding, TemperatureTopP,
};
use effbench_core::{ContiguousKvCache, KvCache, KvShape};
use serde_json::json;
use tabled::{builder::Builder, settings::Style};

use crate::common::{load_model, mib, ModelArgs, Session};

#[derive(Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The prompt, used as raw text (no chat template).
    #[arg(long, short)]
    prompt: String,
    #[arg(long, short = 'n', default_value_t = 64)]
    max_tokens: usize,
    /// 0 is greedy decoding.
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print a JSON summary (text, token ids, timing, memory) instead of streaming.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Default)]
pub struct DemoArgs {
    #[command(flatten)]
    model: ModelArgs,
}

pub fn run(args: GenerateArgs) -> Result<()> {
    let session = load_model(&args.model)?;
    let outcome = generate(&session, &args, !args.json)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&outcome)?);
    } else {
        print_timing(&session, &outcome);
    }
    Ok(())
}

fn generate(session: &Session, args: &GenerateArgs, stream: bool) -> Result<serde_json::Value> {
    let loaded = &session.loaded;
    let prompt = loaded.encode(&args.prompt)?;
    if prompt.is_empty() {
        anyhow::bail!("the prompt is empty after tokenization (hint: pass --prompt TEXT)");
    }
    let capacity = prompt.len() + args.max_tokens;
    let mut cache = ContiguousKvCache::new(
        KvShape::of(loaded.model.config()),
        capacity,
        loaded.model.device(),
    );
    let request = GenerateRequest {
        seq: 0,
        prompt: prompt.clone(),
        max_new_tokens: args.max_tokens,
        stop_tokens: loaded.stop_tokens(),
        prefill_chunk: 0,
    };
    let mut strategy: Box<dyn DecodingStrategy> = if args.temperature > 0.0 {
        Box::new(PlainDecoding::new(TemperatureTopP::new(
            args.temperature,
            args.top_p,
            args.seed,
        )))
    } else {
        Box::new(PlainDecoding::new(Greedy))
    };
    if stream {
        print!("{}", args.prompt);
        std::io::stdout().flush().ok();
    }
    // Decode the growing sequence and print the new suffix: token-by-token decoding would split
    // multi-byte characters.
    let mut emitted: Vec<u32> = Vec::new();
    let mut printed = String::new();
    let out = strategy.generate(&loaded.model, &mut cache, &request, &mut |tok| {
        if !stream {
            return;
        }
        emitted.push(tok);
        if let Ok(text) = loaded.decode(&emitted) {
            if text.len() > printed.len() && !text.ends_with('\u{FFFD}') {
                print!("{}", &text[printed.len()..]);
                std::io::stdout().flush().ok();
                printed = text;
            }
        }
    })?;
    if stream {
        println!();
    }
    let text = loaded.decode(&out.tokens).context("decoding the output")?;
    let metrics = out.trace.metrics();
    let usage = cache.usage();
    Ok(json!({
        "model": loaded.path.display().to_string(),
        "variant": loaded.model.label(),
        "threads": session.threads,
        "prompt": args.prompt,
        "prompt_tokens": prompt.len(),
        "output_tokens": out.tokens.len(),
        "token_ids": out.tokens,
        "text": text,
        "stopped_on_eos": out.stopped_on_token,
        "metrics": metrics,
        "weight_bytes": loaded.model.weight_bytes(),
        "kv_bytes_reserved": usage.bytes_reserved,
        "kv_bytes_used": usage.bytes_used,
        "peak_rss_bytes": effbench_hw::peak_rss_bytes(),
        "load_seconds": session.load_seconds,
    }))
}

fn fmt_opt(v: Option<f64>, unit: &str) -> String {
    v.map_or("-".into(), |v| format!("{v:.2} {unit}"))
}

fn print_timing(session: &Session, o: &serde_json::Value) {
    let m = &o["metrics"];
    let f = |k: &str| m[k].as_f64();
    let mut b = Builder::default();
    b.push_record(["metric", "value"]);
    b.push_record(["variant".into(), session.loaded.model.label().to_string()]);
    b.push_record(["threads".into(), session.threads.to_string()]);
    b.push_record([
        "tokens (prompt / output)".into(),
        format!("{} / {}", o["prompt_tokens"], o["output_tokens"]),
    ]);
    b.push_record(["TTFT".into(), fmt_opt(f("ttft_ms"), "ms")]);
    b.push_record(["TPOT".into(), fmt_opt(f("tpot_ms"), "ms")]);
    b.push_record(["prefill".into(), fmt_opt(f("prefill_tok_per_s"), "tok/s")]);
    b.push_record(["decode".into(), fmt_opt(f("decode_tok_per_s"), "tok/s")]);
    let wb = session.loaded.model.weight_bytes();
    b.push_record([
        "weights".into(),
        format!(
            "{} ({:.2} bits/weight in blocks)",
            mib(wb.total),
            wb.block_bits_per_weight
        ),
    ]);
    b.push_record([
        "KV cache (used / reserved)".into(),
        format!(
            "{} / {}",
            mib(o["kv_bytes_used"].as_u64().unwrap_or(0) as usize),
            mib(o["kv_bytes_reserved"].as_u64().unwrap_or(0) as usize)
        ),
    ]);
    b.push_record([
        "peak RSS".into(),
        effbench_hw::peak_rss_bytes().map_or("not measured".into(), |b| mib(b as usize)),
    ]);
    eprintln!("{}", b.build().with(Style::markdown()));
}

/// The default job: greedy continuation of a fixed prompt, then perplexity on a slice of
/// WikiText-2, on the default model.
pub fn demo(args: DemoArgs) -> Result<()> {
    let session = load_model(&args.model)?;
    eprintln!(
        "model: {} ({}), loaded in {:.1}s",
        session.loaded.path.display(),
        session.loaded.model.label(),
        session.load_seconds
    );
    let gen_args = GenerateArgs {
        model: args.model.clone(),
        prompt: "The capital of France is".into(),
        max_tokens: 32,
        temperature: 0.0,
        top_p: 1.0,
        seed: 0,
        json: false,
    };
    let outcome = generate(&session, &gen_args, true)?;
    print_timing(&session, &outcome);
    crate::perplexity::run_on_session(
        &session,
        "wikitext-2",
        &crate::perplexity::PplSettings {
            ctx: 512,
            chunks: Some(4),
            first_scored: None,
            kv_dtype: effbench_kvcache::KvDtype::F32,
            json: false,
        },
    )
}
