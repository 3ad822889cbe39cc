//! Fuzz target: any bytes given to the ONNX importer (a user's file) come back as a model or an
//! error, never a panic, a hang or runaway memory; and a model it accepts exports to a file that
//! imports back to the same layers and bit-identical weights. Run:
//! `cargo +nightly fuzz run onnx_import -- -max_total_time=60` from `crates/warden-harden`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden_harden::onnx;

fn bits(m: &warden_harden::nn::Model) -> Vec<Vec<u32>> {
    m.params()
        .iter()
        .map(|p| p.iter().map(|v| v.to_bits()).collect())
        .collect()
}

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = onnx::import(data) {
        let back = onnx::import(&onnx::export(&m)).expect("an exported model imports");
        assert_eq!(back.arch().layers, m.arch().layers);
        assert_eq!(bits(&back), bits(&m));
    }
});
