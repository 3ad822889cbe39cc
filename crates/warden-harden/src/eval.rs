//! Robustness evaluation: clean accuracy, accuracy under each attack at each budget, the worst case
//! over all attacks per example, and accuracy under distribution shift (corruptions).

use serde::{Deserialize, Serialize};

use crate::attack::{self, Norm, Pgd};
use crate::corrupt::{self, Corruption};
use crate::data::Dataset;
use crate::nn::{Model, ModelError, Pool};
use crate::train::to_f32;

/// What to evaluate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalConfig {
    /// L∞ budgets.
    pub eps: Vec<f32>,
    /// PGD iterations, step size per iteration and random restarts.
    pub pgd_steps: usize,
    pub pgd_step: f32,
    pub restarts: usize,
    /// Severities of every corruption to evaluate (empty: none).
    pub corruption_severities: Vec<u8>,
    pub seed: u64,
}

impl Default for EvalConfig {
    /// The acceptance protocol of issue 4: PGD-50, step 0.01, 5 restarts, at 0.05/0.1/0.15/0.2.
    fn default() -> EvalConfig {
        EvalConfig {
            eps: vec![0.05, 0.1, 0.15, 0.2],
            pgd_steps: 50,
            pgd_step: 0.01,
            restarts: 5,
            corruption_severities: vec![1, 2, 3, 4, 5],
            seed: 0,
        }
    }
}

/// Accuracy under one attack at one budget.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttackResult {
    pub attack: String,
    pub norm: Norm,
    /// The budget as written (the f32 used, printed in shortest decimal form).
    pub eps: f64,
    pub robust_accuracy: f64,
    pub seconds: f64,
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
    let x = to_f32(&test.images);
    let y = &test.labels;
    let n = y.len();
    if n == 0 {
        return Err(ModelError::Input("an empty test set".into()));
    }
    let fraction = |k: usize| k as f64 / n as f64;
    let corr_total = Corruption::ALL.len() * cfg.corruption_severities.len();
    let total = 1 + 2 * cfg.eps.len() + corr_total;
    let mut done = 0;
    progress(done, total, "clean");
    let pred = model.predict(pool, &x, n)?;
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
    for &eps in &eps_sorted {
        let fgsm = Pgd::fgsm(Norm::Linf, eps);
        let pgd = Pgd::linf(eps, cfg.pgd_step, cfg.pgd_steps, cfg.restarts);
        for (name, a) in [
            ("FGSM".to_string(), fgsm),
            (format!("PGD-{}x{}", cfg.pgd_steps, cfg.restarts), pgd),
        ] {
            progress(done, total, &format!("{name} eps {eps}"));
            let t = std::time::Instant::now();
            let out = attack::run(model, pool, &a, &x, y, cfg.seed)?;
            let seconds = t.elapsed().as_secs_f64();
            for (b, s) in broken.iter_mut().zip(&out.success) {
                *b |= *s;
            }
            attacks.push(AttackResult {
                attack: name,
                norm: Norm::Linf,
                eps: decimal(eps),
                robust_accuracy: fraction(out.success.iter().filter(|s| !**s).count()),
                seconds,
            });
            done += 1;
        }
        worst_case.push((
            decimal(eps),
            fraction(broken.iter().filter(|b| !**b).count()),
        ));
    }
    let mut corruptions = Vec::new();
    for c in Corruption::ALL {
        for &s in &cfg.corruption_severities {
            progress(done, total, &format!("{} severity {s}", c.name()));
            let set = corrupt::corrupt_dataset(test, c, s, cfg.seed);
            let p = model.predict(pool, &to_f32(&set.images), n)?;
            let accuracy = fraction(p.iter().zip(y).filter(|(p, y)| p == y).count());
            corruptions.push(CorruptionResult {
                corruption: c.name().into(),
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
            rows: 28,
            cols: 28,
            images: (0..n * 784).map(|_| rng.below(256) as u8).collect(),
            labels: (0..n).map(|i| (i % 10) as u8).collect(),
            sources: Vec::new(),
        }
    }

    /// At eps 0 every attack leaves clean accuracy unchanged; robust accuracy never rises with eps;
    /// the worst case is at most every single attack.
    #[test]
    fn monotone_in_eps_and_equal_to_clean_at_zero() {
        let m = Model::init(&Arch::small_cnn(), 4).unwrap();
        let cfg = EvalConfig {
            eps: vec![0.0, 0.02, 0.05, 0.1],
            pgd_steps: 5,
            pgd_step: 0.01,
            restarts: 1,
            corruption_severities: vec![3],
            seed: 1,
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
        let r = reduction(&e, &e, 0.1);
        assert!(r.is_none() || r == Some(0.0));
    }
}
