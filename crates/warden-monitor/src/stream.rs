//! Stream detectors: sans-I/O state machines fed one observation at a time (a score, a vector of
//! features, a predicted label, a client's query), each answering `Ok(Some(Alarm))` when it flags a
//! change, `Ok(None)` otherwise, and an error for an observation it cannot use. None of them reads
//! a clock, a file or a socket; the server decides what an alarm does.
//!
//! - Sequential change detectors on scalar scores: [`Cusum`] (one-sided, on standardized scores),
//!   [`PageHinkley`] (as River's), [`Adwin`] (ADWIN2, adaptive window).
//! - Window two-sample tests against a fitted reference: [`WindowKs`] (per-feature KS with
//!   Bonferroni, like Alibi Detect's `KSDrift`), [`WindowMmd`] (MMD² over vectors), and
//!   [`ChiSquareShift`] (predicted-label proportions).
//! - [`OnlineMmd`]: an incremental MMD² over a sliding window with a threshold calibrated to an
//!   expected run time between false alarms, after Alibi Detect's `MMDDriftOnline`.
//! - [`Prada`]: per-client model-extraction detection from the distances between a client's
//!   queries (Juuti et al. 2019).
//!
//! Conventions shared by all of them: an observation that is rejected (NaN, infinity, wrong
//! dimension, label out of range) leaves the state unchanged and does not count; [`Alarm::index`]
//! counts accepted observations from 0 since creation or the last `reset`. After an alarm,
//! [`Cusum`], [`PageHinkley`] and [`OnlineMmd`] restart their statistic (and keep counting),
//! [`Adwin`] goes on with its shrunk window, and the window tests and [`Prada`] keep going and
//! alarm again at every evaluation where the change is still visible.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

use thiserror::Error;

use crate::stats::{self, KsMethod, RbfKernel, Rng, ShapiroWilk, StatsError};

/// A detector's verdict that the stream changed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Alarm {
    /// Index of the observation at which the change was flagged: accepted observations counted
    /// from 0 since the detector was created or last reset (for [`Prada`], that client's queries).
    pub index: u64,
    /// The detector's statistic at that observation (a p-value for the window tests).
    pub statistic: f64,
    /// The threshold it crossed.
    pub threshold: f64,
    /// Which side of the threshold is an alarm.
    pub rule: AlarmRule,
}

/// How an [`Alarm`]'s statistic compares with its threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlarmRule {
    /// `statistic > threshold` (CUSUM, Page–Hinkley, ADWIN's mean gap, MMD²).
    Above,
    /// `statistic < threshold` (p-values, PRADA's Shapiro–Wilk `W`).
    Below,
}

/// Why a detector could not be built or could not take an observation.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum StreamError {
    /// A value of the observation is NaN or infinite.
    #[error("observation[{position}] is {value}: expected a finite number")]
    NonFinite { position: usize, value: f64 },
    /// An observation of the wrong dimension.
    #[error("observation has dimension {got}: expected {expected}")]
    Dimension { expected: usize, got: usize },
    /// A predicted label outside the classes the detector was fitted with.
    #[error("label {label} is out of range: expected a class below {classes}")]
    LabelOutOfRange { label: u32, classes: usize },
    /// A configuration value outside its domain.
    #[error("{what} is {value}: expected {expected}")]
    InvalidConfig {
        what: &'static str,
        value: f64,
        expected: &'static str,
    },
    /// A reference (or calibration) set too small for the configuration.
    #[error("{what} has {got} {unit}: expected at least {min}")]
    TooSmall {
        what: &'static str,
        got: usize,
        min: usize,
        unit: &'static str,
    },
    /// A problem with the reference data found by the statistics (NaN, constant, ragged, ...).
    #[error("reference data: {0}")]
    Reference(#[from] StatsError),
}

// ---------------------------------------------------------------------------------------------
// CUSUM.
// ---------------------------------------------------------------------------------------------

/// Parameters of [`Cusum`], in units of the reference standard deviation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CusumConfig {
    /// Allowance `k` subtracted from each standardized score; half the shift to detect is the
    /// classical choice. Default 0.5.
    pub drift: f64,
    /// Decision threshold `h`. Default 5, which gives an in-control average run length of about
    /// 930 observations for Gaussian scores with `k = 0.5` (Siegmund's approximation).
    pub threshold: f64,
}

impl Default for CusumConfig {
    fn default() -> CusumConfig {
        CusumConfig {
            drift: 0.5,
            threshold: 5.0,
        }
    }
}

/// One-sided upper CUSUM (Page 1954) on standardized scores: `z = (x - μ) / σ` with `μ` and `σ`
/// (sample standard deviation, `n - 1` denominator) fitted on reference scores, `S = max(0, S + z -
/// k)`, alarm when `S > h`, after which `S` restarts at 0. Detects an increase of the score's mean.
#[derive(Debug, Clone)]
pub struct Cusum {
    config: CusumConfig,
    mean: f64,
    std: f64,
    sum: f64,
    seen: u64,
}

impl Cusum {
    /// Fits the mean and standard deviation on `reference` (at least 2 finite scores, not all
    /// equal).
    pub fn fit(reference: &[f64], config: CusumConfig) -> Result<Cusum, StreamError> {
        check_nonnegative("CUSUM drift k", config.drift)?;
        check_positive("CUSUM threshold h", config.threshold)?;
        let (mean, std) = mean_std(reference)?;
        Ok(Cusum {
            config,
            mean,
            std,
            sum: 0.0,
            seen: 0,
        })
    }

    /// Takes one score.
    pub fn update(&mut self, score: f64) -> Result<Option<Alarm>, StreamError> {
        check_scalar(score)?;
        let index = self.next_index();
        let z = (score - self.mean) / self.std;
        self.sum = (self.sum + z - self.config.drift).max(0.0);
        if self.sum > self.config.threshold {
            let alarm = above(index, self.sum, self.config.threshold);
            self.sum = 0.0;
            return Ok(Some(alarm));
        }
        Ok(None)
    }

    /// The current CUSUM statistic `S`.
    pub fn statistic(&self) -> f64 {
        self.sum
    }

    /// The fitted reference mean and standard deviation.
    pub fn reference(&self) -> (f64, f64) {
        (self.mean, self.std)
    }

    /// Forgets the stream (keeps the fitted reference).
    pub fn reset(&mut self) {
        self.sum = 0.0;
        self.seen = 0;
    }

    fn next_index(&mut self) -> u64 {
        self.seen += 1;
        self.seen - 1
    }
}

// ---------------------------------------------------------------------------------------------
// Page–Hinkley.
// ---------------------------------------------------------------------------------------------

/// Which changes of the mean [`PageHinkley`] looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Increases only.
    Up,
    /// Decreases only.
    Down,
    /// Both (River's default `mode="both"`).
    Both,
}

/// Parameters of [`PageHinkley`], named as in River's `drift.PageHinkley`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PageHinkleyConfig {
    /// Magnitude of changes tolerated, `δ`. Default 0.005.
    pub delta: f64,
    /// Detection threshold `λ`. Default 50.
    pub threshold: f64,
    /// Forgetting factor applied to the cumulative sums, in `(0, 1]`. Default 1 (no forgetting;
    /// River's default is 0.9999).
    pub alpha: f64,
    /// Observations needed before an alarm can be raised. Default 30.
    pub min_instances: u64,
    /// Which changes to detect. Default both.
    pub direction: Direction,
}

impl Default for PageHinkleyConfig {
    fn default() -> PageHinkleyConfig {
        PageHinkleyConfig {
            delta: 0.005,
            threshold: 50.0,
            alpha: 1.0,
            min_instances: 30,
            direction: Direction::Both,
        }
    }
}

/// The Page–Hinkley test (Page 1954), as River computes it: with `x̄_t` the running mean
/// (including `x_t`), `U_t = α U_{t-1} + (x_t - x̄_t - δ)` and `L_t = α L_{t-1} + (x_t - x̄_t + δ)`;
/// an increase is flagged when `U_t - min U > λ`, a decrease when `max L - L_t > λ`, once
/// `min_instances` observations have been seen since the last restart. After an alarm everything
/// restarts, the running mean included (River restarts at the next update; same effect).
///
/// The statistic is not scaled: `δ` and `λ` are in the units of the data (River's defaults suit
/// error rates in `[0, 1]`; for standardized scores, `δ` near half the shift to detect and `λ`
/// of 10 to 50 standard deviations are usual).
#[derive(Debug, Clone)]
pub struct PageHinkley {
    config: PageHinkleyConfig,
    count: u64,
    mean: f64,
    sum_up: f64,
    min_up: f64,
    sum_down: f64,
    max_down: f64,
    seen: u64,
}

