//! The burn path against Warden's CPU engine, on burn's CPU backend: the same functions run on the
//! CUDA backend with another type parameter.
#![allow(clippy::unwrap_used)]

use super::*;
use warden_harden::attack::Norm;
use warden_harden::nn::{Pool, Workspace, softmax_xent};
use warden_harden::rng::Rng;
use warden_harden::train::{Method, Trainer};

type Ad = Autodiff<Flex>;

fn dev() -> burn::backend::flex::FlexDevice {
    Default::default()
}

/// `n` inputs in [0, 1] and labels, drawn from `seed`.
fn inputs(model: &Model, n: usize, seed: u64) -> (Vec<f32>, Vec<u8>) {
    let mut rng = Rng::new(seed);
    let x = (0..n * model.input_len())
        .map(|_| rng.uniform() as f32)
        .collect();
    let y = (0..n)
        .map(|_| rng.below(model.classes() as u64) as u8)
        .collect();
    (x, y)
}

fn upload(x: &[f32], y: &[u8], len: usize) -> DeviceData<Flex> {
    DeviceData::new(x, y, len, &dev()).unwrap()
}

fn host(t: Tensor<Flex, 2>) -> Vec<f32> {
    t.into_data().into_vec::<f32>().unwrap()
}

/// Largest absolute difference, relative to the largest magnitude of `want` (at least 1e-3); NaN
/// when a value is NaN, so that no tolerance accepts it.
fn rel_diff(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
    got.iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, warden_harden::attack::max_or_nan)
        / scale
}

/// A model of `arch` from `seed`, its affine layers (which start as the identity) moved away
/// from it, so that a scale or shift lost on the way shows.
fn init(arch: &Arch, seed: u64) -> Model {
    let mut m = Model::init(arch, seed).unwrap();
    let scales: Vec<usize> = (m.param_infos().iter().enumerate())
        .filter(|(_, p)| p.torch_shape.len() == 1 && p.name.ends_with(".weight"))
        .map(|(i, _)| i)
        .collect();
    for i in scales {
        for (j, v) in m.params_mut()[i].iter_mut().enumerate() {
            *v = 0.75 + 0.1 * (j % 5) as f32;
        }
        for (j, v) in m.params_mut()[i + 1].iter_mut().enumerate() {
            *v = 0.05 * ((j % 3) as f32 - 1.0);
        }
    }
    m
}

