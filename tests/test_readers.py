"""Streaming the annotation readers (nuclei_core/outputs/readers.py): files read element by element with ijson
give what reading the whole file gave, in order, with the same one-line errors, and skip density maps."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from nuclei_core.errors import InputError
from nuclei_core.nuclei import Nuclei
from nuclei_core.outputs.dsa import annotation_documents, write_annotation
from nuclei_core.outputs.geojson import feature_collection, write_geojson
from nuclei_core.outputs.readers import read_annotation, read_geojson, read_nuclei, read_nuclei_and_regions


def point(x: float, y: float, group: str = "nucleus", **user: float) -> dict:
    return {"type": "point", "center": [x, y, 0], "group": group, "user": {"score": 0.5, **user}}


def outline(x: float, y: float) -> dict:
    return {"type": "polyline", "closed": True, "points": [[x, y, 0], [x + 4, y, 0], [x + 4, y + 4, 0]]}


def griddata(cells: int) -> dict:
    return {"type": "griddata", "interpretation": "choropleth", "group": "nuclei per mm²", "origin": [0, 0, 0],
            "dx": 40, "dy": 40, "gridWidth": 100, "values": [float(i % 97) for i in range(cells)]}


def heatmap() -> dict:
    return {"type": "heatmap", "points": [[10, 10, 0, 0.5], [20, 20, 0, 1.0]], "radius": 25}


def write(path: Path, payload) -> Path:
    text = json.dumps(payload).encode()
    path.write_bytes(gzip.compress(text) if path.suffix == ".gz" else text)
    return path


def one_line_error(read, path: Path, match: str) -> str:
    with pytest.raises(InputError, match=match) as raised:
        read(path)
    assert "\n" not in str(raised.value)
    return str(raised.value)


# --- Density maps and empty documents ---------------------------------------------------------------------


def test_density_maps_beside_the_nuclei_are_skipped(tmp_path):
    path = write(tmp_path / "slide.anot", [
        {"name": "nuclei", "elements": [point(1, 2), heatmap(), point(3, 4, "tumour")]},
        {"name": "density (nuclei per mm²)", "elements": [griddata(300_000)]},  # spans several chunks
        {"name": "density (tumour per mm²)", "elements": [griddata(10), heatmap()]},
        {"name": "more", "elements": [point(5, 6)]}])
    nuclei = read_nuclei(path)
    np.testing.assert_array_equal(nuclei.centroids, [[1, 2], [3, 4], [5, 6]])
    assert nuclei.class_labels() == ["nucleus", "tumour", "nucleus"]
    truth, regions = read_nuclei_and_regions(path)
    assert len(truth) == 3 and regions is None


def test_density_maps_are_not_numbered_as_elements(tmp_path):
    path = write(tmp_path / "bad.anot", {"name": "n", "elements": [heatmap(), point(1, 2), griddata(4),
                                                                  {"type": "point", "center": [1, "x"]}]})
    one_line_error(read_nuclei, path, r"^bad.anot: element 2's center are not a list of \[x, y\] numbers$")


def test_documents_without_elements_or_with_only_density_maps_give_no_nuclei(tmp_path):
    path = write(tmp_path / "empty.anot", [{"name": "nuclei", "elements": []},
                                           {"name": "density", "elements": [griddata(100)]}])
    assert len(read_annotation(path)) == 0
    only_density = write(tmp_path / "density.anot", {"name": "density", "elements": [griddata(100), heatmap()]})
    assert len(read_annotation(only_density)) == 0
    with_empty = write(tmp_path / "parts.anot", [{"name": "a", "elements": []}, {"name": "b", "elements": [
        outline(0, 0)]}, {"name": "c", "elements": []}])
    nuclei = read_annotation(with_empty)
    assert len(nuclei) == 1 and len(nuclei.contours) == 1


# --- Layouts --------------------------------------------------------------------------------------------


def test_several_documents_are_read_in_order(tmp_path):
    documents = [{"name": f"part {d}", "elements": [point(100 * d + i, i, ["a", "b", "c"][(d + i) % 3], area=d)
                                                     for i in range(50)]} for d in range(4)]
    nuclei = read_annotation(write(tmp_path / "parts.anot", documents))
    expected = [(e["center"][0], e["center"][1]) for d in documents for e in d["elements"]]
    np.testing.assert_array_equal(nuclei.centroids, expected)
    assert nuclei.class_names == ("a", "b", "c")
    assert nuclei.class_labels() == [e["group"] for d in documents for e in d["elements"]]
    np.testing.assert_array_equal(nuclei.measurements["area"], np.repeat(np.arange(4.0), 50))


@pytest.mark.parametrize("name", ["qupath.geojson", "qupath.geojson.gz", "qupath.json.gz"])
def test_feature_collection_and_bare_list_of_features(tmp_path, name):
    features = [
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [5, 6]},
         "properties": {"classification": {"name": "Tumor"}, "measurements": {"Score": 0.25, "Area": 3}}},
        {"type": "Feature", "geometry": {"type": "MultiPoint", "coordinates": [[7, 8], [9, 10]]},
         "properties": {"measurements": [{"name": "Area", "value": 4}]}}]
    collection = read_geojson(write(tmp_path / name, {"type": "FeatureCollection", "features": features}))
    bare = read_geojson(write(tmp_path / f"bare-{name}", features))
    for nuclei in (collection, bare):
        np.testing.assert_array_equal(nuclei.centroids, [[5, 6], [7, 8], [9, 10]])
        np.testing.assert_array_equal(nuclei.scores, [0.25, 1, 1])
        assert nuclei.class_labels() == ["Tumor", "nucleus", "nucleus"]
        np.testing.assert_array_equal(nuclei.measurements["Area"], [3, 4, 4])
    assert len(read_geojson(write(tmp_path / name, []))) == 0


@pytest.mark.parametrize("payload,message", [
    ([], "is not a large_image annotation"),
    ({"name": "no elements"}, "is not a large_image annotation"),
    ([{"elements": []}, {"elements": {"item": point(1, 2)}}], "is not a large_image annotation"),
    ("text", "is not a large_image annotation")])
def test_wrong_layouts_are_refused(tmp_path, payload, message):
    one_line_error(read_annotation, write(tmp_path / "x.anot", payload), message)


# --- Strict and complete JSON ---------------------------------------------------------------------------


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
@pytest.mark.parametrize("name", ["x.anot", "x.geojson.gz"])
def test_nan_and_infinity_are_refused(tmp_path, constant, name):
    many = [point(i, i) for i in range(5000)]  # the constant comes after the first chunk
    text = json.dumps({"name": "n", "elements": many + [point(1, 2)]}).replace('"center": [1, 2, 0]',
                                                                             f'"center": [1, {constant}, 0]')
    if name.endswith("geojson.gz"):
        text = json.dumps([{"type": "Feature", "geometry": {"type": "Point", "coordinates": [i, i]}}
                           for i in range(5000)])[:-1] + f', {{"geometry": {{"type": "Point", "coordinates": [{constant}, 1]}}}}]'
    path = tmp_path / name
    path.write_bytes(gzip.compress(text.encode()) if name.endswith(".gz") else text.encode())
    one_line_error(read_nuclei, path, f"^{name} is not valid JSON: {constant} is not a number in strict JSON$")


@pytest.fixture
def big_annotation(tmp_path) -> bytes:
    """The text of an annotation of outlines of about 1.4 MB: several of the reader's chunks."""
    return json.dumps([{"name": f"part {d}", "elements": [outline(i, d) for i in range(5000)]}
                       for d in range(2)]).encode()