impl PageHinkley {
    /// A detector with `config`.
    pub fn new(config: PageHinkleyConfig) -> Result<PageHinkley, StreamError> {
        check_nonnegative("Page-Hinkley delta", config.delta)?;
        check_positive("Page-Hinkley threshold lambda", config.threshold)?;
        if !(config.alpha > 0.0 && config.alpha <= 1.0) {
            return Err(StreamError::InvalidConfig {
                what: "Page-Hinkley forgetting factor alpha",
                value: config.alpha,
                expected: "a number in (0, 1]",
            });
        }
        let mut ph = PageHinkley {
            config,
            count: 0,
            mean: 0.0,
            sum_up: 0.0,
            min_up: 0.0,
            sum_down: 0.0,
            max_down: 0.0,
            seen: 0,
        };
        ph.restart();
        Ok(ph)
    }

    /// Takes one observation.
    pub fn update(&mut self, x: f64) -> Result<Option<Alarm>, StreamError> {
        check_scalar(x)?;
        let index = self.seen;
        self.seen += 1;
        self.count += 1;
        self.mean += (x - self.mean) / self.count as f64;
        let dev = x - self.mean;
        let alpha = self.config.alpha;
        self.sum_up = alpha * self.sum_up + dev - self.config.delta;
        self.sum_down = alpha * self.sum_down + dev + self.config.delta;
        self.min_up = self.min_up.min(self.sum_up);
        self.max_down = self.max_down.max(self.sum_down);
        if self.count < self.config.min_instances {
            return Ok(None);
        }
        let statistic = self.statistic();
        if statistic > self.config.threshold {
            self.restart();
            return Ok(Some(above(index, statistic, self.config.threshold)));
        }
        Ok(None)
    }

    /// The current statistic: the larger of the watched tests.
    pub fn statistic(&self) -> f64 {
        let up = self.sum_up - self.min_up;
        let down = self.max_down - self.sum_down;
        match self.config.direction {
            Direction::Up => up,
            Direction::Down => down,
            Direction::Both => up.max(down),
        }
    }

    /// Forgets the stream.
    pub fn reset(&mut self) {
        self.restart();
        self.seen = 0;
    }

    fn restart(&mut self) {
        self.count = 0;
        self.mean = 0.0;
        self.sum_up = 0.0;
        self.sum_down = 0.0;
        self.min_up = f64::INFINITY;
        self.max_down = f64::NEG_INFINITY;
    }
}

// ---------------------------------------------------------------------------------------------
// ADWIN.
// ---------------------------------------------------------------------------------------------

/// Parameters of [`Adwin`], with River's (and MOA's) defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdwinConfig {
    /// Confidence `δ` of the cut test. Default 0.002.
    pub delta: f64,
    /// The cut test runs every `clock` observations. Default 32.
    pub clock: u64,
    /// Buckets kept per size before two are merged (`M`). Default 5.
    pub max_buckets: usize,
    /// Fewest observations on each side of a cut. Default 5.
    pub min_window_length: u64,
    /// Fewest observations in the window before any test. Default 10.
    pub grace_period: u64,
}

impl Default for AdwinConfig {
    fn default() -> AdwinConfig {
        AdwinConfig {
            delta: 0.002,
            clock: 32,
            max_buckets: 5,
            min_window_length: 5,
            grace_period: 10,
        }
    }
}

/// ADWIN2 (Bifet and Gavaldà 2007, "Learning from time-changing data with adaptive windowing"):
/// a window of recent observations, kept as an exponential histogram (rows of at most `M` buckets
/// of `2^i` observations, each with its sum and sum of squared deviations, so `O(M log W)`
/// memory), shrunk from its old end whenever two sub-windows have significantly different means.
///
/// The cut test, every `clock` observations, tries each boundary between buckets splitting the
/// window `W` into an older `W0` and a newer `W1` (each at least `min_window_length` long) and
/// cuts when `|μ0 - μ1| > ε`, with
/// `ε = sqrt(2 m σ² δ') + 2/3 δ' m`, `m = 1/(n0 - L + 1) + 1/(n1 - L + 1)`, `δ' = ln(2 ln|W| / δ)`,
/// `σ²` the window's variance and `L` the minimum length: the Bernstein-type bound of the paper's
/// section 3 with `δ/ln|W|` for the union over splits, as written in MOA. After a cut the oldest
/// bucket is dropped and the test runs again until no split passes. The alarm reports the first
/// cut's `|μ0 - μ1|` and `ε`.
///
/// Compared with River's `drift.ADWIN`: same defaults (`δ = 0.002`, clock 32, 5 buckets per row,
/// minimum sub-window 5, grace period 10) and, to our reading, the same bound and bucket
/// bookkeeping, so the two should alarm at the same observations up to floating-point rounding;
/// this has not been checked against River (not installed here). For `[0, 1]`-valued streams the
/// bound holds with probability `1 - δ`; for general real streams the variance term makes it a
/// heuristic (Bernstein's inequality needs a bounded range), as in River.
#[derive(Debug, Clone)]
pub struct Adwin {
    config: AdwinConfig,
    /// `rows[i]` holds buckets of `2^i` observations, oldest first; older rows hold older data.
    rows: Vec<VecDeque<Bucket>>,
    width: u64,
    total: f64,
    ssd: f64,
    tick: u64,
    seen: u64,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    total: f64,
    ssd: f64,
}

impl Adwin {
    /// An empty window with `config`.
    pub fn new(config: AdwinConfig) -> Result<Adwin, StreamError> {
        if !(config.delta > 0.0 && config.delta < 1.0) {
            return Err(StreamError::InvalidConfig {
                what: "ADWIN delta",
                value: config.delta,
                expected: "a number in (0, 1)",
            });
        }
        check_count("ADWIN clock", config.clock as usize, 1)?;
        check_count("ADWIN max_buckets", config.max_buckets, 2)?;
        check_count(
            "ADWIN min_window_length",
            config.min_window_length as usize,
            1,
        )?;
        Ok(Adwin {
            config,
            rows: vec![VecDeque::new()],
            width: 0,
            total: 0.0,
            ssd: 0.0,
            tick: 0,
            seen: 0,
        })
    }

    /// Takes one observation.
    pub fn update(&mut self, x: f64) -> Result<Option<Alarm>, StreamError> {
        check_scalar(x)?;
        let index = self.seen;
        self.seen += 1;
        self.insert(x);
        self.tick += 1;
        if !self.tick.is_multiple_of(self.config.clock) || self.width <= self.config.grace_period {
            return Ok(None);
        }
        Ok(self.cut().map(|(gap, eps)| above(index, gap, eps)))
    }

    /// Number of observations in the window.
    pub fn width(&self) -> u64 {
        self.width
    }

    /// Mean of the window (0 when empty).
    pub fn mean(&self) -> f64 {
        if self.width == 0 {
            0.0
        } else {
            self.total / self.width as f64
        }
    }

    /// Population variance of the window (0 when empty).
    pub fn variance(&self) -> f64 {
        if self.width == 0 {
            0.0
        } else {
            self.ssd / self.width as f64
        }
    }

    /// Empties the window.
    pub fn reset(&mut self) {
        self.rows = vec![VecDeque::new()];
        self.width = 0;
        self.total = 0.0;
        self.ssd = 0.0;
        self.tick = 0;
        self.seen = 0;
    }

    fn insert(&mut self, x: f64) {
        if self.width > 0 {
            let n = self.width as f64;
            let d = x - self.total / n;
            self.ssd += n / (n + 1.0) * d * d;
        }
        self.width += 1;
        self.total += x;
        self.rows[0].push_back(Bucket { total: x, ssd: 0.0 });
        // Merge the two oldest buckets of any row over capacity into the next row.
        let mut i = 0;
        while self.rows[i].len() > self.config.max_buckets {
            let (Some(older), Some(newer)) = (self.rows[i].pop_front(), self.rows[i].pop_front())
            else {
                break;
            };
            let n = (1u64 << i) as f64;
            let d = older.total / n - newer.total / n;
            let merged = Bucket {
                total: older.total + newer.total,
                ssd: older.ssd + newer.ssd + n / 2.0 * d * d,
            };
            if i + 1 == self.rows.len() {
                self.rows.push(VecDeque::new());
            }
            self.rows[i + 1].push_back(merged);
            i += 1;
        }
    }

    /// Runs the cut test until no split passes; returns the first cut's gap and bound.
    fn cut(&mut self) -> Option<(f64, f64)> {
        let mut first = None;
        while let Some(found) = self.find_cut() {
            first.get_or_insert(found);
            self.drop_oldest();
        }
        first
    }

