"""Paired augmentation of an image and its per-pixel target: dihedral moves and colour jitter."""

from __future__ import annotations

import numpy as np


def random_dihedral(rng: np.random.Generator, *arrays: np.ndarray) -> list[np.ndarray]:
    """The same random rotation by k*90 degrees and optional flip applied to every (H, W, ...) array."""
    k, flip = int(rng.integers(4)), bool(rng.integers(2))
    moved = [np.rot90(a, k, axes=(0, 1)) for a in arrays]
    return [np.ascontiguousarray(a[:, ::-1] if flip else a) for a in moved]


def colour_jitter(rng: np.random.Generator, image: np.ndarray, strength: float = 0.08) -> np.ndarray:
    """Random brightness, contrast and per-channel gain (stain variation), on uint8 RGB."""
    pixels = image.astype(np.float32)
    mean = pixels.mean(axis=(0, 1), keepdims=True)
    contrast = 1.0 + rng.uniform(-2 * strength, 2 * strength)
    gain = 1.0 + rng.uniform(-strength, strength, size=3)
    brightness = rng.uniform(-1.0, 1.0) * strength * 128
    pixels = (pixels - mean) * contrast + mean * gain + brightness
    return np.clip(pixels, 0, 255).astype(np.uint8)


# Ruifrok & Johnston's haematoxylin, eosin and DAB optical-density vectors (rows), as in scikit-image.
RGB_FROM_HED = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]])
RGB_FROM_HED = RGB_FROM_HED / np.linalg.norm(RGB_FROM_HED, axis=1, keepdims=True)
HED_FROM_RGB = np.linalg.inv(RGB_FROM_HED)


def stain_jitter(rng: np.random.Generator, image: np.ndarray, strength: float = 0.05) -> np.ndarray:
    """HED stain augmentation (Tellez et al. 2018) on uint8 RGB.

    Each stain's concentration ``c`` (colour deconvolution in optical density) becomes
    ``c * a + b`` with ``a`` in 1 +- ``strength`` and ``b`` in +- ``strength``; exact when both are neutral.
    """
    density = -np.log((image.astype(np.float64) + 1.0) / 256.0)
    stains = density @ HED_FROM_RGB
    stains = stains * rng.uniform(1 - strength, 1 + strength, size=3) + rng.uniform(-strength, strength, size=3)
    rgb = 256.0 * np.exp(-(stains @ RGB_FROM_HED)) - 1.0
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
