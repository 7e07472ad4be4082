"""The HoVer-Net-style network, its post-processing, its training (classes only where an image has them), the
shipped weights and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from skimage.draw import disk

from nuclei_core.errors import InputError, WeightsError
from nuclei_core.models.base import windowed_outputs
from nuclei_core.models.hover_network import CoordinateAttention, HoVerNetwork, SqueezeExcitation
from nuclei_core.models.hovernet import DEFAULT_CONFIG, HAEMATOXYLIN, PROBABILITY, HoVerNet
from nuclei_core.postprocess.hover import distance_targets, hover_instances, instance_types
from nuclei_core.training.train_hovernet import SCORE_TIE, choose_setting
from annotation_files import nuclei_document


def discs(shape=(120, 140), centres=((50, 38), (50, 62), (90, 100)), radius=14) -> np.ndarray:
    labels = np.zeros(shape, np.int32)
    for number, centre in enumerate(centres, start=1):
        rows, columns = disk(centre, radius, shape=shape)
        labels[rows, columns] = number  # the second disc overlaps the first: they touch
    return labels


def test_distance_targets_run_from_minus_one_to_one_across_each_nucleus():
    labels = np.zeros((20, 30), np.int32)
    labels[5:16, 10:21] = 1  # 11 x 11 square, centre of mass at (10, 15)
    horizontal, vertical = distance_targets(labels)
    assert horizontal[10, 15] == 0 and vertical[10, 15] == 0
    np.testing.assert_allclose(horizontal[10, [10, 20]], [-1, 1])
    np.testing.assert_allclose(vertical[[5, 15], 15], [-1, 1])
    np.testing.assert_allclose(horizontal[10, 10:21], np.linspace(-1, 1, 11))
    assert not horizontal[labels == 0].any() and not vertical[labels == 0].any()
    assert distance_targets(np.zeros((4, 4), np.int32)).shape == (2, 4, 4)


def test_ideal_maps_split_touching_nuclei_exactly():
    labels = discs()
    horizontal, vertical = distance_targets(labels)
    found = hover_instances((labels > 0).astype(float), horizontal, vertical)
    assert found.max() == 3
    for number in (1, 2, 3):
        overlap = np.bincount(found[labels == number], minlength=4)[1:]
        best = overlap.argmax() + 1
        union = ((found == best) | (labels == number)).sum()
        assert overlap.max() / union > 0.95


def test_how_a_pair_is_split_does_not_depend_on_the_rest_of_the_tile():
    """A faint pair of distance maps splits the same with or without a sharper pair elsewhere in the tile (a
    per-tile scaling of the gradients, as in HoVer-Net's code, lets the sharper pair move the borders)."""
    left = discs(shape=(120, 280))
    right = discs(shape=(120, 280), centres=((40, 190), (40, 214)), radius=12)
    faint = distance_targets(left) * 0.3
    alone = hover_instances((left > 0).astype(float), *faint)
    both = np.where(right > 0, right + 3, left)
    beside = hover_instances((both > 0).astype(float), *np.where(right > 0, distance_targets(right), faint))
    assert alone.max() == 3 and beside.max() == 5
    pairs = np.unique(np.stack([alone[:, :150].ravel(), beside[:, :150].ravel()]), axis=1)
    assert pairs.shape[1] == len(np.unique(alone[:, :150])) == len(np.unique(beside[:, :150]))


def test_without_distance_information_touching_nuclei_stay_one():
    labels = discs()
    flat = np.zeros(labels.shape)
    assert hover_instances((labels > 0).astype(float), flat, flat).max() == 2


def test_instance_class_is_the_majority_of_its_pixels():
    labels = np.array([[1, 1, 1, 0, 2, 2]])
    probabilities = np.zeros((3, 1, 6))  # background, class 1, class 2
    probabilities[1, 0, :2] = 0.9  # instance 1: two pixels of class 1 ...
    probabilities[2, 0, 2] = 0.8  # ... one of class 2
    probabilities[2, 0, 4:] = 0.6
    probabilities[0] = 1 - probabilities[1:].sum(axis=0)
    types, probability = instance_types(labels, probabilities)
    assert types.tolist() == [1, 2]
    np.testing.assert_allclose(probability, [0.6, 0.6])


@pytest.mark.parametrize("attention", [True, False])
def test_network_heads_and_the_ablation(attention):
    torch.manual_seed(0)
    network = HoVerNetwork(4, (8, 16, 32), attention=attention).eval()
    with torch.no_grad():
        out = network(torch.rand(2, 3, 40, 56))
    assert out.shape == (2, 2 + 2 + 5, 40, 56)
    assert out[:, 2:4].abs().max() <= 1
    modules = {type(m) for m in network.modules()}
    assert (SqueezeExcitation in modules) == attention and (CoordinateAttention in modules) == attention


def test_coordinate_attention_gates_depend_on_position():
    torch.manual_seed(0)
    attention = CoordinateAttention(8).eval()
    x = torch.rand(1, 8, 12, 10)
    with torch.no_grad():
        gated = attention(x)
        flipped = attention(x.flip(2)).flip(2)
    assert gated.shape == x.shape
    torch.testing.assert_close(gated, flipped)  # each row's gate follows its own row
    assert not torch.allclose(gated / x, (gated / x).mean(dim=2, keepdim=True))


def test_model_gives_classified_contours_and_survives_a_save(tmp_path):
    torch.manual_seed(0)
    model = HoVerNet({**DEFAULT_CONFIG, "widths": [8, 16, 32], "foreground_threshold": 0.0})  # untrained: take all
    tiles = np.random.default_rng(0).integers(0, 255, (1, 64, 64, 3), dtype=np.uint8)
    (nuclei,) = model.predict(tiles)
    assert nuclei.class_names == ("other", "inflammatory", "epithelial", "spindle")
    assert len(nuclei) > 0 and len(nuclei.contours) == len(nuclei) == len(nuclei.measurements[PROBABILITY])
    assert ((nuclei.measurements[PROBABILITY] >= 0) & (nuclei.measurements[PROBABILITY] <= 1)).all()
    assert (nuclei.measurements[HAEMATOXYLIN] >= 0).all() and len(nuclei.measurements[HAEMATOXYLIN]) == len(nuclei)
    model.save(tmp_path / "h.pt", version="test")
    again = HoVerNet.from_weights(tmp_path / "h.pt")
    np.testing.assert_allclose(again.predict_outputs(tiles), model.predict_outputs(tiles), atol=2e-2)


def box_filtered(tiles: np.ndarray) -> np.ndarray:
    """A 3x3 mean of each channel, the tile border mirrored: (B, H, W, C) -> (B, C, H, W)."""
    padded = np.pad(tiles.astype(np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
    height, width = tiles.shape[1:3]
    total = sum(padded[:, dy:dy + height, dx:dx + width] for dy in range(3) for dx in range(3))
    return (total / 9).transpose(0, 3, 1, 2)


@pytest.mark.parametrize("window, margin", [(16, 4), (21, 1), (64, 8)])
def test_windowed_outputs_equal_the_whole_tile_for_a_local_operation(window, margin):
    """Each window's core is kept where it lies, its margins dropped and the tile border mirrored as for the whole
    tile: an operation that sees no further than the margin gives the same maps either way."""
    tiles = np.random.default_rng(1).integers(0, 255, (2, 50, 37, 3)).astype(np.uint8)
    np.testing.assert_allclose(windowed_outputs(box_filtered, tiles, window, margin, group=3), box_filtered(tiles))


def test_windowed_outputs_refuse_a_window_without_a_core():
    with pytest.raises(ValueError, match="no core"):
        windowed_outputs(box_filtered, np.zeros((1, 40, 40, 3), np.uint8), 16, 8)


def test_inference_window_runs_attention_on_inputs_of_its_own_size():
    """Squeeze-excitation and coordinate attention pool over their whole input: with an inference window, a tile
    larger than it gives the maps of the windows, not those of the tile in one pass."""
    torch.manual_seed(0)
    model = HoVerNet({**DEFAULT_CONFIG, "widths": [8, 16, 32]})
    tiles = np.random.default_rng(0).integers(0, 255, (1, 200, 180, 3), dtype=np.uint8)
    whole = model.predict_outputs(tiles)
    model.config["inference_window"] = 64 + 2 * model.halo
    windowed = model.predict_outputs(tiles)
    assert windowed.shape == whole.shape
    np.testing.assert_allclose(windowed, windowed_outputs(model.padded_outputs, tiles, 64 + 2 * model.halo,
                                                          model.halo))
    assert not np.allclose(windowed, whole, atol=1e-3)
    small = tiles[:, :100, :100]
    np.testing.assert_allclose(model.predict_outputs(small), model.padded_outputs(small))  # fits one window


def test_training_smoke_run_writes_weights_that_load(shared_data, tmp_path):
    """Two steps on one CoNSeP image, scored on one validation image: the script runs end to end and its
    weights load as the model with tuned thresholds (no accuracy is claimed from this)."""
    from nuclei_core.training.train_hovernet import main as train_main

    output = tmp_path / "hover.pt"
    train_main(["--output", str(output), "--steps", "2", "--eval-every", "1", "--train-images", "1",
                "--val-images", "1", "--widths", "8", "16", "--patch-size", "64", "--batch-size", "2",
                "--device", "cpu"])
    model = HoVerNet.from_weights(output)
    assert model.config["foreground_threshold"] in (0.4, 0.5, 0.6) and model.config["attention"] is True
    assert model.config["inference_window"] in (0, 512, 256)
    log = json.loads(output.with_suffix(".log.json").read_text())
    assert [r["step"] for r in log["history"]] == [1, 2] and {"pq", "mpq"} <= set(log["history"][0])


def test_a_run_from_given_weights_validates_with_their_tuned_thresholds(tmp_path):
    from nuclei_core.training.train_hovernet import start_from

    tuned = HoVerNet({**DEFAULT_CONFIG, "widths": [8, 16], "foreground_threshold": 0.4, "edge_threshold": 0.7})
    tuned.save(tmp_path / "tuned.pt", version="tuned")
    model = HoVerNet({**DEFAULT_CONFIG, "widths": [8, 16]})
    start_from(model, str(tmp_path / "tuned.pt"))
    assert (model.config["foreground_threshold"], model.config["edge_threshold"]) == (0.4, 0.7)
    loaded = model.network.state_dict()
    for name, value in tuned.network.state_dict().items():  # the weights file is fp16
        torch.testing.assert_close(loaded[name], value.half().float() if value.is_floating_point() else value)
    plain = HoVerNet({**DEFAULT_CONFIG, "widths": [8, 16], "attention": False})
    with pytest.raises(InputError, match="has attention True, this run asks for False"):
        start_from(plain, str(tmp_path / "tuned.pt"))


def test_a_class_balanced_share_outside_0_to_1_is_a_one_line_error(tmp_path, capsys):
    from nuclei_core.training.train_hovernet import main as train_main

    output = tmp_path / "never.pt"
    with pytest.raises(SystemExit) as stop:
        train_main(["--class-balanced-crops", "1.5", "--output", str(output)])
    assert stop.value.code == 2 and not output.exists()
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "error: --class-balanced-crops is a fraction of the crops: give 0 to 1 (see" in line


def test_distance_targets_follow_a_rotated_crop():
    """The sampler computes the targets after rotating: the horizontal map of a rotated nucleus is the
    rotated vertical map (with its sign), not the rotated horizontal one."""
    labels = np.zeros((30, 30), np.int32)
    labels[5:20, 8:14] = 1  # a tall nucleus
    rotated = np.rot90(labels)
    horizontal_after, vertical_after = distance_targets(rotated)
    horizontal_before, vertical_before = distance_targets(labels)
    # np.rot90 turns counter-clockwise: new x = old y, new y = -(old x)
    np.testing.assert_allclose(horizontal_after, np.rot90(vertical_before), atol=1e-6)
    np.testing.assert_allclose(vertical_after, np.rot90(-horizontal_before), atol=1e-6)
    assert not np.allclose(horizontal_after, np.rot90(horizontal_before))


def test_haematoxylin_density_is_high_in_nuclei_and_low_in_background(shared_data):
    from nuclei_core.data.instance_sets import load_typed_consep
    from nuclei_core.stains import haematoxylin_density

    item = load_typed_consep("val")[0]
    density = haematoxylin_density(item.image)
    assert density[item.labels > 0].mean() > 3 * density[item.labels == 0].mean()
    assert haematoxylin_density(np.full((4, 4, 3), 255, np.uint8)).max() == 0  # white glass holds no stain


def test_cli_writes_classified_outlines_with_measurements(sample_svs, tmp_path):
    """The CLI's plumbing with small untrained weights (the shipped ones are scored in benchmarks/): one group
    per class, and each nucleus's class probability, shape and haematoxylin in the annotation and GeoJSON."""
    from plugins.HoVerNetSegmentation import main as hover_main

    torch.manual_seed(0)
    weights = tmp_path / "tiny.pt"
    HoVerNet({**DEFAULT_CONFIG, "widths": [8, 16, 32], "foreground_threshold": 0.3}).save(weights, version="tiny")
    out = tmp_path / "nuclei.anot"
    assert hover_main([str(sample_svs), str(out), "--analysis_roi", "900,900,150,150", "--model_weights",
                       str(weights), "--geojson", str(tmp_path / "nuclei.geojson"), "--foreground_threshold",
                       "0.3"]) == 0
    elements = nuclei_document(out)["elements"]
    assert elements and {e["type"] for e in elements} == {"polyline"}
    assert {e["group"] for e in elements} <= set(DEFAULT_CONFIG["class_names"])
    for key in (PROBABILITY, HAEMATOXYLIN, "Area µm^2", "Eccentricity"):
        assert all(key in e["user"] for e in elements), key
    features = json.loads((tmp_path / "nuclei.geojson").read_text())["features"]
    assert HAEMATOXYLIN in features[0]["properties"]["measurements"]
    assert nuclei_document(out)["attributes"]["inference_window"] == 0  # as the weights were saved


def test_cli_inference_window_replaces_the_stored_one(sample_svs, tmp_path):
    from plugins.HoVerNetSegmentation import main as hover_main

    torch.manual_seed(0)
    weights, out = tmp_path / "tiny.pt", tmp_path / "nuclei.anot"
    HoVerNet({**DEFAULT_CONFIG, "widths": [8, 16, 32], "foreground_threshold": 0.3}).save(weights, version="tiny")
    assert hover_main([str(sample_svs), str(out), "--analysis_roi", "900,900,150,150", "--model_weights",
                       str(weights), "--inference_window", "160"]) == 0
    assert nuclei_document(out)["attributes"]["inference_window"] == 160


@pytest.mark.parametrize("window, message", [("50", "inference_window must be 0"), ("96", "more than 96 px"),
                                             ("5000", "inference_window=5000 is outside"),
                                             ("-2", "inference_window=-2 is outside")])
def test_cli_refuses_an_inference_window_without_a_core(sample_svs, tmp_path, capfd, window, message):
    from plugins.HoVerNetSegmentation import main as hover_main

    out = tmp_path / "nuclei.anot"
    assert hover_main([str(sample_svs), str(out), "--analysis_roi", "900,900,150,150",
                       "--inference_window", window]) == 2
    err = capfd.readouterr().err.strip()
    assert "Traceback" not in err and message in err.splitlines()[-1]
    assert not out.exists()


def test_class_loss_leaves_out_images_without_classes():
    from nuclei_core.training.train_hovernet import UNTYPED, make_loss

    torch.manual_seed(0)
    loss = make_loss([1.0] * 5)
    output = torch.randn(2, 9, 16, 16)
    target = torch.zeros(2, 4, 16, 16)
    target[:, 0, 4:12, 4:12] = 1
    target[0, 3, 4:12, 4:12] = 2  # image 0 has classes; image 1 comes from an untyped set
    target[1, 3] = UNTYPED
    changed = output.clone()
    changed[1, 4:] = torch.randn(5, 16, 16) * 5  # other class logits where there are no classes
    assert torch.isclose(loss(output, target), loss(changed, target))
    changed[0, 4:] = torch.randn(5, 16, 16) * 5  # ... and where there are
    assert not torch.isclose(loss(output, target), loss(changed, target))
    untyped = target.clone()
    untyped[0, 3] = UNTYPED
    assert torch.isfinite(loss(output, untyped))



def test_gradient_loss_counts_the_distance_maps_slope_inside_nuclei_only():
    from nuclei_core.training.train_hovernet import make_loss

    target = torch.zeros(1, 4, 16, 16)
    target[:, 0, 4:12, 2:14] = 1  # two nuclei side by side, columns 2-7 and 8-13
    ramp = torch.linspace(-1, 1, 6)
    target[0, 1, 4:12, 2:8], target[0, 1, 4:12, 8:14] = ramp, ramp  # horizontal maps flip at their border
    output = torch.zeros(1, 9, 16, 16)
    output[:, 2:4] = target[:, 1:3]
    plain, with_gradients = make_loss([1.0] * 5), make_loss([1.0] * 5, gradient_weight=2.0)
    assert torch.isclose(plain(output, target), with_gradients(output, target))  # exact maps: no gradient error
    smoothed = output.clone()
    smoothed[0, 2] = torch.nn.functional.avg_pool2d(target[:, 1:2], 5, 1, 2)[0, 0]  # the border blurred
    assert with_gradients(smoothed, target) > plain(smoothed, target) + 0.1
    outside = output.clone()
    outside[0, 2:4, :2] = torch.randn(2, 2, 16)  # rows 0-1 only: nuclei start 2 rows beyond the 5 x 5 reach
    assert torch.isclose(with_gradients(outside, target) - plain(outside, target), torch.tensor(0.0), atol=1e-6)


def _typed_image(name: str, centres: list[tuple[int, int, int]], size: int = 200):
    from nuclei_core.data.instance_sets import InstanceAnnotatedImage

    labels, types = np.zeros((size, size), np.uint16), np.zeros((size, size), np.int16)
    for number, (row, col, nucleus_class) in enumerate(centres, start=1):
        labels[disk((row, col), 5, shape=labels.shape)] = number
        types[labels == number] = nucleus_class
    image = np.where(labels[..., None] > 0, 60, 220).astype(np.uint8).repeat(3, axis=-1)
    return InstanceAnnotatedImage(name, image, labels, "he", types)


def test_class_balanced_crops_show_a_rare_class_as_often_as_a_common_one():
    """One 'rare' (class 1) nucleus in a corner among 25 common (class 3) ones: crops at random rarely hold it,
    class-balanced crops hold it in about half of the crops that are placed by class."""
    from nuclei_core.training.train_hovernet import make_sampler, nucleus_centres_by_class

    common = [(row, col, 3) for row in range(60, 200, 28) for col in range(60, 200, 28)]
    item = _typed_image("mixed", [(12, 12, 1), *common])
    centres = nucleus_centres_by_class([item])
    assert sorted(centres) == [1, 3] and len(centres[1]) == 1 and len(centres[3]) == 25
    np.testing.assert_array_equal(centres[1][0], [0, 12, 12])

    def rare_share(fraction: float) -> float:
        _, targets = make_sampler([item], 48, 64, 0.0, 0.2, class_balanced=fraction)(np.random.default_rng(0))
        return float((targets[:, 3] == 1).flatten(1).any(1).float().mean())

    assert rare_share(0.0) < 0.15 and 0.35 < rare_share(1.0)


def test_weights_whose_window_leaves_no_core_are_a_one_line_error(sample_svs, tmp_path, capfd):
    from plugins.HoVerNetSegmentation import main as hover_main

    model = HoVerNet({**DEFAULT_CONFIG, "widths": [8, 16, 32]})
    model.config["inference_window"] = 2 * HoVerNet.halo
    weights, out = tmp_path / "narrow.pt", tmp_path / "nuclei.anot"
    model.save(weights, version="narrow")
    with pytest.raises(WeightsError, match="leaves no core"):
        HoVerNet.from_weights(weights)
    code = hover_main([str(sample_svs), str(out), "--analysis_roi", "900,900,150,150", "--model_weights", str(weights)])
    err = capfd.readouterr().err.strip()
    assert code == 2 and "Traceback" not in err and "leaves no core" in err.splitlines()[-1]
    assert not out.exists()


def test_training_refuses_a_window_inside_the_halo(capsys):
    from nuclei_core.training.train_hovernet import main as train_main

    with pytest.raises(SystemExit) as exit_info:
        train_main(["--output", "unused.pt", "--inference-window", "90"])
    assert exit_info.value.code == 2 and "--inference-window" in capsys.readouterr().err


def test_flip_averaged_distance_maps_turn_with_the_tile():
    """Averaged over mirror images, the maps of a mirrored tile are the tile's maps mirrored, with the horizontal
    distance negated after a left-right mirror and the vertical after an up-down one (a plain flip of the
    distances would break this)."""
    torch.manual_seed(0)
    model = HoVerNet({**DEFAULT_CONFIG, "widths": [8, 16, 32], "flip_averaging": True})
    tiles = np.random.default_rng(2).integers(0, 255, (1, 64, 48, 3), dtype=np.uint8)
    maps = model.predict_outputs(tiles)[0]
    for axis, negated in ((2, 1), (1, 2)):  # tile axis (B, H, W, 3): 2 = left-right, 1 = up-down
        mirrored = model.predict_outputs(np.ascontiguousarray(np.flip(tiles, axis)))[0]
        expected = np.flip(maps, axis).copy()
        expected[negated] *= -1
        np.testing.assert_allclose(mirrored, expected, atol=1e-5)
        assert np.abs(maps[negated]).max() > 1e-3  # the sign is tested, not a map of zeros


def test_flip_averaging_keeps_the_shipped_model_s_distances(shared_data):
    """On a real tile the averaged horizontal and vertical maps follow the single pass's (mirroring a distance back
    without turning its sign would cancel them)."""
    from nuclei_core.data.instance_sets import load_typed_consep
    from nuclei_core.models.hovernet import DEFAULT_WEIGHTS

    image = load_typed_consep("val", shared_data)[0].image[:256, :256][None]
    single = HoVerNet.from_weights(DEFAULT_WEIGHTS["plain"]).predict_outputs(image)[0]
    averaged = HoVerNet.from_weights(DEFAULT_WEIGHTS["plain"], flip_averaging=True).predict_outputs(image)[0]
    for channel in (1, 2):
        assert np.corrcoef(single[channel].ravel(), averaged[channel].ravel())[0, 1] > 0.9
    assert np.corrcoef(single[0].ravel(), averaged[0].ravel())[0, 1] > 0.9


@pytest.mark.parametrize("network", ["SE + CA", "plain"])
def test_shipped_weights_are_fp16_with_tuned_thresholds_and_a_card(network):
    from nuclei_core.models.base import load_checkpoint
    from nuclei_core.models.hovernet import DEFAULT_WEIGHTS
    from nuclei_core.training.train_hovernet import INFERENCE_WINDOWS

    checkpoint = load_checkpoint(DEFAULT_WEIGHTS[network])
    assert checkpoint["config"]["attention"] == (network == "SE + CA")
    assert checkpoint["config"]["class_names"] == list(DEFAULT_CONFIG["class_names"])
    assert all(v.dtype == torch.float16 for v in checkpoint["state_dict"].values() if v.is_floating_point())
    assert 0 < checkpoint["config"]["foreground_threshold"] < 1
    assert checkpoint["config"]["inference_window"] in INFERENCE_WINDOWS  # chosen by the training's tuning
    assert DEFAULT_WEIGHTS[network].with_suffix(".md").is_file(), "every shipped weights file has a model card"


def test_shipped_model_segments_and_classifies_an_unseen_consep_image(shared_data):
    from nuclei_core.data.instance_sets import load_typed_consep
    from nuclei_core.metrics.segmentation import panoptic_quality
    from nuclei_core.models.hovernet import DEFAULT_WEIGHTS

    model = HoVerNet.from_weights(DEFAULT_WEIGHTS["SE + CA"])
    item = load_typed_consep("val", shared_data)[0]
    image, labels = item.image[:512, :512], item.labels[:512, :512]
    output = model.predict_outputs(image[None])[0]
    found = model.label_map(output)
    assert panoptic_quality(found, labels)["pq"] > 0.35
    types, probability = instance_types(found, output[3:])
    assert len(set(types.tolist())) >= 2 and np.all((probability > 0) & (probability <= 1))


def test_shipped_model_finds_the_nuclei_of_the_sample_slide(sample_svs, tmp_path):
    """A 20x skin slide of another lab, far from CoNSeP's colorectal tiles: the default network still finds its
    nuclei, not fragments (R2U-Net finds 99 in this region, median area 12 µm²; the CoNSeP-only weights of run 1 found none)."""
    from plugins.HoVerNetSegmentation import main as hover_main

    out = tmp_path / "nuclei.anot"
    assert hover_main([str(sample_svs), str(out), "--analysis_roi", "800,800,300,300"]) == 0
    elements = nuclei_document(out)["elements"]
    assert len(elements) >= 60
    assert np.median([e["user"]["Area µm^2"] for e in elements]) > 6


def test_tuning_breaks_a_flat_score_by_the_nucleus_count() -> None:
    under = {"edge_threshold": 0.65, "validation_score": 0.435, "count_ratio": 0.87}
    level = {"edge_threshold": 0.6, "validation_score": 0.435 - SCORE_TIE / 2, "count_ratio": 0.95}
    over = {"edge_threshold": 0.55, "validation_score": 0.435 - SCORE_TIE / 2, "count_ratio": 1.2}
    assert choose_setting([under, level, over]) is level
    clearly_better = {**under, "validation_score": 0.435 + 2 * SCORE_TIE}
    assert choose_setting([clearly_better, level, over]) is clearly_better


def test_averaged_networks_are_the_mean_of_both_maps_each_in_its_window(shared_data):
    from nuclei_core.data.instance_sets import load_typed_consep
    from nuclei_core.models.hovernet import AVERAGED, DEFAULT_WEIGHTS, AveragedHoVerNet, shipped_network

    image = load_typed_consep("val", shared_data)[0].image[:320, :320][None]
    model_class, weights = shipped_network(AVERAGED)
    averaged = model_class.from_weights(weights)
    assert model_class is AveragedHoVerNet and averaged.name == "HoVer-Net (SE + CA and plain, averaged)"
    members = [HoVerNet.from_weights(DEFAULT_WEIGHTS[network]) for network in ("SE + CA", "plain")]
    assert [m.config["inference_window"] for m in (averaged, *averaged.partners)] == \
        [m.config["inference_window"] for m in members]  # each network keeps the window it was tuned in
    expected = (members[0].predict_outputs(image) + members[1].predict_outputs(image)) / 2
    np.testing.assert_allclose(averaged.predict_outputs(image), expected, atol=1e-5)
    record = averaged.parameters_record()
    assert record["weights_version"] == " + ".join(m.weights_version for m in members)
    assert record["averaged_with"][0]["model"] == "HoVer-Net (plain)"


def test_averaged_networks_need_the_same_classes(tmp_path):
    from nuclei_core.models.hovernet import DEFAULT_WEIGHTS, AveragedHoVerNet

    other = tmp_path / "other_classes.pt"
    HoVerNet({**DEFAULT_CONFIG, "widths": [8, 16, 32], "class_names": ["tumour", "stroma"]}).save(other, "other")

    class AveragedWithOther(AveragedHoVerNet):
        partner_weights = (other,)

    with pytest.raises(WeightsError, match="need the same classes"):
        AveragedWithOther.from_weights(DEFAULT_WEIGHTS["SE + CA"])


def test_cli_runs_both_networks_averaged_and_refuses_other_weights_for_them(sample_svs, tmp_path, capfd):
    from nuclei_core.models.hovernet import DEFAULT_WEIGHTS
    from plugins.HoVerNetSegmentation import main as hover_main

    out = tmp_path / "nuclei.anot"
    assert hover_main([str(sample_svs), str(out), "--analysis_roi", "900,900,150,150", "--network",
                       "both averaged"]) == 0
    annotation = nuclei_document(out)
    assert annotation["elements"] and "averaged" in annotation["name"]
    assert annotation["attributes"]["averaged_with"][0]["weights_version"].startswith("hovernet-plain")
    refused = tmp_path / "refused.anot"
    code = hover_main([str(sample_svs), str(refused), "--analysis_roi", "900,900,150,150", "--network",
                       "both averaged", "--model_weights", str(DEFAULT_WEIGHTS["plain"])])
    err = capfd.readouterr().err.strip()
    assert code == 2 and "Traceback" not in err and "runs the two shipped networks" in err.splitlines()[-1]
    assert not refused.exists()
