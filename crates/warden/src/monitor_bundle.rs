//! The detector bundle (`warden.detector-bundle/v1`) and the glue that feeds a model's vectors to
//! it: a bundle holds the fitted per-request detectors of `warden-monitor`, each member's
//! thresholds, the conformal ensemble and its thresholds, and the stream detector's setting, with
//! the digests of the model and the data it was calibrated on. A bundle is a file from outside:
//! reading it is bounded in size and every part is validated (the detectors' own deserialisers
//! check their states; this module checks the parts against each other and against the model), so
//! a damaged or hostile bundle is an error (exit status 2), never a panic or a silent "allow".
//!
//! The monitored model runs here, not in `warden-monitor`: [`score_chunk`] runs the forward pass,
//! takes the logits and the penultimate features, runs the extra forward passes that feature
//! squeezing needs, and scores every member.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context as _, Result, bail, ensure};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use warden_harden::nn::{Model, Pool, Workspace, argmax};
use warden_monitor::detect::{
    AnyDetector, Detector, Ensemble, ImageShape, Scratch, Squeezer, Verdict, VerdictPolicy,
    squeeze_score,
};
use warden_monitor::stream::{Cusum, CusumConfig};

pub(crate) use crate::harden_model::{read_limited, sha256_hex, write_atomic};

/// The bundle's schema name; a bundle of any other is refused.
pub(crate) const BUNDLE_SCHEMA: &str = "warden.detector-bundle/v1";
/// The largest bundle file read (a kNN reference set of 10⁵ rows of 128 features is ~150 MB).
pub(crate) const MAX_BUNDLE_BYTES: u64 = 256 << 20;
/// The most members a bundle may hold.
const MAX_MEMBERS: usize = 64;
/// The most squeezers of a feature-squeezing member.
const MAX_SQUEEZERS: usize = 8;
/// The largest model card read.
const MAX_JSON: u64 = 1 << 20;
/// Examples per forward pass.
const CHUNK: usize = 256;

/// A fitted detector bundle.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Bundle {
    pub schema: String,
    pub warden_version: String,
    /// The command that wrote it.
    pub command: Vec<String>,
    pub model: ModelRef,
    /// Where the reference and calibration data came from, with their digests.
    pub data: Value,
    pub targets: Targets,
    pub members: Vec<Member>,
    /// Each member's held-out clean scores (split A) and how their p-values combine.
    pub ensemble: Ensemble,
    /// Thresholds on the ensemble score `−ln p`, calibrated on split B (disjoint from split A).
    pub ensemble_policy: VerdictPolicy,
    /// The out-of-distribution channel, when the calibration chose one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ood: Option<OodChannel>,
    pub stream: StreamSetting,
    /// SHA-256 of the bundle's JSON with this field empty.
    pub contents_sha256: String,
}

/// The monitored model the bundle was calibrated for.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ModelRef {
    pub name: String,
    pub weights_sha256: String,
    /// Channels, height, width.
    pub input: [usize; 3],
    pub classes: usize,
    pub features: usize,
}

/// The target false-positive rates the thresholds were calibrated for.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Targets {
    pub flag_fpr: f64,
    pub block_fpr: f64,
}

/// One per-request detector.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Member {
    pub name: String,
    pub scorer: MemberScorer,
    /// This member's own thresholds (split A), reported as reasons.
    pub policy: VerdictPolicy,
}

/// What a member scores.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "on", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum MemberScorer {
    /// The logits.
    Logits { detector: AnyDetector },
    /// The penultimate features.
    Features { detector: AnyDetector },
    /// The raw input, in the model's layout.
    Raw { detector: AnyDetector },
    /// Feature squeezing: the prediction's change under each squeezer (extra forward passes).
    Squeeze {
        squeezers: Vec<Squeezer>,
        shape: ImageShape,
    },
}

/// The out-of-distribution channel: the Bonferroni combination of some members' conformal
/// p-values (the ensemble's calibrations), chosen by leaving classes out
/// (`monitor_novelty`), with its own thresholds on `−ln p` calibrated on split B.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OodChannel {
    /// Indices into the bundle's members.
    pub members: Vec<usize>,
    pub policy: VerdictPolicy,
    /// How the members were chosen (the novelty validation's report).
    pub selection: Value,
}

