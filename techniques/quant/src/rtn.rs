//! Round to nearest, and the quantized matrix every method produces.
//!
//! A group's grid is `value = d * q + m`, `q` in `0..=qmax`:
//! - asymmetric: `m` = the group minimum, `d = (max - min) / qmax` (ggml's Q4_1 rule);
//! - symmetric: `d = -v / 2^(bits-1)` for the element `v` of largest magnitude, `m = -2^(bits-1) d`
//!   (ggml's Q4_0 rule: the extreme lands exactly on the grid's end).
//!
//! `d` and `m` are rounded to f16 before the quants are chosen, so each quant is the nearest
//! point of the grid that is actually stored.

use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QStorage, QTensor};
use candle_core::Device;
use effbench_core::linear::GgmlLinear;
use effbench_core::LinearWeight;
use effbench_kernels::PackedFormat;
use half::f16;

use crate::error::Result;
use crate::linear::PackedLinear;
use crate::spec::QuantSpec;

/// The f16 `(d, m)` of one group of weights.
pub fn group_params(spec: QuantSpec, values: &[f32]) -> (f16, f16) {
    if spec.sym {
        let v = values
            .iter()
            .fold(0f32, |a, &v| if v.abs() > a.abs() { v } else { a });
        let z = (1u32 << (spec.bits - 1)) as f32;
        let d = f16::from_f32(-v / z);
        (d, f16::from_f32(-z * d.to_f32()))
    } else {
        let (lo, hi) = values
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
                (lo.min(v), hi.max(v))
            });
        (
            f16::from_f32((hi - lo) / spec.qmax() as f32),
            f16::from_f32(lo),
        )
    }
}

/// The quant of `x` on the grid `(d, m)`.
#[inline]
pub fn quantize_value(spec: QuantSpec, x: f32, d: f32, m: f32) -> u8 {
    if d == 0.0 {
        return if spec.sym { 1 << (spec.bits - 1) } else { 0 };
    }
    ((x - m) / d).round().clamp(0.0, spec.qmax() as f32) as u8
}

/// What the grid `(d, m)` decodes `q` to, rounded as the kernels' dequantizer rounds it.
#[inline]
pub fn dequantize_value(spec: QuantSpec, q: u8, d: f32, m: f32) -> f32 {
    if spec.sym {
        d * (q as f32 - (1u32 << (spec.bits - 1)) as f32)
    } else {
        d * q as f32 + m
    }
}

/// An `(n, k)` matrix in a [`QuantSpec`]: one quant per weight, `(d, m)` per group of a row
/// (`groups_per_row` groups, the last possibly short).
#[derive(Debug, Clone)]
pub struct QuantizedMatrix {
    pub spec: QuantSpec,
    pub n: usize,
    pub k: usize,
    pub q: Vec<u8>,
    pub d: Vec<f16>,
    pub m: Vec<f16>,
}

impl QuantizedMatrix {
    pub fn groups_per_row(&self) -> usize {
        self.k.div_ceil(self.spec.group)
    }

    /// Row-major f32 values of the quantized weights.
    pub fn dequantize(&self) -> Vec<f32> {
        let g = self.groups_per_row();
        let mut out = Vec::with_capacity(self.n * self.k);
        for r in 0..self.n {
            for c in 0..self.k {
                let gi = r * g + c / self.spec.group;
                out.push(dequantize_value(
                    self.spec,
                    self.q[r * self.k + c],
                    self.d[gi].to_f32(),
                    self.m[gi].to_f32(),
                ));
            }
        }
        out
    }

    /// The runtime form: a GGML tensor on our Q4_0/Q4_1 kernels when the spec is one of those
    /// types, else effbench's own packed format and kernels.
    pub fn to_linear(&self, device: &Device) -> Result<Arc<dyn LinearWeight>> {
        Ok(match self.to_stored()? {
            Stored::Ggml(dtype, bytes) => {
                let storage =
                    QStorage::from_data(std::borrow::Cow::Borrowed(&bytes), device, dtype)?;
                let qt = QTensor::new(storage, (self.n, self.k))?;
                Arc::new(GgmlLinear::new(Arc::new(qt))?)
            }
            // No GPU kernel for these: f16 off the CPU (see `crate::linear::F16Compute`).
            Stored::Packed(format, bytes) => crate::linear::packed_on(
                Arc::new(PackedLinear::new(format, bytes, self.n, self.k)?),
                device,
            )?,
        })
    }

