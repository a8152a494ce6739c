//! effbench's own group-quantized int4/int2 weight formats, for the shapes no GGML type covers
//! bit for bit (int4 with groups of 64 or 128, int2 with groups of 16, 32 or 64).
//!
//! Layout of an `(n, k)` matrix: `k` is padded with zeros to `kp`, a multiple of 32 (the
//! activation block), and each row is stored contiguously as
//! `[quants: kp * bits / 8 bytes][scales: one record per group]`, so a decode matvec streams
//! every weight row exactly once. Within each block of 32 elements:
//! - int4: 16 bytes; low nibble of byte `j` is element `j`, high nibble element `j + 16` (ggml's
//!   order, so the unpacked lanes line up with an activation block);
//! - int2: 8 bytes; bits `2s..2s+2` of byte `j` are element `j + 8s`.
//!
//! A group record is `d` (f16), followed by `m` (f16) when asymmetric. An element decodes to
//! `d * q + m` (asymmetric) or `d * (q - 2^(bits-1))` (symmetric, as ggml's Q4_0), `q` in
//! `0..2^bits`. A group of 16 covers half an activation block; groups of 32 or more cover whole
//! blocks, the last group of a row possibly short when `group` does not divide `kp`.

use half::f16;

use crate::q8::{Scratch, QK};
use crate::KernelError;

/// One of effbench's own packed formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PackedFormat {
    bits: u32,
    group: usize,
    asym: bool,
}

impl PackedFormat {
    /// `bits` is 2 or 4; `group` is a power of two from 16.
    pub fn new(bits: u32, group: usize, asym: bool) -> Result<Self, KernelError> {
        if bits != 2 && bits != 4 {
            return Err(KernelError::BadPackedFormat(format!(
                "{bits} bits (expected 2 or 4)"
            )));
        }
        if group != 16 && (group < QK || !group.is_power_of_two()) {
            return Err(KernelError::BadPackedFormat(format!(
                "group {group} (expected 16, 32, 64, 128, ...)"
            )));
        }
        Ok(Self { bits, group, asym })
    }

    pub fn bits(self) -> u32 {
        self.bits
    }

    pub fn group(self) -> usize {
        self.group
    }

    pub fn asym(self) -> bool {
        self.asym
    }

    /// `k` rounded up to the activation block.
    pub fn padded_k(k: usize) -> usize {
        k.div_ceil(QK) * QK
    }

    pub fn groups_per_row(self, k: usize) -> usize {
        Self::padded_k(k).div_ceil(self.group)
    }

    fn quant_bytes_per_row(self, k: usize) -> usize {
        Self::padded_k(k) * self.bits as usize / 8
    }

    fn record_bytes(self) -> usize {
        if self.asym {
            4
        } else {
            2
        }
    }

    pub fn row_bytes(self, k: usize) -> usize {
        self.quant_bytes_per_row(k) + self.groups_per_row(k) * self.record_bytes()
    }

    pub fn matrix_bytes(self, n: usize, k: usize) -> usize {
        n * self.row_bytes(k)
    }

    /// [`Self::matrix_bytes`] for dimensions read from a file: `None` where the size would not
    /// fit in a `usize`, instead of wrapping to a small number that then passes a length check.
    pub fn checked_matrix_bytes(self, n: usize, k: usize) -> Option<usize> {
        let padded = k.checked_next_multiple_of(QK)?;
        let quant = padded.checked_mul(self.bits as usize)? / 8;
        let records = padded
            .div_ceil(self.group)
            .checked_mul(self.record_bytes())?;
        n.checked_mul(quant.checked_add(records)?)
    }

    /// The offset that the symmetric form folds into `m`: `d * (q - z) = d * q + (-z d)`.
    fn zero(self) -> f32 {
        (1u32 << (self.bits - 1)) as f32
    }

