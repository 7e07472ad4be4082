"""Seam handling: every nucleus belongs to exactly one tile, the one whose core holds its centroid."""

from __future__ import annotations

import numpy as np


def keep_in_core(centroids: np.ndarray, core: tuple[int, int, int, int]) -> np.ndarray:
    """Boolean mask of (N, 2) x,y centroids inside the half-open pixel box ``core`` (x0, y0, x1, y1).

    Pixel ``i`` spans ``[i - 0.5, i + 0.5)``, so adjacent cores share no point and miss none.
    """
    x0, y0, x1, y1 = core
    x, y = centroids[:, 0], centroids[:, 1]
    return (x >= x0 - 0.5) & (x < x1 - 0.5) & (y >= y0 - 0.5) & (y < y1 - 0.5)
