//! Robustness evaluation: clean accuracy, accuracy under each attack at each budget, the worst case
//! over all attacks per example, and accuracy under distribution shift (corruptions).

use serde::{Deserialize, Serialize};

use crate::apgd::{self, Apgd, ApgdLoss};
use crate::attack::{self, Norm, Pgd};
use crate::fab::{self, Fab};
use crate::square::{self, Square};

enum Attack {
    Pgd(Pgd),
    Apgd(Apgd),
    Fab(Fab),
    Square(Square),
}
use crate::corrupt::{self, Corruption};
use crate::data::Dataset;
use crate::net::Compute;
use crate::nn::{Model, ModelError, Pool};

/// What to evaluate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalConfig {
    /// The threat model of every attack (L∞ when absent).
    #[serde(default)]
    pub norm: Norm,
    /// Budgets, in `norm`.
    pub eps: Vec<f32>,
    /// PGD iterations, step size per iteration and random restarts.
    pub pgd_steps: usize,
    pub pgd_step: f32,
    pub restarts: usize,
    /// APGD-CE and APGD-DLR iterations (0: skip them) and restarts.
    #[serde(default)]
    pub apgd_iters: usize,
    #[serde(default)]
    pub apgd_restarts: usize,
    /// APGD-T after APGD-DLR: the targeted DLR loss towards each of this many most likely wrong
    /// classes, `apgd_iters` iterations and one run each, as AutoAttack runs it (`apgd_restarts`
    /// does not apply; 0: skip it; AutoAttack's standard version: 9).
    #[serde(default)]
    pub apgd_targets: usize,
    /// FAB-T after APGD-T: the minimal-perturbation attack towards each of this many most likely
    /// wrong classes (0: skip it; AutoAttack's standard version: 9).
    #[serde(default)]
    pub fab_targets: usize,
    /// FAB-T iterations per target (AutoAttack's 100).
    #[serde(default = "hundred")]
    pub fab_iters: usize,
    /// Square Attack queries per example (0: skip it), last in the cascade.
    #[serde(default)]
    pub square_queries: usize,
    /// Run every attack on every example (each attack's own robust accuracy) instead of each on
    /// the examples that all attacks before it left unbroken (AutoAttack's cascade, much faster;
    /// each attack's figure is then the robust accuracy that remains after it).
    #[serde(default)]
    pub independent: bool,
    /// Severities of every corruption to evaluate (empty: none).
    pub corruption_severities: Vec<u8>,
    pub seed: u64,
}

fn hundred() -> usize {
    100
}

impl Default for EvalConfig {
    /// The acceptance protocol of issue 4: PGD-50, step 0.01, 5 restarts, at 0.05/0.1/0.15/0.2.
    fn default() -> EvalConfig {
        EvalConfig {
            norm: Norm::Linf,
            eps: vec![0.05, 0.1, 0.15, 0.2],
            pgd_steps: 50,
            pgd_step: 0.01,
            restarts: 5,
            apgd_iters: 100,
            apgd_restarts: 1,
            apgd_targets: 0,
            fab_targets: 0,
            fab_iters: 100,
            square_queries: 0,
            independent: false,
            corruption_severities: vec![1, 2, 3, 4, 5],
            seed: 0,
        }
    }
}

impl EvalConfig {
    /// Every attack of the protocol for a few iterations each (PGD-5 with two restarts, APGD-CE,
    /// -DLR and -T at 5 iterations, FAB-T, Square-30), at L∞ budgets 0.03 and 0.1, with one
    /// corruption severity: a quick check that everything runs, not an evaluation to report.
    pub fn brief() -> EvalConfig {
        EvalConfig {
            norm: Norm::Linf,
            eps: vec![0.03, 0.1],
            pgd_steps: 5,
            pgd_step: 0.01,
            restarts: 2,
            apgd_iters: 5,
            apgd_restarts: 1,
            apgd_targets: 2,
            fab_targets: 2,
            fab_iters: 5,
            square_queries: 30,
            independent: false,
            corruption_severities: vec![3],
            seed: 5,
        }
    }

