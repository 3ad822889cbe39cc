//! [`Ledger`]: appends with group commit, proofs, and signed checkpoints over any [`Store`].
//!
//! Concurrent appenders share commits: the first appender to find no commit in flight becomes the
//! leader, takes every queued record (up to [`MAX_GROUP`]) and commits them in one durable
//! transaction; the others wait and are answered with their index when it returns. No thread is
//! spawned and nothing is acknowledged before it is durable.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use thiserror::Error;

use crate::merkle::{self, Hash, NodeSource};
use crate::note::{Checkpoint, NoteError, SignerKey, VerifierKey};
use crate::record::{Record, RecordError};
use crate::store::{Meta, Store, StoreError};
use crate::tiles::{self, TileId, TreeState};

/// Format version of what drivers store.
pub const FORMAT_VERSION: u32 = 1;
/// Most records one group commit takes.
pub const MAX_GROUP: usize = 4096;

/// Why a ledger operation failed.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum LedgerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error(transparent)]
    Note(#[from] NoteError),
    #[error("index {index} is not below the tree size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("size {size} is larger than the tree size {tree_size}")]
    SizeOutOfRange { size: u64, tree_size: u64 },
    #[error("a consistency proof needs 0 < from <= to, got from {from} to {to}")]
    BadRange { from: u64, to: u64 },
    #[error("no signing key is loaded, so no new checkpoint can be signed")]
    NoSigner,
    #[error("the signing key {key:?} does not belong to this ledger (origin {origin:?})")]
    WrongKey { key: String, origin: String },
    #[error(
        "tile {level}/{index} needed for this tree is missing or damaged; run `warden ledger verify`"
    )]
    MissingTile { level: u8, index: u64 },
    #[error("record {0} is missing from storage; run `warden ledger verify`")]
    MissingEntry(u64),
    #[error(
        "the ledger is damaged: {reason}\nhint: run `warden ledger verify` to find the first bad record"
    )]
    Damaged { reason: String },
    #[error("the log is full")]
    LogFull,
}

struct Pending {
    leaf: Vec<u8>,
    hash: Hash,
    slot: Arc<OnceLock<Result<u64, LedgerError>>>,
    /// The appender waiting for this record, woken alone when its commit is done.
    waiter: std::thread::Thread,
}

#[derive(Default)]
struct Queue {
    pending: Vec<Pending>,
    leader_active: bool,
}

struct Inner<S> {
    store: S,
    tree: TreeState,
    /// Full tiles above the bottom level, which never change once full: the hashes near the top of
    /// every proof. Bounded by [`TILE_CACHE_MAX`].
    tile_cache: HashMap<TileId, Vec<Hash>>,
}

/// Most tiles kept in the proof cache (512 bytes each): all upper tiles of a log of 64M records.
const TILE_CACHE_MAX: usize = 16_384;

/// An open ledger.
pub struct Ledger<S: Store> {
    inner: Mutex<Inner<S>>,
    queue: Mutex<Queue>,
    meta: Meta,
    verifier: VerifierKey,
    signer: Option<SignerKey>,
    commits: AtomicU64,
}

impl<S: Store> std::fmt::Debug for Ledger<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("origin", &self.meta.origin)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the tree half-updated: commit restores it first.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl<S: Store> Ledger<S> {
    /// Creates a new, empty ledger in `store`, named after `signer`.
    pub fn create(mut store: S, signer: SignerKey) -> Result<Self, LedgerError> {
        let meta = Meta {
            format: FORMAT_VERSION,
            origin: signer.name().to_owned(),
            verifier_key: signer.verifier().to_text(),
        };
        store.init(&meta)?;
        let ledger = Self::open(store, Some(signer))?;
        ledger.checkpoint()?;
        Ok(ledger)
    }

