//! The forward pass's elementwise steps, split over the current rayon pool.
//!
//! candle's CPU backend runs unary and binary ops on the calling thread. At prefill sizes that
//! is a few percent of a pass (Qwen2.5-1.5B pp512: SiLU and the gate product about 5%, the
//! residual adds 1-2%), and while one thread does it the others wait, so it bounds how much a
//! second thread can gain. Each function here computes exactly what the candle ops compute, in
//! the same order and precision, so outputs are bit for bit those of the ops they replace.

use rayon::prelude::*;

/// Below this many elements one thread finishes before the pool would wake.
pub const MIN_PARALLEL_LEN: usize = 1 << 15;
/// Elements per task: large enough to amortise a steal, small enough to balance 2-64 threads.
const TASK_LEN: usize = 1 << 13;

/// candle's SiLU (`x / (1 + exp(-x))`, rounded to f32) times `up`, as `silu(gate) * up`.
pub fn silu_mul(gate: &[f32], up: &[f32]) -> Vec<f32> {
    zip_map(gate, up, "silu_mul", |g, u| silu(g) * u)
}

/// candle's tanh-approximated GELU (its `gelu` op, Gemma's activation), rounded to f32, times
/// `up`, as `gate.gelu() * up`.
pub fn gelu_tanh_mul(gate: &[f32], up: &[f32]) -> Vec<f32> {
    zip_map(gate, up, "gelu_tanh_mul", |g, u| gelu_tanh(g) * u)
}

/// `a + b`, element by element.
pub fn add(a: &[f32], b: &[f32]) -> Vec<f32> {
    zip_map(a, b, "add", |x, y| x + y)
}

/// `len` zeros. A large zeroed buffer from a heap that keeps freed memory (see effbench-core's
/// allocator setting) must be cleared by hand, so large ones are cleared by the whole pool.
pub fn zeros(len: usize) -> Vec<f32> {
    if len < MIN_PARALLEL_LEN || rayon::current_num_threads() == 1 {
        return vec![0.0; len];
    }
    let mut out = Vec::with_capacity(len);
    out.par_extend(rayon::iter::repeat_n(0.0f32, len).with_min_len(TASK_LEN));
    out
}

#[inline(always)]
fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// candle 0.9's `Gelu::f32`, with its constant written the same way.
#[inline(always)]
fn gelu_tanh(v: f32) -> f32 {
    #[allow(clippy::excessive_precision)]
    const SQRT_TWO_OVER_PI: f32 = 0.79788456080286535587989211986876373;
    0.5 * v * (1.0 + f32::tanh(SQRT_TWO_OVER_PI * v * (1.0 + 0.044715 * v * v)))
}

/// `f` over the pairs of `a` and `b` (of equal length; `what` names the op in the panic).
fn zip_map(a: &[f32], b: &[f32], what: &str, f: impl Fn(f32, f32) -> f32 + Sync) -> Vec<f32> {
    assert_eq!(a.len(), b.len(), "{what} operands differ in length");
    let f = |(&x, &y): (&f32, &f32)| f(x, y);
    map_into_vec(
        a.len(),
        || a.iter().zip(b).map(&f),
        || a.par_iter().zip(b).with_min_len(TASK_LEN).map(&f),
    )
}

/// Collects `serial()` on this thread for short inputs, else `parallel()` written straight into
/// the new vector (no zeroing pass first).
fn map_into_vec<S, P>(
    len: usize,
    serial: impl FnOnce() -> S,
    parallel: impl FnOnce() -> P,
) -> Vec<f32>
where
    S: Iterator<Item = f32>,
    P: IndexedParallelIterator<Item = f32>,
{
    if len < MIN_PARALLEL_LEN || rayon::current_num_threads() == 1 {
        return serial().collect();
    }
    let mut out = Vec::with_capacity(len);
    out.par_extend(parallel());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(len: usize, seed: u32) -> Vec<f32> {
        crate::hashed_values(len, seed, -10, 10)
    }

    #[test]
    fn parallel_and_serial_paths_give_the_same_bits() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        for len in [
            0,
            1,
            7,
            MIN_PARALLEL_LEN - 1,
            MIN_PARALLEL_LEN,
            3 * MIN_PARALLEL_LEN + 5,
        ] {
            let (g, u) = (values(len, 1), values(len, 2));
            let expect_silu: Vec<f32> = g.iter().zip(&u).map(|(&g, &u)| silu(g) * u).collect();
            let expect_add: Vec<f32> = g.iter().zip(&u).map(|(&g, &u)| g + u).collect();
            let (s, a, z) = pool.install(|| (silu_mul(&g, &u), add(&g, &u), zeros(len)));
            assert_eq!(bits(&s), bits(&expect_silu), "silu_mul, len {len}");
            assert_eq!(bits(&a), bits(&expect_add), "add, len {len}");
            let expect_gelu: Vec<f32> = g.iter().zip(&u).map(|(&g, &u)| gelu_tanh(g) * u).collect();
            let gelu = pool.install(|| gelu_tanh_mul(&g, &u));
            assert_eq!(bits(&gelu), bits(&expect_gelu), "gelu_tanh_mul, len {len}");
            assert_eq!(z.len(), len);
            assert!(z.iter().all(|&v| v.to_bits() == 0));
        }
    }

    #[test]
    fn silu_is_the_logistic_gate() {
        assert_eq!(silu(0.0), 0.0);
        assert!((silu(1.0) - 0.731_058_6).abs() < 1e-6);
        assert!((silu(-1.0) + 0.268_941_43).abs() < 1e-6);
        // exp(-x) overflows to infinity for very negative x; the gate is then exactly -0.
        assert_eq!(silu(-200.0), 0.0);
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }
}
