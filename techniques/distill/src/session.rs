//! One distillation run into an output directory, as a front end drives it: start or resume the
//! student there, gather its training data, train it with checkpoints. Every choice arrives as a
//! plain value and every message is left to the caller, so a command line, a script or a test
//! drives the same run.

use std::path::{Path, PathBuf};

use candle_core::Device;
use effbench_core::source::{sniff, GgufSource, ModelFormat, SafetensorsSource, WeightSource};
use effbench_core::{LoadedModel, ModelConfig};

use crate::data::{self, GenerateOptions};
use crate::error::{io, DistillError, Result};
use crate::student::{special_token_config, write_tokenizer_files, LayerSelection, Student};
use crate::train::{
    check_tokenizers, check_vocabulary, read_log, read_state, Checkpointing, StepReport,
    TrainOptions, TrainState,
};

/// Optimizer steps of a fresh run that names none.
pub const DEFAULT_STEPS: usize = 300;

/// The teacher-generated corpus, cached beside the checkpoint it trains.
pub const CORPUS_FILE: &str = "teacher-corpus.jsonl";

/// Sequences the teacher decodes together while writing its corpus. Part of the corpus
/// fingerprint, so changing it invalidates every cache.
const GENERATE_BATCH: usize = 16;

/// Where a fresh student comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum StudentInit {
    /// The teacher's own layers, a selection as [`LayerSelection::parse`] reads it.
    KeepLayers(String),
    /// At random, from a Hugging Face `config.json`.
    Random(PathBuf),
    /// An existing checkpoint or any model effbench loads, named as the user named it: it is
    /// resolved only when a fresh student is actually made, so a refused run fetches nothing.
    Model(String),
}

/// The student and optimizer choices of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainSetup {
    /// The checkpoint directory.
    pub out: PathBuf,
    /// Continue the checkpoint in `out` rather than refuse to overwrite it.
    pub resume: bool,
    /// Ignored on resume: the checkpoint is the student.
    pub student: StudentInit,
    /// Optimizer steps in all; None is [`DEFAULT_STEPS`], or on resume the checkpoint's.
    pub steps: Option<usize>,
    /// A resumed run keeps its checkpoint's values of the fields from here to `seed`, since the
    /// schedule and data order must continue where they stopped.
    pub seqs_per_step: usize,
    pub lr: f64,
    pub warmup_steps: usize,
    pub min_lr_ratio: f64,
    pub weight_decay: f64,
    pub temperature: f64,
    pub alpha: f64,
    pub grad_clip: f64,
    pub save_every: usize,
    /// Seeds a random init and the data order.
    pub seed: u64,
    /// This invocation's training time limit; applies on resume too.
    pub max_seconds: Option<f64>,
}

impl TrainSetup {
    fn fresh_options(&self) -> TrainOptions {
        TrainOptions {
            steps: self.steps.unwrap_or(DEFAULT_STEPS),
            seqs_per_step: self.seqs_per_step,
            lr: self.lr,
            warmup_steps: self.warmup_steps,
            min_lr_ratio: self.min_lr_ratio,
            weight_decay: self.weight_decay,
            temperature: self.temperature,
            alpha: self.alpha,
            grad_clip: self.grad_clip,
            save_every: self.save_every,
            seed: self.seed,
            max_seconds: self.max_seconds,
            stop_at_step: None,
        }
    }
}

/// What a run trains on.
#[derive(Debug, Clone, PartialEq)]
pub struct DataOptions {
    /// Windows of this text file instead of a teacher-generated corpus.
    pub text: Option<PathBuf>,
    /// Teacher-generated sequences.
    pub sequences: usize,
    /// Tokens per training sequence (per generated sequence, prompt included).
    pub seq_len: usize,
    /// Seed prompts, one per line; None is [`data::SEED_PROMPTS`].
    pub prompts: Option<PathBuf>,
    pub temperature: f32,
    pub top_p: f32,
    pub seed: u64,
}

