//! Distillation as the engine runs it for `effbench distill`: a student started (or resumed) in
//! its output directory, the teacher's corpus written or read back, and training to the end of
//! the schedule, each long step behind a progress bar and each decision said on stderr.

use std::path::Path;

use effbench_distill::session::{CorpusSource, DataOptions, Origin, TrainSetup};
use effbench_distill::TrainState;

use crate::progress;
use crate::session::{resolve_model_path, Session};
use crate::Result;

/// Trains a student of `teacher` (loaded from `teacher_path`) as `setup` and `data` say, and
/// returns the state it reached: the schedule's end, or the time limit's checkpoint.
pub fn train(
    teacher: &Session,
    teacher_path: &Path,
    setup: &TrainSetup,
    data: &DataOptions,
) -> Result<Finished> {
    let loaded = &teacher.loaded;
    eprintln!(
        "teacher: {} ({}, {} layers, vocab {})",
        teacher_path.display(),
        loaded.model.label(),
        loaded.model.config().num_layers,
        loaded.model.config().vocab_size
    );
    let session = effbench_distill::session::Session::start(loaded, teacher_path, setup, |name| {
        resolve_model_path(name).map_err(Into::into)
    })?;
    match &session.origin {
        Origin::Resumed => eprintln!(
            "resuming at step {}/{} ({} tokens seen)",
            session.state.step, session.options.steps, session.state.tokens
        ),
        Origin::KeptLayers(kept) => eprintln!("student: teacher layers {kept:?}"),
        Origin::Random | Origin::Model(_) => {}
    }
    eprintln!(
        "student: {} layers, {:.1}M parameters",
        session.student.config().num_layers,
        session.student.num_parameters() as f64 / 1e6
    );

    let mut bar = None;
    let corpus = session.training_data(loaded, teacher_path, data, |done, total| {
        bar.get_or_insert_with(|| {
            progress::bar(
                total as u64,
                "teacher writes its corpus [{bar:30}] {pos}/{len} tokens [{elapsed}<{eta}]",
            )
        })
        .set_position(done as u64)
    })?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if let CorpusSource::Cached(cache) = &corpus.source {
        eprintln!("data: teacher-generated corpus from {}", cache.display());
    }
    let tokens: usize = corpus.sequences.iter().map(|s| s.len()).sum();
    let steps = session.options.steps;
    eprintln!(
        "data: {} sequences, {tokens} tokens; {steps} steps of {} sequences",
        corpus.sequences.len(),
        session.options.seqs_per_step
    );

    let bar = progress::bar(
        steps as u64,
        "distill [{bar:30}] {pos}/{len} {msg} [{elapsed}<{eta}]",
    );
    bar.set_position(session.state.step as u64);
    let state = session.train(loaded, &corpus.sequences, |r| {
        bar.set_position(r.step as u64);
        bar.set_message(format!(
            "loss {:.4} kl {:.4} ce {:.3} lr {:.2e} {:.0} tok/s",
            r.loss, r.kl, r.ce, r.lr, r.tok_per_s
        ));
    })?;
    bar.finish_and_clear();
    Ok(Finished { state, steps })
}

/// Where training stopped, against the schedule's length.
pub struct Finished {
    pub state: TrainState,
    pub steps: usize,
}

impl Finished {
    /// Whether the time limit stopped training before the schedule ended.
    pub fn stopped_early(&self) -> bool {
        self.state.step < self.steps
    }
}
