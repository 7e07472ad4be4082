"""Whole-slide outputs: the analysed-tissue masks of a tile plan, density maps (large_image griddata), the slide
summary (JSON/CSV), the per-nucleus table, streamed annotation writing and compact GeoJSON.

The synthetic slide of tests/test_tiling.py: 1300 x 900 px at 20x (0.5 µm/px), two tissue blocks on glass.
"""

import csv
import gzip
import json

import numpy as np
import pytest
from shapely.geometry import Polygon

from nuclei_core.engine.region import parse_region
from nuclei_core.engine.slide import Slide
from nuclei_core.engine.tiling import plan_tiles
from nuclei_core.errors import InputError
from nuclei_core.nuclei import Nuclei
from nuclei_core.outputs.density import check_cell_size, density_documents, density_grid
from nuclei_core.outputs.dsa import annotation_documents, write_annotation
from nuclei_core.outputs.geojson import feature_collection, simplified_ring, write_geojson
from nuclei_core.outputs.json_stream import LazySequence
from nuclei_core.outputs.summary import slide_summary, summary_rows, write_nucleus_table, write_summary
from test_tiling import BLOCKS, HALO, TILE, synthetic_slide_array

MPP = 0.5  # input_mag 20


@pytest.fixture
def slide(tmp_png_slide):
    return Slide(tmp_png_slide(synthetic_slide_array()), input_mag=20)


@pytest.fixture
def plan(slide):
    """Every tile analysed (min_fgnd_frac 0): all the tissue is under a core."""
    return plan_tiles(slide, 20, TILE, HALO, None, 0.0)


def grid_nuclei(block, step=10, class_index=0, class_names=("nucleus",)):
    """A nucleus every ``step`` px inside the block (x0, y0, x1, y1), offset by half a step."""
    x0, y0, x1, y1 = block
    xs, ys = np.meshgrid(np.arange(x0 + step / 2, x1, step), np.arange(y0 + step / 2, y1, step))
    count = xs.size
    return Nuclei(np.column_stack([xs.ravel(), ys.ravel()]), np.full(count, 0.9),
                  classes=np.full(count, class_index), class_names=class_names)


def two_class_nuclei():
    names = ("tumour", "lymphocyte")
    return Nuclei.concatenate([grid_nuclei(BLOCKS[0], 10, 0, names), grid_nuclei(BLOCKS[1], 20, 1, names)])


def annotation_schema_validator():
    jsonschema = pytest.importorskip("jsonschema")
    schema = pytest.importorskip("girder_large_image_annotation.models.annotation").AnnotationSchema
    return jsonschema.Draft6Validator(schema.annotationSchema)


# ---------------------------------------------------------------------------------------- plan masks