    fn find_cut(&self) -> Option<(f64, f64)> {
        let min = self.config.min_window_length;
        let width = self.width as f64;
        let variance = self.ssd / width;
        let dd = (2.0 * width.ln() / self.config.delta).ln();
        let (mut n0, mut s0) = (0u64, 0.0);
        for (i, row) in self.rows.iter().enumerate().rev() {
            for bucket in row {
                n0 += 1 << i;
                s0 += bucket.total;
                let n1 = self.width - n0;
                if n1 < min {
                    return None;
                }
                if n0 < min {
                    continue;
                }
                let gap = (s0 / n0 as f64 - (self.total - s0) / n1 as f64).abs();
                let m = 1.0 / (n0 - min + 1) as f64 + 1.0 / (n1 - min + 1) as f64;
                let eps = (2.0 * m * variance * dd).sqrt() + 2.0 / 3.0 * dd * m;
                if gap > eps {
                    return Some((gap, eps));
                }
            }
        }
        None
    }

    fn drop_oldest(&mut self) {
        let top = self.rows.len() - 1;
        let Some(bucket) = self.rows[top].pop_front() else {
            return;
        };
        let nb = 1u64 << top;
        let rest = self.width - nb;
        if rest > 0 {
            let (na, nbf) = (rest as f64, nb as f64);
            let d = (self.total - bucket.total) / na - bucket.total / nbf;
            self.ssd = (self.ssd - bucket.ssd - na * nbf / (na + nbf) * d * d).max(0.0);
        } else {
            self.ssd = 0.0;
        }
        self.total -= bucket.total;
        self.width = rest;
        while self.rows.len() > 1 && self.rows.last().is_some_and(VecDeque::is_empty) {
            self.rows.pop();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Window KS.
// ---------------------------------------------------------------------------------------------

/// Correction for testing several features at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Correction {
    /// Alarm when some feature's p-value is below `alpha / dim` (Alibi Detect's default).
    Bonferroni,
    /// Alarm when some feature's p-value is below `alpha`.
    None,
}

/// Parameters of [`WindowKs`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowKsConfig {
    /// Number of most recent observations tested, `W >= 1`.
    pub window: usize,
    /// Test once the window is full, then every `stride` observations. Default 1.
    pub stride: usize,
    /// Level of the test. Default 0.05.
    pub alpha: f64,
    /// Multiple-testing correction across features. Default Bonferroni.
    pub correction: Correction,
    /// How the KS p-values are computed. Default SciPy's `'auto'`.
    pub method: KsMethod,
}

impl WindowKsConfig {
    /// A window of `window` observations with the defaults.
    pub fn new(window: usize) -> WindowKsConfig {
        WindowKsConfig {
            window,
            stride: 1,
            alpha: 0.05,
            correction: Correction::Bonferroni,
            method: KsMethod::Auto,
        }
    }
}

/// Window Kolmogorov–Smirnov drift detector, per feature like Alibi Detect's `KSDrift`: the
/// reference sample is sorted once per feature; at each test the last `W` observations of every
/// feature are sorted and compared with it by [`stats::ks_2samp`]'s algorithm, and an alarm is
/// raised when the smallest p-value is below the (corrected) level. The alarm's statistic is that
/// smallest p-value. Scalar streams use `dim = 1`.
///
/// The sizes never change, so the p-value is a nonincreasing function of the integer statistic
/// `D · lcm(n_ref, W)` alone: the critical statistic for the level is found once at fit time, and
/// a test costs `O(dim (W log W + n_ref))` (sort the window, merge it with the reference). The
/// p-value itself is computed only for an alarm and by [`WindowKs::p_values`].
#[derive(Debug, Clone)]
pub struct WindowKs {
    config: WindowKsConfig,
    dim: usize,
    /// Sorted reference values, feature after feature (`n_ref` each).
    reference: Vec<f64>,
    n_ref: usize,
    ring: Ring,
    column: Vec<f64>,
    plan: stats::KsPlan,
    /// The smallest scaled statistic whose p-value is below the level (`None`: no window can be).
    critical: Option<u128>,
    /// Each feature's scaled statistic at the last test (0 before the first).
    scaled: Vec<u128>,
    level: f64,
    seen: u64,
}

impl WindowKs {
    /// Fits on `reference`: `n_ref >= 1` vectors of dimension `dim`, flat row-major.
    pub fn fit(
        reference: &[f64],
        dim: usize,
        config: WindowKsConfig,
    ) -> Result<WindowKs, StreamError> {
        let n_ref = stats::check_vectors("reference", reference, dim)?;
        check_reference_size(n_ref, 1)?;
        check_count("KS window", config.window, 1)?;
        check_count("KS stride", config.stride, 1)?;
        check_level("KS alpha", config.alpha)?;
        let mut sorted = Vec::with_capacity(reference.len());
        for j in 0..dim {
            let start = sorted.len();
            sorted.extend(reference.chunks_exact(dim).map(|row| row[j]));
            sorted[start..].sort_unstable_by(f64::total_cmp);
        }
        let level = match config.correction {
            Correction::Bonferroni => config.alpha / dim as f64,
            Correction::None => config.alpha,
        };
        let plan = stats::KsPlan::new(n_ref, config.window, config.method);
        Ok(WindowKs {
            config,
            dim,
            reference: sorted,
            n_ref,
            ring: Ring::new(config.window, dim, config.stride),
            column: vec![0.0; config.window],
            plan,
            critical: plan.critical(level),
            scaled: vec![0; dim],
            level,
            seen: 0,
        })
    }

    /// Takes one observation of dimension `dim`.
    pub fn update(&mut self, x: &[f64]) -> Result<Option<Alarm>, StreamError> {
        check_vector(x, self.dim)?;
        let index = self.seen;
        self.seen += 1;
        if !self.ring.push(x) {
            return Ok(None);
        }
        let w = self.config.window;
        for j in 0..self.dim {
            for (c, row) in self
                .column
                .iter_mut()
                .zip(self.ring.data.chunks_exact(self.dim))
            {
                *c = row[j];
            }
            self.column.sort_unstable_by(f64::total_cmp);
            let reference = &self.reference[j * self.n_ref..(j + 1) * self.n_ref];
            self.scaled[j] = self.plan.scaled_statistic(reference, &self.column[..w]);
        }
        // The smallest p-value belongs to the largest statistic (same sizes for every feature).
        let h_max = self.scaled.iter().copied().max().unwrap_or(0);
        match self.critical {
            Some(c) if h_max >= c => {
                let p_min = self.plan.p_value(h_max);
                Ok(Some(below(index, p_min, self.level)))
            }
            _ => Ok(None),
        }
    }

    /// The p-value of each feature at the last test (1 before the first), computed on request.
    pub fn p_values(&self) -> Vec<f64> {
        self.scaled.iter().map(|&h| self.plan.p_value(h)).collect()
    }

    /// The level a p-value must fall below: `alpha`, divided by `dim` under Bonferroni.
    pub fn level(&self) -> f64 {
        self.level
    }

    /// Empties the window (keeps the reference).
    pub fn reset(&mut self) {
        self.ring.clear();
        self.scaled.fill(0);
        self.seen = 0;
    }
}

// ---------------------------------------------------------------------------------------------
// Window MMD.
// ---------------------------------------------------------------------------------------------

/// How [`WindowMmd`] decides.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MmdThreshold {
    /// A permutation test of reference against window at every test: alarm when its p-value is
    /// below `alpha`. Costs `O((n_ref + W)²)` kernel evaluations plus `permutations` times
    /// `n_ref² + W²` look-ups per test, so `n_ref + W` is limited to
    /// [`stats::MMD_PERMUTATION_MAX_VECTORS`]; use a `stride`.
    Permutation {
        alpha: f64,
        permutations: usize,
        seed: u64,
    },
    /// Alarm when the window's MMD² exceeds this value, for instance a null quantile from
    /// [`mmd2_null_quantile`]. The MMD² is then maintained incrementally, `O(n_ref + W)` kernel
    /// evaluations per observation.
    Statistic(f64),
}

/// Parameters of [`WindowMmd`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowMmdConfig {
    /// Number of most recent vectors compared with the reference, `W >= 2`.
    pub window: usize,
    /// Test once the window is full, then every `stride` observations.
    pub stride: usize,
    /// Kernel bandwidth; `None` fits [`stats::median_heuristic_sigma`] on the reference.
    pub sigma: Option<f64>,
    /// The decision rule.
    pub threshold: MmdThreshold,
}

/// Window MMD drift detector over vectors: the unbiased MMD² (Gaussian kernel) between the
/// reference and the last `W` vectors, tested by permutation or against a fixed threshold. The
/// alarm's statistic is the p-value (permutation) or the MMD² (fixed threshold).
#[derive(Debug, Clone)]
pub struct WindowMmd {
    config: WindowMmdConfig,
    state: MmdWindow,
    until_test: usize,
    tests: u64,
    last: f64,
    seen: u64,
}

