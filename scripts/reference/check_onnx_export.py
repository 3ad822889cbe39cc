"""Checks a Warden ONNX export with the onnx checker and onnxruntime, and against the same weights
loaded into PyTorch from the model directory's safetensors file, in the nn.Sequential that the
directory's arch.json describes (any Warden architecture: strides, paddings, activations, pools,
residual blocks as a module with `body` and `shortcut` nn.Sequentials, gates as a module with a
`body` nn.Sequential whose forward is `x * self.body(x)`, concatenations as a module with an
nn.ModuleList `branches` whose forward is `torch.cat([b(x) for b in self.branches], 1)`, affine
layers as a module with `weight` and `bias` of one value per channel).

Usage: /tmp/torch-venv/bin/python scripts/reference/check_onnx_export.py MODEL_DIR MODEL.onnx [IMAGES.idx]
(needs torch, onnx, onnxruntime, safetensors in that venv). The inputs are the first 1,000 of
Fashion-MNIST's test images, or of IMAGES.idx (unsigned bytes, N x H x W or N x C x H x W, read
as v / 255, as `warden harden eval --test-images` reads them).
"""
import gzip
import json
import sys

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn as nn
from safetensors.torch import load_file

model_dir, path = sys.argv[1], sys.argv[2]
onnx.checker.check_model(onnx.load(path))
if len(sys.argv) > 3:
    raw = open(sys.argv[3], "rb").read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(raw[3])]
    shape = dims if len(dims) == 4 else [dims[0], 1] + dims[1:]
    x = np.frombuffer(raw, np.uint8, offset=4 + 4 * len(dims)).reshape(shape)[:1000]
    x = x.astype(np.float32) / 255.0
else:
    with gzip.open("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz") as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16).astype(np.float32).reshape(-1, 1, 28, 28)[:1000] / 255.0
ours = ort.InferenceSession(path).run(["logits"], {"x": x})[0]


class Residual(nn.Module):
    """Warden's residual layer: body(x) + shortcut(x), an empty shortcut being the identity."""

    def __init__(self, body, shortcut):
        super().__init__()
        self.body = nn.Sequential(*body)
        self.shortcut = nn.Sequential(*shortcut)

    def forward(self, x):
        return self.body(x) + self.shortcut(x)


class Gate(nn.Module):
    """Warden's gate layer: x * body(x) (squeeze-and-excitation)."""

    def __init__(self, body):
        super().__init__()
        self.body = nn.Sequential(*body)

    def forward(self, x):
        return x * self.body(x)


class Concat(nn.Module):
    """Warden's concat layer: its branches' outputs side by side along the channels."""

    def __init__(self, branches):
        super().__init__()
        self.branches = nn.ModuleList(nn.Sequential(*b) for b in branches)

    def forward(self, x):
        return torch.cat([b(x) for b in self.branches], 1)


class Affine(nn.Module):
    """Warden's affine layer: x * weight + bias per channel (an inference batch norm, folded)."""

    def __init__(self, channels):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x):
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return x * self.weight.view(shape) + self.bias.view(shape)


def module(layer):
    t = layer["type"]
    if t == "affine":
        return Affine(layer["channels"])
    if t == "concat":
        return Concat([[module(l) for l in b] for b in layer["branches"]])
    if t == "gate":
        return Gate([module(l) for l in layer["body"]])
    if t == "residual":
        return Residual([module(l) for l in layer["body"]], [module(l) for l in layer.get("shortcut", [])])
    if t == "avg_pool2d":
        return nn.AvgPool2d(layer["kernel"], stride=layer.get("stride"))
    if t == "global_avg_pool":
        return nn.AdaptiveAvgPool2d(1)
    if t == "conv2d":
        return nn.Conv2d(layer["in_channels"], layer["out_channels"], layer["kernel"],
                         stride=layer.get("stride", 1), padding=layer.get("padding", 0),
                         groups=layer.get("groups", 1))
    if t == "max_pool2d":
        return nn.MaxPool2d(layer["kernel"], stride=layer.get("stride"), padding=layer.get("padding", 0),
                            ceil_mode=layer.get("ceil_mode", False))
    if t == "linear":
        return nn.Linear(layer["in_features"], layer["out_features"])
    return {"relu": nn.ReLU, "relu6": nn.ReLU6, "tanh": nn.Tanh, "elu": nn.ELU, "silu": nn.SiLU,
            "sigmoid": nn.Sigmoid, "hard_sigmoid": nn.Hardsigmoid, "hard_swish": nn.Hardswish,
            "flatten": nn.Flatten}[t]()


with open(f"{model_dir}/arch.json") as f:
    net = nn.Sequential(*[module(layer) for layer in json.load(f)["layers"]])
net.load_state_dict(load_file(f"{model_dir}/model.safetensors"))
with torch.no_grad():
    theirs = net(torch.from_numpy(x)).numpy()
print(f"onnx checker: ok; onnxruntime {ort.__version__} vs PyTorch {torch.__version__} on {len(x)} test images: "
      f"max |Δlogit| {np.abs(ours - theirs).max():.2e}, same predictions: {(ours.argmax(1) == theirs.argmax(1)).mean():.4f}")
