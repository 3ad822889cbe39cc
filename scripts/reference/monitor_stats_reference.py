#!/usr/bin/env python3
"""NumPy/SciPy reference values for `crates/warden-monitor/tests/stats_reference.rs`.

Prints, as Rust constants ready to paste into the test's `mod reference`:

  * the first outputs of the generator (xoshiro256** seeded by SplitMix64, written here exactly
    as `warden_monitor::stats::Rng`), which the test uses to rebuild the same samples,
  * `scipy.stats.ks_2samp` (two-sided; 'auto', and 'exact' / 'asymp' where named) on samples
    drawn from that generator: equal and unequal sizes, ties, identical samples, shifts, and sizes
    above 10,000 where 'auto' is asymptotic,
  * `scipy.stats.kstwo.sf`, `scipy.special.smirnov` and `scipy.special.kolmogorov` on grids that
    visit every branch of Simard and L'Ecuyer's algorithm,
  * `scipy.stats.chi2.sf` for df 1..200, `scipy.stats.chisquare` and
    `scipy.stats.chi2_contingency(correction=False)` on fixed counts,
  * the unbiased MMD² (NumPy, float64) with a Gaussian kernel for fixed vectors and bandwidths,
    and Alibi Detect's median-heuristic bandwidth (`sigma_median(x, x, dist)`, written out below),
  * `scipy.stats.shapiro` (W and p) for sizes 3 to 5000, and `scipy.special.ndtri`.

Run from the repository root:

    /tmp/torch-venv/bin/python scripts/reference/monitor_stats_reference.py

Samples come from the generator in float64 with `math.log`, `math.sqrt` and `math.cos` (the C
library's, as Rust's `f64` methods on the same machine), so the Rust test rebuilds them bit for bit.
"""

import math

import numpy as np
import scipy
import scipy.special as sp
import scipy.stats as st

MASK = (1 << 64) - 1


class Rng:
    """xoshiro256** seeded with four SplitMix64 outputs, as `warden_monitor::stats::Rng::new`."""

    def __init__(self, seed):
        x = seed & MASK
        s = []
        for _ in range(4):
            x = (x + 0x9E3779B97F4A7C15) & MASK
            z = x
            z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
            s.append(z ^ (z >> 31))
        self.s = s

    @staticmethod
    def _rotl(x, k):
        return ((x << k) | (x >> (64 - k))) & MASK

    def next_u64(self):
        s = self.s
        result = (self._rotl((s[1] * 5) & MASK, 7) * 9) & MASK
        t = (s[1] << 17) & MASK
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = self._rotl(s[3], 45)
        return result

    def next_f64(self):
        return (self.next_u64() >> 11) * (1.0 / (1 << 53))

    def standard_normal(self):
        u1 = 1.0 - self.next_f64()
        u2 = self.next_f64()
        return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


def normals(seed, n, shift=0.0):
    r = Rng(seed)
    return np.array([r.standard_normal() + shift for _ in range(n)])


def rounded_uniforms(seed, n, power):
    """floor(10 u^power) / 10: many ties, within and across samples."""
    r = Rng(seed)
    return np.array([math.floor(10.0 * r.next_f64() ** power) / 10.0 for _ in range(n)])


def f(x):
    """A float as a Rust literal that parses back to the same double."""
    if x == 0.0:
        return "0.0"
    s = repr(float(x))
    if "e" not in s and "." not in s and "inf" not in s:
        s += ".0"
    return s


