//! `effbench distill`: train a smaller student from a teacher by knowledge distillation, and
//! `effbench distill eval`: put teacher and students side by side on the same text.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::Device;
use clap::{Args, Subcommand};
use effbench_core::source::{sniff, GgufSource, ModelFormat, SafetensorsSource, WeightSource};
use effbench_core::LoadedModel;
use effbench_distill::data::{self, GenerateOptions};
use effbench_distill::train::{check_tokenizers, read_log, read_state, Checkpointing};
use effbench_distill::{LayerSelection, Student, TrainOptions, TrainState};
use indicatif::{ProgressBar, ProgressStyle};

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

fn open_source(path: &Path, device: &Device) -> Result<Box<dyn WeightSource>> {
    Ok(match sniff(path)? {
        ModelFormat::Gguf => Box::new(GgufSource::open(path, device)?),
        _ => Box::new(SafetensorsSource::open(path, device)?),
    })
}

fn train(args: TrainArgs) -> Result<()> {
    let out = args.out.clone().expect("clap requires --out");
    let teacher = load_model(&args.teacher)?;
    let loaded = &teacher.loaded;
    let device = loaded.model.device().clone();
    let teacher_path = resolve_model_path(&args.teacher.model)?;
    eprintln!(
        "teacher: {} ({}, {} layers, vocab {})",
        teacher_path.display(),
        loaded.model.label(),
        loaded.model.config().num_layers,
        loaded.model.config().vocab_size
    );

    let saved = read_state(&out)?;
    let (student, state, opts) = match (args.resume, saved) {
        (true, Some((state, mut opts))) => {
            let student = Student::load(&out, &device)?;
            if let Some(steps) = args.steps {
                opts.steps = steps;
            }
            opts.max_seconds = args.max_minutes.map(|m| m * 60.0);
            // The log may run past the checkpoint if training was interrupted.
            read_log(&out, Some(state.step))?;
            eprintln!(
                "resuming at step {}/{} ({} tokens seen)",
                state.step, opts.steps, state.tokens
            );
            (student, state, opts)
        }
        (true, None) => bail!(
            "{} holds no checkpoint to resume (hint: drop --resume to start one there)",
            out.display()
        ),
        (false, Some((state, _))) => {
            let e = effbench_distill::DistillError::CheckpointExists {
                path: out,
                step: state.step,
            };
            bail!("{e} (hint: --resume to continue it, or another --out)")
        }
        (false, None) => {
            let student = if let Some(config) = &args.random_init {
                let cfg = effbench_core::ModelConfig::from_hf_config_json(config)?;
                Student::random(cfg, args.seed, &device)?
            } else if let Some(init) = &args.student_init {
                let path = resolve_model_path(init)?;
                let student = if path.join("model.safetensors").is_file() {
                    Student::load(&path, &device)?
                } else {
                    let mut source = open_source(&path, &device)?;
                    // Refused before dequantizing a whole model of the wrong vocabulary.
                    let (t, s) = (loaded.model.config().vocab_size, source.config().vocab_size);
                    if t != s {
                        return Err(effbench_distill::DistillError::VocabularyMismatch {
                            teacher: t,
                            student: s,
                        }
                        .into());
                    }
                    Student::from_teacher(source.as_mut(), &LayerSelection::All, &device)?
                };
                if student.config().vocab_size == loaded.model.config().vocab_size {
                    check_tokenizers(
                        &loaded.tokenizer,
                        &effbench_core::loader::tokenizer_of(&path)?,
                    )?;
                }
                student
            } else {
                let mut source = open_source(&teacher_path, &device)?;
                let selection = LayerSelection::parse(&args.keep_layers)?;
                eprintln!(
                    "student: teacher layers {:?}",
                    selection.resolve(source.config().num_layers)?
                );
                Student::from_teacher(source.as_mut(), &selection, &device)?
            };
            let opts = TrainOptions {
                steps: args.steps.unwrap_or(300),
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
                stop_at_step: None,
            };
            (student, TrainState::default(), opts)
        }
    };
    effbench_distill::train::check_vocabulary(&loaded.model, &student)?;
    eprintln!(
        "student: {} layers, {:.1}M parameters",
        student.config().num_layers,
        student.num_parameters() as f64 / 1e6
    );

    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    effbench_distill::student::write_tokenizer_files(loaded, &out)?;
    let corpus = training_data(&args, loaded, &teacher_path, &out)?;
    let tokens: usize = corpus.iter().map(|s| s.len()).sum();
    eprintln!(
        "data: {} sequences, {tokens} tokens; {} steps of {} sequences",
        corpus.len(),
        opts.steps,
        opts.seqs_per_step
    );

    let checkpoint = Checkpointing {
        dir: &out,
        extra_config: effbench_distill::student::special_token_config(loaded),
    };
    let bar = ProgressBar::new(opts.steps as u64);
    bar.set_style(
        ProgressStyle::with_template("distill [{bar:30}] {pos}/{len} {msg} [{elapsed}<{eta}]")
            .expect("valid template"),
    );
    bar.set_position(state.step as u64);
    let end = effbench_distill::train(
        &student,
        &loaded.model,
        &corpus,
        &opts,
        state,
        Some(&checkpoint),
        |r| {
            bar.set_position(r.step as u64);
            bar.set_message(format!(
                "loss {:.4} kl {:.4} ce {:.3} lr {:.2e} {:.0} tok/s",
                r.loss, r.kl, r.ce, r.lr, r.tok_per_s
            ));
        },
    )?;
    bar.finish_and_clear();
    println!(
        "student at step {}/{} ({} tokens, {:.1} min of training) in {}",
        end.step,
        opts.steps,
        end.tokens,
        end.elapsed_s / 60.0,
        out.display()
    );
    if end.step < opts.steps {
        println!(
            "stopped early: continue with `effbench distill ... --out {} --resume`",
            out.display()
        );
    }
    Ok(())
}

