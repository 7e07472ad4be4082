"""The whole-slide engine: nuclei on tile seams are reported exactly once, regions are honoured."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from nuclei_core.engine.analysis import EngineSettings, ModelSpec, analyse_slide
from nuclei_core.engine.region import parse_region
from nuclei_core.engine.slide import Slide
from nuclei_core.metrics import match_points
from nuclei_core.models.base import NucleusModel
from nuclei_core.nuclei import Nuclei
from nuclei_core.postprocess.peaks import find_peaks

TILE, HALO = 128, 16
CORE = TILE - 2 * HALO


class DarkDiscDetector(NucleusModel):
    """A deterministic detector for the seam tests: Gaussian-smoothed darkness, then its peaks."""

    name = "dark-disc"
    halo = HALO

    @staticmethod
    def build_network(config: dict[str, Any]) -> nn.Module:
        radius = 6
        grid = torch.arange(-radius, radius + 1, dtype=torch.float32)
        kernel = torch.exp(-(grid[:, None] ** 2 + grid[None] ** 2) / (2 * config["sigma"] ** 2))
        conv = nn.Conv2d(1, 1, 2 * radius + 1, padding=radius, bias=False)
        conv.weight.data[:] = kernel / kernel.sum()
        return conv

    def infer(self, batch: torch.Tensor) -> np.ndarray:
        return self.network(1.0 - batch.mean(dim=1, keepdim=True)).cpu().numpy()

    def postprocess(self, output: np.ndarray) -> Nuclei:
        points, scores = find_peaks(output[0], self.config["threshold"], 4)
        return Nuclei(points, scores)


def seam_centres() -> np.ndarray:
    """Disc centres on and beside the core boundaries (x or y = CORE*k - 1, CORE*k, ...)."""
    centres = []
    for seam in (CORE, 2 * CORE, 3 * CORE):
        for offset, other in zip((-1, 0, 1, 0), (30, 70, 110, 150)):
            centres.append((seam + offset, other))  # across a vertical seam
            centres.append((other + 200, seam + offset))  # across a horizontal seam
    centres += [(CORE, CORE), (2 * CORE, 2 * CORE), (CORE - 1, 2 * CORE)]  # tile corners
    return np.array(sorted(set(centres)), dtype=float)


@pytest.fixture(scope="module")
def seam_slide(tmp_path_factory) -> tuple[str, np.ndarray]:
    centres = seam_centres()
    image = np.full((360, 420, 3), 235, np.uint8)
    image[40:320, 10:410] = (225, 170, 200)  # pink tissue so no tile counts as glass
    yy, xx = np.mgrid[:360, :420]
    for x, y in centres:
        image[(xx - x) ** 2 + (yy - y) ** 2 <= 16] = (60, 30, 90)
    path = tmp_path_factory.mktemp("seam") / "seams.png"
    Image.fromarray(image).save(path)
    return str(path), centres


@pytest.fixture(scope="module")
def disc_weights(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("weights") / "disc.pt"
    DarkDiscDetector({"sigma": 2.0, "threshold": 0.3}).save(path, "test")
    return str(path)


def run(slide_path: str, weights: str, tile_size: int, region=None, batch_size: int = 3) -> Nuclei:
    slide = Slide(slide_path, input_mag=20)
    settings = EngineSettings(tile_size=tile_size, min_fgnd_frac=0.0, batch_size=batch_size, show_progress=False)
    return analyse_slide(slide, ModelSpec(DarkDiscDetector, weights), region, settings).nuclei


def test_nuclei_on_seams_found_once_and_whole(seam_slide, disc_weights):
    path, centres = seam_slide
    found = run(path, disc_weights, TILE)
    pred_idx, true_idx = match_points(found.centroids, centres, radius=1.0)
    assert len(true_idx) == len(centres), "a nucleus on a seam was lost"
    assert len(found) == len(centres), "a nucleus on a seam was reported twice (or a fragment was kept)"
    assert np.abs(found.centroids[pred_idx] - centres[true_idx]).max() < 0.5, "a seam nucleus was cut"


def test_tiled_run_equals_single_tile_run(seam_slide, disc_weights):
    path, _ = seam_slide
    tiled, single = run(path, disc_weights, TILE), run(path, disc_weights, 512, batch_size=1)
    order_t = np.lexsort(tiled.centroids.T)
    order_s = np.lexsort(single.centroids.T)
    np.testing.assert_allclose(tiled.centroids[order_t], single.centroids[order_s])


def test_polygon_region_keeps_only_nuclei_inside(seam_slide, disc_weights):
    path, centres = seam_slide
    triangle = [0, 0, 400, 0, 0, 350, 0, 175]  # 4 vertices (6 values would be the centre form)
    region = parse_region(triangle, 420, 360)
    found = run(path, disc_weights, TILE, region=region)
    inside = centres[centres[:, 0] / 400 + centres[:, 1] / 350 < 1]
    assert 0 < len(found) < len(centres)
    assert len(found) == len(inside)
    assert (found.centroids[:, 0] / 400 + found.centroids[:, 1] / 350 < 1).all()


def test_coordinates_scale_back_to_base_pixels(tmp_path, disc_weights):
    """A 40x image analysed at 20x reports centres in the 40x (base) pixel frame."""
    image = np.full((400, 400, 3), (225, 170, 200), np.uint8)
    yy, xx = np.mgrid[:400, :400]
    truth = np.array([[100.0, 120.0], [250.0, 300.0], [320.0, 60.0]])
    for x, y in truth:
        image[(xx - x) ** 2 + (yy - y) ** 2 <= 64] = (60, 30, 90)
    path = tmp_path / "forty.png"
    Image.fromarray(image).save(path)
    slide = Slide(path, input_mag=40)
    result = analyse_slide(slide, ModelSpec(DarkDiscDetector, disc_weights), None,
                           EngineSettings(tile_size=TILE, min_fgnd_frac=0.0, show_progress=False))
    assert result.plan.scale == 0.5
    _, true_idx = match_points(result.nuclei.centroids, truth, radius=1.5)
    assert len(result.nuclei) == 3 and len(true_idx) == 3


def test_nuclei_do_not_depend_on_the_batch_size(sample_svs):
    """Tiles clipped by the slide's edge are batched only with tiles of their own shape, never padded to a full
    neighbour: the same nuclei whatever the batch size."""
    from nuclei_core.models.udnet import DEFAULT_WEIGHTS, UDNet

    slide = Slide(sample_svs)
    region = parse_region([1200, 2000, 1020, 967], slide.width, slide.height)  # reaches the right and bottom edges
    found = {}
    for batch_size in (1, 4):
        settings = EngineSettings(tile_size=512, min_fgnd_frac=0.0, batch_size=batch_size, show_progress=False)
        result = analyse_slide(slide, ModelSpec(UDNet, str(DEFAULT_WEIGHTS), overrides=(("precision", "float32"),)),
                               region, settings)
        shapes = {(t.read[2] - t.read[0], t.read[3] - t.read[1]) for t in result.plan.tiles}
        assert len(shapes) > 1  # clipped tiles are there to be batched
        found[batch_size] = result.nuclei.centroids[np.lexsort(result.nuclei.centroids.T)]
    assert len(found[1]) > 200
    np.testing.assert_array_equal(found[1], found[4])
