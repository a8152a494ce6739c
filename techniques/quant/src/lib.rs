//! effbench-quant: group-wise int4 and int2 weight quantization.
//!
//! - [`spec`]: formats (bits, group, symmetry), methods and technique names;
//! - [`rtn`]: round to nearest, and the quantized matrix both methods produce, stored as a GGML
//!   type where one matches bit for bit (int4 g32: Q4_0/Q4_1) and in effbench's own packed
//!   formats otherwise ([`linear::PackedLinear`], kernels in `effbench-kernels`);
//! - [`gptq`]: GPTQ with Hessians from [`calib`] (self-generated calibration text);
//! - [`policy`]: the [`effbench_core::WeightPolicy`] that loads a model quantized;
//! - [`pipeline`]: quantize a whole checkpoint; [`file`]: write and read the result.

pub mod calib;
pub mod error;
pub mod file;
pub mod gptq;
pub mod linalg;
pub mod linear;
pub mod pipeline;
pub mod policy;
pub mod rtn;
pub mod spec;

pub use error::{QuantError, Result};
pub use linear::PackedLinear;
pub use policy::QuantPolicy;
pub use rtn::{rtn, QuantizedMatrix, Stored};
pub use spec::{Method, QuantSpec, Recipe};
