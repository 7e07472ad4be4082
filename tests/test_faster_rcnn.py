"""Faster R-CNN on stain-normalised haematoxylin tiles: the box metrics, the HistomicsTK preparation, the shipped
model, the CLI, and the engine feeding a model from Dask workers that prepare its tiles."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from nuclei_core.engine.analysis import EngineSettings, ModelSpec, analyse_slide
from nuclei_core.engine.region import parse_region
from nuclei_core.engine.slide import Slide
from nuclei_core.metrics.boxes import BoxScores, average_precision, box_iou, hungarian_box_matches, instance_boxes
from nuclei_core.models.faster_rcnn import DEFAULT_WEIGHTS, SCORE_NAME, FasterRCNNDetector
from nuclei_core.stains import HaematoxylinPreparation, lab_statistics
from annotation_files import nuclei_document


def test_instance_boxes_use_pixel_edges_and_skip_missing_labels():
    labels = np.zeros((10, 12), np.int32)
    labels[2:5, 3:9] = 1
    labels[7, 11] = 4
    np.testing.assert_array_equal(instance_boxes(labels), [[3, 2, 9, 5], [11, 7, 12, 8]])
    assert instance_boxes(np.zeros((3, 3), np.int32)).shape == (0, 4)


def test_box_iou_by_hand():
    iou = box_iou([[0, 0, 10, 10]], [[5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 10]])
    np.testing.assert_allclose(iou, [[50 / 150, 0, 1]])


def test_hungarian_matching_beats_greedy_pairing():
    """Greedy pairing gives A the truth it overlaps most (X), leaving B with Y below 0.5: one match. The
    assignment maximising total IoU pairs A-Y (0.538) and B-X (0.818): two matches."""
    truth = np.array([[0, 0, 10, 10], [4, 0, 14, 10]])  # X, Y
    predicted = np.array([[1, 0, 11, 10], [-1, 0, 9, 10]])  # A, B
    assert hungarian_box_matches(predicted, truth, 0.5).tolist() == [True, True]
    assert hungarian_box_matches(predicted, truth, 0.6).tolist() == [False, True]
    assert hungarian_box_matches(predicted, truth[:0], 0.5).tolist() == [False, False]


def test_average_precision_and_auc_by_hand():
    # ranked: hit, miss, hit with 3 truths: recall 1/3, 1/3, 2/3; envelope precision 1, 2/3, 2/3
    assert average_precision(np.array([0.9, 0.8, 0.7]), np.array([True, False, True]), 3) == pytest.approx(
        1 / 3 + (1 / 3) * (2 / 3))
    scores = BoxScores(0.5)
    scores.add(np.array([[0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60]]), np.array([0.9, 0.2, 0.6]),
               np.array([[0, 0, 10, 10], [50, 50, 60, 61], [80, 80, 90, 90]]))
    result = scores.as_dict()
    assert (result["precision"], result["recall"]) == (pytest.approx(2 / 3), pytest.approx(2 / 3))
    assert result["auc"] == 1.0  # both hits score above the miss
    assert result["ap"] == pytest.approx(2 / 3)


def test_reinhard_preparation_undoes_a_change_of_scanner_colour(shared_data):
    """The same tissue scanned darker and bluer gives nearly the same haematoxylin once each version is
    normalised with its own statistics; without normalisation it does not."""
    from nuclei_core.data.instance_sets import load_instance_set
    from nuclei_core.stains import haematoxylin_density

    image = load_instance_set("monuseg", "val")[0].image[:400, :400]
    shifted = np.clip(image.astype(np.float32) * [0.8, 0.85, 1.0], 0, 255).astype(np.uint8)
    original = HaematoxylinPreparation.from_pixels(image)(image)[..., 0]
    prepared = HaematoxylinPreparation.from_pixels(shifted)(shifted)[..., 0]
    raw_change = np.abs(haematoxylin_density(shifted) - haematoxylin_density(image)).mean()
    assert np.abs(prepared - original).mean() < 0.5 * raw_change
    preparation = HaematoxylinPreparation.from_pixels(image)
    assert pickle.loads(pickle.dumps(preparation)) == preparation  # it travels to Dask workers


def test_colour_statistics_leave_out_glass():
    tissue = np.full((10, 10, 3), (150, 60, 140), np.uint8)
    with_glass = np.concatenate([tissue, np.full((10, 10, 3), 245, np.uint8)])
    np.testing.assert_allclose(lab_statistics(with_glass)[0], lab_statistics(tissue)[0])


@pytest.fixture(scope="module")
def shipped_model():
    if not DEFAULT_WEIGHTS.is_file():
        pytest.fail(f"shipped weights missing: {DEFAULT_WEIGHTS}")
    return FasterRCNNDetector.from_weights(DEFAULT_WEIGHTS)


def test_shipped_model_finds_the_nuclei_of_a_held_out_monuseg_image(shared_data, shipped_model):
    """A validation image (never trained on): most nuclei found within 3 um (the full test-split figures are
    in benchmarks/results/faster_rcnn.md)."""
    from nuclei_core.data.public_sets import load_point_set
    from nuclei_core.review.evaluation import score_point_detector

    images = load_point_set("monuseg", "val", magnification=40.0)[:1]
    scores = score_point_detector(shipped_model, images, radius=12.0, magnification=40.0)
    assert scores.f1 > 0.6, scores.as_dict()


def test_detections_as_points_or_boxes():
    from nuclei_core.models.faster_rcnn import DEFAULT_CONFIG, box_contours

    detections = np.array([[10, 20, 30, 36, 0.9]])
    boxes = FasterRCNNDetector(DEFAULT_CONFIG).postprocess(detections)
    np.testing.assert_allclose(boxes.centroids, [[19.5, 27.5]])
    np.testing.assert_allclose(boxes.contours[0], box_contours(np.array([[9.5, 19.5, 29.5, 35.5]]))[0])
    assert boxes.measurements[SCORE_NAME].tolist() == [0.9]
    points = FasterRCNNDetector({**DEFAULT_CONFIG, "output_shape": "points"}).postprocess(detections)
    assert points.contours is None and points.scores.tolist() == pytest.approx([0.9])


def _region_run(sample_svs, settings: EngineSettings):
    slide = Slide(sample_svs)
    region = parse_region([800, 900, 240, 200], slide.width, slide.height)
    return analyse_slide(slide, ModelSpec(FasterRCNNDetector, str(DEFAULT_WEIGHTS)), region, settings)


def test_dask_workers_prepare_tiles_for_a_model_run_here(sample_svs, shipped_model):
    """With ``inference="here"`` the Dask workers read, normalise and deconvolve the tiles and this process
    runs the network (the GPU arrangement): the nuclei are those of a run in one process."""
    base = dict(tile_size=256, min_fgnd_frac=0.1, batch_size=2, show_progress=False)
    local = _region_run(sample_svs, EngineSettings(**base))
    hybrid = _region_run(sample_svs, EngineSettings(**base, scheduler="multithreading", num_workers=2,
                                                    inference="here"))
    assert len(local.plan.tiles) >= 4 and len(local.nuclei) > 20
    order = lambda points: points[np.lexsort(points.T)]  # noqa: E731
    np.testing.assert_allclose(order(hybrid.nuclei.centroids), order(local.nuclei.centroids), atol=1e-4)


def test_cli_writes_scored_rectangles(sample_svs, tmp_path):
    from plugins.FasterRCNNDetection import main as frcnn_main

    out = tmp_path / "nuclei.anot"
    assert frcnn_main([str(sample_svs), str(out), "--analysis_roi", "800,900,240,200",
                       "--geojson", str(tmp_path / "nuclei.geojson")]) == 0
    elements = nuclei_document(out)["elements"]
    assert len(elements) > 20 and {e["type"] for e in elements} == {"polyline"}
    assert all(len(e["points"]) == 4 and 0 < e["user"][SCORE_NAME] <= 1 for e in elements)
    features = json.loads((tmp_path / "nuclei.geojson").read_text())["features"]
    assert len(features) == len(elements) and features[0]["geometry"]["type"] == "Polygon"


@pytest.mark.parametrize("options, message", [
    (["--stain_2", "hematoxylin"], "the three stains must differ"),
    (["--reference_std_lab", "0.5,0.1"], "reference_std_lab needs 3"),
    (["--reference_std_lab", "0.5,0,0.01"], "reference_std_lab values must be positive"),
    (["--min_probability", "0"], "min_probability must be in"),
])
def test_bad_stain_and_score_settings_are_one_line_errors(sample_svs, tmp_path, capfd, options, message):
    from plugins.FasterRCNNDetection import main as frcnn_main

    out = tmp_path / "nuclei.anot"
    assert frcnn_main([str(sample_svs), str(out), "--analysis_roi", "800,900,100,100", *options]) == 2
    err = capfd.readouterr().err
    assert "Traceback" not in err and message in err.strip().splitlines()[-1]
    assert not out.exists()


def test_training_smoke_run_writes_weights_that_load_and_retune(shared_data, tmp_path):
    """Two steps on one image per set: the script runs end to end, its weights load with a tuned NMS threshold
    and minimum score, and --retune rewrites them (no accuracy is claimed from this)."""
    from nuclei_core.training.train_faster_rcnn import NMS_CHOICES, main as train_main

    output = tmp_path / "frcnn.pt"
    common = ["--output", str(output), "--val-images", "1", "--device", "cpu"]
    train_main([*common, "--steps", "2", "--eval-every", "1", "--train-images", "1", "--patch-size", "128",
                "--batch-size", "1"])
    model = FasterRCNNDetector.from_weights(output)
    assert model.config["nms_threshold"] in NMS_CHOICES and 0 < model.config["min_probability"] < 1
    log = json.loads(output.with_suffix(".log.json").read_text())
    assert [r["step"] for r in log["history"]] == [1, 2] and "f1" in log["summary"]
    train_main([*common, "--retune", "--max-detections", "500"])
    assert FasterRCNNDetector.from_weights(output).config["max_detections"] == 500
