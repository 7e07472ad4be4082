"""Open a slide with large_image, resolve its scale, and read regions resampled to an analysis scale."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import large_image
import numpy as np

from ..errors import InputError

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
        # Recorded pixel size, else the 10 um-per-pixel-at-1x convention (20x ~ 0.5 um/px).
        self.microns_per_pixel = float(metadata["mm_x"]) * 1000 if metadata.get("mm_x") else 10 / self.base_magnification

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
        """RGB uint8 of the base-pixel box resampled by ``scale`` to round(width*scale) x round(height*scale).

        Parts of the box outside the slide are filled with the nearest edge pixels, never stretched.
        """
        out_w, out_h = max(1, round(width * scale)), max(1, round(height * scale))
        x0, y0 = max(0, left), max(0, top)
        x1, y1 = min(self.width, left + width), min(self.height, top + height)
        if x1 <= x0 or y1 <= y0:
            raise InputError(f"box {left},{top},{width},{height} lies outside the {self.width} x {self.height} slide")
        part_w, part_h = max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale))
        array, _ = self.source.getRegion(
            region=dict(left=x0, top=y0, width=x1 - x0, height=y1 - y0, units="base_pixels"),
            output=dict(maxWidth=part_w, maxHeight=part_h),
            format=large_image.constants.TILE_FORMAT_NUMPY,
        )
        array = _to_rgb_uint8(array)
        if array.shape[:2] != (part_h, part_w):
            shrinking = array.shape[0] > part_h
            array = cv2.resize(array, (part_w, part_h), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
        pad_left, pad_top = round((x0 - left) * scale), round((y0 - top) * scale)
        pad_right, pad_bottom = max(0, out_w - pad_left - part_w), max(0, out_h - pad_top - part_h)
        array = np.pad(array, ((pad_top, pad_bottom), (pad_left, pad_right), (0, 0)), mode="edge")
        return array[:out_h, :out_w]

    def thumbnail(self, max_side: int) -> tuple[np.ndarray, float]:
        """The whole slide with its longer side at most ``max_side`` px, and its scale from base px."""
        scale = min(1.0, max_side / max(self.width, self.height))
        return self.read(0, 0, self.width, self.height, scale), scale
