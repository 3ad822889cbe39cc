//! Reconstruction-error detectors: a sample that the model of the clean data reconstructs badly is
//! anomalous. Two models, both scoring the mean squared reconstruction error per feature:
//!
//! - [`Pca`], the fast baseline: the top-k principal components of the reference covariance
//!   (population normalisation, `1/N`), found by Householder tridiagonalisation and implicit QL
//!   in f64; the score is `‖(x − μ) − Vᵀ V (x − μ)‖² / d`.
//! - [`Autoencoder`]: a small dense network `d → hidden (act) → bottleneck (linear) → hidden (act)
//!   → d (linear)`, trained in f32 to minimise the MSE with Adam (Kingma and Ba, 2015) on seeded
//!   shuffled mini-batches from Glorot-uniform weights (Glorot and Bengio, 2010). Inputs are
//!   standardised per feature with the reference mean and standard deviation (a feature with no
//!   spread is only centred), and the score is the MSE in those standardised units. Training cost is
//!   bounded: the configuration is checked against [`AutoencoderConfig::MAX_WORK`].

use serde::{Deserialize, Serialize};

use super::linalg::{dot_f32, dot_f64, symmetric_eigen};
use super::{
    DetectError, Detector, Scratch, bad_config, bad_state, check_finite_f32, check_finite_f64,
    check_rows, check_sample,
};
use crate::stats::Rng;

/// A fitted PCA reconstruction-error detector.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "PcaState")]
pub struct Pca {
    dim: usize,
    mean: Vec<f64>,
    /// The top principal directions, one unit row of `dim` per component, by decreasing variance.
    components: Vec<f64>,
    /// The variance along each component.
    variances: Vec<f64>,
}

#[derive(Deserialize)]
struct PcaState {
    dim: usize,
    mean: Vec<f64>,
    components: Vec<f64>,
    variances: Vec<f64>,
}

impl TryFrom<PcaState> for Pca {
    type Error = DetectError;

    fn try_from(s: PcaState) -> Result<Self, DetectError> {
        let k = s.variances.len();
        if s.dim == 0 || k == 0 || k >= s.dim || s.dim > MAX_PCA_DIM {
            return Err(bad_state("pca: expected 1 <= components < dim"));
        }
        if s.mean.len() != s.dim || Some(s.components.len()) != k.checked_mul(s.dim) {
            return Err(bad_state("pca: mean or components have the wrong length"));
        }
        for v in [&s.mean, &s.components, &s.variances] {
            check_finite_f64(v, "pca state").map_err(|e| bad_state(e.to_string()))?;
        }
        Ok(Self {
            dim: s.dim,
            mean: s.mean,
            components: s.components,
            variances: s.variances,
        })
    }
}

/// The most QL iterations for one eigenvalue before giving up; convergence is cubic and takes
/// one to three.
const MAX_ITERATIONS: usize = 60;

/// The widest feature vector [`Pca::fit`] accepts: the eigen-decomposition costs about `9 d³`
/// flops (some 10¹⁰ at this bound, seconds).
pub const MAX_PCA_DIM: usize = 1024;

