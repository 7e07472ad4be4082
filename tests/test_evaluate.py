"""EvaluateNuclei and the scoring behind it: hand-computed cases, truth regions, the matching radius in
micrometres, the outputs a pathologist sees, and bad input."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nuclei_core.engine.region import parse_region
from nuclei_core.errors import InputError
from nuclei_core.metrics.polygons import contour_scores
from nuclei_core.metrics.segmentation import aggregated_jaccard_index, dice, error_anatomy, panoptic_quality
from nuclei_core.nuclei import Nuclei
from nuclei_core.outputs.readers import read_nuclei_and_regions
from nuclei_core.review.agreement import MATCH_CLASSES, agree, parse_class_map
from nuclei_core.review.evaluate import evaluate_nuclei
from plugins.EvaluateNuclei import main as evaluate_main
from plugins.UDNetDetection import main as udnet_main
from annotation_files import nuclei_document

ROI = (850, 850, 300, 300)  # tissue on CMU-1-Small-Region.svs


def points(xy, labels=None) -> Nuclei:
    xy = np.asarray(xy, float).reshape(-1, 2)
    labels = labels or ["nucleus"] * len(xy)
    names = tuple(dict.fromkeys(labels))
    return Nuclei(xy, np.ones(len(xy)), classes=[names.index(n) for n in labels], class_names=names)


def box(x0, y0, x1, y1) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], float)


def outlines(rings, labels=None) -> Nuclei:
    table = points([r.mean(axis=0) for r in rings], labels)
    table.contours = list(rings)
    return table


# Two true squares; one prediction covers half of the first (IoU 0.5, not a PQ match), one 90 % of the second.
TRUE_RINGS = [box(0, 0, 10, 10), box(20, 0, 30, 10)]
PRED_RINGS = [box(0, 0, 10, 5), box(20, 1, 30, 10)]


def test_points_match_one_to_one_within_the_radius():
    truth = points([[0, 0], [10, 0], [20, 0]])
    predicted = points([[1, 0], [10, 4], [50, 50], [0.5, 0]])
    tight = agree(predicted, truth, radius=3)
    assert (tight.detection.tp, tight.detection.fp, tight.detection.fn) == (1, 3, 2)
    assert tight.detection.f1 == pytest.approx(2 * 0.25 * (1 / 3) / (0.25 + 1 / 3))
    table = tight.match_table()
    labels = table.class_labels()
    assert labels.count("true positive") == 1 and labels.count("false positive") == 3
    assert labels.count("false negative") == 2
    np.testing.assert_allclose(table.centroids[labels.index("true positive")], [0.5, 0])  # the closer one
    wide = agree(predicted, truth, radius=5)
    assert (wide.detection.tp, wide.detection.fp, wide.detection.fn) == (2, 2, 1)
    assert tight.outlines is None and tight.classes is None


def test_outline_scores_by_hand():
    scores = contour_scores(PRED_RINGS, TRUE_RINGS)
    assert scores["dice"] == pytest.approx(2 * (50 + 90) / (200 + 140))
    assert scores["aji"] == pytest.approx((50 + 90) / (100 + 100))
    assert (scores["tp"], scores["fp"], scores["fn"]) == (1, 1, 1)
    assert scores["dq"] == pytest.approx(0.5) and scores["sq"] == pytest.approx(0.9)
    assert scores["pq"] == pytest.approx(0.45)
    # the half outline (IoU 0.5, not above) is a poor find of the first nucleus, not a spurious outline
    assert (scores["merged_nuclei"], scores["split_nuclei"], scores["missed_nuclei"]) == (0, 0, 1)
    assert scores["spurious_outlines"] == 0
    assert contour_scores([], [])["dice"] == 1.0
    assert contour_scores(PRED_RINGS, [])["aji"] == 0.0


def test_outline_errors_merged_split_and_spurious():
    truth = [box(0, 0, 10, 10), box(10, 0, 20, 10), box(40, 0, 60, 10)]
    predicted = [box(0, 0, 20, 10), box(40, 0, 50, 10), box(50, 0, 60, 10), box(100, 100, 110, 110)]
    scores = contour_scores(predicted, truth)
    assert scores["tp"] == 0
    assert (scores["merged_nuclei"], scores["split_nuclei"], scores["missed_nuclei"]) == (2, 1, 0)
    assert scores["spurious_outlines"] == 1


def test_outline_scores_equal_the_label_map_scores_on_pixel_rectangles():
    rng = np.random.default_rng(3)
    maps, rings = [np.zeros((120, 120), np.int32) for _ in range(2)], [[], []]
    for side in range(2):
        for k, (gx, gy) in enumerate([(gx, gy) for gx in range(4) for gy in range(4)]):
            x0, y0 = gx * 30 + rng.integers(0, 10), gy * 30 + rng.integers(0, 10)
            x1, y1 = x0 + rng.integers(4, 20), y0 + rng.integers(4, 20)
            maps[side][y0:y1, x0:x1] = k + 1
            rings[side].append(box(x0, y0, x1, y1))
    scores = contour_scores(rings[0], rings[1])
    assert scores["dice"] == pytest.approx(dice(maps[0], maps[1]))
    assert scores["aji"] == pytest.approx(aggregated_jaccard_index(maps[0], maps[1]))
    assert scores["pq"] == pytest.approx(panoptic_quality(maps[0], maps[1])["pq"])
    anatomy = error_anatomy(maps[0], maps[1])
    assert [scores[f"{k}_nuclei"] for k in ("merged", "split", "missed")] == [anatomy[k] for k in
                                                                              ("merged", "split", "missed")]
    assert scores["spurious_outlines"] == anatomy["spurious"]


def test_classes_scored_over_matched_pairs_with_renamed_classes():
    truth = points([[0, 0], [10, 0], [20, 0], [40, 0]], ["tumour", "tumour", "lymphocyte", "lymphocyte"])
    predicted = points([[0, 0], [10, 0], [20, 0], [90, 90]], ["epithelial", "inflammatory", "inflammatory",
                                                              "epithelial"])
    result = agree(predicted, truth, 2, parse_class_map("epithelial=tumour, Inflammatory=lymphocyte"))
    report = result.classes.as_dict()
    assert report["classes"] == ["lymphocyte", "tumour"]
    assert report["confusion_matrix"] == [[1, 0], [1, 1]]  # rows truth, columns predicted
    assert report["per_class"]["tumour"]["recall"] == 0.5 and report["per_class"]["lymphocyte"]["precision"] == 0.5
    assert report["accuracy"] == pytest.approx(2 / 3)
    with pytest.raises(InputError, match="share no name"):
        agree(predicted, truth, 2)
    assert agree(points([[0, 0]]), truth, 2).classes is None  # plain "nucleus": no classes to score
    with pytest.raises(InputError, match="predicted=truth"):
        parse_class_map("epithelial:tumour")


def test_only_nuclei_inside_the_regions_count():
    truth = points([[5, 5], [50, 50], [95, 5]])
    predicted = points([[5, 6], [50, 50], [200, 200]])
    region = parse_region([0, 0, 60, 60], 1000, 1000)
    result = evaluate_nuclei(predicted, truth, region, microns_per_pixel=0.5)
    assert (result.detection.tp, result.detection.fp, result.detection.fn) == (2, 0, 0)
    everywhere = evaluate_nuclei(predicted, truth, None, microns_per_pixel=0.5)
    assert (everywhere.detection.tp, everywhere.detection.fp, everywhere.detection.fn) == (2, 1, 1)
    with pytest.raises(InputError, match="inside"):
        evaluate_nuclei(predicted, truth, parse_region([300, 300, 10, 10], 1000, 1000), 0.5)


def test_radius_in_micrometres_follows_the_pixel_size():
    truth, predicted = points([[0, 0]]), points([[10, 0]])  # 10 px apart
    assert evaluate_nuclei(predicted, truth, None, microns_per_pixel=0.5).detection.tp == 0  # 5 um > 3 um
    assert evaluate_nuclei(predicted, truth, None, microns_per_pixel=0.25).detection.tp == 1  # 2.5 um
    assert evaluate_nuclei(predicted, truth, None, 0.5, match_radius_um=5).detection.tp == 1


def test_truth_regions_from_dsa_rectangles_and_labelled_outlines(tmp_path):
    path = tmp_path / "truth.anot"
    path.write_text(json.dumps([{"name": "nuclei", "elements": [
        {"type": "point", "center": [5, 5, 0], "group": "tumour"},
        {"type": "point", "center": [500, 500, 0]},
        {"type": "rectangle", "center": [10, 10, 0], "width": 40, "height": 20, "rotation": math.pi / 2},
    ]}, {"name": "regions", "elements": [
        {"type": "polyline", "closed": True, "points": [[400, 400, 0], [600, 400, 0], [600, 600, 0]],
         "label": {"value": "roi"}},
    ]}]))
    nuclei, region = read_nuclei_and_regions(path)
    assert len(nuclei) == 2 and nuclei.class_labels() == ["tumour", "nucleus"]
    assert region.area == pytest.approx(40 * 20 + 200 * 200 / 2)
    minx, miny, maxx, maxy = region.geoms[0].bounds if region.geoms[0].area == 800 else region.geoms[1].bounds
    assert (maxx - minx, maxy - miny) == pytest.approx((20, 40))  # turned by 90 degrees


def test_truth_regions_and_multipoints_from_qupath_geojson(tmp_path):
    path = tmp_path / "truth.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [100, 0], [100, 100],
                                                                             [0, 100], [0, 0]]]},
         "properties": {"objectType": "annotation", "classification": {"name": "ROI"}}},
        {"type": "Feature", "geometry": {"type": "MultiPoint", "coordinates": [[10, 10], [20, 20], [30, 30]]},
         "properties": {"objectType": "annotation", "classification": {"name": "Tumor"}}},
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [40, 40]},
         "properties": {"objectType": "annotation", "classification": {"name": "Stroma"}}}]}))
    nuclei, region = read_nuclei_and_regions(path)
    assert nuclei.class_labels() == ["Tumor"] * 3 + ["Stroma"]
    np.testing.assert_allclose(nuclei.centroids[:3], [[10, 10], [20, 20], [30, 30]])
    assert region.area == pytest.approx(100 * 100)
    with pytest.raises(InputError, match="mixes points and contours"):  # an unlabelled outline is a nucleus
        read_nuclei_and_regions(path, region_label="other")


# --- The CLI -------------------------------------------------------------------------------------


def write_dsa(path: Path, nuclei_elements: list[dict], regions: list[tuple] = ()) -> Path:
    elements = list(nuclei_elements) + [{"type": "rectangle", "center": [x + w / 2, y + h / 2, 0], "width": w,
                                         "height": h, "rotation": 0} for x, y, w, h in regions]
    path.write_text(json.dumps({"name": "truth", "elements": elements}))
    return path


def point_elements(xy, group="nucleus") -> list[dict]:
    return [{"type": "point", "center": [float(x), float(y), 0], "group": group} for x, y in xy]


def outline_elements(rings, groups) -> list[dict]:
    return [{"type": "polyline", "closed": True, "points": [[float(x), float(y), 0] for x, y in ring],
             "group": group} for ring, group in zip(rings, groups)]


@pytest.fixture(scope="module")
def detections(sample_svs, tmp_path_factory) -> np.ndarray:
    """UD-Net's nuclei on the ROI, found by UDNetDetection itself."""
    path = tmp_path_factory.mktemp("udnet") / "udnet.anot"
    assert udnet_main([str(sample_svs), str(path), "--analysis_roi", ",".join(map(str, ROI))]) == 0
    return np.array([e["center"][:2] for e in nuclei_document(path)["elements"]])


