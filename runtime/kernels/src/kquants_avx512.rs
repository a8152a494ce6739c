//! Q4_K and Q6_K on AVX-512 VNNI: each weight row decoded once per call into vectors that
//! `vpdpbusd` takes as they are, then tiles of up to 2 weight rows x 4 activation rows.
//!
//! The 256-bit kernels in `kquants.rs` multiply with `maddubs` into 16-bit lanes and then by the
//! sub-block scale with `madd`: two multiplies per 32 or 64 weights and activation row, plus
//! nibble and scale decoding in the inner loop, repeated for every 4 activation rows of a
//! prefill. Here one `vpdpbusd` does 64 multiply-adds. It sums 4 neighbouring bytes into a
//! 32-bit lane, and a scale can only be applied once the lane is done, so every lane must stay
//! within one scale's elements for the whole super-block. The layout that allows this (ggml's
//! interleaved `block_q4_Kx8` serves the same purpose) is:
//!
//! - vector `v` (0..4), 32-bit lane `l` (0..16) holds elements `16l + 4v .. 16l + 4v + 4`, i.e.
//!   lane `l` of every vector belongs to the 16 elements `16l..16l + 16` (Q6_K's sub-block `l`,
//!   Q4_K's `l / 2`);
//! - so after four `vpdpbusd`, lane `l` holds the dot product of those 16 elements, and one
//!   float multiply by `d * sc * d8` per lane scales it.
//!
//! The activations are permuted to the same order once per call ([`interleave_acts`]); the
//! block sums `s` that meet the offsets stay in natural order. Weight rows are decoded into a
//! per-task buffer of [`DECODED`] vectors per super-block (the 4 weight vectors, `d * sc` and
//! the offsets per 16 elements), once per pass rather than once per tile.
//!
//! Every output is computed by the same instruction sequence whatever tile it lands in (one
//! float accumulator per output, super-blocks in order), so results do not depend on `m` or
//! the thread count.

use std::arch::x86_64::*;

use crate::kquants::{q4k_scales_mins_packed, KArgs, NS, QK_K};
use crate::x86::prefetch_ahead;

/// Bytes of quantized activations one pass over the weight rows takes (see [`rows`]).
const ACTS_PER_PASS: usize = 512 << 10;

/// 512-bit vectors per decoded super-block: 4 of weights, `d * sc`, offsets.
const DECODED: usize = 6;

/// Activation rows up to which [`rows`] decodes each super-block in registers and uses it
/// against every activation row ([`row_direct`]), instead of staging decoded rows for the tiles.
/// At 5 to 8 rows the staging's stores and loads still cost more than they save: on the m-curve
/// bench (`results/m-curve/`), Q4_K over 5 rows took 1.55x / 1.80x one row at 1 / 2 threads
/// through the tiles and 1.31x / 1.43x direct. Eight accumulators and one decoded super-block
/// (6 vectors) fit the 32 registers: the eight-row code spills no vector to the stack.
const DIRECT_MAX_M: usize = 8;

/// Permutes each 256-element super-block of `qs` into the order the decoded weights use:
/// 32-bit word `16v + l` takes word `4l + v`.
pub(crate) fn interleave_acts(qs: &mut [i8]) {
    for sb in qs.chunks_exact_mut(QK_K) {
        let mut words = [[0i8; 4]; 64];
        for (w, src) in words.iter_mut().zip(sb.chunks_exact(4)) {
            w.copy_from_slice(src);
        }
        for (i, dst) in sb.chunks_exact_mut(4).enumerate() {
            let (v, l) = (i / 16, i % 16);
            dst.copy_from_slice(&words[4 * l + v]);
        }
    }
}

/// One super-block as the tiles take it: `w = d * sc * q + off`.
#[derive(Clone, Copy)]
pub(crate) struct Decoded {
    /// u8 weights in the interleaved order.
    q: [__m512i; 4],
    /// `d * sc` per 32-bit lane.
    dsc: __m512,
    /// The offset per 16 elements.
    off: __m512,
}

impl Decoded {
    /// As [`DECODED`] vectors at `out`.
    #[inline(always)]
    unsafe fn store(&self, out: *mut __m512i) {
        for (v, q) in self.q.iter().enumerate() {
            _mm512_store_si512(out.add(v).cast(), *q);
        }
        _mm512_store_ps(out.add(4).cast(), self.dsc);
        _mm512_store_ps(out.add(5).cast(), self.off);
    }

