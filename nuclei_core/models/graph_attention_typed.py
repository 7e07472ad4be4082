"""The typed graph attention layer of the multi-magnification graph attention network, as its paper has it
(section 3.5): a node's incoming edges fall into three types (the 9 king neighbours of its own level, the node
covering it one level up, the 4 it covers one level down), each with its own value projection, its own scores and
its own softmax, so that a cross-magnification edge is never diluted among the neighbours; the positional term
is a learned function of the edge's offset in node steps of the target's level (a neighbour is one step away, a
parent half a step and one level), large enough to matter; and the levels are updated from the coarsest to the
finest, each from its parent's already updated features, so that one layer carries coarse context to full
resolution.

Works on the channels-last level grids of :mod:`nuclei_core.models.graph_attention`; positions come as each node's
displacement from its starting place in node steps of its own level (x, y, level).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from .graph_attention import MultiHeadLayer, Pointwise, at_children, king_neighbours

KING_OFFSETS = torch.tensor([[dx, dy, 0.0] for dy in (-1, 0, 1) for dx in (-1, 0, 1)])  # king_neighbours' order
CHILD_OFFSETS = torch.tensor([[(col - 0.5) / 2, (row - 0.5) / 2, -1.0] for row in (0, 1) for col in (0, 1)])
SCORED_TYPES = ("level", "child")  # a node's one parent needs no score: its own softmax gives it weight 1


class TypedGraphAttentionLayer(MultiHeadLayer):
    """Residual multi-head graph attention with one softmax per edge type and levels updated coarsest first."""

    def __init__(self, channels: int, heads: int, dropout: float) -> None:
        super().__init__(channels, heads)
        self.value = nn.ModuleDict({kind: Pointwise(channels, channels, bias=False)
                                    for kind in ("level", "parent", "child")})
        self.source_score = nn.Parameter(torch.randn(len(SCORED_TYPES), heads, self.head_channels)
                                         / math.sqrt(self.head_channels))
        self.target_score = Pointwise(channels, len(SCORED_TYPES) * heads)
        self.position_score = nn.ModuleDict({kind: nn.Linear(3, heads, bias=False) for kind in SCORED_TYPES})
        self.mix = Pointwise(channels, channels)
        self.dropout = nn.Dropout(dropout)

    def _source_scores(self, values: torch.Tensor, kind: str) -> torch.Tensor:
        """(B, h, w, heads): each source node's score term for edges of ``kind``."""
        heads = values.view(*values.shape[:3], self.heads, self.head_channels)
        return (heads * self.source_score[SCORED_TYPES.index(kind)]).sum(-1)

    def _attend(self, scores: torch.Tensor, sources: list[torch.Tensor], shape: torch.Size) -> torch.Tensor:
        """The attention-weighted sum (B, h, w, C) of ``sources`` (each (B, h, w, C)) under ``scores``
        (B, h, w, heads, K), softmax over the K edges."""
        attention = self.dropout(torch.softmax(F.leaky_relu(scores, 0.2), dim=-1))
        messages = torch.zeros(*shape[:3], self.heads, self.head_channels, dtype=sources[0].dtype,
                               device=sources[0].device)
        for edge, value in enumerate(sources):
            messages.addcmul_(value.view_as(messages), attention[..., edge, None])
        return messages.view(shape)

    def forward(self, features: list[torch.Tensor], displacements: list[torch.Tensor]) -> list[torch.Tensor]:
        """``features``: (B, h, w, C) per level, full resolution first; ``displacements``: (B, h, w, 3) per level,
        each node's position less its starting one, in node steps of its level. Returns the updated features."""
        levels = len(features)
        normed = [self.norm(grid) for grid in features]
        updated: list[torch.Tensor] = [None] * levels  # type: ignore[list-item]
        for level in reversed(range(levels)):
            grid, shape = features[level], features[level].shape
            targets = dict(zip(SCORED_TYPES, self.target_score(normed[level]).split(self.heads, dim=-1)))
            placed = {kind: layer(displacements[level]) for kind, layer in self.position_score.items()}
            # within the level: the 9 king neighbours (self included), -inf beyond the border
            values = self.value["level"](normed[level])
            carried = self._source_scores(values, "level") + placed["level"]
            offsets = F.linear(KING_OFFSETS.to(grid), self.position_score["level"].weight)  # (9, heads)
            scores = (torch.stack(king_neighbours(carried, border=-torch.inf), dim=-1)
                      + (targets["level"] - placed["level"])[..., None] + offsets.T)
            messages = self._attend(scores, king_neighbours(values), shape)
            if level + 1 < levels:  # from the parent, already updated in this layer
                messages = messages + at_children(self.value["parent"](self.norm(updated[level + 1])))
            if level > 0:  # from the 4 children, as they were before this layer
                child_values = self.value["child"](normed[level - 1])
                scale = child_values.new_tensor([0.5, 0.5, 1.0])  # a child's steps in this level's steps
                carried = F.linear(displacements[level - 1] * scale, self.position_score["child"].weight)
                carried = carried + self._source_scores(child_values, "child")
                offsets = F.linear(CHILD_OFFSETS.to(grid), self.position_score["child"].weight)  # (4, heads)
                children = [carried[:, row::2, col::2] for row in (0, 1) for col in (0, 1)]
                scores = (torch.stack(children, dim=-1) + (targets["child"] - placed["child"])[..., None]
                          + offsets.T)
                messages = messages + self._attend(
                    scores, [child_values[:, row::2, col::2] for row in (0, 1) for col in (0, 1)], shape)
            updated[level] = grid + self.dropout(self.mix(F.elu(messages)))
        return updated
