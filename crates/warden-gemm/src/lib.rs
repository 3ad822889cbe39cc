//! `warden-gemm`: `C = A·B` (or `C += A·B`) in single precision, on strided row/column views, with
//! every index checked before the call.
//!
//! The kernels come from the `gemm` crate (runtime dispatch to AVX-512, AVX2+FMA or SSE), run on the
//! calling thread: Warden parallelises over the batch itself, which on a 2-core machine is faster
//! than splitting each small product, and keeps results independent of scheduling.
//!
//! Each row of `C` is computed the same way whatever the number of rows: a row's result depends on
//! its own row of `A` (and of `C`, when accumulating) and on `B`, bit for bit. The `gemm` crate
//! alone does not promise this: it blocks a long inner dimension by the product's shape and sends
//! small products to other kernels, and either changes the order of a sum. [`sgemm`] gives it the
//! inner dimension in fixed chunks, and computes products of a few rows ([`by_rows`]) one row at a
//! time in the kernel's order of summation (`rows.rs`; where the processor lacks FMA, by padding
//! them with zero rows). Warden's passes are then batch-invariant, which is what lets an attack
//! give the same points for any thread count while it shards its batch and drops the examples it
//! has broken.
//!
//! This crate is the workspace's only `unsafe`, in three places: the call to the kernel, after the
//! checks in `check` prove that every element the kernel can touch lies inside its slice and that
//! `C`'s elements are distinct (so a write never lands on another output or on an input: `C` is a
//! `&mut` borrow); the call to the row kernel's `target_feature` function, after the processor's
//! features are checked; and that kernel's vector load from a `&[f32; 8]`.

mod rows;

/// A matrix of `rows × cols` at `data[r * row_stride + c * col_stride]`.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl Shape {
    /// Row-major, densely packed.
    pub fn row_major(rows: usize, cols: usize) -> Shape {
        Shape {
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transpose of a densely packed row-major `rows × cols` matrix, seen as `cols × rows`.
    pub fn transposed(rows: usize, cols: usize) -> Shape {
        Shape {
            rows: cols,
            cols: rows,
            row_stride: 1,
            col_stride: cols,
        }
    }

    /// One past the largest index the matrix touches (0 when empty), or None on overflow.
    fn extent(&self) -> Option<usize> {
        if self.rows == 0 || self.cols == 0 {
            return Some(0);
        }
        let last = (self.rows - 1)
            .checked_mul(self.row_stride)?
            .checked_add((self.cols - 1).checked_mul(self.col_stride)?)?;
        last.checked_add(1)
    }

    /// Whether distinct (row, col) pairs map to distinct indices, for an output matrix. Sufficient
    /// condition: one stride steps over a whole extent of the other.
    fn injective(&self) -> bool {
        if self.rows <= 1 || self.cols <= 1 {
            return (self.rows <= 1 || self.row_stride > 0)
                && (self.cols <= 1 || self.col_stride > 0);
        }
        let col_span = (self.cols - 1).saturating_mul(self.col_stride);
        let row_span = (self.rows - 1).saturating_mul(self.row_stride);
        (self.col_stride > 0 && self.row_stride > col_span)
            || (self.row_stride > 0 && self.col_stride > row_span)
    }
}

/// Why a product was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GemmError {
    /// The inner dimensions or the output's shape do not agree.
    Dimensions,
    /// A matrix reaches past its slice.
    OutOfBounds,
    /// The output's strides map two elements to one place.
    Aliased,
}

impl std::fmt::Display for GemmError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            GemmError::Dimensions => "matrix dimensions do not agree",
            GemmError::OutOfBounds => "matrix view reaches past its slice",
            GemmError::Aliased => "output strides alias",
        })
    }
}

impl std::error::Error for GemmError {}

fn check(
    a: &Shape,
    a_len: usize,
    b: &Shape,
    b_len: usize,
    c: &Shape,
    c_len: usize,
) -> Result<(), GemmError> {
    if a.cols != b.rows || c.rows != a.rows || c.cols != b.cols {
        return Err(GemmError::Dimensions);
    }
    for (s, len) in [(a, a_len), (b, b_len), (c, c_len)] {
        match s.extent() {
            Some(e) if e <= len => {}
            _ => return Err(GemmError::OutOfBounds),
        }
    }
    if !c.injective() {
        return Err(GemmError::Aliased);
    }
    // gemm takes isize strides.
    for s in [a, b, c] {
        if isize::try_from(s.row_stride).is_err() || isize::try_from(s.col_stride).is_err() {
            return Err(GemmError::OutOfBounds);
        }
    }
    Ok(())
}

