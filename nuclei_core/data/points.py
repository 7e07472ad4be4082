"""Images with nucleus-centre annotations: a folder of images plus a folder of ``x,y`` CSV files."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import InputError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")


@dataclass
class PointAnnotatedImage:
    """One RGB image (H, W, 3 uint8) with its nucleus centres (N, 2 x,y in pixels) and optional class indices."""

    name: str
    image: np.ndarray
    points: np.ndarray
    labels: np.ndarray | None = None


def read_points_csv(path: str | Path) -> np.ndarray:
    """(N, 2) float x,y from a CSV with ``x`` and ``y`` columns."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if rows and not {"x", "y"} <= set(rows[0]):
        raise InputError(f"{path} has no 'x' and 'y' columns")
    return np.array([[float(r["x"]), float(r["y"])] for r in rows], dtype=np.float64).reshape(-1, 2)


def read_split(split_csv: str | Path, split: str) -> list[str]:
    """Image ids whose ``split`` column equals ``split`` in a CSV with ``image_id`` and ``split``."""
    with open(split_csv, newline="") as handle:
        return [r["image_id"] for r in csv.DictReader(handle) if r["split"] == split]


def load_point_dataset(images_dir: str | Path, points_dir: str | Path,
                       names: list[str] | None = None) -> list[PointAnnotatedImage]:
    """Pair ``images_dir/<name>.<img>`` with ``points_dir/<name>.csv`` (all names, or ``names``)."""
    images = {p.stem: p for p in sorted(Path(images_dir).iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
    wanted = names if names is not None else sorted(images)
    missing = [n for n in wanted if n not in images or not (Path(points_dir) / f"{n}.csv").is_file()]
    if missing:
        raise InputError(f"no image or points CSV for {missing[:5]} in {images_dir} / {points_dir}")
    return [
        PointAnnotatedImage(name, np.asarray(Image.open(images[name]).convert("RGB")),
                            read_points_csv(Path(points_dir) / f"{name}.csv"))
        for name in wanted
    ]
