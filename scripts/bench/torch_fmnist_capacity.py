"""Does capacity and length lift the robust plateau on Fashion-MNIST? A GPU probe for issue 4.

Every network that Warden's CPU engine trains inside the 15-minute budget lands near 76% robust
accuracy at L-inf eps 0.1 under the acceptance cascade (docs/results/fmnist-levers/). This script
asks whether deeper and wider networks, trained for as long as a GPU affords, do better. It trains
networks that Warden's architecture JSON can describe (plain stacks of 3x3 convolutions, ReLU,
max-pooling and linear layers), so Warden's own evaluation can score them unchanged:

  python3 scripts/bench/torch_fmnist_capacity.py OUT --arch vgg-l --method pgd --budget 400
  target/release/warden harden eval OUT --eps 0.1 --pgd-steps 50 --pgd-step 0.01 --restarts 5 \\
      --apgd-iters 100 --apgd-restarts 1 --severities 0 --limit 1000 -o OUT.json

Recipe: PGD-AT (Madry; uniform start, signed steps, the last iterate) or TRADES (Zhang et al.
2019; KL inner maximisation from a small Gaussian start, beta 6); eps and step warmed up
linearly over the first 15% of epochs; Adam with a per-step half-cosine to zero (or SGD with
momentum 0.9 and weight decay 5e-4); batch 128; bf16 autocast for the training passes only
(weights, validation and test in fp32). 100 training images per class are held out; after each
epoch the model is scored there with PGD-10 (step eps/4, random start), and the best epoch is
written (as Warden selects). With --budget SECONDS, 30 timed training steps on a throwaway copy
fix the number of epochs before training starts (at most --epochs); the count is printed and
recorded, so `--epochs N` without --budget repeats the run. A run still training at 1.3x its
budget stops there (said in the log) and writes its best epoch so far.

It writes OUT/model.safetensors (nn.Sequential's names and layouts, which Warden reads),
OUT/arch.json, and OUT/summary.json (recipe, per-epoch history, and a quick screen on the whole
test set: clean accuracy and PGD-50 step 0.01, one random start, which bounds the cascade's
robust figure from above).
"""
import argparse
import copy
import json
import math
import os
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# The IDX reader of the speed benchmark and the safetensors writer of the CPU reference, beside
# this file.
from torch_fmnist_bench import load
from torch_fmnist_harden import save_safetensors


def conv(i, o):
    return {"type": "conv2d", "in_channels": i, "out_channels": o, "kernel": 3, "padding": 1}


RELU, POOL, FLAT = {"type": "relu"}, {"type": "max_pool2d", "kernel": 2}, {"type": "flatten"}


def linear(i, o):
    return {"type": "linear", "in_features": i, "out_features": o}


ARCHES = {
    # wk-wide: the budgeted network (two 4x4 stride-2 convolutions); the control.
    "wk-wide": [
        {"type": "conv2d", "in_channels": 1, "out_channels": 32, "kernel": 4, "padding": 1, "stride": 2},
        RELU,
        {"type": "conv2d", "in_channels": 32, "out_channels": 64, "kernel": 4, "padding": 1, "stride": 2},
        RELU, FLAT, linear(3136, 200), RELU, linear(200, 10),
    ],
    # vgg-fm: three 3x3 convolutions, 13x wk-wide's multiply-adds (docs/results/gpu-h100/).
    "vgg-fm": [conv(1, 32), RELU, conv(32, 64), RELU, POOL, conv(64, 128), RELU, POOL, FLAT,
               linear(6272, 256), RELU, linear(256, 10)],
    # vgg-l: five 3x3 convolutions in three stages, about 38x wk-wide's multiply-adds.
    "vgg-l": [conv(1, 64), RELU, conv(64, 64), RELU, POOL, conv(64, 128), RELU, conv(128, 128), RELU,
              POOL, conv(128, 256), RELU, POOL, FLAT, linear(2304, 256), RELU, linear(256, 10)],
}


def build(layers):
    mods = []
    for l in layers:
        t = l["type"]
        if t == "conv2d":
            mods.append(nn.Conv2d(l["in_channels"], l["out_channels"], l["kernel"],
                                  stride=l.get("stride", 1), padding=l.get("padding", 0)))
        elif t == "relu":
            mods.append(nn.ReLU())
        elif t == "max_pool2d":
            mods.append(nn.MaxPool2d(l["kernel"]))
        elif t == "flatten":
            mods.append(nn.Flatten())
        elif t == "linear":
            mods.append(nn.Linear(l["in_features"], l["out_features"]))
        else:
            raise ValueError(t)
    return nn.Sequential(*mods)


