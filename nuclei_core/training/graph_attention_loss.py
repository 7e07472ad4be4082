"""The losses of the multi-magnification graph attention network that supervise every magnification level.

:func:`magnification_bce`: binary cross-entropy of the network's readout plus that of every level against its
targets averaged over the pixels a node covers, the levels weighted highest at full resolution (each level half
the one below; the paper's Fig. 8), so that every node influences the loss (its section 3.6).

:func:`magnification_balanced_focal_loss`, the first weights' variant: every node of every level is supervised
against the same averaged targets, and each node's focal loss is weighted by a scalar field of its learned
position's level coordinate, interpolated between per-level weights that give each magnification the same total
weight (a level has a quarter of the nodes of the one below, so without the field the full-resolution level would
drown the others).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F
from torchvision.ops import sigmoid_focal_loss

from ..models.graph_attention import image_pyramid
from ..models.graph_attention_network import MultiMagnificationGAT, full_resolution_first_weights

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


def magnification_bce(network: MultiMagnificationGAT, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The readout's binary cross-entropy plus the levels' (each against its averaged targets), weighted by
    :func:`full_resolution_first_weights`."""
    outputs, _ = network.level_outputs(images)
    weights = full_resolution_first_weights(len(outputs))
    levels = sum(weight * F.binary_cross_entropy_with_logits(logits, target)
                 for weight, logits, target in zip(weights.tolist(), outputs, image_pyramid(targets, len(outputs))))
    return F.binary_cross_entropy_with_logits(network.reconstruct(outputs), targets) + levels
