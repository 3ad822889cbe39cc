//! The RDP accountant against Google's dp-accounting (0.6.0), whose values were computed with this
//! script and pasted below:
//!
//! ```python
//! import numpy as np
//! from dp_accounting.rdp import rdp_privacy_accountant as r
//! for q, s, t, orders in CASES:
//!     print(r._compute_rdp_poisson_subsampled_gaussian(q, s, orders) * t)
//! orders = [1 + x / 10.0 for x in range(1, 100)] + list(range(11, 64)) + [128, 256, 512, 1024]
//! for q, s, t, d in EPS_CASES:
//!     rdp = r._compute_rdp_poisson_subsampled_gaussian(q, s, orders) * t
//!     print(r.compute_epsilon(orders, rdp, d))
//! ```
//!
//! The first case is the published one the issue quotes. `inf` marks fractional orders whose series
//! dp-accounting also gives up on.

#![allow(clippy::unwrap_used)] // Tests fail by panicking.

use warden_harden::accountant::{self, AccountantError};

const INF: f64 = f64::INFINITY;

#[allow(clippy::type_complexity)]
const CASES: &[(f64, f64, u64, &[f64], &[f64])] = &[
    (
        0.01,
        2.5,
        50,
        &[1.5, 2.5, 5.0, 50.0, 100.0],
        &[
            0.000670579740668356,
            0.0010854871043885562,
            0.0021807565623080077,
            0.023846037538707728,
            167.41630754841827,
        ],
    ),
    (
        0.1,
        1.0,
        1,
        &[1.25, 2.0, 3.5, 8.0, 32.5],
        &[
            INF,
            0.017036863236176605,
            0.04281672289659878,
            1.3783614113481268,
            13.87431696754602,
        ],
    ),
    (
        0.004,
        1.1,
        1000,
        &[1.1, 2.0, 4.5, 10.0, 20.0, 64.0, 256.0],
        &[
            0.011491175472758871,
            0.020562722886475603,
            0.04713126343945965,
            0.10955956754418922,
            2452.4384203449913,
            20837.17783708182,
            100242.0102611667,
        ],
    ),
    (
        0.5,
        0.8,
        10,
        &[1.5, 2.0, 3.0, 7.5],
        &[
            INF,
            6.640701594215738,
            13.819536451436086,
            50.59634619018713,
        ],
    ),
    (
        1e-4,
        5.0,
        100_000,
        &[1.01, 2.0, 16.0, 128.0, 1024.0],
        &[
            2.0646942918359107e-05,
            4.081077418369779e-05,
            0.00032650510056372,
            0.0026132517091961025,
            1126065.6362753087,
        ],
    ),
    (1.0, 2.0, 3, &[2.0, 2.5, 10.0], &[0.75, 0.9375, 3.75]),
];

/// (q, sigma, steps, delta) → (epsilon, order).
const EPS_CASES: &[(f64, f64, u64, f64, f64, f64)] = &[
    (256.0 / 60000.0, 1.1, 14062, 1e-5, 2.5965558697943036, 8.1),
    (0.01, 2.5, 50, 1e-5, 0.1447863792989789, 57.0),
    (0.004, 0.8, 5000, 1e-6, 3.3924876536804707, 6.0),
    (0.02, 4.0, 2000, 1e-5, 0.92318513889087, 19.0),
];

fn close(a: f64, b: f64) -> bool {
    if a.is_infinite() || b.is_infinite() {
        return a == b;
    }
    (a - b).abs() <= 1e-6 * b.abs().max(1e-300)
}

#[test]
fn rdp_matches_dp_accounting_to_1e6_relative() {
    for (q, sigma, steps, orders, want) in CASES {
        let got = accountant::rdp_curve(*q, *sigma, *steps, orders).unwrap();
        for ((o, g), w) in orders.iter().zip(&got).zip(*want) {
            assert!(
                close(*g, *w),
                "q={q} sigma={sigma} steps={steps} order={o}: got {g:e}, dp-accounting {w:e}"
            );
        }
    }
    // Order infinity, as quoted in the issue.
    assert_eq!(accountant::rdp(0.01, 2.5, f64::INFINITY).unwrap(), INF);
}

#[test]
fn epsilon_matches_dp_accounting() {
    for &(q, sigma, steps, delta, eps, order) in EPS_CASES {
        let (e, o) = accountant::dp_sgd_epsilon(q, sigma, steps, delta).unwrap();
        assert!(
            close(e, eps),
            "q={q} sigma={sigma} steps={steps}: epsilon {e}, dp-accounting {eps}"
        );
        assert_eq!(o, order);
    }
}

#[test]
fn monotonicity_and_composition() {
    let orders = accountant::default_orders();
    let one = accountant::rdp_curve(0.01, 1.3, 1, &orders).unwrap();
    let many = accountant::rdp_curve(0.01, 1.3, 700, &orders).unwrap();
    for (a, b) in one.iter().zip(&many) {
        if a.is_finite() {
            assert!(close(*b, a * 700.0), "RDP composes linearly over steps");
        }
    }
    // RDP does not decrease with the order.
    let finite: Vec<f64> = one.iter().copied().filter(|v| v.is_finite()).collect();
    assert!(
        finite.windows(2).all(|w| w[1] >= w[0] * (1.0 - 1e-12)),
        "{finite:?}"
    );
    // More noise, fewer steps or a smaller sampling rate never cost more privacy.
    let eps = |q, s, t| accountant::dp_sgd_epsilon(q, s, t, 1e-5).unwrap().0;
    assert!(eps(0.01, 1.0, 1000) > eps(0.01, 1.5, 1000));
    assert!(eps(0.01, 1.0, 1000) > eps(0.01, 1.0, 100));
    assert!(eps(0.02, 1.0, 1000) > eps(0.01, 1.0, 1000));
    assert_eq!(eps(0.0, 1.0, 1000), 0.0);
}

#[test]
fn noise_calibration_meets_the_target() {
    let (q, steps, delta) = (256.0 / 60000.0, 14062, 1e-5);
    for target in [1.0, 3.0, 8.0] {
        let sigma = accountant::dp_sgd_noise(q, steps, delta, target).unwrap();
        let (e, _) = accountant::dp_sgd_epsilon(q, sigma, steps, delta).unwrap();
        assert!(e <= target, "sigma {sigma} gives epsilon {e} > {target}");
        let (e_less, _) = accountant::dp_sgd_epsilon(q, sigma * 0.99, steps, delta).unwrap();
        assert!(
            e_less > target,
            "sigma {sigma} is not close to the smallest"
        );
    }
}

#[test]
fn bad_questions_get_errors() {
    assert_eq!(
        accountant::rdp(1.5, 1.0, 2.0),
        Err(AccountantError::SamplingRate(1.5))
    );
    assert!(matches!(
        accountant::rdp(0.1, f64::NAN, 2.0),
        Err(AccountantError::Noise(_))
    ));
    assert_eq!(
        accountant::rdp(0.1, 1.0, 0.5),
        Err(AccountantError::Order(0.5))
    );
    assert_eq!(
        accountant::dp_sgd_epsilon(0.1, 1.0, 10, 1.0).unwrap_err(),
        AccountantError::Delta(1.0)
    );
    assert!(matches!(
        accountant::dp_sgd_noise(0.1, 10, 1e-5, -1.0),
        Err(AccountantError::Epsilon(_))
    ));
    assert!(matches!(
        accountant::dp_sgd_noise(1.0, 1_000_000_000, 1e-9, 1e-6),
        Err(AccountantError::Unreachable { .. })
    ));
}
