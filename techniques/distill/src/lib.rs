//! effbench-distill: knowledge distillation of a smaller student from any model effbench loads.
//!
//! - [`student::Student`] is a trainable Llama-family decoder over candle `Var`s, stored under
//!   Hugging Face names so a checkpoint is a plain `model.safetensors` + `config.json` that
//!   `effbench_core::load` (and Hugging Face tools) read back. It starts from a teacher with
//!   layers dropped (DistilBERT's recipe), from any checkpoint, or at random from a config.
//! - [`teacher::Teacher`] is the seam the teacher's logits come through; effbench-core's fast
//!   inference [`effbench_core::Model`] implements it, so the teacher runs quantized.
//! - [`loss::distillation_loss`] is forward KL to the teacher's temperature-softened
//!   distribution, scaled by T², optionally mixed with next-token cross-entropy.
//! - [`data`] reads a text file or has the teacher write its own corpus from seed prompts.
//! - [`train::train`] runs AdamW with warm-up and cosine decay, gradient accumulation,
//!   checkpoints and resume.
//! - [`session::Session`] is one run into an output directory: the student started or resumed
//!   there, its data (with the teacher's corpus cached beside it), training with checkpoints.

pub mod data;
pub mod error;
pub mod loss;
pub mod plot;
pub mod schedule;
pub mod session;
pub mod student;
pub mod teacher;
pub mod technique;
pub mod train;

pub use error::{DistillError, Result};
pub use student::{LayerSelection, Student};
pub use teacher::Teacher;
pub use train::{train, StepReport, TrainOptions, TrainState};
