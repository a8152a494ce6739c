//! The dense linear algebra GPTQ needs, on row-major f32 matrices: a Cholesky factor together
//! with its inverse, computed recursively so that almost all the work is large matrix products
//! on `gemm` (the crate candle's CPU matmul runs on, multithreaded with rayon). An 8960 x 8960
//! Hessian (Qwen2.5-1.5B's MLP down projection) takes seconds rather than the minutes an
//! unblocked loop would.

use rayon::current_num_threads;

/// A strided view into an f32 matrix.
#[derive(Clone, Copy)]
struct View {
    p: *mut f32,
    rows: usize,
    cols: usize,
    rs: isize,
    cs: isize,
}

impl View {
    fn full(data: &mut [f32], rows: usize, cols: usize) -> Self {
        assert_eq!(data.len(), rows * cols);
        Self {
            p: data.as_mut_ptr(),
            rows,
            cols,
            rs: cols as isize,
            cs: 1,
        }
    }

    /// A view of a row-major matrix that is only ever read (as `mm`'s `a` or `b`): the const
    /// cast is sound because gemm never writes through those.
    fn read_only(data: &[f32], rows: usize, cols: usize) -> Self {
        assert_eq!(data.len(), rows * cols);
        Self {
            p: data.as_ptr() as *mut f32,
            rows,
            cols,
            rs: cols as isize,
            cs: 1,
        }
    }

    fn t(self) -> Self {
        Self {
            p: self.p,
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
        }
    }

    /// SAFETY: the block must lie within the view.
    unsafe fn sub(self, r0: usize, c0: usize, rows: usize, cols: usize) -> Self {
        Self {
            p: self.p.offset(r0 as isize * self.rs + c0 as isize * self.cs),
            rows,
            cols,
            rs: self.rs,
            cs: self.cs,
        }
    }

    unsafe fn at(self, i: usize, j: usize) -> *mut f32 {
        self.p.offset(i as isize * self.rs + j as isize * self.cs)
    }
}

/// `dst = (keep ? dst : 0) + beta * a * b`.
///
/// SAFETY: the views must be valid, and `dst` must not overlap `a` or `b`.
unsafe fn mm(dst: View, keep: bool, a: View, b: View, beta: f32) {
    debug_assert!(a.rows == dst.rows && b.cols == dst.cols && a.cols == b.rows);
    if dst.rows == 0 || dst.cols == 0 {
        return;
    }
    gemm::gemm(
        dst.rows,
        dst.cols,
        a.cols,
        dst.p,
        dst.cs,
        dst.rs,
        keep,
        a.p,
        a.cs,
        a.rs,
        b.p,
        b.cs,
        b.rs,
        1.0,
        beta,
        false,
        false,
        false,
        parallelism(),
    );
}

fn parallelism() -> gemm::Parallelism {
    match current_num_threads() {
        0 | 1 => gemm::Parallelism::None,
        n => gemm::Parallelism::Rayon(n),
    }
}

/// Public form of [`mm`] for contiguous row-major operands:
/// `dst (m, n) += beta * a (m, k) * b (k, n)`, `a` given as `(k, m)` when `a_transposed`.
#[allow(clippy::too_many_arguments)]
pub fn gemm_acc(
    dst: &mut [f32],
    m: usize,
    n: usize,
    a: &[f32],
    a_transposed: bool,
    k: usize,
    b: &[f32],
    beta: f32,
) {
    assert!(dst.len() == m * n && a.len() == m * k && b.len() == k * n);
    let dv = View::full(dst, m, n);
    let av = if a_transposed {
        View::read_only(a, k, m).t()
    } else {
        View::read_only(a, m, k)
    };
    let bv = View::read_only(b, k, n);
    // SAFETY: sizes asserted above; `dst` is a distinct &mut borrow.
    unsafe { mm(dv, true, av, bv, beta) }
}

/// Square tiles of [`gram_acc`]: small enough that skipping the tiles below the diagonal saves
/// nearly half the work, large enough for `gemm` to run at full speed.
const GRAM_TILE: usize = 512;

