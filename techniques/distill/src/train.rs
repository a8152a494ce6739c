//! The training loop: AdamW with warm-up and cosine decay, gradient accumulation over
//! sequences, gradient clipping, a JSONL loss log, periodic checkpoints and resume.
//!
//! Resume restores the student's weights, the step (so the learning-rate schedule and the data
//! order continue where they stopped), the tokens seen and the loss log. It does not restore
//! AdamW's moment estimates: candle-nn keeps them private, so they restart from zero (with
//! their bias correction restarting too), which behaves like a short fresh warm-up of the
//! optimizer's statistics.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use candle_core::backprop::GradStore;
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::error::{io, DistillError, Result};
use crate::loss::distillation_loss;
use crate::schedule::WarmupCosine;
use crate::student::Student;
use crate::teacher::Teacher;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainOptions {
    /// Optimizer steps in all (a resumed run continues towards the same total).
    pub steps: usize,
    /// Sequences whose gradients are accumulated into one optimizer step.
    pub seqs_per_step: usize,
    pub lr: f64,
    pub warmup_steps: usize,
    /// Where cosine decay ends, as a fraction of `lr`.
    pub min_lr_ratio: f64,
    pub weight_decay: f64,
    /// Softening temperature T of both distributions.
    pub temperature: f64,
    /// Weight of next-token cross-entropy; the KD term gets 1 - alpha.
    pub alpha: f64,
    /// Global gradient-norm clip; 0 turns it off.
    pub grad_clip: f64,
    /// Checkpoint every this many steps (and always at the end).
    pub save_every: usize,
    /// Seeds the data order.
    pub seed: u64,
    /// Stop (with a checkpoint) once this invocation has trained this long.
    #[serde(skip)]
    pub max_seconds: Option<f64>,
    /// Stop (with a checkpoint) at this step, leaving the schedule as if training went on to
    /// `steps`: an interruption on purpose.
    #[serde(skip)]
    pub stop_at_step: Option<usize>,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            steps: 100,
            seqs_per_step: 8,
            lr: 3e-4,
            warmup_steps: 10,
            min_lr_ratio: 0.1,
            weight_decay: 0.0,
            temperature: 2.0,
            alpha: 0.0,
            grad_clip: 1.0,
            save_every: 25,
            seed: 0,
            max_seconds: None,
            stop_at_step: None,
        }
    }
}

/// How far training has got: what a checkpoint records besides the weights.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    pub step: usize,
    pub tokens: usize,
    /// Training wall time over every invocation, seconds.
    pub elapsed_s: f64,
}

/// One line of `loss.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepReport {
    /// Steps done, 1-based.
    pub step: usize,
    pub total_steps: usize,
    /// The objective, token-weighted over the step's sequences.
    pub loss: f32,
    /// KL(teacher_T ‖ student_T), nats per token, unscaled.
    pub kl: f32,
    /// Next-token cross-entropy of the student on the training text.
    pub ce: f32,
    pub lr: f64,
    pub grad_norm: f32,
    /// Training tokens seen so far.
    pub tokens: usize,
    /// Tokens per second of this step (teacher and student passes both counted in its time).
    pub tok_per_s: f64,
    pub elapsed_s: f64,
}

/// Where checkpoints go and what they add to `config.json`.
pub struct Checkpointing<'a> {
    pub dir: &'a Path,
    pub extra_config: serde_json::Value,
}

#[derive(Serialize, Deserialize)]
struct SavedState {
    state: TrainState,
    options: TrainOptions,
}

pub const STATE_FILE: &str = "training_state.json";
pub const LOG_FILE: &str = "loss.jsonl";
pub const PLOT_FILE: &str = "loss.svg";

/// The refusal that every run against one teacher makes first.
pub fn check_vocabulary(teacher: &dyn Teacher, student: &Student) -> Result<()> {
    let (t, s) = (teacher.vocab_size(), student.config().vocab_size);
    if t != s {
        return Err(DistillError::VocabularyMismatch {
            teacher: t,
            student: s,
        });
    }
    Ok(())
}

/// Refuses a student whose tokenizer would give other ids than the teacher's for some text.
pub fn check_tokenizers(
    teacher: &tokenizers::Tokenizer,
    student: &tokenizers::Tokenizer,
) -> Result<()> {
    match effbench_tokenizer::vocabulary_difference(teacher, student) {
        None => Ok(()),
        Some(detail) => Err(DistillError::TokenizerMismatch { detail }),
    }
}

