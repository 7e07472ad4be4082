"""A low-resolution tissue mask, so tiles of glass (or empty background) are skipped."""

from __future__ import annotations

import cv2
import numpy as np
from skimage.filters import threshold_otsu


def tissue_mask(thumbnail: np.ndarray) -> np.ndarray:
    """Boolean mask of tissue on an RGB thumbnail.

    Brightfield (bright background): tissue is darker or more saturated than the glass.
    Fluorescence (a mostly near-black image): tissue is brighter than the background.
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
        signal = grey
    signal = cv2.GaussianBlur(signal, (5, 5), 0)
    level = max(threshold_otsu(signal), 20.0) if signal.max() > signal.min() else np.inf
    mask = signal > level
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    return cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, kernel).astype(bool)
