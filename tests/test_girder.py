"""The CLIs against a real Girder 5 server (``girder_server`` in conftest: tests/girder_launcher.py).

What the Digital Slide Archive does with them, through its REST API: a slide uploaded to Girder becomes
a large image; every XML spec registers with slicer_cli_web; a CLI run exactly as the DSA's container
runs it writes a .anot file which, uploaded the way slicer_cli_web's job uploads outputs, becomes an
annotation on the slide's item. Never assert nucleus counts: only that the server holds what the file
holds.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import uuid
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import pytest

from nuclei_core.cli_spec import available_clis, spec_text

ROOT = Path(__file__).resolve().parents[1]
IMAGE = "nuclei-analysis:test"  # the Docker image the CLIs are registered under
CLI = "UDNetDetection"
ROI = "800,800,400,400"  # tissue on CMU-1-Small-Region.svs
OUTPUT_PARAMETER = "outputNucleiAnnotationFile"  # the .anot output: reference="inputImageFile"
SPEC_META = ("category", "version", "license", "contributor", "acknowledgements")


@pytest.fixture(scope="module")
def slide(girder_server, sample_svs) -> dict:
    """The sample slide uploaded to the test folder with girder_client: its file document."""
    return girder_server.client.uploadFileToFolder(girder_server.folder_id, str(sample_svs))


def test_uploaded_slide_becomes_large_image(girder_server, slide):
    tiles = girder_server.client.get(f"item/{slide['itemId']}/tiles")
    assert (tiles["sizeX"], tiles["sizeY"]) == (2220, 2967)
    assert tiles["levels"] >= 1 and tiles["magnification"] == 20


def _register(client, folder_id: str, name: str) -> dict:
    """``POST /slicer_cli_web/cli`` as an admin registers a CLI from its XML: the CLI's item."""
    return client.post("slicer_cli_web/cli", data={
        "folder": folder_id, "image": IMAGE, "name": name, "replace": "true", "desc_type": "xml",
        "spec": base64.b64encode(spec_text(name).encode()).decode()})


def _parameter_names(xml: str) -> set[str]:
    """Every parameter name declared in a Slicer XML (read independently of slicer_cli_web)."""
    return {name.text for name in ET.fromstring(xml).findall("./parameters/*/name")}


@pytest.mark.parametrize("name", available_clis())
def test_cli_spec_registers(girder_server, name):
    from slicer_cli_web.cli_utils import as_model, get_cli_parameters

    client = girder_server.client
    item = _register(client, girder_server.folder_id, name)
    listed = client.get("slicer_cli_web/cli", parameters={"folder": girder_server.folder_id})
    assert {"_id": item["_id"], "name": name, "image": IMAGE} in [
        {key: cli[key] for key in ("_id", "name", "image")} for cli in listed]

    served = client.get(f"slicer_cli_web/cli/{item['_id']}/xml", jsonResp=False).text
    assert served == spec_text(name)
    # What the server parsed on registration: the spec's metadata and its title and description.
    root = ET.fromstring(served)
    assert item["meta"]["slicerCLIType"] == "task"
    assert {key: item["meta"].get(key) for key in SPEC_META} == {
        key: root.findtext(key) for key in SPEC_META}
    stored = client.get(f"item/{item['_id']}")
    assert stored["description"] == f"**{root.findtext('title')}**\n\n{root.findtext('description')}"
    # The parameters the server builds a job from (slicer_cli_web parses the stored XML at run time).
    index, optional, simple_outputs = get_cli_parameters(as_model(served))
    assert {p.name for p in index + optional + simple_outputs} == _parameter_names(served)


def _run_as_the_dsa(slide_path: Path, out: Path, api_url: str, token: str) -> None:
    """The CLI as the DSA's container runs it: ``python -m plugins <CLI> <inputs> <outputs> --flags``."""
    command = [sys.executable, "-m", "plugins", CLI, str(slide_path), str(out), "--analysis_roi", ROI,
               "--api-url", api_url, "--girder-token", token]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]


def _output_reference(client, slide: dict) -> str:
    """The upload reference slicer_cli_web's job attaches to the CLI's output (prepare_task.py):
    the primary input's user, file and item, the job's uuid and the output parameter's name."""
    return json.dumps({
        "slicer_cli_web": {"title": ET.fromstring(spec_text(CLI)).findtext("title"),
                           "image": IMAGE, "name": CLI},
        "userId": client.get("user/me")["_id"], "fileId": slide["_id"], "itemId": slide["itemId"],
        "uuid": str(uuid.uuid4()), "identifier": OUTPUT_PARAMETER})


def _documents(anot: Path) -> list[dict]:
    """The annotation documents of a .anot file (one object, or a list when split)."""
    data = json.loads(anot.read_text())
    return [entry.get("annotation", entry) for entry in (data if isinstance(data, list) else [data])]


def _styles(elements: list[dict]) -> Counter:
    """How many elements have each (group, lineColor)."""
    return Counter((element.get("group"), element.get("lineColor")) for element in elements)


def test_cli_output_becomes_annotation(girder_server, slide, sample_svs, tmp_path):
    client = girder_server.client
    out = tmp_path / "nuclei.anot"
    _run_as_the_dsa(sample_svs, out, girder_server.api_url, client.token)
    client.uploadFileToFolder(girder_server.folder_id, str(out), reference=_output_reference(client, slide))

    expected = _documents(out)
    found = client.get("annotation", parameters={"itemId": slide["itemId"]})
    assert sorted(a["annotation"]["name"] for a in found) == sorted(d["name"] for d in expected)
    for document in expected:
        part = document["attributes"].get("part")
        (summary,) = [a for a in found if a["annotation"]["attributes"].get("part") == part]
        elements = document["elements"]
        assert summary["_elementCount"] == len(elements) > 0
        assert sorted(summary["groups"]) == sorted({element["group"] for element in elements})
        served = client.get(f"annotation/{summary['_id']}")["annotation"]
        assert len(served["elements"]) == len(elements)
        assert _styles(served["elements"]) == _styles(elements)
