//! Novelty validation by leaving one class out, and the out-of-distribution channel it chooses.
//!
//! Out-of-distribution data cannot be used to tune a monitor without tuning it to that data, and
//! clean held-out data says nothing about which detectors see novel inputs. Leaving a class out is
//! the usual way around it in open-set recognition: for each held-out class `c`, the detectors
//! that are fitted on data (Mahalanobis, kNN, PCA, ...) are fitted again on the reference rows of
//! the other classes and calibrated on split A without `c`; split B's rows of `c` are then novel to
//! them, and split B's other rows are clean. No data outside the training set is involved.
//!
//! The detectors that read only the model (max-softmax, energy, feature squeezing) cannot forget a
//! class the model was trained on, so they are measured as they are: their novelty signal here is
//! close to chance and underestimates what they see on inputs the model never saw. The selection
//! is therefore a statement about the data-fitted detectors and should be read as such.
//!
//! The channel is chosen by greedy forward selection: starting from no member, add the member whose
//! addition gives the highest mean (over held-out classes) AUROC of the Bonferroni combination of
//! the chosen members' conformal p-values, and stop when no addition improves it by more than
//! [`MIN_GAIN`]. Its score is `−ln p` of that combination; its thresholds are order statistics on
//! split B like the ensemble's, so its false-positive guarantee is the same.

use anyhow::{Result, ensure};
use serde_json::{Value, json};
use warden_monitor::detect::{ConformalCalibration, roc_auc};

/// The smallest gain in mean AUROC for which greedy selection adds a member.
pub(crate) const MIN_GAIN: f64 = 1e-4;

/// One held-out class: every member's conformal p-values on split B's clean rows (the other
/// classes) and on its novel rows (the held-out class), member-major.
pub(crate) struct Fold {
    pub class: usize,
    pub clean: Vec<Vec<f64>>,
    pub novel: Vec<Vec<f64>>,
}

impl Fold {
    /// A fold from each member's calibration scores (split A without the class) and its scores on
    /// split B's clean and novel rows.
    pub(crate) fn new(
        class: usize,
        calibration: &[Vec<f64>],
        clean: &[Vec<f64>],
        novel: &[Vec<f64>],
    ) -> Result<Fold> {
        ensure!(
            calibration.len() == clean.len() && clean.len() == novel.len(),
            "internal: members disagree across the fold's parts"
        );
        ensure!(
            !novel.first().is_none_or(Vec::is_empty) && !clean.first().is_none_or(Vec::is_empty),
            "held-out class {class}: no rows of it, or no other rows, in split B"
        );
        let mut pc = Vec::with_capacity(clean.len());
        let mut pn = Vec::with_capacity(clean.len());
        for ((cal, c), n) in calibration.iter().zip(clean).zip(novel) {
            let cal = ConformalCalibration::new(cal)?;
            pc.push(
                c.iter()
                    .map(|&s| cal.p_value(s))
                    .collect::<Result<_, _>>()?,
            );
            pn.push(
                n.iter()
                    .map(|&s| cal.p_value(s))
                    .collect::<Result<_, _>>()?,
            );
        }
        Ok(Fold {
            class,
            clean: pc,
            novel: pn,
        })
    }
}

/// `−ln min(1, k · min_j p_j)` over the chosen members, for each row (`p` is member-major; only
/// the chosen members' rows are read, and they must be of one length).
pub(crate) fn bonferroni_scores(p: &[Vec<f64>], chosen: &[usize]) -> Vec<f64> {
    let rows = chosen.first().map_or(0, |&j| p[j].len());
    let k = chosen.len() as f64;
    (0..rows)
        .map(|i| {
            let min = chosen.iter().map(|&j| p[j][i]).fold(1.0f64, f64::min);
            -(k * min).clamp(f64::MIN_POSITIVE, 1.0).ln()
        })
        .collect()
}

/// Mean over the folds of the AUROC of the chosen members' combination, and the per-fold values.
fn mean_auroc(folds: &[Fold], chosen: &[usize]) -> Result<(f64, Vec<f64>)> {
    let per: Vec<f64> = folds
        .iter()
        .map(|f| {
            Ok(roc_auc(
                &bonferroni_scores(&f.clean, chosen),
                &bonferroni_scores(&f.novel, chosen),
            )?)
        })
        .collect::<Result<_>>()?;
    Ok((per.iter().sum::<f64>() / per.len() as f64, per))
}

