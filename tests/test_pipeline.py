"""The slide pipeline of one process: reader and post-processing processes give exactly the nuclei of the plain
in-process run (seams included), work in flight stays bounded, and the workers are chosen for the device."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from nuclei_core.engine.analysis import EngineSettings, ModelSpec, analyse_slide
from nuclei_core.engine.pipeline import Workers, in_order, pipeline_workers
from nuclei_core.engine.region import parse_region
from nuclei_core.engine.slide import Slide
from nuclei_core.models.hovernet import DEFAULT_WEIGHTS as HOVERNET_WEIGHTS
from nuclei_core.models.hovernet import HoVerNet
from nuclei_core.nuclei import Nuclei
from test_engine import TILE, DarkDiscDetector, disc_weights, seam_slide  # noqa: F401 (fixtures)

WORKER_SETTINGS = [Workers(0, 0), Workers(2, 0), Workers(0, 2), Workers(1, 1)]


def in_tile_order(nuclei: Nuclei) -> np.ndarray:
    return np.lexsort(nuclei.centroids.T)


def run_with(slide: Slide, spec: ModelSpec, workers: Workers, tile_size: int, region=None) -> Nuclei:
    settings = EngineSettings(tile_size=tile_size, min_fgnd_frac=0.0, batch_size=2, show_progress=False,
                              readers=workers.readers, postprocessors=workers.postprocessors)
    return analyse_slide(slide, spec, region, settings).nuclei


def test_reader_and_postprocessing_processes_find_the_seam_nuclei_of_the_plain_run(seam_slide, disc_weights):
    path, centres = seam_slide
    slide, spec = Slide(path, input_mag=20), ModelSpec(DarkDiscDetector, disc_weights)
    plain = run_with(slide, spec, Workers(0, 0), TILE)
    assert len(plain) == len(centres)
    for workers in WORKER_SETTINGS[1:]:
        found = run_with(slide, spec, workers, TILE)
        np.testing.assert_array_equal(found.centroids[in_tile_order(found)], plain.centroids[in_tile_order(plain)])
        np.testing.assert_array_equal(found.scores[in_tile_order(found)], plain.scores[in_tile_order(plain)])


def test_hovernet_in_postprocessing_processes_gives_the_same_classified_contours(sample_svs):
    """HoVer-Net's post-processing also measures each nucleus's haematoxylin from the tile's pixels, which travel
    with the network's output."""
    slide = Slide(sample_svs)
    region = parse_region([1500, 2500, 300, 300], slide.width, slide.height)
    spec = ModelSpec(HoVerNet, str(HOVERNET_WEIGHTS["SE + CA"]), overrides=(("precision", "float32"),))
    plain, pooled = (run_with(slide, spec, workers, 256, region) for workers in (Workers(0, 0), Workers(1, 2)))
    assert len(plain) > 10
    first, second = in_tile_order(plain), in_tile_order(pooled)
    np.testing.assert_array_equal(pooled.centroids[second], plain.centroids[first])
    np.testing.assert_array_equal(pooled.classes[second], plain.classes[first])
    for name, values in plain.measurements.items():
        np.testing.assert_array_equal(pooled.measurements[name][second], values[first])
    for mine, theirs in zip(np.asarray(pooled.contours, dtype=object)[second],
                            np.asarray(plain.contours, dtype=object)[first]):
        np.testing.assert_array_equal(mine, theirs)


def test_in_order_keeps_results_in_order_and_at_most_so_many_ahead():
    started, lock = [], threading.Lock()

    def task(item: int) -> int:
        with lock:
            started.append(item)
        return item * item

    results = []
    with ThreadPoolExecutor(max_workers=4) as executor:
        for result in in_order(executor, task, range(20), ahead=3):
            results.append(result)
            assert len(started) <= len(results) + 3  # never more than 3 submitted beyond what was consumed
    assert results == [i * i for i in range(20)]


@pytest.mark.parametrize("device, cpus, asked, expected", [
    ("cuda", 16, (-1, -1), Workers(4, 11)),
    ("cuda", 4, (-1, -1), Workers(1, 2)),
    ("cuda", 2, (-1, -1), Workers(1, 1)),
    ("cpu", 16, (-1, -1), Workers(0, 0)),
    ("cpu", 2, (2, -1), Workers(2, 0)),
    ("cuda", 16, (0, 3), Workers(0, 3)),
])
def test_workers_are_chosen_for_the_device_unless_given(device, cpus, asked, expected):
    assert pipeline_workers(device, *asked, cpus=cpus) == expected


def test_the_pipeline_benchmark_replays_the_network_and_finds_the_same_nuclei(sample_svs):
    from benchmarks.pipeline_throughput import WORKER_CHOICES, rows_for

    slide = Slide(sample_svs)
    rows = rows_for("UD-Net", slide, parse_region([900, 900, 500, 400], slide.width, slide.height), "cpu", 2)
    assert [(row["readers"], row["post-processors"]) for row in rows] == \
        [(w.readers, w.postprocessors) for w in WORKER_CHOICES]
    assert len({row["nuclei"] for row in rows}) == 1 and rows[0]["nuclei"] > 50
    assert all(row["feed tiles/s"] > 0 and row["end-to-end / model-only"] > 0 for row in rows)


def test_the_gpu_benchmark_runs_on_a_small_crop_on_the_cpu(tmp_path):
    """The script a GPU session runs once: here on a 3000 x 2400 synthetic 40x slide, so that it works the first
    time it meets a GPU."""
    from benchmarks.gpu_slide_throughput import SAMPLE, model_rows, synthetic_slide

    slide = Slide(synthetic_slide(SAMPLE, 3000, 2400, tmp_path / "synthetic.tiff"))
    assert slide.base_magnification == pytest.approx(40.0) and (slide.width, slide.height) == (3000, 2400)
    row, = model_rows(slide, ["UD-Net"], "cpu", 2)
    assert row["tiles"] > 0 and row["nuclei"] > 100 and row["GPU busy"] == "n/a"
    assert row["end-to-end s"] > 0 and row["tissue MP/s"] > 0
