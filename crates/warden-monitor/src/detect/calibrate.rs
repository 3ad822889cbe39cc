//! From scores to decisions. Split-conformal calibration (Vovk et al., "Algorithmic learning in a
//! random world", 2005; Angelopoulos and Bates, "A gentle introduction to conformal prediction",
//! 2021): given `n` scores of held-out clean data and a target false-positive rate `α`, the
//! threshold is the `k`-th smallest score with `k = ⌈(n + 1)(1 − α)⌉`; when the calibration and the
//! test scores are exchangeable, a fresh clean score exceeds it with probability at most `α` (and at
//! least `α − 1/(n + 1)` without ties). The same order-statistic argument gives the conformal
//! p-value `(1 + #{cal ≥ s}) / (n + 1)`, which is at most `α` with probability at most `α`.
//!
//! Also here: the allow / flag / block [`Verdict`] with a threshold per level, and report
//! functions: ROC AUC as the Mann–Whitney statistic with ties counted one half, the true- or
//! false-positive rate at a threshold, and histograms with NumPy's bin conventions.

use serde::{Deserialize, Serialize};

use super::{DetectError, bad_config, bad_state, check_finite_f64};

/// The rank `k = ⌈(n + 1)(1 − α)⌉` (1-based) of the conformal threshold among `n` calibration
/// scores. A product within `1e-9` (relative) of an integer counts as that integer, so that a
/// decimal `α` such as 0.05 gives the rank its exact value would. Errors if `α` is not in (0, 1)
/// or if `k > n` (too few scores for this `α`).
pub fn conformal_rank(n: usize, alpha: f64) -> Result<usize, DetectError> {
    check_alpha(alpha, "alpha")?;
    let k = raw_rank(n, alpha);
    if k > n {
        // The fewest scores that work: (1 − α) / α, rounded up, checked against raw_rank.
        let mut needed = (((1.0 - alpha) / alpha).floor() as usize)
            .saturating_sub(1)
            .max(1);
        while raw_rank(needed, alpha) > needed {
            needed += 1;
        }
        return Err(DetectError::TooFewCalibration { n, alpha, needed });
    }
    Ok(k)
}

fn raw_rank(n: usize, alpha: f64) -> usize {
    let x = (n as f64 + 1.0) * (1.0 - alpha);
    let r = x.round();
    let k = if (x - r).abs() <= 1e-9 * x.max(1.0) {
        r
    } else {
        x.ceil()
    };
    (k as usize).max(1)
}

fn check_alpha(alpha: f64, field: &'static str) -> Result<(), DetectError> {
    if alpha.is_finite() && alpha > 0.0 && alpha < 1.0 {
        Ok(())
    } else {
        Err(bad_config(
            field,
            format!("expected a false-positive rate in (0, 1), got {alpha}"),
        ))
    }
}

fn check_scores(scores: &[f64], what: &'static str) -> Result<(), DetectError> {
    if scores.is_empty() {
        return Err(DetectError::TooFewRows {
            what,
            min: 1,
            got: 0,
        });
    }
    check_finite_f64(scores, what)
}

/// The split-conformal threshold for clean calibration `scores` and a target false-positive rate
/// `alpha`: the `⌈(n + 1)(1 − α)⌉`-th smallest score. Flag a sample when its score is strictly
/// above the threshold; for exchangeable clean data, `P(score > threshold) <= alpha`.
pub fn calibrate(scores: &[f64], alpha: f64) -> Result<f64, DetectError> {
    check_scores(scores, "calibration scores")?;
    let k = conformal_rank(scores.len(), alpha)?;
    let mut copy = scores.to_vec();
    let (_, kth, _) = copy.select_nth_unstable_by(k - 1, f64::total_cmp);
    Ok(*kth)
}

/// Held-out clean scores of one detector, sorted, for conformal p-values and thresholds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "CalibrationState")]
pub struct ConformalCalibration {
    sorted: Vec<f64>,
}

#[derive(Deserialize)]
struct CalibrationState {
    sorted: Vec<f64>,
}

impl TryFrom<CalibrationState> for ConformalCalibration {
    type Error = DetectError;

    fn try_from(s: CalibrationState) -> Result<Self, DetectError> {
        check_scores(&s.sorted, "calibration scores").map_err(|e| bad_state(e.to_string()))?;
        if s.sorted.windows(2).any(|w| w[0] > w[1]) {
            return Err(bad_state("calibration scores must be sorted ascending"));
        }
        Ok(Self { sorted: s.sorted })
    }
}

impl ConformalCalibration {
    /// Keeps (a sorted copy of) the clean calibration scores; at least one, all finite.
    pub fn new(scores: &[f64]) -> Result<Self, DetectError> {
        check_scores(scores, "calibration scores")?;
        let mut sorted = scores.to_vec();
        sorted.sort_by(f64::total_cmp);
        Ok(Self { sorted })
    }

