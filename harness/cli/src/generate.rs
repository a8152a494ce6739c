use std::io::Write;

use anyhow::Result;
use clap::Args;
use effbench_eval::generate::{generate, GenerateSettings, Generation};

use crate::common::{load_model, ModelArgs, Session};

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

impl GenerateArgs {
    fn settings(&self) -> GenerateSettings {
        GenerateSettings {
            prompt: self.prompt.clone(),
            max_tokens: self.max_tokens,
            temperature: self.temperature,
            top_p: self.top_p,
            seed: self.seed,
        }
    }
}

pub fn run(args: GenerateArgs) -> Result<()> {
    let session = load_model(&args.model)?;
    if args.json {
        let outcome = generate(&session, &args.settings(), None)?;
        println!("{}", serde_json::to_string_pretty(&outcome)?);
    } else {
        let outcome = streamed(&session, &args.settings())?;
        eprintln!("{}", outcome.timing_markdown());
    }
    Ok(())
}

/// Generates with the prompt and then the new text printed as it comes.
fn streamed(session: &Session, settings: &GenerateSettings) -> Result<Generation> {
    print!("{}", settings.prompt);
    std::io::stdout().flush().ok();
    let mut print = |piece: &str| {
        print!("{piece}");
        std::io::stdout().flush().ok();
    };
    let outcome = generate(session, settings, Some(&mut print))?;
    println!();
    Ok(outcome)
}

pub fn demo(args: DemoArgs) -> Result<()> {
    let session = load_model(&args.model)?;
    eprintln!(
        "model: {} ({}), loaded in {:.1}s",
        session.loaded.path.display(),
        session.loaded.model.label(),
        session.load_seconds
    );
    let outcome = streamed(
        &session,
        &GenerateSettings {
            prompt: "The capital of France is".into(),
            max_tokens: 32,
            temperature: 0.0,
            top_p: 1.0,
            seed: 0,
        },
    )?;
    eprintln!("{}", outcome.timing_markdown());
    crate::perplexity::run_on_session(
        &session,
        "wikitext-2",
        &effbench_eval::perplexity::TextSettings {
            ctx: 512,
            chunks: Some(4),
            first_scored: None,
            kv_dtype: effbench_kvcache::KvDtype::F32,
        },
        false,
    )
}
