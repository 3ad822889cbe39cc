//! Fuzz target: any bytes given as a weight file come back as a model or an error, never a panic,
//! a hang or runaway memory: the architecture a file names in its metadata, the weights read
//! against it and against a fixed architecture; and accepted weights write back to a file that
//! reads to the same bits. Run: `cargo +nightly fuzz run safetensors -- -max_total_time=60` from
//! `crates/warden-harden`.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use warden_harden::nn::{Arch, Model};
use warden_harden::weights;

fn bits(m: &Model) -> Vec<Vec<u32>> {
    m.params()
        .iter()
        .map(|p| p.iter().map(|v| v.to_bits()).collect())
        .collect()
}

fn round_trip(arch: &Arch, data: &[u8]) {
    if let Ok(m) = weights::from_safetensors(arch, data) {
        let again = weights::to_safetensors(&m, &BTreeMap::new());
        let back = weights::from_safetensors(arch, &again).expect("written weights read back");
        assert_eq!(bits(&back), bits(&m));
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(arch)) = weights::arch_of(data) {
        round_trip(&arch, data);
    }
    round_trip(&Arch::mlp(&[4]), data);
});