/// How the student of a [`Session`] came about, for the caller to report.
#[derive(Debug, Clone, PartialEq)]
pub enum Origin {
    Resumed,
    Random,
    Model(PathBuf),
    /// The teacher layers kept, resolved to indices.
    KeptLayers(Vec<usize>),
}

/// Where the training sequences came from.
#[derive(Debug, Clone, PartialEq)]
pub enum CorpusSource {
    Text(PathBuf),
    /// A cache the teacher wrote earlier.
    Cached(PathBuf),
    /// Written by the teacher in this invocation, and now cached there.
    Generated(PathBuf),
}

pub struct Corpus {
    pub sequences: Vec<Vec<u32>>,
    pub source: CorpusSource,
}

/// A student ready to train in its output directory, with the options it trains under and the
/// state it starts from.
pub struct Session {
    pub student: Student,
    pub state: TrainState,
    pub options: TrainOptions,
    pub origin: Origin,
    pub out: PathBuf,
    resume: bool,
}

/// The error a model-name resolver may return; it reaches the caller unchanged.
pub type ResolveError = Box<dyn std::error::Error + Send + Sync>;

impl Session {
    /// Resumes the checkpoint in `setup.out`, or makes a fresh student there; refuses to resume
    /// nothing and to overwrite a checkpoint. `resolve_model` turns [`StudentInit::Model`] into a
    /// path. The teacher's tokenizer files are written beside the student, so every checkpoint
    /// loads and tokenizes as the teacher does.
    pub fn start(
        teacher: &LoadedModel,
        teacher_path: &Path,
        setup: &TrainSetup,
        resolve_model: impl FnOnce(&str) -> std::result::Result<PathBuf, ResolveError>,
    ) -> Result<Self> {
        let device = teacher.model.device().clone();
        let out = setup.out.clone();
        let (student, state, options, origin) = match (setup.resume, read_state(&out)?) {
            (true, Some((state, mut options))) => {
                let student = Student::load(&out, &device)?;
                if let Some(steps) = setup.steps {
                    options.steps = steps;
                }
                options.max_seconds = setup.max_seconds;
                // The log may run past the checkpoint if training was interrupted.
                read_log(&out, Some(state.step))?;
                (student, state, options, Origin::Resumed)
            }
            (true, None) => return Err(DistillError::NoCheckpoint { path: out }),
            (false, Some((state, _))) => {
                return Err(DistillError::CheckpointExists {
                    path: out,
                    step: state.step,
                })
            }
            (false, None) => {
                let (student, origin) =
                    fresh_student(teacher, teacher_path, setup, &device, resolve_model)?;
                (
                    student,
                    TrainState::default(),
                    setup.fresh_options(),
                    origin,
                )
            }
        };
        check_vocabulary(&teacher.model, &student)?;
        std::fs::create_dir_all(&out).map_err(io(&out))?;
        write_tokenizer_files(teacher, &out)?;
        Ok(Self {
            student,
            state,
            options,
            origin,
            out,
            resume: setup.resume,
        })
    }

