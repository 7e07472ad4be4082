"""Score a model on annotated images (whole images, not patches) with the shared metrics."""

from __future__ import annotations

import cv2
import numpy as np

from ..data.points import PointAnnotatedImage
from ..metrics.detection import DetectionScores, detection_scores
from ..models.base import NucleusModel
from ..nuclei import Nuclei


def prepared_image(model: NucleusModel, image: np.ndarray) -> np.ndarray:
    """A whole image prepared as the model's slide tiles are, its own colours standing for the slide's."""
    return model.tile_preparation(lambda: image)(image)


def predict_nuclei(model: NucleusModel, image: np.ndarray, magnification: float = 20.0) -> Nuclei:
    """Nuclei of one whole image scanned at ``magnification``, resampled to the model's own magnification,
    prepared as the model's slides are (the image's own colours standing for the slide's), and back (image
    pixels)."""
    scale = model.analysis_magnification / magnification
    if scale != 1:
        height, width = image.shape[:2]
        image = cv2.resize(image, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_LINEAR)
    return model.predict(prepared_image(model, image)[None])[0].transformed(1 / scale, (0.0, 0.0))


def predict_centroids(model: NucleusModel, image: np.ndarray, magnification: float = 20.0) -> np.ndarray:
    """Nucleus centres of one whole image (see :func:`predict_nuclei`), in image pixels."""
    return predict_nuclei(model, image, magnification).centroids


def score_point_detector(model: NucleusModel, images: list[PointAnnotatedImage], radius: float = 6.0,
                         magnification: float = 20.0) -> DetectionScores:
    """Micro-averaged detection scores of ``model`` over whole images (one-to-one within ``radius``)."""
    return sum((detection_scores(predict_centroids(model, item.image, magnification), item.points, radius)
                for item in images), DetectionScores(0, 0, 0))
