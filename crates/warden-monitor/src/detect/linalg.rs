//! The small dense linear algebra the detectors need, written here in plain loops: dot products
//! (with independent accumulators so that the compiler can vectorise them), the Cholesky
//! factorisation of a packed symmetric matrix and forward substitution for Mahalanobis, and the
//! cyclic Jacobi eigen-decomposition of a symmetric matrix for PCA. Matrices are row-major; the
//! Cholesky factor is stored packed (row `i` holds its `i + 1` entries at offset `i (i + 1) / 2`).

/// The dot product of two f32 slices of equal length, summed in 8 independent lanes.
///
/// The indexed lane loop over `chunks_exact(8)` is deliberate: on the baseline x86-64 target
/// (SSE2) LLVM turns exactly this shape into full-width `mulps`/`addps`, while iterator chains,
/// wider lane arrays and several rows at once measured up to twice slower (they were vectorised
/// two lanes wide or transposed across rows).
#[allow(clippy::needless_range_loop)]
pub(crate) fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ta, tb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut tail = 0.0f32;
    for (p, q) in ta.iter().zip(tb) {
        tail += p * q;
    }
    acc.iter().sum::<f32>() + tail
}

/// The dot product of two f64 slices of equal length, summed in 4 independent lanes (the same
/// loop shape as [`dot_f32`]).
#[allow(clippy::needless_range_loop)]
pub(crate) fn dot_f64(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f64; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let (ta, tb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..4 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut tail = 0.0;
    for (p, q) in ta.iter().zip(tb) {
        tail += p * q;
    }
    acc.iter().sum::<f64>() + tail
}

/// The offset of row `i` in a packed lower-triangular matrix.
pub(crate) fn packed_row(i: usize) -> usize {
    i * (i + 1) / 2
}

/// The smallest accepted Cholesky pivot relative to its diagonal entry: below it the matrix is
/// treated as singular (a condition number beyond about 1e14 leaves no correct digits in f64).
const MIN_RELATIVE_PIVOT: f64 = 1e-14;

/// Factorises a symmetric positive-definite matrix given as its packed lower triangle, in place:
/// afterwards `a` holds the packed lower factor `L` with `A = L Lᵀ`. On a pivot that is not finite
/// or not above `MIN_RELATIVE_PIVOT` times its diagonal entry, returns its index and value.
pub(crate) fn cholesky_packed(a: &mut [f64], d: usize) -> Result<(), (usize, f64)> {
    for i in 0..d {
        let ri = packed_row(i);
        for j in 0..=i {
            let rj = packed_row(j);
            let s = a[ri + j] - dot_f64(&a[ri..ri + j], &a[rj..rj + j]);
            if i == j {
                if !(s > 0.0 && s.is_finite() && s > MIN_RELATIVE_PIVOT * a[ri + i]) {
                    return Err((i, s));
                }
                a[ri + i] = s.sqrt();
            } else {
                a[ri + j] = s / a[rj + j];
            }
        }
    }
    Ok(())
}

/// Solves `L y = b` for `y` by forward substitution, with `L` packed lower-triangular and its
/// diagonal's reciprocals given in `inv_diag`; `b` is read as f32 and widened.
pub(crate) fn forward_solve(l: &[f64], inv_diag: &[f64], b: &[f32], y: &mut [f64]) {
    for i in 0..y.len() {
        let ri = packed_row(i);
        let s = f64::from(b[i]) - dot_f64(&l[ri..ri + i], &y[..i]);
        y[i] = s * inv_diag[i];
    }
}

/// The eigen-decomposition of a symmetric `d × d` row-major matrix by the cyclic Jacobi method
/// (Golub and Van Loan, "Matrix Computations", 4th ed., section 8.5): rotations annihilate each
/// off-diagonal entry in turn until the off-diagonal mass is below `1e-28` of the total. Returns
/// the eigenvalues and a row-major matrix whose column `j` is the unit eigenvector of eigenvalue
/// `j`, unsorted; on no convergence within `max_sweeps`, returns the sweeps made.
pub(crate) fn jacobi_eigen(
    mut a: Vec<f64>,
    d: usize,
    max_sweeps: usize,
) -> Result<(Vec<f64>, Vec<f64>), usize> {
    let mut v = vec![0.0; d * d];
    for i in 0..d {
        v[i * d + i] = 1.0;
    }
    let total: f64 = a.iter().map(|x| x * x).sum();
    let off = |a: &[f64]| -> f64 {
        let mut s = 0.0;
        for p in 0..d {
            for q in p + 1..d {
                s += a[p * d + q] * a[p * d + q];
            }
        }
        s
    };
    let mut sweeps = 0;
    while off(&a) > 1e-28 * total {
        if sweeps == max_sweeps {
            return Err(sweeps);
        }
        sweeps += 1;
        for p in 0..d {
            for q in p + 1..d {
                let apq = a[p * d + q];
                if apq == 0.0 {
                    continue;
                }
                // The rotation angle that zeroes a_pq: t = tan θ is the smaller root of
                // t² + 2 τ t − 1 = 0 with τ = (a_qq − a_pp) / (2 a_pq).
                let tau = (a[q * d + q] - a[p * d + p]) / (2.0 * apq);
                let t = if tau >= 0.0 {
                    1.0 / (tau + tau.hypot(1.0))
                } else {
                    -1.0 / (-tau + tau.hypot(1.0))
                };
                let c = 1.0 / t.hypot(1.0);
                let s = t * c;
                // A ← A J (columns p and q), then A ← Jᵀ A (rows p and q), V ← V J.
                for r in 0..d {
                    let (arp, arq) = (a[r * d + p], a[r * d + q]);
                    a[r * d + p] = c * arp - s * arq;
                    a[r * d + q] = s * arp + c * arq;
                }
                for r in 0..d {
                    let (apr, aqr) = (a[p * d + r], a[q * d + r]);
                    a[p * d + r] = c * apr - s * aqr;
                    a[q * d + r] = s * apr + c * aqr;
                }
                a[p * d + q] = 0.0;
                a[q * d + p] = 0.0;
                for r in 0..d {
                    let (vrp, vrq) = (v[r * d + p], v[r * d + q]);
                    v[r * d + p] = c * vrp - s * vrq;
                    v[r * d + q] = s * vrp + c * vrq;
                }
            }
        }
    }
    let values = (0..d).map(|i| a[i * d + i]).collect();
    Ok((values, v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dots_match_naive_sums() {
        let a: Vec<f32> = (0..37).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..37).map(|i| (i as f32 * 0.11).cos()).collect();
        let naive: f64 = a
            .iter()
            .zip(&b)
            .map(|(x, y)| f64::from(*x) * f64::from(*y))
            .sum();
        assert!((f64::from(dot_f32(&a, &b)) - naive).abs() < 1e-5);
        let a64: Vec<f64> = a.iter().map(|&x| f64::from(x)).collect();
        let b64: Vec<f64> = b.iter().map(|&x| f64::from(x)).collect();
        assert!((dot_f64(&a64, &b64) - naive).abs() < 1e-12);
    }

    #[test]
    fn cholesky_reproduces_the_matrix_and_rejects_indefinite() {
        // A = [[4, 2, 0.4], [2, 5, 1], [0.4, 1, 3]], packed lower.
        let mut a = vec![4.0, 2.0, 5.0, 0.4, 1.0, 3.0];
        let orig = a.clone();
        cholesky_packed(&mut a, 3).expect("positive definite");
        for i in 0..3 {
            for j in 0..=i {
                let s: f64 = (0..=j)
                    .map(|k| a[packed_row(i) + k] * a[packed_row(j) + k])
                    .sum();
                assert!((s - orig[packed_row(i) + j]).abs() < 1e-12);
            }
        }
        let mut bad = vec![1.0, 2.0, 1.0];
        assert_eq!(cholesky_packed(&mut bad, 2).map_err(|e| e.0), Err(1));
    }

    #[test]
    fn jacobi_diagonalises() {
        let d = 4;
        let a = vec![
            4.0, 1.0, 0.5, 0.0, //
            1.0, 3.0, 0.2, 0.1, //
            0.5, 0.2, 2.0, 0.3, //
            0.0, 0.1, 0.3, 1.0,
        ];
        let (w, v) = jacobi_eigen(a.clone(), d, 50).expect("converges");
        for j in 0..d {
            for i in 0..d {
                let av: f64 = (0..d).map(|k| a[i * d + k] * v[k * d + j]).sum();
                assert!((av - w[j] * v[i * d + j]).abs() < 1e-12);
            }
        }
        assert!((w.iter().sum::<f64>() - 10.0).abs() < 1e-12);
    }
}
