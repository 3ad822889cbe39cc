//! `warden harden data` and `warden harden corrupt` on the real Fashion-MNIST files: the corrupted
//! sets are valid IDX files that read back, with the digests the index names.

#![allow(clippy::unwrap_used)] // Tests fail by panicking.

use std::process::Command;

#[test]
fn corrupted_sets_read_back_with_their_digests() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args([
            "harden",
            "corrupt",
            "--corruption",
            "contrast,translate",
            "--severity",
            "2,4",
            "--seed",
            "3",
            "-o",
        ])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let index: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let sets = index["sets"].as_array().unwrap();
    assert_eq!(sets.len(), 4);
    let labels = std::path::Path::new(warden_harden::data::FASHION_MNIST_DIR)
        .join("t10k-labels-idx1-ubyte.gz");
    for s in sets {
        let path = tmp.path().join(s["file"].as_str().unwrap());
        let set = warden_harden::data::load_idx_pair(&path, &labels, "x").unwrap();
        assert_eq!(set.len(), 10_000);
        assert_eq!(set.digest(), s["sha256"].as_str().unwrap());
    }
    let bad = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["harden", "corrupt", "--corruption", "fog", "-o"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&bad.stderr)
            .contains("unknown corruption \"fog\"; expected one of gaussian-noise")
    );
}
