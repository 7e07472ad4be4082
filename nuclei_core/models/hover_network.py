"""The HoVer-Net-style network: a U-Net of residual blocks (squeeze-and-excitation in the encoder, coordinate
attention at each decoder level) shared by three heads: nuclear pixels, horizontal/vertical distance maps, and
per-pixel class. ``attention=False`` is the ablation: the same network without SE and CA."""

from __future__ import annotations

import torch
from torch import nn


class SqueezeExcitation(nn.Module):
    """Channel attention (Hu et al. 2018): channel weights from the globally pooled features."""

    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        hidden = max(4, channels // reduction)
        self.gate = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True),
                                  nn.Conv2d(hidden, channels, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class CoordinateAttention(nn.Module):
    """Coordinate attention (Hou et al. 2021): features pooled along each axis give a per-row and a per-column
    gate, so the attention keeps where along the other axis it comes from."""

    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        hidden = max(8, channels // reduction)
        self.mix = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.BatchNorm2d(hidden), nn.Hardswish(inplace=True))
        self.rows = nn.Conv2d(hidden, channels, 1)
        self.columns = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[2:]
        pooled = torch.cat([x.mean(dim=3, keepdim=True), x.mean(dim=2, keepdim=True).transpose(2, 3)], dim=2)
        rows, columns = self.mix(pooled).split([height, width], dim=2)
        return x * torch.sigmoid(self.rows(rows)) * torch.sigmoid(self.columns(columns.transpose(2, 3)))


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with batch norm, an optional squeeze-and-excitation, and the identity (or a 1x1
    projection) added back."""

    def __init__(self, in_channels: int, out_channels: int, squeeze_excitation: bool) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True), nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels), *([SqueezeExcitation(out_channels)] if squeeze_excitation else []))
        self.skip = nn.Identity() if in_channels == out_channels else nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.skip(x))


class HoVerNetwork(nn.Module):
    """Encoder-decoder with three heads; ``forward`` returns the raw maps stacked on the channel axis:
    2 nuclear-pixel logits, 2 distance maps (tanh, horizontal then vertical), ``classes + 1`` class logits
    (0 = background)."""

    def __init__(self, classes: int, widths: tuple[int, ...] = (32, 64, 128, 256), attention: bool = True) -> None:
        super().__init__()
        self.classes = classes
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, padding=1, bias=False), nn.BatchNorm2d(widths[0]),
                                  nn.ReLU(inplace=True))
        self.encoder = nn.ModuleList(
            nn.Sequential(ResidualBlock(widths[max(0, i - 1)], width, attention),
                          ResidualBlock(width, width, attention)) for i, width in enumerate(widths))
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList(nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2)
                                for i in range(len(widths) - 1))
        self.decoder = nn.ModuleList(
            nn.Sequential(ResidualBlock(2 * widths[i], widths[i], False),
                          CoordinateAttention(widths[i]) if attention else nn.Identity())
            for i in range(len(widths) - 1))

        def head(outputs: int) -> nn.Module:
            return nn.Sequential(nn.Conv2d(widths[0], widths[0], 3, padding=1), nn.ReLU(inplace=True),
                                 nn.Conv2d(widths[0], outputs, 1))

        self.nuclear_pixels, self.distances, self.types = head(2), head(2), head(classes + 1)

    @property
    def size_multiple(self) -> int:
        return 2 ** (len(self.encoder) - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        x = self.stem(x)
        for level, block in enumerate(self.encoder):
            x = block(x if level == 0 else self.pool(x))
            skips.append(x)
        for level in reversed(range(len(self.decoder))):
            x = self.decoder[level](torch.cat([self.up[level](x), skips[level]], dim=1))
        return torch.cat([self.nuclear_pixels(x), torch.tanh(self.distances(x)), self.types(x)], dim=1)
