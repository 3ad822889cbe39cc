"""Python baseline for `warden bench monitor`: the same per-request and stream detectors, on the
vectors that `warden bench monitor --dump DIR` wrote (identical data), one request at a time on one
thread, timed the same way (p50/p90/p99/max after a warm-up; stream detectors in samples/s).

Per-request detectors, each as a library does it where one has it, and as hand-written NumPy:
  MSP / entropy / energy  SciPy (special.softmax, stats.entropy, special.logsumexp) and NumPy
  Mahalanobis             NumPy (no library has the class-conditional, tied-covariance score)
  kNN                     scikit-learn NearestNeighbors (brute), PyOD KNN, NumPy (matmul + partition)
  PCA reconstruction      scikit-learn PCA (transform + inverse_transform), NumPy
  autoencoder             PyTorch and NumPy, with the weights Warden trained (training is not timed)
  feature squeezing       NumPy (the score over the dumped probability vectors)
  conformal ensemble      NumPy (searchsorted p-values, Bonferroni minimum, verdict)
Stream detectors: River's ADWIN and PageHinkley, SciPy's ks_2samp over the window, SciPy's
chi2_contingency, NumPy for CUSUM and an incremental online MMD; with --alibi (in a venv with
alibi-detect, which needs NumPy < 2), Alibi Detect's KSDrift, ChiSquareDrift and MMDDriftOnline.

Usage:
  target/release/warden bench monitor --dump /tmp/monitor-vectors --json > rust.json
  /tmp/monitor-bench-venv/bin/python scripts/bench/monitor_python_bench.py /tmp/monitor-vectors > py.json
  /tmp/monitor-bench-alibi-venv/bin/python scripts/bench/monitor_python_bench.py /tmp/monitor-vectors --alibi > alibi.json
  python3 scripts/bench/monitor_python_bench.py --compare rust.json py.json alibi.json
(venvs: numpy scipy scikit-learn pyod river torch; and alibi-detect torch. See
docs/results/monitor-bench/README.md.)
"""
import argparse
import json
import os
import platform
import sys
import time

# One thread everywhere, as Warden's scoring; set before NumPy or PyTorch load their pools.
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(var, "1")

MEMBERS = ["msp", "entropy", "energy", "mahalanobis", "knn", "pca", "autoencoder", "squeeze"]


def latency(ns):
    import numpy as np

    us = np.sort(np.asarray(ns, dtype=np.float64) / 1e3)

    def pct(p):
        # The same order statistic as Warden's: round((n - 1) p).
        return float(us[int(round((len(us) - 1) * p))])

    return {
        "samples": int(len(us)),
        "p50_us": pct(0.5),
        "p90_us": pct(0.9),
        "p99_us": pct(0.99),
        "max_us": float(us[-1]),
        "mean_us": float(us.mean()),
    }


def time_requests(fn, n_req, n_data, warmup):
    """Calls fn(i) for warm-up, then times each of n_req calls (request i cycles over the data)."""
    perf = time.perf_counter_ns
    for i in range(warmup):
        fn(i % n_data)
    ns = []
    for i in range(n_req):
        j = i % n_data
        t = perf()
        fn(j)
        ns.append(perf() - t)
    return latency(ns)


def load(d):
    import numpy as np

    names = [f[:-4] for f in os.listdir(d) if f.endswith(".npy")]
    v = {n: np.load(os.path.join(d, n + ".npy")) for n in names}
    with open(os.path.join(d, "meta.json")) as f:
        meta = json.load(f)
    with open(os.path.join(d, "autoencoder.json")) as f:
        ae = json.load(f)
    return v, meta, ae


def versions(alibi):
    import importlib

    out = {"python": platform.python_version()}
    mods = ["numpy", "scipy", "sklearn", "pyod", "river", "torch"]
    if alibi:
        mods.append("alibi_detect")
    for m in mods:
        try:
            out[m] = importlib.import_module(m).__version__
        except Exception as e:  # noqa: BLE001 - reported, not fatal
            out[m] = f"unavailable: {e}"
    return out


