//! How tree hashes are stored: in tiles of height 4, so that a proof reads about `log16(n)` small
//! rows instead of recomputing anything from the leaves.
//!
//! Tile `(t, i)` holds the hashes of the tree nodes at level `4t` with indices `[16i, 16i + len)`,
//! concatenated (`len <= 16`, 32 bytes each). Full tiles never change; the rightmost tile of each
//! tile level is partial and is rewritten as the log grows. A node at level `4t + r` is the root of
//! `2^r` consecutive hashes of one tile, so it is computed from a single row with at most 7 hashes.
//! [`TreeState`] is the appender's in-memory right edge: the partial row of every tile level.

use crate::merkle::{Hash, NodeSource, node_hash};

/// Tree levels covered by one tile.
pub const TILE_HEIGHT: u8 = 4;
/// Hashes in a full tile.
pub const TILE_WIDTH: usize = 1 << TILE_HEIGHT;

/// Names one tile: `level` counts tile levels (tree level `4 * level` is its bottom row).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TileId {
    pub level: u8,
    pub index: u64,
}

/// Where the hashes under node (`level`, `index`) sit: which tile, from which offset, how many.
pub fn locate(level: u8, index: u64) -> (TileId, usize, usize) {
    let t = level / TILE_HEIGHT;
    let r = level % TILE_HEIGHT;
    let first = index << r;
    let tile = TileId {
        level: t,
        index: first >> TILE_HEIGHT,
    };
    (tile, (first as usize) & (TILE_WIDTH - 1), 1 << r)
}

/// The root of a perfect subtree whose bottom row is `hashes` (a power of two of them).
pub fn subtree_root(hashes: &[Hash]) -> Hash {
    debug_assert!(hashes.len().is_power_of_two());
    match hashes.len() {
        1 => hashes[0],
        n => node_hash(
            &subtree_root(&hashes[..n / 2]),
            &subtree_root(&hashes[n / 2..]),
        ),
    }
}

/// Splits a stored tile into hashes; `None` when its length is not a whole number of hashes or it
/// holds more than a tile can.
pub fn parse_tile(bytes: &[u8]) -> Option<Vec<Hash>> {
    if !bytes.len().is_multiple_of(32) || bytes.len() / 32 > TILE_WIDTH || bytes.is_empty() {
        return None;
    }
    Some(
        bytes
            .chunks_exact(32)
            .map(|c| c.try_into().expect("32-byte chunk"))
            .collect(),
    )
}

/// Concatenates hashes into a tile's stored bytes.
pub fn tile_bytes(hashes: &[Hash]) -> Vec<u8> {
    hashes.concat()
}

/// A tile that an append completed or changed, to be written with the entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TileWrite {
    pub id: TileId,
    pub hashes: Vec<Hash>,
}

/// The appender's view of the right edge of the tree: for each tile level, the hashes of its
/// rightmost, partial tile. Everything to the left is immutable and lives in the store.
#[derive(Debug, Clone, Default)]
pub struct TreeState {
    size: u64,
    rows: Vec<Vec<Hash>>,
}

impl TreeState {
    /// Rebuilds the right edge of a tree of `size` leaves from its partial tiles, read through `fetch`.
    /// Fails with the tile that is missing or has the wrong length.
    pub fn load<E>(
        size: u64,
        mut fetch: impl FnMut(TileId) -> Result<Option<Vec<u8>>, E>,
    ) -> Result<Result<Self, TileId>, E> {
        let mut rows = Vec::new();
        let mut t = 0u8;
        while u32::from(t) * u32::from(TILE_HEIGHT) < 64 && size >> (u32::from(t) * 4) > 0 {
            let count = size >> (u32::from(t) * 4);
            let id = TileId {
                level: t,
                index: count / TILE_WIDTH as u64,
            };
            let want = (count % TILE_WIDTH as u64) as usize;
            if want == 0 {
                rows.push(Vec::new());
            } else {
                match fetch(id)?.as_deref().and_then(parse_tile) {
                    Some(h) if h.len() == want => rows.push(h),
                    _ => return Ok(Err(id)),
                }
            }
            t += 1;
        }
        Ok(Ok(Self { size, rows }))
    }

