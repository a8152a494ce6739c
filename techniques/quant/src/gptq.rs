//! GPTQ (Frantar et al., 2022, "GPTQ: Accurate Post-Training Quantization for Generative
//! Pre-trained Transformers"), following the reference implementation's `fasterquant`:
//! columns are quantized left to right, and each column's rounding error, scaled by the
//! inverse Hessian, is pushed onto the columns not yet quantized; within blocks of 128 columns
//! the push is immediate, across blocks it is one lazy matrix product. No act-order (columns in
//! their natural order), 1% dampening.
//!
//! **Where a group's grid comes from.** The reference fits a group's scale and offset on the
//! weights as updated up to the start of the current 128-column block, so with groups smaller
//! than the block (int2 g32: four per block) the later groups of a block are fitted on weights
//! that the error feedback has since moved. [`GroupFit::Updated`] fits each group when the sweep
//! reaches it instead. Measured on SmolLM2-135M int2 g32 (results/quant-smollm2/README.md) it
//! is no better, slightly worse on held-out tokens, so the reference's
//! [`GroupFit::BlockStart`] is the default.

use half::f16;
use rayon::prelude::*;

use crate::linalg::{gemm_acc, inverse_cholesky_upper};
use crate::rtn::{dequantize_value, group_params, quantize_value, QuantizedMatrix};
use crate::spec::QuantSpec;

/// Which weights a group's grid (scale and offset) is fitted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum GroupFit {
    /// The weights as updated by every column quantized before the group starts.
    Updated,
    /// The weights as they stood at the start of the current lazy-update block (the reference
    /// implementation's choice).
    BlockStart,
}

#[derive(Debug, Clone, Copy)]
pub struct GptqOptions {
    /// Columns per lazy-update block.
    pub block: usize,
    /// Added to the Hessian's diagonal, as a fraction of its mean.
    pub damp: f32,
    pub group_fit: GroupFit,
}

impl Default for GptqOptions {
    fn default() -> Self {
        Self {
            block: 128,
            damp: 0.01,
            group_fit: GroupFit::BlockStart,
        }
    }
}

/// Quantizes the row-major `(n, k)` matrix `w` given `h = X^T X` (k x k, any positive scale)
/// of its calibration inputs. Errors name the failing pivot when even the dampened Hessian is
/// not positive definite.
pub fn gptq(
    spec: QuantSpec,
    w: &[f32],
    n: usize,
    k: usize,
    h: &[f32],
    opts: GptqOptions,
) -> Result<QuantizedMatrix, String> {
    assert_eq!(w.len(), n * k);
    assert_eq!(h.len(), k * k);
    let mut h = h.to_vec();
    // W transposed: column c of W is the contiguous row c of `wt`.
    let mut wt = vec![0f32; k * n];
    for r in 0..n {
        for c in 0..k {
            wt[c * n + r] = w[r * k + c];
        }
    }
    // Inputs that never fire carry no information: fix their Hessian row and zero the weights,
    // as the reference does.
    for c in 0..k {
        if h[c * k + c] == 0.0 {
            h[c * k + c] = 1.0;
            wt[c * n..(c + 1) * n].fill(0.0);
        }
    }
    let mean_diag = (0..k).map(|c| h[c * k + c] as f64).sum::<f64>() / k as f64;
    let damp = (opts.damp as f64 * mean_diag) as f32;
    for c in 0..k {
        h[c * k + c] += damp;
    }
    let u = inverse_cholesky_upper(&h, k)
        .map_err(|p| format!("the dampened Hessian is not positive definite (pivot {p})"))?;
    drop(h);

    let group = spec.group;
    let groups = k.div_ceil(group);
    let mut qt = vec![0u8; k * n];
    let mut d = vec![f16::ZERO; n * groups];
    let mut m = vec![f16::ZERO; n * groups];
    let block = opts.block.max(1);
    let mut err = vec![0f32; block * n];
    for i1 in (0..k).step_by(block) {
        let i2 = (i1 + block).min(k);
        let count = i2 - i1;
        let mut w1 = wt[i1 * n..i2 * n].to_vec();
        for i in 0..count {
            let col = i1 + i;
            let gi = col / group;
            if col % group == 0 {
                let end = (col + group).min(k);
                let fit_updated = opts.group_fit == GroupFit::Updated;
                let w1 = &w1;
                let wt = &wt;
                let params: Vec<(f16, f16)> = (0..n)
                    .into_par_iter()
                    .map(|r| {
                        // Columns of this block carry the immediate updates in `w1`; later
                        // blocks' columns (only when a group crosses a block boundary) have
                        // every lazy update up to this block.
                        let vals: Vec<f32> = (col..end)
                            .map(|c| {
                                if fit_updated && c < i2 {
                                    w1[(c - i1) * n + r]
                                } else {
                                    wt[c * n + r]
                                }
                            })
                            .collect();
                        group_params(spec, &vals)
                    })
                    .collect();
                for (r, (dd, mm)) in params.into_iter().enumerate() {
                    d[r * groups + gi] = dd;
                    m[r * groups + gi] = mm;
                }
            }
            let diag = u[col * k + col];
            let (wi, rest) = w1[i * n..].split_at_mut(n);
            let e = &mut err[i * n..(i + 1) * n];
            let q = &mut qt[col * n..(col + 1) * n];
            for r in 0..n {
                let (dd, mm) = (d[r * groups + gi].to_f32(), m[r * groups + gi].to_f32());
                let qv = quantize_value(spec, wi[r], dd, mm);
                q[r] = qv;
                e[r] = (wi[r] - dequantize_value(spec, qv, dd, mm)) / diag;
            }
            // Immediate update of the block's remaining columns.
            let urow = &u[col * k + col + 1..col * k + i2];
            rest[..(count - i - 1) * n]
                .par_chunks_mut(n)
                .zip(urow.par_iter())
                .for_each(|(wj, &f)| {
                    for (x, &ev) in wj.iter_mut().zip(e.iter()) {
                        *x -= f * ev;
                    }
                });
        }
        // Lazy update of every later column: W[:, i2:] -= Err1 U[i1:i2, i2:], transposed.
        if i2 < k {
            let rest = k - i2;
            let mut ublk = vec![0f32; count * rest];
            for (j, row) in ublk.chunks_exact_mut(rest).enumerate() {
                row.copy_from_slice(&u[(i1 + j) * k + i2..(i1 + j) * k + k]);
            }
            gemm_acc(
                &mut wt[i2 * n..],
                rest,
                n,
                &ublk,
                true,
                count,
                &err[..count * n],
                -1.0,
            );
        }
    }
    let mut q = vec![0u8; n * k];
    for c in 0..k {
        for r in 0..n {
            q[r * k + c] = qt[c * n + r];
        }
    }
    Ok(QuantizedMatrix {
        spec,
        n,
        k,
        q,
        d,
        m,
    })
}

