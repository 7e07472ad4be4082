"""Shared test fixtures: paths to the real data beside the repository, and small synthetic slides."""

import contextlib
import importlib.util
import itertools
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from container_engine import IMAGE_TAG, ContainerEngine, EngineUnavailable, export_committed_tree
from dsa_stack import stop

# CI clones the repository with shared/ beside it: <parent>/main and <parent>/shared/data.
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data():
    """The shared data folder; tests that need it are skipped when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def sample_svs(shared_data):
    """CMU-1-Small-Region.svs: Aperio H&E, 2220 x 2967, AppMag 20."""
    return shared_data / "wsi" / "CMU-1-Small-Region.svs"


@pytest.fixture
def tmp_png_slide(tmp_path):
    """Factory: ``tmp_png_slide(rgb_array)`` writes an (H, W, 3) uint8 array as a PNG and returns its path.

    Every call gets a new file name, because large_image caches open sources by path.
    """
    counter = itertools.count()

    def write(array, name=None):
        array = np.asarray(array, dtype=np.uint8)
        assert array.ndim == 3 and array.shape[2] == 3, "expected an (H, W, 3) RGB array"
        path = tmp_path / (name or f"slide{next(counter)}.png")
        Image.fromarray(array).save(path)
        return path

    return write


@pytest.fixture(scope="session")
def crchisto(shared_data):
    """CRCHisto: images/, detection/ (x,y CSVs) and splits.csv."""
    return shared_data / "crchisto"


# --- A real Girder server (tests/girder_launcher.py), for the DSA integration tests -------------

GIRDER_LAUNCHER = Path(__file__).resolve().parent / "girder_launcher.py"
GIRDER_START_TIMEOUT = 60.0
GIRDER_ADMIN = {"login": "admin", "email": "admin@example.com", "firstName": "Test", "lastName": "Admin",
                "password": "girder-test-password"}


@dataclass(frozen=True)
class GirderServer:
    """A running Girder server: its API url, a client logged in as its admin, a folder for the tests."""

    api_url: str
    client: Any  # girder_client.GirderClient
    folder_id: str


def _wait_for_girder(process: subprocess.Popen, log: Path) -> str:
    """The API url the launcher announces once Girder answers; fails with the log's tail otherwise."""
    deadline = time.monotonic() + GIRDER_START_TIMEOUT
    while time.monotonic() < deadline and process.poll() is None:
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("GIRDER READY "):
                return line.split()[-1]
        time.sleep(0.2)
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
    raise RuntimeError(f"Girder did not start (exit code {process.poll()}); its log ends:\n{tail}")


def _set_up_girder(api_url: str, assetstore: Path) -> GirderServer:
    """Create the admin (the first user is the admin), a filesystem assetstore and a test folder."""
    import girder_client

    client = girder_client.GirderClient(apiUrl=api_url)
    client.post("user", data=GIRDER_ADMIN)  # form data: a password never goes in a query string
    client.authenticate(GIRDER_ADMIN["login"], GIRDER_ADMIN["password"])
    client.post("assetstore", data={"type": 0, "name": "Test assetstore", "root": str(assetstore)})
    collection = client.createCollection("Nucleus analysis tests")
    folder = client.createFolder(collection["_id"], "Tests", parentType="collection")
    return GirderServer(api_url=api_url, client=client, folder_id=folder["_id"])


@contextlib.contextmanager
def running_girder(root: Path, broker: str | None = None):
    """Start a Girder process under ``root`` and set it up; yields (GirderServer, process); stops it.

    With ``broker`` its jobs go to that celery broker (tests/girder_launcher.py ``--broker``)."""
    if importlib.util.find_spec("girder") is None:
        pytest.skip("the Girder test server is not installed: bash scripts/install.sh --test")
    log = root / "server.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, str(GIRDER_LAUNCHER), "--port", "0", "--root", str(root / "tmp"),
             *(["--broker", broker] if broker else [])],
            stdout=out, stderr=subprocess.STDOUT)
    try:
        yield _set_up_girder(_wait_for_girder(process, log), root / "assetstore"), process
    finally:
        stop(process)


@pytest.fixture(scope="session")
def girder_server(tmp_path_factory):
    """A real Girder 5 process on a free 127.0.0.1 port with every installed plugin (large_image,
    large_image_annotation, slicer_cli_web, histomicsui, ...), backed by mongomock; stopped after the
    session. Its log is ``server.log`` in the fixture's temporary folder."""
    with running_girder(tmp_path_factory.mktemp("girder")) as (server, _):
        yield server


@pytest.fixture
def disposable_girder(tmp_path_factory):
    """A second Girder server of its own, for a test that stops it: yields (GirderServer, process)."""
    with running_girder(tmp_path_factory.mktemp("girder-disposable")) as started:
        yield started


# --- The plugin image, built once per session for the image and DSA job tests ----------------------

@pytest.fixture(scope="session")
def engine() -> ContainerEngine:
    """podman or docker (scripts/setup-machine.sh sets podman up); the tests that need one skip without."""
    try:
        return ContainerEngine.find()
    except EngineUnavailable as unavailable:
        pytest.skip(f"no container engine: {unavailable}")


@pytest.fixture(scope="session")
def image(engine, tmp_path_factory) -> str:
    """The image built from the committed tree (a reused machine keeps the engine's layer cache): its tag."""
    context = export_committed_tree(tmp_path_factory.mktemp("image-context"))
    built = engine.build(context, IMAGE_TAG)
    assert built.returncode == 0, f"image build failed:\n{built.stdout[-4000:]}\n{built.stderr[-4000:]}"
    return IMAGE_TAG


def pytest_configure(config):
    config.addinivalue_line("markers", "container: builds the plugin image and runs it with a container engine "
                                       "(podman or docker; skipped, with the reason, where there is none)")
    config.addinivalue_line("markers", "dsa_job: a pathologist's job through HistomicsUI, girder_worker and the "
                                       "image (needs the container engine, redis-server and chromium)")
