"""Scripted runs through girder_client (``python -m nuclei_core.girder``) against a real Girder server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nuclei_core.girder import main as girder_main
from plugins.UDNetDetection import main as run_cli_main
from annotation_files import nuclei_document

ROOT = Path(__file__).resolve().parents[1]
CLI = "UDNetDetection"
ROI = [800, 800, 300, 300]
ROI_ARGS = ["--analysis_roi", ",".join(map(str, ROI))]


@pytest.fixture(scope="module")
def slide_folder(girder_server, sample_svs):
    """A folder of its own holding two large-image items (the sample slide twice) and a text item."""
    client = girder_server.client
    folder = client.createFolder(girder_server.folder_id, "scripted runs")
    items = [client.uploadFileToFolder(folder["_id"], str(sample_svs), filename=f"slide{i}.svs")["itemId"]
             for i in (1, 2)]
    return {"folder": folder["_id"], "items": items}


def our_annotations(client, item_id: str, cli: str = CLI, content: str = "nuclei") -> list[dict]:
    """The CLI's annotations of nuclei (or of their density, with ``content="density"``) on the item."""
    listed = client.get("annotation", parameters={"itemId": item_id, "limit": 0})
    return [client.get(f"annotation/{a['_id']}") for a in listed
            if a["annotation"].get("attributes", {}).get("cli") == cli
            and a["annotation"]["attributes"].get("content") == content]


def points(annotation: dict) -> np.ndarray:
    return np.array([e["center"][:2] for e in annotation["annotation"]["elements"]])


def test_run_on_item_posts_nuclei_and_rerun_replaces_them(girder_server, slide_folder, sample_svs, tmp_path):
    client, item = girder_server.client, slide_folder["items"][0]
    args = ["--api-url", girder_server.api_url, "--token", client.token, "--item", item, CLI, *ROI_ARGS]
    assert girder_main(args) == 0
    first = our_annotations(client, item)
    assert len(first) == 1
    found = points(first[0])
    local = tmp_path / "local.anot"  # the same CLI on the same region, run locally: the same nuclei
    assert run_cli_main([str(sample_svs), str(local), *ROI_ARGS]) == 0
    expected = np.array([e["center"][:2] for e in nuclei_document(local)["elements"]])
    assert len(found) > 0
    np.testing.assert_allclose(found[np.lexsort(found.T)], expected[np.lexsort(expected.T)])
    x0, y0, w, h = ROI
    assert ((found >= [x0, y0]) & (found <= [x0 + w, y0 + h])).all()
    meta = client.getItem(item)["meta"][CLI]  # the slide summary: a folder of slides reads as a table
    assert meta["nuclei"] == len(found) and meta["per_mm2_tissue"] > 0 and meta["model"] == "UD-Net"
    (density,) = our_annotations(client, item, content="density")
    assert density["annotation"]["elements"][0]["type"] == "griddata"
    assert girder_main(args) == 0
    assert len(our_annotations(client, item, content="density")) == 1, "the density map is replaced too"
    second = our_annotations(client, item)
    assert len(second) == 1, "a re-run must replace the previous result, not pile up"
    assert second[0]["_id"] != first[0]["_id"]
    np.testing.assert_allclose(points(second[0]), found)


def test_folder_run_covers_every_slide_with_an_api_key(girder_server, slide_folder):
    client = girder_server.client
    key = client.post("api_key", parameters={"name": "scripted", "scope": None})["key"]
    code = girder_main(["--api-url", girder_server.api_url, "--api-key", key, "--folder", slide_folder["folder"],
                        CLI, *ROI_ARGS])
    assert code == 0
    assert [len(our_annotations(client, i)) for i in slide_folder["items"]] == [1, 1]


