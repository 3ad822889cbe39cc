//! Square Attack (Andriushchenko et al., ECCV 2020), L∞: a score-based black-box attack that
//! needs only the model's logits, never a gradient. It is the check that a defence has not merely
//! hidden its gradients (gradient masking makes gradient attacks fail while Square still succeeds),
//! and the attack for models whose gradients cannot be taken.
//!
//! Start: vertical stripes of ±eps (one random sign per column and channel). Each query changes one
//! random square window, every channel of it set to a random ±eps, and keeps the change when the
//! margin loss `z_y − max_{i≠y} z_i` falls. The window's share of the image starts at `p_init` and
//! halves on AutoAttack's schedule (after 10, 50, 200, 500, 1000, 2000, 4000, 6000 and 8000 of
//! 10,000 queries, scaled to the query budget).

use serde::{Deserialize, Serialize};

use crate::attack::{AttackOutput, check_inputs, run_sharded};
use crate::nn::{Model, ModelError, Pool, Workspace};
use crate::rng::Rng;

/// Square under L∞, untargeted, on `channels × height × width` images (channels-last values).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Square {
    pub eps: f32,
    /// Queries per example (each one forward pass), after the first.
    pub queries: usize,
    /// Initial fraction of the image a window covers.
    pub p_init: f32,
    pub lo: f32,
    pub hi: f32,
}

impl Square {
    /// AutoAttack's setting for its standard version is 5,000 queries with `p_init` 0.8.
    pub fn new(eps: f32, queries: usize) -> Square {
        Square {
            eps,
            queries,
            p_init: 0.8,
            lo: 0.0,
            hi: 1.0,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        let finite = [self.eps, self.p_init, self.lo, self.hi]
            .iter()
            .all(|v| v.is_finite());
        if !finite
            || self.eps < 0.0
            || self.lo >= self.hi
            || !(0.0..=1.0).contains(&self.p_init)
            || self.p_init == 0.0
        {
            return Err("Square parameters out of range".into());
        }
        if !(1..=100_000).contains(&self.queries) {
            return Err("Square: queries 1..=100000".into());
        }
        Ok(())
    }

    fn p_at(&self, it: usize) -> f32 {
        let t = (it as f64 / self.queries as f64 * 10_000.0) as usize;
        let halvings = [10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000]
            .iter()
            .filter(|&&b| t > b)
            .count();
        self.p_init / (1u32 << halvings) as f32
    }
}

/// Runs Square on `n` examples of a model with input `[c, h, w]`, sharded over the pool.
pub fn run(
    model: &Model,
    pool: &mut Pool,
    a: &Square,
    x: &[f32],
    y: &[u8],
    seed: u64,
) -> Result<AttackOutput, ModelError> {
    a.validate().map_err(ModelError::Input)?;
    check_inputs(model, x, y, a.lo, a.hi)?;
    let [c, h, w] = model.arch().input;
    run_sharded(model, pool, x, y, |ws, first, xs, ys, adv, ok| {
        shard(model, ws, a, (c, h, w), xs, ys, first, seed, adv, ok)
    })
}

fn margins(logits: &[f32], y: &[u8], classes: usize, out: &mut Vec<f32>) {
    out.clear();
    for (row, &yy) in logits.chunks_exact(classes).zip(y) {
        let yi = usize::from(yy);
        let other = row
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != yi)
            .map(|(_, v)| *v)
            .fold(f32::NEG_INFINITY, f32::max);
        out.push(row[yi] - other);
    }
}

