//! The small dense linear algebra the detectors need, written here in plain loops: dot products
//! (with independent accumulators so that the compiler can vectorise them), the Cholesky
//! factorisation of a packed symmetric matrix and forward substitution for Mahalanobis, and the
//! eigen-decomposition of a symmetric matrix (Householder, then implicit QL) for PCA. Matrices are
//! row-major; the Cholesky factor is stored packed (row `i` holds its `i + 1` entries at offset
//! `i (i + 1) / 2`).

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

/// The eigen-decomposition of a symmetric `d × d` row-major matrix: Householder reduction to
/// tridiagonal form, then the implicit QL method with Wilkinson's shift on the tridiagonal matrix
/// (Golub and Van Loan, "Matrix Computations", 4th ed., sections 5.1.4 and 8.3). Both phases keep
/// their orthogonal transformations as rows (the transpose of the usual eigenvector matrix), so
/// every update runs along contiguous memory. About `9 d³` flops in all, against `6 d³` per sweep
/// (and about ten sweeps) for the cyclic Jacobi method this replaces.
///
/// Returns the eigenvalues and a row-major matrix whose column `j` is the unit eigenvector of
/// eigenvalue `j`, unsorted; if an eigenvalue takes more than `max_iterations` QL iterations,
/// returns the iterations made.
pub(crate) fn symmetric_eigen(
    mut a: Vec<f64>,
    d: usize,
    max_iterations: usize,
) -> Result<(Vec<f64>, Vec<f64>), usize> {
    // z holds Qᵀ, row by row: after the reduction, T = z A zᵀ is tridiagonal.
    let mut z = vec![0.0; d * d];
    for i in 0..d {
        z[i * d + i] = 1.0;
    }
    let mut diag = vec![0.0; d];
    // off[i] couples i and i + 1; off[d - 1] stays 0.
    let mut off = vec![0.0; d];
    let mut v = vec![0.0; d];
    let mut p = vec![0.0; d];
    let mut u = vec![0.0; d];
    for k in 0..d.saturating_sub(2) {
        // The reflector H = I − 2 v vᵀ (v a unit vector over indices k+1..d) that maps row k's
        // part right of the diagonal onto its first coordinate.
        let x = &a[k * d + k + 1..(k + 1) * d];
        let norm = dot_f64(x, x).sqrt();
        let m = d - k - 1;
        if norm == 0.0 {
            off[k] = 0.0;
            continue;
        }
        let alpha = if x[0] > 0.0 { -norm } else { norm };
        let v = &mut v[..m];
        v.copy_from_slice(x);
        v[0] -= alpha;
        let vn = dot_f64(v, v).sqrt();
        for e in v.iter_mut() {
            *e /= vn;
        }
        off[k] = alpha;
        // S ← H S H on the trailing block S: with p = S v and w = p − (vᵀp) v,
        // H S H = S − 2 (v wᵀ + w vᵀ).
        let p = &mut p[..m];
        for (i, pi) in p.iter_mut().enumerate() {
            let row = (k + 1 + i) * d + k + 1;
            *pi = dot_f64(&a[row..row + m], v);
        }
        let kv = dot_f64(v, p);
        for (pi, &vi) in p.iter_mut().zip(v.iter()) {
            *pi -= kv * vi;
        }
        for i in 0..m {
            let row = (k + 1 + i) * d + k + 1;
            let (vi, wi) = (2.0 * v[i], 2.0 * p[i]);
            for ((s, &vj), &wj) in a[row..row + m].iter_mut().zip(v.iter()).zip(p.iter()) {
                *s -= vi * wj + wi * vj;
            }
        }
        // z ← H z: rows k+1.. of z lose 2 v (vᵀ z).
        u.fill(0.0);
        for (i, &vi) in v.iter().enumerate() {
            let zr = &z[(k + 1 + i) * d..(k + 2 + i) * d];
            for (ui, &zi) in u.iter_mut().zip(zr) {
                *ui += vi * zi;
            }
        }
        for (i, &vi) in v.iter().enumerate() {
            let zr = &mut z[(k + 1 + i) * d..(k + 2 + i) * d];
            for (zi, &ui) in zr.iter_mut().zip(u.iter()) {
                *zi -= 2.0 * vi * ui;
            }
        }
    }
    for i in 0..d {
        diag[i] = a[i * d + i];
    }
    if d >= 2 {
        off[d - 2] = a[(d - 1) * d + d - 2];
    }
    // Implicit QL on (diag, off): each step chases a bulge from the bottom of the unreduced block
    // [l, m] to its top with plane rotations, shifted by the eigenvalue of the leading 2 × 2 that
    // is nearer diag[l]. Each rotation is applied to rows i, i+1 of z, which ends as the
    // eigenvectors, one per row.
    for l in 0..d {
        let mut iterations = 0;
        loop {
            let mut m = l;
            while m + 1 < d {
                let dd = diag[m].abs() + diag[m + 1].abs();
                if off[m].abs() <= f64::EPSILON * dd {
                    break;
                }
                m += 1;
            }
            if m == l {
                break;
            }
            if iterations == max_iterations {
                return Err(iterations);
            }
            iterations += 1;
            let mut g = (diag[l + 1] - diag[l]) / (2.0 * off[l]);
            let mut r = g.hypot(1.0);
            g = diag[m] - diag[l] + off[l] / (g + r.copysign(g));
            let (mut s, mut c, mut shift) = (1.0f64, 1.0f64, 0.0f64);
            let mut deflated = false;
            for i in (l..m).rev() {
                let f = s * off[i];
                let b = c * off[i];
                r = f.hypot(g);
                off[i + 1] = r;
                if r == 0.0 {
                    // The bulge vanished: the block splits at i + 1; start again.
                    diag[i + 1] -= shift;
                    off[m] = 0.0;
                    deflated = true;
                    break;
                }
                s = f / r;
                c = g / r;
                g = diag[i + 1] - shift;
                r = (diag[i] - g) * s + 2.0 * c * b;
                shift = s * r;
                diag[i + 1] = g + shift;
                g = c * r - b;
                let (upper, lower) = z.split_at_mut((i + 1) * d);
                let zi = &mut upper[i * d..];
                for (x, y) in zi.iter_mut().zip(lower[..d].iter_mut()) {
                    let (xi, yi) = (*x, *y);
                    *y = s * xi + c * yi;
                    *x = c * xi - s * yi;
                }
            }
            if deflated {
                continue;
            }
            diag[l] -= shift;
            off[l] = g;
            off[m] = 0.0;
        }
    }
    // Column j of the result is eigenvector j (row j of z).
    let mut vectors = vec![0.0; d * d];
    for (j, row) in z.chunks_exact(d.max(1)).enumerate().take(d) {
        for (i, &x) in row.iter().enumerate() {
            vectors[i * d + j] = x;
        }
    }
    Ok((diag, vectors))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference: the cyclic Jacobi method, which PCA used before [`symmetric_eigen`] (Golub
    /// and Van Loan, "Matrix Computations", 4th ed., section 8.5): rotations annihilate each
    /// off-diagonal entry in turn until the off-diagonal mass is below `1e-28` of the total.
    /// Returns what [`symmetric_eigen`] returns; on no convergence within `max_sweeps`, the sweeps
    /// made.
    fn jacobi_eigen(
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

    /// `A v = λ v` for every pair, the vectors orthonormal, and the eigenvalues those of the
    /// Jacobi reference, for matrices with distinct, repeated and zero eigenvalues, already
    /// diagonal or tridiagonal ones, and sizes 0 to 60.
    #[test]
    fn symmetric_eigen_matches_the_jacobi_reference() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        };
        let mut cases: Vec<(usize, Vec<f64>)> =
            vec![(0, vec![]), (1, vec![3.0]), (3, vec![0.0; 9])];
        for d in [2, 3, 7, 31, 60] {
            let mut a = vec![0.0; d * d];
            for i in 0..d {
                for j in 0..=i {
                    let x = next();
                    a[i * d + j] = x;
                    a[j * d + i] = x;
                }
            }
            cases.push((d, a));
        }
        // Repeated eigenvalues: Q diag(2, 2, 2, -1, -1, 5, 0, 0) Qᵀ with Q from a Householder
        // reflector, and a diagonal matrix, and a tridiagonal one.
        let d = 8;
        let w: Vec<f64> = (0..d).map(|_| next()).collect();
        let wn = w.iter().map(|x| x * x).sum::<f64>();
        let lam = [2.0, 2.0, 2.0, -1.0, -1.0, 5.0, 0.0, 0.0];
        let mut a = vec![0.0; d * d];
        for i in 0..d {
            for j in 0..d {
                let q = |r: usize, c: usize| f64::from(u8::from(r == c)) - 2.0 * w[r] * w[c] / wn;
                a[i * d + j] = (0..d).map(|k| q(i, k) * lam[k] * q(j, k)).sum();
            }
        }
        cases.push((d, a));
        cases.push((
            4,
            vec![
                1.0, 0.0, 0.0, 0.0, 0.0, -2.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0,
            ],
        ));
        let mut t = vec![0.0; 25];
        for i in 0..5 {
            t[i * 5 + i] = 2.0;
            if i + 1 < 5 {
                t[i * 5 + i + 1] = -1.0;
                t[(i + 1) * 5 + i] = -1.0;
            }
        }
        cases.push((5, t));
        for (d, a) in cases {
            let scale = a.iter().fold(1.0f64, |m, x| m.max(x.abs()));
            let (w, v) = symmetric_eigen(a.clone(), d, 60).expect("converges");
            assert_eq!((w.len(), v.len()), (d, d * d));
            for j in 0..d {
                for i in 0..d {
                    let av: f64 = (0..d).map(|k| a[i * d + k] * v[k * d + j]).sum();
                    assert!(
                        (av - w[j] * v[i * d + j]).abs() < 1e-12 * scale * d as f64,
                        "{d}: A v ≠ λ v"
                    );
                }
                for k in 0..d {
                    let dot: f64 = (0..d).map(|i| v[i * d + j] * v[i * d + k]).sum();
                    let want = if j == k { 1.0 } else { 0.0 };
                    assert!(
                        (dot - want).abs() < 1e-12 * d as f64,
                        "{d}: not orthonormal"
                    );
                }
            }
            let (mut wj, _) = jacobi_eigen(a, d, 100).expect("converges");
            let mut w = w;
            w.sort_by(f64::total_cmp);
            wj.sort_by(f64::total_cmp);
            for (x, y) in w.iter().zip(&wj) {
                assert!(
                    (x - y).abs() < 1e-12 * scale * d.max(1) as f64,
                    "{d}: {x} vs {y}"
                );
            }
        }
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