# --------------------------------------------------------------------------------------------
# Per-request detectors.
# --------------------------------------------------------------------------------------------


class Fitted:
    """Every detector fitted on the dumped fit split, as Warden fits them."""

    def __init__(self, v, meta, ae):
        import numpy as np

        cfg = meta["config"]
        recon = cfg["pca"]["input"]
        self.recon_key = "pixels" if recon == "pixels" else "features"
        feats = v["fit_features"].astype(np.float64)
        labels = v["fit_labels"]
        classes = int(cfg["mahalanobis"]["classes"])
        # Mahalanobis: class means, tied covariance (1/N), ridge 1e-6 · tr/d, Cholesky, whitened
        # means: score = min_c ||L^-1 x - L^-1 mu_c||^2 (as Warden).
        d = feats.shape[1]
        means = np.stack([feats[labels == c].mean(0) for c in range(classes)])
        centred = feats - means[labels]
        cov = centred.T @ centred / len(feats)
        ridge = cfg["mahalanobis"]["ridge_relative"] * np.trace(cov) / d
        chol = np.linalg.cholesky(cov + ridge * np.eye(d))
        self.whiten = np.linalg.inv(chol)
        self.whitened_means = means @ self.whiten.T
        # kNN: the same kept, normalised reference rows.
        self.k = int(cfg["knn"]["k"])
        self.knn_ref = np.ascontiguousarray(v["knn_reference"], dtype=np.float32)
        # PCA on the reconstruction input, in f64.
        fit_recon = v[f"fit_{self.recon_key}"].astype(np.float64)
        self.pca_components = int(cfg["pca"]["components"])
        # Autoencoder: Warden's weights (row-major out × in), standardisation, tanh.
        self.ae = ae
        dd, h, b = ae["dim"], ae["hidden"], ae["bottleneck"]
        p = np.asarray(ae["params"], dtype=np.float32)
        layers, off = [], 0
        for fan_in, fan_out in [(dd, h), (h, b), (b, h), (h, dd)]:
            w = p[off : off + fan_in * fan_out].reshape(fan_out, fan_in)
            off += fan_in * fan_out
            bias = p[off : off + fan_out]
            off += fan_out
            layers.append((np.ascontiguousarray(w), bias))
        self.ae_layers = layers
        self.ae_mean = np.asarray(ae["mean"], dtype=np.float32)
        self.ae_inv_std = np.asarray(ae["inv_std"], dtype=np.float32)
        self.ae_relu = ae["activation"] == "relu"
        self.fit_recon = fit_recon


def numpy_detectors(f):
    """Hand-written NumPy scoring functions, one request's vector in, a float out."""
    import numpy as np

    pca_mean = f.fit_recon.mean(0)
    centred = f.fit_recon - pca_mean
    cov = centred.T @ centred / len(centred)
    vals, vecs = np.linalg.eigh(cov)
    comps = np.ascontiguousarray(vecs[:, ::-1][:, : f.pca_components].T)
    k = f.k
    ref = f.knn_ref
    (w0, b0), (w1, b1), (w2, b2), (w3, b3) = f.ae_layers
    act = (lambda a: np.maximum(a, 0)) if f.ae_relu else np.tanh

    def msp(z):
        z = z.astype(np.float64)
        e = np.exp(z - z.max())
        return 1.0 - e.max() / e.sum()

    def entropy(z):
        z = z.astype(np.float64)
        e = np.exp(z - z.max())
        p = e / e.sum()
        return float(-(p * np.log(np.where(p > 0, p, 1.0))).sum())

    def energy(z):
        z = z.astype(np.float64)
        m = z.max()
        return float(-(m + np.log(np.exp(z - m).sum())))

    def mahalanobis(x):
        y = f.whiten @ x.astype(np.float64)
        return float(((y - f.whitened_means) ** 2).sum(1).min())

    def knn(x):
        x = x.astype(np.float64)
        u = (x / np.sqrt(x @ x)).astype(np.float32)
        dots = ref @ u
        j = np.argpartition(dots, -k)[-k]
        diff = u.astype(np.float64) - ref[j]
        return float(np.sqrt(diff @ diff))

    def pca(x):
        r = x.astype(np.float64) - pca_mean
        r = r - comps.T @ (comps @ r)
        return float(r @ r / len(r))

    def autoencoder(x):
        xs = (x - f.ae_mean) * f.ae_inv_std
        a1 = act(w0 @ xs + b0)
        z = w1 @ a1 + b1
        a3 = act(w2 @ z + b2)
        out = w3 @ a3 + b3
        diff = (out - xs).astype(np.float64)
        return float(diff @ diff / len(diff))

    def squeeze(p, sq):
        return float(np.abs(sq - p).sum(1).max())

    return {
        "msp": msp,
        "entropy": entropy,
        "energy": energy,
        "mahalanobis": mahalanobis,
        "knn": knn,
        "pca": pca,
        "autoencoder": autoencoder,
        "squeeze": squeeze,
    }


