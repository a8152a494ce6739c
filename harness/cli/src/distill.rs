//! `effbench distill`: train a smaller student from a teacher by knowledge distillation, and
//! `effbench distill eval`: put teacher and students side by side on the same text.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::Device;
use clap::{Args, Subcommand};
use effbench_core::model::{argmax, log_softmax, logits_rows};
use effbench_core::source::{sniff, GgufSource, ModelFormat, SafetensorsSource, WeightSource};
use effbench_core::{ContiguousKvCache, KvShape, LoadedModel, LogitsFor, SeqChunk};
use effbench_distill::data::{self, GenerateOptions};
use effbench_distill::train::{check_tokenizers, read_log, read_state, Checkpointing};
use effbench_distill::{LayerSelection, Student, TrainOptions, TrainState};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use tabled::{builder::Builder, settings::Style};

use crate::common::{
    encode_leading, load_model, resolve_model_path, resolve_text, ModelArgs, WeightsArg,
};

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
    /// The teacher (`-m`).
    #[command(flatten)]
    teacher: ModelArgs,
    /// Student checkpoints (directories or files), repeatable.
    #[arg(long, required = true)]
    student: Vec<String>,
    /// Weight format the students run in (as the teacher's --weights): compare both in one
    /// format for a like-for-like speed and cost.
    #[arg(long, value_parser = crate::common::parse_weights, default_value = "as-stored")]
    student_weights: WeightsArg,
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
    /// Price entry of the report crate's table (priced per thread used when per-vCPU).
    #[arg(long, default_value = "aws-c7a")]
    instance: String,
    /// Also write the figures as JSON here.
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
            return Err(effbench_distill::DistillError::CheckpointExists {
                path: out,
                step: state.step,
            }
            .into())
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
    write_tokenizer_files(loaded, &out)?;
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
        extra_config: special_token_config(loaded),
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

/// bos/eos ids in config.json, as Hugging Face checkpoints carry them, so generation stops.
fn special_token_config(loaded: &LoadedModel) -> serde_json::Value {
    let mut extra = serde_json::json!({});
    if let Some(bos) = loaded.special.bos {
        extra["bos_token_id"] = bos.into();
    }
    match loaded.special.eog.as_slice() {
        [] => {}
        [one] => extra["eos_token_id"] = (*one).into(),
        many => extra["eos_token_id"] = many.to_vec().into(),
    }
    extra
}

/// The teacher's tokenizer beside the student, so effbench and Hugging Face tools tokenize the
/// student exactly as the teacher.
fn write_tokenizer_files(loaded: &LoadedModel, out: &Path) -> Result<()> {
    let path = out.join("tokenizer.json");
    loaded
        .tokenizer
        .save(&path, false)
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
    let token = |id: Option<u32>| id.and_then(|i| loaded.tokenizer.id_to_token(i));
    let config = serde_json::json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": token(loaded.special.bos),
        "eos_token": token(loaded.special.eos),
    });
    let path = out.join("tokenizer_config.json");
    std::fs::write(&path, serde_json::to_string_pretty(&config)?)
        .with_context(|| format!("writing {}", path.display()))?;
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

#[derive(Serialize)]
struct ModelFigures {
    model: String,
    variant: String,
    layers: usize,
    weight_bytes: usize,
    perplexity: f64,
    perplexity_stderr: f64,
    /// Mean KL(teacher ‖ model) over scored positions, nats per token (0 for the teacher).
    kl_vs_teacher: f64,
    top1_agreement: f64,
    scored_tokens: usize,
    prefill_tok_per_s: Option<f64>,
    decode_tok_per_s: Option<f64>,
    usd_per_million_input: Option<f64>,
    usd_per_million_output: Option<f64>,
}

struct Scores {
    nll: Vec<f64>,
    kl: f64,
    agree: usize,
}

