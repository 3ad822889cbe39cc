//! Feature squeezing (Xu, Evans and Qi, "Feature squeezing: detecting adversarial examples in deep
//! neural networks", NDSS 2018). The squeezers are pure functions on images: bit-depth reduction of
//! values in [0, 1] to `b` bits, `round(x · (2ᵇ − 1)) / (2ᵇ − 1)` in f32 with ties to even (the
//! authors' code uses `numpy.rint`), and the `s × s` median filter applied to each channel of a
//! planar (channels × height × width) image, with the border convention of
//! `scipy.ndimage.median_filter(mode='reflect')` that their code uses: indices beyond an edge are
//! mirrored including the edge value (`d c b a | a b c d | d c b a`), the window spans offsets
//! `−⌊s/2⌋ ..= s − 1 − ⌊s/2⌋` (so `{−1, 0}` for s = 2), and for an even window the upper of the
//! two middle values is taken (the rank-`⌊s²/2⌋` element, as SciPy does).
//!
//! The crate does not run the model: the caller runs it on the original and on each squeezed input
//! and passes the probability vectors to [`squeeze_score`], which returns the largest L1 distance
//! between the original's prediction and a squeezed one's.

use serde::{Deserialize, Serialize};

use super::{DetectError, bad_config, check_finite_f32};

/// The layout of a planar image: `channels` planes of `height × width` values, row-major.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageShape {
    /// Number of channels (planes).
    pub channels: usize,
    /// Rows per plane.
    pub height: usize,
    /// Columns per row.
    pub width: usize,
}

impl ImageShape {
    /// The number of values, or `None` on overflow.
    pub fn len(&self) -> Option<usize> {
        self.channels
            .checked_mul(self.height)?
            .checked_mul(self.width)
    }

    /// Whether the image has no values.
    pub fn is_empty(&self) -> bool {
        self.len() == Some(0)
    }
}

/// One squeezer of a feature-squeezing detector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "squeezer", rename_all = "snake_case")]
pub enum Squeezer {
    /// Bit-depth reduction to `bits` bits (1..=24).
    BitDepth {
        /// Bits kept.
        bits: u32,
    },
    /// The `size × size` median filter (1..=7; the paper uses 2 and 3) on each channel.
    Median {
        /// The window's side.
        size: usize,
    },
}

impl Squeezer {
    /// Writes the squeezed `image` into `out` (same length).
    pub fn apply(
        &self,
        image: &[f32],
        shape: ImageShape,
        out: &mut [f32],
    ) -> Result<(), DetectError> {
        check_image(image, shape, out)?;
        match *self {
            Self::BitDepth { bits } => reduce_bit_depth(image, bits, out),
            Self::Median { size } => median_filter(image, shape, size, out),
        }
    }
}

/// The most bits a bit-depth reduction keeps: f32 represents `k / (2²⁴ − 1)` well enough.
const MAX_BITS: u32 = 24;
/// The largest median window side.
const MAX_MEDIAN: usize = 7;
/// How far a probability vector's sum may be from 1.
const PROBABILITY_SUM_TOLERANCE: f64 = 1e-3;

/// Reduces values in [0, 1] to `bits` bits: `round(x · (2ᵇ − 1)) / (2ᵇ − 1)`, ties to even.
pub fn reduce_bit_depth(image: &[f32], bits: u32, out: &mut [f32]) -> Result<(), DetectError> {
    if !(1..=MAX_BITS).contains(&bits) {
        return Err(bad_config(
            "bits",
            format!("expected 1..={MAX_BITS} bits, got {bits}"),
        ));
    }
    if out.len() != image.len() {
        return Err(DetectError::WrongDim {
            what: "squeezed output",
            expected: image.len(),
            got: out.len(),
        });
    }
    check_finite_f32(image, "image")?;
    if let Some(index) = image.iter().position(|v| !(0.0..=1.0).contains(v)) {
        return Err(DetectError::OutOfRange {
            what: "image",
            index,
            value: f64::from(image[index]),
            lo: 0.0,
            hi: 1.0,
        });
    }
    let levels = ((1u32 << bits) - 1) as f32;
    for (o, &v) in out.iter_mut().zip(image) {
        *o = (v * levels).round_ties_even() / levels;
    }
    Ok(())
}

