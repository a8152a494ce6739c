//! GGML weight block layouts, decoded the same way by the scalar reference, the dequantizer and
//! (in vector form) the SIMD kernels.

use half::f16;

use crate::q8::QK;

/// The weight formats this crate multiplies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightFormat {
    /// `block_q4_0`: f16 `d`, 16 bytes of nibbles; `value = d * (q - 8)`.
    Q4_0,
    /// `block_q4_1`: f16 `d`, f16 `m`, 16 bytes of nibbles; `value = d * q + m`.
    Q4_1,
    /// `block_q8_0`: f16 `d`, 32 signed bytes; `value = d * q`.
    Q8_0,
    /// `block_q5_0`: f16 `d`, a little-endian u32 `qh` whose bit `j` is bit 4 of element `j`,
    /// 16 bytes of nibbles (bits 0..4) laid out as in Q4_0; `value = d * (q - 16)`.
    Q5_0,
    /// `block_q5_1`: f16 `d`, f16 `m`, then `qh` and nibbles as in Q5_0; `value = d * q + m`.
    Q5_1,
    // ggml's spelling, like the variants above.
    #[allow(non_camel_case_types)]
    /// `block_q4_K`: super-blocks of 256 in 144 bytes: f16 `d`, f16 `dmin`, 12 bytes packing
    /// eight 6-bit scales and eight 6-bit mins, 128 bytes of nibbles;
    /// `value = d * scale_j * q - dmin * min_j` in sub-block `j` of 32 (see `kquants`).
    Q4_K,
    #[allow(non_camel_case_types)]
    /// `block_q6_K`: super-blocks of 256 in 210 bytes: 128 bytes of low nibbles, 64 bytes of
    /// high 2-bit pairs, 16 i8 scales, f16 `d`; `value = d * scale_j * (q - 32)` in sub-block `j`
    /// of 16 (see `kquants`).
    Q6_K,
}

impl WeightFormat {
    /// Bytes per block of [`block_elems`](Self::block_elems) weights.
    pub const fn block_bytes(self) -> usize {
        match self {
            Self::Q4_0 => 18,
            Self::Q4_1 => 20,
            Self::Q8_0 => 34,
            Self::Q5_0 => 22,
            Self::Q5_1 => 24,
            Self::Q4_K => 144,
            Self::Q6_K => 210,
        }
    }

    /// Weights per block: 32, or 256 for the K-quants' super-blocks. `k` must be a multiple.
    pub const fn block_elems(self) -> usize {
        match self {
            Self::Q4_0 | Self::Q4_1 | Self::Q8_0 | Self::Q5_0 | Self::Q5_1 => QK,
            Self::Q4_K | Self::Q6_K => crate::kquants::QK_K,
        }
    }

    /// Whether this is a K-quant, multiplied by the `kquants` kernels on 256-element activation
    /// blocks rather than the 32-element ones of the other formats.
    pub const fn is_k_quant(self) -> bool {
        matches!(self, Self::Q4_K | Self::Q6_K)
    }

    /// How the activations' block sums are kept for this format: rounded to f16 as ggml's Q8_1
    /// for the formats with an offset (llama.cpp folds it in with that sum), exact otherwise.
    pub(crate) const fn block_sums(self) -> crate::q8::BlockSums {
        match self {
            Self::Q4_1 | Self::Q5_1 => crate::q8::BlockSums::GgmlF16,
            _ => crate::q8::BlockSums::Exact,
        }
    }

    /// The `z` of formats stored as `value = d * (q - z)` (Q4_0: 8, Q5_0: 16), which ggml and
    /// candle dequantize with one rounding; `None` for the others.
    pub(crate) const fn zero_point(self) -> Option<i32> {
        match self {
            Self::Q4_0 => Some(8),
            Self::Q5_0 => Some(16),
            _ => None,
        }
    }

    /// Bytes of an `(n, k)` matrix in this format.
    pub const fn matrix_bytes(self, n: usize, k: usize) -> usize {
        n * (k / self.block_elems()) * self.block_bytes()
    }

    /// Decodes one block into `(d, m, q)` with `value[i] = d * q[i] + m`: the affine form every
    /// kernel in this crate works in, so one dot product serves all formats.
    pub(crate) fn decode_block(self, block: &[u8]) -> (f32, f32, [i32; QK]) {
        let d = f16::from_le_bytes([block[0], block[1]]).to_f32();
        let mut q = [0i32; QK];
        match self {
            Self::Q4_0 | Self::Q4_1 => {
                let (m, nibbles) = if self == Self::Q4_1 {
                    (
                        f16::from_le_bytes([block[2], block[3]]).to_f32(),
                        &block[4..20],
                    )
                } else {
                    (-8.0 * d, &block[2..18])
                };
                // Low nibbles hold elements 0..16 and high nibbles 16..32 (ggml's layout), not
                // adjacent pairs.
                for (j, &byte) in nibbles.iter().enumerate() {
                    q[j] = (byte & 0x0f) as i32;
                    q[j + QK / 2] = (byte >> 4) as i32;
                }
                (d, m, q)
            }
            Self::Q8_0 => {
                for (qi, &byte) in q.iter_mut().zip(&block[2..34]) {
                    *qi = byte as i8 as i32;
                }
                (d, 0.0, q)
            }
            Self::Q5_0 | Self::Q5_1 => {
                let (m, rest) = if self == Self::Q5_1 {
                    (
                        f16::from_le_bytes([block[2], block[3]]).to_f32(),
                        &block[4..24],
                    )
                } else {
                    (-16.0 * d, &block[2..22])
                };
                let qh = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
                for (j, &byte) in rest[4..20].iter().enumerate() {
                    let hi = |e: usize| (((qh >> e) & 1) << 4) as i32;
                    q[j] = (byte & 0x0f) as i32 | hi(j);
                    q[j + QK / 2] = (byte >> 4) as i32 | hi(j + QK / 2);
                }
                (d, m, q)
            }
            Self::Q4_K | Self::Q6_K => unreachable!("K-quants are decoded by kquants"),
        }
    }
}
