//! `warden bench monitor` on a tiny setting (a few seconds): it runs, prints JSON with every
//! figure the benchmark reports, and its `--dump` writes valid `.npy` files whose shapes match the
//! settings. No timing is asserted: figures are for the benchmark, not for tests.

#![allow(clippy::unwrap_used)] // Tests fail by panicking.

use std::path::Path;
use std::process::Command;

/// The shape in a NumPy format 1.0 header, checking the magic and the data length.
fn npy_shape(path: &Path, item: usize) -> Vec<usize> {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00", "{}", path.display());
    let len = usize::from(u16::from_le_bytes([bytes[8], bytes[9]]));
    assert_eq!((10 + len) % 64, 0, "header not aligned: {}", path.display());
    let header = std::str::from_utf8(&bytes[10..10 + len]).unwrap();
    assert!(header.ends_with('\n') && header.contains("'fortran_order': False"));
    let shape = header.split("'shape': (").nth(1).unwrap();
    let shape: Vec<usize> = shape[..shape.find(')').unwrap()]
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(
        bytes.len() - 10 - len,
        shape.iter().product::<usize>() * item,
        "{}",
        path.display()
    );
    shape
}

#[test]
fn tiny_monitor_benchmark_prints_json_and_dumps_vectors() {
    let tmp = tempfile::tempdir().unwrap();
    let dump = tmp.path().join("vectors");
    let out = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args([
            "bench",
            "monitor",
            "--train-batches",
            "10",
            "--fit",
            "600",
            "--calibrate",
            "300",
            "--requests",
            "200",
            "--warmup",
            "20",
            "--knn-k",
            "5",
            "--knn-reference",
            "300",
            "--knn-sweep",
            "100,300",
            "--reconstruct",
            "features",
            "--pca-components",
            "4",
            "--ae-epochs",
            "1",
            "--stream",
            "3000",
            "--json",
            "--dump",
        ])
        .arg(&dump)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let pr = &r["per_request"];
    for key in ["p50_us", "p90_us", "p99_us", "max_us"] {
        assert!(pr["all_detectors"][key].as_f64().unwrap() > 0.0, "{key}");
    }
    assert_eq!(pr["all_detectors"]["samples"], 200);
    for name in [
        "msp",
        "entropy",
        "energy",
        "mahalanobis",
        "knn",
        "pca",
        "autoencoder",
        "squeeze",
        "ensemble",
    ] {
        assert_eq!(pr["detectors"][name]["samples"], 200, "{name}");
    }
    let sweep = pr["knn_by_reference_rows"].as_array().unwrap();
    assert_eq!(sweep.len(), 2);
    assert_eq!(sweep[0]["reference_rows"], 100);
    assert!(sweep[1]["p99_us"].as_f64().unwrap() > 0.0);
    let verdicts = &pr["clean_test_verdicts"];
    let total: u64 = ["allow", "flag", "block"]
        .iter()
        .map(|v| verdicts[v].as_u64().unwrap())
        .sum();
    assert_eq!(total, 200);
    assert_eq!(r["config"]["knn"]["k"], 5);
    assert_eq!(r["config"]["knn"]["reference_rows"], 300);
    for key in [
        "model_forward",
        "squeeze_extra",
        "all_detectors_with_squeeze_extra",
    ] {
        assert!(r["batch1_forward"][key]["p99_us"].as_f64().unwrap() > 0.0);
    }
    let stream = r["stream"]["detectors"].as_object().unwrap();
    for name in [
        "cusum",
        "page_hinkley",
        "adwin",
        "ks_scores",
        "ks_features",
        "online_mmd_features",
        "online_mmd_scores",
        "chi_square_labels",
    ] {
        let d = &stream[name];
        assert!(d["samples_per_s"].as_f64().unwrap() > 0.0, "{name}");
        assert!(d["samples"].as_u64().unwrap() >= 300, "{name}");
    }

    // The dump: shapes follow the settings, and the metadata carries them.
    assert_eq!(npy_shape(&dump.join("fit_features.npy"), 4), [600, 128]);
    assert_eq!(npy_shape(&dump.join("fit_pixels.npy"), 4), [600, 784]);
    assert_eq!(npy_shape(&dump.join("cal_squeezed.npy"), 4), [300, 2, 10]);
    assert_eq!(npy_shape(&dump.join("test_logits.npy"), 4), [200, 10]);
    assert_eq!(npy_shape(&dump.join("test_predicted.npy"), 8), [200]);
    assert_eq!(npy_shape(&dump.join("knn_reference.npy"), 4), [300, 128]);
    assert_eq!(npy_shape(&dump.join("rust_test_scores.npy"), 8), [200, 8]);
    assert_eq!(npy_shape(&dump.join("stream_scores.npy"), 8), [200]);
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dump.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["config"]["pca"]["input"], "features");
    assert_eq!(meta["members"].as_array().unwrap().len(), 8);

    // Bad settings are refused with exit code 2 and a message.
    let bad = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["bench", "monitor", "--fit", "10"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--fit: at least 100 rows"));
}
