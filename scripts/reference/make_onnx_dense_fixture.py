"""Makes crates/warden-harden/tests/data/dense-mini.onnx, dense-mini-dynamo.onnx (+ .data) and
the reference logits pasted into crates/warden-harden/tests/onnx_import.rs (`DENSE_LOGITS`): a
small network of the two families whose batch norms no convolution precedes.

- Two pre-activation residual blocks (He et al. 2016, "Identity mappings in deep residual
  networks"; the block of the PreActResNet-18 that adversarial-training papers and RobustBench
  use): `bn, relu, conv, bn, relu, conv` plus the shortcut. The first changes width and stride,
  and its 1x1 shortcut reads the block's first `relu(bn(x))`, as in that code; the second's
  shortcut is the identity of `x`.
- torchvision's own DenseNet parts: a `_DenseBlock` of three layers (each `bn, relu, 1x1 conv,
  bn, relu, 3x3 conv` on the concatenation of the block's input and every earlier layer's
  output) and a `_Transition` (`bn, relu, 1x1 conv, 2x2 average pool`).
- DenseNet's head: `bn, relu`, a global average pool and a linear layer.

Batch norms carry non-trivial statistics. Exported in eval mode with both of PyTorch's exporters:
the TorchScript one writes a Concat of the block's input alone before the first dense layer,
the dynamo one leaves it out.

Run from the repository root: /tmp/torch-venv/bin/python scripts/reference/make_onnx_dense_fixture.py
(needs torch, torchvision, onnx and onnxscript).
"""
import math

import torch
import torch.nn as nn
from torchvision.models.densenet import _DenseBlock, _Transition

from preact_resnet import PreActBlock


torch.manual_seed(0)
net = nn.Sequential(
    nn.Conv2d(1, 8, 3, padding=1, bias=False),
    PreActBlock(8, 16, 2),
    PreActBlock(16, 16, 1),
    _DenseBlock(num_layers=3, num_input_features=16, bn_size=2, growth_rate=4, drop_rate=0),
    _Transition(28, 14),
    nn.BatchNorm2d(14), nn.ReLU(),
    nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(14, 10),
)
with torch.no_grad():
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.05, 0.2)
            m.weight.uniform_(0.5, 1.5)
            m.bias.uniform_(-0.2, 0.2)
net.eval()
x = torch.tensor([[0.5 + 0.5 * math.sin(0.37 * i + 1.3 * n) for i in range(784)] for n in range(3)],
                 dtype=torch.float32).reshape(3, 1, 28, 28)
torch.onnx.export(net, x, "crates/warden-harden/tests/data/dense-mini.onnx", dynamo=False,
                  do_constant_folding=False, input_names=["x"], output_names=["logits"],
                  dynamic_axes={"x": {0: "n"}})
torch.onnx.export(net, (x,), "crates/warden-harden/tests/data/dense-mini-dynamo.onnx",
                  dynamo=True, input_names=["x"], output_names=["logits"],
                  dynamic_shapes=({0: torch.export.Dim("n")},))
with torch.no_grad():
    logits = net(x).double()
print(f"// torch {torch.__version__}")
print("const DENSE_LOGITS: [[f64; 10]; 3] = [")
for row in logits.tolist():
    print("    [" + ", ".join(f"{v:.9e}" for v in row) + "],")
print("];")
