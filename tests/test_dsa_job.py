"""A pathologist's job end to end, every part real and on loopback.

A Girder 5 server (tests/girder_launcher.py) whose jobs go to a Redis broker; a girder_worker process that
runs them in the plugin image (built by the suite) through the container engine's Docker API; HistomicsUI's
web client in a headless Chromium. The admin adds the image with ``PUT /slicer_cli_web/docker_image``; then,
in the browser, a CLI is chosen in the Analyses menu, its form filled and submitted, and the nuclei looked
for on the slide. Never assert nucleus counts: only that what the job reported is what the slide shows.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nuclei_core.cli_spec import spec_text
from nuclei_core.outputs.colors import NAMED_COLORS
from conftest import GirderServer, running_girder
from dsa_stack import StackUnavailable, browser_unavailable, chromium, docker_api, girder_worker, redis_broker

pytestmark = pytest.mark.dsa_job

ROOT = Path(__file__).resolve().parents[1]
IMAGE_NAME, IMAGE_VERSION = "nuclei-analysis", "test"  # what the admin types: name:tag, as on a registry
ARTEFACTS = ROOT / "tests" / "artefacts"  # screenshots of each run, for a person to look at (not committed)
README_PICTURE = ROOT / "docs" / "histomicsui-udnet.png"  # committed: the README shows it
JOB_TIMEOUT = 300.0
SUCCESS, ERROR, CANCELED = 3, 4, 5  # girder_jobs' JobStatus
DETECTION_ROI = (800, 800, 400, 400)  # left, top, width, height: tissue on the sample slide
SEGMENTATION_ROI = (900, 900, 300, 300)


@dataclass
class Deployment:
    """The running DSA: its server, the slide's item, the job that added the image, the browser."""

    server: GirderServer
    server_url: str
    item_id: str
    image_job: dict[str, Any]
    driver: Any


