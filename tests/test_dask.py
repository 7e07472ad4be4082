"""The engine on Dask: real ``dask scheduler`` / ``dask worker`` processes on loopback give the same nuclei."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from nuclei_core.engine.analysis import EngineSettings, ModelSpec, _dask_client, analyse_slide
from nuclei_core.engine.region import parse_region
from nuclei_core.engine.slide import Slide
from nuclei_core.models.udnet import DEFAULT_WEIGHTS, UDNet
from annotation_files import nuclei_document

DASK = str(Path(sys.executable).with_name("dask"))
ROOT = Path(__file__).resolve().parents[1]
ROI = [700, 900, 500, 400]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def dask_processes(workers: int) -> Iterator[tuple[str, list[subprocess.Popen]]]:
    """A ``dask scheduler`` and ``workers`` single-threaded ``dask worker`` processes (no nanny: killing one
    kills the worker), all on 127.0.0.1; yields the address and the worker processes."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    processes = [subprocess.Popen([DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                                   "--dashboard-address", "127.0.0.1:0"], **quiet)]
    processes += [subprocess.Popen([DASK, "worker", address, "--host", "127.0.0.1", "--dashboard-address",
                                    "127.0.0.1:0", "--nthreads", "1", "--no-nanny"], **quiet)
                  for _ in range(workers)]
    try:
        from dask.distributed import Client

        with Client(address, timeout=30) as client:
            client.wait_for_workers(workers, timeout=60)
        yield address, processes[1:]
    finally:
        for process in reversed(processes):
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture(scope="module")
def dask_cluster():
    """A scheduler and two single-threaded worker processes on loopback."""
    with dask_processes(2) as (address, _):
        yield address


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


KILL_ROI = "800,800,400,320"  # 800 x 640 px at 40x: 20 tiles of 256 px, one per task


def run_detector(sample_svs: Path, out: Path, *options: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "plugins", "FasterRCNNDetection", str(sample_svs), str(out),
                             "--analysis_roi", KILL_ROI, "--analysis_tile_size", "256", "--batch_size", "1",
                             "--min_fgnd_frac", "0", "--device", "cpu", *options],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def box_centres(annotation: Path) -> np.ndarray:
    points = np.array([np.mean(e["points"], axis=0)[:2] for e in nuclei_document(annotation)["elements"]])
    return points[np.lexsort(points.T)]


def _malloc_environment() -> tuple[str | None, str | None]:
    import os

    return os.environ.get("MALLOC_MMAP_MAX_"), os.environ.get("MALLOC_TRIM_THRESHOLD_")


def test_local_dask_worker_processes_keep_freed_memory(monkeypatch):
    """Dask starts its worker processes with a 64 KiB malloc trim threshold; ours start with the suite's settings."""
    for name in ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_"):
        monkeypatch.delenv(name, raising=False)
    with _dask_client("multiprocessing", 1) as client:
        settings = set(client.run(_malloc_environment).values())
    assert settings == {("0", str(1 << 30))}


def test_killing_a_worker_mid_run_loses_and_duplicates_no_tile(sample_svs, tmp_path):
    """The CLI on a real scheduler with two worker processes; one is killed (SIGKILL) once a quarter of the
    tiles are merged. Dask reruns its tasks on the other: the nuclei are exactly those of a run in one process."""
    local = run_detector(sample_svs, tmp_path / "local.anot")
    _, local_err = local.communicate(timeout=600)
    assert local.returncode == 0, local_err
    with dask_processes(2) as (address, workers):
        distributed = run_detector(sample_svs, tmp_path / "dask.anot", "--scheduler", address)
        killed_at = None
        for line in distributed.stdout:
            if killed_at is None and line.startswith("<filter-progress>"):
                progress = float(line.split(">")[1].split("<")[0])
                if progress >= 0.25:
                    workers[0].send_signal(signal.SIGKILL)
                    killed_at = progress
        _, err = distributed.communicate(timeout=600)
        assert distributed.returncode == 0, err
        assert workers[0].wait(timeout=20) == -signal.SIGKILL and workers[1].poll() is None
    assert killed_at is not None and killed_at < 0.75, "the worker should die mid-run"
    local_points, dask_points = box_centres(tmp_path / "local.anot"), box_centres(tmp_path / "dask.anot")
    assert len(local_points) > 100
    np.testing.assert_allclose(dask_points, local_points, atol=1e-3)