    /// The hashes of the partial tile at tile level `level` (empty when that tile is full or absent).
    pub fn partial_row(&self, level: u8) -> &[Hash] {
        self.rows.get(usize::from(level)).map_or(&[], Vec::as_slice)
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash. Tiles that become full are pushed to `completed`; the partial rows that
    /// changed are reported by [`TreeState::dirty_partials`] since `mark`.
    pub fn push(&mut self, leaf: Hash, completed: &mut Vec<TileWrite>) {
        self.size += 1;
        let mut h = leaf;
        let mut t = 0usize;
        loop {
            if self.rows.len() == t {
                self.rows.push(Vec::with_capacity(TILE_WIDTH));
            }
            self.rows[t].push(h);
            if self.rows[t].len() < TILE_WIDTH {
                return;
            }
            let hashes = std::mem::replace(&mut self.rows[t], Vec::with_capacity(TILE_WIDTH));
            h = subtree_root(&hashes);
            let count = self.size >> (t * 4);
            let id = TileId {
                level: t as u8,
                index: count / TILE_WIDTH as u64 - 1,
            };
            completed.push(TileWrite { id, hashes });
            t += 1;
        }
    }

    /// The partial tiles of every level whose row changed while the tree grew from `since` leaves.
    pub fn dirty_partials(&self, since: u64) -> Vec<TileWrite> {
        let mut out = Vec::new();
        for (t, row) in self.rows.iter().enumerate() {
            let shift = t * 4;
            if row.is_empty() || (since >> shift) == (self.size >> shift) {
                continue;
            }
            let count = self.size >> shift;
            let id = TileId {
                level: t as u8,
                index: count / TILE_WIDTH as u64,
            };
            out.push(TileWrite {
                id,
                hashes: row.clone(),
            });
        }
        out
    }

    /// The root hash of the whole tree.
    pub fn root(&self) -> Hash {
        let mut src = RowSource { state: self };
        match crate::merkle::root(&mut src, self.size) {
            Ok(h) => h,
            Err(never) => match never {},
        }
    }
}

/// Reads nodes from the partial rows only; the root's decomposition never needs anything else.
struct RowSource<'a> {
    state: &'a TreeState,
}

impl NodeSource for RowSource<'_> {
    type Error = std::convert::Infallible;
    fn node(&mut self, level: u8, index: u64) -> Result<Hash, Self::Error> {
        let (tile, off, n) = locate(level, index);
        let row = &self.state.rows[usize::from(tile.level)];
        Ok(subtree_root(&row[off..off + n]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{leaf_hash, range_hash};
    use std::collections::BTreeMap;

    /// The number of hashes tile `id` holds in a tree of `size` leaves (0 when it does not exist).
    fn tile_len(id: TileId, size: u64) -> usize {
        let shift = u32::from(id.level) * u32::from(TILE_HEIGHT);
        let count = if shift >= 64 { 0 } else { size >> shift };
        let start = id.index.saturating_mul(TILE_WIDTH as u64);
        if count <= start {
            0
        } else {
            (count - start).min(TILE_WIDTH as u64) as usize
        }
    }

    struct MapSource(BTreeMap<TileId, Vec<Hash>>);
    impl NodeSource for MapSource {
        type Error = ();
        fn node(&mut self, level: u8, index: u64) -> Result<Hash, ()> {
            let (tile, off, n) = locate(level, index);
            let row = self.0.get(&tile).ok_or(())?;
            row.get(off..off + n).map(subtree_root).ok_or(())
        }
    }

    #[test]
    fn incremental_tiles_match_naive_roots_and_reload() {
        let mut st = TreeState::default();
        let mut tiles = BTreeMap::new();
        let mut leaves = Vec::new();
        for i in 0..5000u32 {
            let before = st.size();
            let l = leaf_hash(&i.to_le_bytes());
            leaves.push(l);
            let mut done = Vec::new();
            st.push(l, &mut done);
            for w in done.into_iter().chain(st.dirty_partials(before)) {
                assert_eq!(w.hashes.len(), tile_len(w.id, st.size()));
                tiles.insert(w.id, w.hashes);
            }
            if i % 97 == 0 || i < 40 {
                let mut src = MapSource(tiles.clone());
                assert_eq!(st.root(), range_hash(&mut src, 0, st.size()).unwrap());
                let reloaded = TreeState::load::<()>(st.size(), |id| {
                    Ok(tiles.get(&id).map(|h: &Vec<Hash>| tile_bytes(h)))
                })
                .unwrap()
                .unwrap();
                assert_eq!(reloaded.rows, st.rows);
            }
        }
    }
}