/// The state of the checkpoint in `dir`, if one is there.
pub fn read_state(dir: &Path) -> Result<Option<(TrainState, TrainOptions)>> {
    let path = dir.join(STATE_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(&path)(e)),
    };
    let saved: SavedState = serde_json::from_str(&text).map_err(|e| DistillError::BadFile {
        path: path.clone(),
        detail: e.to_string(),
    })?;
    Ok(Some((saved.state, saved.options)))
}

/// The loss log of `dir`, keeping only steps up to `up_to` (the log may run ahead of the last
/// checkpoint when training was interrupted) and rewriting the file to match.
pub fn read_log(dir: &Path, up_to: Option<usize>) -> Result<Vec<StepReport>> {
    let path = dir.join(LOG_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(&path)(e)),
    };
    let mut steps = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let r: StepReport = serde_json::from_str(line).map_err(|e| DistillError::BadFile {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        if up_to.is_none_or(|u| r.step <= u) {
            steps.push(r);
        }
    }
    if let Some(u) = up_to {
        let kept: String = steps
            .iter()
            .filter(|r| r.step <= u)
            .map(|r| serde_json::to_string(r).expect("json") + "\n")
            .collect();
        std::fs::write(&path, kept).map_err(io(&path))?;
    }
    Ok(steps)
}

/// Index into `data` of the `k`-th sequence of training: a fresh seeded shuffle every epoch, so
/// a resumed run sees the same order an uninterrupted one would.
fn sequence_at(k: usize, n: usize, seed: u64, order: &mut (usize, Vec<usize>)) -> usize {
    let epoch = k / n;
    if order.1.is_empty() || order.0 != epoch {
        let mut perm: Vec<usize> = (0..n).collect();
        let mut rng =
            rand::rngs::StdRng::seed_from_u64(seed ^ (epoch as u64).wrapping_mul(0x2545_F491));
        perm.shuffle(&mut rng);
        *order = (epoch, perm);
    }
    order.1[k % n]
}

