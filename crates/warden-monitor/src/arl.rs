//! Run lengths of a [`Cusum`] on clean data, by simulation, and the threshold that gives a target
//! mean run length between false alarms (the in-control average run length, ARL₀).
//!
//! Scores of real detectors are far from Gaussian (conformal p-values turned into `−ln p` are
//! discrete and heavy-tailed), so the textbook ARL approximations (Siegmund's) do not hold. Instead
//! the clean streams are bootstrapped from held-out clean scores (drawn with replacement, Efron
//! 1979) and the CUSUM is run on them until its first alarm. With the same streams for every
//! candidate threshold (common random numbers), a stream's first alarm time cannot decrease when
//! the threshold grows, so the mean run length is monotone in the threshold and a bisection finds
//! the smallest threshold that meets the target.

use crate::stats::Rng;
use crate::stream::{Cusum, CusumConfig, StreamError};

/// The most streams one simulation runs.
pub const MAX_STREAMS: usize = 100_000;
/// The longest stream one simulation runs (a stream with no alarm by then counts this length).
pub const MAX_STREAM_LEN: u64 = 10_000_000;

/// What [`cusum_threshold_for_arl`] found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ArlCalibration {
    /// The smallest threshold `h` (within the bisection's tolerance) whose simulated mean run
    /// length reaches the target.
    pub threshold: f64,
    /// The simulated mean run length at that threshold.
    pub mean_run_length: f64,
    /// Streams that reached the cap without an alarm (their length counts as the cap, so the mean
    /// is then a lower bound).
    pub censored: usize,
}

/// Runs `cusum` (from its reset state) on `streams` bootstrap streams drawn with replacement from
/// `pool`, each until the first alarm or `cap` observations, and returns each stream's run
/// length: the number of observations up to and including the alarm, or `cap` without one.
pub fn cusum_run_lengths(
    cusum: &Cusum,
    pool: &[f64],
    streams: usize,
    cap: u64,
    seed: u64,
) -> Result<Vec<u64>, StreamError> {
    check_sim(pool, streams, cap)?;
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(streams);
    for _ in 0..streams {
        let mut c = cusum.clone();
        c.reset();
        let mut len = cap;
        for t in 0..cap {
            let x = pool[rng.below(pool.len() as u64) as usize];
            if c.update(x)?.is_some() {
                len = t + 1;
                break;
            }
        }
        out.push(len);
    }
    Ok(out)
}

/// Fits a [`Cusum`] with allowance `drift` on `reference` scores and finds, by bisection, the
/// smallest threshold whose mean run length on `streams` clean streams bootstrapped from
/// `reference` (capped at `cap`) is at least `target_arl`. Errors if even the cap cannot reach the
/// target (`target_arl` must be below `cap`) or on bad data.
pub fn cusum_threshold_for_arl(
    reference: &[f64],
    drift: f64,
    target_arl: f64,
    streams: usize,
    cap: u64,
    seed: u64,
) -> Result<ArlCalibration, StreamError> {
    check_sim(reference, streams, cap)?;
    if !(target_arl.is_finite() && target_arl >= 1.0 && target_arl < cap as f64) {
        return Err(StreamError::InvalidConfig {
            what: "target run length",
            value: target_arl,
            expected: "a number of at least 1 and below the stream cap",
        });
    }
    let run = |h: f64| -> Result<(f64, usize), StreamError> {
        let c = Cusum::fit(
            reference,
            CusumConfig {
                drift,
                threshold: h,
            },
        )?;
        let lens = cusum_run_lengths(&c, reference, streams, cap, seed)?;
        let censored = lens.iter().filter(|&&l| l == cap).count();
        Ok((
            lens.iter().map(|&l| l as f64).sum::<f64>() / lens.len() as f64,
            censored,
        ))
    };
    // Grow an upper bracket, then bisect.
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    let mut at_hi = run(hi)?;
    while at_hi.0 < target_arl {
        lo = hi;
        hi *= 2.0;
        if hi > 1e6 {
            return Err(StreamError::InvalidConfig {
                what: "target run length",
                value: target_arl,
                expected: "a run length the reference scores can reach",
            });
        }
        at_hi = run(hi)?;
    }
    for _ in 0..40 {
        if hi - lo <= 1e-3 * hi.max(1.0) {
            break;
        }
        let mid = 0.5 * (lo + hi);
        let at_mid = run(mid)?;
        if at_mid.0 >= target_arl {
            hi = mid;
            at_hi = at_mid;
        } else {
            lo = mid;
        }
    }
    Ok(ArlCalibration {
        threshold: hi,
        mean_run_length: at_hi.0,
        censored: at_hi.1,
    })
}

