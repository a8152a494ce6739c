//! effbench-eval: the evaluation engine. It holds the technique registry (every technique is a
//! value parsed from one registry that each technique crate contributes its grammar to, and
//! techniques of different kinds stack with `+`) and what a run is made of: loading a model
//! for a row, the suites, the run directory and its records, shards and merge, and the report.
//! It takes plain configuration; the binary owns the command line.

pub mod bench;
pub mod distill;
pub mod draft;
pub mod error;
pub mod generate;
pub mod hint;
pub mod perplexity;
pub mod progress;
pub mod quantized;
pub mod run;
pub mod session;
pub mod speed;
pub mod technique;

pub use error::{EvalError, Result};
pub use technique::{Stack, TechniqueError, WeightsArg};
