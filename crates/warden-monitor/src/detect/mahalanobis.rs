//! Class-conditional Mahalanobis distance on penultimate features (Lee et al., "A simple unified
//! framework for detecting out-of-distribution samples and adversarial attacks", NeurIPS 2018):
//! per-class means `μ_c`, one shared (tied) covariance `Σ = (1/N) Σᵢ (xᵢ − μ_yᵢ)(xᵢ − μ_yᵢ)ᵀ`,
//! and the score `min_c (x − μ_c)ᵀ Σ⁻¹ (x − μ_c)`, the squared distance to the closest class.
//!
//! Fitting adds a ridge `λ = ridge · tr(Σ) / d` to the diagonal (relative to the mean variance,
//! so it does not depend on the features' scale; the default `1e-6` only guards against rounding,
//! a larger one regularises a reference set with fewer rows than dimensions), factorises
//! `Σ + λI = L Lᵀ` by Cholesky in f64, and stores `L` packed with the whitened means `L⁻¹ μ_c`.
//! Scoring is then `y = L⁻¹ x` (d²/2 multiply-adds) followed by `C` squared distances
//! `‖y − L⁻¹ μ_c‖²`, because `(x − μ)ᵀ Σ⁻¹ (x − μ) = ‖L⁻¹ (x − μ)‖²`. Below 64 dimensions `y` is
//! a forward substitution in f64; from 64 on, a product with the precomputed inverse factor in
//! f32 through `warden-gemm` (see [`Whitener`]), within about 1e-6 of the substitution.

use serde::{Deserialize, Serialize};

use super::linalg::{cholesky_packed, dot_f64, forward_solve, packed_row};
use super::{
    DetectError, Detector, Scratch, bad_config, bad_state, check_finite_f64, check_rows,
    check_sample,
};

/// The widest feature vector accepted: the covariance takes `d²/2` f64s and its factorisation
/// `d³/3` multiply-adds (about 3·10¹⁰ at this bound).
pub const MAX_DIM: usize = 4096;

/// How to fit a [`Mahalanobis`] detector.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MahalanobisConfig {
    /// The ridge added to the covariance's diagonal, relative to its mean diagonal entry; at least 0.
    pub ridge: f64,
}

impl Default for MahalanobisConfig {
    fn default() -> Self {
        Self { ridge: 1e-6 }
    }
}

/// A fitted class-conditional Mahalanobis detector.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "MahalanobisState")]
pub struct Mahalanobis {
    dim: usize,
    classes: usize,
    /// The absolute ridge that was added to the diagonal.
    ridge: f64,
    /// The packed lower Cholesky factor of `Σ + ridge · I`.
    cholesky: Vec<f64>,
    /// `L⁻¹ μ_c`, one row of `dim` per class.
    whitened_means: Vec<f64>,
    #[serde(skip_serializing)]
    inv_diag: Vec<f64>,
    /// The single-precision scoring path, rebuilt from the factor on fit and load.
    #[serde(skip_serializing)]
    fast: Option<Whitener>,
}

#[derive(Deserialize)]
struct MahalanobisState {
    dim: usize,
    classes: usize,
    ridge: f64,
    cholesky: Vec<f64>,
    whitened_means: Vec<f64>,
}

impl TryFrom<MahalanobisState> for Mahalanobis {
    type Error = DetectError;

