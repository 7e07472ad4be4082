"""The engine on Dask: real ``dask scheduler`` / ``dask worker`` processes on loopback give the same nuclei."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from nuclei_core.engine import EngineSettings, ModelSpec, analyse_slide
from nuclei_core.models.udnet import DEFAULT_WEIGHTS, UDNet
from nuclei_core.region import parse_region
from nuclei_core.slide import Slide

DASK = str(Path(sys.executable).with_name("dask"))
ROI = [700, 900, 500, 400]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def dask_cluster():
    """A scheduler and one worker process with two single-threaded workers, all on 127.0.0.1."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    scheduler = subprocess.Popen([DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                                  "--dashboard-address", "127.0.0.1:0"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    worker = subprocess.Popen([DASK, "worker", address, "--host", "127.0.0.1", "--dashboard-address",
                               "127.0.0.1:0", "--nworkers", "2", "--nthreads", "1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        from dask.distributed import Client

        with Client(address, timeout=30) as client:
            client.wait_for_workers(2, timeout=60)
        yield address
    finally:
        for process in (worker, scheduler):
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def detect(sample_svs: Path, scheduler: str, num_workers: int = 1):
    slide = Slide(sample_svs)
    settings = EngineSettings(tile_size=192, min_fgnd_frac=0.1, batch_size=2, scheduler=scheduler,
                              num_workers=num_workers, show_progress=False)
    region = parse_region(ROI, slide.width, slide.height)
    return analyse_slide(slide, ModelSpec(UDNet, str(DEFAULT_WEIGHTS)), region, settings)


def sorted_points(result) -> np.ndarray:
    points = result.nuclei.centroids
    return points[np.lexsort(points.T)]


def test_dask_workers_match_in_process_run(sample_svs, dask_cluster):
    local = detect(sample_svs, "")
    started = time.time()
    distributed = detect(sample_svs, dask_cluster)
    assert time.time() - started < 240
    assert len(local.plan.tiles) >= 4, "the region should span several tiles"
    assert len(local.nuclei) > 20
    np.testing.assert_allclose(sorted_points(distributed), sorted_points(local), atol=1e-6)


def test_multithreading_scheduler_matches_in_process_run(sample_svs):
    np.testing.assert_allclose(sorted_points(detect(sample_svs, "multithreading", 2)),
                               sorted_points(detect(sample_svs, "")), atol=1e-6)
