//! Fuzz target: any bytes given to the register checker must come back as diagnostics, never a panic,
//! a hang or runaway memory. Run: `cargo +nightly fuzz run check_register -- -max_total_time=60`
//! from `crates/warden-risk`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden_risk::{CheckOptions, Date, EvidenceSource};

struct NoFiles;

impl EvidenceSource for NoFiles {
    fn read(&self, _path: &str) -> Result<Vec<u8>, String> {
        Err("no files while fuzzing".into())
    }
}

fuzz_target!(|data: &[u8]| {
    let opts = CheckOptions { today: Date::from_days(20_600) };
    let analysis = warden_risk::check(data, &NoFiles, &opts);
    // Reports must render whatever the checker produced.
    let _ = warden_risk::report::markdown(&analysis, "fuzz.yaml");
    let _ = warden_risk::report::html(&analysis, "fuzz.yaml");
});
