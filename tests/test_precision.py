"""Reduced precision (``--precision bfloat16``, and ``auto``, the CLIs' default): the same nuclei from the shipped
weights, bfloat16 chosen only where it is faster and native, training steps that still learn, the setting recorded
in the outputs and never stored in weights, and bad values refused in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from nuclei_core.data.points import load_point_dataset, read_split
from nuclei_core.errors import DeviceError
from nuclei_core.metrics import detection_scores
from nuclei_core.models.base import computes_bfloat16_natively, load_checkpoint, resolve_precision
from nuclei_core.models.faster_rcnn import DEFAULT_WEIGHTS as FASTER_RCNN_WEIGHTS
from nuclei_core.models.faster_rcnn import FasterRCNNDetector
from nuclei_core.models.hovernet import DEFAULT_WEIGHTS as HOVERNET_WEIGHTS
from nuclei_core.models.hovernet import HoVerNet
from nuclei_core.models.nucleus_classifier import DEFAULT_WEIGHTS as CLASSIFIER_WEIGHTS
from nuclei_core.models.nucleus_classifier import NucleusClassifier
from nuclei_core.models.segmenter import DEFAULT_WEIGHTS as SEGMENTER_WEIGHTS
from nuclei_core.models.segmenter import GRAPH_ATTENTION, NucleusSegmenter
from nuclei_core.models.udnet import DEFAULT_WEIGHTS as UDNET_WEIGHTS
from nuclei_core.models.udnet import UDNet
from nuclei_core.review.evaluation import predict_centroids
from nuclei_core.review.fine_tune import FineTuneSettings, fine_tune
from nuclei_core.training.trainer import TrainSettings, train
from annotation_files import nuclei_document


@pytest.fixture(scope="module")
def crchisto_images(crchisto):
    """Three of CRCHisto's test images with their nucleus centres."""
    names = read_split(crchisto / "splits.csv", "test")[:3]
    return load_point_dataset(crchisto / "images", crchisto / "detection", names)


def test_bfloat16_detections_match_float32(crchisto_images):
    full = UDNet.from_weights(UDNET_WEIGHTS)
    reduced = UDNet.from_weights(UDNET_WEIGHTS, precision="bfloat16")
    assert reduced.parameters_record()["precision"] == "bfloat16"
    for item in crchisto_images:
        reference, found = predict_centroids(full, item.image), predict_centroids(reduced, item.image)
        agreement = detection_scores(found, reference, 2.0)  # float32's nuclei as the truth, within 2 px
        assert agreement.f1 > 0.97, agreement.as_dict()
        assert len(found) > 20


def test_bfloat16_maps_and_class_probabilities_stay_close_to_float32(crchisto_images):
    image = crchisto_images[0].image[:256, :256]
    maps = {p: HoVerNet.from_weights(HOVERNET_WEIGHTS["SE + CA"], precision=p, inference_window=0)
            .predict_outputs(image[None])[0] for p in ("float32", "bfloat16")}
    assert maps["bfloat16"].dtype == np.float32
    nuclear = {p: m[0] > 0.5 for p, m in maps.items()}
    assert (nuclear["float32"] == nuclear["bfloat16"]).mean() > 0.99
    assert 0 < np.abs(maps["float32"] - maps["bfloat16"]).max() < 0.25  # bfloat16 did run, and stays close
    points = crchisto_images[0].points[:40]
    probabilities = {p: NucleusClassifier.from_weights(CLASSIFIER_WEIGHTS["DCRN"], precision=p)
                     .probabilities(crchisto_images[0].image, points) for p in ("float32", "bfloat16")}
    assert np.abs(probabilities["float32"] - probabilities["bfloat16"]).max() < 0.1
    assert (probabilities["float32"].argmax(1) == probabilities["bfloat16"].argmax(1)).mean() >= 0.9


def test_auto_precision_is_bfloat16_only_where_it_is_faster_and_computed_natively():
    cpu = torch.device("cpu")
    native = "bfloat16" if computes_bfloat16_natively(cpu) else "float32"
    assert UDNet.from_weights(UDNET_WEIGHTS, precision="auto").precision == native
    assert NucleusSegmenter.from_weights(SEGMENTER_WEIGHTS["R2U-Net"], precision="auto").precision == native
    assert NucleusSegmenter.from_weights(SEGMENTER_WEIGHTS[GRAPH_ATTENTION], precision="auto").precision == "float32"
    assert FasterRCNNDetector.from_weights(FASTER_RCNN_WEIGHTS, precision="auto").precision == "float32"
    assert resolve_precision("auto", cpu, bfloat16_is_faster=False) == "float32"
    assert resolve_precision("float32", cpu, bfloat16_is_faster=True) == "float32"
    assert resolve_precision("bfloat16", cpu, bfloat16_is_faster=False) == "bfloat16"