/// `C = A·B` when `accumulate` is false, `C = C + A·B` when it is true.
pub fn sgemm(
    a: &[f32],
    a_shape: Shape,
    b: &[f32],
    b_shape: Shape,
    c: &mut [f32],
    c_shape: Shape,
    accumulate: bool,
) -> Result<(), GemmError> {
    check(&a_shape, a.len(), &b_shape, b.len(), &c_shape, c.len())?;
    let (m, n, k) = (c_shape.rows, c_shape.cols, a_shape.cols);
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                for col in 0..n {
                    c[r * c_shape.row_stride + col * c_shape.col_stride] = 0.0;
                }
            }
        }
        return Ok(());
    }
    if by_rows(m, n) {
        if rows::applies(&b_shape, n, k) {
            rows::product(a, a_shape, b, b_shape, c, c_shape, accumulate);
        } else {
            padded(a, a_shape, b, b_shape, c, c_shape, accumulate);
        }
    } else {
        chunked(a, a_shape, b, b_shape, c, c_shape, accumulate);
    }
    Ok(())
}

/// `y = x·B` for a single row `x` (`1 × k`; `y` is `1 × n`): a matrix–vector product for callers
/// that only ever have one row, such as a detector scoring one request against fixed references.
///
/// It takes the `gemm` crate's own one-row kernels (dot products with horizontal sums, or a
/// matrix–vector kernel), which read `B` once without packing it and are the fastest on both of
/// `B`'s layouts, but sum in another order than [`sgemm`]: the same row through [`sgemm`] can
/// differ in its last bits. Use [`sgemm`] wherever a row's result must not depend on how many rows
/// it was computed with.
pub fn sgemv(x: &[f32], b: &[f32], b_shape: Shape, y: &mut [f32]) -> Result<(), GemmError> {
    let a_shape = Shape::row_major(1, b_shape.rows);
    let c_shape = Shape::row_major(1, b_shape.cols);
    check(&a_shape, x.len(), &b_shape, b.len(), &c_shape, y.len())?;
    if b_shape.cols == 0 {
        return Ok(());
    }
    if b_shape.rows == 0 {
        y[..b_shape.cols].fill(0.0);
        return Ok(());
    }
    call(x, a_shape, b, b_shape, y, c_shape, false);
    Ok(())
}

/// Whether [`sgemm`] computes a product of `m` rows and `n` columns one row at a time (or by
/// padding it with zero rows where the processor lacks FMA): reading `B` along its rows
/// (`col_stride` 1) is then more than twice as fast as down its columns.
pub fn by_rows(m: usize, n: usize) -> bool {
    m < 2 || m.saturating_mul(n) <= SMALL
}

/// The most inner-dimension terms given to the kernel in one call. The `gemm` crate splits a
/// longer inner dimension into blocks whose length depends on the product's shape, and with it the
/// order of each element's sum; every block it makes from one of these chunks is the whole chunk.
const KC: usize = 512;

/// Products with at most this many output elements (or one row) take other kernels in `gemm`
/// (dot products with a horizontal sum, or a matrix-vector product), which sum in another order.
const SMALL: usize = 256;

/// `C (+)= A·B` in inner-dimension chunks of [`KC`], each added to the last, so that every
/// element of `C` is summed in the same order whatever the number of rows: a row's result
/// depends on that row alone. Views must have passed [`check`].
fn chunked(
    a: &[f32],
    a_shape: Shape,
    b: &[f32],
    b_shape: Shape,
    c: &mut [f32],
    c_shape: Shape,
    accumulate: bool,
) {
    let k = a_shape.cols;
    let mut k0 = 0;
    while k0 < k {
        let kb = KC.min(k - k0);
        // Column k0 of A and row k0 of B are inside their slices (`check`), so these offsets
        // are too, and the views shrink from there.
        let sa = Shape {
            cols: kb,
            ..a_shape
        };
        let sb = Shape {
            rows: kb,
            ..b_shape
        };
        call(
            &a[k0 * a_shape.col_stride..],
            sa,
            &b[k0 * b_shape.row_stride..],
            sb,
            c,
            c_shape,
            accumulate || k0 > 0,
        );
        k0 += kb;
    }
}