    /// The run's training sequences: windows of a text file, or the teacher's own corpus,
    /// generated once and cached in the output directory. `on_progress(done, total)` follows the
    /// generation in tokens, starting at 0 before the first so a display can start with it; it is
    /// not called when nothing is generated.
    pub fn training_data(
        &self,
        teacher: &LoadedModel,
        teacher_path: &Path,
        opts: &DataOptions,
        mut on_progress: impl FnMut(usize, usize),
    ) -> Result<Corpus> {
        if let Some(path) = &opts.text {
            let text = std::fs::read_to_string(path).map_err(io(path))?;
            let sequences = data::windows(&teacher.encode(&text)?, opts.seq_len);
            if sequences.is_empty() {
                return Err(DistillError::TextTooShort { path: path.clone() });
            }
            return Ok(Corpus {
                sequences,
                source: CorpusSource::Text(path.clone()),
            });
        }
        let prompt_texts = seed_prompts(opts.prompts.as_deref())?;
        let gen = GenerateOptions {
            sequences: opts.sequences,
            seq_len: opts.seq_len,
            temperature: opts.temperature,
            top_p: opts.top_p,
            seed: opts.seed,
            batch: GENERATE_BATCH,
        };
        let fingerprint = corpus_fingerprint(teacher_path, &prompt_texts, &gen);
        let cache = self.out.join(CORPUS_FILE);
        // A resumed run trains on the corpus it started with, whatever the data options say now.
        let wanted = (!self.resume).then_some(fingerprint.as_str());
        if let Some(sequences) = data::read_cache(&cache, wanted)? {
            return Ok(Corpus {
                sequences,
                source: CorpusSource::Cached(cache),
            });
        }
        let prompts = prompt_texts
            .iter()
            .map(|p| teacher.encode(p))
            .collect::<effbench_core::Result<Vec<_>>>()?;
        on_progress(0, gen.sequences * gen.seq_len);
        let sequences = data::generate_corpus(
            &teacher.model,
            &prompts,
            &teacher.stop_tokens(),
            &gen,
            on_progress,
        )?;
        data::write_cache(&cache, &fingerprint, &sequences)?;
        Ok(Corpus {
            sequences,
            source: CorpusSource::Generated(cache),
        })
    }

    /// Trains to the end of the schedule or the time limit, checkpointing into the output
    /// directory; `on_step` follows every optimizer step. Returns the state reached.
    pub fn train(
        self,
        teacher: &LoadedModel,
        corpus: &[Vec<u32>],
        on_step: impl FnMut(&StepReport),
    ) -> Result<TrainState> {
        let checkpoint = Checkpointing {
            dir: &self.out,
            extra_config: special_token_config(teacher),
        };
        crate::train::train(
            &self.student,
            &teacher.model,
            corpus,
            &self.options,
            self.state,
            Some(&checkpoint),
            on_step,
        )
    }
}

fn fresh_student(
    teacher: &LoadedModel,
    teacher_path: &Path,
    setup: &TrainSetup,
    device: &Device,
    resolve_model: impl FnOnce(&str) -> std::result::Result<PathBuf, ResolveError>,
) -> Result<(Student, Origin)> {
    let teacher_vocab = teacher.model.config().vocab_size;
    match &setup.student {
        StudentInit::Random(config) => {
            let cfg = ModelConfig::from_hf_config_json(config)?;
            Ok((Student::random(cfg, setup.seed, device)?, Origin::Random))
        }
        StudentInit::Model(name) => {
            let path = resolve_model(name).map_err(DistillError::Resolve)?;
            let student = if path.join("model.safetensors").is_file() {
                Student::load(&path, device)?
            } else {
                let mut source = open_source(&path, device)?;
                // Refused before dequantizing a whole model of the wrong vocabulary.
                let student_vocab = source.config().vocab_size;
                if teacher_vocab != student_vocab {
                    return Err(DistillError::VocabularyMismatch {
                        teacher: teacher_vocab,
                        student: student_vocab,
                    });
                }
                Student::from_teacher(source.as_mut(), &LayerSelection::All, device)?
            };
            if student.config().vocab_size == teacher_vocab {
                check_tokenizers(
                    &teacher.tokenizer,
                    &effbench_core::loader::tokenizer_of(&path)?,
                )?;
            }
            Ok((student, Origin::Model(path)))
        }
        StudentInit::KeepLayers(selection) => {
            let mut source = open_source(teacher_path, device)?;
            let selection = LayerSelection::parse(selection)?;
            let kept = selection.resolve(source.config().num_layers)?;
            let student = Student::from_teacher(source.as_mut(), &selection, device)?;
            Ok((student, Origin::KeptLayers(kept)))
        }
    }
}

