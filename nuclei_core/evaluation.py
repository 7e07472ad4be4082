"""Score a model on annotated images (whole images, not patches) with the shared metrics."""

from __future__ import annotations

from .data.points import PointAnnotatedImage
from .metrics.detection import DetectionScores, detection_scores
from .models.base import NucleusModel


def score_point_detector(model: NucleusModel, images: list[PointAnnotatedImage],
                         radius: float = 6.0) -> DetectionScores:
    """Micro-averaged detection scores of ``model`` over whole images (one-to-one within ``radius``)."""
    total = DetectionScores(0, 0, 0)
    for item in images:
        nuclei = model.predict(item.image[None])[0]
        total = total + detection_scores(nuclei.centroids, item.points, radius)
    return total
