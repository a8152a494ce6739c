//! How a weight matrix is stored and multiplied. Every technique that changes weights (GGML
//! types as stored, a dense f16 baseline, our own int4/int2 packing) is a [`LinearWeight`], and a
//! [`WeightPolicy`] decides which one each matrix of a checkpoint becomes at load time.

use std::fmt::Debug;
use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Module, Tensor};

use effbench_kernels::WeightFormat;

use crate::error::{CoreError, Result};

/// Set to run every GGML and f16 matrix through candle's kernels, for comparing the two.
pub const CANDLE_ONLY_ENV: &str = "EFFBENCH_CANDLE_KERNELS";

/// A weight matrix `W` of shape (out_features, in_features) that computes `x W^T`.
pub trait LinearWeight: Send + Sync + Debug {
    /// `x` is (tokens, in_features) f32; the result is (tokens, out_features) f32.
    fn forward(&self, x: &Tensor) -> Result<Tensor>;
    fn in_features(&self) -> usize;
    fn out_features(&self) -> usize;
    /// Bytes the weight occupies in memory, scales and zero points included.
    fn storage_bytes(&self) -> usize;
    /// Short name of the storage format, e.g. `Q4_1`, `f16`, `int4-g32-asym`.
    fn format(&self) -> String;
    /// The weight as dense f32 (out, in), for quantizers that start from it and for checks.
    fn dequantize(&self) -> Result<Tensor>;

    fn bits_per_weight(&self) -> f64 {
        self.storage_bytes() as f64 * 8.0 / (self.in_features() * self.out_features()) as f64
    }
}

/// A matrix as a checkpoint hands it over, before a policy decides its runtime form.
#[derive(Debug, Clone)]
pub enum SourceTensor {
    Ggml(Arc<QTensor>),
    Dense(Tensor),
}

impl SourceTensor {
    pub fn dims(&self) -> Vec<usize> {
        match self {
            Self::Ggml(q) => q.shape().dims().to_vec(),
            Self::Dense(t) => t.dims().to_vec(),
        }
    }

    pub fn format(&self) -> String {
        match self {
            Self::Ggml(q) => ggml_type_name(q.dtype()).to_string(),
            Self::Dense(t) => dtype_name(t.dtype()).to_string(),
        }
    }

    pub fn to_f32(&self) -> Result<Tensor> {
        Ok(match self {
            Self::Ggml(q) => q.dequantize(&q.device())?,
            Self::Dense(t) => t.to_dtype(DType::F32)?,
        })
    }
}

/// GGML's own spelling of a block type (`Q4_K`, not candle's `Q4K`), as users know it.
pub fn ggml_type_name(dtype: GgmlDType) -> &'static str {
    match dtype {
        GgmlDType::F32 => "F32",
        GgmlDType::F16 => "F16",
        GgmlDType::BF16 => "BF16",
        GgmlDType::Q4_0 => "Q4_0",
        GgmlDType::Q4_1 => "Q4_1",
        GgmlDType::Q5_0 => "Q5_0",
        GgmlDType::Q5_1 => "Q5_1",
        GgmlDType::Q8_0 => "Q8_0",
        GgmlDType::Q8_1 => "Q8_1",
        GgmlDType::Q2K => "Q2_K",
        GgmlDType::Q3K => "Q3_K",
        GgmlDType::Q4K => "Q4_K",
        GgmlDType::Q5K => "Q5_K",
        GgmlDType::Q6K => "Q6_K",
        GgmlDType::Q8K => "Q8_K",
    }
}

pub fn dtype_name(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => "f32",
        DType::F16 => "f16",
        DType::BF16 => "bf16",
        DType::F64 => "f64",
        _ => "other",
    }
}

/// Which role a matrix plays, so a policy can treat some differently (practitioners often keep
/// the output head and embeddings at higher precision than the blocks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightRole {
    Attention,
    Mlp,
    OutputHead,
}

