//! Warden against PyTorch on the same fixed networks: the forward pass, the loss, the input
//! gradient, FGSM and PGD (L∞ and L2, no random start, last iterate) agree with the reference values
//! pasted below.
//!
//! The reference values come from `scripts/reference/torch_attack_reference.py` (torch 2.15.0,
//! Python 3.11.7, one CPU thread); rerun it from the repository root with
//!
//! ```text
//! /tmp/torch-venv/bin/python scripts/reference/torch_attack_reference.py
//! ```
//!
//! and paste its standard output over the body of `mod reference` at the end of this file (after
//! `use super::Summary;`); its standard error says how far the float32 and float64 PyTorch runs are
//! apart. Nothing is random: the weights and inputs are closed formulas ([`param_value`],
//! [`input_value`], evaluated here exactly as in the script, with the C library's `sin`/`cos`),
//! rounded once to f32; the per-tensor parameter sums and the input sum are checked first, so a
//! formula mismatch is reported as such rather than as a model disagreement.
//!
//! Two networks: `MINI`, a small one with every layer kind, a padded multi-channel convolution and a
//! floor-mode pooling remainder (conv 1→4 3×3, ReLU, pool 2, conv 4→6 3×3 padding 1, ReLU, pool 2,
//! linear 216→32, ReLU, linear 32→10), and `SMALL`, [`Arch::small_cnn`] itself. Weights are written
//! here in PyTorch's layout and permuted to Warden's (convolutions `[Cout, Cin, kh, kw]` →
//! `[Cout, kh, kw, Cin]`; the first linear layer after flattening a multi-channel image: columns
//! `(c, h, w)` → `(h, w, c)`), independently of the crate's own conversions, so that a layout mistake
//! on either side shows.
//!
//! The logits, loss and gradients are PyTorch's float64 values (on the float32 weights and inputs);
//! the attack summaries are PyTorch's float32 runs, which its float64 runs match exactly on every
//! class and pixel count. An L∞ step takes the sign of each gradient entry, so an entry small enough
//! for float32 rounding to flip its sign would move one pixel differently. The smallest non-zero
//! |g_i| / max |g| met on any step is 1.8e-6 (mini-cnn PGD) and 7.5e-6 (small-cnn PGD); Warden's
//! gradients differ from the float64 ones by up to ~2.6e-6 relative on small-cnn (float32
//! accumulation; PyTorch's own float32 gradient is as far), so such a flip is not excluded: the
//! pixel counts allow a difference of one per example. None occurs with these values.

#![allow(clippy::unwrap_used, clippy::print_stderr)] // Tests fail by panicking.

use warden_harden::attack::{self, Goal, Norm, Pgd};
use warden_harden::nn::{Arch, LayerSpec, Model, Pool, Workspace, argmax, softmax_xent};

use reference::*;

const N: usize = 8;
const SIDE: usize = 28;
const LEN: usize = SIDE * SIDE;
const CLASSES: usize = 10;
/// A pixel is "at +eps" when `adv - x >= eps - TOL` (in f64), as in the script.
const TOL: f64 = 1e-5;
/// A pixel "moved up" when `adv - x > MOVED` (down: `< -MOVED`), as in the script.
const MOVED: f64 = 1e-3;

/// The script's `MINI_CNN`.
fn mini_cnn() -> Arch {
    use LayerSpec::*;
    Arch {
        name: "mini-cnn".into(),
        input: [1, SIDE, SIDE],
        classes: CLASSES,
        layers: vec![
            Conv2d {
                in_channels: 1,
                out_channels: 4,
                kernel: 3,
                padding: 0,
                stride: 1,
                groups: 1,
            },
            Relu,
            MaxPool2d {
                kernel: 2,
                stride: None,
                padding: 0,
                ceil_mode: false,
            },
            Conv2d {
                in_channels: 4,
                out_channels: 6,
                kernel: 3,
                padding: 1,
                stride: 1,
                groups: 1,
            },
            Relu,
            MaxPool2d {
                kernel: 2,
                stride: None,
                padding: 0,
                ceil_mode: false,
            },
            Flatten,
            Linear {
                in_features: 216,
                out_features: 32,
            },
            Relu,
            Linear {
                in_features: 32,
                out_features: 10,
            },
        ],
    }
}

/// Entry `i` (row-major, PyTorch layout) of parameter tensor `t` (weights and biases counted in
/// order), exactly the script's `param_value`.
fn param_value(t: usize, i: usize, fan_in: usize, bias: bool) -> f32 {
    let t = t as f64;
    let f = 1.7 + 0.13 * t;
    let o = 0.5 * t + 0.3;
    let phase = f * i as f64 + 0.0137 * (i * i) as f64 + o;
    let v = if bias {
        0.1 * phase.cos()
    } else {
        2.5 * phase.sin() / (fan_in as f64).sqrt()
    };
    v as f32
}

