"""The magnification-balanced focal loss of the multi-magnification graph attention network.

Every node of every level is supervised: its targets are the (foreground, marker) maps averaged over the pixels
it covers. Each node's focal loss is weighted by a scalar field of its learned position's level coordinate,
interpolated between per-level weights that give each magnification the same total weight (a level has a quarter
of the nodes of the one below, so without the field the full-resolution level would drown the others).
"""

from __future__ import annotations

import torch
from torchvision.ops import sigmoid_focal_loss

from ..models.graph_attention import MultiMagnificationGAT, image_pyramid

FOCAL_GAMMA = 2.0


def balanced_level_weights(node_counts: torch.Tensor) -> torch.Tensor:
    """Per-level node weights that give every level the same total (normalised to a mean node weight of 1)."""
    return node_counts.sum() / (len(node_counts) * node_counts)


def level_weight_field(levels: torch.Tensor, level_weights: torch.Tensor) -> torch.Tensor:
    """The positional scalar field at continuous level coordinates ``levels`` (in [0, 1]): linear between the
    per-level ``level_weights``."""
    scaled = levels * (len(level_weights) - 1)
    return sum(torch.relu(1 - (scaled - index).abs()) * weight for index, weight in enumerate(level_weights))


def magnification_balanced_focal_loss(network: MultiMagnificationGAT, images: torch.Tensor,
                                      targets: torch.Tensor) -> torch.Tensor:
    """Focal loss (gamma 2) of every node's outputs against its level's targets, weighted by the positional
    field; the field is not differentiated (nodes cannot lower the loss by moving to a lighter level)."""
    outputs, positions = network.level_outputs(images)
    level_targets = image_pyramid(targets, len(outputs))
    node_counts = torch.tensor([float(o.shape[-2] * o.shape[-1]) for o in outputs], device=images.device)
    level_weights = balanced_level_weights(node_counts)
    total, weight_sum = images.new_zeros(()), images.new_zeros(())
    for logits, target, position in zip(outputs, level_targets, positions):
        weight = level_weight_field(position[:, 2:].detach(), level_weights)  # (B, 1, h, w)
        focal = sigmoid_focal_loss(logits, target, alpha=-1, gamma=FOCAL_GAMMA, reduction="none")
        total = total + (focal * weight).sum()
        weight_sum = weight_sum + weight.sum() * logits.shape[1]
    return total / weight_sum