/// The stream detector: a one-sided CUSUM on the ensemble score.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StreamSetting {
    pub drift: f64,
    pub threshold: f64,
    /// The mean run length without drift the threshold was set for, and the simulated one.
    pub target_run_length: f64,
    pub simulated_run_length: f64,
    /// Ensemble scores of split B, the CUSUM's reference.
    pub reference: Vec<f64>,
}

impl StreamSetting {
    pub(crate) fn cusum(&self) -> Result<Cusum> {
        Ok(Cusum::fit(
            &self.reference,
            CusumConfig {
                drift: self.drift,
                threshold: self.threshold,
            },
        )?)
    }
}

impl Bundle {
    /// The digest of the bundle's contents: SHA-256 of its JSON with `contents_sha256` empty.
    pub(crate) fn digest(&self) -> Result<String> {
        let mut b = self.clone();
        b.contents_sha256.clear();
        Ok(sha256_hex(&serde_json::to_vec(&b)?))
    }

    /// Sets the digest and returns the file's bytes.
    pub(crate) fn seal(&mut self) -> Result<Vec<u8>> {
        self.contents_sha256 = self.digest()?;
        Ok(serde_json::to_vec(self)?)
    }

    /// Reads and validates a bundle file.
    pub(crate) fn load(path: &Path) -> Result<Bundle> {
        let bytes = read_limited(path, MAX_BUNDLE_BYTES)?;
        Self::from_slice(&bytes)
            .with_context(|| format!("{}: not a valid detector bundle", path.display()))
    }

    pub(crate) fn from_slice(bytes: &[u8]) -> Result<Bundle> {
        // The schema first, so that another file gets a clear message.
        let head: Value = serde_json::from_slice(bytes).context("not JSON")?;
        let schema = head.get("schema").and_then(Value::as_str).unwrap_or("");
        ensure!(
            schema == BUNDLE_SCHEMA,
            "schema {schema:?}: expected {BUNDLE_SCHEMA:?}"
        );
        let b: Bundle = serde_json::from_value(head)?;
        b.validate()?;
        Ok(b)
    }

    /// Checks the parts against each other (the parts' own deserialisers checked each one).
    pub(crate) fn validate(&self) -> Result<()> {
        let m = &self.model;
        let [c, h, w] = m.input;
        ensure!(
            c > 0 && h > 0 && w > 0 && c * h * w <= 1 << 24,
            "model input {:?} is not a plausible image shape",
            m.input
        );
        ensure!(
            m.classes >= 2,
            "model classes {}: expected at least 2",
            m.classes
        );
        ensure!(
            m.weights_sha256.len() == 64 && m.weights_sha256.bytes().all(|b| b.is_ascii_hexdigit()),
            "model weights_sha256 is not a SHA-256 digest"
        );
        let t = self.targets;
        ensure!(
            t.flag_fpr > 0.0 && t.flag_fpr < 1.0 && t.block_fpr > 0.0 && t.block_fpr <= t.flag_fpr,
            "targets: expected 0 < block_fpr <= flag_fpr < 1, got {} and {}",
            t.block_fpr,
            t.flag_fpr
        );
        ensure!(
            !self.members.is_empty() && self.members.len() <= MAX_MEMBERS,
            "{} members: expected 1 to {MAX_MEMBERS}",
            self.members.len()
        );
        ensure!(
            self.ensemble.len() == self.members.len(),
            "the ensemble has {} calibrations for {} members",
            self.ensemble.len(),
            self.members.len()
        );
        for mem in &self.members {
            ensure!(
                !mem.name.is_empty() && mem.name.len() <= 64,
                "member name {:?}: expected 1 to 64 characters",
                mem.name
            );
            check_policy(&mem.policy).with_context(|| format!("member {}", mem.name))?;
            let (what, expected, got) = match &mem.scorer {
                MemberScorer::Logits { detector } => ("logits", m.classes, detector.dim()),
                MemberScorer::Features { detector } => ("features", m.features, detector.dim()),
                MemberScorer::Raw { detector } => ("raw input", c * h * w, detector.dim()),
                MemberScorer::Squeeze { squeezers, shape } => {
                    ensure!(
                        !squeezers.is_empty() && squeezers.len() <= MAX_SQUEEZERS,
                        "member {}: expected 1 to {MAX_SQUEEZERS} squeezers",
                        mem.name
                    );
                    ensure!(
                        c == 1 && shape.channels == 1 && shape.height == h && shape.width == w,
                        "member {}: squeezing needs a one-channel {h}×{w} image, got {shape:?}",
                        mem.name
                    );
                    // Each squeezer's own parameters are checked by applying it once.
                    let img = vec![0.5f32; h * w];
                    let mut out = vec![0.0f32; h * w];
                    for s in squeezers {
                        s.apply(&img, *shape, &mut out)
                            .with_context(|| format!("member {}", mem.name))?;
                    }
                    continue;
                }
            };
            ensure!(
                expected == got,
                "member {} scores {what} of {got} values; the model has {expected}",
                mem.name
            );
        }
        check_policy(&self.ensemble_policy).context("ensemble")?;
        if let Some(o) = &self.ood {
            let m = self.members.len();
            ensure!(
                !o.members.is_empty()
                    && o.members.iter().all(|&j| j < m)
                    && (1..o.members.len()).all(|k| !o.members[..k].contains(&o.members[k])),
                "the out-of-distribution channel's members {:?} must be distinct indices below {m}",
                o.members
            );
            check_policy(&o.policy).context("out-of-distribution channel")?;
        }
        self.stream.cusum().context("stream detector")?;
        ensure!(
            self.stream.target_run_length.is_finite()
                && self.stream.simulated_run_length.is_finite(),
            "stream run lengths must be finite"
        );
        let digest = self.digest()?;
        ensure!(
            digest == self.contents_sha256,
            "contents digest {} does not match the contents ({digest}); the file was changed after it was written",
            self.contents_sha256
        );
        Ok(())
    }

