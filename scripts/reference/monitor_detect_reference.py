#!/usr/bin/env python3
"""NumPy/SciPy reference values for `crates/warden-monitor/tests/detect_reference.rs`.

Every input is built from the integer hash `h(i, j, salt)` below, a value in [-1, 1] that is a
multiple of 0.001, rounded once to float32; the Rust test evaluates the same integer expression,
so both sides start from bit-identical float32 data. The script prints Rust constants to paste
into the test's `mod reference`:

  * confidence scores (1 - max softmax, entropy, energy at T = 1 and T = 2.5) of fixed logits,
    computed with 60-digit `decimal` arithmetic and cross-checked here against NumPy/SciPy,
  * class-conditional Mahalanobis scores (tied covariance with 1/N, ridge lambda = r * tr / d on
    the diagonal, minimum over classes) for ridge 1e-6 and 0.1,
  * k-th nearest neighbour distances of L2-normalised vectors for k = 1, 3, 40,
  * PCA (top-2 components, covariance with 1/N) reconstruction MSE and the kept variances,
  * scipy.ndimage.median_filter(mode='reflect') of small images for sizes 2, 3 and 5,
  * bit-depth reduction as in Xu et al.'s code: np.rint(x * (2^b - 1)) / (2^b - 1) in float32,
  * ROC AUC as the Mann-Whitney U with mid-ranks (scipy.stats.rankdata), cross-checked against
    scipy.stats.mannwhitneyu,
  * numpy.histogram counts and edges,
  * conformal p-values and their Bonferroni-min and Fisher (scipy.stats.chi2.sf) combinations.

Run from the repository root:

    /tmp/torch-venv/bin/python scripts/reference/monitor_detect_reference.py
"""

from decimal import Decimal, getcontext

import numpy as np
import scipy.ndimage
import scipy.special
import scipy.stats

getcontext().prec = 60
M64 = (1 << 64) - 1


def h(i, j, salt):
    """The shared integer hash: a float in [-1, 1], a multiple of 0.001."""
    x = (i * 0x9E3779B1 + j * 0x85EBCA77 + salt * 0xC2B2AE3D + 1) & M64
    x ^= x >> 29
    x = (x * 0xBF58476D1CE4E5B9) & M64
    x ^= x >> 32
    return ((x % 2001) - 1000) / 1000.0


def matrix(rows, cols, salt):
    return np.array([[np.float32(h(i, j, salt)) for j in range(cols)] for i in range(rows)],
                    dtype=np.float32)


def fmt(v):
    return repr(float(v))


def print_array(name, values, ty="f64"):
    if ty == "f32":
        # NumPy prints the shortest string that reads back as the same float32.
        flat = [str(np.float32(v)) for v in np.asarray(values, dtype=np.float32).ravel()]
    else:
        flat = [fmt(v) for v in np.asarray(values, dtype=np.float64).ravel()]
    print(f"    pub(crate) const {name}: [{ty}; {len(flat)}] = [{', '.join(flat)}];")


def print_int_array(name, values, ty="u64"):
    flat = [str(int(v)) for v in np.asarray(values).ravel()]
    print(f"    pub(crate) const {name}: [{ty}; {len(flat)}] = [{', '.join(flat)}];")


def close(a, b, rel):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return np.all(np.abs(a - b) <= rel * np.maximum(np.abs(b), 1e-300))


# Confidence scores. The logits are written out in the Rust test too.
LOGITS = [
    [1.0, 2.0, 3.0, 0.5],
    [0.0, 0.0, 0.0, 0.0],
    [100.0, -100.0, 0.0, 50.0],
    [1000.0, 999.0, -1000.0, 998.5],
    [-3.25, 7.5, 7.5, -0.125],
    [30.0, 0.0, 0.0, 0.0],
]


def dec_scores(z, t):
    z = [Decimal(float(np.float32(v))) for v in z]
    t = Decimal(repr(t))
    m = max(z)
    e = [((v - m) / t).exp() for v in z]
    s = sum(e)
    p = [v / s for v in e]
    msp = 1 - max(p)
    ent = -sum(pi * pi.ln() for pi in p if pi > 0)
    energy = -t * ((m / t) + s.ln())
    return msp, ent, energy


