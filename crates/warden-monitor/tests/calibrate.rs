//! Calibration to a target false-positive rate, checked exactly and statistically: the conformal
//! threshold is the exact `⌈(n + 1)(1 − α)⌉`-th order statistic (against integer arithmetic), the
//! empirical FPR on fresh clean data averages to the target over many seeds, p-values and
//! thresholds agree, verdict policies order their levels, and the Bonferroni-min ensemble keeps
//! its false-positive guarantee on correlated members. Seeds are fixed, so every run sees the same
//! numbers; the tolerances below are several standard errors wide.

use warden_monitor::detect::{
    Combination, ConformalCalibration, DetectError, Ensemble, PValuePolicy, Verdict, VerdictPolicy,
    calibrate, conformal_rank, fpr_at, histogram, roc_auc, tpr_at,
};

/// SplitMix64 with Box–Muller normals: enough for synthetic scores.
struct TestRng(u64);

impl TestRng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    fn normals(&mut self, n: usize) -> Vec<f64> {
        (0..n).map(|_| self.normal()).collect()
    }
}

#[test]
fn rank_is_the_exact_ceiling() {
    // α = a / 1000 for decimal a: the rank must equal ⌈(n + 1)(1000 − a) / 1000⌉ in integers,
    // including where (n + 1)(1 − α) is a whole number that floating point lands just above.
    for a in [1u64, 5, 10, 25, 50, 100, 250, 500, 900] {
        let alpha = a as f64 / 1000.0;
        for n in 1u64..=400 {
            let exact = ((n + 1) * (1000 - a)).div_ceil(1000);
            match conformal_rank(n as usize, alpha) {
                Ok(k) => assert_eq!(k as u64, exact.max(1), "n = {n}, alpha = {alpha}"),
                Err(DetectError::TooFewCalibration { needed, .. }) => {
                    assert!(exact > n, "n = {n}, alpha = {alpha}: rank {exact} fits");
                    // `needed` is the fewest scores that fit.
                    let fits = |m: u64| ((m + 1) * (1000 - a)).div_ceil(1000) <= m;
                    assert!(
                        fits(needed as u64) && !fits(needed as u64 - 1),
                        "needed {needed}"
                    );
                }
                Err(e) => panic!("unexpected error {e}"),
            }
        }
    }
}

#[test]
fn threshold_is_the_order_statistic() {
    let mut rng = TestRng(1);
    // A shuffled 1..=n, so the k-th smallest is k.
    let shuffled = |n: usize, rng: &mut TestRng| {
        let mut v: Vec<f64> = (1..=n).map(|i| i as f64).collect();
        for i in (1..n).rev() {
            v.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
        }
        v
    };
    for (n, alpha, k) in [
        (99, 0.05, 95),
        (100, 0.1, 91),
        (19, 0.05, 19),
        (1, 0.5, 1),
        (1000, 0.01, 991),
    ] {
        let scores = shuffled(n, &mut rng);
        assert_eq!(
            calibrate(&scores, alpha).expect("enough"),
            k as f64,
            "n = {n}, alpha = {alpha}"
        );
        let cal = ConformalCalibration::new(&scores).expect("valid");
        assert_eq!(cal.threshold(alpha).expect("enough"), k as f64);
    }
    assert_eq!(
        calibrate(&shuffled(18, &mut rng), 0.05),
        Err(DetectError::TooFewCalibration {
            n: 18,
            alpha: 0.05,
            needed: 19
        })
    );
    for alpha in [0.0, 1.0, -0.1, f64::NAN] {
        assert!(matches!(
            calibrate(&[1.0; 50], alpha),
            Err(DetectError::InvalidConfig { .. })
        ));
    }
    assert!(matches!(
        calibrate(&[], 0.1),
        Err(DetectError::TooFewRows { .. })
    ));
}

