//! `warden harden train` and `warden harden eval`: file handling, progress and reports around the
//! training and evaluation of `warden-harden`.

use std::collections::BTreeMap;
use std::io::{IsTerminal as _, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use clap::{Args, ValueEnum};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use warden_harden::attack::{Norm, Pgd};
use warden_harden::augment::Augment;
use warden_harden::data::{self, Split};
use warden_harden::eval::{self, EvalConfig, ModelEval};
use warden_harden::nn::{Arch, Model, Pool};
use warden_harden::optim::OptimSpec;
use warden_harden::train::{self, DpConfig, Method, Recipe, Schedule, Trainer};
use warden_harden::weights;
use warden_ledger::Kind;

use crate::Outcome;
use crate::charts::{esc, html_page, html_table, line_svg, md_table};
use crate::ledger_dir;

/// The engine a training run steps: Warden's CPU engine, or burn's backends (`--device`).
pub(crate) enum Runner {
    Cpu(Box<Trainer>),
    #[cfg(feature = "burn")]
    Burn(Box<warden_burn::Session>),
}

impl Runner {
    /// The engine for `--device`; burn's backends get the whole training set (`x`, `y`) up front.
    pub(crate) fn new(
        device: &str,
        model: Model,
        optim: OptimSpec,
        threads: usize,
        x: &[f32],
        y: &[u8],
    ) -> Result<Runner> {
        match device_session(device, &model, optim, x, y)? {
            None => Ok(Runner::Cpu(Box::new(Trainer::new(model, optim, threads)))),
            #[cfg(feature = "burn")]
            Some(s) => Ok(Runner::Burn(Box::new(s))),
            #[cfg(not(feature = "burn"))]
            Some(never) => match never {},
        }
    }

    /// One epoch over `idx` (indices into `x`/`y`, the data the runner was made with), as
    /// `Trainer::epoch`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn epoch(
        &mut self,
        x: &[f32],
        y: &[u8],
        idx: &[usize],
        batch: usize,
        objective: &train::Objective,
        lr: &mut dyn FnMut(usize) -> f32,
        seed: u64,
        on_batch: &mut dyn FnMut(usize, usize, train::Stats) -> bool,
    ) -> Result<train::Stats> {
        match self {
            Runner::Cpu(t) => Ok(t.epoch(x, y, idx, batch, objective, lr, seed, on_batch)?),
            #[cfg(feature = "burn")]
            Runner::Burn(s) => {
                let _ = (x, y);
                Ok(s.epoch(idx, batch, objective, lr, seed, on_batch)?)
            }
        }
    }

    fn enable_ema(&mut self, decay: f32) {
        match self {
            Runner::Cpu(t) => t.enable_ema(decay),
            #[cfg(feature = "burn")]
            Runner::Burn(s) => s.enable_ema(decay),
        }
    }

    fn set_augment(&mut self, augment: Augment) -> Result<()> {
        match self {
            Runner::Cpu(t) => Ok(t.set_augment(augment)?),
            #[cfg(feature = "burn")]
            Runner::Burn(s) => Ok(s.set_augment(augment)?),
        }
    }

    fn enable_awp(&mut self, gamma: f32) {
        match self {
            Runner::Cpu(t) => t.enable_awp(gamma),
            #[cfg(feature = "burn")]
            Runner::Burn(s) => s.enable_awp(gamma),
        }
    }

    /// What the run would release now: the weight average when enabled, otherwise the iterate.
    pub(crate) fn release(&self) -> Result<Model> {
        match self {
            Runner::Cpu(t) => Ok(t.released_model()),
            #[cfg(feature = "burn")]
            Runner::Burn(s) => Ok(s.release()?),
        }
    }

    /// The model card's record of where the run trained.
    fn describe(&self, device: &str) -> Value {
        match self {
            Runner::Cpu(_) => json!({"device": device, "engine": "warden (CPU)"}),
            #[cfg(feature = "burn")]
            Runner::Burn(s) => json!({"device": device, "engine": s.backend()}),
        }
    }
}

/// What `device_session` gives on a burn build; on a build without burn, a type with no values.
#[cfg(feature = "burn")]
pub(crate) type DeviceSession = warden_burn::Session;
#[cfg(not(feature = "burn"))]
pub(crate) type DeviceSession = std::convert::Infallible;

/// A burn session on `device` holding `model` and the data `x`/`y`; None for `cpu`, an error for
/// a device this build cannot run on.
pub(crate) fn device_session(
    device: &str,
    model: &Model,
    optim: OptimSpec,
    x: &[f32],
    y: &[u8],
) -> Result<Option<DeviceSession>> {
    check_device(device)?;
    if device == "cpu" {
        return Ok(None);
    }
    #[cfg(feature = "burn")]
    {
        let d = warden_burn::Device::parse(device)?;
        Ok(Some(warden_burn::Session::new(d, model, optim, x, y)?))
    }
    #[cfg(not(feature = "burn"))]
    {
        let _ = (model, optim, x, y);
        bail!("--device {device:?}: not available")
    }
}

/// Refuses a `--device` this build cannot train on, before any data is read.
pub(crate) fn check_device(device: &str) -> Result<()> {
    if device == "cpu" {
        return Ok(());
    }
    #[cfg(feature = "burn")]
    {
        warden_burn::Device::parse(device)?;
        Ok(())
    }
    #[cfg(not(feature = "burn"))]
    bail!(
        "--device {device:?}: this build runs on the CPU only; build with \
         `cargo build --release -p warden --features cuda` for cuda, or `--features burn` for flex"
    )
}

/// `eval::evaluate` on `device`: Warden's engine on the pool for cpu, otherwise burn's backend,
/// `chunk` examples per pass; with the engine's name and, on a device, how closely it answered
/// as the CPU engine (`eval::evaluate_device`, which refuses a device that does not).
fn evaluate_on_device(
    device: &str,
    chunk: usize,
    model: &Model,
    pool: &mut Pool,
    test: &warden_harden::Dataset,
    cfg: &EvalConfig,
    progress: &mut dyn FnMut(usize, usize, &str),
) -> Result<(ModelEval, String, Option<warden_harden::net::Parity>)> {
    if device == "cpu" {
        let e = eval::evaluate(model, pool, test, cfg, progress)?;
        return Ok((e, "warden (CPU)".into(), None));
    }
    #[cfg(feature = "burn")]
    {
        let mut net = warden_burn::Evaluator::new(warden_burn::Device::parse(device)?, model)?;
        let name = net.backend();
        let (e, parity) = eval::evaluate_device(model, &mut net, chunk, test, cfg, progress)?;
        Ok((e, name, Some(parity)))
    }
    #[cfg(not(feature = "burn"))]
    {
        let _ = (chunk, test, cfg, progress);
        bail!("--device {device:?}: not available")
    }
}