impl Pca {
    /// Fits the top `components` principal directions of `features` (row-major, `dim` per row);
    /// needs at least 2 rows and `1 <= components < dim`.
    pub fn fit(features: &[f32], dim: usize, components: usize) -> Result<Self, DetectError> {
        if dim > MAX_PCA_DIM {
            return Err(bad_config(
                "dim",
                format!("expected at most {MAX_PCA_DIM} features for PCA, got {dim}"),
            ));
        }
        let n = check_rows(features, dim, 2, "pca reference")?;
        if components == 0 || components >= dim {
            return Err(bad_config(
                "components",
                format!("expected 1 <= components < dim = {dim}, got {components}"),
            ));
        }
        let mut mean = vec![0.0f64; dim];
        for row in features.chunks_exact(dim) {
            for (m, &v) in mean.iter_mut().zip(row) {
                *m += f64::from(v);
            }
        }
        for m in &mut mean {
            *m /= n as f64;
        }
        let mut cov = vec![0.0f64; dim * dim];
        let mut centred = vec![0.0f64; dim];
        for row in features.chunks_exact(dim) {
            for ((c, &v), m) in centred.iter_mut().zip(row).zip(&mean) {
                *c = f64::from(v) - m;
            }
            for i in 0..dim {
                let ci = centred[i];
                for (acc, cj) in cov[i * dim..=i * dim + i].iter_mut().zip(&centred) {
                    *acc += ci * cj;
                }
            }
        }
        for i in 0..dim {
            for j in 0..=i {
                let v = cov[i * dim + j] / n as f64;
                cov[i * dim + j] = v;
                cov[j * dim + i] = v;
            }
        }
        let (values, vectors) = symmetric_eigen(cov, dim, MAX_ITERATIONS)
            .map_err(|sweeps| DetectError::NoConvergence { sweeps })?;
        let mut order: Vec<usize> = (0..dim).collect();
        order.sort_by(|&a, &b| values[b].total_cmp(&values[a]));
        let mut comps = Vec::with_capacity(components * dim);
        let mut variances = Vec::with_capacity(components);
        for &j in &order[..components] {
            comps.extend((0..dim).map(|i| vectors[i * dim + j]));
            variances.push(values[j].max(0.0));
        }
        check_finite_f64(&comps, "principal components")?;
        Ok(Self {
            dim,
            mean,
            components: comps,
            variances,
        })
    }

    /// The number of components kept.
    pub fn components(&self) -> usize {
        self.variances.len()
    }

    /// The variance along each kept component, largest first.
    pub fn variances(&self) -> &[f64] {
        &self.variances
    }
}

impl Detector for Pca {
    fn dim(&self) -> usize {
        self.dim
    }

    fn score_with(&self, x: &[f32], scratch: &mut Scratch) -> Result<f64, DetectError> {
        check_sample(x, self.dim, "features")?;
        let (residual, _, _) = scratch.buffers(self.dim, 0, 0);
        for ((r, &v), m) in residual.iter_mut().zip(x).zip(&self.mean) {
            *r = f64::from(v) - m;
        }
        // Projections are taken from the centred sample, then subtracted one by one: the
        // components are orthonormal, so this equals removing V Vᵀ (x − μ) at once.
        for comp in self.components.chunks_exact(self.dim) {
            let p = dot_f64(comp, residual);
            for (r, c) in residual.iter_mut().zip(comp) {
                *r -= p * c;
            }
        }
        Ok(dot_f64(residual, residual) / self.dim as f64)
    }
}

/// The hidden layers' non-linearity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// Hyperbolic tangent.
    Tanh,
    /// Rectified linear unit.
    Relu,
}

impl Activation {
    fn apply(self, v: f32) -> f32 {
        match self {
            Self::Tanh => v.tanh(),
            Self::Relu => v.max(0.0),
        }
    }

    /// The derivative, expressed through the activation's output `a`.
    fn derivative_at_output(self, a: f32) -> f32 {
        match self {
            Self::Tanh => 1.0 - a * a,
            Self::Relu => {
                if a > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
        }
    }
}

/// How to build and train an [`Autoencoder`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AutoencoderConfig {
    /// Width of both hidden layers.
    pub hidden: usize,
    /// Width of the linear bottleneck; at most `hidden`.
    pub bottleneck: usize,
    /// The hidden layers' non-linearity.
    pub activation: Activation,
    /// Passes over the reference set.
    pub epochs: usize,
    /// Rows per Adam step.
    pub batch_size: usize,
    /// Adam's step size.
    pub learning_rate: f32,
    /// Seeds the weights and the shuffling.
    pub seed: u64,
}

impl Default for AutoencoderConfig {
    fn default() -> Self {
        Self {
            hidden: 64,
            bottleneck: 8,
            activation: Activation::Tanh,
            epochs: 50,
            batch_size: 32,
            learning_rate: 1e-3,
            seed: 0,
        }
    }
}

impl AutoencoderConfig {
    /// The most training work accepted: `epochs × rows × parameters` (about a third of the
    /// multiply-adds of training), here 2·10¹⁰: about ten seconds of one core (measured at
    /// 2.5·10⁹ per second for 128 features, hidden 64, bottleneck 16).
    pub const MAX_WORK: u128 = 20_000_000_000;
    /// The widest layers accepted.
    pub const MAX_WIDTH: usize = 4096;
}

