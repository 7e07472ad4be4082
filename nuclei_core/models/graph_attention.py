"""Multi-magnification graph attention network for nucleus segmentation (after the neuroplastic graph attention
network of the multi-magnification graph paper).

An image becomes one graph: a node per pixel at full resolution plus a node per pixel of ``levels - 1`` lower
magnifications (each half the one below). Edges join a node to its 8 neighbours and itself within a level (king
graph) and to the node that covers it one level up and the nodes it covers one level down. Every node has a
position in [0, 1]^3 (x, y, level) that the network moves during the forward pass (a small dense network
iterates it); a node's features are the image's colour projected at its position (bilinear within a pyramid
level, linear between levels) and its level, so moving a node changes what it sees. Residual graph attention
layers mix the features (here the first weights' flat layer: GAT scores with LeakyReLU, one softmax over each
node's incoming edges, plus a learned term of the edge's positional offset; the paper's typed layer is in
:mod:`nuclei_core.models.graph_attention_typed`); a linear head gives every node its outputs, and the network
(:mod:`nuclei_core.models.graph_attention_network`) reads the (foreground, marker) maps the segmenter turns into
instances from them.

The graph is built with index arithmetic only, once per tile size; memory grows linearly with the tile's pixels:
about 4/3 nodes and 14.6 edges per pixel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F


@dataclass(frozen=True)
class PyramidGraph:
    """The multi-magnification graph of a ``height`` x ``width`` image: ``levels`` grids, level 0 at full
    resolution, each next one half as wide. Nodes are numbered level by level, row-major."""

    height: int
    width: int
    levels: int

    def __post_init__(self) -> None:
        multiple = 2 ** (self.levels - 1)
        if self.height % multiple or self.width % multiple:
            raise ValueError(f"image sides {self.height} x {self.width} must be multiples of {multiple}")

    @property
    def shapes(self) -> list[tuple[int, int]]:
        return [(self.height >> level, self.width >> level) for level in range(self.levels)]

    @property
    def offsets(self) -> list[int]:
        """The first node of each level."""
        sizes = [rows * cols for rows, cols in self.shapes]
        return [sum(sizes[:level]) for level in range(self.levels)]

    @property
    def nodes(self) -> int:
        return sum(rows * cols for rows, cols in self.shapes)

    def spacing(self, level: int) -> torch.Tensor:
        """One node step along x, y and level at ``level``, in position units."""
        rows, cols = self.shapes[level]
        return torch.tensor([1 / cols, 1 / rows, 1 / max(self.levels - 1, 1)])

    def starting_positions(self, batch: int, device: torch.device | str = "cpu") -> list[torch.Tensor]:
        """Every level's node positions (x, y, level) in [0, 1], each level a channels-last (B, h, w, 3) grid."""
        grids = []
        for level, (rows, cols) in enumerate(self.shapes):
            y, x = torch.meshgrid((torch.arange(rows, device=device) + 0.5) / rows,
                                  (torch.arange(cols, device=device) + 0.5) / cols, indexing="ij")
            z = torch.full_like(x, level / max(self.levels - 1, 1))
            grids.append(torch.stack([x, y, z], dim=-1).expand(batch, -1, -1, -1))
        return grids

    def edges(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(source, target) node ids of every edge: each node's 8 neighbours and itself within its level, the
        node covering it one level up and the 4 it covers one level down (the network's layers use the same
        edges as fixed grid offsets and never build this list)."""
        grids = [torch.arange(start, start + rows * cols).view(rows, cols)
                 for start, (rows, cols) in zip(self.offsets, self.shapes)]
        sources, targets = [], []
        for level, ids in enumerate(grids):
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    source, target = _shifted(ids, dy, dx)
                    sources.append(source)
                    targets.append(target)
            if level + 1 < self.levels:
                rows, cols = ids.shape
                parents = grids[level + 1][torch.arange(rows) // 2][:, torch.arange(cols) // 2].reshape(-1)
                sources += [ids.reshape(-1), parents]
                targets += [parents, ids.reshape(-1)]
        return torch.cat(sources), torch.cat(targets)


def _shifted(ids: torch.Tensor, dy: int, dx: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The (neighbour, node) id pairs of a grid whose neighbour lies ``(dy, dx)`` away from the node."""
    height, width = ids.shape
    rows = slice(max(dy, 0), height + min(dy, 0)), slice(max(-dy, 0), height + min(-dy, 0))
    cols = slice(max(dx, 0), width + min(dx, 0)), slice(max(-dx, 0), width + min(-dx, 0))
    return ids[rows[0], cols[0]].reshape(-1), ids[rows[1], cols[1]].reshape(-1)


def image_pyramid(image: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """The image and ``levels - 1`` halvings, each pixel the mean of the four below it."""
    pyramid = [image]
    for _ in range(levels - 1):
        pyramid.append(F.avg_pool2d(pyramid[-1], 2))
    return pyramid


def project(pyramid: list[torch.Tensor], positions: torch.Tensor) -> torch.Tensor:
    """Node features (B, h, w, C + 1) at ``positions`` (B, h, w, 3): the colour of the (B, C, H, W) pyramid,
    bilinear within a level and linear between the two levels around the position's level coordinate, then that
    coordinate itself."""
    grid = positions[..., :2] * 2 - 1  # grid_sample's [-1, 1] with align_corners=False
    level = positions[..., 2:] * (len(pyramid) - 1)  # (B, h, w, 1)
    colour = sum(F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=False)
                 .permute(0, 2, 3, 1) * torch.relu(1 - (level - index).abs()) for index, image in enumerate(pyramid))
    return torch.cat([colour, positions[..., 2:]], dim=-1)


def king_neighbours(grid: torch.Tensor, border: float = 0.0) -> list[torch.Tensor]:
    """For every node of a channels-last (B, h, w, X) grid, the values of its 9 king neighbours (itself included,
    row by row from the top left), ``border`` beyond the grid's border: one (B, h, w, X) grid per neighbour."""
    height, width = grid.shape[1:3]
    padded = F.pad(grid, (0, 0, 1, 1, 1, 1), value=border)
    return [padded[:, 1 + dy:1 + dy + height, 1 + dx:1 + dx + width] for dy in (-1, 0, 1) for dx in (-1, 0, 1)]


def at_children(grid: torch.Tensor) -> torch.Tensor:
    """A coarser level's channels-last (B, h, w, X) grid at the level below: each node's value at its 4 children."""
    return grid.repeat_interleave(2, dim=1).repeat_interleave(2, dim=2)


def incoming(grids: list[torch.Tensor], level: int, border: float = 0.0) -> list[torch.Tensor]:
    """For every node of ``level``, the channels-last grids' values at the sources of its incoming edges, one
    (B, h, w, X) grid per edge offset: the 9 king neighbours (self included; ``border`` beyond the image's
    border), then the node covering it one level up, then the 4 it covers one level down."""
    sources = king_neighbours(grids[level], border)
    if level + 1 < len(grids):
        sources.append(at_children(grids[level + 1]))
    if level > 0:
        sources += [grids[level - 1][:, row::2, col::2] for row in (0, 1) for col in (0, 1)]
    return sources


class Pointwise(nn.Conv2d):
    """A 1 x 1 convolution applied to channels-last (..., C) grids as one matrix product (its weights stored as
    a Conv2d's, so weights files keep their layout)."""

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True) -> None:
        super().__init__(in_channels, out_channels, 1, bias=bias)

    def forward(self, grid: torch.Tensor) -> torch.Tensor:
        return F.linear(grid, self.weight.flatten(1), self.bias)


