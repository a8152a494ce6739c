//! The GGML formats of 32-element blocks (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) and effbench's packed
//! formats on AVX-512 VNNI: one 32-bit lane per weight block, so that one float
//! multiply-add applies the two block scales to a whole block's dot product.
//!
//! The kernels in `avx512.rs` hold two blocks per vector, eight lanes each, and so convert
//! and scale every `vpdpbusd` result: four instructions per 64 multiply-adds and tile cell,
//! plus the nibble decoding, which they repeat for every four activation rows. Here a group of
//! 16 blocks is laid out as 8 vectors in which lane `l` of every vector belongs to one block,
//! so 8 `vpdpbusd` leave 16 finished block dot products, and one convert, one multiply and one
//! fused multiply-add finish 512 multiply-adds. This is the layout of `kquants_avx512.rs` with a block per lane instead
//! of 16 elements per lane, and serves the purpose of ggml's repacked `block_q4_0x8`.
//!
//! Both sides are permuted to it: the activations once per call ([`prepare_acts`]), each
//! weight row once per chunk of rows into a per-task buffer. A row whose last group has fewer
//! than 16 blocks ends in a smaller group (2, 4 or 8 blocks, in 1, 2 or 4 vectors, `16 / bg`
//! lanes per block), so SmolLM2's 18 blocks per row cost 9 vectors, not 16.
//!
//! Every output is computed by the same instruction sequence whatever `m`, tile or thread
//! count (one accumulator per output, groups in order, one final reduction), so results do not
//! depend on them.

use std::arch::x86_64::*;

use crate::formats::WeightFormat;
use crate::packed::PackedFormat;
use crate::q8::{Line, Scratch, QK};
use crate::x86::prefetch_ahead;

/// Blocks in a full group, one per 32-bit lane.
const GROUP: usize = 16;
/// Vectors of a full group of weights: 8 of quantized values, then the scales, then (formats
/// with an offset, `w = d * u + m`) the offsets.
const fn full_w(asym: bool) -> usize {
    9 + asym as usize
}
/// Vectors of a full group of activations: 8 of quantized values, the scales, then the
/// zero-point terms the dot products start from.
const FULL_X: usize = 10;
/// Activation rows a tile takes. One weight row at a time: its 9 vectors stay in registers
/// while the activation vectors go straight from memory into `vpdpbusd`; two weight rows made
/// the compiler load each activation vector once for both and run out of registers, as in
/// `kquants_avx512.rs`.
const TILE_C: usize = 8;
/// Bytes of decoded weight rows a task keeps while every activation tile passes over them:
/// they stay in L2 (2 MB a core here), and the activation tile (8 rows) in L1.
const DECODED_BYTES: usize = 256 << 10;

/// Blocks a group spans when `t` real blocks remain: a power of two from 2 to 16.
fn group_blocks(t: usize) -> usize {
    t.next_power_of_two().clamp(2, GROUP)
}

/// What lane `l` of vector `v` holds in a group spanning `bg` blocks: (block in the group,
/// half `h`, 4-byte word `j`). A Q4_0 lane takes the nibbles `h` of nibble-byte word `j`, a
/// Q8_0 lane the bytes `16h + 4j..`; both are elements `16h + 4j..16h + 4j + 4`. A full group
/// orders its blocks `4(l % 4) + l / 4`, what the in-register transpose of `transpose_full`
/// produces.
fn slot(bg: usize, v: usize, l: usize) -> (usize, usize, usize) {
    let per_block = GROUP / bg;
    let blk = if bg == GROUP {
        4 * (l % 4) + l / 4
    } else {
        l / per_block
    };
    let s = v * per_block + l % per_block;
    (blk, s / 4, s % 4)
}

/// How a row of `nb` blocks splits into groups.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Layout {
    nb: usize,
    full: usize,
    /// Vectors of quantized values in the last group if it spans fewer than 16 blocks or is
    /// short of them (0 if none).
    tail_v: usize,
    /// Vectors per row of decoded weights.
    w_lines: usize,
    /// Vectors per row of activations.
    x_lines: usize,
}

impl Layout {
    fn new(nb: usize, asym: bool) -> Self {
        let full = nb / GROUP;
        let t = nb % GROUP;
        let tail_v = if t == 0 { 0 } else { group_blocks(t) / 2 };
        let tail = usize::from(t > 0);
        Layout {
            nb,
            full,
            tail_v,
            w_lines: full * full_w(asym) + tail * (tail_v + 1 + asym as usize),
            x_lines: full * FULL_X + tail * (tail_v + 2),
        }
    }

    fn groups(&self) -> usize {
        self.full + usize::from(self.tail_v > 0)
    }
}

/// What the last vector of an activation group holds, on each block's first lane (0 on the
/// others).
#[derive(Clone, Copy)]
enum Start {
    /// `-zero * sum(q)` as an i32, where the dot products start: for weights `d * (u - zero)`.
    ZeroPoint(i32),
    /// The block sum `d * sum(q)` as an f32, which meets the weights' offsets: for weights
    /// `d * u + m`.
    BlockSums,
}

