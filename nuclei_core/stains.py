"""Ruifrok colour deconvolution (HistomicsTK) of H&E images: how much haematoxylin each pixel holds."""

from __future__ import annotations

import numpy as np
from histomicstk.preprocessing.color_deconvolution import color_deconvolution, stain_color_map

HAEMATOXYLIN_EOSIN = np.array([stain_color_map["hematoxylin"], stain_color_map["eosin"], stain_color_map["null"]]).T


def haematoxylin_density(image: np.ndarray, stains: np.ndarray = HAEMATOXYLIN_EOSIN) -> np.ndarray:
    """(H, W) optical density of the first stain of ``stains`` (3 x 3, one stain vector per column; HistomicsTK's
    haematoxylin / eosin by default): 0 where there is none, about 1 in a dark nucleus."""
    intensity = color_deconvolution(np.asarray(image, np.uint8), stains, 255).Stains[..., 0].astype(np.float64)
    return -np.log10(np.maximum(intensity, 1.0) / 255.0)
