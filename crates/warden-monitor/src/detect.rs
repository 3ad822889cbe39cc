//! Per-request anomaly detectors. Each is fitted on clean reference vectors (penultimate features,
//! logits or raw inputs, always given as a flat row-major `&[f32]` plus the dimension) and then
//! scores one sample at a time; a higher score means more anomalous. The module also holds what
//! turns scores into decisions: split-conformal calibration to a target false-positive rate, the
//! allow / flag / block [`Verdict`], an [`Ensemble`] of calibrated detectors, and the report
//! functions (ROC AUC, TPR at a threshold, histograms).
//!
//! Code map:
//! - `confidence`: maximum softmax probability, entropy and energy scores over logits.
//! - `mahalanobis`: class-conditional Mahalanobis distance with a tied covariance (Lee et al. 2018).
//! - `knn`: distance to the k-th nearest normalised reference vector (Sun et al. 2022).
//! - `reconstruct`: reconstruction error of a PCA projection and of a small dense autoencoder.
//! - `squeeze`: feature squeezing (Xu et al. 2018): bit-depth reduction, median filters, the score.
//! - `calibrate`: conformal thresholds and p-values, verdicts, ROC AUC, TPR, histograms.
//! - `ensemble`: several detectors' conformal p-values combined (Bonferroni minimum or Fisher).
//! - `linalg` (private): the small dense linear algebra. The seeded generator is
//!   [`crate::stats::Rng`].
//!
//! Scoring is on the request path, so a fitted detector's `score_with` takes a caller-owned
//! [`Scratch`] and, once that scratch has grown to the detector's needs on the first call, does not
//! allocate. Fitted detectors serialise with serde; deserialising validates the state (dimensions,
//! finiteness, structure) so that a damaged or hostile saved detector is an error, not a panic.

mod calibrate;
mod confidence;
mod ensemble;
mod knn;
mod linalg;
mod mahalanobis;
mod reconstruct;
mod squeeze;

use serde::{Deserialize, Serialize};

pub use calibrate::{
    ConformalCalibration, Histogram, MAX_BINS, PValuePolicy, Verdict, VerdictPolicy, calibrate,
    conformal_rank, fpr_at, histogram, roc_auc, tpr_at,
};
pub use confidence::{Confidence, ConfidenceKind, energy_score, entropy_score, msp_score};
pub use ensemble::{Combination, Ensemble};
pub use knn::{Knn, KnnConfig};
pub use mahalanobis::{MAX_DIM as MAX_MAHALANOBIS_DIM, Mahalanobis, MahalanobisConfig};
pub use reconstruct::{Activation, Autoencoder, AutoencoderConfig, MAX_PCA_DIM, Pca};
pub use squeeze::{ImageShape, Squeezer, median_filter, reduce_bit_depth, squeeze_score};

