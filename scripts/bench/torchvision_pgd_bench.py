"""PGD-10 on a torchvision model in PyTorch and in Warden, side by side on the same machine,
threads and images: the timing half of docs/results/torchvision-import/ (issue 4's "large models
on the CPU").

The model is torchvision's resnet18, mobilenet_v2, efficientnet_b0, mobilenet_v3_small, googlenet
or densenet121, or the fixture script's PreActResNet-18 (num_classes=10), as
scripts/reference/make_onnx_torchvision_fixture.py exports it (DIR/NAME.onnx, DIR/images.idx,
DIR/labels.idx). PyTorch runs PGD-10 (L-inf, step eps/5, no random start, input gradients only,
weights frozen, eval mode) on all the images in one batch; Warden runs `harden eval --independent`
with the same PGD, and its report's PGD seconds are read. eps is small enough that no image is
broken, so both sides run every step on every image (checked on Warden's side: the attack must
break none). Each side runs ROUNDS times, alternating; the best of each is printed.

    python3 scripts/bench/torchvision_pgd_bench.py WARDEN_BINARY DIR NAME [--threads 2] [--rounds 2] [--eps 1e-4]
"""
import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import time

import torch
from torchvision.models import densenet121, efficientnet_b0, googlenet, mobilenet_v2, mobilenet_v3_small, resnet18

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference"))
from preact_resnet import preact_resnet18  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("warden")
p.add_argument("dir")
p.add_argument("name", choices=["resnet18", "mobilenet-v2", "efficientnet-b0", "mobilenet-v3-small",
                                "googlenet", "densenet121", "preact-resnet18"])
p.add_argument("--threads", type=int, default=2)
p.add_argument("--rounds", type=int, default=2)
p.add_argument("--eps", type=float, default=1e-4)
a = p.parse_args()
torch.set_num_threads(a.threads)


def read_idx(path):
    with open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = struct.unpack(f">{dims}I", data[4:4 + 4 * dims])
    return torch.frombuffer(bytearray(data[4 + 4 * dims:]), dtype=torch.uint8).reshape(shape)


x = read_idx(f"{a.dir}/images.idx").float() / 255
n = x.shape[0]
net = {"resnet18": resnet18, "mobilenet-v2": mobilenet_v2,
       "efficientnet-b0": efficientnet_b0,
       "mobilenet-v3-small": mobilenet_v3_small, "googlenet": googlenet,
       "densenet121": densenet121, "preact-resnet18": preact_resnet18}[a.name](num_classes=10).eval()
for q in net.parameters():
    q.requires_grad_(False)
with torch.no_grad():
    y = net(x).argmax(1)
step = a.eps / 5


def torch_pgd():
    d = torch.zeros_like(x, requires_grad=True)
    for _ in range(10):
        loss = torch.nn.functional.cross_entropy(net(x + d), y)
        (g,) = torch.autograd.grad(loss, d)
        d = (d + step * g.sign()).clamp(-a.eps, a.eps)
        d = ((x + d).clamp(0, 1) - x).detach().requires_grad_(True)
    return d


def warden_pgd():
    with tempfile.TemporaryDirectory() as t:
        report = os.path.join(t, "r.json")
        subprocess.run(
            [a.warden, "harden", "eval", f"{a.dir}/{a.name}.onnx",
             "--test-images", f"{a.dir}/images.idx", "--test-labels", f"{a.dir}/labels.idx",
             "--independent", "--eps", str(a.eps), "--pgd-steps", "10", "--pgd-step", str(step),
             "--restarts", "1", "--apgd-iters", "1", "--severities", "0",
             "--threads", str(a.threads), "-o", report],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        attacks = json.load(open(report))["model"]["evaluation"]["attacks"]
    (pgd,) = [r for r in attacks if r["attack"].startswith("PGD") and r["eps"] > 0]
    assert pgd["attacked"] == n and pgd["newly_broken"] == 0, pgd
    return pgd["seconds"]


torch_pgd()  # warm-up
best = {"pytorch": float("inf"), "warden": float("inf")}
for r in range(a.rounds):
    s = time.perf_counter()
    torch_pgd()
    best["pytorch"] = min(best["pytorch"], time.perf_counter() - s)
    best["warden"] = min(best["warden"], warden_pgd())
print(f"{a.name}, {n} images of {tuple(x.shape[1:])}, PGD-10, {a.threads} threads, "
      f"torch {torch.__version__}, best of {a.rounds}:")
for k, v in best.items():
    print(f"  {k}: {v:.2f} s, {n / v:.1f} images/s")
print(f"  warden / pytorch throughput: {best['pytorch'] / best['warden']:.2f}")
