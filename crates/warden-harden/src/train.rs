//! Training: clean, FGSM with a random start (Wong et al. 2020) and PGD adversarial training
//! (Madry et al. 2018), with a learning-rate schedule, an epsilon warm-up and early stopping on
//! robust validation accuracy (the guard against catastrophic overfitting).
//!
//! A step shards its batch over the pool's threads; each thread crafts its shard's adversarial
//! examples against the current weights, then computes its shard's weight gradients; the gradients
//! are summed in shard order and applied once.

use serde::{Deserialize, Serialize};

use crate::attack::{self, Goal, Norm, Pgd};
use crate::augment::Augment;
use crate::net::CpuNet;
use crate::nn::{Model, ModelError, Pool, Workspace, argmax, softmax_xent};
use crate::optim::{OptimSpec, Optimizer};
use crate::rng::Rng;

/// Largest training batch (or expected DP batch).
pub const MAX_BATCH: usize = 4096;

/// What a training step fits the model to.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Method {
    /// Clean examples only.
    Clean,
    /// One gradient step of size `alpha` from a uniform random start in the ball (under L∞ a
    /// signed step, under L2 one along the normalised gradient).
    FgsmRs {
        eps: f32,
        alpha: f32,
        /// The threat model (L∞ where a recipe does not say).
        #[serde(default)]
        norm: Norm,
    },
    /// PGD with a random start: `steps` steps of size `step` in the ball (signed under L∞, along
    /// the normalised gradient under L2), each projected back onto it.
    Pgd {
        eps: f32,
        step: f32,
        steps: usize,
        #[serde(default)]
        norm: Norm,
    },
    /// TRADES (Zhang et al. 2019): cross-entropy on clean examples plus `beta` times the KL
    /// divergence between the clean and the adversarial prediction, the adversarial example found
    /// by `steps` steps on that divergence from a small Gaussian start (σ = 0.001).
    Trades {
        eps: f32,
        step: f32,
        steps: usize,
        beta: f32,
        #[serde(default)]
        norm: Norm,
    },
}

/// What one training step minimises.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Objective {
    Clean,
    /// Cross-entropy on the points of this attack.
    Adversarial(Pgd),
    /// TRADES with this attack on the KL divergence (its `random_start` is ignored).
    Trades {
        attack: Pgd,
        beta: f32,
    },
}

impl Method {
    /// The training attack at budget `eps_now` (the warm-up scales eps and step together).
    pub fn objective(&self, eps_now: f32) -> Objective {
        match (self.attack(eps_now), *self) {
            (Some(a), Method::Trades { beta, .. }) => Objective::Trades { attack: a, beta },
            (Some(a), _) => Objective::Adversarial(a),
            (None, _) => Objective::Clean,
        }
    }

    /// The training attack at budget `eps_now` (the warm-up scales eps and step together).
    pub fn attack(&self, eps_now: f32) -> Option<Pgd> {
        let base = Pgd {
            norm: Norm::Linf,
            eps: 0.0,
            step: 0.0,
            steps: 1,
            restarts: 1,
            random_start: true,
            keep_first_success: false,
            goal: Goal::Untargeted,
            lo: 0.0,
            hi: 1.0,
        };
        match *self {
            Method::Clean => None,
            Method::FgsmRs { eps, alpha, norm } => Some(Pgd {
                norm,
                eps: eps_now,
                step: alpha * eps_now / eps,
                ..base
            }),
            Method::Pgd {
                eps,
                step,
                steps,
                norm,
            }
            | Method::Trades {
                eps,
                step,
                steps,
                norm,
                ..
            } => Some(Pgd {
                norm,
                eps: eps_now,
                step: step * eps_now / eps,
                steps,
                ..base
            }),
        }
    }

    /// The threat model of the training attack (L∞ for clean training, which has none).
    pub fn norm(&self) -> Norm {
        match *self {
            Method::Clean => Norm::Linf,
            Method::FgsmRs { norm, .. }
            | Method::Pgd { norm, .. }
            | Method::Trades { norm, .. } => norm,
        }
    }

    pub fn eps(&self) -> f32 {
        match *self {
            Method::Clean => 0.0,
            Method::FgsmRs { eps, .. } | Method::Pgd { eps, .. } | Method::Trades { eps, .. } => {
                eps
            }
        }
    }
}

/// How the learning rate moves over the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    Constant,
    /// Half a cosine from the base rate to zero.
    Cosine,
    /// Linear up to the base rate over the first 40% of steps, then linear down to zero
    /// (the cyclic schedule of fast adversarial training).
    OneCycle,
}

impl Schedule {
    /// The multiplier of the base rate at `step` of `total`.
    pub fn factor(&self, step: usize, total: usize) -> f32 {
        let t = step as f64 / total.max(1) as f64;
        (match self {
            Schedule::Constant => 1.0,
            Schedule::Cosine => 0.5 * (1.0 + (std::f64::consts::PI * t).cos()),
            Schedule::OneCycle => {
                if t < 0.4 {
                    t / 0.4
                } else {
                    (1.0 - t) / 0.6
                }
            }
        }) as f32
    }
}

/// A complete training recipe: everything that, with the data and the architecture, determines
/// the weights (for a given thread count and CPU).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    pub method: Method,
    pub optim: OptimSpec,
    pub schedule: Schedule,
    pub epochs: usize,
    pub batch: usize,
    /// Epochs over which the attack budget grows linearly from 0 to its value.
    #[serde(default)]
    pub eps_warmup_epochs: usize,
    /// Stop when the selection metric has not improved for this many epochs (0: never).
    #[serde(default)]
    pub patience: usize,
    /// Keep an exponential moving average of the weights with this decay, validate it and release
    /// it instead of the last iterate (None: the iterate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ema: Option<f32>,
    /// Adversarial weight perturbation (Wu et al. 2020) of this relative size on adversarial
    /// steps (None: off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub awp: Option<f32>,
    /// Random flips and translations of the training images (none: the identity).
    #[serde(default, skip_serializing_if = "Augment::is_identity")]
    pub augment: Augment,
    pub seed: u64,
}

