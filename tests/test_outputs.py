"""Output writers: DSA annotation JSON, QuPath GeoJSON, atomic writes, output checks and the overlay PNG."""

import gzip
import json
import os
from pathlib import Path

import numpy as np
import pytest
import shapely.geometry

from nuclei_core.engine.slide import Slide
from nuclei_core.errors import OutputError
from nuclei_core.nuclei import Nuclei
from nuclei_core.outputs.atomic import check_writable, write_all_or_nothing
from nuclei_core.outputs.colors import NAMED_COLORS, PALETTE, class_color, css_rgb
from nuclei_core.outputs.dsa import annotation_documents, write_annotation
from nuclei_core.outputs.geojson import feature_collection, write_geojson
from nuclei_core.outputs.overlay import render_overlay

CLASSES = ("epithelial", "fibroblast", "mitosis")  # "mitosis" has no named colour: palette entry 2


def point_nuclei(n):
    """n nuclei on a line: nucleus i at (10 + i, 20 + 2 i), class i % 3, score i / n."""
    i = np.arange(n)
    return Nuclei(centroids=np.column_stack([10.0 + i, 20.0 + 2 * i]), scores=i / n,
                  classes=i % 3, class_names=CLASSES, measurements={"Area": 5.0 + i})


def contour_nuclei():
    """Two square nuclei; the second contour is given already closed."""
    first = np.array([[10, 10], [14, 10], [14, 14], [10, 14]], dtype=float)
    second = np.array([[30.5, 40], [36, 40], [36, 45.25], [30.5, 45.25], [30.5, 40]], dtype=float)
    return Nuclei(centroids=[[12, 12], [33.25, 42.625]], scores=[0.9, 0.75], contours=[first, second])


def test_class_colors():
    assert class_color("epithelial", 0) == NAMED_COLORS["epithelial"] == (230, 30, 30)
    assert class_color("Epithelial", 5) == (230, 30, 30)  # names are case-insensitive
    assert class_color("mitosis", 2) == PALETTE[2] == (44, 160, 44)
    assert class_color("mitosis", 12) == PALETTE[2]  # palette wraps around
    assert css_rgb((1, 2, 3)) == "rgb(1,2,3)"
    assert css_rgb((1, 2, 3), 0.25) == "rgba(1,2,3,0.25)"


# ---------------------------------------------------------------------------
# DSA annotation documents


def test_annotation_documents_split_into_parts():
    nuclei = point_nuclei(2500)
    documents = annotation_documents(nuclei, "cells", {"model": "udnet"}, max_elements=1000)
    assert [d["name"] for d in documents] == ["cells (1 of 3)", "cells (2 of 3)", "cells (3 of 3)"]
    assert [len(d["elements"]) for d in documents] == [1000, 1000, 500]
    assert [(d["attributes"]["part"], d["attributes"]["parts"]) for d in documents] == [(1, 3), (2, 3), (3, 3)]
    assert all(d["attributes"]["model"] == "udnet" for d in documents)
    elements = [e for d in documents for e in d["elements"]]
    expected_color = {name: css_rgb(class_color(name, k)) for k, name in enumerate(CLASSES)}
    assert expected_color == {"epithelial": "rgb(230,30,30)", "fibroblast": "rgb(30,120,230)",
                              "mitosis": "rgb(44,160,44)"}
    for i, element in enumerate(elements):  # order is preserved across the parts
        name = CLASSES[i % 3]
        assert element["group"] == name
        assert element["lineColor"] == expected_color[name]
    # nucleus 1234 is the 235th element of the second part
    element = documents[1]["elements"][234]
    assert element["type"] == "point"
    assert element["center"] == [1244.0, 2488.0, 0]
    assert element["user"] == {"score": round(1234 / 2500, 4), "Area": 1239.0}


def test_annotation_single_document_keeps_the_plain_name():
    documents = annotation_documents(point_nuclei(3), "cells", {}, max_elements=1000)
    assert len(documents) == 1 and documents[0]["name"] == "cells"
    assert [e["center"] for e in documents[0]["elements"]] == [[10.0, 20.0, 0], [11.0, 22.0, 0], [12.0, 24.0, 0]]


