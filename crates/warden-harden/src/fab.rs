//! FAB-T (Croce and Hein, ICML 2020, "Minimally distorted adversarial examples with a fast
//! adaptive boundary attack") under L∞ and L2: the targeted form that AutoAttack's standard
//! version runs after APGD-T. Where APGD climbs a loss inside the ball, FAB walks to the decision
//! boundary: it looks for the smallest perturbation that misclassifies, so it breaks points whose
//! loss surface is flat or masked but whose boundary is near.
//!
//! Per example and target class `t` (the classes ranked second, third, … by the clean logits, as
//! APGD-T ranks them), each iteration:
//! 1. linearises `z_t − z_y` at the iterate `x₁`: the boundary becomes the hyperplane
//!    `w·z = b` with `w = ∇(z_t − z_y)` and `b = w·x₁ − (z_t − z_y)`;
//! 2. projects both `x₁` and the original `x₀` onto that hyperplane inside the input box, with the
//!    smallest step in the threat model's norm ([`project`]): `d₁`, `d₂`;
//! 3. moves to `(x₁ + η·d₁)(1 − α) + (x₀ + η·d₂)·α`, clipped to the box, with the overshoot
//!    `η = 1.05` and `α = min(‖d₁‖/(‖d₁‖ + ‖d₂‖), α_max = 0.1)`, a bias towards the original;
//! 4. if the new point is misclassified, keeps it when it is the closest so far, and steps back
//!    towards `x₀` (`x₀ + β·(x₁ − x₀)`, `β = 0.9`) to look for a closer one.
//!
//! The first run of each target starts at `x₀`; further restarts start at a random point at
//! distance `ε/2` (uniform in the cube under L∞, a Gaussian direction under L2, as AutoAttack
//! draws them). An example counts as broken once a misclassified point within `ε` is found; it
//! then leaves the batch (AutoAttack runs every iteration to shrink the perturbation further,
//! which changes no robust-accuracy figure). Three forward and backward passes' worth of work per
//! iteration: the linearisation (forward and backward) and the check of the new point (forward).

use serde::{Deserialize, Serialize};

use crate::apgd::clean_pass;
use crate::attack::{AttackOutput, Norm, check_inputs, check_iterative, distance};
use crate::net::{Compute, Network};
use crate::nn::{Model, ModelError, Pool, argmax};
use crate::rng::Rng;

/// FAB-T (AutoAttack's settings from [`Fab::targeted`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fab {
    /// The threat model: the norm of `eps`, of the projections and of the distances.
    #[serde(default)]
    pub norm: Norm,
    pub eps: f32,
    pub iters: usize,
    /// How many of the most likely wrong classes to target, one after the other.
    pub targets: usize,
    /// Runs per target: the first from the original point, the others from random starts.
    pub restarts: usize,
    /// The largest weight of the step from the original point (α_max).
    pub alpha_max: f32,
    /// The overshoot of each projection (η).
    pub eta: f32,
    /// How far back towards the original an adversarial iterate is pulled (β).
    pub beta: f32,
    pub lo: f32,
    pub hi: f32,
}

