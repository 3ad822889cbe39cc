#!/usr/bin/env python3
"""PyTorch reference values for `crates/warden-harden/tests/torch_reference.rs`.

Builds two fixed networks (the `mini-cnn` of the test, and `Arch::small_cnn()`) whose weights are
given by a closed formula (no RNG), a fixed batch of 8 inputs in [0, 1] (also a formula), and
prints on standard output, as Rust constants ready to paste into the test's `mod reference`:

  * checksums of the formulas: the input's sum and its counts of exact 0s and 1s, and the float64
    sum of each parameter tensor (float32 values, PyTorch layout),
  * the logits of the batch and the summed cross-entropy loss (float64),
  * summaries of the input gradient of the summed loss (float64): per example the sum, the L1 and
    L2 norms, the number of exactly-zero entries, and a few individual entries (the largest ones),
  * FGSM (L-inf, eps 0.1, no random start, clamp [0, 1]), PGD L-inf (eps 0.1, step 0.01, 10 steps,
    no random start) and PGD L2 (eps 1.0, step 0.25, 10 steps, no random start), each step and
    projection written exactly as `step_project` in `crates/warden-harden/src/attack.rs` does it.
    The attacks are run twice, in float32 (what Warden does; these are the printed values) and in
    float64; the script says on standard error whether the two agree on the printed summaries,
    and how close any gradient entry came to zero (a sign float32 rounding could flip).

Run from the repository root:

    /tmp/torch-venv/bin/python scripts/reference/torch_attack_reference.py

The formulas use `math.sin` / `math.cos` in float64 (the C library's, as Rust's `f64::sin` on the
same machine), rounded once to float32; the Rust test evaluates the same expressions in the same
order.
"""

import math
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

N = 8
SIDE = 28
CLASSES = 10
EPS_LINF, STEP_LINF, STEPS = 0.1, 0.01, 10
EPS_L2, STEP_L2 = 1.0, 0.25
# A pixel counts as "at +eps" when adv - x >= eps - TOL (float32 rounding of x + eps).
TOL = 1e-5
# A pixel counts as "moved up" when adv - x > MOVED (and "moved down" when < -MOVED).
MOVED = 1e-3

# Layer specs mirror `LayerSpec` in crates/warden-harden/src/nn.rs.
MINI_CNN = [
    ("conv", 1, 4, 3, 0),   # 28x28x1 -> 26x26x4
    ("relu",),
    ("pool", 2),            # -> 13x13x4
    ("conv", 4, 6, 3, 1),   # padding 1 -> 13x13x6
    ("relu",),
    ("pool", 2),            # floor mode: -> 6x6x6, row and column 12 dropped
    ("flatten",),
    ("linear", 216, 32),
    ("relu",),
    ("linear", 32, 10),
]
SMALL_CNN = [
    ("conv", 1, 32, 3, 0),
    ("relu",),
    ("pool", 2),
    ("conv", 32, 64, 3, 0),
    ("relu",),
    ("pool", 2),
    ("flatten",),
    ("linear", 1600, 128),
    ("relu",),
    ("linear", 128, 10),
]


def param_value(t, i, fan_in, bias):
    """Entry `i` (row-major, PyTorch layout) of parameter tensor number `t` (0 = first weight,
    1 = first bias, 2 = second weight, ...). The quadratic term of the phase makes neighbouring
    entries look unrelated (a plain `sin(f*i)` gives nearly identical filters and a network whose
    logits barely depend on the input)."""
    f = 1.7 + 0.13 * t
    o = 0.5 * t + 0.3
    phase = f * i + 0.0137 * (i * i) + o
    if bias:
        return 0.1 * math.cos(phase)
    return 2.5 * math.sin(phase) / math.sqrt(fan_in)


def build(spec):
    layers = []
    t = 0
    for s in spec:
        if s[0] == "conv":
            _, cin, cout, k, pad = s
            m = nn.Conv2d(cin, cout, k, padding=pad)
        elif s[0] == "linear":
            _, fin, fout = s
            m = nn.Linear(fin, fout)
        elif s[0] == "relu":
            layers.append(nn.ReLU())
            continue
        elif s[0] == "pool":
            layers.append(nn.MaxPool2d(s[1]))
            continue
        else:
            layers.append(nn.Flatten())
            continue
        with torch.no_grad():
            w = m.weight
            fan_in = w[0].numel()
            vals = [param_value(t, i, fan_in, False) for i in range(w.numel())]
            # Round once to float32: these are the values Warden holds.
            w.copy_(torch.tensor(vals, dtype=torch.float32).reshape(w.shape))
            b = m.bias
            vals = [param_value(t + 1, i, fan_in, True) for i in range(b.numel())]
            b.copy_(torch.tensor(vals, dtype=torch.float32))
        t += 2
        layers.append(m)
    return nn.Sequential(*layers).float()


