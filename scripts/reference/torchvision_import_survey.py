"""Which torchvision classifiers Warden imports white-box: each model named (default: a list of
common families) is built with num_classes=10 and seed 0, exported in eval mode with the
TorchScript-based exporter (dynamic batch, constant folding off) at 3 x SIZE x SIZE, and handed
to `warden harden oracle`, which imports it with the white-box importer. Prints, per model, its
parameter count and either the largest logit difference from PyTorch's on two random images
(with the logits' scale), or the importer's reason for refusing it.

As initialised, many of these networks answer tiny logits that barely depend on the input, so
"imports" here means the graph is taken whole and computes PyTorch's numbers; the fitted,
input-sensitive checks are make_onnx_torchvision_fixture.py's (docs/results/torchvision-import/).

    /tmp/torch-venv/bin/python scripts/reference/torchvision_import_survey.py WARDEN OUT_DIR [--size 64] [MODEL ...]
"""
import struct
import subprocess
import sys

import torch
import torchvision.models as models

args = sys.argv[1:]
size = 64
if "--size" in args:
    i = args.index("--size")
    size = int(args[i + 1])
    del args[i:i + 2]
warden, out, names = args[0], args[1], args[2:] or [
    "resnet18", "resnet50", "wide_resnet50_2", "resnext50_32x4d", "regnet_x_400mf",
    "regnet_y_400mf", "mnasnet0_5", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large",
    "efficientnet_b0", "efficientnet_b1", "efficientnet_v2_s", "densenet121", "shufflenet_v2_x0_5",
    "squeezenet1_0", "googlenet", "convnext_tiny", "vit_b_16",
]
for name in names:
    torch.manual_seed(0)
    try:
        net = getattr(models, name)(num_classes=10).eval()
    except Exception as e:  # a model that does not take this size or class count
        print(f"{name}: not built ({type(e).__name__})", flush=True)
        continue
    params = sum(p.numel() for p in net.parameters())
    x = torch.rand(2, 3, size, size)
    path = f"{out}/{name}.onnx"
    try:
        torch.onnx.export(net, x, path, dynamo=False, do_constant_folding=False, input_names=["x"],
                          output_names=["logits"], dynamic_axes={"x": {0: "n"}})
    except Exception as e:
        print(f"{name}: {params:,} parameters; PyTorch's export failed: {str(e).splitlines()[0][:120]}",
              flush=True)
        continue
    with torch.no_grad():
        want = net(x).flatten().tolist()
    p = subprocess.Popen([warden, "harden", "oracle", path], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    values = x.flatten().tolist()  # NCHW on the wire, as the oracle protocol takes it
    try:
        p.stdin.write(struct.pack("<I", 2) + struct.pack(f"<{len(values)}f", *values)
                      + struct.pack("<I", 0))
        p.stdin.flush()
        count = struct.unpack("<I", p.stdout.read(4))[0]
        got = struct.unpack(f"<{count}f", p.stdout.read(4 * count))
        p.wait()
        worst = max(abs(a - b) for a, b in zip(got, want))
        scale = max(abs(v) for v in want)
        print(f"{name}: {params:,} parameters; imports, max |dlogit| {worst:.1e} on logits up to {scale:.1e}",
              flush=True)
    except (struct.error, BrokenPipeError):
        p.wait()
        reason = p.stderr.read().decode().split("unsupported ONNX graph:")[-1]
        reason = reason.split("Warden takes gradients")[0].strip()
        print(f"{name}: {params:,} parameters; refused: {reason[:160]}", flush=True)
