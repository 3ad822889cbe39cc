//! Training-time data augmentation: random horizontal flips and random translations (the
//! "pad and random crop" of torchvision's training transforms), drawn per image from a seed so
//! that every engine sees the same images.
//!
//! An augmentation is expressed as a *plan*: for every output value of every image, the index of
//! the value of the same image it copies, or `len` (one past the image) for the zero fill that
//! enters at the border. The CPU engine applies a plan with [`apply_plan`]; the burn engine uploads
//! it and applies it with one gather, so both engines train on identical batches.

use serde::{Deserialize, Serialize};

use crate::rng::Rng;

/// The largest translation accepted, in pixels.
pub const MAX_SHIFT: usize = 8;

/// Which random transformations each training image goes through (all off: the identity).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Augment {
    /// Mirror the image left to right with probability 1/2.
    #[serde(default)]
    pub flip: bool,
    /// Translate the image by `dx, dy`, each uniform in `-shift..=shift` pixels, filling the
    /// uncovered border with 0 (torchvision's `RandomCrop(size, padding=shift)` on a
    /// zero-background image).
    #[serde(default)]
    pub shift: usize,
}

impl Augment {
    /// Whether every image passes unchanged.
    pub fn is_identity(&self) -> bool {
        !self.flip && self.shift == 0
    }

    /// Refuses a translation larger than [`MAX_SHIFT`], or of at least half the smaller image side
    /// of `input` (channels, height, width): such a shift would leave most of the image empty.
    pub fn validate(&self, input: [usize; 3]) -> Result<(), String> {
        let [_, h, w] = input;
        if self.shift > MAX_SHIFT || 2 * self.shift >= h.min(w) {
            return Err(format!(
                "a shift of {} pixels: at most {MAX_SHIFT} and less than half the image side ({h}×{w})",
                self.shift
            ));
        }
        Ok(())
    }

    /// The plan for `n` images of shape `input` (channels, height, width, stored height-major with
    /// channels last, Warden's input layout), drawn from `seed`: `n · C·H·W` indices, each into
    /// its own image (`0..C·H·W`), or `C·H·W` for a zero.
    pub fn plan(&self, n: usize, input: [usize; 3], seed: u64) -> Vec<u32> {
        let [c, h, w] = input;
        let len = c * h * w;
        let mut plan = Vec::with_capacity(n * len);
        let s = self.shift as i64;
        for img in 0..n {
            let mut rng = Rng::stream(seed, img as u64, 0x6175_676d);
            // Draw in a fixed order whatever is on, so that turning one transformation on or
            // off does not change the other's draws.
            let flip = rng.below(2) == 1 && self.flip;
            let dy = rng.below(2 * s as u64 + 1) as i64 - s;
            let dx = rng.below(2 * s as u64 + 1) as i64 - s;
            for i in 0..h as i64 {
                for j in 0..w as i64 {
                    // Output (i, j) shows the flipped image's pixel (i − dy, j − dx).
                    let (si, sj) = (i - dy, j - dx);
                    let inside = (0..h as i64).contains(&si) && (0..w as i64).contains(&sj);
                    let sj = if flip { w as i64 - 1 - sj } else { sj };
                    for ch in 0..c {
                        plan.push(if inside {
                            ((si as usize * w + sj as usize) * c + ch) as u32
                        } else {
                            len as u32
                        });
                    }
                }
            }
        }
        plan
    }

    /// Augments the batch `x` (whole images of shape `input`) in place with the draws of `seed`.
    pub fn apply(&self, x: &mut [f32], input: [usize; 3], seed: u64) {
        if self.is_identity() {
            return;
        }
        let len = input.iter().product::<usize>();
        if len == 0 {
            return;
        }
        let plan = self.plan(x.len() / len, input, seed);
        apply_plan(x, &plan, len);
    }
}