def main():
    print(f"// scipy {scipy.__version__}, numpy {np.__version__}")

    r = Rng(42)
    outs = [r.next_u64() for _ in range(4)]
    print("pub(crate) const RNG_SEED_42: [u64; 4] = [" + ", ".join(f"{o:#x}" for o in outs) + "];")
    r = Rng(7)
    print(f"pub(crate) const RNG_SEED_7_NORMAL: f64 = {f(r.standard_normal())};")

    # (name, kind, params, method) — the test rebuilds the samples from the same description.
    ks_cases = [
        ("equal_shifted", ("normal", 1, 30, 0.0), ("normal", 2, 30, 0.8), "auto"),
        ("unequal", ("normal", 3, 40, 0.0), ("normal", 4, 25, 0.5), "auto"),
        ("ties", ("rounded", 5, 50, 1.0), ("rounded", 6, 35, 2.0), "auto"),
        ("identical", ("normal", 7, 20, 0.0), ("normal", 7, 20, 0.0), "auto"),
        ("one_vs_three", ("normal", 8, 1, 0.0), ("normal", 9, 3, 0.0), "auto"),
        ("unequal_forced_asymp", ("normal", 3, 40, 0.0), ("normal", 4, 25, 0.5), "asymp"),
        ("large_unequal_exact", ("normal", 10, 3000, 0.0), ("normal", 11, 2000, 0.07), "auto"),
        ("large_equal_exact", ("normal", 12, 5000, 0.0), ("normal", 13, 5000, 0.05), "auto"),
        ("max_exact", ("normal", 14, 10000, 0.0), ("normal", 15, 700, 0.1), "auto"),
        ("asymp_moderate_en", ("normal", 16, 12000, 0.0), ("normal", 17, 300, 0.15), "auto"),
        ("asymp_small_en", ("normal", 18, 10001, 0.0), ("normal", 19, 60, 0.3), "auto"),
        ("asymp_equal", ("normal", 20, 10500, 0.0), ("normal", 21, 10500, 0.04), "auto"),
        ("asymp_far", ("normal", 22, 12000, 0.0), ("normal", 23, 400, 1.0), "auto"),
    ]

    def build(spec):
        kind, seed, n, param = spec
        return normals(seed, n, param) if kind == "normal" else rounded_uniforms(seed, n, param)

    print("pub(crate) struct KsCase { pub(crate) name: &'static str, pub(crate) a: (&'static str, u64, usize, f64),")
    print("    pub(crate) b: (&'static str, u64, usize, f64), pub(crate) method: &'static str,")
    print("    pub(crate) statistic: f64, pub(crate) p_value: f64 }")
    print("pub(crate) const KS_CASES: &[KsCase] = &[")
    for name, a, b, method in ks_cases:
        res = st.ks_2samp(build(a), build(b), method=method)
        print(
            f'    KsCase {{ name: "{name}", a: ("{a[0]}", {a[1]}, {a[2]}, {f(a[3])}), '
            f'b: ("{b[0]}", {b[1]}, {b[2]}, {f(b[3])}), method: "{method}", '
            f"statistic: {f(res.statistic)}, p_value: {f(res.pvalue)} }},"
        )
    print("];")

    # kstwo.sf on a grid that visits every branch.
    rows = []
    for n in [1, 2, 5, 20, 100, 140, 141, 500, 5000, 20000, 150000]:
        ds = {0.7 / n, 0.99 / n, 1.0 - 0.5 / n, 0.5, 0.6, 0.93}
        for v in [0.3, 0.7, 1.0, 2.0, 3.5, 5.0, 10.0, 30.0, 100.0, 300.0]:
            ds.add(math.sqrt(v / n))
        for d in sorted(ds):
            if 0.0 < d < 1.0:
                rows.append((n, d, st.kstwo.sf(d, n)))
    print("/// (n, d, kstwo.sf(d, n))")
    print("pub(crate) const KSTWO_SF: &[(u64, f64, f64)] = &[")
    for n, d, p in rows:
        print(f"    ({n}, {f(d)}, {f(p)}),")
    print("];")

    print("/// (n, d, smirnov(n, d))")
    print("pub(crate) const SMIRNOV_SF: &[(u64, f64, f64)] = &[")
    for n in [1, 3, 10, 50, 200, 1000, 10000]:
        for d in [0.01, 0.05, 0.1, 0.3, 0.5, 0.9]:
            print(f"    ({n}, {f(d)}, {f(sp.smirnov(n, d))}),")
    print("];")

    print("/// (z, kolmogorov(z))")
    print("pub(crate) const KOLMOGOROV_SF: &[(f64, f64)] = &[")
    for z in [0.05, 0.2, 0.5, 0.8, 0.99, 1.0, 1.2, 1.5, 2.0, 3.0, 5.0]:
        print(f"    ({f(z)}, {f(sp.kolmogorov(z))}),")
    print("];")

    print("/// (x, df, chi2.sf(x, df))")
    print("pub(crate) const CHI2_SF: &[(f64, f64, f64)] = &[")
    for df in [1, 2, 3, 5, 10, 30, 50, 100, 150, 200]:
        xs = [m * df for m in [0.01, 0.3, 0.9, 1.0, 1.3, 2.0, 4.0]] + [df + 10 * math.sqrt(2 * df)]
        for x in xs:
            print(f"    ({f(x)}, {f(df)}, {f(st.chi2.sf(x, df))}),")
    print("];")

    obs = np.array([18, 22, 31, 29])
    prop = np.array([0.25, 0.25, 0.3, 0.2])
    gof = st.chisquare(obs, prop * obs.sum())
    print(f"pub(crate) const GOF: (f64, f64) = ({f(gof.statistic)}, {f(gof.pvalue)});")
    for name, a, b in [
        ("HOMOGENEITY", [30, 12, 8, 50], [20, 10, 15, 30]),
        ("HOMOGENEITY_DROPPED", [5, 7], [9, 2]),  # the test adds an all-zero column
    ]:
        res = st.chi2_contingency(np.array([a, b]), correction=False)
        print(f"pub(crate) const {name}: (f64, f64, usize) = ({f(res.statistic)}, {f(res.pvalue)}, {res.dof});")

    # MMD²: x 12 vectors and y 15 vectors of dimension 3.
    x = normals(30, 36).reshape(12, 3)
    y = normals(31, 45, 0.5).reshape(15, 3)

    def mmd2(x, y, sigma):
        def k(a, b):
            d2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
            return np.exp(-d2 / (2 * sigma**2))

        n, m = len(x), len(y)
        kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
        return (
            (kxx.sum() - np.trace(kxx)) / (n * (n - 1))
            + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
            - 2 * kxy.mean()
        )

    def alibi_sigma_median(x, y):
        # Alibi Detect's sigma_median(x, y, dist), in NumPy.
        dist = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
        n = min(x.shape[0], y.shape[0])
        n = n if (x[:n] == y[:n]).all() and x.shape == y.shape else 0
        n_median = n + (np.prod(dist.shape) - n) // 2 - 1
        return (0.5 * np.sort(dist.flatten())[int(n_median)]) ** 0.5

    sigma_med = alibi_sigma_median(x, x)
    print(f"pub(crate) const MMD2_SIGMA_1_3: f64 = {f(mmd2(x, y, 1.3))};")
    print(f"pub(crate) const MMD2_SIGMA_0_4: f64 = {f(mmd2(x, y, 0.4))};")
    print(f"pub(crate) const MEDIAN_SIGMA_X: f64 = {f(sigma_med)};")
    print(f"pub(crate) const MMD2_MEDIAN_SIGMA: f64 = {f(mmd2(x, y, sigma_med))};")
    x13 = normals(32, 39).reshape(13, 3)
    print(f"pub(crate) const MEDIAN_SIGMA_13: f64 = {f(alibi_sigma_median(x13, x13))};")

    # Shapiro–Wilk: normal samples, and exponential ones (-ln u) for small p-values.
    print("/// (kind, seed, n, W, p)")
    print("pub(crate) const SHAPIRO: &[(&str, u64, usize, f64, f64)] = &[")
    for kind, seed, n in [
        ("normal", 40, 3), ("normal", 41, 4), ("normal", 42, 5), ("normal", 43, 6),
        ("normal", 44, 7), ("normal", 45, 11), ("normal", 46, 12), ("normal", 47, 20),
        ("normal", 48, 50), ("normal", 49, 200), ("normal", 50, 1000), ("normal", 51, 5000),
        ("exponential", 52, 4), ("exponential", 53, 10), ("exponential", 54, 30),
        ("exponential", 55, 300),
    ]:
        if kind == "normal":
            data = normals(seed, n)
        else:
            r = Rng(seed)
            data = np.array([-math.log(1.0 - r.next_f64()) for _ in range(n)])
        res = st.shapiro(data)
        print(f'    ("{kind}", {seed}, {n}, {f(res.statistic)}, {f(res.pvalue)}),')
    print("];")

    print("/// (p, ndtri(p))")
    print("pub(crate) const NDTRI: &[(f64, f64)] = &[")
    for p in [1e-300, 1e-20, 1e-5, 0.01, 0.02425, 0.1, 0.3, 0.5, 0.7, 0.99, 1 - 1e-10]:
        print(f"    ({f(p)}, {f(sp.ndtri(p))}),")
    print("];")


if __name__ == "__main__":
    main()
