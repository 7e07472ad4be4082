"""Graph convolution over the pixel grid of a 27x27 patch, and its exact fully convolutional form.

Each patch is a graph: one node per pixel, binary adjacency to the 4 grid neighbours inside the patch,
normalised Laplacian ``L = I - D^-1/2 A D^-1/2``. A layer is the first-order polynomial
``y = x W0 + (L x) W1 + b``. Because the patch border changes node degrees, the layer is not
translation invariant inside a patch; :func:`dense_patch_gcn` still computes the classifier around
every pixel of an image exactly, by grouping the patch's nodes into the few distinct neighbourhood
"types" (interior, edge, corner, next to an edge, ...) and running one stencil convolution per type.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .fft_correlation import Correlator

PATCH = 27
NEIGHBOURS = ((-1, 0), (1, 0), (0, -1), (0, 1))


def grid_inverse_sqrt_degree(size: int = PATCH) -> np.ndarray:
    """(size, size) 1/sqrt(number of 4-neighbours inside the patch) of every node."""
    count = np.full(size, 2.0)
    count[[0, -1]] = 1.0
    return 1.0 / np.sqrt(count[:, None] + count[None, :])


def grid_laplacian(size: int = PATCH) -> np.ndarray:
    """The (size², size²) normalised Laplacian of the 4-neighbour grid graph (row-major node order)."""
    inv = grid_inverse_sqrt_degree(size).ravel()
    adjacency = np.zeros((size * size, size * size))
    for r in range(size):
        for c in range(size):
            for dy, dx in NEIGHBOURS:
                if 0 <= r + dy < size and 0 <= c + dx < size:
                    adjacency[r * size + c, (r + dy) * size + c + dx] = 1.0
    return np.eye(size * size) - inv[:, None] * adjacency * inv[None, :]


def neighbour_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum of each pixel's 4 grid neighbours, zero outside the (B, C, H, W) grid."""
    padded = F.pad(x, (1, 1, 1, 1))
    height, width = x.shape[-2:]
    return sum(padded[..., 1 + dy:1 + dy + height, 1 + dx:1 + dx + width] for dy, dx in NEIGHBOURS)


class GridGraphConv(nn.Module):
    """``y = x W0 + (L x) W1 + b`` on the patch grid (first-order Chebyshev graph convolution)."""

    def __init__(self, in_channels: int, out_channels: int, size: int = PATCH) -> None:
        super().__init__()
        self.self_weight = nn.Conv2d(in_channels, out_channels, 1)
        self.laplacian_weight = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        # a constant of the graph, not a weight: exact (float64) and not saved with the weights
        self.register_buffer("inv_sqrt_degree", torch.tensor(grid_inverse_sqrt_degree(size))[None, None],
                             persistent=False)

    def laplacian(self, x: torch.Tensor) -> torch.Tensor:
        """``L x`` for node features laid out as (B, C, size, size)."""
        inv = self.inv_sqrt_degree.to(x.dtype)
        return x - inv * neighbour_sum(x * inv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.self_weight(x) + self.laplacian_weight(self.laplacian(x))


class PatchGCN(nn.Module):
    """Is this 27x27 patch centred on a nucleus? Two graph convolutions, two dense layers, one logit."""

    def __init__(self, channels: tuple[int, int] = (36, 48), hidden: int = 32, dropout: float = 0.2,
                 in_channels: int = 3) -> None:
        super().__init__()
        self.register_buffer("mean", torch.full((1, in_channels, 1, 1), 0.5))
        self.register_buffer("std", torch.full((1, in_channels, 1, 1), 0.25))
        self.graph1 = GridGraphConv(in_channels, channels[0])
        self.graph2 = GridGraphConv(channels[0], channels[1])
        self.fc1 = nn.Linear(channels[1] * PATCH * PATCH, hidden)
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, 1)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        """(B, C, 27, 27) node features (RGB in [0, 1], and any further channels) -> (B,) logits."""
        x = (patches - self.mean) / self.std
        x = F.relu(self.graph2(F.relu(self.graph1(x))))
        return self.fc2(self.dropout(F.relu(self.fc1(x.flatten(1))))).squeeze(1)

    def dense(self, image: torch.Tensor, chunk: int = 128, where: torch.Tensor | None = None) -> torch.Tensor:
        """Logits of the patch around every pixel (or only in chunks where ``where`` holds): (B, C, H, W) -> (B, H-26, W-26)."""
        return dense_patch_gcn(self, image, chunk, where)