    /// Packs row-major quants `q` (`n * k`, each `< 2^bits`) and per-group `d` and `m`
    /// (`n * groups_per_row(k)` each; `m` is ignored when symmetric) into this format's bytes.
    pub fn pack(
        self,
        q: &[u8],
        d: &[f16],
        m: &[f16],
        n: usize,
        k: usize,
    ) -> Result<Vec<u8>, KernelError> {
        let groups = self.groups_per_row(k);
        if q.len() != n * k || d.len() != n * groups || (self.asym && m.len() != n * groups) {
            return Err(KernelError::BadPackedFormat(format!(
                "pack: {} quants and {} scales for an ({n}, {k}) matrix with {groups} groups a row",
                q.len(),
                d.len()
            )));
        }
        let qmax = (1u32 << self.bits) as u8;
        if let Some(bad) = q.iter().find(|&&v| v >= qmax) {
            return Err(KernelError::BadPackedFormat(format!(
                "pack: quant {bad} does not fit in {} bits",
                self.bits
            )));
        }
        let kp = Self::padded_k(k);
        let qb = self.quant_bytes_per_row(k);
        let mut out = vec![0u8; self.matrix_bytes(n, k)];
        let mut padded = vec![0u8; kp];
        for (r, row) in out.chunks_exact_mut(self.row_bytes(k)).enumerate() {
            padded[..k].copy_from_slice(&q[r * k..(r + 1) * k]);
            padded[k..].fill(0);
            let (quants, scales) = row.split_at_mut(qb);
            let block_bytes = QK * self.bits as usize / 8;
            for (blk, dst) in padded
                .chunks_exact(QK)
                .zip(quants.chunks_exact_mut(block_bytes))
            {
                if self.bits == 4 {
                    for j in 0..16 {
                        dst[j] = blk[j] | (blk[j + 16] << 4);
                    }
                } else {
                    for j in 0..8 {
                        dst[j] =
                            blk[j] | (blk[j + 8] << 2) | (blk[j + 16] << 4) | (blk[j + 24] << 6);
                    }
                }
            }
            for (g, rec) in scales.chunks_exact_mut(self.record_bytes()).enumerate() {
                rec[..2].copy_from_slice(&d[r * groups + g].to_le_bytes());
                if self.asym {
                    rec[2..4].copy_from_slice(&m[r * groups + g].to_le_bytes());
                }
            }
        }
        Ok(out)
    }

    /// Element `i < kp` of a packed row: `(q, d, m)` with value `d * q + m`.
    fn element(self, row: &[u8], k: usize, i: usize) -> (i32, f32, f32) {
        let b = i / QK;
        let j = i % QK;
        let q = if self.bits == 4 {
            let byte = row[b * 16 + j % 16];
            if j < 16 {
                byte & 0x0f
            } else {
                byte >> 4
            }
        } else {
            (row[b * 8 + j % 8] >> (2 * (j / 8))) & 0x03
        } as i32;
        let (d, m) = self.record(row, k, i / self.group);
        (q, d, m)
    }

    /// `(d, m)` of group `g` of a packed row, in the affine form.
    fn record(self, row: &[u8], k: usize, g: usize) -> (f32, f32) {
        let at = self.quant_bytes_per_row(k) + g * self.record_bytes();
        let d = f16::from_le_bytes([row[at], row[at + 1]]).to_f32();
        let m = if self.asym {
            f16::from_le_bytes([row[at + 2], row[at + 3]]).to_f32()
        } else {
            -self.zero() * d
        };
        (d, m)
    }

    /// The quant of every element, row-major `(n, k)`, as packed.
    pub fn unpack_quants(self, weights: &[u8], n: usize, k: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n * k);
        for row in weights.chunks_exact(self.row_bytes(k)).take(n) {
            out.extend((0..k).map(|i| self.element(row, k, i).0 as u8));
        }
        out
    }

    fn check(self, weights: &[u8], n: usize, k: usize) -> Result<(), KernelError> {
        let expected = self.matrix_bytes(n, k);
        if weights.len() != expected {
            return Err(KernelError::PackedLen {
                format: self,
                n,
                k,
                expected,
                got: weights.len(),
            });
        }
        Ok(())
    }
}

