"""PyTorch reference for Warden's budgeted hardening recipe (scripts/harden-fmnist.sh full).

Trains the same network (wk-wide: conv 1->32 4x4 stride 2 pad 1, ReLU, conv 32->64 4x4 stride 2
pad 1, ReLU, flatten, linear 3136->200, ReLU, linear 200->10; PyTorch's default initialisation,
which is Warden's) with the same recipe: PGD-7 adversarial training at L-inf eps 0.1 (uniform
random start, step 0.025, the last iterate), eps and step warmed up linearly over the first 4
epochs, Adam lr 2e-3 with a per-step half-cosine to zero, batch 128, 26 epochs, on the training set
less 100 images per class held out (as Warden holds them out for validation; here they are unused).
The last epoch is written.

It writes OUT/model.safetensors (the nn.Sequential names and layouts Warden reads) and
OUT/arch.json, so that Warden's own evaluation runs on the PyTorch model unchanged:

  python3 scripts/bench/torch_fmnist_harden.py OUT --threads 2
  target/release/warden harden eval OUT --eps 0.1 --pgd-steps 50 --pgd-step 0.01 --restarts 5 \\
      --apgd-iters 100 --apgd-restarts 1 --severities 0 -o OUT.json --md OUT.md
"""
import argparse
import json
import math
import os
import struct
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from torch_fmnist_bench import load  # the IDX reader of the speed benchmark, beside this file


def wk_wide():
    return nn.Sequential(
        nn.Conv2d(1, 32, 4, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 64, 4, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(64 * 7 * 7, 200),
        nn.ReLU(),
        nn.Linear(200, 10),
    )


ARCH = {
    "name": "wk-wide",
    "input": [1, 28, 28],
    "classes": 10,
    "layers": [
        {"type": "conv2d", "in_channels": 1, "out_channels": 32, "kernel": 4, "padding": 1, "stride": 2},
        {"type": "relu"},
        {"type": "conv2d", "in_channels": 32, "out_channels": 64, "kernel": 4, "padding": 1, "stride": 2},
        {"type": "relu"},
        {"type": "flatten"},
        {"type": "linear", "in_features": 3136, "out_features": 200},
        {"type": "relu"},
        {"type": "linear", "in_features": 200, "out_features": 10},
    ],
}


def pgd_train_points(net, x, y, eps, step, steps):
    """Uniform start in the eps-ball, `steps` signed steps, the last iterate (input gradients only)."""
    xa = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0, 1)
    for _ in range(steps):
        xa.requires_grad_(True)
        loss = F.cross_entropy(net(xa), y)
        (g,) = torch.autograd.grad(loss, [xa])
        xa = torch.min(torch.max(xa.detach() + step * g.sign(), x - eps), x + eps).clamp(0, 1)
    return xa.detach()


def save_safetensors(path, tensors):
    header, offset, blobs = {}, 0, []
    for name, t in tensors.items():
        data = t.detach().cpu().contiguous().numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--epochs", type=int, default=26)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, help="train on this many images only (a smoke test)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    x, y = load("train")
    rng = np.random.default_rng(a.seed)
    held = np.concatenate([rng.permutation(np.flatnonzero(y.numpy() == c))[:100] for c in range(10)])
    keep = np.setdiff1d(np.arange(len(y)), held)
    x, y = x[keep][: a.limit], y[keep][: a.limit]
    net = wk_wide()
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    eps, step, steps, warmup, bs = 0.1, 0.025, 7, 4, 128
    batches = math.ceil(len(y) / bs)
    total = batches * a.epochs
    start = time.time()
    for epoch in range(a.epochs):
        scale = min(1.0, (epoch + 1) / warmup)
        order = torch.randperm(len(y))
        correct = seen = 0
        for b in range(batches):
            t = (epoch * batches + b) / total
            for group in opt.param_groups:
                group["lr"] = 2e-3 * 0.5 * (1 + math.cos(math.pi * t))
            idx = order[b * bs:(b + 1) * bs]
            xb, yb = x[idx], y[idx]
            xa = pgd_train_points(net, xb, yb, eps * scale, step * scale, steps)
            out = net(xa)
            loss = F.cross_entropy(out, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            correct += (out.argmax(1) == yb).sum().item()
            seen += len(yb)
        print(f"epoch {epoch + 1}: eps {eps * scale:.3f}, adversarial training accuracy "
              f"{correct / seen:.4f}, {time.time() - start:.0f} s", flush=True)
    os.makedirs(a.out, exist_ok=True)
    save_safetensors(os.path.join(a.out, "model.safetensors"),
                     {name: t for name, t in net.state_dict().items()})
    with open(os.path.join(a.out, "arch.json"), "w") as f:
        json.dump(ARCH, f, indent=2)
    print(f"wrote {a.out}: {a.epochs} epochs in {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
