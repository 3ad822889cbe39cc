//! `warden privacy …`: answers the usual DP-SGD accounting questions without training: what epsilon a
//! configuration gives, and what noise a target epsilon needs (PLD accountant by default, RDP on
//! request; both in `warden-harden`).

use std::io::{self, Write};

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use serde_json::json;
use warden_harden::accountant;

use crate::Outcome;

#[derive(Debug, Subcommand)]
pub(crate) enum PrivacyCommand {
    /// Epsilon of DP-SGD with Poisson sampling, for a noise multiplier and a number of steps.
    Epsilon(EpsilonArgs),
    /// The smallest noise multiplier that keeps DP-SGD within a target epsilon.
    Noise(NoiseArgs),
    /// Membership inference against a trained model (loss threshold and shadow models): does it
    /// give away which examples it was trained on?
    Mia(crate::harden_model::MiaArgs),
}

/// The accountant, as named on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum AccountantArg {
    Pld,
    Rdp,
}

impl From<AccountantArg> for accountant::Method {
    fn from(a: AccountantArg) -> Self {
        match a {
            AccountantArg::Pld => accountant::Method::Pld,
            AccountantArg::Rdp => accountant::Method::Rdp,
        }
    }
}

#[derive(Debug, Args)]
struct Schedule {
    /// Sampling rate q (expected batch size / dataset size).
    #[arg(long, required_unless_present_all = ["batch_size", "dataset_size"])]
    sampling_rate: Option<f64>,
    /// Expected batch size (with --dataset-size, instead of --sampling-rate).
    #[arg(long, requires = "dataset_size")]
    batch_size: Option<u64>,
    /// Number of training examples.
    #[arg(long, requires = "batch_size")]
    dataset_size: Option<u64>,
    /// Training steps.
    #[arg(long, required_unless_present = "epochs")]
    steps: Option<u64>,
    /// Epochs (with --batch-size and --dataset-size: steps = ceil(epochs × dataset / batch)).
    #[arg(long, conflicts_with = "steps")]
    epochs: Option<f64>,
    /// Target delta.
    #[arg(long, default_value_t = 1e-5)]
    delta: f64,
    /// Accountant: pld (privacy loss distributions, the tightest) or rdp (Rényi DP).
    #[arg(long, value_enum, default_value_t = AccountantArg::Pld)]
    accountant: AccountantArg,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

impl Schedule {
    /// (q, steps).
    fn resolve(&self) -> Result<(f64, u64)> {
        let q = match (self.sampling_rate, self.batch_size, self.dataset_size) {
            (Some(q), _, _) => q,
            (None, Some(b), Some(n)) if b > 0 && n > 0 && b <= n => b as f64 / n as f64,
            _ => bail!(
                "give --sampling-rate, or --batch-size and --dataset-size with 0 < batch <= dataset"
            ),
        };
        if !(q > 0.0 && q <= 1.0) {
            bail!("sampling rate {q} must be in (0, 1]");
        }
        let steps = match (self.steps, self.epochs) {
            (Some(s), _) => s,
            (None, Some(e)) if e > 0.0 && e.is_finite() => (e / q).ceil() as u64,
            _ => bail!("give --steps, or --epochs (a positive number)"),
        };
        if steps == 0 || steps > 1_000_000_000 {
            bail!("steps must be between 1 and 10^9, got {steps}");
        }
        Ok((q, steps))
    }
}

#[derive(Debug, Args)]
pub(crate) struct EpsilonArgs {
    /// Noise multiplier (noise standard deviation / clipping norm).
    #[arg(long)]
    noise_multiplier: f64,
    #[command(flatten)]
    schedule: Schedule,
}

#[derive(Debug, Args)]
pub(crate) struct NoiseArgs {
    /// Target epsilon.
    #[arg(long)]
    epsilon: f64,
    #[command(flatten)]
    schedule: Schedule,
}

pub(crate) fn run(cmd: PrivacyCommand) -> Result<Outcome> {
    let mut out = io::stdout().lock();
    match cmd {
        PrivacyCommand::Mia(a) => return crate::harden_model::mia_cmd(a),
        PrivacyCommand::Epsilon(a) => {
            let (q, steps) = a.schedule.resolve()?;
            let (sigma, delta) = (a.noise_multiplier, a.schedule.delta);
            let method = accountant::Method::from(a.schedule.accountant);
            let eps = method.epsilon(q, sigma, steps, delta)?;
            // RDP alongside, for comparison with tools that report it.
            let (rdp_eps, order) = accountant::dp_sgd_epsilon(q, sigma, steps, delta)?;
            if a.schedule.json {
                writeln!(
                    out,
                    "{}",
                    json!({
                        "accountant": method.name(), "sampling_rate": q, "noise_multiplier": sigma,
                        "steps": steps, "delta": delta, "epsilon": eps,
                        "rdp": { "epsilon": rdp_eps, "optimal_order": order },
                    })
                )?;
            } else {
                writeln!(
                    out,
                    "epsilon {eps:.4} at delta {delta:e} ({}); q = {q:.6}, {steps} steps, noise multiplier {sigma}",
                    method.name().to_uppercase()
                )?;
                if method != accountant::Method::Rdp {
                    writeln!(out, "(RDP would say {rdp_eps:.4}, at order {order})")?;
                }
            }
        }
        PrivacyCommand::Noise(a) => {
            let (q, steps) = a.schedule.resolve()?;
            let delta = a.schedule.delta;
            let method = accountant::Method::from(a.schedule.accountant);
            let sigma = method.noise(q, steps, delta, a.epsilon)?;
            let eps = method.epsilon(q, sigma, steps, delta)?;
            if a.schedule.json {
                writeln!(
                    out,
                    "{}",
                    json!({
                        "accountant": method.name(), "sampling_rate": q, "steps": steps, "delta": delta,
                        "target_epsilon": a.epsilon, "noise_multiplier": sigma, "epsilon": eps,
                    })
                )?;
            } else {
                writeln!(
                    out,
                    "noise multiplier {sigma:.4} gives epsilon {eps:.4} <= {} at delta {delta:e} ({}); q = {q:.6}, {steps} steps",
                    a.epsilon,
                    method.name().to_uppercase()
                )?;
            }
        }
    }
    Ok(Outcome::Ok)
}