/// Dequantizes an `(n, k)` packed matrix to row-major f32.
pub fn dequantize_packed(
    format: PackedFormat,
    weights: &[u8],
    n: usize,
    k: usize,
) -> Result<Vec<f32>, KernelError> {
    format.check(weights, n, k)?;
    let mut out = Vec::with_capacity(n * k);
    for row in weights.chunks_exact(format.row_bytes(k)) {
        out.extend((0..k).map(|i| {
            let (q, d, m) = format.element(row, k, i);
            if format.asym {
                d * q as f32 + m
            } else {
                // One rounding, like ggml's Q4_0, rather than the affine form's two.
                d * (q as f32 - format.zero())
            }
        }));
    }
    Ok(out)
}

/// The scalar kernel on quantized activations: the portable path and the SIMD kernels' oracle.
pub(crate) fn matmul_quantized(
    format: PackedFormat,
    weights: &[u8],
    n: usize,
    k: usize,
    acts: &Scratch,
    out: &mut [f32],
) {
    let nb = PackedFormat::padded_k(k) / QK;
    let rb = format.row_bytes(k);
    // Sub-blocks of one group each: 16 elements for groups of 16, else the whole block.
    let sub = format.group.min(QK);
    for c in 0..acts.m {
        let q8_row = &acts.qs[c * acts.kp()..];
        for r in 0..n {
            let row = &weights[r * rb..(r + 1) * rb];
            let mut sum = 0f32;
            for b in 0..nb {
                let d8 = acts.d[c * acts.nbp + b];
                for s0 in (0..QK).step_by(sub) {
                    let i0 = b * QK + s0;
                    let (mut dot, mut asum) = (0i32, 0i32);
                    for (i, &a) in (i0..).zip(&q8_row[i0..i0 + sub]) {
                        let a = a as i32;
                        dot += format.element(row, k, i).0 * a;
                        asum += a;
                    }
                    let (d, m) = format.record(row, k, i0 / format.group);
                    sum += d * d8 * dot as f32 + m * d8 * asum as f32;
                }
            }
            out[c * n + r] = sum;
        }
    }
}

/// `out (m, n) = x (m, k) · Wᵀ` for a packed `(n, k)` matrix, computed by the portable scalar
/// kernel (single-threaded).
pub fn matmul_packed_reference(
    format: PackedFormat,
    weights: &[u8],
    n: usize,
    k: usize,
    x: &[f32],
    m: usize,
    out: &mut [f32],
) -> Result<(), KernelError> {
    check_all(format, weights, n, k, x, m, out)?;
    let mut scratch = Scratch::new();
    scratch.quantize_scalar(
        &pad_x(x, m, k).unwrap_or_else(|| x.to_vec()),
        m,
        PackedFormat::padded_k(k),
        crate::q8::BlockSums::Exact,
    );
    matmul_quantized(format, weights, n, k, &scratch, out);
    Ok(())
}

pub(crate) fn check_all(
    format: PackedFormat,
    weights: &[u8],
    n: usize,
    k: usize,
    x: &[f32],
    m: usize,
    out: &[f32],
) -> Result<(), KernelError> {
    format.check(weights, n, k)?;
    crate::check_activations(n, k, x, m, out)
}

