//! One-row products (a batch-1 linear layer), microseconds per call:
//! `cargo run --release -p warden-gemm --example rowbench [reps]`.
//!
//! For each shape: `sgemm` with the weights as PyTorch stores them (`out × in`, read transposed),
//! `sgemm` with a transposed copy (`in × out`, what `warden-harden` reads for few-row products),
//! and, for reference, the `gemm` crate called directly, whose one-row kernels are fast but sum
//! in another order than its many-row kernel (not batch-invariant).
#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::time::Instant;
use warden_gemm::{Shape, sgemm};

fn time(reps: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..reps / 10 + 1 {
        f();
    }
    let t = Instant::now();
    for _ in 0..reps {
        f();
    }
    t.elapsed().as_secs_f64() * 1e6 / reps as f64
}

#[allow(unsafe_code)]
fn gemm_direct(a: &[f32], w: &[f32], c: &mut [f32], k: usize, n: usize) {
    // SAFETY: a has k floats, w has n·k (n rows of k, read as the k × n transpose), c has n;
    // the strides below stay inside them, and c does not overlap the inputs.
    unsafe {
        gemm::gemm(
            1,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            1,
            k as isize,
            w.as_ptr(),
            k as isize,
            1,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

fn main() {
    let reps: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    println!("| m × k × n | weights out × in | copy in × out | gemm crate direct |");
    println!("| --- | --- | --- | --- |");
    for (k, n) in [(1600, 128), (3136, 128), (784, 256), (128, 10)] {
        let a: Vec<f32> = (0..k).map(|i| (i % 7) as f32 * 0.1).collect();
        let w: Vec<f32> = (0..n * k).map(|i| (i % 11) as f32 * 0.01).collect();
        let mut wt = vec![0.0f32; k * n];
        for (o, row) in w.chunks_exact(k).enumerate() {
            for (p, &v) in row.iter().enumerate() {
                wt[p * n + o] = v;
            }
        }
        let mut c = vec![0.0f32; n];
        let (sa, sc) = (Shape::row_major(1, k), Shape::row_major(1, n));
        let stored = time(reps, || {
            sgemm(&a, sa, &w, Shape::transposed(n, k), &mut c, sc, false).unwrap()
        });
        let copy = time(reps, || {
            sgemm(&a, sa, &wt, Shape::row_major(k, n), &mut c, sc, false).unwrap()
        });
        let direct = time(reps, || gemm_direct(&a, &w, &mut c, k, n));
        println!("| 1 × {k} × {n} | {stored:.1} µs | {copy:.1} µs | {direct:.1} µs |");
    }
}