/// `||X W^T - X Ŵ^T||_F^2 = sum_r (w_r - ŵ_r)^T H (w_r - ŵ_r)` for `h = X^T X`: the layer
/// output error GPTQ minimises, without the activations themselves.
pub fn reconstruction_error(h: &[f32], w: &[f32], w_hat: &[f32], n: usize, k: usize) -> f64 {
    let delta: Vec<f32> = w.iter().zip(w_hat).map(|(a, b)| a - b).collect();
    let mut dh = vec![0f32; n * k];
    gemm_acc(&mut dh, n, k, &delta, false, k, h, 1.0);
    dh.iter()
        .zip(&delta)
        .map(|(a, b)| *a as f64 * *b as f64)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtn::rtn;

    #[test]
    fn gptq_beats_rtn_on_correlated_inputs() {
        // Inputs with strongly correlated features: the case where error feedback helps.
        let (n, k, t) = (16, 96, 512);
        let mut s = 12345u64;
        let mut rnd = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        };
        let base: Vec<f32> = (0..t * 8).map(|_| rnd()).collect();
        let mix: Vec<f32> = (0..8 * k).map(|_| rnd()).collect();
        let mut x = vec![0f32; t * k];
        gemm_acc(&mut x, t, k, &base, false, 8, &mix, 1.0);
        for v in x.iter_mut() {
            *v += 0.05 * rnd();
        }
        let w: Vec<f32> = (0..n * k).map(|_| rnd()).collect();
        let mut h = vec![0f32; k * k];
        gemm_acc(&mut h, k, k, &x, true, t, &x, 1.0);
        for spec in [
            QuantSpec::new(4, 32, false).unwrap(),
            QuantSpec::new(2, 16, true).unwrap(),
        ] {
            let r = rtn(spec, &w, n, k);
            let er = reconstruction_error(&h, &w, &r.dequantize(), n, k);
            for group_fit in [GroupFit::BlockStart, GroupFit::Updated] {
                let opts = GptqOptions {
                    group_fit,
                    ..GptqOptions::default()
                };
                let g = gptq(spec, &w, n, k, &h, opts).unwrap();
                let eg = reconstruction_error(&h, &w, &g.dequantize(), n, k);
                assert!(eg < 0.7 * er, "{spec} {group_fit:?}: gptq {eg} vs rtn {er}");
            }
        }
    }
}