@pytest.mark.parametrize("fraction", [0.0001, 0.3, 0.7, 0.999])
def test_truncated_files_are_refused_in_one_line(tmp_path, big_annotation, fraction):
    cut = big_annotation[:int(len(big_annotation) * fraction)]
    (tmp_path / "cut.anot").write_bytes(cut)
    one_line_error(read_nuclei, tmp_path / "cut.anot", "^cut.anot is not valid JSON: ")
    (tmp_path / "cut.json.gz").write_bytes(gzip.compress(cut))
    one_line_error(read_nuclei, tmp_path / "cut.json.gz", "^cut.json.gz is not valid JSON: ")
    compressed = gzip.compress(big_annotation)
    (tmp_path / "gz.anot.gz").write_bytes(compressed[:int(len(compressed) * fraction)])
    one_line_error(read_annotation, tmp_path / "gz.anot.gz", "^gz.anot.gz is not valid JSON: ")


@pytest.mark.parametrize("text", ['{"elements": []} {"elements": []}', '{"elements": []}}',
                                  '[{"elements": []}], "elements": [5]', '[{"elements": []}] x'])
def test_text_after_the_json_value_is_refused(tmp_path, text):
    (tmp_path / "extra.anot").write_text(text)
    one_line_error(read_annotation, tmp_path / "extra.anot", "^extra.anot is not valid JSON: ")