    /// Errors unless `model` is the model this bundle was calibrated for.
    pub(crate) fn check_model(&self, model: &LoadedModel) -> Result<()> {
        ensure!(
            model.weights_sha256 == self.model.weights_sha256,
            "the model's weights (sha256 {}) are not the ones the bundle was calibrated for ({}); hint: run `warden monitor calibrate` on this model",
            model.weights_sha256,
            self.model.weights_sha256
        );
        Ok(())
    }

    /// The ensemble score `−ln p` of one request's member scores.
    pub(crate) fn ensemble_score(&self, scores: &[f64]) -> Result<f64> {
        let p = self.ensemble.p_value(scores)?;
        Ok(-p.max(f64::MIN_POSITIVE).ln())
    }

    /// The out-of-distribution channel's score `−ln p` of one request's member scores, when the
    /// bundle has the channel.
    pub(crate) fn ood_score(&self, scores: &[f64]) -> Result<Option<f64>> {
        let Some(o) = &self.ood else { return Ok(None) };
        ensure!(
            scores.len() == self.members.len(),
            "{} scores for {} members",
            scores.len(),
            self.members.len()
        );
        let cals = self.ensemble.members();
        let mut min = 1.0f64;
        for &j in &o.members {
            min = min.min(cals[j].p_value(scores[j])?);
        }
        let p = (o.members.len() as f64 * min).min(1.0);
        Ok(Some(-p.max(f64::MIN_POSITIVE).ln()))
    }

    /// The verdict on one request and the members over their own flag threshold.
    pub(crate) fn decide(&self, scores: &[f64]) -> Result<Decision> {
        let ens = self.ensemble_score(scores)?;
        let verdict = self.ensemble_policy.verdict(ens)?;
        let mut reasons = Vec::new();
        for ((mem, &s), cal) in self.members.iter().zip(scores).zip(self.ensemble.members()) {
            let v = mem.policy.verdict(s)?;
            if v != Verdict::Allow {
                reasons.push(json!({
                    "detector": mem.name, "score": s, "p_value": cal.p_value(s)?,
                    "flag_threshold": mem.policy.flag_threshold(), "block_threshold": mem.policy.block_threshold(),
                    "level": v,
                }));
            }
        }
        let ood = match (&self.ood, self.ood_score(scores)?) {
            (Some(o), Some(score)) => json!({
                "score": score, "level": o.policy.verdict(score)?,
                "flag_threshold": o.policy.flag_threshold(), "block_threshold": o.policy.block_threshold(),
            }),
            _ => Value::Null,
        };
        Ok(Decision {
            verdict,
            ensemble_score: ens,
            reasons,
            ood,
        })
    }
}

fn check_policy(p: &VerdictPolicy) -> Result<()> {
    VerdictPolicy::new(p.flag_threshold(), p.block_threshold())?;
    Ok(())
}

