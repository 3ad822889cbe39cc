//! Square Attack (Andriushchenko et al., ECCV 2020), L∞ and L2: a score-based black-box attack
//! that needs only the model's logits, never a gradient. It is the check that a defence has not
//! merely hidden its gradients (gradient masking makes gradient attacks fail while Square still
//! succeeds), and the attack for models whose gradients cannot be taken.
//!
//! Each query changes the current point inside one random square window and keeps the change when
//! the margin loss `z_y − max_{i≠y} z_i` falls. The window's share of the image starts at `p_init`
//! and halves on AutoAttack's schedule (after 10, 50, 200, 500, 1000, 2000, 4000, 6000 and 8000 of
//! 10,000 queries, scaled to the query budget).
//!
//! - **L∞.** Start: vertical stripes of ±eps (one random sign per column and channel). A query sets
//!   every channel of the window to a random ±eps.
//! - **L2** (the paper's Algorithm 3). The perturbation is built from *pseudo-Gaussian* patches:
//!   concentric squares whose weights grow towards the centre (`Σ_{k ≥ d} 1/(k+1)²` at Chebyshev
//!   distance `d` from it), and the *meta* patch, which puts one on each half of a square with
//!   opposite signs (turned by a quarter at random). Start: a grid of meta patches of a fifth of
//!   the image's side, each with a random sign per channel, scaled to L2 length eps. A query draws
//!   two windows; per channel, the mass the perturbation has in both is moved into the first as a
//!   new meta patch of random sign added to the first window's old direction (with any room left
//!   under eps shared out), the second window is cleared, and the whole perturbation is scaled
//!   back to length eps. Every point is clipped to the bounds, so its length is at most eps.

use serde::{Deserialize, Serialize};

use crate::attack::{AttackOutput, Norm, check_inputs};
use crate::net::{Compute, Network};
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

/// Square, untargeted, on `channels × height × width` images (channels-last values).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Square {
    /// The threat model: the norm of `eps`.
    #[serde(default)]
    pub norm: Norm,
    pub eps: f32,
    /// Queries per example (each one forward pass), after the first.
    pub queries: usize,
    /// Initial fraction of the image a window covers.
    pub p_init: f32,
    pub lo: f32,
    pub hi: f32,
}