def test_invalid_json_anywhere_comes_before_a_bad_element(tmp_path, big_annotation):
    text = b'[{"elements": [{"type": "point", "center": [1, "x"]}]},' + big_annotation[1:-2]
    (tmp_path / "late.anot").write_bytes(text)
    one_line_error(read_annotation, tmp_path / "late.anot", "not valid JSON")


def test_errors_are_those_of_the_whole_file_in_order(tmp_path):
    bad_center = {"type": "point", "center": [1, "x"]}
    later_layout = write(tmp_path / "a.anot", [{"elements": [bad_center]}, {"name": "no elements"}])
    one_line_error(read_annotation, later_layout, "is not a large_image annotation \\(a document")
    later_kind = write(tmp_path / "b.anot", {"elements": [bad_center, point(1, 2), {"type": "ellipse"}]})
    one_line_error(read_annotation, later_kind, "is not a large_image annotation of points or closed polylines")
    later_mix = write(tmp_path / "c.anot", {"elements": [point(1, 2), bad_center, outline(0, 0)]})
    one_line_error(read_annotation, later_mix, "mixes points and contours")
    first_bad = write(tmp_path / "d.anot", {"elements": [point(1, 2), bad_center, {"type": "point", "center": [
        1, 2], "user": {"score": "high"}}]})
    one_line_error(read_annotation, first_bad, "^d.anot: element 2's center are not a list of")
    bad_region = {"type": "rectangle", "center": [0, 0, 0], "width": -1, "height": None}
    region_first = write(tmp_path / "e.anot", {"elements": [bad_center, {"type": "ellipse"}, bad_region]})
    one_line_error(read_nuclei_and_regions, region_first, "^e.anot: region element 3's height is not a finite")


# --- Round trip -----------------------------------------------------------------------------------------


def written_nuclei(count: int, outlines: bool) -> Nuclei:
    """Nuclei at the writers' precision (2 decimals for coordinates, 4 for values), one measurement missing
    from every third nucleus."""
    rng = np.random.default_rng(7)
    centres = rng.uniform(50, 90_000, (count, 2)).round(2)
    angles = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    rings = [(c + rng.uniform(3, 8) * np.stack([np.cos(angles), np.sin(angles)], 1)).round(2) for c in centres]
    area = rng.uniform(10, 80, count).round(4)
    area[::3] = np.nan
    return Nuclei(np.array([r.mean(axis=0) for r in rings]) if outlines else centres,
                  rng.uniform(0.5, 1, count).round(4), contours=rings if outlines else None,
                  classes=rng.integers(0, 3, count), class_names=("tumour", "stroma", "lymphocyte"),
                  measurements={"Area": area, "Perimeter": rng.uniform(10, 40, count).round(4)})


def assert_same_nuclei(read: Nuclei, written: Nuclei) -> None:
    assert len(read) == len(written) and read.class_labels() == written.class_labels()
    np.testing.assert_allclose(read.centroids, written.centroids, rtol=0, atol=1e-9)
    np.testing.assert_allclose(read.scores, written.scores, rtol=1e-6)
    assert sorted(read.measurements) == sorted(written.measurements)
    for name, values in written.measurements.items():
        np.testing.assert_allclose(read.measurements[name], values, rtol=1e-12)  # NaN where it was missing
    assert (read.contours is None) == (written.contours is None)
    for got, ring in zip(read.contours or [], written.contours or []):
        np.testing.assert_array_equal(got, ring)


@pytest.mark.parametrize("outlines", [False, True])
def test_thousands_of_nuclei_read_back_as_written(tmp_path, outlines):
    nuclei = written_nuclei(3000, outlines)
    anot = tmp_path / "nuclei.anot"
    write_annotation(anot, annotation_documents(nuclei, "test", {}, max_elements=1000))
    assert isinstance(json.loads(anot.read_text()), list)  # three documents
    assert_same_nuclei(read_nuclei(anot), nuclei)
    geojson = tmp_path / "nuclei.geojson.gz"
    write_geojson(geojson, feature_collection(nuclei, "test"), compress=True)
    assert_same_nuclei(read_nuclei(geojson), nuclei)
