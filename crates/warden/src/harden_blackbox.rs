//! Black-box evaluation: a classifier Warden cannot run itself (an ONNX graph with operators the
//! engine lacks, a PyTorch or TensorFlow model, a remote service) is attacked through a program
//! that answers logits over a pipe, with the score-based Square attack. `warden harden oracle`
//! is the reference implementation of that program for Warden's own models, and
//! `scripts/oracle/onnxruntime_oracle.py` serves any ONNX classifier.
//!
//! The protocol (little-endian, on the oracle's stdin and stdout):
//! - request: `u32 n` (1 to 4,096), then `n × C × H × W` f32 inputs in NCHW order (PyTorch's and
//!   ONNX's), values in [0, 1]; `n = 0`, or stdin closing, ends the session;
//! - response: `u32 count` (must be `n × classes`), then `count` f32 logits, row-major.
//!
//! Everything the oracle sends is hostile until checked: counts, sizes and finiteness.

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use clap::Args;
use serde_json::json;
use warden_harden::attack::Norm;
use warden_harden::nn::{Pool, Workspace, argmax};
use warden_harden::square::{self, Oracle, Square};
use warden_harden::weights::transpose_blocks;
use warden_ledger::Kind;

use crate::harden_model::{
    NormArg, Progress, TestSetArgs, check_fits, command_line, load_model_dir, norm_name,
    sha256_hex, write_atomic,
};
use crate::{Outcome, ledger_dir};

/// Largest batch one request may carry.
const MAX_REQUEST: usize = 4096;

#[derive(Debug, Args)]
pub(crate) struct OracleArgs {
    /// A model directory written by `warden harden train`, or an ONNX file.
    model: PathBuf,
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

#[derive(Debug, Args)]
pub(crate) struct BlackboxArgs {
    /// The threat model: linf or l2.
    #[arg(long, value_enum, default_value = "linf")]
    norm: NormArg,
    /// The budget in that norm.
    #[arg(long, default_value_t = 0.1)]
    eps: f32,
    /// Square queries per example.
    #[arg(long, default_value_t = 1000)]
    square_queries: usize,
    /// Number of classes the oracle answers.
    #[arg(long, default_value_t = 10)]
    classes: usize,
    /// Evaluate the first N test images (10,000 in all; each costs up to `--square-queries`
    /// oracle calls).
    #[arg(long, default_value_t = 1000)]
    limit: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    test_set: TestSetArgs,
    /// The JSON report to write.
    #[arg(long, short)]
    out: PathBuf,
    /// Append an evidence record of the report to the ledger.
    #[arg(long)]
    record: bool,
    #[arg(long, env = "WARDEN_LEDGER", value_name = "DIR")]
    ledger: Option<PathBuf>,
    /// The oracle program and its arguments, after `--`.
    #[arg(last = true, required = true, num_args = 1..)]
    oracle: Vec<String>,
}

/// `warden harden oracle MODEL`: answers the protocol for one of Warden's models.
pub(crate) fn oracle_cmd(a: OracleArgs) -> Result<Outcome> {
    let m = load_model_dir(&a.model)?;
    let model = m.model;
    let [c, h, w] = model.arch().input;
    let (len, classes) = (c * h * w, model.classes());
    let mut pool = Pool::new(a.threads);
    let mut input = BufReader::new(std::io::stdin().lock());
    let mut output = BufWriter::new(std::io::stdout().lock());
    let mut raw = Vec::new();
    loop {
        let mut head = [0u8; 4];
        match input.read_exact(&mut head) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e.into()),
        }
        let n = u32::from_le_bytes(head) as usize;
        if n == 0 {
            break;
        }
        if n > MAX_REQUEST {
            bail!("request of {n} inputs; at most {MAX_REQUEST}");
        }
        raw.resize(n * len * 4, 0);
        input.read_exact(&mut raw).context("truncated request")?;
        let nchw: Vec<f32> = raw
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        if nchw.iter().any(|v| !v.is_finite()) {
            bail!("request holds non-finite inputs");
        }
        // NCHW (the protocol's, PyTorch's) to the engine's channels-last layout.
        let nhwc = transpose_blocks(&nchw, c, h * w);
        let mut out = vec![0.0f32; n * classes];
        pool.run(
            n,
            model.least_per_thread(),
            &mut out,
            |ws: &mut Workspace, r, out: &mut [f32]| {
                let l = model.forward(ws, &nhwc[r.start * len..r.end * len], r.len())?;
                out.copy_from_slice(l);
                Ok::<(), warden_harden::nn::ModelError>(())
            },
        )?;
        output.write_all(&((n * classes) as u32).to_le_bytes())?;
        for v in &out {
            output.write_all(&v.to_le_bytes())?;
        }
        output.flush()?;
    }
    Ok(Outcome::Ok)
}

