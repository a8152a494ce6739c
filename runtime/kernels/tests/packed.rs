//! effbench's own int4/int2 packed formats: pack/unpack round trip, the SIMD kernels against the
//! scalar reference, and both against the exact f32 product of the dequantized weights, on odd
//! shapes (k not a multiple of 32 or of the group, partial row tiles, 1 and many tokens).

mod common;

use common::assert_rows_independent;
use effbench_kernels::{
    dequantize_packed, matmul_packed, matmul_packed_reference, matmul_packed_with, Isa,
    KernelError, PackedFormat, Scratch,
};
use half::f16;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// (n, k): SmolLM2 shapes, k not a multiple of 32 (40, 100) or of the group (576 for g128).
const SHAPES: [(usize, usize); 6] = [(1, 16), (5, 40), (37, 100), (101, 576), (64, 1536), (7, 96)];
const TOKENS: [usize; 4] = [1, 3, 4, 9];

fn formats() -> Vec<PackedFormat> {
    let mut out = Vec::new();
    for (bits, groups) in [
        (4u32, &[16usize, 32, 64, 128, 1024][..]),
        (2, &[16, 32, 64][..]),
    ] {
        for &g in groups {
            for asym in [false, true] {
                out.push(PackedFormat::new(bits, g, asym).unwrap());
            }
        }
    }
    out
}

fn random_matrix(f: PackedFormat, n: usize, k: usize, rng: &mut StdRng) -> Vec<u8> {
    let groups = f.groups_per_row(k);
    let q: Vec<u8> = (0..n * k)
        .map(|_| rng.random_range(0..(1u32 << f.bits())) as u8)
        .collect();
    let d: Vec<f16> = (0..n * groups)
        .map(|_| f16::from_f32(rng.random_range(0.001f32..0.05)))
        .collect();
    let m: Vec<f16> = (0..n * groups)
        .map(|_| f16::from_f32(rng.random_range(-0.2f32..0.1)))
        .collect();
    let packed = f.pack(&q, &d, &m, n, k).unwrap();
    assert_eq!(f.unpack_quants(&packed, n, k), q, "{f:?} quants round trip");
    packed
}

fn random_x(m: usize, k: usize, rng: &mut StdRng) -> Vec<f32> {
    (0..m * k)
        .map(|i| rng.random_range(-1.0f32..1.0) * [0.1f32, 1.0, 10.0][(i / 32) % 3])
        .collect()
}

#[test]
fn bits_per_weight_match_the_format() {
    // int4 g32 asym: 4 bits + 32 bits of (d, m) per 32 = 5.0; int2 g32 asym: 3.0.
    let bpw = |f: PackedFormat| f.matrix_bytes(64, 4096) as f64 * 8.0 / (64.0 * 4096.0);
    assert_eq!(bpw(PackedFormat::new(4, 32, true).unwrap()), 5.0);
    assert_eq!(bpw(PackedFormat::new(2, 32, true).unwrap()), 3.0);
    assert_eq!(bpw(PackedFormat::new(2, 16, false).unwrap()), 3.0);
    assert_eq!(bpw(PackedFormat::new(4, 128, false).unwrap()), 4.125);
    assert_eq!(bpw(PackedFormat::new(2, 64, true).unwrap()), 2.5);
}