    /// The bytes as stored on disk and in memory.
    pub fn to_stored(&self) -> Result<Stored> {
        if let Some(dtype) = self.spec.ggml_type() {
            if self.k.is_multiple_of(32) {
                return Ok(Stored::Ggml(dtype, self.ggml_bytes(dtype)));
            }
        }
        let format = self.spec.packed_format();
        // The packed layout pads rows to 32 and counts groups over the padded row; with a
        // group of 16 that can add a group of padding, whose scale is zero.
        let gp = format.groups_per_row(self.k);
        let g = self.groups_per_row();
        let (mut d, mut m) = (vec![f16::ZERO; self.n * gp], vec![f16::ZERO; self.n * gp]);
        for r in 0..self.n {
            d[r * gp..r * gp + g].copy_from_slice(&self.d[r * g..(r + 1) * g]);
            m[r * gp..r * gp + g].copy_from_slice(&self.m[r * g..(r + 1) * g]);
        }
        let bytes = format.pack(&self.q, &d, &m, self.n, self.k)?;
        Ok(Stored::Packed(format, bytes))
    }

    fn ggml_bytes(&self, dtype: GgmlDType) -> Vec<u8> {
        let blocks = self.n * self.k / 32;
        let mut out = Vec::with_capacity(blocks * 20);
        for b in 0..blocks {
            out.extend_from_slice(&self.d[b].to_le_bytes());
            if dtype == GgmlDType::Q4_1 {
                out.extend_from_slice(&self.m[b].to_le_bytes());
            }
            let q = &self.q[b * 32..(b + 1) * 32];
            out.extend((0..16).map(|j| q[j] | (q[j + 16] << 4)));
        }
        out
    }
}

/// A quantized matrix's bytes and the format that reads them.
#[derive(Debug, Clone)]
pub enum Stored {
    Ggml(GgmlDType, Vec<u8>),
    Packed(PackedFormat, Vec<u8>),
}

