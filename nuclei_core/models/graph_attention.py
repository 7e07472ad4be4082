"""Multi-magnification graph attention network for nucleus segmentation (after the neuroplastic graph attention
network of the multi-magnification graph paper).

An image becomes one graph: a node per pixel at full resolution plus a node per pixel of ``levels - 1`` lower
magnifications (each half the one below). Edges join a node to its 8 neighbours and itself within a level (king
graph) and to the node that covers it one level up and the nodes it covers one level down. Every node has a
position in [0, 1]^3 (x, y, level) that the network moves during the forward pass (a small dense network
iterates it); a node's features are the image's colour projected at its position (bilinear within a pyramid
level, linear between levels) and its level, so moving a node changes what it sees. Residual graph attention
layers (GAT scores with LeakyReLU, softmax over each node's incoming edges, plus a learned term of the edge's
positional offset) mix the features; a linear head gives every node its outputs, and the full-resolution nodes
make the (foreground, marker) maps the segmenter turns into instances.

The graph is built with index arithmetic only, once per tile size; memory grows linearly with the tile's pixels:
about 4/3 nodes and 14.6 edges per pixel.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F


SWEEPS = ("none", "up-down")  # how a layer orders its level updates (see MultiMagnificationGAT.level_order)


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


def incoming(grids: list[torch.Tensor], level: int, border: float = 0.0) -> list[torch.Tensor]:
    """For every node of ``level``, the channels-last grids' values at the sources of its incoming edges, one
    (B, h, w, X) grid per edge offset: the 9 king neighbours (self included; ``border`` beyond the image's
    border), then the node covering it one level up, then the 4 it covers one level down."""
    grid = grids[level]
    height, width = grid.shape[1:3]
    padded = F.pad(grid, (0, 0, 1, 1, 1, 1), value=border)
    sources = [padded[:, 1 + dy:1 + dy + height, 1 + dx:1 + dx + width] for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    if level + 1 < len(grids):
        sources.append(grids[level + 1].repeat_interleave(2, dim=1).repeat_interleave(2, dim=2))
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


class GraphAttentionLayer(nn.Module):
    """Residual multi-head graph attention over the multi-magnification graph: GAT scores (LeakyReLU of a source
    and a target term) plus a learned term of the edge's positional offset, softmax over each node's incoming
    edges, attention dropout. Works on the graph's levels as channels-last grids: an edge is a fixed neighbour
    offset."""

    def __init__(self, channels: int, heads: int, dropout: float) -> None:
        super().__init__()
        if channels % heads:
            raise ValueError(f"{channels} channels do not split into {heads} heads")
        self.heads, self.head_channels = heads, channels // heads
        self.norm = nn.LayerNorm(channels)
        self.value = Pointwise(channels, channels, bias=False)
        self.source_score = nn.Parameter(torch.randn(heads, self.head_channels) / math.sqrt(self.head_channels))
        self.target_score = nn.Parameter(torch.randn(heads, self.head_channels) / math.sqrt(self.head_channels))
        self.position_score = nn.Linear(3, heads)
        self.mix = Pointwise(channels, channels)
        self.dropout = nn.Dropout(dropout)

    def forward(self, features: list[torch.Tensor], positions: list[torch.Tensor],
                order: Sequence[int] | None = None) -> list[torch.Tensor]:
        """``features``: (B, h, w, C) per level; ``positions``: (B, h, w, 3) per level. ``order``: None updates every
        level from the layer's input (all at once); a sequence of levels updates them one after another, each
        from its neighbours' newest features, so that a sweep up (or down) the pyramid carries a node's features
        through every level in one layer."""
        # every head's source and target score terms of a node, as one matrix product: (C, 2 x heads)
        scoring = torch.cat([torch.block_diag(*self.source_score[..., None]),
                             torch.block_diag(*self.target_score[..., None])], dim=1)
        terms = [self._node_terms(grid, where, scoring) for grid, where in zip(features, positions)]
        updated = list(features)
        for level in range(len(features)) if order is None else order:
            updated[level] = self._updated(level, updated[level], terms)
            if order is not None:
                terms[level] = self._node_terms(updated[level], positions[level], scoring)
        return updated

    def _node_terms(self, grid: torch.Tensor, where: torch.Tensor,
                    scoring: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A level's values, and each node's score terms as an edge's source and as its target. The positional
        term is linear in the edge's offset (source position minus target position), so it splits into a term of
        the source and one of the target: an edge's score is LeakyReLU(source part + target part)."""
        value = self.value(self.norm(grid))
        source, target = (value @ scoring).split(self.heads, dim=-1)
        placed = F.linear(where, self.position_score.weight)
        return value, source + placed, target - placed + self.position_score.bias

    def _updated(self, level: int, grid: torch.Tensor,
                 terms: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """``grid`` (the features of ``level``) plus the attention-weighted messages of its incoming edges."""
        values = [value for value, _, _ in terms]
        # edges from beyond the border get a source part of -inf: no weight after the softmax
        sources = torch.stack(incoming([source for _, source, _ in terms], level, border=-torch.inf), dim=-1)
        attention = self.dropout(torch.softmax(F.leaky_relu(sources + terms[level][2][..., None], 0.2), dim=-1))
        head = values[level].view(*grid.shape[:3], self.heads, self.head_channels)
        messages = torch.zeros_like(head)  # summed in place: no temporary per edge
        for edge, value in enumerate(incoming(values, level)):
            messages.addcmul_(value.view_as(head), attention[..., edge, None])
        return grid + self.dropout(self.mix(F.elu(messages.view_as(grid))))


class MultiMagnificationGAT(nn.Module):
    """Graph attention over the multi-magnification graph of each image; (B, out, H, W) logits of the
    full-resolution nodes (``level_outputs`` gives every level's, and the moved positions)."""

    def __init__(self, in_channels: int = 3, out_channels: int = 2, levels: int = 5, channels: int = 32,
                 heads: int = 4, layers: int = 6, position_updates: int = 2, dropout: float = 0.1,
                 sweep: str = "none", ancestor_readout: bool = False) -> None:
        super().__init__()
        if not 1 <= position_updates <= layers:
            raise ValueError("position_updates must be between 1 and the number of layers")
        if sweep not in SWEEPS:
            raise ValueError(f"sweep must be one of {', '.join(SWEEPS)}, not {sweep!r}")
        self.levels = levels
        self.sweep, self.ancestor_readout = sweep, ancestor_readout
        self.size_multiple = 2 ** (levels - 1)
        self.embed = Pointwise(in_channels + 1, channels)
        self.reproject = nn.ModuleList(Pointwise(in_channels + 1, channels) for _ in range(position_updates))
        self.move = nn.ModuleList(nn.Sequential(Pointwise(channels + 3, channels), nn.ReLU(),
                                                Pointwise(channels, 3)) for _ in range(position_updates))
        for mover in self.move:  # nodes start on their grid
            nn.init.zeros_(mover[-1].weight)
            nn.init.zeros_(mover[-1].bias)
        self.layers = nn.ModuleList(GraphAttentionLayer(channels, heads, dropout) for _ in range(layers))
        self.update_after = {round((i + 1) * layers / (position_updates + 1)) - 1: i for i in range(position_updates)}
        self.norm = nn.LayerNorm(channels)
        self.head = Pointwise(channels, out_channels)

    def level_order(self, layer: int) -> Sequence[int] | None:
        """The order in which ``layer`` updates the levels: None (all at once from the layer's input) without a
        sweep; with the up-down sweep, full resolution to coarsest in even layers and back in odd ones, so that
        after two layers every full-resolution node has heard from every level above it."""
        if self.sweep == "none":
            return None
        upward = range(self.levels)
        return upward if layer % 2 == 0 else upward[::-1]

    def level_outputs(self, images: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Logits (B, out, h, w) and final node positions (B, 3, h, w) of every level, full resolution first."""
        graph = PyramidGraph(*images.shape[-2:], self.levels)
        positions = graph.starting_positions(images.shape[0], images.device)
        spacing = [graph.spacing(level).to(images.device) for level in range(self.levels)]
        pyramid = image_pyramid(images, self.levels)
        features = [self.embed(project(pyramid, p)) for p in positions]  # channels-last grids from here on
        for index, layer in enumerate(self.layers):
            features = layer(features, positions, self.level_order(index))
            if index in self.update_after:
                mover, reproject = self.move[self.update_after[index]], self.reproject[self.update_after[index]]
                positions = [(p + torch.tanh(mover(torch.cat([f, p], dim=-1))) * step).clamp(0, 1)
                             for f, p, step in zip(features, positions, spacing)]
                features = [f + reproject(project(pyramid, p)) for f, p in zip(features, positions)]
        readout = self.with_ancestors(features) if self.ancestor_readout else features
        return ([self.head(self.norm(f)).permute(0, 3, 1, 2) for f in readout],
                [p.permute(0, 3, 1, 2) for p in positions])

    @staticmethod
    def with_ancestors(features: list[torch.Tensor]) -> list[torch.Tensor]:
        """Each level's features plus those of the levels above it, each read at the node's position (bilinear, as
        the colour is projected), so that a full-resolution node's output reads the coarse levels directly."""
        summed = [features[-1]]
        for grid in features[-2::-1]:
            above = F.interpolate(summed[0].permute(0, 3, 1, 2), size=grid.shape[1:3], mode="bilinear",
                                  align_corners=False)
            summed.insert(0, grid + above.permute(0, 2, 3, 1))
        return summed

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.level_outputs(images)[0][0]
