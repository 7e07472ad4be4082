"""Read nuclei back from a DSA annotation file or a QuPath GeoJSON file (the inverse of the writers)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..nuclei import Nuclei


def _load_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt") as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise InputError(f"annotation file not found: {path}") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{path.name} is not valid JSON: {str(exc).splitlines()[0]}") from None


def _table(labels: list[str], centroids: list, scores: list, contours: list | None,
           measurements: list[dict[str, float]]) -> Nuclei:
    """A Nuclei table whose class names are the distinct labels in order of first appearance."""
    names = tuple(dict.fromkeys(labels)) or ("nucleus",)
    index = {n: i for i, n in enumerate(names)}
    keys = sorted({k for m in measurements for k in m})
    return Nuclei(np.array(centroids, dtype=float).reshape(-1, 2), np.array(scores, dtype=float),
                  contours=contours, classes=np.array([index[n] for n in labels], dtype=int), class_names=names,
                  measurements={k: np.array([m.get(k, np.nan) for m in measurements], float) for k in keys})


def _shape_kind(kinds: set[str], path: str | Path) -> bool:
    """True when every element is a contour, False when every one is a point."""
    if len(kinds) > 1:
        raise InputError(f"{Path(path).name} mixes points and contours; convert them separately")
    return kinds == {"contour"}


def read_annotation(path: str | Path) -> Nuclei:
    """Points and closed polylines of a large_image annotation file (one document or a list of them)."""
    payload = _load_json(path)
    documents = payload if isinstance(payload, list) else [payload]
    elements = [e for d in documents if isinstance(d, dict) for e in d.get("elements", [])]
    usable = [e for e in elements if e.get("type") == "point" or (e.get("type") == "polyline" and e.get("closed"))]
    if not isinstance(documents[0], dict) or len(usable) != len(elements):
        raise InputError(f"{Path(path).name} is not a large_image annotation of points or closed polylines")
    is_contour = _shape_kind({"contour" if e["type"] == "polyline" else "point" for e in usable}, path)
    centroids, contours = [], []
    for element in usable:
        if element["type"] == "polyline":
            ring = np.array(element["points"], dtype=float)[:, :2]
            contours.append(ring)
            centroids.append(ring.mean(axis=0))
        else:
            centroids.append(element["center"][:2])
    user = [e.get("user", {}) for e in usable]
    return _table([e.get("group") or "nucleus" for e in usable], centroids,
                  [u.get("score", 1.0) for u in user], contours if is_contour else None,
                  [{k: v for k, v in u.items() if k != "score" and isinstance(v, (int, float))} for u in user])


def read_geojson(path: str | Path) -> Nuclei:
    """Point and Polygon features of a GeoJSON file (QuPath export or ours), ``.gz`` included."""
    payload = _load_json(path)
    features = payload.get("features", []) if isinstance(payload, dict) else payload
    if not isinstance(features, list) or any(f.get("geometry", {}).get("type") not in ("Point", "Polygon")
                                             for f in features):
        raise InputError(f"{Path(path).name} is not GeoJSON of Point or Polygon features")
    is_contour = _shape_kind({"contour" if f["geometry"]["type"] == "Polygon" else "point" for f in features}, path)
    centroids, contours, labels, measurements = [], [], [], []
    for feature in features:
        coordinates = feature["geometry"]["coordinates"]
        if is_contour:
            ring = np.array(coordinates[0], dtype=float)
            ring = ring[:-1] if len(ring) > 1 and np.array_equal(ring[0], ring[-1]) else ring
            contours.append(ring)
            centroids.append(ring.mean(axis=0))
        else:
            centroids.append(coordinates[:2])
        properties = feature.get("properties") or {}
        labels.append((properties.get("classification") or {}).get("name") or "nucleus")
        values = properties.get("measurements") or {}
        if isinstance(values, list):  # QuPath before 0.4 wrote [{"name": ..., "value": ...}]
            values = {m["name"]: m["value"] for m in values}
        measurements.append({k: v for k, v in values.items() if isinstance(v, (int, float))})
    scores = [m.pop("Score", 1.0) for m in measurements]
    return _table(labels, centroids, scores, contours if is_contour else None, measurements)
