//! What several kernel test files check the same way.

/// The determinism audit: `run(x, m, out)` computes `out (m, n)` from the rows `x (m, k)`, and
/// each row's outputs in the `m`-row call must equal, bit for bit, those of a call with that
/// row alone (speculative verification and prefill chunking must not change a row's logits).
pub fn assert_rows_independent(
    x: &[f32],
    m: usize,
    (n, k): (usize, usize),
    what: &str,
    mut run: impl FnMut(&[f32], usize, &mut [f32]),
) {
    let mut batch = vec![0f32; m * n];
    run(x, m, &mut batch);
    for c in 0..m {
        let mut single = vec![0f32; n];
        run(&x[c * k..(c + 1) * k], 1, &mut single);
        assert_eq!(single, batch[c * n..(c + 1) * n], "{what} m {m} row {c}");
    }
}
