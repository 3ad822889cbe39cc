//! `warden-ledger-sqlite`: the embedded default storage driver of the Warden ledger, on SQLite.
//!
//! One database file holds the entries (one row per record, keyed by index), the hash tiles, the signed
//! checkpoints and the metadata. Durability: WAL journal with `synchronous=FULL`, so a commit returns
//! only after the write-ahead log is fsynced; a commit is one transaction, so a crash leaves either
//! all of it or none. The table layout is specified in `docs/design/ledger-format.md`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, params};
use warden_ledger::store::{Meta, Store, StoreError};
use warden_ledger::tiles::{TileId, TileWrite};

/// `PRAGMA application_id` of a Warden ledger database ("WDNL").
pub const APPLICATION_ID: i32 = 0x5744_4e4c;
/// Version of the table layout, kept in `PRAGMA user_version`.
pub const SCHEMA_VERSION: i32 = 1;

const SCHEMA: &str = "
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE entries (idx INTEGER PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE tiles (id INTEGER PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE checkpoints (seq INTEGER PRIMARY KEY, size INTEGER NOT NULL, note TEXT NOT NULL);
";

/// How to open the database.
#[derive(Debug, Clone, Default)]
pub struct SqliteOptions {
    /// Open for reading only (`get`, `prove`, `export`, `verify`).
    pub read_only: bool,
    /// Caps the database at this many pages: a way to test a full disk without filling one.
    pub max_page_count: Option<u64>,
    /// Bulk loading: use a rollback journal instead of the write-ahead log while this connection is
    /// open, so each record is written to disk once instead of twice (log, then checkpoint). It
    /// roughly doubles bulk throughput but makes each small commit slower (three fsyncs instead of
    /// one), so single appends keep the WAL. When another connection has the database open, the
    /// switch is not possible and the WAL stays; both modes are equally durable.
    pub bulk: bool,
}

/// The SQLite store of one ledger.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
    bulk: bool,
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        if self.bulk {
            // Leave the database in WAL mode for everyone else; if another connection prevents the
            // switch, the next read-write open makes it.
            let _ = self.conn.execute_batch("PRAGMA journal_mode = WAL;");
        }
    }
}

fn tile_key(id: TileId) -> i64 {
    // Tile levels stay below 16 (64 tree levels / 4) and indices below 2^44 (2^48 records / 16).
    ((i64::from(id.level)) << 56) | (id.index as i64)
}

/// The bytes of a stored value, whether it was stored as a BLOB or (after tampering) as TEXT; any
/// other type reads as empty, which verification then reports as a mismatch.
fn bytes_of(v: rusqlite::types::ValueRef<'_>) -> rusqlite::Result<Vec<u8>> {
    Ok(match v {
        rusqlite::types::ValueRef::Blob(b) | rusqlite::types::ValueRef::Text(b) => b.to_vec(),
        _ => Vec::new(),
    })
}

/// A stored checkpoint size; a negative one (only tampering makes it) reads as `u64::MAX`, which
/// never matches the size in the note, so `verify` reports it.
fn checkpoint_size(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(u64::MAX)
}

fn map_err(op: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    move |e| match e.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => StoreError::Full,
        Some(ErrorCode::ReadOnly) => StoreError::ReadOnly,
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Busy,
        Some(ErrorCode::NotADatabase) => StoreError::NotALedger {
            path: String::new(),
            reason: "not an SQLite database".into(),
        },
        _ => StoreError::Backend {
            op,
            message: e.to_string(),
        },
    }
}

