//! The SQLite driver against the in-memory reference driver, reopening, writers in two processes'
//! worth of connections, and hostile storage: files that are not ledgers, a full disk, a read-only
//! open. Nothing already stored may be harmed by any failure.

#![allow(clippy::unwrap_used, clippy::print_stderr)] // Tests fail by panicking.

use warden_ledger::{
    Kind, Ledger, LedgerError, MemStore, Record, SignerKey, Store, StoreError, VerifyOptions,
};
use warden_ledger_sqlite::{SqliteOptions, SqliteStore};

fn record(i: u64) -> Record {
    Record {
        kind: Kind::Evidence,
        time_ms: 1_795_000_000_000 + i as i64,
        actor: "harden:eval".into(),
        subjects: vec![],
        payload: serde_json::json!({ "i": i, "pad": "x".repeat((i % 50) as usize) })
            .as_object()
            .unwrap()
            .clone(),
    }
}

fn verify_ok<S: Store>(ledger: &Ledger<S>) {
    let r = ledger
        .verify(&VerifyOptions {
            check_records: true,
            ..Default::default()
        })
        .unwrap();
    assert!(r.is_ok(), "{:?}", r.problems);
}

#[test]
fn sqlite_matches_the_reference_driver_and_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.db");
    let key = SignerKey::generate("warden.test/driver").unwrap();
    let mem = Ledger::create(MemStore::default(), key.clone()).unwrap();
    let mut sql = Ledger::create(SqliteStore::create(&path).unwrap(), key.clone()).unwrap();
    let mut i = 0;
    for round in 0..6u64 {
        // Mix single appends and batches of awkward sizes around tile boundaries.
        for _ in 0..(round * 7 + 3) {
            assert_eq!(
                mem.append(&record(i)).unwrap(),
                sql.append(&record(i)).unwrap()
            );
            i += 1;
        }
        let leaves: Vec<Vec<u8>> = (i..i + 17 * round).map(|j| record(j).to_leaf()).collect();
        let batch: Vec<(&[u8], [u8; 32])> = leaves
            .iter()
            .map(|l| (l.as_slice(), warden_ledger::merkle::leaf_hash(l)))
            .collect();
        assert_eq!(
            mem.append_batch(&batch).unwrap(),
            sql.append_batch(&batch).unwrap()
        );
        i += batch.len() as u64;
        assert_eq!(mem.head(), sql.head());
        let size = sql.size();
        for idx in [0, size / 3, size - 1] {
            assert_eq!(
                mem.inclusion_proof(idx, size).unwrap(),
                sql.inclusion_proof(idx, size).unwrap()
            );
            assert_eq!(mem.get(idx).unwrap(), sql.get(idx).unwrap());
        }
        assert_eq!(
            mem.consistency_proof(1 + size / 2, size).unwrap(),
            sql.consistency_proof(1 + size / 2, size).unwrap()
        );
        sql.checkpoint().unwrap();
        // Reopen from disk, alternating bulk and normal mode.
        drop(sql);
        let opts = SqliteOptions {
            bulk: round % 2 == 0,
            ..Default::default()
        };
        sql = Ledger::open(SqliteStore::open(&path, &opts).unwrap(), Some(key.clone())).unwrap();
        assert_eq!(mem.head(), sql.head());
    }
    verify_ok(&sql);
}

#[test]
fn two_connections_appending_alternately_stay_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.db");
    let key = SignerKey::generate("warden.test/two").unwrap();
    let a = Ledger::create(SqliteStore::create(&path).unwrap(), key.clone()).unwrap();
    let b = Ledger::open(
        SqliteStore::open(&path, &SqliteOptions::default()).unwrap(),
        None,
    )
    .unwrap();
    let mut seen = Vec::new();
    for i in 0..40 {
        let l = if i % 3 == 0 { &b } else { &a };
        seen.push(l.append(&record(i)).unwrap());
    }
    assert_eq!(
        seen,
        (0..40).collect::<Vec<_>>(),
        "each append got the next index"
    );
    verify_ok(&a);
    verify_ok(&b);
}

#[test]
fn files_that_are_not_ledgers_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let opts = SqliteOptions::default();
    let missing = dir.path().join("missing.db");
    assert!(matches!(
        SqliteStore::open(&missing, &opts),
        Err(StoreError::NotALedger { .. })
    ));
    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, vec![0x42u8; 10_000]).unwrap();
    let e = SqliteStore::open(&garbage, &opts).unwrap_err();
    assert!(matches!(e, StoreError::NotALedger { .. }), "{e}");
    assert_eq!(
        std::fs::read(&garbage).unwrap(),
        vec![0x42u8; 10_000],
        "the file was not touched"
    );
    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, b"").unwrap();
    assert!(matches!(
        SqliteStore::open(&empty, &opts),
        Err(StoreError::NotALedger { .. })
    ));
    let other_app = dir.path().join("other.db");
    rusqlite::Connection::open(&other_app)
        .unwrap()
        .execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
        .unwrap();
    let e = SqliteStore::open(&other_app, &opts).unwrap_err();
    assert!(e.to_string().contains("another application"), "{e}");
    assert!(matches!(
        SqliteStore::create(&other_app),
        Err(StoreError::AlreadyExists(_))
    ));
}

