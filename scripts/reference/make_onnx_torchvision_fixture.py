"""Makes crates/warden/tests/data/tv-stem.onnx and mv-mini.onnx, and the constants pasted into
crates/warden/tests/harden_user_data_cli.rs: small colour-image classifiers built from
torchvision's own ResNet and MobileNet V2 parts, exported as a user would, and their outputs on
fixed test images.

mv-mini is MobileNet V2 in small: its stem, two of torchvision's InvertedResiduals (depthwise
convolutions, ReLU6, an identity shortcut), its last 1x1 convolution and its classifier, on the
same images, fitted the same way.

The network is torchvision's ResNet with fewer, narrower blocks: its stem (7x7 stride-2
convolution padded by 3, batch norm, ReLU, and the 3x3 stride-2 max pool padded by 1 that
torchvision's ResNets all start with), two of torchvision's `BasicBlock`s (the second halving the
image, with the strided 1x1 convolution and batch norm shortcut torchvision builds for it), an
adaptive average pool and a linear head. The input is 3 x 32 x 32 (CIFAR-10's shape); the
weights are torchvision's initialisation with seed 0, batch-norm statistics moved away from
their defaults so that folding them matters. Exported in eval mode with the TorchScript-based
exporter and constant folding off, so the file keeps its BatchNormalization nodes.

The test images are bytes made from a formula the Rust test repeats:
    pixel(n, c, y, x) = (37 * n + 11 * c + 5 * y * y + 3 * x + 7 * x * y) % 256
and are fed to the model as pixel / 255, as `warden harden eval --test-images` feeds them. The
network is first fitted to label image i as class i mod 10 (150 Adam steps, batch norms frozen),
so that its predictions depend on each image's content: a wrong channel order, scale or layout
would change them. The script prints each image's logits and the model's prediction, which the
test uses as its labels, and the gap between its two largest logits (every one must be far above
float rounding).

With --resnet18 DIR (or --mobilenet-v2 DIR: DIR/mobilenet-v2.onnx, `mobilenet_v2`; or
--efficientnet-b0 DIR: DIR/efficientnet-b0.onnx, `efficientnet_b0`; or --mobilenet-v3-small DIR,
--googlenet DIR, --densenet121 DIR, or --preact-resnet18 DIR: the pre-activation ResNet-18 of the
adversarial-training literature, defined below)
it also
writes DIR/resnet18.onnx: torchvision's `resnet18(num_classes=10)`
itself (11M parameters, too large to commit; fitted for --fit steps, default 60, at a learning
rate of 1e-3 the same way), with DIR/images.idx, DIR/labels.idx (--count images of the formula,
default 16, at 3 x --size x --size, default 64, labelled by the model's predictions) and
DIR/logits.txt, for the check described in docs/results/torchvision-import/.

Run from the repository root:
    /tmp/torch-venv/bin/python scripts/reference/make_onnx_torchvision_fixture.py \
        [--resnet18 DIR | --mobilenet-v2 DIR | --efficientnet-b0 DIR | --mobilenet-v3-small DIR
         | --googlenet DIR | --densenet121 DIR | --preact-resnet18 DIR] [--size 64] [--count 16] [--fit 60]
(needs torch, torchvision, onnx: /tmp/torch-venv/bin/pip install torch torchvision onnx onnxscript).
"""
import struct
import sys

import torch
import torch.nn as nn
from torchvision.models import (densenet121, efficientnet_b0, googlenet, mobilenet_v2, mobilenet_v3_small,
                                resnet18)
from torchvision.models.mobilenetv2 import InvertedResidual
from torchvision.models.resnet import BasicBlock
from torchvision.ops.misc import Conv2dNormActivation

from preact_resnet import preact_resnet18


def images(n, c, h, w):
    v = [[[[(37 * i + 11 * ch + 5 * y * y + 3 * x + 7 * x * y) % 256 for x in range(w)]
           for y in range(h)] for ch in range(c)] for i in range(n)]
    return torch.tensor(v, dtype=torch.uint8)


