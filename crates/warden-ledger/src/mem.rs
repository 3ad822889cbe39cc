//! [`MemStore`]: the in-memory reference driver. Volatile, so never the store of a real ledger; it
//! defines the behaviour other drivers are tested against, and it can be damaged on purpose.

use std::collections::BTreeMap;

use crate::store::{Meta, Store, StoreError};
use crate::tiles::{TileId, TileWrite, tile_bytes};

/// A ledger store held in memory. Its fields are public so tests can tamper with it.
#[derive(Debug, Clone, Default)]
pub struct MemStore {
    pub meta: Option<Meta>,
    pub size: u64,
    pub entries: BTreeMap<u64, Vec<u8>>,
    pub tiles: BTreeMap<TileId, Vec<u8>>,
    pub checkpoints: Vec<(u64, String)>,
}

impl Store for MemStore {
    fn meta(&self) -> Result<Meta, StoreError> {
        self.meta.clone().ok_or_else(|| StoreError::NotALedger {
            path: "memory".into(),
            reason: "no metadata".into(),
        })
    }

    fn init(&mut self, meta: &Meta) -> Result<(), StoreError> {
        if self.meta.is_some() {
            return Err(StoreError::AlreadyExists("memory".into()));
        }
        self.meta = Some(meta.clone());
        Ok(())
    }

    fn size(&self) -> Result<u64, StoreError> {
        Ok(self.size)
    }

    fn commit(
        &mut self,
        first: u64,
        entries: &[&[u8]],
        tiles: &[TileWrite],
    ) -> Result<(), StoreError> {
        if first != self.size {
            return Err(StoreError::Conflict {
                expected: first,
                found: self.size.to_string(),
            });
        }
        for (i, e) in entries.iter().enumerate() {
            self.entries.insert(first + i as u64, e.to_vec());
        }
        for t in tiles {
            self.tiles.insert(t.id, tile_bytes(&t.hashes));
        }
        self.size += entries.len() as u64;
        Ok(())
    }

    fn entry(&self, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.entries.get(&index).cloned())
    }

    fn scan_entries(
        &self,
        start: u64,
        end: u64,
        f: &mut dyn FnMut(u64, &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        for (i, e) in self.entries.range(start..end) {
            if !f(*i, e) {
                break;
            }
        }
        Ok(())
    }

    fn tile(&self, id: TileId) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.tiles.get(&id).cloned())
    }

    fn put_checkpoint(&mut self, size: u64, note: &str) -> Result<(), StoreError> {
        self.checkpoints.push((size, note.to_owned()));
        Ok(())
    }

    fn checkpoints(&self) -> Result<Vec<(u64, String)>, StoreError> {
        Ok(self.checkpoints.clone())
    }
}