/// Round-to-nearest quantization of a row-major `(n, k)` f32 matrix.
pub fn rtn(spec: QuantSpec, w: &[f32], n: usize, k: usize) -> QuantizedMatrix {
    let g = k.div_ceil(spec.group);
    let mut out = QuantizedMatrix {
        spec,
        n,
        k,
        q: vec![0; n * k],
        d: vec![f16::ZERO; n * g],
        m: vec![f16::ZERO; n * g],
    };
    for r in 0..n {
        for (gi, start) in (0..k).step_by(spec.group).enumerate() {
            let end = (start + spec.group).min(k);
            let vals = &w[r * k + start..r * k + end];
            let (d, m) = group_params(spec, vals);
            out.d[r * g + gi] = d;
            out.m[r * g + gi] = m;
            let (df, mf) = (d.to_f32(), m.to_f32());
            for (q, &v) in out.q[r * k + start..r * k + end].iter_mut().zip(vals) {
                *q = quantize_value(spec, v, df, mf);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Tensor;

    fn weights(n: usize, k: usize, seed: u64) -> Vec<f32> {
        let mut s = seed | 1;
        (0..n * k)
            .map(|i| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                let v = (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
                // An outlier now and then, as real weight rows have.
                if i % 97 == 0 {
                    v * 8.0
                } else {
                    v * 0.1
                }
            })
            .collect()
    }

    fn all_specs() -> Vec<QuantSpec> {
        let mut out = Vec::new();
        for bits in [4, 2] {
            for &g in QuantSpec::allowed_groups(bits) {
                for sym in [false, true] {
                    out.push(QuantSpec::new(bits, g, sym).unwrap());
                }
            }
        }
        out
    }

    #[test]
    fn rtn_stays_within_half_a_step() {
        // k = 200: not a multiple of any group, so every row ends with a short group.
        let (n, k) = (9, 200);
        let w = weights(n, k, 5);
        for spec in all_specs() {
            let q = rtn(spec, &w, n, k);
            let deq = q.dequantize();
            let g = q.groups_per_row();
            for r in 0..n {
                for c in 0..k {
                    let d = q.d[r * g + c / spec.group].to_f32().abs();
                    let err = (w[r * k + c] - deq[r * k + c]).abs();
                    // Half a step, plus what rounding d and m to f16 moves the grid (at most
                    // qmax steps of d's relative f16 error, and m's), plus the one clamped point
                    // of the symmetric grid, which sits a whole step from the opposite extreme.
                    let f16_slack = d * spec.qmax() as f32 * 1e-3 + w[r * k + c].abs() * 1e-3;
                    let clamped = spec.sym && q.q[r * k + c] as u32 == spec.qmax();
                    let bound = if clamped { d } else { d / 2.0 } + f16_slack + 1e-7;
                    assert!(
                        err <= bound,
                        "{spec} [{r},{c}]: |{} - {}| > {bound}",
                        w[r * k + c],
                        deq[r * k + c]
                    );
                }
            }
        }
    }

    #[test]
    fn int4_g32_is_ggml_q4_0_and_q4_1_bit_for_bit() {
        let (n, k) = (6, 128);
        let w = weights(n, k, 9);
        for (sym, dtype) in [(true, GgmlDType::Q4_0), (false, GgmlDType::Q4_1)] {
            let spec = QuantSpec::new(4, 32, sym).unwrap();
            let q = rtn(spec, &w, n, k);
            let Stored::Ggml(got, bytes) = q.to_stored().unwrap() else {
                panic!("int4 g32 should be stored as a GGML type");
            };
            assert_eq!(got, dtype);
            assert_eq!(bytes.len(), n * k / 32 * if sym { 18 } else { 20 });
            // candle's own decoder reads our bytes as the values we meant.
            let storage =
                QStorage::from_data(std::borrow::Cow::Borrowed(&bytes), &Device::Cpu, dtype)
                    .unwrap();
            let qt = QTensor::new(storage, (n, k)).unwrap();
            let theirs: Vec<f32> = qt
                .dequantize(&Device::Cpu)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            assert!(
                theirs == q.dequantize(),
                "{dtype:?}: candle decodes other values"
            );
            // And candle's (ggml's reference) quantizer lands on the same grid almost everywhere:
            // it rounds with the unrounded scale, we with the stored one.
            let ref_q = QTensor::quantize(
                &Tensor::from_vec(w.clone(), (n, k), &Device::Cpu).unwrap(),
                dtype,
            )
            .unwrap();
            let ref_v: Vec<f32> = ref_q
                .dequantize(&Device::Cpu)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let same = ref_v.iter().zip(&theirs).filter(|(a, b)| a == b).count();
            assert!(
                same * 100 >= n * k * 97,
                "{dtype:?}: only {same} of {} equal",
                n * k
            );
        }
    }

    #[test]
    fn off_the_cpu_packed_formats_become_f16_and_say_so() {
        // No GPU here: build the GPU form on the CPU and check what it is and computes.
        let (n, k) = (5, 256);
        let w = weights(n, k, 13);
        let spec = QuantSpec::new(4, 128, false).unwrap();
        let q = rtn(spec, &w, n, k);
        let Stored::Packed(format, bytes) = q.to_stored().unwrap() else {
            panic!("int4 g128 has no GGML type");
        };
        let packed = PackedLinear::new(format, bytes, n, k).unwrap();
        let f16 = crate::linear::F16Compute::from_packed(&packed, &Device::Cpu).unwrap();
        assert_eq!(f16.format(), "int4-g128-asym storage, f16 compute");
        assert_eq!(f16.storage_bytes(), n * k * 2, "it holds f16, and says so");
        let x = Tensor::from_vec(weights(3, k, 17), (3, k), &Device::Cpu).unwrap();
        let (a, b) = (packed.forward(&x).unwrap(), f16.forward(&x).unwrap());
        let diff: f32 = (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar()
            .unwrap();
        assert!(
            diff < 0.05,
            "f16 compute strays {diff} from the packed kernel"
        );
        // Labels: GGML types run on the GPU as stored, packed formats carry the note.
        assert_eq!(crate::linear::compute_note(spec, &Device::Cpu), None);
        assert_eq!(
            crate::linear::note_for(spec, false).as_deref(),
            Some("int4 storage, f16 compute")
        );
        let int2 = QuantSpec::new(2, 32, false).unwrap();
        assert_eq!(
            crate::linear::note_for(int2, false).as_deref(),
            Some("int2 storage, f16 compute")
        );
        let q4_1 = QuantSpec::new(4, 32, false).unwrap();
        assert_eq!(crate::linear::note_for(q4_1, false), None);
    }

    #[test]
    fn packed_formats_decode_to_the_quantized_values_and_bits_per_weight() {
        let (n, k) = (5, 576);
        let w = weights(n, k, 11);
        for spec in all_specs() {
            let q = rtn(spec, &w, n, k);
            let linear = q.to_linear(&Device::Cpu).unwrap();
            let via_kernel: Vec<f32> = linear
                .dequantize()
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            assert!(
                via_kernel == q.dequantize(),
                "{spec}: the runtime form decodes other values"
            );
            if k % spec.group == 0 {
                assert!(
                    (linear.bits_per_weight() - spec.nominal_bits_per_weight()).abs() < 1e-9,
                    "{spec}: {} bpw",
                    linear.bits_per_weight()
                );
            }
        }
    }
}