#[test]
fn empirical_fpr_matches_the_target() {
    // 200 seeds × (1000 calibration, 5000 fresh) N(0, 1) scores at α = 5%. The conformal FPR
    // averages 1 − k/(n + 1) = 1 − 951/1001 ≈ 4.995%; the standard error of the 200-seed mean is
    // about 0.05 points, so ±1 point is 20 standard errors and ±0.25 point still 5.
    let (alpha, seeds, n_cal, n_test) = (0.05, 200, 1000, 5000);
    let mut fprs = Vec::with_capacity(seeds);
    for seed in 0..seeds as u64 {
        let mut rng = TestRng(1000 + seed);
        let threshold = calibrate(&rng.normals(n_cal), alpha).expect("enough");
        fprs.push(fpr_at(&rng.normals(n_test), threshold).expect("valid"));
    }
    let mean = fprs.iter().sum::<f64>() / seeds as f64;
    let expected = 1.0 - 951.0 / 1001.0;
    eprintln!(
        "mean fpr {mean:.5} (expected {expected:.5}), worst seed {:.4}",
        fprs.iter().cloned().fold(0.0, f64::max)
    );
    assert!((mean - alpha).abs() <= 0.01, "mean fpr {mean}");
    assert!((mean - expected).abs() <= 0.0025, "mean fpr {mean}");
    // Each single seed stays within ±2.5 points (the per-seed standard deviation is about 0.75).
    assert!(fprs.iter().all(|f| (f - alpha).abs() <= 0.025), "{fprs:?}");

    // With 20000 calibration and 20000 fresh scores per seed the per-seed standard deviation is
    // about 0.22 point, so every one of 100 seeds must land within ±1 point (4.5 deviations).
    for seed in 0..100u64 {
        let mut rng = TestRng(20_000 + seed);
        let threshold = calibrate(&rng.normals(20_000), alpha).expect("enough");
        let fpr = fpr_at(&rng.normals(20_000), threshold).expect("valid");
        assert!((fpr - alpha).abs() <= 0.01, "seed {seed}: fpr {fpr}");
    }

    // Ties (scores on a 0.25 grid) can only make the rule more conservative.
    let mut tied = Vec::new();
    for seed in 0..50u64 {
        let mut rng = TestRng(5000 + seed);
        let round = |v: Vec<f64>| {
            v.iter()
                .map(|x| (x * 4.0).round() / 4.0)
                .collect::<Vec<_>>()
        };
        let threshold = calibrate(&round(rng.normals(n_cal)), alpha).expect("enough");
        tied.push(fpr_at(&round(rng.normals(n_test)), threshold).expect("valid"));
    }
    let mean_tied = tied.iter().sum::<f64>() / tied.len() as f64;
    assert!(mean_tied <= alpha + 0.0025, "tied mean fpr {mean_tied}");
}

#[test]
fn p_values_agree_with_thresholds() {
    let mut rng = TestRng(7);
    let cal = ConformalCalibration::new(&rng.normals(500)).expect("valid");
    for alpha in [0.01, 0.05, 0.1, 0.3] {
        let t = cal.threshold(alpha).expect("enough");
        for s in rng
            .normals(2000)
            .into_iter()
            .chain([t, t + 1e-12, t - 1e-12])
        {
            let p = cal.p_value(s).expect("finite");
            assert_eq!(
                s > t,
                p <= alpha,
                "s = {s}, t = {t}, p = {p}, alpha = {alpha}"
            );
        }
    }
    // The extremes: above every score gives 1/(n + 1), below every score gives 1.
    assert_eq!(cal.p_value(100.0).expect("finite"), 1.0 / 501.0);
    assert_eq!(cal.p_value(-100.0).expect("finite"), 1.0);
}

#[test]
fn verdict_policies_order_their_levels() {
    let mut rng = TestRng(9);
    let clean = rng.normals(2000);
    let policy = VerdictPolicy::calibrate(&clean, 0.1, 0.01).expect("enough");
    assert!(policy.flag_threshold() < policy.block_threshold());
    assert_eq!(policy.verdict(-5.0), Ok(Verdict::Allow));
    assert_eq!(policy.verdict(policy.flag_threshold()), Ok(Verdict::Allow));
    let between = (policy.flag_threshold() + policy.block_threshold()) / 2.0;
    assert_eq!(policy.verdict(between), Ok(Verdict::Flag));
    assert_eq!(policy.verdict(10.0), Ok(Verdict::Block));
    assert_eq!(policy.verdict(f64::INFINITY), Ok(Verdict::Block));
    assert!(policy.verdict(f64::NAN).is_err());
    assert!(
        VerdictPolicy::calibrate(&clean, 0.01, 0.1).is_err(),
        "block rate above flag rate"
    );
    assert!(VerdictPolicy::new(2.0, 1.0).is_err());
    assert!(
        VerdictPolicy::calibrate(&clean[..50], 0.1, 0.001).is_err(),
        "too few for 0.1%"
    );

    // On fresh clean data, the flag and block rates stay near their targets.
    let fresh = rng.normals(20000);
    let verdicts: Vec<Verdict> = fresh
        .iter()
        .map(|&s| policy.verdict(s).expect("finite"))
        .collect();
    let rate = |v: Verdict| verdicts.iter().filter(|&&x| x == v).count() as f64 / 20000.0;
    assert!(
        (rate(Verdict::Block) - 0.01).abs() < 0.006,
        "block {}",
        rate(Verdict::Block)
    );
    assert!((rate(Verdict::Flag) + rate(Verdict::Block) - 0.1).abs() < 0.02);

    let pp = PValuePolicy::new(0.05, 0.001).expect("valid");
    assert_eq!(pp.verdict(0.5), Ok(Verdict::Allow));
    assert_eq!(pp.verdict(0.05), Ok(Verdict::Flag));
    assert_eq!(pp.verdict(0.001), Ok(Verdict::Block));
    assert!(pp.verdict(1.5).is_err() && pp.verdict(f64::NAN).is_err());
    assert!(PValuePolicy::new(0.001, 0.05).is_err());
}