impl Recipe {
    /// The training attack's budget in epoch `epoch` (from 0): it grows linearly over the warm-up,
    /// reaching the method's ε at the warm-up's last epoch, and stays there.
    pub fn eps_at(&self, epoch: usize) -> f32 {
        let eps = self.method.eps();
        match self.eps_warmup_epochs {
            0 => eps,
            w => eps * ((epoch + 1) as f32 / w as f32).min(1.0),
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        self.optim.validate()?;
        // A step holds the whole batch's activations (and im2col buffers): the bound keeps a
        // cnn4 step under about 3 GiB.
        if self.epochs == 0 || self.epochs > 10_000 || self.batch == 0 || self.batch > MAX_BATCH {
            return Err(format!("epochs 1..=10000 and batch 1..={MAX_BATCH}"));
        }
        if self.augment.shift > crate::augment::MAX_SHIFT {
            return Err(format!(
                "a shift of at most {} pixels",
                crate::augment::MAX_SHIFT
            ));
        }
        if let Some(d) = self.ema
            && !(d.is_finite() && d > 0.0 && d < 1.0)
        {
            return Err("the weight average's decay must be in (0, 1)".into());
        }
        if let Some(g) = self.awp {
            if !(g.is_finite() && g > 0.0 && g <= 0.1) {
                return Err("the weight perturbation's size must be in (0, 0.1]".into());
            }
            if !matches!(self.method, Method::Pgd { .. } | Method::FgsmRs { .. }) {
                return Err("weight perturbation goes with PGD or FGSM-RS training".into());
            }
        }
        if let Method::Trades { beta, .. } = self.method
            && !(beta.is_finite() && (0.0..=1000.0).contains(&beta))
        {
            return Err("TRADES beta must be in [0, 1000]".into());
        }
        if let Some(a) = self.method.attack(self.method.eps()) {
            a.validate()?;
            if a.eps <= 0.0 {
                return Err("an adversarial method needs eps > 0".into());
            }
        }
        Ok(())
    }
}

/// Per-thread scratch of a training step.
#[derive(Debug, Default)]
struct Scratch {
    grads: Vec<Vec<f32>>,
    /// TRADES: the clean pass's workspace and gradients, and the clean probabilities.
    clean_ws: Workspace,
    clean_grads: Vec<Vec<f32>>,
    probs: Vec<f32>,
    dl2: Vec<f32>,
    /// DP-SGD: per-example gradient norms.
    norms: Vec<f32>,
    adv: Vec<f32>,
    ok: Vec<bool>,
    dl: Vec<f32>,
    loss: f64,
    correct: usize,
}

/// A model, its optimiser state and the per-thread buffers of a training step.
#[derive(Debug)]
pub struct Trainer {
    pub model: Model,
    opt: Optimizer,
    base_lr: f32,
    pool: Pool,
    scratch: Vec<Scratch>,
    ema: Option<Ema>,
    /// Adversarial weight perturbation's relative size γ, when it is on.
    awp: Option<f32>,
    /// AWP: the unperturbed values of each tensor it moved (empty for those it left alone).
    awp_saved: Vec<Vec<f32>>,
    /// The transformations of every training batch.
    augment: Augment,
}

/// An exponential moving average of the weights (Polyak averaging as used for adversarial
/// training by Gowal et al. 2020): after step `t` (from 0), `w̄ ← d_t w̄ + (1 − d_t) w` with
/// `d_t = min(decay, (1 + t) / (10 + t))`, so that the first steps, far from the end, are
/// forgotten fast.
#[derive(Debug, Clone)]
struct Ema {
    decay: f32,
    steps: u64,
    params: Vec<Vec<f32>>,
}

impl Ema {
    fn update(&mut self, params: &[Vec<f32>]) {
        let t = self.steps as f32;
        let d = self.decay.min((1.0 + t) / (10.0 + t));
        for (avg, w) in self.params.iter_mut().zip(params) {
            for (a, &v) in avg.iter_mut().zip(w) {
                *a = d * *a + (1.0 - d) * v;
            }
        }
        self.steps += 1;
    }
}

/// What one step or one epoch saw: mean loss and accuracy on the examples it trained on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Stats {
    pub examples: usize,
    pub loss: f64,
    pub accuracy: f64,
}

/// An epoch's running totals: the batches' statistics weighted by their sizes.
#[derive(Debug, Clone, Copy, Default)]
pub struct EpochTotals(Stats);

impl EpochTotals {
    pub fn add(&mut self, s: &Stats) {
        self.0.loss += s.loss * s.examples as f64;
        self.0.accuracy += s.accuracy * s.examples as f64;
        self.0.examples += s.examples;
    }

    /// Mean loss and accuracy over every example added.
    pub fn mean(&self) -> Stats {
        let k = self.0.examples.max(1) as f64;
        Stats {
            examples: self.0.examples,
            loss: self.0.loss / k,
            accuracy: self.0.accuracy / k,
        }
    }
}

/// The order in which an epoch visits `idx`: a Fisher–Yates shuffle drawn from `seed`, the same
/// on every engine.
pub fn epoch_order(idx: &[usize], seed: u64) -> Vec<usize> {
    let mut order = idx.to_vec();
    let mut rng = Rng::new(seed);
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    order
}