    fn try_from(s: MahalanobisState) -> Result<Self, DetectError> {
        if s.dim == 0 || s.classes == 0 || s.dim > MAX_DIM {
            return Err(bad_state(format!(
                "mahalanobis: expected 1 <= dim <= {MAX_DIM} and at least 1 class"
            )));
        }
        let tri = s
            .dim
            .checked_mul(s.dim + 1)
            .map(|v| v / 2)
            .ok_or_else(|| bad_state("mahalanobis: dim too large"))?;
        if s.cholesky.len() != tri || Some(s.whitened_means.len()) != s.classes.checked_mul(s.dim) {
            return Err(bad_state(format!(
                "mahalanobis: expected {tri} factor entries and {} x {} means",
                s.classes, s.dim
            )));
        }
        check_finite_f64(&s.cholesky, "mahalanobis factor")
            .map_err(|e| bad_state(e.to_string()))?;
        check_finite_f64(&s.whitened_means, "mahalanobis means")
            .map_err(|e| bad_state(e.to_string()))?;
        if !(s.ridge.is_finite() && s.ridge >= 0.0) {
            return Err(bad_state(
                "mahalanobis: ridge must be finite and at least 0",
            ));
        }
        let inv_diag = inverse_diagonal(&s.cholesky, s.dim)
            .ok_or_else(|| bad_state("mahalanobis: the factor's diagonal must be positive"))?;
        let fast = Whitener::build(&s.cholesky, &inv_diag, &s.whitened_means, s.dim);
        Ok(Self {
            dim: s.dim,
            classes: s.classes,
            ridge: s.ridge,
            cholesky: s.cholesky,
            whitened_means: s.whitened_means,
            inv_diag,
            fast,
        })
    }
}

fn inverse_diagonal(l: &[f64], d: usize) -> Option<Vec<f64>> {
    (0..d)
        .map(|i| {
            let v = l[packed_row(i) + i];
            (v > 0.0 && (1.0 / v).is_finite()).then(|| 1.0 / v)
        })
        .collect()
}

impl Mahalanobis {
    /// Fits on `features` (row-major, `dim` values per row) with `labels[i] < classes` giving the
    /// class of row `i`. Every class must appear at least once.
    pub fn fit(
        features: &[f32],
        dim: usize,
        labels: &[usize],
        classes: usize,
        config: MahalanobisConfig,
    ) -> Result<Self, DetectError> {
        if !(config.ridge.is_finite() && config.ridge >= 0.0) {
            return Err(bad_config(
                "ridge",
                format!(
                    "expected a finite ridge of at least 0, got {}",
                    config.ridge
                ),
            ));
        }
        if classes == 0 {
            return Err(DetectError::ZeroDim { what: "classes" });
        }
        if dim > MAX_DIM {
            return Err(bad_config(
                "dim",
                format!("expected at most {MAX_DIM} features, got {dim}"),
            ));
        }
        let n = check_rows(features, dim, 1, "mahalanobis reference")?;
        if classes > n {
            // More classes than rows: some class cannot appear (checked before allocating).
            return Err(DetectError::MissingClass { class: n, classes });
        }
        if labels.len() != n {
            return Err(DetectError::WrongDim {
                what: "labels",
                expected: n,
                got: labels.len(),
            });
        }
        let mut counts = vec![0usize; classes];
        for (row, &label) in labels.iter().enumerate() {
            if label >= classes {
                return Err(DetectError::LabelOutOfRange {
                    row,
                    label,
                    classes,
                });
            }
            counts[label] += 1;
        }
        if let Some(class) = counts.iter().position(|&c| c == 0) {
            return Err(DetectError::MissingClass { class, classes });
        }

        let mut means = vec![0.0f64; classes * dim];
        for (row, &label) in features.chunks_exact(dim).zip(labels) {
            for (m, &v) in means[label * dim..(label + 1) * dim].iter_mut().zip(row) {
                *m += f64::from(v);
            }
        }
        for (mean, &count) in means.chunks_exact_mut(dim).zip(&counts) {
            for m in mean {
                *m /= count as f64;
            }
        }

        // The tied covariance, packed lower triangle, accumulated in f64.
        let mut cov = vec![0.0f64; dim * (dim + 1) / 2];
        let mut centred = vec![0.0f64; dim];
        for (row, &label) in features.chunks_exact(dim).zip(labels) {
            let mean = &means[label * dim..(label + 1) * dim];
            for ((c, &v), m) in centred.iter_mut().zip(row).zip(mean) {
                *c = f64::from(v) - m;
            }
            for i in 0..dim {
                let ci = centred[i];
                let ri = packed_row(i);
                for (acc, cj) in cov[ri..=ri + i].iter_mut().zip(&centred[..=i]) {
                    *acc += ci * cj;
                }
            }
        }
        for v in &mut cov {
            *v /= n as f64;
        }
        let trace: f64 = (0..dim).map(|i| cov[packed_row(i) + i]).sum();
        let ridge = config.ridge * trace / dim as f64;
        for i in 0..dim {
            cov[packed_row(i) + i] += ridge;
        }
        cholesky_packed(&mut cov, dim).map_err(|(pivot, value)| {
            DetectError::NotPositiveDefinite {
                ridge,
                pivot,
                value,
            }
        })?;
        let inv_diag = inverse_diagonal(&cov, dim).ok_or(DetectError::NotPositiveDefinite {
            ridge,
            pivot: 0,
            value: 0.0,
        })?;

        let mut whitened_means = vec![0.0f64; classes * dim];
        for (w, mean) in whitened_means
            .chunks_exact_mut(dim)
            .zip(means.chunks_exact(dim))
        {
            // The means are f64, so solve directly rather than through the f32 sample path.
            for i in 0..dim {
                let ri = packed_row(i);
                let s = mean[i] - dot_f64(&cov[ri..ri + i], &w[..i]);
                w[i] = s * inv_diag[i];
            }
        }
        check_finite_f64(&whitened_means, "whitened means")?;
        let fast = Whitener::build(&cov, &inv_diag, &whitened_means, dim);
        Ok(Self {
            dim,
            classes,
            ridge,
            cholesky: cov,
            whitened_means,
            inv_diag,
            fast,
        })
    }