/// `x` with each row zero-padded to a multiple of 32, or None when no padding is needed.
pub(crate) fn pad_x(x: &[f32], m: usize, k: usize) -> Option<Vec<f32>> {
    let kp = PackedFormat::padded_k(k);
    if kp == k {
        return None;
    }
    let mut padded = vec![0f32; m * kp];
    for (dst, src) in padded.chunks_exact_mut(kp).zip(x.chunks_exact(k)) {
        dst[..k].copy_from_slice(src);
    }
    Some(padded)
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod simd {
    //! AVX2 (and AVX-VNNI) tiles for the packed formats, built like `x86.rs`: `R` weight rows
    //! unpacked once per block and reused against `C` activation rows.
    use std::arch::x86_64::*;

    use crate::q8::{QK, ROW_GROUP};
    use crate::x86::{Avx2Dot, AvxVnniDot, Dot};

    #[derive(Clone, Copy)]
    pub(crate) struct PArgs {
        pub w: *const u8,
        pub row_bytes: usize,
        /// Offset of the group records within a row.
        pub scale_off: usize,
        /// Blocks of 32 per row (padded `k` / 32).
        pub nb: usize,
        /// log2 of the blocks per group (groups of 32 or more are powers of two blocks).
        pub group_shift: u32,
        /// The symmetric zero point `2^(bits-1)`.
        pub zero: f32,
        pub n: usize,
        pub m: usize,
        pub kp: usize,
        pub nbp: usize,
        pub qs: *const i8,
        pub d: *const f32,
        pub s: *const f32,
        pub out: *mut f32,
    }

    // SAFETY: the pointers are only read, except `out`, which tasks write at disjoint columns.
    unsafe impl Send for PArgs {}
    unsafe impl Sync for PArgs {}

    #[inline(always)]
    unsafe fn unpack<const BITS: u32>(p: *const u8) -> __m256i {
        if BITS == 4 {
            let raw = _mm256_broadcastsi128_si256(_mm_loadu_si128(p.cast()));
            let shifted = _mm256_srlv_epi64(raw, _mm256_setr_epi64x(0, 0, 4, 4));
            _mm256_and_si256(shifted, _mm256_set1_epi8(0x0f))
        } else {
            let raw = _mm256_set1_epi64x(p.cast::<i64>().read_unaligned());
            let shifted = _mm256_srlv_epi64(raw, _mm256_setr_epi64x(0, 2, 4, 6));
            _mm256_and_si256(shifted, _mm256_set1_epi8(0x03))
        }
    }

    #[inline(always)]
    unsafe fn hsum(v: __m256) -> f32 {
        let x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let x = _mm_add_ps(x, _mm_movehl_ps(x, x));
        let x = _mm_add_ss(x, _mm_movehdup_ps(x));
        _mm_cvtss_f32(x)
    }

    /// A tile for groups of 32 or more: one `(d, m)` per block, and the offset folded in once
    /// per block through the activation block sums `s`, as in `x86.rs`.
    #[allow(clippy::needless_range_loop)]
    #[inline(always)]
    unsafe fn tile_whole<
        const BITS: u32,
        const ASYM: bool,
        D: Dot,
        const R: usize,
        const C: usize,
    >(
        a: &PArgs,
        n0: usize,
        c0: usize,
    ) {
        let mut acc = [[_mm256_setzero_ps(); C]; R];
        let mut acc_min = [_mm_setzero_ps(); R];
        let w0 = a.w.add(n0 * a.row_bytes);
        let qbytes = QK * BITS as usize / 8;
        let rec = if ASYM { 4 } else { 2 };
        let neg_zero = _mm_set1_ps(-a.zero);
        for b in 0..a.nb {
            let g = b >> a.group_shift;
            let mut wq = [_mm256_setzero_si256(); R];
            let mut d4 = [_mm256_setzero_ps(); R];
            let s8 = _mm_loadu_ps(a.s.add(((c0 / ROW_GROUP) * a.nbp + b) * ROW_GROUP));
            for r in 0..R {
                let row = w0.add(r * a.row_bytes);
                wq[r] = unpack::<BITS>(row.add(b * qbytes));
                let sp = row.add(a.scale_off + g * rec);
                let (d, m) = if ASYM {
                    let dm = _mm_cvtph_ps(_mm_cvtsi32_si128(sp.cast::<i32>().read_unaligned()));
                    (_mm_permute_ps::<0>(dm), _mm_permute_ps::<0x55>(dm))
                } else {
                    let d =
                        _mm_cvtph_ps(_mm_cvtsi32_si128(sp.cast::<u16>().read_unaligned() as i32));
                    let d = _mm_permute_ps::<0>(d);
                    (d, _mm_mul_ps(d, neg_zero))
                };
                d4[r] = _mm256_set_m128(d, d);
                acc_min[r] = _mm_fmadd_ps(m, s8, acc_min[r]);
            }
            for c in 0..C {
                let q8 = _mm256_loadu_si256(a.qs.add((c0 + c) * a.kp + b * QK).cast());
                let d8 = _mm256_broadcast_ss(&*a.d.add((c0 + c) * a.nbp + b));
                for r in 0..R {
                    let p = _mm256_cvtepi32_ps(D::dot(wq[r], q8));
                    acc[r][c] = _mm256_fmadd_ps(p, _mm256_mul_ps(d4[r], d8), acc[r][c]);
                }
            }
        }
        for r in 0..R {
            let mut mins = [0f32; 4];
            _mm_storeu_ps(mins.as_mut_ptr(), acc_min[r]);
            for c in 0..C {
                *a.out.add((c0 + c) * a.n + n0 + r) = hsum(acc[r][c]) + mins[c];
            }
        }
    }

    /// A tile for groups of 16: two groups per block, so the scales become per-lane vectors
    /// (`dot` lanes 0..4 sum elements 0..16) and the offsets need the activation sums per half,
    /// taken once per activation block and reused by all `R` weight rows.
    #[allow(clippy::needless_range_loop)]
    #[inline(always)]
    unsafe fn tile_half<
        const BITS: u32,
        const ASYM: bool,
        D: Dot,
        const R: usize,
        const C: usize,
    >(
        a: &PArgs,
        n0: usize,
        c0: usize,
    ) {
        let mut acc = [[_mm256_setzero_ps(); C]; R];
        let w0 = a.w.add(n0 * a.row_bytes);
        let qbytes = QK * BITS as usize / 8;
        let ones = _mm256_set1_epi8(1);
        let neg_zero = _mm256_set1_ps(-a.zero);
        for b in 0..a.nb {
            let mut wq = [_mm256_setzero_si256(); R];
            let mut dv = [_mm256_setzero_ps(); R];
            let mut mv = [_mm256_setzero_ps(); R];
            for r in 0..R {
                let row = w0.add(r * a.row_bytes);
                wq[r] = unpack::<BITS>(row.add(b * qbytes));
                let sp = row.add(a.scale_off + 2 * b * if ASYM { 4 } else { 2 });
                if ASYM {
                    // [d0, m0, d1, m1]
                    let dm = _mm_cvtph_ps(_mm_loadl_epi64(sp.cast()));
                    let d = _mm_shuffle_ps::<0b1010_0000>(dm, dm); // d0 d0 d1 d1
                    let m = _mm_shuffle_ps::<0b1111_0101>(dm, dm); // m0 m0 m1 m1
                    dv[r] = _mm256_permutevar8x32_ps(
                        _mm256_castps128_ps256(d),
                        _mm256_setr_epi32(0, 0, 0, 0, 2, 2, 2, 2),
                    );
                    mv[r] = _mm256_permutevar8x32_ps(
                        _mm256_castps128_ps256(m),
                        _mm256_setr_epi32(0, 0, 0, 0, 2, 2, 2, 2),
                    );
                } else {
                    let d = _mm_cvtph_ps(_mm_cvtsi32_si128(sp.cast::<i32>().read_unaligned()));
                    dv[r] = _mm256_permutevar8x32_ps(
                        _mm256_castps128_ps256(d),
                        _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1),
                    );
                    mv[r] = _mm256_mul_ps(dv[r], neg_zero);
                }
            }
            for c in 0..C {
                let q8 = _mm256_loadu_si256(a.qs.add((c0 + c) * a.kp + b * QK).cast());
                let d8 = _mm256_broadcast_ss(&*a.d.add((c0 + c) * a.nbp + b));
                let t = _mm256_mul_ps(_mm256_cvtepi32_ps(D::dot(ones, q8)), d8);
                for r in 0..R {
                    let p = _mm256_cvtepi32_ps(D::dot(wq[r], q8));
                    let acc1 = _mm256_fmadd_ps(p, _mm256_mul_ps(dv[r], d8), acc[r][c]);
                    acc[r][c] = _mm256_fmadd_ps(t, mv[r], acc1);
                }
            }
        }
        for r in 0..R {
            for c in 0..C {
                *a.out.add((c0 + c) * a.n + n0 + r) = hsum(acc[r][c]);
            }
        }
    }

    #[inline(always)]
    unsafe fn tile<const BITS: u32, const ASYM: bool, const HALF: bool, D: Dot, const R: usize>(
        a: &PArgs,
        n0: usize,
        c0: usize,
        c: usize,
    ) {
        macro_rules! go {
            ($c:literal) => {
                if HALF {
                    tile_half::<BITS, ASYM, D, R, $c>(a, n0, c0)
                } else {
                    tile_whole::<BITS, ASYM, D, R, $c>(a, n0, c0)
                }
            };
        }
        match c {
            4 => go!(4),
            3 => go!(3),
            2 => go!(2),
            1 => go!(1),
            _ => unreachable!(),
        }
    }

    #[inline(always)]
    unsafe fn rows<const BITS: u32, const ASYM: bool, const HALF: bool, D: Dot>(
        a: &PArgs,
        n0: usize,
        n1: usize,
    ) {
        const R: usize = if cfg!(target_feature = "avx512vl") {
            4
        } else {
            2
        };
        // Decode (one activation row) takes one weight row at a time: a single sequential
        // stream, where R rows side by side are R interleaved streams that DRAM serves at about
        // half the rate (see avx512.rs). Each output's arithmetic is the same either way.
        let r_max = if a.m == 1 { 1 } else { R };
        let mut r = n0;
        while r < n1 {
            let rr = r_max.min(n1 - r);
            let mut c = 0;
            while c < a.m {
                let cc = ROW_GROUP.min(a.m - c);
                match rr {
                    4 => tile::<BITS, ASYM, HALF, D, 4>(a, r, c, cc),
                    3 => tile::<BITS, ASYM, HALF, D, 3>(a, r, c, cc),
                    2 => tile::<BITS, ASYM, HALF, D, 2>(a, r, c, cc),
                    1 => tile::<BITS, ASYM, HALF, D, 1>(a, r, c, cc),
                    _ => unreachable!(),
                }
                c += cc;
            }
            r += rr;
        }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn rows_avx2<const BITS: u32, const ASYM: bool, const HALF: bool>(
        a: &PArgs,
        n0: usize,
        n1: usize,
    ) {
        rows::<BITS, ASYM, HALF, Avx2Dot>(a, n0, n1)
    }

    /// `vpdpbusd` on 256-bit vectors through AVX-512 VL (CPUs with AVX-512 VNNI but not
    /// AVX-VNNI, and the choice on any AVX-512 VNNI CPU: same instruction, no VEX/EVEX mix).
    struct Avx512VlVnniDot;
    impl Dot for Avx512VlVnniDot {
        #[inline(always)]
        unsafe fn dot(u: __m256i, s: __m256i) -> __m256i {
            _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s)
        }
    }

    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
    pub(crate) unsafe fn rows_avx512vnni<const BITS: u32, const ASYM: bool, const HALF: bool>(
        a: &PArgs,
        n0: usize,
        n1: usize,
    ) {
        rows::<BITS, ASYM, HALF, Avx512VlVnniDot>(a, n0, n1)
    }

    #[target_feature(enable = "avx2,fma,f16c,avxvnni")]
    pub(crate) unsafe fn rows_avxvnni<const BITS: u32, const ASYM: bool, const HALF: bool>(
        a: &PArgs,
        n0: usize,
        n1: usize,
    ) {
        rows::<BITS, ASYM, HALF, AvxVnniDot>(a, n0, n1)
    }
}
