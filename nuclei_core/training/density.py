"""Density-map targets for point annotations: centres dilated to discs, then Gaussian-smoothed."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def density_target(points: np.ndarray, shape: tuple[int, int], radius: int = 3, sigma: float = 2.0) -> np.ndarray:
    """A float32 map of ``shape`` peaking at 1.0 on each isolated centre (x, y in pixels)."""
    binary = np.zeros(shape, dtype=np.float32)
    cols = np.clip(np.round(points[:, 0]).astype(int), 0, shape[1] - 1)
    rows = np.clip(np.round(points[:, 1]).astype(int), 0, shape[0] - 1)
    binary[rows, cols] = 1.0
    yy, xx = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    disc = (xx ** 2 + yy ** 2) <= radius ** 2
    dilated = ndimage.binary_dilation(binary > 0, structure=disc).astype(np.float32)
    smoothed = ndimage.gaussian_filter(dilated, sigma)
    single = np.zeros((4 * radius + 8 * int(np.ceil(sigma)) + 1,) * 2, dtype=np.float32)
    centre = single.shape[0] // 2
    single[centre - radius:centre + radius + 1, centre - radius:centre + radius + 1] = disc
    peak = ndimage.gaussian_filter(single, sigma)[centre, centre]
    return np.minimum(smoothed / peak, 1.0)