    /// Checks every attack's settings at every budget, for a model of `classes` classes: what
    /// [`evaluate`] checks before it starts, and what a caller can check before loading anything.
    pub fn validate(&self, classes: usize) -> Result<(), String> {
        if self.apgd_iters > 0 && classes < 3 {
            return Err(format!(
                "APGD-DLR needs at least 3 classes, and the model has {classes}: evaluate it with --apgd-iters 0 (FGSM, PGD and the others still run)"
            ));
        }
        if self.apgd_iters > 0
            && self.apgd_targets > 0
            && (classes < 4 || self.apgd_targets >= classes)
        {
            return Err(format!(
                "APGD-T with {} targets needs at least 4 classes and more classes than targets ({classes})",
                self.apgd_targets
            ));
        }
        if self.fab_targets >= classes.max(1) {
            return Err(format!(
                "FAB-T with {} targets needs more classes than targets ({classes})",
                self.fab_targets
            ));
        }
        for &eps in &self.eps {
            for (_, a) in self.attacks_at(eps) {
                match a {
                    Attack::Pgd(p) => p.validate(),
                    Attack::Apgd(p) => p.validate(),
                    Attack::Fab(p) => p.validate(),
                    Attack::Square(p) => p.validate(),
                }?;
            }
        }
        Ok(())
    }

    /// The cascade at budget `eps`, in order, with each attack's name in the report.
    fn attacks_at(&self, eps: f32) -> Vec<(String, Attack)> {
        let norm = self.norm;
        let mut list = vec![
            ("FGSM".to_string(), Attack::Pgd(Pgd::fgsm(norm, eps))),
            (
                format!("PGD-{}x{}", self.pgd_steps, self.restarts),
                Attack::Pgd(Pgd {
                    norm,
                    ..Pgd::linf(eps, self.pgd_step, self.pgd_steps, self.restarts)
                }),
            ),
        ];
        if self.apgd_iters > 0 {
            let restarts = self.apgd_restarts.max(1);
            for (name, loss) in [("APGD-CE", ApgdLoss::Ce), ("APGD-DLR", ApgdLoss::Dlr)] {
                let a = Apgd {
                    iters: self.apgd_iters,
                    norm,
                    ..Apgd::new(loss, eps, restarts)
                };
                list.push((
                    format!("{name}-{}x{restarts}", self.apgd_iters),
                    Attack::Apgd(a),
                ));
            }
            if self.apgd_targets > 0 {
                let a = Apgd {
                    iters: self.apgd_iters,
                    norm,
                    ..Apgd::targeted(eps, self.apgd_targets)
                };
                list.push((
                    format!("APGD-T-{}x{}", self.apgd_iters, self.apgd_targets),
                    Attack::Apgd(a),
                ));
            }
        }
        if self.fab_targets > 0 {
            list.push((
                format!("FAB-T-{}x{}", self.fab_iters, self.fab_targets),
                Attack::Fab(Fab {
                    norm,
                    iters: self.fab_iters,
                    ..Fab::targeted(eps, self.fab_targets)
                }),
            ));
        }
        if self.square_queries > 0 {
            list.push((
                format!("Square-{}", self.square_queries),
                Attack::Square(Square {
                    norm,
                    ..Square::new(eps, self.square_queries)
                }),
            ));
        }
        list
    }
}

/// Accuracy under one attack at one budget.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttackResult {
    pub attack: String,
    /// Examples this attack ran on.
    pub attacked: usize,
    /// Examples it broke that no earlier attack (at this or a smaller budget) had broken.
    pub newly_broken: usize,
    pub norm: Norm,
    /// The budget as written (the f32 used, printed in shortest decimal form).
    pub eps: f64,
    pub robust_accuracy: f64,
    pub seconds: f64,
    /// Successes the attack claimed that did not verify (see [`verify`]); they count as not
    /// broken. Anything but 0 is a defect in the attack, to be reported.
    #[serde(default)]
    pub rejected: usize,
}

/// Checks every success an attack claims, independently of the attack: the point is finite,
/// inside the bounds `[0, 1]`, within `eps` of the original in `norm` (up to a relative 10⁻⁵ for
/// rounding), and the model's prediction there is wrong. AutoAttack does the same check at the
/// end of a run. Returns the verified successes and how many claims were rejected.
fn verify(
    c: &mut Compute<'_>,
    norm: Norm,
    eps: f32,
    x: &[f32],
    y: &[u8],
    out: &attack::AttackOutput,
) -> Result<(Vec<bool>, usize), ModelError> {
    let len = c.input_len();
    let claimed: Vec<usize> = (0..y.len()).filter(|&k| out.success[k]).collect();
    let mut points = Vec::with_capacity(claimed.len() * len);
    for &k in &claimed {
        points.extend_from_slice(&out.adversarial[k * len..(k + 1) * len]);
    }
    let pred = c.predict(&points, claimed.len())?;
    let limit = eps * (1.0 + 1e-5);
    let mut success = vec![false; y.len()];
    for (j, &k) in claimed.iter().enumerate() {
        let p = &points[j * len..(j + 1) * len];
        let inside = p.iter().all(|v| (0.0..=1.0).contains(v));
        let near = attack::distance(norm, &x[k * len..(k + 1) * len], p) <= limit;
        success[k] = inside && near && pred[j] != y[k];
    }
    let rejected = claimed.len() - success.iter().filter(|s| **s).count();
    Ok((success, rejected))
}

