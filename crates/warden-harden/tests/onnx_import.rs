//! ONNX import against PyTorch: `tests/data/mini.onnx` is a small CNN exported by
//! `torch.onnx.export` (TorchScript exporter, torch 2.15.0) and `LOGITS` its outputs on three fixed
//! images, both made by `scripts/reference/make_onnx_fixture.py`; `tests/data/resnet-mini.onnx`
//! and `RESNET_LOGITS` are a small ResNet (batch norms, residual blocks, one with a strided
//! shortcut) from `scripts/reference/make_onnx_resnet_fixture.py`; `tests/data/view-dynamic.onnx`
//! and `view-static.onnx` with `VIEW_LOGITS` a CNN that flattens with `x.view(x.size(0), -1)`,
//! exported with a dynamic and with a fixed batch, from `scripts/reference/make_onnx_view_fixture.py`,
//! which also writes `dynamo-*.onnx`: the same network through PyTorch's default (torch.export)
//! exporter, weights in `*.onnx.data` beside the model.
//! The imported models give the same logits, take input gradients (white-box attacks run on them), and a damaged or unsupported
//! file is refused with an error.

#![allow(clippy::unwrap_used, clippy::print_stderr)]

use warden_harden::attack::{self, Norm, Pgd};
use warden_harden::nn::{Pool, Workspace};
use warden_harden::onnx::{OnnxError, import, import_with};

// torch 2.15.0+cu132
const LOGITS: [[f64; 10]; 3] = [
    [
        9.627524018e-02,
        4.283306748e-02,
        1.880524680e-03,
        7.228621840e-02,
        3.789633512e-02,
        -6.894627213e-02,
        1.941122413e-01,
        -6.292112917e-02,
        -2.012029290e-02,
        -6.934089959e-02,
    ],
    [
        8.749172091e-02,
        3.798738867e-02,
        -2.406893298e-03,
        7.270324975e-02,
        4.059849679e-02,
        -6.209256500e-02,
        1.991228461e-01,
        -6.623646617e-02,
        -3.535682335e-02,
        -7.463437319e-02,
    ],
    [
        9.163483232e-02,
        3.238968551e-02,
        1.118405815e-02,
        7.791617513e-02,
        3.412918374e-02,
        -7.907545567e-02,
        1.961515099e-01,
        -5.857344717e-02,
        -1.092362031e-02,
        -7.256652415e-02,
    ],
];

// torch 2.15.0+cu132, scripts/reference/make_onnx_dense_fixture.py
const DENSE_LOGITS: [[f64; 10]; 3] = [
    [
        -4.637196660e-01,
        1.245846987e+00,
        -4.342335463e-01,
        3.302669525e-01,
        8.646485209e-02,
        -1.008315235e-01,
        -7.399188280e-01,
        -1.504572183e-01,
        6.181994081e-01,
        -6.101291776e-01,
    ],
    [
        -4.695239067e-01,
        1.240462899e+00,
        -4.398522377e-01,
        3.319186568e-01,
        8.916050941e-02,
        -7.971063256e-02,
        -7.334023714e-01,
        -1.601029783e-01,
        6.117806435e-01,
        -6.168231368e-01,
    ],
    [
        -4.676798880e-01,
        1.259210348e+00,
        -4.400850534e-01,
        3.389253020e-01,
        9.230020642e-02,
        -1.052436531e-01,
        -7.488101721e-01,
        -1.548336297e-01,
        6.161476374e-01,
        -6.202983260e-01,
    ],
];

// torch 2.15.0+cu132, scripts/reference/make_onnx_concat_fixture.py
const INCEPTION_LOGITS: [[f64; 10]; 3] = [
    [
        -2.396619022e-01,
        4.701611400e-01,
        5.332002640e-01,
        1.689699888e-01,
        1.557113171e+00,
        1.319223762e+00,
        3.300767541e-01,
        -1.052589417e+00,
        -1.004297495e+00,
        -1.628283978e+00,
    ],
    [
        -2.402689755e-01,
        4.700434208e-01,
        5.330950022e-01,
        1.696966290e-01,
        1.558184385e+00,
        1.316958070e+00,
        3.302850127e-01,
        -1.049894929e+00,
        -1.002339959e+00,
        -1.631008625e+00,
    ],
    [
        -2.418828309e-01,
        4.663162529e-01,
        5.324828029e-01,
        1.653460562e-01,
        1.557282448e+00,
        1.315180779e+00,
        3.285753131e-01,
        -1.053308249e+00,
        -1.002216220e+00,
        -1.627963781e+00,
    ],
];

// torch 2.15.0+cu132, scripts/reference/make_onnx_gate_fixture.py
const MV3_LOGITS: [[f64; 10]; 3] = [
    [
        8.492360711e-01,
        4.792641103e-01,
        -1.583828092e+00,
        3.418281376e-01,
        -4.442462921e+00,
        -3.624323606e+00,
        -4.454144001e+00,
        4.061626911e+00,
        3.755091906e+00,
        -1.437457204e+00,
    ],
    [
        9.044505954e-01,
        4.894885719e-01,
        -1.615798473e+00,
        2.097851336e-01,
        -4.418169975e+00,
        -3.537353992e+00,
        -4.382720470e+00,
        4.069349289e+00,
        3.758590221e+00,
        -1.311856270e+00,
    ],
    [
        8.096101284e-01,
        4.670695961e-01,
        -1.503862381e+00,
        2.443377674e-01,
        -4.490302086e+00,
        -3.630475998e+00,
        -4.433084011e+00,
        4.016880989e+00,
        3.812787533e+00,
        -1.454831481e+00,
    ],
];

// torch 2.15.0+cu132, scripts/reference/make_onnx_gate_fixture.py
const SE_LOGITS: [[f64; 10]; 3] = [
    [
        3.592626572e+00,
        1.062738514e+01,
        -5.470571518e+00,
        1.216302299e+01,
        -1.213968182e+01,
        1.216657829e+01,
        -3.376029253e+00,
        4.570252895e+00,
        3.862876892e+00,
        -1.404389381e+01,
    ],
    [
        3.383021116e+00,
        1.008046436e+01,
        -5.362737656e+00,
        1.161877346e+01,
        -1.151659679e+01,
        1.115723324e+01,
        -3.340195894e+00,
        4.038305283e+00,
        3.470606804e+00,
        -1.342874622e+01,
    ],
    [
        2.918447018e+00,
        9.837830544e+00,
        -5.294094086e+00,
        1.172493172e+01,
        -1.111994743e+01,
        1.153173351e+01,
        -3.014969110e+00,
        3.889648438e+00,
        2.894174099e+00,
        -1.353064919e+01,
    ],
];

