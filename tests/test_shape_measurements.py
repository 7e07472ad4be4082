"""Shape measurements of contour nuclei, checked against shapes whose values are known in closed form."""

from __future__ import annotations

import numpy as np
import pytest

from nuclei_core.engine.slide import Slide
from nuclei_core.shape_measurements import (
    AREA,
    CIRCULARITY,
    ECCENTRICITY,
    PERIMETER,
    contour_measurements,
    polygon_shape,
)


def ellipse(a: float, b: float, points: int = 720) -> np.ndarray:
    angles = np.linspace(0, 2 * np.pi, points, endpoint=False)
    rotation = np.array([[np.cos(0.6), -np.sin(0.6)], [np.sin(0.6), np.cos(0.6)]])
    return np.c_[a * np.cos(angles), b * np.sin(angles)] @ rotation.T + (40.0, -7.0)


def test_an_ellipse_has_its_area_and_eccentricity_in_any_orientation_and_either_winding():
    ring = ellipse(10, 6)
    for oriented in (ring, ring[::-1]):
        area, perimeter, eccentricity = polygon_shape(oriented)
        assert area == pytest.approx(np.pi * 60, rel=1e-4)
        assert eccentricity == pytest.approx(0.8, rel=1e-4)
        assert 2 * np.pi * np.sqrt((100 + 36) / 2) > perimeter > 4 * 10  # between the ellipse's known bounds


def test_measurements_scale_with_the_pixel_size():
    square = np.array([[0, 0], [4, 0], [4, 4], [0, 4]], dtype=float)
    measured = contour_measurements([square, ellipse(5, 5)], microns_per_pixel=0.5)
    np.testing.assert_allclose(measured[AREA][0], 4.0)
    np.testing.assert_allclose(measured[PERIMETER][0], 8.0)
    np.testing.assert_allclose(measured[CIRCULARITY], [np.pi / 4, 1.0], rtol=1e-4)
    np.testing.assert_allclose(measured[ECCENTRICITY], [0.0, 0.0], atol=1e-6)


def test_a_degenerate_contour_measures_zero_area():
    assert polygon_shape(np.array([[0.0, 0.0], [3.0, 0.0], [6.0, 0.0]]))[0] == 0.0


def test_slide_pixel_size_comes_from_its_metadata(sample_svs, tmp_png_slide):
    assert Slide(sample_svs).microns_per_pixel == pytest.approx(0.499, abs=1e-3)
    assert Slide(tmp_png_slide(np.zeros((8, 8, 3))), input_mag=40).microns_per_pixel == pytest.approx(0.25)
