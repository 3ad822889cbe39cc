"""Makes crates/warden-harden/tests/data/se-mini.onnx, se-mini-dynamo.onnx (+ .data), mv3-mini.onnx,
mv3-mini-dynamo.onnx (+ .data) and the reference logits pasted into
crates/warden-harden/tests/onnx_import.rs (`SE_LOGITS`, `MV3_LOGITS`). se-mini is a small
EfficientNet in PyTorch, written as torchvision writes its parts. A stem (convolution, batch norm,
SiLU); an MBConv block with a residual connection (pointwise expansion, depthwise convolution,
squeeze-and-excitation, pointwise projection, batch norms after each convolution); a strided
MBConv block without one, so that its squeeze-and-excitation gate sits outside any residual
block; a pointwise head, a global average pool, dropout and a linear layer. Batch norms carry
non-trivial running statistics. Exported in eval mode with both of PyTorch's exporters.

Squeeze-and-excitation is torchvision's `SqueezeExcitation`: `scale * x`, where `scale` is
sigmoid(fc2(SiLU(fc1(avgpool(x))))) with 1×1 convolutions; in ONNX a Mul of the block's input
and a value computed from it, which Warden imports as a gate.

Run from the repository root: /tmp/torch-venv/bin/python scripts/reference/make_onnx_gate_fixture.py
(needs torch, onnx and onnxscript: /tmp/torch-venv/bin/pip install torch onnx onnxscript).
"""
import math

import torch
import torch.nn as nn


class SqueezeExcitation(nn.Module):
    def __init__(self, c, squeeze):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(c, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, c, 1)
        self.activation = nn.SiLU()
        self.scale_activation = nn.Sigmoid()

    def forward(self, x):
        scale = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
        return scale * x


def conv_bn(cin, cout, k, stride=1, groups=1, act=True):
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act:
        layers.append(nn.SiLU())
    return layers


class MBConv(nn.Module):
    def __init__(self, cin, cout, expand, stride):
        super().__init__()
        mid = cin * expand
        self.residual = stride == 1 and cin == cout
        self.block = nn.Sequential(
            *conv_bn(cin, mid, 1),
            *conv_bn(mid, mid, 3, stride, groups=mid),
            SqueezeExcitation(mid, max(1, cin // 4)),
            *conv_bn(mid, cout, 1, act=False),
        )

    def forward(self, x):
        out = self.block(x)
        return x + out if self.residual else out


torch.manual_seed(0)
net = nn.Sequential(
    *conv_bn(1, 8, 3, 2),
    MBConv(8, 8, 2, 1),
    MBConv(8, 16, 2, 2),
    *conv_bn(16, 32, 1),
    nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(32, 10),
)
with torch.no_grad():
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            # Small variances amplify: the examples' logits stay apart after six convolutions.
            m.running_var.uniform_(0.02, 0.1)
            m.weight.uniform_(0.5, 1.5)
            m.bias.uniform_(-0.2, 0.2)
        if isinstance(m, SqueezeExcitation):
            # Gates away from one half, so that a wrong gate shows in the logits.
            m.fc2.bias.uniform_(-2.0, 2.0)
net.eval()
x = torch.tensor([[0.5 + 0.5 * math.sin(0.37 * i + 1.3 * n) for i in range(784)] for n in range(3)],
                 dtype=torch.float32).reshape(3, 1, 28, 28)
torch.onnx.export(net, x, "crates/warden-harden/tests/data/se-mini.onnx", dynamo=False,
                  do_constant_folding=False, input_names=["x"], output_names=["logits"],
                  dynamic_axes={"x": {0: "n"}})
torch.onnx.export(net, (x,), "crates/warden-harden/tests/data/se-mini-dynamo.onnx", dynamo=True,
                  input_names=["x"], output_names=["logits"],
                  dynamic_shapes=({0: torch.export.Dim("n")},))


def print_logits(net, name):
    with torch.no_grad():
        logits = net(x).double()
    print(f"// torch {torch.__version__}")
    print(f"const {name}: [[f64; 10]; 3] = [")
    for row in logits.tolist():
        print("    [" + ", ".join(f"{v:.9e}" for v in row) + "],")
    print("];")


print_logits(net, "SE_LOGITS")

# MobileNet V3 in small, from torchvision's own parts: a hard-swish stem, an InvertedResidual
# with ReLU, a strided depthwise convolution and squeeze-and-excitation gated by a hard sigmoid,
# one with hard swish and a 5x5 depthwise convolution (its identity shortcut), the last 1x1
# convolution, and the classifier (linear, hard swish, dropout, linear). The TorchScript export
# is written at opset 13, before ONNX's HardSwish: hard swish is `x * HardSigmoid(x)` there; the
# default exporter writes HardSwish nodes.
from functools import partial

from torchvision.models.mobilenetv3 import InvertedResidual, InvertedResidualConfig
from torchvision.ops.misc import Conv2dNormActivation

torch.manual_seed(0)
norm = partial(nn.BatchNorm2d, eps=0.001, momentum=0.01)
mv3 = nn.Sequential(
    Conv2dNormActivation(1, 16, 3, stride=2, norm_layer=norm, activation_layer=nn.Hardswish),
    InvertedResidual(InvertedResidualConfig(16, 3, 16, 16, True, "RE", 2, 1, 1.0), norm),
    InvertedResidual(InvertedResidualConfig(16, 5, 48, 16, True, "HS", 1, 1, 1.0), norm),
    Conv2dNormActivation(16, 32, 1, norm_layer=norm, activation_layer=nn.Hardswish),
    nn.AdaptiveAvgPool2d(1), nn.Flatten(),
    nn.Linear(32, 24), nn.Hardswish(), nn.Dropout(0.2), nn.Linear(24, 10),
)
with torch.no_grad():
    for m in mv3.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.02, 0.1)
            m.weight.uniform_(0.5, 1.5)
            m.bias.uniform_(-0.2, 0.2)
mv3.eval()
torch.onnx.export(mv3, x, "crates/warden-harden/tests/data/mv3-mini.onnx", dynamo=False,
                  opset_version=13, do_constant_folding=False, input_names=["x"],
                  output_names=["logits"], dynamic_axes={"x": {0: "n"}})
torch.onnx.export(mv3, (x,), "crates/warden-harden/tests/data/mv3-mini-dynamo.onnx", dynamo=True,
                  input_names=["x"], output_names=["logits"],
                  dynamic_shapes=({0: torch.export.Dim("n")},))
print_logits(mv3, "MV3_LOGITS")
