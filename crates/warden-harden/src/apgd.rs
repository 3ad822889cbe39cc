//! Auto-PGD (Croce and Hein, ICML 2020, "Reliable evaluation of adversarial robustness with an
//! ensemble of diverse parameter-free attacks"): the step-size-free PGD of AutoAttack, with the
//! cross-entropy loss (APGD-CE) or the difference-of-logits-ratio loss (APGD-DLR), under L∞ or L2
//! (AutoAttack's L2 version: a start on the sphere of radius ε, steps along the normalised
//! gradient, projection onto the L2 ball then the bounds), and
//! AutoAttack's targeted variant APGD-T: the targeted DLR loss towards each of the `targets` most
//! likely wrong classes in turn (the classes ranked by the clean logits), one run per target.
//!
//! Per example: the step starts at 2·eps; a momentum of 0.75 mixes the last two iterates; at
//! checkpoints (after 22% of the iterations, then at windows shrinking by 3% down to 6%) the step
//! is halved and the iterate reset to the best point found when at most 75% of the steps since
//! the last checkpoint increased the loss, or when the step was not reduced at the last checkpoint
//! and the best loss did not improve since. The first iterate that misclassifies is kept.
//! Examples leave the batch as soon as they are broken.

use serde::{Deserialize, Serialize};

use crate::attack::{AttackOutput, Norm, check_inputs, check_iterative, sign};
use crate::net::{Compute, Network};
use crate::nn::{Model, ModelError, Pool, argmax, softmax_xent};
use crate::rng::Rng;

/// The loss APGD ascends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApgdLoss {
    /// Cross-entropy of the true class.
    Ce,
    /// Difference of logits ratio: `−(z_y − max_{i≠y} z_i) / (z_π1 − z_π3)`, invariant to shifts
    /// and scaling of the logits (needs at least 3 classes).
    Dlr,
    /// Targeted DLR towards class `t`: `−(z_y − z_t) / (z_π1 − (z_π3 + z_π4)/2)` (needs at
    /// least 4 classes); success is still any misclassification.
    #[serde(rename = "dlr-targeted")]
    DlrTargeted,
}

/// APGD under L∞ or L2: untargeted, or APGD-T with `loss` [`ApgdLoss::DlrTargeted`] and `targets`
/// target classes (each run `restarts` times).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Apgd {
    pub loss: ApgdLoss,
    /// The threat model (L∞ when absent).
    #[serde(default)]
    pub norm: Norm,
    pub eps: f32,
    pub iters: usize,
    pub restarts: usize,
    /// APGD-T: how many of the most likely wrong classes to target, one after the other (0 for
    /// the untargeted losses; AutoAttack's standard version uses 9).
    #[serde(default)]
    pub targets: usize,
    pub lo: f32,
    pub hi: f32,
}

impl Apgd {
    /// AutoAttack's settings: 100 iterations, on `[0, 1]` inputs.
    pub fn new(loss: ApgdLoss, eps: f32, restarts: usize) -> Apgd {
        Apgd {
            loss,
            norm: Norm::Linf,
            eps,
            iters: 100,
            restarts,
            targets: 0,
            lo: 0.0,
            hi: 1.0,
        }
    }