#[allow(clippy::too_many_arguments)]
fn shard(
    model: &Model,
    ws: &mut Workspace,
    a: &Square,
    (c, h, w): (usize, usize, usize),
    x: &[f32],
    y: &[u8],
    first: usize,
    seed: u64,
    adv: &mut [f32],
    ok: &mut [bool],
) {
    let len = c * h * w;
    let n = y.len();
    let classes = model.classes();
    let mut rngs: Vec<Rng> = (0..n)
        .map(|i| Rng::stream(seed ^ 0x5a0a, (first + i) as u64, 0))
        .collect();
    // Vertical stripes: one sign per (column, channel), channels-last layout.
    for (i, rng) in rngs.iter_mut().enumerate() {
        let signs: Vec<f32> = (0..w * c)
            .map(|_| if rng.below(2) == 0 { -a.eps } else { a.eps })
            .collect();
        for row in 0..h {
            for col in 0..w {
                for ch in 0..c {
                    let k = i * len + (row * w + col) * c + ch;
                    adv[k] = (x[k] + signs[col * c + ch]).clamp(a.lo, a.hi);
                }
            }
        }
    }
    let mut best = Vec::new();
    let Ok(logits) = model.forward(ws, adv, n) else {
        return;
    };
    margins(logits, y, classes, &mut best);
    let mut active: Vec<usize> = (0..n).filter(|&i| best[i] > 0.0).collect();
    for (o, b) in ok.iter_mut().zip(&best) {
        *o = *b <= 0.0;
    }
    let (mut cand, mut cy, mut m) = (Vec::new(), Vec::new(), Vec::new());
    for it in 0..a.queries {
        if active.is_empty() {
            break;
        }
        let p = a.p_at(it);
        let side = (((p as f64) * (h * w) as f64).sqrt().round() as usize)
            .clamp(1, h.min(w).saturating_sub(1).max(1));
        cand.clear();
        cy.clear();
        for &i in &active {
            let rng = &mut rngs[i];
            let (r0, c0) = (
                rng.below((h - side + 1) as u64) as usize,
                rng.below((w - side + 1) as u64) as usize,
            );
            let start = cand.len();
            cand.extend_from_slice(&adv[i * len..(i + 1) * len]);
            let img = &mut cand[start..];
            let x0 = &x[i * len..(i + 1) * len];
            // New signs for the window; drawn again (up to 10 times) while they would leave the
            // image unchanged, as the reference implementation does, so no query is wasted.
            for _ in 0..10 {
                let mut changed = false;
                for ch in 0..c {
                    let v = if rng.below(2) == 0 { -a.eps } else { a.eps };
                    for row in r0..r0 + side {
                        for col in c0..c0 + side {
                            let k = (row * w + col) * c + ch;
                            let nv = (x0[k] + v).clamp(a.lo, a.hi);
                            changed |= nv != img[k];
                            img[k] = nv;
                        }
                    }
                }
                if changed {
                    break;
                }
            }
            cy.push(y[i]);
        }
        let Ok(logits) = model.forward(ws, &cand, active.len()) else {
            return;
        };
        margins(logits, &cy, classes, &mut m);
        for (k, &i) in active.iter().enumerate() {
            if m[k] < best[i] {
                best[i] = m[k];
                adv[i * len..(i + 1) * len].copy_from_slice(&cand[k * len..(k + 1) * len]);
                if m[k] <= 0.0 {
                    ok[i] = true;
                }
            }
        }
        active.retain(|&i| !ok[i]);
    }
    // A margin of exactly zero is a tie the arg-max may resolve either way: report what the model
    // predicts on the returned point.
    if let Ok(logits) = model.forward(ws, adv, n) {
        for (i, row) in logits.chunks_exact(classes).enumerate() {
            ok[i] = crate::nn::argmax(row) != usize::from(y[i]);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::attack::{Norm, distances};
    use crate::nn::Arch;

    #[test]
    fn stays_in_bounds_breaks_a_random_model_and_is_deterministic() {
        let m = Model::init(&Arch::small_cnn(), 6).unwrap();
        let mut rng = Rng::new(2);
        let n = 20;
        let x: Vec<f32> = (0..n * 784).map(|_| rng.uniform() as f32).collect();
        let y: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
        let a = Square::new(0.1, 200);
        let out = run(&m, &mut Pool::new(2), &a, &x, &y, 3).unwrap();
        for d in distances(Norm::Linf, &x, &out.adversarial, 784) {
            assert!(d <= 0.1 + 1e-6);
        }
        assert!(out.adversarial.iter().all(|v| (0.0..=1.0).contains(v)));
        let pred = m.predict(&mut Pool::new(1), &out.adversarial, n).unwrap();
        for i in 0..n {
            assert_eq!(out.success[i], pred[i] != y[i]);
        }
        assert!(
            out.success.iter().filter(|s| **s).count() >= n * 9 / 10,
            "a random CNN falls to eps 0.1"
        );
        let again = run(&m, &mut Pool::new(1), &a, &x, &y, 3).unwrap();
        assert_eq!(
            again.adversarial, out.adversarial,
            "same points for any thread count"
        );
        assert!(run(&m, &mut Pool::new(1), &Square::new(0.1, 0), &x, &y, 3).is_err());
        assert!(
            run(
                &m,
                &mut Pool::new(1),
                &Square { p_init: 2.0, ..a },
                &x,
                &y,
                3
            )
            .is_err()
        );
        assert!((Square::new(0.1, 10_000).p_at(0) - 0.8).abs() < 1e-6);
        assert!((Square::new(0.1, 10_000).p_at(9_000) - 0.8 / 512.0).abs() < 1e-6);
    }
}