/// Every named architecture, and one with ELU activations.
fn archs() -> Vec<Arch> {
    let mut v: Vec<Arch> = [
        "small-cnn",
        "cnn4",
        "dp-cnn",
        "small-cnn-tanh",
        "mlp",
        "wk-small",
        "wk-wide",
    ]
    .iter()
    .map(|n| Arch::named(n).unwrap())
    .collect();
    v.push(Arch::strided(16, 32, 100, "wk-small").with_activation(LayerSpec::Elu, "wk-small-elu"));
    v.push(
        Arch::strided(16, 32, 100, "wk-small").with_activation(LayerSpec::Silu, "wk-small-silu"),
    );
    v.push(
        Arch::strided(16, 32, 100, "wk-small")
            .with_activation(LayerSpec::HardSwish, "wk-small-hardswish"),
    );
    // Average pools: small-cnn's max pools as average pools, and a head on a global average.
    let mut avg = Arch::small_cnn();
    avg.name = "small-cnn-avg".into();
    for l in &mut avg.layers {
        if let LayerSpec::MaxPool2d { kernel, stride, .. } = *l {
            *l = LayerSpec::AvgPool2d { kernel, stride };
        }
    }
    v.push(avg);
    v.push(Arch {
        name: "gap".into(),
        input: [1, 28, 28],
        classes: 10,
        layers: vec![
            LayerSpec::Conv2d {
                in_channels: 1,
                out_channels: 8,
                kernel: 3,
                padding: 1,
                stride: 1,
                groups: 1,
            },
            LayerSpec::Relu,
            LayerSpec::AvgPool2d {
                kernel: 3,
                stride: Some(2),
            },
            LayerSpec::Conv2d {
                in_channels: 8,
                out_channels: 16,
                kernel: 3,
                padding: 0,
                stride: 1,
                groups: 1,
            },
            LayerSpec::Relu,
            LayerSpec::GlobalAvgPool,
            LayerSpec::Flatten,
            LayerSpec::Linear {
                in_features: 16,
                out_features: 10,
            },
        ],
    });
    // Residual blocks: one with an identity shortcut, one that halves the image with a strided
    // 1×1 convolution on its shortcut.
    let conv = |cin, cout, kernel, padding, stride| LayerSpec::Conv2d {
        in_channels: cin,
        out_channels: cout,
        kernel,
        padding,
        stride,
        groups: 1,
    };
    v.push(Arch {
        name: "residual".into(),
        input: [1, 28, 28],
        classes: 10,
        layers: vec![
            conv(1, 8, 3, 1, 2),
            LayerSpec::Relu,
            LayerSpec::Residual {
                body: vec![conv(8, 8, 3, 1, 1), LayerSpec::Relu, conv(8, 8, 3, 1, 1)],
                shortcut: vec![],
            },
            LayerSpec::Relu,
            LayerSpec::Residual {
                body: vec![conv(8, 16, 3, 1, 2), LayerSpec::Relu, conv(16, 16, 3, 1, 1)],
                shortcut: vec![conv(8, 16, 1, 0, 2)],
            },
            LayerSpec::Relu,
            LayerSpec::GlobalAvgPool,
            LayerSpec::Flatten,
            LayerSpec::Linear {
                in_features: 16,
                out_features: 10,
            },
        ],
    });
    // Strided 1×1 convolutions (run as a subsampling, then an unstrided one) on images that are
    // and that are not whole multiples of the stride: 9 → 5 at stride 2, 5 → 2 at stride 3,
    // and 8 → 4 at stride 2.
    v.push(Arch {
        name: "strided-pointwise".into(),
        input: [3, 9, 9],
        classes: 10,
        layers: vec![
            conv(3, 4, 1, 0, 2),
            LayerSpec::Relu,
            LayerSpec::Residual {
                body: vec![conv(4, 4, 3, 1, 1)],
                shortcut: vec![],
            },
            conv(4, 6, 1, 0, 3),
            LayerSpec::Tanh,
            LayerSpec::Flatten,
            LayerSpec::Linear {
                in_features: 24,
                out_features: 10,
            },
        ],
    });
    v.push(Arch {
        name: "strided-pointwise-even".into(),
        input: [2, 8, 8],
        classes: 10,
        layers: vec![
            conv(2, 4, 1, 0, 2),
            LayerSpec::Tanh,
            LayerSpec::Flatten,
            LayerSpec::Linear {
                in_features: 64,
                out_features: 10,
            },
        ],
    });
    // torchvision's ResNet stem on colour images: a 7×7 stride-2 convolution padded by 3, then a
    // 3×3 stride-2 max pool padded by 1 (padding takes no part in the max).
    v.push(Arch {
        name: "rgb-stem".into(),
        input: [3, 32, 32],
        classes: 10,
        layers: vec![
            conv(3, 8, 7, 3, 2),
            LayerSpec::Relu,
            LayerSpec::MaxPool2d {
                kernel: 3,
                stride: Some(2),
                padding: 1,
                ceil_mode: false,
            },
            LayerSpec::Residual {
                body: vec![conv(8, 8, 3, 1, 1), LayerSpec::Relu, conv(8, 8, 3, 1, 1)],
                shortcut: vec![],
            },
            LayerSpec::Relu,
            LayerSpec::GlobalAvgPool,
            LayerSpec::Flatten,
            LayerSpec::Linear {
                in_features: 8,
                out_features: 10,
            },
        ],
    });
    // MobileNet V2's inverted residual: a pointwise expansion, a depthwise convolution (groups =
    // channels), a pointwise projection, ReLU6 between them.
    let grouped = |cin, cout, kernel, padding, stride, groups| LayerSpec::Conv2d {
        in_channels: cin,
        out_channels: cout,
        kernel,
        padding,
        stride,
        groups,
    };
    v.push(Arch {
        name: "inverted-residual".into(),
        input: [3, 16, 16],
        classes: 10,
        layers: vec![
            grouped(3, 8, 3, 1, 2, 1),
            LayerSpec::Relu6,
            LayerSpec::Residual {
                body: vec![
                    grouped(8, 16, 1, 0, 1, 1),
                    LayerSpec::Relu6,
                    grouped(16, 16, 3, 1, 1, 16),
                    LayerSpec::Relu6,
                    grouped(16, 8, 1, 0, 1, 1),
                ],
                shortcut: vec![],
            },
            grouped(8, 8, 3, 1, 2, 2),
            LayerSpec::Relu6,
            LayerSpec::GlobalAvgPool,
            LayerSpec::Flatten,
            LayerSpec::Linear {
                in_features: 8,
                out_features: 10,
            },
        ],
    });
    // EfficientNet's MBConv block: SiLU, a depthwise convolution, a squeeze-and-excitation gate
    // inside the residual body; a gate outside one, and one with a factor per value.
    let se = |c: usize| LayerSpec::Gate {
        body: vec![
            LayerSpec::GlobalAvgPool,
            grouped(c, 2, 1, 0, 1, 1),
            LayerSpec::Silu,
            grouped(2, c, 1, 0, 1, 1),
            LayerSpec::Sigmoid,
        ],
    };
    v.push(Arch {
        name: "mbconv-se".into(),
        input: [3, 12, 12],
        classes: 10,
        layers: vec![
            grouped(3, 8, 3, 1, 2, 1),
            LayerSpec::Silu,
            LayerSpec::Residual {
                body: vec![
                    grouped(8, 16, 1, 0, 1, 1),
                    LayerSpec::Silu,
                    grouped(16, 16, 3, 1, 1, 16),
                    LayerSpec::Silu,
                    se(16),
                    grouped(16, 8, 1, 0, 1, 1),
                ],
                shortcut: vec![],
            },
            se(8),
            LayerSpec::Gate {
                body: vec![grouped(8, 8, 3, 1, 1, 1), LayerSpec::HardSigmoid],
            },
            LayerSpec::GlobalAvgPool,
            LayerSpec::Flatten,
            LayerSpec::Linear {
                in_features: 8,
                out_features: 10,
            },
        ],
    });
    // Inception's parts: four branches (1×1; 1×1 then 3×3; a padded max pool then 1×1; the
    // identity) side by side, then the identity and a convolution (DenseNet's way).
    v.push(Arch {
        name: "inception".into(),
        input: [3, 10, 10],
        classes: 10,
        layers: vec![
            conv(3, 4, 3, 1, 1),
            LayerSpec::Relu,
            LayerSpec::Concat {
                branches: vec![
                    vec![conv(4, 3, 1, 0, 1), LayerSpec::Relu],
                    vec![conv(4, 2, 1, 0, 1), LayerSpec::Relu, conv(2, 3, 3, 1, 1)],
                    vec![
                        LayerSpec::MaxPool2d {
                            kernel: 3,
                            stride: Some(1),
                            padding: 1,
                            ceil_mode: false,
                        },
                        conv(4, 2, 1, 0, 1),
                    ],
                    vec![],
                ],
            },
            LayerSpec::Relu,
            LayerSpec::Concat {
                branches: vec![vec![], vec![conv(12, 2, 3, 1, 1)]],
            },
            // Ceil mode: 10 → 5 (floor mode: 4).
            LayerSpec::MaxPool2d {
                kernel: 3,
                stride: Some(2),
                padding: 0,
                ceil_mode: true,
            },
            LayerSpec::GlobalAvgPool,
            LayerSpec::Flatten,
            LayerSpec::Linear {
                in_features: 14,
                out_features: 10,
            },
        ],
    });
    // Batch norms where no convolution precedes them, as affine layers: on the input, first in
    // a pre-activation residual body and in a dense layer, after the sum, and on the features.
    let affine = |channels| LayerSpec::Affine { channels };
    v.push(Arch {
        name: "preact-dense".into(),
        input: [3, 10, 10],
        classes: 10,
        layers: vec![
            affine(3),
            conv(3, 8, 3, 1, 1),
            LayerSpec::Residual {
                body: vec![affine(8), LayerSpec::Relu, conv(8, 8, 3, 1, 1)],
                shortcut: vec![],
            },
            LayerSpec::Concat {
                branches: vec![
                    vec![],
                    vec![affine(8), LayerSpec::Relu, conv(8, 4, 1, 0, 1)],
                ],
            },
            affine(12),
            LayerSpec::Relu,
            LayerSpec::GlobalAvgPool,
            LayerSpec::Flatten,
            affine(12),
            LayerSpec::Linear {
                in_features: 12,
                out_features: 10,
            },
        ],
    });
    v
}

