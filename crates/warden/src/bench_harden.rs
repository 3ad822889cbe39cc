//! `warden bench harden`: the hardening benchmark of BENCHMARKS.md. It runs the same network,
//! batch size, attacks and adversarial-training steps as the PyTorch baseline script
//! (`scripts/torch_fmnist_bench.py`, from `../shared/baselines/`), so the two print comparable
//! images/s on the same machine and threads.

use std::io::{self, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::Args;
use serde_json::json;
use warden_harden::attack::{self, Norm, Pgd};
use warden_harden::data::{self, Split};
use warden_harden::nn::{Arch, Model, Pool};
use warden_harden::optim::OptimSpec;
use warden_harden::train::{self, DpConfig, Method, Trainer};

use crate::Outcome;
use crate::harden_model::{DeviceSession, Runner, device_session};

#[derive(Debug, Args)]
pub(crate) struct HardenBench {
    /// Fashion-MNIST directory.
    #[arg(long, env = "WARDEN_FASHION_MNIST", default_value = data::FASHION_MNIST_DIR)]
    fashion_mnist: PathBuf,
    /// Worker threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// What to run: clean (training, FGSM, PGD-10), adv (FGSM-RS and PGD-3 training), all (both),
    /// or dp (DP-SGD training, as the Opacus baseline).
    #[arg(long, default_value = "all")]
    what: String,
    /// Limit each training run to this many batches of 128 [default: one epoch, 469 batches].
    #[arg(long)]
    max_batches: Option<usize>,
    /// Print the figures as JSON.
    #[arg(long)]
    json: bool,
    /// Where training and the timed attacks run: cpu (Warden's engine), or flex / cuda[:N]
    /// (burn's backends, in builds with `--features burn` / `--features cuda`). Accuracies are
    /// scored on the CPU engine either way; a device's attack timings include the transfers.
    #[arg(long, default_value = "cpu")]
    device: String,
}

const EPS: f32 = 0.1;
const BATCH: usize = 128;

pub(crate) fn run(b: HardenBench) -> Result<Outcome> {
    anyhow::ensure!(
        matches!(b.what.as_str(), "all" | "clean" | "adv" | "dp"),
        "--what: all, clean or adv"
    );
    crate::harden_model::check_device(&b.device)?;
    anyhow::ensure!(
        b.what != "dp" || b.device == "cpu",
        "DP-SGD runs on --device cpu only"
    );
    let engine = if b.device == "cpu" {
        "warden"
    } else {
        b.device.as_str()
    };
    let mut err = io::stderr().lock();
    let tr = data::load_fashion_mnist(&b.fashion_mnist, Split::Train)?;
    let te = data::load_fashion_mnist(&b.fashion_mnist, Split::Test)?;
    let (xtr, ytr) = (train::to_f32(&tr.images), tr.labels.clone());
    let (xte, yte) = (train::to_f32(&te.images), te.labels.clone());
    let max_batches = b.max_batches.unwrap_or(usize::MAX);
    let idx: Vec<usize> = (0..tr.len()).collect();
    let idx = &idx[..tr.len().min(max_batches.saturating_mul(BATCH))];
    let mut results = serde_json::Map::new();
    results.insert("threads".into(), json!(b.threads));
    let arch = Arch::small_cnn();

    let train_run = |name: &str,
                     method: Method,
                     err: &mut dyn Write,
                     results: &mut serde_json::Map<String, serde_json::Value>|
     -> Result<Model> {
        let model = Model::init(&arch, 1)?;
        let objective = method.objective(method.eps());
        let mut times = Vec::new();
        let mut last = Instant::now();
        let start = Instant::now();
        let mut on_batch = |i, n, s: train::Stats| {
            let now = Instant::now();
            times.push(now.duration_since(last).as_secs_f64());
            last = now;
            if i % 100 == 0 || i == n {
                let _ = writeln!(
                    err,
                    "  [{name}] batch {i}/{n} loss {:.4} ({:.1}s)",
                    s.loss,
                    start.elapsed().as_secs_f64()
                );
            }
            true
        };
        let mut runner = Runner::new(
            &b.device,
            model,
            OptimSpec::adam(1e-3),
            b.threads,
            &xtr,
            &ytr,
        )?;
        runner.epoch(
            &xtr,
            &ytr,
            idx,
            BATCH,
            &objective,
            &mut |_| 1.0,
            2,
            &mut on_batch,
        )?;
        let trained = runner.release()?;
        let secs = start.elapsed().as_secs_f64();
        let rate = idx.len() as f64 / secs;
        times.sort_by(f64::total_cmp);
        let median = BATCH as f64 / times[times.len() / 2];
        writeln!(
            err,
            "RESULT {engine} {name}_train: {} imgs in {secs:.2}s => {rate:.1} img/s (median-batch {median:.1} img/s)",
            idx.len()
        )?;
        results.insert(format!("{name}_train_images_per_s"), json!(rate));
        results.insert(
            format!("{name}_train_median_batch_images_per_s"),
            json!(median),
        );
        Ok(trained)
    };

    let robust = |name: &str,
                  model: &Model,
                  err: &mut dyn Write,
                  results: &mut serde_json::Map<String, serde_json::Value>|
     -> Result<()> {
        // The baseline's protocol: the first 1,000 test images in batches of 125, FGSM and PGD-10
        // (step 0.01, uniform random start, the last iterate).
        let mut pool = Pool::new(b.threads);
        let fgsm = Pgd {
            keep_first_success: false,
            ..Pgd::fgsm(Norm::Linf, EPS)
        };
        let pgd = Pgd {
            keep_first_success: false,
            ..Pgd::linf(EPS, 0.01, 10, 1)
        };
        let (mut tf, mut tp, mut cc, mut cf, mut cp) = (0.0, 0.0, 0usize, 0usize, 0usize);
        let on_device = device_session(
            &b.device,
            model,
            OptimSpec::adam(1e-3),
            &xte[..1000 * 784],
            &yte[..1000],
        )?;
        let mut per_batch = Vec::new();
        for s in (0..1000).step_by(125) {
            let (x, y) = (&xte[s * 784..(s + 125) * 784], &yte[s..s + 125]);
            cc += model
                .predict(&mut pool, x, 125)?
                .iter()
                .zip(y)
                .filter(|(p, y)| p == y)
                .count();
            // Timed as the baseline times them: crafting the points; scoring them is separate.
            let score = |pool: &mut Pool, adv: &[f32]| -> Result<usize> {
                Ok(model
                    .predict(pool, adv, 125)?
                    .iter()
                    .zip(y)
                    .filter(|(p, y)| p == y)
                    .count())
            };
            let t = Instant::now();
            let f = match &on_device {
                Some(d) => device_attack(d, x, y, &fgsm)?,
                None => attack::generate(model, &mut pool, &fgsm, x, y, 0)?,
            };
            tf += t.elapsed().as_secs_f64();
            cf += score(&mut pool, &f)?;
            let t = Instant::now();
            let p = match &on_device {
                Some(d) => device_attack(d, x, y, &pgd)?,
                None => attack::generate(model, &mut pool, &pgd, x, y, s as u64)?,
            };
            let dt = t.elapsed().as_secs_f64();
            tp += dt;
            per_batch.push(dt / 125.0);
            cp += score(&mut pool, &p)?;
        }
        per_batch.sort_by(f64::total_cmp);
        let (c, f, p) = (cc as f64 / 1000.0, cf as f64 / 1000.0, cp as f64 / 1000.0);
        writeln!(
            err,
            "RESULT {engine} {name} first1000: clean={c:.4} fgsm={f:.4} pgd10={p:.4} | FGSM {:.1} img/s, PGD-10 {:.1} img/s (median-batch {:.1}; input gradient only)",
            1000.0 / tf,
            1000.0 / tp,
            1.0 / per_batch[per_batch.len() / 2]
        )?;
        results.insert(format!("{name}_first1000"), json!({"clean": c, "fgsm": f, "pgd10": p, "fgsm_images_per_s": 1000.0 / tf, "pgd10_images_per_s": 1000.0 / tp}));
        Ok(())
    };

    if b.what == "all" || b.what == "clean" {
        let model = train_run("clean", Method::Clean, &mut err, &mut results)?;
        let mut pool = Pool::new(b.threads);
        let t = Instant::now();
        let pred = model.predict(&mut pool, &xte, te.len())?;
        let ips = te.len() as f64 / t.elapsed().as_secs_f64();
        let acc = pred.iter().zip(&yte).filter(|(p, y)| p == y).count() as f64 / te.len() as f64;
        writeln!(
            err,
            "RESULT warden clean_test_acc(10k)={acc:.4} inference {ips:.1} img/s"
        )?;
        results.insert("clean_test_accuracy".into(), json!(acc));
        results.insert("inference_images_per_s".into(), json!(ips));
        robust("clean", &model, &mut err, &mut results)?;
    }
    if b.what == "dp" {
        // The Opacus baseline's setting (scripts/bench/opacus_fmnist_bench.py): expected batch 256
        // by Poisson sampling, clip 1.0, noise multiplier 1.0, Adam 1e-3, one epoch.
        let dp = DpConfig {
            max_norm: 1.0,
            noise_multiplier: 1.0,
            expected_batch: 256,
        };
        let mut t = Trainer::new(Model::init(&arch, 1)?, OptimSpec::adam(1e-3), b.threads);
        let all: Vec<usize> = (0..tr.len()).collect();
        let start = Instant::now();
        let d = t.dp_epoch(&xtr, &ytr, &all, &dp, &mut |_| 1.0, 3, &mut |_, _, _| true)?;
        let secs = start.elapsed().as_secs_f64();
        let pred = t.model.predict(&mut Pool::new(b.threads), &xte, te.len())?;
        let acc = pred.iter().zip(&yte).filter(|(p, y)| p == y).count() as f64 / te.len() as f64;
        let peak = peak_rss_mib();
        writeln!(
            err,
            "RESULT warden dp_train: {} imgs in {secs:.2}s => {:.1} img/s; test acc {acc:.4}; peak RSS {peak:.0} MiB (includes the decoded dataset, {} MiB)",
            d.examples,
            d.examples as f64 / secs,
            ((xtr.len() + xte.len()) * 4) >> 20
        )?;
        results.insert(
            "dp_train_images_per_s".into(),
            json!(d.examples as f64 / secs),
        );
        results.insert("dp_peak_rss_mib".into(), json!(peak));
    }
    if b.what == "all" || b.what == "adv" {
        for (name, method) in [
            (
                "fgsm_rs",
                Method::FgsmRs {
                    eps: EPS,
                    alpha: 1.25 * EPS,
                    norm: Norm::Linf,
                },
            ),
            (
                "pgd3",
                Method::Pgd {
                    eps: EPS,
                    step: 0.04,
                    steps: 3,
                    norm: Norm::Linf,
                },
            ),
        ] {
            let model = train_run(name, method, &mut err, &mut results)?;
            robust(name, &model, &mut err, &mut results)?;
        }
    }
    if b.json {
        writeln!(
            io::stdout().lock(),
            "{}",
            serde_json::Value::Object(results)
        )?;
    }
    Ok(Outcome::Ok)
}

/// Attack points crafted on the session's device.
fn device_attack(s: &DeviceSession, x: &[f32], y: &[u8], a: &Pgd) -> Result<Vec<f32>> {
    #[cfg(feature = "burn")]
    {
        Ok(s.attack(x, y, a)?)
    }
    #[cfg(not(feature = "burn"))]
    {
        let _ = (x, y, a);
        match *s {}
    }
}

/// Peak resident memory of this process (VmHWM), in MiB; 0 where /proc is not there.
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}
