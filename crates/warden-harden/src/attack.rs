//! White-box evasion attacks: FGSM and PGD, under L∞ or L2, untargeted or targeted, inside the
//! input bounds. Gradients are taken with respect to the input only (no weight gradients).
//!
//! Randomness (the random start of each restart) is drawn per example from
//! `Rng::stream(seed, example index, restart)`, so an attack gives the same result whatever the
//! thread count or batch split.

use serde::{Deserialize, Serialize};

use crate::net::{Compute, Network};
use crate::nn::{Model, ModelError, Pool, argmax, softmax_xent};
use crate::rng::Rng;

/// The norm of the threat model (L∞ where a configuration does not say).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Norm {
    #[default]
    Linf,
    L2,
}

/// What the attacker wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Goal {
    /// Any wrong class (maximise the loss of the true class).
    Untargeted,
    /// Class `(y + offset) mod classes` for an example of class `y` (minimise its loss).
    Targeted { offset: u8 },
}

/// Projected gradient descent (Madry et al. 2018). FGSM is one step of size `eps` without a
/// random start.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pgd {
    pub norm: Norm,
    pub eps: f32,
    /// Step size (L∞: per coordinate; L2: length of each step).
    pub step: f32,
    pub steps: usize,
    /// Independent runs from fresh random starts; an example counts as broken if any run breaks it.
    pub restarts: usize,
    /// Start from a uniform point of the ball (L∞) or a random point of it (L2).
    pub random_start: bool,
    /// Stop attacking an example at the first iterate that breaks it and return that iterate
    /// (the evaluation setting); when false, return the last iterate of the last restart
    /// (the textbook trajectory, used to compare with other implementations).
    pub keep_first_success: bool,
    pub goal: Goal,
    /// Input bounds.
    pub lo: f32,
    pub hi: f32,
}

/// Limits on attack parameters accepted from outside.
pub const MAX_STEPS: usize = 10_000;
pub const MAX_RESTARTS: usize = 100;

impl Pgd {
    /// FGSM (Goodfellow et al. 2015) under `norm` with budget `eps` on `[0, 1]` inputs.
    pub fn fgsm(norm: Norm, eps: f32) -> Pgd {
        Pgd {
            norm,
            eps,
            step: eps,
            steps: 1,
            restarts: 1,
            random_start: false,
            keep_first_success: true,
            goal: Goal::Untargeted,
            lo: 0.0,
            hi: 1.0,
        }
    }

    /// PGD with a random start on `[0, 1]` inputs, keeping the first success (evaluation).
    pub fn linf(eps: f32, step: f32, steps: usize, restarts: usize) -> Pgd {
        Pgd {
            norm: Norm::Linf,
            eps,
            step,
            steps,
            restarts,
            random_start: true,
            keep_first_success: true,
            goal: Goal::Untargeted,
            lo: 0.0,
            hi: 1.0,
        }
    }

    /// Checks the parameters are finite and in range.
    pub fn validate(&self) -> Result<(), String> {
        let finite = [self.eps, self.step, self.lo, self.hi]
            .iter()
            .all(|v| v.is_finite());
        if !finite || self.eps < 0.0 || self.step < 0.0 || self.lo >= self.hi {
            return Err(format!(
                "attack parameters out of range (eps {}, step {}, bounds [{}, {}])",
                self.eps, self.step, self.lo, self.hi
            ));
        }
        if self.steps == 0
            || self.steps > MAX_STEPS
            || self.restarts == 0
            || self.restarts > MAX_RESTARTS
        {
            return Err(format!(
                "steps 1..={MAX_STEPS} and restarts 1..={MAX_RESTARTS} (got {}, {})",
                self.steps, self.restarts
            ));
        }
        if let Goal::Targeted { offset: 0 } = self.goal {
            return Err("a targeted attack needs a non-zero class offset".into());
        }
        Ok(())
    }

    fn target(&self, y: u8, classes: usize) -> u8 {
        match self.goal {
            Goal::Untargeted => y,
            Goal::Targeted { offset } => ((usize::from(y) + usize::from(offset)) % classes) as u8,
        }
    }

    fn success(&self, pred: usize, y: u8, classes: usize) -> bool {
        match self.goal {
            Goal::Untargeted => pred != usize::from(y),
            Goal::Targeted { .. } => pred == usize::from(self.target(y, classes)),
        }
    }
}