def input_value(n, r, c):
    """Pixel (r, c) of example n: smooth stripes and blobs, about 13% exactly 0 and 13% exactly 1."""
    a = math.sin((0.31 + 0.07 * n) * r + (0.17 - 0.05 * n) * c + 0.9 * n)
    b = math.cos((0.23 + 0.04 * n) * c - 0.11 * r + 0.5 * n)
    v = 0.5 + 0.8 * a * b
    return min(max(v, 0.0), 1.0)


def inputs():
    vals = [input_value(n, r, c) for n in range(N) for r in range(SIDE) for c in range(SIDE)]
    return torch.tensor(vals, dtype=torch.float32).reshape(N, 1, SIDE, SIDE)


def xent_sum(model, x, y):
    return F.cross_entropy(model(x), y, reduction="sum")


def attack(model, x, y, norm, eps, step, steps):
    """Untargeted PGD from x itself (no random start), as `attack_shard` + `step_project`;
    returns the last iterate and the smallest |g_i| / max_j |g_j| over the non-zero gradient
    entries of every step (how close an L-inf step came to a sign that rounding could flip)."""
    dt = x.dtype
    xa = x.clone()
    margin = math.inf
    for _ in range(steps):
        xa = xa.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(xent_sum(model, xa, y), xa)
        with torch.no_grad():
            ga = g.flatten(1).abs().double()
            rel = ga / ga.max(dim=1, keepdim=True).values
            margin = min(margin, rel[ga > 0].min().item())
            if norm == "linf":
                moved = xa + step * torch.sign(g)
                xa = torch.min(torch.max(moved, x - eps), x + eps).clamp(0.0, 1.0)
            else:
                # Norms in float64, the factors rounded to the working precision, as Warden does.
                gn = g.flatten(1).double().norm(dim=1)
                scale = torch.where(gn > 0, step / gn, torch.zeros_like(gn)).to(dt)
                xa = xa + scale.view(-1, 1, 1, 1) * g
                d = xa - x
                dn = d.flatten(1).double().norm(dim=1)
                shrink = torch.where(dn > eps, eps / dn, torch.ones_like(dn)).to(dt)
                xa = (x + d * shrink.view(-1, 1, 1, 1)).clamp(0.0, 1.0)
    return xa.detach(), margin


def summarise(model, x, adv, eps):
    with torch.no_grad():
        pred = model(adv).argmax(1).tolist()
    d = (adv.double() - x.double()).flatten(1)
    rows = []
    for i in range(x.shape[0]):
        di = d[i]
        rows.append(
            dict(
                pred=pred[i],
                sum=adv[i].double().sum().item(),
                plus=int((di >= eps - TOL).sum()),
                minus=int((di <= -eps + TOL).sum()),
                up=int((di > MOVED).sum()),
                down=int((di < -MOVED).sum()),
                l2=di.norm().item(),
                linf=di.abs().max().item(),
            )
        )
    return rows


def fmt(v):
    return repr(float(v))


def rust_array(name, ty, values, per_line=4):
    vals = list(values)
    out = [f"pub(crate) const {name}: [{ty}; {len(vals)}] = ["]
    for k in range(0, len(vals), per_line):
        out.append("    " + ", ".join(vals[k : k + per_line]) + ",")
    out.append("];")
    return "\n".join(out)


def rust_summaries(name, rows):
    out = [f"pub(crate) const {name}: [Summary; {len(rows)}] = ["]
    for r in rows:
        out.append(
            f"    Summary {{ pred: {r['pred']}, sum: {fmt(r['sum'])}, plus: {r['plus']}, "
            f"minus: {r['minus']}, up: {r['up']}, down: {r['down']}, l2: {fmt(r['l2'])}, "
            f"linf: {fmt(r['linf'])} }},"
        )
    out.append("];")
    return "\n".join(out)


def compare(a, b):
    """Largest differences between two lists of summaries (float32 vs float64 runs)."""
    worst = dict(pred=0, sum=0.0, plus=0, minus=0, up=0, down=0, l2=0.0)
    for ra, rb in zip(a, b):
        worst["pred"] += int(ra["pred"] != rb["pred"])
        for k in ("plus", "minus", "up", "down"):
            worst[k] = max(worst[k], abs(ra[k] - rb[k]))
        for k in ("sum", "l2"):
            worst[k] = max(worst[k], abs(ra[k] - rb[k]))
    return worst