def test_plan_masks_hold_the_analysed_part_and_its_tissue(slide):
    plan = plan_tiles(slide, 20, TILE, HALO, None, 0.1)
    pixels = 1 / plan.mask_scale ** 2
    analysed = plan.analysed.sum() * pixels
    cores = sum((t.core[2] - t.core[0]) * (t.core[3] - t.core[1]) for t in plan.tiles)
    assert analysed == pytest.approx(cores, rel=0.02)
    tissue_area = sum((x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in BLOCKS)
    # nearly all tissue lies under a kept tile (slivers below 10 % of a core are skipped)
    assert 0.9 * tissue_area <= plan.tissue.sum() * pixels <= 1.02 * tissue_area
    assert not (plan.tissue & ~plan.analysed).any()


def test_region_limits_the_analysed_mask(slide):
    plan = plan_tiles(slide, 20, TILE, HALO, parse_region([150, 150, 200, 100], 1300, 900), 0.0)
    assert plan.analysed.sum() / plan.mask_scale ** 2 == pytest.approx(200 * 100, rel=0.05)


# ---------------------------------------------------------------------------------------- density maps


def test_density_is_nuclei_per_mm2_of_tissue(plan):
    nuclei = grid_nuclei(BLOCKS[0])  # one nucleus per 10 x 10 px = 25 µm²: 40,000 per mm²
    grid = density_grid(nuclei.centroids, plan, MPP, 50)  # cells of 100 px, aligned on the block's edges
    assert grid.cell == 100 and grid.origin == (0.0, 0.0)
    inner = grid.values[1:4, 1:5]  # rows 100..400, columns 100..500: the block
    np.testing.assert_allclose(inner, 40_000, rtol=0.02)
    glass = grid.values[5:, :5]  # below the first block and left of the second: no tissue
    assert (glass == 0).all()
    assert grid.values.shape == (9, 13)  # the whole slide is analysed


def test_cells_with_little_tissue_show_nothing(plan):
    nuclei = Nuclei(np.array([[150.0, 150.0], [450.0, 350.0]]), np.ones(2))  # both on the first block
    grid = density_grid(nuclei.centroids, plan, MPP, 150)  # cells of 300 px
    assert grid.values[0, 0] == pytest.approx(1 / (4 / 9 * 0.0225), rel=0.05)  # 200 x 200 px of tissue: 44 %
    assert grid.values[1, 1] == 0  # 200 x 100 px of tissue (22 %): left empty, though it holds a nucleus


def test_density_documents_one_per_class_plus_all_and_valid_for_large_image(plan):
    nuclei = two_class_nuclei()
    documents = density_documents(nuclei, plan, MPP, 50, "viridis", "run", {"cli": "X"})
    assert [d["name"] for d in documents] == ["run (nuclei per mm²)", "run (tumour per mm²)",
                                              "run (lymphocyte per mm²)"]
    assert all(d["attributes"]["content"] == "density" and d["attributes"]["cli"] == "X" for d in documents)
    validator = annotation_schema_validator()
    for document in documents:
        validator.validate(document)
        (element,) = document["elements"]
        assert len(element["values"]) % element["gridWidth"] == 0
        assert len(element["colorRange"]) == len(element["rangeValues"])
    tumour = np.array(documents[1]["elements"][0]["values"]).reshape(-1, documents[1]["elements"][0]["gridWidth"])
    lymphocyte = np.array(documents[2]["elements"][0]["values"]).reshape(tumour.shape)
    assert tumour[1:4, 1:5].min() > 0 and (tumour[5:, 7:] == 0).all()
    assert lymphocyte[6:8, 8:11].min() == pytest.approx(10_000, rel=0.05) and (lymphocyte[1:4, 1:5] == 0).all()
    assert density_documents(nuclei, plan, MPP, 0, "viridis", "run", {}) == []


def test_grid_finer_than_20_microns_is_refused():
    check_cell_size(0)
    check_cell_size(20)
    with pytest.raises(InputError, match="density_grid_um"):
        check_cell_size(5)


# ---------------------------------------------------------------------------------------- slide summary


def test_summary_counts_densities_and_regions(slide):
    region = parse_region([100, 100, 500, 100, 500, 400, 100, 400, -1, -1, 700, 500, 1200, 500, 1200, 800, 700, 800],
                          1300, 900)
    plan = plan_tiles(slide, 20, TILE, HALO, region, 0.1)
    nuclei = two_class_nuclei()
    nuclei.measurements["Area µm^2"] = np.where(nuclei.classes == 0, 30.0, np.nan)  # missing for lymphocytes
    summary = slide_summary(nuclei, plan, region, MPP)
    assert summary["nuclei"] == 1200 + 375
    assert summary["tissue_mm2"] == pytest.approx(0.0675, rel=0.03)  # 270,000 px² at 0.25 µm²
    assert summary["classes"]["tumour"] == {"nuclei": 1200, "fraction": pytest.approx(1200 / 1575, abs=1e-4),
                                            "per_mm2_tissue": pytest.approx(1200 / summary["tissue_mm2"], rel=1e-3)}
    first, second = summary["regions"]
    assert (first["nuclei"], second["nuclei"]) == (1200, 375)
    assert first["per_mm2_tissue"] == pytest.approx(40_000, rel=0.03)
    assert second["classes"]["lymphocyte"]["per_mm2_tissue"] == pytest.approx(10_000, rel=0.03)
    assert second["classes"]["tumour"]["nuclei"] == 0
    area = summary["measurements"]["Area µm^2"]
    assert area["all"]["mean"] == 30.0 and area["classes"]["lymphocyte"] is None
    json.dumps(summary, allow_nan=False)  # strict JSON: an undefined value is null


def test_summary_without_tissue_has_null_densities(tmp_png_slide):
    blank = Slide(tmp_png_slide(np.full((300, 300, 3), 255, np.uint8)), input_mag=20)
    plan = plan_tiles(blank, 20, TILE, HALO, None, 0.0)
    summary = slide_summary(Nuclei.empty(), plan, None, MPP)
    assert summary["nuclei"] == 0 and summary["tissue_mm2"] == 0 and summary["per_mm2_tissue"] is None
    assert summary["classes"]["nucleus"] == {"nuclei": 0, "fraction": None, "per_mm2_tissue": None}


def test_summary_files_json_and_csv(tmp_path, plan):
    nuclei = two_class_nuclei()
    summary = slide_summary(nuclei, plan, None, MPP)
    write_summary(tmp_path / "s.json", summary, as_csv=False)
    assert json.loads((tmp_path / "s.json").read_text()) == json.loads(json.dumps(summary))
    write_summary(tmp_path / "s.csv", summary, as_csv=True)
    with open(tmp_path / "s.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["scope"], r["class"], int(r["nuclei"])) for r in rows] == [
        ("slide", "all", 1575), ("slide", "tumour", 1200), ("slide", "lymphocyte", 375)]
    assert rows == [{k: str(v) for k, v in r.items()} for r in summary_rows(summary)]


def test_nucleus_table_rows_and_missing_values(tmp_path):
    nuclei = two_class_nuclei()
    nuclei.measurements["Area µm^2"] = np.where(nuclei.classes == 0, 30.0, np.nan)
    write_nucleus_table(tmp_path / "t.csv.gz", nuclei, compress=True)
    with gzip.open(tmp_path / "t.csv.gz", "rt", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(nuclei) and list(rows[0]) == ["x", "y", "class", "score", "Area µm^2"]
    assert (float(rows[0]["x"]), float(rows[0]["y"]), rows[0]["class"]) == (105.0, 105.0, "tumour")
    assert rows[0]["Area µm^2"] == "30.0" and rows[-1]["Area µm^2"] == "" and rows[-1]["class"] == "lymphocyte"


# ---------------------------------------------------------------------------------------- streamed writers


def test_lazy_sequence_is_a_view_equal_to_its_list():
    made = []
    view = LazySequence(lambda i: made.append(i) or i * i, range(2, 7))
    assert made == [] and len(view) == 5
    assert view[1] == 9 and view[-1] == 36 and view[1:3] == [9, 16]
    assert view == [4, 9, 16, 25, 36] and view != [4, 9]


def test_streamed_annotation_of_many_parts_reads_back_whole(tmp_path):
    count = 25_000
    nuclei = Nuclei(np.column_stack([np.arange(count) * 0.5, np.arange(count) % 900]), np.linspace(0, 1, count))
    documents = annotation_documents(nuclei, "run", {"cli": "X"}, max_elements=10_000)
    write_annotation(tmp_path / "n.anot", documents)
    loaded = json.loads((tmp_path / "n.anot").read_text())
    assert [len(d["elements"]) for d in loaded] == [10_000, 10_000, 5_000]
    assert [d["name"] for d in loaded] == ["run (1 of 3)", "run (2 of 3)", "run (3 of 3)"]
    assert all(d["attributes"]["content"] == "nuclei" for d in loaded)
    centres = np.array([e["center"][:2] for d in loaded for e in d["elements"]])
    np.testing.assert_allclose(centres, nuclei.centroids)
    validator = annotation_schema_validator()
    validator.validate({**loaded[2], "elements": loaded[2]["elements"][:50]})


def square_ring(side=40, step=1.0):
    """A square outline with a vertex every ``step`` px (collinear vertices a simplification removes)."""
    edge = np.arange(0, side, step)
    return np.concatenate([np.column_stack([edge, np.zeros_like(edge)]),
                           np.column_stack([np.full_like(edge, side), edge]),
                           np.column_stack([side - edge, np.full_like(edge, side)]),
                           np.column_stack([np.zeros_like(edge), side - edge])]) + 100


def test_simplified_outlines_keep_the_shape_with_fewer_vertices():
    ring = square_ring()
    simple = simplified_ring(ring, 0.5)
    assert len(simple) == 4
    assert Polygon(simple).symmetric_difference(Polygon(ring)).area < 1
    triangle = np.array([[0, 0], [1, 0], [0, 1.0]])
    assert len(simplified_ring(triangle, 5)) == 3  # never fewer than 3 vertices


@pytest.mark.parametrize("detail", ["full", "simplified", "points"])
def test_geojson_detail(tmp_path, detail):
    rings = [square_ring(), square_ring() + 200]
    nuclei = Nuclei(np.array([r.mean(axis=0) for r in rings]), np.array([0.9, 0.8]), contours=rings)
    path = tmp_path / "n.geojson.gz"
    write_geojson(path, feature_collection(nuclei, "m", detail, MPP), compress=True)
    with gzip.open(path, "rt") as handle:
        features = json.load(handle)["features"]
    geometries = [f["geometry"] for f in features]
    if detail == "points":
        assert [g["type"] for g in geometries] == ["Point", "Point"]
        np.testing.assert_allclose([g["coordinates"] for g in geometries], nuclei.centroids)
        return
    vertices = [len(g["coordinates"][0]) for g in geometries]
    assert vertices == ([len(rings[0]) + 1] * 2 if detail == "full" else [5, 5])  # closed rings
    for geometry, ring in zip(geometries, rings):
        assert geometry["coordinates"][0][0] == geometry["coordinates"][0][-1]
        assert Polygon(geometry["coordinates"][0]).symmetric_difference(Polygon(ring)).area < 1