// torch 2.15.0+cu132, scripts/reference/make_onnx_silu_fixture.py
const SILU_LOGITS: [[f64; 10]; 3] = [
    [
        3.687158599e-02,
        1.074913442e-01,
        -1.146159172e-01,
        -3.140467405e-02,
        -2.173672058e-02,
        -1.465596072e-02,
        8.366397023e-02,
        -1.306442171e-02,
        8.311992139e-02,
        3.620380536e-02,
    ],
    [
        5.257184803e-02,
        4.866579548e-02,
        -1.174182296e-01,
        3.084482625e-03,
        2.992110327e-03,
        -7.525424659e-02,
        4.458440095e-02,
        -2.603922039e-03,
        -1.130638737e-02,
        5.525467917e-02,
    ],
    [
        4.594740644e-02,
        1.657443680e-02,
        -1.097800061e-01,
        1.412475295e-02,
        8.387796581e-03,
        -8.701730520e-02,
        6.058852747e-02,
        -2.731762081e-02,
        -3.834536299e-02,
        1.014915258e-01,
    ],
];

// torch 2.15.0+cu132
const RESNET_LOGITS: [[f64; 10]; 3] = [
    [
        1.492959559e-01,
        -1.384730488e-01,
        1.276593655e-01,
        -2.183008641e-01,
        2.272877842e-01,
        -3.406516314e-01,
        -1.232998669e-01,
        -9.475082159e-03,
        -1.097885296e-01,
        2.285969555e-01,
    ],
    [
        1.494739205e-01,
        -1.385620534e-01,
        1.276587248e-01,
        -2.181757092e-01,
        2.271560133e-01,
        -3.406993151e-01,
        -1.234633476e-01,
        -9.393271059e-03,
        -1.096341610e-01,
        2.287771106e-01,
    ],
    [
        1.493608654e-01,
        -1.385315806e-01,
        1.275599450e-01,
        -2.182420045e-01,
        2.271438390e-01,
        -3.406790495e-01,
        -1.233373433e-01,
        -9.382642806e-03,
        -1.096247509e-01,
        2.288322598e-01,
    ],
];

// torch 2.15.0+cu132
const VIEW_LOGITS: [[f64; 10]; 3] = [
    [
        -7.814019918e-02,
        -7.346580178e-02,
        2.172471136e-01,
        -1.180894822e-01,
        2.080478072e-01,
        2.257510126e-01,
        -3.015039563e-01,
        -7.489049435e-01,
        3.159599602e-01,
        -2.293307781e-01,
    ],
    [
        -8.186583221e-02,
        -7.213317603e-02,
        2.149660736e-01,
        -1.225094050e-01,
        2.074787319e-01,
        2.302244902e-01,
        -3.061405122e-01,
        -7.484213114e-01,
        3.092898130e-01,
        -2.325738668e-01,
    ],
    [
        -7.582758367e-02,
        -6.796199828e-02,
        2.132852674e-01,
        -1.209927052e-01,
        2.081585228e-01,
        2.245530337e-01,
        -3.095797896e-01,
        -7.562388778e-01,
        3.096784353e-01,
        -2.255978286e-01,
    ],
];

/// Each residual block's (body, shortcut) lengths, in order.
fn residual_blocks(m: &warden_harden::nn::Model) -> Vec<(usize, usize)> {
    m.arch()
        .layers
        .iter()
        .filter_map(|l| match l {
            warden_harden::nn::LayerSpec::Residual { body, shortcut } => {
                Some((body.len(), shortcut.len()))
            }
            _ => None,
        })
        .collect()
}

/// A model from `tests/data`, its external weights read beside it.
fn fixture(file: &str) -> warden_harden::nn::Model {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let bytes = std::fs::read(dir.join(file)).unwrap();
    import_with(&bytes, &mut |loc| {
        std::fs::read(dir.join(loc)).map_err(|e| e.to_string())
    })
    .unwrap()
}

/// `m`'s logits on [`inputs`] are `want`'s to `tol`, and PGD (L∞ 0.1, labels the model's own
/// predictions) moves every input by more than half the budget and stays inside it: gradients
/// flow through every layer to the input.
fn logits_match_and_pgd_moves_every_input(
    m: &warden_harden::nn::Model,
    want: &[[f64; 10]],
    tol: f64,
    file: &str,
) {
    let x = inputs();
    let logits = m
        .forward(&mut Workspace::default(), &x, 3)
        .unwrap()
        .to_vec();
    let worst = worst_logit_gap(&logits, want);
    eprintln!("{file}: max |Δlogit| = {worst:e}");
    assert!(worst < tol, "{file}: {worst}");
    let y: Vec<u8> = logits
        .chunks_exact(10)
        .map(|row| warden_harden::nn::argmax(row) as u8)
        .collect();
    let pgd = Pgd::linf(0.1, 0.02, 10, 1);
    let out = attack::run(m, &mut Pool::new(2), &pgd, &x, &y, 0).unwrap();
    let moved = attack::distances(Norm::Linf, &x, &out.adversarial, 784);
    assert!(moved.iter().all(|&d| d <= 0.1 + 1e-6), "{file}: {moved:?}");
    assert!(moved.iter().all(|&d| d > 0.05), "{file}: {moved:?}");
}

/// The largest |Δ| between 10-class logits, row by row, and PyTorch's.
fn worst_logit_gap(logits: &[f32], want: &[[f64; 10]]) -> f64 {
    assert_eq!(logits.len(), want.len() * 10);
    logits
        .chunks_exact(10)
        .zip(want)
        .flat_map(|(row, want)| row.iter().zip(want).map(|(&g, w)| (f64::from(g) - w).abs()))
        .fold(0.0f64, f64::max)
}

fn inputs() -> Vec<f32> {
    (0..3)
        .flat_map(|n| {
            (0..784).map(move |i| (0.5 + 0.5 * (0.37 * i as f64 + 1.3 * n as f64).sin()) as f32)
        })
        .collect()
}

const FIXTURE: &[u8] = include_bytes!("data/mini.onnx");

#[test]
fn imported_model_matches_pytorch() {
    let m = import(FIXTURE).unwrap();
    assert_eq!(m.arch().input, [1, 28, 28]);
    assert_eq!(m.classes(), 10);
    assert_eq!(
        m.param_count(),
        4 * 9 + 4 + 6 * 4 * 9 + 6 + 216 * 32 + 32 + 32 * 10 + 10
    );
    let x = inputs();
    let mut ws = Workspace::default();
    let logits = m.forward(&mut ws, &x, 3).unwrap();
    let worst = worst_logit_gap(logits, &LOGITS);
    eprintln!("max |Δlogit| = {worst:e}");
    assert!(worst < 1e-5, "{worst}");
    // White-box: gradient attacks run on the imported model and stay in the ball.
    let y = [0u8, 1, 2];
    let out = attack::run(
        &m,
        &mut Pool::new(1),
        &Pgd::linf(0.1, 0.02, 10, 1),
        &x,
        &y,
        0,
    )
    .unwrap();
    for d in attack::distances(Norm::Linf, &x, &out.adversarial, 784) {
        assert!(d <= 0.1 + 1e-6);
    }
}

const RESNET: &[u8] = include_bytes!("data/resnet-mini.onnx");

