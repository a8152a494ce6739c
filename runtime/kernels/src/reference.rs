//! Portable scalar kernels: the fallback on CPUs without AVX2 and the oracle the SIMD kernels are
//! tested against. They quantize activations exactly as the SIMD path does, so the two differ
//! only in the order of f32 additions.

use crate::formats::WeightFormat;
use crate::q8::{self, Scratch, QK};
use crate::{check_sizes, KernelError};

/// `out (m, n) = x (m, k) · Wᵀ` with `W` an `(n, k)` matrix of `format` blocks, computed one
/// output at a time without SIMD or threads.
pub fn matmul(
    format: WeightFormat,
    weights: &[u8],
    n: usize,
    k: usize,
    x: &[f32],
    m: usize,
    out: &mut [f32],
) -> Result<(), KernelError> {
    check_sizes(format, weights, n, k, x, m, out)?;
    let mut scratch = Scratch::new();
    if format.is_k_quant() {
        scratch.kacts.quantize(x, m, k, false);
        crate::kquants::matmul_scalar(format, weights, n, k, &scratch.kacts, out);
        return Ok(());
    }
    scratch.quantize_scalar(x, m, k, format.block_sums());
    matmul_quantized(format, weights, n, k, &scratch, out);
    Ok(())
}

/// Scalar kernel on already-quantized activations.
pub(crate) fn matmul_quantized(
    format: WeightFormat,
    weights: &[u8],
    n: usize,
    k: usize,
    acts: &Scratch,
    out: &mut [f32],
) {
    let nb = k / QK;
    let bb = format.block_bytes();
    for c in 0..acts.m {
        let q8_row = &acts.qs[c * acts.kp()..];
        for row in 0..n {
            let w_row = &weights[row * nb * bb..(row + 1) * nb * bb];
            let mut sum = 0f32;
            for b in 0..nb {
                let (d, m, q) = format.decode_block(&w_row[b * bb..(b + 1) * bb]);
                let q8 = &q8_row[b * QK..(b + 1) * QK];
                let sumi: i32 = q.iter().zip(q8).map(|(&w, &a)| w * a as i32).sum();
                let d8 = acts.d[c * acts.nbp + b];
                let s8 = acts.s[q8::s_index(acts.nbp, c, b)];
                sum += d * d8 * sumi as f32 + m * s8;
            }
            out[c * n + row] = sum;
        }
    }
}

/// Dequantizes an `(n, k)` matrix of `format` blocks to f32, row-major.
pub(crate) fn dequantize(format: WeightFormat, weights: &[u8], n: usize, k: usize) -> Vec<f32> {
    let bb = format.block_bytes();
    let mut out = Vec::with_capacity(n * k);
    for block in weights[..format.matrix_bytes(n, k)].chunks_exact(bb) {
        let (d, m, q) = format.decode_block(block);
        if let Some(z) = format.zero_point() {
            // ggml and candle round d * (q - z) once; the affine form would round twice.
            out.extend(q.iter().map(|&q| d * (q - z) as f32));
        } else {
            out.extend(q.iter().map(|&q| d * q as f32 + m));
        }
    }
    out
}
