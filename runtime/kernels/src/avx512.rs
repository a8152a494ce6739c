//! AVX-512 VNNI kernels: the tile structure of the AVX2 ones (see `x86.rs`), but every vector
//! holds two consecutive blocks, halving the instructions per multiply-accumulate on cores with
//! full-width 512-bit units (AMD Zen 5, Intel server cores). The formats of 32-element blocks
//! take `lanes_avx512.rs` instead unless `EFFBENCH_Q8_LANES=0` (see `LANES_ENV`).
//!
//! Lanes 0..8 of a 16-lane accumulator belong to block `b` and lanes 8..16 to block `b + 1`;
//! the scale vectors are built to match (`[d_b; 8] ++ [d_b+1; 8]`). An odd last block is paired
//! with itself on the weight side and with the activations' zero padding block, whose scale and
//! sum are zero, so it adds nothing.

use std::arch::x86_64::*;

use crate::q8::{QK, ROW_GROUP};
use crate::x86::Args;

/// A weight format, decoded two blocks at a time.
pub(crate) trait Format2 {
    const BLOCK_BYTES: usize;
    /// Weight rows a decode step (one activation row) reads side by side. See [`rows`].
    const DECODE_ROWS: usize;
    /// Blocks `b` (at `p`) and `b + 1` (at `p + second`) as 64 u8 lanes, and
    /// `[d_b, m_b, d_b+1, m_b+1]` with `w = d * (q - ZERO_POINT) + m`.
    unsafe fn load2(p: *const u8, second: usize) -> (__m512i, __m128);
    /// The integer zero point `z` of formats whose weights are `d * (q - z)` (Q4_0's 8, Q5_0's
    /// 16, and Q8_0's 128 after its shift to unsigned), taken out of the integer dot products,
    /// as ggml does, rather than through `m` in f32: there `z d` times the activations' sum is
    /// far larger than the product it corrects, and for Q8_0 on Gemma-3-270M's value
    /// projections the cancellation cost 2.9 times the error of a block-order f32 sum. 0 for
    /// the formats with a float minimum `m`.
    const ZERO_POINT: u8 = 0;
}

/// 2 x 16 bytes of nibbles to 64 lanes: `[lo_b, hi_b, lo_b+1, hi_b+1]` in 128-bit lanes, the
/// element order of two consecutive activation blocks.
#[inline(always)]
unsafe fn unpack_nibbles2(p0: *const u8, p1: *const u8) -> __m512i {
    let both = _mm512_mask_broadcast_i32x4(
        _mm512_broadcast_i32x4(_mm_loadu_si128(p0.cast())),
        0xff00,
        _mm_loadu_si128(p1.cast()),
    );
    let shifted = _mm512_srlv_epi64(both, _mm512_setr_epi64(0, 0, 4, 4, 0, 0, 4, 4));
    _mm512_and_si512(shifted, _mm512_set1_epi8(0x0f))
}

/// Two f16 scales (each followed by whatever) to `[d_b, 0, d_b+1, 0]` in f32.
#[inline(always)]
unsafe fn two_f16(p0: *const u8, p1: *const u8) -> __m128 {
    let v = _mm_cvtsi32_si128(p0.cast::<u16>().read_unaligned() as i32);
    _mm_cvtph_ps(_mm_insert_epi16::<2>(
        v,
        p1.cast::<u16>().read_unaligned() as i32,
    ))
}

pub(crate) struct Q4_1;
impl Format2 for Q4_1 {
    const DECODE_ROWS: usize = 4;
    const BLOCK_BYTES: usize = 20;
    #[inline(always)]
    unsafe fn load2(p: *const u8, second: usize) -> (__m512i, __m128) {
        let p1 = p.add(second);
        // (d, m) are adjacent f16s: one 32-bit load per block carries both.
        let dm = _mm_insert_epi32::<1>(
            _mm_cvtsi32_si128(p.cast::<i32>().read_unaligned()),
            p1.cast::<i32>().read_unaligned(),
        );
        (unpack_nibbles2(p.add(4), p1.add(4)), _mm_cvtph_ps(dm))
    }
}

pub(crate) struct Q4_0;
impl Format2 for Q4_0 {
    const DECODE_ROWS: usize = 4;
    const BLOCK_BYTES: usize = 18;
    #[inline(always)]
    unsafe fn load2(p: *const u8, second: usize) -> (__m512i, __m128) {
        let p1 = p.add(second);
        (unpack_nibbles2(p.add(2), p1.add(2)), two_f16(p, p1))
    }
    const ZERO_POINT: u8 = 8;
}

