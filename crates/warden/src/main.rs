//! `warden`: the command-line face of Warden. Glue only: parsing arguments, reading and writing files,
//! and printing; every decision is made by the library crates.

mod bench;
mod bench_harden;
mod charts;
mod harden_blackbox;
mod harden_cmd;
mod harden_model;
mod ledger_cmd;
mod ledger_dir;
mod monitor_bench;
mod monitor_bundle;
mod monitor_cmd;
mod monitor_novelty;
mod privacy_cmd;
mod risk_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Security-by-design assurance for AI models.
///
/// Warden records every decision about a model (monitor verdicts, escalations, human overrides,
/// containment, release gates, evidence) in a tamper-evident ledger that anyone holding a signed
/// checkpoint can audit.
#[derive(Debug, Parser)]
#[command(
    name = "warden",
    version,
    propagate_version = true,
    max_term_width = 100
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The audit ledger: append records, prove inclusion and consistency, sign checkpoints, verify.
    Ledger(ledger_cmd::LedgerArgs),
    /// Design-time risk assessment: a checked AI risk register linked to its evidence.
    #[command(subcommand)]
    Risk(risk_cmd::RiskCommand),
    /// Adversarial hardening: datasets, shift sets, training (clean and adversarial), evaluation.
    #[command(subcommand)]
    Harden(harden_cmd::HardenCommand),
    /// Real-time monitoring: calibrate detectors on a model, evaluate them, replay a stream.
    #[command(subcommand)]
    Monitor(monitor_cmd::MonitorCommand),
    /// Differential privacy accounting: epsilon of a DP-SGD schedule, or the noise a target needs.
    #[command(subcommand)]
    Privacy(privacy_cmd::PrivacyCommand),
    /// Benchmarks whose figures go in BENCHMARKS.md.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

/// How a command ended, beyond success: `verify` finding damage is not an error of the program.
pub(crate) enum Outcome {
    Ok,
    /// The command ran, and what it checked does not hold (exit status 1).
    Failed,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Ledger(cmd) => ledger_cmd::run(cmd),
        Command::Risk(cmd) => risk_cmd::run(cmd),
        Command::Harden(cmd) => harden_cmd::run(cmd),
        Command::Monitor(cmd) => monitor_cmd::run(cmd),
        Command::Privacy(cmd) => privacy_cmd::run(cmd),
        Command::Bench(cmd) => bench::run(cmd),
    };
    match result {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::Failed) => ExitCode::from(1),
        // A reader that went away (`… | head`) is not an error worth a message.
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("error: {e:#}");
            }
            ExitCode::from(2)
        }
    }
}
