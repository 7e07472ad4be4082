"""Seam handling: every nucleus belongs to exactly one tile, the one whose core holds its centroid."""

from __future__ import annotations

import numpy as np

from ..nuclei import Nuclei
from .tiling import Tile


def keep_in_core(centroids: np.ndarray, core: tuple[int, int, int, int]) -> np.ndarray:
    """Boolean mask of (N, 2) x,y centroids inside the half-open pixel box ``core`` (x0, y0, x1, y1).

    Pixel ``i`` spans ``[i - 0.5, i + 0.5)``, so adjacent cores share no point and miss none.
    """
    x0, y0, x1, y1 = core
    x, y = centroids[:, 0], centroids[:, 1]
    return (x >= x0 - 0.5) & (x < x1 - 0.5) & (y >= y0 - 0.5) & (y < y1 - 0.5)


def owned_nuclei(nuclei: Nuclei, tile: Tile, scale: float) -> Nuclei:
    """The nuclei of one tile (tile px, at ``scale`` analysis px per base px) that its core holds, in base pixel
    coordinates."""
    origin = np.array(tile.read[:2], dtype=np.float64)
    in_core = keep_in_core(nuclei.centroids + origin, tile.core)
    return nuclei.select(in_core).transformed(1.0 / scale, tuple((origin + 0.5) / scale - 0.5))
