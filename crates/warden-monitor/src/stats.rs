//! Two-sample and goodness-of-fit statistics for the drift detectors of [`crate::stream`]: the
//! two-sample Kolmogorov–Smirnov test with SciPy's exact and asymptotic p-values, the Kolmogorov
//! distributions behind them, the chi-square distribution and chi-square tests of category counts,
//! the unbiased MMD² with a Gaussian kernel and its permutation test, the Shapiro–Wilk normality
//! test (PRADA's statistic), and a small seeded random number generator.
//!
//! Everything here is a pure function of its arguments (the generator is an explicit value). Data
//! arguments are checked: NaN, infinities, empty samples, ragged vectors and bad parameters give a
//! [`StatsError`], never a NaN result or a panic. The distribution functions (`*_sf`) are total
//! mathematical functions instead: they take any number and propagate a NaN argument.
//!
//! Vectors are passed as one flat row-major slice plus their dimension: `n` vectors of dimension
//! `dim` are `n * dim` numbers, vector `i` being `x[i * dim..(i + 1) * dim]`.
//!
//! The reference values in `tests/stats_reference.rs` come from
//! `scripts/reference/monitor_stats_reference.py` (NumPy and SciPy).

use std::f64::consts::{PI, SQRT_2};

use thiserror::Error;

/// What went wrong in a statistic: always a problem with the arguments.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum StatsError {
    /// A sample has fewer values (or vectors) than the statistic needs.
    #[error("{what} has {got} values: expected at least {min}")]
    TooFew {
        what: &'static str,
        got: usize,
        min: usize,
    },
    /// A sample has more values than the statistic supports.
    #[error("{what} has {got} values: expected at most {max}")]
    TooMany {
        what: &'static str,
        got: usize,
        max: usize,
    },
    /// A value is NaN or infinite.
    #[error("{what}[{index}] is {value}: expected a finite number")]
    NonFinite {
        what: &'static str,
        index: usize,
        value: f64,
    },
    /// A vector dimension of 0.
    #[error("the vector dimension is 0: expected at least 1")]
    ZeroDimension,
    /// A flat slice of vectors whose length is not a multiple of the dimension.
    #[error("{what} has {len} numbers, not a multiple of the dimension {dim}")]
    Ragged {
        what: &'static str,
        len: usize,
        dim: usize,
    },
    /// Two slices that must have the same length do not.
    #[error("{what} has {got} entries: expected {expected}")]
    LengthMismatch {
        what: &'static str,
        expected: usize,
        got: usize,
    },
    /// A sample that must be sorted is not.
    #[error("{what} is not sorted ascending at index {index}")]
    NotSorted { what: &'static str, index: usize },
    /// A parameter outside its domain.
    #[error("{what} is {value}: expected {expected}")]
    InvalidParameter {
        what: &'static str,
        value: f64,
        expected: &'static str,
    },
    /// A sample whose values are all equal where the statistic needs a spread.
    #[error("{what} has all its values equal to {value}: expected at least two distinct values")]
    Constant { what: &'static str, value: f64 },
    /// A category with zero expected count, where the chi-square statistic would divide by zero.
    #[error(
        "category {category} has expected proportion 0: expected every proportion above 0\nhint: smooth the reference proportions, or compare counts with chi_square_homogeneity"
    )]
    ZeroExpected { category: usize },
}

// ---------------------------------------------------------------------------------------------
// Two-sample Kolmogorov–Smirnov.
// ---------------------------------------------------------------------------------------------

/// Largest sample size for which [`KsMethod::Auto`] computes the exact p-value: SciPy's `ks_2samp`
/// with `method='auto'` is exact when `max(n1, n2) <= 10_000`, asymptotic above.
pub const KS_EXACT_MAX_N: usize = 10_000;

/// How [`ks_2samp`] computes its p-value, as SciPy's `ks_2samp(method=...)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KsMethod {
    /// Exact when `max(n1, n2) <= KS_EXACT_MAX_N`, asymptotic otherwise (SciPy's `'auto'`).
    #[default]
    Auto,
    /// Exact, unless `lcm(n1, n2)` reaches `i32::MAX`, where SciPy also falls back to asymptotic.
    Exact,
    /// Asymptotic: `kolmogorov_smirnov_sf(round(n1 n2 / (n1 + n2)), D)`, as SciPy.
    Asymptotic,
}

/// The outcome of a two-sided two-sample Kolmogorov–Smirnov test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KsResult {
    /// `D = sup |F1(x) - F2(x)|` over the two empirical distribution functions.
    pub statistic: f64,
    /// `P(D' >= D)` under the null hypothesis that both samples come from one continuous
    /// distribution.
    pub p_value: f64,
    /// Whether the p-value is exact (see [`KsMethod`]).
    pub exact: bool,
}

/// Two-sided two-sample Kolmogorov–Smirnov test, matching SciPy's `scipy.stats.ks_2samp` (SciPy
/// 1.17) for `alternative='two-sided'`.
///
/// Ties, within and across the samples, are handled as SciPy does: both empirical distribution
/// functions are evaluated after every copy of a repeated value. The statistic is computed in exact
/// integer arithmetic (`D * lcm(n1, n2)` is an integer). The exact p-value counts the lattice
/// paths that stay strictly inside the band `|x/m - y/n| < D` (Hodges 1958), with a closed-form
/// alternating sum when `n1 == n2`; the asymptotic one is SciPy's
/// `kstwo.sf(D, round(n1 n2 / (n1 + n2)))`, see [`kolmogorov_smirnov_sf`].
///
/// Sorts copies of the samples; see [`ks_2samp_sorted`] for pre-sorted data without allocation.
pub fn ks_2samp(a: &[f64], b: &[f64], method: KsMethod) -> Result<KsResult, StatsError> {
    check_finite("first sample", a)?;
    check_finite("second sample", b)?;
    check_min_len("first sample", a.len(), 1)?;
    check_min_len("second sample", b.len(), 1)?;
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort_unstable_by(f64::total_cmp);
    b.sort_unstable_by(f64::total_cmp);
    Ok(ks_sorted_unchecked(&a, &b, method))
}

/// [`ks_2samp`] for samples already sorted ascending (checked, in one pass each).
pub fn ks_2samp_sorted(a: &[f64], b: &[f64], method: KsMethod) -> Result<KsResult, StatsError> {
    check_sorted("first sample", a)?;
    check_sorted("second sample", b)?;
    check_min_len("first sample", a.len(), 1)?;
    check_min_len("second sample", b.len(), 1)?;
    Ok(ks_sorted_unchecked(a, b, method))
}

