//! `warden bench monitor`: the speed benchmark of the monitoring pillar (issue 6's "Speed" point).
//!
//! It builds realistic vectors from Fashion-MNIST and the small CNN (trained briefly here, or loaded
//! with `--model DIR`): the penultimate features (128 values) and logits of every image, the raw
//! pixels (784) for the reconstruction detectors, and the probability vectors of the feature
//! squeezing variants. It fits every per-request detector of `warden-monitor` on a reference split,
//! calibrates each one conformally on a held-out split into an ensemble, and then measures:
//!
//! - the latency of scoring one request with all per-request detectors together (and each alone),
//!   one request at a time on one thread, after a warm-up, excluding the model's forward passes;
//! - separately, the extra work feature squeezing needs per request at batch 1 (two squeezed
//!   copies of the image and two more forward passes), and the model's own forward pass;
//! - the throughput, in samples per second on one thread, of the stream detectors.
//!
//! `--dump DIR` writes the exact vectors (NumPy `.npy` files plus `meta.json`) so that
//! `scripts/bench/monitor_python_bench.py` measures the same detectors in Python on identical data.

use std::hint::black_box;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, Result};
use clap::Args;
use serde_json::{Value, json};
use warden_harden::data::{self, Split};
use warden_harden::nn::{Arch, Model, Workspace, argmax};
use warden_harden::optim::OptimSpec;
use warden_harden::train::{self, Method, Trainer};
use warden_monitor::detect::{
    Activation, Autoencoder, AutoencoderConfig, Combination, Confidence, ConfidenceKind,
    ConformalCalibration, Detector, Ensemble, ImageShape, Knn, KnnConfig, Mahalanobis,
    MahalanobisConfig, PValuePolicy, Pca, Scratch, Squeezer, Verdict, squeeze_score,
};
use warden_monitor::stats::KsMethod;
use warden_monitor::stream::{
    Adwin, AdwinConfig, ChiSquareShift, ChiSquareShiftConfig, Cusum, CusumConfig, OnlineMmd,
    OnlineMmdConfig, PageHinkley, PageHinkleyConfig, WindowKs, WindowKsConfig,
};

use crate::Outcome;
use crate::bench::percentile;
use crate::harden_model::load_model_dir;
use crate::monitor_bundle::softmax;

#[derive(Debug, Args)]
pub(crate) struct MonitorBench {
    /// Fashion-MNIST directory.
    #[arg(long, env = "WARDEN_FASHION_MNIST", default_value = data::FASHION_MNIST_DIR)]
    fashion_mnist: PathBuf,
    /// A trained model directory (model.safetensors) [default: train the small CNN here].
    #[arg(long)]
    model: Option<PathBuf>,
    /// Batches of 128 to train the small CNN for when no --model is given [default: one epoch].
    #[arg(long)]
    train_batches: Option<usize>,
    /// Threads for training and the batch forward passes that make the vectors; all scoring
    /// and stream updates run on one thread.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Training images the detectors are fitted on.
    #[arg(long, default_value_t = 10_000)]
    fit: usize,
    /// Further training images, held out, for the conformal calibration.
    #[arg(long, default_value_t = 5_000)]
    calibrate: usize,
    /// Requests timed (test images, cycled when more than 10,000).
    #[arg(long, default_value_t = 10_000)]
    requests: usize,
    /// Requests scored before timing starts.
    #[arg(long, default_value_t = 1_000)]
    warmup: usize,
    /// kNN: the k-th neighbour's distance is the score.
    #[arg(long, default_value_t = 50)]
    knn_k: usize,
    /// kNN: reference rows kept (a seeded random subset of the fitted rows).
    #[arg(long, default_value_t = 2_000)]
    knn_reference: usize,
    /// kNN reference sizes to time the kNN alone at (a side table).
    #[arg(long, value_delimiter = ',', default_value = "1000,2000,5000,10000")]
    knn_sweep: Vec<usize>,
    /// What PCA and the autoencoder reconstruct: the raw pixels (784 values) or the penultimate
    /// features (fits in a fraction of the time: PCA's eigen-decomposition is cubic in the width).
    #[arg(long, default_value = "pixels", value_parser = ["pixels", "features"])]
    reconstruct: String,
    /// PCA components kept for the reconstruction error.
    #[arg(long, default_value_t = 32)]
    pca_components: usize,
    /// Autoencoder hidden width (784 → hidden → bottleneck → hidden → 784).
    #[arg(long, default_value_t = 64)]
    ae_hidden: usize,
    /// Autoencoder bottleneck width.
    #[arg(long, default_value_t = 16)]
    ae_bottleneck: usize,
    /// Autoencoder training epochs over the fitted rows.
    #[arg(long, default_value_t = 10)]
    ae_epochs: usize,
    /// Samples fed to each stream detector (the test set's vectors, cycled).
    #[arg(long, default_value_t = 1_000_000)]
    stream: usize,
    /// Write the vectors and the detector settings here for the Python benchmark.
    #[arg(long)]
    dump: Option<PathBuf>,
    /// Print the figures as JSON on stdout (the table then goes to stderr).
    #[arg(long)]
    json: bool,
}

/// The names of the ensemble's members, in the order of their scores.
const MEMBERS: [&str; 8] = [
    "msp",
    "entropy",
    "energy",
    "mahalanobis",
    "knn",
    "pca",
    "autoencoder",
    "squeeze",
];
/// Feature squeezing for MNIST-like images, as Xu et al.: 1-bit depth and a 2×2 median filter.
const SQUEEZERS: [Squeezer; 2] = [Squeezer::BitDepth { bits: 1 }, Squeezer::Median { size: 2 }];
const FLAG_ALPHA: f64 = 0.05;
const BLOCK_ALPHA: f64 = 0.01;