/// Everything that can go wrong when fitting, scoring or calibrating a detector.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DetectError {
    /// A vector has the wrong length.
    #[error("{what}: expected a vector of {expected} values, got {got}")]
    WrongDim {
        /// Which vector.
        what: &'static str,
        /// The length the detector was fitted for.
        expected: usize,
        /// The length that was passed.
        got: usize,
    },
    /// A value is NaN or infinite.
    #[error("{what}: value at index {index} is {value}; expected a finite number")]
    NonFinite {
        /// Which vector or data set.
        what: &'static str,
        /// The flat index of the first bad value.
        index: usize,
        /// The bad value.
        value: f64,
    },
    /// A data set has fewer rows than the operation needs.
    #[error("{what}: expected at least {min} rows, got {got}")]
    TooFewRows {
        /// Which data set.
        what: &'static str,
        /// The fewest rows accepted.
        min: usize,
        /// The rows that were passed.
        got: usize,
    },
    /// A flat data set is not a whole number of rows.
    #[error("{what}: {len} values are not a whole number of rows of dimension {dim}")]
    Ragged {
        /// Which data set.
        what: &'static str,
        /// The number of values passed.
        len: usize,
        /// The row length.
        dim: usize,
    },
    /// A dimension of zero was given.
    #[error("{what}: expected a dimension of at least 1, got 0")]
    ZeroDim {
        /// Which dimension.
        what: &'static str,
    },
    /// The kNN `k` is zero or exceeds the (possibly subsampled) reference set.
    #[error("k = {k} does not fit {n} reference vectors; expected 1 <= k <= {n}")]
    BadK {
        /// The requested k.
        k: usize,
        /// The number of reference vectors kept.
        n: usize,
    },
    /// A class label is not below the number of classes.
    #[error("label {label} of row {row} is out of range; expected a class below {classes}")]
    LabelOutOfRange {
        /// The row whose label is bad.
        row: usize,
        /// The label.
        label: usize,
        /// The number of classes.
        classes: usize,
    },
    /// A class has no reference rows, so its mean is undefined.
    #[error("class {class} has no reference rows; expected every class in 0..{classes} to appear")]
    MissingClass {
        /// The missing class.
        class: usize,
        /// The number of classes.
        classes: usize,
    },
    /// The covariance stays singular (or indefinite) even after the ridge was added.
    #[error(
        "the covariance is not positive definite even with a ridge of {ridge}: pivot {pivot} is {value}; hint: use more reference rows or a larger ridge"
    )]
    NotPositiveDefinite {
        /// The absolute ridge that was added to the diagonal.
        ridge: f64,
        /// The index of the failing Cholesky pivot.
        pivot: usize,
        /// The pivot's value.
        value: f64,
    },
    /// A vector that must be L2-normalised is zero.
    #[error("{what}: row {row} has zero norm; expected a non-zero vector to normalise")]
    ZeroNorm {
        /// Which vector or data set.
        what: &'static str,
        /// The row.
        row: usize,
    },
    /// A configuration value is out of its domain.
    #[error("invalid {field}: {reason}")]
    InvalidConfig {
        /// The configuration field.
        field: &'static str,
        /// What was expected.
        reason: String,
    },
    /// A value lies outside the interval the operation needs.
    #[error("{what}: value at index {index} is {value}; expected a value in [{lo}, {hi}]")]
    OutOfRange {
        /// Which vector.
        what: &'static str,
        /// The flat index of the first bad value.
        index: usize,
        /// The bad value.
        value: f64,
        /// Lower bound.
        lo: f64,
        /// Upper bound.
        hi: f64,
    },
    /// A probability vector does not sum to one.
    #[error("{what}: row {row} sums to {sum}; expected a probability vector summing to 1")]
    NotProbability {
        /// Which vector.
        what: &'static str,
        /// The row.
        row: usize,
        /// Its sum.
        sum: f64,
    },
    /// Too few calibration scores for the requested false-positive rate.
    #[error(
        "{n} calibration scores are too few for a false-positive rate of {alpha}; expected at least {needed}"
    )]
    TooFewCalibration {
        /// Scores given.
        n: usize,
        /// The target false-positive rate.
        alpha: f64,
        /// The fewest scores that work for this rate.
        needed: usize,
    },
    /// The autoencoder's loss became NaN or infinite.
    #[error(
        "autoencoder training diverged at epoch {epoch} (loss {loss}); hint: lower the learning rate"
    )]
    TrainingDiverged {
        /// The epoch (from 0).
        epoch: usize,
        /// The loss seen.
        loss: f64,
    },
    /// The eigen-decomposition did not converge.
    #[error(
        "the eigen-decomposition did not converge in {sweeps} iterations; expected finite, moderate data"
    )]
    NoConvergence {
        /// Iterations made (for one eigenvalue).
        sweeps: usize,
    },
    /// A deserialised detector state is inconsistent.
    #[error("invalid saved detector state: {0}")]
    InvalidState(String),
}

/// A fitted per-request detector: scores one sample, higher meaning more anomalous.
pub trait Detector {
    /// The length of the vector that [`Detector::score`] expects.
    fn dim(&self) -> usize;

    /// Scores one sample, using `scratch` for temporary buffers. After the first call with a given
    /// scratch (which grows it), this does not allocate.
    fn score_with(&self, x: &[f32], scratch: &mut Scratch) -> Result<f64, DetectError>;

    /// Scores one sample with a fresh scratch (allocates; prefer [`Detector::score_with`] on the
    /// request path).
    fn score(&self, x: &[f32]) -> Result<f64, DetectError> {
        self.score_with(x, &mut Scratch::new())
    }

    /// Scores every row of a flat row-major batch, e.g. a calibration set.
    fn score_batch(&self, rows: &[f32]) -> Result<Vec<f64>, DetectError> {
        let dim = self.dim();
        if dim == 0 || !rows.len().is_multiple_of(dim) {
            return Err(DetectError::Ragged {
                what: "batch",
                len: rows.len(),
                dim,
            });
        }
        let mut scratch = Scratch::new();
        rows.chunks_exact(dim)
            .map(|row| self.score_with(row, &mut scratch))
            .collect()
    }
}