impl SqliteStore {
    /// Creates the database of a new ledger at `path`; fails if the file exists.
    pub fn create(path: &Path) -> Result<SqliteStore, StoreError> {
        if path.exists() {
            return Err(StoreError::AlreadyExists(path.display().to_string()));
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn =
            Connection::open_with_flags(path, flags).map_err(map_err("create the database"))?;
        let mut store = SqliteStore {
            conn,
            path: path.to_owned(),
            bulk: false,
        };
        // 16 KiB pages: fewer, fuller B-tree pages for 300-500 byte records (must precede WAL mode).
        store
            .conn
            .execute_batch("PRAGMA page_size = 16384;")
            .map_err(map_err("set the page size"))?;
        store.configure(&SqliteOptions::default())?;
        store
            .conn
            .execute_batch(&format!(
                "BEGIN; {SCHEMA} PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
            ))
            .map_err(map_err("create the tables"))?;
        Ok(store)
    }

    /// Opens the database of an existing ledger; anything else is refused as `NotALedger`.
    pub fn open(path: &Path, opts: &SqliteOptions) -> Result<SqliteStore, StoreError> {
        let not_ledger = |reason: &str| StoreError::NotALedger {
            path: path.display().to_string(),
            reason: reason.to_owned(),
        };
        if !path.is_file() {
            return Err(not_ledger(
                "no such file; hint: create one with `warden ledger init`",
            ));
        }
        let mut flags = OpenFlags::SQLITE_OPEN_NO_MUTEX;
        flags |= if opts.read_only {
            OpenFlags::SQLITE_OPEN_READ_ONLY
        } else {
            OpenFlags::SQLITE_OPEN_READ_WRITE
        };
        let conn = Connection::open_with_flags(path, flags).map_err(|e| {
            match map_err("open the database")(e) {
                StoreError::NotALedger { .. } => not_ledger("not an SQLite database"),
                other => other,
            }
        })?;
        let mut store = SqliteStore {
            conn,
            path: path.to_owned(),
            bulk: false,
        };
        let app: i32 = store
            .conn
            .query_row("PRAGMA application_id", [], |r| r.get(0))
            .map_err(|e| match map_err("read the database header")(e) {
                StoreError::NotALedger { .. } => not_ledger("not an SQLite database"),
                other => other,
            })?;
        if app != APPLICATION_ID {
            return Err(not_ledger("an SQLite database of another application"));
        }
        let version: i32 = store
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(map_err("read the schema version"))?;
        if version != SCHEMA_VERSION {
            return Err(StoreError::Corrupt(format!(
                "database schema version {version}, this build reads version {SCHEMA_VERSION}"
            )));
        }
        store.configure(opts)?;
        Ok(store)
    }

    fn configure(&mut self, opts: &SqliteOptions) -> Result<(), StoreError> {
        self.conn
            .busy_timeout(Duration::from_secs(10))
            .map_err(map_err("set the busy timeout"))?;
        let mut pragmas = String::from("PRAGMA cache_size = -65536; PRAGMA temp_store = MEMORY;");
        if let Some(n) = opts.max_page_count {
            pragmas.push_str(&format!("PRAGMA max_page_count = {n};"));
        }
        self.conn
            .execute_batch(&pragmas)
            .map_err(map_err("configure the database"))?;
        if opts.read_only {
            return Ok(());
        }
        // FULL sync: a commit has reached the disk when it returns. WAL: one fsync per commit.
        self.bulk = false;
        if opts.bulk {
            // Leaving the WAL needs the database to ourselves; if another connection has it open,
            // stay in WAL mode (slower for bulk, equally durable).
            let mode: Result<String, _> =
                self.conn
                    .query_row("PRAGMA journal_mode = PERSIST", [], |r| r.get(0));
            match mode {
                Ok(m) if m.eq_ignore_ascii_case("persist") => self.bulk = true,
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.sqlite_error_code(),
                        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
                    ) => {}
                Err(e) => return Err(map_err("switch to the bulk journal")(e)),
            }
        }
        if !self.bulk {
            self.conn
                .query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0))
                .map_err(map_err("switch to the write-ahead log"))?;
        }
        self.conn
            .execute_batch("PRAGMA synchronous = FULL;")
            .map_err(map_err("configure the database"))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Direct access to the connection, for tests that damage a ledger on purpose.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    fn meta_value(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.conn
            .prepare_cached("SELECT value FROM meta WHERE key = ?1")
            .and_then(|mut s| s.query_row([key], |r| r.get(0)).optional())
            .map_err(map_err("read the metadata"))
    }
}

