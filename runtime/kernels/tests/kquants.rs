//! The Q4_K and Q6_K kernels against the exact f32 product of candle's dequantized weights
//! (within the error that 8-bit activations imply), against each other, and on real weights of
//! Qwen2.5-Coder-1.5B-Instruct.

mod common;

use candle_core::quantized::{gguf_file, GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};
use common::assert_rows_independent;
use effbench_kernels::{
    dequantize, matmul, matmul_with, reference, Isa, KernelError, Scratch, WeightFormat,
};
use half::f16;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const FORMATS: [(WeightFormat, GgmlDType); 2] = [
    (WeightFormat::Q4_K, GgmlDType::Q4K),
    (WeightFormat::Q6_K, GgmlDType::Q6K),
];

/// (n, k): Qwen2.5-1.5B's projections (k/v, down) scaled to test time, a single super-block,
/// and odd `n` that leave partial tiles and partial rayon tasks.
const SHAPES: [(usize, usize); 6] = [
    (256, 1536),
    (1536, 256),
    (37, 512),
    (1, 256),
    (101, 2304),
    (7, 256),
];

const MS: [usize; 6] = [1, 2, 3, 6, 9, 17];

/// Blocks from candle's own quantizer: the scale and min structure real checkpoints have.
fn candle_weights(dtype: GgmlDType, n: usize, k: usize, rng: &mut StdRng) -> QTensor {
    let wf: Vec<f32> = (0..n * k)
        .map(|i| rng.random_range(-0.2f32..0.3) * [1.0, 0.1, 3.0][(i / 256) % 3])
        .collect();
    QTensor::quantize(&Tensor::from_vec(wf, (n, k), &Device::Cpu).unwrap(), dtype).unwrap()
}

/// Random bytes with a sane f16 `d` (and `dmin`): every quant value, every 6-bit scale and min,
/// negative Q6_K scales including -128. Nothing a quantizer would avoid is avoided.
fn random_weights(format: WeightFormat, n: usize, k: usize, rng: &mut StdRng) -> Vec<u8> {
    let mut bytes: Vec<u8> = (0..format.matrix_bytes(n, k))
        .map(|_| rng.random())
        .collect();
    for b in bytes.chunks_exact_mut(format.block_bytes()) {
        let d = f16::from_f32(rng.random_range(0.0001f32..0.002)).to_le_bytes();
        match format {
            WeightFormat::Q4_K => {
                b[..2].copy_from_slice(&d);
                let dmin = f16::from_f32(rng.random_range(0.0f32..0.002)).to_le_bytes();
                b[2..4].copy_from_slice(&dmin);
            }
            _ => b[208..].copy_from_slice(&d),
        }
    }
    bytes
}

/// Activations with a spread of super-block magnitudes, plus one all-zero super-block.
fn random_x(m: usize, k: usize, rng: &mut StdRng) -> Vec<f32> {
    let mut x: Vec<f32> = (0..m * k)
        .map(|i| rng.random_range(-1.0f32..1.0) * [0.1f32, 1.0, 10.0][(i / 256) % 3])
        .collect();
    let zero = 256.min(x.len());
    x[..zero].fill(0.0);
    x
}

/// The offset each weight's value carries in the kernels' split `w = d*sc*q + off` (Q4_K:
/// `-dmin * min`, Q6_K: `-32 * d * sc`), parsed here independently of the crate. f32 rounding
/// scales with `|d*sc*q| + |off| <= |w| + 2|off|`.
fn offsets(format: WeightFormat, bytes: &[u8]) -> Vec<f64> {
    let mut out = Vec::new();
    for b in bytes.chunks_exact(format.block_bytes()) {
        for i in 0..256 {
            out.push(match format {
                WeightFormat::Q4_K => {
                    let dmin = f16::from_le_bytes([b[2], b[3]]).to_f64();
                    let (j, s) = (i / 32, &b[4..16]);
                    let m = if j < 4 {
                        s[j + 4] & 63
                    } else {
                        (s[j + 4] >> 4) | ((s[j] >> 6) << 4)
                    };
                    (dmin * m as f64).abs()
                }
                _ => {
                    let d = f16::from_le_bytes([b[208], b[209]]).to_f64();
                    // Real checkpoints have negative `d` as well as negative scales.
                    (32.0 * d * b[192 + i / 16] as i8 as f64).abs()
                }
            });
        }
    }
    out
}

