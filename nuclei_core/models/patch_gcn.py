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
from typing import Any, Callable

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


def chebyshev_series(x: Any, rescaled: Callable[[Any], Any], count: int) -> list[Any]:
    """``[T_2(M) x, ..., T_{count+1}(M) x]`` by the Chebyshev recurrence, ``rescaled`` applying M (to a tensor
    or a matrix)."""
    previous, current, terms = x, rescaled(x), []
    for _ in range(count):
        previous, current = current, 2 * rescaled(current) - previous
        terms.append(current)
    return terms


class GridGraphConv(nn.Module):
    """A Chebyshev graph convolution of ``order`` K on the patch grid.

    ``y = x W0 + (L x) W1 + sum_{k=2..K} T_k(L - I) x Wk + b``, with ``T_k`` the Chebyshev polynomials
    (``L - I`` is the Laplacian rescaled to [-1, 1]); the first two terms span the same filters as
    ``T_0``, ``T_1`` and keep the first-order weights' names. Order K mixes each node with the nodes
    up to K grid steps away.
    """

    def __init__(self, in_channels: int, out_channels: int, size: int = PATCH, order: int = 1) -> None:
        super().__init__()
        if order < 1:
            raise ValueError(f"graph convolution order must be at least 1, not {order}")
        self.self_weight = nn.Conv2d(in_channels, out_channels, 1)
        self.laplacian_weight = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.chebyshev_weights = nn.ModuleList(nn.Conv2d(in_channels, out_channels, 1, bias=False)
                                               for _ in range(order - 1))
        # a constant of the graph, not a weight: exact (float64) and not saved with the weights
        self.register_buffer("inv_sqrt_degree", torch.tensor(grid_inverse_sqrt_degree(size))[None, None],
                             persistent=False)

    def laplacian(self, x: torch.Tensor) -> torch.Tensor:
        """``L x`` for node features laid out as (B, C, size, size)."""
        inv = self.inv_sqrt_degree.to(x.dtype)
        return x - inv * neighbour_sum(x * inv)

    def chebyshev_terms(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``[T_2(L - I) x, ..., T_K(L - I) x]`` (empty for order 1)."""
        return chebyshev_series(x, lambda y: self.laplacian(y) - y, len(self.chebyshev_weights))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.self_weight(x) + self.laplacian_weight(self.laplacian(x))
        for weight, term in zip(self.chebyshev_weights, self.chebyshev_terms(x)):
            y = y + weight(term)
        return y


class PatchGCN(nn.Module):
    """Is this 27x27 patch centred on a nucleus? Two graph convolutions, two dense layers, one logit."""

    def __init__(self, channels: tuple[int, int] = (36, 48), hidden: int = 32, dropout: float = 0.2,
                 in_channels: int = 3, order: int = 1) -> None:
        super().__init__()
        self.register_buffer("mean", torch.full((1, in_channels, 1, 1), 0.5))
        self.register_buffer("std", torch.full((1, in_channels, 1, 1), 0.25))
        self.graph1 = GridGraphConv(in_channels, channels[0], order=order)
        self.graph2 = GridGraphConv(channels[0], channels[1], order=order)
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


def polynomial_basis(order: int, size: int = PATCH) -> list[np.ndarray]:
    """``[I, L, T_2(L - I), ..., T_K(L - I)]`` as (size², size²) matrices: what a layer of ``order`` K weights."""
    laplacian, identity = grid_laplacian(size), np.eye(size * size)
    rescaled = laplacian - identity
    return [identity, laplacian, *chebyshev_series(identity, lambda m: rescaled @ m, order - 1)]


def _key(values: np.ndarray) -> tuple[float, ...]:
    """Coefficients rounded for grouping: the matrix products leave rounding noise between mirror-image nodes."""
    return tuple(np.round(values, 12).ravel().tolist())


@dataclass(frozen=True)
class Term:
    """One neighbour's contribution to a layer-2 node: offset, the neighbour's layer-1 type, a coefficient per
    basis matrix (``I, L, T_2 ...``)."""

    dy: int
    dx: int
    type1: int
    coefficients: tuple[float, ...]


@dataclass(frozen=True)
class NodeTypes:
    """The patch's nodes grouped by the stencils one and two stacked graph convolutions of ``order`` K apply.

    ``offsets``: the grid steps within K of a node; ``stencils1[t]``: (K + 1, offsets) coefficients of layer-1
    type ``t`` (zero outside the patch); ``type2``: (27, 27) layer-2 type of each node; ``layer2[t]``: the
    terms that make a layer-2 node of type ``t`` from its neighbours' layer-1 maps.
    """

    order: int
    offsets: list[tuple[int, int]]
    stencils1: list[np.ndarray]
    type2: np.ndarray
    layer2: list[list[Term]]


def node_types(order: int = 1, size: int = PATCH) -> NodeTypes:
    """Group the nodes of a ``size`` x ``size`` patch by the stencils two graph convolutions apply."""
    basis = np.stack(polynomial_basis(order, size))  # (K + 1, N, N)
    offsets = [(dy, dx) for dy in range(-order, order + 1) for dx in range(-order, order + 1)
               if abs(dy) + abs(dx) <= order]
    coefficients = np.zeros((size, size, order + 1, len(offsets)))
    for j, (dy, dx) in enumerate(offsets):
        for r in range(max(0, -dy), min(size, size - dy)):
            for c in range(max(0, -dx), min(size, size - dx)):
                coefficients[r, c, :, j] = basis[:, r * size + c, (r + dy) * size + c + dx]
    stencils: dict[tuple, int] = {}
    type1 = np.zeros((size, size), dtype=int)
    stencils1: list[np.ndarray] = []
    for r in range(size):
        for c in range(size):
            type1[r, c] = stencils.setdefault(_key(coefficients[r, c]), len(stencils))
            if type1[r, c] == len(stencils1):
                stencils1.append(coefficients[r, c])
    layer2: dict[tuple, int] = {}
    type2 = np.zeros((size, size), dtype=int)
    terms: list[list[Term]] = []
    for r in range(size):
        for c in range(size):
            node = [Term(dy, dx, int(type1[r + dy, c + dx]), tuple(coefficients[r, c, :, j].tolist()))
                    for j, (dy, dx) in enumerate(offsets) if np.any(coefficients[r, c, :, j])]
            key = tuple((t.dy, t.dx, t.type1, _key(np.array(t.coefficients))) for t in node)
            type2[r, c] = layer2.setdefault(key, len(layer2))
            if type2[r, c] == len(terms):
                terms.append(node)
    return NodeTypes(order, offsets, stencils1, type2, terms)


_TYPES: dict[int, NodeTypes] = {}


def types_of(order: int) -> NodeTypes:
    """The node types for graph convolutions of ``order`` (computed once per order)."""
    if order not in _TYPES:
        _TYPES[order] = node_types(order)
    return _TYPES[order]


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


def basis_weights(layer: GridGraphConv) -> list[torch.Tensor]:
    """The layer's (out, in) weight of each basis matrix ``I, L, T_2(L - I), ...``."""
    convolutions = [layer.self_weight, layer.laplacian_weight, *layer.chebyshev_weights]
    return [convolution.weight[:, :, 0, 0] for convolution in convolutions]


def _stencil_kernel(weights: list[torch.Tensor], stencil: np.ndarray, offsets: list[tuple[int, int]],
                    order: int) -> torch.Tensor:
    """(2K+1)² kernel of one layer-1 type: at each offset, its coefficients times the basis weights."""
    kernel = weights[0].new_zeros(*weights[0].shape, 2 * order + 1, 2 * order + 1)
    for j, (dy, dx) in enumerate(offsets):
        kernel[:, :, order + dy, order + dx] = sum(float(a) * w for a, w in zip(stencil[:, j], weights))
    return kernel


@dataclass
class DenseWeights:
    """The network's weights rearranged for :func:`dense_patch_gcn`, once per pass over an image.

    ``layer1``: the stencil kernels of every layer-1 type, stacked; ``mixing``: layer 2's 1x1 weight of each
    basis matrix, stacked; ``blocks[t]``: the rows / columns of the patch that layer-2 type ``t`` occupies and
    the dense layer's kernel over that bounding box (zero at the other types' positions); ``correlator``:
    keeps the large blocks' spectra.
    """

    types: NodeTypes
    layer1: torch.Tensor
    mixing: torch.Tensor
    blocks: list[tuple[int, int, int, int, torch.Tensor]]
    correlator: Correlator

    @classmethod
    def of(cls, net: PatchGCN) -> "DenseWeights":
        types = types_of(len(net.graph1.chebyshev_weights) + 1)
        first = basis_weights(net.graph1)
        kernels = torch.cat([_stencil_kernel(first, stencil, types.offsets, types.order)
                             for stencil in types.stencils1])
        fc1 = net.fc1.weight.view(net.fc1.out_features, -1, PATCH, PATCH)
        blocks = []
        for t2 in range(len(types.layer2)):
            rows, cols = np.nonzero(types.type2 == t2)
            r0, r1, c0, c1 = int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1
            mask = torch.zeros(PATCH, PATCH, dtype=fc1.dtype, device=fc1.device)
            mask[rows, cols] = 1.0
            blocks.append((r0, r1, c0, c1, (fc1 * mask)[:, :, r0:r1, c0:c1]))
        return cls(types, kernels, torch.cat(basis_weights(net.graph2)), blocks, Correlator())


def _dense_chunk(net: PatchGCN, weights: DenseWeights, image: torch.Tensor) -> torch.Tensor:
    """Logits around every pixel of one chunk.

    Layer 1 runs once per layer-1 node type as a stencil convolution over the whole chunk; layer 2 combines,
    per layer-2 type, its neighbours' layer-1 maps mixed by each basis matrix's weight; the first dense layer
    is a 27x27 convolution split by layer-2 type (each type's kernel keeps only that type's positions; the
    interior block and the edge strips, most of the patch, through the FFT).
    """
    types, reach = weights.types, weights.types.order
    n1 = len(types.stencils1)
    x = (image - net.mean) / net.std
    batch, height, width = x.shape[0], *x.shape[-2:]
    out_h, out_w = height - PATCH + 1, width - PATCH + 1
    # padded by ``reach`` all round (values there are never read), so that every neighbour's slice is in range
    hidden1 = F.relu(F.conv2d(x, weights.layer1, net.graph1.self_weight.bias.repeat(n1), padding=2 * reach))
    c2, size = net.graph2.self_weight.weight.shape[0], hidden1.shape[-2:]
    # the same 1x1 mixing for every layer-1 type map: the types become the batch
    mixed = torch.matmul(weights.mixing, hidden1.reshape(batch * n1, -1, size.numel()))
    mixed = mixed.view(batch, n1, reach + 1, c2, *size)
    bias2 = net.graph2.self_weight.bias[:, None, None]
    total = net.fc1.bias[None, :, None, None].expand(batch, -1, out_h, out_w).clone()
    for t2, (terms, (r0, r1, c0, c1, block)) in enumerate(zip(types.layer2, weights.blocks)):
        span_h, span_w = r1 - r0 - 1 + out_h, c1 - c0 - 1 + out_w  # the nodes of this type in any patch
        pre = bias2
        for term in terms:
            top, left = reach + term.dy + r0, reach + term.dx + c0
            for k, coefficient in enumerate(term.coefficients):
                if coefficient:
                    pre = pre + coefficient * mixed[:, term.type1, k, :, top:top + span_h, left:left + span_w]
        total += weights.correlator(F.relu(pre), block, key=t2)
    return F.conv2d(F.relu(total), net.fc2.weight[:, :, None, None], net.fc2.bias)[:, 0]