/// The seed of batch `b`'s augmentation in an epoch drawn from `seed`, the same on every engine
/// (and apart from the seed of the batch's attack).
pub fn augment_seed(seed: u64, b: usize) -> u64 {
    (seed ^ 0x6175_676d_656e_7421).wrapping_add((b as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

impl Trainer {
    pub fn new(model: Model, optim: OptimSpec, threads: usize) -> Trainer {
        let opt = Optimizer::new(optim, model.params());
        let pool = Pool::new(threads);
        let scratch = (0..pool.threads())
            .map(|_| Scratch {
                grads: model.zero_grads(),
                clean_grads: model.zero_grads(),
                ..Scratch::default()
            })
            .collect();
        Trainer {
            model,
            opt,
            base_lr: optim.lr(),
            pool,
            scratch,
            ema: None,
            awp: None,
            awp_saved: Vec::new(),
            augment: Augment::default(),
        }
    }

    /// Augments every training batch of [`Trainer::epoch`] with `augment` from now on; refused
    /// when its shift does not fit the model's input.
    pub fn set_augment(&mut self, augment: Augment) -> Result<(), ModelError> {
        augment
            .validate(self.model.arch().input)
            .map_err(ModelError::Input)?;
        self.augment = augment;
        Ok(())
    }

    /// Turns on adversarial weight perturbation (Wu et al. 2020) with relative size `gamma`: each
    /// adversarial step first moves every weight tensor (biases excepted) by `γ‖w‖ g/‖g‖` along
    /// the gradient `g` of the loss on the step's adversarial examples, takes the gradient at that
    /// worst-case neighbour, and applies it to the unperturbed weights. One more forward and
    /// backward pass per step; it flattens the weight loss landscape, the cause of the robust
    /// generalisation gap the paper names. Clean steps are left alone.
    pub fn enable_awp(&mut self, gamma: f32) {
        self.awp = Some(gamma);
    }

    /// Starts averaging the weights with `decay` (in (0, 1)) from the current ones.
    pub fn enable_ema(&mut self, decay: f32) {
        self.ema = Some(Ema {
            decay,
            steps: 0,
            params: self.model.params().to_vec(),
        });
    }

    /// The averaged weights, when averaging is on.
    pub fn ema_params(&self) -> Option<&[Vec<f32>]> {
        self.ema.as_ref().map(|e| e.params.as_slice())
    }

    /// The weights to validate and release: the average when averaging is on, else the iterate.
    pub fn release_params(&self) -> &[Vec<f32>] {
        self.ema_params().unwrap_or(self.model.params())
    }

    /// The model to validate and release: the iterate's architecture with [`Self::release_params`].
    pub fn released_model(&self) -> Model {
        let mut m = self.model.clone();
        m.params_mut().clone_from_slice(self.release_params());
        m
    }

    fn optimizer_step(&mut self) {
        self.opt
            .step(self.model.params_mut(), &self.scratch[0].grads);
        if let Some(e) = &mut self.ema {
            e.update(self.model.params());
        }
    }

    pub fn pool(&mut self) -> &mut Pool {
        &mut self.pool
    }

    /// The largest batch whose per-thread shard fits the training workspace budget (TRADES
    /// keeps two passes; counted for every method).
    pub fn max_batch(&self) -> usize {
        let per_thread = crate::nn::TRAIN_BUDGET / (2 * self.model.floats_per_example().max(1));
        per_thread.max(1).saturating_mul(self.pool.threads())
    }

    /// Sums the first `used` shards' weight gradients into the first scratch (zero when no shard
    /// ran) and returns their summed loss and correct count; a non-finite loss is an error.
    fn reduce(&mut self, used: usize) -> Result<(f64, usize), ModelError> {
        let (first, rest) = self.scratch.split_at_mut(1);
        if used == 0 {
            for g in &mut first[0].grads {
                g.fill(0.0);
            }
        }
        for sc in &rest[..used.saturating_sub(1)] {
            for (g, h) in first[0].grads.iter_mut().zip(&sc.grads) {
                for (a, b) in g.iter_mut().zip(h) {
                    *a += b;
                }
            }
        }
        let loss: f64 = self.scratch[..used].iter().map(|s| s.loss).sum();
        let correct: usize = self.scratch[..used].iter().map(|s| s.correct).sum();
        if !loss.is_finite() {
            return Err(ModelError::Input(
                "the loss is not finite (learning rate too high?)".into(),
            ));
        }
        Ok((loss, correct))
    }

    fn check_batch(&self, n: usize) -> Result<(), ModelError> {
        if n > self.max_batch() {
            return Err(ModelError::Input(format!(
                "a batch of {n} needs more workspace than allowed for this model; at most {} with {} thread(s)",
                self.max_batch(),
                self.pool.threads()
            )));
        }
        Ok(())
    }

    /// Sets the learning rate to `factor` times the base rate.
    pub fn set_lr_factor(&mut self, factor: f32) {
        self.opt.set_lr(self.base_lr * factor);
    }

    /// One optimisation step on a batch (`x` is `n × input_len`, labels in `y`) towards
    /// `objective` (random starts drawn from `seed`).
    pub fn step(
        &mut self,
        x: &[f32],
        y: &[u8],
        objective: &Objective,
        seed: u64,
    ) -> Result<Stats, ModelError> {
        let n = y.len();
        let len = self.model.input_len();
        if x.len() != n * len || n == 0 {
            return Err(ModelError::Input(format!(
                "{} values for {n} examples of {len}",
                x.len()
            )));
        }
        self.check_batch(n)?;
        let scale = 1.0 / n as f32;
        self.shard_pass(x, y, objective, seed, scale, false)?;
        let used = self.pool.shards(n, crate::nn::LEAST_PER_THREAD).len();
        let (loss, correct) = self.reduce(used)?;
        if let (Some(gamma), Objective::Adversarial(_)) = (self.awp, objective) {
            self.perturb_weights(gamma);
            let second = self
                .shard_pass(x, y, objective, seed, scale, true)
                .and_then(|()| self.reduce(used));
            self.restore_weights();
            second?;
        }
        self.optimizer_step();
        Ok(Stats {
            examples: n,
            loss: loss / n as f64,
            accuracy: correct as f64 / n as f64,
        })
    }

    /// Every shard's loss, correct count and weight gradients for `objective` on its part of the
    /// batch. With `reuse_adversarial`, the adversarial points of the previous pass (kept in the
    /// shards' scratch) are used again instead of being crafted anew (AWP's second pass).
    fn shard_pass(
        &mut self,
        x: &[f32],
        y: &[u8],
        objective: &Objective,
        seed: u64,
        scale: f32,
        reuse_adversarial: bool,
    ) -> Result<(), ModelError> {
        let n = y.len();
        let len = self.model.input_len();
        let classes = self.model.classes();
        let model = &self.model;
        let shards = self.pool.shards(n, crate::nn::LEAST_PER_THREAD);
        let parts: Vec<_> = shards.into_iter().zip(self.scratch.iter_mut()).collect();
        self.pool.run_parts(
            parts,
            |ws: &mut Workspace, (r, sc): (std::ops::Range<usize>, &mut Scratch)| {
                let (xs, ys) = (&x[r.start * len..r.end * len], &y[r.clone()]);
                if let Objective::Trades { attack, beta } = objective {
                    return trades_shard(
                        model, ws, sc, attack, *beta, xs, ys, r.start, seed, scale,
                    );
                }
                let input: &[f32] = match objective {
                    Objective::Adversarial(_) if reuse_adversarial => &sc.adv,
                    Objective::Adversarial(a) | Objective::Trades { attack: a, .. } => {
                        sc.adv.resize(xs.len(), 0.0);
                        sc.ok.resize(ys.len(), false);
                        attack::attack_shard(
                            &mut CpuNet { model, ws },
                            a,
                            xs,
                            ys,
                            r.start,
                            seed,
                            &mut sc.adv,
                            &mut sc.ok,
                            true,
                        )?;
                        &sc.adv
                    }
                    Objective::Clean => xs,
                };
                let logits = model.forward(ws, input, ys.len())?;
                sc.correct = logits
                    .chunks_exact(classes)
                    .zip(ys)
                    .filter(|(row, y)| argmax(row) == usize::from(**y))
                    .count();
                sc.loss = softmax_xent(logits, ys, classes, scale, &mut sc.dl, None);
                model.backward(ws, input, &sc.dl, Some(&mut sc.grads), false);
                Ok::<(), ModelError>(())
            },
        )
    }

    /// AWP: adds `γ‖w‖ g/‖g‖` to every weight tensor of more than one dimension (`g` the summed
    /// gradient in the first scratch), keeping the values it replaced.
    fn perturb_weights(&mut self, gamma: f32) {
        let grads = &self.scratch[0].grads;
        self.awp_saved.resize(grads.len(), Vec::new());
        let (infos, params) = self.model.infos_and_params_mut();
        let norm = |v: &[f32]| v.iter().map(|&a| f64::from(a).powi(2)).sum::<f64>().sqrt();
        for (((w, g), saved), info) in params
            .iter_mut()
            .zip(grads)
            .zip(&mut self.awp_saved)
            .zip(infos)
        {
            saved.clear();
            let gn = norm(g);
            if !info.is_weight() || gn == 0.0 || !gn.is_finite() {
                continue;
            }
            saved.extend_from_slice(w);
            let k = (f64::from(gamma) * norm(w) / gn) as f32;
            for (a, &d) in w.iter_mut().zip(g) {
                *a += k * d;
            }
        }
    }

    /// AWP: puts the unperturbed weights back.
    fn restore_weights(&mut self) {
        for (w, saved) in self.model.params_mut().iter_mut().zip(&self.awp_saved) {
            if !saved.is_empty() {
                w.copy_from_slice(saved);
            }
        }
    }

    /// One pass over `idx` (indices into `x`/`y`) in batches, shuffled with `seed`.
    /// `on_batch(done, total, stats)` is called after every batch (for progress).
    #[allow(clippy::too_many_arguments)]
    pub fn epoch(
        &mut self,
        x: &[f32],
        y: &[u8],
        idx: &[usize],
        batch: usize,
        objective: &Objective,
        lr: &mut dyn FnMut(usize) -> f32,
        seed: u64,
        on_batch: &mut dyn FnMut(usize, usize, Stats) -> bool,
    ) -> Result<Stats, ModelError> {
        let len = self.model.input_len();
        let order = epoch_order(idx, seed);
        let (mut bx, mut by) = (Vec::with_capacity(batch * len), Vec::with_capacity(batch));
        let mut total = EpochTotals::default();
        let batches = order.len().div_ceil(batch);
        for (b, chunk) in order.chunks(batch).enumerate() {
            bx.clear();
            by.clear();
            for &i in chunk {
                bx.extend_from_slice(&x[i * len..(i + 1) * len]);
                by.push(y[i]);
            }
            self.augment
                .apply(&mut bx, self.model.arch().input, augment_seed(seed, b));
            self.set_lr_factor(lr(b));
            let s = self.step(
                &bx,
                &by,
                objective,
                seed ^ (b as u64).wrapping_mul(0x9e37_79b9),
            )?;
            total.add(&s);
            if !on_batch(b + 1, batches, s) {
                return Err(ModelError::Input("interrupted".into()));
            }
        }
        Ok(total.mean())
    }
}

fn softmax_rows(logits: &[f32], classes: usize, out: &mut Vec<f32>) {
    out.clear();
    for row in logits.chunks_exact(classes) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let start = out.len();
        out.extend(row.iter().map(|&v| (v - max).exp()));
        let sum: f32 = out[start..].iter().sum();
        for v in &mut out[start..] {
            *v /= sum;
        }
    }
}

/// One TRADES step on a shard: the clean pass in the scratch's own workspace, the attack and
/// the adversarial pass in the pool's; the weight gradients of both passes summed.
///
/// With p the clean and q the adversarial softmax, the loss is CE(p, y) + β·KL(p‖q). Its
/// gradient with respect to the adversarial logits is β(q − p); with respect to the clean logits
/// it is (p − onehot(y)) + β·p_j(r_j − Σ_i p_i r_i) with r = log p − log q.
#[allow(clippy::too_many_arguments)]
fn trades_shard(
    model: &Model,
    ws: &mut Workspace,
    sc: &mut Scratch,
    a: &Pgd,
    beta: f32,
    xs: &[f32],
    ys: &[u8],
    first: usize,
    seed: u64,
    scale: f32,
) -> Result<(), ModelError> {
    let m = ys.len();
    let len = model.input_len();
    let classes = model.classes();
    let logits = model.forward(&mut sc.clean_ws, xs, m)?;
    sc.correct = logits
        .chunks_exact(classes)
        .zip(ys)
        .filter(|(row, y)| argmax(row) == usize::from(**y))
        .count();
    let ce = softmax_xent(logits, ys, classes, scale, &mut sc.dl2, None);
    softmax_rows(logits, classes, &mut sc.probs);
    // The attack: maximise KL(p‖q) from x + N(0, 0.001²).
    sc.adv.clear();
    for (i, x0) in xs.chunks_exact(len).enumerate() {
        let mut rng = Rng::stream(seed ^ 0x7ade5, (first + i) as u64, 0);
        sc.adv.extend(
            x0.iter()
                .map(|&v| (v + 0.001 * rng.normal() as f32).clamp(a.lo, a.hi)),
        );
    }
    let mut q = Vec::new();
    for _ in 0..a.steps {
        let la = model.forward(ws, &sc.adv, m)?;
        softmax_rows(la, classes, &mut q);
        sc.dl.clear();
        sc.dl.extend(q.iter().zip(&sc.probs).map(|(q, p)| q - p));
        model.backward(ws, &sc.adv, &sc.dl, None, true);
        let g = ws.input_grad();
        for ((x0, v), gi) in xs
            .chunks_exact(len)
            .zip(sc.adv.chunks_exact_mut(len))
            .zip(g.chunks_exact(len))
        {
            attack::step_project(a, 1.0, x0, v, gi);
        }
    }
    let la = model.forward(ws, &sc.adv, m)?;
    softmax_rows(la, classes, &mut q);
    let mut kl = 0.0f64;
    sc.dl.clear();
    for (k, (qr, pr)) in q
        .chunks_exact(classes)
        .zip(sc.probs.chunks_exact(classes))
        .enumerate()
    {
        // r = log p − log q, probabilities floored to keep the logarithms finite.
        let r: Vec<f32> = pr
            .iter()
            .zip(qr)
            .map(|(&p, &q)| p.max(1e-30).ln() - q.max(1e-30).ln())
            .collect();
        let mean_r: f32 = pr.iter().zip(&r).map(|(p, r)| p * r).sum();
        kl += f64::from(mean_r);
        sc.dl
            .extend(qr.iter().zip(pr).map(|(q, p)| beta * scale * (q - p)));
        for ((d, &p), &rj) in sc.dl2[k * classes..(k + 1) * classes]
            .iter_mut()
            .zip(pr)
            .zip(&r)
        {
            *d += beta * scale * p * (rj - mean_r);
        }
    }
    model.backward(ws, &sc.adv, &sc.dl, Some(&mut sc.grads), false);
    model.backward(
        &mut sc.clean_ws,
        xs,
        &sc.dl2,
        Some(&mut sc.clean_grads),
        false,
    );
    for (g, h) in sc.grads.iter_mut().zip(&sc.clean_grads) {
        for (a, b) in g.iter_mut().zip(h) {
            *a += b;
        }
    }
    sc.loss = ce + f64::from(beta) * kl;
    Ok(())
}

/// DP-SGD (Abadi et al. 2016): per-example gradients clipped to `max_norm`, summed, Gaussian
/// noise of standard deviation `noise_multiplier · max_norm` added, divided by the expected batch
/// size; batches drawn by Poisson sampling (every example independently with probability
/// `expected_batch / n`), which is what the accountant assumes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DpConfig {
    pub max_norm: f32,
    pub noise_multiplier: f32,
    pub expected_batch: usize,
}

impl DpConfig {
    pub fn validate(&self) -> Result<(), String> {
        let finite = self.max_norm.is_finite() && self.noise_multiplier.is_finite();
        if !(finite && self.max_norm > 0.0 && self.noise_multiplier >= 0.0)
            || self.expected_batch == 0
        {
            return Err(format!("DP-SGD parameters out of range: {self:?}"));
        }
        Ok(())
    }
}

/// What a DP epoch saw, besides the loss: how often clipping was active.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct DpStats {
    pub steps: usize,
    pub examples: usize,
    pub loss: f64,
    pub accuracy: f64,
    /// Fraction of per-example gradients whose norm exceeded `max_norm`.
    pub clipped_fraction: f64,
}

