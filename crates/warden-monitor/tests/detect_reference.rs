//! The per-request detectors checked against NumPy/SciPy: confidence scores, Mahalanobis, kNN,
//! PCA reconstruction, the feature-squeezing filters, ROC AUC, histograms and conformal p-value
//! combinations, on fixed data built from an integer hash that
//! `scripts/reference/monitor_detect_reference.py` evaluates identically; its output is pasted in
//! `mod reference` at the end. Also: the autoencoder's behaviour (no external reference can replay
//! its training), serde round trips, and hostile inputs, which must all be errors.

use warden_monitor::detect::{
    Activation, AnyDetector, Autoencoder, AutoencoderConfig, Combination, Confidence,
    ConfidenceKind, ConformalCalibration, DetectError, Detector, Ensemble, ImageShape, Knn,
    KnnConfig, Mahalanobis, MahalanobisConfig, Pca, Scratch, Squeezer, calibrate, energy_score,
    entropy_score, histogram, median_filter, msp_score, reduce_bit_depth, roc_auc, squeeze_score,
};

/// The script's `h`: a value in [-1, 1], a multiple of 0.001.
fn h(i: u64, j: u64, salt: u64) -> f64 {
    let mut x = i
        .wrapping_mul(0x9E37_79B1)
        .wrapping_add(j.wrapping_mul(0x85EB_CA77))
        .wrapping_add(salt.wrapping_mul(0xC2B2_AE3D))
        .wrapping_add(1);
    x ^= x >> 29;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 32;
    ((x % 2001) as f64 - 1000.0) / 1000.0
}

/// The script's `matrix`: `rows × cols` hash values rounded to f32, row-major.
fn matrix(rows: u64, cols: u64, salt: u64) -> Vec<f32> {
    (0..rows)
        .flat_map(|i| (0..cols).map(move |j| h(i, j, salt) as f32))
        .collect()
}

fn assert_rel(got: &[f64], want: &[f64], rel: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= rel * w.abs(),
            "{what}[{i}]: got {g}, want {w} (relative tolerance {rel})"
        );
    }
}

const LOGITS: [[f32; 4]; 6] = [
    [1.0, 2.0, 3.0, 0.5],
    [0.0, 0.0, 0.0, 0.0],
    [100.0, -100.0, 0.0, 50.0],
    [1000.0, 999.0, -1000.0, 998.5],
    [-3.25, 7.5, 7.5, -0.125],
    [30.0, 0.0, 0.0, 0.0],
];

#[test]
fn confidence_scores_match_high_precision_reference() {
    // Relative 1e-12, including the tiny 1 − MSP and entropy of confident logits (down to 1e-22),
    // which only a cancellation-free formula reaches.
    let collect = |f: &dyn Fn(&[f32]) -> f64| LOGITS.iter().map(|z| f(z)).collect::<Vec<_>>();
    let msp = collect(&|z| msp_score(z).expect("finite logits"));
    let ent = collect(&|z| entropy_score(z).expect("finite logits"));
    let e1 = collect(&|z| energy_score(z, 1.0).expect("finite logits"));
    let e25 = collect(&|z| energy_score(z, 2.5).expect("finite logits"));
    assert_rel(&msp, &reference::MSP, 1e-12, "1 - msp");
    assert_rel(&ent, &reference::ENTROPY, 1e-12, "entropy");
    assert_rel(&e1, &reference::ENERGY_T1, 1e-14, "energy T=1");
    assert_rel(&e25, &reference::ENERGY_T2_5, 1e-14, "energy T=2.5");

    // The detector form gives the same numbers.
    let det = Confidence::new(ConfidenceKind::Energy { temperature: 2.5 }, 4).expect("valid");
    assert_eq!(det.score(&LOGITS[3]).expect("valid"), e25[3]);
}

/// The Mahalanobis fixture: d = 4, 3 classes, 36 rows labelled `i % 3`, class c shifted by 1.5
/// along feature c; queries are hash rows doubled.
fn mahalanobis_fixture() -> (Vec<f32>, Vec<usize>, Vec<f32>) {
    let mut x = matrix(36, 4, 1);
    let labels: Vec<usize> = (0..36).map(|i| i % 3).collect();
    for (i, &label) in labels.iter().enumerate() {
        x[i * 4 + label] += 1.5;
    }
    let q = matrix(6, 4, 2).iter().map(|v| v * 2.0).collect();
    (x, labels, q)
}

#[test]
fn mahalanobis_matches_numpy() {
    let (x, labels, q) = mahalanobis_fixture();
    for (ridge, want) in [
        (1e-6, &reference::MAHALANOBIS_RIDGE_1E_6),
        (0.1, &reference::MAHALANOBIS_RIDGE_0_1),
    ] {
        let det = Mahalanobis::fit(&x, 4, &labels, 3, MahalanobisConfig { ridge }).expect("fits");
        let got = det.score_batch(&q).expect("valid queries");
        // f64 throughout on a well-conditioned 4 × 4 system: relative 1e-9.
        assert_rel(&got, want, 1e-9, "mahalanobis");
    }
    // A class mean's own neighbourhood is nearest to that class.
    let det = Mahalanobis::fit(&x, 4, &labels, 3, MahalanobisConfig::default()).expect("fits");
    let mut scratch = Scratch::new();
    let (class, _) = det
        .nearest_class(&[0.0, 0.0, 1.5, 0.0], &mut scratch)
        .expect("valid");
    assert_eq!(class, 2);
}