fn eval(args: EvalArgs) -> Result<()> {
    let teacher = load_model(&args.teacher)?;
    let threads = teacher.threads;
    let device = teacher.loaded.model.device().clone();
    let mut students = Vec::new();
    for s in &args.student {
        let path = resolve_model_path(s)?;
        let loaded = effbench_core::load(
            &path,
            crate::common::load_policy(args.student_weights, &device)?.as_ref(),
            &device,
        )
        .with_context(|| format!("loading student {}", path.display()))?;
        let (t, v) = (
            teacher.loaded.model.config().vocab_size,
            loaded.model.config().vocab_size,
        );
        if t != v {
            return Err(effbench_distill::DistillError::VocabularyMismatch {
                teacher: t,
                student: v,
            }
            .into());
        }
        check_tokenizers(&teacher.loaded.tokenizer, &loaded.tokenizer)?;
        students.push(loaded);
    }
    let text_path = resolve_text(&args.text)?;
    let text = effbench_datasets::read_corpus(&text_path)?;
    let tokens = encode_leading(&teacher.loaded, &text, Some(args.chunks * args.ctx))?;
    let windows = (tokens.len() / args.ctx).min(args.chunks);
    if windows == 0 || args.ctx < 4 {
        bail!(
            "the text has {} tokens, fewer than one window of {} (hint: lower --ctx)",
            tokens.len(),
            args.ctx
        );
    }
    let first_scored = args.ctx / 2;
    let mut teacher_nll = Vec::new();
    let mut scores: Vec<Scores> = students
        .iter()
        .map(|_| Scores {
            nll: Vec::new(),
            kl: 0.0,
            agree: 0,
        })
        .collect();
    let bar = ProgressBar::new(windows as u64);
    bar.set_style(
        ProgressStyle::with_template("scoring [{bar:30}] {pos}/{len} windows [{elapsed}<{eta}]")
            .expect("valid template"),
    );
    let all_logits = |model: &effbench_core::Model, window: &[u32]| -> Result<Vec<Vec<f32>>> {
        let mut cache = ContiguousKvCache::new(KvShape::of(model.config()), window.len(), &device);
        let out = model.forward(
            &[SeqChunk::new(0, window.to_vec(), LogitsFor::All)],
            &mut cache,
        )?;
        Ok(logits_rows(
            &out.per_chunk[0].clone().expect("asked for logits"),
        )?)
    };
    for c in 0..windows {
        let window = &tokens[c * args.ctx..(c + 1) * args.ctx];
        let teacher_rows = all_logits(&teacher.loaded.model, window)?;
        let teacher_lp: Vec<Vec<f64>> = (first_scored..args.ctx - 1)
            .map(|p| log_softmax(&teacher_rows[p]))
            .collect();
        for (i, p) in (first_scored..args.ctx - 1).enumerate() {
            teacher_nll.push(-teacher_lp[i][window[p + 1] as usize]);
        }
        for (student, score) in students.iter().zip(scores.iter_mut()) {
            let rows = all_logits(&student.model, window)?;
            for (i, p) in (first_scored..args.ctx - 1).enumerate() {
                let lp = log_softmax(&rows[p]);
                let lt = &teacher_lp[i];
                score.nll.push(-lp[window[p + 1] as usize]);
                score.kl += lt
                    .iter()
                    .zip(&lp)
                    .map(|(t, s)| t.exp() * (t - s))
                    .sum::<f64>();
                if argmax(&rows[p]) == argmax(&teacher_rows[p]) {
                    score.agree += 1;
                }
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();

    let price = if args.speed_reps > 0 {
        let table = effbench_report::cost::PriceTable::shipped();
        Some(table.price(table.get(&args.instance)?, threads)?)
    } else {
        None
    };
    let mut figures = Vec::new();
    let models: Vec<(&LoadedModel, Option<&Scores>)> = std::iter::once((&teacher.loaded, None))
        .chain(students.iter().zip(scores.iter().map(Some)))
        .collect();
    for (loaded, score) in models {
        let nll = score.map_or(&teacher_nll, |s| &s.nll);
        let n = nll.len() as f64;
        let mean = nll.iter().sum::<f64>() / n;
        let var = nll.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
        let ppl = mean.exp();
        let (pp, tg) = if args.speed_reps > 0 {
            eprintln!("speed: {}", loaded.path.display());
            let pp = effbench_eval::speed::prefill(&loaded.model, 512, args.speed_reps)?.median();
            let tg = effbench_eval::speed::decode(&loaded.model, 128, args.speed_reps)?.median();
            (Some(pp), Some(tg))
        } else {
            (None, None)
        };
        let cost = match (&price, pp, tg) {
            (Some(price), Some(pp), Some(tg)) => Some(effbench_report::cost::cost(
                &effbench_report::schema::Speed {
                    prefill_tok_per_s: pp,
                    decode_tok_per_s: tg,
                    prompt_tokens: 512,
                    generated_tokens: 128,
                    prefill_samples: vec![pp],
                    decode_samples: vec![tg],
                },
                price,
            )),
            _ => None,
        };
        figures.push(ModelFigures {
            model: loaded.path.display().to_string(),
            variant: loaded.model.label().to_string(),
            layers: loaded.model.config().num_layers,
            weight_bytes: loaded.model.weight_bytes().total,
            perplexity: ppl,
            perplexity_stderr: ppl * (var / n).sqrt(),
            kl_vs_teacher: score.map_or(0.0, |s| s.kl / n),
            top1_agreement: score.map_or(1.0, |s| s.agree as f64 / n),
            scored_tokens: nll.len(),
            prefill_tok_per_s: pp,
            decode_tok_per_s: tg,
            usd_per_million_input: cost.map(|c| c.usd_per_million_input),
            usd_per_million_output: cost.map(|c| c.usd_per_million_output),
        });
    }

    let mut b = Builder::default();
    b.push_record([
        "model",
        "layers",
        "weights",
        "PPL",
        "KL vs teacher",
        "top-1 agree",
        "pp512 t/s",
        "tg128 t/s",
        "$/1M in",
        "$/1M out",
    ]);
    let opt = |v: Option<f64>, digits: usize| v.map_or("-".into(), |x| format!("{x:.digits$}"));
    for f in &figures {
        b.push_record([
            format!("{} ({})", short_name(&f.model), f.variant),
            f.layers.to_string(),
            crate::common::mib(f.weight_bytes),
            format!("{:.3} ± {:.3}", f.perplexity, f.perplexity_stderr),
            format!("{:.4}", f.kl_vs_teacher),
            format!("{:.1}%", f.top1_agreement * 100.0),
            opt(f.prefill_tok_per_s, 1),
            opt(f.decode_tok_per_s, 1),
            opt(f.usd_per_million_input, 4),
            opt(f.usd_per_million_output, 4),
        ]);
    }
    println!("{}", b.build().with(Style::markdown()));
    println!(
        "{} windows of {} tokens from {}, positions {}..{} scored ({} per model); KL is the mean over scored positions of KL(teacher ‖ model), nats{}",
        windows,
        args.ctx,
        text_path.display(),
        first_scored,
        args.ctx - 1,
        teacher_nll.len(),
        price.as_ref().map_or(String::new(), |p| format!(
            "; cost at ${:.5}/h ({}): median pp512/tg128 over {} repetitions",
            p.usd_per_hour, p.basis, args.speed_reps
        ))
    );
    if let Some(path) = &args.json {
        let json = serde_json::json!({
            "text": text_path.display().to_string(),
            "ctx": args.ctx,
            "windows": windows,
            "first_scored": first_scored,
            "threads": threads,
            "price": price,
            "speed_repetitions": args.speed_reps,
            "models": figures,
        });
        std::fs::write(path, serde_json::to_string_pretty(&json)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn short_name(path: &str) -> String {
    Path::new(path)
        .file_name()
        .map_or_else(|| path.to_string(), |n| n.to_string_lossy().to_string())
}
