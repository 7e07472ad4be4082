"""Recurrent residual U-Net (R2U-Net, Alom et al. 2018), the backbone of UD-Net and R2U-Net methods, and the
plain U-Net (Ronneberger et al. 2015) of the same widths as its baseline."""

from __future__ import annotations

import torch
from torch import nn


class RecurrentConv(nn.Module):
    """A 3x3 conv applied ``t`` extra times to its own output plus the block input.

    The conv weights are shared across steps; each step has its own batch norm, since the inputs of
    the steps (x, then x + h) have different statistics and one shared set of running statistics
    would be wrong for all of them at inference time.
    """

    def __init__(self, channels: int, t: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.norms = nn.ModuleList(nn.BatchNorm2d(channels) for _ in range(t + 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.norms[0](self.conv(x)))
        for norm in self.norms[1:]:
            h = torch.relu(norm(self.conv(x + h)))
        return h


class RRCNNBlock(nn.Module):
    """Two recurrent convolutions with a residual 1x1 shortcut."""

    def __init__(self, in_channels: int, out_channels: int, t: int) -> None:
        super().__init__()
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1)
        self.body = nn.Sequential(RecurrentConv(out_channels, t), RecurrentConv(out_channels, t))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.shortcut(x)
        return x + self.body(x)


class DoubleConvBlock(nn.Sequential):
    """The plain U-Net block: two 3x3 conv + batch norm + ReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(*(layer for c in (in_channels, out_channels) for layer in (
            nn.Conv2d(c, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU())))


class R2UNet(nn.Module):
    """R2U-Net with ``len(widths)`` resolution levels; input sides must be multiples of ``2**(levels-1)``.

    ``recurrent=False`` gives the plain U-Net of the same widths (``t`` unused): the R2U-Net paper's baseline.
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 1,
                 widths: tuple[int, ...] = (16, 32, 64, 128), t: int = 3, recurrent: bool = True) -> None:
        super().__init__()
        self.widths = tuple(widths)

        def block(in_width: int, out_width: int) -> nn.Module:
            return RRCNNBlock(in_width, out_width, t) if recurrent else DoubleConvBlock(in_width, out_width)

        self.encoders = nn.ModuleList()
        previous = in_channels
        for width in widths:
            self.encoders.append(block(previous, width))
            previous = width
        self.pool = nn.MaxPool2d(2)
        self.upsamplers = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for deeper, width in zip(widths[:0:-1], widths[-2::-1]):
            self.upsamplers.append(nn.ConvTranspose2d(deeper, width, 2, stride=2))
            self.decoders.append(block(2 * width, width))
        self.head = nn.Conv2d(widths[0], out_channels, 1)

    @property
    def size_multiple(self) -> int:
        """Input height and width must be divisible by this."""
        return 2 ** (len(self.widths) - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for level, encoder in enumerate(self.encoders):
            if level:
                x = self.pool(x)
            x = encoder(x)
            skips.append(x)
        for upsample, decoder, skip in zip(self.upsamplers, self.decoders, skips[-2::-1]):
            x = decoder(torch.cat([skip, upsample(x)], dim=1))
        return self.head(x)