/// A PyTorch ResNet (basic blocks, batch norms in both branches) imports white-box: two residual
/// blocks, the second with a strided 1×1 convolution on its shortcut, PyTorch's logits, and a
/// gradient attack that runs on it.
#[test]
fn imported_resnet_matches_pytorch() {
    let m = import(RESNET).unwrap();
    let blocks = residual_blocks(&m);
    // Conv, ReLU, Conv in each body (batch norms folded); the second shortcut a Conv.
    assert_eq!(blocks, vec![(3, 0), (3, 1)]);
    assert_eq!(
        m.param_count(),
        (8 * 9 + 8)
            + 2 * (8 * 8 * 9 + 8)
            + (16 * 8 * 9 + 16)
            + (16 * 16 * 9 + 16)
            + (16 * 8 + 16)
            + (16 * 10 + 10)
    );
    let x = inputs();
    let mut ws = Workspace::default();
    let logits = m.forward(&mut ws, &x, 3).unwrap();
    let worst = worst_logit_gap(logits, &RESNET_LOGITS);
    eprintln!("max |Δlogit| = {worst:e}");
    assert!(worst < 1e-5, "{worst}");
    // Labelled as the model predicts them, so that the attack has something to move.
    let y: Vec<u8> = logits
        .chunks_exact(10)
        .map(|row| warden_harden::nn::argmax(row) as u8)
        .collect();
    let pgd = Pgd::linf(0.1, 0.02, 10, 1);
    let out = attack::run(&m, &mut Pool::new(2), &pgd, &x, &y, 0).unwrap();
    let moved = attack::distances(Norm::Linf, &x, &out.adversarial, 784);
    assert!(moved.iter().all(|&d| d <= 0.1 + 1e-6), "{moved:?}");
    assert!(
        moved.iter().all(|&d| d > 0.05),
        "the attack moved every point: {moved:?}"
    );
    // Its export reads back as the same model.
    let back = import(&warden_harden::onnx::export(&m)).unwrap();
    assert_eq!(back.arch().layers, m.arch().layers);
    assert_eq!(back.params(), m.params());
    // A sum that is not an Add leaves the first block's branches without a join: refused.
    let pos = RESNET.windows(5).position(|w| w == b"\x22\x03Add").unwrap() + 2;
    let mut b = RESNET.to_vec();
    b[pos..pos + 3].copy_from_slice(b"Sub");
    match import(&b) {
        Err(OnnxError::Unsupported(m)) => assert!(m.contains("branch"), "{m}"),
        other => panic!("{:?}", other.map(|m| m.param_count())),
    }
}

/// `x.view(x.size(0), -1)` as the exporter writes it: with a dynamic batch, the target shape
/// computed from the input's (Shape, Gather, Unsqueeze, Concat, with Constant nodes); with a
/// fixed batch, a Constant node. Both import as the same flattening network, with PyTorch's
/// logits.
#[test]
fn view_flattening_imports_with_a_dynamic_or_a_fixed_batch() {
    use warden_harden::nn::LayerSpec;
    let x = inputs();
    let mut models = Vec::new();
    for bytes in [
        &include_bytes!("data/view-dynamic.onnx")[..],
        &include_bytes!("data/view-static.onnx")[..],
    ] {
        let m = import(bytes).unwrap();
        assert!(m.arch().layers.contains(&LayerSpec::Flatten));
        let logits = m
            .forward(&mut Workspace::default(), &x, 3)
            .unwrap()
            .to_vec();
        let worst = worst_logit_gap(&logits, &VIEW_LOGITS);
        assert!(worst < 1e-5, "{worst}");
        models.push(m);
    }
    assert_eq!(models[0].arch().layers, models[1].arch().layers);
    assert_eq!(models[0].params(), models[1].params());
    // The computed shape must be the input's batch: Gather of dimension 1 instead of 0 (the
    // Gather index is the first Constant, a scalar 0 stored as 8 raw bytes) is refused.
    let dynamic = include_bytes!("data/view-dynamic.onnx");
    let zero = [0x4a, 0x08, 0, 0, 0, 0, 0, 0, 0, 0];
    let pos = dynamic.windows(10).position(|w| w == zero).unwrap();
    let mut b = dynamic.to_vec();
    b[pos + 2] = 1;
    assert!(
        matches!(import(&b), Err(OnnxError::Unsupported(_))),
        "a reshape to a shape computed otherwise"
    );
}

/// PyTorch's default exporter keeps the weights in a file beside the model and writes the flatten
/// as a Reshape to `[-1, 144]` (dynamic batch) or `[3, 144]` (the example's batch): both import
/// with PyTorch's logits when the file is read, and are refused without it. The external file's
/// name must be a plain file name: one that leaves the directory is refused before anything is
/// read, and data past the end of the file is refused.
#[test]
fn default_exporter_files_import_with_their_external_weights() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let x = inputs();
    for name in ["dynamo-dynamic.onnx", "dynamo-static.onnx"] {
        let bytes = std::fs::read(dir.join(name)).unwrap();
        let mut asked = Vec::new();
        let m = import_with(&bytes, &mut |loc| {
            asked.push(loc.to_string());
            std::fs::read(dir.join(loc)).map_err(|e| e.to_string())
        })
        .unwrap();
        assert_eq!(asked, vec![format!("{name}.data")], "each file read once");
        let logits = m
            .forward(&mut Workspace::default(), &x, 3)
            .unwrap()
            .to_vec();
        let worst = worst_logit_gap(&logits, &VIEW_LOGITS);
        assert!(worst < 1e-5, "{name}: {worst}");
        match import(&bytes) {
            Err(OnnxError::External(m)) => assert!(m.contains(".onnx.data"), "{m}"),
            other => panic!("{:?}", other.map(|m| m.param_count())),
        }
        // Too short a file: the tensors' ranges run past its end.
        let short = import_with(&bytes, &mut |_| Ok(vec![0; 100]));
        assert!(matches!(short, Err(OnnxError::Format(_))), "{name}");
        // A location that leaves the directory, written over the real one (same length).
        let loc = format!("{name}.data");
        let evil = format!("../{}", &loc[3..]);
        let mut b = bytes.clone();
        let mut at = 0;
        while let Some(p) = b[at..].windows(loc.len()).position(|w| w == loc.as_bytes()) {
            b[at + p..at + p + loc.len()].copy_from_slice(evil.as_bytes());
            at += p + loc.len();
        }
        assert!(at > 0);
        let mut read = false;
        let r = import_with(&b, &mut |_| {
            read = true;
            Ok(Vec::new())
        });
        assert!(matches!(r, Err(OnnxError::External(_))) && !read);
    }
}