/// An oracle behind a child process's pipes.
struct Subprocess {
    child: Child,
    stdin: Option<BufWriter<ChildStdin>>,
    stdout: BufReader<ChildStdout>,
    input: [usize; 3],
    classes: usize,
    calls: u64,
    inputs: u64,
    buf: Vec<u8>,
}

impl Subprocess {
    fn spawn(argv: &[String], input: [usize; 3], classes: usize) -> Result<Subprocess> {
        let (prog, args) = argv.split_first().context("no oracle program given")?;
        let mut child = Command::new(prog)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot start the oracle {prog:?}"))?;
        let stdin = child.stdin.take().context("oracle stdin")?;
        let stdout = child.stdout.take().context("oracle stdout")?;
        Ok(Subprocess {
            child,
            stdin: Some(BufWriter::new(stdin)),
            stdout: BufReader::new(stdout),
            input,
            classes,
            calls: 0,
            inputs: 0,
            buf: Vec::new(),
        })
    }

    fn exchange(&mut self, x: &[f32], n: usize, out: &mut Vec<f32>) -> std::io::Result<()> {
        let [c, h, w] = self.input;
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| std::io::Error::other("oracle closed"))?;
        stdin.write_all(&(n as u32).to_le_bytes())?;
        self.buf.clear();
        for v in transpose_blocks(x, h * w, c) {
            self.buf.extend_from_slice(&v.to_le_bytes());
        }
        stdin.write_all(&self.buf)?;
        stdin.flush()?;
        let mut head = [0u8; 4];
        self.stdout.read_exact(&mut head)?;
        let count = u32::from_le_bytes(head) as usize;
        if count != n * self.classes {
            return Err(std::io::Error::other(format!(
                "the oracle announced {count} logits for {n} inputs of {} classes",
                self.classes
            )));
        }
        self.buf.resize(count * 4, 0);
        self.stdout.read_exact(&mut self.buf)?;
        out.clear();
        out.extend(
            self.buf
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        );
        Ok(())
    }
}

impl Oracle for Subprocess {
    fn input(&self) -> [usize; 3] {
        self.input
    }

    fn classes(&self) -> usize {
        self.classes
    }

    fn logits(&mut self, x: &[f32], n: usize, out: &mut Vec<f32>) -> Result<(), String> {
        if n == 0 || n > MAX_REQUEST {
            return Err(format!("batch of {n} inputs"));
        }
        self.calls += 1;
        self.inputs += n as u64;
        self.exchange(x, n, out)
            .map_err(|e| format!("oracle: {e}"))?;
        if out.iter().any(|v| !v.is_finite()) {
            return Err("oracle: non-finite logits".into());
        }
        Ok(())
    }
}

