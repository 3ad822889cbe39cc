//! Tamper evidence: every kind of change to stored history that the issue names (a byte of a record or
//! of a stored hash, a deleted row, two swapped rows, a truncated log, a rolled-back log, a forged
//! checkpoint) is reported by `verify`, with the index of the first bad record where one exists.

#![allow(clippy::unwrap_used, clippy::print_stderr)] // Tests fail by panicking.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, params};
use warden_ledger::merkle::leaf_hash;
use warden_ledger::tiles::{TileWrite, TreeState, tile_bytes};
use warden_ledger::{Kind, Ledger, Record, SignerKey, VerifyOptions, VerifyReport};
use warden_ledger_sqlite::{SqliteOptions, SqliteStore};

const N: u64 = 100;

struct Fixture {
    _dir: tempfile::TempDir,
    pristine: PathBuf,
    key: SignerKey,
    /// A checkpoint of the full log, held outside the ledger by an auditor.
    external: String,
}

fn record(i: u64) -> Record {
    Record {
        kind: Kind::ALL[(i % 7) as usize],
        time_ms: 1_795_000_000_000 + i as i64,
        actor: format!("actor-{i}"),
        subjects: vec![],
        payload: serde_json::json!({ "seq": i, "verdict": "allow" })
            .as_object()
            .unwrap()
            .clone(),
    }
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let pristine = dir.path().join("pristine.db");
    let key = SignerKey::generate("warden.test/tamper").unwrap();
    let ledger = Ledger::create(SqliteStore::create(&pristine).unwrap(), key.clone()).unwrap();
    for i in 0..N {
        ledger.append(&record(i)).unwrap();
        if i == 49 {
            ledger.checkpoint().unwrap();
        }
    }
    let external = ledger.checkpoint().unwrap();
    drop(ledger);
    Fixture {
        _dir: dir,
        pristine,
        key,
        external,
    }
}

impl Fixture {
    /// Copies the pristine ledger, damages the copy with `f`, and verifies it.
    fn damaged(&self, name: &str, external: bool, f: impl FnOnce(&Connection)) -> VerifyReport {
        let path = self.pristine.with_file_name(format!("{name}.db"));
        std::fs::copy(&self.pristine, &path).unwrap();
        {
            let conn = Connection::open(&path).unwrap();
            f(&conn);
        }
        let report = self.verify(&path, external);
        std::fs::remove_file(&path).unwrap();
        report
    }

    fn verify(&self, path: &Path, external: bool) -> VerifyReport {
        let store = SqliteStore::open(
            path,
            &SqliteOptions {
                read_only: true,
                ..Default::default()
            },
        )
        .unwrap();
        let opts = VerifyOptions {
            trusted_key: Some(self.key.verifier()),
            checkpoints: if external {
                vec![self.external.clone()]
            } else {
                vec![]
            },
            check_records: true,
        };
        warden_ledger::verify(&store, &opts).unwrap()
    }
}

fn blob(conn: &Connection, table: &str, key: &str, id: i64) -> Vec<u8> {
    conn.query_row(
        &format!("SELECT data FROM {table} WHERE {key} = ?1"),
        [id],
        |r| r.get(0),
    )
    .unwrap()
}

fn set_blob(conn: &Connection, table: &str, key: &str, id: i64, data: &[u8]) {
    let n = conn
        .execute(
            &format!("UPDATE {table} SET data = ?1 WHERE {key} = ?2"),
            params![data, id],
        )
        .unwrap();
    assert_eq!(n, 1);
}

#[test]
fn pristine_ledger_verifies() {
    let fx = fixture();
    let r = fx.verify(&fx.pristine, true);
    assert!(r.is_ok(), "{:?}", r.problems);
    assert_eq!(
        (
            r.records_checked,
            r.checkpoints_ok,
            r.latest_checkpoint_size
        ),
        (N, 4, N)
    );
}