#[test]
fn logits_equal_the_cpu_engine_on_every_named_architecture() {
    for arch in archs() {
        let model = init(&arch, 7);
        let (x, y) = inputs(&model, 6, 1);
        let mut ws = Workspace::default();
        let want = model.forward(&mut ws, &x, 6).unwrap().to_vec();
        let e = Engine::<Ad>::new(&model, OptimSpec::adam(1e-3), dev()).unwrap();
        let data = upload(&x, &y, model.input_len());
        let got = host(e.predict_logits(data.x.clone()).unwrap());
        let d = rel_diff(&got, &want);
        assert!(d < 1e-5, "{}: logits differ by {d}", arch.name);
    }
}

#[test]
fn input_gradients_equal_the_cpu_engine() {
    for arch in archs() {
        let model = init(&arch, 3);
        let (x, y) = inputs(&model, 4, 2);
        let mut ws = Workspace::default();
        let logits = model.forward(&mut ws, &x, 4).unwrap().to_vec();
        let mut dl = Vec::new();
        softmax_xent(&logits, &y, model.classes(), 1.0, &mut dl, None);
        model.backward(&mut ws, &x, &dl, None, true);
        let want = ws.input_grad().to_vec();
        let e = Engine::<Ad>::new(&model, OptimSpec::adam(1e-3), dev()).unwrap();
        let data = upload(&x, &y, model.input_len());
        let got = host(e.input_grad(data.x.clone(), data.y.clone()).unwrap());
        let d = rel_diff(&got, &want);
        assert!(d < 1e-4, "{}: input gradients differ by {d}", arch.name);
    }
}

/// Three clean steps with each optimiser (weight decay and momentum on) leave the same weights as
/// the CPU engine's `Trainer`.
#[test]
fn optimiser_steps_equal_the_cpu_engine() {
    let specs = [
        OptimSpec::Adam {
            lr: 1e-2,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 1e-3,
        },
        OptimSpec::Sgd {
            lr: 0.05,
            momentum: 0.9,
            weight_decay: 1e-3,
        },
    ];
    for spec in specs {
        let model = Model::init(&Arch::small_cnn(), 5).unwrap();
        let (x, y) = inputs(&model, 16, 4);
        let mut cpu = Trainer::new(model.clone(), spec, 1);
        let mut e = Engine::<Ad>::new(&model, spec, dev()).unwrap();
        let data = upload(&x, &y, model.input_len());
        let factors = [1.0, 0.5, 0.25];
        for factor in factors {
            cpu.set_lr_factor(factor);
            e.set_lr_factor(factor);
            let a = cpu.step(&x, &y, &Objective::Clean, 0).unwrap();
            let b = e
                .step(data.x.clone(), data.y.clone(), &Objective::Clean)
                .unwrap();
            assert!(
                (a.loss - b.loss).abs() < 1e-4,
                "{spec:?}: loss {a:?} vs {b:?}"
            );
            assert_eq!(a.accuracy, b.accuracy);
        }
        // Adam divides by √v: where a gradient is near zero, a difference in its last bits (the
        // two engines' matrix kernels sum in different orders, and the `gemm` crate picks its
        // kernels by processor) can flip the sign of a step and move that weight by up to twice
        // the summed learning rates. So under Adam a few weights in 10,000 may fall outside the
        // tolerance, within that bound; under SGD every weight must be within it. A wrong moment,
        // bias correction or decay moves most weights, and fails either way.
        let got = e.model().unwrap();
        let (mut off, mut total) = (0usize, 0usize);
        for (g, w) in got.params().iter().zip(cpu.model.params()) {
            let scale = w.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
            for (a, b) in g.iter().zip(w.iter()) {
                let d = (a - b).abs();
                assert!(d.is_finite(), "{spec:?}: a weight is not finite");
                match spec {
                    OptimSpec::Sgd { .. } => assert!(
                        d <= 1e-5 * scale,
                        "{spec:?}: weights differ by {d} (scale {scale})"
                    ),
                    OptimSpec::Adam { lr, .. } => {
                        let flipped = 2.0 * lr * factors.iter().sum::<f32>();
                        assert!(d <= flipped, "{spec:?}: a weight moved {d} apart");
                        off += usize::from(d > 1e-3 * scale);
                    }
                }
            }
            total += w.len();
        }
        assert!(
            off * 10_000 <= total,
            "{spec:?}: {off} of {total} weights differ beyond 1e-3 of their tensor's scale"
        );
    }
}

