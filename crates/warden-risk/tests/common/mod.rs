//! Shared helpers of the warden-risk tests: a fixed day, an in-memory evidence source, and snapshot
//! files that `UPDATE_SNAPSHOTS=1` rewrites.

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::PathBuf;

use warden_risk::{CheckOptions, Date, EvidenceSource};

/// The day every test checks on.
pub(crate) fn today() -> Date {
    Date::parse("2026-11-25").unwrap()
}

pub(crate) fn opts() -> CheckOptions {
    CheckOptions { today: today() }
}

/// Evidence files held in memory.
#[derive(Default)]
pub(crate) struct Files(pub(crate) HashMap<String, Vec<u8>>);

impl EvidenceSource for Files {
    fn read(&self, path: &str) -> Result<Vec<u8>, String> {
        self.0
            .get(path)
            .cloned()
            .ok_or_else(|| "no such file".to_owned())
    }
}

/// Compares `actual` with the snapshot `name` under `tests/snapshots/`; rewrites it when
/// `UPDATE_SNAPSHOTS=1`.
pub(crate) fn snapshot(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(name);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "missing snapshot {}; run with UPDATE_SNAPSHOTS=1",
            path.display()
        )
    });
    if expected != actual {
        let first = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b);
        panic!(
            "snapshot {name} differs (first differing line {:?}); run with UPDATE_SNAPSHOTS=1 and review the diff\n--- actual ---\n{actual}",
            first.map(|i| i + 1)
        );
    }
}