#[test]
fn knn_matches_numpy() {
    let x = matrix(40, 8, 3);
    let q = matrix(5, 8, 4);
    for (k, want) in [
        (1, &reference::KNN_K1),
        (3, &reference::KNN_K3),
        (40, &reference::KNN_K40),
    ] {
        let cfg = KnnConfig {
            k,
            ..KnnConfig::default()
        };
        let det = Knn::fit(&x, 8, cfg).expect("fits");
        let got = det.score_batch(&q).expect("valid queries");
        // The reference rows are stored normalised in f32: relative 1e-6.
        assert_rel(&got, want, 1e-6, "knn");
    }
}

#[test]
fn knn_subsampling_is_seeded_and_only_moves_neighbours_away() {
    let x = matrix(40, 8, 3);
    let q = matrix(5, 8, 4);
    let full = Knn::fit(
        &x,
        8,
        KnnConfig {
            k: 1,
            max_reference: None,
            seed: 0,
        },
    )
    .expect("fits");
    let cfg = KnnConfig {
        k: 1,
        max_reference: Some(20),
        seed: 9,
    };
    let sub = Knn::fit(&x, 8, cfg).expect("fits");
    assert_eq!(sub.reference_len(), 20);
    let again = Knn::fit(&x, 8, cfg).expect("fits");
    let (a, b) = (
        sub.score_batch(&q).expect("ok"),
        again.score_batch(&q).expect("ok"),
    );
    assert_eq!(a, b, "same seed, same subset");
    let f = full.score_batch(&q).expect("ok");
    for (s, f) in a.iter().zip(&f) {
        assert!(
            *s >= f - 1e-6,
            "a subset's nearest neighbour cannot be nearer: {s} < {f}"
        );
    }
    let too_big = KnnConfig {
        k: 21,
        max_reference: Some(20),
        seed: 9,
    };
    assert_eq!(
        Knn::fit(&x, 8, too_big).err(),
        Some(DetectError::BadK { k: 21, n: 20 })
    );
}

fn pca_fixture() -> (Vec<f32>, Vec<f32>) {
    let scales = [3.0f32, 2.0, 1.0, 0.5, 0.25];
    let x = matrix(60, 5, 5)
        .iter()
        .enumerate()
        .map(|(i, v)| v * scales[i % 5])
        .collect();
    let q = matrix(4, 5, 6).iter().map(|v| v * 2.0).collect();
    (x, q)
}

#[test]
fn pca_matches_numpy() {
    let (x, q) = pca_fixture();
    let det = Pca::fit(&x, 5, 2).expect("fits");
    // Jacobi in f64 against LAPACK's eigh: relative 1e-9.
    assert_rel(
        det.variances(),
        &reference::PCA_VARIANCES,
        1e-9,
        "pca variances",
    );
    let got = det.score_batch(&q).expect("valid");
    assert_rel(&got, &reference::PCA_SCORES, 1e-9, "pca scores");
}

type MedianCase = (&'static str, Vec<f32>, ImageShape, usize, &'static [f32]);

#[test]
fn median_filters_match_scipy_reflect() {
    let shape = |channels, height, width| ImageShape {
        channels,
        height,
        width,
    };
    // (name, image, shape, window size, SciPy's output).
    let cases: [MedianCase; 10] = [
        (
            "a2",
            matrix(5, 6, 7),
            shape(1, 5, 6),
            2,
            &reference::MEDIAN_A_2,
        ),
        (
            "a3",
            matrix(5, 6, 7),
            shape(1, 5, 6),
            3,
            &reference::MEDIAN_A_3,
        ),
        (
            "b2",
            matrix(6, 4, 8),
            shape(2, 3, 4),
            2,
            &reference::MEDIAN_B_2,
        ),
        (
            "b3",
            matrix(6, 4, 8),
            shape(2, 3, 4),
            3,
            &reference::MEDIAN_B_3,
        ),
        (
            "c2",
            matrix(1, 4, 9),
            shape(1, 1, 4),
            2,
            &reference::MEDIAN_C_2,
        ),
        (
            "c3",
            matrix(1, 4, 9),
            shape(1, 1, 4),
            3,
            &reference::MEDIAN_C_3,
        ),
        (
            "c5",
            matrix(1, 4, 9),
            shape(1, 1, 4),
            5,
            &reference::MEDIAN_C_5,
        ),
        (
            "d2",
            matrix(4, 1, 10),
            shape(1, 4, 1),
            2,
            &reference::MEDIAN_D_2,
        ),
        (
            "d3",
            matrix(4, 1, 10),
            shape(1, 4, 1),
            3,
            &reference::MEDIAN_D_3,
        ),
        (
            "d5",
            matrix(4, 1, 10),
            shape(1, 4, 1),
            5,
            &reference::MEDIAN_D_5,
        ),
    ];
    for (name, image, shape, size, want) in cases {
        let mut out = vec![0.0; image.len()];
        median_filter(&image, shape, size, &mut out).expect("valid image");
        // A median is one of the inputs: exact equality.
        assert_eq!(out, want, "median {name}");
        let mut via = vec![0.0; image.len()];
        Squeezer::Median { size }
            .apply(&image, shape, &mut via)
            .expect("valid");
        assert_eq!(via, out);
    }
}

