//! The privacy accountant of DP-SGD: Rényi differential privacy (RDP) of the Poisson-subsampled
//! Gaussian mechanism (Mironov, Talwar and Zhang, "Rényi Differential Privacy of the Sampled Gaussian
//! Mechanism", 2019: the integer-order sum and the fractional-order series of their section 3.3),
//! composed over steps, and converted to (epsilon, delta) with the tight conversion of Balle et al.
//! 2020 (Proposition 12; also Canonne, Kamath and Steinke 2020, eq. 20). The same computation as
//! Google's dp-accounting RDP accountant, checked against its values in `tests/accountant.rs`.
//!
//! Numerics are done in log space, with the signs of the binomial coefficients of fractional orders
//! kept (dp-accounting 0.6.0 sums their absolute values, which overstates RDP near order 1 when `q`
//! is small: 4e-4 relative at q = 1e-4, σ = 1, order 1.5; checked against multi-precision
//! integration in `tests/accountant.rs`). A fractional order whose series does not converge in 1,000 terms
//! gets RDP infinity, which removes it from the epsilon minimisation (as dp-accounting does).

/// The orders tried by default: 1.1 to 10.9 in steps of 0.1, 11 to 63, and 128 to 1024.
pub fn default_orders() -> Vec<f64> {
    let mut o: Vec<f64> = (1..100).map(|x| 1.0 + f64::from(x) / 10.0).collect();
    o.extend((11..64).map(f64::from));
    o.extend([128.0, 256.0, 512.0, 1024.0]);
    o
}

const MAX_FRAC_TERMS: usize = 1000;

/// `ln(e^a + e^b)`.
fn log_add(a: f64, b: f64) -> f64 {
    let (lo, hi) = if a < b { (a, b) } else { (b, a) };
    if lo == f64::NEG_INFINITY {
        return hi;
    }
    (lo - hi).exp().ln_1p() + hi
}

/// `ln(erfc(x))`, accurate in the far tail where `erfc` underflows.
fn log_erfc(x: f64) -> f64 {
    let r = libm::erfc(x);
    if r > 0.0 {
        return r.ln();
    }
    // Asymptotic series at infinity: erfc(x) ~ exp(-x² - 1/(2x²) + 5/(8x⁴) - …) / (x √π).
    let x2 = x * x;
    -std::f64::consts::PI.ln() / 2.0 - x.ln() - x2 - 0.5 / x2 + 0.625 / (x2 * x2)
        - 37.0 / 24.0 / (x2 * x2 * x2)
        + 353.0 / 64.0 / (x2 * x2 * x2 * x2)
}

/// `ln |C(alpha, i)|` and the sign of `C(α, i)` for `i = 0, 1, 2, …`, by the ratio
/// `C(α, i) = C(α, i − 1) (α − i + 1) / i`. Near order 1 the RDP is a tiny difference of terms of
/// size one, so the coefficients need full precision: the recurrence keeps them to a few ulps, where
/// differences of `ln Γ` lose digits. For fractional `α` the coefficients alternate in sign once
/// `i > α + 1`, and the series needs those signs.
struct LogBinomials {
    alpha: f64,
    i: f64,
    current: f64,
    negative: bool,
}

impl LogBinomials {
    fn new(alpha: f64) -> Self {
        LogBinomials {
            alpha,
            i: 0.0,
            current: 0.0,
            negative: false,
        }
    }

    /// (`ln |C(α, i)|`, whether `C(α, i) < 0`) for the current `i`, then moves to `i + 1`.
    fn next_value(&mut self) -> (f64, bool) {
        let v = (self.current, self.negative);
        self.i += 1.0;
        let factor = self.alpha - self.i + 1.0;
        self.current += factor.abs().ln() - self.i.ln();
        if factor < 0.0 {
            self.negative = !self.negative;
        }
        v
    }
}

/// A sum of signed terms held in log space: `ln(Σ positive)` and `ln(Σ |negative|)`.
#[derive(Clone, Copy)]
struct SignedLogSum {
    pos: f64,
    neg: f64,
}

impl SignedLogSum {
    const ZERO: SignedLogSum = SignedLogSum {
        pos: f64::NEG_INFINITY,
        neg: f64::NEG_INFINITY,
    };

    fn add(&mut self, log_term: f64, negative: bool) {
        if negative {
            self.neg = log_add(self.neg, log_term);
        } else {
            self.pos = log_add(self.pos, log_term);
        }
    }

    /// `ln(Σ positive − Σ |negative|)`; the sum is positive for the series here (it is an
    /// integral of a positive function), and `-∞` is returned if rounding says otherwise.
    fn value(self) -> f64 {
        if self.neg == f64::NEG_INFINITY {
            return self.pos;
        }
        if self.neg >= self.pos {
            return f64::NEG_INFINITY;
        }
        self.pos + (-(self.neg - self.pos).exp()).ln_1p()
    }
}