/// Adversarial examples and which of them reached the attacker's goal.
#[derive(Debug, Clone)]
pub struct AttackOutput {
    /// `n × input_len`, in the model's input layout.
    pub adversarial: Vec<f32>,
    /// Per example: the model's prediction on its adversarial example meets the goal (for an
    /// untargeted attack: it is wrong, including examples already wrong without an attack).
    pub success: Vec<bool>,
}

/// Runs `attack` on `n` examples, sharded over the pool's threads.
pub fn run(
    model: &Model,
    pool: &mut Pool,
    attack: &Pgd,
    x: &[f32],
    y: &[u8],
    seed: u64,
) -> Result<AttackOutput, ModelError> {
    run_on(&mut Compute::Cpu { model, pool }, attack, x, y, seed)
}

/// [`run`] on any engine.
pub fn run_on(
    c: &mut Compute<'_>,
    attack: &Pgd,
    x: &[f32],
    y: &[u8],
    seed: u64,
) -> Result<AttackOutput, ModelError> {
    attack.validate().map_err(ModelError::Input)?;
    check_inputs(c, x, y, attack.lo, attack.hi)?;
    c.run_sharded(x, y, |net, first, xs, ys, adv, ok| {
        attack_shard(net, attack, xs, ys, first, seed, adv, ok, false)
    })
}

/// The attack's points only, without scoring them (no forward pass on the clean inputs or on the
/// last iterate): what adversarial training uses, and what the PyTorch baseline times.
pub fn generate(
    model: &Model,
    pool: &mut Pool,
    attack: &Pgd,
    x: &[f32],
    y: &[u8],
    seed: u64,
) -> Result<Vec<f32>, ModelError> {
    attack.validate().map_err(ModelError::Input)?;
    let mut c = Compute::Cpu { model, pool };
    check_inputs(&c, x, y, attack.lo, attack.hi)?;
    let plain = Pgd {
        keep_first_success: false,
        ..*attack
    };
    let out = c.run_sharded(x, y, |net, first, xs, ys, adv, ok| {
        attack_shard(net, &plain, xs, ys, first, seed, adv, ok, true)
    })?;
    Ok(out.adversarial)
}

/// Checks the common preconditions of an attack's inputs: shapes, labels, finite values inside
/// the bounds.
/// The settings every iterative attack shares: a finite, non-negative budget, finite bounds in
/// order, 1 to 10,000 iterations and 1 to 100 restarts; `name` heads the message.
pub(crate) fn check_iterative(
    name: &str,
    eps: f32,
    lo: f32,
    hi: f32,
    iters: usize,
    restarts: usize,
) -> Result<(), String> {
    if !eps.is_finite() || eps < 0.0 || !lo.is_finite() || !hi.is_finite() || lo >= hi {
        return Err(format!(
            "{name} parameters out of range (eps {eps}, bounds [{lo}, {hi}])"
        ));
    }
    if !(1..=10_000).contains(&iters) || !(1..=100).contains(&restarts) {
        return Err(format!("{name}: iterations 1..=10000, restarts 1..=100"));
    }
    Ok(())
}

pub(crate) fn check_inputs(
    c: &Compute<'_>,
    x: &[f32],
    y: &[u8],
    lo: f32,
    hi: f32,
) -> Result<(), ModelError> {
    let len = c.input_len();
    let classes = c.classes();
    let n = y.len();
    if x.len() != n * len {
        return Err(ModelError::Input(format!(
            "{} values for {n} examples of {len}",
            x.len()
        )));
    }
    if let Some(&bad) = y.iter().find(|&&l| usize::from(l) >= classes) {
        return Err(ModelError::Input(format!(
            "label {bad} for a model of {classes} classes"
        )));
    }
    if x.iter().any(|v| !v.is_finite() || *v < lo || *v > hi) {
        return Err(ModelError::Input(format!(
            "inputs must be finite and inside [{lo}, {hi}]"
        )));
    }
    Ok(())
}

/// Per-thread scratch for the attack loop.
#[derive(Default)]
struct Active {
    /// Shard-local indices of the examples still being attacked.
    ids: Vec<usize>,
    x: Vec<f32>,
    xa: Vec<f32>,
    y: Vec<u8>,
    dl: Vec<f32>,
}