/// Without a random start PGD is deterministic: the burn path's points equal the CPU engine's,
/// up to pixels where a gradient's sign flips in the last bits.
/// Three SGD steps (momentum and weight decay on) through affine layers leave the CPU engine's
/// weights: the two agree on the layers' gradients, and the layers move.
#[test]
fn affine_layers_train_as_on_the_cpu_engine() {
    let arch = archs()
        .into_iter()
        .find(|a| a.name == "preact-dense")
        .unwrap();
    let spec = OptimSpec::Sgd {
        lr: 0.05,
        momentum: 0.9,
        weight_decay: 1e-3,
    };
    let model = init(&arch, 5);
    let (x, y) = inputs(&model, 16, 4);
    let mut cpu = Trainer::new(model.clone(), spec, 1);
    let mut e = Engine::<Ad>::new(&model, spec, dev()).unwrap();
    let data = upload(&x, &y, model.input_len());
    for _ in 0..3 {
        let a = cpu.step(&x, &y, &Objective::Clean, 0).unwrap();
        let b = e
            .step(data.x.clone(), data.y.clone(), &Objective::Clean)
            .unwrap();
        assert!((a.loss - b.loss).abs() < 1e-4, "loss {a:?} vs {b:?}");
    }
    let got = e.model().unwrap();
    for (i, (g, w)) in got.params().iter().zip(cpu.model.params()).enumerate() {
        let scale = w.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
        let d = g
            .iter()
            .zip(w)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            d <= 1e-5 * scale,
            "parameter {i}: differs by {d} (scale {scale})"
        );
    }
    assert_ne!(
        cpu.model.params()[0],
        model.params()[0],
        "the input's scale moved"
    );
}

#[test]
fn pgd_points_equal_the_cpu_engine_without_random_start() {
    let model = Model::init(&Arch::small_cnn(), 11).unwrap();
    let (x, y) = inputs(&model, 8, 6);
    let a = Pgd {
        random_start: false,
        keep_first_success: false,
        ..Pgd::linf(0.1, 0.025, 5, 1)
    };
    let want = warden_harden::attack::generate(&model, &mut Pool::new(1), &a, &x, &y, 0).unwrap();
    let e = Engine::<Ad>::new(&model, OptimSpec::adam(1e-3), dev()).unwrap();
    let data = upload(&x, &y, model.input_len());
    let got = host(e.pgd(data.x.clone(), data.y.clone(), &a).unwrap());
    let off = got
        .iter()
        .zip(&want)
        .filter(|(g, w)| (*g - *w).abs() > 1e-5)
        .count();
    assert!(
        off * 200 < got.len(),
        "{off} of {} values differ",
        got.len()
    );
}

/// Under L2 too: without a random start the burn path's points equal the CPU engine's (steps
/// along the normalised gradient, each shrunk back to length eps); with one, every point of PGD
/// and of the TRADES attack lies in the L2 ball and the bounds, and the attack moves.
#[test]
fn l2_attack_points_equal_the_cpu_engine_and_stay_in_the_ball() {
    let model = Model::init(&Arch::small_cnn(), 11).unwrap();
    let (x, y) = inputs(&model, 8, 6);
    let len = model.input_len();
    let fixed = Pgd {
        norm: Norm::L2,
        random_start: false,
        keep_first_success: false,
        ..Pgd::linf(1.0, 0.3, 5, 1)
    };
    let want =
        warden_harden::attack::generate(&model, &mut Pool::new(1), &fixed, &x, &y, 0).unwrap();
    let e = Engine::<Ad>::new(&model, OptimSpec::adam(1e-3), dev()).unwrap();
    let data = upload(&x, &y, len);
    let got = host(e.pgd(data.x.clone(), data.y.clone(), &fixed).unwrap());
    let gap = got
        .iter()
        .zip(&want)
        .fold(0.0f32, |m, (g, w)| m.max((g - w).abs()));
    assert!(gap < 1e-3, "burn and the CPU engine differ by {gap}");
    let a = Pgd {
        random_start: true,
        ..fixed
    };
    let p = activation::softmax(e.predict_logits(data.x.clone()).unwrap(), 1);
    for adv in [
        e.pgd(data.x.clone(), data.y.clone(), &a).unwrap(),
        e.trades_attack(data.x.clone(), p, &a).unwrap(),
    ] {
        let adv = host(adv);
        assert!(adv.iter().all(|v| (0.0..=1.0).contains(v)));
        for d in warden_harden::attack::distances(Norm::L2, &x, &adv, len) {
            assert!(d <= 1.0 + 1e-4, "{d} beyond the L2 ball");
            assert!(d > 0.5, "the attack hardly moved: {d}");
        }
    }
}