impl WindowMmd {
    /// Fits on `reference`: at least 2 vectors of dimension `dim`, flat row-major.
    pub fn fit(
        reference: &[f64],
        dim: usize,
        config: WindowMmdConfig,
    ) -> Result<WindowMmd, StreamError> {
        let n_ref = stats::check_vectors("reference", reference, dim)?;
        check_reference_size(n_ref, 2)?;
        check_count("MMD window", config.window, 2)?;
        check_count("MMD stride", config.stride, 1)?;
        match config.threshold {
            MmdThreshold::Permutation {
                alpha,
                permutations,
                ..
            } => {
                check_level("MMD alpha", alpha)?;
                check_count("MMD permutations", permutations, 1)?;
                // The smallest attainable p-value is 1 / (1 + permutations).
                if 1.0 / (1.0 + permutations as f64) >= alpha {
                    return Err(StreamError::InvalidConfig {
                        what: "MMD permutations",
                        value: permutations as f64,
                        expected: "more than 1/alpha - 1, or no p-value can fall below alpha",
                    });
                }
                let pooled = n_ref + config.window;
                if pooled > stats::MMD_PERMUTATION_MAX_VECTORS {
                    return Err(StreamError::InvalidConfig {
                        what: "reference plus window (vectors) for a permutation test",
                        value: pooled as f64,
                        expected: "at most 4096; use MmdThreshold::Statistic with mmd2_null_quantile",
                    });
                }
            }
            MmdThreshold::Statistic(t) => {
                if !t.is_finite() {
                    return Err(StreamError::InvalidConfig {
                        what: "MMD threshold",
                        value: t,
                        expected: "a finite number",
                    });
                }
            }
        }
        let kernel = fit_kernel(reference, dim, config.sigma)?;
        Ok(WindowMmd {
            config,
            state: MmdWindow::new(reference.to_vec(), dim, kernel, config.window),
            until_test: config.window,
            tests: 0,
            last: f64::NAN,
            seen: 0,
        })
    }

    /// Takes one vector of dimension `dim`.
    pub fn update(&mut self, x: &[f64]) -> Result<Option<Alarm>, StreamError> {
        self.state.take(x)?;
        let index = self.seen;
        self.seen += 1;
        self.until_test -= 1;
        if self.until_test > 0 {
            return Ok(None);
        }
        self.until_test = self.config.stride;
        self.tests += 1;
        match self.config.threshold {
            MmdThreshold::Statistic(threshold) => {
                self.last = self.state.mmd2();
                Ok((self.last > threshold).then_some(above(index, self.last, threshold)))
            }
            MmdThreshold::Permutation {
                alpha,
                permutations,
                seed,
            } => {
                let test = stats::mmd2_permutation_test(
                    &self.state.reference,
                    self.state.window_vectors(),
                    self.state.dim,
                    self.state.kernel,
                    permutations,
                    seed.wrapping_add(self.tests),
                )?;
                self.last = test.p_value;
                Ok((test.p_value < alpha).then_some(below(index, test.p_value, alpha)))
            }
        }
    }

    /// The statistic of the last test (p-value or MMD²; NaN before the first).
    pub fn last_statistic(&self) -> f64 {
        self.last
    }

    /// The kernel bandwidth in use.
    pub fn sigma(&self) -> f64 {
        self.state.kernel.sigma()
    }

    /// Empties the window (keeps the reference).
    pub fn reset(&mut self) {
        self.state.clear();
        self.until_test = self.config.window;
        self.last = f64::NAN;
        self.seen = 0;
    }
}

/// The `quantile` (in `(0, 1)`) of the null distribution of the unbiased MMD² between `reference`
/// and a window of `window` vectors, estimated from `simulations` windows drawn without
/// replacement from `held_out` (vectors from the reference distribution that are not in
/// `reference`), for [`MmdThreshold::Statistic`]. Uses the order statistic
/// `ceil(quantile * simulations)`; a high quantile needs many simulations (at least
/// `10 / (1 - quantile)` is advisable), and a held-out set much larger than the window, since
/// windows drawn from a small pool vary less than fresh data.
#[allow(clippy::too_many_arguments)]
pub fn mmd2_null_quantile(
    reference: &[f64],
    held_out: &[f64],
    dim: usize,
    window: usize,
    kernel: RbfKernel,
    quantile: f64,
    simulations: usize,
    seed: u64,
) -> Result<f64, StreamError> {
    let n_ref = stats::check_vectors("reference", reference, dim)?;
    check_reference_size(n_ref, 2)?;
    let n_held = stats::check_vectors("held-out set", held_out, dim)?;
    check_count("MMD window", window, 2)?;
    if n_held < window {
        return Err(StreamError::TooSmall {
            what: "held-out set",
            got: n_held,
            min: window,
            unit: "vectors",
        });
    }
    if !(quantile > 0.0 && quantile < 1.0) {
        return Err(StreamError::InvalidConfig {
            what: "quantile",
            value: quantile,
            expected: "a number in (0, 1)",
        });
    }
    check_count("simulations", simulations, 1)?;
    let mut state = MmdWindow::new(reference.to_vec(), dim, kernel, window);
    let cross: Vec<f64> = held_out
        .chunks_exact(dim)
        .map(|v| state.cross_of(v))
        .collect();
    let mut rng = Rng::new(seed);
    let mut order: Vec<usize> = (0..n_held).collect();
    let mut values = Vec::with_capacity(simulations);
    for _ in 0..simulations {
        // A partial Fisher–Yates shuffle picks `window` distinct vectors.
        for i in 0..window {
            let j = i + rng.below((n_held - i) as u64) as usize;
            order.swap(i, j);
        }
        state.clear();
        for &i in &order[..window] {
            state.push(&held_out[i * dim..(i + 1) * dim], cross[i]);
        }
        values.push(state.mmd2());
    }
    Ok(order_statistic(&mut values, quantile))
}

// ---------------------------------------------------------------------------------------------
// Online MMD with a calibrated expected run time.
// ---------------------------------------------------------------------------------------------

/// Parameters of [`OnlineMmd`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OnlineMmdConfig {
    /// Number of most recent vectors compared with the reference, `W >= 2`.
    pub window: usize,
    /// Expected run time between false alarms on stationary data, in observations (`> 1`).
    pub ert: f64,
    /// Number of simulated streams used to calibrate the threshold. Default 100.
    pub bootstraps: usize,
    /// Reference vectors set aside to simulate streams; `None` takes half of the reference.
    pub calibration_size: Option<usize>,
    /// Kernel bandwidth; `None` fits [`stats::median_heuristic_sigma`] on the kept reference.
    pub sigma: Option<f64>,
    /// Seed of the split and of the simulations.
    pub seed: u64,
}

impl OnlineMmdConfig {
    /// A window of `window` vectors and an expected run time of `ert`, with the defaults.
    pub fn new(window: usize, ert: f64) -> OnlineMmdConfig {
        OnlineMmdConfig {
            window,
            ert,
            bootstraps: 100,
            calibration_size: None,
            sigma: None,
            seed: 0,
        }
    }
}

/// Online MMD change detector calibrated to an expected run time (ERT), in the spirit of Alibi
/// Detect's `MMDDriftOnline` (Cobb, Van Looveren and Klaise 2022, "Sequential multivariate change
/// detection with calibrated and memoryless false detection rates", AISTATS).
///
/// At fit time the reference is shuffled (seeded) and split into the kept reference `R` and a
/// calibration pool `C` (`calibration_size` vectors). The statistic at each step is the unbiased
/// MMD² between `R` and the last `W` vectors, updated incrementally: a new vector costs `|R|`
/// kernel evaluations against `R` and `W` against the window, and the evicted vector's terms are
/// subtracted from stored values, so `O(|R| + W)` per update instead of a recomputation.
///
/// Calibration simulates `bootstraps` stationary streams from the pool (each a run of random
/// permutations of `C`, `W - 1 + S` long with `S = max(|C| - W + 1, 3 ERT)` steps with a full
/// window), runs the same statistic over them, and picks the smallest threshold `b` whose
/// estimated hazard, `#{streams crossing b} / Σ steps at risk before the first crossing`, is at
/// most `1/ERT`: the probability of a false alarm at a step, given none before, is then about
/// `1/ERT`, and the run length to a false alarm is about geometric with mean `ERT` counted from
/// the first full window (the first `W - 1` steps add to it). This is Cobb et al.'s memoryless
/// criterion with one simplification, which Alibi does not make: Alibi calibrates a separate
/// threshold for each of the first steps, while here no alarm is raised before the window is full
/// and a single stationary threshold is used after. Where a window straddles two permutations of
/// the pool it may hold a pool vector twice, which biases those statistics slightly upward
/// (conservative); it is rare when `|C|` is much larger than `W`. Calibration costs about
/// `bootstraps × (W + S) × W` kernel evaluations. After an alarm the window is emptied and
/// filled again.
#[derive(Debug, Clone)]
pub struct OnlineMmd {
    state: MmdWindow,
    threshold: f64,
    seen: u64,
}