/// Pixel `(r, c)` of example `n`, exactly the script's `input_value`.
fn input_value(n: usize, r: usize, c: usize) -> f32 {
    let (n, r, c) = (n as f64, r as f64, c as f64);
    let a = ((0.31 + 0.07 * n) * r + (0.17 - 0.05 * n) * c + 0.9 * n).sin();
    let b = ((0.23 + 0.04 * n) * c - 0.11 * r + 0.5 * n).cos();
    let v = 0.5 + 0.8 * a * b;
    v.clamp(0.0, 1.0) as f32
}

/// The batch, `N × 28 × 28 × 1` (one channel: the same memory in both layouts).
fn inputs() -> Vec<f32> {
    let mut x = Vec::with_capacity(N * LEN);
    for n in 0..N {
        for r in 0..SIDE {
            for c in 0..SIDE {
                x.push(input_value(n, r, c));
            }
        }
    }
    x
}

/// For each layer index, the `(C, H, W)` image that a linear layer right after a flatten receives.
fn flattened_images(arch: &Arch) -> Vec<Option<(usize, usize, usize)>> {
    let [mut c, mut h, mut w] = arch.input;
    let mut flat = false;
    let mut out = vec![None; arch.layers.len()];
    for (li, layer) in arch.layers.iter().enumerate() {
        match *layer {
            LayerSpec::Conv2d {
                out_channels,
                kernel,
                padding,
                stride,
                ..
            } => {
                c = out_channels;
                h = (h + 2 * padding - kernel) / stride + 1;
                w = (w + 2 * padding - kernel) / stride + 1;
            }
            LayerSpec::MaxPool2d { kernel, stride, .. }
            | LayerSpec::AvgPool2d { kernel, stride } => {
                let s = stride.unwrap_or(kernel);
                h = (h - kernel) / s + 1;
                w = (w - kernel) / s + 1;
            }
            LayerSpec::GlobalAvgPool => (h, w) = (1, 1),
            LayerSpec::Flatten => flat = true,
            LayerSpec::Linear { .. } => {
                if flat {
                    out[li] = Some((c, h, w));
                }
                flat = false;
            }
            LayerSpec::Relu
            | LayerSpec::Relu6
            | LayerSpec::Tanh
            | LayerSpec::Elu
            | LayerSpec::Silu
            | LayerSpec::Sigmoid
            | LayerSpec::HardSigmoid
            | LayerSpec::HardSwish
            | LayerSpec::Affine { .. } => {}
            LayerSpec::Residual { .. } | LayerSpec::Gate { .. } | LayerSpec::Concat { .. } => {
                unreachable!("the reference networks are chains")
            }
        }
    }
    out
}

/// The script's network in Warden: every tensor computed in PyTorch's layout, then permuted.
fn build(arch: &Arch) -> Model {
    let mut model = Model::zeros(arch).unwrap();
    let images = flattened_images(arch);
    let infos = model.param_infos().to_vec();
    let mut fan_in = 1;
    for (t, info) in infos.iter().enumerate() {
        let shape = &info.torch_shape;
        let bias = shape.len() == 1;
        if !bias {
            fan_in = shape[1..].iter().product();
        }
        let torch: Vec<f32> = (0..shape.iter().product())
            .map(|i| param_value(t, i, fan_in, bias))
            .collect();
        let layer: usize = info.name.split('.').next().unwrap().parse().unwrap();
        let ours = match (shape.as_slice(), images[layer]) {
            // Convolution: [Cout, Cin, kh, kw] → [Cout, kh, kw, Cin].
            (&[cout, cin, kh, kw], _) => {
                let mut v = vec![0.0; torch.len()];
                for o in 0..cout {
                    for ci in 0..cin {
                        for y in 0..kh {
                            for x in 0..kw {
                                v[((o * kh + y) * kw + x) * cin + ci] =
                                    torch[((o * cin + ci) * kh + y) * kw + x];
                            }
                        }
                    }
                }
                v
            }
            // First linear layer after a multi-channel flatten: columns (c, h, w) → (h, w, c).
            (&[rows, cols], Some((c, h, w))) if !bias && c > 1 => {
                assert_eq!(cols, c * h * w, "{}", info.name);
                let mut v = vec![0.0; torch.len()];
                for r in 0..rows {
                    for ci in 0..c {
                        for y in 0..h {
                            for x in 0..w {
                                v[r * cols + (y * w + x) * c + ci] =
                                    torch[r * cols + (ci * h + y) * w + x];
                            }
                        }
                    }
                }
                v
            }
            _ => torch,
        };
        model.params_mut()[t] = ours;
    }
    model
}

fn sum_f64(v: &[f32]) -> f64 {
    v.iter().map(|&x| f64::from(x)).sum()
}

/// What the script prints for each example of an attack.
#[derive(Debug, Clone, Copy)]
struct Summary {
    /// Predicted class on the last iterate.
    pred: u8,
    /// Sum of the adversarial image.
    sum: f64,
    /// Pixels at +eps / -eps from the original.
    plus: usize,
    minus: usize,
    /// Pixels moved up / down by more than `MOVED`.
    up: usize,
    down: usize,
    /// L2 and L∞ distances from the original.
    l2: f64,
    linf: f64,
}

