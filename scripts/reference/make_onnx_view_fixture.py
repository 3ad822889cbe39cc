"""Makes crates/warden-harden/tests/data/view-dynamic.onnx and view-static.onnx, and the reference
logits pasted into crates/warden-harden/tests/onnx_import.rs (`VIEW_LOGITS`): a small PyTorch CNN
that flattens with `x.view(x.size(0), -1)`, as many tutorials write it, exported with PyTorch's
TorchScript-based ONNX exporter twice: with a dynamic batch (the exporter computes the target
shape in the graph: Shape, Gather, Unsqueeze, Concat) and with a fixed one (a Constant node holds
it).

Run from the repository root: /tmp/torch-venv/bin/python scripts/reference/make_onnx_view_fixture.py
(needs torch, onnx and onnxscript: /tmp/torch-venv/bin/pip install torch onnx onnxscript).
"""
import math

import torch
import torch.nn as nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.pool = nn.MaxPool2d(4)
        self.fc = nn.Linear(4 * 6 * 6, 10)

    def forward(self, x):
        x = self.pool(torch.relu(self.conv(x)))
        return self.fc(x.view(x.size(0), -1))


torch.manual_seed(0)
net = Net().eval()
x = torch.tensor([[0.5 + 0.5 * math.sin(0.37 * i + 1.3 * n) for i in range(784)] for n in range(3)],
                 dtype=torch.float32).reshape(3, 1, 28, 28)
common = dict(dynamo=False, input_names=["x"], output_names=["logits"])
torch.onnx.export(net, x, "crates/warden-harden/tests/data/view-dynamic.onnx",
                  dynamic_axes={"x": {0: "n"}}, **common)
torch.onnx.export(net, x, "crates/warden-harden/tests/data/view-static.onnx", **common)
with torch.no_grad():
    logits = net(x).double()
print(f"// torch {torch.__version__}")
print("const VIEW_LOGITS: [[f64; 10]; 3] = [")
for row in logits.tolist():
    print("    [" + ", ".join(f"{v:.9e}" for v in row) + "],")
print("];")

# The same network through the torch.export-based exporter (PyTorch's default since 2.9), which
# keeps the weights in a separate file next to the model (`*.onnx.data`) and writes the flatten
# as a Reshape to [-1, 144] (dynamic batch) or [3, 144] (the fixed batch of the example input).
torch.onnx.export(net, (x,), "crates/warden-harden/tests/data/dynamo-dynamic.onnx", dynamo=True,
                  input_names=["x"], output_names=["logits"],
                  dynamic_shapes=({0: torch.export.Dim("n")},))
torch.onnx.export(net, (x,), "crates/warden-harden/tests/data/dynamo-static.onnx", dynamo=True,
                  input_names=["x"], output_names=["logits"])