def test_method_run_on_the_regions_against_an_edited_copy_of_its_own_result(sample_svs, detections, tmp_path):
    """The truth is the method's own result with 5 nuclei removed and 3 added far from any detection: the method,
    run again by EvaluateNuclei, must score exactly TP = n - 5, FP = 5, FN = 3."""
    x0, y0, w, h = ROI
    inner = detections[(detections[:, 0] > x0 + 20) & (detections[:, 1] > y0 + 20)
                       & (detections[:, 0] < x0 + w - 20) & (detections[:, 1] < y0 + h - 20)]
    grid = np.stack(np.meshgrid(np.arange(x0 + 10, x0 + w - 10, 5), np.arange(y0 + 10, y0 + h - 10, 5)), -1)
    grid = grid.reshape(-1, 2).astype(float)
    far = grid[np.min(np.hypot(*(grid[:, None] - detections[None]).transpose(2, 0, 1)), axis=1) > 25]
    decoys = far[np.linspace(0, len(far) - 1, 3).astype(int)]
    assert len(far) >= 3 and len(np.unique(decoys, axis=0)) == 3
    removed = {tuple(p) for p in inner[:5]}
    kept = np.array([p for p in detections if tuple(p) not in removed])
    truth = write_dsa(tmp_path / "truth.anot", point_elements(np.vstack([kept, decoys])), [ROI])
    out = tmp_path / "out"
    out.mkdir()
    code = evaluate_main([str(sample_svs), str(out / "matches.anot"), "--truth_annotation", str(truth),
                          "--metrics", str(out / "m.json"), "--metrics_csv", str(out / "m.csv"),
                          "--report", str(out / "report.png"), "--geojson", str(out / "matches.geojson"),
                          "--overlay", str(out / "overlay.png")])
    assert code == 0
    metrics = json.loads((out / "m.json").read_text())
    n = len(detections)
    assert metrics["predictions"] == "UDNetDetection" and metrics["regions"] == 1
    assert metrics["match_radius_px"] == pytest.approx(3 / metrics["microns_per_pixel"])
    d = metrics["detection"]
    assert (d["tp"], d["fp"], d["fn"]) == (n - 5, 5, 3)
    assert d["truth_nuclei"] == n - 2 and d["predicted_nuclei"] == n
    document = json.loads((out / "matches.anot").read_text())
    groups = [e["group"] for e in document["elements"]]
    assert [groups.count(g) for g in MATCH_CLASSES] == [n - 5, 5, 3]
    colors = {e["group"]: e["lineColor"] for e in document["elements"]}
    assert len(set(colors.values())) == 3
    fn = np.array([e["center"][:2] for e in document["elements"] if e["group"] == "false negative"])
    np.testing.assert_allclose(fn[np.lexsort(fn.T)], decoys[np.lexsort(decoys.T)])
    assert document["attributes"]["cli"] == "EvaluateNuclei"
    assert document["attributes"]["metrics"]["detection"]["f1"] == pytest.approx(d["f1"])
    rows = list(csv.DictReader((out / "m.csv").open()))
    assert float(next(r for r in rows if r["metric"] == "f1")["value"]) == pytest.approx(d["f1"])
    features = json.loads((out / "matches.geojson").read_text())["features"]
    assert sorted({f["properties"]["classification"]["name"] for f in features}) == sorted(MATCH_CLASSES)
    for picture in ("report.png", "overlay.png"):
        assert Image.open(out / picture).format == "PNG"


