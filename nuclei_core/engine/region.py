"""The analysis region of interest in the DSA ``region`` syntax, as a polygon in base pixels."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon, box

from ..errors import InputError


# No slide is a billion pixels across: larger coordinates are a mistake (and overflow geometry libraries).
MAX_COORDINATE = 1e9


def parse_region(values: Sequence[float], width: int, height: int) -> MultiPolygon | None:
    """None for the whole slide (``-1,-1,-1,-1``), else the region clipped to the slide.

    4 values: left, top, width, height; 6 values: centre x, y, z and radii x, y, z;
    2n >= 8 values: polygon vertices x, y, ... with ``-1, -1`` separating several polygons.
    """
    values = [float(v) for v in values]
    if not all(math.isfinite(v) for v in values):
        raise InputError(f"analysis_roi={','.join(f'{v:g}' for v in values)} is not a finite number")
    if any(abs(v) > MAX_COORDINATE for v in values):
        raise InputError(f"analysis_roi={','.join(f'{v:g}' for v in values)} lies far outside any slide "
                         f"(coordinates are full-resolution pixels, at most {MAX_COORDINATE:g})")
    values = [round(v, 6) + 0.0 for v in values]  # a micro-pixel grid: no denormal edge past the slide's
    if list(values) == [-1.0] * 4:
        return None
    if len(values) < 4 or len(values) % 2:
        raise InputError(f"analysis_roi needs 4, 6 or an even number >= 8 of values, got {len(values)}")
    if len(values) == 6:
        values = [values[0] - values[3], values[1] - values[4], 2 * values[3], 2 * values[4]]
    if len(values) == 4:
        left, top, w, h = values
        if w <= 0 or h <= 0:
            raise InputError(f"analysis_roi width and height must be positive, got {w:g} x {h:g}")
        polygons = [box(left, top, left + w, top + h)]
    else:
        rings, current = [], []
        for x, y in zip(values[::2], values[1::2]):
            if x == -1 and y == -1:
                rings.append(current)
                current = []
            else:
                current.append((x, y))
        rings.append(current)
        if any(len(r) < 3 for r in rings):
            raise InputError("analysis_roi polygon needs at least 3 vertices per polygon")
        polygons = [shapely.make_valid(Polygon(r)) for r in rings]
    region = shapely.unary_union(polygons).intersection(box(0, 0, width, height))
    if region.is_empty or region.area <= 0:
        raise InputError(f"analysis_roi {','.join(f'{v:g}' for v in values)} lies outside the "
                         f"{width} x {height} slide")
    parts = [g for g in getattr(region, "geoms", [region]) if isinstance(g, Polygon)]
    return MultiPolygon(parts)


def contains_points(region: MultiPolygon | None, points: np.ndarray) -> np.ndarray:
    """Boolean mask of the (N, 2) x,y points inside ``region`` (all true when it is None)."""
    if region is None:
        return np.ones(len(points), dtype=bool)
    return shapely.contains_xy(region, points[:, 0], points[:, 1]) if len(points) else np.zeros(0, bool)