fn summarise(model: &Model, x: &[f32], adv: &[f32], eps: f64) -> Vec<Summary> {
    let mut ws = Workspace::default();
    let logits = model.forward(&mut ws, adv, N).unwrap().to_vec();
    (0..N)
        .map(|i| {
            let d: Vec<f64> = x[i * LEN..(i + 1) * LEN]
                .iter()
                .zip(&adv[i * LEN..(i + 1) * LEN])
                .map(|(&a, &b)| f64::from(b) - f64::from(a))
                .collect();
            Summary {
                pred: argmax(&logits[i * CLASSES..(i + 1) * CLASSES]) as u8,
                sum: sum_f64(&adv[i * LEN..(i + 1) * LEN]),
                plus: d.iter().filter(|&&v| v >= eps - TOL).count(),
                minus: d.iter().filter(|&&v| v <= -eps + TOL).count(),
                up: d.iter().filter(|&&v| v > MOVED).count(),
                down: d.iter().filter(|&&v| v < -MOVED).count(),
                l2: d.iter().map(|v| v * v).sum::<f64>().sqrt(),
                linf: d.iter().fold(0.0, |m, v| v.abs().max(m)),
            }
        })
        .collect()
}

/// Largest differences seen, for the report on standard error.
#[derive(Debug, Default)]
struct Worst {
    logit_abs: f64,
    loss_rel: f64,
    grad_sum_rel_l1: f64,
    grad_l1_rel: f64,
    grad_l2_rel: f64,
    grad_entry_rel: f64,
    count: usize,
    image_sum: f64,
    l2: f64,
    linf: f64,
}

struct Reference {
    name: &'static str,
    arch: Arch,
    param_sums: &'static [f64],
    labels: &'static [u8],
    logits: &'static [f64],
    loss: f64,
    grad_sum: &'static [f64],
    grad_l1: &'static [f64],
    grad_l2: &'static [f64],
    grad_zeros: &'static [usize],
    grad_entries: &'static [(usize, usize, f64)],
    fgsm: &'static [Summary],
    pgd_linf: &'static [Summary],
    pgd_l2: &'static [Summary],
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-30)
}

fn check_attack(
    what: &str,
    model: &Model,
    x: &[f32],
    r: &Reference,
    attack: &Pgd,
    want: &[Summary],
    worst: &mut Worst,
) {
    let out = attack::run(model, &mut Pool::new(1), attack, x, r.labels, 0).unwrap();
    let adv = &out.adversarial;
    let eps = f64::from(attack.eps);
    // Whatever PyTorch says: inside the ball and the bounds.
    assert!(
        adv.iter().all(|v| (0.0..=1.0).contains(v)),
        "{what}: out of [0, 1]"
    );
    for (i, d) in attack::distances(attack.norm, x, adv, LEN)
        .into_iter()
        .enumerate()
    {
        let limit = match attack.norm {
            // x ± eps is rounded to f32: up to half an ulp of 1 beyond eps.
            Norm::Linf => attack.eps + 1e-6,
            Norm::L2 => attack.eps * (1.0 + 1e-5),
        };
        assert!(
            d <= limit,
            "{what} example {i}: distance {d} > {}",
            attack.eps
        );
    }
    let got = summarise(model, x, adv, eps);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let ctx = format!("{} {what} example {i}: warden {g:?}, torch {w:?}", r.name);
        assert_eq!(g.pred, w.pred, "{ctx}");
        // Within one: a gradient entry near zero could take the other sign in float32.
        for (a, b) in [
            (g.plus, w.plus),
            (g.minus, w.minus),
            (g.up, w.up),
            (g.down, w.down),
        ] {
            assert!(a.abs_diff(b) <= 1, "{ctx}");
            worst.count = worst.count.max(a.abs_diff(b));
        }
        assert!((g.sum - w.sum).abs() < 1e-3, "{ctx}");
        assert!((g.l2 - w.l2).abs() < 1e-3, "{ctx}");
        assert!((g.linf - w.linf).abs() < 1e-3, "{ctx}");
        worst.image_sum = worst.image_sum.max((g.sum - w.sum).abs());
        worst.l2 = worst.l2.max((g.l2 - w.l2).abs());
        worst.linf = worst.linf.max((g.linf - w.linf).abs());
        // The prediction also matches what the attack reports as a success.
        assert_eq!(out.success[i], g.pred != r.labels[i], "{ctx}");
    }
}

