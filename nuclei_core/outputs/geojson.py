"""QuPath GeoJSON: every nucleus a detection object with its class, colour and measurements, streamed.

``detail`` chooses the geometry of outlined nuclei: ``full`` (the outline as found), ``simplified`` (the
outline with the vertices that change it by less than :data:`SIMPLIFY_MICRONS` removed: a smaller file QuPath
reads faster) or ``points`` (the centroid only, as for detectors: the smallest file).
"""

from __future__ import annotations

import gzip
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..nuclei import Nuclei
from .colors import class_color
from .json_stream import LazySequence, write_object_with_array

DETAILS = ("full", "simplified", "points")
SIMPLIFY_MICRONS = 0.25  # largest distance a simplified outline moves from the found one


def simplified_ring(ring: np.ndarray, tolerance: float) -> np.ndarray:
    """``ring`` without the vertices that move its outline by less than ``tolerance`` (Douglas-Peucker);
    the ring itself when simplifying would leave fewer than 3 vertices."""
    kept = cv2.approxPolyDP(np.asarray(ring, np.float32).reshape(-1, 1, 2), tolerance, True).reshape(-1, 2)
    return ring if len(kept) < 3 else kept.astype(np.float64)


def _geometry_maker(nuclei: Nuclei, detail: str, tolerance: float) -> Callable[[int], dict[str, Any]]:
    def geometry(index: int) -> dict[str, Any]:
        if nuclei.contours is None or detail == "points":
            return {"type": "Point", "coordinates": np.round(nuclei.centroids[index], 2).tolist()}
        ring = nuclei.contours[index] if detail == "full" else simplified_ring(nuclei.contours[index], tolerance)
        ring = np.round(ring, 2).tolist()
        if ring and ring[0] != ring[-1]:
            ring.append(ring[0])
        return {"type": "Polygon", "coordinates": [ring]}

    return geometry


def feature_collection(nuclei: Nuclei, model_name: str, detail: str = "full",
                       microns_per_pixel: float = 0.5) -> dict[str, Any]:
    """A FeatureCollection of QuPath detections in full-resolution pixel coordinates (features made when
    written); ``microns_per_pixel`` sets the simplification tolerance of ``detail="simplified"``."""
    labels = nuclei.class_labels()
    classes = {n: {"name": n, "color": list(class_color(n, i))} for i, n in enumerate(nuclei.class_names)}
    geometry = _geometry_maker(nuclei, detail, SIMPLIFY_MICRONS / microns_per_pixel)

    def feature(index: int) -> dict[str, Any]:
        measurements = {name: round(value, 4) for name, value in (
            ("Score", float(nuclei.scores[index])),
            *((k, float(v[index])) for k, v in nuclei.measurements.items()))
            if math.isfinite(value)}  # QuPath's JSON reader refuses NaN; a missing value is left out
        return {"type": "Feature", "geometry": geometry(index),
                "properties": {"objectType": "detection", "name": model_name,
                               "classification": classes[labels[index]], "measurements": measurements}}

    return {"type": "FeatureCollection", "features": LazySequence(feature, range(len(nuclei)))}


def write_geojson(path: Path, collection: dict[str, Any], compress: bool) -> None:
    """Strict JSON (no NaN), plain or gzip when ``compress`` (for ``.geojson.gz``); features streamed."""
    opener = gzip.open if compress else open
    with opener(path, "wt") as handle:
        header = {k: v for k, v in collection.items() if k != "features"}
        write_object_with_array(handle, header, "features", collection["features"])
