"""Per-nucleus shape measurements of contour nuclei, in micrometres (QuPath-style names)."""

from __future__ import annotations

import numpy as np

AREA, PERIMETER, ECCENTRICITY, CIRCULARITY = "Area µm^2", "Perimeter µm", "Eccentricity", "Circularity"


def polygon_shape(ring: np.ndarray) -> tuple[float, float, float]:
    """Area, perimeter and eccentricity (of the ellipse with the same second moments) of an (K, 2) x,y ring."""
    x, y = ring[:, 0] - ring[:, 0].mean(), ring[:, 1] - ring[:, 1].mean()
    xn, yn = np.roll(x, -1), np.roll(y, -1)
    cross = x * yn - xn * y
    area2 = cross.sum()  # twice the signed area
    perimeter = float(np.hypot(xn - x, yn - y).sum())
    if abs(area2) < 1e-12:
        return 0.0, perimeter, 1.0
    cx, cy = ((x + xn) * cross).sum() / (3 * area2), ((y + yn) * cross).sum() / (3 * area2)
    sxx = ((x * x + x * xn + xn * xn) * cross).sum() / (6 * area2) - cx * cx
    syy = ((y * y + y * yn + yn * yn) * cross).sum() / (6 * area2) - cy * cy
    sxy = ((x * yn + 2 * x * y + 2 * xn * yn + xn * y) * cross).sum() / (12 * area2) - cx * cy
    half_gap = np.sqrt(((sxx - syy) / 2) ** 2 + sxy ** 2)
    major, minor = (sxx + syy) / 2 + half_gap, max((sxx + syy) / 2 - half_gap, 0.0)
    eccentricity = float(np.sqrt(1 - minor / major)) if major > 0 else 0.0
    return abs(float(area2)) / 2, perimeter, eccentricity


def contour_measurements(contours: list[np.ndarray], microns_per_pixel: float) -> dict[str, np.ndarray]:
    """Area (µm²), perimeter (µm), eccentricity and circularity (4πA/P², 1 for a circle) of each contour."""
    shapes = np.array([polygon_shape(np.asarray(c, dtype=np.float64)) for c in contours]).reshape(-1, 3)
    area, perimeter = shapes[:, 0] * microns_per_pixel ** 2, shapes[:, 1] * microns_per_pixel
    with np.errstate(divide="ignore", invalid="ignore"):
        circularity = np.where(perimeter > 0, 4 * np.pi * area / perimeter ** 2, 0.0)
    return {AREA: area, PERIMETER: perimeter, ECCENTRICITY: shapes[:, 2], CIRCULARITY: circularity}
