//! `warden bench ledger`: the ledger benchmark whose figures are in BENCHMARKS.md. It measures the
//! real thing: the SQLite driver with fsync on every commit, the same append pipeline as
//! `warden ledger append`, and the same verifier as `warden ledger verify`.

use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use clap::{Args, Subcommand};
use serde_json::json;
use warden_ledger::merkle::{self, verify_consistency, verify_inclusion};
use warden_ledger::{Record, VerifyOptions};

use crate::ledger_dir::{self, Access};
use crate::{Outcome, ledger_cmd};

#[derive(Debug, Subcommand)]
pub(crate) enum BenchCommand {
    /// Durable append throughput (bulk and concurrent), proof latency, verify time, bytes per record.
    Ledger(LedgerBench),
    /// Training, attack and adversarial-training throughput on Fashion-MNIST, as the PyTorch baseline.
    Harden(crate::bench_harden::HardenBench),
    /// Per-request detector latency and stream detector throughput, as the Python baseline.
    Monitor(crate::monitor_bench::MonitorBench),
}

#[derive(Debug, Args)]
pub(crate) struct LedgerBench {
    /// Records in the bulk-loaded ledger used for proofs and verify.
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    /// Seconds each concurrent-writer run lasts.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Writer thread counts to measure single appends with.
    #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
    writers: Vec<usize>,
    /// Proofs sampled for the latency figures.
    #[arg(long, default_value_t = 20_000)]
    proofs: usize,
    /// Where to put the benchmark ledgers [default: a fresh temporary directory, removed afterwards].
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Print the figures as JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(cmd: BenchCommand) -> Result<Outcome> {
    match cmd {
        BenchCommand::Ledger(b) => ledger(b),
        BenchCommand::Harden(b) => crate::bench_harden::run(b),
        BenchCommand::Monitor(b) => crate::monitor_bench::run(b),
    }
}

/// A realistic monitor decision, about 330 bytes in canonical form.
fn decision_line(i: u64) -> String {
    format!(
        concat!(
            r#"{{"kind":"decision","actor":"monitor:fmnist-cnn-v3","time":"2026-11-25T12:00:00.{:03}Z","#,
            r#""subjects":[{{"name":"model","digest":"sha256:{:064x}"}},{{"name":"request","digest":"sha256:{:064x}"}}],"#,
            r#""payload":{{"verdict":"allow","score":{},"detector":"mahalanobis","client":"c-{}"}}}}"#
        ),
        i % 1000,
        0xfeed_u64,
        i.wrapping_mul(0x9e37_79b9_7f4a_7c15),
        (i % 997) as f64 / 997.0,
        i % 64
    )
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// SplitMix64, for reproducible sampling.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn ledger(b: LedgerBench) -> Result<Outcome> {
    let tmp;
    let base = match &b.dir {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile_dir()?;
            tmp.0.clone()
        }
    };
    let mut err = io::stderr().lock();
    let mut results = serde_json::Map::new();

    // 1. Bulk JSON Lines, through the same pipeline as `warden ledger append`.
    let bulk_dir = base.join("bulk");
    drop(ledger_dir::create(&bulk_dir, "bench/bulk")?);
    let ledger = ledger_dir::open(&bulk_dir, Access::Bulk, true)?;
    let mut input = Vec::with_capacity(b.records as usize * 360);
    for i in 0..b.records {
        input.extend_from_slice(decision_line(i).as_bytes());
        input.push(b'\n');
    }
    writeln!(
        err,
        "bulk: appending {} records ({} MiB of JSON Lines)…",
        b.records,
        input.len() >> 20
    )?;
    let t = Instant::now();
    let (n, _, e) = ledger_cmd::append_stream(
        &ledger,
        io::BufReader::with_capacity(1 << 16, io::Cursor::new(&input)),
        false,
        &mut io::sink(),
    )?;
    let bulk_secs = t.elapsed().as_secs_f64();
    anyhow::ensure!(e.is_none() && n == b.records, "bulk load failed: {e:?}");
    drop(input);
    let bulk_rate = n as f64 / bulk_secs;
    writeln!(err, "bulk: {bulk_rate:.0} records/s ({bulk_secs:.2} s)")?;
    results.insert("bulk_records".into(), json!(n));
    results.insert("bulk_seconds".into(), json!(bulk_secs));
    results.insert("bulk_records_per_s".into(), json!(bulk_rate));