/// Offsets of the weights and biases in the flat parameter vector.
#[derive(Debug, Clone, Copy)]
struct Layout {
    d: usize,
    h: usize,
    b: usize,
}

impl Layout {
    /// The four layers' (input, output) widths.
    fn shapes(self) -> [(usize, usize); 4] {
        [
            (self.d, self.h),
            (self.h, self.b),
            (self.b, self.h),
            (self.h, self.d),
        ]
    }

    fn len(self) -> usize {
        self.shapes().iter().map(|(i, o)| o * i + o).sum()
    }

    /// Splits a flat parameter (or gradient) vector into the layers' (weights, biases).
    fn split(self, p: &[f32]) -> [(&[f32], &[f32]); 4] {
        let [s0, s1, s2, s3] = self.shapes();
        let (w0, p) = p.split_at(s0.0 * s0.1);
        let (b0, p) = p.split_at(s0.1);
        let (w1, p) = p.split_at(s1.0 * s1.1);
        let (b1, p) = p.split_at(s1.1);
        let (w2, p) = p.split_at(s2.0 * s2.1);
        let (b2, p) = p.split_at(s2.1);
        let (w3, b3) = p.split_at(s3.0 * s3.1);
        [(w0, b0), (w1, b1), (w2, b2), (w3, b3)]
    }

    fn split_mut(self, p: &mut [f32]) -> [(&mut [f32], &mut [f32]); 4] {
        let [s0, s1, s2, s3] = self.shapes();
        let (w0, p) = p.split_at_mut(s0.0 * s0.1);
        let (b0, p) = p.split_at_mut(s0.1);
        let (w1, p) = p.split_at_mut(s1.0 * s1.1);
        let (b1, p) = p.split_at_mut(s1.1);
        let (w2, p) = p.split_at_mut(s2.0 * s2.1);
        let (b2, p) = p.split_at_mut(s2.1);
        let (w3, b3) = p.split_at_mut(s3.0 * s3.1);
        [(w0, b0), (w1, b1), (w2, b2), (w3, b3)]
    }
}

/// A fitted autoencoder reconstruction-error detector.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "AutoencoderState")]
pub struct Autoencoder {
    dim: usize,
    hidden: usize,
    bottleneck: usize,
    activation: Activation,
    /// Per-feature reference mean.
    mean: Vec<f32>,
    /// Per-feature `1 / std` (1 for a feature with no spread).
    inv_std: Vec<f32>,
    /// Weights (row-major, output × input) and biases of the four layers, in order.
    params: Vec<f32>,
    /// The mean training loss of the last epoch (standardised MSE).
    training_loss: f64,
}

#[derive(Deserialize)]
struct AutoencoderState {
    dim: usize,
    hidden: usize,
    bottleneck: usize,
    activation: Activation,
    mean: Vec<f32>,
    inv_std: Vec<f32>,
    params: Vec<f32>,
    training_loss: f64,
}

impl TryFrom<AutoencoderState> for Autoencoder {
    type Error = DetectError;

    fn try_from(s: AutoencoderState) -> Result<Self, DetectError> {
        let max = AutoencoderConfig::MAX_WIDTH;
        if s.dim == 0 || s.hidden == 0 || s.bottleneck == 0 {
            return Err(bad_state("autoencoder: widths must be at least 1"));
        }
        if s.dim > 1 << 20 || s.hidden > max || s.bottleneck > max {
            return Err(bad_state("autoencoder: widths too large"));
        }
        let layout = Layout {
            d: s.dim,
            h: s.hidden,
            b: s.bottleneck,
        };
        if s.mean.len() != s.dim || s.inv_std.len() != s.dim || s.params.len() != layout.len() {
            return Err(bad_state("autoencoder: vectors have the wrong length"));
        }
        for v in [&s.mean, &s.inv_std, &s.params] {
            check_finite_f32(v, "autoencoder state").map_err(|e| bad_state(e.to_string()))?;
        }
        if !s.training_loss.is_finite() {
            return Err(bad_state("autoencoder: the training loss must be finite"));
        }
        Ok(Self {
            dim: s.dim,
            hidden: s.hidden,
            bottleneck: s.bottleneck,
            activation: s.activation,
            mean: s.mean,
            inv_std: s.inv_std,
            params: s.params,
            training_loss: s.training_loss,
        })
    }
}