impl Trainer {
    /// One DP-SGD step on a Poisson-sampled batch (possibly empty: then the update is noise only).
    pub fn dp_step(
        &mut self,
        x: &[f32],
        y: &[u8],
        dp: &DpConfig,
        noise_seed: u64,
    ) -> Result<(Stats, usize), ModelError> {
        let n = y.len();
        let len = self.model.input_len();
        if x.len() != n * len {
            return Err(ModelError::Input(format!(
                "{} values for {n} examples of {len}",
                x.len()
            )));
        }
        self.check_batch(n)?;
        let classes = self.model.classes();
        let model = &self.model;
        let shards = self.pool.shards(n, crate::nn::LEAST_PER_THREAD);
        let used = shards.len();
        let parts: Vec<_> = shards.into_iter().zip(self.scratch.iter_mut()).collect();
        self.pool.run_parts(
            parts,
            |ws: &mut Workspace, (r, sc): (std::ops::Range<usize>, &mut Scratch)| {
                let (xs, ys) = (&x[r.start * len..r.end * len], &y[r.clone()]);
                let logits = model.forward(ws, xs, ys.len())?;
                sc.correct = logits
                    .chunks_exact(classes)
                    .zip(ys)
                    .filter(|(row, y)| argmax(row) == usize::from(**y))
                    .count();
                sc.loss = softmax_xent(logits, ys, classes, 1.0, &mut sc.dl, None);
                model.backward_clipped(ws, xs, &sc.dl, dp.max_norm, &mut sc.grads, &mut sc.norms);
                sc.ok.clear();
                sc.ok
                    .extend(sc.norms.iter().map(|&norm| norm > dp.max_norm));
                Ok::<(), ModelError>(())
            },
        )?;
        let (loss, correct) = self.reduce(used)?;
        let mut rng = Rng::new(noise_seed);
        let std = f64::from(dp.noise_multiplier) * f64::from(dp.max_norm);
        let inv = 1.0 / dp.expected_batch as f32;
        for g in &mut self.scratch[0].grads {
            for v in g.iter_mut() {
                *v = (*v + (std * rng.normal()) as f32) * inv;
            }
        }
        let clipped: usize = self.scratch[..used]
            .iter()
            .map(|s| s.ok.iter().filter(|c| **c).count())
            .sum();
        self.optimizer_step();
        let k = n.max(1) as f64;
        Ok((
            Stats {
                examples: n,
                loss: loss / k,
                accuracy: correct as f64 / k,
            },
            clipped,
        ))
    }

