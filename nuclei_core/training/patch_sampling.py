"""Patches of point-annotated images for the patch detectors: pixel pools, labels and augmentation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from ..data.augment import colour_jitter, random_dihedral, stain_jitter
from ..data.points import PointAnnotatedImage
from ..models.patch_cnn import SC_WINDOW, proximity
from ..models.patch_gcn import PATCH

MARGIN = PATCH // 2

Pool = np.ndarray  # (N, 3) int rows of (image index, row, col): the patch centred on that pixel


@dataclass
class PatchSource:
    """Images reflect-padded by half a patch, plus each pixel's distance to the nearest annotated centre."""

    images: list[np.ndarray]
    distances: list[np.ndarray]

    @classmethod
    def from_dataset(cls, dataset: list[PointAnnotatedImage]) -> "PatchSource":
        """Pad every image and compute its distance map (pixels beyond any centre: distance to the nearest)."""
        images, distances = [], []
        for item in dataset:
            images.append(np.pad(item.image, ((MARGIN, MARGIN), (MARGIN, MARGIN), (0, 0)), mode="reflect"))
            centres = np.ones(item.image.shape[:2], dtype=bool)
            rows = np.clip(np.round(item.points[:, 1]).astype(int), 0, centres.shape[0] - 1)
            cols = np.clip(np.round(item.points[:, 0]).astype(int), 0, centres.shape[1] - 1)
            centres[rows, cols] = False
            distances.append(ndimage.distance_transform_edt(centres).astype(np.float32)
                             if len(item.points) else np.full(centres.shape, np.inf, np.float32))
        return cls(images, distances)

    def pool(self, masks: list[np.ndarray]) -> Pool:
        """The pixels where the per-image boolean ``masks`` are true."""
        parts = [np.column_stack([np.full(len(r), i), r, c]) for i, (r, c) in
                 enumerate(np.nonzero(m) for m in masks)]
        return np.concatenate(parts).astype(np.int64) if parts else np.zeros((0, 3), np.int64)

    def pool_by_distance(self, low: float, high: float) -> Pool:
        """Pixels whose distance to the nearest centre is in (low, high]."""
        return self.pool([(d > low) & (d <= high) for d in self.distances])

    def patches(self, picks: Pool) -> np.ndarray:
        """(N, 27, 27, 3) uint8 patches centred on the picked pixels."""
        return np.stack([self.images[i][r:r + PATCH, c:c + PATCH] for i, r, c in picks])

    def proximity_windows(self, picks: Pool, radius: float) -> np.ndarray:
        """(N, 11, 11) SC-CNN targets: ``1 / (1 + d^2 / 2)`` within ``radius`` of a centre, 0 elsewhere."""
        windows = np.zeros((len(picks), SC_WINDOW, SC_WINDOW), np.float32)
        half = SC_WINDOW // 2
        for n, (i, r, c) in enumerate(picks):
            distance = self.distances[i]
            top, left = r - half, c - half
            window = distance[max(top, 0):top + SC_WINDOW, max(left, 0):left + SC_WINDOW]
            values = proximity(torch.ones(()), torch.from_numpy(window) ** 2, radius).numpy()
            windows[n, max(-top, 0):max(-top, 0) + values.shape[0], max(-left, 0):max(-left, 0) + values.shape[1]] = values
        return windows


def draw(rng: np.random.Generator, pools: list[tuple[Pool, int]]) -> Pool:
    """``count`` pixels drawn with replacement from each ``(pool, count)``, concatenated."""
    return np.concatenate([pool[rng.integers(len(pool), size=count)] for pool, count in pools if count])


def augmented(rng: np.random.Generator, patches: np.ndarray, windows: np.ndarray | None = None,
              stain_strength: float = 0.0) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Random dihedral moves (shared with the windows), HED stain jitter of ``stain_strength`` (0: none) and colour
    jitter; patches as (N, 3, 27, 27) in [0, 1]."""
    moved_patches, moved_windows = [], []
    for n, patch in enumerate(patches):
        arrays = [patch] if windows is None else [patch, windows[n]]
        moved = random_dihedral(rng, *arrays)
        patch = stain_jitter(rng, moved[0], stain_strength) if stain_strength else moved[0]
        moved_patches.append(colour_jitter(rng, patch))
        if windows is not None:
            moved_windows.append(moved[1])
    return as_tensor(np.stack(moved_patches)), None if windows is None else torch.from_numpy(np.stack(moved_windows))


def as_tensor(patches: np.ndarray) -> torch.Tensor:
    """(N, 27, 27, 3) uint8 -> (N, 3, 27, 27) float in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(patches)).permute(0, 3, 1, 2).float().div_(255.0)


def channel_statistics(dataset: list[PointAnnotatedImage]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and standard deviation of the images in [0, 1], shaped (1, 3, 1, 1)."""
    pixels = np.concatenate([d.image.reshape(-1, 3) for d in dataset]).astype(np.float64) / 255.0
    mean, std = (torch.tensor(v, dtype=torch.float32).view(1, 3, 1, 1) for v in (pixels.mean(0), pixels.std(0)))
    return mean, std