    /// The number of calibration scores.
    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    /// Always false: a calibration holds at least one score.
    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    /// The conformal p-value `(1 + #{cal >= score}) / (n + 1)`, in `[1/(n+1), 1]`; a binary search.
    pub fn p_value(&self, score: f64) -> Result<f64, DetectError> {
        check_finite_f64(&[score], "score")?;
        let below = self.sorted.partition_point(|&c| c < score);
        let at_or_above = self.sorted.len() - below;
        Ok((1 + at_or_above) as f64 / (self.sorted.len() + 1) as f64)
    }

    /// The threshold for a target false-positive rate, as [`calibrate`] computes it.
    pub fn threshold(&self, alpha: f64) -> Result<f64, DetectError> {
        let k = conformal_rank(self.sorted.len(), alpha)?;
        Ok(self.sorted[k - 1])
    }
}

/// What to do with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Let it through.
    Allow,
    /// Let it through and record it for review.
    Flag,
    /// Refuse it.
    Block,
}

/// Thresholds on a detector's score: above `block` blocks, else above `flag` flags, else allows.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct VerdictPolicy {
    flag: f64,
    block: f64,
}

impl VerdictPolicy {
    /// A policy from explicit thresholds, finite with `flag <= block`.
    pub fn new(flag: f64, block: f64) -> Result<Self, DetectError> {
        check_finite_f64(&[flag, block], "thresholds")?;
        if flag > block {
            return Err(bad_config(
                "thresholds",
                format!(
                    "expected the flag threshold {flag} to be at most the block threshold {block}"
                ),
            ));
        }
        Ok(Self { flag, block })
    }

    /// Calibrates both thresholds on clean scores: `flag_fpr` and `block_fpr` are the target
    /// false-positive rates of flagging and of blocking, with `block_fpr <= flag_fpr`.
    pub fn calibrate(scores: &[f64], flag_fpr: f64, block_fpr: f64) -> Result<Self, DetectError> {
        check_alpha(flag_fpr, "flag_fpr")?;
        check_alpha(block_fpr, "block_fpr")?;
        if block_fpr > flag_fpr {
            return Err(bad_config(
                "block_fpr",
                format!("expected at most the flag rate {flag_fpr}, got {block_fpr}"),
            ));
        }
        let cal = ConformalCalibration::new(scores)?;
        Self::new(cal.threshold(flag_fpr)?, cal.threshold(block_fpr)?)
    }

    /// The flag threshold.
    pub fn flag_threshold(&self) -> f64 {
        self.flag
    }

    /// The block threshold.
    pub fn block_threshold(&self) -> f64 {
        self.block
    }

    /// The verdict for a score (errors on NaN rather than guessing).
    pub fn verdict(&self, score: f64) -> Result<Verdict, DetectError> {
        if score.is_nan() {
            return Err(DetectError::NonFinite {
                what: "score",
                index: 0,
                value: score,
            });
        }
        Ok(if score > self.block {
            Verdict::Block
        } else if score > self.flag {
            Verdict::Flag
        } else {
            Verdict::Allow
        })
    }
}

/// Significance levels on a p-value (e.g. an [`super::Ensemble`]'s): at most `block_alpha`
/// blocks, else at most `flag_alpha` flags, else allows.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PValuePolicy {
    flag_alpha: f64,
    block_alpha: f64,
}

impl PValuePolicy {
    /// Both levels in (0, 1) with `block_alpha <= flag_alpha`.
    pub fn new(flag_alpha: f64, block_alpha: f64) -> Result<Self, DetectError> {
        check_alpha(flag_alpha, "flag_alpha")?;
        check_alpha(block_alpha, "block_alpha")?;
        if block_alpha > flag_alpha {
            return Err(bad_config(
                "block_alpha",
                format!("expected at most the flag level {flag_alpha}, got {block_alpha}"),
            ));
        }
        Ok(Self {
            flag_alpha,
            block_alpha,
        })
    }

    /// The verdict for a p-value in [0, 1].
    pub fn verdict(&self, p: f64) -> Result<Verdict, DetectError> {
        if !(0.0..=1.0).contains(&p) {
            return Err(DetectError::OutOfRange {
                what: "p-value",
                index: 0,
                value: p,
                lo: 0.0,
                hi: 1.0,
            });
        }
        Ok(if p <= self.block_alpha {
            Verdict::Block
        } else if p <= self.flag_alpha {
            Verdict::Flag
        } else {
            Verdict::Allow
        })
    }
}