impl Drop for Subprocess {
    fn drop(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.write_all(&0u32.to_le_bytes());
            let _ = stdin.flush();
        }
        // A well-behaved oracle exits on n = 0 and a closed stdin; one that does not is killed.
        let deadline = Instant::now() + std::time::Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `warden harden eval-blackbox -- PROGRAM ARGS…`: clean accuracy and Square robust accuracy of
/// a model seen only through an oracle program.
pub(crate) fn blackbox_cmd(a: BlackboxArgs) -> Result<Outcome> {
    if !(2..=256).contains(&a.classes) {
        bail!("--classes must be 2 to 256");
    }
    let test = a.test_set.load(Some(a.limit))?;
    let len = test.image_len();
    let (norm, largest) = a.norm.norm_and_largest(len);
    if !(a.eps >= 0.0 && a.eps <= largest) {
        bail!("--eps must be in [0, {largest}] under {}", norm_name(norm));
    }
    let attack = Square {
        norm,
        ..Square::new(a.eps, a.square_queries)
    };
    attack.validate().map_err(anyhow::Error::msg)?;
    // An oracle declares no input shape: only the labels can be checked against it.
    check_fits(&test, "test set", test.shape(), a.classes, "--classes")?;
    let n = test.len();
    let x = test.inputs();
    let y: Vec<u8> = test.labels.clone();
    let mut oracle = Subprocess::spawn(&a.oracle, test.shape(), a.classes)?;
    let start = Instant::now();
    let mut progress = Progress::new("black-box clean");
    let mut correct = 0usize;
    let mut logits = Vec::new();
    for s in (0..n).step_by(square::ORACLE_BATCH) {
        let e = (s + square::ORACLE_BATCH).min(n);
        oracle
            .logits(&x[s * len..e * len], e - s, &mut logits)
            .map_err(anyhow::Error::msg)?;
        correct += logits
            .chunks_exact(a.classes)
            .zip(&y[s..e])
            .filter(|(row, l)| argmax(row) == usize::from(**l))
            .count();
        progress.update(e, n, "");
    }
    let clean = correct as f64 / n as f64;
    #[allow(clippy::print_stderr)]
    {
        eprintln!(
            "clean accuracy {:.2}% through the oracle; Square {} {} with {} queries on {n} images…",
            100.0 * clean,
            norm_name(norm),
            a.eps,
            a.square_queries
        );
    }
    let out =
        square::run_oracle(&mut oracle, &attack, &x, &y, a.seed).map_err(anyhow::Error::msg)?;
    let robust = out.success.iter().filter(|s| !**s).count() as f64 / n as f64;
    let worst = |norm| {
        warden_harden::attack::distances(norm, &x, &out.adversarial, len)
            .into_iter()
            .fold(0.0f32, warden_harden::attack::max_or_nan)
    };
    let (worst_linf, worst_l2) = (worst(Norm::Linf), worst(Norm::L2));
    let worst_in_norm = match norm {
        Norm::Linf => worst_linf,
        Norm::L2 => worst_l2,
    };
    anyhow::ensure!(
        worst_in_norm <= a.eps * (1.0 + 1e-5) + 1e-6,
        "internal error: an adversarial example left the ε-ball"
    );
    let seconds = start.elapsed().as_secs_f64();
    let report = json!({
        "schema": "warden.blackbox-report/v1",
        "oracle": {"argv": a.oracle, "calls": oracle.calls, "inputs_queried": oracle.inputs, "protocol": "warden oracle v1 (docs/design/hardening.md)"},
        "test_set": {"name": test.name, "sha256": test.digest(), "examples": n, "shape": test.shape()},
        "attack": {"name": "square", "norm": norm, "eps": warden_harden::eval::decimal(a.eps), "queries": a.square_queries, "p_init": attack.p_init, "seed": a.seed},
        "clean_accuracy": clean,
        "robust_accuracy": robust,
        "max_linf_distance": worst_linf,
        "max_l2_distance": worst_l2,
        "note": "an upper bound on robust accuracy: a score-based attack finds fewer adversarial examples than white-box attacks do on a model whose gradients are available",
        "seconds": seconds,
        "command": command_line(),
        "warden_version": env!("CARGO_PKG_VERSION"),
    });
    drop(oracle);
    let bytes = serde_json::to_vec_pretty(&report)?;
    write_atomic(&a.out, &bytes)?;
    if a.record {
        let record = json!({
            "kind": Kind::Evidence.as_str(),
            "actor": "warden:harden-eval-blackbox",
            "subjects": [json!({"name": "report", "digest": format!("sha256:{}", sha256_hex(&bytes))})],
            "payload": {"check": "robustness-blackbox", "report": a.out.display().to_string(), "clean_accuracy": clean, "robust_accuracy": robust, "test_set_sha256": test.digest()},
        });
        ledger_dir::record_now(a.ledger.as_deref(), record)?;
    }
    #[allow(clippy::print_stderr)]
    {
        eprintln!(
            "{}",
            json!({"clean_accuracy": clean, "robust_accuracy": robust, "eps": warden_harden::eval::decimal(a.eps), "seconds": seconds})
        );
    }
    Ok(Outcome::Ok)
}