/// Applies `plan` (from [`Augment::plan`]) to the whole images of `len` values in `x`.
pub fn apply_plan(x: &mut [f32], plan: &[u32], len: usize) {
    let mut src = vec![0.0f32; len + 1];
    for (img, p) in x.chunks_exact_mut(len).zip(plan.chunks_exact(len)) {
        src[..len].copy_from_slice(img);
        for (o, &k) in img.iter_mut().zip(p) {
            *o = src[k as usize];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(n: usize, len: usize) -> Vec<f32> {
        (0..n * len).map(|v| 1.0 + v as f32).collect()
    }

    #[test]
    fn identity_changes_nothing_and_flip_alone_mirrors_rows() {
        let input = [1, 4, 5];
        let x = ramp(64, 20);
        let mut y = x.clone();
        Augment::default().apply(&mut y, input, 3);
        assert_eq!(x, y);
        let flip = Augment {
            flip: true,
            shift: 0,
        };
        flip.apply(&mut y, input, 3);
        let (mut flipped, mut kept) = (0, 0);
        for (a, b) in x.chunks(20).zip(y.chunks(20)) {
            if a == b {
                kept += 1;
                continue;
            }
            flipped += 1;
            for r in 0..4 {
                for col in 0..5 {
                    assert_eq!(b[r * 5 + col], a[r * 5 + 4 - col]);
                }
            }
        }
        // 64 fair coins: both outcomes occur (the chance that one does not is 2^-63).
        assert!(flipped > 10 && kept > 10, "{flipped} flipped, {kept} kept");
        // Flipping twice with the same draws restores the batch.
        flip.apply(&mut y, input, 3);
        assert_eq!(x, y);
    }

    /// Every augmented image is the original, mirrored or not, then translated by at most
    /// `shift` with zeros coming in, each channel kept in place (two channels, channels last);
    /// returns the (flip, dy, dx) found per image.
    fn transforms(aug: Augment, n: usize, seed: u64) -> Vec<(bool, i64, i64)> {
        let (c, h, w) = (2usize, 6i64, 7i64);
        let len = c * (h * w) as usize;
        let x = ramp(n, len);
        let mut y = x.clone();
        aug.apply(&mut y, [c, h as usize, w as usize], seed);
        let s = aug.shift as i64;
        let candidates: Vec<(bool, i64, i64)> = [false, true]
            .into_iter()
            .flat_map(|f| (-s..=s).flat_map(move |dy| (-s..=s).map(move |dx| (f, dy, dx))))
            .collect();
        x.chunks(len)
            .zip(y.chunks(len))
            .map(|(a, b)| {
                let matches = |&(flip, dy, dx): &(bool, i64, i64)| {
                    (0..h).all(|i| {
                        (0..w).all(|j| {
                            (0..c).all(|ch| {
                                let (si, sj) = (i - dy, j - dx);
                                let want = if (0..h).contains(&si) && (0..w).contains(&sj) {
                                    let sj = if flip { w - 1 - sj } else { sj };
                                    a[((si * w + sj) as usize) * c + ch]
                                } else {
                                    0.0
                                };
                                b[((i * w + j) as usize) * c + ch] == want
                            })
                        })
                    })
                };
                let found: Vec<_> = candidates.iter().copied().filter(|t| matches(t)).collect();
                assert_eq!(
                    found.len(),
                    1,
                    "exactly one transformation explains an image"
                );
                found[0]
            })
            .collect()
    }

    #[test]
    fn shift_translates_within_bounds_and_fills_zeros() {
        let aug = Augment {
            flip: false,
            shift: 2,
        };
        aug.validate([2, 6, 7]).unwrap();
        let seen: std::collections::BTreeSet<_> = transforms(aug, 200, 11).into_iter().collect();
        // 200 images over 25 shifts: every shift is drawn (a miss has chance about 25·(24/25)^200),
        // and none is mirrored.
        assert_eq!(seen.len(), 25);
        assert!(seen.iter().all(|t| !t.0));
    }

    #[test]
    fn flips_and_shifts_compose() {
        let aug = Augment {
            flip: true,
            shift: 1,
        };
        let seen: std::collections::BTreeSet<_> = transforms(aug, 300, 5).into_iter().collect();
        // Both mirror states with all 9 shifts: 18 combinations, each drawn.
        assert_eq!(seen.len(), 18);
    }

    #[test]
    fn plans_are_deterministic_and_a_seed_changes_them() {
        let aug = Augment {
            flip: true,
            shift: 3,
        };
        let input = [1, 28, 28];
        let a = aug.plan(8, input, 5);
        assert_eq!(a, aug.plan(8, input, 5));
        assert_ne!(a, aug.plan(8, input, 6));
        assert!(a.iter().all(|&k| k <= 784));
        // The first images of a larger batch draw the same as a smaller one.
        assert_eq!(a[..784 * 8], aug.plan(9, input, 5)[..784 * 8]);
    }

    #[test]
    fn oversized_shifts_are_refused() {
        let big = Augment {
            flip: false,
            shift: 9,
        };
        assert!(big.validate([1, 28, 28]).is_err());
        let half = Augment {
            flip: false,
            shift: 2,
        };
        assert!(half.validate([1, 4, 28]).is_err());
        assert!(half.validate([1, 5, 28]).is_ok());
    }
}
