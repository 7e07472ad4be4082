"""Nucleus segmentation: instance targets, watershed splitting, contours, networks, weights, training, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from shapely.geometry import Point, Polygon

from nuclei_core.data.instance_sets import InstanceAnnotatedImage, load_instance_folder, load_instance_set
from nuclei_core.errors import InputError
from nuclei_core.intensity import MIN_STRETCH_RANGE, STRETCH_PERCENTILES, stretch_intensity
from nuclei_core.metrics.segmentation import aggregated_jaccard_index, dsb_mean_average_precision
from nuclei_core.models.base import WEIGHTS_DIR, load_checkpoint
from nuclei_core.models.r2unet import RecurrentConv
from nuclei_core.models.segmenter import (
    ARCHITECTURES,
    DEFAULT_CONFIG,
    DEFAULT_WEIGHTS,
    GRAPH_ATTENTION,
    IMAGE_MODALITIES,
    NucleusSegmenter,
    shipped_weights,
)
from nuclei_core.postprocess.instances import instance_targets, label_map_to_nuclei, split_at_centres, split_instances
from nuclei_core.training import train_segmenter
from plugins.__main__ import main as plugins_main
from annotation_files import nuclei_document

ROI_ARGS = ["--analysis_roi", "800,800,300,300"]  # tissue on CMU-1-Small-Region.svs


def touching_discs() -> np.ndarray:
    """Two discs of radius 10 that touch along a vertical chord, and a 3 x 3 speck."""
    rows, cols = np.mgrid[:40, :70]
    labels = np.zeros((40, 70), dtype=np.uint16)
    labels[(rows - 20) ** 2 + (cols - 18) ** 2 < 100] = 1
    labels[((rows - 20) ** 2 + (cols - 34) ** 2 < 100) & (labels == 0)] = 2
    labels[4:7, 60:63] = 3
    return labels


def test_markers_lie_inside_each_nucleus_and_keep_touching_nuclei_apart():
    from scipy import ndimage

    labels = touching_discs()
    foreground, marker = instance_targets(labels)
    np.testing.assert_array_equal(foreground, labels > 0)
    assert np.all(labels[marker > 0] > 0)
    for nucleus in (1, 2, 3):
        assert marker[labels == nucleus].sum() > 0
    _, parts = ndimage.label(marker)
    assert parts == 3, "the two touching discs must have separate markers"


def test_watershed_recovers_touching_nuclei_from_perfect_maps():
    labels = touching_discs()
    split = split_instances(*instance_targets(labels), min_area=1)
    assert split.max() == 3
    assert aggregated_jaccard_index(split, labels) > 0.9
    assert dsb_mean_average_precision(split, labels) > 0.8


def test_foreground_without_a_marker_is_kept_and_small_objects_are_dropped():
    foreground = np.zeros((30, 30))
    foreground[2:12, 2:12] = 1.0  # no marker at all: still one nucleus
    foreground[20:22, 20:22] = 1.0  # 4 px: debris
    split = split_instances(foreground, np.zeros_like(foreground), min_area=10)
    assert split.max() == 1 and (split == 1).sum() == 100


def test_a_second_cut_separates_touching_nuclei_the_cores_left_joined():
    truth = touching_discs()
    joined = np.where(truth == 2, 1, truth).astype(np.int32)  # one instance over both discs, the speck apart
    foreground = (truth > 0).astype(np.float64)
    cut = split_at_centres(joined, foreground, min_distance=8)
    assert len(np.unique(cut)) - 1 == 3
    assert aggregated_jaccard_index(cut, truth) > 0.9
    np.testing.assert_array_equal(split_at_centres(joined, foreground, min_distance=30), joined)  # centres 16 px apart
    single = (truth == 1).astype(np.int32)
    np.testing.assert_array_equal(split_at_centres(single, foreground, min_distance=3), single)  # a disc has one centre
    merged_cores = split_instances(foreground, foreground, min_area=1)  # one core over both discs
    assert merged_cores.max() == 2
    assert split_instances(foreground, foreground, min_area=1, split_distance=8).max() == 3


def test_contours_are_x_y_polygons_around_each_nucleus():
    labels = np.zeros((30, 50), dtype=np.int32)
    labels[5:10, 10:40] = 1  # wide, flat: x spans 10..39, y spans 5..9
    nuclei = label_map_to_nuclei(labels, labels > 0)
    assert len(nuclei) == 1
    polygon = Polygon(nuclei.contours[0])
    assert polygon.is_valid and polygon.contains(Point(*nuclei.centroids[0]))
    np.testing.assert_allclose(nuclei.centroids[0], [24.5, 7.0])
    np.testing.assert_allclose(polygon.bounds, [10, 5, 39, 9])
    assert nuclei.scores[0] == pytest.approx(1.0)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_networks_are_the_same_size_and_only_r2unet_is_recurrent(architecture):
    model = NucleusSegmenter({**DEFAULT_CONFIG, "architecture": architecture})
    parameters = sum(p.numel() for p in model.network.parameters())
    assert 1.2e6 < parameters < 1.6e6  # the same widths; R2U-Net's recurrent convolutions share their weights
    assert any(isinstance(m, RecurrentConv) for m in model.network.modules()) == (architecture == "R2U-Net")
    assert model.predict_outputs(np.zeros((2, 40, 56, 3), np.uint8)).shape == (2, 2, 40, 56)


def test_instance_sets_keep_validation_apart_from_training(shared_data):
    train = {i.name for i in load_instance_set("dsb2018", "train", shared_data)}
    val = load_instance_set("dsb2018", "val", shared_data)
    assert len(val) == 60 and not train & {i.name for i in val}
    assert [i.name for i in val] == [i.name for i in load_instance_set("dsb2018", "val", shared_data)]
    item = load_instance_set("consep", "val", shared_data)[0]
    assert item.image.shape[:2] == item.labels.shape and item.modality == "he"


@pytest.mark.parametrize("architecture", (*ARCHITECTURES, GRAPH_ATTENTION))
@pytest.mark.parametrize("image_modality", IMAGE_MODALITIES)
def test_shipped_weights_are_fp16_with_tuned_thresholds(architecture, image_modality):
    weights = shipped_weights(architecture, image_modality)
    checkpoint = load_checkpoint(weights)
    assert checkpoint["config"]["architecture"] == architecture
    assert all(v.dtype == torch.float16 for v in checkpoint["state_dict"].values() if v.is_floating_point())
    assert 0 < checkpoint["config"]["foreground_threshold"] < 1
    assert 0 < checkpoint["config"]["marker_threshold"] < 1
    assert weights.with_suffix(".md").is_file(), "every shipped weights file has a model card"
    arguments = json.loads(weights.with_suffix(".log.json").read_text())["arguments"]
    assert arguments.get("only_modality") == (["fluorescence"] if image_modality == "fluorescence" else None)


@pytest.fixture(scope="module")
def r2unet():
    return NucleusSegmenter.from_weights(DEFAULT_WEIGHTS["R2U-Net"])


def test_shipped_r2unet_segments_unseen_fluorescence_nuclei(shared_data, r2unet):
    images = [i for i in load_instance_set("dsb2018", "val", shared_data) if i.modality == "fluorescence"][:4]
    scores = [dsb_mean_average_precision(r2unet.segment(i.image), i.labels) for i in images]
    assert np.mean(scores) > 0.5, scores


def test_shipped_r2unet_segments_unseen_he_nuclei(shared_data, r2unet):
    item = load_instance_set("monuseg", "val", shared_data)[0]
    image, labels = item.image[:512, :512], item.labels[:512, :512]
    assert aggregated_jaccard_index(r2unet.segment(image), labels) > 0.4


@pytest.mark.parametrize("median_area, factor", [(100, 2.0), (1600, 0.75), (225, 4 / 3), (380, 1.0)])
def test_images_of_unknown_pixel_size_are_rescaled_towards_the_target_nucleus_area(median_area, factor):
    model = NucleusSegmenter({**DEFAULT_CONFIG, "nucleus_area_target": 400})
    labels = np.repeat(np.arange(1, 6), median_area)  # five nuclei of the same area
    assert model.rescale_factor(labels) == pytest.approx(factor)  # sqrt(400 / area), within 0.75-2, none under 10 %
    assert NucleusSegmenter(DEFAULT_CONFIG).rescale_factor(labels) == 1.0  # no target: never rescaled
    assert model.rescale_factor(np.zeros(10, int)) == 1.0  # nothing found: nothing to measure
    resampled = model.outputs_resampled(np.zeros((37, 53, 3), np.uint8), factor)
    assert resampled.shape == (2, 37, 53)


def test_rescaling_to_the_tuned_nucleus_area_helps_on_small_fluorescence_nuclei(shared_data, r2unet):
    assert r2unet.config["nucleus_area_target"] > 0
    images = [i for i in load_instance_set("dsb2018", "val", shared_data) if i.modality == "fluorescence"]
    smallest = sorted(images, key=lambda i: np.median(np.bincount(i.labels.ravel())[1:]))[:8]  # 61-85 px
    native = [dsb_mean_average_precision(r2unet.segment(i.image), i.labels) for i in smallest]
    rescaled = [dsb_mean_average_precision(r2unet.segment(i.image, rescale_to_nuclei=True), i.labels)
                for i in smallest]
    assert np.mean(rescaled) > np.mean(native) + 0.05, (native, rescaled)


def test_only_images_without_a_pixel_size_take_part_in_tuning_the_rescaling(shared_data):
    he = {"consep": load_instance_set("consep", "val", shared_data)[:1]}
    assert he["consep"][0].magnification == 40.0
    assert train_segmenter.tune_area_target(NucleusSegmenter(DEFAULT_CONFIG), he) == {}
    assert load_instance_set("dsb2018", "val", shared_data)[0].magnification is None


def test_training_script_writes_loadable_weights_and_resumes(shared_data, tmp_path, capsys):
    output = tmp_path / "tiny.pt"
    arguments = ["--architecture", "U-Net", "--dataset", "dsb2018", "--train-images", "2", "--val-images", "2",
                 "--steps", "2", "--eval-every", "1", "--batch-size", "2", "--patch-size", "64",
                 "--output", str(output)]
    train_segmenter.main(arguments)
    model = NucleusSegmenter.from_weights(output)
    assert model.name == "U-Net" and model.weights_version == "tiny"
    log = json.loads(output.with_suffix(".log.json").read_text())
    assert [r["step"] for r in log["history"]] == [1, 2]
    assert set(log["summary"]["validation"]) == {"dsb2018"}
    assert log["summary"]["nucleus_area_target"] == model.config["nucleus_area_target"]
    assert set(log["summary"]["rescaled_validation"]) == {str(t) for t in train_segmenter.NUCLEUS_AREA_TARGETS}
    train_segmenter.main([*arguments[:-6], "--steps", "3", "--eval-every", "1", "--batch-size", "2",
                          "--patch-size", "64", "--output", str(output)])
    assert "resumed at step 2" in capsys.readouterr().out
    train_segmenter.main([*arguments, "--retune"])  # post-processing only, on the same validation images
    retuned = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"foreground_threshold", "nucleus_area_target"} <= set(retuned)
    assert NucleusSegmenter.from_weights(output).config["nucleus_area_target"] == retuned["nucleus_area_target"]


def test_a_run_tuned_later_saves_untuned_weights_that_retune_completes(shared_data, tmp_path, capsys):
    output = tmp_path / "gpu_run.pt"
    arguments = ["--architecture", "U-Net", "--dataset", "dsb2018", "--train-images", "2", "--val-images", "2",
                 "--steps", "2", "--eval-every", "1", "--batch-size", "2", "--patch-size", "64",
                 "--loader-workers", "2", "--output", str(output)]
    train_segmenter.main([*arguments, "--tune-later"])
    untuned = NucleusSegmenter.from_weights(output)
    assert {k: untuned.config[k] for k in ("foreground_threshold", "marker_threshold", "min_area")} == {
        k: DEFAULT_CONFIG[k] for k in ("foreground_threshold", "marker_threshold", "min_area")}
    log = json.loads(output.with_suffix(".log.json").read_text())
    assert [r["step"] for r in log["history"]] == [1, 2] and "validation_score" not in log["summary"]
    capsys.readouterr()
    train_segmenter.main([*arguments, "--retune"])
    retuned = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert "validation_score" in json.loads(output.with_suffix(".log.json").read_text())["summary"]
    assert NucleusSegmenter.from_weights(output).config["min_area"] == retuned["min_area"]
    assert retuned["split_distance"] in train_segmenter.SPLIT_DISTANCES
    assert NucleusSegmenter.from_weights(output).config["split_distance"] == retuned["split_distance"]


def test_scale_jitter_enlarges_the_nuclei_of_patches_and_their_targets() -> None:
    yy, xx = np.mgrid[:64, :64]
    labels = ((yy - 32) ** 2 + (xx - 32) ** 2 <= 10 ** 2).astype(np.int32)
    item = InstanceAnnotatedImage("disc", np.dstack([labels * 200] * 3).astype(np.uint8), labels, "fluorescence")
    rng = np.random.default_rng(0)

    def foreground_areas(scale_range: float) -> list[float]:
        sampler = train_segmenter.make_sampler([[item]], [1.0], 64, 4, 0.0, scale_range)
        batches = [sampler(rng) for _ in range(5)]
        assert all(x.shape == (4, 3, 64, 64) and y.shape == (4, 2, 64, 64) for x, y in batches)
        return [float(y[i, 0].sum()) for _, y in batches for i in range(4)]

    plain = foreground_areas(0.0)
    assert len(set(plain)) == 1  # the whole image, only flipped and rotated
    jittered = foreground_areas(0.5)
    assert min(jittered) >= plain[0] - 1 and max(jittered) > 1.3 * plain[0]


def test_intensity_stretch_brightens_dim_nuclei_but_not_empty_background() -> None:
    rng = np.random.default_rng(0)
    dim = rng.integers(2, 8, (64, 64, 3)).astype(np.uint8)
    dim[20:30, 20:30] = 25
    stretched = stretch_intensity(dim)
    assert stretched[20:30, 20:30].mean() > 150 and stretched[:15].mean() < 40
    empty = rng.integers(2, 8, (64, 64, 3)).astype(np.uint8)
    assert stretch_intensity(empty).max() <= 8 * 255 / MIN_STRETCH_RANGE + 1  # noise is not blown up to nuclei


def test_weights_trained_on_stretched_images_see_any_exposure_alike(shared_data, tmp_path):
    output = tmp_path / "stretched.pt"
    train_segmenter.main(["--architecture", "MM-GAT", "--loss", "bce", "--dataset", "dsb2018", "--only-modality",
                          "fluorescence", "--intensity-stretch", "--train-images", "2", "--val-images", "1",
                          "--steps", "1", "--eval-every", "1", "--batch-size", "2", "--patch-size", "32",
                          "--graph-channels", "8", "--graph-layers", "2", "--output", str(output)])
    model = NucleusSegmenter.from_weights(output)
    assert model.config["intensity_stretch"] is True
    item = next(i for i in load_instance_set("dsb2018", "val", shared_data) if i.modality == "fluorescence"
                and np.ptp(np.percentile(i.image, STRETCH_PERCENTILES)) > 3 * MIN_STRETCH_RANGE)
    exposures = np.stack([item.image, item.image // 3])  # the same nuclei, a third as bright

    def seen_difference() -> float:  # what the network is given for the two exposures
        seen = model.preprocess(exposures)
        return float((seen[0] - seen[1]).abs().mean() / seen[0].mean())

    assert seen_difference() < 0.1  # what remains is the rounding of the dimmer copy
    model.config["intensity_stretch"] = False
    assert seen_difference() > 0.5


def test_a_wider_graph_attention_network_trains_and_must_match_its_start(shared_data, tmp_path):
    output = tmp_path / "wide_gat.pt"
    arguments = ["--architecture", "MM-GAT", "--loss", "bce", "--dataset", "dsb2018", "--train-images", "1",
                 "--val-images", "1", "--steps", "1", "--eval-every", "1", "--batch-size", "1", "--patch-size", "32",
                 "--graph-channels", "8", "--graph-layers", "2"]
    train_segmenter.main([*arguments, "--output", str(output)])
    model = NucleusSegmenter.from_weights(output)
    assert (model.config["channels"], model.config["layers"]) == (8, 2)
    assert len(model.network.layers) == 2
    with pytest.raises(InputError, match="channels 8, this run asks for 32"):
        train_segmenter.main([*arguments[:-4], "--init-weights", str(output), "--output", str(tmp_path / "b.pt")])


def test_training_on_one_modality_keeps_only_its_images(shared_data, tmp_path, capsys):
    he_train = [i for i in load_instance_set("dsb2018", "train", shared_data) if i.modality == "he"]
    output = tmp_path / "he_only.pt"
    train_segmenter.main(["--architecture", "U-Net", "--dataset", "dsb2018", "--only-modality", "he",
                          "--val-images", "2", "--steps", "1", "--eval-every", "1", "--batch-size", "2",
                          "--patch-size", "64", "--output", str(output)])
    assert f"train images dsb2018 {len(he_train)}\n" in capsys.readouterr().out
    assert 0 < len(he_train) < 600  # DSB2018's H&E-like images, not all of its training images
    assert json.loads(output.with_suffix(".log.json").read_text())["arguments"]["only_modality"] == ["he"]
    with pytest.raises(SystemExit) as refused:
        train_segmenter.main(["--dataset", "monuseg", "--only-modality", "fluorescence", "--output",
                              str(tmp_path / "none.pt")])
    assert refused.value.code == 2
    assert "no validation images of --only-modality fluorescence in monuseg" in capsys.readouterr().err
    assert not (tmp_path / "none.pt").exists()


def test_fine_tuning_on_a_folder_of_own_images_and_label_maps(shared_data, tmp_path):
    from PIL import Image

    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir(), labels.mkdir()
    for item in load_instance_set("dsb2018", "val", shared_data)[:10]:
        Image.fromarray(item.image).save(images / f"{item.name}.png")
        Image.fromarray(item.labels).save(labels / f"{item.name}.png")
    assert len(load_instance_folder(images, labels, "fluorescence", "val")) == 1
    assert len(load_instance_folder(images, labels, "fluorescence", "train")) == 9
    output = tmp_path / "mine.pt"
    train_segmenter.main(["--images-dir", str(images), "--labels-dir", str(labels), "--modality", "fluorescence",
                          "--init-weights", str(DEFAULT_WEIGHTS["U-Net"]), "--architecture", "U-Net",
                          "--steps", "1", "--eval-every", "1", "--batch-size", "2", "--patch-size", "64",
                          "--output", str(output)])
    tuned = NucleusSegmenter.from_weights(output)
    shipped = NucleusSegmenter.from_weights(DEFAULT_WEIGHTS["U-Net"])
    change = max(float((a - b).abs().max()) for a, b in zip(tuned.network.state_dict().values(),
                                                            shipped.network.state_dict().values())
                 if a.is_floating_point() and a.shape == b.shape and a.ndim == 4)  # convolution kernels
    log = json.loads(output.with_suffix(".log.json").read_text())
    assert [record["step"] for record in log["history"]] == [0, 1]  # the starting weights are scored too
    best = max(log["history"], key=lambda record: record["score"])  # the first of equals, as the trainer keeps
    assert change < 0.01  # the shipped weights or one small Adam step away from them, not a fresh network
    assert (change > 0) == (best["step"] == 1)  # kept: the step that scored best
    assert set(log["summary"]["validation"]) == {"own"}


def test_a_label_map_of_the_wrong_size_is_an_input_error(tmp_path):
    from PIL import Image

    (tmp_path / "i").mkdir(), (tmp_path / "l").mkdir()
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "i" / "a.png")
    Image.fromarray(np.zeros((20, 20), np.uint16)).save(tmp_path / "l" / "a.png")
    with pytest.raises(InputError, match="label map"):
        load_instance_folder(tmp_path / "i", tmp_path / "l")
    with pytest.raises(InputError, match="same name"):
        load_instance_folder(tmp_path / "i", tmp_path / "i2")


def test_cli_outlines_nuclei_on_the_sample_slide(sample_svs, tmp_path):
    annotation, geojson = tmp_path / "nuclei.anot", tmp_path / "nuclei.geojson"
    code = plugins_main(["R2UNetSegmentation", str(sample_svs), str(annotation), "--geojson", str(geojson),
                         *ROI_ARGS])
    assert code == 0
    document = nuclei_document(annotation)
    elements = document["elements"]
    assert len(elements) > 50 and {e["type"] for e in elements} == {"polyline"}
    assert all(e["closed"] for e in elements)
    assert document["attributes"]["model"] == "R2U-Net"
    areas = []
    for element in elements:
        ring = np.array(element["points"])[:, :2]
        assert ring[:, 0].min() >= 780 and ring[:, 0].max() <= 1120  # base px of the ROI (and its edge nuclei)
        areas.append(Polygon(ring).area * 0.499 ** 2)
        assert element["user"]["Area µm^2"] == pytest.approx(areas[-1], rel=0.01, abs=0.01)
        assert 0 < element["user"]["Circularity"] <= 1.01
    assert 0.5 < min(areas) and max(areas) < 400  # no specks below the minimum area, no tile-sized blobs
    assert 5 < np.median(areas) < 80  # nuclei, in µm² at the slide's 0.499 µm/px
    features = json.loads(geojson.read_text())["features"]
    assert len(features) == len(elements) and features[0]["geometry"]["type"] == "Polygon"
    assert {"Area µm^2", "Perimeter µm", "Eccentricity", "Circularity"} <= set(features[0]["properties"]["measurements"])


@pytest.fixture
def fluorescence_png(shared_data, tmp_path) -> tuple[InstanceAnnotatedImage, Path]:
    """The first DSB2018 fluorescence validation image and a PNG of it."""
    from PIL import Image

    item = next(i for i in load_instance_set("dsb2018", "val", shared_data) if i.modality == "fluorescence")
    image = tmp_path / "cells.png"
    Image.fromarray(item.image).save(image)
    return item, image


@pytest.mark.parametrize("cli, network, expected", [
    ("R2UNetSegmentation", ["--architecture", "U-Net"], ("unet_nuclei", "unet_fluorescence")),
    ("GraphAttentionSegmentation", [], ("mmgat_typed_nuclei", "mmgat_typed_fluorescence"))])
def test_cli_picks_the_weights_of_the_image_type(fluorescence_png, tmp_path, cli, network, expected):
    item, image = fluorescence_png
    true_count = len(np.unique(item.labels)) - 1
    versions = {}
    for modality in IMAGE_MODALITIES:
        out = tmp_path / f"{modality}.anot"
        assert plugins_main([cli, str(image), str(out), "--input_mag", "40", "--min_fgnd_frac", "0", *network,
                             "--image_modality", modality]) == 0
        document = nuclei_document(out)
        versions[modality] = document["attributes"]["weights_version"]
        assert abs(len(document["elements"]) - true_count) <= 0.3 * true_count + 3  # about the true nuclei
    assert (versions["brightfield"], versions["fluorescence"]) == expected


def test_cli_second_cut_is_tuned_with_the_weights_and_can_be_turned_off(fluorescence_png, tmp_path):
    item, image = fluorescence_png
    weights = WEIGHTS_DIR / "mmgat_fluorescence.pt"  # the flat wiring's, whose cores leave nuclei of this image joined
    documents = {}
    for name, extra in (("tuned", []), ("off", ["--split_distance", "0"])):
        out = tmp_path / f"{name}.anot"
        assert plugins_main(["GraphAttentionSegmentation", str(image), str(out), "--input_mag", "40",
                             "--min_fgnd_frac", "0", "--model_weights", str(weights), *extra]) == 0
        documents[name] = nuclei_document(out)
    tuned = load_checkpoint(weights)["config"]["split_distance"]
    assert tuned > 0 and documents["tuned"]["attributes"]["split_distance"] == tuned  # stored with the weights
    assert documents["off"]["attributes"]["split_distance"] == 0
    true_count = len(np.unique(item.labels)) - 1
    counts = {name: len(document["elements"]) for name, document in documents.items()}
    assert counts["off"] < counts["tuned"] <= true_count  # the cut parts nuclei the cores left joined


@pytest.mark.parametrize("setting, value", [("foreground_threshold", "1.5"), ("split_distance", "-3"),
                                            ("split_distance", "500")])
def test_cli_refuses_an_out_of_range_setting(sample_svs, tmp_path, capsys, setting, value):
    out = tmp_path / "nuclei.anot"
    code = plugins_main(["R2UNetSegmentation", str(sample_svs), str(out), f"--{setting}", value, *ROI_ARGS])
    assert code == 2 and not out.exists()
    assert setting in capsys.readouterr().err.strip().splitlines()[-1]