@dataclass(frozen=True)
class NodeTypes:
    """The patch's nodes grouped by neighbourhood, for one and for two stacked graph convolutions.

    ``stencils1[t]``: the 4 neighbour coefficients of ``D^-1/2 A D^-1/2`` shared by layer-1 type ``t``;
    ``type2``: (27, 27) layer-2 type of each node; ``layer2[t]``: (neighbour coefficients, own layer-1
    type, each neighbour's layer-1 type or -1 where the neighbour is outside the patch).
    """

    stencils1: list[tuple[float, ...]]
    type2: np.ndarray
    layer2: list[tuple[tuple[float, ...], int, tuple[int, ...]]]


def node_types(size: int = PATCH) -> NodeTypes:
    """Group the nodes of a ``size`` x ``size`` patch by the stencils two graph convolutions apply."""
    inv = grid_inverse_sqrt_degree(size)
    coefficients = np.zeros((size, size, 4))
    for k, (dy, dx) in enumerate(NEIGHBOURS):
        for r in range(size):
            for c in range(size):
                if 0 <= r + dy < size and 0 <= c + dx < size:
                    coefficients[r, c, k] = inv[r, c] * inv[r + dy, c + dx]
    stencils: dict[tuple, int] = {}
    type1 = np.zeros((size, size), dtype=int)
    for r in range(size):
        for c in range(size):
            type1[r, c] = stencils.setdefault(tuple(coefficients[r, c].tolist()), len(stencils))
    layer2: dict[tuple, int] = {}
    type2 = np.zeros((size, size), dtype=int)
    for r in range(size):
        for c in range(size):
            neighbours = tuple(int(type1[r + dy, c + dx]) if coefficients[r, c, k] else -1
                               for k, (dy, dx) in enumerate(NEIGHBOURS))
            key = (tuple(coefficients[r, c].tolist()), int(type1[r, c]), neighbours)
            type2[r, c] = layer2.setdefault(key, len(layer2))
    return NodeTypes(list(stencils), type2, list(layer2))


_TYPES = node_types()


def dense_patch_gcn(net: PatchGCN, image: torch.Tensor, chunk: int = 128,
                    where: torch.Tensor | None = None) -> torch.Tensor:
    """``net`` applied to the 27x27 patch around every pixel, computed as convolutions in chunks.

    With a boolean ``where`` (B, H-26, W-26), chunks holding no true pixel are skipped (left at -inf).
    """
    batch, _, height, width = image.shape
    out_h, out_w = height - PATCH + 1, width - PATCH + 1
    if out_h < 1 or out_w < 1:
        raise ValueError(f"image {height}x{width} is smaller than one {PATCH}x{PATCH} patch")
    logits = image.new_full((batch, out_h, out_w), float("-inf"))
    weights = DenseWeights.of(net)  # shared by the chunks
    for top in range(0, out_h, chunk):
        for left in range(0, out_w, chunk):
            h, w = min(chunk, out_h - top), min(chunk, out_w - left)
            if where is not None and not where[:, top:top + h, left:left + w].any():
                continue
            piece = image[:, :, top:top + h + PATCH - 1, left:left + w + PATCH - 1]
            logits[:, top:top + h, left:left + w] = _dense_chunk(net, weights, piece)
    return logits


def _stencil_kernel(layer: GridGraphConv, coefficients: tuple[float, ...]) -> torch.Tensor:
    """3x3 kernel of ``x W0 + (x - sum_k c_k x_k) W1`` for one node type."""
    w0 = layer.self_weight.weight[:, :, 0, 0]
    w1 = layer.laplacian_weight.weight[:, :, 0, 0]
    kernel = w0.new_zeros(w0.shape[0], w0.shape[1], 3, 3)
    kernel[:, :, 1, 1] = w0 + w1
    for k, (dy, dx) in enumerate(NEIGHBOURS):
        kernel[:, :, 1 + dy, 1 + dx] = -float(coefficients[k]) * w1
    return kernel