/// `$call` with `BG`, a group's span in blocks (`$blocks`: 2, 4, 8 or 16, from
/// [`group_blocks`]), bound as a constant, so each span's code is specialised: with a run-time
/// span `slot`'s divisions made a SmolLM2 decode step twice as slow.
macro_rules! with_group_span {
    ($blocks:expr, $call:expr) => {
        match $blocks {
            2 => {
                const BG: usize = 2;
                $call
            }
            4 => {
                const BG: usize = 4;
                $call
            }
            8 => {
                const BG: usize = 8;
                $call
            }
            _ => {
                const BG: usize = 16;
                $call
            }
        }
    };
}

/// Writes the quantized activations in `scratch` into `scratch.lanes` in the group layout:
/// per group the quantized vectors, then `d` per lane, then the [`Start`] terms.
///
/// The zero point of weights stored as `u - zero` is thus removed in integers, before the
/// scales: `sum((w + zero) * q) - zero * sum(q)` is the exact block dot product, as ggml
/// computes it. Removed in f32 through the float block sum `d * sum(q)` instead, it leaves the
/// rounding of `d_w * d_x * sum((w + zero) * q)`, up to `zero / |w|` times that of the product,
/// in every output: on Gemma-3-270M's hidden states, with Q8_0's zero of 128, five times the
/// error of the other kernels (`runtime/core/tests/real_gemma3_q8_0.rs`).
fn prepare_acts(scratch: &mut Scratch, lay: &Layout, start: Start) {
    let (m, kp, nbp) = (scratch.m, scratch.kp(), scratch.nbp);
    scratch.lanes.clear();
    scratch.lanes.resize(m * lay.x_lines, Line([0; 64]));
    for c in 0..m {
        let row = &mut scratch.lanes[c * lay.x_lines..(c + 1) * lay.x_lines];
        let src = ActRow {
            qs: &scratch.qs[c * kp..(c + 1) * kp],
            d: &scratch.d[c * nbp..(c + 1) * nbp],
            s: &scratch.s,
            row: c,
            nbp,
            start,
        };
        let mut at = 0;
        for g in 0..lay.groups() {
            let b0 = g * GROUP;
            let t = (lay.nb - b0).min(GROUP);
            let out = &mut row[at..];
            at += with_group_span!(group_blocks(t), src.group::<BG>(b0, t, out));
        }
    }
}

/// One activation row of `Scratch`.
struct ActRow<'a> {
    qs: &'a [i8],
    d: &'a [f32],
    /// `Scratch::s`, the block sums `d * sum(q)` of every row, and where this row's are.
    s: &'a [f32],
    row: usize,
    nbp: usize,
    start: Start,
}

impl ActRow<'_> {
    /// The group spanning `BG` blocks from `b0`, `t` of them real, into `out`; returns the
    /// vectors written.
    #[inline(always)]
    fn group<const BG: usize>(&self, b0: usize, t: usize, out: &mut [Line]) -> usize {
        let vs = BG / 2;
        if BG == GROUP && t == GROUP {
            let (q, out) = (&self.qs[b0 * QK..(b0 + GROUP) * QK], &mut out[..vs]);
            // SAFETY: this layout is only built for the AVX-512 kernels, on a CPU that has
            // them; `q` holds the group's 16 blocks and `out` its 8 vectors.
            unsafe { acts_full(q.as_ptr(), out.as_mut_ptr()) };
        } else {
            for (v, line) in out[..vs].iter_mut().enumerate() {
                for l in 0..GROUP {
                    let (blk, h, j) = slot(BG, v, l);
                    if blk < t {
                        let at = (b0 + blk) * QK + 16 * h + 4 * j;
                        for e in 0..4 {
                            line.0[4 * l + e] = self.qs[at + e] as u8;
                        }
                    }
                }
            }
        }
        for l in 0..GROUP {
            let (blk, _, _) = slot(BG, 0, l);
            if blk >= t {
                continue;
            }
            let d = self.d[b0 + blk];
            out[vs].0[4 * l..4 * l + 4].copy_from_slice(&d.to_ne_bytes());
            if l % (GROUP / BG) == 0 {
                let start = match self.start {
                    Start::ZeroPoint(zero) => {
                        let q = &self.qs[(b0 + blk) * QK..(b0 + blk + 1) * QK];
                        let sum: i32 = q.iter().map(|&q| i32::from(q)).sum();
                        (-zero * sum).to_ne_bytes()
                    }
                    Start::BlockSums => {
                        self.s[crate::q8::s_index(self.nbp, self.row, b0 + blk)].to_ne_bytes()
                    }
                };
                out[vs + 1].0[4 * l..4 * l + 4].copy_from_slice(&start);
            }
        }
        vs + 2
    }
}

/// A block format as the group layout takes it.
pub(crate) trait Blocks {
    const BLOCK_BYTES: usize;
    /// `z` in `w = d * (u - z)`, `u` the unsigned byte a lane holds.
    const ZERO: i32;
    /// Whether both halves `h` come from the same 16 bytes (nibbles).
    const NIBBLES: bool;
    /// Q5 formats: where in a block the 32-bit word of each element's bit 4 is.
    const QH: Option<usize> = None;
    /// The 16 bytes half `h` is taken from.
    unsafe fn chunk(p: *const u8, h: usize) -> __m128i;
    /// Bytes from [`chunk`](Self::chunk), shifted down to half `h` if nibbles, to unsigned
    /// values.
    unsafe fn finish(v: __m512i, h: usize) -> __m512i;
}