/// Reusable temporary buffers for [`Detector::score_with`]; keep one per thread and pass it to
/// every call. It grows to the largest need seen and never shrinks.
#[derive(Debug, Default, Clone)]
pub struct Scratch {
    f64s: Vec<f64>,
    f32s: Vec<f32>,
    pairs: Vec<(f32, u32)>,
}

impl Scratch {
    /// An empty scratch; the first scoring call sizes it.
    pub fn new() -> Self {
        Self::default()
    }

    /// Borrows `n64` f64s, `n32` f32s and `npairs` (value, index) pairs, growing the buffers if
    /// they are too small.
    pub(crate) fn buffers(
        &mut self,
        n64: usize,
        n32: usize,
        npairs: usize,
    ) -> (&mut [f64], &mut [f32], &mut [(f32, u32)]) {
        if self.f64s.len() < n64 {
            self.f64s.resize(n64, 0.0);
        }
        if self.f32s.len() < n32 {
            self.f32s.resize(n32, 0.0);
        }
        if self.pairs.len() < npairs {
            self.pairs.resize(npairs, (0.0, 0));
        }
        (
            &mut self.f64s[..n64],
            &mut self.f32s[..n32],
            &mut self.pairs[..npairs],
        )
    }
}

/// Any fitted detector of this module, tagged by `detector` when serialised, so that a bundle can
/// hold a list of them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "detector", rename_all = "snake_case")]
pub enum AnyDetector {
    /// A confidence score over logits.
    Confidence(Confidence),
    /// Class-conditional Mahalanobis distance on features.
    Mahalanobis(Mahalanobis),
    /// k-th nearest-neighbour distance on normalised features.
    Knn(Knn),
    /// PCA reconstruction error.
    Pca(Pca),
    /// Autoencoder reconstruction error.
    Autoencoder(Autoencoder),
}

impl AnyDetector {
    fn inner(&self) -> &dyn Detector {
        match self {
            Self::Confidence(d) => d,
            Self::Mahalanobis(d) => d,
            Self::Knn(d) => d,
            Self::Pca(d) => d,
            Self::Autoencoder(d) => d,
        }
    }
}

impl Detector for AnyDetector {
    fn dim(&self) -> usize {
        self.inner().dim()
    }

    fn score_with(&self, x: &[f32], scratch: &mut Scratch) -> Result<f64, DetectError> {
        self.inner().score_with(x, scratch)
    }
}

/// Checks that a sample has length `dim` and only finite values.
pub(crate) fn check_sample(x: &[f32], dim: usize, what: &'static str) -> Result<(), DetectError> {
    if x.len() != dim {
        return Err(DetectError::WrongDim {
            what,
            expected: dim,
            got: x.len(),
        });
    }
    check_finite_f32(x, what)
}

/// Checks that every value is finite.
pub(crate) fn check_finite_f32(x: &[f32], what: &'static str) -> Result<(), DetectError> {
    match x.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(index) => Err(DetectError::NonFinite {
            what,
            index,
            value: f64::from(x[index]),
        }),
    }
}

/// Checks that every value is finite.
pub(crate) fn check_finite_f64(x: &[f64], what: &'static str) -> Result<(), DetectError> {
    match x.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(index) => Err(DetectError::NonFinite {
            what,
            index,
            value: x[index],
        }),
    }
}

/// Validates a flat reference set: a non-zero dimension, whole rows, at least `min_rows` rows and
/// finite values. Returns the number of rows.
pub(crate) fn check_rows(
    data: &[f32],
    dim: usize,
    min_rows: usize,
    what: &'static str,
) -> Result<usize, DetectError> {
    if dim == 0 {
        return Err(DetectError::ZeroDim { what });
    }
    if !data.len().is_multiple_of(dim) {
        return Err(DetectError::Ragged {
            what,
            len: data.len(),
            dim,
        });
    }
    let n = data.len() / dim;
    if n < min_rows {
        return Err(DetectError::TooFewRows {
            what,
            min: min_rows,
            got: n,
        });
    }
    check_finite_f32(data, what)?;
    Ok(n)
}

/// Shorthand for an [`DetectError::InvalidState`] from deserialisation checks.
pub(crate) fn bad_state(msg: impl Into<String>) -> DetectError {
    DetectError::InvalidState(msg.into())
}

/// Shorthand for an [`DetectError::InvalidConfig`].
pub(crate) fn bad_config(field: &'static str, reason: impl Into<String>) -> DetectError {
    DetectError::InvalidConfig {
        field,
        reason: reason.into(),
    }
}