/// Accuracy on one corrupted copy of the test set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CorruptionResult {
    pub corruption: String,
    pub severity: u8,
    pub accuracy: f64,
}

/// Everything measured about one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelEval {
    pub examples: usize,
    pub clean_accuracy: f64,
    pub attacks: Vec<AttackResult>,
    /// Per budget: the fraction of examples that no attack broke.
    pub worst_case: Vec<(f64, f64)>,
    pub corruptions: Vec<CorruptionResult>,
    /// Mean accuracy over all corruptions and severities.
    pub mean_corruption_accuracy: Option<f64>,
}

impl ModelEval {
    /// Worst-case robust accuracy at `eps`, if evaluated.
    pub fn worst_at(&self, eps: f32) -> Option<f64> {
        let eps = decimal(eps);
        self.worst_case
            .iter()
            .find(|(e, _)| (e - eps).abs() < 1e-9)
            .map(|(_, a)| *a)
    }
}

/// An f32 as the f64 of its shortest decimal form (0.1f32 → 0.1, not 0.10000000149011612), for
/// reports.
pub fn decimal(v: f32) -> f64 {
    v.to_string().parse().unwrap_or(f64::from(v))
}

/// The reduction of adversarial misclassification of `hardened` relative to `baseline` at `eps`
/// (worst case over the attacks): `(m_b − m_h) / m_b` with `m = 1 − robust accuracy`.
pub fn reduction(baseline: &ModelEval, hardened: &ModelEval, eps: f32) -> Option<f64> {
    let mb = 1.0 - baseline.worst_at(eps)?;
    let mh = 1.0 - hardened.worst_at(eps)?;
    (mb > 0.0).then(|| (mb - mh) / mb)
}

/// Evaluates `model` on `test`; `progress(step, total, label)` is called before each part.
/// Budgets are evaluated in increasing order.
pub fn evaluate(
    model: &Model,
    pool: &mut Pool,
    test: &Dataset,
    cfg: &EvalConfig,
    progress: &mut dyn FnMut(usize, usize, &str),
) -> Result<ModelEval, ModelError> {
    evaluate_on(&mut Compute::Cpu { model, pool }, test, cfg, progress)
}

/// Test examples on which a device is compared with the CPU engine before it evaluates.
pub const PARITY_EXAMPLES: usize = 16;

/// [`evaluate_on`] a network outside this crate (a GPU), `chunk` examples per pass, after
/// checking it against Warden's CPU engine running `model` on the first [`PARITY_EXAMPLES`]
/// test examples ([`crate::net::parity`]). A device that does not compute the model as the CPU
/// engine does, beyond rounding ([`crate::net::Parity::agrees`]), is refused before any attack:
/// its attacks would follow wrong gradients and overstate the model's robustness. Returns the
/// evaluation and the comparison, for the report.
pub fn evaluate_device(
    model: &Model,
    net: &mut dyn crate::net::Network,
    chunk: usize,
    test: &Dataset,
    cfg: &EvalConfig,
    progress: &mut dyn FnMut(usize, usize, &str),
) -> Result<(ModelEval, crate::net::Parity), ModelError> {
    let k = test.len().min(PARITY_EXAMPLES);
    if k == 0 {
        return Err(ModelError::Input("an empty test set".into()));
    }
    let first: Vec<usize> = (0..k).collect();
    let x = test.subset(&first, "parity").inputs();
    let mut ws = crate::nn::Workspace::default();
    let mut cpu = crate::net::CpuNet { model, ws: &mut ws };
    // In passes no larger than either engine's own.
    let pass = model.chunk(PARITY_EXAMPLES).min(chunk).max(1);
    let parity = crate::net::parity(&mut cpu, net, &x, &test.labels[..k], pass)?;
    if let Err(why) = parity.agrees() {
        return Err(ModelError::Engine(format!(
            "the device does not compute this model as Warden's CPU engine does: {why}. Attacks \
             on it would follow wrong gradients and overstate the model's robustness; evaluate \
             with --device cpu (and please report this, with the model)"
        )));
    }
    let e = evaluate_on(&mut Compute::Device { net, chunk }, test, cfg, progress)?;
    Ok((e, parity))
}