def test_outlines_and_classes_from_files_on_a_plain_image(tmp_png_slide, tmp_path):
    slide = tmp_png_slide(np.full((64, 64, 3), 200, np.uint8))
    truth = write_dsa(tmp_path / "truth.anot", outline_elements(TRUE_RINGS, ["tumour", "stroma"]))
    predicted = write_dsa(tmp_path / "pred.anot", outline_elements(PRED_RINGS, ["epithelial", "stroma"]))
    metrics_path, report = tmp_path / "m.json", tmp_path / "report.png"
    code = evaluate_main([str(slide), str(tmp_path / "matches.anot"), "--truth_annotation", str(truth),
                          "--nuclei_annotation", str(predicted), "--input_mag", "20", "--class_map",
                          "epithelial=tumour", "--metrics", str(metrics_path), "--report", str(report)])
    assert code == 0
    metrics = json.loads(metrics_path.read_text())
    assert metrics["outlines"]["aji"] == pytest.approx(0.7) and metrics["outlines"]["pq"] == pytest.approx(0.45)
    assert metrics["detection"]["tp"] == 2  # centres 2.5 and 0.5 px apart, radius 6 px at 20x
    assert metrics["classification"]["confusion_matrix"] == [[1, 0], [0, 1]]
    elements = json.loads((tmp_path / "matches.anot").read_text())["elements"]
    assert {e["type"] for e in elements} == {"polyline"} and len(elements) == 2
    with_classes = Image.open(report)
    assert with_classes.height > 200  # the confusion matrix is drawn below the numbers


