"""FineTuneNucleiModel: cells from annotated regions, the held-out split, a short real fine-tuning run through the
CLI (tiny: 10 steps), the new weights used by another CLI, and bad input."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from shapely.geometry import MultiPolygon, Polygon, box

from nuclei_core.engine.slide import Slide
from nuclei_core.errors import InputError
from nuclei_core.models.udnet import WEIGHTS_BY_TRAINING_SET, UDNet
from nuclei_core.nuclei import Nuclei
from nuclei_core.review.agreement import MATCH_CLASSES
from nuclei_core.training.slide_cells import hold_out, region_cells
from plugins.FineTuneNucleiModel import main as fine_tune_main
from plugins.UDNetDetection import main as udnet_main
from annotation_files import nuclei_document

ROI = (800, 800, 600, 600)  # tissue on CMU-1-Small-Region.svs (20x): 2 x 2 cells of 300 px


def truth_points(xy) -> Nuclei:
    return Nuclei(np.asarray(xy, float), np.ones(len(xy)))


def test_regions_are_cut_into_cells_with_their_points_at_the_model_scale(tmp_png_slide):
    path = tmp_png_slide(np.full((700, 1300, 3), 180, np.uint8))
    slide = Slide(path, input_mag=40)  # model at 20x: half the base pixels
    truth = truth_points([[10, 10], [700, 100], [1100, 500], [1250, 650]])
    cells = region_cells(slide, truth, MultiPolygon([box(0, 0, 1200, 600)]), 20, cell=256, smallest=128)
    assert [c.bounds for c in cells] == [(0, 0, 600, 600), (600, 0, 600, 600)]  # 1200 x 600 base = 600 x 300 at 20x
    assert cells[0].image.shape == (300, 300, 3)
    np.testing.assert_allclose(cells[0].points, [[5, 5]])
    np.testing.assert_allclose(cells[1].points, [[50, 50], [250, 250]])
    triangle = MultiPolygon([Polygon([(0, 0), (1200, 0), (0, 600)])])  # no cell lies 95 % inside it
    assert region_cells(slide, truth, triangle, 20, cell=256, smallest=128) == []
    assert region_cells(slide, truth, MultiPolygon([box(0, 0, 200, 200)]), 20, cell=256, smallest=128) == []


def test_outlined_truth_becomes_a_label_map_at_the_model_scale(tmp_png_slide):
    slide = Slide(tmp_png_slide(np.full((400, 400, 3), 180, np.uint8)), input_mag=20)  # a 40x model: twice the px
    square = np.array([[10, 10], [30, 10], [30, 30], [10, 30]], float)
    truth = Nuclei(np.array([[20, 20], [395, 395]]), np.ones(2), contours=[square, square + 375])
    (cell,) = region_cells(slide, truth, MultiPolygon([box(0, 0, 200, 200)]), 40, cell=400, smallest=128)
    assert cell.labels.shape == cell.image.shape[:2] == (400, 400)
    assert set(np.unique(cell.labels)) == {0, 1}  # the second outline lies outside the cell
    ys, xs = np.nonzero(cell.labels == 1)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (20, 60, 20, 60)


def test_held_out_cells_are_seeded_and_disjoint():
    cells = list(range(10))
    training, held = hold_out(cells, 0.2, seed=3)
    assert len(held) == 2 and sorted(training + held) == cells
    assert hold_out(cells, 0.2, seed=3) == (training, held)
    assert hold_out(cells[:2], 0.5, 0)[0] and hold_out(cells[:2], 0.5, 0)[1]
    with pytest.raises(InputError, match="draw larger regions"):
        hold_out(cells[:1], 0.2, 0)


def file_hash(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def own_detections(sample_svs, tmp_path_factory):
    """UD-Net's nuclei on the ROI, found by UDNetDetection: the stand-in for a pathologist's points."""
    path = tmp_path_factory.mktemp("truth") / "udnet.anot"
    assert udnet_main([str(sample_svs), str(path), "--analysis_roi", ",".join(map(str, ROI))]) == 0
    return nuclei_document(path)["elements"]


def write_truth(path, elements, regions=(ROI,)):
    rectangles = [{"type": "rectangle", "center": [x + w / 2, y + h / 2, 0], "width": w, "height": h,
                   "rotation": 0} for x, y, w, h in regions]
    path.write_text(json.dumps({"name": "mine", "elements": [*elements, *rectangles]}))
    return path


@pytest.fixture(scope="module")
def fine_tuned(sample_svs, own_detections, tmp_path_factory):
    """The colorectal UD-Net, which finds few nuclei on this slide, fine-tuned (20 steps) on the multi-organ
    UD-Net's nuclei as the lab's annotation."""
    folder = tmp_path_factory.mktemp("fine_tune")
    truth = write_truth(folder / "mine.anot", own_detections)
    shipped = file_hash(WEIGHTS_BY_TRAINING_SET["Colorectal"])
    code = fine_tune_main([str(sample_svs), str(folder / "held_out.anot"), "--truth_annotation", str(truth),
                           "--base_model", "UD-Net colorectal", "--output_weights", str(folder / "mine.pt"),
                           "--steps", "20", "--learning_rate", "0.001", "--held_out_fraction", "0.25",
                           "--source_ids", "item 0123 / annotation 4567"])
    assert code == 0
    assert file_hash(WEIGHTS_BY_TRAINING_SET["Colorectal"]) == shipped, "the shipped weights must not change"
    return folder


def test_fine_tuning_writes_new_weights_and_their_card(fine_tuned):
    new = torch.load(fine_tuned / "mine.pt", weights_only=False)
    base = torch.load(WEIGHTS_BY_TRAINING_SET["Colorectal"], weights_only=False)
    assert new["state_dict"].keys() == base["state_dict"].keys()
    changed = [k for k in base["state_dict"] if not torch.equal(new["state_dict"][k], base["state_dict"][k])]
    assert changed, "twenty steps of Adam must move the weights"
    assert new["state_dict"][changed[0]].dtype == torch.float16
    card = (fine_tuned / "mine.md").read_text()
    for expected in ("UD-Net colorectal", "udnet_crchisto.pt", "CMU-1-Small-Region.svs", "mine.anot",
                     "item 0123 / annotation 4567", "| base |", "| **fine-tuned** |", "3 / 1", "the checkpoint of step"):
        assert expected in card, expected
    rows = {line.split("|")[1].strip(): float(line.split("|")[7]) for line in card.splitlines()
            if line.startswith(("| base |", "| **fine-tuned** |"))}
    assert rows["**fine-tuned**"] > rows["base"], "on the held-out cell the fine-tuned detector must do better"


def test_base_weights_are_kept_when_fine_tuning_does_not_beat_them(sample_svs, own_detections, tmp_path):
    """The truth is the multi-organ UD-Net's own result: nothing to learn, so its weights stay, and the card says so."""
    truth = write_truth(tmp_path / "mine.anot", own_detections)
    assert fine_tune_main([str(sample_svs), str(tmp_path / "held_out.anot"), "--truth_annotation", str(truth),
                           "--output_weights", str(tmp_path / "same.pt"), "--steps", "10"]) == 0
    new = torch.load(tmp_path / "same.pt", weights_only=False)["state_dict"]
    base = torch.load(WEIGHTS_BY_TRAINING_SET["Multi-organ"], weights_only=False)["state_dict"]
    assert all(torch.equal(new[k], base[k]) for k in base)
    assert "**the base weights**" in (tmp_path / "same.md").read_text()


