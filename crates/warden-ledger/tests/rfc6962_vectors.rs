//! The 196 RFC 6962 / RFC 9162 proof vectors of transparency-dev/merkle (copied under `data/`, with
//! their licence): every happy path verifies, every case marked `wantErr` is rejected.

#![allow(clippy::unwrap_used, clippy::print_stderr)] // Tests fail by panicking.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::Value;
use warden_ledger::merkle::{ProofError, verify_consistency_bytes, verify_inclusion_bytes};

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "json") {
            out.push(p);
        }
    }
}

fn b64(v: &Value) -> Vec<u8> {
    B64.decode(v.as_str().unwrap()).unwrap()
}

fn proof(v: &Value) -> Vec<Vec<u8>> {
    v.as_array()
        .map(|a| a.iter().map(b64).collect())
        .unwrap_or_default()
}

fn check_inclusion(c: &Value) -> Result<(), ProofError> {
    let (index, size) = (
        c["leafIdx"].as_u64().unwrap(),
        c["treeSize"].as_u64().unwrap(),
    );
    verify_inclusion_bytes(
        &b64(&c["leafHash"]),
        index,
        size,
        &proof(&c["proof"]),
        &b64(&c["root"]),
    )
}

fn check_consistency(c: &Value) -> Result<(), ProofError> {
    let (s1, s2) = (c["size1"].as_u64().unwrap(), c["size2"].as_u64().unwrap());
    verify_consistency_bytes(
        s1,
        s2,
        &proof(&c["proof"]),
        &b64(&c["root1"]),
        &b64(&c["root2"]),
    )
}

#[test]
fn all_rfc6962_vectors() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/rfc6962-vectors");
    let mut all = Vec::new();
    files(&root, &mut all);
    all.sort();
    assert_eq!(
        all.len(),
        196,
        "expected the 196 vectors of transparency-dev/merkle"
    );
    let mut failures = Vec::new();
    let (mut ok, mut rejected) = (0, 0);
    for path in &all {
        let case: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        let rel = path.strip_prefix(&root).unwrap().display().to_string();
        let result = if rel.starts_with("inclusion") {
            check_inclusion(&case)
        } else {
            check_consistency(&case)
        };
        let want_err = case["wantErr"].as_bool().unwrap();
        match (want_err, result.is_ok()) {
            (false, true) => ok += 1,
            (true, false) => rejected += 1,
            _ => failures.push(format!("{rel} ({}): wantErr {want_err}", case["desc"])),
        }
    }
    assert!(
        failures.is_empty(),
        "{} vectors failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(ok > 10 && rejected > 100, "ok {ok}, rejected {rejected}");
}
