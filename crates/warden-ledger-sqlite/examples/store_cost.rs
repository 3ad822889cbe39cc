//! Durable store throughput alone, under the journal settings given in the PRAGMAS environment
//! variable (see BENCHMARKS.md, "bulk appends and the journal").
#![allow(clippy::unwrap_used, clippy::print_stdout)] // A measuring script: failing loudly is the point.
use std::time::Instant;
use warden_ledger::{Ledger, SignerKey};
use warden_ledger_sqlite::SqliteStore;
fn main() {
    let p = std::path::Path::new("/work/store_cost.db");
    for f in ["", "-wal", "-shm", "-journal"] {
        let _ = std::fs::remove_file(format!("{}{f}", p.display()));
    }
    let store = SqliteStore::create(p).unwrap();
    if let Ok(pr) = std::env::var("PRAGMAS") {
        store.connection().execute_batch(&pr).unwrap();
    }
    let l = Ledger::create(store, SignerKey::generate("x").unwrap()).unwrap();
    let n: usize = std::env::var("N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let leaves: Vec<Vec<u8>> = (0..n).map(|i| format!("{:0390}", i).into_bytes()).collect();
    let hashes: Vec<[u8; 32]> = leaves
        .iter()
        .map(|l| warden_ledger::merkle::leaf_hash(l))
        .collect();
    let t = Instant::now();
    for (lc, hc) in leaves.chunks(65536).zip(hashes.chunks(65536)) {
        let refs: Vec<(&[u8], [u8; 32])> =
            lc.iter().zip(hc).map(|(l, h)| (l.as_slice(), *h)).collect();
        l.append_batch(&refs).unwrap();
    }
    println!(
        "{}: {:.0} records/s",
        std::env::var("PRAGMAS").unwrap_or_default(),
        n as f64 / t.elapsed().as_secs_f64()
    );
}