/// Vectors of a set of images: pixels, logits, penultimate features, probabilities, the
/// probabilities of the squeezed copies (`SQUEEZERS.len()` rows of `classes` per image), and
/// predicted labels.
struct Vectors {
    n: usize,
    pixels: Vec<f32>,
    logits: Vec<f32>,
    features: Vec<f32>,
    probs: Vec<f32>,
    squeezed: Vec<f32>,
    labels: Vec<u8>,
    predicted: Vec<u32>,
}

/// One request's vectors.
struct Request<'a> {
    logits: &'a [f32],
    features: &'a [f32],
    /// What the reconstruction detectors see: the pixels or the features.
    recon: &'a [f32],
    probs: &'a [f32],
    squeezed: &'a [f32],
}

impl Vectors {
    fn request(&self, i: usize, m: &Dims) -> Request<'_> {
        let s = SQUEEZERS.len();
        Request {
            logits: &self.logits[i * m.classes..(i + 1) * m.classes],
            features: &self.features[i * m.features..(i + 1) * m.features],
            recon: if m.recon_pixels {
                &self.pixels[i * m.input..(i + 1) * m.input]
            } else {
                &self.features[i * m.features..(i + 1) * m.features]
            },
            probs: &self.probs[i * m.classes..(i + 1) * m.classes],
            squeezed: &self.squeezed[i * s * m.classes..(i + 1) * s * m.classes],
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Dims {
    input: usize,
    features: usize,
    classes: usize,
    shape: ImageShape,
    recon_pixels: bool,
}

/// Every per-request detector, fitted, and the calibrated ensemble over their scores.
struct Pipeline {
    msp: Confidence,
    entropy: Confidence,
    energy: Confidence,
    mahalanobis: Mahalanobis,
    knn: Knn,
    pca: Pca,
    autoencoder: Autoencoder,
    ensemble: Ensemble,
    policy: PValuePolicy,
}

impl Pipeline {
    /// The members' scores of one request.
    fn scores(
        &self,
        r: &Request<'_>,
        scratch: &mut Scratch,
        out: &mut [f64; MEMBERS.len()],
    ) -> Result<()> {
        out[0] = self.msp.score_with(r.logits, scratch)?;
        out[1] = self.entropy.score_with(r.logits, scratch)?;
        out[2] = self.energy.score_with(r.logits, scratch)?;
        out[3] = self.mahalanobis.score_with(r.features, scratch)?;
        out[4] = self.knn.score_with(r.features, scratch)?;
        out[5] = self.pca.score_with(r.recon, scratch)?;
        out[6] = self.autoencoder.score_with(r.recon, scratch)?;
        out[7] = squeeze_score(r.probs, r.squeezed)?;
        Ok(())
    }

    /// Everything a request goes through: all scores, the ensemble's p-value and the verdict.
    fn decide(
        &self,
        r: &Request<'_>,
        scratch: &mut Scratch,
        out: &mut [f64; MEMBERS.len()],
    ) -> Result<(f64, Verdict)> {
        self.scores(r, scratch, out)?;
        let p = self.ensemble.p_value(out)?;
        Ok((p, self.policy.verdict(p)?))
    }

    /// One member alone, for the per-detector rows.
    fn member(&self, m: usize, r: &Request<'_>, scratch: &mut Scratch) -> Result<f64> {
        Ok(match m {
            0 => self.msp.score_with(r.logits, scratch)?,
            1 => self.entropy.score_with(r.logits, scratch)?,
            2 => self.energy.score_with(r.logits, scratch)?,
            3 => self.mahalanobis.score_with(r.features, scratch)?,
            4 => self.knn.score_with(r.features, scratch)?,
            5 => self.pca.score_with(r.recon, scratch)?,
            6 => self.autoencoder.score_with(r.recon, scratch)?,
            _ => squeeze_score(r.probs, r.squeezed)?,
        })
    }
}

/// Latency figures in microseconds.
fn latency(mut us: Vec<f64>) -> Value {
    us.sort_by(f64::total_cmp);
    let mean = us.iter().sum::<f64>() / us.len().max(1) as f64;
    json!({
        "samples": us.len(),
        "p50_us": percentile(&us, 0.5),
        "p90_us": percentile(&us, 0.9),
        "p99_us": percentile(&us, 0.99),
        "max_us": us.last().copied().unwrap_or(0.0),
        "mean_us": mean,
    })
}

fn micros(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e6
}

pub(crate) fn run(b: MonitorBench) -> Result<Outcome> {
    anyhow::ensure!((1..=256).contains(&b.threads), "--threads: 1 to 256");
    anyhow::ensure!(b.fit >= 100, "--fit: at least 100 rows");
    anyhow::ensure!(b.calibrate >= 100, "--calibrate: at least 100 rows");
    anyhow::ensure!(b.requests >= 1, "--requests: at least 1");
    anyhow::ensure!(b.stream >= 1, "--stream: at least 1 sample");
    anyhow::ensure!(
        b.train_batches != Some(0),
        "--train-batches: at least 1 batch"
    );
    let mut err = io::stderr().lock();
    let started = Instant::now();
    let tr = data::load_fashion_mnist(&b.fashion_mnist, Split::Train)?;
    let te = data::load_fashion_mnist(&b.fashion_mnist, Split::Test)?;
    anyhow::ensure!(
        b.fit + b.calibrate <= tr.len(),
        "--fit plus --calibrate: at most the {} training images",
        tr.len()
    );
    let xtr = train::to_f32(&tr.images);
    let xte = train::to_f32(&te.images);

    // The monitored model.
    let (model, model_source) = match &b.model {
        Some(dir) => (load_model_dir(dir)?.model, dir.display().to_string()),
        None => {
            // Trained on every training image but the calibration split, so that the conformal
            // calibration is on images the model has not seen, like the requests.
            let batches = b.train_batches.unwrap_or(usize::MAX);
            let calibration = b.fit..b.fit + b.calibrate;
            let idx: Vec<usize> = (0..tr.len())
                .filter(|i| !calibration.contains(i))
                .take(batches.saturating_mul(128))
                .collect();
            let mut t = Trainer::new(
                Model::init(&Arch::small_cnn(), 1)?,
                OptimSpec::adam(1e-3),
                b.threads,
            );
            let objective = Method::Clean.objective(0.0);
            let s = Instant::now();
            t.epoch(
                &xtr,
                &tr.labels,
                &idx,
                128,
                &objective,
                &mut |_| 1.0,
                2,
                &mut |_, _, _| true,
            )?;
            writeln!(
                err,
                "trained small-cnn on {} images in {:.1}s",
                idx.len(),
                s.elapsed().as_secs_f64()
            )?;
            (t.model, format!("small-cnn, clean, {} images", idx.len()))
        }
    };
    let features = model
        .features_len()
        .context("the model has a single layer: no penultimate features")?;
    let [c, h, w] = model.arch().input;
    let dims = Dims {
        input: model.input_len(),
        features,
        classes: model.classes(),
        shape: ImageShape {
            channels: c,
            height: h,
            width: w,
        },
        recon_pixels: b.reconstruct == "pixels",
    };
    anyhow::ensure!(
        dims.input == 784 && c == 1,
        "the benchmark expects a 1×28×28 model (Fashion-MNIST), got {c}×{h}×{w}"
    );

    // The vectors: fit and calibration rows from the training set, requests from the test set.
    let s = Instant::now();
    let fit_idx: Vec<usize> = (0..b.fit).collect();
    let cal_idx: Vec<usize> = (b.fit..b.fit + b.calibrate).collect();
    let req_n = b.requests.min(te.len());
    let req_idx: Vec<usize> = (0..req_n).collect();
    let fit = vectors(&model, &dims, &xtr, &tr.labels, &fit_idx, false, b.threads)?;
    let cal = vectors(&model, &dims, &xtr, &tr.labels, &cal_idx, true, b.threads)?;
    let req = vectors(&model, &dims, &xte, &te.labels, &req_idx, true, b.threads)?;
    let accuracy = req
        .predicted
        .iter()
        .zip(&req.labels)
        .filter(|(p, y)| **p == u32::from(**y))
        .count() as f64
        / req_n as f64;
    writeln!(
        err,
        "vectors of {} images in {:.1}s (test accuracy {accuracy:.4})",
        fit.n + cal.n + req.n,
        s.elapsed().as_secs_f64()
    )?;

    // Fit every per-request detector.
    let mut fit_seconds = serde_json::Map::new();
    let mut timed = |name: &str, t: Instant| {
        fit_seconds.insert(name.into(), json!(t.elapsed().as_secs_f64()));
    };
    let labels: Vec<usize> = fit.labels.iter().map(|&l| usize::from(l)).collect();
    let t = Instant::now();
    let mahalanobis = Mahalanobis::fit(
        &fit.features,
        features,
        &labels,
        dims.classes,
        MahalanobisConfig::default(),
    )?;
    timed("mahalanobis", t);
    let t = Instant::now();
    let knn_config = KnnConfig {
        k: b.knn_k,
        max_reference: Some(b.knn_reference),
        seed: 7,
    };
    let knn = Knn::fit(&fit.features, features, knn_config)?;
    timed("knn", t);
    let (recon, recon_dim) = if dims.recon_pixels {
        (&fit.pixels, dims.input)
    } else {
        (&fit.features, features)
    };
    let t = Instant::now();
    let pca = Pca::fit(recon, recon_dim, b.pca_components)?;
    timed("pca", t);
    let t = Instant::now();
    let ae_config = AutoencoderConfig {
        hidden: b.ae_hidden,
        bottleneck: b.ae_bottleneck,
        activation: Activation::Tanh,
        epochs: b.ae_epochs,
        batch_size: 32,
        learning_rate: 1e-3,
        seed: 3,
    };
    let autoencoder = Autoencoder::fit(recon, recon_dim, ae_config)?;
    timed("autoencoder", t);
    writeln!(
        err,
        "fitted the detectors (seconds): {}",
        Value::Object(fit_seconds.clone())
    )?;
    let confidence = |kind| Confidence::new(kind, dims.classes);
    let mut pipeline = Pipeline {
        msp: confidence(ConfidenceKind::MaxSoftmax)?,
        entropy: confidence(ConfidenceKind::Entropy)?,
        energy: confidence(ConfidenceKind::Energy { temperature: 1.0 })?,
        mahalanobis,
        knn,
        pca,
        autoencoder,
        // Replaced below, once the calibration scores exist.
        ensemble: Ensemble::new(
            vec![ConformalCalibration::new(&[0.0])?],
            Combination::BonferroniMin,
        )?,
        policy: PValuePolicy::new(FLAG_ALPHA, BLOCK_ALPHA)?,
    };

    // Conformal calibration of each member on the held-out split.
    let mut scratch = Scratch::new();
    let mut cal_scores = vec![[0.0f64; MEMBERS.len()]; cal.n];
    for (i, out) in cal_scores.iter_mut().enumerate() {
        pipeline.scores(&cal.request(i, &dims), &mut scratch, out)?;
    }
    let members = (0..MEMBERS.len())
        .map(|m| {
            let col: Vec<f64> = cal_scores.iter().map(|s| s[m]).collect();
            ConformalCalibration::new(&col)
        })
        .collect::<Result<Vec<_>, _>>()?;
    pipeline.ensemble = Ensemble::new(members, Combination::BonferroniMin)?;

    // Per-request latency of everything together, one request at a time.
    let mut out = [0.0f64; MEMBERS.len()];
    for i in 0..b.warmup {
        black_box(pipeline.decide(&req.request(i % req.n, &dims), &mut scratch, &mut out)?);
    }
    let mut all_us = Vec::with_capacity(b.requests);
    let mut req_scores = vec![[0.0f64; MEMBERS.len()]; req.n];
    let mut p_values = vec![0.0f64; req.n];
    let mut verdicts = [0usize; 3];
    for i in 0..b.requests {
        let r = req.request(i % req.n, &dims);
        let t = Instant::now();
        let (p, v) = pipeline.decide(&r, &mut scratch, &mut out)?;
        all_us.push(micros(t));
        black_box(&out);
        if i < req.n {
            req_scores[i] = out;
            p_values[i] = p;
            verdicts[v as usize] += 1;
        }
    }
    let all = latency(all_us);

    // Each member alone, the same way.
    let mut per_detector = serde_json::Map::new();
    for (m, name) in MEMBERS.iter().enumerate() {
        for i in 0..b.warmup.min(1000) {
            black_box(pipeline.member(m, &req.request(i % req.n, &dims), &mut scratch)?);
        }
        let mut us = Vec::with_capacity(b.requests);
        for i in 0..b.requests {
            let r = req.request(i % req.n, &dims);
            let t = Instant::now();
            black_box(pipeline.member(m, &r, &mut scratch)?);
            us.push(micros(t));
        }
        per_detector.insert((*name).into(), latency(us));
    }
    // The ensemble's combination alone (p-values and verdict from the members' scores).
    {
        let mut us = Vec::with_capacity(b.requests);
        for i in 0..b.requests {
            let s = &req_scores[i % req.n];
            let t = Instant::now();
            let p = pipeline.ensemble.p_value(s)?;
            black_box(pipeline.policy.verdict(p)?);
            us.push(micros(t));
        }
        per_detector.insert("ensemble".into(), latency(us));
    }

    // kNN alone at other reference sizes.
    let mut knn_sweep = Vec::new();
    for &n in &b.knn_sweep {
        let n = n.min(fit.n);
        if n < b.knn_k {
            continue;
        }
        let knn = Knn::fit(
            &fit.features,
            features,
            KnnConfig {
                max_reference: Some(n),
                ..knn_config
            },
        )?;
        let reps = b.requests.min(2000);
        for i in 0..reps.min(200) {
            black_box(knn.score_with(req.request(i % req.n, &dims).features, &mut scratch)?);
        }
        let mut us = Vec::with_capacity(reps);
        for i in 0..reps {
            let f = req.request(i % req.n, &dims).features;
            let t = Instant::now();
            black_box(knn.score_with(f, &mut scratch)?);
            us.push(micros(t));
        }
        let mut row = latency(us);
        row["reference_rows"] = json!(n);
        knn_sweep.push(row);
    }

    // The model's own forward pass at batch 1, and the extra work of feature squeezing.
    let squeeze_n = b.requests.min(req.n).min(2000);
    let mut ws = Workspace::default();
    let mut squeezed_img = vec![0.0f32; SQUEEZERS.len() * dims.input];
    let mut squeezed_probs = vec![0.0f32; SQUEEZERS.len() * dims.classes];
    let mut forward_us = Vec::with_capacity(squeeze_n);
    let mut extra_us = Vec::with_capacity(squeeze_n);
    let mut end_to_end_us = Vec::with_capacity(squeeze_n);
    for i in 0..squeeze_n + 100 {
        let x = &req.pixels[i % req.n * dims.input..(i % req.n + 1) * dims.input];
        let t = Instant::now();
        black_box(model.forward(&mut ws, x, 1)?);
        let f = micros(t);
        let t = Instant::now();
        squeeze_extra(
            &model,
            &dims,
            &mut ws,
            x,
            &mut squeezed_img,
            &mut squeezed_probs,
        )?;
        let e = micros(t);
        // The whole decision with squeezing computed on the spot (the original's forward pass
        // excluded; its logits and features are those of the batch pass).
        let mut r = req.request(i % req.n, &dims);
        let t = Instant::now();
        squeeze_extra(
            &model,
            &dims,
            &mut ws,
            x,
            &mut squeezed_img,
            &mut squeezed_probs,
        )?;
        r.squeezed = &squeezed_probs;
        black_box(pipeline.decide(&r, &mut scratch, &mut out)?);
        let a = micros(t);
        if i >= 100 {
            forward_us.push(f);
            extra_us.push(e);
            end_to_end_us.push(a);
        }
    }

    // Stream detectors.
    let stream = stream_bench(&b, &dims, &fit, &cal, &req, &cal_scores, &req_scores)?;

    let mut results = serde_json::Map::new();
    results.insert("benchmark".into(), json!("warden bench monitor"));
    results.insert(
        "machine".into(),
        json!({
            "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            "scoring_threads": 1,
            "vector_threads": b.threads,
        }),
    );
    results.insert(
        "model".into(),
        json!({"source": model_source, "test_accuracy": accuracy, "features": features, "classes": dims.classes}),
    );
    results.insert(
        "config".into(),
        json!({
            "fit_rows": fit.n,
            "calibration_rows": cal.n,
            "requests": b.requests,
            "warmup": b.warmup,
            "knn": {"k": pipeline.knn.k(), "reference_rows": pipeline.knn.reference_len(), "dim": features},
            "mahalanobis": {"classes": dims.classes, "dim": features, "ridge_relative": MahalanobisConfig::default().ridge, "ridge_absolute": pipeline.mahalanobis.ridge()},
            "pca": {"components": pipeline.pca.components(), "input": b.reconstruct, "dim": pipeline.pca.dim()},
            "autoencoder": {"input": b.reconstruct, "dim": pipeline.autoencoder.dim(), "hidden": b.ae_hidden, "bottleneck": b.ae_bottleneck, "epochs": b.ae_epochs, "activation": "tanh", "training_loss": pipeline.autoencoder.training_loss()},
            "squeezers": ["bit_depth_1", "median_2x2"],
            "ensemble": {"members": MEMBERS, "combination": "bonferroni_min", "flag_alpha": FLAG_ALPHA, "block_alpha": BLOCK_ALPHA},
        }),
    );
    results.insert("fit_seconds".into(), Value::Object(fit_seconds));
    results.insert(
        "per_request".into(),
        json!({
            "all_detectors": all,
            "detectors": per_detector,
            "knn_by_reference_rows": knn_sweep,
            "clean_test_verdicts": {"allow": verdicts[0], "flag": verdicts[1], "block": verdicts[2]},
        }),
    );
    results.insert(
        "batch1_forward".into(),
        json!({
            "model_forward": latency(forward_us),
            "squeeze_extra": latency(extra_us),
            "all_detectors_with_squeeze_extra": latency(end_to_end_us),
        }),
    );
    results.insert("stream".into(), stream);
    results.insert(
        "total_seconds".into(),
        json!(started.elapsed().as_secs_f64()),
    );
    let results = Value::Object(results);

    if let Some(dir) = &b.dump {
        dump(
            dir,
            &dims,
            &fit,
            &cal,
            &req,
            &pipeline,
            &cal_scores,
            &req_scores,
            &p_values,
            &results,
            b.stream,
        )?;
        writeln!(err, "wrote the vectors to {}", dir.display())?;
    }
    if b.json {
        table(&mut err, &results)?;
        writeln!(io::stdout().lock(), "{results}")?;
    } else {
        table(&mut io::stdout().lock(), &results)?;
    }
    Ok(Outcome::Ok)
}

/// Squeezes `x` with every squeezer and runs the model on each copy at batch 1, leaving the
/// probability vectors in `probs`.
fn squeeze_extra(
    model: &Model,
    dims: &Dims,
    ws: &mut Workspace,
    x: &[f32],
    img: &mut [f32],
    probs: &mut [f32],
) -> Result<()> {
    for ((sq, img), probs) in SQUEEZERS
        .iter()
        .zip(img.chunks_exact_mut(dims.input))
        .zip(probs.chunks_exact_mut(dims.classes))
    {
        sq.apply(x, dims.shape, img)?;
        softmax(model.forward(ws, img, 1)?, probs);
    }
    Ok(())
}

/// Runs the model over `idx` in batches on `threads` threads and collects every vector; with
/// `squeeze`, also the probabilities of the squeezed copies.
fn vectors(
    model: &Model,
    dims: &Dims,
    x: &[f32],
    labels: &[u8],
    idx: &[usize],
    squeeze: bool,
    threads: usize,
) -> Result<Vectors> {
    let n = idx.len();
    let (d, c, s) = (dims.input, dims.classes, SQUEEZERS.len());
    let mut pixels = Vec::with_capacity(n * d);
    for &i in idx {
        pixels.extend_from_slice(&x[i * d..(i + 1) * d]);
    }
    let mut squeezed_pixels = Vec::new();
    if squeeze {
        squeezed_pixels = vec![0.0f32; n * s * d];
        for (img, out) in pixels
            .chunks_exact(d)
            .zip(squeezed_pixels.chunks_exact_mut(s * d))
        {
            for (sq, o) in SQUEEZERS.iter().zip(out.chunks_exact_mut(d)) {
                sq.apply(img, dims.shape, o)?;
            }
        }
    }
    let mut pool = warden_harden::nn::Pool::new(threads);
    let (logits, features) = crate::monitor_cmd::model_outputs(model, &mut pool, &pixels, n)?;
    // Per image, with `squeeze`: the squeezed copies' probabilities.
    let mut squeezed = vec![0.0f32; if squeeze { n * s * c } else { 0 }];
    if squeeze {
        let chunk = model.chunk(256);
        pool.run(
            n,
            model.least_per_thread(),
            &mut squeezed,
            |ws, range, out| {
                let mut imgs = Vec::new();
                for start in (range.start..range.end).step_by(chunk) {
                    let end = (start + chunk).min(range.end);
                    let o = &mut out[(start - range.start) * s * c..(end - range.start) * s * c];
                    for k in 0..s {
                        imgs.clear();
                        for i in start..end {
                            imgs.extend_from_slice(
                                &squeezed_pixels[(i * s + k) * d..(i * s + k + 1) * d],
                            );
                        }
                        let logits = model.forward(ws, &imgs, end - start)?;
                        for (row, l) in o.chunks_exact_mut(s * c).zip(logits.chunks_exact(c)) {
                            softmax(l, &mut row[k * c..(k + 1) * c]);
                        }
                    }
                }
                Ok::<(), warden_harden::nn::ModelError>(())
            },
        )?;
    }
    let mut v = Vectors {
        n,
        pixels,
        probs: vec![0.0; n * c],
        predicted: logits.chunks_exact(c).map(|l| argmax(l) as u32).collect(),
        logits,
        features,
        squeezed,
        labels: idx.iter().map(|&i| labels[i]).collect(),
    };
    for (l, p) in v.logits.chunks_exact(c).zip(v.probs.chunks_exact_mut(c)) {
        softmax(l, p);
    }
    Ok(v)
}

/// The stream settings, shared with the Python benchmark through `meta.json`.
const KS_REFERENCE: usize = 1000;
const KS_SCORE_WINDOW: usize = 100;
const KS_FEATURE_WINDOW: usize = 200;
const MMD_REFERENCE: usize = 1000;
const MMD_WINDOW: usize = 20;
const MMD_ERT: f64 = 1000.0;
const MMD_BOOTSTRAPS: usize = 100;
const CHI_WINDOW: usize = 500;
const CHI_ALPHA: f64 = 0.01;

fn stream_config() -> Value {
    json!({
        "scores": "the Mahalanobis score of each test request, standardised by the calibration scores' mean and standard deviation",
        "cusum": {"drift": 0.5, "threshold": 5.0},
        "page_hinkley": {"delta": 0.005, "threshold": 50.0, "alpha": 1.0, "min_instances": 30, "mode": "both"},
        "adwin": {"delta": 0.002, "clock": 32, "max_buckets": 5, "min_window_length": 5, "grace_period": 10},
        "ks_scores": {"reference": KS_REFERENCE, "window": KS_SCORE_WINDOW, "stride": 1, "method": "asymptotic", "alpha": 0.05},
        "ks_features": {"reference": KS_REFERENCE, "window": KS_FEATURE_WINDOW, "stride": KS_FEATURE_WINDOW, "method": "asymptotic", "alpha": 0.05, "correction": "bonferroni"},
        "online_mmd": {"reference": MMD_REFERENCE, "kept": MMD_REFERENCE / 2, "window": MMD_WINDOW, "ert": MMD_ERT, "bootstraps": MMD_BOOTSTRAPS, "kernel": "gaussian, median heuristic"},
        "chi_square_labels": {"window": CHI_WINDOW, "stride": 1, "alpha": CHI_ALPHA, "reference": "predicted labels of the calibration split"},
    })
}

/// The standardised scalar stream (Mahalanobis scores) and its standardised reference.
fn standardised(cal_scores: &[[f64; 8]], req_scores: &[[f64; 8]]) -> (Vec<f64>, Vec<f64>) {
    let col: Vec<f64> = cal_scores.iter().map(|s| s[3]).collect();
    let n = col.len() as f64;
    let mean = col.iter().sum::<f64>() / n;
    let sd = (col.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0))
        .sqrt()
        .max(f64::MIN_POSITIVE);
    let z = |v: f64| (v - mean) / sd;
    (
        col.iter().map(|&v| z(v)).collect(),
        req_scores.iter().map(|s| z(s[3])).collect(),
    )
}

fn stream_bench(
    b: &MonitorBench,
    dims: &Dims,
    fit: &Vectors,
    cal: &Vectors,
    req: &Vectors,
    cal_scores: &[[f64; 8]],
    req_scores: &[[f64; 8]],
) -> Result<Value> {
    let (ref_z, z) = standardised(cal_scores, req_scores);
    let n = b.stream;
    let f = dims.features;
    let feats64 = |v: &Vectors, rows: usize| -> Vec<f64> {
        v.features[..rows.min(v.n) * f]
            .iter()
            .map(|&x| f64::from(x))
            .collect()
    };
    let req_f64 = feats64(req, req.n);
    let mut out = serde_json::Map::new();
    let mut record = |name: &str, secs: f64, samples: usize, alarms: u64, extra: Value| {
        let rate = samples as f64 / secs;
        let mut v =
            json!({"samples": samples, "seconds": secs, "samples_per_s": rate, "alarms": alarms});
        if let (Value::Object(o), Value::Object(e)) = (&mut v, extra) {
            o.extend(e);
        }
        out.insert(name.into(), v);
    };

    // Scalar sequential detectors.
    {
        let mut d = Cusum::fit(&ref_z, CusumConfig::default())?;
        let t = Instant::now();
        let mut alarms = 0u64;
        for i in 0..n {
            alarms += u64::from(d.update(z[i % z.len()])?.is_some());
        }
        record("cusum", t.elapsed().as_secs_f64(), n, alarms, json!({}));
    }
    {
        let mut d = PageHinkley::new(PageHinkleyConfig::default())?;
        let t = Instant::now();
        let mut alarms = 0u64;
        for i in 0..n {
            alarms += u64::from(d.update(z[i % z.len()])?.is_some());
        }
        record(
            "page_hinkley",
            t.elapsed().as_secs_f64(),
            n,
            alarms,
            json!({}),
        );
    }
    {
        let mut d = Adwin::new(AdwinConfig::default())?;
        let t = Instant::now();
        let mut alarms = 0u64;
        for i in 0..n {
            alarms += u64::from(d.update(z[i % z.len()])?.is_some());
        }
        record("adwin", t.elapsed().as_secs_f64(), n, alarms, json!({}));
    }
    // Window KS on the scores (stride 1) and on the features (tumbling windows).
    {
        let config = WindowKsConfig {
            method: KsMethod::Asymptotic,
            ..WindowKsConfig::new(KS_SCORE_WINDOW)
        };
        let mut d = WindowKs::fit(&ref_z[..KS_REFERENCE.min(ref_z.len())], 1, config)?;
        let t = Instant::now();
        let mut alarms = 0u64;
        for i in 0..n {
            alarms += u64::from(d.update(&[z[i % z.len()]])?.is_some());
        }
        record("ks_scores", t.elapsed().as_secs_f64(), n, alarms, json!({}));
    }
    {
        let config = WindowKsConfig {
            method: KsMethod::Asymptotic,
            stride: KS_FEATURE_WINDOW,
            ..WindowKsConfig::new(KS_FEATURE_WINDOW)
        };
        let reference = feats64(cal, KS_REFERENCE);
        let mut d = WindowKs::fit(&reference, f, config)?;
        let m = (n / 10).max(1);
        let t = Instant::now();
        let mut alarms = 0u64;
        for i in 0..m {
            let j = i % req.n;
            alarms += u64::from(d.update(&req_f64[j * f..(j + 1) * f])?.is_some());
        }
        record(
            "ks_features",
            t.elapsed().as_secs_f64(),
            m,
            alarms,
            json!({}),
        );
    }
    // Online MMD on the features and on the scores.
    for (name, dim) in [("online_mmd_features", f), ("online_mmd_scores", 1)] {
        let reference: Vec<f64> = if dim == 1 {
            ref_z[..MMD_REFERENCE.min(ref_z.len())].to_vec()
        } else {
            feats64(fit, MMD_REFERENCE)
        };
        let config = OnlineMmdConfig {
            bootstraps: MMD_BOOTSTRAPS,
            seed: 5,
            ..OnlineMmdConfig::new(MMD_WINDOW, MMD_ERT)
        };
        let t = Instant::now();
        let mut d = OnlineMmd::fit(&reference, dim, config)?;
        let calibration = t.elapsed().as_secs_f64();
        let m = if dim == 1 { n } else { (n / 10).max(1) };
        let t = Instant::now();
        let mut alarms = 0u64;
        for i in 0..m {
            let j = i % req.n;
            let x = if dim == 1 {
                std::slice::from_ref(&z[j])
            } else {
                &req_f64[j * f..(j + 1) * f]
            };
            alarms += u64::from(d.update(x)?.is_some());
        }
        record(
            name,
            t.elapsed().as_secs_f64(),
            m,
            alarms,
            json!({"calibration_seconds": calibration, "threshold": d.threshold()}),
        );
    }
    // Chi-square shift on predicted labels.
    {
        let config = ChiSquareShiftConfig {
            window: CHI_WINDOW,
            stride: 1,
            alpha: CHI_ALPHA,
        };
        let mut d = ChiSquareShift::from_reference_labels(&cal.predicted, dims.classes, config)?;
        let t = Instant::now();
        let mut alarms = 0u64;
        for i in 0..n {
            alarms += u64::from(d.update(req.predicted[i % req.n])?.is_some());
        }
        record(
            "chi_square_labels",
            t.elapsed().as_secs_f64(),
            n,
            alarms,
            json!({}),
        );
    }
    Ok(json!({"config": stream_config(), "detectors": out}))
}

/// Prints the figures as a readable table.
fn table(w: &mut dyn Write, r: &Value) -> Result<()> {
    let lat = |v: &Value| {
        format!(
            "{:>8.1} {:>8.1} {:>8.1} {:>9.1}",
            v["p50_us"].as_f64().unwrap_or(f64::NAN),
            v["p90_us"].as_f64().unwrap_or(f64::NAN),
            v["p99_us"].as_f64().unwrap_or(f64::NAN),
            v["max_us"].as_f64().unwrap_or(f64::NAN)
        )
    };
    let c = &r["config"];
    writeln!(
        w,
        "warden bench monitor: {} requests after {} warm-up, one thread; kNN k={} over {} rows; PCA {} components of {}; autoencoder {}-{}-{}",
        c["requests"],
        c["warmup"],
        c["knn"]["k"],
        c["knn"]["reference_rows"],
        c["pca"]["components"],
        c["pca"]["input"].as_str().unwrap_or("?"),
        c["autoencoder"]["dim"],
        c["autoencoder"]["hidden"],
        c["autoencoder"]["bottleneck"]
    )?;
    writeln!(
        w,
        "{:<44} {:>8} {:>8} {:>8} {:>9}",
        "per request (µs)", "p50", "p90", "p99", "max"
    )?;
    let pr = &r["per_request"];
    let p99 = pr["all_detectors"]["p99_us"].as_f64().unwrap_or(f64::NAN);
    writeln!(
        w,
        "{:<44} {}   (target p99 < 100 µs: {})",
        "ALL detectors + ensemble + verdict",
        lat(&pr["all_detectors"]),
        if p99 < 100.0 { "met" } else { "NOT met" }
    )?;
    if let Some(d) = pr["detectors"].as_object() {
        for (name, v) in d {
            writeln!(w, "{:<44} {}", format!("  {name}"), lat(v))?;
        }
    }
    if let Some(d) = pr["knn_by_reference_rows"].as_array() {
        for v in d {
            let n = &v["reference_rows"];
            writeln!(
                w,
                "{:<44} {}",
                format!("  knn alone, {n} reference rows"),
                lat(v)
            )?;
        }
    }
    let bf = &r["batch1_forward"];
    writeln!(
        w,
        "{:<44} {}",
        "model forward, batch 1 (not included)",
        lat(&bf["model_forward"])
    )?;
    writeln!(
        w,
        "{:<44} {}",
        "squeeze extra: 2 squeezes + 2 forwards",
        lat(&bf["squeeze_extra"])
    )?;
    writeln!(
        w,
        "{:<44} {}",
        "ALL + squeeze extra",
        lat(&bf["all_detectors_with_squeeze_extra"])
    )?;
    writeln!(
        w,
        "{:<44} {:>12} {:>10} {:>8}  >= 100,000/s",
        "stream detector (one thread)", "samples/s", "samples", "alarms"
    )?;
    if let Some(d) = r["stream"]["detectors"].as_object() {
        for (name, v) in d {
            let rate = v["samples_per_s"].as_f64().unwrap_or(f64::NAN);
            writeln!(
                w,
                "{:<44} {:>12.0} {:>10} {:>8}  {}",
                name,
                rate,
                v["samples"],
                v["alarms"],
                if rate >= 100_000.0 { "yes" } else { "no" }
            )?;
        }
    }
    Ok(())
}

/// Writes a little-endian NumPy `.npy` file (format 1.0) of `shape` from raw element bytes.
fn write_npy(path: &Path, descr: &str, shape: &[usize], bytes: &[u8]) -> Result<()> {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let shape = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    // Magic (6) + version (2) + length (2) + header + newline, padded to a multiple of 64.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + bytes.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&u16::try_from(header.len())?.to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(bytes);
    std::fs::write(path, out).with_context(|| format!("{}", path.display()))
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn f64_bytes(v: &[f64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn i64_bytes(v: impl Iterator<Item = i64>) -> Vec<u8> {
    v.flat_map(|x| x.to_le_bytes()).collect()
}

#[allow(clippy::too_many_arguments)]
fn dump(
    dir: &Path,
    dims: &Dims,
    fit: &Vectors,
    cal: &Vectors,
    req: &Vectors,
    p: &Pipeline,
    cal_scores: &[[f64; 8]],
    req_scores: &[[f64; 8]],
    p_values: &[f64],
    results: &Value,
    stream: usize,
) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
    let (d, f, c, s) = (dims.input, dims.features, dims.classes, SQUEEZERS.len());
    for (prefix, v) in [("fit", fit), ("cal", cal), ("test", req)] {
        let n = v.n;
        for (name, values, width) in [
            ("pixels", &v.pixels, d),
            ("features", &v.features, f),
            ("logits", &v.logits, c),
        ] {
            write_npy(
                &dir.join(format!("{prefix}_{name}.npy")),
                "<f4",
                &[n, width],
                &f32_bytes(values),
            )?;
        }
        write_npy(
            &dir.join(format!("{prefix}_labels.npy")),
            "<i8",
            &[n],
            &i64_bytes(v.labels.iter().map(|&l| i64::from(l))),
        )?;
        write_npy(
            &dir.join(format!("{prefix}_predicted.npy")),
            "<i8",
            &[n],
            &i64_bytes(v.predicted.iter().map(|&l| i64::from(l))),
        )?;
        if !v.squeezed.is_empty() {
            write_npy(
                &dir.join(format!("{prefix}_probs.npy")),
                "<f4",
                &[n, c],
                &f32_bytes(&v.probs),
            )?;
            write_npy(
                &dir.join(format!("{prefix}_squeezed.npy")),
                "<f4",
                &[n, s, c],
                &f32_bytes(&v.squeezed),
            )?;
        }
    }
    let flat = |rows: &[[f64; 8]]| -> Vec<f64> { rows.iter().flatten().copied().collect() };
    write_npy(
        &dir.join("rust_cal_scores.npy"),
        "<f8",
        &[cal_scores.len(), MEMBERS.len()],
        &f64_bytes(&flat(cal_scores)),
    )?;
    write_npy(
        &dir.join("rust_test_scores.npy"),
        "<f8",
        &[req_scores.len(), MEMBERS.len()],
        &f64_bytes(&flat(req_scores)),
    )?;
    write_npy(
        &dir.join("rust_test_p_values.npy"),
        "<f8",
        &[p_values.len()],
        &f64_bytes(p_values),
    )?;
    let (ref_z, z) = standardised(cal_scores, req_scores);
    write_npy(
        &dir.join("stream_reference_scores.npy"),
        "<f8",
        &[ref_z.len()],
        &f64_bytes(&ref_z),
    )?;
    write_npy(
        &dir.join("stream_scores.npy"),
        "<f8",
        &[z.len()],
        &f64_bytes(&z),
    )?;
    // The fitted states the Python side reuses: the kNN's kept (normalised) reference rows, so
    // both search the same rows, and the autoencoder's weights, since training it is not timed.
    let knn = serde_json::to_value(&p.knn)?;
    let knn_ref: Vec<f32> = serde_json::from_value(knn["reference"].clone())?;
    write_npy(
        &dir.join("knn_reference.npy"),
        "<f4",
        &[knn_ref.len() / f, f],
        &f32_bytes(&knn_ref),
    )?;
    std::fs::write(
        dir.join("autoencoder.json"),
        serde_json::to_vec(&p.autoencoder)?,
    )?;
    let meta = json!({
        "members": MEMBERS,
        "config": results["config"],
        "stream": stream_config(),
        "stream_samples": stream,
        "rust": results,
        "layout": "f32 arrays are row-major; *_squeezed.npy is [n, squeezers, classes] with squeezers bit_depth_1 then median_2x2",
    });
    std::fs::write(dir.join("meta.json"), serde_json::to_vec_pretty(&meta)?)?;
    Ok(())
}
