//! Confidence scores over a classifier's logits, the cheapest per-request detectors: one minus the
//! maximum softmax probability (Hendrycks and Gimpel, "A baseline for detecting misclassified and
//! out-of-distribution examples", 2017), the softmax entropy, and the energy
//! `E(x) = −T · log Σᵢ exp(zᵢ / T)` (Liu et al., "Energy-based out-of-distribution detection",
//! 2020), which is lower in distribution, so the energy itself is the anomaly score.
//!
//! All three are computed in f64 around the largest logit and without cancellation: with
//! `eᵢ = exp((zᵢ − m) / T)`, `S = Σ eᵢ` and `R = S − 1` summed over all but the arg-max,
//! `1 − MSP = R / S`, `H = log1p(R) + Σᵢ eᵢ (m − zᵢ) / S` (a sum of non-negative terms) and
//! `E = −m − T log1p(R)`, so that very confident or very large logits keep full precision.

use serde::{Deserialize, Serialize};

use super::{
    DetectError, Detector, Scratch, bad_config, bad_state, check_finite_f32, check_sample,
};

/// Which confidence score a [`Confidence`] detector computes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "score", rename_all = "snake_case")]
pub enum ConfidenceKind {
    /// `1 − max softmax probability`.
    MaxSoftmax,
    /// The softmax distribution's entropy in nats.
    Entropy,
    /// The free energy `−T · logsumexp(z / T)`.
    Energy {
        /// The temperature `T > 0` (Liu et al. use 1).
        temperature: f64,
    },
}

/// A confidence detector over a fixed number of classes; it needs no fitting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "ConfidenceState")]
pub struct Confidence {
    kind: ConfidenceKind,
    classes: usize,
}

#[derive(Deserialize)]
struct ConfidenceState {
    kind: ConfidenceKind,
    classes: usize,
}

impl TryFrom<ConfidenceState> for Confidence {
    type Error = DetectError;

    fn try_from(s: ConfidenceState) -> Result<Self, DetectError> {
        Self::new(s.kind, s.classes).map_err(|e| bad_state(e.to_string()))
    }
}

impl Confidence {
    /// A detector computing `kind` over logit vectors of `classes >= 2` entries.
    pub fn new(kind: ConfidenceKind, classes: usize) -> Result<Self, DetectError> {
        if classes < 2 {
            return Err(bad_config(
                "classes",
                format!("expected at least 2 classes, got {classes}"),
            ));
        }
        if let ConfidenceKind::Energy { temperature } = kind {
            check_temperature(temperature)?;
        }
        Ok(Self { kind, classes })
    }

    /// The score this detector computes.
    pub fn kind(&self) -> ConfidenceKind {
        self.kind
    }
}

impl Detector for Confidence {
    fn dim(&self) -> usize {
        self.classes
    }

    fn score_with(&self, x: &[f32], _scratch: &mut Scratch) -> Result<f64, DetectError> {
        check_sample(x, self.classes, "logits")?;
        Ok(match self.kind {
            ConfidenceKind::MaxSoftmax => msp_unchecked(x),
            ConfidenceKind::Entropy => entropy_unchecked(x),
            ConfidenceKind::Energy { temperature } => energy_unchecked(x, temperature),
        })
    }
}

/// `1 − max softmax(logits)`, in [0, 1 − 1/C].
pub fn msp_score(logits: &[f32]) -> Result<f64, DetectError> {
    check_logits(logits)?;
    Ok(msp_unchecked(logits))
}

/// The entropy (nats) of `softmax(logits)`, in [0, ln C].
pub fn entropy_score(logits: &[f32]) -> Result<f64, DetectError> {
    check_logits(logits)?;
    Ok(entropy_unchecked(logits))
}

/// The energy `−T · logsumexp(logits / T)` for a temperature `T > 0`.
pub fn energy_score(logits: &[f32], temperature: f64) -> Result<f64, DetectError> {
    check_logits(logits)?;
    check_temperature(temperature)?;
    Ok(energy_unchecked(logits, temperature))
}

fn check_logits(logits: &[f32]) -> Result<(), DetectError> {
    if logits.is_empty() {
        return Err(DetectError::WrongDim {
            what: "logits",
            expected: 1,
            got: 0,
        });
    }
    check_finite_f32(logits, "logits")
}

fn check_temperature(t: f64) -> Result<(), DetectError> {
    if t.is_finite() && t > 0.0 {
        Ok(())
    } else {
        Err(bad_config(
            "temperature",
            format!("expected a finite temperature above 0, got {t}"),
        ))
    }
}

/// The shifted sums for finite, non-empty logits at temperature `t`: the maximum `m`, the sum `R`
/// of `exp((zᵢ − m) / t)` over all entries but the (first) arg-max, and `Σ eᵢ (m − zᵢ)` (unscaled
/// by `t`).
fn shifted(logits: &[f32], t: f64) -> (f64, f64, f64) {
    let mut arg = 0;
    let mut m = f64::from(logits[0]);
    for (i, &z) in logits.iter().enumerate().skip(1) {
        if f64::from(z) > m {
            m = f64::from(z);
            arg = i;
        }
    }
    let mut rest = 0.0;
    let mut weighted_gap = 0.0;
    for (i, &z) in logits.iter().enumerate() {
        if i != arg {
            let gap = m - f64::from(z);
            let e = (-gap / t).exp();
            rest += e;
            weighted_gap += e * gap;
        }
    }
    (m, rest, weighted_gap)
}

fn msp_unchecked(logits: &[f32]) -> f64 {
    let (_, rest, _) = shifted(logits, 1.0);
    rest / (1.0 + rest)
}

fn entropy_unchecked(logits: &[f32]) -> f64 {
    let (_, rest, weighted_gap) = shifted(logits, 1.0);
    libm::log1p(rest) + weighted_gap / (1.0 + rest)
}

fn energy_unchecked(logits: &[f32], t: f64) -> f64 {
    let (m, rest, _) = shifted(logits, t);
    -m - t * libm::log1p(rest)
}