def test_held_out_annotation_shows_matches_inside_the_held_out_cell(fine_tuned):
    document = json.loads((fine_tuned / "held_out.anot").read_text())
    groups = {e["group"] for e in document["elements"]}
    assert groups and groups <= set(MATCH_CLASSES)
    centres = np.array([e["center"][:2] for e in document["elements"]])
    x, y, w, h = ROI
    quadrant = np.floor((centres - [x, y]) / [w / 2, h / 2])
    assert ((quadrant >= 0) & (quadrant <= 1)).all()
    assert len(np.unique(quadrant, axis=0)) == 1, "everything lies in the one held-out cell"
    metrics = document["attributes"]["metrics"]
    after = metrics["held_out_after"]
    assert after["tp"] + after["fn"] == metrics["held_out_before"]["tp"] + metrics["held_out_before"]["fn"]


def test_new_weights_are_chosen_by_the_detector_cli(fine_tuned, sample_svs):
    model = UDNet.from_weights(fine_tuned / "mine.pt")
    assert model.config["threshold"] is not None
    out = fine_tuned / "with_new_weights.anot"
    assert udnet_main([str(sample_svs), str(out), "--analysis_roi", "900,900,200,200", "--model_weights",
                       str(fine_tuned / "mine.pt")]) == 0
    document = nuclei_document(out)
    assert document["elements"] and "mine.pt" in json.dumps(document["attributes"]["parameters"])