impl OnlineMmd {
    /// Splits `reference` (vectors of dimension `dim`, flat row-major), fits the kernel and
    /// calibrates the threshold.
    pub fn fit(
        reference: &[f64],
        dim: usize,
        config: OnlineMmdConfig,
    ) -> Result<OnlineMmd, StreamError> {
        let n = stats::check_vectors("reference", reference, dim)?;
        check_count("MMD window", config.window, 2)?;
        if !(config.ert.is_finite() && config.ert > 1.0) {
            return Err(StreamError::InvalidConfig {
                what: "expected run time",
                value: config.ert,
                expected: "a finite number above 1",
            });
        }
        check_count("bootstraps", config.bootstraps, 1)?;
        let calibration = config.calibration_size.unwrap_or(n / 2);
        if calibration <= config.window {
            return Err(StreamError::TooSmall {
                what: "calibration pool",
                got: calibration,
                min: config.window + 1,
                unit: "vectors",
            });
        }
        if n < calibration + 2 {
            return Err(StreamError::TooSmall {
                what: "reference",
                got: n,
                min: calibration + 2,
                unit: "vectors (2 kept plus the calibration pool)",
            });
        }
        let mut rng = Rng::new(config.seed);
        let mut order: Vec<usize> = (0..n).collect();
        rng.shuffle(&mut order);
        let (pool_idx, kept_idx) = order.split_at(calibration);
        let gather = |idx: &[usize]| -> Vec<f64> {
            idx.iter()
                .flat_map(|&i| reference[i * dim..(i + 1) * dim].iter().copied())
                .collect()
        };
        let kept = gather(kept_idx);
        let pool = gather(pool_idx);
        let kernel = fit_kernel(&kept, dim, config.sigma)?;
        let mut state = MmdWindow::new(kept, dim, kernel, config.window);

        let cross: Vec<f64> = pool.chunks_exact(dim).map(|v| state.cross_of(v)).collect();
        // Each simulated stream: W - 1 steps to fill the window, then `steps` statistics, of
        // which only the running maximum matters (the first crossing of a threshold).
        let steps = (calibration - config.window + 1).max((3.0 * config.ert).ceil() as usize);
        let mut running_max = Vec::with_capacity(steps * config.bootstraps);
        let mut pool_order: Vec<usize> = (0..calibration).collect();
        for _ in 0..config.bootstraps {
            state.clear();
            let mut next = calibration;
            let mut max = f64::NEG_INFINITY;
            for t in 0..config.window - 1 + steps {
                if next == calibration {
                    rng.shuffle(&mut pool_order);
                    next = 0;
                }
                let i = pool_order[next];
                next += 1;
                state.push(&pool[i * dim..(i + 1) * dim], cross[i]);
                if t + 1 >= config.window {
                    max = max.max(state.mmd2());
                    running_max.push(max);
                }
            }
        }
        state.clear();
        let threshold = threshold_for_hazard(&running_max, steps, 1.0 / config.ert);
        Ok(OnlineMmd {
            state,
            threshold,
            seen: 0,
        })
    }

    /// Takes one vector of dimension `dim`.
    pub fn update(&mut self, x: &[f64]) -> Result<Option<Alarm>, StreamError> {
        self.state.take(x)?;
        let index = self.seen;
        self.seen += 1;
        if self.state.filled < self.state.capacity {
            return Ok(None);
        }
        let statistic = self.state.mmd2();
        if statistic > self.threshold {
            self.state.clear();
            return Ok(Some(above(index, statistic, self.threshold)));
        }
        Ok(None)
    }

    /// The calibrated MMD² threshold.
    pub fn threshold(&self) -> f64 {
        self.threshold
    }

    /// The current MMD² (NaN until the window is full).
    pub fn statistic(&self) -> f64 {
        if self.state.filled < self.state.capacity {
            f64::NAN
        } else {
            self.state.mmd2()
        }
    }

    /// The kernel bandwidth in use.
    pub fn sigma(&self) -> f64 {
        self.state.kernel.sigma()
    }

    /// Empties the window (keeps the reference and the threshold).
    pub fn reset(&mut self) {
        self.state.clear();
        self.seen = 0;
    }
}

// ---------------------------------------------------------------------------------------------
// Chi-square prediction shift.
// ---------------------------------------------------------------------------------------------

/// Parameters of [`ChiSquareShift`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChiSquareShiftConfig {
    /// Number of most recent labels tested, `W >= 1`.
    pub window: usize,
    /// Test once the window is full, then every `stride` labels.
    pub stride: usize,
    /// Level of the test.
    pub alpha: f64,
}

/// Prediction-shift detector: compares the class proportions of the last `W` predicted labels
/// with the reference by a chi-square test, and alarms when its p-value is below `alpha` (the
/// alarm's statistic). Fitted on reference labels it uses the homogeneity test of the two count
/// vectors ([`stats::chi_square_homogeneity`], which accounts for the reference's own sampling
/// noise and tolerates classes absent from the reference); fitted on proportions, the
/// goodness-of-fit test ([`stats::chi_square_goodness_of_fit`]), which needs every proportion
/// above 0. Each test is `O(classes)`.
#[derive(Debug, Clone)]
pub struct ChiSquareShift {
    config: ChiSquareShiftConfig,
    reference: ChiReference,
    labels: Vec<u32>,
    head: usize,
    filled: usize,
    counts: Vec<u64>,
    until_test: usize,
    last_p: f64,
    seen: u64,
}

#[derive(Debug, Clone)]
enum ChiReference {
    Counts(Vec<u64>),
    Proportions(Vec<f64>),
}

impl ChiSquareShift {
    /// Fits on reference labels, each below `classes` (at least 2).
    pub fn from_reference_labels(
        labels: &[u32],
        classes: usize,
        config: ChiSquareShiftConfig,
    ) -> Result<ChiSquareShift, StreamError> {
        check_count("number of classes", classes, 2)?;
        check_reference_size(labels.len(), 1)?;
        let mut counts = vec![0u64; classes];
        for &label in labels {
            let slot = counts
                .get_mut(label as usize)
                .ok_or(StreamError::LabelOutOfRange { label, classes })?;
            *slot += 1;
        }
        ChiSquareShift::build(ChiReference::Counts(counts), classes, config)
    }

    /// Fits on reference class proportions (finite, above 0, summing to 1 within `1e-6`).
    pub fn from_proportions(
        proportions: &[f64],
        config: ChiSquareShiftConfig,
    ) -> Result<ChiSquareShift, StreamError> {
        check_count("number of classes", proportions.len(), 2)?;
        stats::check_proportions(proportions)?;
        let classes = proportions.len();
        ChiSquareShift::build(
            ChiReference::Proportions(proportions.to_vec()),
            classes,
            config,
        )
    }

    fn build(
        reference: ChiReference,
        classes: usize,
        config: ChiSquareShiftConfig,
    ) -> Result<ChiSquareShift, StreamError> {
        check_count("chi-square window", config.window, 1)?;
        check_count("chi-square stride", config.stride, 1)?;
        check_level("chi-square alpha", config.alpha)?;
        Ok(ChiSquareShift {
            config,
            reference,
            labels: vec![0; config.window],
            head: 0,
            filled: 0,
            counts: vec![0; classes],
            until_test: config.window,
            last_p: 1.0,
            seen: 0,
        })
    }

    /// Takes one predicted label.
    pub fn update(&mut self, label: u32) -> Result<Option<Alarm>, StreamError> {
        let classes = self.counts.len();
        if label as usize >= classes {
            return Err(StreamError::LabelOutOfRange { label, classes });
        }
        let index = self.seen;
        self.seen += 1;
        if self.filled == self.config.window {
            self.counts[self.labels[self.head] as usize] -= 1;
        } else {
            self.filled += 1;
        }
        self.labels[self.head] = label;
        self.counts[label as usize] += 1;
        self.head = (self.head + 1) % self.config.window;
        self.until_test -= 1;
        if self.until_test > 0 {
            return Ok(None);
        }
        self.until_test = self.config.stride;
        let result = match &self.reference {
            ChiReference::Counts(reference) => {
                stats::chi_square_homogeneity(reference, &self.counts)?
            }
            ChiReference::Proportions(p) => stats::chi_square_goodness_of_fit(&self.counts, p)?,
        };
        self.last_p = result.p_value;
        let alpha = self.config.alpha;
        Ok((result.p_value < alpha).then_some(below(index, result.p_value, alpha)))
    }

    /// The p-value of the last test (1 before the first).
    pub fn last_p_value(&self) -> f64 {
        self.last_p
    }

    /// Empties the window (keeps the reference).
    pub fn reset(&mut self) {
        self.counts.fill(0);
        self.head = 0;
        self.filled = 0;
        self.until_test = self.config.window;
        self.last_p = 1.0;
        self.seen = 0;
    }
}

