//! An ensemble of detectors: each member's score is turned into a conformal p-value against that
//! member's own held-out clean calibration scores (see `calibrate`), and the p-values are combined
//! into one.
//!
//! - [`Combination::BonferroniMin`] (the default): `p = min(1, m · minᵢ pᵢ)` for `m` members. Each
//!   conformal p-value is super-uniform on clean data, so by the union bound `P(p <= α) <= α` for
//!   any dependence between the members: rejecting at `p <= α` keeps the false-positive rate at
//!   most `α`.
//! - [`Combination::Fisher`]: `X = −2 Σᵢ ln pᵢ`, and `p = P(χ²₂ₘ >= X) = e^{−X/2} Σ_{j<m}
//!   (X/2)ʲ / j!` (the closed form for even degrees of freedom). More powerful when several members
//!   see a weak signal, but its null distribution assumes independent members; detectors scoring the
//!   same input are usually correlated, so Fisher's combination carries no false-positive guarantee
//!   and should be re-calibrated on clean data before use.
//!
//! The ensemble holds only calibrations, not detectors, because members may score different
//! vectors of the same request (logits, features, the raw input).

use serde::{Deserialize, Serialize};

use super::calibrate::{ConformalCalibration, PValuePolicy, Verdict};
use super::{DetectError, bad_state};

/// How an [`Ensemble`] combines its members' p-values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Combination {
    /// The smallest p-value times the number of members, capped at 1; keeps the FPR guarantee.
    #[default]
    BonferroniMin,
    /// Fisher's method; assumes independent members (no guarantee otherwise).
    Fisher,
}

/// Calibrated members and how to combine them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "EnsembleState")]
pub struct Ensemble {
    members: Vec<ConformalCalibration>,
    combination: Combination,
}

#[derive(Deserialize)]
struct EnsembleState {
    members: Vec<ConformalCalibration>,
    combination: Combination,
}

impl TryFrom<EnsembleState> for Ensemble {
    type Error = DetectError;

    fn try_from(s: EnsembleState) -> Result<Self, DetectError> {
        Self::new(s.members, s.combination).map_err(|e| bad_state(e.to_string()))
    }
}

impl Ensemble {
    /// An ensemble of at least one member.
    pub fn new(
        members: Vec<ConformalCalibration>,
        combination: Combination,
    ) -> Result<Self, DetectError> {
        if members.is_empty() {
            return Err(DetectError::TooFewRows {
                what: "ensemble members",
                min: 1,
                got: 0,
            });
        }
        Ok(Self {
            members,
            combination,
        })
    }

    /// The number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Always false: an ensemble has at least one member.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The members' calibrations, in order.
    pub fn members(&self) -> &[ConformalCalibration] {
        &self.members
    }

    /// The combined p-value of one request, given each member's score in member order; small
    /// means anomalous.
    pub fn p_value(&self, scores: &[f64]) -> Result<f64, DetectError> {
        if scores.len() != self.members.len() {
            return Err(DetectError::WrongDim {
                what: "ensemble scores",
                expected: self.members.len(),
                got: scores.len(),
            });
        }
        let m = self.members.len();
        match self.combination {
            Combination::BonferroniMin => {
                let mut min_p = 1.0f64;
                for (cal, &s) in self.members.iter().zip(scores) {
                    min_p = min_p.min(cal.p_value(s)?);
                }
                Ok((m as f64 * min_p).min(1.0))
            }
            Combination::Fisher => {
                // half_x = X / 2 = −Σ ln pᵢ.
                let mut half_x = 0.0f64;
                for (cal, &s) in self.members.iter().zip(scores) {
                    half_x -= cal.p_value(s)?.ln();
                }
                Ok(chi2_even_survival(half_x, m))
            }
        }
    }

    /// The verdict for one request's member scores under significance levels.
    pub fn verdict(&self, scores: &[f64], policy: &PValuePolicy) -> Result<Verdict, DetectError> {
        policy.verdict(self.p_value(scores)?)
    }
}

/// `P(χ²₂ₘ >= 2 · half_x) = e^{−half_x} Σ_{j<m} half_xʲ / j!` for `half_x >= 0`.
fn chi2_even_survival(half_x: f64, m: usize) -> f64 {
    let mut term = (-half_x).exp();
    let mut sum = term;
    for j in 1..m {
        term *= half_x / j as f64;
        sum += term;
    }
    sum.clamp(0.0, 1.0)
}
