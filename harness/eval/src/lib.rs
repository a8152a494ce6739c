//! effbench-eval: the evaluation engine. Today it holds the technique registry: every technique
//! is a value parsed from one registry that each technique crate contributes its grammar to, and
//! techniques of different kinds stack with `+`.

pub mod technique;

pub use technique::{Stack, TechniqueError, WeightsArg};