def wait_for_job(client, job_id: str, timeout: float = JOB_TIMEOUT) -> dict[str, Any]:
    """The job once it has ended (success, error or cancelled)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"job/{job_id}")
        if job["status"] in (SUCCESS, ERROR, CANCELED):
            return job
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} still {job['status']} after {timeout:.0f} s:\n{''.join(job['log'])[-3000:]}")


def job_log(job: dict[str, Any]) -> list[str]:
    """The job's log as stripped, non-empty lines (a progress bar's redraws, split at carriage returns)."""
    return [line.strip() for line in "".join(job.get("log", [])).splitlines() if line.strip()]


@pytest.fixture(scope="module")
def dsa(engine, image, sample_svs, tmp_path_factory) -> Deployment:
    """Broker, Girder (jobs to the broker), worker, browser; the slide uploaded; the image added by the admin."""
    installed = importlib.util.find_spec("histomicsui")
    if installed is None or not Path(installed.origin).with_name("web_client").joinpath("dist-app").is_dir():
        pytest.skip("HistomicsUI's web client is not installed (bash scripts/install.sh --test unpacks it)")
    if missing := browser_unavailable():
        pytest.skip(missing)
    tagged = engine.call(["tag", image, f"{IMAGE_NAME}:{IMAGE_VERSION}"])
    assert tagged.returncode == 0, tagged.stderr
    root = tmp_path_factory.mktemp("dsa")
    with contextlib.ExitStack() as stack:
        try:
            broker = stack.enter_context(redis_broker(root))
        except StackUnavailable as missing:
            pytest.skip(str(missing))
        docker_host = stack.enter_context(docker_api(engine, root))
        (root / "girder").mkdir()
        server, _ = stack.enter_context(running_girder(root / "girder", broker=broker))
        stack.enter_context(girder_worker(root, broker, docker_host))
        driver = stack.enter_context(chromium(root / "chromedriver.log"))
        client = server.client
        # As a DSA deployment configures its worker: the URL jobs call back on.
        client.put("system/setting", parameters={"key": "worker.api_url", "value": server.api_url})
        uploaded = client.uploadFileToFolder(server.folder_id, str(sample_svs))
        tasks = client.createFolder(server.folder_id, "Slicer CLI Web Tasks")
        job = client.put("slicer_cli_web/docker_image", parameters={
            "name": json.dumps([f"{IMAGE_NAME}:{IMAGE_VERSION}"]), "folder": tasks["_id"]})
        yield Deployment(server, server.api_url.removesuffix("/api/v1"), uploaded["itemId"],
                         wait_for_job(client, job["_id"]), driver)


@pytest.fixture
def ui(dsa):
    from histomicsui_page import HistomicsUI  # tests/histomicsui_page.py (selenium is imported only where it is installed)

    return HistomicsUI(dsa.driver, dsa.server_url, dsa.server.client.token)


def annotations(dsa: Deployment, cli: str | None = None, content: str | None = "nuclei") -> list[dict[str, Any]]:
    """The slide's annotations (whole documents) of nuclei (``content="density"``: their density maps; None: all)
    written by ``cli`` if given, oldest first."""
    client = dsa.server.client
    listed = client.get("annotation", parameters={"itemId": dsa.item_id, "limit": 0, "sort": "created"})
    documents = [client.get(f"annotation/{a['_id']}") for a in listed]
    return [d for d in documents if (cli is None or d["annotation"].get("attributes", {}).get("cli") == cli)
            and content in (None, d["annotation"].get("attributes", {}).get("content", "nuclei"))]


def submit_from_ui(dsa: Deployment, ui, cli: str, roi: tuple[int, int, int, int],
                   parameters: dict[str, str] | None = None) -> dict[str, Any]:
    """Open the slide on the region, choose ``cli`` in the Analyses menu, fill in the region (and
    ``parameters``), press Submit: the job it started, once it has ended."""
    client = dsa.server.client
    before = {job["_id"] for job in client.get("job", parameters={"limit": 0})}
    left, top, width, height = roi
    ui.open_slide(dsa.item_id, bounds=(left - width // 2, top - height // 2, left + 3 * width // 2,
                                       top + 3 * height // 2))
    ui.choose_analysis(IMAGE_NAME, IMAGE_VERSION, cli)
    ui.set_parameter("analysis_roi", ",".join(map(str, roi)))
    for name, value in (parameters or {}).items():
        ui.set_parameter(name, value)
    ui.submit()
    deadline = time.monotonic() + 30
    while not (started := [j for j in client.get("job", parameters={"limit": 0}) if j["_id"] not in before]):
        assert time.monotonic() < deadline, "Submit started no job"
        time.sleep(0.5)
    assert len(started) == 1, [j["title"] for j in started]
    return wait_for_job(client, started[0]["_id"])


def wait_for_annotations(dsa: Deployment, cli: str, count: int, timeout: float = 60) -> list[dict[str, Any]]:
    """The CLI's annotations once there are ``count`` (the server ingests a job's output after it ends)."""
    deadline = time.monotonic() + timeout
    while len(found := annotations(dsa, cli)) < count:
        assert time.monotonic() < deadline, f"{len(found)} {cli} annotations after {timeout:.0f} s, not {count}"
        time.sleep(0.5)
    return found


def summary_count(job: dict[str, Any], cli: str) -> int:
    """The nucleus count in the CLI's last log line (``CLI: N nuclei in ...``)."""
    found = [re.match(rf"{cli}: (\d+) nuclei", line) for line in job_log(job)]
    counts = [int(match.group(1)) for match in found if match]
    assert counts, f"no summary line in the job's log:\n{job_log(job)[-10:]}"
    return counts[-1]


def rgb(css: str) -> tuple[int, int, int]:
    return tuple(int(v) for v in re.findall(r"\d+", css)[:3])