fn training_data(
    args: &TrainArgs,
    loaded: &LoadedModel,
    teacher_path: &Path,
    out: &Path,
) -> Result<Vec<Vec<u32>>> {
    if let Some(file) = &args.data {
        let path = resolve_text(file)?;
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let corpus = data::windows(&loaded.encode(&text)?, args.seq_len);
        if corpus.is_empty() {
            bail!(
                "{} gives no training sequence (hint: it needs at least 16 tokens)",
                path.display()
            );
        }
        return Ok(corpus);
    }
    let prompt_texts: Vec<String> = match &args.prompts {
        Some(p) => std::fs::read_to_string(p)
            .with_context(|| format!("reading {}", p.display()))?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect(),
        None => data::SEED_PROMPTS.iter().map(|s| s.to_string()).collect(),
    };
    if prompt_texts.is_empty() {
        bail!("no seed prompts (hint: --prompts needs one prompt per line)");
    }
    let opts = GenerateOptions {
        sequences: args.sequences,
        seq_len: args.seq_len,
        temperature: args.gen_temperature,
        top_p: args.gen_top_p,
        seed: args.seed,
        batch: 16,
    };
    let teacher_bytes = std::fs::metadata(teacher_path)
        .map(|m| m.len())
        .unwrap_or(0);
    let fingerprint = data::fingerprint(&[
        &teacher_path.display().to_string(),
        &teacher_bytes.to_string(),
        &prompt_texts.join("\n"),
        &format!("{opts:?}"),
    ]);
    let cache = out.join("teacher-corpus.jsonl");
    // A resumed run trains on the corpus it started with, whatever the data flags say now.
    let wanted = (!args.resume).then_some(fingerprint.as_str());
    if let Some(corpus) = data::read_cache(&cache, wanted)? {
        eprintln!("data: teacher-generated corpus from {}", cache.display());
        return Ok(corpus);
    }
    let prompts = prompt_texts
        .iter()
        .map(|p| loaded.encode(p))
        .collect::<effbench_core::Result<Vec<_>>>()?;
    let bar = ProgressBar::new((opts.sequences * opts.seq_len) as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "teacher writes its corpus [{bar:30}] {pos}/{len} tokens [{elapsed}<{eta}]",
        )
        .expect("valid template"),
    );
    let corpus = data::generate_corpus(
        &loaded.model,
        &prompts,
        &loaded.stop_tokens(),
        &opts,
        |done, _| bar.set_position(done as u64),
    )?;
    bar.finish_and_clear();
    data::write_cache(&cache, &fingerprint, &corpus)?;
    Ok(corpus)
}

/// Teacher and students side by side as a perplexity run: the teacher's row is the baseline,
/// so every student's row carries its perplexity, KL from the teacher and top-1 agreement on
/// the same tokens, and with `--speed-reps` its speed and cost.
fn eval(args: EvalArgs) -> Result<()> {
    if args.student_weights.is_some() {
        bail!("--student-weights is no longer taken: a student runs as stored (hint: give the teacher --weights f32 to compare both in f32)");
    }
    let mut techniques = vec![args.teacher.weights.technique_name()];
    techniques.extend(args.student.iter().map(|s| format!("student:{s}")));
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