@pytest.mark.parametrize("magnification, radius_px, matched", [(20, 6.0, 0), (40, 12.0, 1)])
def test_cli_radius_in_micrometres_on_images_of_different_resolution(tmp_png_slide, tmp_path, magnification,
                                                                     radius_px, matched):
    slide = tmp_png_slide(np.full((64, 64, 3), 200, np.uint8))
    truth = write_dsa(tmp_path / "truth.anot", point_elements([[20, 20]]))
    predicted = write_dsa(tmp_path / "pred.anot", point_elements([[30, 20]]))
    metrics_path = tmp_path / "m.json"
    assert evaluate_main([str(slide), str(tmp_path / "matches.anot"), "--truth_annotation", str(truth),
                          "--nuclei_annotation", str(predicted), "--input_mag", str(magnification),
                          "--metrics", str(metrics_path)]) == 0
    metrics = json.loads(metrics_path.read_text())
    assert metrics["match_radius_px"] == pytest.approx(radius_px)
    assert metrics["detection"]["tp"] == matched


BAD_INPUT = {
    "no truth": ([], "--truth_annotation"),
    "truth without nuclei": (["truth=empty"], "holds no nuclei"),
    "region off the slide": (["truth=off_slide"], "outside"),
    "region without truth nuclei": (["truth=empty_region"], "inside its regions"),
    "classes that share no name": (["truth=classes", "--nuclei_annotation", "PRED"], "share no name"),
    "malformed class map": (["truth=points", "--class_map", "a:b"], "predicted=truth"),
    "method that fails": (["truth=points", "--method_options", "--model_weights DCRN_WEIGHTS"],
                          "failed: weights do not fit UD-Net"),
}


