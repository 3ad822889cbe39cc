"""Makes crates/warden-harden/tests/data/resnet-mini.onnx and the reference logits pasted into
crates/warden-harden/tests/onnx_import.rs (`RESNET_LOGITS`): a small ResNet in PyTorch (a stem, a
basic block with an identity shortcut, a basic block that halves the image with a strided 1x1
convolution and batch norm on its shortcut, a global average pool and a linear head), batch norms
with non-trivial running statistics, exported in eval mode with PyTorch's TorchScript-based ONNX
exporter and constant folding off, so that the file keeps its BatchNormalization nodes (Warden
folds them itself) and its residual Adds.

Run from the repository root: /tmp/torch-venv/bin/python scripts/reference/make_onnx_resnet_fixture.py
(needs torch, onnx and onnxscript: /tmp/torch-venv/bin/pip install torch onnx onnxscript).
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (x if self.down is None else self.down(x)))


torch.manual_seed(0)
net = nn.Sequential(
    nn.Conv2d(1, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
    Block(8, 8, 1), Block(8, 16, 2),
    nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
)
# Running statistics and affine parameters away from their defaults, so that folding matters.
with torch.no_grad():
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.uniform_(0.5, 1.5)
            m.bias.uniform_(-0.2, 0.2)
net.eval()
x = torch.tensor([[0.5 + 0.5 * math.sin(0.37 * i + 1.3 * n) for i in range(784)] for n in range(3)],
                 dtype=torch.float32).reshape(3, 1, 28, 28)
torch.onnx.export(net, x, "crates/warden-harden/tests/data/resnet-mini.onnx", dynamo=False,
                  do_constant_folding=False, input_names=["x"], output_names=["logits"],
                  dynamic_axes={"x": {0: "n"}})
# The same network through PyTorch's default (torch.export-based) exporter: weights in
# resnet-mini-dynamo.onnx.data beside the model, batch norms folded by the exporter, and the
# global average pool written as a ReduceMean over the spatial axes.
torch.onnx.export(net, (x,), "crates/warden-harden/tests/data/resnet-mini-dynamo.onnx", dynamo=True,
                  input_names=["x"], output_names=["logits"],
                  dynamic_shapes=({0: torch.export.Dim("n")},))
with torch.no_grad():
    logits = net(x).double()
print(f"// torch {torch.__version__}")
print("const RESNET_LOGITS: [[f64; 10]; 3] = [")
for row in logits.tolist():
    print("    [" + ", ".join(f"{v:.9e}" for v in row) + "],")
print("];")
