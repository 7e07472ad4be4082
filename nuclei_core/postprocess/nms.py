"""Greedy non-maximum suppression of scored pixels, each standing for a fixed-size box around it."""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage
from torchvision.ops import nms


def nms_points(score_map: np.ndarray, threshold: float, box_size: float,
               iou: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """Pixels of ``score_map`` at or above ``threshold`` that survive NMS of ``box_size`` squares at ``iou``.

    Only pixels that are the maximum of their 3x3 neighbourhood are candidates (a box one pixel from a
    higher-scoring one overlaps it far beyond any useful ``iou``), which keeps NMS fast on dense maps.
    Returns (N, 2) x,y coordinates and their (N,) scores, best first.
    """
    peaks = score_map == ndimage.maximum_filter(score_map, size=3, mode="nearest")
    rows, cols = np.nonzero(peaks & (score_map >= threshold))
    if rows.size == 0:
        return np.zeros((0, 2)), np.zeros(0, np.float32)
    centres = torch.from_numpy(np.stack([cols, rows], axis=1).astype(np.float32))
    half = box_size / 2.0
    boxes = torch.cat([centres - half, centres + half], dim=1)
    scores = torch.from_numpy(score_map[rows, cols].astype(np.float32))
    keep = nms(boxes, scores, iou).numpy()
    return centres.numpy()[keep].astype(np.float64), scores.numpy()[keep]