/// Decides the runtime form of each matrix as the model loads: the seam where a technique
/// becomes a value passed to the loader rather than a fork of the model.
pub trait WeightPolicy: Send + Sync + Debug {
    fn build(
        &self,
        name: &str,
        role: WeightRole,
        source: SourceTensor,
    ) -> Result<Arc<dyn LinearWeight>>;
    /// The dtype embeddings are kept in, when they are not GGML rows as stored.
    fn embedding_dtype(&self) -> Option<DType> {
        None
    }
    /// How reports label the variant, e.g. "Q4_1 as stored", "f16, dequantized from Q4_1".
    fn describe(&self, source_format: &str) -> String;
}

/// Keeps every matrix in the format the checkpoint stored it in.
#[derive(Debug, Clone, Copy, Default)]
pub struct AsStored;

impl WeightPolicy for AsStored {
    fn build(
        &self,
        _name: &str,
        _role: WeightRole,
        source: SourceTensor,
    ) -> Result<Arc<dyn LinearWeight>> {
        Ok(match source {
            SourceTensor::Ggml(q) => match q.dtype() {
                // candle would silently widen these to f32; keep them as the dense type they are.
                GgmlDType::F16 => Arc::new(DenseLinear::new(q.dequantize_f16(&q.device())?)?),
                GgmlDType::F32 => Arc::new(DenseLinear::new(q.dequantize(&q.device())?)?),
                GgmlDType::BF16 => Arc::new(DenseLinear::new(
                    q.dequantize(&q.device())?.to_dtype(DType::BF16)?,
                )?),
                _ => Arc::new(GgmlLinear::new(q)?),
            },
            SourceTensor::Dense(t) => Arc::new(DenseLinear::new(t)?),
        })
    }

    fn describe(&self, source_format: &str) -> String {
        format!("{source_format} as stored")
    }
}

/// Dequantizes every matrix to one dense dtype: the "f16 baseline" of a checkpoint that only
/// exists quantized.
#[derive(Debug, Clone, Copy)]
pub struct Dequantize(pub DType);

impl WeightPolicy for Dequantize {
    fn build(
        &self,
        _name: &str,
        _role: WeightRole,
        source: SourceTensor,
    ) -> Result<Arc<dyn LinearWeight>> {
        let dense = match &source {
            SourceTensor::Ggml(q) if self.0 == DType::F16 => q.dequantize_f16(&q.device())?,
            _ => source.to_f32()?.to_dtype(self.0)?,
        };
        Ok(Arc::new(DenseLinear::new(dense)?))
    }

    fn embedding_dtype(&self) -> Option<DType> {
        Some(self.0)
    }

    fn describe(&self, source_format: &str) -> String {
        let target = dtype_name(self.0);
        if source_format.eq_ignore_ascii_case(target) {
            format!("{target} as stored")
        } else {
            format!("{target}, dequantized from {source_format}")
        }
    }
}

/// A dense matrix in f32, f16 or bf16.
#[derive(Debug, Clone)]
pub struct DenseLinear {
    weight: Tensor,
}

impl DenseLinear {
    pub fn new(weight: Tensor) -> Result<Self> {
        weight.dims2()?;
        Ok(Self {
            weight: weight.contiguous()?,
        })
    }

    pub fn weight(&self) -> &Tensor {
        &self.weight
    }
}

impl DenseLinear {
    /// f16 weights on the CPU through effbench's kernel: activations stay f32 and only the
    /// weights are widened, where candle would round every activation to f16 and run a slower
    /// f16 GEMM (`runtime/kernels/benches/f16.rs`). None when the tensors are not in that form.
    fn forward_f16_own(&self, x: &Tensor) -> Result<Option<Tensor>> {
        if self.weight.dtype() != DType::F16
            || x.dtype() != DType::F32
            || !x.device().is_cpu()
            || std::env::var_os(CANDLE_ONLY_ENV).is_some()
        {
            return Ok(None);
        }
        let (n, k) = self.weight.dims2()?;
        let x = x.contiguous()?;
        let m = x.elem_count() / k;
        let (w_storage, w_layout) = self.weight.storage_and_layout();
        let (x_storage, x_layout) = x.storage_and_layout();
        let (candle_core::Storage::Cpu(w_cpu), candle_core::Storage::Cpu(x_cpu)) =
            (&*w_storage, &*x_storage)
        else {
            return Ok(None);
        };
        let w0 = w_layout.start_offset();
        let ws = &w_cpu.as_slice::<half::f16>()?[w0..w0 + n * k];
        let x0 = x_layout.start_offset();
        let xs = &x_cpu.as_slice::<f32>()?[x0..x0 + m * k];
        let mut out = effbench_kernels::elementwise::zeros(m * n);
        effbench_kernels::matmul_f16(ws, n, k, xs, m, &mut out)
            .map_err(|e| CoreError::Invalid(format!("f16 matmul: {e}")))?;
        let mut dims = x.dims().to_vec();
        *dims.last_mut().expect("at least 1-d") = n;
        Ok(Some(Tensor::from_vec(out, dims, x.device())?))
    }
}