/// The `size × size` median filter of each channel of a planar image, with SciPy's `reflect`
/// border (see the module documentation).
pub fn median_filter(
    image: &[f32],
    shape: ImageShape,
    size: usize,
    out: &mut [f32],
) -> Result<(), DetectError> {
    if !(1..=MAX_MEDIAN).contains(&size) {
        return Err(bad_config(
            "size",
            format!("expected a median window of 1..={MAX_MEDIAN}, got {size}"),
        ));
    }
    check_image(image, shape, out)?;
    check_finite_f32(image, "image")?;
    let (h, w) = (shape.height, shape.width);
    let before = (size / 2) as isize;
    let rank = size * size / 2;
    let mut window = [0.0f32; MAX_MEDIAN * MAX_MEDIAN];
    let window = &mut window[..size * size];
    for (plane, out_plane) in image.chunks_exact(h * w).zip(out.chunks_exact_mut(h * w)) {
        for i in 0..h {
            for j in 0..w {
                let mut t = 0;
                for di in 0..size as isize {
                    let r = reflect(i as isize + di - before, h);
                    for dj in 0..size as isize {
                        let c = reflect(j as isize + dj - before, w);
                        window[t] = plane[r * w + c];
                        t += 1;
                    }
                }
                let (_, m, _) = window.select_nth_unstable_by(rank, f32::total_cmp);
                out_plane[i * w + j] = *m;
            }
        }
    }
    Ok(())
}

/// SciPy's `reflect` index for `i` in a line of `n >= 1`: period `2n`, mirrored about the edges.
fn reflect(i: isize, n: usize) -> usize {
    let period = 2 * n as isize;
    let m = i.rem_euclid(period) as usize;
    if m < n { m } else { 2 * n - 1 - m }
}

fn check_image(image: &[f32], shape: ImageShape, out: &[f32]) -> Result<(), DetectError> {
    let len = shape.len().filter(|&l| l > 0).ok_or_else(|| {
        bad_config(
            "shape",
            format!("expected a non-empty image shape, got {shape:?}"),
        )
    })?;
    for (what, got) in [("image", image.len()), ("squeezed output", out.len())] {
        if got != len {
            return Err(DetectError::WrongDim {
                what,
                expected: len,
                got,
            });
        }
    }
    Ok(())
}

/// The feature-squeezing score: `original` is the model's probability vector on the input,
/// `squeezed` holds one probability vector of the same length per squeezer (row-major); returns
/// the largest L1 distance `max_s ‖original − squeezed_s‖₁`, in [0, 2].
pub fn squeeze_score(original: &[f32], squeezed: &[f32]) -> Result<f64, DetectError> {
    let c = original.len();
    if c == 0 {
        return Err(DetectError::ZeroDim {
            what: "probability vector",
        });
    }
    if squeezed.is_empty() || !squeezed.len().is_multiple_of(c) {
        return Err(DetectError::Ragged {
            what: "squeezed probabilities",
            len: squeezed.len(),
            dim: c,
        });
    }
    check_probabilities(original, c, "original probabilities")?;
    check_probabilities(squeezed, c, "squeezed probabilities")?;
    let mut best = 0.0f64;
    for row in squeezed.chunks_exact(c) {
        let l1: f64 = row
            .iter()
            .zip(original)
            .map(|(&a, &b)| (f64::from(a) - f64::from(b)).abs())
            .sum();
        best = best.max(l1);
    }
    Ok(best)
}

fn check_probabilities(p: &[f32], c: usize, what: &'static str) -> Result<(), DetectError> {
    check_finite_f32(p, what)?;
    if let Some(index) = p.iter().position(|&v| v < 0.0) {
        return Err(DetectError::OutOfRange {
            what,
            index,
            value: f64::from(p[index]),
            lo: 0.0,
            hi: 1.0,
        });
    }
    for (row, r) in p.chunks_exact(c).enumerate() {
        let sum: f64 = r.iter().map(|&v| f64::from(v)).sum();
        if (sum - 1.0).abs() > PROBABILITY_SUM_TOLERANCE {
            return Err(DetectError::NotProbability { what, row, sum });
        }
    }
    Ok(())
}