/// Attacks one shard. With `for_training`, the clean pre-check and the forward pass on the last
/// iterate are skipped (`ok` is then meaningless): training only needs the points.
#[allow(clippy::too_many_arguments)]
pub(crate) fn attack_shard(
    net: &mut dyn Network,
    a: &Pgd,
    x: &[f32],
    y: &[u8],
    first: usize,
    seed: u64,
    adv: &mut [f32],
    ok: &mut [bool],
    for_training: bool,
) -> Result<(), ModelError> {
    let len = net.input_len();
    let classes = net.classes();
    let n = y.len();
    adv.copy_from_slice(x);
    ok.fill(false);
    // Examples the model already gets wrong need no attack (untargeted).
    let mut st = Active::default();
    if a.goal == Goal::Untargeted && a.keep_first_success && !for_training {
        let logits = net.logits(x, n)?;
        for (i, row) in logits.chunks_exact(classes).enumerate() {
            ok[i] = a.success(argmax(row), y[i], classes);
        }
    }
    let direction = match a.goal {
        Goal::Untargeted => 1.0f32,
        Goal::Targeted { .. } => -1.0,
    };
    for restart in 0..a.restarts {
        st.ids.clear();
        st.ids.extend((0..n).filter(|&i| !ok[i]));
        if st.ids.is_empty() {
            break;
        }
        gather(&st.ids, x, len, &mut st.x);
        st.y.clear();
        st.y.extend(st.ids.iter().map(|&i| a.target(y[i], classes)));
        st.xa.clone_from(&st.x);
        if a.random_start {
            for (k, &i) in st.ids.iter().enumerate() {
                let mut rng = Rng::stream(seed, (first + i) as u64, restart as u64);
                random_start(
                    a,
                    &mut rng,
                    &st.x[k * len..(k + 1) * len],
                    &mut st.xa[k * len..(k + 1) * len],
                );
            }
        }
        for step in 0..=a.steps {
            let m = st.ids.len();
            if m == 0 {
                break;
            }
            if for_training && step == a.steps {
                for (k, &i) in st.ids.iter().enumerate() {
                    adv[i * len..(i + 1) * len].copy_from_slice(&st.xa[k * len..(k + 1) * len]);
                }
                break;
            }
            let logits = net.forward(&st.xa, m)?;
            // Which iterates already meet the goal (checked before each step and after the last).
            let mut keep = Vec::with_capacity(m);
            for (k, row) in logits.chunks_exact(classes).enumerate() {
                let pred = argmax(row);
                let orig_y = y[st.ids[k]];
                let hit = a.success(pred, orig_y, classes);
                keep.push(!(hit && a.keep_first_success));
                if hit && a.keep_first_success {
                    let i = st.ids[k];
                    ok[i] = true;
                    adv[i * len..(i + 1) * len].copy_from_slice(&st.xa[k * len..(k + 1) * len]);
                }
            }
            if step == a.steps {
                // The last iterate: successes were recorded above; the rest keep their last point
                // (when no restart succeeds, the last restart's).
                for (k, &i) in st.ids.iter().enumerate() {
                    if keep[k] {
                        adv[i * len..(i + 1) * len].copy_from_slice(&st.xa[k * len..(k + 1) * len]);
                        if !a.keep_first_success {
                            let row = &logits[k * classes..(k + 1) * classes];
                            ok[i] = a.success(argmax(row), y[i], classes);
                        }
                    }
                }
                break;
            }
            softmax_xent(logits, &st.y, classes, 1.0, &mut st.dl, None);
            // The network holds the forward pass of all m examples, so the backward pass runs on
            // all of them; finished ones leave the batch after the update.
            let g = net.input_grad(&st.xa, &st.dl)?;
            for k in 0..m {
                let (xk, xak, gk) = (
                    &st.x[k * len..(k + 1) * len],
                    &mut st.xa[k * len..(k + 1) * len],
                    &g[k * len..(k + 1) * len],
                );
                step_project(a, direction, xk, xak, gk);
            }
            if keep.iter().any(|k| !k) {
                compact(&keep, len, &mut st);
            }
        }
    }
    Ok(())
}

fn gather(ids: &[usize], x: &[f32], len: usize, out: &mut Vec<f32>) {
    out.clear();
    for &i in ids {
        out.extend_from_slice(&x[i * len..(i + 1) * len]);
    }
}

