"""Training images from a pathologist's annotated regions on a slide: each region cut into cells of about equal
size, read at the model's magnification with the truth points inside, and a seeded held-out share of the cells."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from shapely.geometry import MultiPolygon, box

from ..agreement import inside
from ..data.points import PointAnnotatedImage
from ..errors import InputError
from ..nuclei import Nuclei
from ..slide import Slide

INSIDE_SHARE = 0.95  # a cell counts when this share of it lies inside a region (the truth is complete there)


@dataclass(frozen=True)
class Cell:
    """One cell of a region: its box in the slide's base pixels and its image and truth at the model's scale."""

    slide_path: str
    bounds: tuple[int, int, int, int]  # left, top, width, height in base pixels
    item: PointAnnotatedImage


def region_cells(slide: Slide, truth: Nuclei, region: MultiPolygon, magnification: float, cell: int,
                 smallest: int) -> list[Cell]:
    """The regions' cells (about ``cell`` px at ``magnification``, at least ``smallest`` px a side)."""
    scale = magnification / slide.base_magnification
    cells = []
    for polygon in region.geoms:
        x0, y0, x1, y1 = polygon.bounds
        columns = max(1, round((x1 - x0) * scale / cell))
        rows = max(1, round((y1 - y0) * scale / cell))
        xs, ys = np.linspace(x0, x1, columns + 1).round(), np.linspace(y0, y1, rows + 1).round()
        for left, right in zip(xs[:-1], xs[1:]):
            for top, bottom in zip(ys[:-1], ys[1:]):
                square = box(left, top, right, bottom)
                if min(right - left, bottom - top) * scale < smallest or \
                        square.intersection(polygon).area < INSIDE_SHARE * square.area:
                    continue
                bounds = (int(left), int(top), int(right - left), int(bottom - top))
                image = slide.read(*bounds, scale)
                points = (inside(truth, MultiPolygon([square])).centroids - (left, top)) * scale
                cells.append(Cell(str(slide.path), bounds, PointAnnotatedImage(
                    f"{slide.path}:{bounds}", image, points)))
    return cells


def hold_out(cells: list[Cell], share: float, seed: int) -> tuple[list[Cell], list[Cell]]:
    """A seeded split of the cells into (training, held out), at least one of each."""
    if len(cells) < 2:
        raise InputError(f"the regions give {len(cells)} cell(s) of training size: draw larger regions, or more")
    order = np.random.default_rng(seed).permutation(len(cells))
    count = min(len(cells) - 1, max(1, round(share * len(cells))))
    return [cells[i] for i in sorted(order[count:])], [cells[i] for i in sorted(order[:count])]