/// The chosen members (indices, in the order they were added) and the report of the selection.
pub(crate) fn select(folds: &[Fold], names: &[String]) -> Result<(Vec<usize>, Value)> {
    ensure!(
        !folds.is_empty(),
        "novelty validation needs a held-out class"
    );
    let m = names.len();
    ensure!(
        folds.iter().all(|f| f.clean.len() == m),
        "internal: folds and members disagree"
    );
    let mut single = Vec::with_capacity(m);
    for (j, name) in names.iter().enumerate() {
        let (mean, per) = mean_auroc(folds, &[j])?;
        single.push(json!({"name": name, "mean_auroc": mean, "per_class": per}));
    }
    let mut chosen: Vec<usize> = Vec::new();
    let mut best = 0.5;
    let mut path = Vec::new();
    loop {
        let mut step: Option<(usize, f64)> = None;
        for j in (0..m).filter(|j| !chosen.contains(j)) {
            let mut trial = chosen.clone();
            trial.push(j);
            let (mean, _) = mean_auroc(folds, &trial)?;
            if step.is_none_or(|(_, b)| mean > b) {
                step = Some((j, mean));
            }
        }
        match step {
            Some((j, mean)) if mean > best + MIN_GAIN => {
                chosen.push(j);
                best = mean;
                path.push(json!({"added": names[j], "mean_auroc": mean}));
            }
            _ => break,
        }
    }
    ensure!(
        !chosen.is_empty(),
        "novelty validation: no member does better than chance on any held-out class"
    );
    let (mean, per) = mean_auroc(folds, &chosen)?;
    let report = json!({
        "method": "leave one class out: data-fitted members refitted without the class and calibrated on split A without it; split B's rows of the class are novel, its other rows clean; greedy forward selection on the mean AUROC of the Bonferroni combination",
        "held_out_classes": folds.iter().map(|f| f.class).collect::<Vec<_>>(),
        "min_gain": MIN_GAIN,
        "members": single,
        "path": path,
        "chosen": chosen.iter().map(|&j| names[j].as_str()).collect::<Vec<_>>(),
        "mean_auroc": mean,
        "per_class_auroc": per,
    });
    Ok((chosen, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Member 0 separates novel rows perfectly, member 1 partly, member 2 not at all.
    fn folds() -> Vec<Fold> {
        let cal: Vec<f64> = (0..100).map(f64::from).collect();
        let clean: Vec<f64> = (0..50).map(|i| f64::from(i) * 2.0).collect();
        let strong: Vec<f64> = (0..20).map(|i| 200.0 + f64::from(i)).collect();
        let partial: Vec<f64> = (0..20).map(|i| 60.0 + f64::from(i) * 3.0).collect();
        let none: Vec<f64> = (0..20).map(|i| f64::from(i) * 5.0).collect();
        (0..2)
            .map(|c| {
                Fold::new(
                    c,
                    &[cal.clone(), cal.clone(), cal.clone()],
                    &[clean.clone(), clean.clone(), clean.clone()],
                    &[strong.clone(), partial.clone(), none.clone()],
                )
                .expect("valid fold")
            })
            .collect()
    }

    #[test]
    fn selection_takes_the_separating_member_and_stops() {
        let names: Vec<String> = ["strong", "partial", "none"].map(String::from).to_vec();
        let (chosen, report) = select(&folds(), &names).expect("selects");
        // Adding a weaker member to a perfect one can only dilute it: the path stops at one.
        assert_eq!(chosen, vec![0]);
        assert_eq!(report["mean_auroc"], 1.0);
        let single = report["members"].as_array().expect("members");
        let auc = |j: usize| single[j]["mean_auroc"].as_f64().expect("auroc");
        assert!(auc(0) > auc(1) && auc(1) > auc(2), "{single:?}");
    }

    #[test]
    fn bonferroni_scores_are_minus_log_of_the_capped_minimum() {
        let p = vec![vec![0.5, 0.01], vec![0.2, 0.9]];
        let s = bonferroni_scores(&p, &[0, 1]);
        assert!((s[0] - -(0.4f64).ln()).abs() < 1e-12);
        assert!((s[1] - -(0.02f64).ln()).abs() < 1e-12);
        assert_eq!(bonferroni_scores(&p, &[1])[1], -(0.9f64).ln());
    }

    #[test]
    fn an_empty_class_is_an_error() {
        let cal: Vec<f64> = (0..10).map(f64::from).collect();
        assert!(Fold::new(3, std::slice::from_ref(&cal), &[vec![1.0]], &[Vec::new()]).is_err());
    }
}