/// Per output: the exact product of the dequantized weights and f32 activations (in f64), the
/// error bound of 8-bit activations, and the magnitude f32 rounding scales with.
struct Exact {
    value: Vec<f64>,
    q8_bound: Vec<f64>,
    magnitude: Vec<f64>,
}

fn exact(wf: &[f32], off: &[f64], n: usize, k: usize, x: &[f32], m: usize) -> Exact {
    let mut e = Exact {
        value: vec![0.0; m * n],
        q8_bound: vec![0.0; m * n],
        magnitude: vec![0.0; m * n],
    };
    for c in 0..m {
        let xr = &x[c * k..(c + 1) * k];
        for r in 0..n {
            let (wr, or) = (&wf[r * k..(r + 1) * k], &off[r * k..(r + 1) * k]);
            let (mut v, mut bound, mut mag) = (0f64, 0f64, 0f64);
            for ((wb, ob), xb) in wr.chunks(256).zip(or.chunks(256)).zip(xr.chunks(256)) {
                // ggml's Q8_K rule: d8 = amax / 127 with the largest-magnitude value at -127, so
                // each activation is rounded to the nearest multiple of d8 (error <= d8 / 2).
                let amax = xb.iter().fold(0f32, |a, &v| a.max(v.abs())) as f64;
                let d8 = amax / 127.0;
                for &wi in wb {
                    bound += (wi as f64).abs() * d8 * 0.5;
                }
                for ((&wi, &oi), &xi) in wb.iter().zip(ob).zip(xb) {
                    v += wi as f64 * xi as f64;
                    mag += ((wi as f64).abs() + 2.0 * oi) * (xi as f64).abs();
                }
            }
            e.value[c * n + r] = v;
            e.q8_bound[c * n + r] = bound;
            e.magnitude[c * n + r] = mag;
        }
    }
    e
}

/// f32 accumulation: a relative error of 1e-5 of the sum of magnitudes is ample headroom over
/// the ~k/16 float additions per output (each ~6e-8 relative), at the sizes tested.
const F32_REL: f64 = 1e-5;

/// Runs every kernel variant on this CPU and checks each output against the exact product.
/// Returns the worst error as a fraction of the allowed error.
fn check_all_isas(
    format: WeightFormat,
    bytes: &[u8],
    wf: &[f32],
    n: usize,
    k: usize,
    m: usize,
    rng: &mut StdRng,
) -> f64 {
    let x = random_x(m, k, rng);
    let e = exact(wf, &offsets(format, bytes), n, k, &x, m);
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
                "{isa:?} {format:?} n={n} k={k} m={m} out[{i}]: {} vs exact {} (diff {diff:e} > \
                 tol {tol:e})",
                got[i],
                e.value[i]
            );
            worst = worst.max(diff / tol);
            // Same quantized activations as the scalar oracle: only the summation order differs.
            let diff = (got[i] as f64 - want[i] as f64).abs();
            assert!(
                diff <= f32_tol,
                "{isa:?} {format:?} n={n} k={k} m={m} out[{i}]: {} vs reference {} (diff \
                 {diff:e} > {f32_tol:e})",
                got[i],
                want[i]
            );
        }
    }
    worst
}

#[test]
fn dequantize_matches_candle_bit_for_bit() {
    let mut rng = StdRng::seed_from_u64(1);
    for (format, dtype) in FORMATS {
        let (n, k) = (9, 1024);
        let qt = candle_weights(dtype, n, k, &mut rng);
        let bytes = qt.data().unwrap().into_owned();
        let ours = dequantize(format, &bytes, n, k).unwrap();
        let theirs = qt.dequantize(&Device::Cpu).unwrap().flatten_all().unwrap();
        assert_eq!(ours, theirs.to_vec1::<f32>().unwrap(), "{format:?}");

        // And on arbitrary bytes, where every scale and min bit pattern occurs.
        let bytes = random_weights(format, n, k, &mut rng);
        let qt = QTensor::new(
            candle_core::quantized::QStorage::from_data(
                std::borrow::Cow::Borrowed(&bytes),
                &Device::Cpu,
                dtype,
            )
            .unwrap(),
            (n, k),
        )
        .unwrap();
        let theirs = qt.dequantize(&Device::Cpu).unwrap().flatten_all().unwrap();
        let ours = dequantize(format, &bytes, n, k).unwrap();
        assert_eq!(
            ours,
            theirs.to_vec1::<f32>().unwrap(),
            "{format:?} random bytes"
        );
    }
}