/// Keeps the examples whose `keep` flag is set, in order.
fn compact(keep: &[bool], len: usize, st: &mut Active) {
    let mut w = 0;
    for (k, &kp) in keep.iter().enumerate() {
        if kp {
            if w != k {
                st.ids[w] = st.ids[k];
                st.y[w] = st.y[k];
                st.x.copy_within(k * len..(k + 1) * len, w * len);
                st.xa.copy_within(k * len..(k + 1) * len, w * len);
            }
            w += 1;
        }
    }
    st.ids.truncate(w);
    st.y.truncate(w);
    st.x.truncate(w * len);
    st.xa.truncate(w * len);
}

fn random_start(a: &Pgd, rng: &mut Rng, x: &[f32], xa: &mut [f32]) {
    match a.norm {
        Norm::Linf => {
            for (v, &x0) in xa.iter_mut().zip(x) {
                let d = ((rng.uniform() * 2.0 - 1.0) as f32) * a.eps;
                *v = (x0 + d).clamp(a.lo, a.hi);
            }
        }
        Norm::L2 => {
            // A uniform point of the L2 ball: a Gaussian direction, radius eps·u^(1/d).
            let dir: Vec<f64> = (0..x.len()).map(|_| rng.normal()).collect();
            let norm = dir.iter().map(|d| d * d).sum::<f64>().sqrt().max(1e-12);
            let r = f64::from(a.eps) * rng.uniform().powf(1.0 / x.len() as f64);
            for ((v, &x0), d) in xa.iter_mut().zip(x).zip(&dir) {
                *v = (x0 + (d / norm * r) as f32).clamp(a.lo, a.hi);
            }
        }
    }
}

/// The sign of a gradient entry, 0 for 0 (as `torch.sign`; `f32::signum` gives 1 for 0).
pub(crate) fn sign(g: f32) -> f32 {
    if g > 0.0 {
        1.0
    } else if g < 0.0 {
        -1.0
    } else {
        0.0
    }
}

/// One ascent step on the loss (descent when `direction` is -1) for one example, then projection
/// onto the ball around `x` and the input bounds.
pub(crate) fn step_project(a: &Pgd, direction: f32, x: &[f32], xa: &mut [f32], g: &[f32]) {
    match a.norm {
        Norm::Linf => {
            for ((v, &x0), &gi) in xa.iter_mut().zip(x).zip(g) {
                let moved = *v + direction * a.step * sign(gi);
                *v = moved.clamp(x0 - a.eps, x0 + a.eps).clamp(a.lo, a.hi);
            }
        }
        Norm::L2 => {
            let gn = g
                .iter()
                .map(|&v| f64::from(v) * f64::from(v))
                .sum::<f64>()
                .sqrt();
            if gn > 0.0 {
                let scale = (f64::from(direction * a.step) / gn) as f32;
                for (v, &gi) in xa.iter_mut().zip(g) {
                    *v += scale * gi;
                }
            }
            let dn = xa
                .iter()
                .zip(x)
                .map(|(&v, &x0)| f64::from(v - x0).powi(2))
                .sum::<f64>()
                .sqrt();
            let shrink = if dn > f64::from(a.eps) {
                (f64::from(a.eps) / dn) as f32
            } else {
                1.0
            };
            for (v, &x0) in xa.iter_mut().zip(x) {
                *v = (x0 + (*v - x0) * shrink).clamp(a.lo, a.hi);
            }
        }
    }
}

/// The larger of `a` and `b`, NaN if either is (`f32::max` would drop a NaN, and a distance
/// to a NaN point must not read as 0).
pub fn max_or_nan(a: f32, b: f32) -> f32 {
    if a.is_nan() || b.is_nan() {
        f32::NAN
    } else {
        a.max(b)
    }
}

/// The distance of each adversarial example from its original, in the attack's norm.
pub fn distances(norm: Norm, x: &[f32], adv: &[f32], len: usize) -> Vec<f32> {
    x.chunks_exact(len)
        .zip(adv.chunks_exact(len))
        .map(|(a, b)| distance(norm, a, b))
        .collect()
}

