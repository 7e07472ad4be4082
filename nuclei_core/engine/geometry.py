"""The rule every nucleus a model finds follows before it is written: on the slide, and not degenerate.

1. Every centre and outline vertex is clamped to the slide, ``[0, width] x [0, height]`` full-resolution pixels:
   the extent the DSA and QuPath give an image. (This suite puts pixel centres on integers, so an outline traced
   around an edge pixel, or a box touching the edge, reaches half a pixel past it before the clamp.)
2. A nucleus whose outline (or box) is then degenerate is removed: a coordinate that is not a finite number, fewer
   than three distinct vertices, no area, or narrower (the short side of the smallest rectangle around it) than
   ``MIN_WIDTH_PIXELS`` of a pixel at the model's analysis magnification. No region of whole pixels is that thin: such
   slivers are boxes or outlines cut by the image's edge, or found in an image of a few pixels.

The model cards state this rule; ``analyse_slide`` applies it to every model's nuclei (not to nuclei a user gave,
which are only clamped).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np

from ..errors import InputError
from ..nuclei import Nuclei

MIN_WIDTH_PIXELS = 0.5
# How far past the slide's edge a nucleus read from a file may reach: half a pixel, the difference between
# pixel-centre coordinates (this suite's, HistomicsTK's) and pixel-corner ones (the DSA's, QuPath's).
EDGE_TOLERANCE = 0.5


def check_on_slide(nuclei: Nuclei, source: str | Path, width: float, height: float,
                   tolerance: float = EDGE_TOLERANCE) -> None:
    """Every nucleus of the file ``source`` (centre and outline) lies on the ``width`` x ``height`` slide (within
    ``tolerance`` px); else an InputError naming how many do not (another slide's annotation, or one at another
    magnification)."""
    def off(points: np.ndarray) -> np.ndarray:
        return ((points[:, 0] < -tolerance) | (points[:, 0] > width + tolerance)
                | (points[:, 1] < -tolerance) | (points[:, 1] > height + tolerance))

    outside = off(nuclei.centroids)
    if nuclei.contours is not None:
        outside |= np.array([off(ring).any() for ring in nuclei.contours], dtype=bool)
    if outside.any():
        raise InputError(f"{int(outside.sum())} of {len(nuclei)} nuclei of {Path(source).name} lie outside the "
                         f"{width:g} x {height:g} slide: is it this slide's annotation, in full-resolution pixels?")


def clamped_to_slide(nuclei: Nuclei, width: float, height: float) -> Nuclei:
    """``nuclei`` with every centre and outline vertex clamped to ``[0, width] x [0, height]``."""
    high = np.array([width, height], dtype=np.float64)
    contours = None if nuclei.contours is None else [np.clip(ring, 0, high) for ring in nuclei.contours]
    return dataclasses.replace(nuclei, centroids=np.clip(nuclei.centroids, 0, high), contours=contours,
                               measurements=dict(nuclei.measurements))


def is_degenerate(ring: np.ndarray, min_width: float) -> bool:
    """Whether the (K, 2) x,y ``ring`` has a coordinate that is not finite, fewer than three distinct vertices, no
    area, or is narrower than ``min_width`` (same units)."""
    ring = np.asarray(ring, dtype=np.float64).reshape(-1, 2)
    if not np.isfinite(ring).all() or len(set(map(tuple, ring.tolist()))) < 3:
        return True
    x, y = ring[:, 0], ring[:, 1]
    area = abs(float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))) / 2
    (_, (side_a, side_b), _) = cv2.minAreaRect(ring.astype(np.float32))
    return area == 0 or min(side_a, side_b) < min_width


def well_formed(nuclei: Nuclei, width: float, height: float, analysis_scale: float) -> Nuclei:
    """``nuclei`` clamped to the ``width`` x ``height`` slide, without degenerate ones (the module's rule), for a
    model analysing ``analysis_scale`` pixels per slide pixel."""
    on_slide = clamped_to_slide(nuclei, width, height)
    keep = np.isfinite(on_slide.centroids).all(axis=1)
    if on_slide.contours is not None:
        min_width = MIN_WIDTH_PIXELS / analysis_scale
        keep &= ~np.array([is_degenerate(ring, min_width) for ring in on_slide.contours], dtype=bool)
    return on_slide if keep.all() else on_slide.select(keep)
