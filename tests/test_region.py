"""parse_region (the DSA analysis_roi syntax) and contains_points, on a 100 x 80 slide."""

import numpy as np
import pytest
from shapely.geometry import MultiPolygon

from nuclei_core.engine.region import contains_points, parse_region
from nuclei_core.errors import InputError

W, H = 100, 80


def test_minus_ones_means_whole_slide():
    assert parse_region([-1, -1, -1, -1], W, H) is None
    assert parse_region(["-1", "-1", "-1", "-1"], W, H) is None  # CLI strings are accepted too


def test_rectangle_left_top_width_height():
    region = parse_region([10, 20, 30, 40], W, H)
    assert isinstance(region, MultiPolygon)
    assert region.bounds == (10, 20, 40, 60)
    assert region.area == 30 * 40


def test_centre_and_radius_form():
    # centre (50, 40, z=0), radii (10, 5, z=0) -> box 40..60 x 35..45
    region = parse_region([50, 40, 0, 10, 5, 0], W, H)
    assert region.bounds == (40, 35, 60, 45)
    assert region.area == 20 * 10


def test_polygon():
    # right triangle with legs 40 and 30
    region = parse_region([10, 10, 50, 10, 10, 40, 10, 10], W, H)
    assert region.area == pytest.approx(40 * 30 / 2)
    assert region.bounds == (10, 10, 50, 40)


def test_polygon_with_four_distinct_vertices():
    region = parse_region([0, 0, 20, 0, 20, 10, 0, 10], W, H)
    assert region.area == pytest.approx(200)


def test_two_polygons_separated_by_minus_one_pair():
    values = [0, 0, 10, 0, 10, 10, 0, 10, -1, -1, 50, 50, 70, 50, 70, 60, 50, 60]
    region = parse_region(values, W, H)
    assert len(region.geoms) == 2
    assert region.area == pytest.approx(100 + 200)
    assert sorted(g.bounds for g in region.geoms) == [(0, 0, 10, 10), (50, 50, 70, 60)]


def test_rectangle_is_clipped_to_the_slide():
    region = parse_region([-20, 70, 50, 50], W, H)  # x -20..30, y 70..120
    assert region.bounds == (0, 70, 30, 80)
    assert region.area == 30 * 10


def test_polygon_is_clipped_to_the_slide():
    region = parse_region([90, 0, 150, 0, 150, 10, 90, 10], W, H)
    assert region.bounds == (90, 0, 100, 10)
    assert region.area == pytest.approx(100)


@pytest.mark.parametrize("values", [
    [200, 200, 10, 10],                 # rectangle right of and below the slide
    [-50, -50, 20, 20],                 # rectangle above-left of the slide
    [100, 0, 10, 10],                   # touches the right edge only: zero area inside
    [200, 0, 300, 0, 300, 50, 200, 50],  # polygon outside
])
def test_region_outside_the_slide_is_an_input_error(values):
    with pytest.raises(InputError, match="outside"):
        parse_region(values, W, H)


@pytest.mark.parametrize("values", [[1, 2, 3], [1, 2, 3, 4, 5], [0, 0, 10, 0, 10, 10, 5]])
def test_odd_or_too_few_values_is_an_input_error(values):
    with pytest.raises(InputError, match=str(len(values))):
        parse_region(values, W, H)


@pytest.mark.parametrize("values", [[10, 10, 0, 5], [10, 10, 5, 0], [10, 10, -5, 5], [50, 40, 0, 0, 5, 0]])
def test_zero_or_negative_size_is_an_input_error(values):
    with pytest.raises(InputError, match="positive"):
        parse_region(values, W, H)


@pytest.mark.parametrize("values", [
    [0, 0, 10, 0, 10, 10, -1, -1, 5, 5, 6, 6],  # second polygon has only 2 vertices
    [0, 0, 10, 0, -1, -1, 5, 5, 6, 6, 7, 9],    # first polygon has only 2 vertices
])
def test_polygon_with_fewer_than_three_vertices_is_an_input_error(values):
    with pytest.raises(InputError, match="3 vertices"):
        parse_region(values, W, H)


def test_contains_points_on_a_polygon():
    # triangle (10,10) (50,10) (10,40): inside where (x-10)/40 + (y-10)/30 < 1
    region = parse_region([10, 10, 50, 10, 10, 40, 10, 10], W, H)
    points = np.array([
        [20, 20],   # inside
        [12, 38],   # inside, near the acute corner at (10, 40)
        [40, 30],   # inside the bounding box but beyond the hypotenuse
        [5, 20],    # left of the triangle
        [60, 15],   # right of it
    ], dtype=float)
    np.testing.assert_array_equal(contains_points(region, points), [True, True, False, False, False])


def test_contains_points_whole_slide_and_empty_input():
    points = np.array([[0, 0], [1e6, -5]], dtype=float)
    np.testing.assert_array_equal(contains_points(None, points), [True, True])
    region = parse_region([0, 0, 10, 10], W, H)
    assert contains_points(region, np.zeros((0, 2))).shape == (0,)