def test_weights_saved_from_a_bfloat16_model_do_not_carry_the_setting(tmp_path):
    model = UDNet.from_weights(UDNET_WEIGHTS, precision="bfloat16")
    model.save(tmp_path / "copy.pt", version="copy")
    config = load_checkpoint(tmp_path / "copy.pt")["config"]
    assert "precision" not in config and config["threshold"] == model.config["threshold"]
    assert UDNet.from_weights(tmp_path / "copy.pt").precision == "float32"


def test_an_unknown_precision_is_a_device_error():
    with pytest.raises(DeviceError, match="unknown precision 'float16': use float32 or bfloat16"):
        UDNet.from_weights(UDNET_WEIGHTS, precision="float16")
    with pytest.raises(DeviceError, match="unknown precision 'half'"):
        fine_tune([], "UD-Net multi-organ", FineTuneSettings(precision="half"))
    settings = TrainSettings(steps=1, learning_rate=0.1, eval_every=1, seed=0, checkpoint=None, precision="fp16")
    with pytest.raises(DeviceError, match="unknown precision 'fp16'"):
        train(nn.Linear(1, 1), lambda rng: (torch.zeros(1, 1), torch.zeros(1, 1)), nn.functional.mse_loss,
              lambda net: (0.0, {}), settings)


def test_bfloat16_training_steps_learn_and_keep_float32_weights(tmp_path):
    rng = np.random.default_rng(0)
    weights = torch.tensor([[1.0], [-2.0], [0.5]])

    def draw_batch(generator: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        inputs = torch.from_numpy(generator.normal(size=(32, 3)).astype(np.float32))
        return inputs, inputs @ weights

    torch.manual_seed(0)
    network = nn.Linear(3, 1)
    losses = []

    def loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        losses.append(output.dtype)
        return nn.functional.mse_loss(output.float(), target)

    inputs, targets = draw_batch(rng)
    before = nn.functional.mse_loss(network(inputs), targets).item()
    settings = TrainSettings(steps=200, learning_rate=0.05, eval_every=100, seed=0, checkpoint=tmp_path / "run.ckpt",
                             precision="bfloat16")
    train(network, draw_batch, loss, lambda net: (0.0, {}), settings, log=lambda line: None)
    after = nn.functional.mse_loss(network(inputs), targets).item()
    assert set(losses) == {torch.bfloat16}  # the forward pass ran in bfloat16
    assert network.weight.dtype == torch.float32
    assert after < before / 20, (before, after)


def test_cli_records_the_precision_it_computed_in(sample_svs, tmp_path, capfd):
    from plugins.__main__ import main as entry

    annotation, geojson = tmp_path / "nuclei.anot", tmp_path / "nuclei.geojson"
    code = entry(["UDNetDetection", str(sample_svs), str(annotation), "--geojson", str(geojson),
                  "--analysis_roi", "800,800,400,400", "--device", "cpu"])
    assert code == 0, capfd.readouterr().err
    attributes = nuclei_document(annotation)["attributes"]
    assert attributes["parameters"]["precision"] == "auto"  # the default, as asked
    assert attributes["precision"] == resolve_precision("auto", torch.device("cpu"), bfloat16_is_faster=True)
    assert len(nuclei_document(annotation)["elements"]) > 20
    assert len(json.loads(geojson.read_text())["features"]) == len(nuclei_document(annotation)["elements"])


def test_cli_refuses_an_unknown_precision_in_one_line(tmp_path, capfd):
    from plugins.__main__ import main as entry

    slide = tmp_path / "tile.png"
    Image.fromarray(np.full((64, 64, 3), 200, np.uint8)).save(slide)
    with pytest.raises(SystemExit) as stopped:
        entry(["UDNetDetection", str(slide), str(tmp_path / "out.anot"), "--input_mag", "20",
               "--precision", "float16"])
    errors = [line for line in capfd.readouterr().err.splitlines() if "error:" in line]
    assert stopped.value.code == 2
    assert len(errors) == 1 and "--precision" in errors[0] and "float16" in errors[0], errors
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tile.png"]