@pytest.mark.parametrize("case", BAD_INPUT, ids=list(BAD_INPUT))
def test_bad_input_gives_one_line_and_writes_nothing(case, tmp_png_slide, tmp_path, capfd):
    from nuclei_core.models.nucleus_classifier import DEFAULT_WEIGHTS

    slide = tmp_png_slide(np.full((200, 200, 3), 220, np.uint8))
    files = tmp_path / "in"
    files.mkdir()
    truths = {
        "empty": write_dsa(files / "empty.anot", []),
        "off_slide": write_dsa(files / "off.anot", point_elements([[10, 10]]), [(5000, 5000, 50, 50)]),
        "empty_region": write_dsa(files / "region.anot", point_elements([[10, 10]]), [(100, 100, 50, 50)]),
        "classes": write_dsa(files / "classes.anot", point_elements([[10, 10]], "tumour")),
        "points": write_dsa(files / "points.anot", point_elements([[10, 10]])),
    }
    predicted = write_dsa(files / "pred.anot", point_elements([[10, 10]], "mitosis"))
    extra, message = BAD_INPUT[case]
    argv = []
    for value in extra:
        if value.startswith("truth="):
            argv += ["--truth_annotation", str(truths[value.split("=")[1]])]
        else:
            argv.append(value.replace("PRED", str(predicted)).replace("DCRN_WEIGHTS", str(DEFAULT_WEIGHTS["DCRN"])))
    out = tmp_path / "out"
    out.mkdir()
    code = evaluate_main([str(slide), str(out / "matches.anot"), "--input_mag", "20", "--metrics",
                          str(out / "m.json"), "--report", str(out / "r.png"), *argv])
    assert code != 0
    err = capfd.readouterr().err
    line = err.strip().splitlines()[-1]
    assert line.startswith("EvaluateNuclei: error:") and message in line, line
    assert "Traceback" not in err
    assert len([row for row in err.splitlines() if "error" in row]) == 1  # a failing method's reason is in it
    assert list(out.iterdir()) == []


def test_method_choices_are_the_suites_method_clis():
    import ctk_cli

    from nuclei_core.cli_spec import available_clis, spec_path
    from nuclei_core.review.method_runs import METHOD_CLIS

    params = {p.name: p for p in ctk_cli.CLIModule(str(spec_path("EvaluateNuclei"))).parameters()}
    assert params["method"].elements == list(METHOD_CLIS)
    assert set(METHOD_CLIS) <= set(available_clis())
