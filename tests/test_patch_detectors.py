"""The patch detectors (Cascade-GCN, CP-CNN, SC-CNN): exact dense evaluation, cascade, NMS, weights, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nuclei_core.data.points import load_point_dataset
from nuclei_core.errors import InputError
from nuclei_core.models.base import load_checkpoint
from nuclei_core.models.patch_cnn import SC_WINDOW, PatchCNN, sc_aggregate, sc_window_maps
from nuclei_core.models.patch_detectors import (DEFAULT_WEIGHTS, DETECTORS, WEIGHTS_BY_TRAINING_SET, CascadeGCN,
                                                with_stage1_context)
from nuclei_core.models.patch_gcn import PATCH, GridGraphConv, PatchGCN, grid_laplacian, node_types, polynomial_basis
from nuclei_core.postprocess.nms import nms_points
from nuclei_core.review.evaluation import score_point_detector
from nuclei_core.training import train_patch_detector
from nuclei_core.training.patch_sampling import PatchSource
from plugins.__main__ import main as plugins_main
from annotation_files import nuclei_document

ROI_ARGS = ["--analysis_roi", "800,800,400,400"]  # tissue on CMU-1-Small-Region.svs


@pytest.fixture(scope="module")
def crchisto_tile(crchisto) -> torch.Tensor:
    """A real 20x H&E crop (3, 120, 110) in [0, 1]."""
    image = np.asarray(Image.open(crchisto / "images" / "img11.jpg").convert("RGB"))[100:220, 200:310]
    return torch.from_numpy(image.copy()).permute(2, 0, 1).float() / 255


def _random_pixels(height: int, width: int, count: int = 12) -> list[tuple[int, int]]:
    rng = np.random.default_rng(3)
    corners = [(0, 0), (0, width - 1), (height - 1, 0), (height - 1, width - 1)]
    return corners + [(int(rng.integers(height)), int(rng.integers(width))) for _ in range(count)]


def test_graph_convolution_uses_the_normalised_laplacian_of_the_grid():
    torch.manual_seed(0)
    layer = GridGraphConv(3, 5)
    x = torch.rand(2, 3, PATCH, PATCH)
    laplacian = torch.tensor(grid_laplacian(), dtype=torch.float32)
    explicit = (x.flatten(2) @ laplacian.T).view_as(x)
    assert torch.allclose(layer.laplacian(x), explicit, atol=1e-6)
    eigenvalues = np.linalg.eigvalsh(grid_laplacian())
    assert eigenvalues.min() > -1e-9 and eigenvalues.max() <= 2 + 1e-9  # a normalised Laplacian


def test_higher_order_graph_convolution_weights_chebyshev_polynomials_of_the_laplacian():
    torch.manual_seed(1)
    layer = GridGraphConv(3, 5, order=3).double()
    x = torch.rand(2, 3, PATCH, PATCH, dtype=torch.float64)
    basis = [torch.tensor(m) for m in polynomial_basis(3)]
    rescaled = basis[1] - torch.eye(PATCH * PATCH, dtype=torch.float64)
    assert torch.allclose(basis[3], 4 * rescaled @ rescaled @ rescaled - 3 * rescaled)  # T_3(t) = 4t³ - 3t
    explicit = sum(torch.einsum("oc,bcn->bon", conv.weight[:, :, 0, 0], x.flatten(2) @ matrix.T)
                   for conv, matrix in zip([layer.self_weight, layer.laplacian_weight, *layer.chebyshev_weights], basis))
    explicit = explicit + layer.self_weight.bias[None, :, None]
    assert torch.allclose(layer(x).flatten(2), explicit, atol=1e-10)
    # a node of order K reads K grid steps away, and no further
    impulse = torch.zeros(1, 3, PATCH, PATCH, dtype=torch.float64)
    impulse[0, :, 13, 13] = 1.0
    reached = (layer(impulse) - layer(torch.zeros_like(impulse))).abs().sum(1)[0] > 0
    rows, cols = np.nonzero(reached.numpy())
    assert (np.abs(rows - 13) + np.abs(cols - 13)).max() == 3
    with pytest.raises(ValueError, match="order"):
        GridGraphConv(3, 5, order=0)


def test_node_types_group_the_patch_by_distance_to_its_border():
    first, second = node_types(1), node_types(2)
    assert (len(first.stencils1), len(first.layer2)) == (25, 49)  # 5 x 5 and 7 x 7 row / column classes
    assert (len(second.stencils1), len(second.layer2)) == (49, 121)
    assert len(np.unique(second.type2[5:-5, 5:-5])) == 1  # one interior type, 5 or more steps from the border


@pytest.mark.parametrize("stage", ["stage1", "stage2"])
def test_dense_gcn_equals_the_patch_classifier_at_every_tested_pixel(crchisto_tile, stage):
    network = getattr(CascadeGCN.from_weights(DEFAULT_WEIGHTS["Cascade-GCN"]).network, stage).double()
    tile = crchisto_tile.double()  # float64: the two ways of summing agree to rounding, not to float32's 1e-4
    extra = network.mean.shape[1] - 3  # the shipped stage 2 also reads stage 1's probability
    tile = torch.cat([tile, torch.rand(extra, *tile.shape[1:], generator=torch.Generator().manual_seed(2),
                                       dtype=tile.dtype)])
    with torch.inference_mode():
        dense = network.dense(tile[None], chunk=40)[0]
        assert dense.shape == (120 - PATCH + 1, 110 - PATCH + 1)
        for row, col in _random_pixels(*dense.shape):
            single = network(tile[None, :, row:row + PATCH, col:col + PATCH])[0]
            assert float(dense[row, col]) == pytest.approx(float(single), abs=1e-9)


@pytest.mark.parametrize("order", [1, 2])
def test_dense_gcn_with_a_context_channel_equals_the_patch_classifier(crchisto_tile, order):
    torch.manual_seed(4)
    network = PatchGCN(hidden=16, in_channels=4, order=order).eval().double()
    tile = torch.cat([crchisto_tile, torch.rand(1, *crchisto_tile.shape[1:])]).double()
    with torch.inference_mode():
        dense = network.dense(tile[None], chunk=40)[0]
        for row, col in _random_pixels(*dense.shape):
            single = network(tile[None, :, row:row + PATCH, col:col + PATCH])[0]
            assert float(dense[row, col]) == pytest.approx(float(single), abs=1e-9)


def test_cascade_with_stage1_context_scores_each_fired_pixel_from_colour_and_stage1_probability(crchisto_tile):
    torch.manual_seed(5)
    config = {"channels": [36, 48], "hidden": 16, "stage1_threshold": 0.5, "stage2_context": True,
              "stage2_order": 2, "threshold": 0.5, "nms_box": 8, "nms_iou": 0.3}
    model = CascadeGCN(config)
    model.network.double().eval()
    padded = torch.nn.functional.pad(crchisto_tile.double()[None], (13,) * 4, mode="reflect")
    with torch.inference_mode():
        first = torch.sigmoid(model.network.stage1.dense(padded))
        model.config["stage1_threshold"] = float(first.median())  # about half the pixels fire
        scores = model.score_map(padded)[0]
        context = torch.cat([padded, torch.nn.functional.pad(first[:, None], (13,) * 4, mode="reflect")], 1)
        fired = first[0] >= model.config["stage1_threshold"]
        checked = 0
        for row, col in _random_pixels(*scores.shape, count=30):
            if not fired[row, col]:
                assert float(scores[row, col]) == 0.0
                continue
            single = torch.sigmoid(model.network.stage2(context[:, :, row:row + PATCH, col:col + PATCH]))[0]
            assert float(scores[row, col]) == pytest.approx(float(single), abs=1e-9)
            checked += 1
    assert checked >= 5  # the comparison ran on fired pixels, not only on the zeros
    assert model.network.stage2.graph1.self_weight.in_channels == 4
    assert (len(model.network.stage1.graph1.chebyshev_weights), len(model.network.stage2.graph2.chebyshev_weights)) == (0, 1)


@pytest.mark.parametrize("outputs", [1, 3])
def test_dense_cnn_equals_the_patch_network_at_every_tested_pixel(crchisto_tile, outputs):
    torch.manual_seed(outputs)
    network = PatchCNN(outputs).eval().double()
    tile = crchisto_tile.double()
    with torch.inference_mode():
        dense = network.dense(tile[None], chunk=50)[0]
        for row, col in _random_pixels(*dense.shape[1:]):
            single = network(tile[None, :, row:row + PATCH, col:col + PATCH])[0]
            assert torch.allclose(dense[:, row, col], single, atol=1e-9)


def test_sc_cnn_window_peaks_at_its_predicted_centre_and_is_zero_beyond_the_radius():
    logit = lambda p: float(np.log(p / (1 - p)))  # noqa: E731
    raw = torch.tensor([[logit(0.3), logit(0.6), logit(0.8)]])  # centre row 3, col 6 of the 11 x 11 window
    window = sc_window_maps(raw, radius=4.0)[0]
    assert window.shape == (SC_WINDOW, SC_WINDOW)
    assert tuple(np.unravel_index(int(window.argmax()), window.shape)) == (3, 6)
    assert float(window[3, 6]) == pytest.approx(0.8, abs=1e-5)
    assert float(window[3, 1]) == 0.0 and float(window[10, 6]) == 0.0
    averaged = sc_aggregate(raw.view(1, 3, 1, 1), radius=4.0)[0]
    assert averaged.shape == (PATCH, PATCH)
    assert float(averaged[8 + 3, 8 + 6]) == pytest.approx(0.8, abs=1e-5)  # the window sits mid-patch


def test_nms_keeps_one_point_per_overlapping_cluster_at_iou_0_3():
    scores = np.zeros((40, 60), np.float32)
    scores[10, 10], scores[10, 16] = 0.9, 0.8  # 6 px apart: boxes of 12 overlap with IoU 1/3 > 0.3
    scores[30, 10], scores[30, 17] = 0.9, 0.8  # 7 px apart: IoU 0.26, both kept
    scores[5, 50] = 0.4  # below the threshold
    points, kept = nms_points(scores, 0.5, box_size=12, iou=0.3)
    assert sorted(map(tuple, points.tolist())) == [(10.0, 10.0), (10.0, 30.0), (17.0, 30.0)]
    assert kept.max() == pytest.approx(0.9)


def test_stage2_runs_only_where_stage1_fires():
    model = CascadeGCN.from_weights(DEFAULT_WEIGHTS["Cascade-GCN"])
    tile = (np.random.default_rng(0).random((1, 64, 72, 3)) * 255).astype(np.uint8)
    model.config["stage1_threshold"] = 0.0
    everywhere = model.predict_outputs(tile)[0, 0]
    padded = torch.nn.functional.pad(model.preprocess(tile), (13,) * 4, mode="reflect")
    with torch.inference_mode():
        first = torch.sigmoid(model.network.stage1.dense(padded))
        stage2 = torch.sigmoid(model.network.stage2.dense(with_stage1_context(padded, first)))[0].numpy()
    assert np.allclose(everywhere, stage2, atol=1e-5)
    model.config["stage1_threshold"] = 1.01
    assert not model.predict_outputs(tile).any()


SHIPPED = [(name, training_set) for name in sorted(DETECTORS) for training_set in WEIGHTS_BY_TRAINING_SET[name]]


@pytest.mark.parametrize("name,training_set", SHIPPED)
def test_shipped_weights_are_fp16_with_a_model_card_and_tuned_settings(name, training_set):
    path = WEIGHTS_BY_TRAINING_SET[name][training_set]
    checkpoint = load_checkpoint(path)
    assert all(v.dtype == torch.float16 for v in checkpoint["state_dict"].values() if v.is_floating_point())
    assert 0 < checkpoint["config"]["threshold"] < 1 and checkpoint["config"]["nms_iou"] == 0.3
    assert path.with_suffix(".md").is_file() and checkpoint["version"].replace("-", "_").startswith(path.stem)


VALIDATION_SETS = {"Colorectal": ("crchisto",), "Multi-organ": ("crchisto", "monuseg", "consep")}


@pytest.mark.parametrize("name,training_set", SHIPPED)
def test_shipped_weights_detect_nuclei_on_validation_images_of_their_training_sets(shared_data, name, training_set):
    """One validation image of each dataset the weights were trained on (their checkpoint and tuning data)."""
    from nuclei_core.data.public_sets import load_point_set

    model = DETECTORS[name].from_weights(WEIGHTS_BY_TRAINING_SET[name][training_set])
    scores = [score_point_detector(model, load_point_set(dataset, "val", shared_data)[:1], radius=6)
              for dataset in VALIDATION_SETS[training_set]]
    assert np.mean([s.f1 for s in scores]) > 0.7, [s.as_dict() for s in scores]


def test_the_default_weights_are_the_multi_organ_ones():
    assert all(DEFAULT_WEIGHTS[name] == WEIGHTS_BY_TRAINING_SET[name]["Multi-organ"] for name in DETECTORS)


def test_stain_jitter_changes_the_colours_of_training_patches_and_nothing_else(small_point_set):
    from nuclei_core.data.points import load_point_dataset as load
    from nuclei_core.training.patch_sampling import PatchSource

    images, points = small_point_set[1], small_point_set[3]
    source = PatchSource.from_dataset(load(images, points))
    pools = [(source.pool_by_distance(-1, 2.0), 8, 1.0), (source.pool_by_distance(2.0, np.inf), 8, 0.0)]
    plain, jittered = (train_patch_detector.classifier_batches(source, pools, stain_strength=strength)
                       for strength in (0.0, 0.3))
    (a, labels_a), (b, labels_b) = plain(np.random.default_rng(0)), jittered(np.random.default_rng(0))
    assert a.shape == b.shape == (16, 3, PATCH, PATCH) and torch.equal(labels_a, labels_b)
    assert not torch.allclose(a, b, atol=0.02)
    again, _ = plain(np.random.default_rng(0))
    assert torch.equal(a, again)


def test_patch_source_labels_pixels_by_distance_to_the_nearest_centre(crchisto):
    item = load_point_dataset(crchisto / "images", crchisto / "detection", ["img1"])[0]
    source = PatchSource.from_dataset([item])
    x, y = np.round(item.points[0]).astype(int)
    assert source.distances[0][y, x] == 0
    positives = source.pool_by_distance(-1, 2.0)
    assert 9 * len(item.points) <= len(positives) <= 13 * len(item.points)
    patch = source.patches(np.array([[0, y, x]]))[0]
    assert np.array_equal(patch[PATCH // 2, PATCH // 2], item.image[y, x])
    window = source.proximity_windows(np.array([[0, y, x]]), radius=4.0)[0]
    assert window[SC_WINDOW // 2, SC_WINDOW // 2] == 1.0


@pytest.fixture(scope="module")
def small_point_set(crchisto, tmp_path_factory) -> list[str]:
    """Data arguments of three 150 x 150 CRCHisto crops with their centres: keeps the smoke runs short."""
    folder = tmp_path_factory.mktemp("points")
    images, points = folder / "images", folder / "points"
    images.mkdir(), points.mkdir()
    for index in (1, 2, 3):
        image = Image.open(crchisto / "images" / f"img{index}.jpg").crop((100, 100, 250, 250))
        image.save(images / f"img{index}.png")
        rows = [line for line in (crchisto / "detection" / f"img{index}.csv").read_text().splitlines()[1:]
                if 100 <= float(line.split(",")[0]) < 250 and 100 <= float(line.split(",")[1]) < 250]
        (points / f"img{index}.csv").write_text("x,y\n" + "\n".join(
            f"{float(x) - 100},{float(y) - 100}" for x, y in (r.split(",")[:2] for r in rows)))
    return ["--images-dir", str(images), "--points-dir", str(points)]


@pytest.mark.parametrize("name, options", [(name, []) for name in sorted(DETECTORS)]
                         + [("Cascade-GCN", ["--stage2-context", "--hidden", "8"])])
def test_training_script_writes_loadable_weights(small_point_set, tmp_path, name, options):
    images = Path(small_point_set[1])
    output = tmp_path / "w.pt"
    data = ["--model", name, *small_point_set, "--output", str(output)]
    train_patch_detector.main([*data, "--loss", "focal", "--steps", "4", "--eval-every", "2", "--batch-size", "16",
                               *options])
    model = DETECTORS[name].from_weights(output)
    if options:  # stage 2 reads the colour and stage 1's probability, standardised by the training maps
        assert model.config["stage2_context"] and model.config["hidden"] == 8
        stage2 = model.network.stage2
        assert stage2.mean.shape[1] == 4 and 0 < float(stage2.mean[0, 3]) < 1 and float(stage2.std[0, 3]) > 0
    assert model.config["loss"] == ("mse" if name == "SC-CNN" else "focal")
    assert model.config["nms_box"] in train_patch_detector.NMS_BOXES
    log = json.loads(output.with_suffix(".log.json").read_text())
    assert set(log["summary"]) == {"f1", "threshold", "nms_box", "smoothing"}
    assert log["stage1" if name == "Cascade-GCN" else "network"]["steps"] == 4
    before = output.stat().st_mtime_ns
    train_patch_detector.main([*data, "--retune"])  # post-processing only: the network stays as it was
    retuned = DETECTORS[name].from_weights(output)
    assert output.stat().st_mtime_ns > before
    assert all(torch.equal(a, b) for a, b in zip(retuned.network.state_dict().values(),
                                                  model.network.state_dict().values()))
    tile = np.asarray(Image.open(images / "img1.png"))[None]
    assert model.predict_outputs(tile).shape == (1, 1, 150, 150)


def test_stage2_trains_alone_on_the_stage1_of_existing_weights(small_point_set, tmp_path):
    base = ["--model", "Cascade-GCN", *small_point_set, "--stage2-context"]
    data, run = [*base, "--hidden", "8"], ["--steps", "2", "--eval-every", "1", "--batch-size", "16"]
    first, second = tmp_path / "first.pt", tmp_path / "second.pt"
    train_patch_detector.main([*data, *run, "--output", str(first)])
    train_patch_detector.main([*data, *run, "--output", str(second), "--stage1-weights", str(first),
                               "--stage2-order", "2"])
    reused, trained = (CascadeGCN.from_weights(path) for path in (first, second))
    assert all(torch.equal(a, b) for a, b in zip(reused.network.stage1.state_dict().values(),
                                                  trained.network.stage1.state_dict().values()))
    assert trained.config["stage2_order"] == 2 and "stage2_order" not in reused.config
    assert len(trained.network.stage2.graph2.chebyshev_weights) == 1
    assert json.loads(second.with_suffix(".log.json").read_text())["stage1"] == {"weights": str(first)}
    refused = tmp_path / "refused.pt"
    with pytest.raises(InputError, match="has hidden 8, this run asks for 16"):
        train_patch_detector.main([*base, "--hidden", "16", *run, "--output", str(refused),
                                   "--stage1-weights", str(first)])
    assert not refused.exists()


@pytest.mark.parametrize("training_set,version", [([], "cascade-gcn-multiorgan-1"),
                                                  (["--training_set", "Colorectal"], "cascade-gcn-crchisto-2")])
def test_cli_training_set_chooses_the_shipped_weights(sample_svs, tmp_path, training_set, version):
    annotation = tmp_path / "nuclei.anot"
    assert plugins_main(["CascadeGCNDetection", str(sample_svs), str(annotation), *training_set, *ROI_ARGS]) == 0
    assert nuclei_document(annotation)["attributes"]["weights_version"] == version


@pytest.mark.parametrize("detector", sorted(DETECTORS))
def test_cli_runs_each_detector_on_the_sample_slide(sample_svs, tmp_path, detector):
    annotation, geojson = tmp_path / "nuclei.anot", tmp_path / "nuclei.geojson"
    code = plugins_main(["CascadeGCNDetection", str(sample_svs), str(annotation), "--geojson", str(geojson),
                         "--detector", detector, *ROI_ARGS])
    assert code == 0
    document = nuclei_document(annotation)
    points = [e for e in document["elements"] if e["type"] == "point"]
    assert len(points) > 5
    assert all(800 <= e["center"][0] < 1200 and 800 <= e["center"][1] < 1200 for e in points)
    assert document["attributes"]["model"] == detector
    assert len(json.loads(geojson.read_text())["features"]) == len(points)


def test_cli_rejects_a_suppression_box_below_one_pixel(sample_svs, tmp_path, capsys):
    annotation = tmp_path / "nuclei.anot"
    code = plugins_main(["CascadeGCNDetection", str(sample_svs), str(annotation), "--nms_box", "0.5", *ROI_ARGS])
    assert code == 2 and not annotation.exists()
    assert "nms_box" in capsys.readouterr().err.strip().splitlines()[-1]


def test_weights_for_the_wrong_detector_are_a_one_line_error(sample_svs, tmp_path, capsys):
    annotation = tmp_path / "nuclei.anot"
    code = plugins_main(["CascadeGCNDetection", str(sample_svs), str(annotation), "--detector", "CP-CNN",
                         "--model_weights", str(DEFAULT_WEIGHTS["SC-CNN"]), *ROI_ARGS])
    assert code == 2 and not annotation.exists()
    assert "weights do not fit CP-CNN" in capsys.readouterr().err
