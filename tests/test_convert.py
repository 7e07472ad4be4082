"""DSA annotation JSON <-> QuPath GeoJSON: round trips keep positions, classes, colours and measurements."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nuclei_core.convert import convert, main, read_nuclei
from nuclei_core.errors import InputError
from nuclei_core.nuclei import Nuclei
from nuclei_core.outputs.colors import class_color
from nuclei_core.outputs.dsa import annotation_documents, write_annotation
from nuclei_core.outputs.geojson import feature_collection, write_geojson


def classified_points() -> Nuclei:
    return Nuclei(np.array([[10.5, 20.25], [300.0, 40.0], [55.0, 66.0]]), np.array([0.9, 0.5, 0.75]),
                  classes=np.array([1, 0, 1]), class_names=("epithelial", "inflammatory"),
                  measurements={"Area": np.array([30.0, 12.5, 41.0])})


def contours() -> Nuclei:
    squares = [np.array([[0, 0], [4, 0], [4, 4], [0, 4]], float) + offset for offset in (0, 100)]
    return Nuclei(np.array([[2.0, 2.0], [102.0, 102.0]]), np.array([1.0, 0.8]), contours=squares)


@pytest.mark.parametrize("first,second", [("a.anot", "b.geojson"), ("a.geojson", "b.anot"), ("a.anot", "b.geojson.gz")])
def test_points_round_trip_through_both_formats(tmp_path, first, second):
    original = classified_points()
    source, target = tmp_path / first, tmp_path / second
    if first.endswith(".anot"):
        write_annotation(source, annotation_documents(original, "test", {}))
    else:
        write_geojson(source, feature_collection(original, "test"), compress=False)
    assert convert(str(source), str(target)) == 3
    back = read_nuclei(str(target))
    np.testing.assert_allclose(back.centroids, original.centroids)
    np.testing.assert_allclose(back.scores, original.scores, atol=1e-4)
    assert back.class_labels() == original.class_labels()
    np.testing.assert_allclose(back.measurements["Area"], original.measurements["Area"])


def test_converted_geojson_follows_qupath_conventions(tmp_path):
    source, target = tmp_path / "in.anot", tmp_path / "out.geojson"
    write_annotation(source, annotation_documents(classified_points(), "test", {}))
    convert(str(source), str(target))
    features = json.loads(target.read_text())["features"]
    assert {f["properties"]["objectType"] for f in features} == {"detection"}
    first = features[0]["properties"]["classification"]
    assert first == {"name": "inflammatory", "color": list(class_color("inflammatory", 1))}


def test_contours_round_trip_as_closed_polygons(tmp_path):
    source, middle, back_path = tmp_path / "c.anot", tmp_path / "c.geojson", tmp_path / "c2.anot"
    write_annotation(source, annotation_documents(contours(), "test", {}))
    convert(str(source), str(middle))
    ring = json.loads(middle.read_text())["features"][0]["geometry"]["coordinates"][0]
    assert ring[0] == ring[-1] and len(ring) == 5
    convert(str(middle), str(back_path))
    elements = json.loads(back_path.read_text())["elements"]
    assert [e["type"] for e in elements] == ["polyline", "polyline"] and all(e["closed"] for e in elements)
    np.testing.assert_allclose(np.array(elements[1]["points"])[:, :2], contours().contours[1])


def test_outlines_convert_to_centre_points_for_a_compact_geojson(tmp_path):
    source, target = tmp_path / "c.anot", tmp_path / "c.geojson"
    write_annotation(source, annotation_documents(contours(), "test", {}))
    assert main([str(source), str(target), "--geojson-detail", "points"]) == 0
    geometries = [f["geometry"] for f in json.loads(target.read_text())["features"]]
    assert [g["type"] for g in geometries] == ["Point", "Point"]
    np.testing.assert_allclose([g["coordinates"] for g in geometries], contours().centroids)


def test_reads_qupath_measurement_lists_of_older_versions(tmp_path):
    path = tmp_path / "old.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [{
        "type": "Feature", "geometry": {"type": "Point", "coordinates": [5, 6]},
        "properties": {"objectType": "detection", "classification": {"name": "Tumor", "colorRGB": -1},
                       "measurements": [{"name": "Nucleus: Area", "value": 20.5}]}}]}))
    nuclei = read_nuclei(str(path))
    assert nuclei.class_labels() == ["Tumor"]
    assert nuclei.measurements["Nucleus: Area"][0] == 20.5


def test_mixed_points_and_contours_are_refused(tmp_path):
    path = tmp_path / "mixed.anot"
    path.write_text(json.dumps({"name": "m", "elements": [
        {"type": "point", "center": [1, 2, 0]},
        {"type": "polyline", "closed": True, "points": [[0, 0, 0], [1, 0, 0], [1, 1, 0]]}]}))
    with pytest.raises(InputError, match="mixes points and contours"):
        read_nuclei(str(path))


def test_bad_input_gives_one_line_and_no_output(tmp_path, capsys):
    broken, target = tmp_path / "broken.anot", tmp_path / "out.geojson"
    broken.write_text("{not json")
    assert main([str(broken), str(target)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("convert: error:") and "not valid JSON" in error and "\n" not in error
    assert not target.exists() and list(tmp_path.iterdir()) == [broken]
    assert main([str(tmp_path / "missing.anot"), str(target)]) == 2
    assert "not found" in capsys.readouterr().err