    /// The number of classes.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// The absolute ridge that was added to the covariance's diagonal.
    pub fn ridge(&self) -> f64 {
        self.ridge
    }

    /// The closest class and the squared Mahalanobis distance to its mean.
    pub fn nearest_class(
        &self,
        x: &[f32],
        scratch: &mut Scratch,
    ) -> Result<(usize, f64), DetectError> {
        check_sample(x, self.dim, "features")?;
        if let Some(fast) = &self.fast {
            let (_, buf, _) = scratch.buffers(0, 2 * self.dim, 0);
            if let Some(best) = fast.nearest(x, buf) {
                return Ok(best);
            }
        }
        self.nearest_class_exact(x, scratch)
    }

    /// [`Mahalanobis::nearest_class`] by forward substitution in double precision.
    fn nearest_class_exact(
        &self,
        x: &[f32],
        scratch: &mut Scratch,
    ) -> Result<(usize, f64), DetectError> {
        let (y, _, _) = scratch.buffers(self.dim, 0, 0);
        forward_solve(&self.cholesky, &self.inv_diag, x, y);
        let mut best = (0, f64::INFINITY);
        for (c, mean) in self.whitened_means.chunks_exact(self.dim).enumerate() {
            let mut acc = [0.0f64; 4];
            let (cy, ty) = y.as_chunks::<4>();
            let (cm, tm) = mean.as_chunks::<4>();
            for (a, b) in cy.iter().zip(cm) {
                for ((s, p), q) in acc.iter_mut().zip(a).zip(b) {
                    let diff = p - q;
                    *s += diff * diff;
                }
            }
            let mut d2 = (acc[0] + acc[2]) + (acc[1] + acc[3]);
            for (p, q) in ty.iter().zip(tm) {
                d2 += (p - q) * (p - q);
            }
            if d2 < best.1 {
                best = (c, d2);
            }
        }
        Ok(best)
    }
}

impl Detector for Mahalanobis {
    fn dim(&self) -> usize {
        self.dim
    }

    fn score_with(&self, x: &[f32], scratch: &mut Scratch) -> Result<f64, DetectError> {
        self.nearest_class(x, scratch).map(|(_, d2)| d2)
    }
}

/// Smallest dimension scored through [`Whitener`]; below it the substitution is as fast.
const WHITENER_MIN_DIM: usize = 64;

/// Rows per block of the inverse factor.
const WHITENER_BLOCK: usize = 64;

