//! Products of a few rows, one row at a time, each element summed exactly as the `gemm` crate's
//! FMA micro-kernel sums it.
//!
//! That kernel keeps one accumulator per element of `C`, starts it at zero, and adds the inner
//! terms to it in order with fused multiply-adds; a call adds its accumulator to `C` (or stores
//! it). [`crate::sgemm`] hands it the inner dimension in chunks of [`KC`], so an element of `C` is
//! `acc(chunk 0) + acc(chunk 1) + …` (after `C` itself when accumulating), each `acc` a chain of
//! FMAs from zero. A fused multiply-add is exactly rounded, so computing the same chains in another
//! arrangement (here: vectors across the columns of `C` rather than the kernel's tiles) gives the
//! same bits. It does so without the kernel's cost for one row: packing all of `B` for a product
//! that reads it once (padded to three rows, `small-cnn`'s 1,600 × 128 layer took 100 µs for one
//! example; here 24 µs when `B`'s rows are contiguous, 48 µs when its columns are).
//!
//! This applies only where the `gemm` crate itself takes its FMA kernels (it dispatches on the
//! processor's `fma` flag), and only to products that would reach the micro-kernel with more rows:
//! at least two columns and three inner terms (with one column it takes a matrix-vector kernel, with
//! at most two terms an outer-product one). Everything else is padded with zero rows instead.

use crate::{KC, Shape};

/// Whether [`product`] reproduces the `gemm` crate's kernel on this processor.
pub(crate) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("fma") && std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether a product of this shape is one [`product`] computes as the micro-kernel would.
pub(crate) fn applies(b: &Shape, n: usize, k: usize) -> bool {
    n >= 2 && k >= 3 && (b.col_stride == 1 || b.row_stride == 1) && available()
}

/// `C (+)= A·B`, row by row. Views must have passed [`crate::check`], and [`applies`] must hold.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
pub(crate) fn product(
    a: &[f32],
    a_shape: Shape,
    b: &[f32],
    b_shape: Shape,
    c: &mut [f32],
    c_shape: Shape,
    accumulate: bool,
) {
    assert!(available(), "row kernel called without FMA and AVX2");
    // SAFETY: calling a `target_feature` function requires only that the processor has the
    // features it enables, which `available` has just checked at run time. Inside, the one unsafe
    // operation is the vector load in `fma::load`, from a checked `&[f32; 8]`.
    unsafe { fma::product(a, a_shape, b, b_shape, c, c_shape, accumulate) }
}

/// Not reached: [`available`] is false off x86-64.
#[cfg(not(target_arch = "x86_64"))]
pub(crate) fn product(_: &[f32], _: Shape, _: &[f32], _: Shape, _: &mut [f32], _: Shape, _: bool) {
    unreachable!("row kernel is x86-64 only")
}

#[cfg(target_arch = "x86_64")]
mod fma {
    use super::{KC, Shape};
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx,avx2,fma")]
    pub(super) fn product(
        a: &[f32],
        a_shape: Shape,
        b: &[f32],
        b_shape: Shape,
        c: &mut [f32],
        c_shape: Shape,
        accumulate: bool,
    ) {
        let (m, n, k) = (c_shape.rows, c_shape.cols, a_shape.cols);
        let mut x = vec![0.0f32; k];
        let mut acc = vec![0.0f32; n];
        let mut out = vec![0.0f32; n];
        let at = |r: usize, col: usize| r * c_shape.row_stride + col * c_shape.col_stride;
        for i in 0..m {
            for (p, v) in x.iter_mut().enumerate() {
                *v = a[i * a_shape.row_stride + p * a_shape.col_stride];
            }
            if accumulate {
                for (j, v) in out.iter_mut().enumerate() {
                    *v = c[at(i, j)];
                }
            }
            let mut k0 = 0;
            while k0 < k {
                let kb = KC.min(k - k0);
                let xs = &x[k0..k0 + kb];
                if b_shape.col_stride == 1 {
                    chunk_rows(
                        xs,
                        &b[k0 * b_shape.row_stride..],
                        b_shape.row_stride,
                        &mut acc,
                    );
                } else {
                    chunk_columns(xs, &b[k0..], b_shape.col_stride, &mut acc);
                }
                if k0 == 0 && !accumulate {
                    out.copy_from_slice(&acc);
                } else {
                    for (o, s) in out.iter_mut().zip(&acc) {
                        *o += s;
                    }
                }
                k0 += kb;
            }
            for (j, &v) in out.iter().enumerate() {
                c[at(i, j)] = v;
            }
        }
    }

