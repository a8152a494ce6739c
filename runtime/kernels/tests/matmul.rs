//! The SIMD kernels against the scalar reference, against exact f32 arithmetic (within the
//! error that 8-bit activations imply), and against candle's own quantized matmul.

mod common;

use candle_core::quantized::{gguf_file, GgmlDType, QMatMul, QStorage, QTensor};
use candle_core::{Device, Module, Tensor};
use common::assert_rows_independent;
use effbench_kernels::{
    dequantize, matmul, matmul_q4_1, matmul_with, reference, Isa, KernelError, Scratch,
    WeightFormat,
};
use half::f16;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const FORMATS: [WeightFormat; 5] = [
    WeightFormat::Q4_1,
    WeightFormat::Q4_0,
    WeightFormat::Q8_0,
    WeightFormat::Q5_0,
    WeightFormat::Q5_1,
];

/// The same formats as candle names them.
const CANDLE_FORMATS: [(WeightFormat, GgmlDType); 5] = [
    (WeightFormat::Q4_1, GgmlDType::Q4_1),
    (WeightFormat::Q4_0, GgmlDType::Q4_0),
    (WeightFormat::Q8_0, GgmlDType::Q8_0),
    (WeightFormat::Q5_0, GgmlDType::Q5_0),
    (WeightFormat::Q5_1, GgmlDType::Q5_1),
];

/// (n, k): SmolLM2's projection shapes, single blocks, and `n` that leave partial 4-row tiles
/// and partial rayon tasks.
const SHAPES: [(usize, usize); 7] = [
    (1536, 576),
    (576, 1536),
    (192, 576),
    (1, 32),
    (5, 64),
    (37, 96),
    (101, 1536),
];

/// Random but well-formed blocks: positive scales of a realistic size, offsets of either sign,
/// every quant value (including -128 for Q8_0, the edge of the sign trick, and every Q5 `qh`
/// bit pattern).
fn random_weights(format: WeightFormat, n: usize, k: usize, rng: &mut StdRng) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(format.matrix_bytes(n, k));
    for _ in 0..n * k / 32 {
        let d = f16::from_f32(rng.random_range(0.001f32..0.05));
        bytes.extend_from_slice(&d.to_le_bytes());
        match format {
            WeightFormat::Q4_1 => {
                let m = f16::from_f32(rng.random_range(-0.4f32..0.1));
                bytes.extend_from_slice(&m.to_le_bytes());
                bytes.extend((0..16).map(|_| rng.random::<u8>()));
            }
            WeightFormat::Q4_0 => bytes.extend((0..16).map(|_| rng.random::<u8>())),
            WeightFormat::Q8_0 => bytes.extend((0..32).map(|_| rng.random::<u8>())),
            WeightFormat::Q5_0 => bytes.extend((0..20).map(|_| rng.random::<u8>())),
            WeightFormat::Q5_1 => {
                let m = f16::from_f32(rng.random_range(-0.8f32..0.2));
                bytes.extend_from_slice(&m.to_le_bytes());
                bytes.extend((0..20).map(|_| rng.random::<u8>()));
            }
            _ => unreachable!("K-quants are tested in tests/kquants.rs"),
        }
    }
    bytes
}

/// Activations with a spread of block magnitudes, plus one all-zero block (scale 0).
fn random_x(m: usize, k: usize, rng: &mut StdRng) -> Vec<f32> {
    let mut x: Vec<f32> = (0..m * k)
        .map(|i| {
            let scale = [0.1f32, 1.0, 10.0][(i / 32) % 3];
            rng.random_range(-1.0f32..1.0) * scale
        })
        .collect();
    x[..32].fill(0.0);
    x
}

/// Per output: the exact product of dequantized weights and f32 activations (in f64), the
/// error bound that 8-bit activations allow, and the magnitude that f32 rounding scales with.
struct Exact {
    value: Vec<f64>,
    q8_bound: Vec<f64>,
    magnitude: Vec<f64>,
}