    /// One DP epoch: `round(len(idx) / expected_batch)` steps, each on a Poisson sample of `idx`.
    #[allow(clippy::too_many_arguments)]
    pub fn dp_epoch(
        &mut self,
        x: &[f32],
        y: &[u8],
        idx: &[usize],
        dp: &DpConfig,
        lr: &mut dyn FnMut(usize) -> f32,
        seed: u64,
        on_batch: &mut dyn FnMut(usize, usize, Stats) -> bool,
    ) -> Result<DpStats, ModelError> {
        let len = self.model.input_len();
        let q = dp.expected_batch as f64 / idx.len().max(1) as f64;
        let steps = ((idx.len() as f64 / dp.expected_batch as f64).round() as usize).max(1);
        let mut rng = Rng::new(seed);
        let (mut bx, mut by) = (Vec::new(), Vec::new());
        let mut total = DpStats {
            steps,
            ..DpStats::default()
        };
        let mut clipped = 0usize;
        for s in 0..steps {
            bx.clear();
            by.clear();
            for &i in idx {
                if rng.uniform() < q {
                    bx.extend_from_slice(&x[i * len..(i + 1) * len]);
                    by.push(y[i]);
                }
            }
            // Each sampled example is replaced by one transformation of itself: its gradient is
            // still clipped alone, so the sensitivity, and the guarantee, are unchanged.
            self.augment
                .apply(&mut bx, self.model.arch().input, augment_seed(seed, s));
            self.set_lr_factor(lr(s));
            let (st, c) = self.dp_step(
                &bx,
                &by,
                dp,
                seed ^ (s as u64 + 1).wrapping_mul(0x2545_f491_4f6c_dd1d),
            )?;
            clipped += c;
            total.loss += st.loss * st.examples as f64;
            total.accuracy += st.accuracy * st.examples as f64;
            total.examples += st.examples;
            if !on_batch(s + 1, steps, st) {
                return Err(ModelError::Input("interrupted".into()));
            }
        }
        let k = total.examples.max(1) as f64;
        total.loss /= k;
        total.accuracy /= k;
        total.clipped_fraction = clipped as f64 / k;
        Ok(total)
    }
}

/// Accuracy of `model` on `n` examples, and under `attack` when given.
pub fn accuracy(
    model: &Model,
    pool: &mut Pool,
    x: &[f32],
    y: &[u8],
    attack: Option<&Pgd>,
    seed: u64,
) -> Result<f64, ModelError> {
    if y.is_empty() {
        return Ok(0.0);
    }
    let correct = match attack {
        None => model
            .predict(pool, x, y.len())?
            .iter()
            .zip(y)
            .filter(|(p, y)| p == y)
            .count(),
        Some(a) => attack::run(model, pool, a, x, y, seed)?
            .success
            .iter()
            .filter(|s| !**s)
            .count(),
    };
    Ok(correct as f64 / y.len() as f64)
}

