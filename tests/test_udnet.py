"""UD-Net: architecture, density targets, the shipped weights, and the training script end to end."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from nuclei_core.data.points import load_point_dataset, read_split
from nuclei_core.data.public_sets import load_point_set
from nuclei_core.models.base import load_checkpoint
from nuclei_core.models.r2unet import R2UNet
from nuclei_core.models.udnet import DEFAULT_CONFIG, DEFAULT_WEIGHTS, WEIGHTS_BY_TRAINING_SET, UDNet
from nuclei_core.review.evaluation import score_point_detector
from nuclei_core.training import train_udnet
from nuclei_core.training.density import density_target
from plugins.__main__ import main as plugins_main
from annotation_files import nuclei_document


def test_r2unet_has_about_a_million_parameters_and_keeps_the_input_size():
    network = R2UNet(widths=tuple(DEFAULT_CONFIG["widths"]), t=DEFAULT_CONFIG["recurrent_steps"])
    count = sum(p.numel() for p in network.parameters())
    assert 0.8e6 < count < 1.2e6
    with torch.no_grad():
        assert network(torch.zeros(1, 3, 48, 64)).shape == (1, 1, 48, 64)


def test_density_target_peaks_at_one_on_each_centre():
    points = np.array([[10.0, 12.0], [40.0, 30.0]])
    target = density_target(points, (50, 60))
    assert target[12, 10] == pytest.approx(1.0, abs=1e-4)
    assert target[30, 40] == pytest.approx(1.0, abs=1e-4)
    assert target[12, 11] < 1.0 and target[12, 11] > 0.5
    assert target[0, 59] == 0.0 and target.max() <= 1.0


@pytest.mark.parametrize("weights", list(WEIGHTS_BY_TRAINING_SET.values()), ids=list(WEIGHTS_BY_TRAINING_SET))
def test_shipped_weights_are_fp16_with_a_tuned_threshold(weights):
    checkpoint = load_checkpoint(weights)
    assert all(v.dtype == torch.float16 for v in checkpoint["state_dict"].values() if v.is_floating_point())
    assert 0 < checkpoint["config"]["threshold"] < 1
    assert checkpoint["config"]["min_distance"] >= 1
    assert weights.with_suffix(".md").is_file(), "every shipped weights file has a model card"


@pytest.mark.parametrize("weights", list(WEIGHTS_BY_TRAINING_SET.values()), ids=list(WEIGHTS_BY_TRAINING_SET))
def test_shipped_weights_detect_nuclei_on_validation_images(crchisto, weights):
    names = read_split(crchisto / "splits.csv", "val")[:2]
    images = load_point_dataset(crchisto / "images", crchisto / "detection", names)
    scores = score_point_detector(UDNet.from_weights(weights), images, radius=6)
    assert scores.f1 > 0.7, scores.as_dict()


def test_default_weights_find_the_nuclei_of_other_organs(shared_data):
    """Why the multi-organ weights are the default: held-out MoNuSeg images (not its test split)."""
    assert DEFAULT_WEIGHTS == WEIGHTS_BY_TRAINING_SET["Multi-organ"]
    images = load_point_set("monuseg", "val", shared_data)[:2]
    default = score_point_detector(UDNet.from_weights(DEFAULT_WEIGHTS), images, radius=6)
    colorectal = score_point_detector(UDNet.from_weights(WEIGHTS_BY_TRAINING_SET["Colorectal"]), images, radius=6)
    assert default.f1 > 0.75 and default.recall > colorectal.recall + 0.2, (default.as_dict(), colorectal.as_dict())


def test_training_script_writes_loadable_weights_and_resumes(crchisto, tmp_path, capsys):
    images, points = tmp_path / "images", tmp_path / "points"
    images.mkdir(), points.mkdir()
    for name in ("img1", "img2", "img3"):
        shutil.copy(crchisto / "images" / f"{name}.jpg", images)
        shutil.copy(crchisto / "detection" / f"{name}.csv", points)
    output = tmp_path / "w.pt"
    common = ["--images-dir", str(images), "--points-dir", str(points), "--output", str(output),
              "--batch-size", "2", "--patch-size", "32", "--eval-every", "2"]
    train_udnet.main(common + ["--steps", "2"])
    train_udnet.main(common + ["--steps", "4"])
    assert "resumed at step 2" in capsys.readouterr().out
    model = UDNet.from_weights(output)
    assert model.config["threshold"] in train_udnet.THRESHOLDS
    log = json.loads(output.with_suffix(".log.json").read_text())
    assert [r["step"] for r in log["history"]] == [2, 4]


def test_training_on_prepared_public_sets_with_stain_jitter(shared_data, tmp_path):
    output = tmp_path / "mixed.pt"
    train_udnet.main(["--dataset", "monuseg", "--dataset", "consep", "--stain-jitter", "0.05", "--output", str(output),
                      "--batch-size", "2", "--patch-size", "32", "--eval-every", "1", "--steps", "1"])
    log = json.loads(output.with_suffix(".log.json").read_text())
    assert log["arguments"]["dataset"] == ["monuseg", "consep"] and log["arguments"]["stain_jitter"] == 0.05
    assert UDNet.from_weights(output).config["threshold"] in train_udnet.THRESHOLDS


@pytest.mark.parametrize("choice,version", [([], "udnet-multiorgan-1"),
                                            (["--training_set", "Colorectal"], "udnet-crchisto-1")])
def test_cli_training_set_chooses_the_shipped_weights(sample_svs, tmp_path, choice, version):
    output = tmp_path / "nuclei.anot"
    assert plugins_main(["UDNetDetection", str(sample_svs), str(output), "--analysis_roi", "800,800,300,300",
                         *choice]) == 0
    assert nuclei_document(output)["attributes"]["weights_version"] == version