    /// APGD-T as AutoAttack runs it: 100 iterations and one run per target class.
    pub fn targeted(eps: f32, targets: usize) -> Apgd {
        Apgd {
            targets,
            ..Apgd::new(ApgdLoss::DlrTargeted, eps, 1)
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        check_iterative(
            "APGD",
            self.eps,
            self.lo,
            self.hi,
            self.iters,
            self.restarts,
        )?;
        match (self.loss, self.targets) {
            (ApgdLoss::DlrTargeted, 1..=255) | (ApgdLoss::Ce | ApgdLoss::Dlr, 0) => Ok(()),
            (ApgdLoss::DlrTargeted, _) => Err("APGD-T: 1 to 255 target classes".into()),
            _ => Err("APGD: target classes go with the targeted DLR loss only".into()),
        }
    }
}

/// Runs APGD on `n` examples, sharded over the pool's threads; `success` marks examples the model
/// misclassifies on their returned point (including those already wrong).
pub fn run(
    model: &Model,
    pool: &mut Pool,
    a: &Apgd,
    x: &[f32],
    y: &[u8],
    seed: u64,
) -> Result<AttackOutput, ModelError> {
    run_on(&mut Compute::Cpu { model, pool }, a, x, y, seed)
}

/// [`run`] on any engine.
pub fn run_on(
    c: &mut Compute<'_>,
    a: &Apgd,
    x: &[f32],
    y: &[u8],
    seed: u64,
) -> Result<AttackOutput, ModelError> {
    a.validate().map_err(ModelError::Input)?;
    let classes = c.classes();
    if a.loss == ApgdLoss::Dlr && classes < 3 {
        return Err(ModelError::Input(
            "APGD-DLR needs at least 3 classes".into(),
        ));
    }
    if a.loss == ApgdLoss::DlrTargeted && (classes < 4 || a.targets >= classes) {
        return Err(ModelError::Input(format!(
            "APGD-T needs at least 4 classes and fewer targets than classes ({} targets, {classes} classes)",
            a.targets,
        )));
    }
    check_inputs(c, x, y, a.lo, a.hi)?;
    c.run_sharded(x, y, |net, first, xs, ys, adv, ok| {
        shard(net, a, xs, ys, first, seed, adv, ok)
    })
}

/// One example's attack state.
struct State {
    /// Shard-local index.
    id: usize,
    xa: Vec<f32>,
    prev: Vec<f32>,
    best: Vec<f32>,
    grad: Vec<f32>,
    grad_best: Vec<f32>,
    step: f32,
    loss_prev: f32,
    loss_best: f32,
    loss_best_at_check: f32,
    reduced_at_check: bool,
    increases: usize,
}

/// Loss per example and its gradient with respect to the logits (to be ascended); `target` holds
/// each example's target class for [`ApgdLoss::DlrTargeted`] (unused otherwise).
fn loss_and_grad(
    loss: ApgdLoss,
    logits: &[f32],
    y: &[u8],
    target: &[u8],
    classes: usize,
    dl: &mut Vec<f32>,
    losses: &mut [f32],
) {
    match loss {
        ApgdLoss::Ce => {
            softmax_xent(logits, y, classes, 1.0, dl, Some(losses));
        }
        ApgdLoss::Dlr | ApgdLoss::DlrTargeted => {
            dl.clear();
            dl.resize(logits.len(), 0.0);
            for (i, (z, d)) in logits
                .chunks_exact(classes)
                .zip(dl.chunks_exact_mut(classes))
                .enumerate()
            {
                let yi = usize::from(y[i]);
                let order = ranked(z);
                // The other class of the numerator, and the denominator as Σ c·z_π over ranks:
                // untargeted, the largest logit other than the true class and z_π1 − z_π3;
                // targeted, the target and z_π1 − (z_π3 + z_π4)/2.
                let (other, terms): (usize, &[(usize, f32)]) = if loss == ApgdLoss::Dlr {
                    let m = if order[0] == yi { order[1] } else { order[0] };
                    (m, &[(order[0], 1.0), (order[2], -1.0)])
                } else {
                    (
                        usize::from(target[i]),
                        &[(order[0], 1.0), (order[2], -0.5), (order[3], -0.5)],
                    )
                };
                let num = z[yi] - z[other];
                let den = terms.iter().map(|&(p, c)| c * z[p]).sum::<f32>() + 1e-12;
                losses[i] = -num / den;
                // ∂/∂z_j of −N/D = −(∂N/∂z_j)/D + N/D² · ∂D/∂z_j.
                d[yi] += -1.0 / den;
                d[other] += 1.0 / den;
                for &(p, c) in terms {
                    d[p] += c * num / (den * den);
                }
            }
        }
    }
}

/// The classes by decreasing logit (ties by index).
fn ranked(z: &[f32]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..z.len()).collect();
    order.sort_by(|&p, &q| z[q].total_cmp(&z[p]).then(p.cmp(&q)));
    order
}

