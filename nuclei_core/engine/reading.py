"""Tiles as a model takes them: read from the slide at analysis scale, then prepared (in this process, a reader
process or a Dask worker, each with its own large_image source)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..models.base import TilePreparation
from .slide import Slide
from .tiling import Tile

COLOUR_SAMPLE_TILES = 8


@lru_cache(maxsize=8)
def open_slide(path: str, input_mag: float | None) -> Slide:
    """The slide at ``path``, opened once per process (reader processes and Dask workers open their own)."""
    return Slide(path, input_mag)


def read_tile(slide: Slide, tile: Tile, scale: float) -> np.ndarray:
    """The tile's read box (analysis px) as RGB uint8 at analysis scale, exactly the box's size."""
    x0, y0, x1, y1 = tile.read
    left, top = int(round(x0 / scale)), int(round(y0 / scale))
    width, height = max(1, int(round((x1 - x0) / scale))), max(1, int(round((y1 - y0) / scale)))
    image = slide.read(left, top, width, height, scale)[:y1 - y0, :x1 - x0]
    return np.pad(image, ((0, y1 - y0 - image.shape[0]), (0, x1 - x0 - image.shape[1]), (0, 0)), mode="edge")


def prepare_tiles(slide: Slide, preparation: TilePreparation, tiles: list[Tile], scale: float) -> list[np.ndarray]:
    """Read and prepare ``tiles`` from an open slide."""
    return [preparation(read_tile(slide, tile, scale)) for tile in tiles]


def prepare_tile_batch(slide_path: str, input_mag: float | None, preparation: TilePreparation, tiles: list[Tile],
                       scale: float) -> list[np.ndarray]:
    """Read and prepare one batch of tiles in this process, from the slide's path (what reader processes and Dask
    workers do)."""
    return prepare_tiles(open_slide(slide_path, input_mag), preparation, tiles, scale)


def colour_sample(slide: Slide, tiles: list[Tile], scale: float, count: int = COLOUR_SAMPLE_TILES) -> np.ndarray:
    """RGB pixels of up to ``count`` tiles spread over the plan, read at analysis scale (slide-wide colour
    statistics such as Reinhard's)."""
    if not tiles:
        return np.zeros((0, 3), np.uint8)
    chosen = np.unique(np.linspace(0, len(tiles) - 1, min(count, len(tiles))).round().astype(int))
    return np.concatenate([read_tile(slide, tiles[i], scale)[::2, ::2].reshape(-1, 3) for i in chosen])
