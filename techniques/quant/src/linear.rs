//! A matrix in one of effbench's own packed int4/int2 formats, multiplied by
//! `effbench-kernels`' SIMD kernels.

use candle_core::{DType, Tensor};
use effbench_core::{CoreError, LinearWeight};
use effbench_kernels::PackedFormat;

use crate::error::Result;

#[derive(Debug, Clone)]
pub struct PackedLinear {
    format: PackedFormat,
    bytes: Vec<u8>,
    n: usize,
    k: usize,
}

impl PackedLinear {
    pub fn new(format: PackedFormat, bytes: Vec<u8>, n: usize, k: usize) -> Result<Self> {
        let expected = format.matrix_bytes(n, k);
        if bytes.len() != expected {
            return Err(effbench_kernels::KernelError::PackedLen {
                format,
                n,
                k,
                expected,
                got: bytes.len(),
            }
            .into());
        }
        Ok(Self {
            format,
            bytes,
            n,
            k,
        })
    }

    pub fn packed_format(&self) -> PackedFormat {
        self.format
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl LinearWeight for PackedLinear {
    fn forward(&self, x: &Tensor) -> effbench_core::Result<Tensor> {
        if !x.device().is_cpu() {
            return Err(CoreError::Invalid(
                "effbench's packed int4/int2 kernels run on the CPU only (hint: --device cpu)"
                    .into(),
            ));
        }
        let x = x.to_dtype(DType::F32)?.contiguous()?;
        let dims = x.dims().to_vec();
        let m = x.elem_count() / self.k;
        let (storage, layout) = x.storage_and_layout();
        let candle_core::Storage::Cpu(cpu) = &*storage else {
            return Err(CoreError::Invalid(
                "CPU kernel given a non-CPU tensor".into(),
            ));
        };
        let start = layout.start_offset();
        let xs = &cpu.as_slice::<f32>()?[start..start + m * self.k];
        let mut out = vec![0f32; m * self.n];
        effbench_kernels::matmul_packed(self.format, &self.bytes, self.n, self.k, xs, m, &mut out)
            .map_err(|e| CoreError::Invalid(format!("packed matmul: {e}")))?;
        let mut out_dims = dims;
        *out_dims.last_mut().expect("at least 1-d") = self.n;
        Ok(Tensor::from_vec(out, out_dims, x.device())?)
    }

    fn in_features(&self) -> usize {
        self.k
    }

    fn out_features(&self) -> usize {
        self.n
    }

    fn storage_bytes(&self) -> usize {
        self.bytes.len()
    }

    fn format(&self) -> String {
        format!(
            "int{}-g{}-{}",
            self.format.bits(),
            self.format.group(),
            if self.format.asym() { "asym" } else { "sym" }
        )
    }

    fn dequantize(&self) -> effbench_core::Result<Tensor> {
        let values = effbench_kernels::dequantize_packed(self.format, &self.bytes, self.n, self.k)
            .map_err(|e| CoreError::Invalid(e.to_string()))?;
        Ok(Tensor::from_vec(
            values,
            (self.n, self.k),
            &candle_core::Device::Cpu,
        )?)
    }
}
