//! The storage trait every driver implements natively for its backend (SQLite embedded, PostgreSQL
//! shared). Drivers store bytes; all log semantics (hashing, tiles, proofs, checkpoints) live in this
//! crate, so a driver cannot get them wrong. Drivers share the conformance tests, not code.

use thiserror::Error;

use crate::tiles::{TileId, TileWrite};

/// What a driver can fail with. Messages come from the backend; nothing here carries secrets.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum StoreError {
    #[error("{path} is not a Warden ledger ({reason})")]
    NotALedger { path: String, reason: String },
    #[error("the ledger at {0} already exists")]
    AlreadyExists(String),
    #[error("the disk or database is full; nothing of this commit was stored")]
    Full,
    #[error("the ledger is read-only here; nothing was stored")]
    ReadOnly,
    #[error("the ledger is locked by another process; try again")]
    Busy,
    #[error("another writer appended first (expected size {expected}, found {found})")]
    Conflict { expected: u64, found: String },
    #[error("stored data is damaged: {0}")]
    Corrupt(String),
    #[error("storage error while trying to {op}: {message}")]
    Backend { op: &'static str, message: String },
}

/// The static facts of a ledger, written once at creation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// Format version of what the driver stores; see `docs/design/ledger-format.md`.
    pub format: u32,
    /// The checkpoint origin line, also the signing key's name.
    pub origin: String,
    /// The verifier key in note format, kept for convenience; auditors pin their own copy.
    pub verifier_key: String,
}

/// A storage backend for one ledger.
///
/// Entries are the leaves' exact bytes, indexed from 0 with no gaps. Tiles are the tree's stored
/// hashes (see [`crate::tiles`]). `commit` is all-or-nothing and must be durable when it returns.
pub trait Store: Send {
    /// The ledger's metadata, or `NotALedger` when the backing store holds none.
    fn meta(&self) -> Result<Meta, StoreError>;
    /// Writes the metadata of a new, empty ledger.
    fn init(&mut self, meta: &Meta) -> Result<(), StoreError>;
    /// Number of committed entries, as last recorded by `commit`.
    fn size(&self) -> Result<u64, StoreError>;
    /// Atomically and durably stores `entries` at indices `first..first + entries.len()`, writes
    /// (inserting or replacing) `tiles`, and records the new size.
    fn commit(
        &mut self,
        first: u64,
        entries: &[&[u8]],
        tiles: &[TileWrite],
    ) -> Result<(), StoreError>;
    /// The entry at `index`, if stored.
    fn entry(&self, index: u64) -> Result<Option<Vec<u8>>, StoreError>;
    /// Calls `f` with every stored entry whose index is in `start..end`, in index order, as stored (gaps
    /// and all). `f` returns `false` to stop early.
    fn scan_entries(
        &self,
        start: u64,
        end: u64,
        f: &mut dyn FnMut(u64, &[u8]) -> bool,
    ) -> Result<(), StoreError>;
    /// The stored bytes of one tile.
    fn tile(&self, id: TileId) -> Result<Option<Vec<u8>>, StoreError>;
    /// Stores a signed checkpoint of the tree at `size`.
    fn put_checkpoint(&mut self, size: u64, note: &str) -> Result<(), StoreError>;
    /// Every stored checkpoint as `(size, note)`, in the order they were stored.
    fn checkpoints(&self) -> Result<Vec<(u64, String)>, StoreError>;
}
