"""What the engine writes: every coordinate on the slide, no degenerate outline; nuclei read from files checked
against the slide with half a pixel of tolerance; the 40x CLIs on a 20x image round-trip through EvaluateNuclei."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nuclei_core.engine.geometry import MIN_WIDTH_PIXELS, check_on_slide, clamped_to_slide, is_degenerate, well_formed
from nuclei_core.errors import InputError
from nuclei_core.nuclei import Nuclei
from plugins.__main__ import main as plugins_main
from annotation_files import nuclei_document


def square(x0: float, y0: float, side: float, height: float | None = None) -> np.ndarray:
    """A closed box outline (x, y) from (x0, y0), ``side`` wide and ``height`` (default: ``side``) tall."""
    h = side if height is None else height
    return np.array([[x0, y0], [x0 + side, y0], [x0 + side, y0 + h], [x0, y0 + h]], float)


def outlined(rings: list[np.ndarray]) -> Nuclei:
    return Nuclei(np.array([ring.mean(axis=0) for ring in rings]), np.ones(len(rings)), contours=rings)


def test_every_centre_and_vertex_is_clamped_to_the_slide():
    nuclei = outlined([square(-0.5, -0.5, 6), square(95.5, 45.5, 5)])
    clamped = clamped_to_slide(nuclei, 100, 50)
    vertices = np.concatenate(clamped.contours)
    assert vertices.min() == 0 and vertices[:, 0].max() == 100 and vertices[:, 1].max() == 50
    assert (clamped.centroids >= 0).all() and (clamped.centroids <= (100, 50)).all()
    assert nuclei.contours[0].min() == -0.5  # the input is left as it was


@pytest.mark.parametrize("ring,degenerate", [
    (square(10, 10, 8), False),
    (square(10, 10, 0.02, 8), True),            # a sliver 0.02 px wide
    (square(10, 10, 8, 0.02), True),
    (np.array([[1, 1], [5, 5], [1, 1], [5, 5]], float), True),  # two distinct vertices
    (np.array([[0, 0], [4, 4], [8, 8]], float), True),           # collinear: no area
    (np.array([[0, 0], [np.nan, 4], [8, 0]], float), True),
    (np.array([[0, 0], [8, 0], [4, np.inf]], float), True),
])
def test_degenerate_outlines_are_recognised(ring, degenerate):
    assert is_degenerate(ring, min_width=0.5) is degenerate


def test_the_width_rule_is_half_a_pixel_of_the_analysis_magnification():
    thin = square(10, 10, 0.3, 8)  # 0.3 slide px: 0.6 px at 2x the slide's scale (a 40x model on 20x), 0.3 at 1x
    nuclei = outlined([thin, square(30, 30, 8)])
    assert len(well_formed(nuclei, 100, 100, analysis_scale=2.0)) == 2
    kept = well_formed(nuclei, 100, 100, analysis_scale=1.0)
    assert len(kept) == 1 and np.allclose(kept.contours[0], square(30, 30, 8))
    assert MIN_WIDTH_PIXELS == 0.5


def test_a_box_cut_by_the_edge_to_a_sliver_is_removed_and_points_only_are_clamped():
    edge_sliver = square(-0.5, 20, 0.55, 10)  # 0.05 px left on the slide after the clamp
    assert len(well_formed(outlined([edge_sliver, square(40, 20, 10)]), 100, 100, 1.0)) == 1
    points = Nuclei(np.array([[-0.3, 5.0], [100.4, 99.0]]), np.ones(2))
    assert well_formed(points, 100, 100, 1.0).centroids.tolist() == [[0.0, 5.0], [100.0, 99.0]]


def test_nuclei_read_from_a_file_may_reach_half_a_pixel_past_the_edge_but_no_further():
    check_on_slide(outlined([square(-0.5, -0.5, 6), square(94.5, 44.5, 6)]), "ok.anot", 100, 50)
    with pytest.raises(InputError, match=r"1 of 2 nuclei of far\.anot lie outside the 100 x 50 slide"):
        check_on_slide(outlined([square(-0.6, 10, 6), square(10, 10, 6)]), "far.anot", 100, 50)


def _vertices(document: dict) -> np.ndarray:
    points = [p[:2] for e in document["elements"] for p in e.get("points", [e.get("center", [0, 0])])]
    return np.array(points, float).reshape(-1, 2)


def test_a_40x_cli_on_a_narrow_20x_image_writes_only_coordinates_on_it_that_evaluate_reads_back(sample_svs,
                                                                                               tmp_png_slide,
                                                                                               tmp_path):
    import large_image

    source = large_image.open(str(sample_svs))
    rgb, _ = source.getRegion(region={"left": 1100, "top": 1400, "width": 37, "height": 300},
                              format=large_image.constants.TILE_FORMAT_NUMPY)
    strip = tmp_png_slide(np.ascontiguousarray(rgb[..., :3]))
    found = tmp_path / "boxes.anot"
    assert plugins_main(["FasterRCNNDetection", str(strip), str(found), "--input_mag", "20",
                         "--min_fgnd_frac", "0"]) == 0
    vertices = _vertices(nuclei_document(found))
    assert len(vertices) > 20 and vertices.min() >= 0
    assert vertices[:, 0].max() <= 37 and vertices[:, 1].max() <= 300
    widths = [np.ptp(np.array(e["points"])[:, 0]) for e in nuclei_document(found)["elements"]]
    assert min(widths) >= MIN_WIDTH_PIXELS / 2  # half a 40x pixel, in 20x pixels
    metrics = tmp_path / "metrics.json"
    assert plugins_main(["EvaluateNuclei", str(strip), str(tmp_path / "agreement.anot"), "--input_mag", "20",
                         "--truth_annotation", str(found), "--nuclei_annotation", str(found),
                         "--metrics", str(metrics)]) == 0
    assert json.loads(metrics.read_text())["detection"]["f1"] == 1.0


def test_classifying_given_nuclei_of_another_slide_is_refused_in_one_line(tmp_png_slide, tmp_path, capsys):
    slide = tmp_png_slide(np.random.default_rng(0).integers(90, 200, (300, 37, 3)))
    given = tmp_path / "elsewhere.anot"
    given.write_text(json.dumps({"name": "elsewhere", "elements": [
        {"type": "point", "center": [x, 100, 0]} for x in (10, 20, 500, 700)]}))
    output = tmp_path / "classes.anot"
    code = plugins_main(["DCRNClassification", str(slide), str(output), "--nuclei_annotation", str(given),
                         "--input_mag", "20"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and not output.exists()
    assert lines[-1] == ("DCRNClassification: error: 2 of 4 nuclei of elsewhere.anot lie outside the 37 x 300 "
                         "slide: is it this slide's annotation, in full-resolution pixels?")