/// A block whose 32 values are 16 nibble bytes at byte `AT` of its `BYTES` (element `i` in byte
/// `i`'s low nibble, `16 + i` in its high one): `w = d * (u - Z)`, or `d * u + m` where `Z` is 0.
/// With `QH_AT` > 0, a 32-bit word at that byte holds each element's bit 4 ([`high_bits`] adds
/// it); no format keeps it at byte 0, where the scale is.
pub(crate) struct Nibbles<const BYTES: usize, const AT: usize, const Z: i32, const QH_AT: usize>;
impl<const BYTES: usize, const AT: usize, const Z: i32, const QH_AT: usize> Blocks
    for Nibbles<BYTES, AT, Z, QH_AT>
{
    const BLOCK_BYTES: usize = BYTES;
    const ZERO: i32 = Z;
    const NIBBLES: bool = true;
    const QH: Option<usize> = if QH_AT == 0 { None } else { Some(QH_AT) };
    #[inline(always)]
    unsafe fn chunk(p: *const u8, _h: usize) -> __m128i {
        _mm_loadu_si128(p.add(AT).cast())
    }
    #[inline(always)]
    unsafe fn finish(v: __m512i, h: usize) -> __m512i {
        let v = if h == 0 { v } else { _mm512_srli_epi16::<4>(v) };
        _mm512_and_si512(v, _mm512_set1_epi8(0x0f))
    }
}

/// Q4_0: f16 `d`, nibbles; `w = d * (u - 8)`.
pub(crate) type Q4_0 = Nibbles<18, 2, 8, 0>;
/// Q4_1: f16 `d` and `m`, nibbles; `w = d * u + m`.
pub(crate) type Q4_1 = Nibbles<20, 4, 0, 0>;
/// Q5_0: f16 `d`, `qh`, nibbles; `w = d * (u - 16)`.
pub(crate) type Q5_0 = Nibbles<22, 6, 16, 2>;
/// Q5_1: f16 `d` and `m`, `qh`, nibbles; `w = d * u + m`.
pub(crate) type Q5_1 = Nibbles<24, 8, 0, 4>;
/// effbench's packed 4-bit blocks: 16 bytes of nibbles alone, the scales kept per group.
type P4 = Nibbles<16, 0, 8, 0>;

pub(crate) struct Q8_0;
impl Blocks for Q8_0 {
    const BLOCK_BYTES: usize = 34;
    // AVX-512 has no vpsignb to move the weight's sign onto the activation, so the weights
    // are shifted to unsigned: d * w = d * (w + 128) - 128 d.
    const ZERO: i32 = 128;
    const NIBBLES: bool = false;
    #[inline(always)]
    unsafe fn chunk(p: *const u8, h: usize) -> __m128i {
        _mm_loadu_si128(p.add(2 + 16 * h).cast())
    }
    #[inline(always)]
    unsafe fn finish(v: __m512i, _h: usize) -> __m512i {
        _mm512_xor_si512(v, _mm512_set1_epi8(-128))
    }
}

/// Adds bit 4 to the decoded nibbles of a Q5 group spanning `BG` blocks, `t` of them at `p`,
/// from each block's `qh` word at byte `F::QH`. Lane `l` of vector `v` holds elements
/// `16h + 4j..+4` of its block (see [`slot`]), so it takes bits `16h + 4j..+4` of that word.
#[inline(always)]
unsafe fn high_bits<F: Blocks, const BG: usize>(p: *const u8, t: usize, out: *mut __m512i) {
    let Some(at) = F::QH else { return };
    let qh = |blk: usize| {
        p.add(blk * F::BLOCK_BYTES + at)
            .cast::<u32>()
            .read_unaligned()
    };
    let sixteen = _mm512_set1_epi8(0x10);
    if BG == GROUP {
        // A full group's vector v = 4h + j takes bits 4v..4v + 4 of every lane's word: byte
        // v / 2, nibble v % 2. One shuffle spreads that byte over the lane's four bytes, and a
        // test against bits 1, 2, 4, 8 (shifted to the nibble) gives each byte its bit.
        let words = full_group_words::<F>(p.add(at), t);
        let lane_base = _mm512_set4_epi32(0x0c0c_0c0c, 0x0808_0808, 0x0404_0404, 0);
        for v in 0..GROUP / 2 {
            let byte = _mm512_add_epi8(lane_base, _mm512_set1_epi8((v / 2) as i8));
            let spread = _mm512_shuffle_epi8(words, byte);
            let bits = _mm512_set1_epi32(0x0804_0201 << (4 * (v % 2)));
            let high = _mm512_test_epi8_mask(spread, bits);
            let w = _mm512_load_si512(out.add(v).cast());
            _mm512_store_si512(out.add(v).cast(), _mm512_mask_add_epi8(w, high, w, sixteen));
        }
    } else {
        for v in 0..BG / 2 {
            let mut high = 0u64;
            for l in 0..GROUP {
                let (blk, h, j) = slot(BG, v, l);
                if blk < t {
                    let bits = (qh(blk) >> (16 * h + 4 * j)) & 0xf;
                    high |= u64::from(bits) << (4 * l);
                }
            }
            let w = _mm512_load_si512(out.add(v).cast());
            _mm512_store_si512(out.add(v).cast(), _mm512_mask_add_epi8(w, high, w, sixteen));
        }
    }
}