    /// Opens an existing ledger. Without a signer it can append but not sign new checkpoints.
    pub fn open(store: S, signer: Option<SignerKey>) -> Result<Self, LedgerError> {
        let meta = store.meta()?;
        if meta.format != FORMAT_VERSION {
            return Err(StoreError::Corrupt(format!(
                "unsupported ledger format {}; this build reads format {FORMAT_VERSION}",
                meta.format
            ))
            .into());
        }
        let verifier = VerifierKey::parse(&meta.verifier_key)?;
        if let Some(s) = &signer
            && s.verifier() != verifier
        {
            return Err(LedgerError::WrongKey {
                key: s.name().to_owned(),
                origin: meta.origin,
            });
        }
        let size = store.size()?;
        let tree =
            TreeState::load(size, |id| store.tile(id))?.map_err(|id| LedgerError::MissingTile {
                level: id.level,
                index: id.index,
            })?;
        let mut tile_cache = HashMap::new();
        check_right_edge(&store, &tree, &verifier, &mut tile_cache)?;
        Ok(Ledger {
            inner: Mutex::new(Inner {
                store,
                tree,
                tile_cache,
            }),
            queue: Mutex::new(Queue::default()),
            meta,
            verifier,
            signer,
            commits: AtomicU64::new(0),
        })
    }

    /// Runs the full verifier over the open ledger (see [`crate::verify()`]).
    pub fn verify(&self, opts: &crate::VerifyOptions) -> Result<crate::VerifyReport, StoreError> {
        crate::verify(&lock(&self.inner).store, opts)
    }

    /// The ledger's metadata.
    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// True when a signing key is loaded, so new checkpoints can be signed.
    pub fn can_sign(&self) -> bool {
        self.signer.is_some()
    }

    /// The key that checks this ledger's checkpoints.
    pub fn verifier(&self) -> &VerifierKey {
        &self.verifier
    }

    /// Number of store commits (each one durable write) since the ledger was opened.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Number of committed records.
    pub fn size(&self) -> u64 {
        lock(&self.inner).tree.size()
    }

    /// The current size and root hash.
    pub fn head(&self) -> (u64, Hash) {
        let inner = lock(&self.inner);
        (inner.tree.size(), inner.tree.root())
    }

    /// Appends one record; returns its index once it is durable. Concurrent callers share commits.
    pub fn append(&self, record: &Record) -> Result<u64, LedgerError> {
        let leaf = record.to_leaf();
        let hash = merkle::leaf_hash(&leaf);
        self.append_leaf(leaf, hash)
    }

    /// Appends a leaf that is already the canonical encoding of a record, with its leaf hash.
    pub fn append_leaf(&self, leaf: Vec<u8>, hash: Hash) -> Result<u64, LedgerError> {
        let slot = Arc::new(OnceLock::new());
        let me = std::thread::current();
        let mut q = lock(&self.queue);
        q.pending.push(Pending {
            leaf,
            hash,
            slot: Arc::clone(&slot),
            waiter: me.clone(),
        });
        loop {
            if let Some(result) = slot.get() {
                return result.clone();
            }
            if q.leader_active {
                // Wait for our commit, or for the leader to hand leadership to us. Each waiter is
                // woken by name (no thundering herd); a spurious wake-up just loops.
                drop(q);
                std::thread::park();
                q = lock(&self.queue);
                continue;
            }
            q.leader_active = true;
            let take = q.pending.len().min(MAX_GROUP);
            let batch: Vec<Pending> = q.pending.drain(..take).collect();
            drop(q);
            let leaves: Vec<(&[u8], Hash)> =
                batch.iter().map(|p| (p.leaf.as_slice(), p.hash)).collect();
            let result = self.commit(&leaves);
            for (i, p) in batch.iter().enumerate() {
                let _ = p.slot.set(result.clone().map(|first| first + i as u64));
                if p.waiter.id() != me.id() {
                    p.waiter.unpark();
                }
            }
            q = lock(&self.queue);
            q.leader_active = false;
            // Whoever queued meanwhile becomes the next leader.
            if let Some(next) = q.pending.first() {
                next.waiter.unpark();
            }
        }
    }