impl LinearWeight for DenseLinear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if let Some(y) = self.forward_f16_own(x)? {
            return Ok(y);
        }
        let dtype = self.weight.dtype();
        // Elsewhere (bf16, other devices) half-precision weights multiply half-precision
        // activations, as llama.cpp's CPU path does; widening the weights every call would cost
        // more than the matmul.
        let x = if x.dtype() == dtype {
            x.clone()
        } else {
            x.to_dtype(dtype)?
        };
        let y = x.matmul(&self.weight.t()?)?;
        Ok(if dtype == DType::F32 {
            y
        } else {
            y.to_dtype(DType::F32)?
        })
    }

    fn in_features(&self) -> usize {
        self.weight.dims()[1]
    }

    fn out_features(&self) -> usize {
        self.weight.dims()[0]
    }

    fn storage_bytes(&self) -> usize {
        self.weight.elem_count() * self.weight.dtype().size_in_bytes()
    }

    fn format(&self) -> String {
        dtype_name(self.weight.dtype()).to_string()
    }

    fn dequantize(&self) -> Result<Tensor> {
        Ok(self.weight.to_dtype(DType::F32)?)
    }
}

/// A GGML block-quantized matrix. Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K and Q6_K on the CPU go
/// through our own SIMD kernels (`effbench-kernels`), faster than candle's for these types (see
/// `runtime/kernels/benches`); every other type and device through candle's.
#[derive(Debug, Clone)]
pub struct GgmlLinear {
    qtensor: Arc<QTensor>,
    matmul: QMatMul,
    fast: Option<WeightFormat>,
}

impl GgmlLinear {
    pub fn new(qtensor: Arc<QTensor>) -> Result<Self> {
        qtensor.shape().dims2()?;
        let matmul = QMatMul::QTensor(qtensor.clone());
        let fast = if qtensor.device().is_cpu() && std::env::var_os(CANDLE_ONLY_ENV).is_none() {
            match qtensor.dtype() {
                GgmlDType::Q4_0 => Some(WeightFormat::Q4_0),
                GgmlDType::Q4_1 => Some(WeightFormat::Q4_1),
                GgmlDType::Q5_0 => Some(WeightFormat::Q5_0),
                GgmlDType::Q5_1 => Some(WeightFormat::Q5_1),
                GgmlDType::Q8_0 => Some(WeightFormat::Q8_0),
                GgmlDType::Q4K => Some(WeightFormat::Q4_K),
                GgmlDType::Q6K => Some(WeightFormat::Q6_K),
                _ => None,
            }
        } else {
            None
        };
        Ok(Self {
            qtensor,
            matmul,
            fast,
        })
    }

    /// Whether this matrix runs on effbench's own kernel rather than candle's.
    pub fn uses_own_kernel(&self) -> bool {
        self.fast.is_some()
    }

    fn forward_own(&self, format: WeightFormat, x: &Tensor) -> Result<Tensor> {
        let (n, k) = self.qtensor.shape().dims2()?;
        let x = x.contiguous()?;
        let dims = x.dims().to_vec();
        let m = x.elem_count() / k;
        let (storage, layout) = x.storage_and_layout();
        let candle_core::Storage::Cpu(cpu) = &*storage else {
            return Err(CoreError::Invalid(
                "CPU kernel given a non-CPU tensor".into(),
            ));
        };
        let xs = &cpu.as_slice::<f32>()?[layout.start_offset()..layout.start_offset() + m * k];
        let weights = self.qtensor.data()?;
        let mut out = effbench_kernels::elementwise::zeros(m * n);
        effbench_kernels::matmul(format, &weights, n, k, xs, m, &mut out)
            .map_err(|e| CoreError::Invalid(format!("quantized matmul: {e}")))?;
        let mut out_dims = dims;
        *out_dims.last_mut().expect("at least 1-d") = n;
        Ok(Tensor::from_vec(out, out_dims, x.device())?)
    }