#[test]
fn bit_depth_matches_numpy_rint() {
    for (bits, want) in [
        (1, &reference::BITS_1),
        (3, &reference::BITS_3),
        (5, &reference::BITS_5),
        (8, &reference::BITS_8),
    ] {
        let mut out = vec![0.0; reference::BITS_IN.len()];
        reduce_bit_depth(&reference::BITS_IN, bits, &mut out).expect("values in [0, 1]");
        // The same f32 operations as NumPy's: exact equality.
        assert_eq!(&out[..], &want[..], "{bits} bits");
    }
    // The inputs are the script's too.
    let mut built: Vec<f32> = matrix(1, 16, 11).iter().map(|v| (v + 1.0) / 2.0).collect();
    built.extend([0.0, 1.0, 0.5, (1.0f64 / 6.0) as f32, 0.25, 0.75]);
    assert_eq!(&built[..], &reference::BITS_IN[..]);
}

#[test]
fn squeeze_score_is_the_largest_l1_distance() {
    let original = [0.7f32, 0.2, 0.1];
    // L1 distances 0.2 and 1.4: the score is the larger, summed in f64 from the f32 values.
    let squeezed = [0.6f32, 0.3, 0.1, 0.1, 0.1, 0.8];
    let got = squeeze_score(&original, &squeezed).expect("probabilities");
    let f = f64::from;
    let want = (f(0.7f32) - f(0.1f32)) + (f(0.2f32) - f(0.1f32)) + (f(0.8f32) - f(0.1f32));
    assert!((got - want).abs() < 1e-15, "{got} vs {want}");
    assert_eq!(squeeze_score(&original, &original).expect("ok"), 0.0);
}

#[test]
fn roc_auc_matches_mann_whitney() {
    let clean = [0.5, 1.0, 1.0, 0.25, 2.0, 0.75, 1.5, 1.0, 0.0, 0.5];
    let anomalous = [1.0, 2.0, 2.5, 1.5, 0.75, 3.0, 1.0];
    let got = roc_auc(&clean, &anomalous).expect("valid");
    assert!((got - reference::AUC).abs() < 1e-15, "{got}");
    let c: Vec<f64> = matrix(1, 50, 12).iter().map(|&v| f64::from(v)).collect();
    let a: Vec<f64> = matrix(1, 30, 13).iter().map(|&v| f64::from(v)).collect();
    let got = roc_auc(&c, &a).expect("valid");
    assert!((got - reference::HASH_AUC).abs() < 1e-15, "{got}");
}

#[test]
fn histogram_matches_numpy() {
    let scores = [0.1, 0.4, 0.4, 1.0, 1.7, 2.0, 2.5, -0.3, 0.999, 1.25];
    let h5 = histogram(&scores, 5, None).expect("valid");
    assert_eq!(h5.counts, reference::HIST5_COUNTS);
    assert_eq!(h5.edges, reference::HIST5_EDGES);
    let h4 = histogram(&scores, 4, Some((0.0, 2.0))).expect("valid");
    assert_eq!(h4.counts, reference::HIST4_COUNTS);
    assert_eq!(h4.edges, reference::HIST4_EDGES);
    assert_eq!((h4.below, h4.above), (1, 1));
}

#[test]
fn conformal_combinations_match_scipy() {
    let cal1: Vec<f64> = matrix(1, 19, 14).iter().map(|&v| f64::from(v)).collect();
    let cal2: Vec<f64> = matrix(1, 19, 15).iter().map(|&v| f64::from(v)).collect();
    let tests = [
        (0.0, 0.0),
        (0.95, -0.2),
        (2.0, 2.0),
        (-2.0, 0.5),
        (cal1[3], cal2[7]),
    ];
    let members = vec![
        ConformalCalibration::new(&cal1).expect("valid"),
        ConformalCalibration::new(&cal2).expect("valid"),
    ];
    let bonf = Ensemble::new(members.clone(), Combination::BonferroniMin).expect("valid");
    let fisher = Ensemble::new(members.clone(), Combination::Fisher).expect("valid");
    for (t, &(a, b)) in tests.iter().enumerate() {
        let p = [
            members[0].p_value(a).expect("ok"),
            members[1].p_value(b).expect("ok"),
        ];
        // Ratios of small integers: exact up to the one division.
        assert!(
            (p[0] - reference::P_VALUES[2 * t]).abs() < 1e-15,
            "p1 of test {t}"
        );
        assert!(
            (p[1] - reference::P_VALUES[2 * t + 1]).abs() < 1e-15,
            "p2 of test {t}"
        );
        let bp = bonf.p_value(&[a, b]).expect("ok");
        assert!(
            (bp - reference::BONFERRONI[t]).abs() < 1e-15,
            "bonferroni of test {t}"
        );
        let fp = fisher.p_value(&[a, b]).expect("ok");
        assert_rel(&[fp], &[reference::FISHER[t]], 1e-12, "fisher");
    }
}

/// A small seeded generator for the synthetic data (SplitMix64 and Box–Muller).
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
}

