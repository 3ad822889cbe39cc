//! Property tests for the stream detectors of `warden_monitor::stream`, on seeded synthetic
//! streams from `stats::Rng`: the mean run length before a false alarm on stationary data stays
//! above a stated figure, the delay after a change stays below a stated figure, and hostile
//! inputs give errors. The seeds are fixed, so each outcome is deterministic; the figures leave a
//! margin around what the detectors' theory (quoted at each test) predicts and what was measured.

use warden_monitor::stats::{RbfKernel, Rng};
use warden_monitor::stream::{
    Adwin, AdwinConfig, AlarmRule, ChiSquareShift, ChiSquareShiftConfig, Correction, Cusum,
    CusumConfig, Direction, MmdThreshold, OnlineMmd, OnlineMmdConfig, PageHinkley,
    PageHinkleyConfig, Prada, PradaConfig, StreamError, WindowKs, WindowKsConfig, WindowMmd,
    WindowMmdConfig, mmd2_null_quantile,
};

fn normals(rng: &mut Rng, n: usize, shift: f64) -> Vec<f64> {
    (0..n).map(|_| rng.standard_normal() + shift).collect()
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

/// Observations until the first alarm (1-based), or `cap` when none comes.
fn run_length(cap: u64, mut step: impl FnMut() -> bool) -> f64 {
    (1..=cap).find(|_| step()).unwrap_or(cap) as f64
}

#[test]
fn cusum_run_length_and_delay_match_theory() {
    let reference = normals(&mut Rng::new(1), 5000, 0.0);
    let config = CusumConfig::default();
    // Siegmund's approximation for k = 0.5, h = 5: ARL0 ≈ 938 in control, ≈ 10.4 after a shift of
    // one standard deviation. Measured: 970 and 10.7 on these seeds.
    let mut in_control = Vec::new();
    let mut delays = Vec::new();
    for seed in 0..200u64 {
        let mut rng = Rng::new(100 + seed);
        let mut cusum = Cusum::fit(&reference, config).expect("valid reference");
        in_control.push(run_length(20_000, || {
            cusum
                .update(rng.standard_normal())
                .expect("finite")
                .is_some()
        }));
        let mut cusum = Cusum::fit(&reference, config).expect("valid reference");
        delays.push(run_length(20_000, || {
            cusum
                .update(rng.standard_normal() + 1.0)
                .expect("finite")
                .is_some()
        }));
    }
    assert!(
        mean(&in_control) >= 700.0,
        "in-control run length {}",
        mean(&in_control)
    );
    assert!(mean(&delays) <= 13.0, "mean delay {}", mean(&delays));
    assert!(max(&delays) <= 40.0, "worst delay {}", max(&delays));

    // The alarm carries the statistic and restarts it.
    let mut cusum = Cusum::fit(&reference, config).expect("valid reference");
    let alarm = (0..100)
        .find_map(|_| cusum.update(10.0).expect("finite"))
        .expect("a jump of 10 standard deviations is flagged");
    assert_eq!(alarm.index, 0);
    assert_eq!(alarm.rule, AlarmRule::Above);
    assert!(alarm.statistic > alarm.threshold && alarm.threshold == 5.0);
    assert_eq!(cusum.statistic(), 0.0);
}

#[test]
fn page_hinkley_run_length_and_delay() {
    // δ = 0.5 and λ = 10 on standardized scores: a CUSUM with k = 0.5 and h = 10 against the
    // running mean. Measured on these seeds: no false alarm before 1,081 observations, mean
    // censored run length 9,743 of 10,000; delay after a shift of 1 at observation 500: mean 19.7,
    // worst 44.
    let config = PageHinkleyConfig {
        delta: 0.5,
        threshold: 10.0,
        direction: Direction::Up,
        ..PageHinkleyConfig::default()
    };
    let mut in_control = Vec::new();
    let mut delays = Vec::new();
    for seed in 0..100u64 {
        let mut rng = Rng::new(2000 + seed);
        let mut ph = PageHinkley::new(config).expect("valid config");
        in_control.push(run_length(10_000, || {
            ph.update(rng.standard_normal()).expect("finite").is_some()
        }));
        let mut ph = PageHinkley::new(config).expect("valid config");
        for _ in 0..500 {
            ph.update(rng.standard_normal()).expect("finite");
        }
        delays.push(run_length(10_000, || {
            ph.update(rng.standard_normal() + 1.0)
                .expect("finite")
                .is_some()
        }));
    }
    assert!(
        mean(&in_control) >= 5000.0,
        "censored run length {}",
        mean(&in_control)
    );
    assert!(
        in_control.iter().all(|&r| r >= 500.0),
        "a false alarm before 500"
    );
    assert!(mean(&delays) <= 30.0, "mean delay {}", mean(&delays));
    assert!(max(&delays) <= 80.0, "worst delay {}", max(&delays));

    // Direction matters: a decrease is invisible to Up and seen by Down and Both.
    for (direction, expect) in [
        (Direction::Up, false),
        (Direction::Down, true),
        (Direction::Both, true),
    ] {
        let mut rng = Rng::new(7);
        let mut ph = PageHinkley::new(PageHinkleyConfig {
            direction,
            ..config
        })
        .expect("valid");
        let mut flagged = false;
        for t in 0..1000 {
            let x = rng.standard_normal() - if t >= 300 { 2.0 } else { 0.0 };
            flagged |= ph
                .update(x)
                .expect("finite")
                .is_some_and(|a| a.index >= 300);
        }
        assert_eq!(flagged, expect, "{direction:?}");
    }
}

#[test]
fn adwin_is_quiet_on_stationary_bernoulli_and_fast_on_a_jump() {
    let bernoulli = |rng: &mut Rng, p: f64| if rng.next_f64() < p { 1.0 } else { 0.0 };
    // No alarm on 10,000 stationary Bernoulli(0.2) samples for most seeds (measured: none of 30).
    let mut noisy_seeds = 0;
    for seed in 0..20u64 {
        let mut rng = Rng::new(3000 + seed);
        let mut adwin = Adwin::new(AdwinConfig::default()).expect("valid config");
        let alarms = (0..10_000)
            .filter(|_| {
                adwin
                    .update(bernoulli(&mut rng, 0.2))
                    .expect("finite")
                    .is_some()
            })
            .count();
        noisy_seeds += usize::from(alarms > 0);
        assert!(
            adwin.width() > 5000,
            "the window keeps growing on stationary data"
        );
    }
    assert!(
        noisy_seeds <= 2,
        "{noisy_seeds} of 20 stationary streams raised an alarm"
    );

    // A jump 0.2 -> 0.8 after 1,000 samples: an alarm within 150 (measured: at most 56, the clock
    // being 32), and 300 samples after the jump the window holds mostly new data.
    for seed in 0..20u64 {
        let mut rng = Rng::new(4000 + seed);
        let mut adwin = Adwin::new(AdwinConfig::default()).expect("valid config");
        for _ in 0..1000 {
            adwin.update(bernoulli(&mut rng, 0.2)).expect("finite");
        }
        let before = adwin.width();
        let mut first = None;
        for t in 0..300u64 {
            if adwin
                .update(bernoulli(&mut rng, 0.8))
                .expect("finite")
                .is_some()
            {
                first.get_or_insert(t + 1);
            }
        }
        let delay = first.expect("the jump is detected");
        assert!(delay <= 150, "seed {seed}: delay {delay}");
        assert!(
            before >= 1000 && adwin.width() < 400,
            "seed {seed}: width {}",
            adwin.width()
        );
        assert!(
            (adwin.mean() - 0.8).abs() < 0.12,
            "seed {seed}: mean {}",
            adwin.mean()
        );
    }

    // A real-valued stream: N(0, 1) then N(1, 1) (measured: no false alarm, delay at most 80).
    for seed in 0..10u64 {
        let mut rng = Rng::new(5000 + seed);
        let mut adwin = Adwin::new(AdwinConfig::default()).expect("valid config");
        for _ in 0..2000 {
            assert!(
                adwin
                    .update(rng.standard_normal())
                    .expect("finite")
                    .is_none()
            );
        }
        let delay = run_length(2000, || {
            adwin
                .update(rng.standard_normal() + 1.0)
                .expect("finite")
                .is_some()
        });
        assert!(delay <= 200.0, "seed {seed}: delay {delay}");
    }
}

#[test]
fn window_ks_run_length_and_delay() {
    let reference = normals(&mut Rng::new(5), 500, 0.0);
    let config = WindowKsConfig {
        stride: 10,
        alpha: 0.001,
        ..WindowKsConfig::new(100)
    };
    // Tests every 10 observations at level 0.001 on overlapping windows. Measured on these
    // seeds: mean censored run length 4,724 of 5,000 (shortest 610); after a shift of 1 standard
    // deviation, delay 44 on average and 60 at worst.
    let mut in_control = Vec::new();
    let mut delays = Vec::new();
    for seed in 0..30u64 {
        let mut rng = Rng::new(6000 + seed);
        let mut ks = WindowKs::fit(&reference, 1, config).expect("valid reference");
        in_control.push(run_length(5000, || {
            ks.update(&[rng.standard_normal()])
                .expect("finite")
                .is_some()
        }));
        let mut ks = WindowKs::fit(&reference, 1, config).expect("valid reference");
        for _ in 0..100 {
            ks.update(&[rng.standard_normal()]).expect("finite");
        }
        delays.push(run_length(1000, || {
            ks.update(&[rng.standard_normal() + 1.0])
                .expect("finite")
                .is_some()
        }));
    }
    assert!(
        mean(&in_control) >= 3000.0,
        "censored run length {}",
        mean(&in_control)
    );
    assert!(mean(&delays) <= 60.0, "mean delay {}", mean(&delays));
    assert!(max(&delays) <= 100.0, "worst delay {}", max(&delays));

    // Three features, a shift in the second only: Bonferroni level alpha / 3, and the second
    // feature holds the smallest p-value.
    let mut rng = Rng::new(8);
    let reference = normals(&mut rng, 3 * 300, 0.0);
    let config = WindowKsConfig {
        alpha: 0.01,
        ..WindowKsConfig::new(60)
    };
    let mut ks = WindowKs::fit(&reference, 3, config).expect("valid reference");
    assert_eq!(ks.level(), 0.01 / 3.0);
    let alarm = (0..200)
        .find_map(|_| {
            let x = [
                rng.standard_normal(),
                rng.standard_normal() + 1.5,
                rng.standard_normal(),
            ];
            ks.update(&x).expect("finite")
        })
        .expect("the shifted feature is detected");
    assert!(alarm.index >= 59, "no test before the window is full");
    assert_eq!(alarm.rule, AlarmRule::Below);
    let p = ks.p_values();
    assert!(
        p[1] < p[0] && p[1] < p[2] && alarm.statistic == p[1],
        "p-values {p:?}"
    );
    let none = WindowKs::fit(
        &reference,
        3,
        WindowKsConfig {
            correction: Correction::None,
            ..config
        },
    )
    .expect("valid reference");
    assert_eq!(none.level(), 0.01);
}

/// The window KS decides by a critical statistic found at fit time; its alarms and p-values are
/// exactly those of `ks_2samp` on each window, for the exact and the asymptotic p-value, with ties
/// (values rounded to a coarse grid) and without.
#[test]
fn window_ks_decisions_equal_ks_2samp_on_every_window() {
    use warden_monitor::stats::{KsMethod, ks_2samp};
    for (method, round) in [
        (KsMethod::Auto, false),
        (KsMethod::Asymptotic, false),
        (KsMethod::Auto, true),
    ] {
        let mut rng = Rng::new(11);
        let q = |v: f64| if round { (v * 4.0).round() / 4.0 } else { v };
        let reference: Vec<f64> = normals(&mut rng, 300, 0.0).into_iter().map(q).collect();
        let config = WindowKsConfig {
            alpha: 0.01,
            method,
            ..WindowKsConfig::new(40)
        };
        let mut ks = WindowKs::fit(&reference, 1, config).expect("valid reference");
        let mut window = std::collections::VecDeque::new();
        let (mut alarms, mut tests) = (0, 0);
        for i in 0..600 {
            let x = q(rng.standard_normal() + if i >= 300 { 0.6 } else { 0.0 });
            window.push_back(x);
            if window.len() > 40 {
                window.pop_front();
            }
            let alarm = ks.update(&[x]).expect("finite");
            if window.len() < 40 {
                assert!(alarm.is_none());
                continue;
            }
            tests += 1;
            let w: Vec<f64> = window.iter().copied().collect();
            let want = ks_2samp(&reference, &w, method).expect("valid samples");
            assert_eq!(ks.p_values(), vec![want.p_value], "{method:?} at {i}");
            assert_eq!(alarm.is_some(), want.p_value < 0.01, "{method:?} at {i}");
            if let Some(a) = alarm {
                assert_eq!(a.statistic, want.p_value);
                alarms += 1;
            }
        }
        assert!(
            tests > 500 && alarms > 50,
            "{method:?}: {alarms} alarms in {tests} tests"
        );
    }
}

#[test]
fn window_mmd_with_a_null_quantile_and_with_permutations() {
    let dim = 2;
    let mut rng = Rng::new(9);
    let reference = normals(&mut rng, 300 * dim, 0.0);
    let held_out = normals(&mut rng, 300 * dim, 0.0);
    let kernel = RbfKernel::new(1.0).expect("positive");
    let threshold = mmd2_null_quantile(&reference, &held_out, dim, 30, kernel, 0.999, 10_000, 1)
        .expect("valid inputs");
    let config = WindowMmdConfig {
        window: 30,
        stride: 5,
        sigma: Some(1.0),
        threshold: MmdThreshold::Statistic(threshold),
    };
    // Tests every 5 observations at the 0.999 null quantile: 2,000 tests on 5 streams of 2,000
    // give about 2 false alarms, more as they cluster on overlapping windows (measured: 5); at
    // most 8 pass. A shift of 1 in both coordinates is flagged within 30 observations (measured:
    // 15 to 20).
    let mut false_alarms = 0;
    let mut delays = Vec::new();
    for seed in 0..5u64 {
        let mut rng = Rng::new(7000 + seed);
        let mut mmd = WindowMmd::fit(&reference, dim, config).expect("valid reference");
        for _ in 0..2000 {
            false_alarms += usize::from(
                mmd.update(&normals(&mut rng, dim, 0.0))
                    .expect("finite")
                    .is_some(),
            );
        }
        delays.push(run_length(500, || {
            mmd.update(&normals(&mut rng, dim, 1.0))
                .expect("finite")
                .is_some()
        }));
    }
    assert!(false_alarms <= 8, "{false_alarms} false alarms");
    assert!(max(&delays) <= 30.0, "delays {delays:?}");

    // The permutation mode on the same data: quiet, then a p-value below alpha after the shift.
    let config = WindowMmdConfig {
        window: 30,
        stride: 10,
        sigma: None,
        threshold: MmdThreshold::Permutation {
            alpha: 0.01,
            permutations: 199,
            seed: 3,
        },
    };
    // 99 permutations could never give a p-value below 0.01: refused.
    let never = MmdThreshold::Permutation {
        alpha: 0.01,
        permutations: 99,
        seed: 3,
    };
    assert!(matches!(
        WindowMmd::fit(
            &reference,
            dim,
            WindowMmdConfig {
                threshold: never,
                ..config
            }
        ),
        Err(StreamError::InvalidConfig { .. })
    ));
    let mut mmd = WindowMmd::fit(&reference, dim, config).expect("valid reference");
    let mut rng = Rng::new(11);
    let quiet = (0..200)
        .filter(|_| {
            mmd.update(&normals(&mut rng, dim, 0.0))
                .expect("finite")
                .is_some()
        })
        .count();
    assert!(quiet <= 1, "{quiet} alarms on stationary data");
    let alarm = (0..40)
        .find_map(|_| mmd.update(&normals(&mut rng, dim, 1.5)).expect("finite"))
        .expect("a shift of 1.5 is flagged within 40 observations");
    assert_eq!(alarm.rule, AlarmRule::Below);
    assert!(alarm.statistic < 0.01);
}

#[test]
fn online_mmd_run_length_matches_the_expected_run_time() {
    let dim = 2;
    let reference = normals(&mut Rng::new(7), 800 * dim, 0.0);
    let ert = 200.0;
    let window = 20;
    let config = OnlineMmdConfig {
        bootstraps: 50,
        seed: 3,
        ..OnlineMmdConfig::new(window, ert)
    };
    let detector = OnlineMmd::fit(&reference, dim, config).expect("valid reference");
    // Run length counted from the first full window, so that the W - 1 filling steps do not
    // count. Measured on these seeds: mean 203 for an ERT of 200 (100 streams; the standard
    // error of a geometric mean run length over 100 streams is about 20). A shift of 1 in both
    // coordinates is then flagged in 11.9 observations on average, 20 at worst.
    let mut run_lengths = Vec::new();
    let mut delays = Vec::new();
    for seed in 0..100u64 {
        let mut rng = Rng::new(8000 + seed);
        let mut d = detector.clone();
        let rl = run_length(20_000, || {
            d.update(&normals(&mut rng, dim, 0.0))
                .expect("finite")
                .is_some()
        });
        run_lengths.push(rl - (window - 1) as f64);
        let mut d = detector.clone();
        d.reset();
        for _ in 0..window {
            d.update(&normals(&mut rng, dim, 0.0)).expect("finite");
        }
        delays.push(run_length(5000, || {
            d.update(&normals(&mut rng, dim, 1.0))
                .expect("finite")
                .is_some()
        }));
    }
    let mrl = mean(&run_lengths);
    assert!(
        (0.6 * ert..=1.5 * ert).contains(&mrl),
        "mean run length {mrl} for an ERT of {ert}"
    );
    assert!(
        mean(&delays) <= window as f64,
        "mean delay {}",
        mean(&delays)
    );
    assert!(
        max(&delays) <= 3.0 * window as f64,
        "worst delay {}",
        max(&delays)
    );
    assert!(detector.threshold() > 0.0 && detector.statistic().is_nan());
}

#[test]
fn chi_square_shift_detects_a_change_of_class_proportions() {
    let draw = |rng: &mut Rng, p: [f64; 3]| -> u32 {
        let u = rng.next_f64();
        if u < p[0] {
            0
        } else if u < p[0] + p[1] {
            1
        } else {
            2
        }
    };
    let before = [0.5, 0.3, 0.2];
    let after = [0.3, 0.3, 0.4];
    let mut rng = Rng::new(12);
    let reference: Vec<u32> = (0..2000).map(|_| draw(&mut rng, before)).collect();
    let config = ChiSquareShiftConfig {
        window: 200,
        stride: 10,
        alpha: 0.001,
    };
    let from_labels = ChiSquareShift::from_reference_labels(&reference, 3, config).expect("valid");
    let from_proportions = ChiSquareShift::from_proportions(&before, config).expect("valid");
    // Level 0.001 every 10 labels: on 5 streams of 3,000 stationary labels at most 3 false alarms
    // in all; a shift of the proportions is flagged within 150 labels.
    for detector in [from_labels, from_proportions] {
        let mut false_alarms = 0;
        for seed in 0..5u64 {
            let mut rng = Rng::new(9000 + seed);
            let mut d = detector.clone();
            for _ in 0..3000 {
                false_alarms += usize::from(
                    d.update(draw(&mut rng, before))
                        .expect("in range")
                        .is_some(),
                );
            }
            let delay = run_length(1000, || {
                d.update(draw(&mut rng, after)).expect("in range").is_some()
            });
            assert!(delay <= 150.0, "seed {seed}: delay {delay}");
            assert!(d.last_p_value() < 0.001);
        }
        assert!(false_alarms <= 3, "{false_alarms} false alarms");
    }
}

#[test]
fn prada_flags_synthetic_query_patterns_and_not_natural_ones() {
    let dim = 10;
    let config = PradaConfig {
        delta: 0.95,
        min_queries: 100,
        ..PradaConfig::default()
    };
    let mut prada: Prada<String> = Prada::new(dim, config).expect("valid config");
    let mut rng = Rng::new(13);
    let benign = "benign".to_string();
    let labelled = "labelled".to_string();
    let attacker = "attacker".to_string();
    // Natural queries: Gaussian, one class, and uniform with 10 predicted classes. Measured W:
    // 0.995 and 0.997 after 400 queries.
    for _ in 0..400 {
        assert!(
            prada
                .update(&benign, &normals(&mut rng, dim, 0.0), 0)
                .expect("valid")
                .is_none()
        );
        let q: Vec<f64> = (0..dim).map(|_| rng.next_f64()).collect();
        let class = rng.below(10) as u32;
        assert!(prada.update(&labelled, &q, class).expect("valid").is_none());
    }
    assert!(prada.last_w(&benign).is_some_and(|w| w > 0.98));
    // An extraction-like client: every tenth query fresh, the others a ±0.1 step in every
    // coordinate from the previous one (a Jacobian-augmentation pattern). Flagged as soon as
    // 100 distances are in (measured W 0.38).
    let mut last = normals(&mut rng, dim, 0.0);
    let mut first_alarm = None;
    for i in 0..300u64 {
        let q: Vec<f64> = if i % 10 == 0 {
            normals(&mut rng, dim, 0.0)
        } else {
            last.iter()
                .map(|v| v + if rng.next_f64() < 0.5 { 0.1 } else { -0.1 })
                .collect()
        };
        if let Some(alarm) = prada.update(&attacker, &q, 0).expect("valid") {
            first_alarm.get_or_insert(alarm);
        }
        last = q;
    }
    let alarm = first_alarm.expect("the attacker is flagged");
    assert!(alarm.index <= 110, "flagged at query {}", alarm.index);
    assert_eq!((alarm.rule, alarm.threshold), (AlarmRule::Below, 0.95));
    assert!(alarm.statistic < 0.6, "W {}", alarm.statistic);
    assert_eq!(prada.clients(), 3);

    // Degenerate distance sets. With one query kept, queries one unit away along the axes all
    // measure exactly 1: a point mass, flagged as W = 0. Exact repeats (all distances 0) are not
    // tested.
    let config = PradaConfig {
        min_queries: 10,
        max_kept: 1,
        ..config
    };
    let mut prada: Prada<u32> = Prada::new(2, config).expect("valid config");
    prada.update(&1, &[0.0, 0.0], 0).expect("valid");
    let axes = [[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]];
    let mut flagged = false;
    for i in 0..20 {
        flagged |= prada.update(&1, &axes[i % 4], 0).expect("valid").is_some();
        assert!(prada.update(&2, &[1.0, 1.0], 0).expect("valid").is_none());
    }
    assert!(flagged && prada.last_w(&1) == Some(0.0));
    assert_eq!(prada.last_w(&2), None);

    // Bounded clients: a third client evicts the least recently seen one.
    let config = PradaConfig {
        max_clients: 2,
        min_queries: 10,
        ..PradaConfig::default()
    };
    let mut prada: Prada<u32> = Prada::new(2, config).expect("valid config");
    prada.update(&1, &[0.0, 0.0], 0).expect("valid");
    prada.update(&2, &[0.0, 0.0], 0).expect("valid");
    prada.update(&1, &[1.0, 0.0], 0).expect("valid");
    prada.update(&3, &[0.0, 0.0], 0).expect("valid");
    assert_eq!((prada.clients(), prada.evictions()), (2, 1));
    prada.forget(&1);
    assert_eq!(prada.clients(), 1);
}

#[test]
fn reset_restarts_the_index_and_keeps_the_fit() {
    let reference = normals(&mut Rng::new(1), 100, 0.0);
    let mut cusum = Cusum::fit(&reference, CusumConfig::default()).expect("valid reference");
    for _ in 0..5 {
        cusum.update(0.0).expect("finite");
    }
    cusum.reset();
    let alarm = cusum
        .update(100.0)
        .expect("finite")
        .expect("a huge jump is flagged");
    assert_eq!(alarm.index, 0);
    let mut adwin = Adwin::new(AdwinConfig::default()).expect("valid config");
    adwin.update(1.0).expect("finite");
    adwin.reset();
    assert_eq!((adwin.width(), adwin.mean()), (0, 0.0));
}

#[test]
fn hostile_inputs_are_errors() {
    let reference = normals(&mut Rng::new(1), 200, 0.0);
    let is_config =
        |r: Result<(), StreamError>| matches!(r, Err(StreamError::InvalidConfig { .. }));

    // Scalar detectors: NaN and infinities are rejected and leave the state unchanged.
    let mut cusum = Cusum::fit(&reference, CusumConfig::default()).expect("valid reference");
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        assert!(matches!(
            cusum.update(bad),
            Err(StreamError::NonFinite { .. })
        ));
    }
    assert_eq!(
        cusum.update(100.0).expect("finite").map(|a| a.index),
        Some(0)
    );
    let mut ph = PageHinkley::new(PageHinkleyConfig::default()).expect("valid config");
    assert!(matches!(
        ph.update(f64::NAN),
        Err(StreamError::NonFinite { .. })
    ));
    let mut adwin = Adwin::new(AdwinConfig::default()).expect("valid config");
    assert!(matches!(
        adwin.update(f64::INFINITY),
        Err(StreamError::NonFinite { .. })
    ));
    assert_eq!(adwin.width(), 0);

    // Bad references and configurations.
    assert!(matches!(
        Cusum::fit(&[], CusumConfig::default()),
        Err(StreamError::TooSmall { .. })
    ));
    assert!(matches!(
        Cusum::fit(&[1.0; 10], CusumConfig::default()),
        Err(StreamError::Reference(_))
    ));
    assert!(matches!(
        Cusum::fit(&[1.0, f64::NAN, 2.0], CusumConfig::default()),
        Err(StreamError::Reference(_))
    ));
    assert!(is_config(
        Cusum::fit(
            &reference,
            CusumConfig {
                threshold: 0.0,
                ..Default::default()
            }
        )
        .map(drop)
    ));
    assert!(is_config(
        Cusum::fit(
            &reference,
            CusumConfig {
                drift: f64::NAN,
                ..Default::default()
            }
        )
        .map(drop)
    ));
    assert!(is_config(
        PageHinkley::new(PageHinkleyConfig {
            alpha: 0.0,
            ..Default::default()
        })
        .map(drop)
    ));
    assert!(is_config(
        Adwin::new(AdwinConfig {
            delta: 1.5,
            ..Default::default()
        })
        .map(drop)
    ));
    assert!(is_config(
        Adwin::new(AdwinConfig {
            clock: 0,
            ..Default::default()
        })
        .map(drop)
    ));
    assert!(is_config(
        WindowKs::fit(&reference, 1, WindowKsConfig::new(0)).map(drop)
    ));
    assert!(is_config(
        WindowKs::fit(
            &reference,
            1,
            WindowKsConfig {
                stride: 0,
                ..WindowKsConfig::new(5)
            }
        )
        .map(drop)
    ));
    assert!(is_config(
        WindowKs::fit(
            &reference,
            1,
            WindowKsConfig {
                alpha: 1.0,
                ..WindowKsConfig::new(5)
            }
        )
        .map(drop)
    ));
    assert!(matches!(
        WindowKs::fit(&[], 1, WindowKsConfig::new(5)),
        Err(StreamError::TooSmall { .. })
    ));
    assert!(matches!(
        WindowKs::fit(&reference, 0, WindowKsConfig::new(5)),
        Err(StreamError::Reference(_))
    ));
    assert!(matches!(
        WindowKs::fit(&reference, 3, WindowKsConfig::new(5)),
        Err(StreamError::Reference(_))
    ));

    // Vector detectors: wrong dimension and non-finite components.
    let mut ks = WindowKs::fit(&reference, 2, WindowKsConfig::new(5)).expect("valid reference");
    assert!(matches!(
        ks.update(&[1.0]),
        Err(StreamError::Dimension {
            expected: 2,
            got: 1
        })
    ));
    assert!(matches!(
        ks.update(&[1.0, f64::NAN]),
        Err(StreamError::NonFinite { position: 1, .. })
    ));
    let mmd_config = WindowMmdConfig {
        window: 10,
        stride: 1,
        sigma: None,
        threshold: MmdThreshold::Statistic(0.1),
    };
    let mut mmd = WindowMmd::fit(&reference, 2, mmd_config).expect("valid reference");
    assert!(matches!(
        mmd.update(&[1.0, 2.0, 3.0]),
        Err(StreamError::Dimension { .. })
    ));
    assert!(is_config(
        WindowMmd::fit(
            &reference,
            2,
            WindowMmdConfig {
                window: 1,
                ..mmd_config
            }
        )
        .map(drop)
    ));
    assert!(is_config(
        WindowMmd::fit(
            &reference,
            2,
            WindowMmdConfig {
                threshold: MmdThreshold::Statistic(f64::NAN),
                ..mmd_config
            }
        )
        .map(drop)
    ));
    assert!(is_config(
        WindowMmd::fit(
            &reference,
            2,
            WindowMmdConfig {
                sigma: Some(-1.0),
                ..mmd_config
            }
        )
        .map(drop)
        .map_err(|e| match e {
            StreamError::Reference(_) => StreamError::InvalidConfig {
                what: "sigma",
                value: -1.0,
                expected: ""
            },
            other => other,
        })
    ));
    assert!(matches!(
        WindowMmd::fit(&[1.0, 2.0], 2, mmd_config),
        Err(StreamError::TooSmall { .. })
    ));
    let big = vec![0.5; 2 * 4100];
    assert!(is_config(
        WindowMmd::fit(
            &big,
            2,
            WindowMmdConfig {
                threshold: MmdThreshold::Permutation {
                    alpha: 0.05,
                    permutations: 10,
                    seed: 0
                },
                ..mmd_config
            }
        )
        .map(drop)
    ));
    let kernel = RbfKernel::new(1.0).expect("positive");
    assert!(matches!(
        mmd2_null_quantile(&reference, &reference[..10], 2, 10, kernel, 0.99, 10, 0),
        Err(StreamError::TooSmall { .. })
    ));
    assert!(is_config(
        mmd2_null_quantile(&reference, &reference, 2, 10, kernel, 1.0, 10, 0).map(drop)
    ));

    // Online MMD: pool and ERT checks, then dimension checks.
    assert!(is_config(
        OnlineMmd::fit(&reference, 2, OnlineMmdConfig::new(10, 1.0)).map(drop)
    ));
    assert!(matches!(
        OnlineMmd::fit(&reference, 2, OnlineMmdConfig::new(60, 50.0)),
        Err(StreamError::TooSmall { .. })
    ));
    assert!(matches!(
        OnlineMmd::fit(
            &reference,
            2,
            OnlineMmdConfig {
                calibration_size: Some(99),
                ..OnlineMmdConfig::new(10, 50.0)
            }
        ),
        Err(StreamError::TooSmall { .. })
    ));
    let mut online = OnlineMmd::fit(
        &reference,
        2,
        OnlineMmdConfig {
            bootstraps: 5,
            ..OnlineMmdConfig::new(10, 50.0)
        },
    )
    .expect("valid reference");
    assert!(matches!(
        online.update(&[]),
        Err(StreamError::Dimension { .. })
    ));
    assert!(matches!(
        online.update(&[0.0, f64::INFINITY]),
        Err(StreamError::NonFinite { .. })
    ));

    // Chi-square: labels out of range, bad proportions, window 0.
    let config = ChiSquareShiftConfig {
        window: 10,
        stride: 1,
        alpha: 0.05,
    };
    assert!(matches!(
        ChiSquareShift::from_reference_labels(&[0, 1, 3], 3, config),
        Err(StreamError::LabelOutOfRange {
            label: 3,
            classes: 3
        })
    ));
    assert!(matches!(
        ChiSquareShift::from_reference_labels(&[], 3, config),
        Err(StreamError::TooSmall { .. })
    ));
    assert!(matches!(
        ChiSquareShift::from_proportions(&[0.5, 0.5, 0.0], config),
        Err(StreamError::Reference(_))
    ));
    assert!(matches!(
        ChiSquareShift::from_proportions(&[0.5, 0.6], config),
        Err(StreamError::Reference(_))
    ));
    assert!(is_config(
        ChiSquareShift::from_proportions(
            &[0.5, 0.5],
            ChiSquareShiftConfig {
                window: 0,
                ..config
            }
        )
        .map(drop)
    ));
    let mut chi = ChiSquareShift::from_proportions(&[0.5, 0.5], config).expect("valid");
    assert!(matches!(
        chi.update(2),
        Err(StreamError::LabelOutOfRange { .. })
    ));

    // PRADA: dimension, non-finite queries, bad configurations.
    let mut prada: Prada<u8> = Prada::new(3, PradaConfig::default()).expect("valid config");
    assert!(matches!(
        prada.update(&0, &[1.0, 2.0], 0),
        Err(StreamError::Dimension { .. })
    ));
    assert!(matches!(
        prada.update(&0, &[1.0, f64::NAN, 0.0], 0),
        Err(StreamError::NonFinite { .. })
    ));
    assert_eq!(prada.clients(), 0, "a rejected query creates no client");
    for config in [
        PradaConfig {
            delta: 1.0,
            ..PradaConfig::default()
        },
        PradaConfig {
            min_queries: 2,
            ..PradaConfig::default()
        },
        PradaConfig {
            max_distances: 6000,
            ..PradaConfig::default()
        },
        PradaConfig {
            max_distances: 50,
            ..PradaConfig::default()
        },
        PradaConfig {
            max_clients: 0,
            ..PradaConfig::default()
        },
    ] {
        assert!(
            is_config(Prada::<u8>::new(3, config).map(drop)),
            "{config:?}"
        );
    }
    assert!(is_config(
        Prada::<u8>::new(0, PradaConfig::default()).map(drop)
    ));
}