#[test]
fn a_full_disk_fails_the_commit_and_harms_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.db");
    let key = SignerKey::generate("warden.test/full").unwrap();
    let ledger = Ledger::create(SqliteStore::create(&path).unwrap(), key.clone()).unwrap();
    for i in 0..30 {
        ledger.append(&record(i)).unwrap();
    }
    let head = ledger.head();
    drop(ledger);
    let pages: u64 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .unwrap();
    for bulk in [false, true] {
        let opts = SqliteOptions {
            max_page_count: Some(pages),
            bulk,
            ..Default::default()
        };
        let ledger =
            Ledger::open(SqliteStore::open(&path, &opts).unwrap(), Some(key.clone())).unwrap();
        // A batch far larger than the remaining room.
        let big: Vec<Vec<u8>> = (0..2000).map(|i| record(1000 + i).to_leaf()).collect();
        let batch: Vec<(&[u8], [u8; 32])> = big
            .iter()
            .map(|l| (l.as_slice(), warden_ledger::merkle::leaf_hash(l)))
            .collect();
        let err = ledger.append_batch(&batch).unwrap_err();
        assert_eq!(err, LedgerError::Store(StoreError::Full), "bulk {bulk}");
        assert!(err.to_string().contains("full"));
        assert_eq!(ledger.head(), head, "the in-memory tree was rolled back");
        verify_ok(&ledger);
        drop(ledger);
    }
    // Once there is room again, appending carries on from where it was.
    let ledger = Ledger::open(
        SqliteStore::open(&path, &SqliteOptions::default()).unwrap(),
        Some(key),
    )
    .unwrap();
    assert_eq!(ledger.append(&record(30)).unwrap(), 30);
    verify_ok(&ledger);
}

#[test]
fn a_read_only_open_refuses_appends() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.db");
    let key = SignerKey::generate("warden.test/ro").unwrap();
    let ledger = Ledger::create(SqliteStore::create(&path).unwrap(), key).unwrap();
    ledger.append(&record(0)).unwrap();
    drop(ledger);
    let ro = Ledger::open(
        SqliteStore::open(
            &path,
            &SqliteOptions {
                read_only: true,
                ..Default::default()
            },
        )
        .unwrap(),
        None,
    )
    .unwrap();
    let err = ro.append(&record(1)).unwrap_err();
    assert_eq!(err, LedgerError::Store(StoreError::ReadOnly), "{err}");
    assert_eq!(ro.size(), 1);
    verify_ok(&ro);
}

#[test]
fn wrong_signing_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.db");
    Ledger::create(
        SqliteStore::create(&path).unwrap(),
        SignerKey::generate("warden.test/a").unwrap(),
    )
    .unwrap();
    let other = SignerKey::generate("warden.test/a").unwrap();
    let err = Ledger::open(
        SqliteStore::open(&path, &SqliteOptions::default()).unwrap(),
        Some(other),
    )
    .unwrap_err();
    assert!(matches!(err, LedgerError::WrongKey { .. }), "{err}");
}

#[test]
fn bulk_mode_next_to_another_open_connection_keeps_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.db");
    let key = SignerKey::generate("warden.test/bulk").unwrap();
    let a = Ledger::create(SqliteStore::create(&path).unwrap(), key.clone()).unwrap();
    a.append(&record(0)).unwrap();
    // A second connection asks for bulk mode while the first is open: it must still work.
    let bulk = SqliteOptions {
        bulk: true,
        ..Default::default()
    };
    let b = Ledger::open(SqliteStore::open(&path, &bulk).unwrap(), Some(key)).unwrap();
    let leaves: Vec<Vec<u8>> = (1..100).map(|i| record(i).to_leaf()).collect();
    let batch: Vec<(&[u8], [u8; 32])> = leaves
        .iter()
        .map(|l| (l.as_slice(), warden_ledger::merkle::leaf_hash(l)))
        .collect();
    assert_eq!(b.append_batch(&batch).unwrap(), 1);
    assert_eq!(a.append(&record(100)).unwrap(), 100);
    drop(b);
    verify_ok(&a);
}