/// The distance between two points in `norm` (NaN if either has a NaN; L2 summed in f64).
pub fn distance(norm: Norm, a: &[f32], b: &[f32]) -> f32 {
    match norm {
        Norm::Linf => a
            .iter()
            .zip(b)
            .map(|(p, q)| (p - q).abs())
            .fold(0.0, max_or_nan),
        Norm::L2 => a
            .iter()
            .zip(b)
            .map(|(p, q)| f64::from(p - q).powi(2))
            .sum::<f64>()
            .sqrt() as f32,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::nn::Arch;

    fn setup(n: usize) -> (Model, Vec<f32>, Vec<u8>) {
        let m = Model::init(&Arch::small_cnn(), 3).unwrap();
        let mut rng = Rng::new(11);
        let x: Vec<f32> = (0..n * 784).map(|_| rng.uniform() as f32).collect();
        let y: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
        (m, x, y)
    }

    #[test]
    fn stays_in_the_ball_and_the_bounds_for_every_norm_and_goal() {
        // A NaN point is at no finite distance: it can never pass the ball check below.
        let nan = [0.5, f32::NAN, 0.5];
        for norm in [Norm::Linf, Norm::L2] {
            assert!(distances(norm, &[0.5; 3], &nan, 3)[0].is_nan(), "{norm:?}");
        }
        let (m, x, y) = setup(40);
        for norm in [Norm::Linf, Norm::L2] {
            for goal in [Goal::Untargeted, Goal::Targeted { offset: 3 }] {
                let eps = if norm == Norm::Linf { 0.1 } else { 1.5 };
                let a = Pgd {
                    norm,
                    goal,
                    step: eps / 4.0,
                    steps: 7,
                    restarts: 2,
                    ..Pgd::linf(eps, 0.0, 1, 1)
                };
                let out = run(&m, &mut Pool::new(2), &a, &x, &y, 9).unwrap();
                for d in distances(norm, &x, &out.adversarial, 784) {
                    assert!(d <= eps * (1.0 + 1e-5), "{d} > {eps}");
                }
                assert!(out.adversarial.iter().all(|v| (0.0..=1.0).contains(v)));
                // The reported successes are what the model does on the returned points.
                let pred = m.predict(&mut Pool::new(1), &out.adversarial, 40).unwrap();
                for i in 0..40 {
                    assert_eq!(
                        out.success[i],
                        a.success(usize::from(pred[i]), y[i], 10),
                        "example {i}"
                    );
                }
            }
        }
    }

    #[test]
    fn generate_gives_the_textbook_points() {
        let (m, x, y) = setup(30);
        let a = Pgd {
            keep_first_success: false,
            ..Pgd::linf(0.1, 0.02, 4, 1)
        };
        let full = run(&m, &mut Pool::new(2), &a, &x, &y, 8).unwrap();
        let points = generate(&m, &mut Pool::new(2), &a, &x, &y, 8).unwrap();
        assert_eq!(full.adversarial, points);
    }

    #[test]
    fn same_result_for_any_thread_count() {
        let (m, x, y) = setup(300);
        let a = Pgd::linf(0.1, 0.02, 5, 2);
        let one = run(&m, &mut Pool::new(1), &a, &x, &y, 4).unwrap();
        let three = run(&m, &mut Pool::new(3), &a, &x, &y, 4).unwrap();
        assert_eq!(one.success, three.success);
        let diff = one
            .adversarial
            .iter()
            .zip(&three.adversarial)
            .filter(|(p, q)| p != q)
            .count();
        assert_eq!(diff, 0);
    }

    #[test]
    fn refuses_hostile_parameters_and_inputs() {
        let (m, x, y) = setup(2);
        let mut pool = Pool::new(1);
        for a in [
            Pgd::linf(f32::NAN, 0.01, 10, 1),
            Pgd::linf(-0.1, 0.01, 10, 1),
            Pgd::linf(0.1, 0.01, 0, 1),
            Pgd::linf(0.1, 0.01, 10, 0),
            Pgd::linf(0.1, 0.01, MAX_STEPS + 1, 1),
            Pgd {
                goal: Goal::Targeted { offset: 0 },
                ..Pgd::linf(0.1, 0.01, 1, 1)
            },
        ] {
            assert!(run(&m, &mut pool, &a, &x, &y, 0).is_err(), "{a:?}");
        }
        let a = Pgd::fgsm(Norm::Linf, 0.1);
        let mut bad = x.clone();
        bad[5] = f32::NAN;
        assert!(run(&m, &mut pool, &a, &bad, &y, 0).is_err());
        bad[5] = 1.5;
        assert!(run(&m, &mut pool, &a, &bad, &y, 0).is_err());
        assert!(run(&m, &mut pool, &a, &x[..100], &y, 0).is_err());
        assert!(run(&m, &mut pool, &a, &x, &[0, 10], 0).is_err());
        assert!(
            run(&m, &mut pool, &a, &[], &[], 0)
                .unwrap()
                .success
                .is_empty()
        );
    }
}