/// Adam's moment decay rates and denominator guard (Kingma and Ba's defaults).
const BETA1: f32 = 0.9;
const BETA2: f32 = 0.999;
const ADAM_EPS: f32 = 1e-8;

/// Activations of one forward pass: the standardised input, the four layers' outputs.
struct Pass<'a> {
    xs: &'a mut [f32],
    a1: &'a mut [f32],
    z: &'a mut [f32],
    a3: &'a mut [f32],
    out: &'a mut [f32],
}

impl<'a> Pass<'a> {
    /// Carves a pass out of a buffer of at least `2d + 2h + b` values.
    fn carve(buf: &'a mut [f32], l: Layout) -> Self {
        let (xs, buf) = buf.split_at_mut(l.d);
        let (a1, buf) = buf.split_at_mut(l.h);
        let (z, buf) = buf.split_at_mut(l.b);
        let (a3, buf) = buf.split_at_mut(l.h);
        let (out, _) = buf.split_at_mut(l.d);
        Self { xs, a1, z, a3, out }
    }

    fn size(l: Layout) -> usize {
        2 * l.d + 2 * l.h + l.b
    }
}

/// `out = act(W input + b)`, or affine when `act` is `None`.
fn dense(w: &[f32], b: &[f32], input: &[f32], out: &mut [f32], act: Option<Activation>) {
    for ((o, row), bias) in out.iter_mut().zip(w.chunks_exact(input.len())).zip(b) {
        let v = dot_f32(row, input) + bias;
        *o = act.map_or(v, |a| a.apply(v));
    }
}