fn check(r: &Reference) {
    let x = inputs();
    assert!(
        (sum_f64(&x) - INPUT_SUM).abs() < 1e-9,
        "the input formula differs from the script's"
    );
    assert_eq!(x.iter().filter(|&&v| v == 0.0).count(), INPUT_ZEROS);
    assert_eq!(x.iter().filter(|&&v| v == 1.0).count(), INPUT_ONES);

    let model = build(&r.arch);
    for (t, (p, &want)) in model.params().iter().zip(r.param_sums).enumerate() {
        let got = sum_f64(p);
        assert!(
            (got - want).abs() <= 1e-9 * (1.0 + want.abs()),
            "{}: parameter {t} sums to {got}, the script's to {want}",
            r.name
        );
    }
    let mut worst = Worst::default();

    // Forward pass and loss.
    let mut ws = Workspace::default();
    let logits = model.forward(&mut ws, &x, N).unwrap().to_vec();
    for (j, (&g, &w)) in logits.iter().zip(r.logits).enumerate() {
        let d = (f64::from(g) - w).abs();
        worst.logit_abs = worst.logit_abs.max(d);
        assert!(d < 1e-4, "{} logit {j}: warden {g}, torch {w}", r.name);
    }
    let mut dlogits = Vec::new();
    let loss = softmax_xent(&logits, r.labels, CLASSES, 1.0, &mut dlogits, None);
    worst.loss_rel = rel(loss, r.loss);
    assert!(
        worst.loss_rel < 1e-4,
        "{} loss: warden {loss}, torch {}",
        r.name,
        r.loss
    );

    // Input gradient of the summed loss.
    model.backward(&mut ws, &x, &dlogits, None, true);
    let g = ws.input_grad().to_vec();
    assert_eq!(g.len(), N * LEN);
    for i in 0..N {
        let gi = &g[i * LEN..(i + 1) * LEN];
        let sum = sum_f64(gi);
        let l1: f64 = gi.iter().map(|&v| f64::from(v).abs()).sum();
        let l2: f64 = gi.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>().sqrt();
        let zeros = gi.iter().filter(|&&v| v == 0.0).count();
        let ctx = format!(
            "{} gradient of example {i}: warden sum {sum} l1 {l1} l2 {l2} zeros {zeros}, torch {} {} {} {}",
            r.name, r.grad_sum[i], r.grad_l1[i], r.grad_l2[i], r.grad_zeros[i]
        );
        // The sum cancels (it is ~1% of the L1 norm): measured against the L1 norm.
        let sum_rel = (sum - r.grad_sum[i]).abs() / r.grad_l1[i];
        worst.grad_sum_rel_l1 = worst.grad_sum_rel_l1.max(sum_rel);
        worst.grad_l1_rel = worst.grad_l1_rel.max(rel(l1, r.grad_l1[i]));
        worst.grad_l2_rel = worst.grad_l2_rel.max(rel(l2, r.grad_l2[i]));
        assert!(sum_rel < 1e-4, "{ctx}");
        assert!(rel(l1, r.grad_l1[i]) < 1e-4, "{ctx}");
        assert!(rel(l2, r.grad_l2[i]) < 1e-4, "{ctx}");
        // Pixels no path reaches (dead units, pooling losers, the pooling remainder): exactly zero
        // on both sides.
        assert_eq!(zeros, r.grad_zeros[i], "{ctx}");
    }
    for &(i, p, w) in r.grad_entries {
        let v = f64::from(g[i * LEN + p]);
        worst.grad_entry_rel = worst.grad_entry_rel.max(rel(v, w));
        assert!(
            rel(v, w) < 1e-4,
            "{} gradient of example {i} at pixel {p}: warden {v}, torch {w}",
            r.name
        );
    }

    // Attacks: the textbook trajectory (no random start, last iterate).
    let fgsm = Pgd {
        keep_first_success: false,
        ..Pgd::fgsm(Norm::Linf, 0.1)
    };
    let pgd_linf = Pgd {
        norm: Norm::Linf,
        eps: 0.1,
        step: 0.01,
        steps: 10,
        restarts: 1,
        random_start: false,
        keep_first_success: false,
        goal: Goal::Untargeted,
        lo: 0.0,
        hi: 1.0,
    };
    let pgd_l2 = Pgd {
        norm: Norm::L2,
        eps: 1.0,
        step: 0.25,
        ..pgd_linf
    };
    check_attack("FGSM", &model, &x, r, &fgsm, r.fgsm, &mut worst);
    check_attack("PGD L∞", &model, &x, r, &pgd_linf, r.pgd_linf, &mut worst);
    check_attack("PGD L2", &model, &x, r, &pgd_l2, r.pgd_l2, &mut worst);
    eprintln!("{}: largest differences from PyTorch: {worst:?}", r.name);
}

#[test]
fn mini_cnn_matches_pytorch() {
    check(&Reference {
        name: "mini-cnn",
        arch: mini_cnn(),
        param_sums: &MINI_PARAM_SUMS,
        labels: &MINI_LABELS,
        logits: &MINI_LOGITS,
        loss: MINI_LOSS,
        grad_sum: &MINI_GRAD_SUM,
        grad_l1: &MINI_GRAD_L1,
        grad_l2: &MINI_GRAD_L2,
        grad_zeros: &MINI_GRAD_ZEROS,
        grad_entries: &MINI_GRAD_ENTRIES,
        fgsm: &MINI_FGSM,
        pgd_linf: &MINI_PGD_LINF,
        pgd_l2: &MINI_PGD_L2,
    });
}