// ---------------------------------------------------------------------------------------------
// PRADA.
// ---------------------------------------------------------------------------------------------

/// Parameters of [`Prada`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PradaConfig {
    /// Alarm when the Shapiro–Wilk `W` of a client's distances falls below `δ` (in `(0, 1)`; the
    /// paper uses 0.9 to 0.96 depending on the model). Default 0.95.
    pub delta: f64,
    /// Distances a client needs before it is tested (at least 3; the paper uses 100). Default 100.
    pub min_queries: usize,
    /// Query vectors kept per client across its growing sets; past it, new queries are still
    /// measured against the sets (their distances still count) but no longer added. Default 1,000.
    pub max_kept: usize,
    /// Distances kept per client, the most recent (at most 5,000, the Shapiro–Wilk limit).
    /// Default 5,000.
    pub max_distances: usize,
    /// Clients tracked at once; a new client past it evicts the least recently seen one, whose
    /// history is lost. Default 1,000.
    pub max_clients: usize,
}

impl Default for PradaConfig {
    fn default() -> PradaConfig {
        PradaConfig {
            delta: 0.95,
            min_queries: 100,
            max_kept: 1_000,
            max_distances: 5_000,
            max_clients: 1_000,
        }
    }
}

/// PRADA model-extraction detection (Juuti, Szyller, Marchal and Asokan 2019, "PRADA: protecting
/// against DNN model stealing attacks", EuroS&P, Algorithm 1). Benign clients' queries are spread
/// naturally, so the distances from each new query to the closest earlier one are roughly normal;
/// extraction attacks (synthetic queries near earlier ones) distort that distribution.
///
/// Per client and per predicted class `c`, a growing set `G_c` of queries and a threshold `T_c`
/// are kept. For a query `x` of class `c` (the first of its class just enters `G_c`): `d` is the
/// smallest L2 distance from `x` to `G_c`, appended to the client's distances `D`; if `d > T_c`,
/// `x` joins `G_c`, `d` joins `D_c`, and `T_c = max(T_c, mean(D_c) - std(D_c))`. Once `D` holds
/// `min_queries` distances, those within 3 standard deviations of the mean are tested with
/// Shapiro–Wilk, and `W < δ` raises an alarm for this query (statistic `W`, threshold `δ`, index
/// the client's query count). Callers without class labels pass the same class for every query.
///
/// Memory is bounded by `max_clients × (max_kept × dim + max_distances)` numbers: past
/// `max_kept` the growing sets freeze, `D` keeps its most recent `max_distances`, and the least
/// recently seen client is evicted (LRU, found by an `O(max_clients)` scan on insertion) when a
/// new one arrives at capacity; [`Prada::evictions`] counts them, since an attacker rotating
/// identities faster than that evades detection. Each query costs `O(|G_c| dim)` for the
/// distances plus a sort and a Shapiro–Wilk test of at most `max_distances` values.
/// `W` is undefined when all the retained distances are equal: equal positive distances (queries
/// stepped by a fixed amount from earlier ones) count as `W = 0` and are flagged, while all-zero
/// distances (exact repeats of earlier queries, which teach the client nothing) are not tested.
#[derive(Debug, Clone)]
pub struct Prada<K> {
    config: PradaConfig,
    dim: usize,
    clients: HashMap<K, Client>,
    clock: u64,
    evictions: u64,
    shapiro: Option<ShapiroWilk>,
    scratch: Vec<f64>,
}

#[derive(Debug, Clone)]
struct Client {
    sets: HashMap<u32, GrowingSet>,
    kept: usize,
    distances: VecDeque<f64>,
    queries: u64,
    last_seen: u64,
    last_w: Option<f64>,
}

#[derive(Debug, Clone, Default)]
struct GrowingSet {
    vectors: Vec<f64>,
    count: f64,
    sum: f64,
    sum_sq: f64,
    threshold: f64,
}

impl<K: Hash + Eq + Clone> Prada<K> {
    /// A detector for queries of dimension `dim`.
    pub fn new(dim: usize, config: PradaConfig) -> Result<Prada<K>, StreamError> {
        check_count("query dimension", dim, 1)?;
        if !(config.delta > 0.0 && config.delta < 1.0) {
            return Err(StreamError::InvalidConfig {
                what: "PRADA delta",
                value: config.delta,
                expected: "a number in (0, 1)",
            });
        }
        check_count("PRADA min_queries", config.min_queries, 3)?;
        check_count("PRADA max_kept", config.max_kept, 1)?;
        check_count("PRADA max_clients", config.max_clients, 1)?;
        check_count(
            "PRADA max_distances",
            config.max_distances,
            config.min_queries,
        )?;
        if config.max_distances > stats::SHAPIRO_WILK_MAX_N {
            return Err(StreamError::InvalidConfig {
                what: "PRADA max_distances",
                value: config.max_distances as f64,
                expected: "at most 5000 (the Shapiro-Wilk limit)",
            });
        }
        Ok(Prada {
            config,
            dim,
            clients: HashMap::new(),
            clock: 0,
            evictions: 0,
            shapiro: None,
            scratch: Vec::new(),
        })
    }

    /// Takes one query of `client`, with the class the model predicted for it.
    pub fn update(
        &mut self,
        client: &K,
        query: &[f64],
        class: u32,
    ) -> Result<Option<Alarm>, StreamError> {
        check_vector(query, self.dim)?;
        self.clock += 1;
        if !self.clients.contains_key(client) && self.clients.len() >= self.config.max_clients {
            self.evict_least_recent();
        }
        let config = self.config;
        let dim = self.dim;
        let state = self
            .clients
            .entry(client.clone())
            .or_insert_with(|| Client {
                sets: HashMap::new(),
                kept: 0,
                distances: VecDeque::new(),
                queries: 0,
                last_seen: 0,
                last_w: None,
            });
        state.last_seen = self.clock;
        let index = state.queries;
        state.queries += 1;
        let set = state.sets.entry(class).or_default();
        if set.vectors.is_empty() {
            if state.kept < config.max_kept {
                set.vectors.extend_from_slice(query);
                state.kept += 1;
            }
            // No distance: the verdict cannot change.
            return Ok(alarm_if_low(index, state.last_w, config.delta));
        }
        let d = set
            .vectors
            .chunks_exact(dim)
            .map(|v| stats::squared_distance(v, query))
            .fold(f64::INFINITY, f64::min)
            .sqrt();
        if state.distances.len() == config.max_distances {
            state.distances.pop_front();
        }
        state.distances.push_back(d);
        if d > set.threshold {
            if state.kept < config.max_kept {
                set.vectors.extend_from_slice(query);
                state.kept += 1;
            }
            set.count += 1.0;
            set.sum += d;
            set.sum_sq += d * d;
            let mean = set.sum / set.count;
            let std = (set.sum_sq / set.count - mean * mean).max(0.0).sqrt();
            set.threshold = set.threshold.max(mean - std);
        }
        if state.distances.len() < config.min_queries {
            return Ok(None);
        }
        state.last_w =
            shapiro_w_without_outliers(&state.distances, &mut self.shapiro, &mut self.scratch)?;
        Ok(alarm_if_low(index, state.last_w, config.delta))
    }

    /// The last `W` computed for `client`, if any.
    pub fn last_w(&self, client: &K) -> Option<f64> {
        self.clients.get(client).and_then(|c| c.last_w)
    }

    /// Number of clients tracked.
    pub fn clients(&self) -> usize {
        self.clients.len()
    }

    /// Number of clients evicted to make room so far.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// Forgets one client.
    pub fn forget(&mut self, client: &K) {
        self.clients.remove(client);
    }

    /// Forgets every client.
    pub fn reset(&mut self) {
        self.clients.clear();
        self.clock = 0;
        self.evictions = 0;
    }