/// The single-precision scoring path for wide inputs (raw pixels): the inverse factor `W = L⁻¹`
/// is formed once in double precision, and a sample costs one matrix-vector product
/// `y = W (x − c)` through `warden-gemm` instead of a forward substitution, whose dot products
/// depend on each other row by row and run in double precision on the portable instruction set.
/// `W` is lower triangular: it is stored in blocks of [`WHITENER_BLOCK`] rows, each only as wide
/// as its last row's non-zero columns, so half of it is neither stored nor multiplied (a 784-wide
/// factor is 1.3 MB in f32 against 2.5 MB in f64). Centring on `c`, the mean of the class
/// means, keeps `x − c` and `W (μ_k − c)` small, so the single-precision sums do not cancel large
/// terms. The tests compare it with the double-precision substitution.
#[derive(Debug, Clone)]
struct Whitener {
    dim: usize,
    centre: Vec<f32>,
    /// Block `b` holds rows `b·B ..` of `W`, each `min((b + 1)·B, dim)` columns wide, row-major.
    blocks: Vec<Vec<f32>>,
    /// `W (μ_k − c)`, one row of `dim` per class.
    means: Vec<f32>,
}

impl Whitener {
    /// `None` below [`WHITENER_MIN_DIM`] or if a value does not fit in single precision.
    fn build(
        cholesky: &[f64],
        inv_diag: &[f64],
        whitened_means: &[f64],
        dim: usize,
    ) -> Option<Whitener> {
        if dim < WHITENER_MIN_DIM {
            return None;
        }
        let classes = whitened_means.len() / dim;
        // Column j of W solves L w = e_j; it is zero above row j.
        let mut w = vec![0.0f64; dim * dim];
        let mut col = vec![0.0f64; dim];
        for j in 0..dim {
            col.iter_mut().for_each(|v| *v = 0.0);
            for i in j..dim {
                let ri = packed_row(i);
                let b = if i == j { 1.0 } else { 0.0 };
                let s = b - dot_f64(&cholesky[ri + j..ri + i], &col[j..i]);
                col[i] = s * inv_diag[i];
            }
            for i in j..dim {
                w[i * dim + j] = col[i];
            }
        }
        // c = mean of the means = L · (mean of the whitened means), since L⁻¹ is linear.
        let mut wc = vec![0.0f64; dim];
        for m in whitened_means.chunks_exact(dim) {
            for (a, v) in wc.iter_mut().zip(m) {
                *a += v / classes as f64;
            }
        }
        let mut centre = vec![0.0f64; dim];
        for (i, c) in centre.iter_mut().enumerate() {
            let ri = packed_row(i);
            *c = dot_f64(&cholesky[ri..=ri + i], &wc[..=i]);
        }
        let narrow = |v: f64| {
            let f = v as f32;
            f.is_finite().then_some(f)
        };
        let mut blocks = Vec::new();
        for start in (0..dim).step_by(WHITENER_BLOCK) {
            let end = (start + WHITENER_BLOCK).min(dim);
            let mut block = Vec::with_capacity((end - start) * end);
            for i in start..end {
                for &v in &w[i * dim..i * dim + end] {
                    block.push(narrow(v)?);
                }
            }
            blocks.push(block);
        }
        let mut means = Vec::with_capacity(classes * dim);
        for m in whitened_means.chunks_exact(dim) {
            for (v, c) in m.iter().zip(&wc) {
                means.push(narrow(v - c)?);
            }
        }
        let centre = centre.into_iter().map(narrow).collect::<Option<Vec<_>>>()?;
        Some(Whitener {
            dim,
            centre,
            blocks,
            means,
        })
    }