    /// `acc[j] = Σ_q x[q]·b[q·rs + j]` (B's rows contiguous), each a chain of FMAs from zero in
    /// the order of `q`: vectors run across `j`, every lane its own chain; eight vectors at once
    /// hide the FMA latency.
    #[target_feature(enable = "avx,avx2,fma")]
    fn chunk_rows(x: &[f32], b: &[f32], rs: usize, acc: &mut [f32]) {
        let n = acc.len();
        let mut j = 0;
        while j + 64 <= n {
            let mut s = [_mm256_setzero_ps(); 8];
            for (q, &xq) in x.iter().enumerate() {
                let row = &b[q * rs + j..q * rs + j + 64];
                let xv = _mm256_set1_ps(xq);
                for (g, sg) in s.iter_mut().enumerate() {
                    *sg = _mm256_fmadd_ps(xv, load(&row[8 * g..8 * g + 8]), *sg);
                }
            }
            for (g, sg) in s.iter().enumerate() {
                acc[j + 8 * g..j + 8 * g + 8].copy_from_slice(&lanes(*sg));
            }
            j += 64;
        }
        while j + 8 <= n {
            let mut s = _mm256_setzero_ps();
            for (q, &xq) in x.iter().enumerate() {
                let v = load(&b[q * rs + j..q * rs + j + 8]);
                s = _mm256_fmadd_ps(_mm256_set1_ps(xq), v, s);
            }
            acc[j..j + 8].copy_from_slice(&lanes(s));
            j += 8;
        }
        while j < n {
            let mut s = 0.0f32;
            for (q, &xq) in x.iter().enumerate() {
                s = xq.mul_add(b[q * rs + j], s);
            }
            acc[j] = s;
            j += 1;
        }
    }

    /// As [`chunk_rows`] for `B` stored by columns (`b[j·cs + q]`, a linear layer's weights as
    /// PyTorch keeps them): blocks of 8 columns × 8 terms are transposed in registers so that
    /// vectors still run across `j`; four blocks of columns at once hide the FMA latency.
    #[target_feature(enable = "avx,avx2,fma")]
    fn chunk_columns(x: &[f32], b: &[f32], cs: usize, acc: &mut [f32]) {
        let n = acc.len();
        let kb = x.len();
        let mut j = 0;
        while j + 32 <= n {
            let s = columns::<4>(x, b, cs, j);
            for (g, sg) in s.iter().enumerate() {
                acc[j + 8 * g..j + 8 * g + 8].copy_from_slice(&lanes(*sg));
            }
            j += 32;
        }
        while j + 8 <= n {
            let [s] = columns::<1>(x, b, cs, j);
            acc[j..j + 8].copy_from_slice(&lanes(s));
            j += 8;
        }
        while j < n {
            let col = &b[j * cs..j * cs + kb];
            let mut s = 0.0f32;
            for (&xq, &bq) in x.iter().zip(col) {
                s = xq.mul_add(bq, s);
            }
            acc[j] = s;
            j += 1;
        }
    }

    /// The chains of columns `j0 .. j0 + 8·G`, as vectors of 8.
    #[target_feature(enable = "avx,avx2,fma")]
    fn columns<const G: usize>(x: &[f32], b: &[f32], cs: usize, j0: usize) -> [__m256; G] {
        let kb = x.len();
        let mut s = [_mm256_setzero_ps(); G];
        let mut q = 0;
        let zero = _mm256_setzero_ps();
        // Each column's terms of this chunk, cut once so that the loop's reads need no checks.
        let cols: [[&[f32]; 8]; G] = std::array::from_fn(|g| {
            std::array::from_fn(|l| {
                let j = (j0 + 8 * g + l) * cs;
                &b[j..j + kb]
            })
        });
        while q + 8 <= kb {
            // All blocks transposed first, then the FMAs with the groups interleaved, so that the
            // processor sees G independent chains side by side rather than one at a time.
            let mut t = [[zero; 8]; G];
            for (tg, c) in t.iter_mut().zip(&cols) {
                *tg = transpose([
                    load(&c[0][q..q + 8]),
                    load(&c[1][q..q + 8]),
                    load(&c[2][q..q + 8]),
                    load(&c[3][q..q + 8]),
                    load(&c[4][q..q + 8]),
                    load(&c[5][q..q + 8]),
                    load(&c[6][q..q + 8]),
                    load(&c[7][q..q + 8]),
                ]);
            }
            for (r, &xr) in x[q..q + 8].iter().enumerate() {
                let xv = _mm256_set1_ps(xr);
                for (sg, tg) in s.iter_mut().zip(&t) {
                    *sg = _mm256_fmadd_ps(xv, tg[r], *sg);
                }
            }
            q += 8;
        }
        while q < kb {
            let xv = _mm256_set1_ps(x[q]);
            for (sg, c) in s.iter_mut().zip(&cols) {
                let v = _mm256_setr_ps(
                    c[0][q], c[1][q], c[2][q], c[3][q], c[4][q], c[5][q], c[6][q], c[7][q],
                );
                *sg = _mm256_fmadd_ps(xv, v, *sg);
            }
            q += 1;
        }
        s
    }