    fn evict_least_recent(&mut self) {
        let oldest = self
            .clients
            .iter()
            .min_by_key(|(_, c)| c.last_seen)
            .map(|(k, _)| k.clone());
        if let Some(key) = oldest {
            self.clients.remove(&key);
            self.evictions += 1;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Private helpers.
// ---------------------------------------------------------------------------------------------

/// A ring of the last `capacity` vectors that says when a test is due (window full, then every
/// `stride` pushes).
#[derive(Debug, Clone)]
struct Ring {
    data: Vec<f64>,
    dim: usize,
    capacity: usize,
    head: usize,
    filled: usize,
    stride: usize,
    until_test: usize,
}

impl Ring {
    fn new(capacity: usize, dim: usize, stride: usize) -> Ring {
        Ring {
            data: vec![0.0; capacity * dim],
            dim,
            capacity,
            head: 0,
            filled: 0,
            stride,
            until_test: capacity,
        }
    }

    /// Pushes `x`; true when a test is due.
    fn push(&mut self, x: &[f64]) -> bool {
        self.data[self.head * self.dim..(self.head + 1) * self.dim].copy_from_slice(x);
        self.head = (self.head + 1) % self.capacity;
        self.filled = (self.filled + 1).min(self.capacity);
        self.until_test -= 1;
        if self.until_test == 0 {
            self.until_test = self.stride;
            return true;
        }
        false
    }

    fn clear(&mut self) {
        self.head = 0;
        self.filled = 0;
        self.until_test = self.capacity;
    }
}

/// The unbiased MMD² between a fixed reference and a sliding window, kept up to date in
/// `O(n_ref + W)` kernel evaluations per push: per window slot the vector, its summed kernel with
/// the reference, and its kernel with every other slot (a `W × W` matrix), so that evicting a
/// vector subtracts stored values. The running sums are recomputed exactly each time the ring
/// wraps, so rounding does not accumulate.
#[derive(Debug, Clone)]
struct MmdWindow {
    dim: usize,
    kernel: RbfKernel,
    reference: Vec<f64>,
    n_ref: usize,
    /// The single-precision path of [`MmdWindow::cross_of`], for `dim >= GEMM_MIN_DIM`.
    fast: Option<CrossKernel>,
    /// `Σ_{i≠j} k(r_i, r_j) / (n(n-1))`.
    ref_term: f64,
    capacity: usize,
    vectors: Vec<f64>,
    cross: Vec<f64>,
    kmat: Vec<f64>,
    head: usize,
    filled: usize,
    /// `Σ_{s<t} k(w_s, w_t)` over filled slots.
    pair_sum: f64,
    /// `Σ_s cross[s]` over filled slots.
    cross_sum: f64,
}

impl MmdWindow {
    fn new(reference: Vec<f64>, dim: usize, kernel: RbfKernel, capacity: usize) -> MmdWindow {
        let n_ref = reference.len() / dim;
        let mut sum = 0.0;
        for i in 0..n_ref {
            let ri = &reference[i * dim..(i + 1) * dim];
            for j in i + 1..n_ref {
                sum += kernel.eval(ri, &reference[j * dim..(j + 1) * dim]);
            }
        }
        let nf = n_ref as f64;
        let fast = (dim >= GEMM_MIN_DIM).then(|| CrossKernel::new(&reference, dim));
        MmdWindow {
            dim,
            kernel,
            reference,
            n_ref,
            fast,
            ref_term: 2.0 * sum / (nf * (nf - 1.0)),
            capacity,
            vectors: vec![0.0; capacity * dim],
            cross: vec![0.0; capacity],
            kmat: vec![0.0; capacity * capacity],
            head: 0,
            filled: 0,
            pair_sum: 0.0,
            cross_sum: 0.0,
        }
    }

    /// `Σ_i k(r_i, x)`.
    fn cross_of(&mut self, x: &[f64]) -> f64 {
        if let Some(sum) = self
            .fast
            .as_mut()
            .and_then(|fast| fast.cross_sum(x, &self.kernel))
        {
            return sum;
        }
        self.reference
            .chunks_exact(self.dim)
            .map(|r| self.kernel.eval(r, x))
            .sum()
    }

    /// Checks one observation and adds it to the window (evicting the oldest when full).
    fn take(&mut self, x: &[f64]) -> Result<(), StreamError> {
        check_vector(x, self.dim)?;
        let cross = self.cross_of(x);
        self.push(x, cross);
        Ok(())
    }

    fn push(&mut self, x: &[f64], cross: f64) {
        let (cap, slot, dim) = (self.capacity, self.head, self.dim);
        let full = self.filled == cap;
        if full {
            let row = &self.kmat[slot * cap..(slot + 1) * cap];
            let evicted: f64 = row
                .iter()
                .enumerate()
                .filter(|&(t, _)| t != slot)
                .map(|(_, v)| v)
                .sum();
            self.pair_sum -= evicted;
            self.cross_sum -= self.cross[slot];
        }
        self.vectors[slot * dim..(slot + 1) * dim].copy_from_slice(x);
        self.cross[slot] = cross;
        self.cross_sum += cross;
        let others = if full { cap } else { self.filled };
        for t in (0..others).filter(|&t| t != slot) {
            let k = self.kernel.eval(x, &self.vectors[t * dim..(t + 1) * dim]);
            self.kmat[slot * cap + t] = k;
            self.kmat[t * cap + slot] = k;
            self.pair_sum += k;
        }
        self.head = (slot + 1) % cap;
        self.filled = (self.filled + 1).min(cap);
        if self.head == 0 {
            self.resum();
        }
    }

    fn resum(&mut self) {
        let (cap, f) = (self.capacity, self.filled);
        self.pair_sum = (0..f)
            .map(|s| self.kmat[s * cap + s + 1..s * cap + f].iter().sum::<f64>())
            .sum();
        self.cross_sum = self.cross[..f].iter().sum();
    }

    /// The unbiased MMD² of reference against window; needs at least 2 vectors in the window.
    fn mmd2(&self) -> f64 {
        let f = self.filled as f64;
        self.ref_term + 2.0 * self.pair_sum / (f * (f - 1.0))
            - 2.0 * self.cross_sum / (self.n_ref as f64 * f)
    }

    fn window_vectors(&self) -> &[f64] {
        &self.vectors[..self.filled * self.dim]
    }

    fn clear(&mut self) {
        self.head = 0;
        self.filled = 0;
        self.pair_sum = 0.0;
        self.cross_sum = 0.0;
    }
}

/// Smallest dimension at which [`MmdWindow`] takes its cross sums through `warden-gemm`; below it
/// the exact loop is as fast.
const GEMM_MIN_DIM: usize = 16;

/// `Σ_i k(r_i, x)` over a fixed reference as one single-precision matrix-vector product: with the
/// reference and `x` centred on the reference mean (in double precision, so that the expansion
/// below does not cancel the norms of data far from the origin), `‖r - x‖² = ‖r‖² + ‖x‖² - 2 r·x`
/// with the norms in double precision and only the dot products in single precision, through
/// `warden-gemm`'s kernels (AVX-512 or AVX2 chosen at run time). The squared distances then carry
/// a relative error of about `1e-7 · ‖r‖‖x‖ / ‖r - x‖²`, which on the centred data of a fitted
/// reference is far below the sampling noise of an MMD² (the tests compare it with the exact
/// loop). Calibration and scoring take the same path, so a threshold and the statistics it is
/// compared with are computed alike.
#[derive(Debug, Clone)]
struct CrossKernel {
    dim: usize,
    mean: Vec<f64>,
    /// Centred reference, row-major, single precision.
    centred: Vec<f32>,
    /// `‖r_i - mean‖²`, from the double-precision values.
    norms: Vec<f64>,
    x32: Vec<f32>,
    dots: Vec<f32>,
}

impl CrossKernel {
    fn new(reference: &[f64], dim: usize) -> CrossKernel {
        let n = reference.len() / dim;
        let mut mean = vec![0.0; dim];
        for r in reference.chunks_exact(dim) {
            for (m, v) in mean.iter_mut().zip(r) {
                *m += v;
            }
        }
        for m in &mut mean {
            *m /= n as f64;
        }
        let mut centred = Vec::with_capacity(n * dim);
        let mut norms = Vec::with_capacity(n);
        for r in reference.chunks_exact(dim) {
            let mut norm = 0.0;
            for (v, m) in r.iter().zip(&mean) {
                let c = v - m;
                norm += c * c;
                centred.push(c as f32);
            }
            norms.push(norm);
        }
        CrossKernel {
            dim,
            mean,
            centred,
            norms,
            x32: vec![0.0; dim],
            dots: vec![0.0; n],
        }
    }

    /// The sum, or `None` where single precision cannot represent the centred `x` or a dot
    /// product overflowed (the caller then takes the exact loop).
    fn cross_sum(&mut self, x: &[f64], kernel: &RbfKernel) -> Option<f64> {
        let mut x_norm = 0.0;
        for ((d, v), m) in self.x32.iter_mut().zip(x).zip(&self.mean) {
            let c = v - m;
            x_norm += c * c;
            *d = c as f32;
        }
        if !x_norm.is_finite() || self.x32.iter().any(|v| !v.is_finite()) {
            return None;
        }
        let n = self.norms.len();
        warden_gemm::sgemv(
            &self.x32,
            &self.centred,
            warden_gemm::Shape::transposed(n, self.dim),
            &mut self.dots,
        )
        .ok()?;
        let mut sum = 0.0;
        for (&dot, &norm) in self.dots.iter().zip(&self.norms) {
            if !dot.is_finite() {
                return None;
            }
            let d2 = (norm + x_norm - 2.0 * f64::from(dot)).max(0.0);
            sum += kernel.of_squared_distance(d2);
        }
        Some(sum)
    }
}

/// Shapiro–Wilk `W` of the distances within 3 standard deviations of their mean (population
/// standard deviation), reusing the coefficients while the count is unchanged; `None` when fewer
/// than 3 remain or all are 0, and 0 when all are equal and positive.
fn shapiro_w_without_outliers(
    distances: &VecDeque<f64>,
    cache: &mut Option<ShapiroWilk>,
    scratch: &mut Vec<f64>,
) -> Result<Option<f64>, StreamError> {
    let n = distances.len() as f64;
    let mean = distances.iter().sum::<f64>() / n;
    let std = (distances
        .iter()
        .map(|d| (d - mean) * (d - mean))
        .sum::<f64>()
        / n)
        .sqrt();
    scratch.clear();
    scratch.extend(
        distances
            .iter()
            .copied()
            .filter(|d| (d - mean).abs() <= 3.0 * std),
    );
    if scratch.len() < 3 {
        return Ok(None);
    }
    scratch.sort_unstable_by(f64::total_cmp);
    if scratch[0] == scratch[scratch.len() - 1] {
        // A point mass is as far from normal as it gets, unless it is at 0: exact repeats of
        // earlier queries, which teach the client nothing.
        return Ok((scratch[0] > 0.0).then_some(0.0));
    }
    if cache.as_ref().is_none_or(|t| t.n() != scratch.len()) {
        *cache = Some(ShapiroWilk::new(scratch.len())?);
    }
    match cache {
        Some(test) => Ok(Some(test.test_sorted(scratch)?.w)),
        None => Ok(None),
    }
}

fn alarm_if_low(index: u64, w: Option<f64>, delta: f64) -> Option<Alarm> {
    w.filter(|&w| w < delta).map(|w| below(index, w, delta))
}

fn above(index: u64, statistic: f64, threshold: f64) -> Alarm {
    Alarm {
        index,
        statistic,
        threshold,
        rule: AlarmRule::Above,
    }
}

fn below(index: u64, statistic: f64, threshold: f64) -> Alarm {
    Alarm {
        index,
        statistic,
        threshold,
        rule: AlarmRule::Below,
    }
}

fn fit_kernel(reference: &[f64], dim: usize, sigma: Option<f64>) -> Result<RbfKernel, StreamError> {
    let sigma = match sigma {
        Some(s) => s,
        None => stats::median_heuristic_sigma(reference, dim)?,
    };
    Ok(RbfKernel::new(sigma)?)
}

/// The smallest of the `running_max` values (streams of `steps` running maxima each, one after
/// the other) whose hazard, crossings per step at risk, is at most `target`.
fn threshold_for_hazard(running_max: &[f64], steps: usize, target: f64) -> f64 {
    let hazard = |b: f64| -> f64 {
        let (mut events, mut at_risk) = (0usize, 0usize);
        for stream in running_max.chunks_exact(steps) {
            // The running maximum is nondecreasing: the first crossing is a partition point.
            let first = stream.partition_point(|&m| m <= b);
            if first < steps {
                events += 1;
                at_risk += first + 1;
            } else {
                at_risk += steps;
            }
        }
        events as f64 / at_risk as f64
    };
    let mut candidates = running_max.to_vec();
    candidates.sort_unstable_by(f64::total_cmp);
    candidates.dedup();
    // The hazard does not increase with the threshold.
    let i = candidates.partition_point(|&b| hazard(b) > target);
    candidates[i.min(candidates.len() - 1)]
}

/// The order statistic `ceil(q n)` (1-based) of `values`, which it reorders.
fn order_statistic(values: &mut [f64], q: f64) -> f64 {
    let k = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    let (_, v, _) = values.select_nth_unstable_by(k - 1, f64::total_cmp);
    *v
}

/// Mean and sample standard deviation of at least 2 finite values, not all equal.
fn mean_std(x: &[f64]) -> Result<(f64, f64), StreamError> {
    stats::check_vectors("reference", x, 1)?;
    check_reference_size(x.len(), 2)?;
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (n - 1.0);
    if var <= 0.0 {
        return Err(StatsError::Constant {
            what: "reference",
            value: x[0],
        }
        .into());
    }
    Ok((mean, var.sqrt()))
}

fn check_scalar(x: f64) -> Result<(), StreamError> {
    if !x.is_finite() {
        return Err(StreamError::NonFinite {
            position: 0,
            value: x,
        });
    }
    Ok(())
}

fn check_vector(x: &[f64], dim: usize) -> Result<(), StreamError> {
    if x.len() != dim {
        return Err(StreamError::Dimension {
            expected: dim,
            got: x.len(),
        });
    }
    match x.iter().position(|v| !v.is_finite()) {
        Some(position) => Err(StreamError::NonFinite {
            position,
            value: x[position],
        }),
        None => Ok(()),
    }
}

fn check_reference_size(got: usize, min: usize) -> Result<(), StreamError> {
    if got < min {
        return Err(StreamError::TooSmall {
            what: "reference",
            got,
            min,
            unit: "observations",
        });
    }
    Ok(())
}

fn check_count(what: &'static str, value: usize, min: usize) -> Result<(), StreamError> {
    if value < min {
        return Err(StreamError::InvalidConfig {
            what,
            value: value as f64,
            expected: match min {
                1 => "at least 1",
                2 => "at least 2",
                3 => "at least 3",
                _ => "at least the configured minimum (min_queries)",
            },
        });
    }
    Ok(())
}

fn check_level(what: &'static str, alpha: f64) -> Result<(), StreamError> {
    if !(alpha > 0.0 && alpha < 1.0) {
        return Err(StreamError::InvalidConfig {
            what,
            value: alpha,
            expected: "a number in (0, 1)",
        });
    }
    Ok(())
}

fn check_positive(what: &'static str, x: f64) -> Result<(), StreamError> {
    if !(x.is_finite() && x > 0.0) {
        return Err(StreamError::InvalidConfig {
            what,
            value: x,
            expected: "a finite number above 0",
        });
    }
    Ok(())
}

fn check_nonnegative(what: &'static str, x: f64) -> Result<(), StreamError> {
    if !(x.is_finite() && x >= 0.0) {
        return Err(StreamError::InvalidConfig {
            what,
            value: x,
            expected: "a finite number, 0 or above",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference and query vectors of dimension `dim`, normal around `offset` with per-coordinate
    /// scales from 0.1 to 2 (features of different magnitudes, far from the origin).
    fn sample(rng: &mut Rng, n: usize, dim: usize, offset: f64) -> Vec<f64> {
        (0..n * dim)
            .map(|i| offset + (0.1 + 1.9 * (i % dim) as f64 / dim as f64) * rng.standard_normal())
            .collect()
    }

    fn exact_cross(window: &MmdWindow, x: &[f64]) -> f64 {
        window
            .reference
            .chunks_exact(window.dim)
            .map(|r| window.kernel.eval(r, x))
            .sum()
    }

    #[test]
    fn single_precision_cross_sums_match_the_exact_loop() {
        let mut rng = Rng::new(41);
        for (dim, offset) in [(16, 0.0), (128, 0.0), (128, 1e3), (300, -50.0)] {
            let reference = sample(&mut rng, 400, dim, offset);
            let sigma = stats::median_heuristic_sigma(&reference, dim).expect("spread sample");
            let kernel = RbfKernel::new(sigma).expect("positive");
            let mut window = MmdWindow::new(reference, dim, kernel, 10);
            assert!(window.fast.is_some());
            // Queries from the reference's distribution, shifted ones, and one far away.
            let mut queries = sample(&mut rng, 20, dim, offset);
            queries.extend(sample(&mut rng, 20, dim, offset + 0.5));
            queries.extend(sample(&mut rng, 1, dim, offset + 100.0));
            let mut worst = 0.0f64;
            for x in queries.chunks_exact(dim) {
                let exact = exact_cross(&window, x);
                let fast = window.cross_of(x);
                worst = worst.max((fast - exact).abs() / exact.max(1e-300));
            }
            assert!(
                worst < 1e-7,
                "dim {dim} offset {offset}: relative error {worst}"
            );
        }
    }

    #[test]
    fn cross_sums_fall_back_to_the_exact_loop_beyond_single_precision() {
        let mut rng = Rng::new(42);
        let dim = 32;
        let reference = sample(&mut rng, 100, dim, 0.0);
        let kernel = RbfKernel::new(1e40).expect("positive");
        let mut window = MmdWindow::new(reference, dim, kernel, 10);
        // 1e39 overflows f32: the exact loop answers, and the kernel of this bandwidth sees it.
        let far = vec![1e39; dim];
        let exact = exact_cross(&window, &far);
        assert!(exact > 0.0 && exact.is_finite());
        assert_eq!(window.cross_of(&far), exact);
    }
}
