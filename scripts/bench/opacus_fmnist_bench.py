"""Opacus baseline for DP-SGD on the same network, batch and machine as `warden bench harden
--what dp`: the small CNN of torch_fmnist_bench.py, Poisson sampling with expected batch 256,
max_grad_norm 1.0, noise multiplier 1.0, Adam lr 1e-3, one epoch of Fashion-MNIST (60,000 images).
Prints images/s and the process's peak resident memory.

Usage: /tmp/torch-venv/bin/python scripts/bench/opacus_fmnist_bench.py [--threads 2]
(needs torch, numpy and opacus: /tmp/torch-venv/bin/pip install torch numpy opacus).
"""
import argparse
import gzip
import resource
import time

import numpy as np
import torch
import torch.nn as nn
from opacus import PrivacyEngine

D = "/usr/share/datasets/fashion-mnist"


def load(prefix):
    with gzip.open(f"{D}/{prefix}-images-idx3-ubyte.gz") as f:
        img = np.frombuffer(f.read(), np.uint8, offset=16)
    with gzip.open(f"{D}/{prefix}-labels-idx1-ubyte.gz") as f:
        lab = np.frombuffer(f.read(), np.uint8, offset=8)
    return torch.from_numpy(img.astype(np.float32) / 255.0).reshape(-1, 1, 28, 28), torch.from_numpy(lab.astype(np.int64))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=256)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    xtr, ytr = load("train")
    xte, yte = load("t10k")
    net = nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3), nn.ReLU(),
                        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(1600, 128), nn.ReLU(), nn.Linear(128, 10))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(xtr, ytr), batch_size=a.batch)
    engine = PrivacyEngine(accountant="rdp")
    net, opt, loader = engine.make_private(module=net, optimizer=opt, data_loader=loader,
                                           noise_multiplier=1.0, max_grad_norm=1.0, poisson_sampling=True)
    crit = nn.CrossEntropyLoss()
    seen = 0
    t0 = time.perf_counter()
    for x, y in loader:
        opt.zero_grad(set_to_none=True)
        loss = crit(net(x), y)
        loss.backward()
        opt.step()
        seen += len(y)
    secs = time.perf_counter() - t0
    with torch.no_grad():
        acc = (net(xte).argmax(1) == yte).float().mean().item()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    eps = engine.get_epsilon(1e-5)
    print(f"RESULT opacus {__import__('opacus').__version__} dp_train: {seen} imgs in {secs:.2f}s => {seen / secs:.1f} img/s; "
          f"test acc {acc:.4f}; epsilon {eps:.3f} at delta 1e-5; peak RSS {peak:.0f} MiB")


if __name__ == "__main__":
    main()