/// The 32-bit word at `p` of each of a full group's blocks (`t` of them real, the others 0), in
/// lane order: lane `l` holds block `4(l % 4) + l / 4` (see [`slot`]). One gather: with a
/// scalar loop over the lanes SmolLM2's Q4_1 decode ran at 95 tok/s against 117 for the tiles
/// of `avx512.rs`, with the gather at 114 (one thread, in turn, the test suite running beside).
#[inline(always)]
unsafe fn full_group_words<F: Blocks>(p: *const u8, t: usize) -> __m512i {
    let blocks = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    let offsets = _mm512_mullo_epi32(blocks, _mm512_set1_epi32(F::BLOCK_BYTES as i32));
    let real = _mm512_cmplt_epi32_mask(blocks, _mm512_set1_epi32(t as i32));
    // Masked-off lanes are not read, so nothing past the `t` blocks is touched.
    _mm512_mask_i32gather_epi32::<1>(_mm512_setzero_si512(), real, offsets, p.cast())
}

/// Scales of a group spanning `BG` blocks into `out[BG / 2]`, and with `ASYM` the offsets (the
/// f16 after each scale) into `out[BG / 2 + 1]`. `BG` is a constant so that `slot` folds to
/// shifts and masks (see `with_group_span`).
#[inline(always)]
unsafe fn scales<F: Blocks, const BG: usize, const ASYM: bool>(
    p: *const u8,
    t: usize,
    out: *mut __m512i,
) {
    if BG == GROUP {
        // Every block starts with its f16 scale, and with `ASYM` its offset next: one 32-bit
        // word each (the 2 bytes after a lone scale belong to the block too).
        let words = full_group_words::<F>(p, t);
        let d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(words));
        _mm512_store_ps(out.add(BG / 2).cast(), d);
        if ASYM {
            let m = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32::<16>(words)));
            _mm512_store_ps(out.add(BG / 2 + 1).cast(), m);
        }
        return;
    }
    let (mut d16, mut m16) = ([0u16; GROUP], [0u16; GROUP]);
    for l in 0..GROUP {
        let (blk, _, _) = slot(BG, 0, l);
        if blk < t {
            let at = p.add(blk * F::BLOCK_BYTES);
            d16[l] = at.cast::<u16>().read_unaligned();
            if ASYM {
                m16[l] = at.add(2).cast::<u16>().read_unaligned();
            }
        }
    }
    let d = _mm512_cvtph_ps(_mm256_loadu_si256(d16.as_ptr().cast()));
    _mm512_store_ps(out.add(BG / 2).cast(), d);
    if ASYM {
        let m = _mm512_cvtph_ps(_mm256_loadu_si256(m16.as_ptr().cast()));
        _mm512_store_ps(out.add(BG / 2 + 1).cast(), m);
    }
}

/// The 8 vectors of quantized values of a group spanning 16 blocks, `t` of them at `p` (the
/// rest zero). Four 128-bit chunks per vector (blocks `4q..4q + 4`), transposed as 4 x 4
/// words within each 128-bit lane, put word `j` of block `4q + i` at lane `4i + q` of vector
/// `j`: the order [`slot`] gives.
#[inline(always)]
unsafe fn transpose_full<F: Blocks>(p: *const u8, t: usize, out: *mut __m512i) {
    let halves = if F::NIBBLES { 1 } else { 2 };
    for hc in 0..halves {
        let z = [
            four::<F>(p, 0, t, hc),
            four::<F>(p, 4, t, hc),
            four::<F>(p, 8, t, hc),
            four::<F>(p, 12, t, hc),
        ];
        let t0 = _mm512_unpacklo_epi32(z[0], z[1]);
        let t1 = _mm512_unpackhi_epi32(z[0], z[1]);
        let t2 = _mm512_unpacklo_epi32(z[2], z[3]);
        let t3 = _mm512_unpackhi_epi32(z[2], z[3]);
        let r = [
            _mm512_unpacklo_epi64(t0, t2),
            _mm512_unpackhi_epi64(t0, t2),
            _mm512_unpacklo_epi64(t1, t3),
            _mm512_unpackhi_epi64(t1, t3),
        ];
        for h in 0..2 {
            if !F::NIBBLES && h != hc {
                continue;
            }
            for (j, &rj) in r.iter().enumerate() {
                _mm512_store_si512(out.add(4 * h + j).cast(), F::finish(rj, h));
            }
        }
    }
}

/// Chunk `h` of block `blk` at `p`, or zeros past the `t` blocks there.
// Helpers rather than closures or `array::map`: those were left out of line, compiled without
// AVX-512, and halved Q8_0 decode.
#[inline(always)]
unsafe fn chunk_or_zero<F: Blocks>(p: *const u8, blk: usize, t: usize, h: usize) -> __m128i {
    if blk < t {
        F::chunk(p.add(blk * F::BLOCK_BYTES), h)
    } else {
        _mm_setzero_si128()
    }
}