@dataclass
class DenseWeights:
    """The network's weights rearranged for :func:`dense_patch_gcn`, once per pass over an image.

    ``layer1``: the 3x3 stencil kernels of every layer-1 type, stacked; ``mixing``: layer 2's 1x1 weights
    for a node's own map and for its neighbours' maps, stacked; ``blocks[t]``: the rows / columns of the
    patch that layer-2 type ``t`` occupies and the dense layer's kernel over that bounding box (zero at
    the other types' positions); ``correlator``: keeps the large blocks' spectra.
    """

    layer1: torch.Tensor
    mixing: torch.Tensor
    blocks: list[tuple[int, int, int, int, torch.Tensor]]
    correlator: Correlator

    @classmethod
    def of(cls, net: PatchGCN) -> "DenseWeights":
        layer1, layer2 = net.graph1, net.graph2
        kernels = torch.cat([_stencil_kernel(layer1, stencil) for stencil in _TYPES.stencils1])
        mixing = torch.cat([layer2.self_weight.weight + layer2.laplacian_weight.weight,
                            layer2.laplacian_weight.weight])[:, :, 0, 0]
        fc1 = net.fc1.weight.view(net.fc1.out_features, -1, PATCH, PATCH)
        blocks = []
        for t2 in range(len(_TYPES.layer2)):
            rows, cols = np.nonzero(_TYPES.type2 == t2)
            r0, r1, c0, c1 = int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1
            mask = torch.zeros(PATCH, PATCH, dtype=fc1.dtype, device=fc1.device)
            mask[rows, cols] = 1.0
            blocks.append((r0, r1, c0, c1, (fc1 * mask)[:, :, r0:r1, c0:c1]))
        return cls(kernels, mixing, blocks, Correlator())


def _dense_chunk(net: PatchGCN, weights: DenseWeights, image: torch.Tensor) -> torch.Tensor:
    """Logits around every pixel of one chunk.

    Layer 1 runs once per layer-1 node type as a 3x3 stencil convolution over the whole chunk; layer 2
    combines, per layer-2 type, the node's own and its neighbours' layer-1 maps; the first dense layer
    is a 27x27 convolution split by layer-2 type (each type's kernel keeps only that type's positions;
    the interior block and the edge strips, most of the patch, through the FFT).
    """
    n1 = len(_TYPES.stencils1)
    x = (image - net.mean) / net.std
    height, width = x.shape[-2:]
    out_h, out_w = height - PATCH + 1, width - PATCH + 1
    hidden1 = F.relu(F.conv2d(x, weights.layer1, net.graph1.self_weight.bias.repeat(n1), padding=1))
    c2 = net.graph2.self_weight.weight.shape[0]
    # the same 1x1 mixing for every layer-1 type map: the types become the batch
    mixed = torch.matmul(weights.mixing, hidden1.reshape(x.shape[0] * n1, -1, height * width))
    mixed = mixed.view(x.shape[0], n1, 2 * c2, height, width)
    centre, spread = mixed[:, :, :c2], F.pad(mixed[:, :, c2:], (1, 1, 1, 1))
    bias2 = net.graph2.self_weight.bias[:, None, None]
    total = net.fc1.bias[None, :, None, None].expand(x.shape[0], -1, out_h, out_w).clone()
    for t2, ((coefficient, own, neighbours), (r0, r1, c0, c1, block)) in enumerate(zip(_TYPES.layer2, weights.blocks)):
        span_h, span_w = r1 - r0 - 1 + out_h, c1 - c0 - 1 + out_w  # the nodes of this type in any patch
        pre = centre[:, own, :, r0:r0 + span_h, c0:c0 + span_w] + bias2
        for k, (dy, dx) in enumerate(NEIGHBOURS):
            n = neighbours[k]
            if n >= 0:
                top, left = 1 + dy + r0, 1 + dx + c0
                pre = pre - coefficient[k] * spread[:, n, :, top:top + span_h, left:left + span_w]
        total += weights.correlator(F.relu(pre), block, key=t2)
    return F.conv2d(F.relu(total), net.fc2.weight[:, :, None, None], net.fc2.bias)[:, 0]
