"""The pre-activation ResNet (He et al. 2016, "Identity mappings in deep residual networks"), as
the adversarial-training literature's PreActResNet-18 has it (Rice et al. 2020, Wong et al. 2020,
many RobustBench CIFAR-10 entries). Not in torchvision; shared by make_onnx_dense_fixture.py,
make_onnx_torchvision_fixture.py and scripts/bench/torchvision_pgd_bench.py.
"""
import torch.nn as nn
import torch.nn.functional as F


class PreActBlock(nn.Module):
    """bn, relu, conv, bn, relu, conv, plus the input; where the shape changes, plus a strided
    1x1 convolution of the first relu(bn(x)) instead."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x):
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        return self.conv2(F.relu(self.bn2(out))) + shortcut


def preact_resnet18(num_classes=10):
    """PreActResNet-18 for 3-channel images: a 3x3 stem, four stages of two pre-activation
    blocks (64, 128, 256, 512 channels; strides 1, 2, 2, 2), bn, relu, a global average pool and
    a linear layer (11.2M parameters)."""
    layers, cin = [nn.Conv2d(3, 64, 3, 1, 1, bias=False)], 64
    for cout, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
        layers += [PreActBlock(cin, cout, stride), PreActBlock(cout, cout, 1)]
        cin = cout
    layers += [nn.BatchNorm2d(512), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
               nn.Linear(512, num_classes)]
    return nn.Sequential(*layers)