def assert_drawn(ui, colors: set[tuple[int, int, int]], annotation_id: str, timeout: float = 30) -> None:
    """Each colour covers many more pixels of the slide view with the annotation shown than with none."""
    ui.show_all_annotations(False)
    hidden = {color: ui.slide_pixels_of(color) for color in colors}
    ui.show_annotation(annotation_id)
    deadline = time.monotonic() + timeout
    while True:  # a loaded machine may take a while to fetch and draw the annotations
        shown = {color: ui.slide_pixels_of(color) for color in colors}
        drawn = all(shown[c] >= 200 and shown[c] >= 5 * max(hidden[c], 1) for c in colors)
        if drawn or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert drawn, f"pixels of each colour, hidden {hidden}, shown {shown}"


def test_admin_adds_the_image_and_histomicsui_lists_every_cli(dsa, engine, image, ui):
    job = dsa.image_job
    assert job["status"] == SUCCESS, "\n".join(job_log(job))
    listed = json.loads(engine.run(image, ["--list_cli"]).stdout)
    client = dsa.server.client
    image_folder = next(f for f in client.listFolder(job["kwargs"]["folder_id"]) if f["name"] == IMAGE_NAME)
    tag_folder = next(f for f in client.listFolder(image_folder["_id"]) if f["name"] == IMAGE_VERSION)
    assert image_folder["meta"]["slicerCLIType"] == "image" and tag_folder["meta"]["slicerCLIType"] == "tag"
    # The GPU label the worker reads to ask the engine for GPUs, recorded from the image itself.
    assert tag_folder["meta"]["com_nvidia_volumes_needed"] == "nvidia_driver"
    registered = {cli["name"]: cli for cli in client.get("slicer_cli_web/cli", parameters={"folder": tag_folder["_id"]})}
    assert sorted(registered) == sorted(listed)
    for name, cli in registered.items():  # each spec as the container's --xml gave it
        served = client.get(f"slicer_cli_web/cli/{cli['_id']}/xml", jsonResp=False).text
        assert served.strip() == spec_text(name).strip()  # slicer_cli_web trims the trailing newline

    ui.open_slide(dsa.item_id)
    assert sorted(ui.analyses()) == sorted(listed)


def test_detection_submitted_in_histomicsui_runs_in_the_image_and_is_drawn_on_the_slide(dsa, ui):
    earlier = len(annotations(dsa, "UDNetDetection"))
    job = submit_from_ui(dsa, ui, "UDNetDetection", DETECTION_ROI)
    log = job_log(job)
    assert job["status"] == SUCCESS, "\n".join(log[-20:])
    assert "<filter-progress>1.0000</filter-progress>" in "".join(job["log"])  # our progress, through the worker
    assert f"nuclei-analysis:{IMAGE_VERSION}" in job["type"] and job["title"].endswith("CMU-1-Small-Region.svs")
    count = summary_count(job, "UDNetDetection")

    found = wait_for_annotations(dsa, "UDNetDetection", earlier + 1)[-1]
    elements = found["annotation"]["elements"]
    assert len(elements) == count > 0 and {e["type"] for e in elements} == {"point"}
    left, top, width, height = DETECTION_ROI
    assert all(left <= e["center"][0] <= left + width and top <= e["center"][1] <= top + height for e in elements)

    density = annotations(dsa, "UDNetDetection", "density")[-1]  # the density map beside the points ...
    assert not ui.annotation_shown(density["_id"])  # ... listed, not drawn until the pathologist turns it on
    assert_drawn(ui, {rgb(e["lineColor"]) for e in elements}, found["_id"])
    ui.save_screenshot(ARTEFACTS / "histomicsui-udnet.png")
    if os.environ.get("UPDATE_README_PICTURE"):  # UPDATE_README_PICTURE=1 pytest -m dsa_job: a new picture
        ui.save_screenshot(README_PICTURE, width=800, colors=96)
    (grid,) = density["annotation"]["elements"]
    assert grid["type"] == "griddata" and len(grid["values"]) % grid["gridWidth"] == 0 and max(grid["values"]) > 0
    ui.show_annotation(found["_id"], False)
    without = ui.slide_view().astype(int)
    ui.show_annotation(density["_id"])  # drawn over the region it counts: many pixels change colour
    changed = (np.abs(ui.slide_view().astype(int) - without).max(axis=2) > 30).mean()
    ui.save_screenshot(ARTEFACTS / "histomicsui-udnet-density.png")
    assert changed > 0.02, f"{changed:.1%} of the slide view changed when the density map was turned on"


