//! Membership inference: does a model give away which examples it was trained on? The empirical
//! check of a privacy claim.
//!
//! - Loss threshold (Yeom et al. 2018): a training example tends to have a lower loss. Scored over
//!   all thresholds at once: the AUC, and the true-positive rate at low false-positive rates (the
//!   figure Carlini et al. 2022 argue matters).
//! - Shadow models (Shokri et al. 2017, in its threshold form): models trained like the target on
//!   data of known membership give the loss threshold (global, and one per class) that separates
//!   members from non-members best; applied to the target, it is an attack whose accuracy needs no
//!   knowledge of the target's members.

use serde::Serialize;

use crate::nn::{Model, ModelError, Pool, softmax_xent};

/// Cross-entropy loss of every example.
pub fn losses(model: &Model, pool: &mut Pool, x: &[f32], y: &[u8]) -> Result<Vec<f32>, ModelError> {
    let n = y.len();
    let len = model.input_len();
    if x.len() != n * len {
        return Err(ModelError::Input(format!(
            "{} values for {n} examples of {len}",
            x.len()
        )));
    }
    let classes = model.classes();
    let mut out = vec![0.0f32; n];
    pool.run(n, model.least_per_thread(), &mut out, |ws, r, part| {
        let mut d = Vec::new();
        let chunk = model.chunk(256);
        for start in (r.start..r.end).step_by(chunk) {
            let end = (start + chunk).min(r.end);
            let logits = model.forward(ws, &x[start * len..end * len], end - start)?;
            softmax_xent(
                logits,
                &y[start..end],
                classes,
                1.0,
                &mut d,
                Some(&mut part[start - r.start..end - r.start]),
            );
        }
        Ok::<(), ModelError>(())
    })?;
    Ok(out)
}

/// How well "lower loss means member" separates members from non-members.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LossAttack {
    pub members: usize,
    pub non_members: usize,
    /// Area under the ROC curve (0.5: no information), ties counted half.
    pub auc: f64,
    /// (false-positive rate, true-positive rate) at the strictest thresholds meeting each rate.
    pub tpr_at_fpr: Vec<(f64, f64)>,
    /// Best `TPR − FPR` over thresholds (membership advantage).
    pub advantage: f64,
    pub mean_member_loss: f64,
    pub mean_non_member_loss: f64,
}

/// Scores the loss-threshold attack. NaN losses are refused.
pub fn loss_attack(member: &[f32], non_member: &[f32]) -> Result<LossAttack, String> {
    if member.is_empty() || non_member.is_empty() {
        return Err("membership inference needs members and non-members".into());
    }
    if member.iter().chain(non_member).any(|v| v.is_nan()) {
        return Err("a loss is NaN".into());
    }
    // Score = −loss; sort all examples by score descending, sweep thresholds.
    let mut all: Vec<(f32, bool)> = member
        .iter()
        .map(|&l| (l, true))
        .chain(non_member.iter().map(|&l| (l, false)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (p, n) = (member.len() as f64, non_member.len() as f64);
    // AUC (Mann–Whitney): P(loss_member < loss_non_member) + ½ P(equal).
    let mut auc = 0.0f64;
    let mut non_below = 0.0f64;
    let mut i = 0;
    let mut roc = vec![(0.0f64, 0.0f64)];
    let (mut tp, mut fp) = (0.0f64, 0.0f64);
    while i < all.len() {
        let mut j = i;
        let (mut m, mut nm) = (0.0f64, 0.0f64);
        while j < all.len() && all[j].0 == all[i].0 {
            if all[j].1 {
                m += 1.0;
            } else {
                nm += 1.0;
            }
            j += 1;
        }
        // Members at this loss beat every non-member with a higher loss, tie with those equal.
        auc += m * (n - non_below - nm) + 0.5 * m * nm;
        non_below += nm;
        tp += m;
        fp += nm;
        roc.push((fp / n, tp / p));
        i = j;
    }
    auc /= p * n;
    let tpr_at = |target: f64| {
        roc.iter()
            .filter(|(f, _)| *f <= target + 1e-12)
            .map(|(_, t)| *t)
            .fold(0.0, f64::max)
    };
    let tpr_at_fpr = [0.001, 0.01, 0.1].iter().map(|&f| (f, tpr_at(f))).collect();
    let advantage = roc.iter().map(|(f, t)| t - f).fold(0.0, f64::max);
    let mean = |v: &[f32]| v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len() as f64;
    Ok(LossAttack {
        members: member.len(),
        non_members: non_member.len(),
        auc,
        tpr_at_fpr,
        advantage,
        mean_member_loss: mean(member),
        mean_non_member_loss: mean(non_member),
    })
}

/// The loss threshold that best separates members (loss ≤ threshold) from non-members, by
/// balanced accuracy, and that accuracy.
pub fn best_threshold(member: &[f32], non_member: &[f32]) -> (f32, f64) {
    let mut cands: Vec<f32> = member
        .iter()
        .chain(non_member)
        .copied()
        .filter(|v| !v.is_nan())
        .collect();
    cands.sort_by(f32::total_cmp);
    cands.dedup();
    let mut m = member.to_vec();
    let mut nm = non_member.to_vec();
    m.sort_by(f32::total_cmp);
    nm.sort_by(f32::total_cmp);
    let below = |v: &[f32], t: f32| v.partition_point(|&x| x <= t) as f64;
    let mut best = (f32::NEG_INFINITY, 0.5);
    for &t in &cands {
        let tpr = below(&m, t) / m.len().max(1) as f64;
        let tnr = 1.0 - below(&nm, t) / nm.len().max(1) as f64;
        let acc = 0.5 * (tpr + tnr);
        if acc > best.1 {
            best = (t, acc);
        }
    }
    best
}

/// Balanced accuracy of "member when loss ≤ threshold".
pub fn threshold_accuracy(member: &[f32], non_member: &[f32], threshold: f32) -> f64 {
    let tpr =
        member.iter().filter(|&&l| l <= threshold).count() as f64 / member.len().max(1) as f64;
    let tnr = non_member.iter().filter(|&&l| l > threshold).count() as f64
        / non_member.len().max(1) as f64;
    0.5 * (tpr + tnr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_of_known_distributions() {
        // Perfect separation, its reverse, and no information.
        let a = loss_attack(&[0.1, 0.2, 0.3], &[0.5, 0.6]).unwrap();
        assert_eq!(a.auc, 1.0);
        assert_eq!(a.advantage, 1.0);
        assert_eq!(a.tpr_at_fpr[0], (0.001, 1.0));
        assert_eq!(loss_attack(&[0.5, 0.6], &[0.1, 0.2]).unwrap().auc, 0.0);
        assert_eq!(loss_attack(&[0.3, 0.3], &[0.3, 0.3]).unwrap().auc, 0.5);
        // Hand-computed: members {1, 3}, non-members {2, 4}: pairs (1<2, 1<4, 3>2, 3<4) → 3/4.
        assert_eq!(loss_attack(&[1.0, 3.0], &[2.0, 4.0]).unwrap().auc, 0.75);
        assert!(loss_attack(&[], &[1.0]).is_err());
        assert!(loss_attack(&[f32::NAN], &[1.0]).is_err());
    }

    #[test]
    fn threshold_separates() {
        let (t, acc) = best_threshold(&[0.1, 0.2, 0.3], &[0.5, 0.6]);
        assert!((0.3..0.5).contains(&t) && acc == 1.0);
        assert_eq!(threshold_accuracy(&[0.1, 0.9], &[0.5, 0.6], 0.3), 0.75);
    }
}