/// Survival function `P(D_n >= d)` of the two-sided one-sample Kolmogorov–Smirnov statistic for
/// a sample of size `n` (SciPy's `scipy.stats.kstwo.sf(d, n)`).
///
/// Follows the decision rules of Simard and L'Ecuyer (2011), "Computing the two-sided
/// Kolmogorov–Smirnov distribution", J. Stat. Softw. 39(11), as SciPy does: the Ruben–Gambino
/// closed forms near `d = 1/n` and `d = 1`, twice the one-sided tail ([`smirnov_sf`]) where the
/// two tails cannot overlap or their overlap is negligible, the Durbin matrix (in the form of
/// Marsaglia, Tsang and Wang 2003) for small `n d²`, and the Pelz–Good (1976) asymptotic series
/// for large `n`. Where SciPy uses Pomeranz's recursion (`n <= 140`, `0.754693 < n d² <= 4`) this
/// uses the Durbin matrix too; both are exact. `n = 0` gives NaN.
pub fn kolmogorov_smirnov_sf(n: u64, d: f64) -> f64 {
    if d.is_nan() || n == 0 {
        return f64::NAN;
    }
    if d >= 1.0 {
        return 0.0;
    }
    if d <= 0.0 {
        return 1.0;
    }
    let nf = n as f64;
    let t = nf * d;
    if t <= 1.0 {
        if t <= 0.5 {
            return 1.0;
        }
        // Ruben and Gambino (1982): P(D_n <= d) = n!/n^n (2t - 1)^n for 1/(2n) <= d <= 1/n.
        let cdf = if n <= 140 {
            (1..=n).fold(1.0, |p, i| p * (i as f64 / nf) * (2.0 * t - 1.0))
        } else {
            (libm::lgamma(nf + 1.0) - nf * nf.ln() + nf * (2.0 * t - 1.0).ln()).exp()
        };
        return clamp_probability(1.0 - cdf);
    }
    if t >= nf - 1.0 {
        return clamp_probability(2.0 * (1.0 - d).powf(nf));
    }
    if d >= 0.5 {
        return clamp_probability(2.0 * smirnov_sf(n, d));
    }
    let nx2 = t * d;
    if n <= 140 {
        if nx2 <= 4.0 {
            return clamp_probability(1.0 - kolmogorov_smirnov_cdf_durbin(n, d));
        }
        return clamp_probability(2.0 * smirnov_sf(n, d));
    }
    if nx2 >= 370.0 {
        return 0.0;
    }
    if nx2 >= 2.2 {
        return clamp_probability(2.0 * smirnov_sf(n, d));
    }
    let cdf = if n <= 100_000 && nf * d.powf(1.5) <= 1.4 {
        kolmogorov_smirnov_cdf_durbin(n, d)
    } else {
        kolmogorov_smirnov_cdf_pelz_good(n, d)
    };
    clamp_probability(1.0 - cdf)
}

/// Survival function `P(D_n^+ >= d)` of the one-sided one-sample Kolmogorov–Smirnov statistic
/// (SciPy's `scipy.special.smirnov(n, d)`), by the Birnbaum–Tingey (1951) sum
/// `d Σ_{j <= n(1-d)} C(n, j) (1 - d - j/n)^(n-j) (d + j/n)^(j-1)`, evaluated in logarithms.
/// `n = 0` gives NaN.
pub fn smirnov_sf(n: u64, d: f64) -> f64 {
    if d.is_nan() || n == 0 {
        return f64::NAN;
    }
    if d <= 0.0 {
        return 1.0;
    }
    if d >= 1.0 {
        return 0.0;
    }
    let nf = n as f64;
    let jmax = ((nf * (1.0 - d)).floor() as u64).min(n - 1);
    let lg_n = libm::lgamma(nf + 1.0);
    let log_term = |j: u64| -> f64 {
        let jf = j as f64;
        let below = (nf - jf) / nf - d;
        if below <= 0.0 {
            return f64::NEG_INFINITY;
        }
        lg_n - libm::lgamma(jf + 1.0) - libm::lgamma(nf - jf + 1.0)
            + (nf - jf) * below.ln()
            + (jf - 1.0) * (d + jf / nf).ln()
    };
    let max = (0..=jmax).map(log_term).fold(f64::NEG_INFINITY, f64::max);
    if max == f64::NEG_INFINITY {
        return 0.0;
    }
    let sum: f64 = (0..=jmax).map(|j| (log_term(j) - max).exp()).sum();
    clamp_probability(d * max.exp() * sum)
}

/// Survival function of the limiting Kolmogorov distribution, `P(K >= z)` where
/// `K = lim sqrt(n) D_n` (SciPy's `scipy.special.kolmogorov(z)` and `scipy.stats.kstwobign.sf`).
///
/// Below `z = 1` it is one minus the theta-function form of the distribution function,
/// `sqrt(2π)/z Σ_k exp(-(2k-1)² π² / (8 z²))`; from `z = 1` on, the alternating series
/// `2 Σ_k (-1)^(k-1) exp(-2 k² z²)`. Both converge in a few terms there.
pub fn kolmogorov_sf(z: f64) -> f64 {
    if z.is_nan() {
        return f64::NAN;
    }
    if z <= 0.0 {
        return 1.0;
    }
    if z < 1.0 {
        return clamp_probability(1.0 - kolmogorov_cdf_theta(z));
    }
    let mut sum = 0.0;
    let mut sign = 1.0;
    for k in 1..=100u32 {
        let kf = f64::from(k);
        let term = (-2.0 * kf * kf * z * z).exp();
        sum += sign * term;
        sign = -sign;
        if term <= 1e-17 * sum {
            break;
        }
    }
    clamp_probability(2.0 * sum)
}

// ---------------------------------------------------------------------------------------------
// Chi-square.
// ---------------------------------------------------------------------------------------------

/// Survival function `P(X >= x)` of the chi-square distribution with `df` degrees of freedom
/// (SciPy's `scipy.stats.chi2.sf(x, df)`): the regularized upper incomplete gamma function
/// `Q(df/2, x/2)`. `df <= 0` or NaN gives NaN; `x <= 0` gives 1.
pub fn chi2_sf(x: f64, df: f64) -> f64 {
    regularized_gamma_q(df / 2.0, x / 2.0)
}

/// The regularized upper incomplete gamma function `Q(a, x) = Γ(a, x) / Γ(a)` for `a > 0`, by the
/// power series of `P = 1 - Q` below `x = a + 1` and Legendre's continued fraction (modified Lentz)
/// above, both run to double precision. `a <= 0` or NaN gives NaN; `x <= 0` gives 1.
pub fn regularized_gamma_q(a: f64, x: f64) -> f64 {
    if a.is_nan() || x.is_nan() || a <= 0.0 || a.is_infinite() {
        return f64::NAN;
    }
    if x <= 0.0 {
        return 1.0;
    }
    if x.is_infinite() {
        return 0.0;
    }
    let log_prefactor = a * x.ln() - x - libm::lgamma(a);
    if x < a + 1.0 {
        // P(a, x) = x^a e^-x / Γ(a + 1) Σ_k x^k / ((a + 1) ... (a + k)).
        let mut term = 1.0 / a;
        let mut sum = term;
        for k in 1..10_000u32 {
            term *= x / (a + f64::from(k));
            sum += term;
            if term.abs() <= sum.abs() * 1e-17 {
                break;
            }
        }
        return clamp_probability(1.0 - sum * log_prefactor.exp());
    }
    // Q(a, x) = x^a e^-x / Γ(a) * 1 / (x + 1 - a - 1 (1 - a) / (x + 3 - a - ...)).
    let tiny = 1e-300;
    let mut b = x + 1.0 - a;
    let mut c = 1.0 / tiny;
    let mut d = 1.0 / b;
    let mut h = d;
    for i in 1..10_000u32 {
        let fi = f64::from(i);
        let an = -fi * (fi - a);
        b += 2.0;
        d = an * d + b;
        if d.abs() < tiny {
            d = tiny;
        }
        c = b + an / c;
        if c.abs() < tiny {
            c = tiny;
        }
        d = 1.0 / d;
        let delta = d * c;
        h *= delta;
        if (delta - 1.0).abs() <= 1e-16 {
            break;
        }
    }
    clamp_probability(log_prefactor.exp() * h)
}

