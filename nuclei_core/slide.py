"""Open a slide with large_image, resolve its scale, and read regions resampled to an analysis scale."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import large_image
import numpy as np

from .errors import InputError

logging.getLogger("large_image").setLevel(logging.ERROR)


def _to_rgb_uint8(array: np.ndarray) -> np.ndarray:
    """Any large_image numpy tile (grey, grey+alpha, RGB, RGBA; 8 or 16 bit) as RGB uint8."""
    if array.ndim == 2:
        array = array[..., None]
    if array.dtype != np.uint8:
        peak = float(array.max()) or 1.0
        array = (array.astype(np.float32) * (255.0 / (65535.0 if peak > 255 else 255.0))).clip(0, 255)
        array = array.astype(np.uint8)
    channels = array.shape[2]
    if channels in (1, 2):
        return np.repeat(array[..., :1], 3, axis=2)
    return np.ascontiguousarray(array[..., :3])


class Slide:
    """A whole-slide image (or plain image) with a known full-resolution magnification."""

    def __init__(self, path: str | Path, input_mag: float | None = None) -> None:
        self.path = str(path)
        self.input_mag = input_mag
        if not Path(path).is_file():
            raise InputError(f"input image not found or not a file: {path}")
        try:
            self.source = large_image.open(self.path)
            metadata = self.source.getMetadata()
        except Exception as exc:  # large_image raises TileSourceError and various decoder errors
            raise InputError(f"cannot read {Path(path).name} as an image: {str(exc).splitlines()[0]}") from None
        self.width, self.height = int(metadata["sizeX"]), int(metadata["sizeY"])
        self.base_magnification = self._resolve_magnification(metadata, input_mag)

    def _resolve_magnification(self, metadata: dict, input_mag: float | None) -> float:
        if metadata.get("magnification"):
            return float(metadata["magnification"])
        if metadata.get("mm_x"):
            return 0.01 / float(metadata["mm_x"])  # 10 µm per pixel-at-1x convention: 20x ~ 0.5 µm/px
        if input_mag and input_mag > 0:
            return float(input_mag)
        raise InputError(f"{Path(self.path).name} records no magnification or pixel size: "
                         "set input_mag to the objective power of its full resolution (e.g. 20 or 40)")

    def read(self, left: int, top: int, width: int, height: int, scale: float) -> np.ndarray:
        """RGB uint8 of the base-pixel box, resampled by ``scale`` to exactly round(width*scale) x ..."""
        out_w, out_h = max(1, round(width * scale)), max(1, round(height * scale))
        array, _ = self.source.getRegion(
            region=dict(left=left, top=top, width=width, height=height, units="base_pixels"),
            output=dict(maxWidth=out_w, maxHeight=out_h),
            format=large_image.constants.TILE_FORMAT_NUMPY,
        )
        array = _to_rgb_uint8(array)
        if array.shape[:2] != (out_h, out_w):
            shrinking = array.shape[0] > out_h
            array = cv2.resize(array, (out_w, out_h), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
        return array

    def thumbnail(self, max_side: int) -> tuple[np.ndarray, float]:
        """The whole slide with its longer side at most ``max_side`` px, and its scale from base px."""
        scale = min(1.0, max_side / max(self.width, self.height))
        return self.read(0, 0, self.width, self.height, scale), scale