def library_detectors(f):
    """The same scores through the libraries that have them."""
    import numpy as np
    import torch
    from pyod.models.knn import KNN
    from scipy import special, stats
    from sklearn.decomposition import PCA
    from sklearn.neighbors import NearestNeighbors

    torch.set_num_threads(1)
    nn_ = NearestNeighbors(n_neighbors=f.k, algorithm="brute").fit(f.knn_ref)
    pyod_knn = KNN(n_neighbors=f.k, method="largest").fit(f.knn_ref)
    pca = PCA(n_components=f.pca_components, svd_solver="full").fit(f.fit_recon)
    (w0, b0), (w1, b1), (w2, b2), (w3, b3) = f.ae_layers
    act = torch.nn.ReLU() if f.ae_relu else torch.nn.Tanh()
    lin = []
    for w, b in f.ae_layers:
        layer = torch.nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(w))
            layer.bias.copy_(torch.from_numpy(b))
        lin.append(layer)
    net = torch.nn.Sequential(lin[0], act, lin[1], lin[2], act, lin[3]).eval()
    mean = torch.from_numpy(f.ae_mean)
    inv_std = torch.from_numpy(f.ae_inv_std)

    def unit(x):
        x = x.astype(np.float64)
        return (x / np.sqrt(x @ x)).astype(np.float32)[None]

    def ae(x):
        with torch.inference_mode():
            xs = (torch.from_numpy(x) - mean) * inv_std
            return float(((net(xs) - xs) ** 2).double().mean())

    def pca_score(x):
        x64 = x.astype(np.float64)[None]
        r = pca.inverse_transform(pca.transform(x64))
        return float(((x64 - r) ** 2).mean())

    return {
        "msp": lambda z: float(1.0 - special.softmax(z.astype(np.float64)).max()),
        "entropy": lambda z: float(stats.entropy(special.softmax(z.astype(np.float64)))),
        "energy": lambda z: float(-special.logsumexp(z.astype(np.float64))),
        "knn_sklearn": lambda x: float(nn_.kneighbors(unit(x))[0][0, -1]),
        "knn_pyod": lambda x: float(pyod_knn.decision_function(unit(x))[0]),
        "pca_sklearn": pca_score,
        "autoencoder_torch": ae,
    }


class Ensemble:
    """Conformal p-values per member, Bonferroni minimum, verdict at 0.05 / 0.01."""

    def __init__(self, cal_scores, flag=0.05, block=0.01):
        import numpy as np

        self.sorted = [np.sort(cal_scores[:, m]) for m in range(cal_scores.shape[1])]
        self.n = cal_scores.shape[0]
        self.flag, self.block = flag, block

    def p_value(self, scores):
        import numpy as np

        p = 1.0
        for s, cal in zip(scores, self.sorted):
            at_or_above = self.n - np.searchsorted(cal, s, "left")
            p = min(p, (1 + at_or_above) / (self.n + 1))
        return min(1.0, len(self.sorted) * p)

    def verdict(self, p):
        return "block" if p <= self.block else "flag" if p <= self.flag else "allow"


