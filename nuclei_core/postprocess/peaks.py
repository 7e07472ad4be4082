"""Local maxima of a score map: the nuclei of density-regression detectors."""

from __future__ import annotations

import numpy as np
from skimage.feature import peak_local_max


def find_peaks(score_map: np.ndarray, threshold: float, min_distance: int) -> tuple[np.ndarray, np.ndarray]:
    """Local maxima of ``score_map`` above ``threshold``, at least ``min_distance`` px apart.

    Returns (N, 2) x,y coordinates and the (N,) map values at those points.
    """
    rows_cols = peak_local_max(score_map, min_distance=min_distance, threshold_abs=threshold,
                               exclude_border=False)
    scores = score_map[rows_cols[:, 0], rows_cols[:, 1]] if len(rows_cols) else np.zeros(0, score_map.dtype)
    return rows_cols[:, ::-1].astype(np.float64), scores.astype(np.float32)