/// A verdict with its reasons.
pub(crate) struct Decision {
    pub verdict: Verdict,
    pub ensemble_score: f64,
    pub reasons: Vec<Value>,
    /// The out-of-distribution channel's score and level (null without a channel).
    pub ood: Value,
}

/// The monitored model, its weights' digest and its card (which says what it was trained on).
pub(crate) struct LoadedModel {
    pub model: Model,
    pub weights_sha256: String,
    pub card: Value,
}

/// Reads a model directory written by `warden harden train`, or an ONNX file (no card).
pub(crate) fn load_model(path: &Path) -> Result<LoadedModel> {
    let m = crate::harden_model::load_model_dir(path)?;
    let card = if path.is_dir() {
        match read_limited(&path.join("model-card.json"), MAX_JSON) {
            Ok(b) => serde_json::from_slice(&b).unwrap_or(Value::Null),
            Err(_) => Value::Null,
        }
    } else {
        Value::Null
    };
    Ok(LoadedModel {
        model: m.model,
        weights_sha256: m.weights_sha256,
        card,
    })
}

/// Member scores of a batch: `n × members`, row-major, and the model's predictions.
pub(crate) struct Scored {
    pub scores: Vec<f64>,
    pub preds: Vec<u8>,
    pub members: usize,
}

impl Scored {
    pub(crate) fn len(&self) -> usize {
        self.preds.len()
    }

    pub(crate) fn row(&self, i: usize) -> &[f64] {
        &self.scores[i * self.members..(i + 1) * self.members]
    }

    /// Member `j`'s scores.
    pub(crate) fn column(&self, j: usize) -> Vec<f64> {
        (0..self.len())
            .map(|i| self.scores[i * self.members + j])
            .collect()
    }

    pub(crate) fn ensemble(&self, b: &Bundle) -> Result<Vec<f64>> {
        (0..self.len())
            .map(|i| b.ensemble_score(self.row(i)))
            .collect()
    }

    /// The out-of-distribution score `−ln p` of each row: the Bonferroni combination of the
    /// `chosen` members' conformal p-values under `ensemble`'s calibrations.
    pub(crate) fn ood(&self, ensemble: &Ensemble, chosen: &[usize]) -> Result<Vec<f64>> {
        let cals = ensemble.members();
        let p: Vec<Vec<f64>> = (0..self.members)
            .map(|j| {
                if chosen.contains(&j) {
                    self.column(j)
                        .iter()
                        .map(|&s| Ok(cals[j].p_value(s)?))
                        .collect::<Result<Vec<f64>>>()
                } else {
                    Ok(Vec::new())
                }
            })
            .collect::<Result<_>>()?;
        Ok(crate::monitor_novelty::bonferroni_scores(&p, chosen))
    }
}

/// Time spent in the model and in the detectors.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Timing {
    pub model_s: f64,
    pub squeeze_model_s: f64,
    pub detect_s: f64,
}

/// Scores `n` images (`x` in the model's input layout, values in [0, 1]) with every member,
/// sharded over the pool's threads.
pub(crate) fn score_images(
    model: &Model,
    members: &[Member],
    pool: &mut Pool,
    x: &[f32],
    n: usize,
) -> Result<Scored> {
    let len = model.input_len();
    ensure!(
        x.len() == n * len,
        "{} values for {n} images of {len}",
        x.len()
    );
    let m = members.len();
    let mut rows: Vec<(f64, u8)> = vec![(0.0, 0); n * m];
    let mut preds = vec![0u8; n];
    // One output per example: m scores and the prediction, packed as (score, pred) pairs.
    pool.run(
        n,
        model.least_per_thread(),
        &mut rows,
        |ws, range, out| -> Result<()> {
            let mut scratch = Scratch::new();
            let mut t = Timing::default();
            for start in (range.start..range.end).step_by(CHUNK) {
                let end = (start + CHUNK).min(range.end);
                let o = &mut out[(start - range.start) * m..(end - range.start) * m];
                let mut s = vec![0.0f64; (end - start) * m];
                let mut p = vec![0u8; end - start];
                score_chunk(
                    model,
                    members,
                    ws,
                    &mut scratch,
                    &x[start * len..end * len],
                    end - start,
                    &mut s,
                    &mut p,
                    &mut t,
                )?;
                for (i, (dst, src)) in o.iter_mut().zip(&s).enumerate() {
                    *dst = (*src, p[i / m]);
                }
            }
            Ok(())
        },
    )?;
    let scores = rows.iter().map(|r| r.0).collect();
    for (i, p) in preds.iter_mut().enumerate() {
        *p = rows[i * m].1;
    }
    Ok(Scored {
        scores,
        preds,
        members: m,
    })
}

