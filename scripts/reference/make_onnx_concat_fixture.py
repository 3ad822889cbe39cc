"""Makes crates/warden-harden/tests/data/inception-mini.onnx, inception-mini-dynamo.onnx (+ .data)
and the reference logits pasted into crates/warden-harden/tests/onnx_import.rs
(`INCEPTION_LOGITS`): a small network of torchvision's own multi-branch parts. A convolution and
ReLU; a 3x3 stride-2 max pool in ceil mode (28 -> 14, where floor mode gives 13); SqueezeNet's
`Fire` module (a 1x1 squeeze, then 1x1 and 3x3 expansions side by side); another ceil-mode pool
(14 -> 7); GoogLeNet's `Inception` block (four branches: 1x1; 1x1 then 3x3; 1x1 then 3x3; a
3x3 stride-1 ceil-mode max pool then 1x1, every convolution with its batch norm); a global
average pool and a linear head. Batch norms carry non-trivial running statistics. Exported in
eval mode with both of PyTorch's exporters; ONNX writes each block as a value read by several
branches that meet in one Concat over the channels.

Run from the repository root: /tmp/torch-venv/bin/python scripts/reference/make_onnx_concat_fixture.py
(needs torch, torchvision, onnx and onnxscript).
"""
import math

import torch
import torch.nn as nn
from torchvision.models.googlenet import Inception
from torchvision.models.squeezenet import Fire

torch.manual_seed(0)
net = nn.Sequential(
    nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(),
    nn.MaxPool2d(3, stride=2, ceil_mode=True),
    Fire(8, 4, 6, 6),
    nn.MaxPool2d(3, stride=2, ceil_mode=True),
    Inception(12, 4, 4, 6, 2, 3, 3),
    nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
)
with torch.no_grad():
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.005, 0.02)
            m.weight.uniform_(0.5, 1.5)
            m.bias.uniform_(-0.2, 0.2)
net.eval()
x = torch.tensor([[0.5 + 0.5 * math.sin(0.37 * i + 1.3 * n) for i in range(784)] for n in range(3)],
                 dtype=torch.float32).reshape(3, 1, 28, 28)
torch.onnx.export(net, x, "crates/warden-harden/tests/data/inception-mini.onnx", dynamo=False,
                  do_constant_folding=False, input_names=["x"], output_names=["logits"],
                  dynamic_axes={"x": {0: "n"}})
torch.onnx.export(net, (x,), "crates/warden-harden/tests/data/inception-mini-dynamo.onnx",
                  dynamo=True, input_names=["x"], output_names=["logits"],
                  dynamic_shapes=({0: torch.export.Dim("n")},))
with torch.no_grad():
    logits = net(x).double()
print(f"// torch {torch.__version__}")
print("const INCEPTION_LOGITS: [[f64; 10]; 3] = [")
for row in logits.tolist():
    print("    [" + ", ".join(f"{v:.9e}" for v in row) + "],")
print("];")