/// PyTorch's `nn.SiLU`, which both exporters write as `x · Sigmoid(x)` (a value read by two
/// nodes), imports as SiLU: after the stem, inside a residual body and before the head; the same
/// layers from both exporters and PyTorch's logits; gradients go through it.
#[test]
fn silu_imports_from_both_exporters() {
    use warden_harden::nn::LayerSpec::{self, *};
    for file in ["silu-mini.onnx", "silu-mini-dynamo.onnx"] {
        let m = fixture(file);
        let layers = &m.arch().layers;
        let kinds: Vec<&str> = layers
            .iter()
            .map(|l| match l {
                Conv2d { .. } => "conv",
                Silu => "silu",
                Residual { .. } => "residual",
                Flatten => "flatten",
                Linear { .. } => "linear",
                _ => "other",
            })
            .collect();
        assert_eq!(
            kinds,
            ["conv", "silu", "residual", "silu", "flatten", "linear"],
            "{file}"
        );
        let Residual { body, shortcut } = &layers[2] else {
            unreachable!()
        };
        assert!(shortcut.is_empty(), "{file}");
        assert_eq!(body.len(), 3, "{file}");
        assert_eq!(body[1], LayerSpec::Silu, "{file}");
        logits_match_and_pgd_moves_every_input(&m, &SILU_LOGITS, 1e-5, file);
    }
}

/// A small EfficientNet in torchvision's parts (SiLU, depthwise convolutions, squeeze-and-
/// excitation as `scale * x`, batch norms) imports white-box from both exporters: the first
/// block's gate inside its residual body, the second block's at the top level; PyTorch's logits;
/// a gradient attack runs on it.
#[test]
fn squeeze_and_excitation_imports_as_gates() {
    use warden_harden::nn::LayerSpec::{self, *};
    let se = |l: &LayerSpec| {
        let squeeze = [GlobalAvgPool, Silu, Sigmoid];
        matches!(l, Gate { body } if body.len() == 5
            && [&body[0], &body[2], &body[4]].into_iter().eq(&squeeze)
            && matches!((&body[1], &body[3]), (Conv2d { .. }, Conv2d { .. })))
    };
    for file in ["se-mini.onnx", "se-mini-dynamo.onnx"] {
        let m = fixture(file);
        let layers = &m.arch().layers;
        let blocks: Vec<&LayerSpec> = layers
            .iter()
            .filter(|l| matches!(l, Residual { .. } | Gate { .. }))
            .collect();
        assert_eq!(blocks.len(), 2, "{file}: {layers:?}");
        let Residual { body, shortcut } = blocks[0] else {
            panic!("{file}: {:?}", blocks[0])
        };
        assert!(shortcut.is_empty());
        assert_eq!(body.iter().filter(|l| se(l)).count(), 1, "{file}: {body:?}");
        assert!(se(blocks[1]), "{file}: {:?}", blocks[1]);
        assert_eq!(
            layers.iter().filter(|l| **l == Silu).count(),
            4,
            "{file}: stem, the second block's two, the head"
        );
        logits_match_and_pgd_moves_every_input(&m, &SE_LOGITS, 1e-4, file);
    }
}

/// MobileNet V3 in small, from torchvision's parts (hard swish, squeeze-and-excitation gated by a
/// hard sigmoid, ReLU in the first block): from the TorchScript exporter at opset 13, where hard
/// swish is `x · HardSigmoid(x)`, and from the default exporter, which writes HardSwish nodes.
/// The same layers from both, PyTorch's logits, and an attack that moves every input.
#[test]
fn mobilenet_v3_imports_from_both_exporters() {
    use warden_harden::nn::LayerSpec::{self, *};
    let mut seen: Option<Vec<LayerSpec>> = None;
    for file in ["mv3-mini.onnx", "mv3-mini-dynamo.onnx"] {
        let m = fixture(file);
        let layers = m.arch().layers.clone();
        let gates = |ls: &[LayerSpec]| {
            ls.iter()
                .filter(|l| matches!(l, Gate { body } if body.last() == Some(&HardSigmoid)))
                .count()
        };
        let in_residual: usize = layers
            .iter()
            .map(|l| match l {
                Residual { body, .. } => gates(body),
                _ => 0,
            })
            .sum();
        assert_eq!((gates(&layers), in_residual), (1, 1), "{file}: {layers:?}");
        assert_eq!(
            layers.iter().filter(|l| **l == HardSwish).count(),
            3,
            "{file}: the stem, the last convolution and the classifier's"
        );
        if let Some(prev) = &seen {
            assert_eq!(prev, &layers, "{file}");
        }
        seen = Some(layers);
        logits_match_and_pgd_moves_every_input(&m, &MV3_LOGITS, 1e-5, file);
    }
}

/// torchvision's multi-branch parts (SqueezeNet's `Fire`, GoogLeNet's `Inception` with its
/// ceil-mode max pool in a branch, ceil-mode pools between them) import from both exporters: a
/// concatenation of two branches, then one of four, in PyTorch's channel order; PyTorch's
/// logits; an attack that moves every input.
#[test]
fn concatenated_branches_import_from_both_exporters() {
    use warden_harden::nn::LayerSpec::*;
    for file in ["inception-mini.onnx", "inception-mini-dynamo.onnx"] {
        let m = fixture(file);
        let layers = &m.arch().layers;
        let widths: Vec<Vec<usize>> = layers
            .iter()
            .filter_map(|l| match l {
                Concat { branches } => Some(branches.iter().map(Vec::len).collect()),
                _ => None,
            })
            .collect();
        // Fire: conv+ReLU twice (ReLUs stay layers in the file's chain); Inception: 1, 2 and 2
        // convolutions with their ReLUs, and the pool branch.
        assert_eq!(widths, [vec![2, 2], vec![2, 4, 4, 3]], "{file}: {layers:?}");
        let ceil_pools = layers
            .iter()
            .filter(|l| {
                matches!(
                    l,
                    MaxPool2d {
                        ceil_mode: true,
                        ..
                    }
                )
            })
            .count();
        assert_eq!(ceil_pools, 2, "{file}");
        logits_match_and_pgd_moves_every_input(&m, &INCEPTION_LOGITS, 1e-5, file);
    }
}

/// The same ResNet through PyTorch's default exporter (weights beside the model, batch norms
/// folded by the exporter, the global pool as a ReduceMean over the spatial axes): the same
/// blocks and PyTorch's logits.
#[test]
fn the_default_exporters_resnet_imports_too() {
    use warden_harden::nn::LayerSpec;
    let m = fixture("resnet-mini-dynamo.onnx");
    let blocks = residual_blocks(&m);
    assert_eq!(blocks, vec![(3, 0), (3, 1)]);
    assert!(m.arch().layers.contains(&LayerSpec::GlobalAvgPool));
    let logits = m
        .forward(&mut Workspace::default(), &inputs(), 3)
        .unwrap()
        .to_vec();
    let worst = worst_logit_gap(&logits, &RESNET_LOGITS);
    assert!(worst < 1e-5, "{worst}");
}