    /// Appends many leaves in one durable transaction; returns the first index. Each item is a
    /// canonical leaf and its leaf hash. For bulk loads; single appends should use [`Ledger::append`].
    pub fn append_batch(&self, leaves: &[(&[u8], Hash)]) -> Result<u64, LedgerError> {
        self.commit(leaves)
    }

    fn commit(&self, leaves: &[(&[u8], Hash)]) -> Result<u64, LedgerError> {
        let mut inner = lock(&self.inner);
        self.commits.fetch_add(1, Ordering::Relaxed);
        let mut attempts = 0;
        loop {
            match Self::commit_locked(&mut inner, leaves) {
                // Another process appended to the same store: catch up with it and try again.
                Err(LedgerError::Store(StoreError::Conflict { .. })) if attempts < 3 => {
                    attempts += 1;
                    let size = inner.store.size()?;
                    inner.tree =
                        TreeState::load(size, |id| inner.store.tile(id))?.map_err(|id| {
                            LedgerError::MissingTile {
                                level: id.level,
                                index: id.index,
                            }
                        })?;
                }
                other => return other,
            }
        }
    }

    fn commit_locked(inner: &mut Inner<S>, leaves: &[(&[u8], Hash)]) -> Result<u64, LedgerError> {
        let first = inner.tree.size();
        if first
            .checked_add(leaves.len() as u64)
            .is_none_or(|end| end > 1 << 48)
        {
            return Err(LedgerError::LogFull);
        }
        let saved = inner.tree.clone();
        let mut writes = Vec::new();
        for (_, h) in leaves {
            inner.tree.push(*h, &mut writes);
        }
        writes.extend(inner.tree.dirty_partials(first));
        let entries: Vec<&[u8]> = leaves.iter().map(|(l, _)| *l).collect();
        match inner.store.commit(first, &entries, &writes) {
            Ok(()) => Ok(first),
            Err(e) => {
                inner.tree = saved;
                Err(e.into())
            }
        }
    }

    /// The stored leaf bytes at `index`.
    pub fn get(&self, index: u64) -> Result<Vec<u8>, LedgerError> {
        let inner = lock(&self.inner);
        let size = inner.tree.size();
        if index >= size {
            return Err(LedgerError::IndexOutOfRange { index, size });
        }
        inner
            .store
            .entry(index)?
            .ok_or(LedgerError::MissingEntry(index))
    }

    /// The root hash of the tree when it had `size` records.
    pub fn root_at(&self, size: u64) -> Result<Hash, LedgerError> {
        let mut guard = lock(&self.inner);
        let inner = &mut *guard;
        check_size(size, inner.tree.size())?;
        merkle::root(
            &mut StoreNodes::new(&inner.store, &mut inner.tile_cache),
            size,
        )
    }