impl Fab {
    /// FAB-T under L∞ as AutoAttack's standard version runs it: 100 iterations, one run per
    /// target, α_max 0.1, η 1.05, β 0.9, on `[0, 1]` inputs (the same under L2: set `norm`).
    pub fn targeted(eps: f32, targets: usize) -> Fab {
        Fab {
            norm: Norm::Linf,
            eps,
            iters: 100,
            targets,
            restarts: 1,
            alpha_max: 0.1,
            eta: 1.05,
            beta: 0.9,
            lo: 0.0,
            hi: 1.0,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        check_iterative("FAB", self.eps, self.lo, self.hi, self.iters, self.restarts)?;
        if !(1..=255).contains(&self.targets) {
            return Err("FAB-T: 1 to 255 target classes".into());
        }
        if !(0.0..=1.0).contains(&self.alpha_max)
            || !(1.0..=2.0).contains(&self.eta)
            || !(f32::MIN_POSITIVE..=1.0).contains(&self.beta)
        {
            return Err(format!(
                "FAB: alpha_max in [0, 1], eta in [1, 2], beta in (0, 1] (got {}, {}, {})",
                self.alpha_max, self.eta, self.beta
            ));
        }
        Ok(())
    }
}

/// Runs FAB-T on `n` examples, sharded over the pool's threads. `success` marks the examples that
/// are misclassified at their returned point, which is within `eps` (in `norm`) of the original and
/// inside the bounds; the others are returned unchanged.
pub fn run(
    model: &Model,
    pool: &mut Pool,
    a: &Fab,
    x: &[f32],
    y: &[u8],
    seed: u64,
) -> Result<AttackOutput, ModelError> {
    run_on(&mut Compute::Cpu { model, pool }, a, x, y, seed)
}

/// [`run`] on any engine.
pub fn run_on(
    c: &mut Compute<'_>,
    a: &Fab,
    x: &[f32],
    y: &[u8],
    seed: u64,
) -> Result<AttackOutput, ModelError> {
    a.validate().map_err(ModelError::Input)?;
    let classes = c.classes();
    if classes < 2 || a.targets >= classes {
        return Err(ModelError::Input(format!(
            "FAB-T needs fewer targets than classes ({} targets, {classes} classes)",
            a.targets,
        )));
    }
    check_inputs(c, x, y, a.lo, a.hi)?;
    c.run_sharded(x, y, |net, first, xs, ys, adv, ok| {
        shard(net, a, xs, ys, first, seed, adv, ok)
    })
}

/// `c = b − w·p`: what a step from `p` must add to `w·z` to reach the hyperplane `w·z = b`;
/// `None` when `p` is on it already or `c` is not finite.
fn gap(p: &[f32], w: &[f32], b: f64) -> Option<f64> {
    let c = b - p
        .iter()
        .zip(w)
        .map(|(&p, &w)| f64::from(p) * f64::from(w))
        .sum::<f64>();
    (c != 0.0 && c.is_finite()).then_some(c)
}

/// The smallest step `d`, in `norm`, that takes `p` onto the hyperplane `w·z = b` while `p + d`
/// stays in `[lo, hi]`, written to `d`. Where the box does not reach the hyperplane, the step to
/// the corner of the box that comes closest. Returns the step's length in `norm`.
///
/// With `c = b − w·p`, each coordinate may move by at most its room `u_i` towards the side that
/// raises `sign(c)·w·z`. Both problems are solved by one walk over a scale `s`, along which the
/// total gain is piecewise linear and increasing, with a bend where each coordinate saturates:
/// - **L∞:** `s` is the step's length `t`; coordinate `i` moves by `min(t, u_i)` and gains
///   `|w_i|·min(t, u_i)`, so it saturates at `t = u_i`.
/// - **L2:** the problem is a convex quadratic programme whose solution is `d_i = λ·w_i` clipped
///   to the room, for the one multiplier `λ` where `w·d = c`; `s` is `λ`, coordinate `i` moves by
///   `min(λ·|w_i|, u_i)` and gains `|w_i|` times that, so it saturates at `λ = u_i/|w_i|`.
///
/// The walk visits the bends in increasing order until the gain reaches `|c|`.
pub fn project(
    norm: Norm,
    p: &[f32],
    w: &[f32],
    b: f64,
    (lo, hi): (f32, f32),
    d: &mut [f32],
    scratch: &mut Vec<(f64, f64, usize)>,
) -> f32 {
    d.fill(0.0);
    let Some(c) = gap(p, w, b) else {
        return 0.0;
    };
    let up = |w: f32| (w > 0.0) == (c > 0.0);
    let room = |i: usize| f64::from(if up(w[i]) { hi - p[i] } else { p[i] - lo }.max(0.0));
    // How fast an unsaturated coordinate gains per unit of `s`.
    let rate = |aw: f64| match norm {
        Norm::Linf => aw,
        Norm::L2 => aw * aw,
    };
    scratch.clear();
    let mut rate_left = 0.0f64;
    for (i, &w) in w.iter().enumerate() {
        if w == 0.0 || !w.is_finite() {
            continue;
        }
        let aw = f64::from(w.abs());
        let bend = match norm {
            Norm::Linf => room(i),
            Norm::L2 => room(i) / aw,
        };
        scratch.push((bend, aw, i));
        rate_left += rate(aw);
    }
    scratch.sort_by(|a, b| a.0.total_cmp(&b.0));
    let need = c.abs();
    let mut gained = 0.0f64;
    let mut s = f64::INFINITY;
    for &(bend, aw, i) in scratch.iter() {
        if gained + bend * rate_left >= need {
            // `rate_left` is kept by subtraction; the cap keeps a cancelled sum from overshooting.
            s = ((need - gained) / rate_left).min(bend);
            break;
        }
        gained += aw * room(i);
        rate_left -= rate(aw);
    }
    let (mut top, mut squares) = (0.0f32, 0.0f64);
    for &(_, aw, i) in scratch.iter() {
        let step = match norm {
            Norm::Linf => s.min(room(i)),
            Norm::L2 => (s * aw).min(room(i)),
        };
        let step32 = step as f32;
        d[i] = if up(w[i]) { step32 } else { -step32 };
        top = top.max(step32);
        squares += step * step;
    }
    match norm {
        Norm::Linf => top,
        Norm::L2 => squares.sqrt() as f32,
    }
}

/// A restart's first point, at distance `eps/2` from `x0` in `a`'s norm, then clipped to the
/// bounds (AutoAttack's): under L∞ a uniform draw in the cube, under L2 a Gaussian direction,
/// scaled to that length; drawn from the example's index and the round.
fn random_start(a: &Fab, x0: &[f32], seed: u64, index: u64, round: u64) -> Vec<f32> {
    let mut rng = Rng::stream(seed ^ 0xfab7, index, round);
    let u: Vec<f32> = match a.norm {
        Norm::Linf => x0
            .iter()
            .map(|_| rng.uniform() as f32 * 2.0 - 1.0)
            .collect(),
        Norm::L2 => x0.iter().map(|_| rng.normal() as f32).collect(),
    };
    let zero = vec![0.0f32; u.len()];
    let length = distance(a.norm, &u, &zero).max(1e-12);
    x0.iter()
        .zip(&u)
        .map(|(&v, &r)| (v + 0.5 * a.eps * r / length).clamp(a.lo, a.hi))
        .collect()
}

/// One example's state for one target.
struct State {
    /// Shard-local index.
    id: usize,
    target: usize,
    x1: Vec<f32>,
}

#[allow(clippy::too_many_arguments)]
fn shard(
    net: &mut dyn Network,
    a: &Fab,
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
    // Examples already misclassified need no attack; the k-th target of the others is the wrong
    // class with the k-th largest clean logit.
    let ranks = clean_pass(net, x, y, ok, true)?;
    let (mut bx, mut dl, mut df) = (Vec::new(), Vec::new(), Vec::new());
    let (mut d1, mut d2, mut scratch) = (vec![0.0f32; len], vec![0.0f32; len], Vec::new());
    let mut wbuf = Vec::with_capacity(len);
    for k in 0..a.targets {
        for restart in 0..a.restarts {
            let mut states: Vec<State> = (0..n)
                .filter(|&i| !ok[i])
                .filter_map(|i| {
                    // Every example has `classes − 1 > targets` wrong classes (checked in `run`).
                    let target = *ranks[i].get(k)?;
                    let x0 = &x[i * len..(i + 1) * len];
                    let x1 = if restart == 0 {
                        x0.to_vec()
                    } else {
                        let round = (k * a.restarts + restart) as u64;
                        random_start(a, x0, seed, (first + i) as u64, round)
                    };
                    Some(State { id: i, target, x1 })
                })
                .collect();
            for _ in 0..a.iters {
                if states.is_empty() {
                    break;
                }
                let m = states.len();
                bx.clear();
                for s in &states {
                    bx.extend_from_slice(&s.x1);
                }
                // The gradient of z_t − z_y at every iterate, in one backward pass.
                let logits = net.forward(&bx, m)?;
                df.clear();
                dl.clear();
                dl.resize(m * classes, 0.0);
                for (j, s) in states.iter().enumerate() {
                    let yi = usize::from(y[s.id]);
                    let row = &logits[j * classes..(j + 1) * classes];
                    df.push(f64::from(row[s.target]) - f64::from(row[yi]));
                    dl[j * classes + s.target] += 1.0;
                    dl[j * classes + yi] -= 1.0;
                }
                let g = net.input_grad(&bx, &dl)?;
                for (j, s) in states.iter_mut().enumerate() {
                    let x0 = &x[s.id * len..(s.id + 1) * len];
                    // A non-finite entry would make the whole hyperplane non-finite: drop it, and
                    // keep the step the other coordinates give.
                    wbuf.clear();
                    wbuf.extend(
                        g[j * len..(j + 1) * len]
                            .iter()
                            .map(|&v| if v.is_finite() { v } else { 0.0 }),
                    );
                    let w = &wbuf[..];
                    let b =
                        s.x1.iter()
                            .zip(w)
                            .map(|(&v, &w)| f64::from(v) * f64::from(w))
                            .sum::<f64>()
                            - df[j];
                    let bounds = (a.lo, a.hi);
                    let n1 = project(a.norm, &s.x1, w, b, bounds, &mut d1, &mut scratch);
                    let n2 = project(a.norm, x0, w, b, bounds, &mut d2, &mut scratch);
                    let (n1, n2) = (n1.max(1e-8), n2.max(1e-8));
                    let alpha = (n1 / (n1 + n2)).clamp(0.0, a.alpha_max);
                    for (((v, &o), &s1), &s2) in s.x1.iter_mut().zip(x0).zip(&d1).zip(&d2) {
                        *v = ((*v + a.eta * s1) * (1.0 - alpha) + (o + a.eta * s2) * alpha)
                            .clamp(a.lo, a.hi);
                    }
                }
                // Check the new points: a misclassified one within eps ends the example's attack;
                // one beyond eps is pulled back towards the original.
                bx.clear();
                for s in &states {
                    bx.extend_from_slice(&s.x1);
                }
                let logits = net.logits(&bx, m)?;
                for (j, s) in states.iter_mut().enumerate() {
                    let row = &logits[j * classes..(j + 1) * classes];
                    if argmax(row) == usize::from(y[s.id]) {
                        continue;
                    }
                    let x0 = &x[s.id * len..(s.id + 1) * len];
                    if distance(a.norm, &s.x1, x0) <= a.eps {
                        adv[s.id * len..(s.id + 1) * len].copy_from_slice(&s.x1);
                        ok[s.id] = true;
                    } else {
                        for (v, &o) in s.x1.iter_mut().zip(x0) {
                            *v = (o + (*v - o) * a.beta).clamp(a.lo, a.hi);
                        }
                    }
                }
                states.retain(|s| !ok[s.id]);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::apgd::wrong_classes;
    use crate::attack::distances;
    use crate::nn::Arch;

    /// The largest gain `S(t)` a step of L∞ length `t` can make towards `w·z = b` from `p`.
    fn reach(p: &[f32], w: &[f32], c: f64, t: f64) -> f64 {
        p.iter()
            .zip(w)
            .map(|(&p, &w)| {
                let room = if (w > 0.0) == (c > 0.0) { 1.0 - p } else { p };
                f64::from(w.abs()) * t.min(f64::from(room))
            })
            .sum()
    }

    /// The projection lands on the hyperplane inside the box, and no shorter step could: a step
    /// 0.1% shorter reaches less than the distance to cover. Out of reach, it goes to the corner.
    #[test]
    fn projection_is_the_shortest_step_in_the_box() {
        let mut rng = Rng::new(5);
        let (mut d, mut scratch) = (vec![0.0f32; 40], Vec::new());
        let (mut feasible, mut infeasible) = (0, 0);
        for case in 0..400 {
            let p: Vec<f32> = (0..40).map(|_| rng.uniform() as f32).collect();
            let w: Vec<f32> = (0..40)
                .map(|i| {
                    if i % 7 == case % 7 {
                        0.0
                    } else {
                        rng.normal() as f32
                    }
                })
                .collect();
            let wp: f64 = p.iter().zip(&w).map(|(&a, &b)| f64::from(a * b)).sum();
            let c = (rng.uniform() * 2.0 - 1.0) * 24.0;
            let b = wp + c;
            let norm = project(Norm::Linf, &p, &w, b, (0.0, 1.0), &mut d, &mut scratch);
            let z: Vec<f32> = p.iter().zip(&d).map(|(a, b)| a + b).collect();
            assert!(z.iter().all(|v| (0.0..=1.0).contains(v)), "case {case}");
            let top = d.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            assert_eq!(top, norm, "case {case}");
            for (i, &wi) in w.iter().enumerate() {
                if wi == 0.0 {
                    assert_eq!(d[i], 0.0);
                }
            }
            let wz: f64 = z
                .iter()
                .zip(&w)
                .map(|(&a, &b)| f64::from(a) * f64::from(b))
                .sum();
            let full = reach(&p, &w, c, f64::INFINITY);
            if full >= c.abs() {
                feasible += 1;
                assert!(
                    (wz - b).abs() < 1e-4 * (1.0 + b.abs()),
                    "case {case}: {wz} vs {b}"
                );
                let shorter = f64::from(norm) * 0.999;
                assert!(
                    reach(&p, &w, c, shorter) < c.abs(),
                    "case {case}: not minimal"
                );
            } else {
                infeasible += 1;
                assert!(
                    ((wz - wp).abs() - full).abs() < 1e-4 * (1.0 + full),
                    "case {case}"
                );
            }
        }
        assert!(feasible > 50 && infeasible > 50, "{feasible} {infeasible}");
        // Already on the hyperplane: no step.
        let p = [0.25f32, 0.5];
        let norm = project(
            Norm::Linf,
            &p,
            &[1.0, 1.0],
            0.75,
            (0.0, 1.0),
            &mut d[..2],
            &mut scratch,
        );
        assert_eq!((norm, d[0], d[1]), (0.0, 0.0, 0.0));
    }

    /// The L2 projection is the solution of its quadratic programme. Checked by the KKT
    /// conditions, which are sufficient for a convex problem: one multiplier `λ` with
    /// `d_i = λ·w_i` on every coordinate strictly inside its box, and `λ·w_i` beyond the bound on
    /// every coordinate at one; and by random moves along the hyperplane inside the box (over
    /// 500 of them valid), none of which is shorter. Out of reach, it goes to the corner, as under L∞.
    #[test]
    fn l2_projection_solves_its_quadratic_programme() {
        let mut rng = Rng::new(6);
        let (mut d, mut scratch) = (vec![0.0f32; 30], Vec::new());
        let (mut feasible, mut infeasible, mut moves) = (0, 0, 0);
        for case in 0..300 {
            let p: Vec<f32> = (0..30).map(|_| rng.uniform() as f32).collect();
            let w: Vec<f32> = (0..30)
                .map(|i| {
                    if i % 5 == case % 5 {
                        0.0
                    } else {
                        rng.normal() as f32
                    }
                })
                .collect();
            let wp: f64 = p.iter().zip(&w).map(|(&a, &b)| f64::from(a * b)).sum();
            let c = (rng.uniform() * 2.0 - 1.0) * 14.0;
            let b = wp + c;
            let norm = project(Norm::L2, &p, &w, b, (0.0, 1.0), &mut d, &mut scratch);
            let z: Vec<f32> = p.iter().zip(&d).map(|(a, b)| a + b).collect();
            assert!(z.iter().all(|v| (0.0..=1.0).contains(v)), "case {case}");
            let length = d.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>().sqrt();
            assert!((length - f64::from(norm)).abs() < 1e-5, "case {case}");
            let reached: f64 = d.iter().zip(&w).map(|(&a, &b)| f64::from(a * b)).sum();
            let full = reach(&p, &w, c, f64::INFINITY);
            if full < c.abs() {
                infeasible += 1;
                assert!(
                    (reached.abs() - full).abs() < 1e-4 * (1.0 + full),
                    "case {case}"
                );
                continue;
            }
            feasible += 1;
            assert!((reached - c).abs() < 1e-4 * (1.0 + c.abs()), "case {case}");
            // The multiplier, from the free coordinate with the largest weight.
            let free = |i: usize| d[i].abs() > 1e-6 && z[i] > 1e-6 && z[i] < 1.0 - 1e-6;
            let Some(k) = (0..30)
                .filter(|&i| free(i))
                .max_by(|&i, &j| w[i].abs().total_cmp(&w[j].abs()))
            else {
                continue;
            };
            let lambda = d[k] / w[k];
            for i in 0..30 {
                let want = lambda * w[i];
                if free(i) {
                    assert!((d[i] - want).abs() < 1e-4, "case {case}, {i}");
                } else if z[i] >= 1.0 - 1e-6 {
                    assert!(want >= d[i] - 1e-4, "case {case}, {i} at the top");
                } else if z[i] <= 1e-6 {
                    assert!(want <= d[i] + 1e-4, "case {case}, {i} at the bottom");
                } else {
                    assert!(want.abs() < 1e-4, "case {case}, {i} unmoved");
                }
            }
            // Moves between two coordinates that keep w·d and stay in the box are never shorter.
            for _ in 0..8 {
                let (i, j) = (rng.below(30) as usize, rng.below(30) as usize);
                if i == j || w[i] == 0.0 || w[j] == 0.0 {
                    continue;
                }
                let t = (rng.uniform() as f32 - 0.5) * 0.02;
                let (di, dj) = (d[i] + t / w[i], d[j] - t / w[j]);
                if !(0.0..=1.0).contains(&(p[i] + di)) || !(0.0..=1.0).contains(&(p[j] + dj)) {
                    continue;
                }
                moves += 1;
                let before = d[i] * d[i] + d[j] * d[j];
                assert!(
                    di * di + dj * dj >= before - 1e-6,
                    "case {case}: shorter move"
                );
            }
        }
        assert!(
            feasible > 50 && infeasible > 50 && moves > 500,
            "{feasible} {infeasible} {moves}"
        );
        let p = [0.25f32, 0.5];
        let norm = project(
            Norm::L2,
            &p,
            &[1.0, 1.0],
            0.75,
            (0.0, 1.0),
            &mut d[..2],
            &mut scratch,
        );
        assert_eq!((norm, d[0], d[1]), (0.0, 0.0, 0.0));
        // Without the box in the way it is the textbook projection, c·w/‖w‖².
        let (w, b) = ([3.0, 4.0], 2.75 + 0.5);
        let norm = project(Norm::L2, &p, &w, b, (0.0, 1.0), &mut d[..2], &mut scratch);
        assert!(
            (norm - 0.1).abs() < 1e-6 && (d[0] - 0.06).abs() < 1e-6 && (d[1] - 0.08).abs() < 1e-6
        );
    }

    /// On a linear model the boundary between two classes is a hyperplane, so the smallest L∞
    /// perturbation that misclassifies is known exactly: the shortest projection onto any of the
    /// hyperplanes `z_j = z_y`. FAB-T with every wrong class as a target breaks each example at a
    /// budget 2% above that distance, and at 2% below it cannot.
    #[test]
    fn finds_the_exact_boundary_of_a_linear_model() {
        exact_boundary(Norm::Linf);
    }

    /// The same under L2: FAB-T breaks each example at 1.02× the exact L2 distance to the
    /// nearest boundary (inside the box) and never at 0.98×.
    #[test]
    fn finds_the_exact_l2_boundary_of_a_linear_model() {
        exact_boundary(Norm::L2);
    }

    fn exact_boundary(norm: Norm) {
        let m = Model::init(&Arch::mlp(&[]), 9).unwrap();
        let mut rng = Rng::new(8);
        let (w, bias) = (m.params()[0].clone(), m.params()[1].clone());
        let mut pool = Pool::new(1);
        let (mut d, mut scratch) = (vec![0.0f32; 784], Vec::new());
        let mut checked = 0;
        for _ in 0..6 {
            let x: Vec<f32> = (0..784).map(|_| rng.uniform() as f32).collect();
            let y = m.predict(&mut pool, &x, 1).unwrap();
            let yi = usize::from(y[0]);
            // z_j − z_y = (w_j − w_y)·x + (c_j − c_y) = 0.
            let exact = (0..10)
                .filter(|&j| j != yi)
                .map(|j| {
                    let wd: Vec<f32> = (0..784).map(|i| w[j * 784 + i] - w[yi * 784 + i]).collect();
                    let b = -f64::from(bias[j] - bias[yi]);
                    let t = project(norm, &x, &wd, b, (0.0, 1.0), &mut d, &mut scratch);
                    let z: f64 = x
                        .iter()
                        .zip(&d)
                        .zip(&wd)
                        .map(|((&a, &s), &v)| f64::from(a + s) * f64::from(v))
                        .sum();
                    if (z - b).abs() < 1e-4 {
                        t
                    } else {
                        f32::INFINITY
                    }
                })
                .fold(f32::INFINITY, f32::min);
            let reach = match norm {
                Norm::Linf => 0.5,
                Norm::L2 => 8.0,
            };
            if !exact.is_finite() || exact > reach {
                continue;
            }
            checked += 1;
            let at = |eps: f32| Fab {
                norm,
                ..Fab::targeted(eps, 9)
            };
            let above = run(&m, &mut pool, &at(exact * 1.02), &x, &y, 1).unwrap();
            assert!(above.success[0], "not broken at 1.02 × {exact}");
            assert!(distances(norm, &x, &above.adversarial, 784)[0] <= exact * 1.02);
            assert_ne!(m.predict(&mut pool, &above.adversarial, 1).unwrap(), y);
            let below = run(&m, &mut pool, &at(exact * 0.98), &x, &y, 1).unwrap();
            assert!(!below.success[0], "broken below the exact distance {exact}");
            assert_eq!(below.adversarial, x);
        }
        assert!(checked >= 3, "{checked}");
    }

    /// FAB-T attacks the wrong classes in the order of their clean logits. On a linear model whose
    /// clean logits rank 0 (true), 1, 2, class 1 is out of reach inside the box and class 2 is
    /// within 0.72: one target (class 1) breaks nothing, two (1, then 2) break it, towards 2.
    #[test]
    fn targets_follow_the_clean_ranking() {
        let mut m = Model::zeros(&Arch::mlp(&[])).unwrap();
        {
            let p = m.params_mut();
            p[0][784] = 0.1; // class 1 reads pixel 0, weakly: 0.5 + 0.1·x₀ never beats 1
            p[0][2 * 784 + 1] = 1.0; // class 2 reads pixel 1: beats class 0 from x₁ > 0.7
            p[1][..3].copy_from_slice(&[1.0, 0.5, 0.3]);
        }
        let (x, y) = (vec![0.0f32; 784], vec![0u8]);
        let pool = &mut Pool::new(1);
        assert!(
            !run(&m, pool, &Fab::targeted(0.72, 1), &x, &y, 3)
                .unwrap()
                .success[0]
        );
        let two = run(&m, pool, &Fab::targeted(0.72, 2), &x, &y, 3).unwrap();
        assert!(two.success[0], "class 2 is within reach");
        assert_eq!(m.predict(pool, &two.adversarial, 1).unwrap(), vec![2]);
        // The true class is never a target, even when another class ties with it.
        let z = [0.0f32, -0.0, 1.0, 0.5];
        assert_eq!(wrong_classes(&z, 2), vec![3, 0, 1]);
        assert_eq!(wrong_classes(&[-0.0, 0.0], 0), vec![1]);
    }

    /// A restart starts at L∞ distance ε/2 where the box allows, inside the bounds, at a point
    /// that depends on the example's index and the round.
    #[test]
    fn random_starts_are_half_eps_away() {
        let a = Fab::targeted(0.2, 1);
        let x0 = vec![0.5f32; 50];
        let p = random_start(&a, &x0, 1, 7, 1);
        let d = p
            .iter()
            .zip(&x0)
            .fold(0.0f32, |m, (p, q)| m.max((p - q).abs()));
        assert!((d - 0.1).abs() < 1e-6, "{d}");
        assert_ne!(p, random_start(&a, &x0, 1, 8, 1));
        assert_ne!(p, random_start(&a, &x0, 1, 7, 2));
        assert_eq!(p, random_start(&a, &x0, 1, 7, 1));
        let edge = random_start(&a, &[0.0f32; 50], 1, 7, 1);
        assert!(edge.iter().all(|v| (0.0..=0.1).contains(v)));
        // Under L2: L2 length ε/2, spread over the coordinates rather than at a corner.
        let a = Fab {
            norm: Norm::L2,
            ..Fab::targeted(1.0, 1)
        };
        let p = random_start(&a, &x0, 1, 7, 1);
        let l2 = distance(Norm::L2, &p, &x0);
        assert!((l2 - 0.5).abs() < 1e-5, "{l2}");
        assert!(distance(Norm::Linf, &p, &x0) < 0.45);
        assert!(p.iter().all(|v| (0.0..=1.0).contains(v)));
    }

    /// On a CNN: every returned point is inside the ball and the bounds, `success` is exactly
    /// "misclassified there", restarts from random points break at least what the plain run
    /// breaks, and bad settings are refused.
    #[test]
    fn stays_in_the_ball_and_reports_honestly() {
        let m = Model::init(&Arch::small_cnn(), 3).unwrap();
        let mut rng = Rng::new(4);
        let n = 32;
        let x: Vec<f32> = (0..n * 784).map(|_| rng.uniform() as f32).collect();
        let mut y = m.predict(&mut Pool::new(1), &x, n).unwrap();
        // A few examples are already misclassified: they count as broken, at their own point.
        for i in (0..n).step_by(8) {
            y[i] = (y[i] + 1) % 10;
        }
        let eps = 0.02;
        let plain = run(
            &m,
            &mut Pool::new(2),
            &Fab {
                iters: 20,
                ..Fab::targeted(eps, 3)
            },
            &x,
            &y,
            1,
        )
        .unwrap();
        let restarted = Fab {
            iters: 20,
            restarts: 2,
            ..Fab::targeted(eps, 3)
        };
        let more = run(&m, &mut Pool::new(2), &restarted, &x, &y, 1).unwrap();
        for out in [&plain, &more] {
            for d in distances(Norm::Linf, &x, &out.adversarial, 784) {
                assert!(d <= eps, "{d}");
            }
            assert!(out.adversarial.iter().all(|v| (0.0..=1.0).contains(v)));
            let pred = m.predict(&mut Pool::new(1), &out.adversarial, n).unwrap();
            for i in 0..n {
                assert_eq!(out.success[i], pred[i] != y[i], "example {i}");
            }
        }
        for i in (0..n).step_by(8) {
            assert!(plain.success[i]);
            assert_eq!(
                plain.adversarial[i * 784..(i + 1) * 784],
                x[i * 784..(i + 1) * 784]
            );
        }
        let broken = |s: &[bool]| s.iter().filter(|b| **b).count();
        assert!(
            broken(&plain.success) > n / 8,
            "FAB-T breaks something at eps {eps}"
        );
        assert!(broken(&more.success) >= broken(&plain.success));
        // The same points, bit for bit, for any number of threads (the passes are
        // batch-invariant: `nn::tests::passes_are_batch_invariant`).
        let one = run(&m, &mut Pool::new(1), &restarted, &x, &y, 1).unwrap();
        let three = run(&m, &mut Pool::new(3), &restarted, &x, &y, 1).unwrap();
        for other in [&one, &three] {
            assert_eq!(other.success, more.success);
            assert!(
                other
                    .adversarial
                    .iter()
                    .zip(&more.adversarial)
                    .all(|(p, q)| p.to_bits() == q.to_bits())
            );
        }
        for bad in [
            Fab::targeted(0.1, 0),
            Fab::targeted(f32::NAN, 3),
            Fab {
                iters: 0,
                ..Fab::targeted(0.1, 3)
            },
            Fab {
                eta: 0.5,
                ..Fab::targeted(0.1, 3)
            },
            Fab {
                beta: 0.0,
                ..Fab::targeted(0.1, 3)
            },
            Fab {
                beta: f32::NAN,
                ..Fab::targeted(0.1, 3)
            },
            Fab {
                eta: f32::NAN,
                ..Fab::targeted(0.1, 3)
            },
            Fab {
                alpha_max: 1.5,
                ..Fab::targeted(0.1, 3)
            },
        ] {
            assert!(
                run(&m, &mut Pool::new(1), &bad, &x, &y, 0).is_err(),
                "{bad:?}"
            );
        }
        assert!(run(&m, &mut Pool::new(1), &Fab::targeted(0.1, 10), &x, &y, 0).is_err());
        // Under L2: inside the L2 ball and the bounds, honest, and the same for any threads.
        let l2 = Fab {
            norm: Norm::L2,
            iters: 20,
            restarts: 2,
            ..Fab::targeted(0.5, 3)
        };
        let two = run(&m, &mut Pool::new(2), &l2, &x, &y, 1).unwrap();
        let one = run(&m, &mut Pool::new(1), &l2, &x, &y, 1).unwrap();
        for d in distances(Norm::L2, &x, &two.adversarial, 784) {
            assert!(d <= 0.5 + 1e-6, "{d}");
        }
        assert!(two.adversarial.iter().all(|v| (0.0..=1.0).contains(v)));
        let pred = m.predict(&mut Pool::new(1), &two.adversarial, n).unwrap();
        for i in 0..n {
            assert_eq!(two.success[i], pred[i] != y[i], "example {i}");
        }
        assert!(broken(&two.success) > n / 8, "FAB-T L2 breaks something");
        assert_eq!(one.success, two.success);
        assert!(
            one.adversarial
                .iter()
                .zip(&two.adversarial)
                .all(|(p, q)| p.to_bits() == q.to_bits())
        );
    }
}