/// The softmax of each `classes`-wide row of `logits`.
fn softmax_rows(logits: &[f32], classes: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; logits.len()];
    for (row, o) in logits
        .chunks_exact(classes)
        .zip(out.chunks_exact_mut(classes))
    {
        softmax(row, o);
    }
    out
}

/// `out = softmax(logits)` for one row, summed in f64, without allocating.
pub(crate) fn softmax(logits: &[f32], out: &mut [f32]) {
    let m = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&z| f64::from(z - m).exp()).sum();
    for (o, &z) in out.iter_mut().zip(logits) {
        *o = (f64::from(z - m).exp() / sum) as f32;
    }
}

/// Scores one chunk of `c` images into `scores` (`c × members`) and `preds`, timing the model and
/// the detectors.
#[allow(clippy::too_many_arguments)]
pub(crate) fn score_chunk(
    model: &Model,
    members: &[Member],
    ws: &mut Workspace,
    scratch: &mut Scratch,
    x: &[f32],
    c: usize,
    scores: &mut [f64],
    preds: &mut [u8],
    timing: &mut Timing,
) -> Result<()> {
    let len = model.input_len();
    let classes = model.classes();
    let m = members.len();
    let t0 = Instant::now();
    let logits = model.forward(ws, x, c)?.to_vec();
    let feats = model.features(ws).to_vec();
    let flen = feats.len() / c.max(1);
    timing.model_s += t0.elapsed().as_secs_f64();
    for (p, row) in preds.iter_mut().zip(logits.chunks_exact(classes)) {
        *p = argmax(row) as u8;
    }
    // Feature squeezing's extra passes: the squeezed probabilities per member, per squeezer.
    let t1 = Instant::now();
    let mut squeezed: Vec<Option<(Vec<f32>, Vec<f32>)>> = Vec::with_capacity(m);
    for mem in members {
        if let MemberScorer::Squeeze { squeezers, shape } = &mem.scorer {
            let probs = softmax_rows(&logits, classes);
            let k = squeezers.len();
            // Row-major per image: k probability vectors.
            let mut per_image = vec![0.0f32; c * k * classes];
            let mut buf = vec![0.0f32; c * len];
            for (si, s) in squeezers.iter().enumerate() {
                for (img, out) in x.chunks_exact(len).zip(buf.chunks_exact_mut(len)) {
                    s.apply(img, *shape, out)?;
                }
                let sq = softmax_rows(model.forward(ws, &buf, c)?, classes);
                for i in 0..c {
                    per_image[(i * k + si) * classes..(i * k + si + 1) * classes]
                        .copy_from_slice(&sq[i * classes..(i + 1) * classes]);
                }
            }
            squeezed.push(Some((probs, per_image)));
        } else {
            squeezed.push(None);
        }
    }
    timing.squeeze_model_s += t1.elapsed().as_secs_f64();
    let t2 = Instant::now();
    for i in 0..c {
        for (j, mem) in members.iter().enumerate() {
            scores[i * m + j] = match &mem.scorer {
                MemberScorer::Logits { detector } => {
                    detector.score_with(&logits[i * classes..(i + 1) * classes], scratch)?
                }
                MemberScorer::Features { detector } => {
                    ensure!(flen > 0, "the model has no penultimate features");
                    detector.score_with(&feats[i * flen..(i + 1) * flen], scratch)?
                }
                MemberScorer::Raw { detector } => {
                    detector.score_with(&x[i * len..(i + 1) * len], scratch)?
                }
                MemberScorer::Squeeze { squeezers, .. } => {
                    let k = squeezers.len();
                    let Some((probs, sq)) = &squeezed[j] else {
                        bail!("internal: squeezed probabilities missing")
                    };
                    squeeze_score(
                        &probs[i * classes..(i + 1) * classes],
                        &sq[i * k * classes..(i + 1) * k * classes],
                    )?
                }
            };
        }
    }
    timing.detect_s += t2.elapsed().as_secs_f64();
    Ok(())
}