/// The outcome of a chi-square test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChiSquareResult {
    /// Pearson's statistic `Σ (observed - expected)² / expected`.
    pub statistic: f64,
    /// `chi2_sf(statistic, dof)`; 1 when `dof == 0`.
    pub p_value: f64,
    /// Degrees of freedom.
    pub dof: usize,
}

/// Pearson's chi-square goodness-of-fit test of category counts against reference proportions
/// (SciPy's `scipy.stats.chisquare(observed, proportions * observed.sum())`), with `k - 1` degrees
/// of freedom.
///
/// The proportions must be finite, positive and sum to 1 within `1e-6` (they are then divided by
/// their sum); a zero proportion is an error because its expected count would be zero.
pub fn chi_square_goodness_of_fit(
    observed: &[u64],
    proportions: &[f64],
) -> Result<ChiSquareResult, StatsError> {
    check_min_len("observed counts", observed.len(), 2)?;
    if proportions.len() != observed.len() {
        return Err(StatsError::LengthMismatch {
            what: "proportions",
            expected: observed.len(),
            got: proportions.len(),
        });
    }
    let total_p = check_proportions(proportions)?;
    let n: u64 = observed.iter().sum();
    if n == 0 {
        return Err(StatsError::TooFew {
            what: "observed counts (their sum)",
            got: 0,
            min: 1,
        });
    }
    let nf = n as f64;
    let statistic = observed
        .iter()
        .zip(proportions)
        .map(|(&o, &p)| {
            let e = nf * p / total_p;
            let diff = o as f64 - e;
            diff * diff / e
        })
        .sum();
    let dof = observed.len() - 1;
    Ok(ChiSquareResult {
        statistic,
        p_value: chi2_sf(statistic, dof as f64),
        dof,
    })
}

/// Pearson's chi-square test of homogeneity of two samples of category counts: the 2×k contingency
/// table with rows `a` and `b`, without Yates' correction (SciPy's
/// `scipy.stats.chi2_contingency([a, b], correction=False)`).
///
/// Categories empty in both samples are dropped first (SciPy refuses such tables); `k'` categories
/// remain and the test has `k' - 1` degrees of freedom. With fewer than two categories left there
/// is nothing to compare: the statistic is 0 and the p-value 1, as SciPy reports for one column.
/// Both samples must hold at least one count.
pub fn chi_square_homogeneity(a: &[u64], b: &[u64]) -> Result<ChiSquareResult, StatsError> {
    check_min_len("first counts", a.len(), 1)?;
    if b.len() != a.len() {
        return Err(StatsError::LengthMismatch {
            what: "second counts",
            expected: a.len(),
            got: b.len(),
        });
    }
    let na: u64 = a.iter().sum();
    let nb: u64 = b.iter().sum();
    if na == 0 {
        return Err(StatsError::TooFew {
            what: "first counts (their sum)",
            got: 0,
            min: 1,
        });
    }
    if nb == 0 {
        return Err(StatsError::TooFew {
            what: "second counts (their sum)",
            got: 0,
            min: 1,
        });
    }
    let (naf, nbf) = (na as f64, nb as f64);
    let total = naf + nbf;
    let mut statistic = 0.0;
    let mut categories = 0usize;
    for (&x, &y) in a.iter().zip(b) {
        let column = (x + y) as f64;
        if column == 0.0 {
            continue;
        }
        categories += 1;
        let ea = naf * column / total;
        let eb = nbf * column / total;
        statistic += (x as f64 - ea).powi(2) / ea + (y as f64 - eb).powi(2) / eb;
    }
    if categories < 2 {
        return Ok(ChiSquareResult {
            statistic: 0.0,
            p_value: 1.0,
            dof: 0,
        });
    }
    let dof = categories - 1;
    Ok(ChiSquareResult {
        statistic,
        p_value: chi2_sf(statistic, dof as f64),
        dof,
    })
}

// ---------------------------------------------------------------------------------------------
// MMD with a Gaussian kernel.
// ---------------------------------------------------------------------------------------------

/// The Gaussian (RBF) kernel `k(x, y) = exp(-||x - y||² / (2 σ²))`, as Alibi Detect's
/// `GaussianRBF` with one bandwidth.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RbfKernel {
    sigma: f64,
    neg_half_inv_var: f64,
}

impl RbfKernel {
    /// The kernel of bandwidth `sigma` (finite and positive).
    pub fn new(sigma: f64) -> Result<RbfKernel, StatsError> {
        if !sigma.is_finite() || sigma <= 0.0 {
            return Err(StatsError::InvalidParameter {
                what: "kernel bandwidth sigma",
                value: sigma,
                expected: "a finite number above 0",
            });
        }
        Ok(RbfKernel {
            sigma,
            neg_half_inv_var: -0.5 / (sigma * sigma),
        })
    }

    /// The bandwidth.
    pub fn sigma(&self) -> f64 {
        self.sigma
    }

    /// `k(a, b)`; `a` and `b` must have the same length (only the shorter prefix is used).
    #[inline]
    pub fn eval(&self, a: &[f64], b: &[f64]) -> f64 {
        self.of_squared_distance(squared_distance(a, b))
    }

    /// `k` for two vectors at squared distance `d2`.
    #[inline]
    pub fn of_squared_distance(&self, d2: f64) -> f64 {
        (d2 * self.neg_half_inv_var).exp()
    }
}

/// Most vectors [`median_heuristic_sigma`] looks at: the first `MEDIAN_HEURISTIC_MAX_VECTORS`
/// (about 2 million pairs), which keeps its memory near 16 MB.
pub const MEDIAN_HEURISTIC_MAX_VECTORS: usize = 2_000;