impl Autoencoder {
    /// Trains on `features` (row-major, `dim` per row, at least 2 rows).
    pub fn fit(
        features: &[f32],
        dim: usize,
        config: AutoencoderConfig,
    ) -> Result<Self, DetectError> {
        let n = check_rows(features, dim, 2, "autoencoder reference")?;
        let c = config;
        let max = AutoencoderConfig::MAX_WIDTH;
        if c.hidden == 0 || c.hidden > max {
            return Err(bad_config(
                "hidden",
                format!("expected 1..={max}, got {}", c.hidden),
            ));
        }
        if c.bottleneck == 0 || c.bottleneck > c.hidden {
            return Err(bad_config(
                "bottleneck",
                format!("expected 1..=hidden ({}), got {}", c.hidden, c.bottleneck),
            ));
        }
        if c.epochs == 0 || c.batch_size == 0 {
            return Err(bad_config(
                "epochs",
                "expected at least 1 epoch and a batch size of at least 1",
            ));
        }
        if !(c.learning_rate.is_finite() && c.learning_rate > 0.0) {
            return Err(bad_config(
                "learning_rate",
                format!("expected a finite rate above 0, got {}", c.learning_rate),
            ));
        }
        let layout = Layout {
            d: dim,
            h: c.hidden,
            b: c.bottleneck,
        };
        let work = c.epochs as u128 * n as u128 * layout.len() as u128;
        if work > AutoencoderConfig::MAX_WORK {
            return Err(bad_config(
                "epochs",
                format!(
                    "epochs x rows x parameters = {work} exceeds the bound of {}; hint: fewer epochs, a subsample or smaller layers",
                    AutoencoderConfig::MAX_WORK
                ),
            ));
        }

        // Standardisation statistics, in f64.
        let mut mean64 = vec![0.0f64; dim];
        let mut sq64 = vec![0.0f64; dim];
        for row in features.chunks_exact(dim) {
            for (m, &v) in mean64.iter_mut().zip(row) {
                *m += f64::from(v);
            }
        }
        for m in &mut mean64 {
            *m /= n as f64;
        }
        for row in features.chunks_exact(dim) {
            for ((s, &v), m) in sq64.iter_mut().zip(row).zip(&mean64) {
                *s += (f64::from(v) - m).powi(2);
            }
        }
        let mean: Vec<f32> = mean64.iter().map(|&m| m as f32).collect();
        let inv_std: Vec<f32> = sq64
            .iter()
            .map(|&s| {
                let std = (s / n as f64).sqrt();
                let inv = 1.0 / std;
                if std > 0.0 && inv.is_finite() && (inv as f32).is_finite() {
                    inv as f32
                } else {
                    1.0
                }
            })
            .collect();

        let mut rng = Rng::new(c.seed);
        let mut params = vec![0.0f32; layout.len()];
        for ((w, _), (fan_in, fan_out)) in layout
            .split_mut(&mut params)
            .into_iter()
            .zip(layout.shapes())
        {
            let limit = (6.0 / (fan_in + fan_out) as f32).sqrt();
            for v in w.iter_mut() {
                *v = (2.0 * rng.next_f32() - 1.0) * limit;
            }
        }

        let mut grads = vec![0.0f32; layout.len()];
        let mut m1 = vec![0.0f32; layout.len()];
        let mut m2 = vec![0.0f32; layout.len()];
        let mut buf = vec![0.0f32; Pass::size(layout)];
        let mut deltas = vec![0.0f32; 2 * c.hidden + c.bottleneck + dim];
        let mut order: Vec<usize> = (0..n).collect();
        let mut step = 0i32;
        let mut last_loss = f64::NAN;
        for epoch in 0..c.epochs {
            rng.shuffle(&mut order);
            let mut epoch_loss = 0.0f64;
            for batch in order.chunks(c.batch_size) {
                grads.iter_mut().for_each(|g| *g = 0.0);
                let scale = 2.0 / (batch.len() * dim) as f32;
                for &row in batch {
                    let x = &features[row * dim..(row + 1) * dim];
                    let mut pass = Pass::carve(&mut buf, layout);
                    let loss =
                        forward(&params, layout, c.activation, &mean, &inv_std, x, &mut pass);
                    epoch_loss += loss;
                    backward(
                        &params,
                        &mut grads,
                        layout,
                        c.activation,
                        &pass,
                        scale,
                        &mut deltas,
                    );
                }
                step = step.saturating_add(1);
                let (bc1, bc2) = (1.0 - BETA1.powi(step), 1.0 - BETA2.powi(step));
                for ((p, g), (a, b)) in params
                    .iter_mut()
                    .zip(&grads)
                    .zip(m1.iter_mut().zip(m2.iter_mut()))
                {
                    *a = BETA1 * *a + (1.0 - BETA1) * g;
                    *b = BETA2 * *b + (1.0 - BETA2) * g * g;
                    *p -= c.learning_rate * (*a / bc1) / ((*b / bc2).sqrt() + ADAM_EPS);
                }
            }
            last_loss = epoch_loss / n as f64;
            if !last_loss.is_finite() {
                return Err(DetectError::TrainingDiverged {
                    epoch,
                    loss: last_loss,
                });
            }
        }
        if let Err(DetectError::NonFinite { .. }) = check_finite_f32(&params, "autoencoder weights")
        {
            return Err(DetectError::TrainingDiverged {
                epoch: c.epochs - 1,
                loss: last_loss,
            });
        }
        Ok(Self {
            dim,
            hidden: c.hidden,
            bottleneck: c.bottleneck,
            activation: c.activation,
            mean,
            inv_std,
            params,
            training_loss: last_loss,
        })
    }

    /// The mean standardised MSE over the reference set in the last training epoch.
    pub fn training_loss(&self) -> f64 {
        self.training_loss
    }

    fn layout(&self) -> Layout {
        Layout {
            d: self.dim,
            h: self.hidden,
            b: self.bottleneck,
        }
    }
}

/// Runs the network on `x`, filling `pass`, and returns the per-feature MSE in standardised units.
fn forward(
    params: &[f32],
    layout: Layout,
    act: Activation,
    mean: &[f32],
    inv_std: &[f32],
    x: &[f32],
    pass: &mut Pass<'_>,
) -> f64 {
    for (((s, &v), m), is) in pass.xs.iter_mut().zip(x).zip(mean).zip(inv_std) {
        *s = (v - m) * is;
    }
    let [(w0, b0), (w1, b1), (w2, b2), (w3, b3)] = layout.split(params);
    dense(w0, b0, pass.xs, pass.a1, Some(act));
    dense(w1, b1, pass.a1, pass.z, None);
    dense(w2, b2, pass.z, pass.a3, Some(act));
    dense(w3, b3, pass.a3, pass.out, None);
    let mut sum = 0.0f64;
    for (o, s) in pass.out.iter().zip(pass.xs.iter()) {
        sum += f64::from(o - s).powi(2);
    }
    sum / layout.d as f64
}