fn log_a_int(q: f64, sigma: f64, alpha: u64) -> f64 {
    let log1mq = (-q).ln_1p();
    let mut log_a = f64::NEG_INFINITY;
    let a = alpha as f64;
    let mut coefs = LogBinomials::new(a);
    for i in 0..=alpha {
        let i = i as f64;
        // Integer orders have no negative coefficients.
        let s = coefs.next_value().0
            + i * q.ln()
            + (a - i) * log1mq
            + (i * i - i) / (2.0 * sigma * sigma);
        log_a = log_add(log_a, s);
    }
    log_a
}

fn log_a_frac(q: f64, sigma: f64, alpha: f64) -> f64 {
    let (mut a0, mut a1) = (SignedLogSum::ZERO, SignedLogSum::ZERO);
    let z0 = sigma * sigma * (1.0 / q - 1.0).ln() + 0.5;
    let log1mq = (-q).ln_1p();
    let (mut last0, mut last1) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
    let s2 = std::f64::consts::SQRT_2 * sigma;
    let mut coefs = LogBinomials::new(alpha);
    for i in 0..MAX_FRAC_TERMS {
        let i = i as f64;
        let (log_coef, negative) = coefs.next_value();
        let j = alpha - i;
        let log_t0 = log_coef + i * q.ln() + j * log1mq;
        let log_t1 = log_coef + j * q.ln() + i * log1mq;
        let log_e0 = 0.5f64.ln() + log_erfc((i - z0) / s2);
        let log_e1 = 0.5f64.ln() + log_erfc((z0 - j) / s2);
        let log_s0 = log_t0 + (i * i - i) / (2.0 * sigma * sigma) + log_e0;
        let log_s1 = log_t1 + (j * j - j) / (2.0 * sigma * sigma) + log_e1;
        a0.add(log_s0, negative);
        a1.add(log_s1, negative);
        let total = log_add(a0.value(), a1.value());
        if log_s0 < last0 && log_s1 < last1 && log_s0.max(log_s1) < total - 30.0 {
            return total;
        }
        (last0, last1) = (log_s0, log_s1);
    }
    f64::INFINITY
}

/// Why an accountant question cannot be answered.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AccountantError {
    #[error("sampling rate {0} is outside [0, 1]")]
    SamplingRate(f64),
    #[error("noise multiplier {0} must be a finite number at least 0")]
    Noise(f64),
    #[error("order {0} must be at least 1")]
    Order(f64),
    #[error("delta {0} must be in [0, 1)")]
    Delta(f64),
    #[error("epsilon {0} must be a positive number")]
    Epsilon(f64),
    #[error(
        "a privacy-loss grid of spacing {interval} needs {buckets} buckets, more than the accountant holds"
    )]
    Grid { interval: f64, buckets: f64 },
    #[error("no noise multiplier up to {max} reaches epsilon {epsilon} in {steps} steps")]
    Unreachable { epsilon: f64, steps: u64, max: f64 },
}

/// RDP at `order` of one step of the Poisson-subsampled Gaussian mechanism with sampling rate `q`
/// and noise multiplier `sigma` (noise standard deviation over L2 sensitivity).
pub fn rdp(q: f64, sigma: f64, order: f64) -> Result<f64, AccountantError> {
    if !(0.0..=1.0).contains(&q) {
        return Err(AccountantError::SamplingRate(q));
    }
    if !(sigma >= 0.0 && sigma.is_finite()) {
        return Err(AccountantError::Noise(sigma));
    }
    if order.is_nan() || order < 1.0 {
        return Err(AccountantError::Order(order));
    }
    if q == 0.0 {
        return Ok(0.0);
    }
    if order.is_infinite() || sigma == 0.0 {
        return Ok(f64::INFINITY);
    }
    if q == 1.0 {
        return Ok(order / (2.0 * sigma * sigma));
    }
    let log_a = if order.fract() == 0.0 && order < 1e6 {
        log_a_int(q, sigma, order as u64)
    } else {
        log_a_frac(q, sigma, order)
    };
    Ok(log_a / (order - 1.0))
}

/// RDP of `steps` compositions, at each order.
pub fn rdp_curve(
    q: f64,
    sigma: f64,
    steps: u64,
    orders: &[f64],
) -> Result<Vec<f64>, AccountantError> {
    orders
        .iter()
        .map(|&o| rdp(q, sigma, o).map(|r| r * steps as f64))
        .collect()
}