def test_annotation_of_no_nuclei_is_one_empty_document():
    documents = annotation_documents(Nuclei.empty(), "cells", {})
    assert len(documents) == 1 and documents[0]["elements"] == []


def test_annotation_contours_are_closed_polylines():
    documents = annotation_documents(contour_nuclei(), "cells", {})
    first, second = documents[0]["elements"]
    for element in (first, second):
        assert element["type"] == "polyline" and element["closed"] is True
        assert element["group"] == "nucleus" and element["lineColor"] == "rgb(0,200,0)"
    assert first["points"] == [[10.0, 10.0, 0], [14.0, 10.0, 0], [14.0, 14.0, 0], [10.0, 14.0, 0]]
    assert second["points"][1] == [36.0, 40.0, 0] and second["points"][2] == [36.0, 45.25, 0]


def test_write_annotation_object_for_one_document_list_for_several(tmp_path):
    one = annotation_documents(point_nuclei(5), "cells", {}, max_elements=1000)
    several = annotation_documents(point_nuclei(5), "cells", {}, max_elements=2)
    write_annotation(tmp_path / "one.json", one)
    write_annotation(tmp_path / "several.json", several)
    loaded_one = json.loads((tmp_path / "one.json").read_text())
    loaded_several = json.loads((tmp_path / "several.json").read_text())
    assert isinstance(loaded_one, dict) and loaded_one == one[0]
    assert isinstance(loaded_several, list) and loaded_several == several
    assert [len(d["elements"]) for d in loaded_several] == [2, 2, 1]


# ---------------------------------------------------------------------------
# QuPath GeoJSON


def test_feature_collection_points():
    collection = feature_collection(point_nuclei(4), "udnet")
    assert collection["type"] == "FeatureCollection" and len(collection["features"]) == 4
    feature = collection["features"][2]
    assert feature["geometry"] == {"type": "Point", "coordinates": [12.0, 24.0]}
    properties = feature["properties"]
    assert properties["objectType"] == "detection"
    assert properties["classification"] == {"name": "mitosis", "color": [44, 160, 44]}
    assert properties["measurements"] == {"Score": 0.5, "Area": 7.0}
    assert [f["properties"]["classification"]["name"] for f in collection["features"]] == \
        ["epithelial", "fibroblast", "mitosis", "epithelial"]


def test_feature_collection_contours_are_closed_rings_in_pixel_coordinates():
    collection = feature_collection(contour_nuclei(), "udnet")
    first, second = (f["geometry"] for f in collection["features"])
    assert first == {"type": "Polygon",
                     "coordinates": [[[10.0, 10.0], [14.0, 10.0], [14.0, 14.0], [10.0, 14.0], [10.0, 10.0]]]}
    ring = second["coordinates"][0]
    assert len(ring) == 5 and ring[0] == ring[-1] == [30.5, 40.0]  # already closed: not closed twice
    assert ring[2] == [36.0, 45.25]
    properties = collection["features"][1]["properties"]
    assert properties["classification"] == {"name": "nucleus", "color": [0, 200, 0]}
    assert properties["measurements"] == {"Score": 0.75}


@pytest.mark.parametrize("compress", [True, False])
def test_write_geojson_round_trips(tmp_path, compress):
    collection = feature_collection(contour_nuclei(), "udnet")
    path = tmp_path / ("cells.geojson.gz" if compress else "cells.geojson")
    write_geojson(path, collection, compress=compress)
    raw = path.read_bytes()
    assert (raw[:2] == b"\x1f\x8b") == compress  # gzip magic number only when compressed
    text = gzip.decompress(raw).decode() if compress else raw.decode()
    assert json.loads(text) == collection


def strict_json(text):
    """json.loads that refuses NaN / Infinity, as QuPath's Gson reader does."""
    def refuse(constant):
        raise ValueError(f"non-standard JSON constant {constant}")
    return json.loads(text, parse_constant=refuse)