    pub fn qtensor(&self) -> &Arc<QTensor> {
        &self.qtensor
    }
}

impl LinearWeight for GgmlLinear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self.fast {
            Some(format) if x.dtype() == DType::F32 => self.forward_own(format, x),
            _ => Ok(self.matmul.forward(&x.contiguous()?)?),
        }
    }

    fn in_features(&self) -> usize {
        self.qtensor.shape().dims()[1]
    }

    fn out_features(&self) -> usize {
        self.qtensor.shape().dims()[0]
    }

    fn storage_bytes(&self) -> usize {
        self.qtensor.storage_size_in_bytes()
    }

    fn format(&self) -> String {
        ggml_type_name(self.qtensor.dtype()).to_string()
    }

    fn dequantize(&self) -> Result<Tensor> {
        Ok(self.qtensor.dequantize(&self.qtensor.device())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn seeded(rows: usize, cols: usize, seed: u64) -> Tensor {
        let mut state = seed;
        let data: Vec<f32> = (0..rows * cols)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 33) as f32 / (1u64 << 31) as f32) - 0.5
            })
            .collect();
        Tensor::from_vec(data, (rows, cols), &Device::Cpu).unwrap()
    }

    #[test]
    fn ggml_and_dense_agree_on_the_same_weights() {
        let w = seeded(64, 256, 1);
        let x = seeded(3, 256, 2);
        let q = Arc::new(QTensor::quantize(&w, GgmlDType::Q8_0).unwrap());
        let ggml = GgmlLinear::new(q.clone()).unwrap();
        let dense = DenseLinear::new(q.dequantize(&Device::Cpu).unwrap()).unwrap();
        let a = ggml.forward(&x).unwrap();
        let b = dense.forward(&x).unwrap();
        let diff = (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        // Q8_0 quantizes activations to int8 too, so only close, not equal.
        assert!(diff < 0.05, "max abs diff {diff}");
        assert_eq!(ggml.format(), "Q8_0");
        assert!((ggml.bits_per_weight() - 8.5).abs() < 1e-9);
        assert_eq!(dense.bits_per_weight(), 32.0);
    }

    #[test]
    fn q5_matrices_run_on_our_kernels() {
        if std::env::var_os(CANDLE_ONLY_ENV).is_some() {
            eprintln!("skipping: {CANDLE_ONLY_ENV} asks for candle's kernels");
            return;
        }
        let w = seeded(40, 256, 4);
        let x = seeded(5, 256, 5);
        for (dtype, name) in [(GgmlDType::Q5_0, "Q5_0"), (GgmlDType::Q5_1, "Q5_1")] {
            let q = Arc::new(QTensor::quantize(&w, dtype).unwrap());
            let ggml = GgmlLinear::new(q.clone()).unwrap();
            assert!(ggml.uses_own_kernel(), "{name}");
            assert_eq!(ggml.format(), name);
            let dense = DenseLinear::new(q.dequantize(&Device::Cpu).unwrap()).unwrap();
            let diff = (ggml.forward(&x).unwrap() - dense.forward(&x).unwrap())
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            // |x| < 0.5 in blocks of 32 rounds each activation by at most 0.5 / 254; with
            // |w| < 0.5 over k = 256 that bounds an output's error by 256 * 0.5 * 0.002 = 0.25,
            // and independent roundings land far inside it.
            assert!(diff < 0.05, "{name}: max abs diff {diff}");
        }
    }

    #[test]
    fn policies_label_their_variant() {
        assert_eq!(AsStored.describe("Q4_1"), "Q4_1 as stored");
        assert_eq!(
            Dequantize(DType::F16).describe("Q4_1"),
            "f16, dequantized from Q4_1"
        );
        let w = seeded(8, 32, 3);
        let built = Dequantize(DType::F16)
            .build("w", WeightRole::Mlp, SourceTensor::Dense(w))
            .unwrap();
        assert_eq!(built.format(), "f16");
        assert_eq!(built.storage_bytes(), 8 * 32 * 2);
    }
}