    // 1b. The two stages of the pipeline alone: parsing (one thread) and durable storing.
    {
        let lines: Vec<String> = (0..b.records.min(200_000)).map(decision_line).collect();
        let t = Instant::now();
        let leaves: Vec<(Vec<u8>, merkle::Hash)> = lines
            .iter()
            .map(|l| {
                let leaf = Record::canonical_leaf(l.as_bytes(), 0).unwrap_or_default();
                let h = merkle::leaf_hash(&leaf);
                (leaf, h)
            })
            .collect();
        let parse_rate = leaves.len() as f64 / t.elapsed().as_secs_f64();
        let dir = base.join("store-only");
        drop(ledger_dir::create(&dir, "bench/store-only")?);
        let l2 = ledger_dir::open(&dir, Access::Bulk, true)?;
        let t = Instant::now();
        for chunk in leaves.chunks(65_536) {
            let refs: Vec<(&[u8], merkle::Hash)> =
                chunk.iter().map(|(l, h)| (l.as_slice(), *h)).collect();
            l2.append_batch(&refs)?;
        }
        let store_rate = leaves.len() as f64 / t.elapsed().as_secs_f64();
        writeln!(
            err,
            "stages: parse+canonicalise+hash {parse_rate:.0} records/s on one thread; durable store {store_rate:.0} records/s"
        )?;
        results.insert("parse_records_per_s".into(), json!(parse_rate));
        results.insert("store_records_per_s".into(), json!(store_rate));
    }

    // 2. Proof generation and verification latency at this size, from a fresh read-only open as
    // `warden ledger prove` does.
    drop(ledger);
    let ledger = ledger_dir::open(&bulk_dir, Access::ReadOnly, false)?;
    let size = ledger.size();
    let root = ledger.root_at(size)?;
    let mut rng = 42u64;
    let (mut gen_incl, mut ver_incl, mut gen_cons, mut ver_cons) = (vec![], vec![], vec![], vec![]);
    for _ in 0..b.proofs {
        let index = splitmix(&mut rng) % size;
        let leaf = merkle::leaf_hash(&ledger.get(index)?);
        let t = Instant::now();
        let proof = ledger.inclusion_proof(index, size)?;
        gen_incl.push(t.elapsed().as_secs_f64() * 1e6);
        let t = Instant::now();
        verify_inclusion(&leaf, index, size, &proof, &root)
            .context("inclusion proof did not verify")?;
        ver_incl.push(t.elapsed().as_secs_f64() * 1e6);

        let from = 1 + splitmix(&mut rng) % size;
        let r1 = ledger.root_at(from)?;
        let t = Instant::now();
        let proof = ledger.consistency_proof(from, size)?;
        gen_cons.push(t.elapsed().as_secs_f64() * 1e6);
        let t = Instant::now();
        verify_consistency(from, size, &proof, &r1, &root)
            .context("consistency proof did not verify")?;
        ver_cons.push(t.elapsed().as_secs_f64() * 1e6);
    }
    for (name, v) in [
        ("inclusion_proof_us", &mut gen_incl),
        ("inclusion_verify_us", &mut ver_incl),
        ("consistency_proof_us", &mut gen_cons),
        ("consistency_verify_us", &mut ver_cons),
    ] {
        v.sort_by(f64::total_cmp);
        let (p50, p99) = (percentile(v, 0.5), percentile(v, 0.99));
        writeln!(err, "{name}: p50 {p50:.1} us, p99 {p99:.1} us")?;
        results.insert(
            name.into(),
            json!({ "p50": p50, "p99": p99, "samples": v.len() }),
        );
    }
    drop(ledger);