#[test]
fn simd_and_scalar_equal_the_exact_product() {
    let mut rng = StdRng::seed_from_u64(7);
    let isas: Vec<Isa> = Isa::available();
    for f in formats() {
        for (n, k) in SHAPES {
            let w = random_matrix(f, n, k, &mut rng);
            let wf = dequantize_packed(f, &w, n, k).unwrap();
            for m in TOKENS {
                let x = random_x(m, k, &mut rng);
                let mut reference = vec![0f32; m * n];
                matmul_packed_reference(f, &w, n, k, &x, m, &mut reference).unwrap();
                for c in 0..m {
                    let xr = &x[c * k..(c + 1) * k];
                    for r in 0..n {
                        let wr = &wf[r * k..(r + 1) * k];
                        let exact: f64 =
                            wr.iter().zip(xr).map(|(&a, &b)| a as f64 * b as f64).sum();
                        // 8-bit activations: each within d8/2 = amax/254 of its block.
                        let mut bound = 0f64;
                        let mut mag = 0f64;
                        for (wb, xb) in wr.chunks(32).zip(xr.chunks(32)) {
                            let amax = xb.iter().fold(0f32, |a, &v| a.max(v.abs())) as f64;
                            let wmax = wb.iter().fold(0f64, |a, &v| a.max((v as f64).abs()));
                            bound +=
                                wb.iter().map(|&v| (v as f64).abs()).sum::<f64>() * amax / 254.0;
                            mag += (wmax * 3.0 + 0.4)
                                * xb.iter().map(|&v| (v as f64).abs()).sum::<f64>();
                        }
                        let got = reference[c * n + r] as f64;
                        assert!(
                            (got - exact).abs() <= bound + 1e-5 * mag + 1e-6,
                            "{f:?} ({n},{k}) m={m} [{c},{r}]: scalar {got} vs exact {exact} (bound {bound})"
                        );
                    }
                }
                for &isa in &isas {
                    let mut out = vec![0f32; m * n];
                    matmul_packed_with(isa, f, &w, n, k, &x, m, &mut out, &mut Scratch::new())
                        .unwrap();
                    for (i, (&a, &b)) in out.iter().zip(&reference).enumerate() {
                        assert!(
                            (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                            "{f:?} {isa:?} ({n},{k}) m={m} out[{i}]: {a} vs scalar {b}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn threaded_default_entry_point_matches_reference_on_a_large_shape() {
    let mut rng = StdRng::seed_from_u64(3);
    let (n, k, m) = (1536, 576, 64);
    for f in [
        PackedFormat::new(4, 128, false).unwrap(),
        PackedFormat::new(2, 16, true).unwrap(),
    ] {
        let w = random_matrix(f, n, k, &mut rng);
        let x = random_x(m, k, &mut rng);
        let (mut a, mut b) = (vec![0f32; m * n], vec![0f32; m * n]);
        matmul_packed(f, &w, n, k, &x, m, &mut a).unwrap();
        matmul_packed_reference(f, &w, n, k, &x, m, &mut b).unwrap();
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()));
        }
    }
}

#[test]
fn bad_sizes_and_formats_are_errors() {
    assert!(matches!(
        PackedFormat::new(3, 32, true),
        Err(KernelError::BadPackedFormat(_))
    ));
    assert!(PackedFormat::new(4, 48, true).is_err());
    let f = PackedFormat::new(2, 32, true).unwrap();
    let mut out = vec![0f32; 2];
    let err = matmul_packed(f, &[0u8; 5], 2, 32, &[0f32; 32], 1, &mut out).unwrap_err();
    assert!(
        matches!(err, KernelError::PackedLen { expected: 24, .. }),
        "{err}"
    );
    assert!(f
        .pack(&[4u8; 32], &[f16::ONE], &[f16::ZERO], 1, 32)
        .is_err());
}

/// A row's outputs must not change with how many rows share the call, on either side of the
/// switch from one-weight-row streaming to multi-row tiles.
#[test]
fn a_rows_outputs_do_not_depend_on_how_many_rows_share_the_call() {
    let mut rng = StdRng::seed_from_u64(9);
    let (n, k) = (37, 100);
    for f in formats() {
        let w = random_matrix(f, n, k, &mut rng);
        for m in [2, 5, 16, 17] {
            let x = random_x(m, k, &mut rng);
            for isa in Isa::available() {
                let mut scratch = Scratch::new();
                let what = format!("{isa:?} {f:?}");
                assert_rows_independent(&x, m, (n, k), &what, |x, m, out| {
                    matmul_packed_with(isa, f, &w, n, k, x, m, out, &mut scratch).unwrap()
                });
            }
        }
    }
}
