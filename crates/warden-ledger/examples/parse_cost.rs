//! Per-record cost of parsing, canonicalising, hashing and checking one record (see BENCHMARKS.md).
#![allow(clippy::unwrap_used, clippy::print_stdout)] // A measuring script: failing loudly is the point.
use std::time::Instant;
fn main() {
    let line = r#"{"kind":"decision","actor":"monitor:fmnist-cnn-v3","time":"2026-11-25T12:00:00.123Z","subjects":[{"name":"model","digest":"sha256:000000000000000000000000000000000000000000000000000000000000feed"},{"name":"request","digest":"sha256:9e3779b97f4a7c159e3779b97f4a7c159e3779b97f4a7c159e3779b97f4a7c15"}],"payload":{"verdict":"allow","score":0.123,"detector":"mahalanobis","client":"c-1"}}"#;
    let n = 200_000;
    let t = Instant::now();
    for _ in 0..n {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        std::hint::black_box(v);
    }
    println!(
        "Value parse: {:.2} us",
        t.elapsed().as_secs_f64() * 1e6 / n as f64
    );
    let t = Instant::now();
    let mut r = None;
    for _ in 0..n {
        r = Some(warden_ledger::Record::from_json(line.as_bytes(), 0).unwrap());
    }
    println!(
        "Record::from_json: {:.2} us",
        t.elapsed().as_secs_f64() * 1e6 / n as f64
    );
    let r = r.unwrap();
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(warden_ledger::Record::canonical_leaf(line.as_bytes(), 0).unwrap());
    }
    println!(
        "canonical_leaf: {:.2} us",
        t.elapsed().as_secs_f64() * 1e6 / n as f64
    );
    let leaf0 = warden_ledger::Record::canonical_leaf(line.as_bytes(), 0).unwrap();
    let t = Instant::now();
    for _ in 0..n {
        warden_ledger::record::check_leaf(&leaf0).unwrap();
    }
    println!(
        "check_leaf: {:.2} us",
        t.elapsed().as_secs_f64() * 1e6 / n as f64
    );
    let t = Instant::now();
    let mut leaf = vec![];
    for _ in 0..n {
        leaf = r.to_leaf();
    }
    println!(
        "to_leaf: {:.2} us ({} bytes)",
        t.elapsed().as_secs_f64() * 1e6 / n as f64,
        leaf.len()
    );
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(warden_ledger::merkle::leaf_hash(&leaf));
    }
    println!(
        "leaf_hash: {:.2} us",
        t.elapsed().as_secs_f64() * 1e6 / n as f64
    );
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(warden_ledger::Record::from_leaf(&leaf).unwrap());
    }
    println!(
        "from_leaf: {:.2} us",
        t.elapsed().as_secs_f64() * 1e6 / n as f64
    );
}
