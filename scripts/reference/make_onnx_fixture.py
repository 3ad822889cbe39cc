"""Makes crates/warden-harden/tests/data/mini.onnx and the reference logits pasted into
crates/warden-harden/tests/onnx_import.rs: a small PyTorch CNN (every layer kind Warden imports,
with padding and a floor-mode pooling remainder) exported with PyTorch's TorchScript-based ONNX
exporter, the form most users have.

Run from the repository root: /tmp/torch-venv/bin/python scripts/reference/make_onnx_fixture.py
(needs torch and onnx: /tmp/torch-venv/bin/pip install torch onnx).
"""
import math

import torch
import torch.nn as nn

torch.manual_seed(0)
net = nn.Sequential(
    nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
    nn.Flatten(), nn.Linear(216, 32), nn.ReLU(), nn.Linear(32, 10),
)
x = torch.tensor([[0.5 + 0.5 * math.sin(0.37 * i + 1.3 * n) for i in range(784)] for n in range(3)],
                 dtype=torch.float32).reshape(3, 1, 28, 28)
torch.onnx.export(net, x, "crates/warden-harden/tests/data/mini.onnx", dynamo=False,
                  input_names=["x"], output_names=["logits"], dynamic_axes={"x": {0: "n"}})
with torch.no_grad():
    logits = net(x).double()
print(f"// torch {torch.__version__}")
print("const LOGITS: [[f64; 10]; 3] = [")
for row in logits.tolist():
    print("    [" + ", ".join(f"{v:.9e}" for v in row) + "],")
print("];")
