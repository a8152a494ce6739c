//! The f16-weight kernels against an f64-accumulated reference, on shapes that leave every
//! remainder the kernels handle: k not a multiple of 16 or 32, n not a multiple of 4, m between
//! the matrix-vector and GEMM paths.

mod common;

use common::assert_rows_independent;
use effbench_kernels::{
    matmul_f16, matmul_f16_reference, matmul_f16_with, F16Path, KernelError, GEMV_MAX_M,
};
use half::f16;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// (n, k): SmolLM2 shapes and odd ones (k of 1, 7, 17, 33, 47; n of 1, 3, 5, 37).
const SHAPES: [(usize, usize); 9] = [
    (1536, 576),
    (576, 1536),
    (1, 1),
    (3, 7),
    (5, 17),
    (37, 33),
    (37, 47),
    (64, 96),
    (130, 200),
];

fn random(n: usize, k: usize, m: usize, rng: &mut StdRng) -> (Vec<f16>, Vec<f32>) {
    let w = (0..n * k)
        .map(|_| f16::from_f32(rng.random_range(-0.5f32..0.5)))
        .collect();
    let x = (0..m * k).map(|_| rng.random_range(-2f32..2.0)).collect();
    (w, x)
}

/// f32 accumulation of `k` products of magnitude <= 1 is off by at most about k * eps * sum|wx|.
fn assert_close(got: &[f32], want: &[f32], k: usize, what: &str) {
    assert_eq!(got.len(), want.len());
    let tol = 1e-6 * k as f32 + 1e-6;
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "{what}: output {i} is {g}, reference {w}"
        );
    }
}

#[test]
fn both_paths_match_the_reference_on_odd_shapes() {
    let mut rng = StdRng::seed_from_u64(7);
    for (n, k) in SHAPES {
        for m in [1, 2, GEMV_MAX_M, GEMV_MAX_M + 1, 9] {
            let (w, x) = random(n, k, m, &mut rng);
            let mut want = vec![0f32; m * n];
            matmul_f16_reference(&w, n, k, &x, m, &mut want).unwrap();
            for path in [F16Path::Gemv, F16Path::Gemm] {
                let mut got = vec![f32::NAN; m * n];
                matmul_f16_with(path, &w, n, k, &x, m, &mut got).unwrap();
                assert_close(&got, &want, k, &format!("{path:?} n={n} k={k} m={m}"));
            }
            let mut got = vec![f32::NAN; m * n];
            matmul_f16(&w, n, k, &x, m, &mut got).unwrap();
            assert_close(&got, &want, k, &format!("auto n={n} k={k} m={m}"));
        }
    }
}

#[test]
fn results_do_not_depend_on_the_thread_count() {
    let mut rng = StdRng::seed_from_u64(8);
    let (n, k, m) = (1536, 576, 7);
    let (w, x) = random(n, k, m, &mut rng);
    for path in [F16Path::Gemv, F16Path::Gemm] {
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let mut out = vec![0f32; m * n];
            pool.install(|| matmul_f16_with(path, &w, n, k, &x, m, &mut out).unwrap());
            out
        };
        assert_eq!(run(1), run(3), "{path:?}");
    }
}

#[test]
fn wrong_sizes_are_refused_and_nothing_is_written() {
    let w = vec![f16::ONE; 12];
    let x = vec![1f32; 8];
    let mut out = vec![-1f32; 6];
    assert_eq!(
        matmul_f16(&w, 3, 5, &x, 2, &mut out),
        Err(KernelError::F16Len {
            n: 3,
            k: 5,
            expected: 15,
            got: 12
        })
    );
    assert!(matches!(
        matmul_f16(&w, 3, 4, &x[..7], 2, &mut out),
        Err(KernelError::XLen { .. })
    ));
    assert!(matches!(
        matmul_f16(&w, 3, 4, &x, 2, &mut out[..5]),
        Err(KernelError::OutLen { .. })
    ));
    assert!(out.iter().all(|&v| v == -1.0));
    matmul_f16(&w, 3, 4, &x, 2, &mut out).unwrap();
    assert_eq!(out, vec![4.0; 6]);
}

/// On the matrix-vector path (decode, speculative verification) a row's outputs must not
/// change with how many rows share the call: the rows share each widened weight vector but
/// each is summed in its own fixed order.
#[test]
fn gemv_rows_do_not_depend_on_how_many_rows_share_the_call() {
    let mut rng = StdRng::seed_from_u64(10);
    for (n, k) in [(37, 47), (64, 1536)] {
        for m in [2, 3, 4, 5, 9, GEMV_MAX_M] {
            let (w, x) = random(n, k, m, &mut rng);
            assert_rows_independent(&x, m, (n, k), &format!("({n}, {k})"), |x, m, out| {
                matmul_f16_with(F16Path::Gemv, &w, n, k, x, m, out).unwrap()
            });
        }
    }
}
