//! `effbench distill`: train a smaller student from a teacher by knowledge distillation, and
//! `effbench distill eval`: put teacher and students side by side on the same text.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use effbench_distill::session::{DataOptions, StudentInit, TrainSetup};
use effbench_distill::DistillError;
use effbench_eval::EvalError;

use crate::common::{load_model, resolve_model_path, resolve_text, ModelArgs};

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct DistillArgs {
    #[command(subcommand)]
    command: Option<DistillCommand>,
    #[command(flatten)]
    train: TrainArgs,
}

#[derive(Subcommand)]
enum DistillCommand {
    /// Teacher and students on the same windows of a text: perplexity, KL to the teacher,
    /// top-1 agreement, and (with --speed-reps) pp/tg speed and cost per 1M tokens.
    Eval(EvalArgs),
}

#[derive(Args)]
struct TrainArgs {
    /// The teacher (`-m`): any model effbench loads. It runs as stored (e.g. Q4_1) to score;
    /// the student it seeds is dequantized to f32 for training.
    #[command(flatten)]
    teacher: ModelArgs,
    /// Directory for the student: model.safetensors + config.json + tokenizer.json (a Hugging
    /// Face checkpoint), training_state.json, loss.jsonl, loss.svg. Overwritten at every
    /// checkpoint, so it always holds the latest student.
    #[arg(long, required = true)]
    out: Option<PathBuf>,
    /// Teacher layers the student keeps: `every-other` (DistilBERT), `all`, or a list `0,2,5`.
    #[arg(long, default_value = "every-other")]
    keep_layers: String,
    /// Start the student at random from this Hugging Face config.json instead.
    #[arg(long, conflicts_with = "student_init")]
    random_init: Option<PathBuf>,
    /// Start from an existing checkpoint (a student saved earlier, or any model effbench loads).
    #[arg(long)]
    student_init: Option<String>,
    /// Continue the checkpoint in --out: weights, step, schedule, data order, its cached
    /// teacher corpus and loss log (AdamW's moment estimates restart; candle keeps them private).
    #[arg(long)]
    resume: bool,
    /// Train on windows of this text file instead of teacher-generated text.
    #[arg(long)]
    data: Option<String>,
    /// Teacher-generated sequences to train on (sequence-level KD); cached in --out.
    #[arg(long, default_value_t = 256)]
    sequences: usize,
    /// Tokens per training sequence (and per generated sequence, prompt included).
    #[arg(long, default_value_t = 256)]
    seq_len: usize,
    /// Seed prompts, one per line, for the teacher to continue (default: a built-in set).
    #[arg(long)]
    prompts: Option<PathBuf>,
    #[arg(long, default_value_t = 1.0)]
    gen_temperature: f32,
    #[arg(long, default_value_t = 0.95)]
    gen_top_p: f32,
    /// Optimizer steps in all (default 300; on --resume, the checkpoint's).
    #[arg(long)]
    steps: Option<usize>,
    /// Sequences accumulated into one optimizer step.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 2e-4)]
    lr: f64,
    #[arg(long, default_value_t = 10)]
    warmup: usize,
    /// Where cosine decay ends, as a fraction of --lr.
    #[arg(long, default_value_t = 0.1)]
    min_lr_ratio: f64,
    #[arg(long, default_value_t = 0.0)]
    weight_decay: f64,
    /// Softening temperature T; the KL term is scaled by T².
    #[arg(long, default_value_t = 2.0)]
    temperature: f64,
    /// Weight of next-token cross-entropy in the loss (the KL term gets 1 - alpha).
    #[arg(long, default_value_t = 0.0)]
    alpha: f64,
    /// Global gradient-norm clip (0: off).
    #[arg(long, default_value_t = 1.0)]
    grad_clip: f64,
    #[arg(long, default_value_t = 25)]
    save_every: usize,
    /// Seeds generation, the data order and a random init.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Stop with a checkpoint after this many minutes of training (resume continues).
    #[arg(long)]
    max_minutes: Option<f64>,
}

#[derive(Args)]
struct EvalArgs {
    /// The teacher (`-m`), the baseline row.
    #[command(flatten)]
    teacher: ModelArgs,
    /// Student checkpoints (directories or files), repeatable: a row `student:PATH` each.
    #[arg(long, required = true)]
    student: Vec<String>,
    /// No longer taken: a student runs as stored (a distilled student is saved in f32). Give
    /// the teacher --weights f32 for a like-for-like speed and cost.
    #[arg(long, hide = true)]
    student_weights: Option<String>,
    /// Text to score: a file, or `wikitext-2`.
    #[arg(long, default_value = "wikitext-2")]
    text: String,
    #[arg(long, default_value_t = 512)]
    ctx: usize,
    /// Windows of --ctx tokens; every position from ctx/2 on is scored (llama.cpp's method).
    #[arg(long, default_value_t = 20)]
    chunks: usize,
    /// Repetitions of pp512/tg128 per model for speed and cost (0: skip).
    #[arg(long, default_value_t = 0)]
    speed_reps: usize,
    #[command(flatten)]
    prices: crate::run::PriceArgs,
    /// The run directory (report.json, report.md, records). Default: results/<run-id>.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue the interrupted run in --out (or the latest with the same settings).
    #[arg(long)]
    resume: bool,
    /// Also write the run's report.json here.
    #[arg(long)]
    json: Option<PathBuf>,
}