/// The L2 step's direction does not depend on the gradient's scale: gradients scaled by 1e-25
/// (whose squares underflow in f32) and by 1e25 (whose squares overflow) give the same point as
/// the unscaled one, and a zero gradient does not move.
#[test]
fn l2_step_is_independent_of_the_gradient_scale() {
    let (n, len) = (3, 16);
    let mut rng = Rng::new(4);
    let x: Vec<f32> = (0..n * len)
        .map(|_| 0.25 + 0.5 * rng.uniform() as f32)
        .collect();
    let g: Vec<f32> = (0..n * len).map(|_| rng.uniform() as f32 - 0.5).collect();
    let a = Pgd {
        norm: Norm::L2,
        ..Pgd::linf(0.3, 0.2, 1, 1)
    };
    let xt = Tensor::<Flex, 2>::from_data(TensorData::new(x.clone(), [n, len]), &dev());
    let ball = Ball::around(&xt, &a);
    let step = |scale: f32| {
        let gs: Vec<f32> = g.iter().map(|v| v * scale).collect();
        let gt = Tensor::<Flex, 2>::from_data(TensorData::new(gs, [n, len]), &dev());
        host(ball.step(xt.clone(), gt))
    };
    let want = step(1.0);
    for d in warden_harden::attack::distances(Norm::L2, &x, &want, len) {
        assert!((d - 0.2).abs() < 1e-5, "a step of length {d}, not 0.2");
    }
    for scale in [1e-25, 1e25] {
        let gap = rel_diff(&step(scale), &want);
        assert!(gap < 1e-6, "scale {scale}: {gap} from the unscaled step");
    }
    assert_eq!(step(0.0), x, "a zero gradient moved the point");
}

/// Every point of the training attacks lies in the ε-ball and the input bounds.
#[test]
fn attack_points_stay_in_the_ball_and_the_bounds() {
    let model = Model::init(&Arch::mlp(&[32]), 2).unwrap();
    let (x, y) = inputs(&model, 20, 8);
    let e = Engine::<Ad>::new(&model, OptimSpec::adam(1e-3), dev()).unwrap();
    let data = upload(&x, &y, model.input_len());
    let eps = 0.1;
    let a = Pgd {
        keep_first_success: false,
        ..Pgd::linf(eps, 0.04, 3, 1)
    };
    let p = activation::softmax(e.predict_logits(data.x.clone()).unwrap(), 1);
    for adv in [
        e.pgd(data.x.clone(), data.y.clone(), &a).unwrap(),
        e.trades_attack(data.x.clone(), p, &a).unwrap(),
    ] {
        let adv = host(adv);
        let mut moved = 0;
        for (v, x0) in adv.iter().zip(&x) {
            assert!((0.0..=1.0).contains(v), "{v} outside [0, 1]");
            assert!(
                (v - x0).abs() <= eps + 1e-6,
                "{v} is more than eps from {x0}"
            );
            moved += usize::from((v - x0).abs() > 1e-3);
        }
        assert!(moved * 2 > adv.len(), "the attack hardly moved: {moved}");
    }
}

/// TRADES with β = 0 is clean training whatever its attack finds.
#[test]
fn trades_with_beta_zero_is_a_clean_step() {
    let model = Model::init(&Arch::mlp(&[16]), 4).unwrap();
    let (x, y) = inputs(&model, 12, 3);
    let data = upload(&x, &y, model.input_len());
    let mut clean = Engine::<Ad>::new(&model, OptimSpec::adam(1e-2), dev()).unwrap();
    let mut trades = Engine::<Ad>::new(&model, OptimSpec::adam(1e-2), dev()).unwrap();
    let objective = Method::Trades {
        eps: 0.1,
        step: 0.04,
        steps: 2,
        beta: 0.0,
        norm: Norm::Linf,
    }
    .objective(0.1);
    let a = clean
        .step(data.x.clone(), data.y.clone(), &Objective::Clean)
        .unwrap();
    let b = trades
        .step(data.x.clone(), data.y.clone(), &objective)
        .unwrap();
    assert!((a.loss - b.loss).abs() < 1e-6);
    for (p, q) in clean
        .model()
        .unwrap()
        .params()
        .iter()
        .zip(trades.model().unwrap().params())
    {
        assert!(rel_diff(p, q) < 1e-6);
    }
    // With β > 0 the KL term adds to the loss.
    let mut t2 = Engine::<Ad>::new(&model, OptimSpec::adam(1e-2), dev()).unwrap();
    let objective = Method::Trades {
        eps: 0.3,
        step: 0.1,
        steps: 3,
        beta: 6.0,
        norm: Norm::Linf,
    }
    .objective(0.3);
    let c = t2.step(data.x.clone(), data.y.clone(), &objective).unwrap();
    assert!(c.loss > a.loss, "{c:?} vs {a:?}");
}

