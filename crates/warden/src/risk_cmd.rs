//! `warden risk …`: the risk register's commands. The register is checked by `warden-risk`; this
//! module reads files, resolves evidence paths safely, writes reports, and records results in the
//! ledger when asked.

use std::io::{self, Read as _, Write};
use std::path::{Component, Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;
use warden_ledger::Kind;
use warden_risk::check::{EvidenceSource, MAX_EVIDENCE_BYTES};
use warden_risk::{Analysis, CheckOptions, Date, report, templates};

use crate::Outcome;
use crate::ledger_dir;

#[derive(Debug, Subcommand)]
pub(crate) enum RiskCommand {
    /// Print the JSON Schema of the register format.
    Schema,
    /// Write a starter register for a kind of AI system.
    Init(InitArgs),
    /// Check a register: every problem at once, as file:line:column, with what was expected.
    /// Exit status 1 when any error is found.
    Check(CheckArgs),
    /// Write a report of a register: Markdown, JSON, or one self-contained HTML page.
    Report(ReportArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Template {
    ImageClassifier,
    LlmApp,
    Agent,
    Rag,
}

#[derive(Debug, Args)]
pub(crate) struct InitArgs {
    /// The kind of system.
    #[arg(long, value_enum)]
    template: Template,
    /// The system's name.
    #[arg(long, default_value = "my-ai-system")]
    name: String,
    /// Who owns the risks.
    #[arg(long, default_value = "owner@example.com")]
    owner: String,
    /// Where to write the register.
    #[arg(long, short, default_value = "risk-register.yaml")]
    output: PathBuf,
    /// Replace the file if it exists.
    #[arg(long)]
    force: bool,
}

#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    /// The register.
    #[arg(default_value = "risk-register.yaml")]
    register: PathBuf,
    /// Print the diagnostics and scores as JSON.
    #[arg(long)]
    json: bool,
    /// Check as of this date (YYYY-MM-DD) [default: today, UTC].
    #[arg(long)]
    today: Option<String>,
    /// Record the register's digest and the result in the ledger as an evidence record.
    #[arg(long)]
    record: bool,
    /// The ledger to record in [default: $WARDEN_LEDGER or the default ledger].
    #[arg(long, env = "WARDEN_LEDGER", value_name = "DIR")]
    ledger: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Md,
    Json,
    Html,
}

#[derive(Debug, Args)]
pub(crate) struct ReportArgs {
    /// The register.
    #[arg(default_value = "risk-register.yaml")]
    register: PathBuf,
    /// Report format.
    #[arg(long, value_enum, default_value = "md")]
    format: Format,
    /// Write to this file instead of stdout.
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Report as of this date (YYYY-MM-DD) [default: today, UTC].
    #[arg(long)]
    today: Option<String>,
}

pub(crate) fn run(cmd: RiskCommand) -> Result<Outcome> {
    let mut out = io::stdout().lock();
    match cmd {
        RiskCommand::Schema => {
            out.write_all(warden_risk::SCHEMA.as_bytes())?;
            Ok(Outcome::Ok)
        }
        RiskCommand::Init(a) => init(a),
        RiskCommand::Check(a) => check(a, &mut out),
        RiskCommand::Report(a) => {
            let (analysis, name) = analyse(&a.register, a.today.as_deref())?;
            let text = match a.format {
                Format::Md => report::markdown(&analysis, &name),
                Format::Json => report::json(&analysis),
                Format::Html => report::html(&analysis, &name),
            };
            match &a.output {
                Some(p) => write_atomically(p, text.as_bytes())?,
                None => out.write_all(text.as_bytes())?,
            }
            Ok(Outcome::Ok)
        }
    }
}

fn today(arg: Option<&str>) -> Result<Date> {
    match arg {
        Some(s) => Date::parse(s)
            .with_context(|| format!("--today {s:?}: expected a date like 2026-11-25")),
        None => {
            let secs = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            Ok(Date::from_days((secs / 86_400) as i64))
        }
    }
}

fn init(a: InitArgs) -> Result<Outcome> {
    let name = match a.template {
        Template::ImageClassifier => "image-classifier",
        Template::LlmApp => "llm-app",
        Template::Agent => "agent",
        Template::Rag => "rag",
    };
    for (flag, v) in [("--name", &a.name), ("--owner", &a.owner)] {
        if v.trim().is_empty() || v.len() > 256 || v.chars().any(char::is_control) {
            bail!("{flag}: expected 1 to 256 bytes of text without control characters");
        }
    }
    let text =
        templates::render(name, &a.name, &a.owner, today(None)?).context("unknown template")?;
    if a.output.exists() && !a.force {
        bail!(
            "{} exists\nhint: pass --force to replace it, or --output another file",
            a.output.display()
        );
    }
    write_atomically(&a.output, text.as_bytes())?;
    #[allow(clippy::print_stderr)]
    {
        eprintln!(
            "wrote {} ({name} template); edit it, then run `warden risk check {}`",
            a.output.display(),
            a.output.display()
        );
    }
    Ok(Outcome::Ok)
}

/// Writes through a temporary file and a rename, so an interrupted write leaves no torn file.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("out"),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// Evidence files, resolved inside the register's directory only.
struct DirEvidence {
    base: PathBuf,
}

impl EvidenceSource for DirEvidence {
    fn read(&self, path: &str) -> Result<Vec<u8>, String> {
        let rel = Path::new(path);
        if rel.is_absolute()
            || rel
                .components()
                .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
        {
            return Err(
                "the path must be relative to the register's directory, without `..`".into(),
            );
        }
        // Resolve symbolic links, then insist on staying inside the register's directory and on a
        // regular file (a FIFO or a device would block or never end).
        let base = self
            .base
            .canonicalize()
            .map_err(|e| format!("cannot resolve the register's directory: {e}"))?;
        let full = base.join(rel).canonicalize().map_err(|e| e.to_string())?;
        if !full.starts_with(&base) {
            return Err(
                "the path leads outside the register's directory (through a symbolic link)".into(),
            );
        }
        let meta = std::fs::metadata(&full).map_err(|e| e.to_string())?;
        if !meta.is_file() {
            return Err("not a regular file".into());
        }
        let f = std::fs::File::open(&full).map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        f.take(MAX_EVIDENCE_BYTES as u64 + 1)
            .read_to_end(&mut buf)
            .map_err(|e| e.to_string())?;
        Ok(buf)
    }
}

/// Largest register read, in bytes (the parser refuses more than this too).
const MAX_REGISTER_BYTES: u64 = warden_risk::yaml::MAX_INPUT_BYTES as u64;

fn analyse(path: &Path, today_arg: Option<&str>) -> Result<(Analysis, String)> {
    let f = std::fs::File::open(path)
        .with_context(|| format!("cannot open the register {}", path.display()))?;
    let mut bytes = Vec::new();
    f.take(MAX_REGISTER_BYTES + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let base = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let analysis = warden_risk::check(
        &bytes,
        &DirEvidence { base },
        &CheckOptions {
            today: today(today_arg)?,
        },
    );
    Ok((analysis, path.display().to_string()))
}

fn check(a: CheckArgs, out: &mut impl Write) -> Result<Outcome> {
    let (analysis, name) = analyse(&a.register, a.today.as_deref())?;
    if a.json {
        out.write_all(report::json(&analysis).as_bytes())?;
    } else {
        for d in &analysis.diagnostics {
            writeln!(out, "{}", d.render(&name))?;
        }
        let h = analysis
            .risks
            .iter()
            .filter(|r| r.inherent.action_priority == warden_risk::ActionPriority::H)
            .count();
        let supported = analysis.controls.iter().filter(|c| c.supported).count();
        writeln!(
            out,
            "{}: {} risk(s) ({h} with action priority H), {} control(s) ({supported} backed by evidence that holds); {} error(s), {} warning(s)",
            if analysis.passed() { "ok" } else { "FAILED" },
            analysis.risks.len(),
            analysis.controls.len(),
            analysis.errors,
            analysis.warnings
        )?;
    }
    if a.record {
        let record = json!({
            "kind": Kind::Evidence.as_str(),
            "actor": "warden:risk-check",
            "subjects": [{"name": "register", "digest": format!("sha256:{}", analysis.register_sha256)}],
            "payload": {
                "check": "risk-register",
                "file": name,
                "system": analysis.system,
                "passed": analysis.passed(),
                "errors": analysis.errors,
                "warnings": analysis.warnings,
                "risks": analysis.risks.len(),
                "high_priority": analysis.risks.iter().filter(|r| r.inherent.action_priority == warden_risk::ActionPriority::H).count(),
                "controls_supported": analysis.controls.iter().filter(|c| c.supported).count(),
                // The exact evidence bytes each result was judged on.
                "evidence": analysis.controls.iter().flat_map(|c| c.evidence.iter().map(move |e| json!({
                    "control": c.id, "file": e.file, "condition": e.condition,
                    "state": e.state, "sha256": e.read_sha256,
                }))).collect::<Vec<_>>(),
                "as_of": analysis.today.to_string(),
            },
        });
        ledger_dir::record_now(a.ledger.as_deref(), record)?;
    }
    Ok(if analysis.passed() {
        Outcome::Ok
    } else {
        Outcome::Failed
    })
}
