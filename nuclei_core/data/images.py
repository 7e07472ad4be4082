"""Reading a training image or label map from a user's folder: a clear one-line error for a file that is not one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import InputError


def read_image(path: str | Path, rgb: bool = True) -> np.ndarray:
    """The image at ``path`` as (H, W, 3) uint8 RGB (``rgb``) or as stored (a label map); an InputError naming the
    file when it is missing or not a readable image."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB") if rgb else image)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise InputError(f"cannot read the image {Path(path).name}: {exc}") from None