def test_segmenter_fine_tunes_on_outlines(sample_svs, tmp_path):
    from plugins.R2UNetSegmentation import main as segment_main

    region = (800, 800, 300, 300)
    outlines = tmp_path / "outlines.anot"
    assert segment_main([str(sample_svs), str(outlines), "--architecture", "U-Net", "--analysis_roi",
                         ",".join(map(str, region))]) == 0
    elements = nuclei_document(outlines)["elements"]
    truth = write_truth(tmp_path / "mine.anot", elements, [region])
    code = fine_tune_main([str(sample_svs), str(tmp_path / "held_out.anot"), "--truth_annotation", str(truth),
                           "--base_model", "U-Net", "--output_weights", str(tmp_path / "unet.pt"), "--steps", "10"])
    assert code == 0
    card = (tmp_path / "unet.md").read_text()
    assert "fine-tuned U-Net" in card and "| Dice | AJI | PQ |" in card and "R2UNetSegmentation" in card
    held_out = json.loads((tmp_path / "held_out.anot").read_text())["elements"]
    assert held_out and {e["type"] for e in held_out} == {"polyline"}
    config = torch.load(tmp_path / "unet.pt", weights_only=False)["config"]
    assert config["architecture"] == "U-Net" and 0 < config["foreground_threshold"] < 1


def test_classifier_learns_the_labs_own_classes(sample_svs, own_detections, tmp_path):
    """A lab's two classes, dark and pale nuclei (by the grey level at the centre, a rule a 32x32 patch shows):
    the classifier gets a new last layer for them, beats its untrained start on the held-out cell, and
    DCRNClassification then labels nuclei with the lab's classes."""
    from plugins.DCRNClassification import main as classify_main

    x0, y0, w, h = ROI
    grey = Slide(sample_svs).read(x0, y0, w, h, 1.0).mean(axis=2)
    centres = np.array([e["center"][:2] for e in own_detections]) - (x0, y0)
    darkness = grey[np.clip(centres[:, 1].round().astype(int), 0, h - 1), np.clip(centres[:, 0].round().astype(int),
                                                                                     0, w - 1)]
    elements = [{**e, "group": "dark" if value < np.median(darkness) else "pale"}
                for e, value in zip(own_detections, darkness)]
    truth = write_truth(tmp_path / "mine.anot", elements)
    assert fine_tune_main([str(sample_svs), str(tmp_path / "held_out.anot"), "--truth_annotation", str(truth),
                           "--base_model", "DCRN", "--output_weights", str(tmp_path / "lab.pt"), "--steps", "20",
                           "--learning_rate", "0.001"]) == 0
    config = torch.load(tmp_path / "lab.pt", weights_only=False)["config"]
    assert config["class_names"] == ["dark", "pale"]
    card = (tmp_path / "lab.md").read_text()
    assert "the checkpoint of step" in card and "| weights | accuracy | weighted F1 | macro F1 |" in card
    relabelled = tmp_path / "relabelled.anot"
    assert classify_main([str(sample_svs), str(relabelled), "--analysis_roi", "900,900,200,200", "--model_weights",
                          str(tmp_path / "lab.pt")]) == 0
    assert {e["group"] for e in nuclei_document(relabelled)["elements"]} <= {"dark", "pale"}


@pytest.mark.parametrize("case, message", [
    ("no regions", "has no regions"),
    ("no classes for a classifier", "learns from classified nuclei"),
    ("points for a segmenter", "learns from nucleus outlines"),
    ("small regions", "cell(s) of training size"),
    ("no output weights", "--output_weights"),
    ("base weights of another model", "weights do not fit"),
    ("analysis_roi", "leave analysis_roi empty"),
    ("bad more_slides", "columns slide,annotation"),
])
def test_bad_input_gives_one_line_and_writes_nothing(case, message, sample_svs, own_detections, tmp_path, capfd):
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    out.mkdir()
    truth = write_truth(inputs / "mine.anot", own_detections,
                        {"no regions": (), "small regions": ((800, 800, 100, 100),)}.get(case, (ROI,)))
    argv = [str(sample_svs), str(out / "held_out.anot"), "--truth_annotation", str(truth), "--steps", "10"]
    if case != "no output weights":
        argv += ["--output_weights", str(out / "mine.pt")]
    if case == "base weights of another model":
        from nuclei_core.models.nucleus_classifier import DEFAULT_WEIGHTS
        argv += ["--base_weights", str(DEFAULT_WEIGHTS["DCRN"])]
    if case == "points for a segmenter":
        argv += ["--base_model", "R2U-Net"]
    if case == "no classes for a classifier":
        argv += ["--base_model", "DCRN"]
    if case == "analysis_roi":
        argv += ["--analysis_roi", "800,800,600,600"]
    if case == "bad more_slides":
        (inputs / "more.csv").write_text("image,points\na.svs,a.anot\n")
        argv += ["--more_slides", str(inputs / "more.csv")]
    assert fine_tune_main(argv) == 2
    err = capfd.readouterr().err
    line = err.strip().splitlines()[-1]
    assert line.startswith("FineTuneNucleiModel: error:") and message in line, line
    assert "Traceback" not in err
    assert list(out.iterdir()) == []