#[test]
fn small_cnn_matches_pytorch() {
    check(&Reference {
        name: "small-cnn",
        arch: Arch::small_cnn(),
        param_sums: &SMALL_PARAM_SUMS,
        labels: &SMALL_LABELS,
        logits: &SMALL_LOGITS,
        loss: SMALL_LOSS,
        grad_sum: &SMALL_GRAD_SUM,
        grad_l1: &SMALL_GRAD_L1,
        grad_l2: &SMALL_GRAD_L2,
        grad_zeros: &SMALL_GRAD_ZEROS,
        grad_entries: &SMALL_GRAD_ENTRIES,
        fgsm: &SMALL_FGSM,
        pgd_linf: &SMALL_PGD_LINF,
        pgd_l2: &SMALL_PGD_L2,
    });
}

// ---------------------------------------------------------------------------------------------
// Output of scripts/reference/torch_attack_reference.py, pasted unchanged.
// ---------------------------------------------------------------------------------------------

#[rustfmt::skip]
mod reference {
use super::Summary;

// torch 2.15.0+cu132, python 3.11.7, 1 thread
pub(crate) const INPUT_SUM: f64 = 3139.955843202537;
pub(crate) const INPUT_ZEROS: usize = 828;
pub(crate) const INPUT_ONES: usize = 845;
// ---- MINI ----
pub(crate) const MINI_PARAM_SUMS: [f64; 8] = [
    0.8205920457839966, 0.06133569963276386, 2.115476127684815, 0.010745968669652939,
    -15.617037660733331, -0.02239000261761248, -5.2276864987798035, -0.08175468817353249,
];
pub(crate) const MINI_LABELS: [u8; 8] = [
    3, 4, 0, 0, 3, 6, 3, 2,
];
pub(crate) const MINI_LOGITS: [f64; 80] = [
    1.3609379409027176, -0.18809782989066393, 1.7364170916350834, 2.7290610143680096, -3.4496895301084702,
    -0.6269026427164863, 0.6291621639378528, 1.3969829789779438, 0.9471904777454193, 2.147202042834069,
    3.0783643423573577, -0.2371880265786268, 0.9186618723329696, 2.26536418724215, -3.09014552291372,
    0.370276932814729, 2.4768438366723853, 0.21629400245107838, 0.9755415834724808, 1.1859880276157715,
    2.7063707715857372, 0.9579722753169059, 0.522753948045982, 2.3086509644786535, -3.215219608204819,
    -0.777166921399652, 1.424199320154389, 0.28842034045890946, 0.21427295099536448, 1.4000764159577717,
    1.5741069253180742, -0.11710829036915096, -0.17317635696159395, 2.638423853957533, -3.271775059367937,
    -0.43086529746719093, 1.3502922590337114, 0.026394405513608624, 0.8220385135574426, 0.38744739928566485,
    2.3921007800079828, 0.47728388135285377, -0.6117535047644056, 3.1931690638854113, -3.4893329828239565,
    -0.19465564179344552, 1.728358732004116, 1.363206377398312, 2.2221469700837386, 0.4345008427894923,
    2.2486405813293913, -0.2917434016441772, -0.5238598710475317, 3.0453482021462746, -2.409698638972486,
    0.1526099461768362, 1.669947957499669, 0.2939846190721836, 1.4036894276871577, 1.1390238992696933,
    2.2419764120085217, 0.9290661040798376, 0.35057044824086053, 2.7293033607214756, -2.2383612512436972,
    -1.3197516240366092, 0.8644322388883978, 0.7490623526773554, 1.7398344669522532, 1.0296419306930693,
    2.551720299396068, 0.48630302754551685, -0.16577741915746058, 2.7504368750527064, -2.3386449769584,
    -0.5228295245956236, 1.3661204537291598, 0.7162084356808632, 1.9246208288669615, 0.7714285258275733,
];
pub(crate) const MINI_LOSS: f64 = 19.036091647659696;
pub(crate) const MINI_GRAD_SUM: [f64; 8] = [
    -0.8850514052975686, 3.9224042314951135, -0.8709514285110869, -0.8835780130755397,
    -0.08522652900909322, -0.5133167821715139, 0.1059666657311768, 1.1250338312958073,
];
pub(crate) const MINI_GRAD_L1: [f64; 8] = [
    70.24803687151847, 112.15486268837654, 66.20879530256728, 101.99599648486844,
    47.90959162766771, 98.34455169338469, 57.608898345946386, 110.82978773912811,
];
pub(crate) const MINI_GRAD_L2: [f64; 8] = [
    3.5950500198521, 5.642581194664019, 3.256221133251018, 4.9183834564905755,
    2.3354191177513473, 4.7743790289774575, 2.846940549106942, 5.53018022937665,
];
pub(crate) const MINI_GRAD_ZEROS: [usize; 8] = [
    24, 15, 21, 12, 17, 13, 19, 10,
];
pub(crate) const MINI_GRAD_ENTRIES: [(usize, usize, f64); 24] = [
    (0, 649, 0.7696245159032885), (0, 178, 0.5977917889609576), (0, 621, 0.5742159182201227),
    (1, 574, 1.1489830748290921), (1, 602, 0.8645097353393283), (1, 172, -0.7460951115161754),
    (2, 299, -0.5099901485011761), (2, 325, 0.4402271998282364), (2, 295, -0.3881790613472697),
    (3, 471, 0.7033231670854897), (3, 573, 0.6279363483375264), (3, 150, -0.61387324499481),
    (4, 594, 0.32680035866239643), (4, 175, -0.31138050787322125), (4, 212, 0.2869296367577424),
    (5, 187, -0.8477464535634206), (5, 245, -0.7837884953971426), (5, 97, -0.6737704248528031),
    (6, 118, 0.48227554682051677), (6, 313, -0.41997552538567806), (6, 547, 0.40789284524888925),
    (7, 590, 0.9019892136453325), (7, 207, 0.7683555127231776), (7, 236, -0.7620192704762907),
];
pub(crate) const MINI_FGSM: [Summary; 8] = [
    Summary { pred: 9, sum: 400.3390807332471, plus: 293, minus: 320, up: 318, down: 340, l2: 2.500393725577891, linf: 0.10000002384185791 },
    Summary { pred: 0, sum: 377.61396764963865, plus: 310, minus: 311, up: 330, down: 335, l2: 2.517581806554548, linf: 0.10000002384185791 },
    Summary { pred: 3, sum: 390.39055517315865, plus: 310, minus: 324, up: 328, down: 341, l2: 2.5420865616860895, linf: 0.10000002384185791 },
    Summary { pred: 3, sum: 397.6257135272026, plus: 309, minus: 328, up: 333, down: 339, l2: 2.5415689303005746, linf: 0.10000002384185791 },
    Summary { pred: 8, sum: 394.323762960732, plus: 318, minus: 319, up: 337, down: 339, l2: 2.553334687784583, linf: 0.10000002384185791 },
    Summary { pred: 3, sum: 391.4982859059237, plus: 317, minus: 317, up: 332, down: 333, l2: 2.5365346958083954, linf: 0.10000002384185791 },
    Summary { pred: 0, sum: 392.4237518310547, plus: 321, minus: 309, up: 345, down: 331, l2: 2.535766702043393, linf: 0.10000002384185791 },
    Summary { pred: 0, sum: 394.07190427929163, plus: 329, minus: 302, up: 347, down: 315, l2: 2.5301301301220525, linf: 0.10000002384185791 },
];
pub(crate) const MINI_PGD_LINF: [Summary; 8] = [
    Summary { pred: 9, sum: 402.4313965123147, plus: 35, minus: 33, up: 320, down: 324, l2: 1.4120422930328904, linf: 0.10000000894069672 },
    Summary { pred: 0, sum: 379.351410664618, plus: 82, minus: 75, up: 323, down: 300, l2: 1.6324781468557161, linf: 0.10000000894069672 },
    Summary { pred: 3, sum: 390.4709230363369, plus: 57, minus: 53, up: 312, down: 325, l2: 1.555680567883604, linf: 0.10000000894069672 },
    Summary { pred: 3, sum: 397.8312203064561, plus: 63, minus: 64, up: 301, down: 325, l2: 1.583190668987699, linf: 0.10000000894069672 },
    Summary { pred: 8, sum: 394.42760101146996, plus: 49, minus: 51, up: 332, down: 340, l2: 1.5217342907918343, linf: 0.10000000521540642 },
    Summary { pred: 3, sum: 389.38334264419973, plus: 92, minus: 92, up: 313, down: 337, l2: 1.7878989476763543, linf: 0.10000000894069672 },
    Summary { pred: 0, sum: 392.4300108682364, plus: 39, minus: 33, up: 336, down: 312, l2: 1.424573040905328, linf: 0.10000000149011612 },
    Summary { pred: 8, sum: 391.6885489150882, plus: 103, minus: 84, up: 330, down: 318, l2: 1.7768549444856587, linf: 0.10000000894069672 },
];
pub(crate) const MINI_PGD_L2: [Summary; 8] = [
    Summary { pred: 2, sum: 402.32379271644095, plus: 0, minus: 0, up: 337, down: 340, l2: 0.9971807096022605, linf: 0.16165846586227417 },
    Summary { pred: 0, sum: 378.56628009884935, plus: 0, minus: 0, up: 335, down: 330, l2: 0.9910465515055155, linf: 0.21808606386184692 },
    Summary { pred: 3, sum: 391.0618595630749, plus: 0, minus: 0, up: 340, down: 362, l2: 0.9958384327994212, linf: 0.14187204837799072 },
    Summary { pred: 3, sum: 398.15581268894493, plus: 0, minus: 0, up: 330, down: 357, l2: 0.9938779432450708, linf: 0.22030159831047058 },
    Summary { pred: 8, sum: 394.340363773852, plus: 0, minus: 0, up: 331, down: 344, l2: 0.9972150077741062, linf: 0.144648015499115 },
    Summary { pred: 3, sum: 391.0692593369531, plus: 0, minus: 0, up: 335, down: 347, l2: 0.9935042653141265, linf: 0.15830588340759277 },
    Summary { pred: 0, sum: 391.3142357777542, plus: 0, minus: 0, up: 340, down: 342, l2: 0.9965003145932874, linf: 0.15091785788536072 },
    Summary { pred: 8, sum: 390.8763326688471, plus: 0, minus: 0, up: 333, down: 334, l2: 0.9944210908760117, linf: 0.18041199445724487 },
];
// ---- SMALL ----
pub(crate) const SMALL_PARAM_SUMS: [f64; 8] = [
    11.784189526923, 0.018809460336342454, -0.9267148741764686, 0.01084756210912019,
    -2.8026661079053383, -0.1339673405745998, 4.446438202721765, -0.08175468817353249,
];
pub(crate) const SMALL_LABELS: [u8; 8] = [
    2, 4, 4, 0, 2, 6, 4, 2,
];
pub(crate) const SMALL_LOGITS: [f64; 80] = [
    1.56166723789852, 0.5380802578059105, 4.063967366775966, -1.4226189795677202, 2.712394740262905,
    -5.887225510092404, 2.047626633963687, -1.5839621333856226, -2.861324854388429, -1.8109036250793467,
    -0.6790395028380733, 0.2994716017547403, 3.213089771013297, -7.094957654774785, 3.220628412910455,
    -5.996461511381019, 3.169251135330116, -3.7643744897876363, -2.044547469663839, -5.094770359628619,
    -0.6585848431366672, -0.49968384268802746, 3.746360796315116, -4.0865126381181796, 4.201411126902861,
    -5.450975742059064, 0.5449192871802451, -3.289986358423179, -3.68064584119135, -3.8416841911978707,
    1.3418705051901447, -0.6216903775973774, 5.178943050549764, -4.099571365642046, 4.182602090990991,
    -5.452459800833881, 2.9770934040121313, -5.696612996686662, -4.925250243759269, -2.3122799324054775,
    0.989494904515869, -0.8843336919214475, 5.543600064436526, -4.658000351125047, 3.44973390517475,
    -9.500798779074351, 3.62892292400241, -5.382659049721534, -3.642124433890216, -3.771116901151567,
    2.1885629130090436, -0.5545623345879962, 2.7241124420844587, -2.867414149252903, 2.1948100464295477,
    -8.566852394808766, 1.1969915121137287, -3.6311078343728167, -3.2828903173980306, -4.508340265702009,
    -0.8118314987607007, 0.20787491383075096, 3.561032564949961, -6.11130394974273, 3.8130700996657256,
    -7.062525098244439, 0.6079824235548175, -3.8579842472497603, -3.9178260777857155, -5.934770921132653,
    2.332828218514494, -0.3838277948761475, 5.192556257030625, -6.319669330187031, 2.8546868727195953,
    -8.10706550121891, 1.5802176977459919, -4.107415868855217, -2.0957119380561577, -5.243593816934869,
];
pub(crate) const SMALL_LOSS: f64 = 9.741316681971137;
pub(crate) const SMALL_GRAD_SUM: [f64; 8] = [
    0.8232920441991656, -1.3379217209707632, -2.3884275388520306, 3.438597719076504,
    0.3526185139608812, 1.1801976535218153, -1.8054458354159446, 0.2955443673667233,
];
pub(crate) const SMALL_GRAD_L1: [f64; 8] = [
    35.381478773799145, 70.79239955125405, 51.400971900794154, 103.90456863477297,
    26.242046993105305, 104.60343181270575, 56.29349018511833, 18.721989135491093,
];
pub(crate) const SMALL_GRAD_L2: [f64; 8] = [
    1.8291617137510934, 3.6987520230259587, 2.6830695899655903, 5.485798972805519,
    1.3586935488587597, 5.365035740985623, 2.8831058282860496, 0.955754676093522,
];
pub(crate) const SMALL_GRAD_ZEROS: [usize; 8] = [
    110, 108, 108, 109, 109, 108, 108, 109,
];
pub(crate) const SMALL_GRAD_ENTRIES: [(usize, usize, f64); 24] = [
    (0, 239, -0.27280709644897655), (0, 484, -0.24671484334933186), (0, 459, -0.2435084538963707),
    (1, 299, -0.7325280998946617), (1, 177, -0.5045344343068879), (1, 268, 0.4854304297430188),
    (2, 383, 0.39424153896597225), (2, 544, 0.3832769384621322), (2, 357, 0.3384543674583745),
    (3, 146, 0.8926509528940039), (3, 240, 0.7843739791827513), (3, 150, -0.7787897479106611),
    (4, 438, 0.18895028031660754), (4, 239, -0.18789921011779015), (4, 188, 0.18141108029149924),
    (5, 460, 0.8983238010416457), (5, 441, -0.7839081381604202), (5, 608, -0.7353949713897859),
    (6, 216, -0.5481752586805907), (6, 510, 0.44662294078134834), (6, 285, -0.43572867282407424),
    (7, 462, 0.13344336105595228), (7, 575, -0.12573746917251014), (7, 294, -0.12396342991641586),
];
pub(crate) const SMALL_FGSM: [Summary; 8] = [
    Summary { pred: 4, sum: 403.360651625786, plus: 274, minus: 276, up: 299, down: 290, l2: 2.365688816077651, linf: 0.10000002384185791 },
    Summary { pred: 2, sum: 378.62157253548503, plus: 276, minus: 271, up: 290, down: 287, l2: 2.3548728676784076, linf: 0.10000002384185791 },
    Summary { pred: 2, sum: 392.0772172678262, plus: 279, minus: 273, up: 296, down: 298, l2: 2.380709102848018, linf: 0.10000002384185791 },
    Summary { pred: 2, sum: 398.5072092451155, plus: 282, minus: 287, up: 294, down: 297, l2: 2.398238457664443, linf: 0.10000002384185791 },
    Summary { pred: 6, sum: 395.6047053486109, plus: 283, minus: 276, up: 299, down: 285, l2: 2.3826432087045206, linf: 0.10000002384185791 },
    Summary { pred: 2, sum: 391.5567467994988, plus: 282, minus: 279, up: 295, down: 294, l2: 2.387230000334803, linf: 0.10000002384185791 },
    Summary { pred: 2, sum: 389.8597666947171, plus: 257, minus: 272, up: 281, down: 294, l2: 2.3433842328479444, linf: 0.10000002384185791 },
    Summary { pred: 4, sum: 390.5857136249542, plus: 281, minus: 285, up: 295, down: 296, l2: 2.395214839105897, linf: 0.10000002384185791 },
];
pub(crate) const SMALL_PGD_LINF: [Summary; 8] = [
    Summary { pred: 4, sum: 402.95016310038045, plus: 61, minus: 58, up: 285, down: 281, l2: 1.5510213039268885, linf: 0.10000000894069672 },
    Summary { pred: 2, sum: 377.0370574425906, plus: 53, minus: 63, up: 279, down: 280, l2: 1.5192882917006756, linf: 0.10000000894069672 },
    Summary { pred: 2, sum: 389.38628916069865, plus: 71, minus: 78, up: 260, down: 303, l2: 1.6095007321015542, linf: 0.10000000894069672 },
    Summary { pred: 2, sum: 396.46119377575815, plus: 58, minus: 82, up: 263, down: 298, l2: 1.5877905160759667, linf: 0.10000000894069672 },
    Summary { pred: 6, sum: 394.1741600930691, plus: 85, minus: 89, up: 294, down: 283, l2: 1.6833803880776987, linf: 0.10000000894069672 },
    Summary { pred: 2, sum: 391.6560554727912, plus: 94, minus: 83, up: 283, down: 290, l2: 1.7059346195613374, linf: 0.10000000894069672 },
    Summary { pred: 2, sum: 389.14619677420706, plus: 87, minus: 104, up: 280, down: 289, l2: 1.781380571408249, linf: 0.10000000894069672 },
    Summary { pred: 4, sum: 391.28156191669405, plus: 106, minus: 107, up: 305, down: 286, l2: 1.795118278794399, linf: 0.10000000894069672 },
];
pub(crate) const SMALL_PGD_L2: [Summary; 8] = [
    Summary { pred: 4, sum: 403.0660112079795, plus: 0, minus: 0, up: 302, down: 295, l2: 0.9954347281090747, linf: 0.21854954957962036 },
    Summary { pred: 2, sum: 377.05196946967044, plus: 0, minus: 0, up: 279, down: 294, l2: 0.9942616368980783, linf: 0.18122631311416626 },
    Summary { pred: 2, sum: 391.3039833928051, plus: 0, minus: 0, up: 282, down: 306, l2: 0.9942150020508296, linf: 0.16293632984161377 },
    Summary { pred: 2, sum: 397.62623121491924, plus: 0, minus: 0, up: 289, down: 304, l2: 0.9919083480353277, linf: 0.14854419231414795 },
    Summary { pred: 6, sum: 393.94614303298295, plus: 0, minus: 0, up: 289, down: 296, l2: 0.9954425972226622, linf: 0.16719824075698853 },
    Summary { pred: 2, sum: 391.0764214990777, plus: 0, minus: 0, up: 284, down: 305, l2: 0.9945794323486127, linf: 0.1717798113822937 },
    Summary { pred: 2, sum: 389.3350616423704, plus: 0, minus: 0, up: 275, down: 298, l2: 0.995412233839312, linf: 0.1860799789428711 },
    Summary { pred: 4, sum: 390.4917235232642, plus: 0, minus: 0, up: 307, down: 283, l2: 0.9931184680767003, linf: 0.15163254737854004 },
];
}