/// The targets of the targeted attacks (APGD-T, FAB-T): the classes other than `y`, by decreasing
/// clean logit. Filtering `y` out, rather than skipping the first rank, keeps the true class out
/// of the targets even where the ranking and [`argmax`] disagree (on `-0.0` against `0.0`, or NaN).
pub(crate) fn wrong_classes(z: &[f32], y: u8) -> Vec<usize> {
    ranked(z)
        .into_iter()
        .filter(|&c| c != usize::from(y))
        .collect()
}

/// The clean forward pass an attack opens with: sets `ok` for the examples already misclassified
/// (they need no attack) and, with `rank`, lists each example's [`wrong_classes`], the targets of
/// APGD-T and FAB-T in order. `None` if the forward pass fails.
pub(crate) fn clean_pass(
    net: &mut dyn Network,
    x: &[f32],
    y: &[u8],
    ok: &mut [bool],
    rank: bool,
) -> Result<Vec<Vec<usize>>, ModelError> {
    let classes = net.classes();
    let logits = net.logits(x, y.len())?;
    let mut ranks = Vec::new();
    for (i, row) in logits.chunks_exact(classes).enumerate() {
        ok[i] = argmax(row) != usize::from(y[i]);
        if rank {
            ranks.push(wrong_classes(row, y[i]));
        }
    }
    Ok(ranks)
}

/// Projects `v` onto the `norm` ball of radius `eps` around `x`, then into the bounds.
fn project(norm: Norm, x: &[f32], v: &mut [f32], eps: f32, lo: f32, hi: f32) {
    match norm {
        Norm::Linf => {
            for (v, &x0) in v.iter_mut().zip(x) {
                *v = v.clamp(x0 - eps, x0 + eps).clamp(lo, hi);
            }
        }
        Norm::L2 => {
            let d = l2(v.iter().zip(x).map(|(&a, &b)| a - b));
            let shrink = if d > f64::from(eps) {
                (f64::from(eps) / d) as f32
            } else {
                1.0
            };
            // Clamping moves every coordinate towards x (inside the bounds): still in the ball.
            for (v, &x0) in v.iter_mut().zip(x) {
                *v = (x0 + (*v - x0) * shrink).clamp(lo, hi);
            }
        }
    }
}

fn l2(v: impl Iterator<Item = f32>) -> f64 {
    v.map(|a| f64::from(a) * f64::from(a)).sum::<f64>().sqrt()
}

