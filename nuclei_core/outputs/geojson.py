"""QuPath GeoJSON: every nucleus a detection object with its class, colour and measurements."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path
from typing import Any

from ..nuclei import Nuclei
from .colors import class_color


def _geometry(nuclei: Nuclei, index: int) -> dict[str, Any]:
    if nuclei.contours is not None:
        ring = [[round(float(x), 2), round(float(y), 2)] for x, y in nuclei.contours[index]]
        if ring and ring[0] != ring[-1]:
            ring.append(ring[0])
        return {"type": "Polygon", "coordinates": [ring]}
    x, y = nuclei.centroids[index]
    return {"type": "Point", "coordinates": [round(float(x), 2), round(float(y), 2)]}


def feature_collection(nuclei: Nuclei, model_name: str) -> dict[str, Any]:
    """A FeatureCollection of QuPath detections in full-resolution pixel coordinates."""
    labels = nuclei.class_labels()
    colors = {n: list(class_color(n, i)) for i, n in enumerate(nuclei.class_names)}
    features = []
    for i in range(len(nuclei)):
        measurements = {name: round(value, 4) for name, value in (
            ("Score", float(nuclei.scores[i])), *((k, float(v[i])) for k, v in nuclei.measurements.items()))
            if math.isfinite(value)}  # QuPath's JSON reader refuses NaN; a missing value is left out
        features.append({
            "type": "Feature",
            "geometry": _geometry(nuclei, i),
            "properties": {"objectType": "detection", "name": model_name,
                           "classification": {"name": labels[i], "color": colors[labels[i]]},
                           "measurements": measurements},
        })
    return {"type": "FeatureCollection", "features": features}


def write_geojson(path: Path, collection: dict[str, Any], compress: bool) -> None:
    """Strict JSON (no NaN), plain or gzip when ``compress`` (for ``.geojson.gz``)."""
    opener = gzip.open if compress else open
    with opener(path, "wt") as handle:
        json.dump(collection, handle, separators=(",", ":"), allow_nan=False)