/// Chunks `h` of blocks `b0..b0 + 4` in the four 128-bit lanes.
#[inline(always)]
unsafe fn four<F: Blocks>(p: *const u8, b0: usize, t: usize, h: usize) -> __m512i {
    let v = _mm512_castsi128_si512(chunk_or_zero::<F>(p, b0, t, h));
    let v = _mm512_inserti32x4::<1>(v, chunk_or_zero::<F>(p, b0 + 1, t, h));
    let v = _mm512_inserti32x4::<2>(v, chunk_or_zero::<F>(p, b0 + 2, t, h));
    _mm512_inserti32x4::<3>(v, chunk_or_zero::<F>(p, b0 + 3, t, h))
}

/// Quantized activations as [`transpose_full`] takes them: a "block" is 32 i8 values, kept
/// as they are.
struct Acts;
impl Blocks for Acts {
    const BLOCK_BYTES: usize = QK;
    const ZERO: i32 = 0;
    const NIBBLES: bool = false;
    #[inline(always)]
    unsafe fn chunk(p: *const u8, h: usize) -> __m128i {
        _mm_loadu_si128(p.add(16 * h).cast())
    }
    #[inline(always)]
    unsafe fn finish(v: __m512i, _h: usize) -> __m512i {
        v
    }
}

/// The 8 vectors of quantized activations of a full group of 16 blocks at `p`.
#[target_feature(enable = "avx2,avx512f,avx512bw")]
unsafe fn acts_full(p: *const i8, out: *mut Line) {
    transpose_full::<Acts>(p.cast(), GROUP, out.cast());
}

/// A last group spanning `BG` < 16 blocks, `t` of them at `p`, from whole 16-byte chunks:
/// 128-bit lane `i` of vector `v` is the chunk of block `i / 2`, half `i % 2` (BG = 2), of
/// block `i`, half `v` (BG = 4), or the 8-byte halves `v % 2` of blocks `2i` and `2i + 1`,
/// half `v / 2` (BG = 8), which is the order [`slot`] gives. Blocks past `t` are zero.
#[inline(always)]
unsafe fn transpose_tail<F: Blocks, const BG: usize>(p: *const u8, t: usize, out: *mut __m512i) {
    for v in 0..BG / 2 {
        let mut lanes = [_mm_setzero_si128(); 4];
        let mut shift = [0i64; 8];
        for (i, lane) in lanes.iter_mut().enumerate() {
            let h = match BG {
                2 => i % 2,
                4 => v,
                _ => v / 2,
            };
            *lane = match BG {
                2 => chunk_or_zero::<F>(p, i / 2, t, h),
                4 => chunk_or_zero::<F>(p, i, t, h),
                _ if v % 2 == 0 => _mm_unpacklo_epi64(
                    chunk_or_zero::<F>(p, 2 * i, t, h),
                    chunk_or_zero::<F>(p, 2 * i + 1, t, h),
                ),
                _ => _mm_unpackhi_epi64(
                    chunk_or_zero::<F>(p, 2 * i, t, h),
                    chunk_or_zero::<F>(p, 2 * i + 1, t, h),
                ),
            };
            if F::NIBBLES {
                shift[2 * i] = 4 * h as i64;
                shift[2 * i + 1] = 4 * h as i64;
            }
        }
        let mut w = _mm512_castsi128_si512(lanes[0]);
        w = _mm512_inserti32x4::<1>(w, lanes[1]);
        w = _mm512_inserti32x4::<2>(w, lanes[2]);
        w = _mm512_inserti32x4::<3>(w, lanes[3]);
        if F::NIBBLES {
            w = _mm512_srlv_epi64(w, _mm512_loadu_si512(shift.as_ptr().cast()));
        }
        _mm512_store_si512(out.add(v).cast(), F::finish(w, 0));
    }
}

/// The quantized values of a row's last group, which spans `BG` blocks (`t` of them real) and
/// takes `BG / 2` vectors; [`transpose_full`] when `BG` is 16.
#[inline(always)]
unsafe fn transpose_last<F: Blocks, const BG: usize>(p: *const u8, t: usize, out: *mut __m512i) {
    if BG == GROUP {
        transpose_full::<F>(p, t, out)
    } else {
        transpose_tail::<F, BG>(p, t, out)
    }
}

/// How a weight format's rows become the decoded group layout. `ASYM`: whether the format
/// has an offset per group (`w = d * u + m`), kept in an extra vector.
pub(crate) trait Rows<const ASYM: bool> {
    /// Weight row `r` into [`Layout::w_lines`] vectors at `out`.
    unsafe fn decode_row(a: &LArgs, r: usize, out: *mut __m512i);
}

/// A GGML block format: each block carries its own scale, and with `ASYM` (Q4_1, Q5_1) its
/// offset.
struct Ggml<F>(std::marker::PhantomData<F>);

impl<F: Blocks, const ASYM: bool> Rows<ASYM> for Ggml<F> {
    #[inline(always)]
    unsafe fn decode_row(a: &LArgs, r: usize, out: *mut __m512i) {
        let src = a.w.add(r * a.row_bytes);
        let lay = &a.lay;
        let fw = full_w(ASYM);
        for g in 0..lay.full {
            let (p, out) = (src.add(g * GROUP * F::BLOCK_BYTES), out.add(g * fw));
            prefetch_ahead(p, a.prefetch, GROUP * F::BLOCK_BYTES);
            transpose_full::<F>(p, GROUP, out);
            high_bits::<F, GROUP>(p, GROUP, out);
            scales::<F, GROUP, ASYM>(p, GROUP, out);
        }
        if lay.tail_v > 0 {
            let b0 = lay.full * GROUP;
            let (p, t) = (src.add(b0 * F::BLOCK_BYTES), lay.nb - b0);
            let out = out.add(lay.full * fw);
            with_group_span!(2 * lay.tail_v, {
                transpose_last::<F, BG>(p, t, out);
                high_bits::<F, BG>(p, t, out);
                scales::<F, BG, ASYM>(p, t, out);
            })
        }
    }
}