/// Rows `x = A z + 0.05 ε` with a 3-dimensional latent `z ~ N(0, I)` and a fixed random `A`
/// (`salt` picks `A`), in 16 dimensions.
fn manifold_data(n: usize, salt: u64, rng: &mut TestRng) -> Vec<f32> {
    let (d, l) = (16, 3);
    let a: Vec<f64> = (0..d * l).map(|i| h(i as u64, 0, salt)).collect();
    let mut out = Vec::with_capacity(n * d);
    for _ in 0..n {
        let z: Vec<f64> = (0..l).map(|_| rng.normal()).collect();
        for i in 0..d {
            let v: f64 = (0..l).map(|j| a[i * l + j] * z[j]).sum::<f64>() + 0.05 * rng.normal();
            out.push(v as f32);
        }
    }
    out
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

#[test]
fn reconstruction_error_is_lower_in_distribution() {
    let mut rng = TestRng(11);
    let train = manifold_data(1000, 21, &mut rng);
    let clean = manifold_data(300, 21, &mut rng);
    let shifted = manifold_data(300, 22, &mut rng);
    let cfg = AutoencoderConfig {
        hidden: 32,
        bottleneck: 4,
        activation: Activation::Tanh,
        epochs: 40,
        batch_size: 32,
        learning_rate: 3e-3,
        seed: 5,
    };
    let ae = Autoencoder::fit(&train, 16, cfg).expect("trains");
    let pca = Pca::fit(&train, 16, 3).expect("fits");
    for (name, det) in [("autoencoder", &ae as &dyn Detector), ("pca", &pca)] {
        let c = det.score_batch(&clean).expect("valid");
        let s = det.score_batch(&shifted).expect("valid");
        let auc = roc_auc(&c, &s).expect("valid");
        eprintln!(
            "{name}: clean {:.4}, shifted {:.4}, auc {auc:.4}",
            mean(&c),
            mean(&s)
        );
        assert!(
            mean(&c) * 3.0 < mean(&s),
            "{name}: clean {} vs shifted {}",
            mean(&c),
            mean(&s)
        );
        assert!(auc > 0.95, "{name}: auc {auc}");
    }
    // Training is reproducible from the seed, with relu too.
    let again = Autoencoder::fit(&train, 16, cfg).expect("trains");
    assert_eq!(
        again.score_batch(&clean[..160]).expect("ok"),
        ae.score_batch(&clean[..160]).expect("ok")
    );
    let relu = AutoencoderConfig {
        activation: Activation::Relu,
        epochs: 5,
        ..cfg
    };
    let r = Autoencoder::fit(&train, 16, relu).expect("trains");
    assert!(r.training_loss().is_finite() && r.training_loss() > 0.0);
}

#[test]
fn saved_detectors_round_trip_through_json() {
    let (x, labels, q) = mahalanobis_fixture();
    let mut rng = TestRng(3);
    let train = manifold_data(200, 21, &mut rng);
    let ae_cfg = AutoencoderConfig {
        hidden: 8,
        bottleneck: 2,
        epochs: 2,
        ..Default::default()
    };
    let detectors = vec![
        AnyDetector::Confidence(Confidence::new(ConfidenceKind::Entropy, 4).expect("valid")),
        AnyDetector::Mahalanobis(
            Mahalanobis::fit(&x, 4, &labels, 3, MahalanobisConfig::default()).expect("fits"),
        ),
        AnyDetector::Knn(
            Knn::fit(
                &x,
                4,
                KnnConfig {
                    k: 5,
                    ..Default::default()
                },
            )
            .expect("fits"),
        ),
        AnyDetector::Pca(Pca::fit(&x, 4, 2).expect("fits")),
        AnyDetector::Autoencoder(Autoencoder::fit(&train, 16, ae_cfg).expect("trains")),
    ];
    let json = serde_json::to_string(&detectors).expect("serialises");
    let back: Vec<AnyDetector> = serde_json::from_str(&json).expect("deserialises");
    let mut scratch = Scratch::new();
    for (a, b) in detectors.iter().zip(&back) {
        let input: &[f32] = if a.dim() == 16 { &train[..16] } else { &q[..4] };
        // One scratch shared by detectors of different sizes gives the same scores.
        let sa = a.score_with(input, &mut scratch).expect("valid");
        let sb = b.score(input).expect("valid");
        assert_eq!(sa, sb, "{json:.80}");
    }
}

#[test]
fn tampered_states_are_errors() {
    let (x, labels, _) = mahalanobis_fixture();
    let knn = Knn::fit(
        &x,
        4,
        KnnConfig {
            k: 5,
            ..Default::default()
        },
    )
    .expect("fits");
    let mut v = serde_json::to_value(&knn).expect("serialises");
    v["k"] = serde_json::json!(1000);
    assert!(
        serde_json::from_value::<Knn>(v.clone()).is_err(),
        "k beyond the rows"
    );
    v["k"] = serde_json::json!(5);
    v["reference"][0] = serde_json::json!(7.0);
    assert!(
        serde_json::from_value::<Knn>(v).is_err(),
        "a row no longer of unit norm"
    );

    let m = Mahalanobis::fit(&x, 4, &labels, 3, MahalanobisConfig::default()).expect("fits");
    let mut v = serde_json::to_value(&m).expect("serialises");
    v["dim"] = serde_json::json!(5);
    assert!(
        serde_json::from_value::<Mahalanobis>(v.clone()).is_err(),
        "wrong dim"
    );
    v["dim"] = serde_json::json!(4);
    v["cholesky"][0] = serde_json::json!(-1.0);
    assert!(
        serde_json::from_value::<Mahalanobis>(v).is_err(),
        "non-positive pivot"
    );

    let ae_cfg = AutoencoderConfig {
        hidden: 4,
        bottleneck: 2,
        epochs: 1,
        ..Default::default()
    };
    let ae = Autoencoder::fit(&x, 4, ae_cfg).expect("trains");
    let mut v = serde_json::to_value(&ae).expect("serialises");
    v["params"].as_array_mut().expect("an array").pop();
    assert!(
        serde_json::from_value::<Autoencoder>(v).is_err(),
        "short params"
    );

    let e = r#"{"members": [], "combination": "fisher"}"#;
    assert!(serde_json::from_str::<Ensemble>(e).is_err(), "no members");
    let c = r#"{"sorted": [2.0, 1.0]}"#;
    assert!(
        serde_json::from_str::<ConformalCalibration>(c).is_err(),
        "unsorted"
    );
    let d = r#"{"kind": {"score": "energy", "temperature": -1.0}, "classes": 3}"#;
    assert!(
        serde_json::from_str::<Confidence>(d).is_err(),
        "negative temperature"
    );
}

#[test]
fn hostile_inputs_are_errors() {
    let (x, labels, q) = mahalanobis_fixture();
    let maha = Mahalanobis::fit(&x, 4, &labels, 3, MahalanobisConfig::default()).expect("fits");
    let knn = Knn::fit(
        &x,
        4,
        KnnConfig {
            k: 3,
            ..Default::default()
        },
    )
    .expect("fits");
    let pca = Pca::fit(&x, 4, 2).expect("fits");
    let ae_cfg = AutoencoderConfig {
        hidden: 4,
        bottleneck: 2,
        epochs: 1,
        ..Default::default()
    };
    let ae = Autoencoder::fit(&x, 4, ae_cfg).expect("trains");
    let conf = Confidence::new(ConfidenceKind::MaxSoftmax, 4).expect("valid");
    let dets: [&dyn Detector; 5] = [&maha, &knn, &pca, &ae, &conf];
    for det in dets {
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let sample = [0.5, bad, 0.25, 0.0];
            assert!(
                matches!(
                    det.score(&sample),
                    Err(DetectError::NonFinite { index: 1, .. })
                ),
                "{bad} must be rejected"
            );
        }
        assert!(matches!(
            det.score(&q[..3]),
            Err(DetectError::WrongDim {
                expected: 4,
                got: 3,
                ..
            })
        ));
        assert!(matches!(det.score(&[]), Err(DetectError::WrongDim { .. })));
        assert!(matches!(
            det.score_batch(&q[..7]),
            Err(DetectError::Ragged { .. })
        ));
    }
    assert!(matches!(
        knn.score(&[0.0; 4]),
        Err(DetectError::ZeroNorm { .. })
    ));

    // Empty, ragged or non-finite reference sets.
    let default_knn = KnnConfig::default();
    assert!(matches!(
        Knn::fit(&[], 4, default_knn),
        Err(DetectError::TooFewRows { .. })
    ));
    assert!(matches!(
        Knn::fit(&x[..5], 4, default_knn),
        Err(DetectError::Ragged { .. })
    ));
    assert!(matches!(
        Knn::fit(&x, 0, default_knn),
        Err(DetectError::ZeroDim { .. })
    ));
    let mut nan_ref = x.clone();
    nan_ref[17] = f32::NAN;
    assert!(matches!(
        Knn::fit(
            &nan_ref,
            4,
            KnnConfig {
                k: 1,
                ..default_knn
            }
        ),
        Err(DetectError::NonFinite { index: 17, .. })
    ));
    assert!(matches!(
        Pca::fit(&nan_ref, 4, 2),
        Err(DetectError::NonFinite { .. })
    ));
    assert!(matches!(
        Pca::fit(&x[..4], 4, 2),
        Err(DetectError::TooFewRows { .. })
    ));
    assert!(matches!(
        Pca::fit(&x, 4, 4),
        Err(DetectError::InvalidConfig { .. })
    ));
    assert!(matches!(
        Pca::fit(&x, 4, 0),
        Err(DetectError::InvalidConfig { .. })
    ));

    // kNN: k beyond the reference set or zero; a zero reference row.
    assert_eq!(
        Knn::fit(
            &x,
            4,
            KnnConfig {
                k: 37,
                ..default_knn
            }
        )
        .err(),
        Some(DetectError::BadK { k: 37, n: 36 })
    );
    assert!(matches!(
        Knn::fit(
            &x,
            4,
            KnnConfig {
                k: 0,
                ..default_knn
            }
        ),
        Err(DetectError::BadK { .. })
    ));
    let mut zero_row = x.clone();
    zero_row[8..12].fill(0.0);
    assert_eq!(
        Knn::fit(
            &zero_row,
            4,
            KnnConfig {
                k: 1,
                ..default_knn
            }
        )
        .err(),
        Some(DetectError::ZeroNorm {
            what: "knn reference",
            row: 2
        })
    );

    // Mahalanobis: labels out of range, a class missing, wrong label count, singular covariance.
    let cfg = MahalanobisConfig::default();
    let mut bad_labels = labels.clone();
    bad_labels[5] = 3;
    assert_eq!(
        Mahalanobis::fit(&x, 4, &bad_labels, 3, cfg).err(),
        Some(DetectError::LabelOutOfRange {
            row: 5,
            label: 3,
            classes: 3
        })
    );
    let two_classes: Vec<usize> = labels.iter().map(|&l| l.min(1)).collect();
    assert_eq!(
        Mahalanobis::fit(&x, 4, &two_classes, 3, cfg).err(),
        Some(DetectError::MissingClass {
            class: 2,
            classes: 3
        })
    );
    assert!(matches!(
        Mahalanobis::fit(&x, 4, &labels[..35], 3, cfg),
        Err(DetectError::WrongDim {
            expected: 36,
            got: 35,
            ..
        })
    ));
    assert!(matches!(
        Mahalanobis::fit(&x, 4, &labels, 0, cfg),
        Err(DetectError::ZeroDim { .. })
    ));
    // More classes than rows is rejected before anything of that size is allocated.
    assert_eq!(
        Mahalanobis::fit(&x, 4, &labels, usize::MAX, cfg).err(),
        Some(DetectError::MissingClass {
            class: 36,
            classes: usize::MAX
        })
    );
    let wide = vec![0.5f32; 2 * 5000];
    assert!(matches!(
        Mahalanobis::fit(&wide, 5000, &[0, 0], 1, cfg),
        Err(DetectError::InvalidConfig { field: "dim", .. })
    ));
    assert!(matches!(
        Pca::fit(&wide, 5000, 2),
        Err(DetectError::InvalidConfig { field: "dim", .. })
    ));
    let constant = vec![1.0f32; 36 * 4];
    assert!(matches!(
        Mahalanobis::fit(&constant, 4, &vec![0; 36], 1, cfg),
        Err(DetectError::NotPositiveDefinite { .. })
    ));
    // A duplicated feature makes the covariance exactly singular; without a ridge that is an error.
    let dup: Vec<f32> = x
        .chunks_exact(4)
        .flat_map(|r| [r[0], r[1], r[2], r[2]])
        .collect();
    assert!(matches!(
        Mahalanobis::fit(&dup, 4, &labels, 3, MahalanobisConfig { ridge: 0.0 }),
        Err(DetectError::NotPositiveDefinite { .. })
    ));
    assert!(
        Mahalanobis::fit(&dup, 4, &labels, 3, cfg).is_ok(),
        "the ridge makes it definite"
    );
    for ridge in [-1.0, f64::NAN, f64::INFINITY] {
        assert!(matches!(
            Mahalanobis::fit(&x, 4, &labels, 3, MahalanobisConfig { ridge }),
            Err(DetectError::InvalidConfig { .. })
        ));
    }

    // Autoencoder configurations.
    let base = AutoencoderConfig {
        hidden: 4,
        bottleneck: 2,
        epochs: 1,
        ..Default::default()
    };
    for bad in [
        AutoencoderConfig {
            bottleneck: 5,
            ..base
        },
        AutoencoderConfig { hidden: 0, ..base },
        AutoencoderConfig { epochs: 0, ..base },
        AutoencoderConfig {
            batch_size: 0,
            ..base
        },
        AutoencoderConfig {
            learning_rate: f32::NAN,
            ..base
        },
        AutoencoderConfig {
            learning_rate: 0.0,
            ..base
        },
        AutoencoderConfig {
            epochs: 1_000_000_000,
            ..base
        },
    ] {
        assert!(
            matches!(
                Autoencoder::fit(&x, 4, bad),
                Err(DetectError::InvalidConfig { .. })
            ),
            "{bad:?}"
        );
    }
    // An absurd step size blows the weights up; that must be reported, not saved.
    let diverge = AutoencoderConfig {
        learning_rate: 1e30,
        epochs: 3,
        ..base
    };
    assert!(matches!(
        Autoencoder::fit(&x, 4, diverge),
        Err(DetectError::TrainingDiverged { .. })
    ));

    // Confidence: no logits, non-finite logits, bad temperatures, too few classes.
    assert!(matches!(msp_score(&[]), Err(DetectError::WrongDim { .. })));
    assert!(matches!(
        entropy_score(&[1.0, f32::NAN]),
        Err(DetectError::NonFinite { .. })
    ));
    for t in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        assert!(matches!(
            energy_score(&[1.0, 2.0], t),
            Err(DetectError::InvalidConfig { .. })
        ));
    }
    assert!(Confidence::new(ConfidenceKind::Entropy, 1).is_err());

    // Feature squeezing.
    let shape = ImageShape {
        channels: 1,
        height: 2,
        width: 2,
    };
    let mut out = [0.0f32; 4];
    assert!(matches!(
        reduce_bit_depth(&[0.5, 1.5, 0.0, 0.0], 3, &mut out),
        Err(DetectError::OutOfRange { index: 1, .. })
    ));
    assert!(matches!(
        reduce_bit_depth(&[0.5, -0.1, 0.0, 0.0], 3, &mut out),
        Err(DetectError::OutOfRange { .. })
    ));
    assert!(matches!(
        reduce_bit_depth(&[0.5; 4], 0, &mut out),
        Err(DetectError::InvalidConfig { .. })
    ));
    assert!(matches!(
        reduce_bit_depth(&[0.5; 4], 25, &mut out),
        Err(DetectError::InvalidConfig { .. })
    ));
    assert!(matches!(
        reduce_bit_depth(&[0.5; 3], 4, &mut out),
        Err(DetectError::WrongDim { .. })
    ));
    assert!(matches!(
        median_filter(&[0.5; 4], shape, 0, &mut out),
        Err(DetectError::InvalidConfig { .. })
    ));
    assert!(matches!(
        median_filter(&[0.5; 4], shape, 8, &mut out),
        Err(DetectError::InvalidConfig { .. })
    ));
    assert!(matches!(
        median_filter(&[0.5; 5], shape, 2, &mut out),
        Err(DetectError::WrongDim { .. })
    ));
    assert!(matches!(
        median_filter(&[0.5, f32::NAN, 0.0, 0.0], shape, 2, &mut out),
        Err(DetectError::NonFinite { .. })
    ));
    let empty = ImageShape {
        channels: 1,
        height: 0,
        width: 2,
    };
    assert!(matches!(
        median_filter(&[], empty, 2, &mut []),
        Err(DetectError::InvalidConfig { .. })
    ));
    let p = [0.5f32, 0.5];
    assert!(matches!(
        squeeze_score(&p, &[0.5, 0.6]),
        Err(DetectError::NotProbability { row: 0, .. })
    ));
    assert!(matches!(
        squeeze_score(&p, &[1.5, -0.5]),
        Err(DetectError::OutOfRange { .. })
    ));
    assert!(matches!(
        squeeze_score(&p, &[0.5, 0.5, 1.0]),
        Err(DetectError::Ragged { .. })
    ));
    assert!(matches!(
        squeeze_score(&p, &[]),
        Err(DetectError::Ragged { .. })
    ));
    assert!(matches!(
        squeeze_score(&[], &[1.0]),
        Err(DetectError::ZeroDim { .. })
    ));
    assert!(matches!(
        squeeze_score(&[2.0, 3.0], &[0.5, 0.5]),
        Err(DetectError::NotProbability { .. })
    ));

    // Reports and calibration.
    assert!(matches!(
        roc_auc(&[], &[1.0]),
        Err(DetectError::TooFewRows { .. })
    ));
    assert!(matches!(
        roc_auc(&[1.0], &[f64::NAN]),
        Err(DetectError::NonFinite { .. })
    ));
    assert!(matches!(
        histogram(&[1.0], 0, None),
        Err(DetectError::InvalidConfig { .. })
    ));
    assert!(matches!(
        histogram(&[1.0], usize::MAX, None),
        Err(DetectError::InvalidConfig { .. })
    ));
    assert!(matches!(
        histogram(&[1.0], 2, Some((1.0, 0.0))),
        Err(DetectError::InvalidConfig { .. })
    ));
    assert!(matches!(
        calibrate(&[1.0, f64::INFINITY], 0.5),
        Err(DetectError::NonFinite { .. })
    ));
    let ens = Ensemble::new(
        vec![ConformalCalibration::new(&[1.0]).expect("valid")],
        Combination::default(),
    )
    .expect("valid");
    assert!(matches!(
        ens.p_value(&[1.0, 2.0]),
        Err(DetectError::WrongDim { .. })
    ));
    assert!(matches!(
        ens.p_value(&[f64::NAN]),
        Err(DetectError::NonFinite { .. })
    ));
}