/// Two Q5 blocks (`qh` word then nibbles, at `p0` and `p1`) as 64 u8 lanes of 5-bit values in
/// the order of [`unpack_nibbles2`]. The two `qh` words are one 64-bit lane mask: bit `i` is
/// bit 4 of lane `i`, which a masked add sets (the nibble below it is at most 15).
#[inline(always)]
unsafe fn unpack_q5_2(p0: *const u8, p1: *const u8) -> __m512i {
    let qh0 = p0.cast::<u32>().read_unaligned() as u64;
    let qh1 = p1.cast::<u32>().read_unaligned() as u64;
    let nibbles = unpack_nibbles2(p0.add(4), p1.add(4));
    _mm512_mask_add_epi8(nibbles, qh0 | (qh1 << 32), nibbles, _mm512_set1_epi8(0x10))
}

pub(crate) struct Q5_1;
impl Format2 for Q5_1 {
    // As Q4_0/Q4_1: 22- and 24-byte blocks are nearer their 18 and 20 bytes than Q8_0's 34.
    // Not measured against one row on its own (the machine was shared); see `rows`.
    const DECODE_ROWS: usize = 4;
    const BLOCK_BYTES: usize = 24;
    #[inline(always)]
    unsafe fn load2(p: *const u8, second: usize) -> (__m512i, __m128) {
        let p1 = p.add(second);
        let dm = _mm_insert_epi32::<1>(
            _mm_cvtsi32_si128(p.cast::<i32>().read_unaligned()),
            p1.cast::<i32>().read_unaligned(),
        );
        (unpack_q5_2(p.add(4), p1.add(4)), _mm_cvtph_ps(dm))
    }
}

pub(crate) struct Q5_0;
impl Format2 for Q5_0 {
    // See Q5_1.
    const DECODE_ROWS: usize = 4;
    const BLOCK_BYTES: usize = 22;
    #[inline(always)]
    unsafe fn load2(p: *const u8, second: usize) -> (__m512i, __m128) {
        let p1 = p.add(second);
        (unpack_q5_2(p.add(2), p1.add(2)), two_f16(p, p1))
    }
    const ZERO_POINT: u8 = 16;
}

pub(crate) struct Q8_0;
impl Format2 for Q8_0 {
    const DECODE_ROWS: usize = 1;
    const BLOCK_BYTES: usize = 34;
    #[inline(always)]
    unsafe fn load2(p: *const u8, second: usize) -> (__m512i, __m128) {
        let p1 = p.add(second);
        // AVX-512 has no vpsignb to move the weight's sign onto the activation, so shift the
        // weights to unsigned instead; the tile subtracts 128 times the activations' sum.
        let w = _mm512_inserti64x4::<1>(
            _mm512_castsi256_si512(_mm256_loadu_si256(p.add(2).cast())),
            _mm256_loadu_si256(p1.add(2).cast()),
        );
        let u = _mm512_xor_si512(w, _mm512_set1_epi8(-128));
        (u, two_f16(p, p1))
    }
    const ZERO_POINT: u8 = 128;
}

