"""The tile plan: cores that partition the slide at analysis scale, each read with a halo of context."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from shapely.geometry import MultiPolygon

from ..errors import InputError
from .slide import Slide
from .tissue import tissue_mask

Box = tuple[int, int, int, int]  # x0, y0, x1, y1, half-open, analysis pixels

MASK_MAX_SIDE = 2048
# The most a slide is enlarged for a model: past 4x (a 5x image for a 20x model) nuclei are a pixel or two
# across at full resolution, and the analysis would grow with the square of the factor.
MAX_UPSCALE = 4.0


@dataclass(frozen=True)
class Tile:
    """A core box (whose nuclei this tile owns) and the larger box read around it."""

    core: Box
    read: Box


@dataclass
class TilePlan:
    """Tiles to analyse at ``scale`` analysis px per base px, and the tissue they cover.

    ``analysed`` and ``tissue`` are masks at ``mask_scale`` mask px per base px: the part of the region under
    an analysed tile's core, and the tissue found there (what per-mm² densities divide by).
    """

    scale: float
    tile_size: int
    halo: int
    tiles: list[Tile]
    tiles_total: int
    tissue_base_pixels: float
    analysed: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((1, 1), bool))
    tissue: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((1, 1), bool))
    mask_scale: float = 1.0


def region_mask(region: MultiPolygon, shape: tuple[int, int], scale: float) -> np.ndarray:
    """Rasterise ``region`` (base px) onto a mask of ``shape`` at ``scale`` mask px per base px."""
    mask = np.zeros(shape, dtype=np.uint8)
    for polygon in region.geoms:
        exterior = np.round(np.asarray(polygon.exterior.coords) * scale).astype(np.int32)
        cv2.fillPoly(mask, [exterior], 1)
        for interior in polygon.interiors:
            cv2.fillPoly(mask, [np.round(np.asarray(interior.coords) * scale).astype(np.int32)], 0)
    return mask.astype(bool)


def _box_sums(mask: np.ndarray) -> np.ndarray:
    return np.pad(mask.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))


def _sum_in(sums: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> int:
    return int(sums[y1, x1] - sums[y0, x1] - sums[y1, x0] + sums[y0, x0])


def plan_tiles(slide: Slide, analysis_magnification: float, tile_size: int, halo: int,
               region: MultiPolygon | None, min_fgnd_frac: float, required: np.ndarray | None = None) -> TilePlan:
    """Cover the slide (or ``region``) with cores of ``tile_size - 2*halo`` analysis px.

    A tile is kept when tissue covers at least ``min_fgnd_frac`` of the part of its core inside the
    region (and some tissue at all); ``min_fgnd_frac <= 0`` keeps every tile in the region. A tile whose
    core holds one of the ``required`` points (base px: nuclei a user gave) is kept whatever its tissue.
    """
    core_size = tile_size - 2 * halo
    if core_size < 16:
        raise InputError(f"analysis_tile_size {tile_size} is too small for the model's {halo} px halo: "
                         f"use at least {2 * halo + 16}")
    scale = analysis_magnification / slide.base_magnification
    if scale > MAX_UPSCALE:
        raise InputError(f"{Path(slide.path).name} is at {slide.base_magnification:g}x, too coarse for a model "
                         f"that analyses at {analysis_magnification:g}x: it needs at least "
                         f"{analysis_magnification / MAX_UPSCALE:g}x (is input_mag right?)")
    width, height = int(np.ceil(slide.width * scale)), int(np.ceil(slide.height * scale))
    thumbnail, mask_scale = slide.thumbnail(MASK_MAX_SIDE)
    tissue = tissue_mask(thumbnail)
    inside = np.ones_like(tissue) if region is None else region_mask(region, tissue.shape, mask_scale)
    tissue_sums, inside_sums = _box_sums(tissue & inside), _box_sums(inside)
    to_mask = mask_scale / scale
    if region is None:
        x_lo, y_lo, x_hi, y_hi = 0, 0, width, height
    else:
        bx0, by0, bx1, by1 = region.bounds
        x_lo, y_lo = int(np.floor(bx0 * scale)), int(np.floor(by0 * scale))
        x_hi, y_hi = min(width, int(np.ceil(bx1 * scale))), min(height, int(np.ceil(by1 * scale)))
    required_cores = set() if required is None else {
        (int(x // core_size), int(y // core_size)) for x, y in (np.asarray(required, float).reshape(-1, 2) * scale
                                                                - (x_lo, y_lo))}
    tiles, total = [], 0
    for y0 in range(y_lo, y_hi, core_size):
        for x0 in range(x_lo, x_hi, core_size):
            total += 1
            x1, y1 = min(x0 + core_size, x_hi), min(y0 + core_size, y_hi)
            mx0, my0 = int(x0 * to_mask), int(y0 * to_mask)
            mx1 = min(tissue.shape[1], max(mx0 + 1, int(np.ceil(x1 * to_mask))))
            my1 = min(tissue.shape[0], max(my0 + 1, int(np.ceil(y1 * to_mask))))
            area = _sum_in(inside_sums, mx0, my0, mx1, my1)
            tissue_area = _sum_in(tissue_sums, mx0, my0, mx1, my1)
            too_little_tissue = min_fgnd_frac > 0 and (tissue_area == 0 or tissue_area < min_fgnd_frac * area)
            is_required = ((x0 - x_lo) // core_size, (y0 - y_lo) // core_size) in required_cores
            if area == 0 or (too_little_tissue and not is_required):
                continue
            read = (max(0, x0 - halo), max(0, y0 - halo), min(width, x1 + halo), min(height, y1 + halo))
            tiles.append(Tile((x0, y0, x1, y1), read))
    analysed = _under_cores(tiles, inside, to_mask)
    return TilePlan(scale, tile_size, halo, tiles, total, float(tissue_sums[-1, -1]) / mask_scale ** 2,
                    analysed, analysed & tissue, mask_scale)


def _under_cores(tiles: list[Tile], inside: np.ndarray, to_mask: float) -> np.ndarray:
    """The part of ``inside`` under the tiles' cores (analysis px times ``to_mask`` = mask px)."""
    covered = np.zeros_like(inside, dtype=bool)
    for tile in tiles:
        x0, y0, x1, y1 = (int(round(v * to_mask)) for v in tile.core)
        covered[y0:max(y1, y0 + 1), x0:max(x1, x0 + 1)] = True
    return covered & inside
