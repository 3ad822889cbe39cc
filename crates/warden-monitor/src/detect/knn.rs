//! k-nearest-neighbour distance on normalised features (Sun et al., "Out-of-distribution detection
//! with deep nearest neighbors", ICML 2022): reference features are L2-normalised once at fit time
//! and stored contiguously in f32; a sample is normalised and scored by its Euclidean distance to
//! the k-th nearest reference vector.
//!
//! The search is brute force. For unit vectors `‖x − r‖² = 2 − 2 x·r`, so the k-th nearest
//! neighbour is the k-th largest dot product: one pass of vectorised f32 dot products over the
//! reference matrix feeds a bounded min-heap of the `k` largest, held in the caller's scratch
//! (most rows cost one comparison with its root). The winning neighbour's distance is then recomputed in f64 as `‖x̂ − r̂‖` (no
//! cancellation), so the score is accurate to f32 storage of the reference, about 1e-7 relative;
//! only when two neighbours' dot products differ by less than f32 rounding (about 1e-6) may the
//! neighbour picked be the other one, changing the score by no more than that difference.
//!
//! The cost is `n · d` multiply-adds per sample; to bound it, `max_reference` keeps a uniformly
//! random subset of that many reference rows, drawn with the configured seed (reproducible).

use serde::{Deserialize, Serialize};

use warden_gemm::Shape;

use super::linalg::dot_f32;
use super::{
    DetectError, Detector, Scratch, bad_config, bad_state, check_finite_f32, check_rows,
    check_sample,
};
use crate::stats::Rng;

/// How to fit a [`Knn`] detector.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct KnnConfig {
    /// Which neighbour's distance is the score (1 = the nearest); at most the rows kept.
    pub k: usize,
    /// Keep at most this many reference rows, chosen uniformly at random; `None` keeps all.
    pub max_reference: Option<usize>,
    /// The seed of the subsampling.
    pub seed: u64,
}

impl Default for KnnConfig {
    /// `k = 50`, as Sun et al. use for CIFAR-10, and no subsampling.
    fn default() -> Self {
        Self {
            k: 50,
            max_reference: None,
            seed: 0,
        }
    }
}

/// A fitted kNN-distance detector.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "KnnState")]
pub struct Knn {
    dim: usize,
    k: usize,
    /// The L2-normalised reference rows, row-major.
    reference: Vec<f32>,
}

#[derive(Deserialize)]
struct KnnState {
    dim: usize,
    k: usize,
    reference: Vec<f32>,
}

impl TryFrom<KnnState> for Knn {
    type Error = DetectError;

    fn try_from(s: KnnState) -> Result<Self, DetectError> {
        let n = check_rows(&s.reference, s.dim, 1, "knn reference")
            .map_err(|e| bad_state(e.to_string()))?;
        if s.k == 0 || s.k > n || n > u32::MAX as usize {
            return Err(bad_state(format!("knn: k = {} does not fit {n} rows", s.k)));
        }
        for (row, r) in s.reference.chunks_exact(s.dim).enumerate() {
            let norm = r.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>().sqrt();
            if (norm - 1.0).abs() > 1e-4 {
                return Err(bad_state(format!(
                    "knn: reference row {row} has norm {norm}; expected unit rows"
                )));
            }
        }
        Ok(Self {
            dim: s.dim,
            k: s.k,
            reference: s.reference,
        })
    }
}

impl Knn {
    /// Fits on `features` (row-major, `dim` values per row). Every row must be non-zero.
    pub fn fit(features: &[f32], dim: usize, config: KnnConfig) -> Result<Self, DetectError> {
        let n = check_rows(features, dim, 1, "knn reference")?;
        let kept: Vec<usize> = match config.max_reference {
            Some(0) => {
                return Err(bad_config(
                    "max_reference",
                    "expected at least 1 row to keep, got 0",
                ));
            }
            Some(m) if m < n => {
                // A partial Fisher–Yates shuffle picks m distinct rows; keep them in input order.
                let mut rng = Rng::new(config.seed);
                let mut idx: Vec<usize> = (0..n).collect();
                for i in 0..m {
                    let j = i + rng.below((n - i) as u64) as usize;
                    idx.swap(i, j);
                }
                idx.truncate(m);
                idx.sort_unstable();
                idx
            }
            _ => (0..n).collect(),
        };
        if config.k == 0 || config.k > kept.len() {
            return Err(DetectError::BadK {
                k: config.k,
                n: kept.len(),
            });
        }
        if kept.len() > u32::MAX as usize {
            return Err(bad_config(
                "max_reference",
                "expected at most 2^32 - 1 reference rows",
            ));
        }
        let mut reference = Vec::with_capacity(kept.len() * dim);
        for &row in &kept {
            let r = &features[row * dim..(row + 1) * dim];
            let norm = r.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>().sqrt();
            if norm == 0.0 {
                return Err(DetectError::ZeroNorm {
                    what: "knn reference",
                    row,
                });
            }
            reference.extend(r.iter().map(|&v| (f64::from(v) / norm) as f32));
        }
        check_finite_f32(&reference, "normalised knn reference")?;
        Ok(Self {
            dim,
            k: config.k,
            reference,
        })
    }