pub fn run(args: DistillArgs) -> Result<()> {
    match args.command {
        Some(DistillCommand::Eval(a)) => eval(a),
        None => train(args.train),
    }
}

fn train(args: TrainArgs) -> Result<()> {
    let out = args.out.clone().expect("clap requires --out");
    let teacher = load_model(&args.teacher)?;
    let teacher_path = resolve_model_path(&args.teacher.model)?;
    let student = if let Some(config) = &args.random_init {
        StudentInit::Random(config.clone())
    } else if let Some(init) = &args.student_init {
        StudentInit::Model(init.clone())
    } else {
        StudentInit::KeepLayers(args.keep_layers.clone())
    };
    let setup = TrainSetup {
        out: out.clone(),
        resume: args.resume,
        student,
        steps: args.steps,
        seqs_per_step: args.batch,
        lr: args.lr,
        warmup_steps: args.warmup,
        min_lr_ratio: args.min_lr_ratio,
        weight_decay: args.weight_decay,
        temperature: args.temperature,
        alpha: args.alpha,
        grad_clip: args.grad_clip,
        save_every: args.save_every,
        seed: args.seed,
        max_seconds: args.max_minutes.map(|m| m * 60.0),
    };
    let data = DataOptions {
        text: args.data.as_deref().map(resolve_text).transpose()?,
        sequences: args.sequences,
        seq_len: args.seq_len,
        prompts: args.prompts.clone(),
        temperature: args.gen_temperature,
        top_p: args.gen_top_p,
        seed: args.seed,
    };
    let end =
        effbench_eval::distill::train(&teacher, &teacher_path, &setup, &data).map_err(flag_hint)?;
    println!(
        "student at step {}/{} ({} tokens, {:.1} min of training) in {}",
        end.state.step,
        end.steps,
        end.state.tokens,
        end.state.elapsed_s / 60.0,
        out.display()
    );
    if end.stopped_early() {
        println!(
            "stopped early: continue with `effbench distill ... --out {} --resume`",
            out.display()
        );
    }
    Ok(())
}

/// The library words its refusals without flags; these are the flags that answer them here.
fn flag_hint(e: EvalError) -> anyhow::Error {
    let hint = match &e {
        EvalError::Distill(DistillError::NoCheckpoint { .. }) => "drop --resume to start one there",
        EvalError::Distill(DistillError::CheckpointExists { .. }) => {
            "--resume to continue it, or another --out"
        }
        EvalError::Distill(DistillError::NoSeedPrompts { .. }) => {
            "--prompts needs one prompt per line"
        }
        _ => return e.into(),
    };
    anyhow!("{e} (hint: {hint})")
}

/// Teacher and students side by side as a perplexity run: the teacher's row is the baseline,
/// so every student's row carries its perplexity, KL from the teacher and top-1 agreement on
/// the same tokens, and with `--speed-reps` its speed and cost.
fn eval(args: EvalArgs) -> Result<()> {
    if args.student_weights.is_some() {
        bail!("--student-weights is no longer taken: a student runs as stored (hint: give the teacher --weights f32 to compare both in f32)");
    }
    let techniques = effbench_eval::run::views::student_rows(
        &args.teacher.weights.technique_name(),
        &args.student,
    );
    let mut config = crate::view::config(
        &args.teacher,
        &crate::view::ViewArgs {
            suite: if args.text == "wikitext-2" {
                args.text.clone()
            } else {
                format!("ppl:{}", args.text)
            },
            ctx: args.ctx,
            chunks: args.chunks,
            out: args.out,
            resume: args.resume,
            json: false,
            prices: args.prices,
        },
        techniques,
    );
    config.speed.no_speed = args.speed_reps == 0;
    config.speed.speed_reps = args.speed_reps.max(1);
    let dir = crate::view::run(config)?;
    if let Some(path) = &args.json {
        let report = dir.join(effbench_report::schema::REPORT_FILE);
        let bytes =
            std::fs::read(&report).with_context(|| format!("reading {}", report.display()))?;
        effbench_report::write_atomic(path, &bytes)?;
    }
    Ok(())
}
