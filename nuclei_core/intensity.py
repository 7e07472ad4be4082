"""Percentile contrast stretch of fluorescence images, so that dim and bright exposures look alike to a network."""

from __future__ import annotations

import numpy as np

STRETCH_PERCENTILES = (1.0, 99.8)  # the intensities mapped to 0 and 255 (StarDist's normalisation)
MIN_STRETCH_RANGE = 32.0  # at most 255 / 32 = 8x: an image of background alone is not blown up to nuclei


def stretch_intensity(image: np.ndarray) -> np.ndarray:
    """uint8 ``image`` with its 1st intensity percentile moved to 0 and its 99.8th to 255 (a span under
    ``MIN_STRETCH_RANGE`` is widened to it), clipped."""
    low, high = np.percentile(image, STRETCH_PERCENTILES)
    scale = 255.0 / max(float(high - low), MIN_STRETCH_RANGE)
    return np.clip(np.rint((image.astype(np.float32) - float(low)) * scale), 0, 255).astype(np.uint8)