def idx(t):
    dims = list(t.shape)
    return bytes([0, 0, 8, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + \
        bytes(t.flatten().tolist())


def perturb_bn(net):
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)


def calibrate_bn(net, x):
    """Sets every batch norm's running statistics to the images' own (one pass in training mode,
    a cumulative average), then returns the network to eval mode. EfficientNet-B0 (and MobileNet
    V3) with
    `perturb_bn`'s statistics gives the same logits for every image to 1e-6 after its sixteen
    blocks, and stays so through the fit; with calibrated statistics its outputs depend on the
    images."""
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    net.train()
    with torch.no_grad():
        net(x)
    net.eval()


def fit(net, x, steps, lr=1e-2):
    """Fits the network to label image i as class i mod 10 (batch norms frozen in eval mode), so
    that its predictions depend on every image's content and a layout error shows."""
    y = torch.arange(len(x)) % 10
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        out = net(x)
        # GoogLeNet in training mode also answers its two auxiliary classifiers' logits.
        out = out[0] if isinstance(out, tuple) else out
        nn.functional.cross_entropy(out, y).backward()
        opt.step()


def report(net, x):
    with torch.no_grad():
        logits = net(x).double()
    top2 = logits.topk(2, dim=1).values
    gaps = (top2[:, 0] - top2[:, 1]).tolist()
    return logits, logits.argmax(1).tolist(), gaps


def fixture(net, file, prefix):
    """Fits `net` to the eight 32 x 32 images, exports it to crates/warden/tests/data/`file`, and
    prints its labels and logits as the Rust constants `{prefix}_LABELS` and `{prefix}_LOGITS`."""
    perturb_bn(net)
    net.eval()
    x = images(8, 3, 32, 32).float() / 255
    fit(net, x, 150)
    torch.onnx.export(net, x, f"crates/warden/tests/data/{file}", dynamo=False,
                      do_constant_folding=False, input_names=["x"], output_names=["logits"],
                      dynamic_axes={"x": {0: "n"}})
    logits, pred, gaps = report(net, x)
    print(f"// torch {torch.__version__}")
    print(f"// top-2 logit gaps: {', '.join(f'{g:.3e}' for g in gaps)}")
    print(f"const {prefix}_LABELS: [u8; 8] = {pred};")
    print(f"const {prefix}_LOGITS: [[f64; 10]; 8] = [")
    for row in logits.tolist():
        print("    [" + ", ".join(f"{v:.9e}" for v in row) + "],")
    print("];")


torch.manual_seed(0)
down = nn.Sequential(nn.Conv2d(8, 16, 1, 2, bias=False), nn.BatchNorm2d(16))
fixture(nn.Sequential(
    nn.Conv2d(3, 8, 7, 2, 3, bias=False), nn.BatchNorm2d(8), nn.ReLU(inplace=True),
    nn.MaxPool2d(3, 2, 1),
    BasicBlock(8, 8), BasicBlock(8, 16, 2, down),
    nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
), "tv-stem.onnx", "TV")

# MobileNet V2 in small, from torchvision's own parts: its stem (3x3 stride-2 convolution, batch
# norm, ReLU6), two InvertedResiduals (pointwise expansion, depthwise 3x3 convolution with
# groups = channels, pointwise projection; the first with its identity shortcut, the second
# strided), its last 1x1 convolution, and its classifier (dropout, linear).
torch.manual_seed(0)
fixture(nn.Sequential(
    Conv2dNormActivation(3, 8, stride=2, activation_layer=nn.ReLU6),
    InvertedResidual(8, 8, 1, 2), InvertedResidual(8, 16, 2, 4),
    Conv2dNormActivation(16, 32, kernel_size=1, activation_layer=nn.ReLU6),
    nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(32, 10),
), "mv-mini.onnx", "MV")


def option(name, default):
    return int(sys.argv[sys.argv.index(name) + 1]) if name in sys.argv else default


for flag, build in [("--resnet18", resnet18), ("--mobilenet-v2", mobilenet_v2),
                    ("--efficientnet-b0", efficientnet_b0), ("--mobilenet-v3-small", mobilenet_v3_small),
                    ("--googlenet", googlenet), ("--densenet121", densenet121),
                    ("--preact-resnet18", preact_resnet18)]:
    if flag not in sys.argv:
        continue
    out = sys.argv[sys.argv.index(flag) + 1]
    name = flag.lstrip("-")
    size, count, steps = option("--size", 64), option("--count", 16), option("--fit", 60)
    torch.manual_seed(0)
    big = build(num_classes=10)
    u8 = images(count, 3, size, size)
    x = u8.float() / 255
    if build in (preact_resnet18, googlenet):
        # With their batch norms frozen (calibrated or perturbed), these networks answer one
        # class for every image through 40 (PreActResNet) or 100 (GoogLeNet) fitting steps. So
        # they are fitted in training mode (batch statistics), and their statistics are then set
        # from the images.
        big.train()
        fit(big, x, steps, lr=1e-3)
        calibrate_bn(big, x)
    else:
        if build in (efficientnet_b0, mobilenet_v3_small, googlenet, densenet121):
            calibrate_bn(big, x)
        else:
            perturb_bn(big)
        big.eval()
        fit(big, x, steps, lr=1e-3)
    torch.onnx.export(big, x, f"{out}/{name}.onnx", dynamo=False, do_constant_folding=False,
                      input_names=["x"], output_names=["logits"], dynamic_axes={"x": {0: "n"}})
    logits, pred, gaps = report(big, x)
    with open(f"{out}/images.idx", "wb") as f:
        f.write(idx(u8))
    with open(f"{out}/labels.idx", "wb") as f:
        f.write(idx(torch.tensor(pred, dtype=torch.uint8)))
    with open(f"{out}/logits.txt", "w") as f:
        f.write(f"# torch {torch.__version__}, torchvision {build.__name__}(num_classes=10), seed 0\n")
        for row, g in zip(logits.tolist(), gaps):
            f.write(" ".join(f"{v:.9e}" for v in row) + f"  # top-2 gap {g:.3e}\n")
    print(f"{name}: {sum(p.numel() for p in big.parameters())} parameters, predictions {pred}")