/// Largest architecture or model-card file read.
const MAX_JSON: u64 = 1 << 20;
/// Largest weight file read.
const MAX_WEIGHTS: u64 = 1 << 30;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum MethodArg {
    Clean,
    FgsmRs,
    Pgd,
    Trades,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum NormArg {
    Linf,
    L2,
}

impl NormArg {
    /// The norm, and the largest budget that means anything on images of `len` values in
    /// `[0, 1]`: the cube's side under L∞, its diagonal under L2 (no two images are further
    /// apart; 28 on Fashion-MNIST).
    pub(crate) fn norm_and_largest(self, len: usize) -> (Norm, f32) {
        match self {
            NormArg::Linf => (Norm::Linf, 1.0),
            NormArg::L2 => (Norm::L2, (len as f32).sqrt()),
        }
    }
}

/// The test set an evaluation runs on: Fashion-MNIST's, or one of the user's own.
#[derive(Debug, Args)]
pub(crate) struct TestSetArgs {
    /// Fashion-MNIST directory: its 10,000 test images are the test set unless --test-images
    /// names another.
    #[arg(long, env = "WARDEN_FASHION_MNIST", default_value = data::FASHION_MNIST_DIR)]
    fashion_mnist: PathBuf,
    /// A test set of your own instead: an IDX file of unsigned-byte images, N × H × W
    /// (grey-scale) or N × C × H × W (channel-first, as a PyTorch batch), gzipped or not; a value
    /// v is fed to a model as v / 255, and its shape must be the model's input. Needs
    /// --test-labels
    #[arg(long, requires = "test_labels", value_name = "IDX")]
    test_images: Option<PathBuf>,
    /// The labels of --test-images: an IDX file of N unsigned bytes, each a class index of the
    /// model's output.
    #[arg(long, requires = "test_images", value_name = "IDX")]
    test_labels: Option<PathBuf>,
}

impl TestSetArgs {
    /// The test set, cut to its first `limit` examples when given.
    pub(crate) fn load(&self, limit: Option<usize>) -> Result<data::Dataset> {
        let mut test = match (&self.test_images, &self.test_labels) {
            (Some(images), Some(labels)) => load_own_set(images, labels, "test set")?,
            _ => data::load_fashion_mnist(&self.fashion_mnist, Split::Test)?,
        };
        if let Some(l) = limit {
            let idx: Vec<usize> = (0..test.len().min(l.max(1))).collect();
            if idx.len() < test.len() {
                test = test.subset(&idx, &format!("{} (first {})", test.name, idx.len()));
            }
        }
        Ok(test)
    }
}

/// A set of the user's own (`data::load_idx_set`), named after its images file; an empty one is
/// refused. `role` names it in messages.
pub(crate) fn load_own_set(images: &Path, labels: &Path, role: &str) -> Result<data::Dataset> {
    let name = images
        .file_name()
        .map_or_else(|| role.into(), |n| n.to_string_lossy().into_owned());
    let set = data::load_idx_set(images, labels, &name)?;
    anyhow::ensure!(!set.is_empty(), "the {role} {name} is empty");
    Ok(set)
}

/// Refuses a model whose input is not the set's images, or whose classes do not cover its
/// labels. `role` names the set in messages ("test set", "training set").
pub(crate) fn check_fits(
    set: &data::Dataset,
    role: &str,
    input: [usize; 3],
    classes: usize,
    what: &str,
) -> Result<()> {
    let [c, h, w] = set.shape();
    anyhow::ensure!(
        input == set.shape(),
        "{what} takes {}×{}×{} inputs, and the {role} {} has {c}×{h}×{w} images",
        input[0],
        input[1],
        input[2],
        set.name
    );
    let top = set.labels.iter().copied().max().unwrap_or(0);
    anyhow::ensure!(
        usize::from(top) < classes,
        "{what} has {classes} classes, and the {role} {} has label {top}",
        set.name
    );
    Ok(())
}

/// A norm as the messages write it.
pub(crate) fn norm_name(norm: Norm) -> &'static str {
    match norm {
        Norm::Linf => "L∞",
        Norm::L2 => "L2",
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum OptimArg {
    Adam,
    Sgd,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ScheduleArg {
    Constant,
    Cosine,
    OneCycle,
}

#[derive(Debug, Args)]
pub(crate) struct TrainArgs {
    /// Architecture: a known name (small-cnn, small-cnn-tanh, cnn4, dp-cnn, wk-small, wk-wide, mlp) or an architecture JSON file.
    #[arg(long, default_value = "small-cnn")]
    arch: String,
    /// Training method.
    #[arg(long, value_enum, default_value = "clean")]
    method: MethodArg,
    /// The threat model of adversarial training: linf, or l2.
    #[arg(long, value_enum, default_value = "linf")]
    norm: NormArg,
    /// Budget of adversarial training in that norm, inputs in [0, 1] [default: 0.1 under L∞;
    /// required under L2, e.g. 1].
    #[arg(long)]
    eps: Option<f32>,
    /// PGD and TRADES training: iterations and step size (L∞: per coordinate; L2: the length of
    /// a step) [default: 0.025 under L∞; required under L2, e.g. eps/4].
    #[arg(long, default_value_t = 7)]
    pgd_steps: usize,
    #[arg(long)]
    pgd_step: Option<f32>,
    /// TRADES: weight of the KL term.
    #[arg(long, default_value_t = 6.0)]
    beta: f32,
    /// FGSM-RS step size [default: 1.25 × eps].
    #[arg(long)]
    alpha: Option<f32>,
    #[arg(long, default_value_t = 10)]
    epochs: usize,
    #[arg(long, default_value_t = 128)]
    batch: usize,
    #[arg(long, value_enum, default_value = "adam")]
    optimizer: OptimArg,
    #[arg(long, default_value_t = 1e-3)]
    lr: f32,
    /// SGD momentum.
    #[arg(long, default_value_t = 0.9)]
    momentum: f32,
    #[arg(long, default_value_t = 0.0)]
    weight_decay: f32,
    #[arg(long, value_enum, default_value = "cosine")]
    schedule: ScheduleArg,
    /// Epochs over which eps grows from 0 to its value.
    #[arg(long, default_value_t = 0)]
    eps_warmup: usize,
    /// Stop after this many epochs without a better validation score (0: never).
    #[arg(long, default_value_t = 0)]
    patience: usize,
    /// Average the weights exponentially with this decay (e.g. 0.999), validate the average and
    /// release it instead of the last iterate.
    #[arg(long, value_name = "DECAY")]
    ema: Option<f32>,
    /// Adversarial weight perturbation (Wu et al. 2020) of this relative size (the paper's 0.005):
    /// each PGD or FGSM-RS step takes its gradient at the worst nearby weights, at the price of
    /// one more forward and backward pass.
    #[arg(long, value_name = "GAMMA")]
    awp: Option<f32>,
    /// Augment training images: mirror each left to right with probability 1/2.
    #[arg(long)]
    flip: bool,
    /// Augment training images: translate each by up to this many pixels in each direction
    /// (uniform, the border filled with 0; torchvision's RandomCrop with this padding).
    #[arg(long, value_name = "PIXELS", default_value_t = 0)]
    shift: usize,
    /// A training set of your own instead of Fashion-MNIST's: an IDX file of unsigned-byte
    /// images, N × H × W or N × C × H × W (channel-first, as a PyTorch batch), fed as v / 255;
    /// their shape must be the architecture's input. Needs --train-labels
    #[arg(long, requires = "train_labels", value_name = "IDX")]
    train_images: Option<PathBuf>,
    /// The labels of --train-images: an IDX file of N unsigned bytes, each a class index of the
    /// architecture's output.
    #[arg(long, requires = "train_images", value_name = "IDX")]
    train_labels: Option<PathBuf>,
    /// Validation examples per class, held out of the training set (stratified).
    #[arg(long, default_value_t = 100)]
    val_per_class: usize,
    /// Train on at most this many examples (for quick runs).
    #[arg(long)]
    limit: Option<usize>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value_t = default_threads())]
    threads: usize,
    /// Where training runs: cpu (Warden's engine), cuda or cuda:N (burn's CUDA backend, in a build
    /// with `--features cuda`), or flex (burn's CPU backend: the GPU code path on a CPU, in a build
    /// with `--features burn`). Validation runs on Warden's CPU engine either way.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Differentially private training (DP-SGD, or DP-Adam with --optimizer adam): per-example
    /// clipping, Gaussian noise, Poisson sampling with --batch as the expected batch size; only
    /// with --method clean. The last epoch is written (no selection on validation data).
    #[arg(long)]
    dp: bool,
    /// DP: the target epsilon; the noise multiplier is the smallest that meets it.
    #[arg(long, requires = "dp", conflicts_with = "noise_multiplier")]
    dp_epsilon: Option<f64>,
    /// DP: the accountant that calibrates the noise and reports epsilon (RDP is reported too).
    #[arg(long, requires = "dp", value_enum, default_value_t = crate::privacy_cmd::AccountantArg::Pld)]
    dp_accountant: crate::privacy_cmd::AccountantArg,
    /// DP: delta [default: 1e-5].
    #[arg(long, requires = "dp", default_value_t = 1e-5)]
    dp_delta: f64,
    /// DP: the noise multiplier (instead of --dp-epsilon).
    #[arg(long, requires = "dp")]
    noise_multiplier: Option<f64>,
    /// DP: per-example gradient norm bound.
    #[arg(long, requires = "dp", default_value_t = 1.0)]
    max_grad_norm: f32,
    /// Fashion-MNIST directory.
    #[arg(long, env = "WARDEN_FASHION_MNIST", default_value = data::FASHION_MNIST_DIR)]
    fashion_mnist: PathBuf,
    /// Output directory: model.safetensors, arch.json, model-card.json.
    #[arg(long, short)]
    out: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct EvalArgs {
    /// A model directory written by `warden harden train`, or an ONNX file of a classifier made of
    /// Conv (grouped too), Relu, ReLU6, Tanh, Elu, SiLU, Sigmoid, MaxPool, AveragePool,
    /// GlobalAveragePool, Flatten and Gemm/MatMul layers, in a chain, in residual blocks or in
    /// squeeze-and-excitation gates, with batch norms after
    /// Conv or Gemm, inference Dropout and a final Softmax allowed (imported white-box).
    model: PathBuf,
    /// A baseline model (directory or ONNX file): the report gives the reduction of adversarial
    /// misclassification against it.
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// The threat model of every attack: linf, or l2.
    #[arg(long, value_enum, default_value = "linf")]
    norm: NormArg,
    /// Budgets in that norm (comma-separated) [default: 0.05,0.1,0.15,0.2 under L∞; required under L2].
    #[arg(long, value_delimiter = ',')]
    eps: Vec<f32>,
    /// The budget the headline reduction is given at.
    #[arg(long, default_value_t = 0.1)]
    headline_eps: f32,
    #[arg(long, default_value_t = 50)]
    pgd_steps: usize,
    /// PGD's step (L∞: per coordinate; L2: the length of a step) [default: 0.01 under L∞;
    /// required under L2, e.g. a quarter of the largest budget].
    #[arg(long)]
    pgd_step: Option<f32>,
    #[arg(long, default_value_t = 5)]
    restarts: usize,
    /// APGD-CE and APGD-DLR iterations (AutoAttack's 100; 0 to skip them).
    #[arg(long, default_value_t = 100)]
    apgd_iters: usize,
    /// APGD restarts (AutoAttack's standard version: 1).
    #[arg(long, default_value_t = 1)]
    apgd_restarts: usize,
    /// APGD-T after APGD-DLR: the targeted DLR loss towards each of this many most likely wrong
    /// classes, --apgd-iters iterations each (0: skip it; AutoAttack's standard version: 9).
    #[arg(long, default_value_t = 0)]
    apgd_targets: usize,
    /// FAB-T after APGD-T: the minimal-perturbation boundary attack towards each of this many most
    /// likely wrong classes (0: skip it; AutoAttack's standard version: 9). L∞ or L2.
    #[arg(long, default_value_t = 0)]
    fab_targets: usize,
    /// FAB-T iterations per target (AutoAttack's 100).
    #[arg(long, default_value_t = 100)]
    fab_iters: usize,
    /// Square Attack (black-box, logits only) queries per example, last in the cascade (0: skip;
    /// AutoAttack's standard version uses 5,000).
    #[arg(long, default_value_t = 0)]
    square_queries: usize,
    /// Run every attack on every example, instead of each on what the attacks before it left
    /// unbroken (AutoAttack's cascade: the same worst case, much faster).
    #[arg(long)]
    independent: bool,
    /// Corruption severities to evaluate (comma-separated; 0 for none).
    #[arg(long, value_delimiter = ',', default_values_t = [1u8, 2, 3, 4, 5])]
    severities: Vec<u8>,
    /// Evaluate on the first N test images only.
    #[arg(long)]
    limit: Option<usize>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value_t = default_threads())]
    threads: usize,
    /// Where the attacks' forward and backward passes run: cpu (Warden's engine, on --threads
    /// threads), cuda or cuda:N (burn's CUDA backend, in a build with `--features cuda`), or flex
    /// (burn's CPU backend, in a build with `--features burn`). The attacks themselves (random
    /// starts, steps, schedules, the check of every adversarial example) are the same code on
    /// every device.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Examples per forward and backward pass on a --device other than cpu.
    #[arg(long, default_value_t = 2048)]
    device_chunk: usize,
    #[command(flatten)]
    test_set: TestSetArgs,
    /// The JSON report.
    #[arg(long, short)]
    out: PathBuf,
    /// A readable Markdown summary.
    #[arg(long)]
    md: Option<PathBuf>,
    /// A self-contained HTML page: the robustness curve and the accuracy under shift as charts,
    /// and the summary's tables.
    #[arg(long)]
    html: Option<PathBuf>,
    /// Record the report's digest and headline figures in the ledger as an evidence record.
    #[arg(long)]
    record: bool,
    #[arg(long, env = "WARDEN_LEDGER", value_name = "DIR")]
    ledger: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    /// A model directory written by `warden harden train`.
    model: PathBuf,
    /// The ONNX file to write.
    #[arg(long, short)]
    out: PathBuf,
}