msp, ent, en1, en25 = [], [], [], []
for z in LOGITS:
    a, b, c = dec_scores(z, 1.0)
    _, _, d = dec_scores(z, 2.5)
    msp.append(a), ent.append(b), en1.append(c), en25.append(d)
    zz = np.array(z, dtype=np.float32).astype(np.float64)
    p = scipy.special.softmax(zz)
    assert abs(float(a) - (1 - p.max())) < 1e-12
    assert abs(float(b) - scipy.stats.entropy(p)) < 1e-12
    assert close(float(c), -scipy.special.logsumexp(zz), 1e-14)
    assert close(float(d), -2.5 * scipy.special.logsumexp(zz / 2.5), 1e-14)

# Mahalanobis: d = 4, 3 classes, 36 rows, labels i % 3, class c shifted by 1.5 on feature c.
MD, MC, MN, MQ = 4, 3, 36, 6
mx = matrix(MN, MD, 1)
labels = np.arange(MN) % MC
for i in range(MN):
    mx[i, labels[i]] += np.float32(1.5)
mq = matrix(MQ, MD, 2) * np.float32(2.0)


def mahalanobis(x, y, q, ridge):
    x = x.astype(np.float64)
    means = np.stack([x[y == c].mean(axis=0) for c in range(MC)])
    centred = x - means[y]
    cov = centred.T @ centred / len(x)
    cov += ridge * np.trace(cov) / MD * np.eye(MD)
    inv = np.linalg.inv(cov)
    out = []
    for v in q.astype(np.float64):
        out.append(min((v - mu) @ inv @ (v - mu) for mu in means))
    return np.array(out)


maha_small = mahalanobis(mx, labels, mq, 1e-6)
maha_big = mahalanobis(mx, labels, mq, 0.1)

# kNN: d = 8, 40 reference rows, 5 queries.
KD, KN, KQ = 8, 40, 5
kx = matrix(KN, KD, 3).astype(np.float64)
kq = matrix(KQ, KD, 4).astype(np.float64)
kxn = kx / np.linalg.norm(kx, axis=1, keepdims=True)
kqn = kq / np.linalg.norm(kq, axis=1, keepdims=True)
dist = np.sqrt(((kqn[:, None, :] - kxn[None, :, :]) ** 2).sum(axis=2))
sd = np.sort(dist, axis=1)
knn = {k: sd[:, k - 1] for k in (1, 3, 40)}

# PCA: d = 5, 60 rows scaled per feature so the eigenvalues are distinct; top 2.
PD, PN, PQ, PK = 5, 60, 4, 2
scales = np.array([3.0, 2.0, 1.0, 0.5, 0.25], dtype=np.float32)
px = matrix(PN, PD, 5) * scales
pq = matrix(PQ, PD, 6) * np.float32(2.0)
pxd = px.astype(np.float64)
pmean = pxd.mean(axis=0)
pcov = (pxd - pmean).T @ (pxd - pmean) / PN
w, v = np.linalg.eigh(pcov)
order = np.argsort(w)[::-1]
top = v[:, order[:PK]]
pres = []
for row in pq.astype(np.float64):
    c = row - pmean
    r = c - top @ (top.T @ c)
    pres.append(r @ r / PD)
pvar = w[order[:PK]]
assert w[order[PK - 1]] - w[order[PK]] > 0.05, "the kept and dropped eigenvalues must differ"

# Median filters with SciPy's reflect border.
img_a = matrix(5, 6, 7)                      # 1 x 5 x 6
img_b = matrix(2 * 3, 4, 8).reshape(2, 3, 4)  # 2 x 3 x 4, filtered per channel
img_c = matrix(1, 4, 9)                      # 1 x 1 x 4
img_d = matrix(4, 1, 10)                     # 1 x 4 x 1
med = {}
for size in (2, 3):
    med[("a", size)] = scipy.ndimage.median_filter(img_a, size=size, mode="reflect")
    med[("b", size)] = scipy.ndimage.median_filter(img_b, size=(1, size, size), mode="reflect")
for size in (2, 3, 5):
    med[("c", size)] = scipy.ndimage.median_filter(img_c, size=size, mode="reflect")
    med[("d", size)] = scipy.ndimage.median_filter(img_d, size=size, mode="reflect")