/// The area under the ROC curve for telling `anomalous` scores from `clean` ones: the
/// Mann–Whitney `U` of the anomalous scores over `n_clean · n_anomalous`, with tied pairs counted
/// one half (what `sklearn.metrics.roc_auc_score` computes). O(n log n).
pub fn roc_auc(clean: &[f64], anomalous: &[f64]) -> Result<f64, DetectError> {
    check_scores(clean, "clean scores")?;
    check_scores(anomalous, "anomalous scores")?;
    let mut all: Vec<(f64, bool)> = clean
        .iter()
        .map(|&s| (s, false))
        .chain(anomalous.iter().map(|&s| (s, true)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Sum the (1-based, tie-averaged) ranks of the anomalous scores.
    let mut rank_sum = 0.0f64;
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j < all.len() && all[j].0 == all[i].0 {
            j += 1;
        }
        let mid_rank = (i + 1 + j) as f64 / 2.0;
        let anomalies = all[i..j].iter().filter(|e| e.1).count();
        rank_sum += mid_rank * anomalies as f64;
        i = j;
    }
    let (na, nc) = (anomalous.len() as f64, clean.len() as f64);
    let u = rank_sum - na * (na + 1.0) / 2.0;
    Ok(u / (na * nc))
}

fn fraction_above(scores: &[f64], threshold: f64, what: &'static str) -> Result<f64, DetectError> {
    check_scores(scores, what)?;
    if threshold.is_nan() {
        return Err(DetectError::NonFinite {
            what: "threshold",
            index: 0,
            value: threshold,
        });
    }
    let above = scores.iter().filter(|&&s| s > threshold).count();
    Ok(above as f64 / scores.len() as f64)
}

/// The true-positive rate: the fraction of `anomalous` scores strictly above `threshold`.
pub fn tpr_at(anomalous: &[f64], threshold: f64) -> Result<f64, DetectError> {
    fraction_above(anomalous, threshold, "anomalous scores")
}

/// The false-positive rate: the fraction of `clean` scores strictly above `threshold`.
pub fn fpr_at(clean: &[f64], threshold: f64) -> Result<f64, DetectError> {
    fraction_above(clean, threshold, "clean scores")
}

/// The most bins [`histogram`] accepts.
pub const MAX_BINS: usize = 1 << 20;

/// A histogram with equal-width bins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    /// The `bins + 1` bin edges, ascending.
    pub edges: Vec<f64>,
    /// The count per bin: bin `i` is `[edges[i], edges[i + 1])`, the last one closed.
    pub counts: Vec<u64>,
    /// Scores below the first edge (NumPy drops these).
    pub below: u64,
    /// Scores above the last edge (NumPy drops these).
    pub above: u64,
}

/// A histogram of `scores` in `bins` equal-width bins over `range` (or the scores' minimum and
/// maximum, widened by 0.5 either side when they are equal), with `numpy.histogram`'s edges
/// (`lo + i · (hi − lo) / bins`, the last one exactly `hi`) and bin assignment.
pub fn histogram(
    scores: &[f64],
    bins: usize,
    range: Option<(f64, f64)>,
) -> Result<Histogram, DetectError> {
    check_scores(scores, "scores")?;
    if bins == 0 || bins > MAX_BINS {
        return Err(bad_config(
            "bins",
            format!("expected 1..={MAX_BINS} bins, got {bins}"),
        ));
    }
    let (mut lo, mut hi) = match range {
        Some((lo, hi)) => {
            check_finite_f64(&[lo, hi], "histogram range")?;
            if lo > hi {
                return Err(bad_config(
                    "range",
                    format!("expected lo <= hi, got ({lo}, {hi})"),
                ));
            }
            (lo, hi)
        }
        None => scores
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &s| {
                (a.min(s), b.max(s))
            }),
    };
    if lo == hi {
        lo -= 0.5;
        hi += 0.5;
    }
    let step = (hi - lo) / bins as f64;
    let mut edges: Vec<f64> = (0..=bins).map(|i| lo + i as f64 * step).collect();
    edges[bins] = hi;
    let mut counts = vec![0u64; bins];
    let (mut below, mut above) = (0u64, 0u64);
    let norm = bins as f64 / (hi - lo);
    for &s in scores {
        if s < lo {
            below += 1;
            continue;
        }
        if s > hi {
            above += 1;
            continue;
        }
        // NumPy's rule: a first guess from the scaled offset, then corrected against the edges.
        let mut i = (((s - lo) * norm) as usize).min(bins - 1);
        if s < edges[i] {
            i = i.saturating_sub(1);
        } else if i + 1 < bins && s >= edges[i + 1] {
            i += 1;
        }
        counts[i] += 1;
    }
    Ok(Histogram {
        edges,
        counts,
        below,
        above,
    })
}