#[test]
fn bonferroni_ensemble_keeps_the_fpr_guarantee() {
    // Three members: two strongly correlated (the worst case for a union bound is independence,
    // so correlation makes Bonferroni conservative) and one independent. Over 50 seeds at
    // α = 5%, the mean FPR must not exceed α (plus 0.3 point, about 6 standard errors).
    let alpha = 0.05;
    let member = |z: f64, e: f64, f: f64| [z, z + 0.3 * e, f];
    let mut fprs = Vec::new();
    let mut fisher_fprs = Vec::new();
    let mut fisher_independent = Vec::new();
    for seed in 0..50u64 {
        let mut rng = TestRng(9000 + seed);
        let mut draw = |n: usize| -> Vec<[f64; 3]> {
            (0..n)
                .map(|_| member(rng.normal(), rng.normal(), rng.normal()))
                .collect()
        };
        let cal = draw(1000);
        let members: Vec<ConformalCalibration> = (0..3)
            .map(|m| {
                ConformalCalibration::new(&cal.iter().map(|r| r[m]).collect::<Vec<_>>())
                    .expect("valid")
            })
            .collect();
        let bonf = Ensemble::new(members.clone(), Combination::BonferroniMin).expect("valid");
        let fisher = Ensemble::new(members.clone(), Combination::Fisher).expect("valid");
        let independent = Ensemble::new(
            vec![members[0].clone(), members[2].clone()],
            Combination::Fisher,
        )
        .expect("valid");
        let test = draw(4000);
        let rate = |e: &Ensemble, pick: &dyn Fn(&[f64; 3]) -> Vec<f64>| {
            test.iter()
                .filter(|r| e.p_value(&pick(r)).expect("valid") <= alpha)
                .count() as f64
                / 4000.0
        };
        fprs.push(rate(&bonf, &|r| r.to_vec()));
        fisher_fprs.push(rate(&fisher, &|r| r.to_vec()));
        fisher_independent.push(rate(&independent, &|r| vec![r[0], r[2]]));
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    eprintln!(
        "bonferroni {:.4}, fisher on correlated {:.4}, fisher on independent {:.4}",
        mean(&fprs),
        mean(&fisher_fprs),
        mean(&fisher_independent)
    );
    assert!(
        mean(&fprs) <= alpha + 0.003,
        "bonferroni mean fpr {}",
        mean(&fprs)
    );
    assert!(
        mean(&fprs) >= 0.02,
        "bonferroni should not be vacuous: {}",
        mean(&fprs)
    );
    // Fisher is calibrated for independent members (within ±1 point) ...
    assert!(
        (mean(&fisher_independent) - alpha).abs() <= 0.01,
        "{}",
        mean(&fisher_independent)
    );
    // ... and exceeds α on correlated ones, which is why it is not the default.
    assert!(mean(&fisher_fprs) > alpha + 0.005, "{}", mean(&fisher_fprs));
}

#[test]
fn report_functions() {
    assert_eq!(roc_auc(&[0.0, 1.0], &[2.0, 3.0]), Ok(1.0));
    assert_eq!(roc_auc(&[2.0, 3.0], &[0.0, 1.0]), Ok(0.0));
    assert_eq!(roc_auc(&[1.0; 3], &[1.0; 4]), Ok(0.5));
    assert_eq!(tpr_at(&[0.5, 1.0, 1.5, 2.0], 1.0), Ok(0.5));
    assert_eq!(fpr_at(&[0.5, 1.0, 1.5, 2.0], 2.0), Ok(0.0));
    assert!(tpr_at(&[1.0], f64::NAN).is_err());
    // A constant sample: NumPy widens the range by 0.5 either side.
    let h = histogram(&[3.0; 5], 2, None).expect("valid");
    assert_eq!(h.edges, vec![2.5, 3.0, 3.5]);
    assert_eq!(h.counts, vec![0, 5]);
}