def report(prefix, spec, x32):
    model32 = build(spec)
    model64 = build(spec).double()
    x64 = x32.double()

    # Labels: the clean prediction for even examples (the attack must change a right answer), a
    # formula for odd ones (mostly already wrong).
    with torch.no_grad():
        clean = model64(x64).argmax(1).tolist()
    labels = [clean[i] if i % 2 == 0 else (3 * i + 1) % CLASSES for i in range(N)]
    y = torch.tensor(labels)

    xg = x64.clone().requires_grad_(True)
    logits = model64(xg)
    loss = F.cross_entropy(logits, y, reduction="sum")
    (g,) = torch.autograd.grad(loss, xg)
    g = g.flatten(1)

    # The same gradient in float32, to see how much float32 rounding alone moves it.
    xg32 = x32.clone().requires_grad_(True)
    (g32,) = torch.autograd.grad(xent_sum(model32, xg32, y), xg32)
    g32 = g32.flatten(1).double()
    rel32 = ((g32 - g).abs().sum(1) / g.abs().sum(1)).max().item()
    zeros32 = (g32 == 0).sum(1).tolist()

    lines = [f"// ---- {prefix} ----"]
    # Float64 sums of each parameter tensor's float32 values, in state_dict order: these check the
    # weight formula on the Rust side independently of the layouts.
    sums = [p.double().sum().item() for p in model32.state_dict().values()]
    lines.append(rust_array(f"{prefix}_PARAM_SUMS", "f64", [fmt(v) for v in sums]))
    lines.append(rust_array(f"{prefix}_LABELS", "u8", [str(v) for v in labels], 8))
    lines.append(rust_array(f"{prefix}_LOGITS", "f64", [fmt(v) for v in logits.flatten().tolist()], 5))
    lines.append(f"pub(crate) const {prefix}_LOSS: f64 = {fmt(loss.item())};")
    lines.append(rust_array(f"{prefix}_GRAD_SUM", "f64", [fmt(v) for v in g.sum(1).tolist()]))
    lines.append(rust_array(f"{prefix}_GRAD_L1", "f64", [fmt(v) for v in g.abs().sum(1).tolist()]))
    lines.append(rust_array(f"{prefix}_GRAD_L2", "f64", [fmt(v) for v in g.norm(dim=1).tolist()]))
    zeros = (g == 0).sum(1).tolist()
    lines.append(rust_array(f"{prefix}_GRAD_ZEROS", "usize", [str(v) for v in zeros], 8))
    # Individual entries (example, pixel, value): the three largest in magnitude of each example.
    entries = []
    for i in range(N):
        top = g[i].abs().argsort(descending=True)[:3].tolist()
        for p in top:
            entries.append(f"({i}, {p}, {fmt(g[i, p].item())})")
    lines.append(rust_array(f"{prefix}_GRAD_ENTRIES", "(usize, usize, f64)", entries, 3))

    notes = [
        f"{prefix}: float32 vs float64 input gradient, max over examples of L1(diff)/L1: {rel32:.3e}",
        f"{prefix}: exact zeros per example float64 {zeros} float32 {zeros32}",
    ]
    attacks = [
        ("FGSM", "linf", EPS_LINF, EPS_LINF, 1, EPS_LINF),
        ("PGD_LINF", "linf", EPS_LINF, STEP_LINF, STEPS, EPS_LINF),
        ("PGD_L2", "l2", EPS_L2, STEP_L2, STEPS, EPS_L2),
    ]
    for name, norm, eps, step, steps, count_eps in attacks:
        adv32, _ = attack(model32, x32, y, norm, eps, step, steps)
        adv64, margin = attack(model64, x64, y, norm, eps, step, steps)
        s32 = summarise(model32, x32, adv32, count_eps)
        s64 = summarise(model64, x64, adv64, count_eps)
        lines.append(rust_summaries(f"{prefix}_{name}", s32))
        notes.append(
            f"{prefix} {name}: float32 vs float64 summaries, worst differences {compare(s32, s64)}; "
            f"smallest non-zero |g| / max |g| over the steps (float64) {margin:.2e}"
        )
    return "\n".join(lines), notes


def main():
    x = inputs()
    print(f"// torch {torch.__version__}, python {sys.version.split()[0]}, 1 thread")
    print(f"pub(crate) const INPUT_SUM: f64 = {fmt(x.double().sum().item())};")
    print(f"pub(crate) const INPUT_ZEROS: usize = {int((x == 0).sum())};")
    print(f"pub(crate) const INPUT_ONES: usize = {int((x == 1).sum())};")
    all_notes = []
    for prefix, spec in (("MINI", MINI_CNN), ("SMALL", SMALL_CNN)):
        text, notes = report(prefix, spec, x)
        print(text)
        all_notes += notes
    for n in all_notes:
        print("// " + n, file=sys.stderr)


if __name__ == "__main__":
    main()