/// The median heuristic bandwidth of a sample (Gretton et al. 2012): `σ = sqrt(M / 2)` where `M`
/// is the lower median (element `(P - 1) / 2`, counted from 0, of the `P = n(n-1)/2` sorted
/// values) of the squared distances between distinct vectors `i < j` of `x`.
///
/// This is what Alibi Detect's `sigma_median(x, x, dist)` returns for a reference set compared
/// with itself (it skips the `n` zero diagonal entries and takes index
/// `n + (n² - n) // 2 - 1` of the `n²` sorted squared distances, each off-diagonal pair being
/// there twice). With `σ² = M / 2` the kernel is `exp(-||x - y||² / M)`. Only the first
/// [`MEDIAN_HEURISTIC_MAX_VECTORS`] vectors are used. An error if fewer than 2 vectors, or if the
/// median squared distance is 0 (more than half of the pairs are duplicates).
pub fn median_heuristic_sigma(x: &[f64], dim: usize) -> Result<f64, StatsError> {
    let n = check_vectors("sample", x, dim)?;
    check_min_len("sample (vectors)", n, 2)?;
    let n = n.min(MEDIAN_HEURISTIC_MAX_VECTORS);
    let mut d2 = Vec::with_capacity(n * (n - 1) / 2);
    for i in 0..n {
        let xi = &x[i * dim..(i + 1) * dim];
        for j in i + 1..n {
            d2.push(squared_distance(xi, &x[j * dim..(j + 1) * dim]));
        }
    }
    let mid = (d2.len() - 1) / 2;
    let (_, median, _) = d2.select_nth_unstable_by(mid, f64::total_cmp);
    let median = *median;
    if median <= 0.0 {
        return Err(StatsError::Constant {
            what: "sample (pairwise squared distances)",
            value: 0.0,
        });
    }
    Ok((median / 2.0).sqrt())
}

/// The unbiased estimator of the squared maximum mean discrepancy between the samples `x` (`n`
/// vectors) and `y` (`m` vectors), each with at least 2 vectors (Gretton et al. 2012, eq. 3):
/// `Σ_{i≠j} k(x_i, x_j) / (n(n-1)) + Σ_{i≠j} k(y_i, y_j) / (m(m-1)) - 2 Σ_{i,j} k(x_i, y_j) / (nm)`.
/// It can be slightly negative when the distributions agree.
pub fn mmd2_unbiased(
    x: &[f64],
    y: &[f64],
    dim: usize,
    kernel: RbfKernel,
) -> Result<f64, StatsError> {
    let n = check_vectors("first sample", x, dim)?;
    let m = check_vectors("second sample", y, dim)?;
    check_min_len("first sample (vectors)", n, 2)?;
    check_min_len("second sample (vectors)", m, 2)?;
    let within = |s: &[f64], count: usize| -> f64 {
        let mut sum = 0.0;
        for i in 0..count {
            let si = &s[i * dim..(i + 1) * dim];
            for j in i + 1..count {
                sum += kernel.eval(si, &s[j * dim..(j + 1) * dim]);
            }
        }
        2.0 * sum
    };
    let mut cross = 0.0;
    for xi in x.chunks_exact(dim) {
        for yj in y.chunks_exact(dim) {
            cross += kernel.eval(xi, yj);
        }
    }
    let (nf, mf) = (n as f64, m as f64);
    Ok(
        within(x, n) / (nf * (nf - 1.0)) + within(y, m) / (mf * (mf - 1.0))
            - 2.0 * cross / (nf * mf),
    )
}

/// The outcome of [`mmd2_permutation_test`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MmdTest {
    /// The unbiased MMD² of the two samples as given.
    pub mmd2: f64,
    /// `(1 + #{b : MMD²_b >= MMD²}) / (1 + B)` over `B` random relabellings of the pooled sample
    /// (Phipson and Smyth 2010: never 0, valid at every level). Alibi Detect reports the fraction
    /// without the `+ 1`s.
    pub p_value: f64,
}

/// Most vectors (both samples together) [`mmd2_permutation_test`] accepts: it holds the pooled
/// kernel matrix, `8 N²` bytes (128 MB at this bound).
pub const MMD_PERMUTATION_MAX_VECTORS: usize = 4_096;

/// Permutation test of equal distributions with the unbiased MMD² as statistic: the pooled kernel
/// matrix is computed once, then each of the `permutations` relabellings (Fisher–Yates shuffles
/// from [`Rng::new`]`(seed)`) costs `n² + m²` look-ups.
pub fn mmd2_permutation_test(
    x: &[f64],
    y: &[f64],
    dim: usize,
    kernel: RbfKernel,
    permutations: usize,
    seed: u64,
) -> Result<MmdTest, StatsError> {
    let n = check_vectors("first sample", x, dim)?;
    let m = check_vectors("second sample", y, dim)?;
    check_min_len("first sample (vectors)", n, 2)?;
    check_min_len("second sample (vectors)", m, 2)?;
    check_min_len("permutations", permutations, 1)?;
    let total = n + m;
    if total > MMD_PERMUTATION_MAX_VECTORS {
        return Err(StatsError::TooMany {
            what: "pooled samples (vectors)",
            got: total,
            max: MMD_PERMUTATION_MAX_VECTORS,
        });
    }
    let row = |i: usize| {
        if i < n {
            &x[i * dim..(i + 1) * dim]
        } else {
            &y[(i - n) * dim..(i - n + 1) * dim]
        }
    };
    let mut k = vec![0.0; total * total];
    let mut all_pairs = 0.0;
    for i in 0..total {
        for j in i + 1..total {
            let v = kernel.eval(row(i), row(j));
            k[i * total + j] = v;
            k[j * total + i] = v;
            all_pairs += v;
        }
    }
    // Sums over unordered pairs i < j: all = xx + yy + xy.
    let pair_sum = |idx: &[usize]| -> f64 {
        let mut s = 0.0;
        for (a, &i) in idx.iter().enumerate() {
            let base = i * total;
            s += idx[a + 1..].iter().map(|&j| k[base + j]).sum::<f64>();
        }
        s
    };
    let (nf, mf) = (n as f64, m as f64);
    let statistic = |xx: f64, yy: f64| -> f64 {
        let xy = all_pairs - xx - yy;
        2.0 * xx / (nf * (nf - 1.0)) + 2.0 * yy / (mf * (mf - 1.0)) - 2.0 * xy / (nf * mf)
    };
    let mut idx: Vec<usize> = (0..total).collect();
    let observed = statistic(pair_sum(&idx[..n]), pair_sum(&idx[n..]));
    let mut rng = Rng::new(seed);
    let mut at_least = 0usize;
    for _ in 0..permutations {
        rng.shuffle(&mut idx);
        if statistic(pair_sum(&idx[..n]), pair_sum(&idx[n..])) >= observed {
            at_least += 1;
        }
    }
    Ok(MmdTest {
        mmd2: observed,
        p_value: (1 + at_least) as f64 / (1 + permutations) as f64,
    })
}

// ---------------------------------------------------------------------------------------------
// Shapiro–Wilk.
// ---------------------------------------------------------------------------------------------

/// Largest sample [`ShapiroWilk`] accepts: Royston's approximation is validated up to 5,000 (SciPy
/// warns above it).
pub const SHAPIRO_WILK_MAX_N: usize = 5_000;

/// The outcome of a Shapiro–Wilk test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShapiroResult {
    /// The statistic `W` in `(0, 1]`; small values mean "not normal".
    pub w: f64,
    /// The p-value of Royston's normalizing transformation.
    pub p_value: f64,
}

