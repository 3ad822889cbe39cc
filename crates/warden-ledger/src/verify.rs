//! `verify`, the ledger's fsck: re-derives every leaf hash and the whole tree from the stored records,
//! compares it with every stored tree hash and with every signed checkpoint (stored, or handed in by
//! an auditor), and names the first record that does not match.
//!
//! It trusts nothing it reads: not the stored size, not the stored hashes, and, when the auditor pins
//! one, not even the verifier key kept in the ledger.

use std::collections::BTreeMap;

use crate::merkle::{self, Hash};
use crate::note::{Checkpoint, VerifierKey};
use crate::record;
use crate::store::{Store, StoreError};
use crate::tiles::{self, TILE_HEIGHT, TileWrite, TreeState};

/// What to check besides the stored history itself.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// The verifier key the auditor trusts. Without it, the key stored in the ledger is used, which
    /// protects against accidents but not against someone who can rewrite the database.
    pub trusted_key: Option<VerifierKey>,
    /// Signed checkpoints held outside the ledger; each must verify and match the stored history.
    pub checkpoints: Vec<String>,
    /// Also check that every record decodes and is in canonical form.
    pub check_records: bool,
}

/// One thing found wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The first record affected, when one can be named.
    pub index: Option<u64>,
    pub message: String,
}

/// What `verify` found.
#[derive(Debug, Clone)]
pub struct VerifyReport {
    /// The size recorded by the store.
    pub recorded_size: u64,
    /// Records read back and re-hashed, in order without gaps.
    pub records_checked: u64,
    /// The root re-derived from those records.
    pub root: Hash,
    /// Signed checkpoints whose signature and root were checked and held.
    pub checkpoints_ok: u64,
    /// The largest checkpointed size that held (0 when none).
    pub latest_checkpoint_size: u64,
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    /// True when nothing was found wrong.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// The lowest record index named by any problem.
    pub fn first_bad_index(&self) -> Option<u64> {
        self.problems.iter().filter_map(|p| p.index).min()
    }
}

struct Cp {
    source: String,
    note: String,
}