def per_request(v, meta, ae, n_req, warmup):
    import numpy as np

    f = Fitted(v, meta, ae)
    npd = numpy_detectors(f)
    lib = library_detectors(f)
    rk = f.recon_key
    test = {
        "logits": v["test_logits"],
        "features": v["test_features"],
        "recon": v[f"test_{rk}"],
        "probs": v["test_probs"],
        "squeezed": v["test_squeezed"],
    }
    n_data = len(test["logits"])
    inputs = {
        "msp": "logits",
        "entropy": "logits",
        "energy": "logits",
        "mahalanobis": "features",
        "knn": "features",
        "pca": "recon",
        "autoencoder": "recon",
    }

    def call(fn, key):
        arr = test[key]
        return lambda i: fn(arr[i])

    # Accuracy check: the NumPy scores against Warden's, and the p-values.
    rust = v["rust_test_scores"]
    py = np.zeros_like(rust)
    for i in range(n_data):
        for m, name in enumerate(MEMBERS):
            if name == "squeeze":
                py[i, m] = npd[name](test["probs"][i], test["squeezed"][i])
            else:
                py[i, m] = npd[name](test[inputs[name]][i])
    cal = {
        "logits": v["cal_logits"],
        "features": v["cal_features"],
        "recon": v[f"cal_{rk}"],
        "probs": v["cal_probs"],
        "squeezed": v["cal_squeezed"],
    }
    cal_scores = np.zeros((len(cal["logits"]), len(MEMBERS)))
    for i in range(len(cal_scores)):
        for m, name in enumerate(MEMBERS):
            if name == "squeeze":
                cal_scores[i, m] = npd[name](cal["probs"][i], cal["squeezed"][i])
            else:
                cal_scores[i, m] = npd[name](cal[inputs[name]][i])
    ens = Ensemble(cal_scores)
    p_py = np.array([ens.p_value(py[i]) for i in range(n_data)])
    rel = np.abs(py - rust) / np.maximum(np.abs(rust), 1e-12)
    check = {
        "max_relative_difference_vs_warden": {n: float(rel[:, m].max()) for m, n in enumerate(MEMBERS)},
        "median_relative_difference_vs_warden": {
            n: float(np.median(rel[:, m])) for m, n in enumerate(MEMBERS)
        },
        "p_values_equal_fraction": float(np.mean(np.isclose(p_py, v["rust_test_p_values"], rtol=0, atol=1e-12))),
    }
    lib_check = {}
    for name, key, m in [
        ("knn_sklearn", "features", 4),
        ("knn_pyod", "features", 4),
        ("pca_sklearn", "recon", 5),
        ("autoencoder_torch", "recon", 6),
        ("energy", "logits", 2),
    ]:
        s = np.array([lib[name](test[key][i]) for i in range(min(500, n_data))])
        lib_check[name] = float((np.abs(s - rust[: len(s), m]) / np.maximum(np.abs(rust[: len(s), m]), 1e-12)).max())
    check["library_max_relative_difference_vs_warden_first500"] = lib_check

    out = {"numpy": {}, "library": {}}
    for name in MEMBERS:
        if name == "squeeze":
            fn = npd[name]
            pr, sq = test["probs"], test["squeezed"]
            out["numpy"][name] = time_requests(lambda i: fn(pr[i], sq[i]), n_req, n_data, warmup)
        else:
            out["numpy"][name] = time_requests(call(npd[name], inputs[name]), n_req, n_data, warmup)
    lib_inputs = {
        "msp": "logits",
        "entropy": "logits",
        "energy": "logits",
        "knn_sklearn": "features",
        "knn_pyod": "features",
        "pca_sklearn": "recon",
        "autoencoder_torch": "recon",
    }
    for name, key in lib_inputs.items():
        out["library"][name] = time_requests(call(lib[name], key), n_req, n_data, warmup)
    sc = v["rust_test_scores"]
    out["numpy"]["ensemble"] = time_requests(lambda i: ens.verdict(ens.p_value(sc[i])), n_req, n_data, warmup)

    lg, ft, rc, pr, sq = test["logits"], test["features"], test["recon"], test["probs"], test["squeezed"]

    def all_numpy(i):
        s = (
            npd["msp"](lg[i]),
            npd["entropy"](lg[i]),
            npd["energy"](lg[i]),
            npd["mahalanobis"](ft[i]),
            npd["knn"](ft[i]),
            npd["pca"](rc[i]),
            npd["autoencoder"](rc[i]),
            npd["squeeze"](pr[i], sq[i]),
        )
        return ens.verdict(ens.p_value(s))

    def all_library(i):
        s = (
            lib["msp"](lg[i]),
            lib["entropy"](lg[i]),
            lib["energy"](lg[i]),
            npd["mahalanobis"](ft[i]),
            lib["knn_sklearn"](ft[i]),
            lib["pca_sklearn"](rc[i]),
            lib["autoencoder_torch"](rc[i]),
            npd["squeeze"](pr[i], sq[i]),
        )
        return ens.verdict(ens.p_value(s))

    out["all_numpy"] = time_requests(all_numpy, n_req, n_data, warmup)
    out["all_library"] = time_requests(all_library, n_req, n_data, warmup)
    out["check"] = check
    return out