#[allow(clippy::too_many_arguments)]
fn shard(
    net: &mut dyn Network,
    a: &Apgd,
    x: &[f32],
    y: &[u8],
    first: usize,
    seed: u64,
    adv: &mut [f32],
    ok: &mut [bool],
) -> Result<(), ModelError> {
    let len = net.input_len();
    let classes = net.classes();
    let n = y.len();
    // Examples already misclassified need no attack. APGD-T's k-th target of an example is the
    // wrong class with the k-th largest clean logit.
    let ranks = clean_pass(net, x, y, ok, a.loss == ApgdLoss::DlrTargeted)?;
    // One round per restart, per target class for APGD-T.
    let rounds: Vec<Option<usize>> = if a.loss == ApgdLoss::DlrTargeted {
        (0..a.targets)
            .flat_map(|k| std::iter::repeat_n(Some(k), a.restarts))
            .collect()
    } else {
        vec![None; a.restarts]
    };
    let first_check = ((0.22 * a.iters as f64) as usize).max(1);
    let min_window = ((0.06 * a.iters as f64) as usize).max(1);
    let shrink = ((0.03 * a.iters as f64) as usize).max(1);
    let (mut bx, mut by, mut bt, mut dl, mut losses) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (restart, target) in rounds.into_iter().enumerate() {
        let mut states: Vec<State> = (0..n)
            .filter(|&i| !ok[i])
            .map(|i| {
                let x0 = &x[i * len..(i + 1) * len];
                let mut rng = Rng::stream(seed ^ 0xa9d0, (first + i) as u64, restart as u64);
                let mut xa: Vec<f32> = match a.norm {
                    Norm::Linf => x0
                        .iter()
                        .map(|&v| v + a.eps * (rng.uniform() as f32 * 2.0 - 1.0))
                        .collect(),
                    Norm::L2 => {
                        let t: Vec<f32> = (0..len).map(|_| rng.normal() as f32).collect();
                        let k = (f64::from(a.eps) / l2(t.iter().copied()).max(1e-12)) as f32;
                        x0.iter().zip(&t).map(|(&v, &d)| v + k * d).collect()
                    }
                };
                project(a.norm, x0, &mut xa, a.eps, a.lo, a.hi);
                State {
                    id: i,
                    prev: xa.clone(),
                    best: xa.clone(),
                    xa,
                    grad: vec![0.0; len],
                    grad_best: vec![0.0; len],
                    step: 2.0 * a.eps,
                    loss_prev: f32::NEG_INFINITY,
                    loss_best: f32::NEG_INFINITY,
                    loss_best_at_check: f32::NEG_INFINITY,
                    reduced_at_check: true,
                    increases: 0,
                }
            })
            .collect();
        let mut window = first_check;
        let mut counter = 0;
        // Iteration 0 evaluates the start; iterations 1..=iters take a step and evaluate it.
        for it in 0..=a.iters {
            if states.is_empty() {
                break;
            }
            if it > 0 {
                let momentum = if it == 1 { 1.0 } else { 0.75 };
                for s in &mut states {
                    let x0 = &x[s.id * len..(s.id + 1) * len];
                    let mut z: Vec<f32> = match a.norm {
                        Norm::Linf => {
                            s.xa.iter()
                                .zip(&s.grad)
                                .map(|(&v, &g)| v + s.step * sign(g))
                                .collect()
                        }
                        Norm::L2 => {
                            let k = s.step / (l2(s.grad.iter().copied()) as f32 + 1e-12);
                            s.xa.iter().zip(&s.grad).map(|(&v, &g)| v + k * g).collect()
                        }
                    };
                    project(a.norm, x0, &mut z, a.eps, a.lo, a.hi);
                    for ((zv, &v), &p) in z.iter_mut().zip(&s.xa).zip(&s.prev) {
                        *zv = v + momentum * (*zv - v) + (1.0 - momentum) * (v - p);
                    }
                    project(a.norm, x0, &mut z, a.eps, a.lo, a.hi);
                    s.prev = std::mem::replace(&mut s.xa, z);
                }
            }
            bx.clear();
            by.clear();
            bt.clear();
            for s in &states {
                bx.extend_from_slice(&s.xa);
                by.push(y[s.id]);
                if let Some(k) = target {
                    bt.push(ranks.get(s.id).map_or(0, |r| r[k]) as u8);
                }
            }
            let m = states.len();
            let logits = net.forward(&bx, m)?;
            let hits: Vec<bool> = logits
                .chunks_exact(classes)
                .zip(&by)
                .map(|(row, &yy)| argmax(row) != usize::from(yy))
                .collect();
            losses.resize(m, 0.0);
            loss_and_grad(a.loss, logits, &by, &bt, classes, &mut dl, &mut losses);
            let g = net.input_grad(&bx, &dl)?;
            for (k, s) in states.iter_mut().enumerate() {
                if hits[k] {
                    adv[s.id * len..(s.id + 1) * len].copy_from_slice(&s.xa);
                    ok[s.id] = true;
                    continue;
                }
                s.grad.copy_from_slice(&g[k * len..(k + 1) * len]);
                let l = losses[k];
                if it > 0 && l > s.loss_prev {
                    s.increases += 1;
                }
                s.loss_prev = l;
                if l > s.loss_best {
                    s.loss_best = l;
                    s.best.copy_from_slice(&s.xa);
                    s.grad_best.copy_from_slice(&s.grad);
                }
            }
            states.retain(|s| !ok[s.id]);
            if it == 0 {
                for s in &mut states {
                    s.loss_best_at_check = s.loss_best;
                }
                continue;
            }
            counter += 1;
            if counter == window {
                for s in &mut states {
                    let oscillating = (s.increases as f64) <= 0.75 * window as f64;
                    let stalled = !s.reduced_at_check && s.loss_best_at_check >= s.loss_best;
                    let reduce = oscillating || stalled;
                    s.reduced_at_check = reduce;
                    s.loss_best_at_check = s.loss_best;
                    s.increases = 0;
                    if reduce {
                        s.step /= 2.0;
                        s.xa.copy_from_slice(&s.best);
                        s.grad.copy_from_slice(&s.grad_best);
                    }
                }
                counter = 0;
                window = window.saturating_sub(shrink).max(min_window);
            }
        }
        // Unbroken examples keep the highest-loss point of the last restart.
        for s in &states {
            adv[s.id * len..(s.id + 1) * len].copy_from_slice(&s.best);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::attack::{self, Pgd, distances};
    use crate::nn::Arch;

    /// The DLR gradients (untargeted and targeted) against central differences of their losses,
    /// and the targeted loss's value computed by hand.
    #[test]
    fn dlr_gradient_matches_finite_differences() {
        let z = [0.3f32, 2.0, -1.0, 1.5, 0.9];
        for (loss, y, t) in [
            (ApgdLoss::Dlr, 1u8, 0u8),
            (ApgdLoss::Dlr, 3, 0),
            (ApgdLoss::Dlr, 0, 0),
            (ApgdLoss::DlrTargeted, 1, 3),
            (ApgdLoss::DlrTargeted, 1, 2),
            (ApgdLoss::DlrTargeted, 4, 0),
        ] {
            let mut dl = Vec::new();
            let mut l = [0.0f32];
            loss_and_grad(loss, &z, &[y], &[t], 5, &mut dl, &mut l);
            if loss == ApgdLoss::DlrTargeted {
                // Ranked: 2.0 (1), 1.5 (3), 0.9 (4), 0.3 (0), -1.0 (2).
                let want = -(z[usize::from(y)] - z[usize::from(t)]) / (2.0 - 0.5 * (0.9 + 0.3));
                assert!((l[0] - want).abs() < 1e-6, "{} vs {want}", l[0]);
            }
            for j in 0..5 {
                let h = 1e-3f32;
                let (mut zp, mut zm) = (z, z);
                zp[j] += h;
                zm[j] -= h;
                let (mut lp, mut lm) = ([0.0f32], [0.0f32]);
                let mut tmp = Vec::new();
                loss_and_grad(loss, &zp, &[y], &[t], 5, &mut tmp, &mut lp);
                loss_and_grad(loss, &zm, &[y], &[t], 5, &mut tmp, &mut lm);
                let num = (lp[0] - lm[0]) / (2.0 * h);
                assert!(
                    (num - dl[j]).abs() < 2e-3,
                    "{loss:?} y {y} t {t} j {j}: {num} vs {}",
                    dl[j]
                );
            }
        }
    }

    /// APGD-T attacks the classes ranked second, third, … by the clean logits, in that order. On a
    /// linear model whose clean logits rank 0 (true), 1, 2, class 1 is out of reach inside the ball
    /// and class 2 is not: one target (class 1) breaks nothing, two targets (1 then 2) break it.
    #[test]
    fn targets_follow_the_clean_ranking() {
        let mut m = Model::zeros(&Arch::mlp(&[])).unwrap();
        {
            let p = m.params_mut();
            p[0][784] = 0.1; // class 1 reads pixel 0, weakly
            p[0][2 * 784 + 1] = 1.0; // class 2 reads pixel 1
            p[1][..3].copy_from_slice(&[1.0, 0.5, 0.3]);
        }
        let (x, y) = (vec![0.0f32; 784], vec![0u8]);
        let run_with = |targets| {
            let a = Apgd {
                iters: 20,
                ..Apgd::targeted(0.72, targets)
            };
            run(&m, &mut Pool::new(1), &a, &x, &y, 3).unwrap()
        };
        assert!(!run_with(1).success[0], "class 1 cannot be reached");
        let two = run_with(2);
        assert!(two.success[0], "class 2 can");
        let pred = m.predict(&mut Pool::new(1), &two.adversarial, 1).unwrap();
        assert_eq!(pred[0], 2);
    }

    /// APGD-T's settings are checked: targets only with the targeted loss, fewer than the classes.
    #[test]
    fn targeted_settings_are_validated() {
        let m = Model::init(&Arch::mlp(&[8]), 1).unwrap();
        let (x, y) = (vec![0.5f32; 784], vec![3u8]);
        let pool = &mut Pool::new(1);
        assert!(Apgd::targeted(0.1, 9).validate().is_ok());
        assert!(run(&m, pool, &Apgd::targeted(0.1, 9), &x, &y, 0).is_ok());
        for bad in [
            Apgd::targeted(0.1, 0),
            Apgd {
                targets: 2,
                ..Apgd::new(ApgdLoss::Ce, 0.1, 1)
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
            assert!(run(&m, pool, &bad, &x, &y, 0).is_err(), "{bad:?}");
        }
        assert!(run(&m, pool, &Apgd::targeted(0.1, 10), &x, &y, 0).is_err());
    }

    #[test]
    fn stays_in_bounds_and_breaks_what_fgsm_breaks() {
        let m = Model::init(&Arch::small_cnn(), 3).unwrap();
        let mut rng = Rng::new(4);
        let n = 48;
        let x: Vec<f32> = (0..n * 784).map(|_| rng.uniform() as f32).collect();
        let y: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
        let clean = m.predict(&mut Pool::new(1), &x, n).unwrap();
        let clean_wrong = (0..n).filter(|&i| clean[i] != y[i]).count();
        let l2 = |a: Apgd| Apgd {
            norm: Norm::L2,
            eps: 0.5,
            ..a
        };
        for a in [
            Apgd::new(ApgdLoss::Ce, 0.03, 1),
            Apgd::new(ApgdLoss::Dlr, 0.03, 1),
            Apgd::targeted(0.03, 3),
            l2(Apgd::new(ApgdLoss::Ce, 0.03, 1)),
            l2(Apgd::new(ApgdLoss::Dlr, 0.03, 1)),
            l2(Apgd::targeted(0.03, 3)),
        ] {
            let a = Apgd { iters: 20, ..a };
            let loss = a.loss;
            let out = run(&m, &mut Pool::new(2), &a, &x, &y, 1).unwrap();
            for d in distances(a.norm, &x, &out.adversarial, 784) {
                assert!(d <= a.eps * (1.0 + 1e-5), "{:?}: {d}", a.norm);
            }
            assert!(out.adversarial.iter().all(|v| (0.0..=1.0).contains(v)));
            let pred = m.predict(&mut Pool::new(1), &out.adversarial, n).unwrap();
            for i in 0..n {
                assert_eq!(out.success[i], pred[i] != y[i], "example {i}");
            }
            let fgsm =
                attack::run(&m, &mut Pool::new(2), &Pgd::fgsm(a.norm, a.eps), &x, &y, 0).unwrap();
            let broken = |s: &[bool]| s.iter().filter(|b| **b).count();
            // Every attack breaks some example the model got right (43 of the 48 are wrong).
            assert!(broken(&out.success) > clean_wrong, "{loss:?} {:?}", a.norm);
            assert!(
                broken(&out.success) >= broken(&fgsm.success),
                "{loss:?} {:?}",
                a.norm
            );
        }
        assert!(
            run(
                &m,
                &mut Pool::new(1),
                &Apgd::new(ApgdLoss::Ce, f32::NAN, 1),
                &x,
                &y,
                0
            )
            .is_err()
        );
        assert!(
            run(
                &m,
                &mut Pool::new(1),
                &Apgd {
                    iters: 0,
                    ..Apgd::new(ApgdLoss::Ce, 0.1, 1)
                },
                &x,
                &y,
                0
            )
            .is_err()
        );
    }
}