/// A small separable task: adversarial training on the burn path makes the model robust where
/// clean training does not, the epoch loop reports progress, and the weight average is released.
#[test]
fn adversarial_epochs_make_a_model_robust() {
    // Ten classes, each marked by a block of 16 pixels raised by 0.5 over a noisy background. A
    // clean model also leans on the background, which an ε of 0.1 on every pixel turns against it.
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
            let block = if j / 16 == c { 0.5 } else { 0.0 };
            block + 0.2 * rng.uniform() as f32
        }));
    }
    let data = upload(&x, &y, len);
    let idx: Vec<usize> = (0..n).collect();
    let eps = 0.1;
    let eval = Pgd {
        keep_first_success: false,
        ..Pgd::linf(eps, eps / 4.0, 10, 1)
    };
    let robust_after = |method: Method, ema: bool| {
        let mut e = Engine::<Ad>::new(&model, OptimSpec::adam(1e-2), dev()).unwrap();
        if ema {
            e.enable_ema(0.9);
        }
        let mut calls = 0;
        for epoch in 0..8 {
            let s = e
                .epoch(
                    &data,
                    &idx,
                    50,
                    // The budget grows over the first four epochs, as `--eps-warmup 4` does.
                    &method.objective(eps * ((epoch + 1) as f32 / 4.0).min(1.0)),
                    &mut |_| 1.0,
                    epoch,
                    &mut |done, total, _| {
                        calls += 1;
                        assert!(done <= total);
                        true
                    },
                )
                .unwrap();
            assert_eq!(s.examples, n);
        }
        assert_eq!(calls, 8 * 8);
        let released = e.release().unwrap();
        let mut pool = Pool::new(1);
        // Scored by the CPU engine: the released model is an ordinary Warden model.
        let clean = warden_harden::train::accuracy(&released, &mut pool, &x, &y, None, 0).unwrap();
        let robust =
            warden_harden::train::accuracy(&released, &mut pool, &x, &y, Some(&eval), 0).unwrap();
        let on_device = e.accuracy(&data, None, 64).unwrap();
        (clean, robust, on_device, e.model().unwrap(), released)
    };
    let (clean_c, robust_c, dev_c, it, rel) = robust_after(Method::Clean, false);
    assert_eq!(
        it.params(),
        rel.params(),
        "without averaging the iterate is released"
    );
    assert!(clean_c > 0.95, "clean training fits the task: {clean_c}");
    assert!((dev_c - clean_c).abs() < 1e-9, "{dev_c} vs {clean_c}");
    let pgd = Method::Pgd {
        eps,
        step: eps / 2.0,
        steps: 3,
        norm: Norm::Linf,
    };
    let (_, robust_a, _, it, rel) = robust_after(pgd, true);
    assert_ne!(it.params(), rel.params(), "the average is released");
    assert!(
        robust_a > robust_c + 0.2,
        "robust accuracy {robust_a} after PGD training vs {robust_c} after clean training"
    );
}

#[test]
fn sessions_and_devices_refuse_bad_input() {
    assert_eq!(Device::parse("flex").unwrap(), Device::Flex);
    for bad in ["", "gpu", "cuda:x", "cuda:99999999999999999999"] {
        assert!(Device::parse(bad).is_err(), "{bad}");
    }
    #[cfg(not(feature = "cuda"))]
    assert!(
        Device::parse("cuda")
            .unwrap_err()
            .to_string()
            .contains("--features cuda")
    );
    let model = Model::init(&Arch::mlp(&[8]), 0).unwrap();
    let (x, y) = inputs(&model, 4, 0);
    assert!(Session::new(Device::Flex, &model, OptimSpec::adam(1e-3), &x[1..], &y).is_err());
    assert!(Session::new(Device::Flex, &model, OptimSpec::adam(f32::NAN), &x, &y).is_err());
    let mut s = Session::new(Device::Flex, &model, OptimSpec::adam(1e-3), &x, &y).unwrap();
    let mut no = |_: usize, _: usize, _: Stats| true;
    assert!(
        s.epoch(&[0, 4], 2, &Objective::Clean, &mut |_| 1.0, 0, &mut no)
            .is_err(),
        "an index outside the data"
    );
    assert!(
        s.epoch(&[0, 1], 0, &Objective::Clean, &mut |_| 1.0, 0, &mut no)
            .is_err()
    );
    // Interrupting stops the epoch with an error, leaving a valid model.
    let mut stop = |_: usize, _: usize, _: Stats| false;
    assert!(
        s.epoch(
            &[0, 1, 2, 3],
            2,
            &Objective::Clean,
            &mut |_| 1.0,
            0,
            &mut stop
        )
        .is_err()
    );
    assert_eq!(s.model().unwrap().param_count(), model.param_count());
    let a = Pgd {
        keep_first_success: false,
        ..Pgd::linf(0.1, 0.05, 2, 1)
    };
    let adv = s.attack(&x, &y, &a).unwrap();
    assert_eq!(adv.len(), x.len());
    assert!(
        adv.iter()
            .zip(&x)
            .all(|(v, x0)| (v - x0).abs() <= 0.1 + 1e-6)
    );
    assert!(s.attack(&x[1..], &y, &a).is_err());
    assert!(s.attack(&x, &y, &Pgd { eps: f32::NAN, ..a }).is_err());
    assert!(s.backend().contains("Flex"));
}