def project(xa, x, eps):
    return torch.min(torch.max(xa, x - eps), x + eps).clamp(0, 1)


def pgd(net, x, y, eps, step, steps, amp):
    """Uniform start, `steps` signed steps on the cross-entropy, the last iterate."""
    xa = project(x + torch.empty_like(x).uniform_(-eps, eps), x, eps)
    for _ in range(steps):
        xa.requires_grad_(True)
        with torch.autocast("cuda", torch.bfloat16, enabled=amp):
            loss = F.cross_entropy(net(xa).float(), y)
        (g,) = torch.autograd.grad(loss, [xa])
        xa = project(xa.detach() + step * g.sign(), x, eps)
    return xa.detach()


def trades_points(net, x, eps, step, steps, amp):
    """TRADES' inner maximisation: KL(f(x) || f(x')) from x + 0.001 N(0, 1), signed steps."""
    with torch.no_grad(), torch.autocast("cuda", torch.bfloat16, enabled=amp):
        p = F.softmax(net(x).float(), 1)
    xa = project(x + 0.001 * torch.randn_like(x), x, eps)
    for _ in range(steps):
        xa.requires_grad_(True)
        with torch.autocast("cuda", torch.bfloat16, enabled=amp):
            loss = F.kl_div(F.log_softmax(net(xa).float(), 1), p, reduction="sum")
        (g,) = torch.autograd.grad(loss, [xa])
        xa = project(xa.detach() + step * g.sign(), x, eps)
    return xa.detach()


def train_step(net, opt, a, xb, yb, eps, step, amp):
    net.eval()  # no dropout or batch norm here; kept for clarity
    if a.method == "pgd":
        xa = pgd(net, xb, yb, eps, step, a.steps, amp)
        net.train()
        with torch.autocast("cuda", torch.bfloat16, enabled=amp):
            out = net(xa).float()
        loss = F.cross_entropy(out, yb)
    else:
        xa = trades_points(net, xb, eps, step, a.steps, amp)
        net.train()
        with torch.autocast("cuda", torch.bfloat16, enabled=amp):
            clean = net(xb).float()
            out = net(xa).float()
        loss = F.cross_entropy(clean, yb) + a.beta * F.kl_div(
            F.log_softmax(out, 1), F.softmax(clean, 1), reduction="batchmean")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return (out.argmax(1) == yb).sum().item()


def accuracy(net, x, y, eps=0.0, step=0.0, steps=0, bs=1000):
    net.eval()
    correct = 0
    for i in range(0, len(y), bs):
        xb, yb = x[i:i + bs], y[i:i + bs]
        if steps:
            xb = pgd(net, xb, yb, eps, step, steps, False)
        with torch.no_grad():
            correct += (net(xb).argmax(1) == yb).sum().item()
    return correct / len(y)


