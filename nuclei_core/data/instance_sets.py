"""The prepared public instance-segmentation sets of ``shared/data`` at their native resolution.

DSB2018 (fluorescence, brightfield and H&E-like; ``stage1_train`` minus a fixed, seeded validation
holdout is ``train``, ``stage1_test`` with its released solution is ``test``), and MoNuSeg and CoNSeP
(H&E at 40x, with the same validation holdout as :mod:`.public_sets`). Test images are only scored.
"""

from __future__ import annotations

import dataclasses

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from .images import read_image
from .public_sets import SHARED_DATA, TILE_SETS, check_request, held_out_names, tile_set_names

INSTANCE_SETS = ("dsb2018", "monuseg", "consep")
MODALITIES = ("he", "fluorescence", "brightfield")  # what InstanceAnnotatedImage.modality may be
DSB_VALIDATION_IMAGES = 60


@dataclass(frozen=True)
class InstanceAnnotatedImage:
    """An RGB uint8 image, its uint16 instance label map (0 = background), its imaging modality, its objective
    magnification (``None`` where the set gives no pixel size, as DSB2018) and, for typed sets, its per-pixel class
    map (0 = background, k = the k-th class name)."""

    name: str
    image: np.ndarray
    labels: np.ndarray
    modality: str
    types: np.ndarray | None = None
    magnification: float | None = None


def _dsb(root: Path, split: str) -> list[InstanceAnnotatedImage]:
    folder = root / "dsb2018"
    with open(folder / "metadata.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    source = "stage1_test" if split == "test" else "stage1_train"
    modality = {r["image_id"]: r["modality"] for r in rows if r["split"] == source}
    names = sorted(modality)
    if split != "test":
        validation = held_out_names(names, DSB_VALIDATION_IMAGES)
        names = [n for n in names if (n in validation) == (split == "val")]
    return [InstanceAnnotatedImage(n, read_image(folder / source / "images" / f"{n}.png"),
                                   read_image(folder / source / "labels" / f"{n}.png", rgb=False), modality[n])
            for n in names]


def _tile_set(name: str, root: Path, split: str) -> list[InstanceAnnotatedImage]:
    spec = TILE_SETS[name]
    source = root / spec.folder / ("test" if split == "test" else "train")
    labels_dir = source / ("labels" if (source / "labels").is_dir() else "inst")
    return [InstanceAnnotatedImage(n, read_image(source / "images" / f"{n}.jpg"),
                                   read_image(labels_dir / f"{n}.png", rgb=False), "he",
                                   magnification=spec.magnification)
            for n in tile_set_names(spec, root, split)]


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")


def load_instance_folder(images_dir: str | Path, labels_dir: str | Path, modality: str = "he",
                         split: str = "all") -> list[InstanceAnnotatedImage]:
    """Images of ``images_dir`` with the instance label map of the same name in ``labels_dir`` (0 = background).

    ``split`` ``train`` / ``val`` gives a fixed, seeded 90 / 10 division of the images; ``all`` every image.
    """
    images = {p.stem: p for p in sorted(Path(images_dir).glob("*")) if p.suffix.lower() in IMAGE_SUFFIXES}
    labels = {p.stem: p for p in sorted(Path(labels_dir).glob("*")) if p.suffix.lower() in IMAGE_SUFFIXES}
    names = sorted(images.keys() & labels.keys())
    if not names:
        raise InputError(f"no image in {images_dir} has a label map of the same name in {labels_dir}")
    if split != "all":
        validation = held_out_names(names, max(1, len(names) // 10))
        names = [n for n in names if (n in validation) == (split == "val")]
    items = []
    for name in names:
        image, label_map = read_image(images[name]), read_image(labels[name], rgb=False)
        if label_map.ndim != 2 or label_map.shape != image.shape[:2]:
            raise InputError(f"{labels[name].name}: a label map must be one channel of the image's size "
                             f"{image.shape[1]} x {image.shape[0]}")
        items.append(InstanceAnnotatedImage(name, image, label_map.astype(np.int32), modality))
    return items


def load_instance_set(name: str, split: str, root: Path = SHARED_DATA) -> list[InstanceAnnotatedImage]:
    """The ``split`` (train, val, test) of ``dsb2018``, ``monuseg`` or ``consep`` with instance label maps."""
    check_request(name, INSTANCE_SETS, split, root)
    return _dsb(root, split) if name == "dsb2018" else _tile_set(name, root, split)


# CoNSeP's 7 types merged into HoVer-Net's 4 (other, inflammatory, epithelial, spindle), as in Graham et al. 2019.
CONSEP_TYPE_MERGE = np.array([0, 1, 2, 3, 3, 4, 4, 4], dtype=np.uint8)


def load_typed_consep(split: str, root: Path = SHARED_DATA) -> list[InstanceAnnotatedImage]:
    """CoNSeP's ``split`` with instance maps and per-pixel classes merged to other / inflammatory / epithelial /
    spindle (1-4)."""
    source = root / TILE_SETS["consep"].folder / ("test" if split == "test" else "train")
    return [dataclasses.replace(item, types=CONSEP_TYPE_MERGE[read_image(source / "type" / f"{item.name}.png",
                                                                         rgb=False)])
            for item in load_instance_set("consep", split, root)]
