//! `warden-monitor`: the real-time anomaly detection pillar. Detectors are sans-I/O state machines
//! over plain vectors (raw inputs, penultimate features, logits, scores): each is fitted on clean
//! reference data and then scores one sample (per-request detectors) or consumes a stream (stream
//! detectors). The crate knows nothing of models, files, HTTP or async runtimes: the CLI and the
//! server run the model, hand the vectors over, and act on the verdicts.

pub mod arl;
pub mod detect;
pub mod stats;
pub mod stream;