/// An AWP step on the burn path equals the CPU engine's (SGD with lr 1: the update is the
/// gradient at the perturbed weights), on points the attack does not move; and differs from a
/// plain adversarial step.
#[test]
fn awp_steps_equal_the_cpu_engine() {
    let model = Model::init(&Arch::small_cnn(), 9).unwrap();
    let (x, y) = inputs(&model, 8, 12);
    let spec = OptimSpec::Sgd {
        lr: 1.0,
        momentum: 0.0,
        weight_decay: 0.0,
    };
    let still = Objective::Adversarial(Pgd {
        random_start: false,
        steps: 0,
        ..Pgd::linf(0.1, 0.02, 1, 1)
    });
    let mut cpu = Trainer::new(model.clone(), spec, 1);
    cpu.enable_awp(0.01);
    cpu.step(&x, &y, &still, 0).unwrap();
    let data = upload(&x, &y, model.input_len());
    let mut e = Engine::<Ad>::new(&model, spec, dev()).unwrap();
    e.enable_awp(0.01);
    e.step(data.x.clone(), data.y.clone(), &still).unwrap();
    let mut plain = Engine::<Ad>::new(&model, spec, dev()).unwrap();
    plain.step(data.x.clone(), data.y.clone(), &still).unwrap();
    let (got, other) = (e.model().unwrap(), plain.model().unwrap());
    let mut moved = 0f32;
    for ((g, w), p) in got
        .params()
        .iter()
        .zip(cpu.model.params())
        .zip(other.params())
    {
        let d = rel_diff(g, w);
        assert!(d < 1e-5, "weights differ by {d}");
        moved = moved.max(rel_diff(g, p));
    }
    assert!(moved > 1e-3, "AWP changed the step: {moved}");
}

/// The weight perturbation computed on the device: `w + γ‖w‖ g/‖g‖` for weights, biases kept, and
/// no move at all for a gradient that is zero or not finite. Gradients whose squares overflow or
/// vanish in f32 ("huge", "tiny") still move the weights as the CPU engine's f64 norms do.
#[test]
fn awp_perturbation_skips_zero_and_non_finite_gradients() {
    let model = Model::init(&Arch::mlp(&[16]), 3).unwrap();
    let e = Engine::<Ad>::new(
        &model,
        OptimSpec::Sgd {
            lr: 0.1,
            momentum: 0.0,
            weight_decay: 0.0,
        },
        dev(),
    )
    .unwrap();
    let host1 = |t: Tensor<Flex, 1>| t.into_data().into_vec::<f32>().unwrap();
    let dev1 = |v: Vec<f32>| {
        let n = v.len();
        Tensor::<Flex, 1>::from_data(TensorData::new(v, [n]), &dev())
    };
    let params: Vec<Vec<f32>> = e.params.iter().map(|p| host1(p.clone())).collect();
    let infos = model.param_infos();
    let gamma = 0.01f32;
    for case in ["ramp", "huge", "tiny", "zero", "nan", "inf"] {
        let grads: Vec<Vec<f32>> = params
            .iter()
            .map(|p| {
                (0..p.len())
                    .map(|i| match (case, i) {
                        ("zero", _) => 0.0,
                        ("nan", 0) => f32::NAN,
                        ("inf", 1) => f32::INFINITY,
                        ("huge", _) => ((i % 7) as f32 - 3.0) * 1e20,
                        ("tiny", _) => ((i % 7) as f32 - 3.0) * 1e-25,
                        _ => (i % 7) as f32 - 3.0,
                    })
                    .collect()
            })
            .collect();
        let got = e.perturbed_params(&grads.iter().cloned().map(dev1).collect::<Vec<_>>(), gamma);
        for (((g, p), grad), info) in got.into_iter().zip(&params).zip(&grads).zip(infos) {
            let g = host1(g.inner());
            let moves = matches!(case, "ramp" | "huge" | "tiny") && info.is_weight();
            let want: Vec<f32> = if moves {
                let norm = |v: &[f32]| v.iter().map(|a| f64::from(*a).powi(2)).sum::<f64>().sqrt();
                let k = (f64::from(gamma) * norm(p) / norm(grad)) as f32;
                p.iter().zip(grad).map(|(a, b)| a + k * b).collect()
            } else {
                p.clone()
            };
            assert!(g.iter().all(|v| v.is_finite()), "{case}: finite weights");
            assert!(rel_diff(&g, &want) < 1e-6, "{case}");
            if moves {
                assert!(rel_diff(&g, p) > 1e-4, "{case}: a weight moved");
            }
        }
    }
}

/// Augmented epochs: the burn path gathers exactly the images the CPU engine builds, and an epoch
/// on augmented batches steps both engines alike (and differently from plain batches).
#[test]
fn augmented_epochs_equal_the_cpu_engine() {
    let aug = Augment {
        flip: true,
        shift: 2,
    };
    let spec = OptimSpec::Sgd {
        lr: 0.05,
        momentum: 0.9,
        weight_decay: 0.0,
    };
    let model = Model::init(&Arch::small_cnn(), 21).unwrap();
    let (x, y) = inputs(&model, 48, 22);
    let len = model.input_len();
    let data = upload(&x, &y, len);

    let mut e = Engine::<Ad>::new(&model, spec, dev()).unwrap();
    e.set_augment(aug).unwrap();
    let mut want = x.clone();
    aug.apply(&mut want, model.arch().input, 77);
    assert_ne!(want, x);
    assert_eq!(host(e.augmented(data.x.clone(), 77)), want);

    let idx: Vec<usize> = (0..48).collect();
    let run_cpu = |augment: Augment| {
        let mut cpu = Trainer::new(model.clone(), spec, 1);
        cpu.set_augment(augment).unwrap();
        let s = cpu
            .epoch(
                &x,
                &y,
                &idx,
                16,
                &Objective::Clean,
                &mut |_| 1.0,
                5,
                &mut |_, _, _| true,
            )
            .unwrap();
        (s, cpu.model)
    };
    let (a, cpu_model) = run_cpu(aug);
    let b = e
        .epoch(
            &data,
            &idx,
            16,
            &Objective::Clean,
            &mut |_| 1.0,
            5,
            &mut |_, _, _| true,
        )
        .unwrap();
    assert!((a.loss - b.loss).abs() < 1e-4, "loss {a:?} vs {b:?}");
    let got = e.model().unwrap();
    for (g, w) in got.params().iter().zip(cpu_model.params()) {
        let d = rel_diff(g, w);
        assert!(d < 1e-5, "weights differ by {d}");
    }
    let (plain, plain_model) = run_cpu(Augment::default());
    assert!(
        (plain.loss - a.loss).abs() > 1e-4,
        "augmentation changed nothing"
    );
    assert_ne!(plain_model.params(), cpu_model.params());

    assert!(
        e.set_augment(Augment {
            flip: false,
            shift: 14
        })
        .is_err()
    );
}