    #[inline(always)]
    unsafe fn load(p: *const __m512i) -> Self {
        Decoded {
            q: [*p, *p.add(1), *p.add(2), *p.add(3)],
            dsc: *p.add(4).cast(),
            off: *p.add(5).cast(),
        }
    }
}

/// A K-quant as the tiles take it.
pub(crate) trait Decode {
    const BLOCK_BYTES: usize;
    unsafe fn decode(p: *const u8) -> Decoded;
}

/// Q4_K (see `kquants.rs` for the block layout).
pub(crate) struct Q4K;
impl Decode for Q4K {
    const BLOCK_BYTES: usize = 144;
    #[inline(always)]
    unsafe fn decode(p: *const u8) -> Decoded {
        // Scales and mins cover 32 elements: sub-block j is 16-element groups (and 32-bit
        // lanes) 2j and 2j + 1.
        let dup = _mm_setr_epi8(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
        let dm = _mm_cvtph_ps(_mm_cvtsi32_si128(p.cast::<i32>().read_unaligned()));
        let (sc, mins) = q4k_scales_mins_packed(std::slice::from_raw_parts(p.add(4), 12));
        let sc = _mm_shuffle_epi8(_mm_cvtsi64_si128(sc as i64), dup);
        let mins = _mm_shuffle_epi8(_mm_cvtsi64_si128(mins as i64), dup);
        // d * sc is exact in f32 (11 bits times 6).
        let dsc = _mm512_mul_ps(
            _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(sc)),
            _mm512_broadcastss_ps(dm),
        );
        let neg_dmin =
            _mm512_broadcastss_ps(_mm_sub_ps(_mm_setzero_ps(), _mm_permute_ps::<0x55>(dm)));
        let off = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(mins)), neg_dmin);
        // Lane l of vector v holds elements 16l + 4v..: sub-block j = l / 2, whose elements
        // 0..32 are the low (j even) or high (j odd) nibbles of qs[32(j / 2)..]; so qs word
        // 8(l / 4) + 4(l % 2) + v, shifted by 4 for odd j.
        let idx = _mm512_setr_epi32(0, 4, 0, 4, 8, 12, 8, 12, 16, 20, 16, 20, 24, 28, 24, 28);
        let shift = _mm512_setr_epi32(0, 0, 4, 4, 0, 0, 4, 4, 0, 0, 4, 4, 0, 0, 4, 4);
        let z0 = _mm512_loadu_si512(p.add(16).cast());
        let z1 = _mm512_loadu_si512(p.add(80).cast());
        let q = [0, 1, 2, 3].map(|v| {
            let iv = _mm512_add_epi32(idx, _mm512_set1_epi32(v));
            let words = _mm512_permutex2var_epi32(z0, iv, z1);
            _mm512_and_si512(_mm512_srlv_epi32(words, shift), _mm512_set1_epi8(0x0f))
        });
        Decoded { q, dsc, off }
    }
}