def assert_qupath_detection(feature, geometry_type):
    """QuPath's GeoJSON reader (PathObjectTypeAdapters, v0.4+): what makes a feature a classified detection."""
    assert feature["type"] == "Feature"
    geometry, properties = feature["geometry"], feature["properties"]
    assert geometry["type"] == geometry_type
    if geometry_type == "Polygon":
        polygon = shapely.geometry.shape(geometry)
        assert polygon.is_valid and polygon.area > 0
        assert all(ring[0] == ring[-1] and len(ring) >= 4 for ring in geometry["coordinates"])
    assert properties["objectType"] == "detection"  # anything else becomes an annotation
    classification = properties["classification"]
    assert isinstance(classification["name"], str) and classification["name"]
    assert len(classification["color"]) == 3 and all(
        isinstance(c, int) and 0 <= c <= 255 for c in classification["color"])
    measurements = properties["measurements"]  # v0.4+ form: a name -> number map
    assert isinstance(measurements, dict) and measurements
    assert all(isinstance(k, str) and isinstance(v, (int, float)) and np.isfinite(v) for k, v in measurements.items())


@pytest.mark.parametrize("nuclei,geometry_type", [(point_nuclei(5), "Point"), (contour_nuclei(), "Polygon")])
def test_geojson_file_follows_qupath_conventions(tmp_path, nuclei, geometry_type):
    nuclei.measurements["Eccentricity"] = np.full(len(nuclei), np.nan)  # a value that could not be measured
    nuclei.measurements["Eccentricity"][0] = 0.5
    path = tmp_path / "cells.geojson"
    write_geojson(path, feature_collection(nuclei, "udnet"), compress=False)
    collection = strict_json(path.read_text())
    assert collection["type"] == "FeatureCollection" and len(collection["features"]) == len(nuclei)
    for feature in collection["features"]:
        assert_qupath_detection(feature, geometry_type)
    measured = [f["properties"]["measurements"] for f in collection["features"]]
    assert measured[0]["Eccentricity"] == 0.5 and all("Eccentricity" not in m for m in measured[1:])
    xs = [f["geometry"]["coordinates"][0] for f in collection["features"]] if geometry_type == "Point" else []
    assert xs == ([float(x) for x in nuclei.centroids[:, 0]] if xs else [])  # full-resolution pixels, unscaled


# ---------------------------------------------------------------------------
# all-or-nothing writes and output checks


def write_text(text):
    def writer(path):
        Path(path).write_text(text)
    return writer


def failing_writer(path):
    Path(path).write_text("half")
    raise OSError("disk full")


def test_failed_writer_leaves_nothing_behind(tmp_path):
    first, second = tmp_path / "a.json", tmp_path / "b.geojson"
    with pytest.raises(OutputError, match="disk full"):
        write_all_or_nothing([(first, write_text("A")), (second, failing_writer)])
    assert not first.exists() and not second.exists()
    assert list(tmp_path.iterdir()) == []  # no .part file left either


def test_failed_writer_keeps_an_existing_target_unchanged(tmp_path):
    first, second = tmp_path / "a.json", tmp_path / "b.geojson"
    first.write_text("old")
    with pytest.raises(OutputError):
        write_all_or_nothing([(first, write_text("new")), (second, failing_writer)])
    assert first.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_successful_write_replaces_existing_files(tmp_path):
    first, second = tmp_path / "a.json", tmp_path / "b.geojson"
    first.write_text("old contents that are longer")
    write_all_or_nothing([(first, write_text("A")), (second, write_text("B"))])
    assert first.read_text() == "A" and second.read_text() == "B"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.geojson"]
    assert first.stat().st_mode & 0o777 == 0o644  # not mkstemp's private 0o600


def test_write_into_missing_folder_is_an_output_error(tmp_path):
    with pytest.raises(OutputError):
        write_all_or_nothing([(tmp_path / "missing" / "a.json", write_text("A"))])
    assert list(tmp_path.iterdir()) == []


