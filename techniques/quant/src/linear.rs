//! A matrix in one of effbench's own packed int4/int2 formats, multiplied by
//! `effbench-kernels`' SIMD kernels on the CPU. Those kernels have no GPU counterpart: on a GPU
//! the matrix is dequantized to f16 as it loads ([`F16Compute`]), and labelled so.

use candle_core::{DType, Device, Tensor};
use effbench_core::linear::DenseLinear;
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
        let expected = format.checked_matrix_bytes(n, k).unwrap_or(usize::MAX);
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
                "effbench's packed int4/int2 kernels run on the CPU only (hint: run them on the CPU)"
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

/// What a quantized matrix becomes on a device our packed kernels do not run on: its f16
/// dequantization, multiplied as dense f16. Its speed is an f16 speed, not an int4 one, so its
/// format says "int4-g128-asym storage, f16 compute" and its memory is the f16 bytes it holds.
#[derive(Debug, Clone)]
pub struct F16Compute {
    dense: DenseLinear,
    storage_format: String,
}

impl F16Compute {
    pub fn from_packed(packed: &PackedLinear, device: &Device) -> effbench_core::Result<Self> {
        let w = packed
            .dequantize()?
            .to_dtype(DType::F16)?
            .to_device(device)?;
        Ok(Self {
            dense: DenseLinear::new(w)?,
            storage_format: packed.format(),
        })
    }
}

impl LinearWeight for F16Compute {
    fn forward(&self, x: &Tensor) -> effbench_core::Result<Tensor> {
        self.dense.forward(x)
    }
    fn in_features(&self) -> usize {
        self.dense.in_features()
    }
    fn out_features(&self) -> usize {
        self.dense.out_features()
    }
    fn storage_bytes(&self) -> usize {
        self.dense.storage_bytes()
    }
    fn format(&self) -> String {
        format!("{} storage, f16 compute", self.storage_format)
    }
    fn dequantize(&self) -> effbench_core::Result<Tensor> {
        self.dense.dequantize()
    }
}

/// The note a technique's label carries where its matrices cannot run as stored on `device`:
/// "int4 storage, f16 compute" for effbench's packed formats off the CPU; None where they run
/// as stored (the CPU, or GGML types, which candle multiplies on the GPU as they are).
pub fn compute_note(spec: crate::QuantSpec, device: &Device) -> Option<String> {
    note_for(spec, device.is_cpu())
}

pub(crate) fn note_for(spec: crate::QuantSpec, on_cpu: bool) -> Option<String> {
    if on_cpu || spec.ggml_type().is_some() {
        None
    } else {
        Some(format!("int{} storage, f16 compute", spec.bits))
    }
}

/// A packed matrix as it runs on `device`: itself on the CPU, else its f16 form there.
pub fn packed_on(
    packed: std::sync::Arc<PackedLinear>,
    device: &Device,
) -> effbench_core::Result<std::sync::Arc<dyn LinearWeight>> {
    Ok(if device.is_cpu() {
        packed
    } else {
        std::sync::Arc::new(F16Compute::from_packed(&packed, device)?)
    })
}