/// Q6_K (see `kquants.rs` for the block layout).
pub(crate) struct Q6K;
impl Decode for Q6K {
    const BLOCK_BYTES: usize = 210;
    #[inline(always)]
    unsafe fn decode(p: *const u8) -> Decoded {
        let d = _mm512_broadcastss_ps(_mm_cvtph_ps(_mm_cvtsi32_si128(
            p.add(208).cast::<u16>().read_unaligned() as i32,
        )));
        // One scale per 16 elements, i.e. per 32-bit lane, in order. d * sc is exact in f32
        // (11 bits times 8); (q - 32) * sc puts -32 * d * sc in the offsets.
        let sc = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(p.add(192).cast())));
        let dsc = _mm512_mul_ps(sc, d);
        let off = _mm512_mul_ps(sc, _mm512_mul_ps(d, _mm512_set1_ps(-32.0)));
        // Lane l of vector v holds elements 16l + 4v..: half h = l / 8, quarter
        // t = (l % 8) / 2 of it, position 16(l % 2) + 4v in the quarter. Its low 4 bits are
        // the low (t < 2) or high nibbles of ql[64h + 32(t % 2)..], so ql word
        // 16h + 8(t % 2) + 4(l % 2) + v; its top 2 bits are bits 2t, 2t + 1 of
        // qh[32h..], word 8h + 4(l % 2) + v.
        let ql_idx = _mm512_setr_epi32(0, 4, 8, 12, 0, 4, 8, 12, 16, 20, 24, 28, 16, 20, 24, 28);
        let ql_shift = _mm512_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4, 0, 0, 0, 0, 4, 4, 4, 4);
        let qh_idx = _mm512_setr_epi32(0, 4, 0, 4, 0, 4, 0, 4, 8, 12, 8, 12, 8, 12, 8, 12);
        let qh_shift = _mm512_setr_epi32(0, 0, 2, 2, 4, 4, 6, 6, 0, 0, 2, 2, 4, 4, 6, 6);
        let ql0 = _mm512_loadu_si512(p.cast());
        let ql1 = _mm512_loadu_si512(p.add(64).cast());
        let qh = _mm512_loadu_si512(p.add(128).cast());
        let q = [0, 1, 2, 3].map(|v| {
            let add_v = _mm512_set1_epi32(v);
            let lo = _mm512_permutex2var_epi32(ql0, _mm512_add_epi32(ql_idx, add_v), ql1);
            let lo = _mm512_and_si512(_mm512_srlv_epi32(lo, ql_shift), _mm512_set1_epi8(0x0f));
            let hi = _mm512_permutexvar_epi32(_mm512_add_epi32(qh_idx, add_v), qh);
            let hi = _mm512_and_si512(_mm512_srlv_epi32(hi, qh_shift), _mm512_set1_epi8(0x03));
            _mm512_or_si512(lo, _mm512_slli_epi32::<4>(hi))
        });
        Decoded { q, dsc, off }
    }
}

/// Activation row `c`, super-block `b`: the 4 quantized vectors, `d8` and the 16 block sums.
#[inline(always)]
unsafe fn acts(a: &KArgs, c: usize, b: usize) -> ([__m512i; 4], __m512, __m512) {
    let sb = c * a.nsb + b;
    let q8 = a.qs.add(c * a.k + b * QK_K);
    let x = [
        _mm512_loadu_si512(q8.cast()),
        _mm512_loadu_si512(q8.add(64).cast()),
        _mm512_loadu_si512(q8.add(128).cast()),
        _mm512_loadu_si512(q8.add(192).cast()),
    ];
    (
        x,
        _mm512_set1_ps(*a.d.add(sb)),
        _mm512_loadu_ps(a.s.add(sb * NS)),
    )
}

/// One super-block of one output. Every tile computes an output by this sequence, so results
/// do not depend on the tile.
#[inline(always)]
unsafe fn step(acc: __m512, w: &Decoded, x: &[__m512i; 4], d8: __m512, s16: __m512) -> __m512 {
    // No overflow: a lane sums 16 products of at most 63 * 128.
    let mut dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w.q[0], x[0]);
    dot = _mm512_dpbusd_epi32(dot, w.q[1], x[1]);
    dot = _mm512_dpbusd_epi32(dot, w.q[2], x[2]);
    dot = _mm512_dpbusd_epi32(dot, w.q[3], x[3]);
    let acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(w.dsc, d8), acc);
    _mm512_fmadd_ps(w.off, s16, acc)
}

/// One `R x C` tile over the full depth: decoded rows `dec + r * stride` (weight rows
/// `n0 + r`) against activation rows `c0..c0 + C`.
// Index loops: `r` and `c` address several tile arrays and memory offsets at once.
#[allow(clippy::needless_range_loop)]
#[inline(always)]
unsafe fn tile<const R: usize, const C: usize>(
    a: &KArgs,
    dec: *const __m512i,
    stride: usize,
    n0: usize,
    c0: usize,
) {
    let mut acc = [[_mm512_setzero_ps(); C]; R];
    for b in 0..a.nsb {
        for c in 0..C {
            let (x, d8, s16) = acts(a, c0 + c, b);
            for r in 0..R {
                let w = Decoded::load(dec.add(r * stride + b * DECODED));
                acc[r][c] = step(acc[r][c], &w, &x, d8, s16);
            }
        }
    }
    for r in 0..R {
        for c in 0..C {
            *a.out.add((c0 + c) * a.n + n0 + r) = _mm512_reduce_add_ps(acc[r][c]);
        }
    }
}