/// Trains `student` towards `teacher` on `data` from `state` until `opts.steps`, calling
/// `on_step` after every optimizer step. Returns the state reached.
pub fn train(
    student: &Student,
    teacher: &dyn Teacher,
    data: &[Vec<u32>],
    opts: &TrainOptions,
    mut state: TrainState,
    checkpoint: Option<&Checkpointing>,
    mut on_step: impl FnMut(&StepReport),
) -> Result<TrainState> {
    check_vocabulary(teacher, student)?;
    let vocab = student.config().vocab_size;
    let data: Vec<&Vec<u32>> = data.iter().filter(|s| s.len() >= 2).collect();
    if data.is_empty() {
        return Err(DistillError::NoData(
            "no sequence of two or more tokens".into(),
        ));
    }
    if let Some(bad) = data
        .iter()
        .flat_map(|s| s.iter())
        .find(|&&t| t as usize >= vocab)
    {
        return Err(DistillError::Invalid(format!(
            "token id {bad} in the training data is outside the vocabulary of {vocab}"
        )));
    }
    if opts.seqs_per_step == 0 || opts.save_every == 0 {
        return Err(DistillError::Invalid(
            "sequences per step and steps between checkpoints must be at least 1".into(),
        ));
    }
    let schedule = WarmupCosine {
        peak_lr: opts.lr,
        warmup_steps: opts.warmup_steps,
        total_steps: opts.steps,
        min_ratio: opts.min_lr_ratio,
    };
    let vars = student.vars();
    let mut optimizer = AdamW::new(
        vars.clone(),
        ParamsAdamW {
            lr: opts.lr,
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: opts.weight_decay,
        },
    )?;
    let mut log = match checkpoint {
        Some(c) => {
            let path = c.dir.join(LOG_FILE);
            std::fs::create_dir_all(c.dir).map_err(io(c.dir))?;
            Some((
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .map_err(io(&path))?,
                path,
            ))
        }
        None => None,
    };
    let started = Instant::now();
    let elapsed_before = state.elapsed_s;
    let mut order = (0, Vec::new());
    while state.step < opts.steps {
        let step_started = Instant::now();
        let lr = schedule.lr(state.step);
        optimizer.set_learning_rate(lr);
        let batch: Vec<&Vec<u32>> = (0..opts.seqs_per_step)
            .map(|j| {
                let k = state.step * opts.seqs_per_step + j;
                data[sequence_at(k, data.len(), opts.seed, &mut order)]
            })
            .collect();
        let step_tokens: usize = batch.iter().map(|s| s.len()).sum();
        let (mut loss, mut kl, mut ce) = (0f64, 0f64, 0f64);
        let mut grads: Option<GradStore> = None;
        for seq in batch {
            let teacher_logits = teacher.logits(seq)?;
            let student_logits = student.forward(seq)?;
            let parts = distillation_loss(
                &student_logits,
                &teacher_logits,
                seq,
                opts.temperature,
                opts.alpha,
            )?;
            // Token-weighted, so long and short sequences count per token, not per sequence.
            let weight = seq.len() as f64 / step_tokens as f64;
            let scaled = (parts.total * weight)?;
            loss += scaled.to_scalar::<f32>()? as f64;
            kl += parts.kl as f64 * weight;
            ce += parts.ce as f64 * weight;
            let g = scaled.backward()?;
            grads = Some(match grads {
                None => g,
                Some(mut acc) => {
                    for var in &vars {
                        if let Some(new) = g.get(var) {
                            let sum = match acc.get(var) {
                                Some(old) => (old + new)?,
                                None => new.clone(),
                            };
                            acc.insert(var, sum);
                        }
                    }
                    acc
                }
            });
        }
        if !loss.is_finite() {
            return Err(DistillError::Diverged {
                step: state.step + 1,
                loss: loss as f32,
            });
        }
        let mut grads = grads.expect("at least one sequence per step");
        let grad_norm = clip_gradients(&mut grads, &vars, opts.grad_clip)?;
        optimizer.step(&grads)?;
        state.step += 1;
        state.tokens += step_tokens;
        state.elapsed_s = elapsed_before + started.elapsed().as_secs_f64();
        let report = StepReport {
            step: state.step,
            total_steps: opts.steps,
            loss: loss as f32,
            kl: kl as f32,
            ce: ce as f32,
            lr,
            grad_norm,
            tokens: state.tokens,
            tok_per_s: step_tokens as f64 / step_started.elapsed().as_secs_f64(),
            elapsed_s: state.elapsed_s,
        };
        if let Some((file, path)) = log.as_mut() {
            writeln!(file, "{}", serde_json::to_string(&report).expect("json"))
                .and_then(|_| file.flush())
                .map_err(io(path))?;
        }
        on_step(&report);
        let out_of_time = opts
            .max_seconds
            .is_some_and(|m| started.elapsed().as_secs_f64() >= m)
            || opts.stop_at_step.is_some_and(|s| state.step >= s);
        if let Some(c) = checkpoint {
            if state.step.is_multiple_of(opts.save_every) && state.step < opts.steps && !out_of_time
            {
                save_checkpoint(student, c, &state, opts)?;
            }
        }
        if out_of_time {
            break;
        }
    }
    if let Some(c) = checkpoint {
        save_checkpoint(student, c, &state, opts)?;
    }
    Ok(state)
}

/// Scales the gradients so their global L2 norm is at most `max_norm`; returns the norm before.
fn clip_gradients(grads: &mut GradStore, vars: &[candle_core::Var], max_norm: f64) -> Result<f32> {
    let mut sum_sq = 0f64;
    for var in vars {
        if let Some(g) = grads.get(var) {
            sum_sq += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
        }
    }
    let norm = sum_sq.sqrt();
    if max_norm > 0.0 && norm > max_norm {
        let scale = max_norm / norm;
        for var in vars {
            if let Some(g) = grads.get(var) {
                let scaled = (g * scale)?;
                grads.insert(var, scaled);
            }
        }
    }
    Ok(norm as f32)
}

/// Weights and config, then the state file last: a state file always describes weights that
/// are fully written. The loss plot is redrawn from the whole log.
pub fn save_checkpoint(
    student: &Student,
    c: &Checkpointing,
    state: &TrainState,
    opts: &TrainOptions,
) -> Result<()> {
    student.save(c.dir, &c.extra_config)?;
    let saved = SavedState {
        state: state.clone(),
        options: opts.clone(),
    };
    let path = c.dir.join(STATE_FILE);
    let tmp = c.dir.join(format!("{STATE_FILE}.tmp"));
    std::fs::write(&tmp, serde_json::to_string_pretty(&saved).expect("json")).map_err(io(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    let steps = read_log(c.dir, None)?;
    if !steps.is_empty() {
        crate::plot::loss_curve_svg(
            &steps,
            &c.dir.join(PLOT_FILE),
            "Distillation: student vs teacher, per training token",
        )?;
    }
    Ok(())
}