    /// The closest class and the squared distance, with `buf` of at least `2 · dim`; `None` if
    /// the sums overflowed single precision (the caller then takes the exact path).
    fn nearest(&self, x: &[f32], buf: &mut [f32]) -> Option<(usize, f64)> {
        let d = self.dim;
        let (xc, y) = buf.split_at_mut(d);
        for ((o, v), c) in xc.iter_mut().zip(x).zip(&self.centre) {
            *o = v - c;
        }
        for (b, block) in self.blocks.iter().enumerate() {
            let start = b * WHITENER_BLOCK;
            let end = (start + WHITENER_BLOCK).min(d);
            warden_gemm::sgemv(
                &xc[..end],
                block,
                warden_gemm::Shape::transposed(end - start, end),
                &mut y[start..end],
            )
            .ok()?;
        }
        let y = &y[..d];
        let mut best = (0, f64::INFINITY);
        for (c, mean) in self.means.chunks_exact(d).enumerate() {
            let mut acc = [0.0f64; 8];
            let (cy, ty) = y.as_chunks::<8>();
            let (cm, tm) = mean.as_chunks::<8>();
            for (a, m) in cy.iter().zip(cm) {
                for ((s, p), q) in acc.iter_mut().zip(a).zip(m) {
                    let diff = f64::from(p - q);
                    *s += diff * diff;
                }
            }
            let mut d2: f64 = acc.iter().sum();
            for (p, q) in ty.iter().zip(tm) {
                d2 += f64::from(p - q) * f64::from(p - q);
            }
            if d2 < best.1 {
                best = (c, d2);
            }
        }
        best.1.is_finite().then_some(best)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows of dimension `dim` with per-coordinate scales from 1e-3 to 1 (nearly constant
    /// coordinates, as the border pixels of an image) and a shared factor that correlates them,
    /// with class-dependent offsets.
    fn sample(seed: u64, n: usize, dim: usize, classes: usize) -> (Vec<f32>, Vec<usize>) {
        let mut rng = crate::stats::Rng::new(seed);
        let mut x = Vec::with_capacity(n * dim);
        let mut labels = Vec::with_capacity(n);
        for i in 0..n {
            let class = i % classes;
            let shared = rng.standard_normal();
            for j in 0..dim {
                let scale = if j % 7 == 0 {
                    1e-3
                } else {
                    0.05 + j as f64 / dim as f64
                };
                let offset = 0.3 * ((class * 31 + j * 17) % 11) as f64 / 11.0;
                x.push((offset + scale * (rng.standard_normal() + 0.5 * shared)) as f32);
            }
            labels.push(class);
        }
        (x, labels)
    }

    #[test]
    fn single_precision_scores_match_the_substitution() {
        for (dim, ridge) in [(64, 1e-6), (200, 1e-6), (300, 1e-3)] {
            let classes = 5;
            let (fit, labels) = sample(1, 2000, dim, classes);
            let m = Mahalanobis::fit(&fit, dim, &labels, classes, MahalanobisConfig { ridge })
                .expect("positive definite");
            assert!(m.fast.is_some());
            let (test, _) = sample(2, 200, dim, classes);
            // Also inputs off the data: uniform noise, as an attack or a corrupted request.
            let mut rng = crate::stats::Rng::new(3);
            let noise: Vec<f32> = (0..20 * dim).map(|_| rng.next_f32()).collect();
            let mut scratch = Scratch::new();
            let mut worst = 0.0f64;
            for x in test.chunks_exact(dim).chain(noise.chunks_exact(dim)) {
                let (fc, fd) = m.nearest_class(x, &mut scratch).expect("finite");
                let (ec, ed) = m.nearest_class_exact(x, &mut scratch).expect("finite");
                worst = worst.max((fd - ed).abs() / ed);
                // Another class only on a near tie, where the distance is the same.
                assert!(
                    fc == ec || (fd - ed).abs() <= 1e-4 * ed,
                    "class {fc} vs {ec}"
                );
            }
            assert!(
                worst < 1e-5,
                "dim {dim} ridge {ridge}: relative error {worst}"
            );
        }
    }

    #[test]
    fn a_serialised_detector_rebuilds_the_fast_path() {
        let (fit, labels) = sample(4, 600, 80, 3);
        let m = Mahalanobis::fit(&fit, 80, &labels, 3, MahalanobisConfig::default())
            .expect("positive definite");
        let back: Mahalanobis =
            serde_json::from_str(&serde_json::to_string(&m).expect("serialises")).expect("loads");
        assert!(back.fast.is_some());
        let mut scratch = Scratch::new();
        let x = &fit[..80];
        assert_eq!(
            m.score_with(x, &mut scratch).expect("finite"),
            back.score_with(x, &mut scratch).expect("finite")
        );
    }
}