def test_classification_takes_the_nuclei_another_cli_posted(girder_server, slide_folder, capsys):
    client, item = girder_server.client, slide_folder["items"][0]
    base = ["--api-url", girder_server.api_url, "--token", client.token, "--item", item]
    assert girder_main([*base, CLI, *ROI_ARGS]) == 0
    detected = points(our_annotations(client, item)[0])
    assert girder_main([*base, "--nuclei-from", CLI, "DCRNClassification", *ROI_ARGS]) == 0
    (classified,) = our_annotations(client, item, "DCRNClassification")
    found = points(classified)
    np.testing.assert_allclose(found[np.lexsort(found.T)], detected[np.lexsort(detected.T)], atol=1e-3)
    groups = {e["group"] for e in classified["annotation"]["elements"]}
    assert groups and groups <= {"epithelial", "fibroblast", "inflammatory", "others"}
    assert len(our_annotations(client, item)) == 1, "the detector's own result stays"
    other = slide_folder["items"][1]
    assert girder_main(["--api-url", girder_server.api_url, "--token", client.token, "--item", other,
                        "--nuclei-from", "CascadeGCNDetection", "DCRNClassification"]) == 2
    assert "no annotation from CascadeGCNDetection" in one_error_line(capsys)


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("girder: error:"), err
    return err[-1]


def test_wrong_token_unknown_item_and_non_image_item_fail_cleanly(girder_server, slide_folder, tmp_path, capsys):
    client = girder_server.client
    base = ["--api-url", girder_server.api_url]
    assert girder_main(base + ["--token", "not-a-token", "--item", slide_folder["items"][0], CLI]) == 2
    assert "cannot log in" in one_error_line(capsys)
    assert girder_main(base + ["--token", client.token, "--item", "0123456789abcdef01234567", CLI]) == 2
    assert "HTTP 400" in one_error_line(capsys)
    text = tmp_path / "notes.txt"
    text.write_text("not a slide")
    text_item = client.uploadFileToFolder(slide_folder["folder"], str(text))["itemId"]
    assert girder_main(base + ["--token", client.token, "--item", text_item, CLI]) == 2
    assert "is not a large image" in one_error_line(capsys)
    assert client.get("annotation", parameters={"itemId": text_item}) == []


def test_failing_cli_posts_nothing(girder_server, slide_folder, capsys):
    client, item = girder_server.client, slide_folder["items"][1]
    before = [a["_id"] for a in our_annotations(client, item)]
    code = girder_main(["--api-url", girder_server.api_url, "--token", client.token, "--item", item, CLI,
                        "--analysis_roi", "90000,90000,10,10"])
    assert code == 2
    assert one_error_line(capsys) == ("girder: error: UDNetDetection failed: analysis_roi 90000,90000,10,10 lies "
                                      "outside the 2220 x 2967 slide; nothing was posted")
    assert [a["_id"] for a in our_annotations(client, item)] == before


def test_bad_cli_options_are_refused_before_the_slide_is_downloaded(girder_server, slide_folder, capsys,
                                                                    monkeypatch):
    client, item = girder_server.client, slide_folder["items"][1]
    downloads = []
    monkeypatch.setattr(type(client), "downloadFile", lambda *args, **kwargs: downloads.append(args))
    code = girder_main(["--api-url", girder_server.api_url, "--token", client.token, "--item", item, CLI,
                        "--min_fgnd_frac=nan"])
    assert code == 2 and downloads == []
    assert one_error_line(capsys) == "girder: error: UDNetDetection: min_fgnd_frac=nan is not a finite number"


