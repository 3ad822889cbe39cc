//! `warden-ledger`: Warden's audit log registry. An append-only, tamper-evident log of typed records
//! (decisions, escalations, reviews, containment, evidence, gate results, notes), built on the
//! RFC 6962/9162 Merkle tree, with C2SP signed checkpoints and a full verifier.
//!
//! This crate owns the log's semantics and is pure: no SQL, no network, no files. Storage drivers
//! implement [`Store`]; [`MemStore`] is the in-memory reference driver used by the tests.

mod canonical;
pub mod ledger;
pub mod mem;
pub mod merkle;
pub mod note;
pub mod record;
pub mod store;
pub mod tiles;
pub mod verify;

pub use ledger::{FORMAT_VERSION, Ledger, LedgerError, scan_records};
pub use mem::MemStore;
pub use merkle::{Hash, ProofError};
pub use note::{Checkpoint, NoteError, SignerKey, VerifierKey};
pub use record::{Kind, Record, RecordError, Subject};
pub use store::{Meta, Store, StoreError};
pub use verify::{Problem, VerifyOptions, VerifyReport, verify};
