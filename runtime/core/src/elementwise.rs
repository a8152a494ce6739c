//! Tensor-level wrappers for the pooled elementwise kernels of `effbench_kernels::elementwise`:
//! on CPU f32 tensors of one shape they replace candle's single-threaded ops with the same bits;
//! anything else (another device or dtype, broadcasting) goes to candle.

use candle_core::{DType, Storage, Tensor};

use crate::error::Result;
use effbench_kernels::elementwise;

/// `silu(gate) * up`, the SwiGLU gate.
pub fn silu_mul(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    match on_cpu_f32(gate, up, elementwise::silu_mul)? {
        Some(out) => Ok(out),
        None => Ok((candle_nn::ops::silu(gate)? * up)?),
    }
}

/// `gelu(gate) * up` with candle's tanh-approximated GELU, the GeGLU gate.
pub fn gelu_tanh_mul(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    match on_cpu_f32(gate, up, elementwise::gelu_tanh_mul)? {
        Some(out) => Ok(out),
        None => Ok((gate.gelu()? * up)?),
    }
}

/// `a + b` for tensors of one shape (a residual connection).
pub fn add(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    match on_cpu_f32(a, b, elementwise::add)? {
        Some(out) => Ok(out),
        None => Ok((a + b)?),
    }
}

/// `op` over the two tensors' elements when both are CPU f32 of the same shape, else `None`.
fn on_cpu_f32(
    a: &Tensor,
    b: &Tensor,
    op: fn(&[f32], &[f32]) -> Vec<f32>,
) -> Result<Option<Tensor>> {
    if a.dtype() != DType::F32
        || b.dtype() != DType::F32
        || a.shape() != b.shape()
        || !a.device().is_cpu()
        || !b.device().is_cpu()
    {
        return Ok(None);
    }
    let (a, b) = (a.contiguous()?, b.contiguous()?);
    let n = a.elem_count();
    let (a_storage, a_layout) = a.storage_and_layout();
    let (b_storage, b_layout) = b.storage_and_layout();
    let (Storage::Cpu(a_cpu), Storage::Cpu(b_cpu)) = (&*a_storage, &*b_storage) else {
        return Ok(None);
    };
    let xs = &a_cpu.as_slice::<f32>()?[a_layout.start_offset()..][..n];
    let ys = &b_cpu.as_slice::<f32>()?[b_layout.start_offset()..][..n];
    Ok(Some(Tensor::from_vec(op(xs, ys), a.dims(), a.device())?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{f32_bits as bits, seeded_tensor};

    fn seeded(shape: (usize, usize), seed: u64) -> Tensor {
        seeded_tensor(&[shape.0, shape.1], 12.0, seed)
    }

    /// The forward pass's logits must not move when these replace candle's ops, so each is
    /// checked bit for bit against candle, at a prefill size that takes the pooled path.
    #[test]
    fn pooled_ops_equal_candles_bit_for_bit() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        for shape in [(1, 96), (64, 1536), (512, 200)] {
            let (g, u) = (seeded(shape, 1), seeded(shape, 2));
            let (s, a) = pool.install(|| (silu_mul(&g, &u).unwrap(), add(&g, &u).unwrap()));
            let candle_silu = (candle_nn::ops::silu(&g).unwrap() * &u).unwrap();
            assert_eq!(bits(&s), bits(&candle_silu), "silu_mul {shape:?}");
            let gelu = pool.install(|| gelu_tanh_mul(&g, &u).unwrap());
            let candle_gelu = (g.gelu().unwrap() * &u).unwrap();
            assert_eq!(bits(&gelu), bits(&candle_gelu), "gelu_tanh_mul {shape:?}");
            assert_eq!(bits(&a), bits(&(&g + &u).unwrap()), "add {shape:?}");
            assert_eq!(s.dims(), g.dims());
        }
    }

    #[test]
    fn other_shapes_and_dtypes_fall_back_to_candle() {
        let g = seeded((4, 8), 3);
        let half = g.to_dtype(DType::F16).unwrap();
        let out = silu_mul(&half, &half).unwrap();
        assert_eq!(out.dtype(), DType::F16);
        assert!(
            add(&g, &seeded((8, 4), 4)).is_err(),
            "shapes differ: candle's error"
        );
    }
}