    /// The inclusion proof of record `index` in the tree of `size` records.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, LedgerError> {
        let mut guard = lock(&self.inner);
        let inner = &mut *guard;
        check_size(size, inner.tree.size())?;
        if index >= size {
            return Err(LedgerError::IndexOutOfRange { index, size });
        }
        merkle::inclusion_proof(
            &mut StoreNodes::new(&inner.store, &mut inner.tile_cache),
            index,
            size,
        )
    }

    /// The consistency proof from the tree of `from` records to the tree of `to` records.
    pub fn consistency_proof(&self, from: u64, to: u64) -> Result<Vec<Hash>, LedgerError> {
        let mut guard = lock(&self.inner);
        let inner = &mut *guard;
        check_size(to, inner.tree.size())?;
        if from == 0 || from > to {
            return Err(LedgerError::BadRange { from, to });
        }
        merkle::consistency_proof(
            &mut StoreNodes::new(&inner.store, &mut inner.tile_cache),
            from,
            to,
        )
    }

    /// The latest signed checkpoint, signing and storing a new one first when the tree has grown
    /// since the last and a signer is loaded. Returns the note, byte-exact.
    pub fn checkpoint(&self) -> Result<String, LedgerError> {
        let mut inner = lock(&self.inner);
        let size = inner.tree.size();
        let latest = newest_checkpoint(&inner.store, &self.verifier)?;
        if let Some((cp, note)) = &latest
            && cp.size == size
        {
            return Ok(note.clone());
        }
        let Some(signer) = &self.signer else {
            return latest.map(|(_, n)| n).ok_or(LedgerError::NoSigner);
        };
        let cp = Checkpoint {
            origin: self.meta.origin.clone(),
            size,
            root: inner.tree.root(),
            extensions: Vec::new(),
        };
        let note = cp.sign(signer)?;
        inner.store.put_checkpoint(size, &note)?;
        Ok(note)
    }
}

/// Checks, before the ledger is used, that the stored right edge of the tree (which every append
/// builds on) matches the records under its bottom tile and the latest signed checkpoint. Appending
/// onto damaged hashes would sign checkpoints over a wrong root; `verify` checks everything else.
fn check_right_edge<S: Store>(
    store: &S,
    tree: &TreeState,
    verifier: &VerifierKey,
    cache: &mut HashMap<TileId, Vec<Hash>>,
) -> Result<(), LedgerError> {
    let size = tree.size();
    let damaged = |reason: String| LedgerError::Damaged { reason };
    let partial = tree.partial_row(0);
    let first = size - partial.len() as u64;
    let mut stored = Vec::with_capacity(partial.len());
    scan_records(store, first, size, &mut |_, leaf| {
        stored.push(merkle::leaf_hash(leaf));
        true
    })?;
    if stored != partial {
        return Err(damaged(format!(
            "the stored hashes of records {first}..{size} do not match the records"
        )));
    }
    let Some((cp, _)) = newest_checkpoint(store, verifier)? else {
        return Ok(());
    };
    if cp.size > size {
        return Err(damaged(format!(
            "the latest checkpoint covers {} records but only {size} are stored",
            cp.size
        )));
    }
    let root = if cp.size == size {
        tree.root()
    } else {
        merkle::root(&mut StoreNodes::new(store, cache), cp.size)?
    };
    if root != cp.root {
        return Err(damaged(format!(
            "the stored tree hashes do not match the latest checkpoint (size {})",
            cp.size
        )));
    }
    Ok(())
}

/// The stored checkpoint with the largest tree size, as the notes themselves say (the `size` column
/// and the row order are not trusted), with its signature checked. A note whose body does not parse
/// is skipped here (`verify` reports it); the chosen one must verify, or the ledger is damaged.
fn newest_checkpoint<S: Store>(
    store: &S,
    verifier: &VerifierKey,
) -> Result<Option<(Checkpoint, String)>, LedgerError> {
    let mut best: Option<(u64, String)> = None;
    for (_, note) in store.checkpoints()? {
        // Cheap: parse the body's size only; one signature check at the end.
        let size = note
            .split_once('\n')
            .and_then(|(_, rest)| rest.split_once('\n'))
            .and_then(|(s, _)| s.parse::<u64>().ok());
        if let Some(size) = size
            && best.as_ref().is_none_or(|(b, _)| size > *b)
        {
            best = Some((size, note));
        }
    }
    let Some((_, note)) = best else {
        return Ok(None);
    };
    let cp = Checkpoint::open(&note, verifier).map_err(|e| LedgerError::Damaged {
        reason: format!("the newest stored checkpoint does not verify: {e}"),
    })?;
    Ok(Some((cp, note)))
}