/// Checks the whole ledger in `store`. Errors only when the store cannot be read at all; everything
/// wrong with its contents is a [`Problem`] in the report.
pub fn verify<S: Store + ?Sized>(
    store: &S,
    opts: &VerifyOptions,
) -> Result<VerifyReport, StoreError> {
    let meta = store.meta()?;
    if meta.format != crate::FORMAT_VERSION {
        return Err(StoreError::Corrupt(format!(
            "unsupported ledger format {}; this build reads format {}",
            meta.format,
            crate::FORMAT_VERSION
        )));
    }
    let recorded_size = store.size()?;
    let mut problems = Vec::new();
    let key = match &opts.trusted_key {
        Some(k) => Some(k.clone()),
        None => match VerifierKey::parse(&meta.verifier_key) {
            Ok(k) => Some(k),
            Err(e) => {
                problems.push(Problem {
                    index: None,
                    message: format!("stored verifier key is unusable: {e}"),
                });
                None
            }
        },
    };

    // Every checkpoint: stored ones, then the auditor's.
    let stored = store.checkpoints()?;
    let mut column_mismatch = Vec::new();
    let mut cps: Vec<Cp> = stored
        .into_iter()
        .enumerate()
        .map(|(i, (size, note))| {
            let source = format!("stored checkpoint #{}", i + 1);
            let said = note.split('\n').nth(1).and_then(|s| s.parse::<u64>().ok());
            if said != Some(size) {
                column_mismatch.push(format!(
                    "{source} is stored as size {size} but its note says {said:?}"
                ));
            }
            Cp { source, note }
        })
        .collect();
    for message in column_mismatch {
        problems.push(Problem {
            index: None,
            message,
        });
    }
    cps.extend(opts.checkpoints.iter().enumerate().map(|(i, n)| Cp {
        source: format!("given checkpoint #{}", i + 1),
        note: n.clone(),
    }));
    let mut wanted: BTreeMap<u64, Vec<(String, Hash)>> = BTreeMap::new();
    if let Some(key) = &key {
        for cp in &cps {
            match Checkpoint::open(&cp.note, key) {
                Ok(c) => wanted
                    .entry(c.size)
                    .or_default()
                    .push((cp.source.clone(), c.root)),
                Err(e) => problems.push(Problem {
                    index: None,
                    message: format!("{} does not verify with key {}: {e}", cp.source, key.name()),
                }),
            }
        }
    }

    let mut tree = TreeState::default();
    let mut roots: BTreeMap<u64, Hash> = BTreeMap::new();
    if wanted.contains_key(&0) {
        roots.insert(0, merkle::EMPTY_ROOT);
    }
    let mut expected = 0u64;
    let mut completed: Vec<TileWrite> = Vec::new();
    let mut scan_error: Option<StoreError> = None;
    let mut hash_problem: Option<Problem> = None;
    store.scan_entries(0, u64::MAX, &mut |idx, data| {
        if idx != expected {
            problems.push(Problem {
                index: Some(expected),
                message: if idx > expected {
                    format!("record {expected} is missing (the next stored record is {idx})")
                } else {
                    format!("record {idx} is stored out of order")
                },
            });
            return false;
        }
        if idx >= recorded_size {
            problems.push(Problem {
                index: Some(idx),
                message: format!("record {idx} is stored beyond the recorded size {recorded_size}"),
            });
            return false;
        }
        if opts.check_records
            && let Err(e) = record::check_leaf(data)
        {
            problems.push(Problem {
                index: Some(idx),
                message: format!("record {idx} is not a valid record: {e}"),
            });
        }
        tree.push(merkle::leaf_hash(data), &mut completed);
        for w in completed.drain(..) {
            if hash_problem.is_none() {
                match compare_tile(store, &w) {
                    Ok(p) => hash_problem = p,
                    Err(e) => {
                        scan_error = Some(e);
                        return false;
                    }
                }
            }
        }
        expected += 1;
        if wanted.contains_key(&expected) {
            roots.insert(expected, tree.root());
        }
        true
    })?;
    if let Some(e) = scan_error {
        return Err(e);
    }
    let records_checked = expected;
    if records_checked < recorded_size && problems.iter().all(|p| p.index != Some(records_checked))
    {
        problems.push(Problem {
            index: Some(records_checked),
            message: format!(
                "the ledger records {recorded_size} records but only {records_checked} are stored: records {records_checked}.. are missing"
            ),
        });
    }
    if records_checked == recorded_size && hash_problem.is_none() {
        for w in tree.dirty_partials(0) {
            if let Some(p) = compare_tile(store, &w)? {
                hash_problem = Some(p);
                break;
            }
        }
    }
    problems.extend(hash_problem);

    let mut checkpoints_ok = 0;
    let mut latest_checkpoint_size = 0;
    for (size, expects) in &wanted {
        for (source, root) in expects {
            match roots.get(size) {
                None => problems.push(Problem {
                    index: Some(records_checked.min(*size)),
                    message: format!(
                        "{source} commits to {size} records but only {records_checked} could be read back: the log was truncated or rolled back"
                    ),
                }),
                Some(r) if r != root => problems.push(Problem {
                    index: None,
                    message: format!(
                        "{source} does not match the stored records: the root of the first {size} records differs, so a record below {size} was changed"
                    ),
                }),
                Some(_) => {
                    checkpoints_ok += 1;
                    latest_checkpoint_size = latest_checkpoint_size.max(*size);
                }
            }
        }
    }
    problems.sort_by_key(|p| (p.index.is_none(), p.index));
    Ok(VerifyReport {
        recorded_size,
        records_checked,
        root: tree.root(),
        checkpoints_ok,
        latest_checkpoint_size,
        problems,
    })
}

/// Compares a re-derived tile with the stored one; names the first record under the first hash that
/// differs.
fn compare_tile<S: Store + ?Sized>(
    store: &S,
    w: &TileWrite,
) -> Result<Option<Problem>, StoreError> {
    let stored = store.tile(w.id)?;
    let stored_hashes = stored
        .as_deref()
        .and_then(tiles::parse_tile)
        .unwrap_or_default();
    let Some(pos) = (0..w.hashes.len()).find(|&j| stored_hashes.get(j) != Some(&w.hashes[j]))
    else {
        if stored_hashes.len() == w.hashes.len() {
            return Ok(None);
        }
        let level = u32::from(w.id.level) * u32::from(TILE_HEIGHT);
        return Ok(Some(Problem {
            index: None,
            message: format!(
                "stored tree hashes at level {level}, tile {} have the wrong length",
                w.id.index
            ),
        }));
    };
    let level = u32::from(w.id.level) * u32::from(TILE_HEIGHT);
    let node = w.id.index * tiles::TILE_WIDTH as u64 + pos as u64;
    let first = node << level;
    let message = if level == 0 {
        format!(
            "record {first} does not match its stored leaf hash (the record or the hash was changed)"
        )
    } else {
        let last = ((node + 1) << level) - 1;
        format!(
            "stored tree hash at level {level}, index {node} does not match records {first}..={last}"
        )
    };
    Ok(Some(Problem {
        index: Some(first),
        message,
    }))
}
