"""Paired augmentation of an image and its per-pixel targets: dihedral moves, rescaled crops, colour, HSV and stain
jitter."""

from __future__ import annotations

import cv2
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


def hsv_jitter(rng: np.random.Generator, image: np.ndarray, hue: float = 0.02, saturation: float = 0.1,
               value: float = 0.1) -> np.ndarray:
    """Random HSV change of uint8 RGB: hue shifted by up to ``hue`` of a turn, saturation and value scaled by
    1 +- their strengths; the identity when all three are 0."""
    if not (hue or saturation or value):
        return image
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV_FULL).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(-hue, hue) * 256) % 256
    hsv[..., 1] *= 1 + rng.uniform(-saturation, saturation)
    hsv[..., 2] *= 1 + rng.uniform(-value, value)
    return cv2.cvtColor(np.clip(np.rint(hsv), 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB_FULL)


def _window_start(rng: np.random.Generator, length: int, side: int, around: int | None) -> int:
    """A random start of a ``side`` window in ``length`` pixels; with ``around``, one that puts that pixel in the
    window's middle half."""
    if around is None:
        return int(rng.integers(length - side + 1))
    start = around - side // 2 + int(rng.integers(-(side // 4), side // 4 + 1))
    return int(np.clip(start, 0, length - side))


def rescaled_crop(rng: np.random.Generator, patch: int, scale_range: float, image: np.ndarray,
                  *label_maps: np.ndarray, around: tuple[int, int] | None = None) -> list[np.ndarray]:
    """A random ``patch`` x ``patch`` crop of the image and its label maps at a random scale in 1 +- ``scale_range``
    (a window of ``patch / scale`` pixels resized to ``patch``: linear for the image, nearest for the labels);
    ``around`` (row, column): a window holding that pixel in its middle half (clipped at the image's edges)."""
    scale = 1.0 + rng.uniform(-scale_range, scale_range) if scale_range else 1.0
    side = min(round(patch / scale), *image.shape[:2])
    top, left = (_window_start(rng, image.shape[axis], side, None if around is None else around[axis])
                 for axis in (0, 1))
    window = (slice(top, top + side), slice(left, left + side))
    if side == patch:
        return [image[window], *(labels[window] for labels in label_maps)]
    return [cv2.resize(image[window], (patch, patch), interpolation=cv2.INTER_LINEAR),
            *(cv2.resize(labels[window], (patch, patch), interpolation=cv2.INTER_NEAREST) for labels in label_maps)]