    /// Eight consecutive floats as a vector. (Built from the elements with `_mm256_setr_ps`, the
    /// compiler merges these loads into the transposes' shuffles as narrower loads and inserts,
    /// three times slower.)
    #[target_feature(enable = "avx,avx2,fma")]
    #[allow(unsafe_code)]
    fn load(v: &[f32]) -> __m256 {
        let v: &[f32; 8] = v.try_into().expect("eight floats");
        // SAFETY: `v` is a reference to 8 initialised f32s, the 32 bytes read; `loadu` has no
        // alignment requirement.
        unsafe { _mm256_loadu_ps(v.as_ptr()) }
    }

    #[target_feature(enable = "avx,avx2,fma")]
    fn lanes(v: __m256) -> [f32; 8] {
        let lo = _mm256_castps256_ps128(v);
        let hi = _mm256_extractf128_ps::<1>(v);
        let f = |bits: i32| f32::from_bits(bits as u32);
        [
            f(_mm_extract_ps::<0>(lo)),
            f(_mm_extract_ps::<1>(lo)),
            f(_mm_extract_ps::<2>(lo)),
            f(_mm_extract_ps::<3>(lo)),
            f(_mm_extract_ps::<0>(hi)),
            f(_mm_extract_ps::<1>(hi)),
            f(_mm_extract_ps::<2>(hi)),
            f(_mm_extract_ps::<3>(hi)),
        ]
    }

    /// Rows `r[l] = [l0 … l7]` to columns `t[q] = [0q … 7q]`.
    #[target_feature(enable = "avx,avx2,fma")]
    fn transpose(r: [__m256; 8]) -> [__m256; 8] {
        let t0 = _mm256_unpacklo_ps(r[0], r[1]); // 00 10 01 11 | 04 14 05 15
        let t1 = _mm256_unpackhi_ps(r[0], r[1]); // 02 12 03 13 | 06 16 07 17
        let t2 = _mm256_unpacklo_ps(r[2], r[3]);
        let t3 = _mm256_unpackhi_ps(r[2], r[3]);
        let t4 = _mm256_unpacklo_ps(r[4], r[5]);
        let t5 = _mm256_unpackhi_ps(r[4], r[5]);
        let t6 = _mm256_unpacklo_ps(r[6], r[7]);
        let t7 = _mm256_unpackhi_ps(r[6], r[7]);
        let u0 = _mm256_shuffle_ps::<0x44>(t0, t2); // 00 10 20 30 | 04 14 24 34
        let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2); // 01 11 21 31 | 05 15 25 35
        let u2 = _mm256_shuffle_ps::<0x44>(t1, t3); // 02 12 22 32 | 06 16 26 36
        let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3); // 03 13 23 33 | 07 17 27 37
        let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
        let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
        let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
        let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
        [
            _mm256_permute2f128_ps::<0x20>(u0, u4),
            _mm256_permute2f128_ps::<0x20>(u1, u5),
            _mm256_permute2f128_ps::<0x20>(u2, u6),
            _mm256_permute2f128_ps::<0x20>(u3, u7),
            _mm256_permute2f128_ps::<0x31>(u0, u4),
            _mm256_permute2f128_ps::<0x31>(u1, u5),
            _mm256_permute2f128_ps::<0x31>(u2, u6),
            _mm256_permute2f128_ps::<0x31>(u3, u7),
        ]
    }
}