/// `h (k, k) += x^T x` for row-major `x (t, k)`, the running Hessian of calibration: only the
/// tiles on and above the diagonal are multiplied, then mirrored, about half of
/// [`gemm_acc`]'s work for the 8960-wide inputs of a 1.5B model's MLP down projections. The
/// result is exactly symmetric. `h` must be symmetric on entry (as every sum of such updates is).
pub fn gram_acc(h: &mut [f32], k: usize, x: &[f32], t: usize) {
    assert!(h.len() == k * k && x.len() == t * k);
    if k <= GRAM_TILE {
        gemm_acc(h, k, k, x, true, t, x, 1.0);
        return;
    }
    let hv = View::full(h, k, k);
    let xv = View::read_only(x, t, k);
    for i0 in (0..k).step_by(GRAM_TILE) {
        let ri = GRAM_TILE.min(k - i0);
        for j0 in (i0..k).step_by(GRAM_TILE) {
            let cj = GRAM_TILE.min(k - j0);
            // SAFETY: every block lies within its view; `h` and `x` are distinct borrows.
            unsafe {
                mm(
                    hv.sub(i0, j0, ri, cj),
                    true,
                    xv.sub(0, i0, t, ri).t(),
                    xv.sub(0, j0, t, cj),
                    1.0,
                );
            }
        }
    }
    for r in 1..k {
        for c in 0..r {
            h[r * k + c] = h[c * k + r];
        }
    }
}

/// Below this size the recursion switches to scalar loops.
const LEAF: usize = 48;

/// Overwrites `a` (n x n, symmetric positive definite) with its lower Cholesky factor `L`
/// (upper triangle zeroed) and `inv` with `L^-1`. Returns the failing pivot when `a` is not
/// positive definite.
///
/// SAFETY: `a` and `inv` are valid, disjoint n x n views.
unsafe fn chol_inv(a: View, inv: View) -> Result<(), usize> {
    let n = a.rows;
    if n <= LEAF {
        return chol_inv_leaf(a, inv);
    }
    let n1 = n / 2;
    let n2 = n - n1;
    let (a11, a21, a22) = (
        a.sub(0, 0, n1, n1),
        a.sub(n1, 0, n2, n1),
        a.sub(n1, n1, n2, n2),
    );
    let (i11, i21, i22) = (
        inv.sub(0, 0, n1, n1),
        inv.sub(n1, 0, n2, n1),
        inv.sub(n1, n1, n2, n2),
    );
    chol_inv(a11, i11)?;
    // L21 = A21 L11^-T.
    let mut tmp = vec![0f32; n2 * n1];
    let tv = View::full(&mut tmp, n2, n1);
    mm(tv, false, a21, i11.t(), 1.0);
    copy(tv, a21);
    // S = A22 - L21 L21^T, factored in place.
    mm(a22, true, a21, a21.t(), -1.0);
    chol_inv(a22, i22).map_err(|p| p + n1)?;
    // (L^-1)21 = -L22^-1 L21 L11^-1.
    mm(tv, false, a21, i11, 1.0);
    mm(i21, false, i22, tv, -1.0);
    for i in 0..n1 {
        for j in 0..n2 {
            *a.at(i, n1 + j) = 0.0;
            *inv.at(i, n1 + j) = 0.0;
        }
    }
    Ok(())
}

unsafe fn copy(src: View, dst: View) {
    for i in 0..src.rows {
        for j in 0..src.cols {
            *dst.at(i, j) = *src.at(i, j);
        }
    }
}

unsafe fn chol_inv_leaf(a: View, inv: View) -> Result<(), usize> {
    let n = a.rows;
    for j in 0..n {
        let mut s = *a.at(j, j) as f64;
        for k in 0..j {
            let l = *a.at(j, k) as f64;
            s -= l * l;
        }
        if s <= 0.0 || !s.is_finite() {
            return Err(j);
        }
        let d = s.sqrt();
        *a.at(j, j) = d as f32;
        for i in j + 1..n {
            let mut s = *a.at(i, j) as f64;
            for k in 0..j {
                s -= *a.at(i, k) as f64 * *a.at(j, k) as f64;
            }
            *a.at(i, j) = (s / d) as f32;
        }
        for i in 0..j {
            *a.at(i, j) = 0.0;
        }
    }
    // Forward substitution, column by column of the identity.
    for c in 0..n {
        for i in 0..n {
            let mut s = if i == c { 1.0f64 } else { 0.0 };
            if i >= c {
                for k in c..i {
                    s -= *a.at(i, k) as f64 * *inv.at(k, c) as f64;
                }
                s /= *a.at(i, i) as f64;
            } else {
                s = 0.0;
            }
            *inv.at(i, c) = s as f32;
        }
    }
    Ok(())
}

