"""Images with nucleus-centre annotations: a folder of images plus a folder of ``x,y`` CSV files."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..engine.geometry import check_on_slide
from ..errors import InputError
from ..nuclei import Nuclei
from .images import read_image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")
# How far past its image's edge a training point may lie: an annotator's click on an edge pixel (CRCHisto has
# points 0.73 px outside, after its 1-based coordinates were made 0-based).
POINT_EDGE_TOLERANCE = 1.0


@dataclass
class PointAnnotatedImage:
    """One RGB image (H, W, 3 uint8) with its nucleus centres (N, 2 x,y in pixels) and optional class indices."""

    name: str
    image: np.ndarray
    points: np.ndarray
    labels: np.ndarray | None = None


def _csv_rows(path: str | Path, columns: set[str]) -> list[dict[str, str]]:
    """The rows of a CSV that has ``columns``; an InputError naming the file otherwise."""
    try:
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"cannot read {Path(path).name}: {exc}") from None
    if rows and not columns <= set(rows[0]):
        raise InputError(f"{Path(path).name} has no {' and '.join(sorted(repr(c) for c in columns))} columns")
    return rows


def read_points_csv(path: str | Path) -> np.ndarray:
    """(N, 2) float x,y from a CSV with ``x`` and ``y`` columns; every value a finite number."""
    points = []
    for line, row in enumerate(_csv_rows(path, {"x", "y"}), start=2):
        try:
            point = [float(row["x"]), float(row["y"])]
        except (TypeError, ValueError):
            point = [np.nan]
        if not np.isfinite(point).all():
            raise InputError(f"{Path(path).name} line {line}: x and y must be finite numbers, not "
                             f"{row['x']!r}, {row['y']!r}")
        points.append(point)
    return np.array(points, dtype=np.float64).reshape(-1, 2)


def read_split(split_csv: str | Path, split: str) -> list[str]:
    """Image ids whose ``split`` column equals ``split`` in a CSV with ``image_id`` and ``split``."""
    return [r["image_id"] for r in _csv_rows(split_csv, {"image_id", "split"}) if r["split"] == split]


def load_point_dataset(images_dir: str | Path, points_dir: str | Path,
                       names: list[str] | None = None) -> list[PointAnnotatedImage]:
    """Pair ``images_dir/<name>.<img>`` with ``points_dir/<name>.csv`` (all names, or ``names``); every point on
    its image."""
    for folder in (images_dir, points_dir):
        if not Path(folder).is_dir():
            raise InputError(f"folder not found: {folder}")
    images = {p.stem: p for p in sorted(Path(images_dir).iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
    wanted = names if names is not None else sorted(images)
    if not wanted:
        raise InputError(f"no image ({', '.join(IMAGE_SUFFIXES)}) in {images_dir}")
    missing = [n for n in wanted if n not in images or not (Path(points_dir) / f"{n}.csv").is_file()]
    if missing:
        raise InputError(f"no image or points CSV for {missing[:5]} in {images_dir} / {points_dir}")
    items = [PointAnnotatedImage(name, read_image(images[name]), read_points_csv(Path(points_dir) / f"{name}.csv"))
             for name in wanted]
    for item in items:
        height, width = item.image.shape[:2]
        check_on_slide(Nuclei(item.points, np.ones(len(item.points))), f"{item.name}.csv", width, height,
                       POINT_EDGE_TOLERANCE)
    return items
