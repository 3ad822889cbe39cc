"""Makes crates/warden-harden/tests/data/silu-mini.onnx, silu-mini-dynamo.onnx (+ .data) and the
reference logits pasted into crates/warden-harden/tests/onnx_import.rs (`SILU_LOGITS`): a small
network with PyTorch's nn.SiLU after the stem, inside a residual block's body (between its two
convolutions) and before the head, exported in eval mode with both of PyTorch's exporters. ONNX
has no SiLU operator: both write it as Sigmoid(x) and a Mul of x and that Sigmoid, a value read
by two nodes that Warden recognises as SiLU, inside a residual branch as well as outside.

Run from the repository root: /tmp/torch-venv/bin/python scripts/reference/make_onnx_silu_fixture.py
(needs torch, onnx and onnxscript: /tmp/torch-venv/bin/pip install torch onnx onnxscript).
"""
import math

import torch
import torch.nn as nn


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, 1, 1)
        self.act = nn.SiLU()
        self.conv2 = nn.Conv2d(c, c, 3, 1, 1)

    def forward(self, x):
        return x + self.conv2(self.act(self.conv1(x)))


torch.manual_seed(0)
net = nn.Sequential(
    nn.Conv2d(1, 6, 3, 2, 1), nn.SiLU(),
    Block(6),
    nn.SiLU(), nn.Flatten(), nn.Linear(6 * 14 * 14, 10),
)
net.eval()
x = torch.tensor([[0.5 + 0.5 * math.sin(0.37 * i + 1.3 * n) for i in range(784)] for n in range(3)],
                 dtype=torch.float32).reshape(3, 1, 28, 28)
torch.onnx.export(net, x, "crates/warden-harden/tests/data/silu-mini.onnx", dynamo=False,
                  input_names=["x"], output_names=["logits"], dynamic_axes={"x": {0: "n"}})
torch.onnx.export(net, (x,), "crates/warden-harden/tests/data/silu-mini-dynamo.onnx", dynamo=True,
                  input_names=["x"], output_names=["logits"],
                  dynamic_shapes=({0: torch.export.Dim("n")},))
with torch.no_grad():
    logits = net(x).double()
print(f"// torch {torch.__version__}")
print("const SILU_LOGITS: [[f64; 10]; 3] = [")
for row in logits.tolist():
    print("    [" + ", ".join(f"{v:.9e}" for v in row) + "],")
print("];")