fn exact(format: WeightFormat, w: &[u8], n: usize, k: usize, x: &[f32], m: usize) -> Exact {
    let wf = dequantize(format, w, n, k).unwrap();
    let mut e = Exact {
        value: vec![0.0; m * n],
        q8_bound: vec![0.0; m * n],
        magnitude: vec![0.0; m * n],
    };
    for c in 0..m {
        let xr = &x[c * k..(c + 1) * k];
        for r in 0..n {
            let wr = &wf[r * k..(r + 1) * k];
            let (mut v, mut bound, mut mag) = (0f64, 0f64, 0f64);
            for (wb, xb) in wr.chunks(32).zip(xr.chunks(32)) {
                // Each activation is rounded to the nearest multiple of d8 = amax / 127 (no
                // clamping: |x / d8| <= 127), an error of at most d8 / 2 per element; the
                // output error is therefore at most sum_i |w_i| * d8 / 2 per block.
                let amax = xb.iter().fold(0f32, |a, &v| a.max(v.abs())) as f64;
                let abs_w: f64 = wb.iter().map(|&w| (w as f64).abs()).sum();
                bound += abs_w * amax / 127.0 / 2.0;
                for (&wi, &xi) in wb.iter().zip(xb) {
                    v += wi as f64 * xi as f64;
                }
                // The kernels split w into d*q and m, which can each exceed |w|: bound the f32
                // rounding by the larger split, |d q| + |m| <= |w| + 2|m| <= |w| + 2 max|w|.
                let wmax = wb.iter().fold(0f64, |a, &w| a.max((w as f64).abs()));
                mag += wb
                    .iter()
                    .zip(xb)
                    .map(|(&wi, &xi)| ((wi as f64).abs() + 2.0 * wmax) * (xi as f64).abs())
                    .sum::<f64>();
            }
            e.value[c * n + r] = v;
            e.q8_bound[c * n + r] = bound;
            e.magnitude[c * n + r] = mag;
        }
    }
    e
}

/// f32 accumulation over at most a few hundred terms: a relative error of 1e-5 of the sum of
/// magnitudes is ~100 ulps of headroom (gamma_n ~ n * 6e-8 for n <= 60 additions per output).
const F32_REL: f64 = 1e-5;

fn simd_isas() -> Vec<Isa> {
    Isa::available()
        .into_iter()
        .filter(|&i| i != Isa::Scalar)
        .collect()
}

