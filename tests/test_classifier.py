"""Nucleus classification: DenseNet / DCRN networks, patches, shipped weights, training, the whole-slide CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from nuclei_core.convert import read_nuclei
from nuclei_core.data.public_sets import CRCHISTO_CLASSES, load_classified_crchisto
from nuclei_core.models.base import load_checkpoint
from nuclei_core.models.classified_nuclei import ClassifyGiven
from nuclei_core.models.dcrn import DenseClassifier
from nuclei_core.models.nucleus_classifier import (
    ARCHITECTURES,
    DEFAULT_WEIGHTS,
    PROBABILITY,
    NucleusClassifier,
    centred_patches,
    load_classifier,
)
from nuclei_core.models.r2unet import RecurrentConv
from nuclei_core.nuclei import Nuclei
from nuclei_core.outputs.colors import class_color
from nuclei_core.training import train_classifier
from plugins.__main__ import main as plugins_main
from annotation_files import nuclei_document

ROI_ARGS = ["--analysis_roi", "800,800,400,400"]  # tissue on CMU-1-Small-Region.svs


def test_centred_patches_put_the_nucleus_pixel_in_the_middle_and_reflect_at_borders():
    image = np.arange(10 * 12 * 3, dtype=np.int64).reshape(10, 12, 3)
    patches = centred_patches(image, np.array([[5.2, 4.0], [0.0, 0.0]]), 4)
    assert patches.shape == (2, 4, 4, 3)
    np.testing.assert_array_equal(patches[0], image[2:6, 3:7])
    np.testing.assert_array_equal(patches[0][2, 2], image[4, 5])
    np.testing.assert_array_equal(patches[1][2, 2], image[0, 0])
    np.testing.assert_array_equal(patches[1][1, 2], image[1, 0])  # reflected above the top row


@pytest.mark.parametrize("architecture,recurrent", [("DCRN", True), ("DenseNet", False)])
def test_networks_have_the_papers_shape(architecture, recurrent):
    network = NucleusClassifier.untrained(architecture).network
    parameters = sum(p.numel() for p in network.parameters())
    assert 1.1e6 < parameters < 1.3e6  # "about 1.2 M"
    assert any(isinstance(m, RecurrentConv) for m in network.modules()) == recurrent
    with torch.inference_mode():
        assert network.eval()(torch.rand(3, 3, 32, 32)).shape == (3, len(CRCHISTO_CLASSES))


def test_dense_layers_concatenate_growth_channels():
    network = DenseClassifier(classes=2, blocks=2, layers=3, growth=5, initial_channels=8, t=1)
    assert network.head.in_features == 8 + 2 * 3 * 5


@pytest.fixture(scope="module")
def val_images(shared_data):
    return load_classified_crchisto("val", shared_data)[:3]


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
def test_shipped_weights_classify_unseen_validation_nuclei(val_images, architecture):
    checkpoint = load_checkpoint(DEFAULT_WEIGHTS[architecture])
    assert all(v.dtype == torch.float16 for v in checkpoint["state_dict"].values() if v.is_floating_point())
    assert DEFAULT_WEIGHTS[architecture].with_suffix(".md").is_file(), "every shipped weights file has a model card"
    classifier = load_classifier(architecture)
    assert classifier.name == architecture and classifier.class_names == CRCHISTO_CLASSES
    true = np.concatenate([item.labels for item in val_images])
    predicted = np.concatenate([classifier.probabilities(item.image, item.points).argmax(1) for item in val_images])
    assert (predicted == true).mean() > 0.65  # four classes: chance is about 0.3


def test_classify_labels_nuclei_and_records_the_probability(val_images):
    item = val_images[0]
    nuclei = Nuclei(item.points, np.ones(len(item.points)), measurements={"Area": np.arange(len(item.points)) * 1.0})
    classified = load_classifier("DCRN").classify(item.image, nuclei)
    assert classified.class_names == CRCHISTO_CLASSES and len(classified.classes) == len(item.points)
    assert np.all((classified.measurements[PROBABILITY] >= 0.25) & (classified.measurements[PROBABILITY] <= 1))
    np.testing.assert_array_equal(classified.measurements["Area"], nuclei.measurements["Area"])
    np.testing.assert_array_equal(classified.centroids, nuclei.centroids)


def test_flip_averaged_probabilities_do_not_change_when_the_patch_turns(val_images):
    item = val_images[0]
    patches = centred_patches(item.image, item.points[:40], 32)
    classifier = NucleusClassifier.from_weights(DEFAULT_WEIGHTS["DCRN"], flip_averaging=True)
    upright = classifier.patch_probabilities(patches)
    np.testing.assert_allclose(upright.sum(axis=1), 1.0, atol=1e-5)
    for turned in (np.rot90(patches, 1, axes=(1, 2)), patches[:, ::-1]):
        np.testing.assert_allclose(classifier.patch_probabilities(np.ascontiguousarray(turned)), upright, atol=1e-5)
    plain = load_classifier("DCRN").patch_probabilities(patches)
    assert not np.allclose(plain, upright, atol=1e-3)  # averaging did change the answer
    np.testing.assert_allclose(classifier.probabilities(item.image, item.points[:40]), upright, atol=1e-6)


def test_given_nuclei_are_mapped_into_each_tile(tmp_path):
    classifier = NucleusClassifier.untrained("DenseNet")
    given = Nuclei(np.array([[100.0, 40.0], [301.5, 201.5], [10.0, 10.0]]), np.ones(3))
    model = ClassifyGiven(classifier, given, "given.anot")
    tiles = np.zeros((1, 64, 64, 3), np.uint8)
    (found,) = model.nuclei_of_tiles(tiles, [(40, 10)], scale=0.5)  # base px -> 20x analysis px of a 40x slide
    np.testing.assert_allclose(found.centroids, [[49.75 - 40, 19.75 - 10]])


def test_training_script_writes_loadable_weights_and_resumes(shared_data, tmp_path, capsys):
    output = tmp_path / "dcrn.pt"
    arguments = ["--architecture", "DenseNet", "--train-images", "1", "--val-images", "1", "--batch-size", "4",
                 "--eval-every", "2", "--output", str(output), "--data", str(shared_data)]
    train_classifier.main([*arguments, "--steps", "2"])
    train_classifier.main([*arguments, "--steps", "4"])
    assert "resumed at step 2" in capsys.readouterr().out
    classifier = load_classifier("DenseNet", output)
    assert classifier.weights_version == "dcrn"
    history = json.loads(output.with_suffix(".log.json").read_text())["history"]
    assert [h["step"] for h in history] == [2, 4] and all(0 <= h["score"] <= 1 for h in history)


def test_cli_detects_and_classifies_on_the_sample_slide(sample_svs, tmp_path):
    annotation, geojson = tmp_path / "classes.anot", tmp_path / "classes.geojson"
    assert plugins_main(["DCRNClassification", str(sample_svs), str(annotation), "--geojson", str(geojson),
                         *ROI_ARGS]) == 0
    document = nuclei_document(annotation)
    points = document["elements"]
    assert len(points) > 5 and all(e["group"] in CRCHISTO_CLASSES for e in points)
    for element in points:
        index = CRCHISTO_CLASSES.index(element["group"])
        assert element["lineColor"] == "rgb({},{},{})".format(*class_color(element["group"], index))
        assert 0.25 <= element["user"][PROBABILITY] <= 1
    assert document["attributes"]["model"] == "UD-Net + DCRN" and document["attributes"]["classifier"] == "DCRN"
    features = json.loads(geojson.read_text())["features"]
    assert [f["properties"]["classification"]["name"] for f in features] == [e["group"] for e in points]


def test_cli_classifies_the_nuclei_of_a_given_annotation_in_place(sample_svs, tmp_path):
    given = tmp_path / "given.geojson"
    assert plugins_main(["UDNetDetection", str(sample_svs), str(tmp_path / "d.anot"), "--geojson", str(given),
                         *ROI_ARGS]) == 0
    output = tmp_path / "classes.anot"
    assert plugins_main(["DCRNClassification", str(sample_svs), str(output), "--classifier", "DenseNet",
                         "--nuclei_annotation", str(given), *ROI_ARGS]) == 0
    before, after = read_nuclei(str(given)), read_nuclei(str(output))
    order_before, order_after = np.lexsort(before.centroids.T), np.lexsort(after.centroids.T)
    np.testing.assert_allclose(after.centroids[order_after], before.centroids[order_before], atol=1e-6)
    assert set(after.class_labels()) <= set(CRCHISTO_CLASSES)
    assert nuclei_document(output)["attributes"]["nuclei_source"] == "given.geojson"


@pytest.mark.parametrize("content,message", [(None, "not found"), ('{"elements": []}', "holds no nuclei")])
def test_cli_refuses_a_missing_or_empty_nuclei_annotation(sample_svs, tmp_path, capsys, content, message):
    given, output = tmp_path / "given.anot", tmp_path / "out.anot"
    if content is not None:
        given.write_text(content)
    code = plugins_main(["DCRNClassification", str(sample_svs), str(output), "--nuclei_annotation", str(given),
                         *ROI_ARGS])
    assert code == 2 and not output.exists()
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("DCRNClassification: error:") and message in last


def test_given_nuclei_off_the_tissue_are_classified_not_dropped(tmp_png_slide, tmp_path):
    """Nuclei a user gives are analysed wherever they lie: the tissue mask skips none of their tiles."""
    rgb = np.full((400, 1200, 3), 245, np.uint8)  # white glass ...
    rng = np.random.default_rng(1)
    rgb[:, :300] = rng.integers(90, 200, (400, 300, 3))  # ... with tissue on the left only
    slide = tmp_png_slide(rgb)
    points = [[100, 100], [200, 300], [150, 200], [900, 100], [1100, 300], [700, 200]]  # 3 on tissue, 3 on glass
    given = tmp_path / "given.anot"
    given.write_text(json.dumps({"name": "given", "elements": [
        {"type": "point", "center": [x, y, 0]} for x, y in points]}))
    output = tmp_path / "classes.anot"
    assert plugins_main(["DCRNClassification", str(slide), str(output), "--classifier", "DenseNet",
                         "--nuclei_annotation", str(given), "--input_mag", "20",
                         "--analysis_tile_size", "256"]) == 0
    found = read_nuclei(str(output)).centroids
    np.testing.assert_allclose(found[np.lexsort(found.T)], np.array(points, float)[np.lexsort(np.array(points).T)],
                               atol=1e-6)
