"""The multi-magnification graph attention network (MM-GAT): its two wirings and two readouts.

- ``wiring="flat"`` (the first weights, 2026-11/12): :class:`GraphAttentionLayer`, one softmax over a node's 14
  incoming edges, every level updated at once, every level's node positions learned.
- ``wiring="typed"`` (the paper's section 3.5 and eq. 13): :class:`TypedGraphAttentionLayer`, one softmax per edge
  type, levels updated coarsest first within each layer, full-resolution positions fixed.
- ``readout="full-resolution"``: the full-resolution nodes' logits are the output; ``readout="reconstruction"``
  (the paper's Fig. 6): the learned weighted sum of every level's logits brought to full resolution (a softmax over
  the levels per output channel).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .graph_attention import GraphAttentionLayer, Pointwise, PyramidGraph, image_pyramid, project
from .graph_attention_typed import TypedGraphAttentionLayer

WIRINGS = ("flat", "typed")
READOUTS = ("full-resolution", "reconstruction")


def full_resolution_first_weights(levels: int) -> torch.Tensor:
    """Per-level weights summing to 1, each level half the one below it (full resolution first)."""
    halves = 0.5 ** torch.arange(levels, dtype=torch.float32)
    return halves / halves.sum()


class MultiMagnificationGAT(nn.Module):
    """Graph attention over the multi-magnification graph of each image; (B, out, H, W) logits of the readout
    (``level_outputs`` gives every level's, and the moved positions)."""

    def __init__(self, in_channels: int = 3, out_channels: int = 2, levels: int = 5, channels: int = 32,
                 heads: int = 4, layers: int = 6, position_updates: int = 2, dropout: float = 0.1,
                 wiring: str = "flat", readout: str = "full-resolution") -> None:
        super().__init__()
        if not 1 <= position_updates <= layers:
            raise ValueError("position_updates must be between 1 and the number of layers")
        if wiring not in WIRINGS or readout not in READOUTS:
            raise ValueError(f"wiring must be one of {WIRINGS} and readout one of {READOUTS}")
        self.levels, self.wiring, self.readout = levels, wiring, readout
        self.size_multiple = 2 ** (levels - 1)
        self.embed = Pointwise(in_channels + 1, channels)
        self.reproject = nn.ModuleList(Pointwise(in_channels + 1, channels) for _ in range(position_updates))
        self.move = nn.ModuleList(nn.Sequential(Pointwise(channels + 3, channels), nn.ReLU(),
                                                Pointwise(channels, 3)) for _ in range(position_updates))
        for mover in self.move:  # nodes start on their grid
            nn.init.zeros_(mover[-1].weight)
            nn.init.zeros_(mover[-1].bias)
        layer = TypedGraphAttentionLayer if wiring == "typed" else GraphAttentionLayer
        self.layers = nn.ModuleList(layer(channels, heads, dropout) for _ in range(layers))
        self.update_after = {round((i + 1) * layers / (position_updates + 1)) - 1: i for i in range(position_updates)}
        self.norm = nn.LayerNorm(channels)
        self.head = Pointwise(channels, out_channels)
        if readout == "reconstruction":  # every level's share of each output channel, before the softmax: at
            # first each level half the one below it, as the loss weighs them (uniform shares start too blurred)
            self.level_shares = nn.Parameter(torch.log(full_resolution_first_weights(levels)).expand(
                out_channels, -1).clone())

    def level_outputs(self, images: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Logits (B, out, h, w) and final node positions (B, 3, h, w) of every level, full resolution first."""
        graph = PyramidGraph(*images.shape[-2:], self.levels)
        start = graph.starting_positions(images.shape[0], images.device)
        spacing = [graph.spacing(level).to(images.device) for level in range(self.levels)]
        pyramid = image_pyramid(images, self.levels)
        positions = start
        features = [self.embed(project(pyramid, p)) for p in positions]  # channels-last grids from here on
        movable = range(1 if self.wiring == "typed" else 0, self.levels)  # the paper fixes full resolution
        for index, layer in enumerate(self.layers):
            if self.wiring == "typed":
                features = layer(features, [(p - s) / step for p, s, step in zip(positions, start, spacing)])
            else:
                features = layer(features, positions)
            if index in self.update_after:
                mover, reproject = self.move[self.update_after[index]], self.reproject[self.update_after[index]]
                positions = [(p + torch.tanh(mover(torch.cat([f, p], dim=-1))) * step).clamp(0, 1)
                             if level in movable else p
                             for level, (f, p, step) in enumerate(zip(features, positions, spacing))]
                features = [f + reproject(project(pyramid, p)) for f, p in zip(features, positions)]
        return ([self.head(self.norm(f)).permute(0, 3, 1, 2) for f in features],
                [p.permute(0, 3, 1, 2) for p in positions])

    def reconstruct(self, outputs: list[torch.Tensor]) -> torch.Tensor:
        """The readout of every level's logits (full resolution first): the full-resolution ones, or their
        weighted reconstruction."""
        if self.readout == "full-resolution":
            return outputs[0]
        shares = torch.softmax(self.level_shares, dim=1)  # (out, levels)
        size = outputs[0].shape[-2:]
        return sum(shares[:, level, None, None] * (F.interpolate(logits, size=size, mode="bilinear",
                                                                 align_corners=False) if level else logits)
                   for level, logits in enumerate(outputs))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.reconstruct(self.level_outputs(images)[0])