#[test]
fn simd_matches_scalar_reference() {
    let mut rng = StdRng::seed_from_u64(1);
    let isas = simd_isas();
    eprintln!("kernel variants on this CPU: {:?}", Isa::available());
    for format in FORMATS {
        for &(n, k) in &SHAPES {
            for m in [1, 3, 64] {
                let w = random_weights(format, n, k, &mut rng);
                let x = random_x(m, k, &mut rng);
                let mut want = vec![0f32; m * n];
                reference::matmul(format, &w, n, k, &x, m, &mut want).unwrap();
                let e = exact(format, &w, n, k, &x, m);
                for &isa in &isas {
                    let mut got = vec![f32::NAN; m * n];
                    matmul_with(isa, format, &w, n, k, &x, m, &mut got, &mut Scratch::new())
                        .unwrap();
                    for i in 0..m * n {
                        // Same quantized inputs, so only the f32 summation order differs.
                        let tol = F32_REL * e.magnitude[i] + 1e-6;
                        let diff = (got[i] as f64 - want[i] as f64).abs();
                        assert!(
                            diff <= tol,
                            "{isa:?} {format:?} n={n} k={k} m={m} out[{i}]: {} vs reference {} \
                             (diff {diff:e} > tol {tol:e})",
                            got[i],
                            want[i],
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn error_is_within_the_q8_activation_bound() {
    let mut rng = StdRng::seed_from_u64(2);
    for format in FORMATS {
        for &(n, k) in &SHAPES {
            let m = 3;
            let w = random_weights(format, n, k, &mut rng);
            let x = random_x(m, k, &mut rng);
            let e = exact(format, &w, n, k, &x, m);
            let mut got = vec![0f32; m * n];
            matmul(format, &w, n, k, &x, m, &mut got).unwrap();
            let mut worst = 0f64;
            for (i, &g) in got.iter().enumerate() {
                let tol = e.q8_bound[i] + F32_REL * e.magnitude[i] + 1e-6;
                let diff = (g as f64 - e.value[i]).abs();
                assert!(
                    diff <= tol,
                    "{format:?} n={n} k={k} out[{i}]: {g} vs exact {} (diff {diff:e} > {tol:e})",
                    e.value[i]
                );
                worst = worst.max(diff / tol);
            }
            // A bound that is never approached would not be testing anything.
            assert!(
                worst > 0.01,
                "{format:?} n={n} k={k}: worst error/bound {worst}"
            );
        }
    }
}

#[test]
fn matches_candle_qmatmul() {
    let mut rng = StdRng::seed_from_u64(3);
    let dev = Device::Cpu;
    for (format, dtype) in CANDLE_FORMATS {
        for (n, k, m) in [(1536, 576, 1), (576, 1536, 3), (96, 576, 64), (37, 64, 5)] {
            let wf: Vec<f32> = (0..n * k).map(|_| rng.random_range(-0.2f32..0.3)).collect();
            let wt = Tensor::from_vec(wf, (n, k), &dev).unwrap();
            let qt = QTensor::quantize(&wt, dtype).unwrap();
            let bytes = qt.data().unwrap().into_owned();

            // The byte layout is what we assume: dequantizing agrees with candle exactly.
            let ours = dequantize(format, &bytes, n, k).unwrap();
            let theirs = qt.dequantize(&dev).unwrap().flatten_all().unwrap();
            assert_eq!(
                ours,
                theirs.to_vec1::<f32>().unwrap(),
                "{format:?} dequantize"
            );

            let x = random_x(m, k, &mut rng);
            let xt = Tensor::from_vec(x.clone(), (m, k), &dev).unwrap();
            let qmm = QMatMul::from_qtensor(qt).unwrap();
            let want = qmm.forward(&xt).unwrap().flatten_all().unwrap();
            let want = want.to_vec1::<f32>().unwrap();
            let mut got = vec![0f32; m * n];
            matmul(format, &bytes, n, k, &x, m, &mut got).unwrap();

            let e = exact(format, &bytes, n, k, &x, m);
            for i in 0..m * n {
                // Both are within the Q8 bound of the exact value. candle also rounds its
                // activation scale d8 and s = d8 * sum(q) to f16 (relative 2^-11 each), which
                // moves its result by at most ~2^-10 of the magnitude.
                let tol = 2.0 * e.q8_bound[i] + e.magnitude[i] * (F32_REL + 1e-3) + 1e-6;
                let diff = (got[i] as f64 - want[i] as f64).abs();
                assert!(
                    diff <= tol,
                    "{format:?} n={n} k={k} m={m} out[{i}]: ours {} candle {} (diff {diff:e} > \
                     {tol:e})",
                    got[i],
                    want[i]
                );
            }
        }
    }
}

/// Q5_0 matrices of the real Qwen2.5-Coder-0.5B Q4_K_M checkpoint (attention q and k, MLP
/// gate): candle decodes the bytes as we do, and every kernel variant is within the 8-bit
/// activation bound of the exact product and the reference's summation noise.
#[test]
fn real_qwen05_q5_0_weights_match_candle_and_the_reference() {
    let Some(path) = effbench_assets::cached_path_or_skip("qwen2.5-coder-0.5b-instruct") else {
        return;
    };
    let dev = Device::Cpu;
    let mut file = std::fs::File::open(&path).unwrap();
    let content = gguf_file::Content::read(&mut file).unwrap();
    let mut rng = StdRng::seed_from_u64(11);
    for name in [
        "blk.0.attn_q.weight",
        "blk.0.attn_k.weight",
        "blk.5.ffn_gate.weight",
    ] {
        let qt = content.tensor(&mut file, name, &dev).unwrap();
        assert_eq!(qt.dtype(), GgmlDType::Q5_0, "{name}");
        let format = WeightFormat::Q5_0;
        let (n, k) = qt.shape().dims2().unwrap();
        let bytes = qt.data().unwrap().into_owned();
        // Rows of at most 256 outputs keep the f64 oracle quick.
        let n = n.min(256);
        let bytes = &bytes[..format.matrix_bytes(n, k)];
        let theirs = qt.dequantize(&dev).unwrap().flatten_all().unwrap();
        let theirs = theirs.to_vec1::<f32>().unwrap();
        assert_eq!(
            dequantize(format, bytes, n, k).unwrap(),
            theirs[..n * k],
            "{name}"
        );

        for m in [1, 3, 6] {
            let x = random_x(m, k, &mut rng);
            let e = exact(format, bytes, n, k, &x, m);
            let mut want = vec![0f32; m * n];
            reference::matmul(format, bytes, n, k, &x, m, &mut want).unwrap();
            let mut worst = 0f64;
            for isa in Isa::available() {
                let mut got = vec![f32::NAN; m * n];
                matmul_with(
                    isa,
                    format,
                    bytes,
                    n,
                    k,
                    &x,
                    m,
                    &mut got,
                    &mut Scratch::new(),
                )
                .unwrap();
                for i in 0..m * n {
                    let f32_tol = F32_REL * e.magnitude[i] + 1e-6;
                    let tol = e.q8_bound[i] + f32_tol;
                    let diff = (got[i] as f64 - e.value[i]).abs();
                    assert!(
                        diff <= tol,
                        "{isa:?} {name} m={m} out[{i}]: {} vs exact {} (diff {diff:e} > {tol:e})",
                        got[i],
                        e.value[i]
                    );
                    worst = worst.max(diff / tol);
                    let diff = (got[i] as f64 - want[i] as f64).abs();
                    assert!(
                        diff <= f32_tol,
                        "{isa:?} {name} m={m} out[{i}]: {} vs reference {} (diff {diff:e})",
                        got[i],
                        want[i]
                    );
                }
            }
            eprintln!("{name} (n={n}, k={k}, m={m}): worst error / bound {worst:.3}");
        }
    }
}

#[test]
fn results_do_not_depend_on_thread_count_or_scratch_reuse() {
    let mut rng = StdRng::seed_from_u64(4);
    let (n, k, m) = (1000, 576, 7);
    let x = random_x(m, k, &mut rng);
    let mut q4_1 = None;
    for format in FORMATS {
        let w = random_weights(format, n, k, &mut rng);
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let mut out = vec![0f32; m * n];
            pool.install(|| matmul(format, &w, n, k, &x, m, &mut out))
                .unwrap();
            out
        };
        let one = run(1);
        assert_eq!(one, run(2), "{format:?}");
        assert_eq!(one, run(5), "{format:?}");
        if format == WeightFormat::Q4_1 {
            q4_1 = Some((w, one));
        }
    }
    let (w, one) = q4_1.unwrap();

    // A scratch that first held a larger problem must not leak stale values.
    let mut scratch = Scratch::new();
    let big_x = random_x(64, 1536, &mut rng);
    let big_w = random_weights(WeightFormat::Q4_1, 8, 1536, &mut rng);
    let mut big_out = vec![0f32; 64 * 8];
    let isa = Isa::best();
    let f = WeightFormat::Q4_1;
    matmul_with(
        isa,
        f,
        &big_w,
        8,
        1536,
        &big_x,
        64,
        &mut big_out,
        &mut scratch,
    )
    .unwrap();
    let mut out = vec![0f32; m * n];
    matmul_with(isa, f, &w, n, k, &x, m, &mut out, &mut scratch).unwrap();
    assert_eq!(one, out);
}

/// Every tile shape the kernels have: n = 1..7 and 13 leave every partial row group (and
/// decode's `DECODE_ROWS` groups), m = 1..9 every partial activation group, and k of 1, 3 and 5
/// blocks an odd last block, which the 512-bit kernels pair with the activations' zero padding.
#[test]
fn every_tile_and_block_tail_matches_the_reference() {
    let mut rng = StdRng::seed_from_u64(9);
    let isas = simd_isas();
    for format in FORMATS {
        for n in [1, 2, 3, 4, 5, 6, 7, 13] {
            for k in [32, 96, 160] {
                let w = random_weights(format, n, k, &mut rng);
                for m in 1..=9 {
                    let x = random_x(m, k, &mut rng);
                    let mut want = vec![0f32; m * n];
                    reference::matmul(format, &w, n, k, &x, m, &mut want).unwrap();
                    let e = exact(format, &w, n, k, &x, m);
                    for &isa in &isas {
                        let mut got = vec![f32::NAN; m * n];
                        let mut scratch = Scratch::new();
                        matmul_with(isa, format, &w, n, k, &x, m, &mut got, &mut scratch).unwrap();
                        for i in 0..m * n {
                            let tol = F32_REL * e.magnitude[i] + 1e-6;
                            let diff = (got[i] as f64 - want[i] as f64).abs();
                            assert!(
                                diff <= tol,
                                "{isa:?} {format:?} n={n} k={k} m={m} out[{i}]: {} vs \
                                 reference {} (diff {diff:e} > tol {tol:e})",
                                got[i],
                                want[i],
                            );
                        }
                    }
                }
            }
        }
    }
}

/// Our decoding of the block bytes against candle's, on blocks from candle's own quantizer and
/// on arbitrary bytes (every nibble, `qh` bit and sign pattern).
#[test]
fn dequantize_matches_candle_bit_for_bit() {
    let mut rng = StdRng::seed_from_u64(10);
    let dev = Device::Cpu;
    let (n, k) = (9, 320);
    for (format, dtype) in CANDLE_FORMATS {
        let wf: Vec<f32> = (0..n * k)
            .map(|i| rng.random_range(-0.2f32..0.3) * [1.0, 0.1, 3.0][(i / 32) % 3])
            .collect();
        let qt = QTensor::quantize(&Tensor::from_vec(wf, (n, k), &dev).unwrap(), dtype).unwrap();
        let bytes = qt.data().unwrap().into_owned();
        let theirs = qt.dequantize(&dev).unwrap().flatten_all().unwrap();
        let ours = dequantize(format, &bytes, n, k).unwrap();
        assert_eq!(ours, theirs.to_vec1::<f32>().unwrap(), "{format:?}");

        let bytes = random_weights(format, n, k, &mut rng);
        let storage = QStorage::from_data(std::borrow::Cow::Borrowed(&bytes), &dev, dtype).unwrap();
        let qt = QTensor::new(storage, (n, k)).unwrap();
        let theirs = qt.dequantize(&dev).unwrap().flatten_all().unwrap();
        let ours = dequantize(format, &bytes, n, k).unwrap();
        assert_eq!(
            ours,
            theirs.to_vec1::<f32>().unwrap(),
            "{format:?} random bytes"
        );
    }
}

/// The Q5 layout written out from ggml's `dequantize_row_q5_0/1` by hand, independently of
/// candle: bit `j` of the little-endian `qh` is bit 4 of element `j`, and element `j + 16` sits
/// in the high nibble of byte `j`.
#[test]
fn q5_blocks_decode_as_ggml_lays_them_out() {
    let qh: u32 = 0x8001_7f02;
    let qs: Vec<u8> = (0..16u8).map(|j| j | ((15 - j) << 4)).collect();
    let want_q: Vec<i32> = (0..32)
        .map(|e: usize| {
            let nibble = if e < 16 { e as i32 } else { 31 - e as i32 };
            nibble | (((qh >> e) & 1) << 4) as i32
        })
        .collect();
    let d = f16::from_f32(0.5);
    let m = f16::from_f32(-3.0);

    let mut q5_0 = d.to_le_bytes().to_vec();
    q5_0.extend_from_slice(&qh.to_le_bytes());
    q5_0.extend_from_slice(&qs);
    let got = dequantize(WeightFormat::Q5_0, &q5_0, 1, 32).unwrap();
    let want: Vec<f32> = want_q.iter().map(|&q| 0.5 * (q - 16) as f32).collect();
    assert_eq!(got, want, "Q5_0");

    let mut q5_1 = d.to_le_bytes().to_vec();
    q5_1.extend_from_slice(&m.to_le_bytes());
    q5_1.extend_from_slice(&qh.to_le_bytes());
    q5_1.extend_from_slice(&qs);
    let got = dequantize(WeightFormat::Q5_1, &q5_1, 1, 32).unwrap();
    let want: Vec<f32> = want_q.iter().map(|&q| 0.5 * q as f32 - 3.0).collect();
    assert_eq!(got, want, "Q5_1");

    // Every kernel reads the same layout: row c of x is 127 at c and 0 elsewhere, which
    // quantizes exactly (scale 1) and picks out 127 * w_c, a small multiple of 1/2 that no
    // summation order rounds.
    let x: Vec<f32> = (0..32 * 32)
        .map(|i| if i / 32 == i % 32 { 127.0 } else { 0.0 })
        .collect();
    for (format, block) in [(WeightFormat::Q5_0, &q5_0), (WeightFormat::Q5_1, &q5_1)] {
        let want: Vec<f32> = dequantize(format, block, 1, 32)
            .unwrap()
            .iter()
            .map(|w| w * 127.0)
            .collect();
        for isa in Isa::available() {
            let mut out = vec![f32::NAN; 32];
            matmul_with(
                isa,
                format,
                block,
                1,
                32,
                &x,
                32,
                &mut out,
                &mut Scratch::new(),
            )
            .unwrap();
            assert_eq!(out, want, "{isa:?} {format:?}");
        }
    }
}

#[test]
fn zero_activations_give_zero() {
    let mut rng = StdRng::seed_from_u64(5);
    let (n, k, m) = (9, 64, 2);
    for format in FORMATS {
        let w = random_weights(format, n, k, &mut rng);
        let mut out = vec![f32::NAN; m * n];
        matmul(format, &w, n, k, &vec![0.0; m * k], m, &mut out).unwrap();
        assert!(out.iter().all(|&v| v == 0.0), "{format:?}: {out:?}");
    }
}

#[test]
fn size_mismatches_are_errors() {
    let (n, k, m) = (4, 64, 2);
    let w = vec![0u8; WeightFormat::Q4_1.matrix_bytes(n, k)];
    let x = vec![0f32; m * k];
    let mut out = vec![0f32; m * n];

    let e = matmul_q4_1(&w, n, 48, &x[..m * 48], m, &mut out).unwrap_err();
    assert_eq!(e, KernelError::KNotBlockMultiple { k: 48, block: 32 });

    let e = matmul_q4_1(&w[1..], n, k, &x, m, &mut out).unwrap_err();
    assert!(matches!(
        e,
        KernelError::WeightsLen {
            expected: 160,
            got: 159,
            ..
        }
    ));
    // Q4_0 bytes passed as Q4_1 (18- vs 20-byte blocks) are caught by length.
    let q4_0 = vec![0u8; WeightFormat::Q4_0.matrix_bytes(n, k)];
    assert!(matmul_q4_1(&q4_0, n, k, &x, m, &mut out).is_err());

    let e = matmul_q4_1(&w, n, k, &x[1..], m, &mut out).unwrap_err();
    assert!(matches!(
        e,
        KernelError::XLen {
            expected: 128,
            got: 127,
            ..
        }
    ));

    let mut short = vec![0f32; m * n - 1];
    let e = matmul_q4_1(&w, n, k, &x, m, &mut short).unwrap_err();
    assert!(matches!(
        e,
        KernelError::OutLen {
            expected: 8,
            got: 7,
            ..
        }
    ));
    assert!(e.to_string().contains("m * n = 2 * 4"), "{e}");

    // Empty problems are valid and write nothing.
    matmul_q4_1(&[], 0, k, &x, m, &mut []).unwrap();
    matmul_q4_1(&w, n, k, &[], 0, &mut []).unwrap();

    assert!(effbench_kernels::dequantize_q4_1(&w, n + 1, k).is_err());
}

#[test]
fn a_rows_outputs_do_not_depend_on_how_many_rows_share_the_call() {
    let mut rng = StdRng::seed_from_u64(8);
    let (n, k) = (45, 576);
    for format in FORMATS {
        let w = random_weights(format, n, k, &mut rng);
        for m in [2, 5, 16, 17, 21] {
            let x = random_x(m, k, &mut rng);
            for isa in Isa::available() {
                let mut scratch = Scratch::new();
                let what = format!("{isa:?} {format:?}");
                assert_rows_independent(&x, m, (n, k), &what, |x, m, out| {
                    matmul_with(isa, format, &w, n, k, x, m, out, &mut scratch).unwrap()
                });
            }
        }
    }
}

/// The block-per-lane kernels (every format here, on AVX-512 VNNI) group 16 blocks to a vector and
/// end a row in a group of 2, 4 or 8 blocks: k of 1, 2, 3, 5, 15, 16, 17, 18, 24 and 33 blocks
/// leave every kind of last group; m = 7, 9 and 17 partial 8-row activation tiles; n = 700
/// rows at k = 576 more decoded weight rows than one task keeps at once (256 KB), so a call
/// that runs on one thread takes several chunks. Each row must also not depend on the others.
#[test]
fn block_per_lane_groups_tiles_and_chunks_match_the_reference() {
    let mut rng = StdRng::seed_from_u64(11);
    let one_thread = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let mut cases = Vec::new();
    for blocks in [1, 2, 3, 5, 15, 16, 17, 18, 24, 33] {
        for (n, m) in [(3, 1), (9, 7), (5, 9), (2, 17)] {
            cases.push((n, 32 * blocks, m));
        }
    }
    cases.push((700, 576, 9));
    for format in FORMATS {
        for &(n, k, m) in &cases {
            let w = random_weights(format, n, k, &mut rng);
            let x = random_x(m, k, &mut rng);
            let mut want = vec![0f32; m * n];
            reference::matmul(format, &w, n, k, &x, m, &mut want).unwrap();
            let e = exact(format, &w, n, k, &x, m);
            for isa in simd_isas() {
                let mut got = vec![f32::NAN; m * n];
                let mut scratch = Scratch::new();
                one_thread.install(|| {
                    matmul_with(isa, format, &w, n, k, &x, m, &mut got, &mut scratch).unwrap()
                });
                for i in 0..m * n {
                    let tol = F32_REL * e.magnitude[i] + 1e-6;
                    let diff = (got[i] as f64 - want[i] as f64).abs();
                    assert!(
                        diff <= tol,
                        "{isa:?} {format:?} n={n} k={k} m={m} out[{i}]: {} vs reference {} \
                         (diff {diff:e} > tol {tol:e})",
                        got[i],
                        want[i],
                    );
                }
                let what = format!("{isa:?} {format:?} n={n} k={k}");
                assert_rows_independent(&x, m, (n, k), &what, |x, m, out| {
                    matmul_with(isa, format, &w, n, k, x, m, out, &mut scratch).unwrap()
                });
            }
        }
    }
}