class MultiHeadLayer(nn.Module):
    """What every graph attention layer starts with: its channels split into heads, and the norm of its input."""

    def __init__(self, channels: int, heads: int) -> None:
        super().__init__()
        if channels % heads:
            raise ValueError(f"{channels} channels do not split into {heads} heads")
        self.heads, self.head_channels = heads, channels // heads
        self.norm = nn.LayerNorm(channels)


class GraphAttentionLayer(MultiHeadLayer):
    """Residual multi-head graph attention over the multi-magnification graph: GAT scores (LeakyReLU of a source
    and a target term) plus a learned term of the edge's positional offset, softmax over each node's incoming
    edges, attention dropout. Works on the graph's levels as channels-last grids: an edge is a fixed neighbour
    offset."""

    def __init__(self, channels: int, heads: int, dropout: float) -> None:
        super().__init__(channels, heads)
        self.value = Pointwise(channels, channels, bias=False)
        self.source_score = nn.Parameter(torch.randn(heads, self.head_channels) / math.sqrt(self.head_channels))
        self.target_score = nn.Parameter(torch.randn(heads, self.head_channels) / math.sqrt(self.head_channels))
        self.position_score = nn.Linear(3, heads)
        self.mix = Pointwise(channels, channels)
        self.dropout = nn.Dropout(dropout)

    def forward(self, features: list[torch.Tensor], positions: list[torch.Tensor]) -> list[torch.Tensor]:
        """``features``: (B, h, w, C) per level; ``positions``: (B, h, w, 3) per level."""
        values = [self.value(self.norm(grid)) for grid in features]
        # every head's source and target score terms of a node, as one matrix product: (C, 2 x heads)
        scoring = torch.cat([torch.block_diag(*self.source_score[..., None]),
                             torch.block_diag(*self.target_score[..., None])], dim=1)
        # the positional term is linear in the edge's offset (source position minus target position), so it splits
        # into a term of the source and one of the target: an edge's score is LeakyReLU(source part + target part)
        placed = [F.linear(p, self.position_score.weight) for p in positions]
        parts = [(v @ scoring).split(self.heads, dim=-1) for v in values]
        carried = [source + w for (source, _), w in zip(parts, placed)]  # each node's source part
        updated = []
        for level, grid in enumerate(features):
            # edges from beyond the border get a source part of -inf: no weight after the softmax
            sources = torch.stack(incoming(carried, level, border=-torch.inf), dim=-1)  # (B, h, w, heads, K)
            target = parts[level][1] - placed[level] + self.position_score.bias
            attention = self.dropout(torch.softmax(F.leaky_relu(sources + target[..., None], 0.2), dim=-1))
            head = values[level].view(*grid.shape[:3], self.heads, self.head_channels)
            messages = torch.zeros_like(head)  # summed in place: no temporary per edge
            for edge, value in enumerate(incoming(values, level)):
                messages.addcmul_(value.view_as(head), attention[..., edge, None])
            updated.append(grid + self.dropout(self.mix(F.elu(messages.view_as(grid)))))
        return updated