def test_check_writable_accepts_new_and_existing_files(tmp_path):
    existing = tmp_path / "old.json"
    existing.write_text("{}")
    for path in (tmp_path / "new.json", existing):
        check_writable(path)
        assert path.parent.is_dir()  # checking creates or changes nothing
    assert existing.read_text() == "{}" and not (tmp_path / "new.json").exists()


def test_check_writable_rejects_a_missing_folder(tmp_path):
    with pytest.raises(OutputError, match="does not exist"):
        check_writable(tmp_path / "missing" / "out.json")


def test_check_writable_rejects_a_folder_that_is_a_regular_file(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="does not exist"):
        check_writable(tmp_path / "file" / "out.json")


def test_check_writable_rejects_a_directory(tmp_path):
    (tmp_path / "out.json").mkdir()
    with pytest.raises(OutputError, match="is a directory"):
        check_writable(tmp_path / "out.json")


def test_check_writable_rejects_a_read_only_folder(tmp_path):
    if os.geteuid() == 0:
        # root may write into any ordinary folder; /proc/self refuses even root
        target = Path("/proc/self/out.json")
        assert Path("/proc/self").is_dir()
    else:
        folder = tmp_path / "locked"
        folder.mkdir()
        folder.chmod(0o555)
        target = folder / "out.json"
    try:
        with pytest.raises(OutputError, match="not writable"):
            check_writable(target)
    finally:
        if os.geteuid() != 0:
            target.parent.chmod(0o755)


# ---------------------------------------------------------------------------
# overlay


WHITE = (255, 255, 255)


def colours_near(image, x, y, reach):
    array = np.asarray(image)
    window = array[max(0, y - reach):y + reach + 1, max(0, x - reach):x + reach + 1]
    return {tuple(int(v) for v in pixel) for pixel in window.reshape(-1, 3)}


@pytest.fixture
def white_slide(tmp_png_slide):
    return Slide(tmp_png_slide(np.full((150, 200, 3), 255, np.uint8)), input_mag=20)


def test_overlay_draws_each_nucleus_in_its_class_colour(white_slide):
    nuclei = Nuclei(centroids=[[50, 60], [150, 100]], scores=[0.9, 0.8], classes=[0, 1], class_names=CLASSES)
    image = render_overlay(white_slide, nuclei)
    assert image.size == (200, 150)
    assert (230, 30, 30) in colours_near(image, 50, 60, 6)
    assert (30, 120, 230) in colours_near(image, 150, 100, 6)
    assert (30, 120, 230) not in colours_near(image, 50, 60, 6)
    assert colours_near(image, 100, 20, 10) == {WHITE}  # far from both nuclei: untouched


def test_overlay_of_bounds_is_drawn_in_the_bounds_frame(white_slide):
    nuclei = Nuclei(centroids=[[150, 120]], scores=[0.9], classes=[2], class_names=CLASSES)
    image = render_overlay(white_slide, nuclei, bounds=(100, 100, 200, 150))
    assert image.size == (100, 50)
    assert (44, 160, 44) in colours_near(image, 50, 20, 6)
    assert colours_near(image, 10, 20, 6) == {WHITE}


def test_overlay_draws_contours(white_slide):
    image = render_overlay(white_slide, contour_nuclei())
    array = np.asarray(image)
    assert tuple(array[10, 12]) == (0, 200, 0)  # on the top edge of the first square
    assert tuple(array[12, 12]) == WHITE  # inside it: outline only


def test_overlay_respects_max_side(tmp_png_slide):
    slide = Slide(tmp_png_slide(np.full((900, 1300, 3), 255, np.uint8)), input_mag=20)
    nuclei = Nuclei(centroids=[[650, 450]], scores=[0.9], classes=[0], class_names=CLASSES)
    image = render_overlay(slide, nuclei, max_side=260)  # scale 0.2
    assert image.size == (260, 180)
    assert (230, 30, 30) in colours_near(image, 130, 90, 4)
    assert colours_near(image, 30, 30, 10) == {WHITE}