# Bit depth: values in [0, 1] (the hash mapped to [0, 1]), plus exact halves between levels.
bits_in = np.concatenate([
    (matrix(1, 16, 11).ravel() + np.float32(1.0)) / np.float32(2.0),
    np.array([0.0, 1.0, 0.5, 1.0 / 6.0, 0.25, 0.75], dtype=np.float32),
]).astype(np.float32)
bits_out = {}
for b in (1, 3, 5, 8):
    npp_int = np.float32(2 ** b - 1)
    bits_out[b] = (np.rint(bits_in * npp_int) / npp_int).astype(np.float32)

# ROC AUC with ties.
AUC_CLEAN = [0.5, 1.0, 1.0, 0.25, 2.0, 0.75, 1.5, 1.0, 0.0, 0.5]
AUC_ANOM = [1.0, 2.0, 2.5, 1.5, 0.75, 3.0, 1.0]
allv = np.array(AUC_CLEAN + AUC_ANOM)
ranks = scipy.stats.rankdata(allv)
na, nc = len(AUC_ANOM), len(AUC_CLEAN)
u = ranks[nc:].sum() - na * (na + 1) / 2
auc = u / (na * nc)
assert abs(scipy.stats.mannwhitneyu(AUC_ANOM, AUC_CLEAN).statistic / (na * nc) - auc) < 1e-15
auc2 = scipy.stats.rankdata(np.array(matrix(1, 50, 12).ravel().tolist() + matrix(1, 30, 13).ravel().tolist()))
hash_auc = (auc2[50:].sum() - 30 * 31 / 2) / (30 * 50)

# Histograms.
HIST = [0.1, 0.4, 0.4, 1.0, 1.7, 2.0, 2.5, -0.3, 0.999, 1.25]
h1_counts, h1_edges = np.histogram(HIST, bins=5)
h2_counts, h2_edges = np.histogram(HIST, bins=4, range=(0.0, 2.0))

# Conformal p-values and combinations: two members with 19 calibration scores each.
CAL1 = matrix(1, 19, 14).ravel().astype(np.float64)
CAL2 = matrix(1, 19, 15).ravel().astype(np.float64)
# The last pair equals calibration scores exactly, to check that ties count as "at or above".
TESTS = [(0.0, 0.0), (0.95, -0.2), (2.0, 2.0), (-2.0, 0.5), (CAL1[3], CAL2[7])]


def pval(cal, s):
    return (1 + np.sum(cal >= s)) / (len(cal) + 1)


pv, bonf, fisher = [], [], []
for a, b in TESTS:
    p1, p2 = pval(CAL1, a), pval(CAL2, b)
    pv += [p1, p2]
    bonf.append(min(1.0, 2 * min(p1, p2)))
    fisher.append(scipy.stats.chi2.sf(-2 * (np.log(p1) + np.log(p2)), 4))

print("// Generated by scripts/reference/monitor_detect_reference.py; do not edit by hand.")
print("#[rustfmt::skip]")
print("mod reference {")
print_array("MSP", [float(v) for v in msp])
print_array("ENTROPY", [float(v) for v in ent])
print_array("ENERGY_T1", [float(v) for v in en1])
print_array("ENERGY_T2_5", [float(v) for v in en25])
print_array("MAHALANOBIS_RIDGE_1E_6", maha_small)
print_array("MAHALANOBIS_RIDGE_0_1", maha_big)
for k in (1, 3, 40):
    print_array(f"KNN_K{k}", knn[k])
print_array("PCA_SCORES", pres)
print_array("PCA_VARIANCES", pvar)
for (name, size), out in sorted(med.items()):
    print_array(f"MEDIAN_{name.upper()}_{size}", out, "f32")
print_array("BITS_IN", bits_in, "f32")
for b in (1, 3, 5, 8):
    print_array(f"BITS_{b}", bits_out[b], "f32")
print(f"    pub(crate) const AUC: f64 = {fmt(auc)};")
print(f"    pub(crate) const HASH_AUC: f64 = {fmt(hash_auc)};")
print_int_array("HIST5_COUNTS", h1_counts)
print_array("HIST5_EDGES", h1_edges)
print_int_array("HIST4_COUNTS", h2_counts)
print_array("HIST4_EDGES", h2_edges)
print_array("P_VALUES", pv)
print_array("BONFERRONI", bonf)
print_array("FISHER", fisher)
print("}")