def test_server_going_away_mid_run_is_a_one_line_error(disposable_girder, sample_svs):
    server, process = disposable_girder
    item = server.client.uploadFileToFolder(server.folder_id, str(sample_svs))["itemId"]
    run = subprocess.Popen([sys.executable, "-m", "nuclei_core.girder", "--api-url", server.api_url, "--token",
                            server.client.token, "--item", item, CLI, "--analysis_roi", "600,600,1200,1200"],
                           cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in run.stdout:  # the slide is downloaded and the analysis has started
        if line.startswith("<filter-start>"):
            break
    process.kill()
    process.wait()
    _, err = run.communicate(timeout=300)
    assert run.returncode == 2
    last = err.strip().splitlines()[-1]
    assert last.startswith("girder: error:") and "cannot" in last
    assert "Traceback" not in err


def test_evaluation_against_a_pathologists_annotation_is_posted_with_its_groups(girder_server, slide_folder,
                                                                                capsys):
    """The truth is drawn on the item (as in HistomicsUI: a named annotation with a rectangle around it): the
    detector's own posted nuclei minus two, plus one; the evaluation posted back has exactly those groups."""
    client, item = girder_server.client, slide_folder["items"][0]
    base = ["--api-url", girder_server.api_url, "--token", client.token, "--item", item]
    assert girder_main([*base, CLI, *ROI_ARGS]) == 0
    detected = points(our_annotations(client, item)[0])
    x0, y0, w, h = ROI
    extra = np.array([[x0 + 1.0, y0 + 1.0]])
    assert np.hypot(*(detected - extra).T).min() > 10, "the added nucleus must be far from every detection"
    truth = np.vstack([detected[2:], extra])
    elements = [{"type": "point", "center": [float(x), float(y), 0]} for x, y in truth]
    elements.append({"type": "rectangle", "center": [x0 + w / 2, y0 + h / 2, 0], "width": w, "height": h,
                     "rotation": 0})
    client.post("annotation", parameters={"itemId": item}, json={"name": "pathologist", "elements": elements})
    assert girder_main([*base, "--truth-annotation", "pathologist", "--nuclei-from", CLI, "EvaluateNuclei"]) == 0
    (evaluation,) = our_annotations(client, item, "EvaluateNuclei")
    groups = [e["group"] for e in evaluation["annotation"]["elements"]]
    n = len(detected)
    assert [groups.count(g) for g in ("true positive", "false positive", "false negative")] == [n - 2, 2, 1]
    detection = evaluation["annotation"]["attributes"]["metrics"]["detection"]
    assert (detection["tp"], detection["fp"], detection["fn"]) == (n - 2, 2, 1)
    assert girder_main([*base, "--truth-annotation", "no such annotation", "--nuclei-from", CLI,
                        "EvaluateNuclei"]) == 2
    assert "no annotation named 'no such annotation'" in one_error_line(capsys)


def test_fine_tuning_uploads_weights_that_a_later_run_takes_by_file_id(girder_server, slide_folder, capsys):
    """FineTuneNucleiModel on the pathologist's annotation of an item (10 steps): the weights and their card go to
    the item, the card names the item and the annotation, and UDNetDetection then runs with girder:FILE_ID."""
    client, item = girder_server.client, slide_folder["items"][1]
    base = ["--api-url", girder_server.api_url, "--token", client.token, "--item", item]
    region = [800, 800, 600, 600]
    assert girder_main([*base, CLI, "--analysis_roi", ",".join(map(str, region))]) == 0
    detected = points(our_annotations(client, item)[0])
    x0, y0, w, h = region
    elements = [{"type": "point", "center": [float(x), float(y), 0]} for x, y in detected[5:]]
    elements.append({"type": "rectangle", "center": [x0 + w / 2, y0 + h / 2, 0], "width": w, "height": h,
                     "rotation": 0})
    annotation = client.post("annotation", parameters={"itemId": item},
                             json={"name": "lab nuclei", "elements": elements})
    assert girder_main([*base, "--truth-annotation", "lab nuclei", "--upload", "output_weights", "--upload",
                        "model_card", "FineTuneNucleiModel", "--steps", "10"]) == 0
    files = {f["name"]: f for f in client.get(f"item/{item}/files", parameters={"limit": 0})}
    weights_name = "FineTuneNucleiModel-output_weights.pt"
    assert weights_name in files and "FineTuneNucleiModel-model_card.md" in files
    card = b"".join(client.downloadFileAsIterator(files["FineTuneNucleiModel-model_card.md"]["_id"])).decode()
    assert item in card and annotation["_id"] in card
    (evaluation,) = our_annotations(client, item, "FineTuneNucleiModel")
    assert {e["group"] for e in evaluation["annotation"]["elements"]} <= {"true positive", "false positive",
                                                                          "false negative"}
    assert girder_main([*base, CLI, *ROI_ARGS, "--model_weights", f"girder:{files[weights_name]['_id']}"]) == 0
    (detection,) = our_annotations(client, item)
    assert "fine-tuned" in detection["annotation"]["attributes"]["weights_version"]
    assert girder_main([*base, CLI, *ROI_ARGS, "--model_weights", "girder:0123456789abcdef01234567"]) == 2
    assert "cannot download Girder file" in one_error_line(capsys)
    assert girder_main([*base, "--upload", "nonsense", CLI]) == 2
    assert "has no file output nonsense" in one_error_line(capsys)