// Generated by scripts/reference/monitor_detect_reference.py; do not edit by hand.
#[rustfmt::skip]
mod reference {
    pub(crate) const MSP: [f64; 6] = [0.36920445675253316, 0.75, 1.9287498479639178e-22, 0.37146828078823757, 0.5001273527172667, 2.8072868906512645e-13];
    pub(crate) const ENTROPY: [f64; 6] = [0.993015116368318, 1.3862943611198906, 9.83662422461598e-21, 0.9059592564792266, 0.6953775472914446, 8.702589361018959e-12];
    pub(crate) const ENERGY_T1: [f64; 6] = [-3.460773489156851, -1.3862943611198906, -100.0, -1000.4643687841079, -8.193401918437416, -30.00000000000028];
    pub(crate) const ENERGY_T2_5: [f64; 6] = [-5.278224069258783, -3.4657359027997265, -100.00000000515288, -1001.9927899629886, -9.307890290345233, -30.00004608116795];
    pub(crate) const MAHALANOBIS_RIDGE_1E_6: [f64; 6] = [22.573735900018363, 4.3993900600881375, 9.066066919168462, 2.9011087210726023, 19.454910562924766, 19.384430970033016];
    pub(crate) const MAHALANOBIS_RIDGE_0_1: [f64; 6] = [20.75613141724006, 3.753875630546372, 8.181912014200968, 2.582572491298781, 17.278843675897555, 17.582612882623785];
    pub(crate) const KNN_K1: [f64; 5] = [0.47559415261899607, 0.7336178161124749, 0.8414383919336368, 0.6665411885862311, 0.6119072642028415];
    pub(crate) const KNN_K3: [f64; 5] = [0.8536526224166315, 0.79699161790935, 0.9640443645597037, 0.8778985440811046, 0.8459191420468862];
    pub(crate) const KNN_K40: [f64; 5] = [1.9451245738074163, 1.7263221606556438, 1.8023434964009966, 1.8622570788174195, 1.841710563212064];
    pub(crate) const PCA_SCORES: [f64; 4] = [0.6210437518817351, 0.7912701013459266, 0.6997660268539629, 1.3772253068062519];
    pub(crate) const PCA_VARIANCES: [f64; 2] = [2.3541578962149097, 1.0622298332874567];
    pub(crate) const MEDIAN_A_2: [f32; 30] = [0.588, 0.588, -0.218, -0.013, -0.013, 0.576, 0.588, 0.588, -0.102, -0.102, -0.124, 0.406, -0.525, -0.525, 0.428, -0.102, -0.161, -0.124, 0.676, 0.37, 0.428, 0.428, -0.244, -0.161, 0.676, 0.499, 0.37, -0.151, -0.244, -0.598];
    pub(crate) const MEDIAN_A_3: [f32; 30] = [0.588, -0.218, -0.218, -0.222, -0.013, 0.406, -0.525, -0.218, -0.218, -0.161, -0.161, -0.124, -0.525, 0.37, -0.102, -0.161, -0.244, -0.161, 0.37, 0.37, -0.244, -0.244, -0.557, -0.557, 0.499, 0.37, -0.244, -0.598, -0.598, -0.971];
    pub(crate) const MEDIAN_B_2: [f32; 24] = [-0.026, 0.979, 0.979, 0.503, -0.026, -0.026, 0.762, 0.762, -0.535, -0.821, 0.185, 0.762, -0.386, 0.663, 0.74, 0.74, 0.331, 0.331, 0.663, 0.635, 0.331, 0.331, 0.635, 0.582];
    pub(crate) const MEDIAN_B_3: [f32; 24] = [-0.026, -0.026, 0.503, 0.503, -0.535, -0.153, 0.36, 0.503, -0.821, -0.535, 0.185, 0.36, -0.386, 0.635, 0.635, 0.148, -0.386, 0.331, 0.582, 0.205, -0.536, 0.205, 0.582, 0.582];
    pub(crate) const MEDIAN_C_2: [f32; 4] = [-0.493, -0.493, -0.593, 0.454];
    pub(crate) const MEDIAN_C_3: [f32; 4] = [-0.493, -0.593, -0.593, 0.454];
    pub(crate) const MEDIAN_C_5: [f32; 4] = [-0.593, -0.493, -0.493, -0.593];
    pub(crate) const MEDIAN_D_2: [f32; 4] = [-0.007, -0.007, 0.502, 0.502];
    pub(crate) const MEDIAN_D_3: [f32; 4] = [-0.007, -0.007, 0.074, 0.074];
    pub(crate) const MEDIAN_D_5: [f32; 4] = [-0.007, -0.007, 0.074, 0.074];
    pub(crate) const BITS_IN: [f32; 22] = [0.5825, 0.78, 0.28100002, 0.684, 0.481, 0.33200002, 0.2265, 0.82449996, 0.3375, 0.2775, 0.726, 0.2995, 0.06299999, 0.496, 0.958, 0.84599996, 0.0, 1.0, 0.5, 0.16666667, 0.25, 0.75];
    pub(crate) const BITS_1: [f32; 22] = [1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0];
    pub(crate) const BITS_3: [f32; 22] = [0.5714286, 0.71428573, 0.2857143, 0.71428573, 0.42857143, 0.2857143, 0.2857143, 0.85714287, 0.2857143, 0.2857143, 0.71428573, 0.2857143, 0.0, 0.42857143, 1.0, 0.85714287, 0.0, 1.0, 0.5714286, 0.14285715, 0.2857143, 0.71428573];
    pub(crate) const BITS_5: [f32; 22] = [0.58064514, 0.7741935, 0.29032257, 0.67741936, 0.48387095, 0.32258064, 0.22580644, 0.83870965, 0.32258064, 0.29032257, 0.7419355, 0.29032257, 0.06451613, 0.48387095, 0.9677419, 0.83870965, 0.0, 1.0, 0.516129, 0.16129032, 0.2580645, 0.7419355];
    pub(crate) const BITS_8: [f32; 22] = [0.58431375, 0.78039217, 0.28235295, 0.68235296, 0.48235294, 0.33333334, 0.22745098, 0.8235294, 0.3372549, 0.2784314, 0.7254902, 0.29803923, 0.0627451, 0.49411765, 0.95686275, 0.84705883, 0.0, 1.0, 0.5019608, 0.16470589, 0.2509804, 0.7490196];
    pub(crate) const AUC: f64 = 0.7928571428571428;
    pub(crate) const HASH_AUC: f64 = 0.5343333333333333;
    pub(crate) const HIST5_COUNTS: [u64; 5] = [2, 2, 3, 1, 2];
    pub(crate) const HIST5_EDGES: [f64; 6] = [-0.3, 0.25999999999999995, 0.8199999999999998, 1.3799999999999997, 1.9399999999999997, 2.5];
    pub(crate) const HIST4_COUNTS: [u64; 4] = [3, 1, 2, 2];
    pub(crate) const HIST4_EDGES: [f64; 5] = [0.0, 0.5, 1.0, 1.5, 2.0];
    pub(crate) const P_VALUES: [f64; 10] = [0.8, 0.6, 0.05, 0.65, 0.05, 0.05, 1.0, 0.25, 0.9, 0.6];
    pub(crate) const BONFERRONI: [f64; 5] = [1.0, 0.1, 0.1, 0.5, 1.0];
    pub(crate) const FISHER: [f64; 5] = [0.8323052040384962, 0.14386174366350948, 0.017478661367769956, 0.5965735902799727, 0.8727405152888612];
}
