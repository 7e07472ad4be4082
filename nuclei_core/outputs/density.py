"""Nuclei per mm² of tissue on a grid: large_image ``griddata`` documents, one per class, so a whole slide reads at
a glance at low zoom, where HistomicsUI hides or slows down a million points or outlines.

HistomicsUI (large_image's annotation layer) draws ``griddata`` as a ``heatmap`` (each cell's value a Gaussian
spot at the cell's centre, coloured through ``colorRange``) or a two-colour ``contour``; it does not draw a
``choropleth``. The maps are heatmaps, listed in the annotation panel but not shown until the pathologist turns one
on (``display.visible: false``), so the nuclei are what a finished job shows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from ..engine.tiling import TilePlan
from ..errors import InputError
from ..nuclei import Nuclei
from .colors import css_rgb

MIN_CELL_MICRONS = 20.0  # finer grids are larger than the nuclei they count, and heavy for the viewer
MIN_TISSUE_FRACTION = 0.25  # a cell with less tissue shows nothing (a few nuclei on a sliver would look dense)
COLORMAPS: dict[str, list[tuple[int, int, int]]] = {  # low to high
    "viridis": [(68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37)],
    "inferno": [(0, 0, 4), (87, 16, 110), (188, 55, 84), (249, 142, 9), (252, 255, 164)],
    "reds": [(254, 229, 217), (252, 174, 145), (251, 106, 74), (222, 45, 38), (165, 15, 21)],
    "blues": [(222, 235, 247), (158, 202, 225), (107, 174, 214), (49, 130, 189), (8, 81, 156)],
}
OPACITY = 0.6
SPOT_RADIUS = 1.5  # in cells: HistomicsUI draws each value as a Gaussian spot; this much overlap reads as a surface


@dataclass(frozen=True)
class DensityGrid:
    """Nuclei per mm² of tissue in cells of ``cell`` base px from ``origin`` (base px); 0 where a cell has
    less than :data:`MIN_TISSUE_FRACTION` tissue."""

    origin: tuple[float, float]
    cell: float
    values: np.ndarray  # (rows, columns)


def check_cell_size(cell_microns: float) -> None:
    """0 (no density map) or at least :data:`MIN_CELL_MICRONS`."""
    if 0 < cell_microns < MIN_CELL_MICRONS:
        raise InputError(f"density_grid_um must be 0 (no density map) or at least {MIN_CELL_MICRONS:g} µm, "
                         f"got {cell_microns:g}")


def tissue_fraction(plan: TilePlan, shape: tuple[int, int], cell: float) -> np.ndarray:
    """The share of each cell of a ``shape`` grid of ``cell`` base px from the slide's origin that is analysed
    tissue (the tissue mask averaged over each cell)."""
    rows, columns = shape
    side = cell * plan.mask_scale  # a cell's side in mask px
    mask = np.zeros((max(1, round(rows * side)), max(1, round(columns * side))), np.float32)
    height, width = min(mask.shape[0], plan.tissue.shape[0]), min(mask.shape[1], plan.tissue.shape[1])
    mask[:height, :width] = plan.tissue[:height, :width]
    return cv2.resize(mask, (columns, rows), interpolation=cv2.INTER_AREA)


def density_grid(centroids: np.ndarray, plan: TilePlan, microns_per_pixel: float, cell_microns: float) -> DensityGrid:
    """Nuclei per mm² of tissue of ``centroids`` (base px) on a grid of ``cell_microns`` over the analysed part."""
    cell = cell_microns / microns_per_pixel
    rows_analysed, columns_analysed = np.nonzero(plan.analysed)
    if not len(rows_analysed):
        return DensityGrid((0.0, 0.0), cell, np.zeros((0, 0)))
    to_base = 1 / plan.mask_scale
    first_column, first_row = int(columns_analysed.min() * to_base // cell), int(rows_analysed.min() * to_base // cell)
    last_column = math.ceil((columns_analysed.max() + 1) * to_base / cell) - 1
    last_row = math.ceil((rows_analysed.max() + 1) * to_base / cell) - 1
    fraction = tissue_fraction(plan, (last_row + 1, last_column + 1), cell)[first_row:, first_column:]
    counts = np.zeros(fraction.shape, np.float64)
    if len(centroids):
        column = np.clip((centroids[:, 0] // cell).astype(int) - first_column, 0, fraction.shape[1] - 1)
        row = np.clip((centroids[:, 1] // cell).astype(int) - first_row, 0, fraction.shape[0] - 1)
        np.add.at(counts, (row, column), 1)
    cell_mm2 = (cell_microns / 1000) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        values = np.where(fraction >= MIN_TISSUE_FRACTION, counts / (fraction * cell_mm2), 0.0)
    return DensityGrid((first_column * cell, first_row * cell), cell, values)


def _scale_top(values: np.ndarray) -> float:
    """The density shown in the top colour: the 99th percentile of the cells with nuclei, rounded up."""
    shown = values[values > 0]
    if not len(shown):
        return 1.0
    top = float(np.percentile(shown, 99))
    magnitude = 10 ** math.floor(math.log10(top))
    return math.ceil(top / magnitude) * magnitude


def griddata_element(grid: DensityGrid, group: str, colormap: str) -> dict[str, Any]:
    """A large_image heatmap element of ``grid`` (a Gaussian spot at each cell's centre): transparent at 0,
    ``colormap`` up to the 99th percentile."""
    colors = COLORMAPS[colormap]
    top = _scale_top(grid.values)
    stops = np.linspace(0, top, len(colors) + 1).tolist()
    centre = [round(grid.origin[0] + grid.cell / 2, 2), round(grid.origin[1] + grid.cell / 2, 2), 0]
    return {"type": "griddata", "interpretation": "heatmap", "group": group, "origin": centre,
            "radius": round(SPOT_RADIUS * grid.cell, 2), "scaleWithZoom": True,
            "dx": round(grid.cell, 4), "dy": round(grid.cell, 4), "gridWidth": int(grid.values.shape[1]),
            "values": np.round(grid.values, 1).ravel().tolist(),
            "colorRange": [css_rgb(colors[0], 0), *(css_rgb(c, OPACITY) for c in colors)],
            "rangeValues": stops, "minColor": css_rgb(colors[0], 0), "maxColor": css_rgb(colors[-1], OPACITY)}


def density_documents(nuclei: Nuclei, plan: TilePlan, microns_per_pixel: float, cell_microns: float,
                      colormap: str, title: str, attributes: dict[str, Any]) -> list[dict[str, Any]]:
    """One annotation document of nuclei per mm² of tissue for all nuclei, and one per class when there are
    several; none when ``cell_microns`` is 0 or nothing was analysed."""
    if cell_microns <= 0 or not plan.analysed.any():
        return []
    labels = np.array(nuclei.class_labels(), dtype=object)
    groups = [("nuclei", np.ones(len(nuclei), bool))]
    if len(nuclei.class_names) > 1:
        groups += [(name, labels == name) for name in nuclei.class_names]
    documents = []
    for name, chosen in groups:
        grid = density_grid(nuclei.centroids[chosen], plan, microns_per_pixel, cell_microns)
        element = griddata_element(grid, f"{name} per mm²", colormap)
        documents.append({
            "name": f"{title} ({name} per mm²)", "display": {"visible": False},
            "description": (f"{name.capitalize()} per mm² of tissue on a {cell_microns:g} µm grid: transparent at 0, "
                            f"{colormap} up to {element['rangeValues'][-1]:g} per mm²; cells under "
                            f"{MIN_TISSUE_FRACTION:.0%} tissue are left empty"),
            "attributes": {**attributes, "content": "density", "density_of": name, "grid_um": cell_microns},
            "elements": [element]})
    return documents
