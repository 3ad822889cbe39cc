//! Training: clean, FGSM with a random start (Wong et al. 2020) and PGD adversarial training
//! (Madry et al. 2018), with a learning-rate schedule, an epsilon warm-up and early stopping on
//! robust validation accuracy (the guard against catastrophic overfitting).
//!
//! A step shards its batch over the pool's threads; each thread crafts its shard's adversarial
//! examples against the current weights, then computes its shard's weight gradients; the gradients
//! are summed in shard order and applied once.

use serde::{Deserialize, Serialize};

use crate::attack::{self, Goal, Norm, Pgd};
use crate::nn::{Model, ModelError, Pool, Workspace, argmax, softmax_xent};
use crate::optim::{OptimSpec, Optimizer};
use crate::rng::Rng;

/// What a training step fits the model to.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Method {
    /// Clean examples only.
    Clean,
    /// One signed-gradient step of size `alpha` from a uniform random start in the L∞ ball.
    FgsmRs { eps: f32, alpha: f32 },
    /// PGD with a random start: `steps` signed steps of size `step` in the L∞ ball.
    Pgd { eps: f32, step: f32, steps: usize },
}

impl Method {
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
            Method::FgsmRs { eps, alpha } => Some(Pgd {
                eps: eps_now,
                step: alpha * eps_now / eps,
                ..base
            }),
            Method::Pgd { eps, step, steps } => Some(Pgd {
                eps: eps_now,
                step: step * eps_now / eps,
                steps,
                ..base
            }),
        }
    }

    pub fn eps(&self) -> f32 {
        match *self {
            Method::Clean => 0.0,
            Method::FgsmRs { eps, .. } | Method::Pgd { eps, .. } => eps,
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
    pub seed: u64,
}

impl Recipe {
    pub fn validate(&self) -> Result<(), String> {
        self.optim.validate()?;
        if self.epochs == 0 || self.epochs > 10_000 || self.batch == 0 || self.batch > 65_536 {
            return Err("epochs 1..=10000 and batch 1..=65536".into());
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
}

/// What one step or one epoch saw: mean loss and accuracy on the examples it trained on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Stats {
    pub examples: usize,
    pub loss: f64,
    pub accuracy: f64,
}

impl Trainer {
    pub fn new(model: Model, optim: OptimSpec, threads: usize) -> Trainer {
        let opt = Optimizer::new(optim, model.params());
        let pool = Pool::new(threads);
        let scratch = (0..pool.threads())
            .map(|_| Scratch {
                grads: model.zero_grads(),
                ..Scratch::default()
            })
            .collect();
        Trainer {
            model,
            opt,
            base_lr: optim.lr(),
            pool,
            scratch,
        }
    }

    pub fn pool(&mut self) -> &mut Pool {
        &mut self.pool
    }

    /// Sets the learning rate to `factor` times the base rate.
    pub fn set_lr_factor(&mut self, factor: f32) {
        self.opt.set_lr(self.base_lr * factor);
    }

    /// One optimisation step on a batch (`x` is `n × input_len`, labels in `y`), on adversarial
    /// examples crafted by `attack` when given (random starts drawn from `seed`).
    pub fn step(
        &mut self,
        x: &[f32],
        y: &[u8],
        attack: Option<&Pgd>,
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
        let classes = self.model.classes();
        let model = &self.model;
        let scale = 1.0 / n as f32;
        let shards = self.pool.shards(n);
        let parts: Vec<_> = shards.into_iter().zip(self.scratch.iter_mut()).collect();
        self.pool.run_parts(
            parts,
            |ws: &mut Workspace, (r, sc): (std::ops::Range<usize>, &mut Scratch)| {
                let (xs, ys) = (&x[r.start * len..r.end * len], &y[r.clone()]);
                let input: &[f32] = match attack {
                    Some(a) => {
                        sc.adv.resize(xs.len(), 0.0);
                        sc.ok.resize(ys.len(), false);
                        attack::attack_shard(
                            model,
                            ws,
                            a,
                            xs,
                            ys,
                            r.start,
                            seed,
                            &mut sc.adv,
                            &mut sc.ok,
                            true,
                        );
                        &sc.adv
                    }
                    None => xs,
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
        )?;
        let used = self.pool.shards(n).len();
        let (first, rest) = self.scratch.split_at_mut(1);
        for sc in &rest[..used - 1] {
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
        self.opt
            .step(self.model.params_mut(), &self.scratch[0].grads);
        Ok(Stats {
            examples: n,
            loss: loss / n as f64,
            accuracy: correct as f64 / n as f64,
        })
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
        attack: Option<&Pgd>,
        lr: &mut dyn FnMut(usize) -> f32,
        seed: u64,
        on_batch: &mut dyn FnMut(usize, usize, Stats) -> bool,
    ) -> Result<Stats, ModelError> {
        let len = self.model.input_len();
        let mut order = idx.to_vec();
        let mut rng = Rng::new(seed);
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i as u64 + 1) as usize);
        }
        let (mut bx, mut by) = (Vec::with_capacity(batch * len), Vec::with_capacity(batch));
        let mut total = Stats::default();
        let batches = order.len().div_ceil(batch);
        for (b, chunk) in order.chunks(batch).enumerate() {
            bx.clear();
            by.clear();
            for &i in chunk {
                bx.extend_from_slice(&x[i * len..(i + 1) * len]);
                by.push(y[i]);
            }
            self.set_lr_factor(lr(b));
            let s = self.step(
                &bx,
                &by,
                attack,
                seed ^ (b as u64).wrapping_mul(0x9e37_79b9),
            )?;
            total.loss += s.loss * s.examples as f64;
            total.accuracy += s.accuracy * s.examples as f64;
            total.examples += s.examples;
            if !on_batch(b + 1, batches, s) {
                return Err(ModelError::Input("interrupted".into()));
            }
        }
        let k = total.examples.max(1) as f64;
        Ok(Stats {
            examples: total.examples,
            loss: total.loss / k,
            accuracy: total.accuracy / k,
        })
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
                t.epoch(&x, &y, &idx, 32, None, &mut |_| 1.0, e, &mut |_, _, _| true)
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

    #[test]
    fn adversarial_training_steps_run_and_reject_bad_batches() {
        let arch = Arch::small_cnn();
        let (x, y) = blobs(64, 3);
        let mut t = Trainer::new(Model::init(&arch, 5).unwrap(), OptimSpec::adam(1e-3), 2);
        for m in [
            Method::FgsmRs {
                eps: 0.1,
                alpha: 0.125,
            },
            Method::Pgd {
                eps: 0.1,
                step: 0.04,
                steps: 3,
            },
        ] {
            let a = m.attack(0.1).unwrap();
            let s = t.step(&x, &y, Some(&a), 1).unwrap();
            assert!(s.loss.is_finite() && s.examples == 64);
        }
        assert!(t.step(&x[..100], &y, None, 0).is_err());
        assert!(t.step(&[], &[], None, 0).is_err());
        assert!(
            Schedule::OneCycle.factor(40, 100) > 0.99 && Schedule::OneCycle.factor(100, 100) < 1e-6
        );
        assert!((Schedule::Cosine.factor(50, 100) - 0.5).abs() < 1e-6);
    }
}
