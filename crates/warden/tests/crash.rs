//! Crash safety: a `warden ledger append` process is killed with SIGKILL at random points while it
//! appends, many times over. After each kill the ledger must reopen, hold every record whose index had
//! been printed (in order, byte for byte), and pass `verify`.

#![allow(clippy::unwrap_used, clippy::print_stderr)] // Tests fail by panicking.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::Value;

struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn warden(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_warden"));
    c.arg("ledger").arg("--ledger").arg(dir);
    c
}

fn line(seq: u64) -> String {
    format!(
        "{{\"kind\":\"decision\",\"actor\":\"monitor:crash\",\"time\":\"2026-11-25T10:00:00Z\",\"payload\":{{\"seq\":{seq}}}}}\n"
    )
}

/// Everything stored, as (index, leaf hash, seq), checked by `verify` first.
fn read_back(dir: &Path) -> Vec<(u64, String, u64)> {
    let out = warden(dir).args(["verify", "--json"]).output().unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert!(
        out.status.success() && report["ok"] == true,
        "verify after a crash: {report} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = warden(dir).arg("export").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let leaf: Value =
                serde_json::from_slice(&B64.decode(v["leaf"].as_str().unwrap()).unwrap()).unwrap();
            (
                v["index"].as_u64().unwrap(),
                v["leaf_hash"].as_str().unwrap().to_owned(),
                leaf["payload"]["seq"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn sigkill_during_appends_loses_nothing_acknowledged() {
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("crash test seed {seed}");
    let mut rng = Rng(seed);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ledger");
    assert!(
        warden(&dir)
            .args(["init", "--origin", "warden.test/crash"])
            .output()
            .unwrap()
            .status
            .success()
    );

    let mut acked: Vec<(u64, String)> = Vec::new();
    let mut next_seq = 0u64;
    let mut kills_mid_stream = 0;
    // Streams of JSON Lines (bulk mode, rollback journal), killed after a random number of acks or a
    // random delay.
    for _run in 0..24 {
        let mut child = warden(&dir)
            .args(["append", "--json", "--no-checkpoint"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let start_seq = next_seq;
        let burst = 1 + rng.below(64);
        let writer = std::thread::spawn(move || {
            let mut seq = start_seq;
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                let chunk: String = (0..burst).map(|i| line(seq + i)).collect();
                if stdin
                    .write_all(chunk.as_bytes())
                    .and_then(|()| stdin.flush())
                    .is_err()
                {
                    break;
                }
                seq += burst;
                std::thread::sleep(Duration::from_micros(200));
            }
            seq
        });
        let want_acks = rng.below(400);
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        let mut got = 0;
        let mut buf = String::new();
        let kill_after = Instant::now() + Duration::from_millis(rng.below(80));
        while got < want_acks && Instant::now() < kill_after + Duration::from_millis(200) {
            buf.clear();
            if reader.read_line(&mut buf).unwrap_or(0) == 0 {
                break;
            }
            let v: Value = serde_json::from_str(buf.trim()).unwrap();
            acked.push((
                v["index"].as_u64().unwrap(),
                v["leaf_hash"].as_str().unwrap().to_owned(),
            ));
            got += 1;
        }
        child.kill().unwrap();
        // Acks already printed before the kill landed still count: drain them.
        loop {
            buf.clear();
            match reader.read_line(&mut buf) {
                Ok(n) if n > 0 && buf.ends_with('\n') => {
                    let v: Value = serde_json::from_str(buf.trim()).unwrap();
                    acked.push((
                        v["index"].as_u64().unwrap(),
                        v["leaf_hash"].as_str().unwrap().to_owned(),
                    ));
                }
                _ => break,
            }
        }
        let status = child.wait().unwrap();
        if status.code().is_none() {
            kills_mid_stream += 1;
        }
        next_seq = writer.join().unwrap() + 1;

        let stored = read_back(&dir);
        for (i, (index, _, _)) in stored.iter().enumerate() {
            assert_eq!(*index, i as u64);
        }
        for (index, hash) in &acked {
            let (_, stored_hash, _) = stored
                .get(*index as usize)
                .unwrap_or_else(|| panic!("acknowledged record {index} lost (seed {seed})"));
            assert_eq!(
                stored_hash, hash,
                "acknowledged record {index} changed (seed {seed})"
            );
        }
        assert!(
            stored.windows(2).all(|w| w[0].2 < w[1].2),
            "records out of order (seed {seed})"
        );
    }
    assert!(
        kills_mid_stream >= 20,
        "most runs must really be killed, got {kills_mid_stream}"
    );

    // Single appends (write-ahead log mode), each process killed after a random delay.
    for _ in 0..30 {
        let rec = line(next_seq);
        next_seq += 1;
        let mut child = warden(&dir)
            .args(["append", "--json", "--record", rec.trim()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(rng.below(6000)));
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        if out.status.success() {
            let v: Value = serde_json::from_slice(&out.stdout).unwrap();
            acked.push((
                v["index"].as_u64().unwrap(),
                v["leaf_hash"].as_str().unwrap().to_owned(),
            ));
        }
    }
    let stored = read_back(&dir);
    for (index, hash) in &acked {
        assert_eq!(
            stored.get(*index as usize).map(|s| &s.1),
            Some(hash),
            "acknowledged record {index} (seed {seed})"
        );
    }
    eprintln!(
        "{} records stored, {} acknowledged, {kills_mid_stream} streams killed mid-run",
        stored.len(),
        acked.len()
    );
}