/// Weight row `n0` against activation rows `0..C` (the whole call), each super-block decoded
/// in registers where it is used: at m = 1 the row buffer's stores and loads cost more than
/// the arithmetic.
#[inline(always)]
unsafe fn row_direct<F: Decode, const C: usize>(a: &KArgs, n0: usize) {
    let mut acc = [_mm512_setzero_ps(); C];
    let src = a.w.add(n0 * a.row_bytes);
    for b in 0..a.nsb {
        let p = src.add(b * F::BLOCK_BYTES);
        prefetch_ahead(p, a.prefetch, F::BLOCK_BYTES);
        let w = F::decode(p);
        for (c, acc) in acc.iter_mut().enumerate() {
            let (x, d8, s16) = acts(a, c, b);
            *acc = step(*acc, &w, &x, d8, s16);
        }
    }
    for (c, acc) in acc.iter().enumerate() {
        *a.out.add(c * a.n + n0) = _mm512_reduce_add_ps(*acc);
    }
}

#[inline(always)]
unsafe fn tile_c<const R: usize>(
    a: &KArgs,
    dec: *const __m512i,
    stride: usize,
    n0: usize,
    c0: usize,
    c: usize,
) {
    match c {
        4 => tile::<R, 4>(a, dec, stride, n0, c0),
        3 => tile::<R, 3>(a, dec, stride, n0, c0),
        2 => tile::<R, 2>(a, dec, stride, n0, c0),
        _ => tile::<R, 1>(a, dec, stride, n0, c0),
    }
}

/// Output columns `n0..n1` for every activation row. `a.qs` must hold activations permuted by
/// [`interleave_acts`].
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) unsafe fn rows<F: Decode>(a: &KArgs, n0: usize, n1: usize) {
    // Decode and short chunks take one weight row at a time against every activation row, as
    // the other K-quant kernels do (see `STREAM_MAX_M`); prefill takes 2 x 4 tiles. In 4 x 4
    // tiles the compiler kept all four rows' weight vectors in registers across the activation
    // rows and spilled them (264 instructions per super-block and tile, against 2 x 119 for two
    // 2 x 4 tiles); hiding the pointer from it (`black_box`) put the accumulators on the stack.
    if a.m <= DIRECT_MAX_M {
        for r in n0..n1 {
            match a.m {
                8 => row_direct::<F, 8>(a, r),
                7 => row_direct::<F, 7>(a, r),
                6 => row_direct::<F, 6>(a, r),
                5 => row_direct::<F, 5>(a, r),
                4 => row_direct::<F, 4>(a, r),
                3 => row_direct::<F, 3>(a, r),
                2 => row_direct::<F, 2>(a, r),
                _ => row_direct::<F, 1>(a, r),
            }
        }
        return;
    }
    let r_max = if a.m <= crate::STREAM_MAX_M { 1 } else { 2 };
    let stride = a.nsb * DECODED;
    let mut buf = vec![_mm512_setzero_si512(); r_max * stride];
    let dec = buf.as_mut_ptr();
    // Activation rows per pass over the weight rows: each pass streams its activation rows
    // once per pair of weight rows, so they must stay in L2 (2 MB a core here). All 512 rows
    // of a k = 8960 prefill (4.6 MB) ran no faster than the old kernel, bound by L3; a pass
    // re-decodes its weight rows, which costs little next to 14 or more tiles.
    let pass = (ACTS_PER_PASS / a.k).max(4) / 4 * 4;
    let mut c0 = 0;
    while c0 < a.m {
        let c1 = (c0 + pass).min(a.m);
        let mut r = n0;
        while r < n1 {
            let rr = r_max.min(n1 - r);
            for i in 0..rr {
                let src = a.w.add((r + i) * a.row_bytes);
                for b in 0..a.nsb {
                    let p = src.add(b * F::BLOCK_BYTES);
                    prefetch_ahead(p, a.prefetch, F::BLOCK_BYTES);
                    let w = F::decode(p);
                    w.store(dec.add(i * stride + b * DECODED));
                }
            }
            let mut c = c0;
            while c < c1 {
                let cc = 4.min(c1 - c);
                match rr {
                    2 => tile_c::<2>(a, dec, stride, r, c, cc),
                    _ => tile_c::<1>(a, dec, stride, r, c, cc),
                }
                c += cc;
            }
            r += rr;
        }
        c0 = c1;
    }
}