pub(crate) fn export_cmd(a: ExportArgs) -> Result<Outcome> {
    anyhow::ensure!(
        a.model.is_dir(),
        "{} is not a model directory",
        a.model.display()
    );
    let m = load_model_dir(&a.model)?;
    let bytes = warden_harden::onnx::export(&m.model);
    write_atomic(&a.out, &bytes)?;
    #[allow(clippy::print_stderr)]
    {
        eprintln!(
            "wrote {} ({} bytes, sha256 {})",
            a.out.display(),
            bytes.len(),
            sha256_hex(&bytes)
        );
    }
    Ok(Outcome::Ok)
}

pub(crate) fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(64)
}

/// Progress with an ETA on stderr: one line rewritten in place on a terminal, otherwise a line
/// every 10%.
pub(crate) struct Progress {
    label: String,
    start: Instant,
    last: Instant,
    tty: bool,
    last_decile: usize,
}

impl Progress {
    pub(crate) fn new(label: &str) -> Progress {
        let now = Instant::now();
        Progress {
            label: label.into(),
            start: now,
            last: now,
            tty: std::io::stderr().is_terminal(),
            last_decile: 0,
        }
    }

    pub(crate) fn update(&mut self, done: usize, total: usize, detail: &str) {
        let now = Instant::now();
        let decile = (done * 10).checked_div(total).unwrap_or(10);
        let due = if self.tty {
            now.duration_since(self.last).as_millis() >= 200 || done == total
        } else {
            decile > self.last_decile || done == total
        };
        if !due {
            return;
        }
        self.last = now;
        self.last_decile = decile;
        let el = self.start.elapsed().as_secs_f64();
        let eta = if done > 0 {
            el / done as f64 * (total - done.min(total)) as f64
        } else {
            f64::NAN
        };
        let line = format!(
            "[{}] {done}/{total} {detail} elapsed {} ETA {}",
            self.label,
            fmt_secs(el),
            fmt_secs(eta)
        );
        let mut err = std::io::stderr().lock();
        let _ = if self.tty {
            write!(err, "\r\x1b[2K{line}")
        } else {
            writeln!(err, "{line}")
        };
        if self.tty && done == total {
            let _ = writeln!(err);
        }
    }
}