#[test]
fn refuses_damaged_and_unsupported_files() {
    assert!(matches!(
        import(b""),
        Err(OnnxError::Format(_) | OnnxError::Unsupported(_))
    ));
    assert!(import(&FIXTURE[..FIXTURE.len() / 2]).is_err(), "truncated");
    assert!(
        import(&[
            0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01
        ])
        .is_err(),
        "overlong varint"
    );
    assert!(
        import(&[0x3a, 0xff, 0xff, 0xff, 0xff, 0x0f]).is_err(),
        "length past the end"
    );
    // Every single-byte change either imports or errors, never panics.
    for i in (0..FIXTURE.len()).step_by(7) {
        let mut b = FIXTURE.to_vec();
        b[i] ^= 0x5a;
        let _ = import(&b);
    }
    // An operator the engine does not have: the first op_type "Relu" (NodeProto field 4, length 4)
    // renamed to "Selu".
    let pos = FIXTURE
        .windows(6)
        .position(|w| w == b"\x22\x04Relu")
        .unwrap()
        + 2;
    let mut b = FIXTURE.to_vec();
    b[pos..pos + 4].copy_from_slice(b"Selu");
    match import(&b) {
        Err(OnnxError::Unsupported(m)) => assert!(m.contains("Selu"), "{m}"),
        other => panic!("{:?}", other.map(|m| m.param_count())),
    }
}

/// Export then import gives back the same layers and the same weights (strided convolutions and
/// overlapping pools included: dp-cnn; average and global average pools).
#[test]
fn export_round_trips() {
    use warden_harden::nn::{Arch, LayerSpec, Model};
    for arch in [
        Arch::small_cnn(),
        Arch::cnn4(),
        Arch::dp_cnn(),
        Arch::mlp(&[64, 32]),
        Arch::strided(8, 16, 32, "elu").with_activation(LayerSpec::Elu, "elu"),
        Arch::strided(8, 16, 32, "silu").with_activation(LayerSpec::Silu, "silu"),
        Arch::strided(8, 16, 32, "hardswish").with_activation(LayerSpec::HardSwish, "hardswish"),
        avg_arch(),
        gated_arch(),
        concat_arch(),
    ] {
        let m = Model::init(&arch, 4).unwrap();
        let bytes = warden_harden::onnx::export(&m);
        let back = import(&bytes).unwrap();
        assert_eq!(back.arch().layers, arch.layers, "{}", arch.name);
        assert_eq!(back.params(), m.params(), "{}", arch.name);
    }
}

/// Squeeze-and-excitation gates, at the top level and inside a residual body, and a gate with a
/// factor per value.
fn gated_arch() -> warden_harden::nn::Arch {
    use warden_harden::nn::{Arch, LayerSpec::*};
    let conv = |cin, cout, kernel, padding, groups| Conv2d {
        in_channels: cin,
        out_channels: cout,
        kernel,
        padding,
        stride: 1,
        groups,
    };
    let se = Gate {
        body: vec![
            GlobalAvgPool,
            conv(4, 2, 1, 0, 1),
            Silu,
            conv(2, 4, 1, 0, 1),
            Sigmoid,
        ],
    };
    Arch {
        name: "gated".into(),
        input: [1, 8, 8],
        classes: 10,
        layers: vec![
            conv(1, 4, 3, 1, 1),
            Silu,
            se.clone(),
            Residual {
                body: vec![conv(4, 4, 3, 1, 4), Silu, se, conv(4, 4, 1, 0, 1)],
                shortcut: vec![],
            },
            Gate {
                body: vec![conv(4, 4, 3, 1, 1), HardSigmoid],
            },
            Flatten,
            Linear {
                in_features: 256,
                out_features: 10,
            },
        ],
    }
}

/// A concatenation of three branches (one the identity, one through a ceil-mode max pool).
fn concat_arch() -> warden_harden::nn::Arch {
    use warden_harden::nn::{Arch, LayerSpec::*};
    let conv = |cin, cout, kernel, padding| Conv2d {
        in_channels: cin,
        out_channels: cout,
        kernel,
        padding,
        stride: 1,
        groups: 1,
    };
    Arch {
        name: "concat".into(),
        input: [1, 9, 9],
        classes: 10,
        layers: vec![
            conv(1, 4, 3, 1),
            Relu,
            Concat {
                branches: vec![
                    vec![conv(4, 2, 1, 0), Relu],
                    vec![],
                    vec![
                        MaxPool2d {
                            kernel: 3,
                            stride: Some(1),
                            padding: 1,
                            ceil_mode: true,
                        },
                        conv(4, 3, 1, 0),
                    ],
                ],
            },
            MaxPool2d {
                kernel: 2,
                stride: None,
                padding: 0,
                ceil_mode: true,
            },
            Flatten,
            Linear {
                in_features: 9 * 5 * 5,
                out_features: 10,
            },
        ],
    }
}

/// small-cnn with average pools (3, stride 2, then 2), and a global average before its head.
fn avg_arch() -> warden_harden::nn::Arch {
    use warden_harden::nn::{Arch, LayerSpec::*};
    Arch {
        name: "avg".into(),
        input: [1, 28, 28],
        classes: 10,
        layers: vec![
            Conv2d {
                in_channels: 1,
                out_channels: 4,
                kernel: 3,
                padding: 1,
                stride: 1,
                groups: 1,
            },
            Relu,
            AvgPool2d {
                kernel: 3,
                stride: Some(2),
            },
            Conv2d {
                in_channels: 4,
                out_channels: 8,
                kernel: 3,
                padding: 0,
                stride: 1,
                groups: 1,
            },
            AvgPool2d {
                kernel: 2,
                stride: None,
            },
            Relu,
            GlobalAvgPool,
            Flatten,
            Linear {
                in_features: 8,
                out_features: 10,
            },
        ],
    }
}