fn open_source(path: &Path, device: &Device) -> Result<Box<dyn WeightSource>> {
    Ok(match sniff(path)? {
        ModelFormat::Gguf => Box::new(GgufSource::open(path, device)?),
        _ => Box::new(SafetensorsSource::open(path, device)?),
    })
}

/// The non-blank lines of a prompts file, trimmed, or the built-in set.
fn seed_prompts(path: Option<&Path>) -> Result<Vec<String>> {
    let Some(path) = path else {
        return Ok(data::SEED_PROMPTS.iter().map(|s| s.to_string()).collect());
    };
    let prompts: Vec<String> = std::fs::read_to_string(path)
        .map_err(io(path))?
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    if prompts.is_empty() {
        return Err(DistillError::NoSeedPrompts {
            path: path.to_path_buf(),
        });
    }
    Ok(prompts)
}

/// What a teacher corpus depends on. The teacher is named by path and size rather than hashed,
/// since hashing gigabytes on every run would cost more than it guards against; existing caches
/// carry this exact fingerprint, so its parts and their order must not change.
fn corpus_fingerprint(teacher_path: &Path, prompts: &[String], gen: &GenerateOptions) -> String {
    let teacher_bytes = std::fs::metadata(teacher_path)
        .map(|m| m.len())
        .unwrap_or(0);
    data::fingerprint(&[
        &teacher_path.display().to_string(),
        &teacher_bytes.to_string(),
        &prompts.join("\n"),
        &format!("{gen:?}"),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gen() -> GenerateOptions {
        GenerateOptions {
            sequences: 256,
            seq_len: 256,
            temperature: 1.0,
            top_p: 0.95,
            seed: 0,
            batch: GENERATE_BATCH,
        }
    }

    #[test]
    fn the_corpus_fingerprint_is_the_one_existing_caches_carry() {
        let prompts = vec!["Once upon a time".to_string(), "def f(x):".to_string()];
        let missing = Path::new("/nonexistent/teacher.gguf");
        let before = data::fingerprint(&[
            "/nonexistent/teacher.gguf",
            "0",
            "Once upon a time\ndef f(x):",
            "GenerateOptions { sequences: 256, seq_len: 256, temperature: 1.0, top_p: 0.95, seed: 0, batch: 16 }",
        ]);
        assert_eq!(corpus_fingerprint(missing, &prompts, &gen()), before);
    }

    #[test]
    fn the_corpus_fingerprint_follows_every_input() {
        let dir = tempfile::tempdir().unwrap();
        let teacher = dir.path().join("t.gguf");
        std::fs::write(&teacher, b"1234").unwrap();
        let prompts = vec!["a".to_string()];
        let base = corpus_fingerprint(&teacher, &prompts, &gen());
        assert_eq!(base, corpus_fingerprint(&teacher, &prompts, &gen()));
        std::fs::write(&teacher, b"12345").unwrap();
        assert_ne!(base, corpus_fingerprint(&teacher, &prompts, &gen()));
        let grown = corpus_fingerprint(&teacher, &prompts, &gen());
        assert_ne!(
            grown,
            corpus_fingerprint(&teacher, &["b".to_string()], &gen())
        );
        let other_seed = GenerateOptions { seed: 1, ..gen() };
        assert_ne!(grown, corpus_fingerprint(&teacher, &prompts, &other_seed));
    }

    #[test]
    fn seed_prompts_skip_blank_lines_and_refuse_an_empty_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("prompts.txt");
        std::fs::write(&file, "  first \n\n\tsecond\n").unwrap();
        assert_eq!(seed_prompts(Some(&file)).unwrap(), ["first", "second"]);
        assert_eq!(seed_prompts(None).unwrap().len(), data::SEED_PROMPTS.len());
        std::fs::write(&file, " \n\n").unwrap();
        assert!(matches!(
            seed_prompts(Some(&file)),
            Err(DistillError::NoSeedPrompts { .. })
        ));
    }
}