#[test]
fn every_variant_is_within_the_q8_bound_of_the_exact_product() {
    eprintln!("kernel variants on this CPU: {:?}", Isa::available());
    let mut rng = StdRng::seed_from_u64(2);
    for (format, dtype) in FORMATS {
        let mut worst = 0f64;
        for &(n, k) in &SHAPES {
            for m in MS {
                let qt = candle_weights(dtype, n, k, &mut rng);
                let bytes = qt.data().unwrap().into_owned();
                let wf = dequantize(format, &bytes, n, k).unwrap();
                worst = worst.max(check_all_isas(format, &bytes, &wf, n, k, m, &mut rng));

                let bytes = random_weights(format, n, k, &mut rng);
                let wf = dequantize(format, &bytes, n, k).unwrap();
                worst = worst.max(check_all_isas(format, &bytes, &wf, n, k, m, &mut rng));
            }
        }
        // A bound that is never approached would not be testing anything.
        assert!(worst > 0.01, "{format:?}: worst error / bound {worst}");
    }
}

#[test]
fn matches_candle_qmatmul() {
    let mut rng = StdRng::seed_from_u64(3);
    let dev = Device::Cpu;
    for (format, dtype) in FORMATS {
        for (n, k, m) in [(1536, 256, 1), (45, 1536, 9), (3, 512, 17)] {
            let qt = candle_weights(dtype, n, k, &mut rng);
            let bytes = qt.data().unwrap().into_owned();
            let wf = dequantize(format, &bytes, n, k).unwrap();
            let x = random_x(m, k, &mut rng);
            let xt = Tensor::from_vec(x.clone(), (m, k), &dev).unwrap();
            let want = QMatMul::from_qtensor(qt).unwrap().forward(&xt).unwrap();
            let want = want.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let mut got = vec![0f32; m * n];
            matmul(format, &bytes, n, k, &x, m, &mut got).unwrap();
            let e = exact(&wf, &offsets(format, &bytes), n, k, &x, m);
            for i in 0..m * n {
                // candle quantizes activations by the same Q8_K rule, so only summation order
                // differs; twice the bound of the exact value is a loose but safe allowance.
                let tol = 2.0 * e.q8_bound[i] + 2.0 * F32_REL * e.magnitude[i] + 1e-6;
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

/// The first block's matrices of the real checkpoint: Q4_K attention and MLP, Q6_K `ffn_down`
/// (k = 8960) and `attn_v`.
#[test]
fn real_qwen_weights_are_within_the_q8_bound() {
    let Some(path) = effbench_assets::cached_path_or_skip("qwen2.5-coder-1.5b-instruct") else {
        return;
    };
    let mut file = std::fs::File::open(&path).unwrap();
    let content = gguf_file::Content::read(&mut file).unwrap();
    let mut rng = StdRng::seed_from_u64(4);
    let mut seen = Vec::new();
    for name in [
        "blk.0.attn_q.weight",
        "blk.0.ffn_down.weight",
        "blk.0.attn_v.weight",
        "blk.1.attn_v.weight",
    ] {
        let qt = content.tensor(&mut file, name, &Device::Cpu).unwrap();
        let format = match qt.dtype() {
            GgmlDType::Q4K => WeightFormat::Q4_K,
            GgmlDType::Q6K => WeightFormat::Q6_K,
            other => panic!("{name} is {other:?}, expected Q4_K_M's Q4_K/Q6_K"),
        };
        seen.push(format);
        let (n, k) = qt.shape().dims2().unwrap();
        let bytes = qt.data().unwrap().into_owned();
        let wf = qt
            .dequantize(&Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        // A 3-token prefill; rows of at most 256 outputs keep the f64 oracle quick.
        let n = n.min(256);
        let bytes = &bytes[..format.matrix_bytes(n, k)];
        let worst = check_all_isas(format, bytes, &wf[..n * k], n, k, 3, &mut rng);
        eprintln!("{name} ({format:?}, n={n}, k={k}): worst error / bound {worst:.3}");
    }
    assert!(seen.contains(&WeightFormat::Q4_K) && seen.contains(&WeightFormat::Q6_K));
}

/// Prefill-sized calls (more than 16 activation rows) take wider tiles than decode: every
/// partial tile of weight rows (n mod 4) and activation rows (m mod 4), down to one super-block.
/// At k = 8960 (Qwen2.5-1.5B's `ffn_down`) 58 rows take two passes over the weight rows on
/// AVX-512, the second of 2 rows.
#[test]
fn prefill_tiles_at_every_edge() {
    let mut rng = StdRng::seed_from_u64(7);
    for (format, _) in FORMATS {
        for (n, k) in [
            (1, 256),
            (2, 512),
            (3, 256),
            (4, 256),
            (6, 768),
            (7, 256),
            (9, 512),
        ] {
            for m in [17, 18, 19, 20] {
                let bytes = random_weights(format, n, k, &mut rng);
                let wf = dequantize(format, &bytes, n, k).unwrap();
                check_all_isas(format, &bytes, &wf, n, k, m, &mut rng);
            }
        }
        let (n, k, m) = (3, 8960, 58);
        let bytes = random_weights(format, n, k, &mut rng);
        let wf = dequantize(format, &bytes, n, k).unwrap();
        check_all_isas(format, &bytes, &wf, n, k, m, &mut rng);
    }
}

#[test]
fn results_do_not_depend_on_batch_size_or_thread_count() {
    // The determinism audit: a row's outputs must not change with how many rows share the call
    // (prefill chunking, speculative verification) or with the thread count. On AVX-512, m = 4
    // and m = 8 decode weights in registers as they go, m = 9 through a row buffer, m = 21
    // takes the prefill tiles and m = 58 at k = 8960 two passes.
    let mut rng = StdRng::seed_from_u64(5);
    for (format, _) in FORMATS {
        for (n, k, m) in [
            (13, 512, 4),
            (15, 512, 8),
            (45, 512, 9),
            (47, 512, 21),
            (5, 8960, 58),
        ] {
            let w = random_weights(format, n, k, &mut rng);
            let x = random_x(m, k, &mut rng);
            for isa in Isa::available() {
                let mut scratch = Scratch::new();
                let what = format!("{isa:?} {format:?}");
                assert_rows_independent(&x, m, (n, k), &what, |x, m, out| {
                    matmul_with(isa, format, &w, n, k, x, m, out, &mut scratch).unwrap()
                });
            }
        }
        for (n, k, m) in [(1000, 1536, 7), (1001, 1536, 19)] {
            let w = random_weights(format, n, k, &mut rng);
            let x = random_x(m, k, &mut rng);
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
            assert_eq!(one, run(2), "{format:?} m={m}");
            assert_eq!(one, run(5), "{format:?} m={m}");
        }
    }
}

#[test]
fn k_must_be_a_multiple_of_the_super_block() {
    let (n, k, m) = (2, 384, 1);
    let w = vec![0u8; n * 2 * WeightFormat::Q4_K.block_bytes()];
    let mut out = vec![0f32; m * n];
    let e = matmul(WeightFormat::Q4_K, &w, n, k, &vec![0.0; m * k], m, &mut out).unwrap_err();
    assert_eq!(e, KernelError::KNotBlockMultiple { k: 384, block: 256 });
    assert!(e.to_string().contains("block size 256"), "{e}");
    // 512 = two super-blocks per row, but the bytes are Q4_K's for Q6_K: caught by length.
    let e = matmul(WeightFormat::Q6_K, &w, n, 512, &vec![0.0; 512], 1, &mut out).unwrap_err();
    assert!(
        matches!(
            e,
            KernelError::WeightsLen {
                expected: 840,
                got: 576,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn zero_activations_give_zero() {
    let mut rng = StdRng::seed_from_u64(6);
    let (n, k, m) = (9, 512, 2);
    for (format, _) in FORMATS {
        let w = random_weights(format, n, k, &mut rng);
        for isa in Isa::available() {
            let mut out = vec![f32::NAN; m * n];
            matmul_with(
                isa,
                format,
                &w,
                n,
                k,
                &vec![0.0; m * k],
                m,
                &mut out,
                &mut Scratch::new(),
            )
            .unwrap();
            assert!(out.iter().all(|&v| v == 0.0), "{isa:?} {format:?}: {out:?}");
        }
    }
}