fn check_sim(pool: &[f64], streams: usize, cap: u64) -> Result<(), StreamError> {
    if pool.is_empty() {
        return Err(StreamError::TooSmall {
            what: "score pool",
            got: 0,
            min: 1,
            unit: "scores",
        });
    }
    if let Some((position, &value)) = pool.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(StreamError::NonFinite { position, value });
    }
    if streams == 0 || streams > MAX_STREAMS {
        return Err(StreamError::InvalidConfig {
            what: "streams",
            value: streams as f64,
            expected: "1 to 100,000 streams",
        });
    }
    if cap == 0 || cap > MAX_STREAM_LEN {
        return Err(StreamError::InvalidConfig {
            what: "stream cap",
            value: cap as f64,
            expected: "1 to 10,000,000 observations",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn gaussian_pool(n: usize) -> Vec<f64> {
        // Box–Muller from the crate's generator: a fixed N(0, 1) sample.
        let mut rng = Rng::new(3);
        (0..n)
            .map(|_| {
                let (u, v) = (rng.next_f64().max(1e-300), rng.next_f64());
                (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
            })
            .collect()
    }

    #[test]
    fn gaussian_arl_matches_the_textbook_value() {
        // Standard normal scores, k = 0.5, h = 5: the in-control ARL is about 930 (Siegmund's
        // approximation; Montgomery, "Introduction to statistical quality control", table 9.3,
        // gives 930 for h = 5 with the usual 1.166 adjustment: 938).
        let pool = gaussian_pool(20_000);
        let c = Cusum::fit(
            &pool,
            CusumConfig {
                drift: 0.5,
                threshold: 5.0,
            },
        )
        .unwrap();
        let lens = cusum_run_lengths(&c, &pool, 2000, 100_000, 1).unwrap();
        let mean = lens.iter().map(|&l| l as f64).sum::<f64>() / lens.len() as f64;
        // 2000 roughly geometric run lengths: standard error about 930 / √2000 ≈ 21.
        assert!((mean - 935.0).abs() < 100.0, "{mean}");
    }

    #[test]
    fn bisection_meets_the_target_and_is_near_minimal() {
        let pool = gaussian_pool(5000);
        let cal = cusum_threshold_for_arl(&pool, 0.5, 500.0, 300, 50_000, 9).unwrap();
        assert!(cal.mean_run_length >= 500.0, "{cal:?}");
        // Gaussian k = 0.5: ARL 500 needs h a little above 4 (h = 4 gives about 336, h = 5 about
        // 930), so the threshold lands between them.
        assert!(cal.threshold > 4.0 && cal.threshold < 5.0, "{cal:?}");
        assert_eq!(cal.censored, 0);
    }

    #[test]
    fn bad_input_is_an_error() {
        let c = Cusum::fit(&[0.0, 1.0], CusumConfig::default()).unwrap();
        assert!(cusum_run_lengths(&c, &[], 1, 10, 0).is_err());
        assert!(cusum_run_lengths(&c, &[f64::NAN], 1, 10, 0).is_err());
        assert!(cusum_run_lengths(&c, &[1.0], 0, 10, 0).is_err());
        assert!(cusum_run_lengths(&c, &[1.0], 1, 0, 0).is_err());
        assert!(cusum_threshold_for_arl(&[0.0, 1.0], 0.5, 100.0, 10, 50, 0).is_err());
        assert!(cusum_threshold_for_arl(&[0.0, 1.0], 0.5, f64::NAN, 10, 500, 0).is_err());
        assert!(cusum_threshold_for_arl(&[1.0, 1.0], 0.5, 10.0, 10, 500, 0).is_err());
    }
}
