"""The CNN patch baselines on 27x27 patches: CP-CNN (is the centre a nucleus?) and SC-CNN (where is it?).

Both share one trunk (conv 4x4, max-pool 2, conv 3x3, max-pool 2, two dense layers, after
Sirinukunwattana et al. 2016). ``dense`` evaluates the trunk around every pixel exactly, by the
dilation trick: pooling with stride 1 and every later kernel dilated by the strides it skipped.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .patch_gcn import PATCH


class PatchCNN(nn.Module):
    """27x27 RGB patch -> ``outputs`` numbers (one logit for CP-CNN, three parameters for SC-CNN)."""

    def __init__(self, outputs: int = 1, channels: tuple[int, int] = (36, 48), hidden: int = 256,
                 dropout: float = 0.2) -> None:
        super().__init__()
        self.register_buffer("mean", torch.full((1, 3, 1, 1), 0.5))
        self.register_buffer("std", torch.full((1, 3, 1, 1), 0.25))
        self.conv1 = nn.Conv2d(3, channels[0], 4)
        self.conv2 = nn.Conv2d(channels[0], channels[1], 3)
        self.fc1 = nn.Linear(channels[1] * 5 * 5, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.head = nn.Linear(hidden, outputs)
        self.dropout = nn.Dropout(dropout)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        """(B, 3, 27, 27) in [0, 1] -> (B, outputs)."""
        x = (patches - self.mean) / self.std
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = self.dropout(F.relu(self.fc1(x.flatten(1))))
        return self.head(self.dropout(F.relu(self.fc2(x))))

    def dense(self, image: torch.Tensor, chunk: int = 256) -> torch.Tensor:
        """Outputs of the patch around every pixel: (B, 3, H, W) -> (B, outputs, H-26, W-26)."""
        batch, _, height, width = image.shape
        out_h, out_w = height - PATCH + 1, width - PATCH + 1
        if out_h < 1 or out_w < 1:
            raise ValueError(f"image {height}x{width} is smaller than one {PATCH}x{PATCH} patch")
        result = image.new_empty(batch, self.head.out_features, out_h, out_w)
        for top in range(0, out_h, chunk):
            for left in range(0, out_w, chunk):
                h, w = min(chunk, out_h - top), min(chunk, out_w - left)
                piece = image[:, :, top:top + h + PATCH - 1, left:left + w + PATCH - 1]
                result[:, :, top:top + h, left:left + w] = self._dense_chunk(piece)
        return result

    def _dense_chunk(self, image: torch.Tensor) -> torch.Tensor:
        x = (image - self.mean) / self.std
        x = F.max_pool2d(F.relu(self.conv1(x)), 2, stride=1)
        x = F.relu(F.conv2d(x, self.conv2.weight, self.conv2.bias, dilation=2))
        x = F.max_pool2d(x, 2, stride=1, dilation=2)
        fc1 = self.fc1.weight.view(self.fc1.out_features, self.conv2.out_channels, 5, 5)
        x = F.relu(F.conv2d(x, fc1, self.fc1.bias, dilation=4))
        x = F.relu(F.conv2d(x, self.fc2.weight[:, :, None, None], self.fc2.bias))
        return F.conv2d(x, self.head.weight[:, :, None, None], self.head.bias)


SC_WINDOW = 11
SC_OFFSET = (PATCH - SC_WINDOW) // 2


def sc_parameters(raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """SC-CNN's spatially constrained layer: raw outputs -> centre (row, col) in the window, height."""
    squashed = torch.sigmoid(raw)
    return squashed[:, 0] * (SC_WINDOW - 1), squashed[:, 1] * (SC_WINDOW - 1), squashed[:, 2]


def proximity(height: torch.Tensor, squared_distance: torch.Tensor, radius: float) -> torch.Tensor:
    """SC-CNN's proximity value ``h / (1 + d^2 / 2)`` within ``radius`` of a centre, else 0."""
    return torch.where(squared_distance <= radius ** 2, height / (1 + squared_distance / 2),
                       torch.zeros_like(squared_distance))


def sc_window_maps(raw: torch.Tensor, radius: float) -> torch.Tensor:
    """The (B, 11, 11) proximity maps that raw SC-CNN outputs (B, 3) predict."""
    row, col, height = sc_parameters(raw)
    grid = torch.arange(SC_WINDOW, dtype=raw.dtype, device=raw.device)
    squared = (grid[None, :, None] - row[:, None, None]) ** 2 + (grid[None, None, :] - col[:, None, None]) ** 2
    return proximity(height[:, None, None], squared, radius)


def sc_aggregate(raw_maps: torch.Tensor, radius: float) -> torch.Tensor:
    """Average the windows that dense SC-CNN outputs (B, 3, h, w) predict into (B, h+26, w+26) maps."""
    batch, _, out_h, out_w = raw_maps.shape
    row, col, height = sc_parameters(raw_maps)
    total = raw_maps.new_zeros(batch, out_h + PATCH - 1, out_w + PATCH - 1)
    count = torch.zeros_like(total)
    for a in range(SC_WINDOW):
        for b in range(SC_WINDOW):
            rows, cols = slice(SC_OFFSET + a, SC_OFFSET + a + out_h), slice(SC_OFFSET + b, SC_OFFSET + b + out_w)
            total[:, rows, cols] += proximity(height, (a - row) ** 2 + (b - col) ** 2, radius)
            count[:, rows, cols] += 1
    return total / count.clamp(min=1)
