"""The prepared public datasets of ``shared/data`` as nucleus-centre sets at the models' 20x scale.

CRCHisto is 20x already; MoNuSeg and CoNSeP are 40x and are halved (image and centres). MoNuSeg and
CoNSeP have no validation split, so a fixed, seeded part of their ``train`` images is held out as
``val``; ``test`` images are only ever read for scoring.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import InputError
from .points import PointAnnotatedImage, load_point_dataset, read_split

CRCHISTO_CLASSES = ("epithelial", "fibroblast", "inflammatory", "others")

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
SPLITS = ("train", "val", "test")
HOLDOUT_SEED = 2026


@dataclass(frozen=True)
class TileSet:
    """A 40x instance-labelled dataset: its folder, native magnification and held-out validation size."""

    folder: str
    magnification: float
    validation_images: int


TILE_SETS = {"monuseg": TileSet("monuseg", 40.0, 4), "consep": TileSet("consep_patches", 40.0, 3)}
POINT_SETS = ("crchisto", *TILE_SETS)


def held_out_names(names: list[str], count: int) -> set[str]:
    """A fixed, seeded choice of ``count`` of ``names`` (independent of their order)."""
    ordered = sorted(names)
    picks = np.random.default_rng(HOLDOUT_SEED).permutation(len(ordered))[:count]
    return {ordered[i] for i in picks}


def tile_set_names(spec: TileSet, root: Path, split: str) -> list[str]:
    """Image ids of a 40x tile set in ``split`` (``val`` = the held-out part of its ``train``)."""
    with open(root / spec.folder / "metadata.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    source = "test" if split == "test" else "train"
    names = sorted(r["image_id"] for r in rows if r["split"] == source)
    if split == "test":
        return names
    validation = held_out_names(names, spec.validation_images)
    return [n for n in names if (n in validation) == (split == "val")]


def centroids(instances_csv: Path) -> dict[str, np.ndarray]:
    """(N, 2) x,y nucleus centroids per image id from an ``instances.csv``."""
    points: dict[str, list[tuple[float, float]]] = defaultdict(list)
    with open(instances_csv, newline="") as handle:
        for row in csv.DictReader(handle):
            points[row["image_id"]].append((float(row["centroid_x"]), float(row["centroid_y"])))
    return {name: np.array(p, dtype=np.float64).reshape(-1, 2) for name, p in points.items()}


def rescale(image: np.ndarray, points: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Resample an RGB image by ``scale`` (area averaging) and move its pixel-centre coordinates with it."""
    height, width = image.shape[:2]
    size = (round(width * scale), round(height * scale))
    resized = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BOX))
    return resized, (points + 0.5) * scale - 0.5


def load_tile_set(spec: TileSet, root: Path, split: str, magnification: float) -> list[PointAnnotatedImage]:
    """A 40x tile set's ``split`` with its instance centroids, resampled to ``magnification``."""
    source = root / spec.folder / ("test" if split == "test" else "train")
    points = centroids(source / "instances.csv")
    items = []
    for name in tile_set_names(spec, root, split):
        image = np.asarray(Image.open(source / "images" / f"{name}.jpg").convert("RGB"))
        image, centres = rescale(image, points.get(name, np.zeros((0, 2))), magnification / spec.magnification)
        items.append(PointAnnotatedImage(name, image, centres))
    return items


def check_request(name: str, choices: tuple[str, ...], split: str, root: Path) -> None:
    """An :class:`InputError` for an unknown dataset or split, or a missing shared data folder."""
    if name not in choices:
        raise InputError(f"unknown dataset {name!r}; choose from {', '.join(choices)}")
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
    if not root.is_dir():
        raise InputError(f"shared data folder not found: {root}")


def load_point_set(name: str, split: str, root: Path = SHARED_DATA,
                   magnification: float = 20.0) -> list[PointAnnotatedImage]:
    """The ``split`` of public dataset ``name`` (``crchisto``, ``monuseg``, ``consep``) as centre points at 20x."""
    check_request(name, POINT_SETS, split, root)
    if name == "crchisto":
        if magnification != 20.0:
            raise InputError("CRCHisto is only available at 20x")
        folder = root / "crchisto"
        return load_point_dataset(folder / "images", folder / "detection", read_split(folder / "splits.csv", split))
    return load_tile_set(TILE_SETS[name], root, split, magnification)


def load_classified_crchisto(split: str, root: Path = SHARED_DATA) -> list[PointAnnotatedImage]:
    """CRCHisto's classified nuclei of ``split``: centres plus class indices into ``CRCHISTO_CLASSES``."""
    check_request("crchisto", POINT_SETS, split, root)
    folder = root / "crchisto"
    items = []
    for item in load_point_dataset(folder / "images", folder / "classification", read_split(folder / "splits.csv", split)):
        with open(folder / "classification" / f"{item.name}.csv", newline="") as handle:
            names = [row["class"] for row in csv.DictReader(handle)]
        unknown = set(names) - set(CRCHISTO_CLASSES)
        if unknown:
            raise InputError(f"{item.name}: unknown classes {sorted(unknown)}")
        items.append(PointAnnotatedImage(item.name, item.image, item.points,
                                         np.array([CRCHISTO_CLASSES.index(n) for n in names], dtype=np.int64)))
    return items
