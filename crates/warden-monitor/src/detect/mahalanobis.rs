//! Class-conditional Mahalanobis distance on penultimate features (Lee et al., "A simple unified
//! framework for detecting out-of-distribution samples and adversarial attacks", NeurIPS 2018):
//! per-class means `μ_c`, one shared (tied) covariance `Σ = (1/N) Σᵢ (xᵢ − μ_yᵢ)(xᵢ − μ_yᵢ)ᵀ`,
//! and the score `min_c (x − μ_c)ᵀ Σ⁻¹ (x − μ_c)`, the squared distance to the closest class.
//!
//! Fitting adds a ridge `λ = ridge · tr(Σ) / d` to the diagonal (relative to the mean variance,
//! so it does not depend on the features' scale; the default `1e-6` only guards against rounding,
//! a larger one regularises a reference set with fewer rows than dimensions), factorises
//! `Σ + λI = L Lᵀ` by Cholesky in f64, and stores `L` packed with the whitened means `L⁻¹ μ_c`.
//! Scoring is then one forward substitution `y = L⁻¹ x` (d²/2 multiply-adds) followed by `C`
//! squared distances `‖y − L⁻¹ μ_c‖²`, because `(x − μ)ᵀ Σ⁻¹ (x − μ) = ‖L⁻¹ (x − μ)‖²`.

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
        Ok(Self {
            dim: s.dim,
            classes: s.classes,
            ridge: s.ridge,
            cholesky: s.cholesky,
            whitened_means: s.whitened_means,
            inv_diag,
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
        Ok(Self {
            dim,
            classes,
            ridge,
            cholesky: cov,
            whitened_means,
            inv_diag,
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
