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
use crate::nn::{Model, ModelError, Pool};
use crate::rng::Rng;

/// A model seen only through its logits: a process behind a pipe, a remote service, or an ONNX
/// graph Warden cannot run itself. Inputs are channels-last, like every input in this crate.
pub trait Oracle {
    /// `[channels, height, width]` of one input.
    fn input(&self) -> [usize; 3];
    /// Number of classes (logits per input).
    fn classes(&self) -> usize;
    /// Writes the logits of `n` inputs (`x` is `n × c·h·w`) to `out` (`n × classes`), or says why
    /// it could not.
    fn logits(&mut self, x: &[f32], n: usize, out: &mut Vec<f32>) -> Result<(), String>;
}

/// Largest number of inputs sent to an oracle in one query batch.
pub const ORACLE_BATCH: usize = 256;

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
    let classes = model.classes();
    run_sharded(model, pool, x, y, |ws, first, xs, ys, adv, ok| {
        let mut forward = |batch: &[f32], n: usize, out: &mut Vec<f32>| {
            let logits = model.forward(ws, batch, n).map_err(|e| e.to_string())?;
            out.clear();
            out.extend_from_slice(logits);
            Ok(())
        };
        // The engine's own model cannot fail on validated inputs.
        let _ = shard(
            &mut forward,
            classes,
            a,
            (c, h, w),
            xs,
            ys,
            first,
            seed,
            adv,
            ok,
        );
    })
}

/// Runs Square against an [`Oracle`], `ORACLE_BATCH` examples at a time, on one thread (the
/// oracle is the bottleneck). Randomness is drawn per example index, so the result equals
/// [`run`]'s on a model that answers the same logits.
pub fn run_oracle(
    oracle: &mut dyn Oracle,
    a: &Square,
    x: &[f32],
    y: &[u8],
    seed: u64,
) -> Result<AttackOutput, String> {
    a.validate()?;
    let [c, h, w] = oracle.input();
    let classes = oracle.classes();
    let len = c * h * w;
    let n = y.len();
    if len == 0 || x.len() != n * len {
        return Err(format!("{} values for {n} inputs of {len}", x.len()));
    }
    if let Some(&bad) = y.iter().find(|&&l| usize::from(l) >= classes) {
        return Err(format!("label {bad} for an oracle of {classes} classes"));
    }
    if x.iter().any(|v| !v.is_finite() || *v < a.lo || *v > a.hi) {
        return Err(format!(
            "inputs must be finite and inside [{}, {}]",
            a.lo, a.hi
        ));
    }
    let mut adversarial = x.to_vec();
    let mut success = vec![false; n];
    let mut forward = |batch: &[f32], k: usize, out: &mut Vec<f32>| {
        oracle.logits(batch, k, out)?;
        if out.len() != k * classes || out.iter().any(|v| !v.is_finite()) {
            return Err(format!(
                "the oracle answered {} values for {k} inputs of {classes} classes, or non-finite ones",
                out.len()
            ));
        }
        Ok(())
    };
    for start in (0..n).step_by(ORACLE_BATCH) {
        let end = (start + ORACLE_BATCH).min(n);
        shard(
            &mut forward,
            classes,
            a,
            (c, h, w),
            &x[start * len..end * len],
            &y[start..end],
            start,
            seed,
            &mut adversarial[start * len..end * len],
            &mut success[start..end],
        )?;
    }
    Ok(AttackOutput {
        adversarial,
        success,
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

/// Logits of `n` inputs into the buffer, or why not.
type Forward<'f> = dyn FnMut(&[f32], usize, &mut Vec<f32>) -> Result<(), String> + 'f;

#[allow(clippy::too_many_arguments)]
fn shard(
    forward: &mut Forward<'_>,
    classes: usize,
    a: &Square,
    (c, h, w): (usize, usize, usize),
    x: &[f32],
    y: &[u8],
    first: usize,
    seed: u64,
    adv: &mut [f32],
    ok: &mut [bool],
) -> Result<(), String> {
    let len = c * h * w;
    let n = y.len();
    let mut logits = Vec::new();
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
    forward(adv, n, &mut logits)?;
    margins(&logits, y, classes, &mut best);
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
        forward(&cand, active.len(), &mut logits)?;
        margins(&logits, &cy, classes, &mut m);
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
    forward(adv, n, &mut logits)?;
    for (i, row) in logits.chunks_exact(classes).enumerate() {
        ok[i] = crate::nn::argmax(row) != usize::from(y[i]);
    }
    Ok(())
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

    /// An oracle that answers a model's logits; optionally lies about the count or sends NaN.
    struct ModelOracle {
        m: Model,
        ws: crate::nn::Workspace,
        queries: usize,
        broken: bool,
    }

    impl Oracle for ModelOracle {
        fn input(&self) -> [usize; 3] {
            self.m.arch().input
        }
        fn classes(&self) -> usize {
            self.m.classes()
        }
        fn logits(&mut self, x: &[f32], n: usize, out: &mut Vec<f32>) -> Result<(), String> {
            self.queries += n;
            let l = self
                .m
                .forward(&mut self.ws, x, n)
                .map_err(|e| e.to_string())?;
            out.clear();
            out.extend_from_slice(l);
            if self.broken {
                out[0] = f32::NAN;
            }
            Ok(())
        }
    }

    /// Through an oracle, Square finds the same points as on the model itself (randomness per
    /// example index), batch size and threads notwithstanding; a lying oracle is an error.
    #[test]
    fn oracle_runs_equal_white_box_runs() {
        let m = Model::init(&Arch::small_cnn(), 6).unwrap();
        let mut rng = Rng::new(4);
        let n = ORACLE_BATCH + 7;
        let x: Vec<f32> = (0..n * 784).map(|_| rng.uniform() as f32).collect();
        let y: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
        let a = Square::new(0.05, 30);
        let want = run(&m, &mut Pool::new(2), &a, &x, &y, 9).unwrap();
        let mut o = ModelOracle {
            m: m.clone(),
            ws: Default::default(),
            queries: 0,
            broken: false,
        };
        let got = run_oracle(&mut o, &a, &x, &y, 9).unwrap();
        assert_eq!(got.adversarial, want.adversarial);
        assert_eq!(got.success, want.success);
        assert!(o.queries >= n && o.queries <= n * (a.queries + 2));
        o.broken = true;
        assert!(
            run_oracle(&mut o, &a, &x, &y, 9)
                .unwrap_err()
                .contains("non-finite")
        );
        o.broken = false;
        assert!(run_oracle(&mut o, &a, &x[1..], &y, 9).is_err());
        let bad_label = vec![10u8; n];
        assert!(run_oracle(&mut o, &a, &x, &bad_label, 9).is_err());
    }
}
