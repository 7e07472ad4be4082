"""A low-resolution tissue mask, so tiles of glass (or empty background) are skipped."""

from __future__ import annotations

import cv2
import numpy as np
from skimage.filters import threshold_otsu


FLUORESCENCE_DENSITY = 0.05  # share of a neighbourhood lit by nuclei for it to count as tissue


def tissue_mask(thumbnail: np.ndarray) -> np.ndarray:
    """Boolean mask of tissue on an RGB thumbnail.

    Brightfield (bright background): tissue is darker or more saturated than the glass.
    Fluorescence (a mostly near-black image): tissue is brighter than the background in its brightest
    channel (a DAPI image rendered blue has almost no luminance).
    A uniform image has none.
    """
    hsv = cv2.cvtColor(thumbnail, cv2.COLOR_RGB2HSV)
    grey = cv2.cvtColor(thumbnail, cv2.COLOR_RGB2GRAY).astype(np.float32)
    if float(grey.max() - grey.min()) < 8 and int(hsv[..., 1].max()) < 20:
        return np.zeros(grey.shape, dtype=bool)
    fluorescence = float(np.percentile(grey, 5)) < 40 and float(np.median(grey)) < 100
    brightfield = not fluorescence
    if brightfield:
        darkness = 255.0 - grey
        signal = np.maximum(darkness, hsv[..., 1].astype(np.float32))
    else:
        signal = thumbnail.max(axis=2).astype(np.float32)  # the brightest channel: DAPI is blue only
    signal = cv2.GaussianBlur(signal, (5, 5), 0)
    level = max(threshold_otsu(signal), 20.0) if signal.max() > signal.min() else np.inf
    mask = signal > level
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    mask = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, kernel).astype(bool)
    if fluorescence:  # only nuclei shine: tissue is where they are dense, the dark cytoplasm between included
        side = max(5, round(min(mask.shape) / 40))
        mask = cv2.blur(mask.astype(np.float32), (side, side)) > FLUORESCENCE_DENSITY
    return mask