/// [`evaluate`] on any engine.
pub fn evaluate_on(
    c: &mut Compute<'_>,
    test: &Dataset,
    cfg: &EvalConfig,
    progress: &mut dyn FnMut(usize, usize, &str),
) -> Result<ModelEval, ModelError> {
    let x = test.inputs();
    let y = &test.labels;
    let n = y.len();
    if n == 0 {
        return Err(ModelError::Input("an empty test set".into()));
    }
    cfg.validate(c.classes()).map_err(ModelError::Input)?;
    let fraction = |k: usize| k as f64 / n as f64;
    let corr_total = Corruption::ALL.len() * cfg.corruption_severities.len();
    let per_eps = cfg.attacks_at(0.0).len();
    let total = 1 + per_eps * cfg.eps.len() + corr_total;
    let mut done = 0;
    progress(done, total, "clean");
    let pred = c.predict(&x, n)?;
    let correct: Vec<bool> = pred.iter().zip(y).map(|(p, y)| p == y).collect();
    let clean_accuracy = fraction(correct.iter().filter(|c| **c).count());
    done += 1;
    let mut attacks = Vec::new();
    let mut worst_case = Vec::new();
    let mut eps_sorted = cfg.eps.clone();
    eps_sorted.sort_by(f32::total_cmp);
    eps_sorted.dedup();
    // An adversarial example inside a smaller ball is one inside every larger ball: the worst case
    // carries breaks forward, so it is monotone in eps by construction.
    let mut broken: Vec<bool> = correct.iter().map(|c| !c).collect();
    let len = c.input_len();
    for &eps in &eps_sorted {
        let list = cfg.attacks_at(eps);
        for (name, a) in list {
            progress(done, total, &format!("{name} eps {eps}"));
            let t = std::time::Instant::now();
            let ids: Vec<usize> = if cfg.independent {
                (0..n).collect()
            } else {
                (0..n).filter(|&i| !broken[i]).collect()
            };
            let mut xs = Vec::with_capacity(ids.len() * len);
            for &i in &ids {
                xs.extend_from_slice(&x[i * len..(i + 1) * len]);
            }
            let ys: Vec<u8> = ids.iter().map(|&i| y[i]).collect();
            let out = match &a {
                Attack::Pgd(p) => attack::run_on(c, p, &xs, &ys, cfg.seed)?,
                Attack::Apgd(p) => apgd::run_on(c, p, &xs, &ys, cfg.seed)?,
                Attack::Fab(p) => fab::run_on(c, p, &xs, &ys, cfg.seed)?,
                Attack::Square(p) => square::run_on(c, p, &xs, &ys, cfg.seed)?,
            };
            let seconds = t.elapsed().as_secs_f64();
            let (success, rejected) = verify(c, cfg.norm, eps, &xs, &ys, &out)?;
            let mut newly_broken = 0;
            for (&i, &s) in ids.iter().zip(&success) {
                if s && !broken[i] {
                    broken[i] = true;
                    newly_broken += 1;
                }
            }
            let robust = if cfg.independent {
                success.iter().filter(|s| !**s).count()
            } else {
                broken.iter().filter(|b| !**b).count()
            };
            attacks.push(AttackResult {
                attack: name,
                attacked: ids.len(),
                newly_broken,
                norm: cfg.norm,
                eps: decimal(eps),
                robust_accuracy: fraction(robust),
                seconds,
                rejected,
            });
            done += 1;
        }
        worst_case.push((
            decimal(eps),
            fraction(broken.iter().filter(|b| !**b).count()),
        ));
    }
    let mut corruptions = Vec::new();
    for kind in Corruption::ALL {
        for &s in &cfg.corruption_severities {
            progress(done, total, &format!("{} severity {s}", kind.name()));
            let set = corrupt::corrupt_dataset(test, kind, s, cfg.seed);
            let p = c.predict(&set.inputs(), n)?;
            let accuracy = fraction(p.iter().zip(y).filter(|(p, y)| p == y).count());
            corruptions.push(CorruptionResult {
                corruption: kind.name().into(),
                severity: s,
                accuracy,
            });
            done += 1;
        }
    }
    progress(done, total, "done");
    let mean_corruption_accuracy = (!corruptions.is_empty())
        .then(|| corruptions.iter().map(|c| c.accuracy).sum::<f64>() / corruptions.len() as f64);
    Ok(ModelEval {
        examples: n,
        clean_accuracy,
        attacks,
        worst_case,
        corruptions,
        mean_corruption_accuracy,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::nn::Arch;
    use crate::rng::Rng;

    fn random_set(n: usize) -> Dataset {
        let mut rng = Rng::new(2);
        Dataset {
            name: "random".into(),
            channels: 1,
            rows: 28,
            cols: 28,
            images: (0..n * 784).map(|_| rng.below(256) as u8).collect(),
            labels: (0..n).map(|i| (i % 10) as u8).collect(),
            sources: Vec::new(),
        }
    }

    /// The settings are checked as a whole, before any attack runs: the default protocol passes,
    /// and a bad step, a budget out of range or too many targets for the classes do not.
    #[test]
    fn config_validation_covers_every_attack() {
        let ok = EvalConfig::default();
        assert!(ok.validate(10).is_ok());
        assert_eq!(ok.attacks_at(0.1).len(), 4);
        for (bad, classes) in [
            (
                EvalConfig {
                    pgd_step: f32::NAN,
                    ..ok.clone()
                },
                10,
            ),
            (
                EvalConfig {
                    eps: vec![0.1, -1.0],
                    ..ok.clone()
                },
                10,
            ),
            (
                EvalConfig {
                    apgd_restarts: 101,
                    ..ok.clone()
                },
                10,
            ),
            (
                EvalConfig {
                    apgd_targets: 3,
                    ..ok.clone()
                },
                3,
            ),
            (
                EvalConfig {
                    fab_targets: 9,
                    ..ok.clone()
                },
                9,
            ),
            (
                EvalConfig {
                    fab_targets: 2,
                    fab_iters: 0,
                    ..ok.clone()
                },
                10,
            ),
        ] {
            assert!(bad.validate(classes).is_err(), "{bad:?}");
        }
        // AutoAttack's standard L2 version: APGD-CE, APGD-T, FAB-T and Square, all under L2.
        let l2 = EvalConfig {
            norm: Norm::L2,
            eps: vec![0.5, 1.0],
            pgd_step: 0.1,
            apgd_targets: 9,
            fab_targets: 9,
            square_queries: 5000,
            ..ok.clone()
        };
        assert!(l2.validate(10).is_ok());
        for (name, a) in l2.attacks_at(1.0) {
            match a {
                Attack::Pgd(p) => assert_eq!(p.norm, Norm::L2, "{name}"),
                Attack::Apgd(p) => assert_eq!(p.norm, Norm::L2, "{name}"),
                Attack::Fab(p) => assert_eq!((p.norm, p.eps), (Norm::L2, 1.0), "{name}"),
                Attack::Square(p) => assert_eq!((p.norm, p.eps), (Norm::L2, 1.0), "{name}"),
            }
        }
        assert_eq!(l2.attacks_at(1.0).len(), 7);
    }

    /// A success that is outside the ball, outside the bounds, not finite or not misclassified is
    /// rejected, whatever the attack claims; a genuine one is kept.
    #[test]
    fn claimed_successes_are_verified() {
        let m = Model::init(&Arch::small_cnn(), 4).unwrap();
        let mut pool = Pool::new(1);
        let mut rng = Rng::new(3);
        let n = 6;
        let x: Vec<f32> = (0..n * 784)
            .map(|_| 0.2 + 0.6 * rng.uniform() as f32)
            .collect();
        let pred = m.predict(&mut pool, &x, n).unwrap();
        // Labels that disagree with the model at x, except example 4, labelled as predicted.
        let mut y: Vec<u8> = pred.iter().map(|p| (p + 1) % 10).collect();
        y[4] = pred[4];
        let mut adv = x.clone();
        adv[0] += 0.2; // example 0: 0.2 from x, beyond eps 0.1
        adv[784] = 1.5; // example 1: outside the bounds
        adv[2 * 784] = f32::NAN; // example 2: not finite
        adv[3 * 784] = (adv[3 * 784] + 0.05).min(1.0); // example 3: inside, misclassified
        // example 4: at x, classified correctly; example 5: at x, misclassified, not claimed
        let out = attack::AttackOutput {
            adversarial: adv,
            success: vec![true, true, true, true, true, false],
        };
        let (ok, rejected) = verify(
            &mut Compute::Cpu {
                model: &m,
                pool: &mut pool,
            },
            Norm::Linf,
            0.1,
            &x,
            &y,
            &out,
        )
        .unwrap();
        assert_eq!(ok, vec![false, false, false, true, false, false]);
        assert_eq!(rejected, 4);
        // Under L2 the same point 0 is within a budget of 0.25.
        let (ok, _) = verify(
            &mut Compute::Cpu {
                model: &m,
                pool: &mut pool,
            },
            Norm::L2,
            0.25,
            &x,
            &y,
            &out,
        )
        .unwrap();
        assert!(ok[0] && ok[3] && !ok[4]);
    }

    /// At eps 0 every attack leaves clean accuracy unchanged; robust accuracy never rises with eps;
    /// the worst case is at most every single attack.
    #[test]
    fn monotone_in_eps_and_equal_to_clean_at_zero() {
        let m = Model::init(&Arch::small_cnn(), 4).unwrap();
        let cfg = EvalConfig {
            eps: vec![0.0, 0.02, 0.05, 0.1],
            restarts: 1,
            independent: true,
            seed: 1,
            ..EvalConfig::brief()
        };
        let e = evaluate(
            &m,
            &mut Pool::new(2),
            &random_set(64),
            &cfg,
            &mut |_, _, _| {},
        )
        .unwrap();
        assert_eq!(e.worst_at(0.0), Some(e.clean_accuracy));
        for a in e.attacks.iter().filter(|a| a.eps == 0.0) {
            assert_eq!(a.robust_accuracy, e.clean_accuracy, "{}", a.attack);
        }
        for w in e.worst_case.windows(2) {
            assert!(w[1].1 <= w[0].1, "{:?}", e.worst_case);
        }
        for a in &e.attacks {
            assert!(e.worst_at(a.eps as f32).unwrap() <= a.robust_accuracy);
        }
        assert_eq!(decimal(0.1), 0.1);
        assert_eq!(e.corruptions.len(), 10);
        assert_eq!(e.attacks.len(), 28);
        assert!(
            e.attacks.iter().any(|a| a.attack == "APGD-DLR-5x1"),
            "APGD uses its own restarts"
        );
        assert!(e.attacks.iter().any(|a| a.attack == "APGD-T-5x2"));
        assert!(e.attacks.iter().any(|a| a.attack == "FAB-T-5x2"));
        assert!(
            e.attacks.iter().all(|a| a.rejected == 0),
            "every claim verifies"
        );
        // The cascade gives the same worst case as independent runs here (every attack is
        // deterministic per example index only in independent mode, so compare the bound).
        let cascade = evaluate(
            &m,
            &mut Pool::new(2),
            &random_set(64),
            &EvalConfig {
                independent: false,
                ..cfg.clone()
            },
            &mut |_, _, _| {},
        )
        .unwrap();
        for (c, i) in cascade.worst_case.iter().zip(&e.worst_case) {
            assert!((c.1 - i.1).abs() <= 0.05, "{c:?} vs {i:?}");
        }
        for w in cascade.attacks.windows(2).filter(|w| w[0].eps == w[1].eps) {
            assert!(w[1].robust_accuracy <= w[0].robust_accuracy, "cumulative");
            assert!(w[1].attacked <= w[0].attacked);
        }
        let r = reduction(&e, &e, 0.1);
        assert!(r.is_none() || r == Some(0.0));
        // A FAB-T with as many targets as classes is refused.
        let refused = EvalConfig {
            fab_targets: 10,
            ..cfg.clone()
        };
        assert!(
            evaluate(
                &m,
                &mut Pool::new(1),
                &random_set(8),
                &refused,
                &mut |_, _, _| {}
            )
            .is_err()
        );
        // A 2-class model cannot take APGD-DLR: refused before any attack, not half-way.
        let two = EvalConfig {
            apgd_targets: 0,
            fab_targets: 0,
            ..cfg.clone()
        };
        let e = two.validate(2).unwrap_err();
        assert!(e.contains("--apgd-iters 0"), "{e}");
        assert!(two.validate(3).is_ok());
        let without_apgd = EvalConfig {
            apgd_iters: 0,
            ..two.clone()
        };
        assert!(without_apgd.validate(2).is_ok());
        // The same under L2, every attack (Square included) in its L2 version.
        let l2 = EvalConfig {
            norm: Norm::L2,
            eps: vec![0.0, 0.3, 0.8, 1.5],
            pgd_step: 0.2,
            corruption_severities: vec![],
            ..cfg.clone()
        };
        let e = evaluate(
            &m,
            &mut Pool::new(2),
            &random_set(64),
            &l2,
            &mut |_, _, _| {},
        )
        .unwrap();
        assert_eq!(e.worst_at(0.0), Some(e.clean_accuracy));
        for w in e.worst_case.windows(2) {
            assert!(w[1].1 <= w[0].1, "{:?}", e.worst_case);
        }
        assert!(
            e.worst_at(1.5).unwrap() < e.clean_accuracy,
            "{:?}",
            e.worst_case
        );
        assert!(
            e.attacks
                .iter()
                .all(|a| a.norm == Norm::L2 && a.rejected == 0)
        );
        assert!(
            e.attacks
                .iter()
                .any(|a| a.attack == "Square-30" && a.eps == 1.5)
        );
    }

    /// Warden's engine as an outside network owning its model and workspace: what drives
    /// [`Compute::Device`] in these tests. With `fail_at`, the input gradient of that call (from 1)
    /// fails, as a device out of memory would.
    struct Owned {
        model: Model,
        ws: crate::nn::Workspace,
        grads: usize,
        fail_at: Option<usize>,
    }

    impl crate::net::Network for Owned {
        fn input(&self) -> [usize; 3] {
            self.model.arch().input
        }
        fn classes(&self) -> usize {
            self.model.classes()
        }
        fn forward(&mut self, x: &[f32], n: usize) -> Result<&[f32], ModelError> {
            self.model.forward(&mut self.ws, x, n)
        }
        fn input_grad(&mut self, x: &[f32], dlogits: &[f32]) -> Result<&[f32], ModelError> {
            self.grads += 1;
            if self.fail_at == Some(self.grads) {
                return Err(ModelError::Engine("out of memory".into()));
            }
            self.model.backward(&mut self.ws, x, dlogits, None, true);
            Ok(self.ws.input_grad())
        }
    }

    /// A random model, and `n` random images labelled as it predicts them (so every example is
    /// attacked).
    fn self_labelled(n: usize) -> (Model, Dataset) {
        let model = Model::init(&Arch::small_cnn(), 4).unwrap();
        let mut set = random_set(n);
        set.labels = model.predict(&mut Pool::new(1), &set.inputs(), n).unwrap();
        (model, set)
    }

    /// The same attacks driven through [`Compute::Device`] give the CPU path's report exactly,
    /// whatever the chunk size, and the CPU path gives it for any thread count: randomness is
    /// drawn per example index, not per chunk or shard, each chunk's examples keep their indices,
    /// and the passes are batch-invariant.
    #[test]
    fn the_device_path_gives_the_cpu_paths_report() {
        let (model, set) = self_labelled(40);
        let cfg = EvalConfig::brief();
        let cpu = evaluate(&model, &mut Pool::new(1), &set, &cfg, &mut |_, _, _| {}).unwrap();
        assert_eq!(cpu.clean_accuracy, 1.0);
        assert!(
            cpu.worst_at(0.1).unwrap() < 0.9,
            "the attacks break something: {:?}",
            cpu.worst_case
        );
        let same = |other: &ModelEval, what: &str| {
            assert_eq!(other.clean_accuracy, cpu.clean_accuracy, "{what}");
            assert_eq!(other.worst_case, cpu.worst_case, "{what}");
            assert_eq!(other.corruptions, cpu.corruptions, "{what}");
            assert_eq!(other.attacks.len(), cpu.attacks.len(), "{what}");
            for (d, c) in other.attacks.iter().zip(&cpu.attacks) {
                assert_eq!(
                    (
                        &d.attack,
                        d.attacked,
                        d.newly_broken,
                        d.robust_accuracy,
                        d.rejected
                    ),
                    (
                        &c.attack,
                        c.attacked,
                        c.newly_broken,
                        c.robust_accuracy,
                        c.rejected
                    ),
                    "{what}"
                );
            }
        };
        let three = evaluate(&model, &mut Pool::new(3), &set, &cfg, &mut |_, _, _| {}).unwrap();
        same(&three, "3 threads");
        for chunk in [40, 7] {
            let mut net = Owned {
                model: model.clone(),
                ws: Default::default(),
                grads: 0,
                fail_at: None,
            };
            let mut c = Compute::Device {
                net: &mut net,
                chunk,
            };
            let dev = evaluate_on(&mut c, &set, &cfg, &mut |_, _, _| {}).unwrap();
            assert!(net.grads > 0);
            same(&dev, &format!("chunk {chunk}"));
        }
    }

    /// A device is compared with the CPU engine before it evaluates: one that computes the model
    /// exactly evaluates as the CPU engine does, with the comparison returned; one whose input
    /// gradients are wrong where its logits are right (what burn 0.21's CUDA backend did to a
    /// strided 1 × 1 convolution) is refused before any attack asks it for a gradient.
    #[test]
    fn a_device_is_checked_against_the_cpu_engine_first() {
        let (model, set) = self_labelled(20);
        let cfg = EvalConfig::brief();
        let cpu = evaluate(&model, &mut Pool::new(1), &set, &cfg, &mut |_, _, _| {}).unwrap();
        let owned = || Owned {
            model: model.clone(),
            ws: Default::default(),
            grads: 0,
            fail_at: None,
        };
        let mut net = owned();
        let (e, parity) =
            evaluate_device(&model, &mut net, 7, &set, &cfg, &mut |_, _, _| {}).unwrap();
        assert_eq!(parity.examples, PARITY_EXAMPLES);
        assert_eq!((parity.max_logit_diff, parity.max_grad_diff), (0.0, 0.0));
        assert_eq!(e.clean_accuracy, cpu.clean_accuracy);
        assert_eq!(e.worst_case, cpu.worst_case);

        /// Right logits; the input gradient's every other entry negated.
        struct Flipped(Owned, Vec<f32>);
        impl crate::net::Network for Flipped {
            fn input(&self) -> [usize; 3] {
                self.0.input()
            }
            fn classes(&self) -> usize {
                self.0.classes()
            }
            fn forward(&mut self, x: &[f32], n: usize) -> Result<&[f32], ModelError> {
                self.0.forward(x, n)
            }
            fn input_grad(&mut self, x: &[f32], d: &[f32]) -> Result<&[f32], ModelError> {
                let g = self.0.input_grad(x, d)?;
                self.1 = g
                    .iter()
                    .enumerate()
                    .map(|(i, v)| if i % 2 == 1 { -v } else { *v })
                    .collect();
                Ok(&self.1)
            }
        }
        let mut net = Flipped(owned(), Vec::new());
        let r = evaluate_device(&model, &mut net, 7, &set, &cfg, &mut |_, _, _| {});
        match r {
            Err(ModelError::Engine(m)) => {
                assert!(m.contains("overstate") && m.contains("--device cpu"), "{m}")
            }
            other => panic!("a device with wrong gradients evaluated: {other:?}"),
        }
        // The comparison's own passes, 7 examples each, and no attack's.
        assert_eq!(
            net.0.grads,
            PARITY_EXAMPLES.div_ceil(7),
            "only the comparison asked for gradients"
        );
    }

    /// An engine that fails part-way stops the evaluation with its error: an attack that could
    /// not run must not read as one that found nothing. A network that answers the wrong number
    /// of logits is refused too.
    #[test]
    fn a_failing_engine_stops_the_evaluation() {
        let (model, set) = self_labelled(12);
        for fail_at in [1, 9] {
            let mut net = Owned {
                model: model.clone(),
                ws: Default::default(),
                grads: 0,
                fail_at: Some(fail_at),
            };
            let mut c = Compute::Device {
                net: &mut net,
                chunk: 5,
            };
            let r = evaluate_on(&mut c, &set, &EvalConfig::brief(), &mut |_, _, _| {});
            assert!(
                matches!(r, Err(ModelError::Engine(ref m)) if m == "out of memory"),
                "{r:?}"
            );
        }
        struct Short(Model, crate::nn::Workspace);
        impl crate::net::Network for Short {
            fn input(&self) -> [usize; 3] {
                self.0.arch().input
            }
            fn classes(&self) -> usize {
                self.0.classes()
            }
            fn forward(&mut self, x: &[f32], n: usize) -> Result<&[f32], ModelError> {
                let l = self.0.forward(&mut self.1, x, n)?;
                Ok(&l[..l.len() - 1])
            }
            fn input_grad(&mut self, x: &[f32], d: &[f32]) -> Result<&[f32], ModelError> {
                self.0.backward(&mut self.1, x, d, None, true);
                Ok(self.1.input_grad())
            }
        }
        let mut net = Short(model, Default::default());
        let mut c = Compute::Device {
            net: &mut net,
            chunk: 5,
        };
        let r = evaluate_on(&mut c, &set, &EvalConfig::brief(), &mut |_, _, _| {});
        assert!(matches!(r, Err(ModelError::Input(_))), "{r:?}");
    }
}