impl Square {
    /// Square under L∞. AutoAttack's setting for its standard version is 5,000 queries with
    /// `p_init` 0.8, under either norm (set `norm` for L2).
    pub fn new(eps: f32, queries: usize) -> Square {
        Square {
            norm: Norm::Linf,
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
    run_on(&mut Compute::Cpu { model, pool }, a, x, y, seed)
}

/// [`run`] on any engine (logits only).
pub fn run_on(
    c: &mut Compute<'_>,
    a: &Square,
    x: &[f32],
    y: &[u8],
    seed: u64,
) -> Result<AttackOutput, ModelError> {
    a.validate().map_err(ModelError::Input)?;
    check_inputs(c, x, y, a.lo, a.hi)?;
    let [ch, h, w] = c.input();
    let classes = c.classes();
    c.run_sharded(x, y, |net, first, xs, ys, adv, ok| {
        // The network's own error, rather than its message, is what the run returns.
        let mut failure = None;
        let mut forward = |batch: &[f32], n: usize, out: &mut Vec<f32>| match net.logits(batch, n) {
            Ok(logits) => {
                out.clear();
                out.extend_from_slice(logits);
                Ok(())
            }
            Err(e) => {
                let msg = e.to_string();
                failure = Some(e);
                Err(msg)
            }
        };
        let r = shard(
            &mut forward,
            classes,
            a,
            (ch, h, w),
            xs,
            ys,
            first,
            seed,
            adv,
            ok,
        );
        r.map_err(|msg| failure.take().unwrap_or(ModelError::Input(msg)))
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
    if oracle.input().contains(&0) || oracle.classes() == 0 {
        return Err("an oracle with an empty input or no classes".into());
    }
    let mut net = OracleNet {
        oracle,
        logits: Vec::new(),
    };
    let mut c = Compute::Device {
        net: &mut net,
        chunk: ORACLE_BATCH,
    };
    run_on(&mut c, a, x, y, seed).map_err(|e| e.to_string())
}

/// An oracle as a network that answers logits only (Square needs nothing else).
struct OracleNet<'a> {
    oracle: &'a mut dyn Oracle,
    logits: Vec<f32>,
}

impl Network for OracleNet<'_> {
    fn input(&self) -> [usize; 3] {
        self.oracle.input()
    }
    fn classes(&self) -> usize {
        self.oracle.classes()
    }
    fn forward(&mut self, x: &[f32], n: usize) -> Result<&[f32], ModelError> {
        self.oracle
            .logits(x, n, &mut self.logits)
            .map_err(ModelError::Engine)?;
        Ok(&self.logits)
    }
    fn input_grad(&mut self, _: &[f32], _: &[f32]) -> Result<&[f32], ModelError> {
        Err(ModelError::Engine("an oracle answers no gradients".into()))
    }
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
    let mut l2 = L2Scratch::default();
    for (i, rng) in rngs.iter_mut().enumerate() {
        let (x0, xa) = (&x[i * len..(i + 1) * len], &mut adv[i * len..(i + 1) * len]);
        match a.norm {
            Norm::Linf => stripes(a, (c, h, w), rng, x0, xa),
            Norm::L2 => l2_start(a, (c, h, w), rng, x0, xa, &mut l2),
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
        let side = window_side(a.norm, p, h, w);
        cand.clear();
        cy.clear();
        for &i in &active {
            let rng = &mut rngs[i];
            let start = cand.len();
            cand.extend_from_slice(&adv[i * len..(i + 1) * len]);
            let img = &mut cand[start..];
            let x0 = &x[i * len..(i + 1) * len];
            match a.norm {
                Norm::Linf => linf_query(a, (c, h, w), side, rng, x0, img),
                Norm::L2 => l2_query(a, (c, h, w), side, rng, x0, img, &mut l2),
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

/// The side of the query window for the share `p` of an `h × w` image: under L∞ at least 1,
/// under L2 at least 3 and odd (so the meta patch has a centre); at most the image's side less one
/// where the image allows.
fn window_side(norm: Norm, p: f32, h: usize, w: usize) -> usize {
    let side = ((p as f64) * (h * w) as f64).sqrt().round() as usize;
    let top = h.min(w).saturating_sub(1).max(1);
    match norm {
        Norm::Linf => side.clamp(1, top),
        // `| 1` makes an even side the odd one above it.
        Norm::L2 => (side.max(3) | 1).min(top),
    }
}

/// The top-left corner of a random `side × side` window inside an `h × w` image.
fn corner(rng: &mut Rng, h: usize, w: usize, side: usize) -> (usize, usize) {
    (
        rng.below((h - side + 1) as u64) as usize,
        rng.below((w - side + 1) as u64) as usize,
    )
}

/// L∞ start: vertical stripes of ±eps, one sign per (column, channel), channels-last.
fn stripes(
    a: &Square,
    (c, h, w): (usize, usize, usize),
    rng: &mut Rng,
    x0: &[f32],
    xa: &mut [f32],
) {
    let signs: Vec<f32> = (0..w * c)
        .map(|_| if rng.below(2) == 0 { -a.eps } else { a.eps })
        .collect();
    for row in 0..h {
        for col in 0..w {
            for ch in 0..c {
                let k = (row * w + col) * c + ch;
                xa[k] = (x0[k] + signs[col * c + ch]).clamp(a.lo, a.hi);
            }
        }
    }
}

/// L∞ query: every channel of one random window set to a random ±eps around the original; the
/// signs are drawn again (up to 10 times) while they would leave the image unchanged, so that no
/// query is wasted.
fn linf_query(
    a: &Square,
    (c, h, w): (usize, usize, usize),
    side: usize,
    rng: &mut Rng,
    x0: &[f32],
    img: &mut [f32],
) {
    let (r0, c0) = corner(rng, h, w, side);
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
}

/// A `rows × cols` pseudo-Gaussian patch, row-major, of unit L2 length: concentric squares
/// around the centre `(rows/2, cols/2)`, the `k`-th (Chebyshev radius `k`) adding `1/(k+1)²`, so a
/// cell at distance `d` holds `Σ_{k=d}^{K−1} 1/(k+1)²` with `K = max(rows/2, cols/2) + 1`.
fn pseudo_gaussian(rows: usize, cols: usize, out: &mut Vec<f32>) {
    out.clear();
    let k_max = rows.max(cols) / 2 + 1;
    let (cr, cc) = (rows / 2, cols / 2);
    for r in 0..rows {
        for s in 0..cols {
            let d = r.abs_diff(cr).max(s.abs_diff(cc));
            let v: f64 = (d..k_max).map(|k| 1.0 / ((k + 1) * (k + 1)) as f64).sum();
            out.push(v as f32);
        }
    }
    normalise(out);
}

/// The meta patch of side `s`, row-major, unit L2 length: a pseudo-Gaussian patch on the first
/// `s/2` rows, its negative on the others, turned by a quarter (transposed) with probability 1/2.
fn meta_patch(s: usize, rng: &mut Rng, out: &mut Vec<f32>, tmp: &mut Vec<f32>) {
    out.clear();
    out.resize(s * s, 0.0);
    let top = s / 2;
    pseudo_gaussian(top, s, tmp);
    out[..top * s].copy_from_slice(tmp);
    pseudo_gaussian(s - top, s, tmp);
    for (o, t) in out[top * s..].iter_mut().zip(tmp.iter()) {
        *o = -t;
    }
    normalise(out);
    if rng.below(2) == 1 {
        for r in 0..s {
            for q in r + 1..s {
                out.swap(r * s + q, q * s + r);
            }
        }
    }
}

fn normalise(v: &mut [f32]) {
    let norm = v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    if norm > 0.0 {
        for x in v.iter_mut() {
            *x = (f64::from(*x) / norm) as f32;
        }
    }
}

/// Reused buffers of the L2 updates.
#[derive(Default)]
struct L2Scratch {
    delta: Vec<f32>,
    patch: Vec<f32>,
    tmp: Vec<f32>,
    new: Vec<f32>,
}

/// `xa = clip(x0 + delta · eps/‖delta‖)`: the perturbation scaled to L2 length eps, then clipped
/// to the bounds (which can only shorten it).
fn place(a: &Square, x0: &[f32], delta: &[f32], xa: &mut [f32]) {
    let norm = delta
        .iter()
        .map(|v| f64::from(*v).powi(2))
        .sum::<f64>()
        .sqrt();
    let scale = if norm > 0.0 {
        f64::from(a.eps) / norm
    } else {
        0.0
    };
    for ((o, &v), &d) in xa.iter_mut().zip(x0).zip(delta) {
        *o = ((f64::from(v) + f64::from(d) * scale) as f32).clamp(a.lo, a.hi);
    }
}

/// L2 start: a grid of meta patches of side `h/5` (at least 1), centred in the image, each with
/// a random sign per channel, scaled to length eps.
fn l2_start(
    a: &Square,
    (c, h, w): (usize, usize, usize),
    rng: &mut Rng,
    x0: &[f32],
    xa: &mut [f32],
    l2: &mut L2Scratch,
) {
    let s = (h / 5).max(1);
    let (tiles_r, tiles_c) = (h / s, w / s);
    let (off_r, off_c) = ((h - s * tiles_r) / 2, (w - s * tiles_c) / 2);
    l2.delta.clear();
    l2.delta.resize(c * h * w, 0.0);
    for tr in 0..tiles_r {
        for tc in 0..tiles_c {
            meta_patch(s, rng, &mut l2.patch, &mut l2.tmp);
            for ch in 0..c {
                let sign = if rng.below(2) == 0 { -1.0 } else { 1.0 };
                for r in 0..s {
                    for q in 0..s {
                        let (row, col) = (off_r + tr * s + r, off_c + tc * s + q);
                        l2.delta[(row * w + col) * c + ch] = sign * l2.patch[r * s + q];
                    }
                }
            }
        }
    }
    place(a, x0, &l2.delta, xa);
}

/// L2 query on the current point `img` (updated in place): see the module's description.
#[allow(clippy::too_many_arguments)]
fn l2_query(
    a: &Square,
    (c, h, w): (usize, usize, usize),
    s: usize,
    rng: &mut Rng,
    x0: &[f32],
    img: &mut [f32],
    l2: &mut L2Scratch,
) {
    let (r1, c1) = corner(rng, h, w, s);
    let (r2, c2) = corner(rng, h, w, s);
    let in_first =
        |row: usize, col: usize| (r1..r1 + s).contains(&row) && (c1..c1 + s).contains(&col);
    let in_second =
        |row: usize, col: usize| (r2..r2 + s).contains(&row) && (c2..c2 + s).contains(&col);
    l2.delta.clear();
    l2.delta.extend(img.iter().zip(x0).map(|(p, q)| p - q));
    let total2: f64 = l2.delta.iter().map(|v| f64::from(*v).powi(2)).sum();
    let room2 = (f64::from(a.eps).powi(2) - total2).max(0.0) / c as f64;
    meta_patch(s, rng, &mut l2.patch, &mut l2.tmp);
    for ch in 0..c {
        // The channel's mass in the first window, and in both windows together.
        let (mut first2, mut both2) = (0.0f64, 0.0f64);
        for row in 0..h {
            for col in 0..w {
                let (f, b) = (in_first(row, col), in_second(row, col));
                if f || b {
                    let v = f64::from(l2.delta[(row * w + col) * c + ch]).powi(2);
                    both2 += v;
                    if f {
                        first2 += v;
                    }
                }
            }
        }
        let first = first2.sqrt();
        let sign = if rng.below(2) == 0 { -1.0f64 } else { 1.0 };
        l2.new.clear();
        for r in 0..s {
            for q in 0..s {
                let old = f64::from(l2.delta[((r1 + r) * w + c1 + q) * c + ch]) / (first + 1e-12);
                l2.new
                    .push((sign * f64::from(l2.patch[r * s + q]) + old) as f32);
            }
        }
        let len = l2
            .new
            .iter()
            .map(|v| f64::from(*v).powi(2))
            .sum::<f64>()
            .sqrt();
        let scale = if len > 0.0 {
            (room2 + both2).sqrt() / len
        } else {
            0.0
        };
        for row in r2..r2 + s {
            for col in c2..c2 + s {
                l2.delta[(row * w + col) * c + ch] = 0.0;
            }
        }
        for r in 0..s {
            for q in 0..s {
                l2.delta[((r1 + r) * w + c1 + q) * c + ch] =
                    (f64::from(l2.new[r * s + q]) * scale) as f32;
            }
        }
    }
    place(a, x0, &l2.delta, img);
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

    /// The L2 patches: unit length; the pseudo-Gaussian patch peaks at its centre and falls off
    /// in concentric squares; the meta patch has opposite signs on its halves.
    #[test]
    fn l2_patches_have_their_shape() {
        let mut p = Vec::new();
        pseudo_gaussian(5, 5, &mut p);
        let len = p.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((len - 1.0).abs() < 1e-6);
        // Centre 1 + 1/4 + 1/9, ring 1/4 + 1/9, border 1/9, in proportion.
        assert!((p[12] / p[0] - (1.0 + 0.25 + 1.0 / 9.0) / (1.0 / 9.0)).abs() < 1e-4);
        assert!((p[6] / p[0] - (0.25 + 1.0 / 9.0) / (1.0 / 9.0)).abs() < 1e-4);
        assert_eq!(p[6], p[8]);
        assert_eq!(p[0], p[24]);
        let (mut m, mut tmp) = (Vec::new(), Vec::new());
        let mut rng = Rng::new(1);
        let mut turned = 0;
        for _ in 0..20 {
            meta_patch(7, &mut rng, &mut m, &mut tmp);
            let len = m.iter().map(|v| v * v).sum::<f32>().sqrt();
            assert!((len - 1.0).abs() < 1e-5);
            // Rows 0..3 positive and 3..7 negative, or the same by columns.
            let by_rows = m[..21].iter().all(|v| *v > 0.0) && m[21..].iter().all(|v| *v < 0.0);
            let by_cols = (0..7).all(|r| m[r * 7..r * 7 + 3].iter().all(|v| *v > 0.0))
                && (0..7).all(|r| m[r * 7 + 3..r * 7 + 7].iter().all(|v| *v < 0.0));
            assert!(by_rows ^ by_cols);
            turned += usize::from(by_cols);
        }
        assert!(turned > 2 && turned < 18, "{turned}");
        assert_eq!(window_side(Norm::L2, 0.8, 28, 28), 25);
        assert_eq!(window_side(Norm::L2, 0.8 / 512.0, 28, 28), 3);
        assert_eq!(window_side(Norm::L2, 0.2, 28, 28), 13);
        assert_eq!(window_side(Norm::Linf, 0.8 / 512.0, 28, 28), 1);
    }

    /// Square under L2: every point inside the L2 ball and the bounds, the start exactly eps long
    /// where the bounds do not clip, `success` exactly "misclassified there", a random CNN broken
    /// at a moderate budget, the same points for any number of threads, and nothing broken on a
    /// linear model below its exact boundary distance while something is above it.
    #[test]
    fn l2_stays_in_the_ball_and_breaks_a_random_model() {
        let m = Model::init(&Arch::small_cnn(), 6).unwrap();
        let mut rng = Rng::new(2);
        let n = 20;
        let x: Vec<f32> = (0..n * 784)
            .map(|_| 0.1 + 0.8 * rng.uniform() as f32)
            .collect();
        let y: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
        let a = Square {
            norm: Norm::L2,
            ..Square::new(1.0, 200)
        };
        let (mid, mut start) = (vec![0.5f32; 784], vec![0.0f32; 784]);
        let mut scratch = L2Scratch::default();
        l2_start(
            &a,
            (1, 28, 28),
            &mut Rng::new(3),
            &mid,
            &mut start,
            &mut scratch,
        );
        let d0 = distances(Norm::L2, &mid, &start, 784)[0];
        assert!((d0 - 1.0).abs() < 1e-4, "{d0}");
        let out = run(&m, &mut Pool::new(2), &a, &x, &y, 3).unwrap();
        for d in distances(Norm::L2, &x, &out.adversarial, 784) {
            assert!(d <= 1.0 + 1e-5, "{d}");
        }
        assert!(out.adversarial.iter().all(|v| (0.0..=1.0).contains(v)));
        let pred = m.predict(&mut Pool::new(1), &out.adversarial, n).unwrap();
        for i in 0..n {
            assert_eq!(out.success[i], pred[i] != y[i]);
        }
        assert!(
            out.success.iter().filter(|s| **s).count() >= n * 9 / 10,
            "a random CNN falls to L2 1.0"
        );
        let again = run(&m, &mut Pool::new(1), &a, &x, &y, 3).unwrap();
        assert_eq!(again.adversarial, out.adversarial);

        // A linear model: class 1 reads a 6×6 block and wins once the block's sum rises by 3 from
        // 18 (every pixel at 0.5); the shortest L2 step is 1/12 on each of its 36 pixels, of
        // length 6/12 = 0.5.
        let mut lin = Model::zeros(&Arch::mlp(&[])).unwrap();
        {
            let p = lin.params_mut();
            for r in 8..14 {
                for c in 8..14 {
                    p[0][784 + r * 28 + c] = 1.0;
                }
            }
            p[1][0] = 21.0;
        }
        let x = vec![0.5f32; 4 * 784];
        let y = vec![0u8; 4];
        let below = Square {
            norm: Norm::L2,
            ..Square::new(0.49, 500)
        };
        let out = run(&lin, &mut Pool::new(1), &below, &x, &y, 1).unwrap();
        assert!(out.success.iter().all(|s| !s), "nothing below the boundary");
        let above = Square {
            norm: Norm::L2,
            ..Square::new(1.5, 500)
        };
        let out = run(&lin, &mut Pool::new(1), &above, &x, &y, 1).unwrap();
        assert!(
            out.success.iter().all(|s| *s),
            "everything at 3× the distance"
        );
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