/// The Shapiro–Wilk test for one sample size, with its coefficients computed once: Royston (1992),
/// "Approximating the Shapiro–Wilk W-test for non-normality", Statistics and Computing 2, and his
/// algorithm AS R94 (1995), as SciPy's `scipy.stats.shapiro`.
///
/// The coefficients are `a_i = m_i / sqrt(φ)` with `m_i = Φ⁻¹((i - 3/8) / (n + 1/4))`, the outer
/// one (two for `n > 5`) replaced by Royston's polynomials in `1/sqrt(n)`. The p-value uses
/// Royston's normal approximation of `log(1 - W)` (with the extra `-log(γ - log(1 - W))`
/// transformation for `n <= 11`), and the exact law for `n = 3`.
#[derive(Debug, Clone)]
pub struct ShapiroWilk {
    n: usize,
    /// `a[i]` multiplies `x_(n-1-i) - x_(i)` in the numerator, for `i < n / 2`.
    a: Vec<f64>,
}

impl ShapiroWilk {
    /// The test for samples of `n` values, `3 <= n <= SHAPIRO_WILK_MAX_N`.
    pub fn new(n: usize) -> Result<ShapiroWilk, StatsError> {
        check_min_len("Shapiro-Wilk sample", n, 3)?;
        if n > SHAPIRO_WILK_MAX_N {
            return Err(StatsError::TooMany {
                what: "Shapiro-Wilk sample",
                got: n,
                max: SHAPIRO_WILK_MAX_N,
            });
        }
        if n == 3 {
            return Ok(ShapiroWilk {
                n,
                a: vec![0.5f64.sqrt()],
            });
        }
        let nf = n as f64;
        let half = n / 2;
        // m[i] = -Φ⁻¹((i + 1 - 3/8) / (n + 1/4)) > 0, the largest first.
        let m: Vec<f64> = (0..half)
            .map(|i| -normal_ppf((i as f64 + 1.0 - 0.375) / (nf + 0.25)))
            .collect();
        let summ2 = 2.0 * m.iter().map(|v| v * v).sum::<f64>();
        let ssumm2 = summ2.sqrt();
        let u = 1.0 / nf.sqrt();
        let poly = |c: &[f64]| c.iter().rev().fold(0.0, |acc, &ci| acc * u + ci);
        let c1 = [0.0, 0.221157, -0.147981, -2.071190, 4.434685, -2.706056];
        let c2 = [0.0, 0.042981, -0.293762, -1.752461, 5.682633, -3.582633];
        let a1 = m[0] / ssumm2 + poly(&c1);
        let mut a = Vec::with_capacity(half);
        a.push(a1);
        if n > 5 {
            let a2 = m[1] / ssumm2 + poly(&c2);
            let fac = ((summ2 - 2.0 * (m[0] * m[0] + m[1] * m[1]))
                / (1.0 - 2.0 * (a1 * a1 + a2 * a2)))
                .sqrt();
            a.push(a2);
            a.extend(m[2..].iter().map(|v| v / fac));
        } else {
            let fac = ((summ2 - 2.0 * m[0] * m[0]) / (1.0 - 2.0 * a1 * a1)).sqrt();
            a.extend(m[1..].iter().map(|v| v / fac));
        }
        Ok(ShapiroWilk { n, a })
    }

    /// The sample size this test is for.
    pub fn n(&self) -> usize {
        self.n
    }

    /// `W` and its p-value for a sample sorted ascending, of exactly `n` finite values with at
    /// least two distinct ones.
    pub fn test_sorted(&self, sorted: &[f64]) -> Result<ShapiroResult, StatsError> {
        if sorted.len() != self.n {
            return Err(StatsError::LengthMismatch {
                what: "Shapiro-Wilk sample",
                expected: self.n,
                got: sorted.len(),
            });
        }
        check_sorted("Shapiro-Wilk sample", sorted)?;
        let n = self.n;
        if sorted[0] == sorted[n - 1] {
            return Err(StatsError::Constant {
                what: "Shapiro-Wilk sample",
                value: sorted[0],
            });
        }
        let mean = sorted.iter().sum::<f64>() / n as f64;
        let ssq: f64 = sorted.iter().map(|v| (v - mean) * (v - mean)).sum();
        let numerator: f64 = self
            .a
            .iter()
            .enumerate()
            .map(|(i, ai)| ai * (sorted[n - 1 - i] - sorted[i]))
            .sum();
        let w = (numerator * numerator / ssq).min(1.0);
        Ok(ShapiroResult {
            w,
            p_value: shapiro_wilk_p_value(n, w),
        })
    }
}

/// The Shapiro–Wilk test of `x` (3 to 5,000 finite values, not all equal), as SciPy's
/// `scipy.stats.shapiro`. Sorts a copy; keep a [`ShapiroWilk`] to test many samples of one size.
pub fn shapiro_wilk(x: &[f64]) -> Result<ShapiroResult, StatsError> {
    check_finite("Shapiro-Wilk sample", x)?;
    let test = ShapiroWilk::new(x.len())?;
    let mut sorted = x.to_vec();
    sorted.sort_unstable_by(f64::total_cmp);
    test.test_sorted(&sorted)
}

/// The standard normal quantile function `Φ⁻¹(p)` (SciPy's `scipy.special.ndtri`): Acklam's
/// rational approximation refined by two Halley steps on `erfc`, to about one unit in the last
/// place. 0 and 1 give the infinities; outside `[0, 1]` or NaN gives NaN.
pub fn normal_ppf(p: f64) -> f64 {
    if p.is_nan() || !(0.0..=1.0).contains(&p) {
        return f64::NAN;
    }
    if p == 0.0 {
        return f64::NEG_INFINITY;
    }
    if p == 1.0 {
        return f64::INFINITY;
    }
    if p > 0.5 {
        // Symmetry keeps the small tail probability exact.
        return -normal_ppf_lower(1.0 - p);
    }
    normal_ppf_lower(p)
}

/// The standard normal survival function `P(Z >= z) = erfc(z / sqrt 2) / 2`.
pub fn normal_sf(z: f64) -> f64 {
    0.5 * libm::erfc(z / SQRT_2)
}

// ---------------------------------------------------------------------------------------------
// Random numbers.
// ---------------------------------------------------------------------------------------------