/// A product too small for [`chunked`]'s guarantee, computed with zero rows added so that it is
/// not: the extra rows change none of the others.
fn padded(
    a: &[f32],
    a_shape: Shape,
    b: &[f32],
    b_shape: Shape,
    c: &mut [f32],
    c_shape: Shape,
    accumulate: bool,
) {
    let (m, n, k) = (c_shape.rows, c_shape.cols, a_shape.cols);
    let rows = (SMALL / n + 1).max(2);
    let mut pa = vec![0.0f32; rows * k];
    for (r, row) in pa.chunks_exact_mut(k).take(m).enumerate() {
        for (p, v) in row.iter_mut().enumerate() {
            *v = a[r * a_shape.row_stride + p * a_shape.col_stride];
        }
    }
    let mut pc = vec![0.0f32; rows * n];
    let at = |r: usize, col: usize| r * c_shape.row_stride + col * c_shape.col_stride;
    if accumulate {
        for (r, row) in pc.chunks_exact_mut(n).take(m).enumerate() {
            for (col, v) in row.iter_mut().enumerate() {
                *v = c[at(r, col)];
            }
        }
    }
    chunked(
        &pa,
        Shape::row_major(rows, k),
        b,
        b_shape,
        &mut pc,
        Shape::row_major(rows, n),
        accumulate,
    );
    for (r, row) in pc.chunks_exact(n).take(m).enumerate() {
        for (col, &v) in row.iter().enumerate() {
            c[at(r, col)] = v;
        }
    }
}

