//! `warden harden eval-blackbox` against `warden harden oracle`: the black-box path gives exactly
//! the clean accuracy and Square result of the same model attacked in-process, and oracles that
//! break the protocol are refused with an error, not a hang or a panic.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

use warden_harden::attack::Norm;
use warden_harden::data::{self, Split};
use warden_harden::nn::{Arch, Pool};
use warden_harden::square::{self, Square};
use warden_harden::weights;

fn warden(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(args)
        .output()
        .unwrap()
}

fn ok(o: &Output) {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn fashion_mnist() -> String {
    std::env::var("WARDEN_FASHION_MNIST").unwrap_or_else(|_| data::FASHION_MNIST_DIR.to_string())
}

#[test]
fn black_box_equals_white_box_square_and_bad_oracles_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("m");
    let m = model.to_str().unwrap();
    ok(&warden(&[
        "harden",
        "train",
        "--arch",
        "mlp",
        "--epochs",
        "1",
        "--limit",
        "1500",
        "--val-per-class",
        "10",
        "--threads",
        "1",
        "-o",
        m,
    ]));
    let report = tmp.path().join("bb.json");
    let r = report.to_str().unwrap();
    let exe = env!("CARGO_BIN_EXE_warden");
    ok(&warden(&[
        "harden",
        "eval-blackbox",
        "--eps",
        "0.08",
        "--square-queries",
        "40",
        "--limit",
        "300",
        "--seed",
        "5",
        "-o",
        r,
        "--",
        exe,
        "harden",
        "oracle",
        m,
    ]));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(v["schema"], "warden.blackbox-report/v1");
    assert_eq!(v["test_set"]["examples"], 300);
    assert!(v["max_linf_distance"].as_f64().unwrap() <= 0.08 + 1e-6);

    // The same attack in-process on the same weights.
    let bytes = std::fs::read(model.join("model.safetensors")).unwrap();
    let net = weights::from_safetensors(&Arch::mlp(&[256, 128]), &bytes).unwrap();
    let test = data::load_fashion_mnist(Path::new(&fashion_mnist()), Split::Test).unwrap();
    let x: Vec<f32> = (0..300).flat_map(|i| test.image_f32(i)).collect();
    let y = &test.labels[..300];
    let mut pool = Pool::new(2);
    let pred = net.predict(&mut pool, &x, 300).unwrap();
    let clean = pred.iter().zip(y).filter(|(p, l)| p == l).count() as f64 / 300.0;
    let out = square::run(&net, &mut pool, &Square::new(0.08, 40), &x, y, 5).unwrap();
    let robust = out.success.iter().filter(|s| !**s).count() as f64 / 300.0;
    assert_eq!(v["clean_accuracy"].as_f64().unwrap(), clean);
    assert_eq!(v["robust_accuracy"].as_f64().unwrap(), robust);
    assert!(
        robust < clean,
        "Square breaks some of an undefended MLP at 0.08"
    );

    // Under L2, through the oracle and in-process alike.
    ok(&warden(&[
        "harden",
        "eval-blackbox",
        "--norm",
        "l2",
        "--eps",
        "1.5",
        "--square-queries",
        "40",
        "--limit",
        "100",
        "-o",
        r,
        "--",
        exe,
        "harden",
        "oracle",
        m,
    ]));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(v["attack"]["norm"], "l2");
    assert!(v["max_l2_distance"].as_f64().unwrap() <= 1.5 * (1.0 + 1e-5));
    let l2 = Square {
        norm: Norm::L2,
        ..Square::new(1.5, 40)
    };
    let out = square::run(&net, &mut pool, &l2, &x[..100 * 784], &y[..100], 0).unwrap();
    let robust_l2 = out.success.iter().filter(|s| !**s).count() as f64 / 100.0;
    assert_eq!(v["robust_accuracy"].as_f64().unwrap(), robust_l2);
    assert!(
        robust_l2 < v["clean_accuracy"].as_f64().unwrap(),
        "Square L2 breaks some at 1.5"
    );
    assert!(
        !warden(&[
            "harden",
            "eval-blackbox",
            "--norm",
            "l2",
            "--eps",
            "29",
            "-o",
            r,
            "--",
            "true"
        ])
        .status
        .success(),
        "an L2 budget beyond the cube's diagonal is refused"
    );

    // Oracles that break the protocol: one that echoes its input (wrong count), one that exits
    // at once, one that does not exist.
    for oracle in [&["cat"][..], &["true"], &["/nonexistent/oracle"]] {
        let mut args = vec![
            "harden",
            "eval-blackbox",
            "--limit",
            "20",
            "--square-queries",
            "5",
            "-o",
            r,
            "--",
        ];
        args.extend_from_slice(oracle);
        let o = warden(&args);
        assert_eq!(o.status.code(), Some(2), "{oracle:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.starts_with("error: "), "{oracle:?}: {err}");
    }
}
