"""An overlay PNG: the slide (or region) with every nucleus drawn in its class colour."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..engine.slide import Slide
from ..nuclei import Nuclei
from .colors import class_color

MAX_SIDE = 2048


def render_overlay(slide: Slide, nuclei: Nuclei, bounds: tuple[float, float, float, float] | None = None,
                   max_side: int = MAX_SIDE) -> Image.Image:
    """The base-pixel ``bounds`` (x0, y0, x1, y1; whole slide if None) with nuclei drawn on top."""
    x0, y0, x1, y1 = bounds or (0, 0, slide.width, slide.height)
    x0, y0 = max(0, int(x0)), max(0, int(y0))
    x1, y1 = min(slide.width, int(np.ceil(x1))), min(slide.height, int(np.ceil(y1)))
    scale = min(1.0, max_side / max(x1 - x0, y1 - y0))
    image = Image.fromarray(slide.read(x0, y0, x1 - x0, y1 - y0, scale))
    draw = ImageDraw.Draw(image)
    radius = max(2.0, 4 * scale)
    labels = nuclei.class_labels()
    colors = {n: class_color(n, i) for i, n in enumerate(nuclei.class_names)}
    for i in range(len(nuclei)):
        color = colors[labels[i]]
        if nuclei.contours is not None:
            ring = [((x - x0) * scale, (y - y0) * scale) for x, y in nuclei.contours[i]]
            draw.line(ring + ring[:1], fill=color, width=1)
        else:
            x, y = (nuclei.centroids[i] - (x0, y0)) * scale
            draw.ellipse([x - radius, y - radius, x + radius, y + radius], outline=color, width=2)
    return image


def write_png(path: Path, image: Image.Image) -> None:
    """Save as PNG whatever the temporary file's name."""
    image.save(path, format="PNG")