    /// The `k` of the score.
    pub fn k(&self) -> usize {
        self.k
    }

    /// How many reference rows were kept (after any subsampling).
    pub fn reference_len(&self) -> usize {
        self.reference.len() / self.dim
    }
}

impl Detector for Knn {
    fn dim(&self) -> usize {
        self.dim
    }

    fn score_with(&self, x: &[f32], scratch: &mut Scratch) -> Result<f64, DetectError> {
        check_sample(x, self.dim, "features")?;
        let n = self.reference_len();
        let (unit64, f32s, heap) = scratch.buffers(self.dim, self.dim + n, self.k);
        let (unit32, dots) = f32s.split_at_mut(self.dim);
        let norm = x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>().sqrt();
        if norm == 0.0 {
            return Err(DetectError::ZeroNorm {
                what: "features",
                row: 0,
            });
        }
        for ((u64_, u32_), &v) in unit64.iter_mut().zip(unit32.iter_mut()).zip(x) {
            *u64_ = f64::from(v) / norm;
            *u32_ = *u64_ as f32;
        }
        // Two tight passes: the dot products, as one matrix-vector product through warden-gemm's
        // kernels (chosen at run time for the CPU: AVX2 or AVX-512 where there is one), then the
        // top k over them.
        if warden_gemm::sgemv(
            unit32,
            &self.reference,
            Shape::transposed(n, self.dim),
            dots,
        )
        .is_err()
        {
            // The shapes come from the validated state; should the kernels refuse them anyway,
            // the portable loop gives the same dot products.
            for (dot, r) in dots.iter_mut().zip(self.reference.chunks_exact(self.dim)) {
                *dot = dot_f32(unit32, r);
            }
        }
        let mut top = TopK { heap, len: 0 };
        for (&dot, index) in dots.iter().zip(0u32..) {
            top.offer(dot, index);
        }
        // The heap's root is the smallest of the k largest dot products: the k-th nearest.
        let j = top.heap[0].1 as usize;
        let r = &self.reference[j * self.dim..(j + 1) * self.dim];
        let d2: f64 = unit64
            .iter()
            .zip(r)
            .map(|(&u, &v)| (u - f64::from(v)).powi(2))
            .sum();
        Ok(d2.sqrt())
    }
}

/// The `k` largest dot products seen so far, as a binary min-heap on the dot product (so the root
/// is the k-th largest once `k` have been offered), in caller-provided storage.
struct TopK<'a> {
    heap: &'a mut [(f32, u32)],
    len: usize,
}

impl TopK<'_> {
    /// Offers one reference row's dot product; most are rejected by one comparison with the root.
    fn offer(&mut self, dot: f32, index: u32) {
        if self.len < self.heap.len() {
            self.heap[self.len] = (dot, index);
            sift_up(self.heap, self.len);
            self.len += 1;
        } else if dot > self.heap[0].0 {
            self.heap[0] = (dot, index);
            sift_down(self.heap);
        }
    }
}

/// Restores the min-heap order (by dot product) after appending at `i`.
fn sift_up(heap: &mut [(f32, u32)], mut i: usize) {
    while i > 0 {
        let parent = (i - 1) / 2;
        if heap[i].0 < heap[parent].0 {
            heap.swap(i, parent);
            i = parent;
        } else {
            break;
        }
    }
}

/// Restores the min-heap order after replacing the root.
fn sift_down(heap: &mut [(f32, u32)]) {
    let mut i = 0;
    loop {
        let (l, r) = (2 * i + 1, 2 * i + 2);
        let mut smallest = i;
        if l < heap.len() && heap[l].0 < heap[smallest].0 {
            smallest = l;
        }
        if r < heap.len() && heap[r].0 < heap[smallest].0 {
            smallest = r;
        }
        if smallest == i {
            return;
        }
        heap.swap(i, smallest);
        i = smallest;
    }
}