/// One of effbench's packed formats with groups of 32 or more (`packed.rs`): a row's blocks of
/// quantized values (`P`), then one record per group: the f16 scale, and with `ASYM` the f16
/// offset.
struct Packed<P, const ASYM: bool>(std::marker::PhantomData<P>);

impl<P: Blocks, const ASYM: bool> Rows<ASYM> for Packed<P, ASYM> {
    #[inline(always)]
    unsafe fn decode_row(a: &LArgs, r: usize, out: *mut __m512i) {
        let row = a.w.add(r * a.row_bytes);
        let lay = &a.lay;
        let fw = full_w(ASYM);
        for g in 0..lay.full {
            let (b0, out) = (g * GROUP, out.add(g * fw));
            let p = row.add(b0 * P::BLOCK_BYTES);
            prefetch_ahead(p, a.prefetch, GROUP * P::BLOCK_BYTES);
            transpose_full::<P>(p, GROUP, out);
            packed_scales_full::<ASYM>(a, row, b0, out.add(GROUP / 2));
        }
        if lay.tail_v > 0 {
            let b0 = lay.full * GROUP;
            let t = lay.nb - b0;
            let out = out.add(lay.full * fw);
            with_group_span!(2 * lay.tail_v, {
                transpose_last::<P, BG>(row.add(b0 * P::BLOCK_BYTES), t, out);
                packed_scales::<ASYM, BG>(a, row, b0, t, out.add(BG / 2));
            })
        }
    }
}

/// [`packed_scales`] for a full group: its blocks' records are contiguous (at most 16, for
/// groups of 32), so two masked loads take them all and a permute gives each lane its block's.
/// A scalar loop over the lanes took more time than the rest of a decode step.
#[inline(always)]
unsafe fn packed_scales_full<const ASYM: bool>(
    a: &LArgs,
    row: *const u8,
    b0: usize,
    out: *mut __m512i,
) {
    let s = a.group_shift;
    let first = b0 >> s;
    let words = (((b0 + GROUP - 1) >> s) - first + 1) * if ASYM { 2 } else { 1 };
    let p = row
        .add(a.scale_off + first * if ASYM { 4 } else { 2 })
        .cast::<i16>();
    let mask = |n: usize| -> __mmask16 { ((1u32 << n.min(16)) - 1) as __mmask16 };
    // Masked-off elements are not read, so nothing past the row's last record is touched.
    let lo = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask(words), p));
    let hi = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(
        mask(words.saturating_sub(16)),
        p.add(16),
    ));
    // Lane l holds block 4(l % 4) + l / 4 of the group (see `slot`).
    let blocks = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    let rel = _mm512_sub_epi32(
        _mm512_srlv_epi32(
            _mm512_add_epi32(_mm512_set1_epi32(b0 as i32), blocks),
            _mm512_set1_epi32(s as i32),
        ),
        _mm512_set1_epi32(first as i32),
    );
    let d_at = if ASYM {
        _mm512_slli_epi32::<1>(rel)
    } else {
        rel
    };
    _mm512_store_ps(out.cast(), _mm512_permutex2var_ps(lo, d_at, hi));
    if ASYM {
        let m_at = _mm512_add_epi32(d_at, _mm512_set1_epi32(1));
        _mm512_store_ps(out.add(1).cast(), _mm512_permutex2var_ps(lo, m_at, hi));
    }
}

/// The scales (and with `ASYM` the offsets) of the packed group of blocks `b0..b0 + t` of
/// `row`, spanning `BG` blocks, into `out` (and `out + 1`). Each lane takes its block's group
/// record; lanes past the real blocks get zeros.
#[inline(always)]
unsafe fn packed_scales<const ASYM: bool, const BG: usize>(
    a: &LArgs,
    row: *const u8,
    b0: usize,
    t: usize,
    out: *mut __m512i,
) {
    let rec = if ASYM { 4 } else { 2 };
    let (mut d16, mut m16) = ([0u16; GROUP], [0u16; GROUP]);
    for l in 0..GROUP {
        let (blk, _, _) = slot(BG, 0, l);
        if blk < t {
            let at = row.add(a.scale_off + ((b0 + blk) >> a.group_shift) * rec);
            d16[l] = at.cast::<u16>().read_unaligned();
            if ASYM {
                m16[l] = at.add(2).cast::<u16>().read_unaligned();
            }
        }
    }
    let d = _mm512_cvtph_ps(_mm256_loadu_si256(d16.as_ptr().cast()));
    _mm512_store_ps(out.cast(), d);
    if ASYM {
        let m = _mm512_cvtph_ps(_mm256_loadu_si256(m16.as_ptr().cast()));
        _mm512_store_ps(out.add(1).cast(), m);
    }
}