/// The evaluation network answers as the CPU engine does, on every named architecture: logits
/// with and without a graph, and input gradients of an arbitrary linear function of the logits,
/// whether or not a forward pass on the same inputs came first.
#[test]
fn device_network_answers_as_the_cpu_engine() {
    use warden_harden::net::Network;
    for arch in archs() {
        let model = init(&arch, 11);
        let (x, _) = inputs(&model, 5, 4);
        let mut ws = Workspace::default();
        let want = model.forward(&mut ws, &x, 5).unwrap().to_vec();
        let mut rng = Rng::new(6);
        let dl: Vec<f32> = (0..want.len())
            .map(|_| rng.uniform() as f32 * 2.0 - 1.0)
            .collect();
        model.backward(&mut ws, &x, &dl, None, true);
        let want_grad = ws.input_grad().to_vec();
        let mut net = DeviceNet::<Ad>::new(&model, dev()).unwrap();
        assert_eq!(net.input(), model.arch().input);
        assert_eq!(net.classes(), model.classes());
        let d = rel_diff(net.logits(&x, 5).unwrap(), &want);
        assert!(d < 1e-5, "{}: logits differ by {d}", arch.name);
        // Without a graph (the last call was `logits`), the gradient builds its own.
        let d = rel_diff(net.input_grad(&x, &dl).unwrap(), &want_grad);
        assert!(d < 1e-4, "{}: input gradients differ by {d}", arch.name);
        let d = rel_diff(net.forward(&x, 5).unwrap(), &want);
        assert!(d < 1e-5, "{}: logits differ by {d}", arch.name);
        let d = rel_diff(net.input_grad(&x, &dl).unwrap(), &want_grad);
        assert!(d < 1e-4, "{}: input gradients differ by {d}", arch.name);
        // Ragged inputs are refused, not panicked on.
        assert!(net.forward(&x[1..], 5).is_err());
        assert!(net.input_grad(&x, &dl[1..]).is_err());
        assert!(net.logits(&[], 0).is_err());
    }
}

/// The whole evaluation (FGSM, PGD with restarts, APGD-CE, -DLR, -T, FAB-T, Square, a corruption)
/// on burn's CPU backend gives the CPU engine's report: the same clean and corruption accuracy,
/// and robust accuracy within an example of 40 per attack (the engines round differently, which
/// can turn a signed step where a gradient entry is near zero). No claimed example is rejected.
#[test]
fn evaluation_on_burn_gives_the_cpu_engines_report() {
    use warden_harden::eval::{self, EvalConfig};
    use warden_harden::net::Compute;
    let model = Model::init(&Arch::small_cnn(), 4).unwrap();
    let n = 40;
    let (x, _) = inputs(&model, n, 8);
    let images: Vec<u8> = x.iter().map(|v| (v * 255.0).round() as u8).collect();
    let xs = warden_harden::train::to_f32(&images);
    let labels = model.predict(&mut Pool::new(1), &xs, n).unwrap();
    let set = warden_harden::Dataset {
        name: "random".into(),
        channels: 1,
        rows: 28,
        cols: 28,
        images,
        labels,
        sources: Vec::new(),
    };
    let cfg = EvalConfig {
        independent: true,
        ..EvalConfig::brief()
    };
    let cpu = eval::evaluate(&model, &mut Pool::new(2), &set, &cfg, &mut |_, _, _| {}).unwrap();
    let mut net = Evaluator::new(Device::Flex, &model).unwrap();
    assert!(net.backend().contains("Flex"));
    let on_burn = eval::evaluate_on(
        &mut Compute::Device {
            net: &mut net,
            chunk: 16,
        },
        &set,
        &cfg,
        &mut |_, _, _| {},
    )
    .unwrap();
    assert_eq!(cpu.clean_accuracy, 1.0);
    assert_eq!(on_burn.clean_accuracy, cpu.clean_accuracy);
    assert_eq!(on_burn.corruptions, cpu.corruptions);
    assert_eq!(on_burn.attacks.len(), cpu.attacks.len());
    let mut broke = false;
    for (b, c) in on_burn.attacks.iter().zip(&cpu.attacks) {
        assert_eq!(
            (&b.attack, b.eps, b.attacked),
            (&c.attack, c.eps, c.attacked)
        );
        assert_eq!((b.rejected, c.rejected), (0, 0), "{}", b.attack);
        assert!(
            (b.robust_accuracy - c.robust_accuracy).abs() <= 1.0 / n as f64 + 1e-9,
            "{} at {}: {} on burn, {} on the CPU engine",
            b.attack,
            b.eps,
            b.robust_accuracy,
            c.robust_accuracy
        );
        broke |= c.robust_accuracy < 0.9;
    }
    assert!(broke, "the attacks break something: {:?}", cpu.attacks);
}