def make_opt(a, net):
    if a.optimizer == "adam":
        return torch.optim.Adam(net.parameters(), lr=a.lr)
    return torch.optim.SGD(net.parameters(), lr=a.lr, momentum=0.9, weight_decay=5e-4)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--arch", choices=sorted(ARCHES), default="vgg-l")
    p.add_argument("--method", choices=["pgd", "trades"], default="pgd")
    p.add_argument("--eps", type=float, default=0.1)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--step", type=float, default=0.025)
    p.add_argument("--beta", type=float, default=6.0)
    p.add_argument("--optimizer", choices=["adam", "sgd"], default="adam")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--epochs", type=int, default=60, help="the count, or the most --budget may pick")
    p.add_argument("--budget", type=float, help="seconds of training: picks the epoch count")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--no-amp", action="store_true", help="train in fp32 throughout")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda", help="cuda, or cpu for a smoke test")
    p.add_argument("--limit", type=int, help="train and test on this many images (a smoke test)")
    p.add_argument("--data", default=os.environ.get("WARDEN_FASHION_MNIST",
                                                    "/usr/share/datasets/fashion-mnist"))
    a = p.parse_args()
    dev = torch.device(a.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    amp = not a.no_amp and dev.type == "cuda"
    torch.manual_seed(a.seed)
    x, y = load("train", a.data)
    xt, yt = load("t10k", a.data)
    rng = np.random.default_rng(a.seed)
    held = np.concatenate([rng.permutation(np.flatnonzero(y.numpy() == c))[:100] for c in range(10)])
    keep = np.setdiff1d(np.arange(len(y)), held)
    xv, yv = x[held].to(dev), y[held].to(dev)
    x, y = x[keep][: a.limit].to(dev), y[keep][: a.limit].to(dev)
    xt, yt = xt[: a.limit].to(dev), yt[: a.limit].to(dev)
    layers = ARCHES[a.arch]
    net = build(layers).to(dev)
    params = sum(t.numel() for t in net.parameters())
    batches = len(y) // a.batch  # the last partial batch is dropped
    epochs = a.epochs
    if a.budget:
        probe = copy.deepcopy(net)
        popt = make_opt(a, probe)
        for i in range(35):
            if i == 5:
                sync()
                t0 = time.time()
            idx = torch.randint(0, len(y), (a.batch,), device=dev)
            train_step(probe, popt, a, x[idx], y[idx], a.eps, a.step, amp)
        sync()
        per_step = (time.time() - t0) / 30
        epochs = max(1, min(a.epochs, int(a.budget / (per_step * batches * 1.08))))
        del probe, popt
        print(f"{a.arch} {a.method}: {per_step * 1e3:.1f} ms a step, so {epochs} epochs "
              f"(budget {a.budget:.0f} s)", flush=True)
    warmup = max(1, math.ceil(0.15 * epochs))
    opt = make_opt(a, net)
    total = batches * epochs
    history, best, best_state = [], -1.0, None
    start = time.time()
    for epoch in range(epochs):
        if a.budget and time.time() - start > 1.3 * a.budget:
            print(f"stopped after {epoch} of {epochs} epochs: past 1.3x the budget", flush=True)
            break
        scale = min(1.0, (epoch + 1) / warmup)
        order = torch.randperm(len(y), device=dev)
        correct = 0
        for b in range(batches):
            t = (epoch * batches + b) / total
            for group in opt.param_groups:
                group["lr"] = a.lr * 0.5 * (1 + math.cos(math.pi * t))
            idx = order[b * a.batch:(b + 1) * a.batch]
            correct += train_step(net, opt, a, x[idx], y[idx], a.eps * scale, a.step * scale, amp)
        val_clean = accuracy(net, xv, yv)
        val_rob = accuracy(net, xv, yv, a.eps, a.eps / 4, 10)
        rec = {"epoch": epoch + 1, "eps": a.eps * scale, "train_adv_acc": correct / (batches * a.batch),
               "val_clean": val_clean, "val_pgd10": val_rob, "seconds": time.time() - start}
        history.append(rec)
        if scale == 1.0 and val_rob > best:
            best, best_state, rec["selected"] = val_rob, copy.deepcopy(net.state_dict()), True
        print(json.dumps(rec), flush=True)
    train_s = time.time() - start
    net.load_state_dict(best_state)
    sel = max((h for h in history if h.get("selected")), key=lambda h: h["val_pgd10"])
    torch.manual_seed(a.seed + 1)
    test_clean = accuracy(net, xt, yt)
    test_pgd50 = accuracy(net, xt, yt, a.eps, 0.01, 50)
    os.makedirs(a.out, exist_ok=True)
    save_safetensors(os.path.join(a.out, "model.safetensors"), net.state_dict())
    with open(os.path.join(a.out, "arch.json"), "w") as f:
        json.dump({"name": a.arch, "input": [1, 28, 28], "classes": 10, "layers": layers}, f, indent=1)
    summary = {"recipe": vars(a) | {"epochs": epochs, "warmup_epochs": warmup, "amp_bf16": amp},
               "parameters": params, "device": torch.cuda.get_device_name(0) if dev.type == "cuda" else "cpu",
               "torch": torch.__version__, "train_seconds": train_s, "selected_epoch": sel["epoch"],
               "test_clean": test_clean, "test_pgd50_1restart": test_pgd50, "history": history}
    with open(os.path.join(a.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(f"RESULT {a.arch} {a.method} {a.optimizer}: {epochs} epochs in {train_s:.0f} s, "
          f"selected {sel['epoch']}; test clean {test_clean:.4f}, PGD-50 {test_pgd50:.4f}", flush=True)


if __name__ == "__main__":
    main()