/// xoshiro256** (Blackman and Vigna 2018, "Scrambled linear pseudorandom number generators"),
/// seeded by four outputs of SplitMix64 (Steele, Lea and Flood 2014). Small, fast and the same on
/// every machine, for permutation tests and bootstrap calibration.
#[derive(Debug, Clone)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// The generator for `seed`.
    pub fn new(seed: u64) -> Rng {
        let mut x = seed;
        Rng {
            s: [
                splitmix64(&mut x),
                splitmix64(&mut x),
                splitmix64(&mut x),
                splitmix64(&mut x),
            ],
        }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// A uniform number in `[0, 1)` from the top 53 bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A uniform number in `[0, 1)` with 24 random bits (every value exactly representable in
    /// f32), from the top bits.
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 * (1.0 / 16_777_216.0)
    }

    /// A uniform integer in `[0, n)` without modulo bias (Lemire 2019); `n` must be above 0.
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        let threshold = n.wrapping_neg() % n;
        loop {
            let product = u128::from(self.next_u64()) * u128::from(n);
            if (product as u64) >= threshold {
                return (product >> 64) as u64;
            }
        }
    }

    /// A standard normal number (Box–Muller, one of the pair).
    pub fn standard_normal(&mut self) -> f64 {
        let u1 = 1.0 - self.next_f64();
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (2.0 * PI * u2).cos()
    }

    /// Shuffles `xs` in place (Fisher–Yates).
    pub fn shuffle<T>(&mut self, xs: &mut [T]) {
        for i in (1..xs.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            xs.swap(i, j);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Private helpers.
// ---------------------------------------------------------------------------------------------

/// The KS test on sorted, finite, non-empty samples.
pub(crate) fn ks_sorted_unchecked(a: &[f64], b: &[f64], method: KsMethod) -> KsResult {
    let plan = KsPlan::new(a.len(), b.len(), method);
    let h = plan.scaled_statistic(a, b);
    KsResult {
        statistic: plan.statistic(h),
        p_value: plan.p_value(h),
        exact: plan.exact,
    }
}

/// The two-sample KS test for fixed sample sizes `n1` and `n2`: the statistic is held as the
/// integer `h = D · lcm(n1, n2)`, and the p-value is a nonincreasing function of `h` alone, which
/// lets a detector that tests the same sizes again and again compare `h` with a critical value
/// found once ([`KsPlan::critical`]) instead of computing a p-value at every test.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KsPlan {
    n1: u64,
    n2: u64,
    g: u64,
    n1g: u64,
    n2g: u64,
    exact: bool,
}

impl KsPlan {
    /// For samples of `n1 >= 1` and `n2 >= 1` values.
    pub(crate) fn new(n1: usize, n2: usize, method: KsMethod) -> KsPlan {
        let (n1, n2) = (n1 as u64, n2 as u64);
        let g = gcd(n1, n2);
        let (n1g, n2g) = (n1 / g, n2 / g);
        let exact = match method {
            KsMethod::Auto => n1.max(n2) as usize <= KS_EXACT_MAX_N,
            KsMethod::Exact => (n1g as f64) < f64::from(i32::MAX) / n2g as f64,
            KsMethod::Asymptotic => false,
        };
        KsPlan {
            n1,
            n2,
            g,
            n1g,
            n2g,
            exact,
        }
    }

    /// `h` of two sorted samples of the planned sizes (`a` of `n1`, `b` of `n2`).
    pub(crate) fn scaled_statistic(&self, a: &[f64], b: &[f64]) -> u128 {
        ks_scaled_statistic(a, b, self.n1g, self.n2g)
    }

    /// The largest possible `h`: `lcm(n1, n2)`, where `D = 1`.
    fn max_scaled(&self) -> u128 {
        u128::from(self.n1g) * u128::from(self.n2)
    }

    /// `D = h / lcm(n1, n2)`.
    pub(crate) fn statistic(&self, h: u128) -> f64 {
        h as f64 / (self.n1g as f64 * self.n2 as f64)
    }

    /// The p-value of `h` (two-sided), by the planned method.
    pub(crate) fn p_value(&self, h: u128) -> f64 {
        let p = if h == 0 {
            1.0
        } else if self.exact {
            if self.n1 == self.n2 {
                ks_prob_outside_square(self.n1, h as u64)
            } else {
                ks_prob_outside_band(self.n1, self.n2, self.g, h)
            }
        } else {
            let (nf1, nf2) = (self.n1 as f64, self.n2 as f64);
            let en = (nf1 * nf2 / (nf1 + nf2)).round_ties_even().max(1.0);
            kolmogorov_smirnov_sf(en as u64, self.statistic(h))
        };
        clamp_probability(p)
    }

    /// The smallest `h` whose p-value is below `level` (`None` when even `D = 1` is not), by
    /// bisection over the integers: about `log2(lcm)` p-values, once.
    pub(crate) fn critical(&self, level: f64) -> Option<u128> {
        let mut hi = self.max_scaled();
        if self.p_value(hi) >= level {
            return None;
        }
        let mut lo = 0u128; // p(0) = 1 >= level
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.p_value(mid) < level {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        Some(hi)
    }
}

/// `D * lcm(n1, n2) = max |c1 n2/g - c2 n1/g|` over the merged sorted values, where `c1`, `c2`
/// count the values `<=` the current one in each sample (so ties move both functions at once).
fn ks_scaled_statistic(a: &[f64], b: &[f64], n1g: u64, n2g: u64) -> u128 {
    let (mut i, mut j) = (0usize, 0usize);
    let mut best = 0u128;
    // Once one sample is used up the difference shrinks monotonically to 0: no later maximum.
    while i < a.len() && j < b.len() {
        let v = if a[i] <= b[j] { a[i] } else { b[j] };
        while i < a.len() && a[i] <= v {
            i += 1;
        }
        while j < b.len() && b[j] <= v {
            j += 1;
        }
        let diff = (i as i128 * i128::from(n2g) - j as i128 * i128::from(n1g)).unsigned_abs();
        best = best.max(diff);
    }
    best
}

/// `P(D_{n,n} >= h/n)` (Hodges 1958, eq. 2.3): `2 Σ_k (-1)^(k-1) C(2n, n - kh) / C(2n, n)`, in the
/// nested form `2 A_0 (1 - A_1 (1 - A_2 (...)))` with `A_k = C(2n, n-(k+1)h) / C(2n, n-kh)`, which
/// has no cancellation between large binomials.
fn ks_prob_outside_square(n: u64, h: u64) -> f64 {
    let (n, h) = (n as i128, h as i128);
    let mut p = 0.0;
    for k in (0..=n / h).rev() {
        let mut ratio = 1.0;
        for j in 0..h {
            let num = n - k * h - j;
            if num <= 0 {
                ratio = 0.0;
                break;
            }
            ratio = num as f64 * ratio / (n + k * h + j + 1) as f64;
        }
        p = ratio * (1.0 - p);
    }
    2.0 * p
}

/// `P(D_{m,n} >= h / lcm)`: one minus the probability that the uniformly random lattice path from
/// `(0, 0)` to `(m, n)` keeps `|x n/g - y m/g| < h` at every point (Hodges 1958). The probability
/// `P(x, y)` of reaching `(x, y)` inside the band, divided by `C(x + y, y)`, obeys
/// `P(x, y) = (x P(x-1, y) + y P(x, y-1)) / (x + y)`, which stays in `[0, 1]`; only the band of
/// each column is visited.
fn ks_prob_outside_band(n1: u64, n2: u64, g: u64, h: u128) -> f64 {
    let (m, n) = if n1 >= n2 { (n1, n2) } else { (n2, n1) };
    let (mg, ng) = (i128::from(m / g), i128::from(n / g));
    let h = h as i128;
    let n_us = n as usize;
    let mut col = vec![0.0f64; n_us + 1];
    // Column x = 0: y mg < h.
    let top = ((h + mg - 1).div_euclid(mg) - 1).min(n as i128);
    for v in col.iter_mut().take(top as usize + 1) {
        *v = 1.0;
    }
    for x in 1..=i128::from(m) {
        let lo = ((x * ng - h).div_euclid(mg) + 1).max(0);
        let hi = ((x * ng + h + mg - 1).div_euclid(mg) - 1).min(n as i128);
        if lo > hi {
            return 1.0;
        }
        let xf = x as f64;
        let mut left = 0.0;
        for (y, v) in col
            .iter_mut()
            .enumerate()
            .take(hi as usize + 1)
            .skip(lo as usize)
        {
            let yf = y as f64;
            left = (xf * *v + yf * left) / (xf + yf);
            *v = left;
        }
    }
    1.0 - col[n_us]
}

/// `P(D_n < d)` by the Durbin matrix, as Marsaglia, Tsang and Wang (2003): with `k = ceil(n d)`,
/// `h = k - n d` and `m = 2k - 1`, it is `n!/n^n (H^n)_{kk}` for the `m × m` matrix `H` with
/// `H_ij = 1/(i - j + 1)!` (0 when `i - j + 1 < 0`) corrected in its first column and last row.
/// Powers are scaled by `2^128` steps, tracked in an exponent.
fn kolmogorov_smirnov_cdf_durbin(n: u64, d: f64) -> f64 {
    let nd = n as f64 * d;
    let k = nd.ceil() as usize;
    let h = k as f64 - nd;
    let m = 2 * k - 1;
    let mut inv_fact = vec![1.0f64; m + 2];
    for i in 1..m + 2 {
        inv_fact[i] = inv_fact[i - 1] / i as f64;
    }
    let mut hm = vec![0.0f64; m * m];
    for i in 0..m {
        for j in 0..=(i + 1).min(m - 1) {
            hm[i * m + j] = inv_fact[i + 1 - j];
        }
    }
    for i in 0..m {
        hm[i * m] -= h.powi(i as i32 + 1) * inv_fact[i + 1];
        hm[(m - 1) * m + i] -= h.powi((m - i) as i32) * inv_fact[m - i];
    }
    if 2.0 * h - 1.0 > 0.0 {
        hm[(m - 1) * m] += (2.0 * h - 1.0).powi(m as i32) * inv_fact[m];
    }
    let (q, mut exponent) = matrix_power_scaled(&hm, m, n);
    let mut s = q[(k - 1) * m + (k - 1)];
    let nf = n as f64;
    let scale = 2f64.powi(128);
    for i in 1..=n {
        s = s * i as f64 / nf;
        if s.abs() < 1.0 / scale {
            s *= scale;
            exponent -= 128;
        }
    }
    libm::scalbn(
        s,
        exponent.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32,
    )
}

/// `A^n` of the `m × m` matrix `a` as `(B, e)` with `A^n = B 2^e`.
fn matrix_power_scaled(a: &[f64], m: usize, mut n: u64) -> (Vec<f64>, i64) {
    let mut result = vec![0.0; m * m];
    for i in 0..m {
        result[i * m + i] = 1.0;
    }
    let mut result_exp = 0i64;
    let mut base = a.to_vec();
    let mut base_exp = 0i64;
    let mut tmp = vec![0.0; m * m];
    loop {
        if n & 1 == 1 {
            matmul(&result, &base, &mut tmp, m);
            std::mem::swap(&mut result, &mut tmp);
            result_exp += base_exp;
            rescale(&mut result, &mut result_exp);
        }
        n >>= 1;
        if n == 0 {
            return (result, result_exp);
        }
        matmul(&base, &base, &mut tmp, m);
        std::mem::swap(&mut base, &mut tmp);
        base_exp *= 2;
        rescale(&mut base, &mut base_exp);
    }
}

fn matmul(a: &[f64], b: &[f64], out: &mut [f64], m: usize) {
    out.fill(0.0);
    for i in 0..m {
        let out_row = &mut out[i * m..(i + 1) * m];
        for (l, &ail) in a[i * m..(i + 1) * m].iter().enumerate() {
            if ail == 0.0 {
                continue;
            }
            for (o, &blj) in out_row.iter_mut().zip(&b[l * m..(l + 1) * m]) {
                *o += ail * blj;
            }
        }
    }
}

fn rescale(a: &mut [f64], exponent: &mut i64) {
    let scale = 2f64.powi(128);
    while a.iter().fold(0.0f64, |acc, v| acc.max(v.abs())) > scale {
        a.iter_mut().for_each(|v| *v /= scale);
        *exponent += 128;
    }
}

/// `P(D_n <= d)` by the Pelz–Good (1976) series `K0(z) + K1(z)/sqrt(n) + K2(z)/n + K3(z)/n^1.5`,
/// `z = d sqrt(n)`, each term written with Jacobi's theta transformation so that it converges for
/// small `z` (terms as in Simard and L'Ecuyer 2011, section 2.2).
fn kolmogorov_smirnov_cdf_pelz_good(n: u64, d: f64) -> f64 {
    let nf = n as f64;
    let z = nf.sqrt() * d;
    let (z2, z3, z4, z6) = (z * z, z * z * z, z.powi(4), z.powi(6));
    let (pi2, pi4, pi6) = (PI * PI, PI.powi(4), PI.powi(6));
    if -pi2 / (8.0 * z2) < -708.0 {
        return 0.0;
    }
    let sqrt_2pi = (2.0 * PI).sqrt();
    let kmax = (16.0 * z / PI).ceil().max(1.0) as u32;
    // Sums over odd m = 2k - 1 of polynomial(m) exp(-m² π² / (8 z²)).
    let mut k0 = 0.0;
    let mut k1 = 0.0;
    let mut k2 = 0.0;
    let mut k3 = 0.0;
    for k in 1..=kmax {
        let mo = f64::from(2 * k - 1);
        let (m2, m4, m6) = (mo * mo, mo.powi(4), mo.powi(6));
        let e = (-m2 * pi2 / (8.0 * z2)).exp();
        k0 += e;
        k1 += (pi2 * m2 / 4.0 - z2) * e;
        k2 += (6.0 * z6
            + 2.0 * z4
            + (2.0 * z4 - 5.0 * z2) * pi2 * m2 / 4.0
            + pi4 * (1.0 - 2.0 * z2) * m4 / 16.0)
            * e;
        k3 += (-30.0 * z6 - 90.0 * z.powi(8)
            + pi2 * (135.0 * z4 - 96.0 * z6) * m2 / 4.0
            + pi4 * (-60.0 * z2 + 212.0 * z4) * m4 / 16.0
            + pi6 * (5.0 - 30.0 * z2) * m6 / 64.0)
            * e;
    }
    k0 *= sqrt_2pi / z;
    k1 *= sqrt_2pi / (6.0 * z4);
    k2 *= sqrt_2pi / (72.0 * z.powi(7));
    k3 *= sqrt_2pi / (6480.0 * z.powi(10));
    // Sums over all k of polynomial(k) exp(-k² π² / (2 z²)).
    let mut k2_extra = 0.0;
    let mut k3_extra = 0.0;
    for k in 1..=kmax {
        let kf = f64::from(k);
        let e = (-kf * kf * pi2 / (2.0 * z2)).exp();
        k2_extra += kf * kf * e;
        k3_extra += (3.0 * z2 - pi2 * kf * kf) * kf * kf * e;
    }
    k2 += k2_extra * pi2 * sqrt_2pi / (-36.0 * z3);
    k3 += k3_extra * pi2 * sqrt_2pi / (216.0 * z6);
    k0 + k1 / nf.sqrt() + k2 / nf + k3 / (nf * nf.sqrt())
}

/// `sqrt(2π)/z Σ_k exp(-(2k-1)² π² / (8 z²))`, the limiting Kolmogorov distribution function.
fn kolmogorov_cdf_theta(z: f64) -> f64 {
    let mut sum = 0.0;
    for k in 1..=100u32 {
        let mo = f64::from(2 * k - 1);
        let term = (-mo * mo * PI * PI / (8.0 * z * z)).exp();
        sum += term;
        if term <= 1e-17 * sum || term == 0.0 {
            break;
        }
    }
    (2.0 * PI).sqrt() / z * sum
}

/// Acklam's approximation for `0 < p <= 0.5`, polished by two Halley steps.
fn normal_ppf_lower(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.38357751867269e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e1,
        1.615858368580409e2,
        -1.556989798598866e2,
        6.680131188771972e1,
        -1.328068155288572e1,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] = [
        7.784695709041462e-3,
        3.224671290700398e-1,
        2.445134137142996,
        3.754408661907416,
    ];
    let mut x = if p < 0.02425 {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    };
    for _ in 0..2 {
        // Halley's method on Φ(x) - p, with Φ(x) = erfc(-x / sqrt 2) / 2 exact in the lower tail.
        let e = 0.5 * libm::erfc(-x / SQRT_2) - p;
        let u = e * (2.0 * PI).sqrt() * (x * x / 2.0).exp();
        x -= u / (1.0 + x * u / 2.0);
    }
    x
}

/// Royston's p-value for `W` at sample size `n >= 3` (AS R94).
fn shapiro_wilk_p_value(n: usize, w: f64) -> f64 {
    let nf = n as f64;
    if n == 3 {
        // Exact: P(W <= w) = 6/π (asin(sqrt(w)) - asin(sqrt(3/4))).
        return (6.0 / PI * (w.sqrt().asin() - (0.75f64).sqrt().asin())).clamp(0.0, 1.0);
    }
    let mut y = (1.0 - w).ln();
    let (mean, sd) = if n <= 11 {
        let gamma = -2.273 + 0.459 * nf;
        if y >= gamma {
            // Beyond the transformation's range; AS R94 reports this tiny value.
            return 1e-99;
        }
        y = -(gamma - y).ln();
        let mean = ((-6.714e-4 * nf + 0.025054) * nf - 0.39978) * nf + 0.544;
        let sd = (((-0.0020322 * nf + 0.062767) * nf - 0.77857) * nf + 1.3822).exp();
        (mean, sd)
    } else {
        let l = nf.ln();
        let mean = ((0.0038915 * l - 0.083751) * l - 0.31082) * l - 1.5861;
        let sd = ((0.0030302 * l - 0.082676) * l - 0.4803).exp();
        (mean, sd)
    };
    normal_sf((y - mean) / sd)
}

fn splitmix64(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[inline(always)]
pub(crate) fn squared_distance(a: &[f64], b: &[f64]) -> f64 {
    // Short vectors (a score, a few coordinates) take the plain left-to-right sum, inlined into
    // the kernel loops; longer ones the lane-parallel sum.
    if a.len().min(b.len()) < DISTANCE_LANES {
        return a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
    }
    squared_distance_lanes(a, b)
}

const DISTANCE_LANES: usize = 8;

/// `squared_distance` in eight independent partial sums, so the compiler keeps several vector
/// additions in flight instead of one dependent chain.
fn squared_distance_lanes(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut lanes = [0.0f64; DISTANCE_LANES];
    let (mut ca, mut cb) = (
        a.chunks_exact(DISTANCE_LANES),
        b.chunks_exact(DISTANCE_LANES),
    );
    for (x, y) in (&mut ca).zip(&mut cb) {
        for ((acc, u), v) in lanes.iter_mut().zip(x).zip(y) {
            *acc += (u - v) * (u - v);
        }
    }
    let tail: f64 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| (x - y) * (x - y))
        .sum();
    lanes.iter().sum::<f64>() + tail
}

fn clamp_probability(p: f64) -> f64 {
    p.clamp(0.0, 1.0)
}

fn check_finite(what: &'static str, x: &[f64]) -> Result<(), StatsError> {
    match x.iter().position(|v| !v.is_finite()) {
        Some(index) => Err(StatsError::NonFinite {
            what,
            index,
            value: x[index],
        }),
        None => Ok(()),
    }
}

fn check_min_len(what: &'static str, got: usize, min: usize) -> Result<(), StatsError> {
    if got < min {
        return Err(StatsError::TooFew { what, got, min });
    }
    Ok(())
}

fn check_sorted(what: &'static str, x: &[f64]) -> Result<(), StatsError> {
    check_finite(what, x)?;
    match x.windows(2).position(|w| w[1] < w[0]) {
        Some(i) => Err(StatsError::NotSorted { what, index: i + 1 }),
        None => Ok(()),
    }
}

/// Checks a flat slice of vectors and returns how many vectors it holds.
pub(crate) fn check_vectors(
    what: &'static str,
    x: &[f64],
    dim: usize,
) -> Result<usize, StatsError> {
    if dim == 0 {
        return Err(StatsError::ZeroDimension);
    }
    if !x.len().is_multiple_of(dim) {
        return Err(StatsError::Ragged {
            what,
            len: x.len(),
            dim,
        });
    }
    check_finite(what, x)?;
    Ok(x.len() / dim)
}

/// Checks proportions (finite, positive, summing to 1 within 1e-6) and returns their sum.
pub(crate) fn check_proportions(p: &[f64]) -> Result<f64, StatsError> {
    check_finite("proportions", p)?;
    if let Some(i) = p.iter().position(|&v| v < 0.0) {
        return Err(StatsError::InvalidParameter {
            what: "a proportion",
            value: p[i],
            expected: "a number in [0, 1]",
        });
    }
    if let Some(category) = p.iter().position(|&v| v == 0.0) {
        return Err(StatsError::ZeroExpected { category });
    }
    let total: f64 = p.iter().sum();
    if (total - 1.0).abs() > 1e-6 {
        return Err(StatsError::InvalidParameter {
            what: "the sum of the proportions",
            value: total,
            expected: "1 (within 1e-6)",
        });
    }
    Ok(total)
}