/// One `R x C` tile over the full depth; see `x86::tile` for the shape of the computation.
// Index loops: `r` and `c` address several tile arrays and memory offsets at once.
#[allow(clippy::needless_range_loop)]
#[inline(always)]
unsafe fn tile<F: Format2, const R: usize, const C: usize>(a: &Args, n0: usize, c0: usize) {
    debug_assert!(c0.is_multiple_of(ROW_GROUP) && C <= ROW_GROUP);
    let mut acc = [[_mm512_setzero_ps(); C]; R];
    // Lanes 0..4: rows c0..c0+4 at even blocks; lanes 4..8: at odd blocks.
    let mut acc_min = [_mm256_setzero_ps(); R];
    let w0 = a.w.add(n0 * a.row_bytes);
    let s_group = a.s.add((c0 / ROW_GROUP) * a.nbp * ROW_GROUP);
    let lo_hi = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2);
    let m_lanes = _mm256_setr_epi32(1, 1, 1, 1, 3, 3, 3, 3);
    let d8_lanes = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    let zero_point = _mm512_set1_epi8(F::ZERO_POINT as i8);
    let mut b = 0;
    while b < a.nb {
        let second = if b + 1 < a.nb { F::BLOCK_BYTES } else { 0 };
        let mut wq = [_mm512_setzero_si512(); R];
        let mut d4 = [_mm512_setzero_ps(); R];
        let s8 = _mm256_loadu_ps(s_group.add(b * ROW_GROUP));
        for r in 0..R {
            let p = w0.add(r * a.row_bytes + b * F::BLOCK_BYTES);
            crate::x86::prefetch_ahead(p, a.prefetch, 2 * F::BLOCK_BYTES);
            let (w, dm) = F::load2(p, second);
            wq[r] = w;
            d4[r] = _mm512_permutexvar_ps(lo_hi, _mm512_castps128_ps512(dm));
            if F::ZERO_POINT == 0 {
                let m4 = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(dm), m_lanes);
                acc_min[r] = _mm256_fmadd_ps(m4, s8, acc_min[r]);
            }
        }
        for c in 0..C {
            let q8 = _mm512_loadu_si512(a.qs.add((c0 + c) * a.kp + b * QK).cast());
            let d8 = _mm_castsi128_ps(_mm_loadl_epi64(a.d.add((c0 + c) * a.nbp + b).cast()));
            let d8 = _mm512_permutexvar_ps(d8_lanes, _mm512_castps128_ps512(d8));
            // The dot products start from -z times each lane's activation sum, once per
            // activation row for all R weight rows.
            let start = if F::ZERO_POINT != 0 {
                let sums = _mm512_dpbusd_epi32(_mm512_setzero_si512(), zero_point, q8);
                _mm512_sub_epi32(_mm512_setzero_si512(), sums)
            } else {
                _mm512_setzero_si512()
            };
            for r in 0..R {
                let p = _mm512_dpbusd_epi32(start, wq[r], q8);
                let p = _mm512_cvtepi32_ps(p);
                acc[r][c] = _mm512_fmadd_ps(p, _mm512_mul_ps(d4[r], d8), acc[r][c]);
            }
        }
        b += 2;
    }
    for r in 0..R {
        let mut mins = [0f32; 8];
        _mm256_storeu_ps(mins.as_mut_ptr(), acc_min[r]);
        for c in 0..C {
            let v = _mm512_reduce_add_ps(acc[r][c]) + mins[c] + mins[c + ROW_GROUP];
            *a.out.add((c0 + c) * a.n + n0 + r) = v;
        }
    }
}

#[inline(always)]
unsafe fn tile_c<F: Format2, const R: usize>(a: &Args, n0: usize, c0: usize, c: usize) {
    match c {
        4 => tile::<F, R, 4>(a, n0, c0),
        3 => tile::<F, R, 3>(a, n0, c0),
        2 => tile::<F, R, 2>(a, n0, c0),
        1 => tile::<F, R, 1>(a, n0, c0),
        _ => unreachable!(),
    }
}

/// Output columns `n0..n1` for every activation row, in 4 x 4 tiles.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) unsafe fn rows<F: Format2>(a: &Args, n0: usize, n1: usize) {
    // How many weight rows decode (one activation row) reads side by side depends on the
    // format and the machine. On a Zen 5 core four interleaved rows streamed from DRAM at half
    // the rate of one (SmolLM2 Q4_1 decode went from 40 to 88 tok/s with one). On this Xeon,
    // whose 480 MB L3 holds a small model, the m-curve bench (benches/m_curve.rs, weights
    // cycled through 1 GB) measured the 4-bit blocks 27-31% faster in tiles of four rows,
    // whose activation loads serve four rows, and the 34-byte Q8_0 blocks 23% slower. Each
    // output's arithmetic is the same either way, so results do not depend on the choice.
    let r_max = if a.m == 1 { F::DECODE_ROWS } else { 4 };
    let mut r = n0;
    while r < n1 {
        let rr = r_max.min(n1 - r);
        let mut c = 0;
        while c < a.m {
            let cc = ROW_GROUP.min(a.m - c);
            match rr {
                4 => tile_c::<F, 4>(a, r, c, cc),
                3 => tile_c::<F, 3>(a, r, c, cc),
                2 => tile_c::<F, 2>(a, r, c, cc),
                1 => tile_c::<F, 1>(a, r, c, cc),
                _ => unreachable!(),
            }
            c += cc;
        }
        r += rr;
    }
}