/// effbench's packed 2-bit blocks: 8 bytes, element `e` in bits `2(e / 8)` of byte `e % 8`. The
/// four 4-element words of half `h` (elements `16h + 4j..`) are thus byte words `j % 2` shifted
/// by `4h + 2(j / 2)`, which `chunk` returns already masked.
struct P2;
impl Blocks for P2 {
    const BLOCK_BYTES: usize = 8;
    const ZERO: i32 = 2;
    const NIBBLES: bool = false;
    #[inline(always)]
    unsafe fn chunk(p: *const u8, h: usize) -> __m128i {
        let words = _mm_set1_epi64x(p.cast::<i64>().read_unaligned());
        let s = 4 * h as i32;
        let shifted = _mm_srlv_epi32(words, _mm_setr_epi32(s, s, s + 2, s + 2));
        _mm_and_si128(shifted, _mm_set1_epi8(0x03))
    }
    #[inline(always)]
    unsafe fn finish(v: __m512i, _h: usize) -> __m512i {
        v
    }
}

/// One group of one weight row (`w`) against activation rows `x + c * xs`. Every output takes
/// this sequence for every group, whatever the tile.
#[inline(always)]
unsafe fn group<const V: usize, const C: usize, const ASYM: bool>(
    w: *const __m512i,
    x: *const __m512i,
    xs: usize,
    acc: &mut [__m512; C],
) {
    let mut wq = [_mm512_setzero_si512(); V];
    for (v, wv) in wq.iter_mut().enumerate() {
        *wv = _mm512_load_si512(w.add(v).cast());
    }
    let dw = _mm512_load_ps(w.add(V).cast());
    for (c, acc) in acc.iter_mut().enumerate() {
        let xr = x.add(c * xs);
        // Starting from `-z * sum(q)` leaves each block's exact integer dot product. No
        // overflow: a lane sums 32 products of at most 255 * 128, and the start is at most
        // 128 * 32 * 127 in size. With an offset there is no zero point to remove.
        let mut dot = if ASYM {
            _mm512_setzero_si512()
        } else {
            _mm512_load_si512(xr.add(V + 1).cast())
        };
        for (v, &wv) in wq.iter().enumerate() {
            dot = _mm512_dpbusd_epi32(dot, wv, _mm512_load_si512(xr.add(v).cast()));
        }
        let da = _mm512_load_ps(xr.add(V).cast());
        *acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(dw, da), *acc);
        if ASYM {
            // The offset times the block sum, on each block's first lane (the others hold 0).
            let sums = _mm512_load_ps(xr.add(V + 1).cast());
            *acc = _mm512_fmadd_ps(_mm512_load_ps(w.add(V + 1).cast()), sums, *acc);
        }
    }
}

/// Decoded weight row `w` (output column `r`) against activation rows `c0..c0 + C`.
#[inline(always)]
unsafe fn tile<const C: usize, const ASYM: bool>(
    a: &LArgs,
    w: *const __m512i,
    r: usize,
    c0: usize,
) {
    let lay = &a.lay;
    let xs = lay.x_lines;
    let fw = full_w(ASYM);
    let x = a.acts.add(c0 * xs);
    let mut acc = [_mm512_setzero_ps(); C];
    for g in 0..lay.full {
        group::<8, C, ASYM>(w.add(g * fw), x.add(g * FULL_X), xs, &mut acc);
    }
    let (w, x) = (w.add(lay.full * fw), x.add(lay.full * FULL_X));
    match lay.tail_v {
        0 => {}
        1 => group::<1, C, ASYM>(w, x, xs, &mut acc),
        2 => group::<2, C, ASYM>(w, x, xs, &mut acc),
        4 => group::<4, C, ASYM>(w, x, xs, &mut acc),
        _ => group::<8, C, ASYM>(w, x, xs, &mut acc),
    }
    for (c, acc) in acc.iter().enumerate() {
        *a.out.add((c0 + c) * a.n + r) = _mm512_reduce_add_ps(*acc);
    }
}

/// Everything the tasks share, as raw pointers.
pub(crate) struct LArgs {
    w: *const u8,
    row_bytes: usize,
    /// Packed formats: where a row's group records start, and log2 of the blocks per group.
    scale_off: usize,
    group_shift: u32,
    /// How far ahead the weights are prefetched (`crate::prefetch_distance`).
    prefetch: usize,
    n: usize,
    m: usize,
    lay: Layout,
    acts: *const __m512i,
    out: *mut f32,
}

// SAFETY: the pointers are only read, except `out`, which the tasks write at disjoint columns.
unsafe impl Send for LArgs {}
unsafe impl Sync for LArgs {}