fn fmt_secs(s: f64) -> String {
    if !s.is_finite() {
        return "?".into();
    }
    let s = s.round() as u64;
    if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

pub(crate) fn read_limited(path: &Path, max: u64) -> Result<Vec<u8>> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if !meta.is_file() {
        bail!("{} is not a regular file", path.display());
    }
    if meta.len() > max {
        bail!("{} is larger than {max} bytes", path.display());
    }
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Writes `bytes` to `path` through a temporary file and a rename: an interrupted run leaves the
/// old file or the new one, never half of one.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path
        .file_name()
        .context("output path has no file name")?
        .to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn load_arch(spec: &str) -> Result<Arch> {
    if let Some(a) = Arch::named(spec) {
        return Ok(a);
    }
    let bytes = read_limited(Path::new(spec), MAX_JSON).with_context(|| {
        format!(
            "{spec:?} is neither a known architecture (small-cnn, small-cnn-tanh, cnn4, dp-cnn, wk-small, wk-wide, mlp) nor a readable file"
        )
    })?;
    let arch: Arch =
        serde_json::from_slice(&bytes).with_context(|| format!("{spec}: not an architecture"))?;
    Model::zeros(&arch)?;
    Ok(arch)
}

pub(crate) fn command_line() -> Vec<String> {
    std::env::args().collect()
}

pub(crate) fn train_cmd(a: TrainArgs) -> Result<Outcome> {
    let arch = load_arch(&a.arch)?;
    if a.train_images.is_none() {
        anyhow::ensure!(
            arch.input == [1, 28, 28] && arch.classes == 10,
            "Fashion-MNIST needs a 1×28×28 input and 10 classes"
        );
    }
    // Under L2 nothing has a conventional default: the budget and PGD's step are asked for.
    let adversarial = !matches!(a.method, MethodArg::Clean);
    let multi_step = matches!(a.method, MethodArg::Pgd | MethodArg::Trades);
    let (norm, largest) = a.norm.norm_and_largest(arch.input.iter().product());
    let (eps, pgd_step) = match norm {
        Norm::Linf => (a.eps.unwrap_or(0.1), a.pgd_step.unwrap_or(0.025)),
        Norm::L2 => {
            anyhow::ensure!(
                !adversarial || (a.eps.is_some() && (a.pgd_step.is_some() || !multi_step)),
                "--norm l2 needs --eps (e.g. 1) and, for PGD and TRADES, --pgd-step (e.g. eps/4)"
            );
            // Given wherever they are used; clean training and FGSM-RS's step never read them.
            (a.eps.unwrap_or_default(), a.pgd_step.unwrap_or_default())
        }
    };
    anyhow::ensure!(
        !adversarial || (eps > 0.0 && eps <= largest),
        "--eps must be in (0, {largest}] under {}",
        norm_name(norm)
    );
    let method = match a.method {
        MethodArg::Clean => Method::Clean,
        MethodArg::FgsmRs => Method::FgsmRs {
            eps,
            alpha: a.alpha.unwrap_or(1.25 * eps),
            norm,
        },
        MethodArg::Trades => Method::Trades {
            eps,
            step: pgd_step,
            steps: a.pgd_steps,
            beta: a.beta,
            norm,
        },
        MethodArg::Pgd => Method::Pgd {
            eps,
            step: pgd_step,
            steps: a.pgd_steps,
            norm,
        },
    };
    let optim = match a.optimizer {
        OptimArg::Adam => OptimSpec::Adam {
            lr: a.lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: a.weight_decay,
        },
        OptimArg::Sgd => OptimSpec::Sgd {
            lr: a.lr,
            momentum: a.momentum,
            weight_decay: a.weight_decay,
        },
    };
    let schedule = match a.schedule {
        ScheduleArg::Constant => Schedule::Constant,
        ScheduleArg::Cosine => Schedule::Cosine,
        ScheduleArg::OneCycle => Schedule::OneCycle,
    };
    let recipe = Recipe {
        method,
        optim,
        schedule,
        epochs: a.epochs,
        batch: a.batch,
        eps_warmup_epochs: a.eps_warmup,
        patience: a.patience,
        ema: a.ema,
        awp: a.awp,
        augment: Augment {
            flip: a.flip,
            shift: a.shift,
        },
        seed: a.seed,
    };
    recipe.validate().map_err(anyhow::Error::msg)?;
    anyhow::ensure!((1..=1024).contains(&a.threads), "--threads 1 to 1024");
    check_device(&a.device)?;
    anyhow::ensure!(
        !a.dp || a.device == "cpu",
        "--dp trains on --device cpu only"
    );
    recipe
        .augment
        .validate(arch.input)
        .map_err(anyhow::Error::msg)?;

    let full = match (&a.train_images, &a.train_labels) {
        (Some(images), Some(labels)) => {
            let set = load_own_set(images, labels, "training set")?;
            check_fits(
                &set,
                "training set",
                arch.input,
                arch.classes,
                &format!("--arch {}", a.arch),
            )?;
            set
        }
        _ => data::load_fashion_mnist(&a.fashion_mnist, Split::Train)?,
    };
    let (mut train_idx, val_idx) = data::stratified_split(&full, a.val_per_class, a.seed);
    if let Some(l) = a.limit {
        train_idx.truncate(l.max(1));
    }
    anyhow::ensure!(
        !train_idx.is_empty(),
        "no training examples left after holding out --val-per-class {} per class",
        a.val_per_class
    );
    anyhow::ensure!(
        !val_idx.is_empty() || a.patience == 0,
        "--patience needs validation examples"
    );
    let x = full.inputs();
    let y = &full.labels;
    let len = full.image_len();
    let (val_x, val_y): (Vec<f32>, Vec<u8>) = {
        let mut vx = Vec::with_capacity(val_idx.len() * len);
        for &i in &val_idx {
            vx.extend_from_slice(&x[i * len..(i + 1) * len]);
        }
        (vx, val_idx.iter().map(|&i| y[i]).collect())
    };
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create {}", a.out.display()))?;

    // DP-SGD: the noise for the target epsilon over all steps, with the sampling rate q = B/N.
    let dp = if a.dp {
        anyhow::ensure!(
            matches!(method, Method::Clean),
            "--dp trains with --method clean only"
        );
        anyhow::ensure!(
            a.dp_delta > 0.0 && a.dp_delta < 1.0,
            "--dp-delta must be in (0, 1)"
        );
        let q = a.batch as f64 / train_idx.len() as f64;
        anyhow::ensure!(q > 0.0 && q <= 1.0, "--batch larger than the training set");
        let steps_per_epoch = ((train_idx.len() as f64 / a.batch as f64).round() as u64).max(1);
        let steps = steps_per_epoch * a.epochs as u64;
        let accountant = warden_harden::accountant::Method::from(a.dp_accountant);
        let sigma = match (a.noise_multiplier, a.dp_epsilon) {
            (Some(s), _) => s,
            (None, Some(e)) => accountant.noise(q, steps, a.dp_delta, e)?,
            (None, None) => bail!("--dp needs --dp-epsilon or --noise-multiplier"),
        };
        let cfg = DpConfig {
            max_norm: a.max_grad_norm,
            noise_multiplier: sigma as f32,
            expected_batch: a.batch,
        };
        cfg.validate().map_err(anyhow::Error::msg)?;
        let epsilon = accountant.epsilon(q, sigma, steps, a.dp_delta)?;
        let (rdp_epsilon, order) =
            warden_harden::accountant::dp_sgd_epsilon(q, sigma, steps, a.dp_delta)?;
        let also = if accountant == warden_harden::accountant::Method::Rdp {
            String::new()
        } else {
            format!("; RDP would say {rdp_epsilon:.4}")
        };
        #[allow(clippy::print_stderr)]
        {
            eprintln!(
                "DP-SGD: q = {q:.5}, {steps} steps, noise multiplier {sigma:.4}, clip {}: epsilon {epsilon:.4} at delta {} ({}{also})",
                a.max_grad_norm,
                a.dp_delta,
                accountant.name().to_uppercase()
            );
        }
        Some((
            cfg,
            json!({
                "mechanism": "DP-SGD: per-example clipping, Gaussian noise, Poisson sampling",
                "optimizer": recipe.optim, "max_grad_norm": a.max_grad_norm, "noise_multiplier": sigma,
                "sampling_rate": q, "expected_batch": a.batch, "steps": steps, "delta": a.dp_delta, "epsilon": epsilon,
                "accountant": accountant.name(), "accountant_method": accountant.describe(),
                "rdp": { "epsilon": rdp_epsilon, "optimal_order": order },
                "assumptions_met": true,
                "note": "validation examples are held out of the private training set; the last epoch is released",
            }),
        ))
    } else {
        None
    };

    // DP noise and Poisson sampling are drawn from a seed taken from the operating system and
    // never written anywhere: with the recorded --seed, anyone holding the model card could
    // regenerate the noise and the batches, and the guarantee would not hold.
    let dp_secret = if dp.is_some() {
        let mut b = [0u8; 8];
        getrandom::getrandom(&mut b)
            .map_err(|e| anyhow::anyhow!("no operating-system randomness for DP noise: {e}"))?;
        u64::from_le_bytes(b)
    } else {
        0
    };
    let model = Model::init(&arch, a.seed)?;
    let mut runner = Runner::new(&a.device, model, optim, a.threads, &x, y)?;
    if let Some(d) = a.ema {
        runner.enable_ema(d);
    }
    if let Some(g) = a.awp {
        runner.enable_awp(g);
    }
    runner.set_augment(recipe.augment)?;
    // A DP epoch runs round(N / B) Poisson-sampled steps (the accountant's count).
    let batches = if dp.is_some() {
        ((train_idx.len() as f64 / a.batch as f64).round() as usize).max(1)
    } else {
        train_idx.len().div_ceil(a.batch)
    };
    let total_steps = batches * a.epochs;
    // Validation attack: PGD-10 with step eps/4 (cheap, and strong enough to see catastrophic
    // overfitting, which shows as a collapse of PGD accuracy while FGSM accuracy stays high).
    let val_attack = (method.eps() > 0.0).then(|| Pgd {
        norm: method.norm(),
        ..Pgd::linf(method.eps(), method.eps() / 4.0, 10, 1)
    });
    let mut history = Vec::new();
    let mut best: Option<(f64, usize, Vec<Vec<f32>>)> = None;
    let start = Instant::now();
    let mut stale = 0;
    for epoch in 0..a.epochs {
        let eps_now = recipe.eps_at(epoch);
        let objective = method.objective(eps_now);
        let mut progress = Progress::new(&format!("epoch {}/{}", epoch + 1, a.epochs));
        let step0 = epoch * batches;
        let epoch_seed = a
            .seed
            .wrapping_add(epoch as u64)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let stats = if let (Some((cfg, _)), Runner::Cpu(trainer)) = (&dp, &mut runner) {
            let d = trainer.dp_epoch(
                &x,
                y,
                &train_idx,
                cfg,
                &mut |b| schedule.factor(step0 + b, total_steps),
                dp_secret ^ epoch_seed,
                &mut |d, t, s| {
                    progress.update(d, t, &format!("loss {:.4}", s.loss));
                    true
                },
            )?;
            #[allow(clippy::print_stderr)]
            {
                eprintln!(
                    "epoch {}: {:.1}% of per-example gradients clipped (not recorded)",
                    epoch + 1,
                    100.0 * d.clipped_fraction
                );
            }
            train::Stats {
                examples: d.examples,
                loss: d.loss,
                accuracy: d.accuracy,
            }
        } else {
            runner.epoch(
                &x,
                y,
                &train_idx,
                a.batch,
                &objective,
                &mut |b| schedule.factor(step0 + b, total_steps),
                epoch_seed,
                &mut |d, t, s| {
                    progress.update(d, t, &format!("loss {:.4}", s.loss));
                    true
                },
            )?
        };
        // With averaging, the average is what is validated and released.
        let model = runner.release()?;
        let mut pool = Pool::new(a.threads);
        let val_clean = train::accuracy(&model, &mut pool, &val_x, &val_y, None, 0)?;
        let val_robust = match &val_attack {
            Some(va) => Some(train::accuracy(
                &model,
                &mut pool,
                &val_x,
                &val_y,
                Some(va),
                a.seed,
            )?),
            None => None,
        };
        let score = val_robust.unwrap_or(val_clean);
        let entry = json!({
            "epoch": epoch + 1, "eps": eval::decimal(eps_now),
            // Statistics of the private training data are outside the DP guarantee: not released.
            "train_loss": if dp.is_some() { None } else { Some(stats.loss) },
            "train_accuracy": if dp.is_some() { None } else { Some(stats.accuracy) },
            "val_accuracy": val_clean, "val_robust_accuracy": val_robust, "seconds": start.elapsed().as_secs_f64(),
            // (the clipped fraction is printed while training, not kept: it is a statistic of private data)
        });
        #[allow(clippy::print_stderr)]
        {
            eprintln!("epoch {}: {entry}", epoch + 1);
        }
        history.push(entry);
        // Only epochs at the full budget compete (a warm-up epoch's robustness is at a smaller eps).
        let full_budget = eps_now >= method.eps();
        if dp.is_some() {
            // Private training releases the last epoch.
            best = Some((score, epoch + 1, model.params().to_vec()));
        } else if full_budget && best.as_ref().is_none_or(|(s, _, _)| score > *s) {
            best = Some((score, epoch + 1, model.params().to_vec()));
            stale = 0;
        } else if full_budget {
            stale += 1;
            if a.patience > 0 && stale >= a.patience {
                #[allow(clippy::print_stderr)]
                {
                    eprintln!("stopping: no better validation score for {stale} epochs");
                }
                break;
            }
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let (score, best_epoch, params) = best.context("no epoch was trained at the full budget")?;
    let mut model = runner.release()?;
    model.params_mut().clone_from_slice(&params);

    let mut meta = BTreeMap::new();
    meta.insert("warden.recipe".to_string(), serde_json::to_string(&recipe)?);
    let st = weights::to_safetensors(&model, &meta);
    let arch_json = serde_json::to_vec_pretty(&arch)?;
    let card = json!({
        "schema": "warden.model-card/v1",
        "name": arch.name,
        "architecture": arch,
        "parameters": model.param_count(),
        "weights": {"file": "model.safetensors", "sha256": sha256_hex(&st), "layout": "pytorch nn.Sequential state_dict, float32"},
        "recipe": recipe,
        "privacy": dp.as_ref().map(|(_, j)| j),
        "selected_epoch": best_epoch,
        "selection": if dp.is_some() { "the last epoch (private training)" } else if val_attack.is_none() { "best validation accuracy" } else if method.norm() == Norm::L2 { "best validation accuracy under L2 PGD-10 (step eps/4) at the full budget" } else { "best validation accuracy under PGD-10 (step eps/4) at the full budget" },
        "validation_score": score,
        "history": history,
        "data": {
            "train": full.summary(),
            "split": {"validation_per_class": a.val_per_class, "seed": a.seed, "train_examples": train_idx.len(), "validation_examples": val_idx.len()},
        },
        "threads": a.threads,
        "training_engine": runner.describe(&a.device),
        "seconds": seconds,
        "command": command_line(),
        "warden_version": env!("CARGO_PKG_VERSION"),
    });
    write_atomic(&a.out.join("model.safetensors"), &st)?;
    write_atomic(&a.out.join("arch.json"), &arch_json)?;
    write_atomic(
        &a.out.join("model-card.json"),
        &serde_json::to_vec_pretty(&card)?,
    )?;
    #[allow(clippy::print_stderr)]
    {
        eprintln!(
            "wrote {} (epoch {best_epoch}, validation score {score:.4}, {seconds:.0} s)",
            a.out.display()
        );
    }
    Ok(Outcome::Ok)
}

pub(crate) struct LoadedModel {
    pub(crate) model: Model,
    pub(crate) weights_sha256: String,
    card: Value,
}

pub(crate) fn load_model_dir(dir: &Path) -> Result<LoadedModel> {
    if dir.is_file() {
        // An ONNX classifier (e.g. a PyTorch model exported with torch.onnx.export).
        let bytes = read_limited(dir, MAX_WEIGHTS)?;
        // Weights in files beside the model (PyTorch's default exporter): read from the
        // model's directory, each digest recorded with the report.
        let beside = dir.parent().unwrap_or(Path::new("."));
        let mut external = Vec::new();
        let mut read = |name: &str| -> std::result::Result<Vec<u8>, String> {
            let data =
                read_limited(&beside.join(name), MAX_WEIGHTS).map_err(|e| format!("{e:#}"))?;
            external.push(json!({"file": name, "sha256": sha256_hex(&data)}));
            Ok(data)
        };
        let model = match warden_harden::onnx::import_with(&bytes, &mut read) {
            Ok(m) => m,
            Err(e @ warden_harden::onnx::OnnxError::Unsupported(_)) => bail!(
                "{}: {e}. Warden takes gradients only through the layers it implements; \
                 evaluate this model black-box (Square, logits only) with \
                 `warden harden eval-blackbox -o OUT.json -- python3 scripts/oracle/onnxruntime_oracle.py {}`",
                dir.display(),
                dir.display()
            ),
            Err(e) => return Err(anyhow::Error::new(e).context(format!("{}", dir.display()))),
        };
        let card = if external.is_empty() {
            json!({"format": "onnx"})
        } else {
            json!({"format": "onnx", "external_data": external})
        };
        return Ok(LoadedModel {
            model,
            weights_sha256: sha256_hex(&bytes),
            card,
        });
    }
    let bytes = read_limited(&dir.join("model.safetensors"), MAX_WEIGHTS)?;
    let arch = match weights::arch_of(&bytes)? {
        Some(a) => a,
        None => load_arch(&dir.join("arch.json").to_string_lossy())?,
    };
    let model = weights::from_safetensors(&arch, &bytes)
        .with_context(|| format!("{}/model.safetensors", dir.display()))?;
    let card = match read_limited(&dir.join("model-card.json"), MAX_JSON) {
        Ok(b) => serde_json::from_slice(&b).unwrap_or(Value::Null),
        Err(_) => Value::Null,
    };
    Ok(LoadedModel {
        model,
        weights_sha256: sha256_hex(&bytes),
        card,
    })
}

pub(crate) fn eval_cmd(a: EvalArgs) -> Result<Outcome> {
    anyhow::ensure!((1..=1024).contains(&a.threads), "--threads 1 to 1024");
    anyhow::ensure!(
        (1..=65_536).contains(&a.device_chunk),
        "--device-chunk 1 to 65536"
    );
    check_device(&a.device)?;
    let test = a.test_set.load(a.limit)?;
    // Under L2 nothing has a conventional default: the budgets and PGD's step are asked for.
    let (norm, largest) = a.norm.norm_and_largest(test.image_len());
    let (eps, pgd_step) = match norm {
        Norm::Linf => (
            if a.eps.is_empty() {
                vec![0.05, 0.1, 0.15, 0.2]
            } else {
                a.eps.clone()
            },
            a.pgd_step.unwrap_or(0.01),
        ),
        Norm::L2 => {
            let (false, Some(step)) = (a.eps.is_empty(), a.pgd_step) else {
                bail!(
                    "--norm l2 needs --eps (e.g. 0.5,1,1.5) and --pgd-step (e.g. a quarter of the largest budget)"
                );
            };
            (a.eps.clone(), step)
        }
    };
    anyhow::ensure!(
        eps.iter()
            .all(|e| e.is_finite() && (0.0..=largest).contains(e)),
        "--eps: budgets in [0, {largest}]"
    );
    let severities: Vec<u8> = a.severities.iter().copied().filter(|&s| s != 0).collect();
    if let Some(s) = severities.iter().find(|s| **s > 5) {
        bail!("severity {s} is outside 1 to 5");
    }
    let cfg = EvalConfig {
        norm,
        eps,
        pgd_steps: a.pgd_steps,
        pgd_step,
        restarts: a.restarts,
        apgd_iters: a.apgd_iters,
        apgd_restarts: a.apgd_restarts,
        apgd_targets: a.apgd_targets,
        fab_targets: a.fab_targets,
        fab_iters: a.fab_iters,
        square_queries: a.square_queries,
        independent: a.independent,
        corruption_severities: severities,
        seed: a.seed,
    };
    anyhow::ensure!(
        cfg.apgd_targets == 0 || cfg.apgd_iters > 0,
        "--apgd-targets needs --apgd-iters > 0"
    );
    // Every attack's settings, before a model is loaded; the targets against each model's classes
    // once it is.
    cfg.validate(usize::MAX).map_err(anyhow::Error::msg)?;
    let fits_classes = |classes: usize| -> Result<()> {
        anyhow::ensure!(
            cfg.apgd_targets < classes,
            "--apgd-targets at most {}: the wrong classes of a {classes}-class model",
            classes.saturating_sub(1)
        );
        anyhow::ensure!(
            cfg.fab_targets < classes,
            "--fab-targets at most {}: the wrong classes of a {classes}-class model",
            classes.saturating_sub(1)
        );
        cfg.validate(classes).map_err(anyhow::Error::msg)
    };
    // The headline is given at a budget that was evaluated: the requested one, or the nearest.
    let headline_eps = cfg
        .eps
        .iter()
        .copied()
        .min_by(|x, y| {
            (x - a.headline_eps)
                .abs()
                .total_cmp(&(y - a.headline_eps).abs())
        })
        .unwrap_or(a.headline_eps);
    let mut pool = Pool::new(a.threads);
    let mut engine = String::new();
    let mut parity = serde_json::Map::new();
    let mut run = |dir: &Path, role: &str| -> Result<(LoadedModel, ModelEval)> {
        let m = load_model_dir(dir)?;
        check_fits(
            &test,
            "test set",
            m.model.arch().input,
            m.model.classes(),
            &dir.display().to_string(),
        )?;
        fits_classes(m.model.classes())?;
        let mut progress = Progress::new(&format!("eval {role}"));
        let (e, name, p) = evaluate_on_device(
            &a.device,
            a.device_chunk,
            &m.model,
            &mut pool,
            &test,
            &cfg,
            &mut |d, t, what| progress.update(d, t, what),
        )?;
        engine = name;
        if let Some(p) = p {
            let _ = writeln!(
                std::io::stderr().lock(),
                "{role} on {engine} against Warden's CPU engine, first {} test examples: logits within {:.2e} (largest {:.3}), {} of {} predictions the same, input gradients within {:.2e} (largest {:.2e}), {:.4}% of their signs the same",
                p.examples,
                p.max_logit_diff,
                p.max_logit,
                p.same_predictions,
                p.examples,
                p.max_grad_diff,
                p.max_grad,
                100.0 * p.grad_sign_agreement
            );
            parity.insert(role.to_string(), serde_json::to_value(&p)?);
        }
        for r in e.attacks.iter().filter(|r| r.rejected > 0) {
            let _ = writeln!(
                std::io::stderr().lock(),
                "warning: {} at eps {} claimed {} adversarial examples that did not verify (outside the ball or the bounds, or classified correctly); they count as not broken. Please report this.",
                r.attack,
                r.eps,
                r.rejected
            );
        }
        Ok((m, e))
    };
    let start = Instant::now();
    let (hard, hard_eval) = run(&a.model, "model")?;
    let base = match &a.baseline {
        Some(b) => Some(run(b, "baseline")?),
        None => None,
    };
    let reductions: Vec<Value> = match &base {
        Some((_, be)) => cfg
            .eps
            .iter()
            .map(|&e| json!({"eps": eval::decimal(e), "reduction": eval::reduction(be, &hard_eval, e)}))
            .collect(),
        None => Vec::new(),
    };
    let headline = base
        .as_ref()
        .and_then(|(_, be)| eval::reduction(be, &hard_eval, headline_eps));
    let describe = |dir: &Path, m: &LoadedModel, e: &ModelEval| {
        let mut v = json!({"dir": dir.display().to_string(), "name": m.model.arch().name, "weights_sha256": m.weights_sha256,
               "recipe": m.card.get("recipe"), "evaluation": e});
        // An ONNX file's weights kept beside it: each file and its digest.
        if let Some(x) = m.card.get("external_data") {
            v["external_data"] = x.clone();
        }
        v
    };
    let mut attack_names = vec![
        "FGSM".to_string(),
        format!(
            "PGD-{} step {} with {} random restart(s), first success kept",
            cfg.pgd_steps, cfg.pgd_step, cfg.restarts
        ),
    ];
    if cfg.apgd_iters > 0 {
        attack_names.push(format!(
            "APGD-CE and APGD-DLR, {} iterations, {} restart(s)",
            cfg.apgd_iters, cfg.apgd_restarts
        ));
    }
    if cfg.apgd_iters > 0 && cfg.apgd_targets > 0 {
        attack_names.push(format!(
            "APGD-T, {} iterations towards each of the {} most likely wrong classes",
            cfg.apgd_iters, cfg.apgd_targets
        ));
    }
    if cfg.fab_targets > 0 {
        attack_names.push(format!(
            "FAB-T, {} iterations towards each of the {} most likely wrong classes (minimal perturbation)",
            cfg.fab_iters, cfg.fab_targets
        ));
    }
    if cfg.square_queries > 0 {
        attack_names.push(format!(
            "Square, {} queries (black-box)",
            cfg.square_queries
        ));
    }
    let report = json!({
        "schema": "warden.robustness-report/v1",
        "test_set": test.summary(),
        "protocol": {"attacks": attack_names,
                     "order": if cfg.independent { "independent: every attack on every example" } else { "cascade (AutoAttack): each attack on the examples no attack before it broke; per-attack figures are the robust accuracy remaining after it" },
                     "norm": cfg.norm, "eps": cfg.eps.iter().map(|&e| eval::decimal(e)).collect::<Vec<_>>(), "bounds": [0.0, 1.0], "seed": cfg.seed,
                     "worst_case": "an example is robust at eps only if no attack at any budget up to eps breaks it"},
        "model": describe(&a.model, &hard, &hard_eval),
        "baseline": base.as_ref().map(|(m, e)| describe(a.baseline.as_deref().unwrap_or(Path::new("")), m, e)),
        "reduction_of_adversarial_misclassification": reductions,
        "headline": {"eps": eval::decimal(headline_eps), "clean_accuracy": hard_eval.clean_accuracy, "robust_accuracy": hard_eval.worst_at(headline_eps),
                     "baseline_clean_accuracy": base.as_ref().map(|(_, e)| e.clean_accuracy),
                     "baseline_robust_accuracy": base.as_ref().and_then(|(_, e)| e.worst_at(headline_eps)), "reduction": headline},
        "threads": a.threads,
        "engine": {"device": a.device, "backend": engine,
                   "chunk": (a.device != "cpu").then_some(a.device_chunk),
                   "parity_with_cpu_engine": (!parity.is_empty()).then_some(&parity)},
        "seconds": start.elapsed().as_secs_f64(),
        "command": command_line(),
        "warden_version": env!("CARGO_PKG_VERSION"),
    });
    let bytes = serde_json::to_vec_pretty(&report)?;
    write_atomic(&a.out, &bytes)?;
    if let Some(md) = &a.md {
        write_atomic(
            md,
            markdown(&report, &hard_eval, base.as_ref().map(|(_, e)| e)).as_bytes(),
        )?;
    }
    if let Some(html) = &a.html {
        write_atomic(
            html,
            html_report(&report, &hard_eval, base.as_ref().map(|(_, e)| e)).as_bytes(),
        )?;
    }
    if a.record {
        let mut subjects = vec![
            json!({"name": "report", "digest": format!("sha256:{}", sha256_hex(&bytes))}),
            json!({"name": "model", "digest": format!("sha256:{}", hard.weights_sha256)}),
        ];
        if let Some((b, _)) = &base {
            subjects.push(
                json!({"name": "baseline", "digest": format!("sha256:{}", b.weights_sha256)}),
            );
        }
        let record = json!({
            "kind": Kind::Evidence.as_str(),
            "actor": "warden:harden-eval",
            "subjects": subjects,
            "payload": {"check": "robustness", "report": a.out.display().to_string(), "headline": report["headline"], "test_set_sha256": test.digest()},
        });
        ledger_dir::record_now(a.ledger.as_deref(), record)?;
    }
    #[allow(clippy::print_stderr)]
    {
        eprintln!("{}", serde_json::to_string(&report["headline"])?);
    }
    Ok(Outcome::Ok)
}

fn pct(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{:.2}%", 100.0 * v))
}

/// Worst-case accuracy against the budget, from ε 0 (the clean accuracy).
fn worst_curve(e: &ModelEval) -> Vec<(f64, f64)> {
    let mut v = vec![(0.0, e.clean_accuracy)];
    v.extend(e.worst_case.iter().copied().filter(|(eps, _)| *eps > 0.0));
    v
}

/// Mean accuracy over the corruptions at each severity, from severity 0 (the clean accuracy).
fn severity_curve(e: &ModelEval) -> Vec<(f64, f64)> {
    let mut v = vec![(0.0, e.clean_accuracy)];
    let mut sev: Vec<u8> = e.corruptions.iter().map(|c| c.severity).collect();
    sev.sort_unstable();
    sev.dedup();
    for s in sev {
        let at: Vec<f64> = e
            .corruptions
            .iter()
            .filter(|c| c.severity == s)
            .map(|c| c.accuracy)
            .collect();
        v.push((f64::from(s), at.iter().sum::<f64>() / at.len() as f64));
    }
    v
}

/// The robustness curve's rows: ε, the model's and the baseline's worst-case accuracy.
fn curve_rows(m: &ModelEval, b: Option<&ModelEval>) -> Vec<(f64, Vec<String>)> {
    worst_curve(m)
        .into_iter()
        .map(|(eps, acc)| {
            let other = match b {
                Some(b) if eps == 0.0 => Some(b.clean_accuracy),
                Some(b) => b.worst_at(eps as f32),
                None => None,
            };
            (acc, vec![eps.to_string(), pct(Some(acc)), pct(other)])
        })
        .collect()
}

fn attack_rows(m: &ModelEval, b: Option<&ModelEval>) -> Vec<Vec<String>> {
    m.attacks
        .iter()
        .map(|a| {
            let other = b
                .and_then(|b| {
                    b.attacks
                        .iter()
                        .find(|x| x.attack == a.attack && x.eps == a.eps)
                })
                .map(|x| x.robust_accuracy);
            vec![
                a.attack.clone(),
                a.eps.to_string(),
                pct(Some(a.robust_accuracy)),
                a.attacked.to_string(),
                a.newly_broken.to_string(),
                pct(other),
                format!("{:.1}", a.seconds),
            ]
        })
        .collect()
}

const ATTACK_HEADER: [&str; 7] = [
    "attack",
    "eps",
    "model",
    "attacked",
    "newly broken",
    "baseline",
    "seconds",
];

fn corruption_rows(m: &ModelEval, b: Option<&ModelEval>) -> Vec<Vec<String>> {
    m.corruptions
        .iter()
        .map(|c| {
            let other = b
                .and_then(|b| {
                    b.corruptions
                        .iter()
                        .find(|x| x.corruption == c.corruption && x.severity == c.severity)
                })
                .map(|x| x.accuracy);
            vec![
                c.corruption.clone(),
                c.severity.to_string(),
                pct(Some(c.accuracy)),
                pct(other),
            ]
        })
        .collect()
}

/// The headline: clean and robust accuracy at the headline budget, and against the baseline.
fn headline(report: &Value, strong: fn(&str) -> String) -> String {
    let h = &report["headline"];
    format!(
        "{}{}",
        strong(&format!(
            "At eps {}{}: clean {}, robust {}",
            h["eps"],
            if cfg_norm(report) == "l2" {
                " (L2)"
            } else {
                ""
            },
            pct(h["clean_accuracy"].as_f64()),
            pct(h["robust_accuracy"].as_f64())
        )),
        match h["reduction"].as_f64() {
            Some(r) => format!(
                "; baseline clean {}, robust {}; adversarial misclassification reduced by {}",
                pct(h["baseline_clean_accuracy"].as_f64()),
                pct(h["baseline_robust_accuracy"].as_f64()),
                strong(&format!("{:.1}%", 100.0 * r))
            ),
            None => String::new(),
        }
    )
}

fn test_set_line(report: &Value, m: &ModelEval) -> String {
    format!(
        "Test set: {} ({} images, sha256 {}).",
        report["test_set"]["name"].as_str().unwrap_or(""),
        m.examples,
        report["test_set"]["sha256"].as_str().unwrap_or("")
    )
}

fn markdown(report: &Value, m: &ModelEval, b: Option<&ModelEval>) -> String {
    let mut s = String::new();
    s.push_str("# Robustness report\n\n");
    s.push_str(&test_set_line(report, m));
    s.push_str(&format!(
        "\nProtocol: {}.\n\n",
        report["protocol"]["attacks"]
    ));
    s.push_str(&headline(report, |t| format!("**{t}**")));
    s.push_str("\n\n## Robustness curve (worst case over the attacks)\n\n");
    let rows: Vec<Vec<String>> = curve_rows(m, b)
        .into_iter()
        .map(|(acc, mut r)| {
            r.insert(2, bar(acc));
            r
        })
        .collect();
    s.push_str(&md_table(&["eps", "model", "bar", "baseline"], &rows));
    s.push_str(&format!(
        "\n## Per attack\n\nOrder: {}.\n\n",
        report["protocol"]["order"].as_str().unwrap_or("")
    ));
    s.push_str(&md_table(&ATTACK_HEADER, &attack_rows(m, b)));
    if !m.corruptions.is_empty() {
        s.push_str(&format!(
            "\n## Distribution shift (corruptions)\n\nMean accuracy: model {}, baseline {}.\n\n",
            pct(m.mean_corruption_accuracy),
            pct(b.and_then(|b| b.mean_corruption_accuracy))
        ));
        s.push_str(&md_table(
            &["corruption", "severity", "model", "baseline"],
            &corruption_rows(m, b),
        ));
    }
    s
}

/// The report's norm as written in its protocol (`linf` or `l2`).
fn cfg_norm(report: &Value) -> &str {
    report["protocol"]["norm"].as_str().unwrap_or("linf")
}

/// The report as a self-contained HTML page: the robustness curve and the accuracy under shift
/// drawn as SVG, and the tables of the Markdown summary.
fn html_report(report: &Value, m: &ModelEval, b: Option<&ModelEval>) -> String {
    let escaped = |rows: Vec<Vec<String>>| -> Vec<Vec<String>> {
        rows.into_iter()
            .map(|r| r.iter().map(|c| esc(c)).collect())
            .collect()
    };
    let with_base = |f: fn(&ModelEval) -> Vec<(f64, f64)>| {
        let mut curves = vec![("model", f(m))];
        if let Some(b) = b {
            curves.push(("baseline", f(b)));
        }
        curves
    };
    let summary = format!(
        "<p>{}</p><p>Protocol: {}.</p><p>{}</p>",
        esc(&test_set_line(report, m)),
        esc(&report["protocol"]["attacks"].to_string()),
        headline(report, |t| format!("<strong>{}</strong>", esc(t)))
    );
    let eps_ticks: Vec<f64> = worst_curve(m).iter().map(|(e, _)| *e).collect();
    let curve = format!(
        "{}{}",
        line_svg(
            "worst case over the attacks",
            match cfg_norm(report) {
                "l2" => "eps (L2)",
                _ => "eps (L∞)",
            },
            &eps_ticks,
            &with_base(worst_curve)
        ),
        html_table(
            &["eps", "model", "baseline"],
            &escaped(curve_rows(m, b).into_iter().map(|(_, r)| r).collect())
        )
    );
    let attacks = format!(
        "<p>Order: {}.</p>{}",
        esc(report["protocol"]["order"].as_str().unwrap_or("")),
        html_table(&ATTACK_HEADER, &escaped(attack_rows(m, b)))
    );
    let mut sections = vec![
        ("Summary".to_string(), summary),
        (
            "Robustness curve (worst case over the attacks)".to_string(),
            curve,
        ),
        ("Per attack".to_string(), attacks),
    ];
    if !m.corruptions.is_empty() {
        let sev_ticks: Vec<f64> = severity_curve(m).iter().map(|(s, _)| *s).collect();
        sections.push((
            "Distribution shift (corruptions)".to_string(),
            format!(
                "<p>Mean accuracy: model {}, baseline {}.</p>{}{}",
                pct(m.mean_corruption_accuracy),
                pct(b.and_then(|b| b.mean_corruption_accuracy)),
                line_svg(
                    "mean over the corruptions",
                    "severity (0: clean)",
                    &sev_ticks,
                    &with_base(severity_curve)
                ),
                html_table(
                    &["corruption", "severity", "model", "baseline"],
                    &escaped(corruption_rows(m, b))
                )
            ),
        ));
    }
    html_page("Robustness report", &sections)
}

fn bar(v: f64) -> String {
    "█".repeat((v.clamp(0.0, 1.0) * 20.0).round() as usize)
}

#[derive(Debug, Args)]
pub(crate) struct MiaArgs {
    /// A model directory written by `warden harden train` (its model card names the split).
    model: PathBuf,
    /// Shadow models for the shadow-model attack (0: only the loss-threshold attack).
    #[arg(long, default_value_t = 4)]
    shadows: usize,
    #[arg(long, default_value_t = default_threads())]
    threads: usize,
    #[arg(long, env = "WARDEN_FASHION_MNIST", default_value = data::FASHION_MNIST_DIR)]
    fashion_mnist: PathBuf,
    /// A second model to attack the same way and show side by side (typically the non-private
    /// model trained on the same data, to show what DP buys).
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// The JSON report [default: stdout].
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// A readable Markdown summary (both models side by side with --baseline).
    #[arg(long)]
    md: Option<PathBuf>,
    /// Record the report's digest and figures in the ledger as an evidence record.
    #[arg(long)]
    record: bool,
    #[arg(long, env = "WARDEN_LEDGER", value_name = "DIR")]
    ledger: Option<PathBuf>,
}

/// Trains a model with `recipe` (and DP-SGD when given) on `idx`, releasing the last epoch: how a
/// shadow model is made. Everything in the recipe that shapes how much a model fits its training
/// data is followed: the ε warm-up, augmentation, adversarial weight perturbation and the weight
/// average (released instead of the iterate, as training releases it).
#[allow(clippy::too_many_arguments)]
fn train_plain(
    arch: &Arch,
    recipe: &Recipe,
    dp: Option<&DpConfig>,
    x: &[f32],
    y: &[u8],
    idx: &[usize],
    threads: usize,
    seed: u64,
) -> Result<Model> {
    let mut t = Trainer::new(Model::init(arch, seed)?, recipe.optim, threads);
    t.set_augment(recipe.augment)?;
    if let Some(g) = recipe.awp {
        t.enable_awp(g);
    }
    if let Some(d) = recipe.ema {
        t.enable_ema(d);
    }
    let batches = idx.len().div_ceil(recipe.batch);
    let total = batches * recipe.epochs;
    for e in 0..recipe.epochs {
        let es = seed
            .wrapping_add(e as u64)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let step0 = e * batches;
        let mut lr = |b: usize| recipe.schedule.factor(step0 + b, total);
        match dp {
            Some(cfg) => {
                t.dp_epoch(x, y, idx, cfg, &mut lr, es, &mut |_, _, _| true)?;
            }
            None => {
                let obj = recipe.method.objective(recipe.eps_at(e));
                t.epoch(
                    x,
                    y,
                    idx,
                    recipe.batch,
                    &obj,
                    &mut lr,
                    es,
                    &mut |_, _, _| true,
                )?;
            }
        }
    }
    Ok(t.released_model())
}

pub(crate) fn mia_cmd(a: MiaArgs) -> Result<Outcome> {
    anyhow::ensure!((1..=1024).contains(&a.threads), "--threads 1 to 1024");
    anyhow::ensure!(a.shadows <= 64, "--shadows at most 64");
    let (mut report, m) = mia_one(&a, &a.model)?;
    let card = &m.card;
    let baseline = match &a.baseline {
        Some(b) => Some(mia_one(&a, b)?),
        None => None,
    };
    if let Some((b, _)) = &baseline {
        report["baseline"] = b.clone();
    }
    report["schema"] = json!("warden.membership-report/v1");
    report["command"] = json!(command_line());
    let bytes = serde_json::to_vec_pretty(&report)?;
    match &a.out {
        Some(p) => write_atomic(p, &bytes)?,
        None => {
            let mut o = std::io::stdout().lock();
            o.write_all(&bytes)?;
            writeln!(o)?;
        }
    }
    if let Some(md) = &a.md {
        write_atomic(md, mia_markdown(&report).as_bytes())?;
    }
    if a.record {
        let mut subjects = vec![
            json!({"name": "report", "digest": format!("sha256:{}", sha256_hex(&bytes))}),
            json!({"name": "model", "digest": format!("sha256:{}", m.weights_sha256)}),
        ];
        if let Some((_, bm)) = &baseline {
            subjects.push(
                json!({"name": "baseline", "digest": format!("sha256:{}", bm.weights_sha256)}),
            );
        }
        let record = json!({
            "kind": Kind::Evidence.as_str(), "actor": "warden:privacy-mia",
            "subjects": subjects,
            "payload": {"check": "membership-inference", "auc": report["loss_threshold"]["auc"], "advantage": report["loss_threshold"]["advantage"],
                        "shadow_attack_accuracy": report["shadow_models"]["attack_accuracy_on_target"], "epsilon": card["privacy"]["epsilon"],
                        "baseline_auc": report["baseline"]["loss_threshold"]["auc"]},
        });
        ledger_dir::record_now(a.ledger.as_deref(), record)?;
    }
    #[allow(clippy::print_stderr)]
    {
        eprintln!(
            "membership inference: loss-threshold AUC {:.4}, advantage {:.4}; shadow-model attack accuracy {}",
            report["loss_threshold"]["auc"],
            report["loss_threshold"]["advantage"],
            report["shadow_models"]["attack_accuracy_on_target"]
        );
        if baseline.is_some() {
            eprintln!(
                "baseline: loss-threshold AUC {:.4}, advantage {:.4}; shadow-model attack accuracy {}",
                report["baseline"]["loss_threshold"]["auc"],
                report["baseline"]["loss_threshold"]["advantage"],
                report["baseline"]["shadow_models"]["attack_accuracy_on_target"]
            );
        }
    }
    Ok(Outcome::Ok)
}

/// The two models side by side (or one), as Markdown.
fn mia_markdown(r: &Value) -> String {
    let cols: Vec<(&str, &Value)> = std::iter::once(("model", r))
        .chain(r.get("baseline").map(|b| ("baseline", b)))
        .collect();
    let num = |v: &Value| v.as_f64().map_or("–".to_string(), |x| format!("{x:.4}"));
    let mut out = String::from("# Membership inference\n\n| | ");
    out += &cols
        .iter()
        .map(|(n, _)| n.to_string())
        .collect::<Vec<_>>()
        .join(" | ");
    out += " |\n|---|";
    out += &"---|".repeat(cols.len());
    out += "\n";
    let row = |label: &str, f: &dyn Fn(&Value) -> String| {
        let cells: Vec<String> = cols.iter().map(|(_, v)| f(v)).collect();
        format!("| {label} | {} |\n", cells.join(" | "))
    };
    out += &row("directory", &|v| {
        v["model"]["dir"].as_str().unwrap_or("").to_string()
    });
    out += &row(
        "epsilon (delta)",
        &|v| match v["model"]["privacy"].get("epsilon") {
            Some(e) => format!("{} ({})", num(e), v["model"]["privacy"]["delta"]),
            None => "not private".into(),
        },
    );
    out += &row("members / non-members", &|v| {
        format!("{} / {}", v["members"], v["non_members"])
    });
    out += &row("loss-threshold AUC", &|v| num(&v["loss_threshold"]["auc"]));
    out += &row("membership advantage", &|v| {
        num(&v["loss_threshold"]["advantage"])
    });
    for (i, fpr) in ["0.1%", "1%", "10%"].iter().enumerate() {
        out += &row(&format!("TPR at {fpr} FPR"), &|v| {
            num(&v["loss_threshold"]["tpr_at_fpr"][i][1])
        });
    }
    out += &row("shadow-model attack accuracy", &|v| {
        num(&v["shadow_models"]["attack_accuracy_on_target"])
    });
    out += "\nAn AUC of 0.5 and an accuracy of 0.5 are chance: the attack cannot tell members from non-members.\n";
    out
}

/// Attacks one model (loss threshold, and shadow models when asked): the report's fields for it,
/// and the loaded model.
fn mia_one(a: &MiaArgs, dir: &Path) -> Result<(Value, LoadedModel)> {
    let m = load_model_dir(dir)?;
    let card = &m.card;
    let recipe: Recipe = serde_json::from_value(card["recipe"].clone())
        .context("the model card has no readable recipe")?;
    // The card is input like any other file: the recipe drives shadow training.
    recipe
        .validate()
        .map_err(|e| anyhow::anyhow!("the model card's recipe: {e}"))?;
    let split = &card["data"]["split"];
    let (vpc, seed, n_train) = match (
        split["validation_per_class"].as_u64(),
        split["seed"].as_u64(),
        split["train_examples"].as_u64(),
    ) {
        (Some(v), Some(s), Some(n)) => (v as usize, s, n as usize),
        _ => bail!("the model card does not describe its training split"),
    };
    let dp: Option<DpConfig> = match card.get("privacy") {
        Some(p) if !p.is_null() => Some(DpConfig {
            max_norm: p["max_grad_norm"]
                .as_f64()
                .context("privacy.max_grad_norm")? as f32,
            noise_multiplier: p["noise_multiplier"]
                .as_f64()
                .context("privacy.noise_multiplier")? as f32,
            expected_batch: p["expected_batch"]
                .as_u64()
                .context("privacy.expected_batch")? as usize,
        }),
        _ => None,
    };
    if let Some(d) = &dp {
        d.validate()
            .map_err(|e| anyhow::anyhow!("the model card's privacy block: {e}"))?;
    }
    let full = data::load_fashion_mnist(&a.fashion_mnist, Split::Train)?;
    // The audit re-derives the split from the data the card names: Fashion-MNIST's training set.
    anyhow::ensure!(
        card["data"]["train"]["sha256"].as_str() == Some(full.digest().as_str()),
        "the model card's training set ({}) is not Fashion-MNIST's training set here: the audit re-derives members and non-members from it",
        card["data"]["train"]["name"]
    );
    let (train_idx, val_idx) = data::stratified_split(&full, vpc, seed);
    anyhow::ensure!(
        n_train <= train_idx.len() && !val_idx.is_empty(),
        "the split in the model card does not fit the data"
    );
    let members_all = &train_idx[..n_train];
    let k = members_all.len().min(val_idx.len());
    // Balanced: k members spread over the training set, all k non-members of the validation split.
    let members: Vec<usize> = (0..k)
        .map(|i| members_all[i * members_all.len() / k])
        .collect();
    let non_members: Vec<usize> = val_idx[..k].to_vec();
    let x = train::to_f32(&full.images);
    let y = &full.labels;
    let gather = |idx: &[usize]| -> (Vec<f32>, Vec<u8>) {
        let mut gx = Vec::with_capacity(idx.len() * 784);
        for &i in idx {
            gx.extend_from_slice(&x[i * 784..(i + 1) * 784]);
        }
        (gx, idx.iter().map(|&i| y[i]).collect())
    };
    let mut pool = Pool::new(a.threads);
    let (mx, my) = gather(&members);
    let (nx, ny) = gather(&non_members);
    let lm = warden_harden::mia::losses(&m.model, &mut pool, &mx, &my)?;
    let ln = warden_harden::mia::losses(&m.model, &mut pool, &nx, &ny)?;
    let loss = warden_harden::mia::loss_attack(&lm, &ln).map_err(anyhow::Error::msg)?;

    // Shadow models: trained like the target on halves of data the target never saw.
    let shadow_pool = &train_idx[n_train..];
    let mut shadow = Value::Null;
    if a.shadows > 0 {
        anyhow::ensure!(
            shadow_pool.len() >= 2 * n_train,
            "not enough unused training data for shadow models of {n_train} examples"
        );
        let (mut ins, mut outs) = (Vec::new(), Vec::new());
        let (mut ins_c, mut outs_c) = (vec![Vec::new(); 10], vec![Vec::new(); 10]);
        let mut progress = Progress::new("shadow models");
        for s in 0..a.shadows {
            progress.update(s, a.shadows, "");
            let order = data::shuffled_indices(shadow_pool.len(), seed ^ 0x5bad ^ s as u64);
            let chosen: Vec<usize> = order[..2 * n_train]
                .iter()
                .map(|&i| shadow_pool[i])
                .collect();
            let (s_in, s_out) = chosen.split_at(n_train);
            let sm = train_plain(
                m.model.arch(),
                &recipe,
                dp.as_ref(),
                &x,
                y,
                s_in,
                a.threads,
                seed ^ ((s as u64 + 1) * 7919),
            )?;
            for (set, dst, dst_c) in [
                (s_in, &mut ins, &mut ins_c),
                (s_out, &mut outs, &mut outs_c),
            ] {
                let (sx, sy) = gather(set);
                let l = warden_harden::mia::losses(&sm, &mut pool, &sx, &sy)?;
                for (&li, &yi) in l.iter().zip(&sy) {
                    dst_c[usize::from(yi)].push(li);
                }
                dst.extend(l);
            }
        }
        progress.update(a.shadows, a.shadows, "");
        let (t, shadow_acc) = warden_harden::mia::best_threshold(&ins, &outs);
        let target_acc = warden_harden::mia::threshold_accuracy(&lm, &ln, t);
        // Class-conditional thresholds.
        let per_class: Vec<f32> = (0..10)
            .map(|c| warden_harden::mia::best_threshold(&ins_c[c], &outs_c[c]).0)
            .collect();
        let hit = |l: &[f32], ys: &[u8], member: bool| {
            l.iter()
                .zip(ys)
                .filter(|(l, y)| (**l <= per_class[usize::from(**y)]) == member)
                .count() as f64
                / l.len().max(1) as f64
        };
        let class_acc = 0.5 * (hit(&lm, &my, true) + hit(&ln, &ny, false));
        shadow = json!({
            "shadows": a.shadows, "examples_per_shadow": n_train,
            "global_threshold": t, "accuracy_on_shadows": shadow_acc,
            "attack_accuracy_on_target": target_acc,
            "class_thresholds": per_class, "class_attack_accuracy_on_target": class_acc,
            "note": "balanced accuracy of 'member when loss <= threshold', thresholds learned on shadow models only",
        });
    }
    let report = json!({
        "model": {"dir": dir.display().to_string(), "weights_sha256": m.weights_sha256, "recipe": recipe, "privacy": card.get("privacy")},
        "members": k, "non_members": k,
        "membership": "members: the model's training examples (from its model card's split); non-members: the held-out validation split",
        "loss_threshold": loss,
        "shadow_models": shadow,
    });
    Ok((report, m))
}