/// Adds one sample's share of the gradient of the batch-mean MSE to `grads`: with
/// `scale = 2 / (batch · d)`, the loss's derivative with respect to the output is
/// `scale · (out − xs)`.
fn backward(
    params: &[f32],
    grads: &mut [f32],
    layout: Layout,
    act: Activation,
    pass: &Pass<'_>,
    scale: f32,
    deltas: &mut [f32],
) {
    let (d_out, rest) = deltas.split_at_mut(layout.d);
    let (d_a3, rest) = rest.split_at_mut(layout.h);
    let (d_z, rest) = rest.split_at_mut(layout.b);
    let d_a1 = &mut rest[..layout.h];
    for ((g, o), s) in d_out.iter_mut().zip(pass.out.iter()).zip(pass.xs.iter()) {
        *g = scale * (o - s);
    }
    let [_, (w1, _), (w2, _), (w3, _)] = layout.split(params);
    let [(g0, gb0), (g1, gb1), (g2, gb2), (g3, gb3)] = layout.split_mut(grads);

    // Output layer (linear): d_a3 = W3ᵀ d_out, then through the activation.
    outer_add(g3, gb3, d_out, pass.a3);
    transpose_mul(w3, d_out, d_a3);
    for (g, &a) in d_a3.iter_mut().zip(pass.a3.iter()) {
        *g *= act.derivative_at_output(a);
    }
    // Second hidden layer: d_z = W2ᵀ d_a3 (the bottleneck is linear).
    outer_add(g2, gb2, d_a3, pass.z);
    transpose_mul(w2, d_a3, d_z);
    // Bottleneck layer: d_a1 = W1ᵀ d_z, then through the activation.
    outer_add(g1, gb1, d_z, pass.a1);
    transpose_mul(w1, d_z, d_a1);
    for (g, &a) in d_a1.iter_mut().zip(pass.a1.iter()) {
        *g *= act.derivative_at_output(a);
    }
    outer_add(g0, gb0, d_a1, pass.xs);
}

/// `gw += delta ⊗ input` and `gb += delta`.
fn outer_add(gw: &mut [f32], gb: &mut [f32], delta: &[f32], input: &[f32]) {
    for ((row, g), &dl) in gw
        .chunks_exact_mut(input.len())
        .zip(gb.iter_mut())
        .zip(delta)
    {
        *g += dl;
        for (w, &x) in row.iter_mut().zip(input) {
            *w += dl * x;
        }
    }
}

/// `out = Wᵀ delta` for `W` of shape `delta.len() × out.len()`.
fn transpose_mul(w: &[f32], delta: &[f32], out: &mut [f32]) {
    out.iter_mut().for_each(|o| *o = 0.0);
    for (row, &dl) in w.chunks_exact(out.len()).zip(delta) {
        for (o, &v) in out.iter_mut().zip(row) {
            *o += dl * v;
        }
    }
}

impl Detector for Autoencoder {
    fn dim(&self) -> usize {
        self.dim
    }

    fn score_with(&self, x: &[f32], scratch: &mut Scratch) -> Result<f64, DetectError> {
        check_sample(x, self.dim, "features")?;
        let layout = self.layout();
        let (_, buf, _) = scratch.buffers(0, Pass::size(layout), 0);
        let mut pass = Pass::carve(buf, layout);
        let mse = forward(
            &self.params,
            layout,
            self.activation,
            &self.mean,
            &self.inv_std,
            x,
            &mut pass,
        );
        if mse.is_finite() {
            Ok(mse)
        } else {
            // Finite inputs far outside the reference range can overflow f32 after standardisation.
            Err(DetectError::NonFinite {
                what: "autoencoder reconstruction error",
                index: 0,
                value: mse,
            })
        }
    }
}