/// Protobuf helpers for hand-made hostile files.
fn key(out: &mut Vec<u8>, field: u64, wire: u64) {
    varint(out, field << 3 | wire);
}
fn varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}
fn bytes(out: &mut Vec<u8>, field: u64, b: &[u8]) {
    key(out, field, 2);
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// A graph with input x: [n, 1, 28, 28] and the given nodes and initializers.
fn model_with(nodes: &[Vec<u8>], inits: &[Vec<u8>]) -> Vec<u8> {
    let mut dims = Vec::new();
    for d in [None, Some(1u64), Some(28), Some(28)] {
        let mut dim = Vec::new();
        match d {
            Some(v) => {
                key(&mut dim, 1, 0);
                varint(&mut dim, v);
            }
            None => bytes(&mut dim, 2, b"n"),
        }
        bytes(&mut dims, 1, &dim);
    }
    let mut tt = Vec::new();
    key(&mut tt, 1, 0);
    varint(&mut tt, 1);
    bytes(&mut tt, 2, &dims);
    let mut ty = Vec::new();
    bytes(&mut ty, 1, &tt);
    let mut vi = Vec::new();
    bytes(&mut vi, 1, b"x");
    bytes(&mut vi, 2, &ty);
    let mut g = Vec::new();
    for n in nodes {
        bytes(&mut g, 1, n);
    }
    for t in inits {
        bytes(&mut g, 5, t);
    }
    bytes(&mut g, 11, &vi);
    let mut m = Vec::new();
    bytes(&mut m, 7, &g);
    m
}

fn node(op: &str, inputs: &[&str], output: &str) -> Vec<u8> {
    let mut n = Vec::new();
    for i in inputs {
        bytes(&mut n, 1, i.as_bytes());
    }
    bytes(&mut n, 2, output.as_bytes());
    bytes(&mut n, 4, op.as_bytes());
    n
}

/// A float tensor of `values` zeros (whatever `dims` claims).
fn float_init(name: &str, dims: &[i64], values: usize) -> Vec<u8> {
    float_values(name, dims, &vec![0.0; values])
}

#[test]
fn hand_made_hostile_graphs_are_refused() {
    // A Conv without its weight input.
    assert!(matches!(
        import(&model_with(&[node("Conv", &["x"], "y")], &[])),
        Err(OnnxError::Format(_))
    ));
    // A Gemm whose weight claims 2^40 outputs with no values: refused before any allocation.
    let huge = float_init("w", &[1 << 40, 0], 0);
    let g = model_with(
        &[node("Flatten", &["x"], "f"), node("Gemm", &["f", "w"], "y")],
        &[huge],
    );
    assert!(import(&g).is_err());
    // A MatMul whose weight has a zero dimension and a huge one.
    let zero = float_init("w", &[0, 1 << 40], 0);
    let g = model_with(
        &[
            node("Flatten", &["x"], "f"),
            node("MatMul", &["f", "w"], "y"),
        ],
        &[zero],
    );
    assert!(import(&g).is_err());
    // A MatMul followed by an Add without a bias input.
    let w = float_init("w", &[784, 10], 7840);
    let g = model_with(
        &[
            node("Flatten", &["x"], "f"),
            node("MatMul", &["f", "w"], "m"),
            node("Add", &["m"], "y"),
        ],
        std::slice::from_ref(&w),
    );
    assert!(import(&g).is_err());
    // The same graph, well formed, imports.
    let b = float_init("b", &[10], 10);
    let g = model_with(
        &[
            node("Flatten", &["x"], "f"),
            node("MatMul", &["f", "w"], "m"),
            node("Add", &["m", "b"], "y"),
        ],
        &[w, b],
    );
    let m = import(&g).unwrap();
    assert_eq!(m.param_count(), 7850);
}

fn float_values(name: &str, dims: &[i64], values: &[f32]) -> Vec<u8> {
    let mut t = Vec::new();
    for &d in dims {
        key(&mut t, 1, 0);
        varint(&mut t, d as u64);
    }
    key(&mut t, 2, 0);
    varint(&mut t, 1);
    bytes(&mut t, 8, name.as_bytes());
    let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    bytes(&mut t, 9, &raw);
    t
}

/// A node with one float attribute.
fn node_with_float(op: &str, inputs: &[&str], output: &str, attr: &str, v: f32) -> Vec<u8> {
    let mut n = node(op, inputs, output);
    let mut a = Vec::new();
    bytes(&mut a, 1, attr.as_bytes());
    key(&mut a, 2, 5);
    a.extend_from_slice(&v.to_le_bytes());
    bytes(&mut n, 5, &a);
    n
}

/// `Gemm(f, lw, lb)` as PyTorch exports `nn.Linear`: transB = 1.
fn gemm(input: &str, output: &str) -> Vec<u8> {
    let mut n = node("Gemm", &[input, "lw", "lb"], output);
    let mut a = Vec::new();
    bytes(&mut a, 1, b"transB");
    key(&mut a, 3, 0);
    varint(&mut a, 1);
    bytes(&mut n, 5, &a);
    n
}

fn values(k: usize, seed: f32) -> Vec<f32> {
    (0..k).map(|i| (seed * (i as f32 + 1.0)).sin()).collect()
}

/// An exported inference graph with what PyTorch puts around the layers: Conv (2 channels, 3×3,
/// stride 3) → BatchNormalization (ε 1e-3) → Relu → Dropout → Flatten → Gemm → Identity →
/// LogSoftmax. The imported logits equal a direct computation of conv, batch norm, ReLU and the
/// linear layer written out here; the same graph with a final Softmax imports to the same model;
/// batch norm where it cannot be folded becomes an affine layer; statistics of the wrong length,
/// an ELU with α ≠ 1, or a softmax before the end, are refused.
#[test]
fn batch_norm_is_folded_and_inference_wrappers_pass_through() {
    let (cw, cb) = (values(18, 0.7), values(2, 1.9));
    let (scale, shift) = (vec![1.5f32, -0.5], vec![0.25f32, 0.1]);
    let (mean, var) = (vec![0.3f32, -0.2], vec![0.8f32, 2.5]);
    let (lw, lb) = (values(10 * 162, 0.013), values(10, 2.3));
    let inits = || {
        vec![
            float_values("cw", &[2, 1, 3, 3], &cw),
            float_values("cb", &[2], &cb),
            float_values("s", &[2], &scale),
            float_values("t", &[2], &shift),
            float_values("m", &[2], &mean),
            float_values("v", &[2], &var),
            float_values("lw", &[10, 162], &lw),
            float_values("lb", &[10], &lb),
        ]
    };
    let mut conv = node("Conv", &["x", "cw", "cb"], "c");
    let mut strides = Vec::new();
    bytes(&mut strides, 1, b"strides");
    key(&mut strides, 8, 0);
    varint(&mut strides, 3);
    key(&mut strides, 8, 0);
    varint(&mut strides, 3);
    bytes(&mut conv, 5, &strides);
    let graph = |last: &str| {
        let nodes = [
            conv.clone(),
            node_with_float(
                "BatchNormalization",
                &["c", "s", "t", "m", "v"],
                "b",
                "epsilon",
                1e-3,
            ),
            node("Relu", &["b"], "r"),
            node("Dropout", &["r"], "d"),
            node("Flatten", &["d"], "f"),
            gemm("f", "g"),
            node("Identity", &["g"], "i"),
            node(last, &["i"], "y"),
        ];
        model_with(&nodes, &inits())
    };
    let m = import(&graph("LogSoftmax")).unwrap();
    assert_eq!(m.arch().layers.len(), 4, "{:?}", m.arch().layers);
    let x = inputs();
    let mut ws = Workspace::default();
    let got = m.forward(&mut ws, &x, 3).unwrap().to_vec();
    let mut worst = 0f64;
    for (img, row) in x.chunks_exact(784).zip(got.chunks_exact(10)) {
        // Conv 3×3 stride 3 on 28×28: 9×9 outputs per channel, then BN and ReLU, channel-first.
        let mut feat = Vec::new();
        for c in 0..2 {
            for oy in 0..9 {
                for ox in 0..9 {
                    let mut z = cb[c];
                    for ky in 0..3 {
                        for kx in 0..3 {
                            z += cw[c * 9 + ky * 3 + kx] * img[(oy * 3 + ky) * 28 + ox * 3 + kx];
                        }
                    }
                    let z = (z - mean[c]) / (var[c] + 1e-3).sqrt() * scale[c] + shift[c];
                    feat.push(z.max(0.0));
                }
            }
        }
        for (o, &g) in row.iter().enumerate() {
            // In f64, with the size of the sum's terms to scale f32's rounding.
            let terms = (0..162).map(|j| f64::from(lw[o * 162 + j]) * f64::from(feat[j]));
            let want = f64::from(lb[o]) + terms.clone().sum::<f64>();
            let size = f64::from(lb[o].abs()) + terms.map(f64::abs).sum::<f64>();
            worst = worst.max((f64::from(g) - want).abs() / size);
        }
    }
    assert!(worst < 1e-6, "max |Δlogit| / size = {worst}");
    let soft = import(&graph("Softmax")).unwrap();
    assert_eq!(soft.params(), m.params());

    // Batch norm after a ReLU cannot be folded into a layer: an affine layer of its own, its
    // scale `s/√(v + ε)` and shift `t − m·scale` (ε the default 1e-5).
    let nodes = [
        conv.clone(),
        node("Relu", &["c"], "r"),
        node("BatchNormalization", &["r", "s", "t", "m", "v"], "b"),
        node("Flatten", &["b"], "f"),
        gemm("f", "y"),
    ];
    let pre = import(&model_with(&nodes, &inits())).unwrap();
    assert_eq!(
        pre.arch().layers[1..3],
        [
            warden_harden::nn::LayerSpec::Relu,
            warden_harden::nn::LayerSpec::Affine { channels: 2 }
        ]
    );
    let k: Vec<f64> = (0..2)
        .map(|c| f64::from(scale[c]) / (f64::from(var[c]) + 1e-5).sqrt())
        .collect();
    for c in 0..2 {
        let b = f64::from(shift[c]) - f64::from(mean[c]) * k[c];
        assert!((f64::from(pre.params()[2][c]) - k[c]).abs() < 1e-6);
        assert!((f64::from(pre.params()[3][c]) - b).abs() < 1e-6);
    }
    // Statistics of the wrong length.
    let mut short = inits();
    short[5] = float_values("v", &[1], &[1.0]);
    let nodes = [
        conv.clone(),
        node("BatchNormalization", &["c", "s", "t", "m", "v"], "b"),
        node("Flatten", &["b"], "f"),
        gemm("f", "y"),
    ];
    assert!(import(&model_with(&nodes, &short)).is_err());
    // An ELU with another alpha than PyTorch's nn.ELU().
    let nodes = [
        conv.clone(),
        node_with_float("Elu", &["c"], "e", "alpha", 0.5),
        node("Flatten", &["e"], "f"),
        gemm("f", "y"),
    ];
    match import(&model_with(&nodes, &inits())) {
        Err(OnnxError::Unsupported(msg)) => assert!(msg.contains("Elu"), "{msg}"),
        other => panic!("{:?}", other.map(|m| m.param_count())),
    }
    // A HardSigmoid with ONNX's default alpha (0.2), not PyTorch's 1/6; PyTorch's imports.
    for (alpha, ok) in [(0.2, false), (1.0 / 6.0, true)] {
        let nodes = [
            conv.clone(),
            node_with_float("HardSigmoid", &["c"], "h", "alpha", alpha),
            node("Flatten", &["h"], "f"),
            gemm("f", "y"),
        ];
        match import(&model_with(&nodes, &inits())) {
            Err(OnnxError::Unsupported(msg)) if !ok => {
                assert!(msg.contains("HardSigmoid"), "{msg}")
            }
            Ok(m) if ok => assert!(
                m.arch()
                    .layers
                    .contains(&warden_harden::nn::LayerSpec::HardSigmoid)
            ),
            other => panic!("{alpha}: {:?}", other.map(|m| m.param_count())),
        }
    }
    // A softmax that is not the last node.
    let nodes = [
        conv,
        node("Flatten", &["c"], "f"),
        node("Softmax", &["f"], "s1"),
        gemm("s1", "y"),
    ];
    assert!(import(&model_with(&nodes, &inits())).is_err());
}

/// A node with attributes: integer lists, and integers (`ceil_mode`) or strings (`auto_pad`).
fn node_with_attrs(
    op: &str,
    inputs: &[&str],
    output: &str,
    ints: &[(&str, &[i64])],
    scalars: &[(&str, Scalar)],
) -> Vec<u8> {
    let mut n = node(op, inputs, output);
    for (name, vals) in ints {
        let mut a = Vec::new();
        bytes(&mut a, 1, name.as_bytes());
        for &v in *vals {
            key(&mut a, 8, 0);
            varint(&mut a, v as u64);
        }
        bytes(&mut n, 5, &a);
    }
    for (name, v) in scalars {
        let mut a = Vec::new();
        bytes(&mut a, 1, name.as_bytes());
        match v {
            Scalar::Int(i) => {
                key(&mut a, 3, 0);
                varint(&mut a, *i as u64);
            }
            Scalar::Str(s) => bytes(&mut a, 4, s.as_bytes()),
        }
        bytes(&mut n, 5, &a);
    }
    n
}

#[derive(Debug, Clone, Copy)]
enum Scalar {
    Int(i64),
    Str(&'static str),
}

/// AveragePool (2×2, stride 2) → GlobalAveragePool → Flatten → MatMul + Add imports as average
/// pools whose logits are `mean(x)·w + b` (a 2×2 mean of a 28×28 image, then the mean of those,
/// is the mean of the image); padded, auto-padded or ceil-mode average pools are refused.
#[test]
fn average_pools_import_and_padded_ones_are_refused() {
    use warden_harden::nn::{LayerSpec, Workspace};
    let (w, b) = (values(10, 0.37), values(10, 1.3));
    let pool = |ints: &[(&str, &[i64])], scalars: &[(&str, Scalar)]| {
        let mut all: Vec<(&str, &[i64])> = vec![("kernel_shape", &[2, 2]), ("strides", &[2, 2])];
        all.extend_from_slice(ints);
        model_with(
            &[
                node_with_attrs("AveragePool", &["x"], "p", &all, scalars),
                node("GlobalAveragePool", &["p"], "g"),
                node("Flatten", &["g"], "f"),
                node("MatMul", &["f", "w"], "m"),
                node("Add", &["m", "b"], "y"),
            ],
            &[
                float_values("w", &[1, 10], &w),
                float_values("b", &[10], &b),
            ],
        )
    };
    let back_layers = || {
        [
            LayerSpec::AvgPool2d {
                kernel: 2,
                stride: None,
            },
            LayerSpec::GlobalAvgPool,
        ]
    };
    let m = import(&pool(&[], &[])).unwrap();
    assert_eq!(m.arch().layers[..2], back_layers());
    let x = inputs();
    let n = x.len() / 784;
    let mut ws = Workspace::default();
    let got = m.forward(&mut ws, &x, n).unwrap().to_vec();
    for (i, img) in x.chunks(784).enumerate() {
        let mean = img.iter().map(|&v| f64::from(v)).sum::<f64>() / 784.0;
        for k in 0..10 {
            let want = mean * f64::from(w[k]) + f64::from(b[k]);
            let d = (f64::from(got[i * 10 + k]) - want).abs();
            assert!(
                d < 1e-5,
                "image {i}, class {k}: {} vs {want}",
                got[i * 10 + k]
            );
        }
    }
    // Explicit zero padding, floor mode, and auto_pad NOTSET or VALID are the same layer.
    assert!(
        import(&pool(
            &[("pads", &[0, 0, 0, 0])],
            &[("ceil_mode", Scalar::Int(0))]
        ))
        .is_ok()
    );
    for mode in ["NOTSET", "VALID"] {
        let m = import(&pool(&[], &[("auto_pad", Scalar::Str(mode))])).unwrap();
        assert_eq!(m.arch().layers[..2], back_layers(), "{mode}");
    }
    for (ints, scalars) in [
        (vec![("pads", &[1i64, 1, 1, 1][..])], vec![]),
        (vec![], vec![("ceil_mode", Scalar::Int(1))]),
        (vec![], vec![("auto_pad", Scalar::Str("SAME_UPPER"))]),
    ] {
        match import(&pool(&ints, &scalars)) {
            Err(OnnxError::Unsupported(msg)) => assert!(msg.contains("AveragePool"), "{msg}"),
            other => panic!("{ints:?} {scalars:?}: {:?}", other.map(|m| m.param_count())),
        }
    }
}

/// Pre-activation residual blocks and torchvision's DenseNet parts import from both exporters:
/// every batch norm that no convolution precedes becomes an affine layer, the dense block three
/// concatenations of an identity and a layer; PyTorch's logits; an attack that moves every input.
#[test]
fn pre_activation_and_dense_blocks_import_from_both_exporters() {
    use warden_harden::nn::LayerSpec::*;
    let mut seen = None;
    for file in ["dense-mini.onnx", "dense-mini-dynamo.onnx"] {
        let m = fixture(file);
        let layers = &m.arch().layers;
        // The first block's first batch norm follows the stem's convolution and is folded into
        // it; the second block's is not. Then the dense block's three layers, the transition's
        // and the head's.
        let affine = |l: &[warden_harden::nn::LayerSpec]| {
            l.iter()
                .filter(|l| matches!(l, Affine { .. }))
                .map(|l| match l {
                    Affine { channels } => *channels,
                    _ => 0,
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(affine(layers), [28, 14], "{file}: {layers:?}");
        assert_eq!(residual_blocks(&m), [(3, 1), (5, 0)], "{file}");
        let dense: Vec<Vec<usize>> = layers
            .iter()
            .filter_map(|l| match l {
                Concat { branches } => {
                    assert!(branches[0].is_empty(), "{file}: an identity first");
                    Some(affine(&branches[1]))
                }
                _ => None,
            })
            .collect();
        assert_eq!(dense, [vec![16], vec![20], vec![24]], "{file}");
        if let Some(prev) = &seen {
            assert_eq!(prev, layers, "{file}");
        }
        seen = Some(layers.clone());
        logits_match_and_pgd_moves_every_input(&m, &DENSE_LOGITS, 1e-5, file);
        // Its export (affine layers as batch norms of mean 0, variance 1 and ε 0) reads back
        // as the same model.
        let back = import(&warden_harden::onnx::export(&m)).unwrap();
        assert_eq!(back.arch().layers, *layers, "{file}");
        assert_eq!(back.params(), m.params(), "{file}");
    }
}

/// A dense block of `layers` layers built by hand, each a 1×1 convolution to one channel of the
/// `Concat` of the input and every earlier layer's output (with the `Concat` of the input alone
/// before the first, as the TorchScript exporter writes it, when `first_concat`), then a global
/// average pool and a linear layer.
fn dense_block_graph(layers: usize, first_concat: bool) -> Vec<u8> {
    let concat = |inputs: &[String], output: &str| {
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let mut n = node("Concat", &refs, output);
        let mut a = Vec::new();
        bytes(&mut a, 1, b"axis");
        key(&mut a, 3, 0);
        varint(&mut a, 1);
        key(&mut a, 20, 0);
        varint(&mut a, 2);
        bytes(&mut n, 5, &a);
        n
    };
    let (mut nodes, mut inits) = (Vec::new(), Vec::new());
    let mut parts = vec!["x".to_string()];
    for k in 1..=layers {
        let input = if k == 1 && !first_concat {
            "x".to_string()
        } else {
            let c = format!("c{k}");
            nodes.push(concat(&parts, &c));
            c
        };
        let (w, y) = (format!("w{k}"), format!("y{k}"));
        inits.push(float_values(&w, &[1, k as i64, 1, 1], &values(k, 0.3)));
        nodes.push(node("Conv", &[&input, &w], &y));
        parts.push(y);
    }
    nodes.push(concat(&parts, "end"));
    nodes.push(node("GlobalAveragePool", &["end"], "g"));
    nodes.push(node("Flatten", &["g"], "f"));
    nodes.push(gemm("f", "y"));
    let width = layers + 1;
    inits.push(float_values(
        "lw",
        &[10, width as i64],
        &values(10 * width, 0.01),
    ));
    inits.push(float_values("lb", &[10], &values(10, 0.5)));
    model_with(&nodes, &inits)
}

/// Dense blocks built by hand import with or without the first `Concat`, as concatenations of
/// the identity and each layer; a block of more layers than any DenseNet's is refused, quickly
/// (finding the layers compares each `Concat`'s inputs with the parts so far).
#[test]
fn dense_blocks_import_and_huge_ones_are_refused() {
    use warden_harden::nn::LayerSpec::*;
    for first_concat in [true, false] {
        let m = import(&dense_block_graph(12, first_concat)).unwrap();
        let widths: Vec<usize> = m
            .arch()
            .layers
            .iter()
            .filter_map(|l| match l {
                Concat { branches } if branches[0].is_empty() => match branches[1][..] {
                    [Conv2d { in_channels, .. }] => Some(in_channels),
                    _ => None,
                },
                _ => None,
            })
            .collect();
        assert_eq!(widths, (1..=12).collect::<Vec<_>>(), "{first_concat}");
        assert_eq!(
            m.param_count(),
            (1..=12).map(|k| k + 1).sum::<usize>() + 13 * 10 + 10
        );
    }
    let start = std::time::Instant::now();
    match import(&dense_block_graph(300, true)) {
        Err(OnnxError::Unsupported(msg)) => assert!(msg.contains("read by"), "{msg}"),
        other => panic!("{:?}", other.map(|m| m.param_count())),
    }
    assert!(start.elapsed().as_secs() < 10);
}