/// Images of a dataset as `[0, 1]` floats, `n × rows·cols` (channels-last with one channel).
pub fn to_f32(images: &[u8]) -> Vec<f32> {
    images.iter().map(|&p| f32::from(p) / 255.0).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::nn::Arch;

    /// Two Gaussian blobs drawn as images: any working trainer separates them.
    fn blobs(n: usize, seed: u64) -> (Vec<f32>, Vec<u8>) {
        let mut rng = Rng::new(seed);
        let mut x = Vec::with_capacity(n * 784);
        let mut y = Vec::with_capacity(n);
        for i in 0..n {
            let c = (i % 2) as u8;
            for p in 0..784 {
                let bright = if c == 0 { p < 392 } else { p >= 392 };
                let v = if bright { 0.6 } else { 0.3 } + 0.15 * rng.normal() as f32;
                x.push(v.clamp(0.0, 1.0));
            }
            y.push(c);
        }
        (x, y)
    }

    #[test]
    fn training_learns_and_is_reproducible() {
        let arch = Arch::mlp(&[32]);
        let (x, y) = blobs(256, 1);
        let idx: Vec<usize> = (0..256).collect();
        let run = |threads: usize| {
            let mut t = Trainer::new(
                Model::init(&arch, 5).unwrap(),
                OptimSpec::adam(1e-3),
                threads,
            );
            for e in 0..3 {
                t.epoch(
                    &x,
                    &y,
                    &idx,
                    32,
                    &Objective::Clean,
                    &mut |_| 1.0,
                    e,
                    &mut |_, _, _| true,
                )
                .unwrap();
            }
            t.model
        };
        let a = run(2);
        let b = run(2);
        assert_eq!(
            a.params(),
            b.params(),
            "same seed and threads, same weights"
        );
        let (xt, yt) = blobs(200, 2);
        let acc = accuracy(&a, &mut Pool::new(2), &xt, &yt, None, 0).unwrap();
        assert!(acc > 0.95, "accuracy {acc}");
    }

    /// PGD training under L2 makes a model robust to L2 perturbations where clean training does
    /// not. Ten classes, each marked twice over a noisy background: by a block of 64 pixels raised
    /// by 0.5, which an L2 budget of 2.5 cannot move far enough (0.22 on two whole blocks, short
    /// of the 0.25 that makes two classes tie), and by one bright pixel of its own, a shortcut
    /// that the same budget swaps for another class's (a step of 1 on two pixels is 1.41 long).
    /// Clean training leans on the shortcut; L2 PGD training must not.
    #[test]
    fn l2_adversarial_training_makes_a_model_l2_robust() {
        let arch = Arch::mlp(&[32]);
        let model = Model::init(&arch, 1).unwrap();
        let len = model.input_len();
        let mut rng = Rng::new(9);
        let n = 400;
        let mut x = Vec::with_capacity(n * len);
        let mut y = Vec::with_capacity(n);
        for i in 0..n {
            let c = i % 10;
            y.push(c as u8);
            x.extend((0..len).map(|j| {
                let block = if j / 64 == c { 0.5 } else { 0.0 };
                let noise = 0.2 * rng.uniform() as f32;
                match j.checked_sub(700) {
                    Some(k) if k < 10 => f32::from(u8::from(k == c)),
                    _ => block + noise,
                }
            }));
        }
        let idx: Vec<usize> = (0..n).collect();
        let eps = 2.5;
        let eval = Pgd {
            norm: Norm::L2,
            keep_first_success: false,
            ..Pgd::linf(eps, eps / 4.0, 10, 1)
        };
        let pgd = Method::Pgd {
            eps,
            step: eps / 2.0,
            steps: 3,
            norm: Norm::L2,
        };
        let attack = pgd.attack(eps).unwrap();
        assert_eq!(
            (attack.norm, attack.eps, attack.step),
            (Norm::L2, 2.5, 1.25)
        );
        let robust_after = |method: Method| {
            let mut t = Trainer::new(model.clone(), OptimSpec::adam(1e-2), 2);
            for epoch in 0..8 {
                let warm = eps * ((epoch + 1) as f32 / 4.0).min(1.0);
                t.epoch(
                    &x,
                    &y,
                    &idx,
                    50,
                    &method.objective(warm),
                    &mut |_| 1.0,
                    epoch,
                    &mut |_, _, _| true,
                )
                .unwrap();
            }
            let mut pool = Pool::new(2);
            let clean = accuracy(&t.model, &mut pool, &x, &y, None, 0).unwrap();
            let robust = accuracy(&t.model, &mut pool, &x, &y, Some(&eval), 0).unwrap();
            (clean, robust)
        };
        let (clean_c, robust_c) = robust_after(Method::Clean);
        assert!(clean_c > 0.95, "clean training fits the task: {clean_c}");
        let (clean_a, robust_a) = robust_after(pgd);
        assert!(clean_a > 0.9 && robust_c < 0.6, "{clean_a} {robust_c}");
        assert!(
            robust_a > robust_c + 0.4 && robust_a > 0.9,
            "L2 robust accuracy {robust_a} after L2 PGD training vs {robust_c} after clean training"
        );
    }

    #[test]
    fn the_weight_average_follows_its_recurrence() {
        let arch = Arch::mlp(&[16]);
        let (x, y) = blobs(64, 3);
        let mut t = Trainer::new(Model::init(&arch, 1).unwrap(), OptimSpec::adam(1e-2), 1);
        assert!(t.ema_params().is_none());
        assert_eq!(t.release_params(), t.model.params());
        let decay = 0.5f32;
        t.enable_ema(decay);
        // The average by hand, from the iterates.
        let mut expected: Vec<Vec<f32>> = t.model.params().to_vec();
        for (step, chunk) in (0..64).collect::<Vec<usize>>().chunks(16).enumerate() {
            let bx: Vec<f32> = chunk
                .iter()
                .flat_map(|&i| x[i * 784..(i + 1) * 784].iter().copied())
                .collect();
            let by: Vec<u8> = chunk.iter().map(|&i| y[i]).collect();
            t.step(&bx, &by, &Objective::Clean, 7).unwrap();
            let st = step as f32;
            let d = decay.min((1.0 + st) / (10.0 + st));
            for (e, w) in expected.iter_mut().zip(t.model.params()) {
                for (a, &v) in e.iter_mut().zip(w) {
                    *a = d * *a + (1.0 - d) * v;
                }
            }
        }
        assert_eq!(t.ema_params().unwrap(), expected.as_slice());
        assert_eq!(t.release_params(), expected.as_slice());
        assert_ne!(
            t.release_params(),
            t.model.params(),
            "the average lags the iterate"
        );
    }

    /// A one-epoch Adam recipe with these options.
    fn recipe(method: Method, ema: Option<f32>, awp: Option<f32>) -> Recipe {
        Recipe {
            method,
            optim: OptimSpec::adam(1e-3),
            schedule: Schedule::Constant,
            epochs: 1,
            batch: 32,
            eps_warmup_epochs: 0,
            patience: 0,
            ema,
            awp,
            augment: Augment::default(),
            seed: 0,
        }
    }

    #[test]
    fn the_budget_warms_up_linearly_then_holds() {
        let mut r = recipe(
            Method::Pgd {
                eps: 0.1,
                step: 0.025,
                steps: 7,
                norm: Norm::Linf,
            },
            None,
            None,
        );
        assert_eq!(r.eps_at(0), 0.1);
        r.eps_warmup_epochs = 4;
        for (e, want) in [0.025, 0.05, 0.075, 0.1, 0.1, 0.1].into_iter().enumerate() {
            assert!(
                (r.eps_at(e) - want).abs() < 1e-7,
                "epoch {e}: {}",
                r.eps_at(e)
            );
        }
    }

    #[test]
    fn a_weight_average_outside_0_1_is_refused() {
        let recipe = |ema| recipe(Method::Clean, ema, None);
        assert!(recipe(None).validate().is_ok());
        assert!(recipe(Some(0.999)).validate().is_ok());
        for bad in [0.0, 1.0, -0.5, f32::NAN] {
            assert!(recipe(Some(bad)).validate().is_err(), "{bad}");
        }
    }

    /// The DP tests' task: an MLP on 512 blobs, all of them trainable, clipped at norm 1 with
    /// no noise, 64 examples expected per batch.
    fn noiseless_dp_task() -> (Arch, Vec<f32>, Vec<u8>, Vec<usize>, DpConfig) {
        let (x, y) = blobs(512, 1);
        let dp = DpConfig {
            max_norm: 1.0,
            noise_multiplier: 0.0,
            expected_batch: 64,
        };
        (Arch::mlp(&[32]), x, y, (0..512).collect(), dp)
    }

    /// DP epochs augment too: on a task that flips and small shifts leave unchanged (which half
    /// of the image is bright), noiseless DP-SGD on augmented batches still learns, takes a
    /// different path than on plain batches, and repeats exactly with the same seed.
    #[test]
    fn dp_epochs_augment_reproducibly() {
        let (arch, x, y, idx, dp) = noiseless_dp_task();
        let run = |augment: Augment| {
            let mut t = Trainer::new(Model::init(&arch, 5).unwrap(), OptimSpec::adam(1e-3), 2);
            t.set_augment(augment).unwrap();
            for e in 0..3 {
                t.dp_epoch(&x, &y, &idx, &dp, &mut |_| 1.0, e, &mut |_, _, _| true)
                    .unwrap();
            }
            t.model
        };
        let aug = Augment {
            flip: true,
            shift: 1,
        };
        let (a, b, plain) = (run(aug), run(aug), run(Augment::default()));
        assert_eq!(a.params(), b.params());
        assert_ne!(a.params(), plain.params());
        let (xt, yt) = blobs(200, 2);
        let acc = accuracy(&a, &mut Pool::new(2), &xt, &yt, None, 0).unwrap();
        assert!(
            acc > 0.95,
            "augmented, clipped, noiseless DP-SGD learns: {acc}"
        );
    }

    #[test]
    fn dp_training_learns_without_noise_and_noise_is_calibrated() {
        let (arch, x, y, idx, dp) = noiseless_dp_task();
        let mut t = Trainer::new(Model::init(&arch, 5).unwrap(), OptimSpec::adam(1e-3), 2);
        let mut last = DpStats::default();
        for e in 0..3 {
            last = t
                .dp_epoch(&x, &y, &idx, &dp, &mut |_| 1.0, e, &mut |_, _, _| true)
                .unwrap();
        }
        assert_eq!(last.steps, 8);
        let (xt, yt) = blobs(200, 2);
        let acc = accuracy(&t.model, &mut Pool::new(2), &xt, &yt, None, 0).unwrap();
        assert!(acc > 0.95, "clipped, noiseless DP-SGD learns: {acc}");
        // With zero gradients (an empty batch) the update is exactly the noise: its standard
        // deviation is noise_multiplier · max_norm / expected_batch.
        let dp = DpConfig {
            max_norm: 2.0,
            noise_multiplier: 1.5,
            expected_batch: 10,
        };
        let mut t = Trainer::new(
            Model::init(&arch, 5).unwrap(),
            OptimSpec::Sgd {
                lr: 1.0,
                momentum: 0.0,
                weight_decay: 0.0,
            },
            1,
        );
        let before = t.model.params().to_vec();
        t.dp_step(&[], &[], &dp, 3).unwrap();
        let deltas: Vec<f64> = before
            .iter()
            .flatten()
            .zip(t.model.params().iter().flatten())
            .map(|(a, b)| f64::from(a - b))
            .collect();
        let sd = (deltas.iter().map(|d| d * d).sum::<f64>() / deltas.len() as f64).sqrt();
        assert!((sd - 0.3).abs() < 0.01, "noise sd {sd}, expected 0.3");
        assert!(
            DpConfig {
                max_norm: 0.0,
                ..dp
            }
            .validate()
            .is_err()
        );
        assert!(
            DpConfig {
                noise_multiplier: f32::NAN,
                ..dp
            }
            .validate()
            .is_err()
        );
    }

    #[test]
    fn adversarial_training_steps_run_and_reject_bad_batches() {
        let arch = Arch::small_cnn();
        let (x, y) = blobs(64, 3);
        let mut t = Trainer::new(Model::init(&arch, 5).unwrap(), OptimSpec::adam(1e-3), 2);
        // Every method under L2 too: its attack is the L2 one.
        let l2 = [
            Method::Trades {
                eps: 1.0,
                step: 0.2,
                steps: 2,
                beta: 6.0,
                norm: Norm::L2,
            },
            Method::FgsmRs {
                eps: 1.0,
                alpha: 1.25,
                norm: Norm::L2,
            },
            Method::Pgd {
                eps: 1.0,
                step: 0.4,
                steps: 3,
                norm: Norm::L2,
            },
        ];
        for m in l2 {
            assert_eq!(m.norm(), Norm::L2);
            assert_eq!(m.attack(1.0).unwrap().norm, Norm::L2);
            let s = t.step(&x, &y, &m.objective(1.0), 1).unwrap();
            assert!(s.loss.is_finite() && s.examples == 64);
        }
        for m in [
            Method::Trades {
                eps: 0.1,
                step: 0.02,
                steps: 2,
                beta: 6.0,
                norm: Norm::Linf,
            },
            Method::FgsmRs {
                eps: 0.1,
                alpha: 0.125,
                norm: Norm::Linf,
            },
            Method::Pgd {
                eps: 0.1,
                step: 0.04,
                steps: 3,
                norm: Norm::Linf,
            },
        ] {
            let s = t.step(&x, &y, &m.objective(0.1), 1).unwrap();
            assert!(s.loss.is_finite() && s.examples == 64);
        }
        assert!(t.step(&x[..100], &y, &Objective::Clean, 0).is_err());
        assert!(
            t.max_batch() >= 4096,
            "small-cnn trains at any allowed batch"
        );
        assert!(t.step(&[], &[], &Objective::Clean, 0).is_err());
        assert!(
            Schedule::OneCycle.factor(40, 100) > 0.99 && Schedule::OneCycle.factor(100, 100) < 1e-6
        );
        assert!((Schedule::Cosine.factor(50, 100) - 0.5).abs() < 1e-6);
    }

    /// An AWP step's update (SGD, lr 1: the gradient itself) equals the clean gradient taken at
    /// `w + γ‖w‖ g/‖g‖` (weight tensors only, `g` the gradient at `w`), computed independently; the
    /// weights come back exactly when the rate is 0; and sizes outside (0, 0.1] or TRADES with AWP
    /// are refused. The attack makes no move (no start, no steps), so its points are the inputs.
    #[test]
    fn awp_takes_the_gradient_at_the_perturbed_weights() {
        let arch = Arch::small_cnn();
        let (x, y) = blobs(8, 11);
        let model = Model::init(&arch, 4).unwrap();
        let sgd = |lr| OptimSpec::Sgd {
            lr,
            momentum: 0.0,
            weight_decay: 0.0,
        };
        let still = Objective::Adversarial(Pgd {
            steps: 0,
            random_start: false,
            ..Method::Pgd {
                eps: 0.1,
                step: 0.02,
                steps: 1,
                norm: Norm::Linf,
            }
            .attack(0.1)
            .unwrap()
        });
        let gamma = 0.01f32;
        let diff = |a: &Model, b: &Model| -> Vec<Vec<f32>> {
            a.params()
                .iter()
                .zip(b.params())
                .map(|(p, q)| p.iter().zip(q).map(|(u, v)| u - v).collect())
                .collect()
        };
        // The gradient at w, and the perturbed weights built from it here.
        let mut plain = Trainer::new(model.clone(), sgd(1.0), 2);
        plain.step(&x, &y, &still, 3).unwrap();
        let g = diff(&model, &plain.model);
        let mut shifted = model.clone();
        let norm = |v: &[f32]| v.iter().map(|a| a * a).sum::<f32>().sqrt();
        let mut moved = 0;
        for ((w, g), info) in shifted
            .params_mut()
            .iter_mut()
            .zip(&g)
            .zip(model.param_infos())
        {
            if info.torch_shape.len() < 2 {
                continue;
            }
            let k = gamma * norm(w) / norm(g);
            for (a, b) in w.iter_mut().zip(g) {
                *a += k * b;
            }
            moved += 1;
        }
        assert_eq!(moved, 4, "two convolutions and two linear layers");
        let mut at_shift = Trainer::new(shifted.clone(), sgd(1.0), 2);
        at_shift.step(&x, &y, &Objective::Clean, 3).unwrap();
        let want = diff(&shifted, &at_shift.model);
        let mut awp = Trainer::new(model.clone(), sgd(1.0), 2);
        awp.enable_awp(gamma);
        awp.step(&x, &y, &still, 3).unwrap();
        let got = diff(&model, &awp.model);
        let mut differs = false;
        for (p, (a, b)) in got.iter().zip(&want).enumerate() {
            for (u, v) in a.iter().zip(b) {
                assert!(
                    (u - v).abs() < 1e-5 + 1e-3 * v.abs(),
                    "param {p}: {u} vs {v}"
                );
            }
            differs |= a.iter().zip(&g[p]).any(|(u, v)| (u - v).abs() > 1e-4);
        }
        assert!(differs, "the perturbation changed the gradient");
        let mut frozen = Trainer::new(model.clone(), sgd(0.0), 2);
        frozen.enable_awp(gamma);
        frozen.step(&x, &y, &still, 3).unwrap();
        assert_eq!(frozen.model.params(), model.params());
        let recipe = |awp, method| recipe(method, None, awp);
        let pgd = Method::Pgd {
            eps: 0.1,
            step: 0.02,
            steps: 3,
            norm: Norm::Linf,
        };
        assert!(recipe(Some(0.005), pgd).validate().is_ok());
        for bad in [0.0, 0.2, -1.0, f32::NAN] {
            assert!(recipe(Some(bad), pgd).validate().is_err(), "{bad}");
        }
        let trades = Method::Trades {
            eps: 0.1,
            step: 0.02,
            steps: 3,
            beta: 6.0,
            norm: Norm::Linf,
        };
        assert!(recipe(Some(0.005), trades).validate().is_err());
        assert!(recipe(Some(0.005), Method::Clean).validate().is_err());
    }

    /// The TRADES step's weight gradient (read off one SGD step with lr 1) against central
    /// differences of CE(f(x), y) + β·KL(f(x)‖f(x′)), with x′ the start point (no attack steps).
    #[test]
    #[allow(clippy::needless_range_loop)]
    fn trades_gradient_matches_finite_differences() {
        let arch = Arch::mlp(&[12]);
        let (x, y) = blobs(6, 7);
        let (n, beta, seed) = (6usize, 3.0f32, 5u64);
        let model = Model::init(&arch, 2).unwrap();
        let attack = Pgd {
            steps: 0,
            ..Method::Trades {
                eps: 0.1,
                step: 0.02,
                steps: 1,
                beta,
                norm: Norm::Linf,
            }
            .attack(0.1)
            .unwrap()
        };
        let mut t = Trainer::new(
            model.clone(),
            OptimSpec::Sgd {
                lr: 1.0,
                momentum: 0.0,
                weight_decay: 0.0,
            },
            1,
        );
        t.step(&x, &y, &Objective::Trades { attack, beta }, seed)
            .unwrap();
        let mut xa = Vec::new();
        for (i, x0) in x.chunks_exact(784).enumerate() {
            let mut rng = Rng::stream(seed ^ 0x7ade5, i as u64, 0);
            xa.extend(
                x0.iter()
                    .map(|&v| (v + 0.001 * rng.normal() as f32).clamp(0.0, 1.0)),
            );
        }
        let loss = |m: &Model| -> f64 {
            let mut ws = Workspace::default();
            let lc = m.forward(&mut ws, &x, n).unwrap().to_vec();
            let la = m.forward(&mut ws, &xa, n).unwrap().to_vec();
            let mut d = Vec::new();
            let ce = softmax_xent(&lc, &y, 10, 1.0, &mut d, None);
            let (mut p, mut q) = (Vec::new(), Vec::new());
            softmax_rows(&lc, 10, &mut p);
            softmax_rows(&la, 10, &mut q);
            let kl: f64 = p
                .iter()
                .zip(&q)
                .map(|(&p, &q)| f64::from(p) * (f64::from(p).ln() - f64::from(q).ln()))
                .sum();
            (ce + f64::from(beta) * kl) / n as f64
        };
        let mut probe = model.clone();
        for pi in 0..probe.params().len() {
            for j in (0..probe.params()[pi].len()).step_by(997) {
                let orig = probe.params()[pi][j];
                let h = 1e-2f32;
                probe.params_mut()[pi][j] = orig + h;
                let lp = loss(&probe);
                probe.params_mut()[pi][j] = orig - h;
                let lm = loss(&probe);
                probe.params_mut()[pi][j] = orig;
                let num = (lp - lm) / (2.0 * f64::from(h));
                let ana = f64::from(model.params()[pi][j] - t.model.params()[pi][j]);
                assert!(
                    (num - ana).abs() < 1e-3 + 2e-2 * num.abs(),
                    "param {pi}[{j}]: {num} vs {ana}"
                );
            }
        }
    }
}