def test_segmentation_outlines_are_drawn_in_their_class_colours(dsa, ui):
    job = submit_from_ui(dsa, ui, "HoVerNetSegmentation", SEGMENTATION_ROI)
    assert job["status"] == SUCCESS, "\n".join(job_log(job)[-20:])
    count = summary_count(job, "HoVerNetSegmentation")
    found = wait_for_annotations(dsa, "HoVerNetSegmentation", 1)[-1]
    elements = found["annotation"]["elements"]
    assert len(elements) == count > 0
    assert all(e["type"] == "polyline" and e["closed"] and len(e["points"]) >= 3 for e in elements)
    groups = {e["group"]: rgb(e["lineColor"]) for e in elements}
    assert all(groups[name] == NAMED_COLORS[name] for name in groups), groups  # every class in its colour
    assert len(set(groups.values())) == len(groups) >= 2  # classes told apart by colour
    frequent = {groups[g] for g in groups if sum(e["group"] == g for e in elements) >= 10}
    assert_drawn(ui, frequent, found["_id"])
    ui.save_screenshot(ARTEFACTS / "histomicsui-hovernet.png")


def test_job_with_a_region_outside_the_slide_fails_with_our_error_and_leaves_nothing(dsa, ui):
    before = [a["_id"] for a in annotations(dsa, content=None)]
    job = submit_from_ui(dsa, ui, "UDNetDetection", (5000, 5000, 200, 200))  # the slide is 2220 x 2967
    assert job["status"] == ERROR
    log = job_log(job)
    # What the container printed: between girder_worker's "Running container" and its failure report (which
    # girder_worker appends to every failed container's log), our one-line error and nothing else. The worker
    # copies the container's stderr into the log twice, the copies sometimes run together on one line.
    started = next(i for i, line in enumerate(log) if "Running container:" in line)
    reported = log.index("DockerException: Non-zero exit code from docker container (2).")
    ours = "UDNetDetection: error: analysis_roi 5000,5000,200,200 lies outside the 2220 x 2967 slide"
    assert re.fullmatch(rf"(?:{re.escape(ours)}\s*)+", "\n".join(log[started + 1:reported])), log
    time.sleep(3)  # an ingestion, were there anything to ingest, would have run by now
    assert [a["_id"] for a in annotations(dsa, content=None)] == before


def test_reruns_from_histomicsui_are_told_apart_by_name_and_settings(dsa, ui):
    first = submit_from_ui(dsa, ui, "UDNetDetection", DETECTION_ROI)
    time.sleep(1)  # runs a second apart at least: names carry the time to the second
    second = submit_from_ui(dsa, ui, "UDNetDetection", DETECTION_ROI, {"min_distance": "8"})
    assert first["status"] == second["status"] == SUCCESS
    runs = [a["annotation"] for a in wait_for_annotations(dsa, "UDNetDetection", 2)[-2:]]
    names = [run["name"] for run in runs]
    assert len(set(names)) == 2 and all(re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", n) for n in names)
    assert runs[0]["attributes"]["changed_parameters"] == {"analysis_roi": [float(v) for v in DETECTION_ROI]}
    assert runs[1]["attributes"]["changed_parameters"]["min_distance"] == 8
    assert "min_distance=8" in runs[1]["description"] and "min_distance" not in runs[0]["description"]
    ui.open_slide(dsa.item_id)
    panel = ui.annotation_panel_text()
    assert all(name in panel for name in names), panel