/// Output columns `n0..n1` for every activation row.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn rows<F: Rows<ASYM>, const ASYM: bool>(a: &LArgs, n0: usize, n1: usize) {
    let rl = a.lay.w_lines;
    // Fewer activation rows than a tile: decode a row and use it while it is in L1.
    let chunk = if a.m < TILE_C {
        1
    } else {
        (DECODED_BYTES / (rl * 64)).max(1)
    };
    let mut buf = vec![_mm512_setzero_si512(); chunk.min(n1 - n0) * rl];
    let dec = buf.as_mut_ptr();
    let mut r0 = n0;
    while r0 < n1 {
        let r1 = (r0 + chunk).min(n1);
        for r in r0..r1 {
            F::decode_row(a, r, dec.add((r - r0) * rl));
        }
        let mut c = 0;
        while c < a.m {
            let cc = TILE_C.min(a.m - c);
            for r in r0..r1 {
                let w = dec.add((r - r0) * rl);
                match cc {
                    8 => tile::<8, ASYM>(a, w, r, c),
                    7 => tile::<7, ASYM>(a, w, r, c),
                    6 => tile::<6, ASYM>(a, w, r, c),
                    5 => tile::<5, ASYM>(a, w, r, c),
                    4 => tile::<4, ASYM>(a, w, r, c),
                    3 => tile::<3, ASYM>(a, w, r, c),
                    2 => tile::<2, ASYM>(a, w, r, c),
                    _ => tile::<1, ASYM>(a, w, r, c),
                }
            }
            c += cc;
        }
        r0 = r1;
    }
}

type Kernel = unsafe fn(&LArgs, usize, usize);

/// Whether [`matmul`] takes `format`: the GGML formats of 32-element blocks.
pub(crate) fn takes(format: WeightFormat) -> bool {
    use WeightFormat::*;
    matches!(format, Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0)
}

/// `out = x · Wᵀ` for weights of a format [`takes`] admits, `scratch` holding the quantized
/// activations. The caller has checked the sizes and that the CPU has AVX-512 VNNI.
pub(crate) fn matmul(
    format: WeightFormat,
    weights: &[u8],
    n: usize,
    k: usize,
    scratch: &mut Scratch,
    out: &mut [f32],
) {
    let zero = |z| Start::ZeroPoint(z);
    let (kernel, start, asym): (Kernel, Start, bool) = match format {
        WeightFormat::Q4_0 => (rows::<Ggml<Q4_0>, false>, zero(Q4_0::ZERO), false),
        WeightFormat::Q5_0 => (rows::<Ggml<Q5_0>, false>, zero(Q5_0::ZERO), false),
        WeightFormat::Q8_0 => (rows::<Ggml<Q8_0>, false>, zero(Q8_0::ZERO), false),
        WeightFormat::Q4_1 => (rows::<Ggml<Q4_1>, true>, Start::BlockSums, true),
        WeightFormat::Q5_1 => (rows::<Ggml<Q5_1>, true>, Start::BlockSums, true),
        _ => unreachable!("`takes` admits the formats of 32-element blocks only"),
    };
    let lay = Layout::new(k / QK, asym);
    let row_bytes = (k / QK) * format.block_bytes();
    run(
        kernel,
        lay,
        start,
        weights,
        row_bytes,
        (0, 0),
        n,
        k,
        scratch,
        out,
    );
}

/// `out = x · Wᵀ` for one of effbench's packed formats with groups of 32 or more, `scratch`
/// holding the activations quantized at the padded `k`. The caller has checked the sizes and
/// that the CPU has AVX-512 VNNI.
pub(crate) fn matmul_packed(
    format: PackedFormat,
    weights: &[u8],
    n: usize,
    k: usize,
    scratch: &mut Scratch,
    out: &mut [f32],
) {
    let kp = PackedFormat::padded_k(k);
    let (kernel, start): (Kernel, Start) = match (format.bits(), format.asym()) {
        (4, false) => (rows::<Packed<P4, false>, false>, Start::ZeroPoint(P4::ZERO)),
        (4, true) => (rows::<Packed<P4, true>, true>, Start::BlockSums),
        (2, false) => (rows::<Packed<P2, false>, false>, Start::ZeroPoint(P2::ZERO)),
        (2, true) => (rows::<Packed<P2, true>, true>, Start::BlockSums),
        _ => unreachable!("PackedFormat::new admits 2 or 4 bits"),
    };
    debug_assert!(
        format.group() >= QK,
        "groups of 16 take the tiles of packed.rs"
    );
    let records = (
        kp * format.bits() as usize / 8,
        (format.group() / QK).trailing_zeros(),
    );
    let lay = Layout::new(kp / QK, format.asym());
    let row_bytes = format.row_bytes(k);
    run(
        kernel, lay, start, weights, row_bytes, records, n, kp, scratch, out,
    );
}

/// Lays out the activations and runs `kernel` over the weight rows in tasks.
#[allow(clippy::too_many_arguments)]
fn run(
    kernel: Kernel,
    lay: Layout,
    start: Start,
    weights: &[u8],
    row_bytes: usize,
    (scale_off, group_shift): (usize, u32),
    n: usize,
    k: usize,
    scratch: &mut Scratch,
    out: &mut [f32],
) {
    prepare_acts(scratch, &lay, start);
    let m = scratch.m;
    let args = LArgs {
        w: weights.as_ptr(),
        row_bytes,
        scale_off,
        group_shift,
        prefetch: crate::prefetch_distance(),
        n,
        m,
        lay,
        acts: scratch.lanes.as_ptr().cast(),
        out: out.as_mut_ptr(),
    };
    // SAFETY: the caller checked the CPU and the sizes; `lanes` holds `m` rows of the layout,
    // and tasks write disjoint columns of `out`.
    crate::split_rows(n, m, k, &|n0, n1| unsafe { kernel(&args, n0, n1) });
}
