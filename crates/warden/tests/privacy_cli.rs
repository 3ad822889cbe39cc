//! `warden privacy epsilon|noise`: the accountant's answers at the command line, and clean refusals.

#![allow(clippy::unwrap_used)] // Tests fail by panicking.

use std::process::Command;

fn warden(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_warden"))
        .arg("privacy")
        .args(args)
        .output()
        .unwrap()
}

/// dp-accounting 0.6.0: `PLDAccountant(value_discretization_interval=1e-4)` composed with
/// `SelfComposedDpEvent(PoissonSampledDpEvent(256/60000, GaussianDpEvent(1.1)), 14062)`,
/// `get_epsilon(1e-5)`.
const PLD_EPSILON: f64 = 2.381686002234784;

#[test]
fn epsilon_and_noise_agree_with_each_other_and_with_dp_accounting() {
    // dp-accounting 0.6.0 gives 2.5965558697943036 at order 8.1 for 14062 steps by RDP (see
    // crates/warden-harden/tests/accountant.rs), and PLD_EPSILON by its PLD accountant
    // (interval 1e-4); 60 epochs round up to 14063 steps.
    let o = warden(&[
        "epsilon",
        "--noise-multiplier",
        "1.1",
        "--sampling-rate",
        "0.004266666666666667",
        "--steps",
        "14062",
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["accountant"], "pld");
    assert!(
        (v["epsilon"].as_f64().unwrap() - PLD_EPSILON).abs() < 1e-6 * PLD_EPSILON,
        "{v}"
    );
    assert!((v["rdp"]["epsilon"].as_f64().unwrap() - 2.5965558697943036).abs() < 1e-6 * 2.6);
    assert_eq!(v["rdp"]["optimal_order"], 8.1);
    let o = warden(&[
        "noise",
        "--epsilon",
        "2.0",
        "--batch-size",
        "256",
        "--dataset-size",
        "60000",
        "--epochs",
        "60",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["steps"], 14063);
    assert!(v["epsilon"].as_f64().unwrap() <= 2.0);
    let pld_noise = v["noise_multiplier"].as_f64().unwrap();
    assert!(
        pld_noise > 1.1,
        "a smaller epsilon needs more noise than 1.1"
    );
    // The RDP accountant, on request: the same answers as dp-accounting's RDP, and more noise
    // for the same target than the tighter PLD needs.
    let o = warden(&[
        "epsilon",
        "--noise-multiplier",
        "1.1",
        "--sampling-rate",
        "0.004266666666666667",
        "--steps",
        "14062",
        "--accountant",
        "rdp",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["accountant"], "rdp");
    assert!((v["epsilon"].as_f64().unwrap() - 2.5965558697943036).abs() < 1e-6 * 2.6);
    let o = warden(&[
        "noise",
        "--epsilon",
        "2.0",
        "--batch-size",
        "256",
        "--dataset-size",
        "60000",
        "--epochs",
        "60",
        "--accountant",
        "rdp",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let rdp_noise = v["noise_multiplier"].as_f64().unwrap();
    assert!(
        rdp_noise > pld_noise * 1.02,
        "RDP {rdp_noise} vs PLD {pld_noise}"
    );
}

#[test]
fn bad_questions_are_refused() {
    for args in [
        &[
            "epsilon",
            "--noise-multiplier",
            "1",
            "--sampling-rate",
            "2",
            "--steps",
            "5",
        ][..],
        &[
            "epsilon",
            "--noise-multiplier",
            "1",
            "--sampling-rate",
            "0.1",
            "--steps",
            "5",
            "--delta",
            "1",
        ],
        &[
            "noise",
            "--epsilon",
            "-1",
            "--sampling-rate",
            "0.1",
            "--steps",
            "5",
        ],
        &[
            "epsilon",
            "--noise-multiplier",
            "1",
            "--batch-size",
            "10",
            "--dataset-size",
            "5",
            "--epochs",
            "1",
        ],
    ] {
        let o = warden(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&o.stderr).starts_with("error: "),
            "{args:?}"
        );
    }
}