/// The smallest epsilon the RDP curve implies at `delta`, and the order that gives it.
pub fn epsilon(orders: &[f64], rdp: &[f64], delta: f64) -> Result<(f64, f64), AccountantError> {
    if !(0.0..1.0).contains(&delta) {
        return Err(AccountantError::Delta(delta));
    }
    if delta == 0.0 {
        return Ok(if rdp.iter().all(|&r| r == 0.0) {
            (0.0, 0.0)
        } else {
            (f64::INFINITY, 0.0)
        });
    }
    let mut best = (f64::INFINITY, orders.first().copied().unwrap_or(0.0));
    for (&a, &r) in orders.iter().zip(rdp) {
        if a < 1.0 {
            return Err(AccountantError::Order(a));
        }
        let eps = if r < 0.0 || delta * delta + (-r).exp_m1() > 0.0 {
            0.0
        } else if a > 1.01 {
            r + (-1.0 / a).ln_1p() - (delta * a).ln() / (a - 1.0)
        } else {
            f64::INFINITY
        };
        if eps < best.0 {
            best = (eps, a);
        }
    }
    Ok((best.0.max(0.0), best.1))
}

/// Epsilon of DP-SGD with sampling rate `q`, noise multiplier `sigma` and `steps` steps, at `delta`,
/// over the default orders; returns (epsilon, optimal order).
pub fn dp_sgd_epsilon(
    q: f64,
    sigma: f64,
    steps: u64,
    delta: f64,
) -> Result<(f64, f64), AccountantError> {
    let orders = default_orders();
    let curve = rdp_curve(q, sigma, steps, &orders)?;
    epsilon(&orders, &curve, delta)
}

/// The smallest noise multiplier (to 0.1% relative) for which DP-SGD meets `target` epsilon at `delta`.
pub fn dp_sgd_noise(q: f64, steps: u64, delta: f64, target: f64) -> Result<f64, AccountantError> {
    if !(target > 0.0 && target.is_finite()) {
        return Err(AccountantError::Epsilon(target));
    }
    const MAX: f64 = 1000.0;
    let eps = |s: f64| dp_sgd_epsilon(q, s, steps, delta).map(|(e, _)| e);
    if eps(MAX)? > target {
        return Err(AccountantError::Unreachable {
            epsilon: target,
            steps,
            max: MAX,
        });
    }
    let (mut lo, mut hi) = (0.0f64, MAX);
    while hi - lo > 1e-3 * hi.max(1e-3) {
        let mid = (lo + hi) / 2.0;
        if eps(mid)? <= target {
            hi = mid
        } else {
            lo = mid
        }
    }
    Ok(hi)
}

/// Which accountant answers a DP-SGD question.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Method {
    /// Privacy loss distributions ([`crate::pld`]): the tightest, the default.
    #[default]
    Pld,
    /// Rényi DP with the tight conversion (this module).
    Rdp,
}

impl Method {
    /// The short name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Method::Pld => "pld",
            Method::Rdp => "rdp",
        }
    }

    /// One line saying what the accountant computes, for reports.
    pub fn describe(self) -> &'static str {
        match self {
            Method::Pld => {
                "PLD of the Poisson-subsampled Gaussian mechanism (add or remove one), connect-the-dots discretisation at interval 1e-4, FFT composition"
            }
            Method::Rdp => {
                "RDP of the Poisson-subsampled Gaussian mechanism, tight conversion to (epsilon, delta)"
            }
        }
    }

    /// Epsilon of DP-SGD at `delta`.
    pub fn epsilon(
        self,
        q: f64,
        sigma: f64,
        steps: u64,
        delta: f64,
    ) -> Result<f64, AccountantError> {
        match self {
            Method::Pld => {
                // No noise is no privacy (the PLD has no grid for it); RDP says the same.
                if sigma == 0.0 && q > 0.0 && q <= 1.0 {
                    return Ok(f64::INFINITY);
                }
                crate::pld::dp_sgd_epsilon(q, sigma, steps, delta, crate::pld::DEFAULT_INTERVAL)
            }
            Method::Rdp => dp_sgd_epsilon(q, sigma, steps, delta).map(|(e, _)| e),
        }
    }

    /// The smallest noise multiplier (to 0.1% relative) that meets `target` epsilon at `delta`.
    pub fn noise(
        self,
        q: f64,
        steps: u64,
        delta: f64,
        target: f64,
    ) -> Result<f64, AccountantError> {
        match self {
            Method::Pld => {
                crate::pld::dp_sgd_noise(q, steps, delta, target, crate::pld::DEFAULT_INTERVAL)
            }
            Method::Rdp => dp_sgd_noise(q, steps, delta, target),
        }
    }
}
