"""Training images from a pathologist's annotated regions on a slide: each region cut into cells of about equal
size, read at the model's magnification with the truth inside (points, and a label map when the truth is
outlines), and a seeded held-out share of the cells."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from shapely.geometry import MultiPolygon, box

from ..engine.slide import Slide
from ..errors import InputError
from ..nuclei import Nuclei
from ..review.agreement import inside

INSIDE_SHARE = 0.95  # a cell counts when this share of it lies inside a region (the truth is complete there)


@dataclass(frozen=True)
class Cell:
    """One cell of a region: its box in the slide's base pixels, and its image and truth at the model's scale."""

    name: str
    bounds: tuple[int, int, int, int]  # left, top, width, height in base pixels
    image: np.ndarray
    points: np.ndarray  # (N, 2) x,y nucleus centres in cell pixels
    class_labels: tuple[str, ...]  # the class name of each point
    labels: np.ndarray | None  # instance label map (0 = background) when the truth is outlines


def _label_map(truth: Nuclei, origin: tuple[float, float], scale: float, shape: tuple[int, int]) -> np.ndarray:
    """The truth outlines that reach into the cell, drawn as instances 1, 2, ... in cell pixels."""
    labels = np.zeros(shape, np.int32)
    height, width = shape
    for number, contour in enumerate(truth.contours, start=1):
        ring = (np.asarray(contour) - origin) * scale
        if ring[:, 0].max() < 0 or ring[:, 1].max() < 0 or ring[:, 0].min() >= width or ring[:, 1].min() >= height:
            continue
        cv2.fillPoly(labels, [np.round(ring).astype(np.int32)], number)
    return labels


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
                within = inside(truth, MultiPolygon([square]))
                labels = None if truth.contours is None else _label_map(truth, (left, top), scale, image.shape[:2])
                cells.append(Cell(f"{slide.path}:{bounds}", bounds, image, (within.centroids - (left, top)) * scale,
                                  tuple(within.class_labels()), labels))
    return cells


def hold_out(cells: list, share: float, seed: int) -> tuple[list, list]:
    """A seeded split of the cells into (training, held out), at least one of each."""
    if len(cells) < 2:
        raise InputError(f"the regions give {len(cells)} cell(s) of training size: draw larger regions, or more")
    order = np.random.default_rng(seed).permutation(len(cells))
    count = min(len(cells) - 1, max(1, round(share * len(cells))))
    return [cells[i] for i in sorted(order[count:])], [cells[i] for i in sorted(order[:count])]