#[test]
fn any_changed_byte_of_a_record_names_that_record() {
    let fx = fixture();
    for index in [0u64, 1, 15, 16, 37, 63, 64, 99] {
        let original = {
            let conn = Connection::open(&fx.pristine).unwrap();
            blob(&conn, "entries", "idx", index as i64)
        };
        for pos in 0..original.len() {
            let r = fx.damaged("byte", false, |c| {
                let mut data = original.clone();
                data[pos] ^= 0x20;
                set_blob(c, "entries", "idx", index as i64, &data);
            });
            assert_eq!(
                r.first_bad_index(),
                Some(index),
                "record {index} byte {pos}: {:?}",
                r.problems
            );
        }
    }
}

#[test]
fn any_changed_byte_of_a_stored_hash_is_found() {
    let fx = fixture();
    let tiles: Vec<(i64, Vec<u8>)> = {
        let conn = Connection::open(&fx.pristine).unwrap();
        let mut st = conn
            .prepare("SELECT id, data FROM tiles ORDER BY id")
            .unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert!(
        tiles.len() >= 8,
        "expected level-0 and level-1 tiles, got {}",
        tiles.len()
    );
    for (id, data) in &tiles {
        let level = (id >> 56) as u32 * 4;
        let tile_index = (id & ((1 << 56) - 1)) as u64;
        for pos in (0..data.len()).step_by(5) {
            let r = fx.damaged("hash", false, |c| {
                let mut d = data.clone();
                d[pos] ^= 1;
                set_blob(c, "tiles", "id", *id, &d);
            });
            let node = tile_index * 16 + (pos / 32) as u64;
            let first_record = node << level;
            assert_eq!(
                r.first_bad_index(),
                Some(first_record),
                "tile {id:x} byte {pos}: {:?}",
                r.problems
            );
        }
    }
}

#[test]
fn deleted_swapped_and_truncated_rows_are_found() {
    let fx = fixture();
    let r = fx.damaged("delete", false, |c| {
        c.execute("DELETE FROM entries WHERE idx = 40", []).unwrap();
    });
    assert_eq!(r.first_bad_index(), Some(40), "{:?}", r.problems);
    assert!(
        r.problems[0].message.contains("record 40 is missing"),
        "{:?}",
        r.problems
    );

    let r = fx.damaged("swap", false, |c| {
        let (a, b) = (blob(c, "entries", "idx", 10), blob(c, "entries", "idx", 20));
        set_blob(c, "entries", "idx", 10, &b);
        set_blob(c, "entries", "idx", 20, &a);
    });
    assert_eq!(r.first_bad_index(), Some(10), "{:?}", r.problems);

    let r = fx.damaged("truncate", false, |c| {
        c.execute("DELETE FROM entries WHERE idx >= 90", [])
            .unwrap();
    });
    assert_eq!(r.first_bad_index(), Some(90), "{:?}", r.problems);

    // Truncated with the size rewritten to match: the stored checkpoint still commits to 100.
    let r = fx.damaged("truncate-size", false, |c| {
        c.execute("DELETE FROM entries WHERE idx >= 90", [])
            .unwrap();
        c.execute("UPDATE meta SET value = '90' WHERE key = 'size'", [])
            .unwrap();
    });
    assert_eq!(r.first_bad_index(), Some(90), "{:?}", r.problems);
}

#[test]
fn a_full_rollback_is_caught_by_an_external_checkpoint_only() {
    let fx = fixture();
    // Everything after record 80 removed, tiles rebuilt, newer checkpoints deleted: internally
    // consistent, so only the auditor's checkpoint can tell.
    let rollback = |c: &Connection| {
        c.execute("DELETE FROM entries WHERE idx >= 80", [])
            .unwrap();
        c.execute("UPDATE meta SET value = '80' WHERE key = 'size'", [])
            .unwrap();
        c.execute("DELETE FROM checkpoints WHERE size > 80", [])
            .unwrap();
        c.execute("DELETE FROM tiles", []).unwrap();
        let mut tree = TreeState::default();
        let mut writes: Vec<TileWrite> = Vec::new();
        for i in 0..80 {
            tree.push(leaf_hash(&blob(c, "entries", "idx", i)), &mut writes);
        }
        writes.extend(tree.dirty_partials(0));
        for w in writes {
            let id = (i64::from(w.id.level) << 56) | w.id.index as i64;
            c.execute(
                "INSERT OR REPLACE INTO tiles (id, data) VALUES (?1, ?2)",
                params![id, tile_bytes(&w.hashes)],
            )
            .unwrap();
        }
    };
    let r = fx.damaged("rollback-internal", false, rollback);
    assert!(
        r.is_ok(),
        "internally consistent rollback: {:?}",
        r.problems
    );
    let r = fx.damaged("rollback-external", true, rollback);
    assert_eq!(r.first_bad_index(), Some(80), "{:?}", r.problems);
    assert!(
        r.problems
            .iter()
            .any(|p| p.message.contains("truncated or rolled back")),
        "{:?}",
        r.problems
    );
}

#[test]
fn a_rewritten_history_with_recomputed_hashes_fails_the_checkpoints() {
    let fx = fixture();
    let r = fx.damaged("rewrite", false, |c| {
        let forged = Record {
            actor: "mallory".into(),
            ..record(30)
        }
        .to_leaf();
        set_blob(c, "entries", "idx", 30, &forged);
        c.execute("DELETE FROM tiles", []).unwrap();
        let mut tree = TreeState::default();
        let mut writes = Vec::new();
        for i in 0..N as i64 {
            tree.push(leaf_hash(&blob(c, "entries", "idx", i)), &mut writes);
        }
        writes.extend(tree.dirty_partials(0));
        for w in writes {
            let id = (i64::from(w.id.level) << 56) | w.id.index as i64;
            c.execute(
                "INSERT INTO tiles (id, data) VALUES (?1, ?2)",
                params![id, tile_bytes(&w.hashes)],
            )
            .unwrap();
        }
    });
    assert!(!r.is_ok());
    assert!(
        r.problems
            .iter()
            .any(|p| p.message.contains("a record below 50 was changed")),
        "the checkpoint at 50 must catch record 30: {:?}",
        r.problems
    );
}

#[test]
fn forged_or_foreign_checkpoints_are_reported() {
    let fx = fixture();
    let r = fx.damaged("forged-cp", false, |c| {
        let note: String = c
            .query_row(
                "SELECT note FROM checkpoints ORDER BY seq DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .unwrap();
        let forged = note.replacen("\n100\n", "\n101\n", 1);
        c.execute(
            "UPDATE checkpoints SET note = ?1 WHERE seq = (SELECT max(seq) FROM checkpoints)",
            [forged],
        )
        .unwrap();
    });
    assert!(
        r.problems
            .iter()
            .any(|p| p.message.contains("does not verify")),
        "{:?}",
        r.problems
    );

    // A ledger whose stored verifier key was swapped is caught when the auditor pins the real key.
    let other = SignerKey::generate("warden.test/tamper").unwrap();
    let r = fx.damaged("swapped-key", false, |c| {
        c.execute(
            "UPDATE meta SET value = ?1 WHERE key = 'verifier_key'",
            [other.verifier().to_text()],
        )
        .unwrap();
        c.execute("DELETE FROM checkpoints", []).unwrap();
        let cp = warden_ledger::Checkpoint {
            origin: "warden.test/tamper".into(),
            size: 100,
            root: [0; 32],
            extensions: vec![],
        };
        c.execute(
            "INSERT INTO checkpoints (size, note) VALUES (100, ?1)",
            [cp.sign(&other).unwrap()],
        )
        .unwrap();
    });
    assert!(
        r.problems
            .iter()
            .any(|p| p.message.contains("does not verify")),
        "{:?}",
        r.problems
    );
}

/// Regressions from the outside review of the ledger.
mod review {
    use super::*;

    fn open_ledger(
        path: &Path,
        key: &SignerKey,
    ) -> Result<Ledger<SqliteStore>, warden_ledger::LedgerError> {
        Ledger::open(
            SqliteStore::open(path, &SqliteOptions::default()).unwrap(),
            Some(key.clone()),
        )
    }

    fn copy(fx: &Fixture, name: &str) -> PathBuf {
        let path = fx.pristine.with_file_name(format!("{name}.db"));
        std::fs::copy(&fx.pristine, &path).unwrap();
        path
    }

    #[test]
    fn a_replayed_old_checkpoint_does_not_hide_damaged_hashes() {
        let fx = fixture();
        let path = copy(&fx, "replay");
        {
            let c = Connection::open(&path).unwrap();
            // Damage the partial tile at tile level 1, then replay the size-0 checkpoint as the newest row.
            let id: i64 = 1 << 56;
            let mut d = blob(&c, "tiles", "id", id);
            d[3] ^= 1;
            set_blob(&c, "tiles", "id", id, &d);
            c.execute("INSERT INTO checkpoints (size, note) SELECT 0, note FROM checkpoints WHERE seq = 1", []).unwrap();
        }
        let err = open_ledger(&path, &fx.key).unwrap_err();
        assert!(err.to_string().contains("the ledger is damaged"), "{err}");
    }

    #[test]
    fn a_lying_size_column_neither_suppresses_checkpoints_nor_passes_verify() {
        let fx = fixture();
        let path = copy(&fx, "column");
        {
            let c = Connection::open(&path).unwrap();
            c.execute(
                "UPDATE checkpoints SET size = 101 WHERE seq = (SELECT max(seq) FROM checkpoints)",
                [],
            )
            .unwrap();
        }
        let r = fx.verify(&path, false);
        assert!(
            r.problems.iter().any(|p| p
                .message
                .contains("is stored as size 101 but its note says Some(100)")),
            "{:?}",
            r.problems
        );
        let ledger = open_ledger(&path, &fx.key).unwrap();
        ledger.append(&record(100)).unwrap();
        let note = ledger.checkpoint().unwrap();
        let cp = warden_ledger::Checkpoint::open(&note, &fx.key.verifier()).unwrap();
        assert_eq!(
            cp.size, 101,
            "a new checkpoint is signed when the tree grows"
        );
    }

    #[test]
    fn odd_storage_types_and_formats_are_reported() {
        let fx = fixture();
        // A tile stored as TEXT: reported as a mismatch, not an abort.
        let r = fx.damaged("text-tile", false, |c| {
            c.execute(
                "UPDATE tiles SET data = CAST(data || x'00' AS TEXT) WHERE id = 0",
                [],
            )
            .unwrap();
        });
        assert_eq!(r.first_bad_index(), Some(0), "{:?}", r.problems);
        // An unknown format version is refused by verify as by every other reader.
        let path = copy(&fx, "format");
        Connection::open(&path)
            .unwrap()
            .execute("UPDATE meta SET value = '2' WHERE key = 'format'", [])
            .unwrap();
        let store = SqliteStore::open(
            &path,
            &SqliteOptions {
                read_only: true,
                ..Default::default()
            },
        )
        .unwrap();
        let err = warden_ledger::verify(&store, &VerifyOptions::default()).unwrap_err();
        assert!(
            err.to_string().contains("unsupported ledger format 2"),
            "{err}"
        );
        // A row at a negative index is not silently skipped.
        let path = copy(&fx, "negative");
        Connection::open(&path)
            .unwrap()
            .execute("INSERT INTO entries (idx, data) VALUES (-1, x'00')", [])
            .unwrap();
        let store = SqliteStore::open(
            &path,
            &SqliteOptions {
                read_only: true,
                ..Default::default()
            },
        )
        .unwrap();
        let err = warden_ledger::verify(&store, &VerifyOptions::default()).unwrap_err();
        assert!(err.to_string().contains("negative index -1"), "{err}");
    }
}