#[allow(unsafe_code)]
fn call(
    a: &[f32],
    a_shape: Shape,
    b: &[f32],
    b_shape: Shape,
    c: &mut [f32],
    c_shape: Shape,
    accumulate: bool,
) {
    let st = |x: usize| x as isize; // checked to fit in `check`
    // SAFETY: `check` proved that A, B and C lie inside their slices for every (row, col) the
    // kernel visits (m × k, k × n, m × n), that C's elements are distinct, and that all strides fit
    // in isize. C is borrowed mutably, so it cannot overlap A or B. With `read_dst` false the
    // kernel does not read C; with it true, C's elements are initialised f32s.
    unsafe {
        gemm::gemm(
            c_shape.rows,
            c_shape.cols,
            a_shape.cols,
            c.as_mut_ptr(),
            st(c_shape.col_stride),
            st(c_shape.row_stride),
            accumulate,
            a.as_ptr(),
            st(a_shape.col_stride),
            st(a_shape.row_stride),
            b.as_ptr(),
            st(b_shape.col_stride),
            st(b_shape.row_stride),
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn naive(a: &[f32], sa: Shape, b: &[f32], sb: Shape) -> Vec<f32> {
        let mut c = vec![0.0f32; sa.rows * sb.cols];
        for i in 0..sa.rows {
            for j in 0..sb.cols {
                let mut s = 0.0f64;
                for p in 0..sa.cols {
                    s += a[i * sa.row_stride + p * sa.col_stride] as f64
                        * b[p * sb.row_stride + j * sb.col_stride] as f64;
                }
                c[i * sb.cols + j] = s as f32;
            }
        }
        c
    }

    #[test]
    fn matches_naive_for_all_transpositions() {
        // Large enough for the `gemm` crate's kernel; a few rows (the row kernel, or padding);
        // one row with more than one chunk of inner terms.
        for (m, k, n) in [(37, 29, 19), (3, 29, 19), (1, 1100, 40)] {
            matches_naive(m, k, n);
        }
    }

    fn matches_naive(m: usize, k: usize, n: usize) {
        let a: Vec<f32> = (0..m * k)
            .map(|i| ((i * 7 % 13) as f32 - 6.0) / 5.0)
            .collect();
        let b: Vec<f32> = (0..k * n)
            .map(|i| ((i * 5 % 11) as f32 - 5.0) / 3.0)
            .collect();
        for ta in [false, true] {
            for tb in [false, true] {
                let sa = if ta {
                    Shape::transposed(k, m)
                } else {
                    Shape::row_major(m, k)
                };
                let sb = if tb {
                    Shape::transposed(n, k)
                } else {
                    Shape::row_major(k, n)
                };
                let want = naive(&a, sa, &b, sb);
                let mut c = vec![1.0f32; m * n];
                sgemm(&a, sa, &b, sb, &mut c, Shape::row_major(m, n), false).unwrap();
                for (x, y) in c.iter().zip(&want) {
                    assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()), "{x} vs {y}");
                }
                sgemm(&a, sa, &b, sb, &mut c, Shape::row_major(m, n), true).unwrap();
                for (x, y) in c.iter().zip(&want) {
                    assert!((x - 2.0 * y).abs() <= 2e-4 * (1.0 + y.abs()));
                }
            }
        }
    }

    /// Each row of `C` is bit for bit the same whether its row of `A` is multiplied alone or with
    /// others: shapes that take each of the `gemm` crate's paths (one row, at most 256 outputs,
    /// more than [`KC`] inner terms, few or many rows; the row kernel), `B` in both layouts and as
    /// an overlapping view, with and without accumulation.
    #[test]
    fn a_rows_result_depends_on_that_row_alone() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        };
        let m = 70;
        for (n, k) in [
            (10, 3136),
            (10, 200),
            (64, 700),
            (300, 37),
            (1, 600),
            (7, 1030),
            (128, 1600),
            (37, 517),
            (2, 3),
            (3, 2),
        ] {
            let a: Vec<f32> = (0..m * k).map(|_| next()).collect();
            let b: Vec<f32> = (0..k * n).map(|_| next()).collect();
            let c0: Vec<f32> = (0..m * n).map(|_| next()).collect();
            // Both layouts, and a view whose rows overlap (a sliding window, stride 1 both ways).
            let window = Shape {
                rows: k,
                cols: n,
                row_stride: 1,
                col_stride: 1,
            };
            for sb in [Shape::row_major(k, n), Shape::transposed(n, k), window] {
                for accumulate in [false, true] {
                    let mut whole = c0.clone();
                    let sc = Shape::row_major(m, n);
                    sgemm(
                        &a,
                        Shape::row_major(m, k),
                        &b,
                        sb,
                        &mut whole,
                        sc,
                        accumulate,
                    )
                    .unwrap();
                    for rows in [1, 2, 25, 26, 64, 65] {
                        let mut part = c0.clone();
                        let mut lo = 0;
                        while lo < m {
                            let hi = (lo + rows).min(m);
                            let sa = Shape::row_major(hi - lo, k);
                            let sc = Shape::row_major(hi - lo, n);
                            let (a, c) = (&a[lo * k..hi * k], &mut part[lo * n..hi * n]);
                            sgemm(a, sa, &b, sb, c, sc, accumulate).unwrap();
                            lo = hi;
                        }
                        assert!(
                            part.iter()
                                .zip(&whole)
                                .all(|(p, q)| p.to_bits() == q.to_bits()),
                            "{n} outputs, {k} terms, {rows} rows at a time, {accumulate}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn sgemv_matches_naive_on_both_layouts() {
        for (k, n) in [(1600, 128), (29, 19), (3, 1), (700, 300)] {
            let x: Vec<f32> = (0..k).map(|i| ((i * 7 % 13) as f32 - 6.0) / 5.0).collect();
            let b: Vec<f32> = (0..k * n)
                .map(|i| ((i * 5 % 11) as f32 - 5.0) / 3.0)
                .collect();
            for sb in [Shape::row_major(k, n), Shape::transposed(n, k)] {
                let want = naive(&x, Shape::row_major(1, k), &b, sb);
                let mut y = vec![7.0f32; n];
                sgemv(&x, &b, sb, &mut y).unwrap();
                for (p, q) in y.iter().zip(&want) {
                    assert!((p - q).abs() <= 1e-4 * (1.0 + q.abs()), "{p} vs {q}");
                }
            }
        }
        let mut y = vec![7.0f32; 2];
        sgemv(&[], &[], Shape::row_major(0, 2), &mut y).unwrap();
        assert_eq!(y, vec![0.0; 2]);
        assert_eq!(
            sgemv(&[1.0; 3], &[0.0; 6], Shape::row_major(3, 2), &mut [0.0; 1]),
            Err(GemmError::OutOfBounds)
        );
        assert_eq!(
            sgemv(&[1.0; 2], &[0.0; 6], Shape::row_major(3, 2), &mut [0.0; 2]),
            Err(GemmError::OutOfBounds)
        );
    }

    #[test]
    fn refuses_bad_views() {
        let a = vec![0.0f32; 6];
        let b = vec![0.0f32; 6];
        let mut c = vec![0.0f32; 4];
        let r = |r, c| Shape::row_major(r, c);
        assert_eq!(
            sgemm(&a, r(2, 3), &b, r(2, 3), &mut c, r(2, 2), false),
            Err(GemmError::Dimensions)
        );
        assert_eq!(
            sgemm(&a, r(2, 4), &b, r(4, 2), &mut c, r(2, 2), false),
            Err(GemmError::OutOfBounds)
        );
        assert_eq!(
            sgemm(&a, r(2, 3), &b, r(3, 2), &mut c[..3], r(2, 2), false),
            Err(GemmError::OutOfBounds)
        );
        let alias = Shape {
            rows: 2,
            cols: 2,
            row_stride: 1,
            col_stride: 1,
        };
        assert_eq!(
            sgemm(&a, r(2, 3), &b, r(3, 2), &mut c, alias, false),
            Err(GemmError::Aliased)
        );
        let huge = Shape {
            rows: 2,
            cols: 3,
            row_stride: usize::MAX / 2,
            col_stride: 1,
        };
        assert_eq!(
            sgemm(&a, huge, &b, r(3, 2), &mut c, r(2, 2), false),
            Err(GemmError::OutOfBounds)
        );
        // Empty inner dimension: C = 0.
        let mut c = vec![5.0f32; 4];
        sgemm(&[], r(2, 0), &[], r(0, 2), &mut c, r(2, 2), false).unwrap();
        assert_eq!(c, vec![0.0; 4]);
    }
}