impl Store for SqliteStore {
    fn meta(&self) -> Result<Meta, StoreError> {
        let missing = |what: &str| StoreError::NotALedger {
            path: self.path.display().to_string(),
            reason: format!("metadata has no {what}"),
        };
        let format = self
            .meta_value("format")?
            .ok_or_else(|| missing("format"))?;
        let format = format
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("bad format {format:?}")))?;
        Ok(Meta {
            format,
            origin: self
                .meta_value("origin")?
                .ok_or_else(|| missing("origin"))?,
            verifier_key: self
                .meta_value("verifier_key")?
                .ok_or_else(|| missing("verifier key"))?,
        })
    }

    fn init(&mut self, meta: &Meta) -> Result<(), StoreError> {
        let tx = self.conn.transaction().map_err(map_err("begin"))?;
        let existing: i64 = tx
            .query_row("SELECT count(*) FROM meta", [], |r| r.get(0))
            .map_err(map_err("read the metadata"))?;
        if existing > 0 {
            return Err(StoreError::AlreadyExists(self.path.display().to_string()));
        }
        for (k, v) in [
            ("application", "warden-ledger".to_owned()),
            ("format", meta.format.to_string()),
            ("origin", meta.origin.clone()),
            ("verifier_key", meta.verifier_key.clone()),
            ("size", "0".to_owned()),
        ] {
            tx.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)",
                params![k, v],
            )
            .map_err(map_err("write the metadata"))?;
        }
        tx.commit().map_err(map_err("commit"))
    }

    fn size(&self) -> Result<u64, StoreError> {
        let s = self
            .meta_value("size")?
            .ok_or_else(|| StoreError::Corrupt("metadata has no size".into()))?;
        s.parse()
            .map_err(|_| StoreError::Corrupt(format!("recorded size {s:?} is not a number")))
    }

    fn commit(
        &mut self,
        first: u64,
        entries: &[&[u8]],
        tiles: &[TileWrite],
    ) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(map_err("begin a commit"))?;
        let size: String = tx
            .query_row("SELECT value FROM meta WHERE key = 'size'", [], |r| {
                r.get(0)
            })
            .map_err(map_err("read the size"))?;
        if size.parse::<u64>().ok() != Some(first) {
            return Err(StoreError::Conflict {
                expected: first,
                found: size,
            });
        }
        {
            let mut ins = tx
                .prepare_cached("INSERT INTO entries (idx, data) VALUES (?1, ?2)")
                .map_err(map_err("prepare the entry insert"))?;
            for (i, e) in entries.iter().enumerate() {
                ins.execute(params![(first + i as u64) as i64, e])
                    .map_err(map_err("store an entry"))?;
            }
            let mut put = tx
                .prepare_cached("INSERT OR REPLACE INTO tiles (id, data) VALUES (?1, ?2)")
                .map_err(map_err("prepare the tile write"))?;
            let mut buf = Vec::with_capacity(16 * 32);
            for t in tiles {
                buf.clear();
                for h in &t.hashes {
                    buf.extend_from_slice(h);
                }
                put.execute(params![tile_key(t.id), buf])
                    .map_err(map_err("store a tile"))?;
            }
            tx.execute(
                "UPDATE meta SET value = ?1 WHERE key = 'size'",
                [(first + entries.len() as u64).to_string()],
            )
            .map_err(map_err("record the size"))?;
        }
        tx.commit().map_err(map_err("commit"))
    }

    fn entry(&self, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let Ok(idx) = i64::try_from(index) else {
            return Ok(None);
        };
        self.conn
            .prepare_cached("SELECT data FROM entries WHERE idx = ?1")
            .and_then(|mut s| s.query_row([idx], |r| bytes_of(r.get_ref(0)?)).optional())
            .map_err(map_err("read an entry"))
    }

    fn scan_entries(
        &self,
        start: u64,
        end: u64,
        f: &mut dyn FnMut(u64, &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT idx, data FROM entries WHERE idx >= ?1 AND idx < ?2 ORDER BY idx",
            )
            .map_err(map_err("scan the entries"))?;
        // A scan from the start also sees rows below index 0, which only tampering can put there.
        let lo = if start == 0 { i64::MIN } else { clamp(start) };
        let mut rows = stmt
            .query([lo, clamp(end)])
            .map_err(map_err("scan the entries"))?;
        while let Some(row) = rows.next().map_err(map_err("scan the entries"))? {
            let idx: i64 = row.get(0).map_err(map_err("scan the entries"))?;
            let data = row.get_ref(1).map_err(map_err("scan the entries"))?;
            let bytes = match data {
                rusqlite::types::ValueRef::Blob(b) | rusqlite::types::ValueRef::Text(b) => b,
                _ => &[],
            };
            let Ok(idx) = u64::try_from(idx) else {
                return Err(StoreError::Corrupt(format!(
                    "an entry is stored at the negative index {idx}"
                )));
            };
            if !f(idx, bytes) {
                break;
            }
        }
        Ok(())
    }

    fn tile(&self, id: TileId) -> Result<Option<Vec<u8>>, StoreError> {
        self.conn
            .prepare_cached("SELECT data FROM tiles WHERE id = ?1")
            .and_then(|mut s| {
                s.query_row([tile_key(id)], |r| bytes_of(r.get_ref(0)?))
                    .optional()
            })
            .map_err(map_err("read a tile"))
    }

    fn put_checkpoint(&mut self, size: u64, note: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO checkpoints (size, note) VALUES (?1, ?2)",
                params![size as i64, note],
            )
            .map(|_| ())
            .map_err(map_err("store a checkpoint"))
    }

    fn checkpoints(&self) -> Result<Vec<(u64, String)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT size, note FROM checkpoints ORDER BY seq")
            .map_err(map_err("read the checkpoints"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((checkpoint_size(r.get::<_, i64>(0)?), r.get(1)?))
            })
            .map_err(map_err("read the checkpoints"))?;
        rows.collect::<Result<_, _>>()
            .map_err(map_err("read the checkpoints"))
    }
}