# --------------------------------------------------------------------------------------------
# Stream detectors.
# --------------------------------------------------------------------------------------------


def run_stream(update, n, budget_s, samples_per_call=1):
    """Calls update(i) until n samples or budget_s seconds; returns samples, seconds, alarms."""
    perf = time.perf_counter
    t0 = perf()
    alarms = 0
    done = 0
    i = 0
    while done < n:
        alarms += bool(update(i))
        done += samples_per_call
        i += 1
        if (i & 255) == 0 and perf() - t0 > budget_s:
            break
    secs = perf() - t0
    return {"samples": done, "seconds": secs, "samples_per_s": done / secs, "alarms": int(alarms)}


def stream(v, meta, n, budget_s):
    import numpy as np
    from river import drift
    from scipy import stats

    cfg = meta["stream"]
    z = v["stream_scores"].tolist()
    ref_z = v["stream_reference_scores"]
    nz = len(z)
    out = {}

    # CUSUM: no library has it; a plain Python loop over standardised scores, as Warden's.
    mean, sd = float(np.mean(ref_z)), float(np.std(ref_z, ddof=1))
    k, h = cfg["cusum"]["drift"], cfg["cusum"]["threshold"]
    state = [0.0]

    def cusum(i):
        s = max(0.0, state[0] + (z[i % nz] - mean) / sd - k)
        if s > h:
            state[0] = 0.0
            return True
        state[0] = s
        return False

    out["cusum"] = run_stream(cusum, n, budget_s)

    ph_cfg = cfg["page_hinkley"]
    ph = drift.PageHinkley(
        min_instances=ph_cfg["min_instances"],
        delta=ph_cfg["delta"],
        threshold=ph_cfg["threshold"],
        alpha=ph_cfg["alpha"],
        mode=ph_cfg["mode"],
    )

    def page_hinkley(i):
        ph.update(z[i % nz])
        return ph.drift_detected

    out["page_hinkley"] = run_stream(page_hinkley, n, budget_s)

    a_cfg = cfg["adwin"]
    adwin = drift.ADWIN(
        delta=a_cfg["delta"],
        clock=a_cfg["clock"],
        max_buckets=a_cfg["max_buckets"],
        min_window_length=a_cfg["min_window_length"],
        grace_period=a_cfg["grace_period"],
    )

    def adwin_update(i):
        adwin.update(z[i % nz])
        return adwin.drift_detected

    out["adwin"] = run_stream(adwin_update, n, budget_s)

    # Window KS on the scores, stride 1: SciPy's ks_2samp on the last W scores.
    ks = cfg["ks_scores"]
    w = ks["window"]
    ref = np.asarray(ref_z[: ks["reference"]])
    zs = np.asarray(z)
    ring = np.zeros(w)

    def ks_scores(i):
        ring[i % w] = zs[i % nz]
        if i + 1 < w:
            return False
        return stats.ks_2samp(ref, ring, method="asymp").pvalue < ks["alpha"]

    out["ks_scores_scipy"] = run_stream(ks_scores, n, budget_s)

    # Window KS on the features, tumbling windows: ks_2samp vectorised over the features.
    kf = cfg["ks_features"]
    fw = kf["window"]
    feats = v["test_features"].astype(np.float64)
    fref = v["cal_features"][: kf["reference"]].astype(np.float64)
    level = kf["alpha"] / feats.shape[1]
    nwin = len(feats) // fw

    def ks_features(i):
        win = feats[(i % nwin) * fw : (i % nwin + 1) * fw]
        return stats.ks_2samp(fref, win, axis=0, method="asymp").pvalue.min() < level

    out["ks_features_scipy"] = run_stream(ks_features, n // 10, budget_s, fw)

    # Online MMD: NumPy, incremental as Warden's (kernel row against the kept reference and the
    # window per update), threshold taken from Warden's calibration.
    for name, dim in [("online_mmd_features", feats.shape[1]), ("online_mmd_scores", 1)]:
        rust_stream = meta["rust"]["stream"]["detectors"][name]
        thr = rust_stream["threshold"]
        mm = cfg["online_mmd"]
        data = feats if dim > 1 else zs[:, None]
        pool = v["fit_features"][: mm["reference"]].astype(np.float64) if dim > 1 else ref_z[: mm["reference"], None]
        rng = np.random.default_rng(5)
        kept = pool[rng.permutation(len(pool))[: mm["kept"]]]
        # Median heuristic on the kept reference.
        sq = ((kept[:, None, :] - kept[None, :, :]) ** 2).sum(-1)
        med = np.median(sq[np.triu_indices(len(kept), 1)])
        gamma = 1.0 / (2.0 * (med / 2.0 if med > 0 else 1.0))
        kr = np.exp(-gamma * sq)
        n_r = len(kept)
        rr_term = (kr.sum() - np.trace(kr)) / (n_r * (n_r - 1))
        W = mm["window"]
        win = np.zeros((W, dim))
        kww = np.zeros((W, W))
        kxr = np.zeros(W)
        filled = [0]

        def mmd_update(i, data=data, kept=kept, win=win, kww=kww, kxr=kxr, filled=filled, thr=thr, rr_term=rr_term, gamma=gamma, n_r=n_r, W=W):
            x = data[i % len(data)]
            slot = i % W
            win[slot] = x
            kxr[slot] = np.exp(-gamma * ((kept - x) ** 2).sum(1)).sum()
            row = np.exp(-gamma * ((win - x) ** 2).sum(1))
            kww[slot, :] = row
            kww[:, slot] = row
            filled[0] = min(filled[0] + 1, W)
            if filled[0] < W:
                return False
            ww = (kww.sum() - np.trace(kww)) / (W * (W - 1))
            stat = rr_term + ww - 2.0 * kxr.sum() / (W * n_r)
            return stat > thr

        m = n if dim == 1 else n // 10
        out[name + "_numpy"] = run_stream(mmd_update, m, budget_s)

    # Chi-square on predicted labels: SciPy's chi2_contingency on incremental counts.
    ch = cfg["chi_square_labels"]
    labels = v["test_predicted"].tolist()
    nl = len(labels)
    classes = int(meta["config"]["mahalanobis"]["classes"])
    ref_counts = np.bincount(v["cal_predicted"], minlength=classes)
    counts = np.zeros(classes, dtype=np.int64)
    lab_ring = [0] * ch["window"]

    def chi(i):
        cw = ch["window"]
        lab = labels[i % nl]
        if i >= cw:
            counts[lab_ring[i % cw]] -= 1
        lab_ring[i % cw] = lab
        counts[lab] += 1
        if i + 1 < cw:
            return False
        table = np.stack([ref_counts, counts])
        table = table[:, table.sum(0) > 0]
        return stats.chi2_contingency(table, correction=False).pvalue < ch["alpha"]

    out["chi_square_labels_scipy"] = run_stream(chi, n, budget_s)
    return out


def stream_alibi(v, meta, n, budget_s):
    import numpy as np
    import torch
    from alibi_detect.cd import ChiSquareDrift, KSDrift, MMDDriftOnline

    torch.set_num_threads(1)

    cfg = meta["stream"]
    out = {}
    z = v["stream_scores"].astype(np.float32)
    ref_z = v["stream_reference_scores"].astype(np.float32)
    ks = cfg["ks_scores"]
    w = ks["window"]
    det = KSDrift(ref_z[: ks["reference"], None], p_val=ks["alpha"])
    ring = np.zeros((w, 1), dtype=np.float32)

    def ks_scores(i):
        ring[i % w, 0] = z[i % len(z)]
        if i + 1 < w:
            return False
        return det.predict(ring)["data"]["is_drift"]

    out["ks_scores_alibi"] = run_stream(ks_scores, n, budget_s)

    kf = cfg["ks_features"]
    fw = kf["window"]
    feats = v["test_features"]
    det_f = KSDrift(v["cal_features"][: kf["reference"]], p_val=kf["alpha"], correction="bonferroni")
    nwin = len(feats) // fw
    out["ks_features_alibi"] = run_stream(
        lambda i: det_f.predict(feats[(i % nwin) * fw : (i % nwin + 1) * fw])["data"]["is_drift"],
        n // 10,
        budget_s,
        fw,
    )

    mm = cfg["online_mmd"]
    for name, data, pool in [
        ("online_mmd_features_alibi", feats, v["fit_features"][: mm["reference"]]),
        ("online_mmd_scores_alibi", z[:, None], ref_z[: mm["reference"], None]),
    ]:
        # Alibi estimates the 1 - 1/ERT quantile of its bootstrap statistics and refuses fewer
        # than about ERT of them, so it gets 2 ERT (Warden calibrates from its own hazard rule).
        boots = int(2 * mm["ert"])
        t = time.perf_counter()
        det_m = MMDDriftOnline(
            pool.astype(np.float32),
            ert=mm["ert"],
            window_size=mm["window"],
            backend="pytorch",
            n_bootstraps=boots,
            device="cpu",
            verbose=False,
        )
        calib = time.perf_counter() - t
        r = run_stream(lambda i: det_m.predict(data[i % len(data)])["data"]["is_drift"], n, budget_s)
        r["calibration_seconds"] = calib
        r["n_bootstraps"] = boots
        out[name] = r

    ch = cfg["chi_square_labels"]
    cw = ch["window"]
    labels = v["test_predicted"]
    det_c = ChiSquareDrift(v["cal_predicted"][:, None], p_val=ch["alpha"])
    lab_ring = np.zeros((cw, 1), dtype=np.int64)

    def chi(i):
        lab_ring[i % cw, 0] = labels[i % len(labels)]
        if i + 1 < cw:
            return False
        return det_c.predict(lab_ring)["data"]["is_drift"]

    out["chi_square_labels_alibi"] = run_stream(chi, n, budget_s)
    return out


# --------------------------------------------------------------------------------------------
# The comparison table.
# --------------------------------------------------------------------------------------------


def compare(paths):
    runs = [json.load(open(p)) for p in paths]
    rust = [r for r in runs if r.get("benchmark") == "warden bench monitor"]
    py = [r for r in runs if r.get("benchmark") == "python monitor baseline" and "per_request" in r]
    alibi = [r for r in runs if r.get("benchmark") == "python monitor baseline" and "per_request" not in r]
    lines = [
        "| per request (µs) | Warden p50 | Warden p99 | Python p50 | Python p99 | Python / Warden, p50 | p99 |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    if rust and py:
        r, p = rust[0]["per_request"], py[0]["per_request"]
        rows = [
            ("all detectors + ensemble (NumPy)", r["all_detectors"], p["all_numpy"]),
            ("all detectors + ensemble (libraries)", r["all_detectors"], p["all_library"]),
        ]
        for name in MEMBERS + ["ensemble"]:
            rows.append((f"{name} (NumPy)", r["detectors"][name], p["numpy"][name]))
        for name, rname in [
            ("msp", "msp"),
            ("entropy", "entropy"),
            ("energy", "energy"),
            ("knn_sklearn", "knn"),
            ("knn_pyod", "knn"),
            ("pca_sklearn", "pca"),
            ("autoencoder_torch", "autoencoder"),
        ]:
            rows.append((f"{name} (library)", r["detectors"][rname], p["library"][name]))
        for label, a, b in rows:
            lines.append(
                f"| {label} | {a['p50_us']:.1f} | {a['p99_us']:.1f} | {b['p50_us']:.1f} | {b['p99_us']:.1f} "
                f"| {b['p50_us'] / a['p50_us']:.1f}× | {b['p99_us'] / a['p99_us']:.1f}× |"
            )
    lines += ["", "| stream (samples/s) | Warden | Python | which | Warden / Python |", "| --- | --- | --- | --- | --- |"]
    if rust:
        rs = rust[0]["stream"]["detectors"]
        ps = {}
        for r in py + alibi:
            for k, v in r["stream"].items():
                ps[k] = v
        pairs = [
            ("cusum", "cusum"),
            ("page_hinkley", "page_hinkley"),
            ("adwin", "adwin"),
            ("ks_scores", "ks_scores_scipy"),
            ("ks_scores", "ks_scores_alibi"),
            ("ks_features", "ks_features_scipy"),
            ("ks_features", "ks_features_alibi"),
            ("online_mmd_features", "online_mmd_features_numpy"),
            ("online_mmd_features", "online_mmd_features_alibi"),
            ("online_mmd_scores", "online_mmd_scores_numpy"),
            ("online_mmd_scores", "online_mmd_scores_alibi"),
            ("chi_square_labels", "chi_square_labels_scipy"),
            ("chi_square_labels", "chi_square_labels_alibi"),
        ]
        for rname, pname in pairs:
            if rname in rs and pname in ps:
                a, b = rs[rname]["samples_per_s"], ps[pname]["samples_per_s"]
                lines.append(f"| {rname} | {a:,.0f} | {b:,.0f} | {pname} | {a / b:,.0f}× |")
    print("\n".join(lines))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", nargs="?", help="the directory `warden bench monitor --dump` wrote")
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--warmup", type=int, default=1_000)
    ap.add_argument("--stream", type=int, default=1_000_000, help="samples per stream detector at most")
    ap.add_argument("--stream-seconds", type=float, default=10.0, help="time budget per stream detector")
    ap.add_argument("--alibi", action="store_true", help="run the Alibi Detect stream detectors only")
    ap.add_argument("--compare", nargs="+", metavar="JSON", help="print the comparison table of result files")
    a = ap.parse_args()
    if a.compare:
        compare(a.compare)
        return
    if not a.data:
        ap.error("give the dump directory, or --compare")
    v, meta, ae = load(a.data)
    res = {
        "benchmark": "python monitor baseline",
        "versions": versions(a.alibi),
        "threads": 1,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
    }
    t = time.perf_counter()
    if a.alibi:
        res["stream"] = stream_alibi(v, meta, a.stream, a.stream_seconds)
    else:
        res["per_request"] = per_request(v, meta, ae, a.requests, a.warmup)
        res["stream"] = stream(v, meta, a.stream, a.stream_seconds)
    res["total_seconds"] = time.perf_counter() - t
    json.dump(res, sys.stdout)
    print()


if __name__ == "__main__":
    main()