/// The upper-triangular `U` with `H^-1 = U^T U`: what GPTQ's reference gets as
/// `cholesky(cholesky_inverse(cholesky(H)), upper=True)`, here from one Cholesky and one
/// triangular inverse. With `P` the order-reversing permutation and `P H P = L L^T`,
/// `H^-1 = P L^-T L^-1 P = (P L^-1 P)^T (P L^-1 P)`, and `P L^-1 P` is upper triangular.
/// Returns the failing pivot if `H` is not positive definite.
pub fn inverse_cholesky_upper(h: &[f32], n: usize) -> Result<Vec<f32>, usize> {
    assert_eq!(h.len(), n * n);
    let mut rev = vec![0f32; n * n];
    for i in 0..n {
        for j in 0..n {
            rev[i * n + j] = h[(n - 1 - i) * n + (n - 1 - j)];
        }
    }
    let mut inv = vec![0f32; n * n];
    // SAFETY: two distinct n x n buffers.
    unsafe {
        chol_inv(View::full(&mut rev, n, n), View::full(&mut inv, n, n))?;
    }
    let mut u = vec![0f32; n * n];
    for i in 0..n {
        for j in i..n {
            u[i * n + j] = inv[(n - 1 - i) * n + (n - 1 - j)];
        }
    }
    Ok(u)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spd(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed | 1;
        let x: Vec<f32> = (0..n * 2 * n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
            .collect();
        let mut h = vec![0f32; n * n];
        gemm_acc(&mut h, n, n, &x, true, 2 * n, &x, 1.0);
        for i in 0..n {
            h[i * n + i] += 0.01;
        }
        h
    }

    #[test]
    fn gram_acc_is_gemm_acc_on_half_the_tiles() {
        // k not a multiple of the tile, and a second update onto the first.
        let (k, t) = (GRAM_TILE * 2 + 77, 41);
        let mut s = 7u64;
        let mut rnd = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        };
        let mut full = vec![0f32; k * k];
        let mut gram = vec![0f32; k * k];
        for _ in 0..2 {
            let x: Vec<f32> = (0..t * k).map(|_| rnd()).collect();
            gemm_acc(&mut full, k, k, &x, true, t, &x, 1.0);
            gram_acc(&mut gram, k, &x, t);
        }
        for r in 0..k {
            for c in 0..k {
                let (a, b) = (full[r * k + c], gram[r * k + c]);
                assert!(
                    (a - b).abs() <= 1e-4 * (1.0 + a.abs()),
                    "({r}, {c}): {a} vs {b}"
                );
                assert_eq!(gram[r * k + c], gram[c * k + r]);
            }
        }
    }

    #[test]
    fn inverse_cholesky_upper_inverts_h() {
        for n in [5, 48, 49, 130, 301] {
            let h = spd(n, n as u64);
            let u = inverse_cholesky_upper(&h, n).unwrap();
            for i in 0..n {
                for j in 0..i {
                    assert_eq!(u[i * n + j], 0.0, "U must be upper triangular");
                }
            }
            // U^T U H = I.
            let mut utu = vec![0f32; n * n];
            gemm_acc(&mut utu, n, n, &u, true, n, &u, 1.0);
            let mut prod = vec![0f32; n * n];
            gemm_acc(&mut prod, n, n, &utu, false, n, &h, 1.0);
            for i in 0..n {
                for j in 0..n {
                    let want = if i == j { 1.0 } else { 0.0 };
                    assert!(
                        (prod[i * n + j] - want).abs() < 2e-3,
                        "n={n} ({i},{j}): {}",
                        prod[i * n + j]
                    );
                }
            }
        }
    }

    #[test]
    fn not_positive_definite_is_reported() {
        let h = vec![1.0, 2.0, 2.0, 1.0];
        assert_eq!(inverse_cholesky_upper(&h, 2), Err(1));
    }
}
