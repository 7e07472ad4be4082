"""DenseNet and the densely connected recurrent network (DCRN) classifying the patch around each nucleus.

A dense layer is BN-ReLU-conv3x3 adding ``growth`` channels to its input; in DCRN that conv is
followed by a recurrent convolution (the R2U-Net unit, ``t`` extra steps with shared weights).
Blocks are joined by transitions (BN-ReLU-conv1x1-avgpool); a global average pool and a linear
layer give the class logits.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .r2unet import RecurrentConv


class DenseLayer(nn.Module):
    """BN-ReLU-conv3x3 to ``growth`` new channels (then a recurrent conv when ``t`` > 0), concatenated."""

    def __init__(self, in_channels: int, growth: int, t: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.BatchNorm2d(in_channels), nn.ReLU(inplace=True),
                                  nn.Conv2d(in_channels, growth, 3, padding=1, bias=False))
        self.recurrent = RecurrentConv(growth, t) if t > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.recurrent(self.conv(x))], dim=1)


def transition(in_channels: int, out_channels: int) -> nn.Sequential:
    """BN-ReLU-conv1x1 then 2x2 average pooling between dense blocks."""
    return nn.Sequential(nn.BatchNorm2d(in_channels), nn.ReLU(inplace=True),
                         nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.AvgPool2d(2))


class DenseClassifier(nn.Module):
    """``blocks`` dense blocks of ``layers`` layers; ``t`` = 0 is DenseNet, ``t`` > 0 is DCRN."""

    def __init__(self, classes: int, blocks: int = 4, layers: int = 7, growth: int = 12,
                 initial_channels: int = 64, compression: float = 1.0, t: int = 2) -> None:
        super().__init__()
        modules: list[nn.Module] = [nn.Conv2d(3, initial_channels, 3, padding=1, bias=False)]
        channels = initial_channels
        for block in range(blocks):
            for _ in range(layers):
                modules.append(DenseLayer(channels, growth, t))
                channels += growth
            if block < blocks - 1:
                reduced = int(channels * compression)
                modules.append(transition(channels, reduced))
                channels = reduced
        modules += [nn.BatchNorm2d(channels), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*modules)
        self.head = nn.Linear(channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def build_classifier(config: dict[str, Any]) -> DenseClassifier:
    """The network a classifier config describes (``recurrent_steps`` 0 = DenseNet)."""
    return DenseClassifier(len(config["class_names"]), config["blocks"], config["layers"], config["growth"],
                           config["initial_channels"], config["compression"], config["recurrent_steps"])