/// Calls `f` with every record of `store` in `start..end`, in order; `f` returns `false` to stop.
/// Reads the records only, so it works on a ledger whose stored hashes are damaged (as `export` must).
/// Fails if a record in the range is missing.
pub fn scan_records<S: Store + ?Sized>(
    store: &S,
    start: u64,
    end: u64,
    f: &mut dyn FnMut(u64, &[u8]) -> bool,
) -> Result<(), LedgerError> {
    let mut next = start;
    let mut stopped = false;
    store.scan_entries(start, end, &mut |i, data| {
        if i != next {
            return false;
        }
        next += 1;
        stopped = !f(i, data);
        !stopped
    })?;
    if !stopped && next < end {
        return Err(LedgerError::MissingEntry(next));
    }
    Ok(())
}

fn check_size(size: u64, tree_size: u64) -> Result<(), LedgerError> {
    if size > tree_size {
        return Err(LedgerError::SizeOutOfRange { size, tree_size });
    }
    Ok(())
}

/// Reads perfect-subtree hashes from stored tiles, keeping the few tiles one proof touches.
struct StoreNodes<'a, S: Store> {
    store: &'a S,
    /// Tiles read during this call (the partial right edge among them).
    local: Vec<(TileId, Vec<Hash>)>,
    /// Full upper tiles kept across calls, with their inner nodes computed (see [`all_levels`]).
    shared: &'a mut HashMap<TileId, Vec<Hash>>,
}

impl<'a, S: Store> StoreNodes<'a, S> {
    fn new(store: &'a S, shared: &'a mut HashMap<TileId, Vec<Hash>>) -> Self {
        StoreNodes {
            store,
            local: Vec::with_capacity(16),
            shared,
        }
    }

    fn node_hash(&mut self, tile: TileId, off: usize, n: usize) -> Result<Hash, LedgerError> {
        let missing = || LedgerError::MissingTile {
            level: tile.level,
            index: tile.index,
        };
        if let Some(levels) = self.shared.get(&tile) {
            return Ok(levels[LEVEL_BASE[n.trailing_zeros() as usize] + off / n]);
        }
        let pos = match self.local.iter().position(|(id, _)| *id == tile) {
            Some(p) => p,
            None => {
                let bytes = self.store.tile(tile)?.ok_or_else(missing)?;
                let hashes = tiles::parse_tile(&bytes).ok_or_else(missing)?;
                if tile.level > 0 && hashes.len() == tiles::TILE_WIDTH {
                    if self.shared.len() >= TILE_CACHE_MAX {
                        self.shared.clear();
                    }
                    let levels = self
                        .shared
                        .entry(tile)
                        .or_insert_with(|| all_levels(hashes));
                    return Ok(levels[LEVEL_BASE[n.trailing_zeros() as usize] + off / n]);
                }
                self.local.push((tile, hashes));
                self.local.len() - 1
            }
        };
        self.local[pos]
            .1
            .get(off..off + n)
            .map(tiles::subtree_root)
            .ok_or_else(missing)
    }
}

/// Where each level of a full tile's subtree starts in the output of [`all_levels`].
const LEVEL_BASE: [usize; 4] = [0, 16, 24, 28];

/// A full tile's 16 hashes followed by the 8, 4 and 2 nodes above them inside the tile.
fn all_levels(mut hashes: Vec<Hash>) -> Vec<Hash> {
    let (mut start, mut width) = (0, tiles::TILE_WIDTH);
    while width > 2 {
        for i in 0..width / 2 {
            let h = merkle::node_hash(&hashes[start + 2 * i], &hashes[start + 2 * i + 1]);
            hashes.push(h);
        }
        start += width;
        width /= 2;
    }
    hashes
}

impl<S: Store> NodeSource for StoreNodes<'_, S> {
    type Error = LedgerError;
    fn node(&mut self, level: u8, index: u64) -> Result<Hash, LedgerError> {
        let (tile, off, n) = tiles::locate(level, index);
        self.node_hash(tile, off, n)
    }
}