    // 3. Full verify, from a cold open of the database, as `warden ledger verify` runs it.
    for (name, check_records) in [
        ("verify_seconds", true),
        ("verify_hashes_only_seconds", false),
    ] {
        let store = ledger_dir::open_store(&bulk_dir, Access::ReadOnly)?;
        let t = Instant::now();
        let report = warden_ledger::verify(
            &store,
            &VerifyOptions {
                check_records,
                ..VerifyOptions::default()
            },
        )?;
        let secs = t.elapsed().as_secs_f64();
        anyhow::ensure!(
            report.is_ok(),
            "verify found problems in the benchmark ledger: {:?}",
            report.problems
        );
        writeln!(
            err,
            "{name}: {secs:.2} s for {} records",
            report.records_checked
        )?;
        results.insert(name.into(), json!(secs));
    }

    // 4. Bytes on disk per record, after folding the write-ahead log into the database.
    {
        let store = ledger_dir::open_store(&bulk_dir, Access::ReadWrite)?;
        store
            .connection()
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
    }
    let db_bytes = std::fs::metadata(bulk_dir.join(ledger_dir::DB_FILE))?.len();
    let per_record = db_bytes as f64 / size as f64;
    writeln!(
        err,
        "disk: {db_bytes} bytes, {per_record:.1} bytes/record (canonical record ~{} bytes)",
        decision_line(1).len()
    )?;
    results.insert("db_bytes".into(), json!(db_bytes));
    results.insert("bytes_per_record".into(), json!(per_record));

    // 5. Concurrent single appends: each writer appends one record at a time and waits for it.
    let mut conc = serde_json::Map::new();
    for &writers in &b.writers {
        let dir = base.join(format!("concurrent-{writers}"));
        let ledger = ledger_dir::create(&dir, "bench/concurrent")?;
        let done = AtomicU64::new(0);
        let deadline = Instant::now() + Duration::from_secs_f64(b.seconds);
        let now = 1_795_000_000_000i64;
        let t = Instant::now();
        std::thread::scope(|s| {
            for w in 0..writers {
                let (ledger, done) = (&ledger, &done);
                s.spawn(move || -> Result<()> {
                    let mut i = w as u64;
                    while Instant::now() < deadline {
                        let r = Record::from_json(decision_line(i).as_bytes(), now)?;
                        ledger.append(&r)?;
                        done.fetch_add(1, Ordering::Relaxed);
                        i += writers as u64;
                    }
                    Ok(())
                });
            }
        });
        let secs = t.elapsed().as_secs_f64();
        let n = done.load(Ordering::Relaxed);
        let commits = ledger.commits();
        let rate = n as f64 / secs;
        writeln!(
            err,
            "concurrent {writers} writer(s): {rate:.0} appends/s ({n} appends, {commits} commits, {:.1} per fsync)",
            n as f64 / commits.max(1) as f64
        )?;
        conc.insert(
            writers.to_string(),
            json!({ "appends_per_s": rate, "appends": n, "commits": commits }),
        );
    }
    results.insert("concurrent".into(), serde_json::Value::Object(conc));

    if b.json {
        writeln!(
            io::stdout().lock(),
            "{}",
            serde_json::Value::Object(results)
        )?;
    }
    Ok(Outcome::Ok)
}

/// A temporary directory removed when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tempfile_dir() -> Result<TempDir> {
    let base = std::env::temp_dir();
    for attempt in 0..100u32 {
        let p = base.join(format!("warden-bench-{}-{attempt}", std::process::id()));
        if std::fs::create_dir(&p).is_ok() {
            return Ok(TempDir(p));
        }
    }
    anyhow::bail!(
        "cannot create a temporary directory under {}",
        base.display()
    )
}
