"""Read nuclei back from a DSA annotation file or a QuPath GeoJSON file (the inverse of the writers).

A pathologist's truth annotation may also hold the regions where it is complete: DSA rectangles, and
closed polylines / polygons whose group (DSA) or classification (QuPath) is the region label.
"""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon

from ..errors import InputError
from ..nuclei import Nuclei

GEOJSON_SUFFIXES = (".geojson", ".geojson.gz", ".json.gz")
DEFAULT_REGION_LABEL = "ROI"


def is_geojson(path: str | Path) -> bool:
    """True when the file name says GeoJSON (else a DSA annotation)."""
    return str(path).lower().endswith(GEOJSON_SUFFIXES)


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


def _rectangle(element: dict) -> Polygon:
    """A DSA rectangle element (centre, width, height, rotation in radians) as a polygon."""
    cx, cy = element["center"][:2]
    half_w, half_h = element["width"] / 2, element["height"] / 2
    angle = float(element.get("rotation", 0) or 0)
    c, s = math.cos(angle), math.sin(angle)
    corners = [(-half_w, -half_h), (half_w, -half_h), (half_w, half_h), (-half_w, half_h)]
    return Polygon([(cx + x * c - y * s, cy + x * s + y * c) for x, y in corners])


def _regions(polygons: list[Polygon]) -> MultiPolygon | None:
    """The union of the region polygons, or None when there are none."""
    if not polygons:
        return None
    union = shapely.unary_union([shapely.make_valid(p) for p in polygons])
    return MultiPolygon([g for g in getattr(union, "geoms", [union]) if isinstance(g, Polygon)])


def _annotation_elements(path: str | Path) -> list[dict]:
    payload = _load_json(path)
    documents = payload if isinstance(payload, list) else [payload]
    if not documents or not all(isinstance(d, dict) for d in documents):
        raise InputError(f"{Path(path).name} is not a large_image annotation")
    return [e for d in documents for e in d.get("elements", [])]


def _nuclei_from_elements(elements: list[dict], path: str | Path) -> Nuclei:
    usable = [e for e in elements if e.get("type") == "point" or (e.get("type") == "polyline" and e.get("closed"))]
    if len(usable) != len(elements):
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


def _geojson_features(path: str | Path) -> list[dict]:
    payload = _load_json(path)
    features = payload.get("features", []) if isinstance(payload, dict) else payload
    if not isinstance(features, list) or not all(isinstance(f, dict) for f in features):
        raise InputError(f"{Path(path).name} is not a GeoJSON feature collection")
    return features


def _class_name(feature: dict) -> str:
    return ((feature.get("properties") or {}).get("classification") or {}).get("name") or "nucleus"


def _nuclei_from_features(features: list[dict], path: str | Path) -> Nuclei:
    kinds = {"Point": "point", "MultiPoint": "point", "Polygon": "contour"}
    if any(f.get("geometry", {}).get("type") not in kinds for f in features):
        raise InputError(f"{Path(path).name} is not GeoJSON of Point, MultiPoint or Polygon features")
    is_contour = _shape_kind({kinds[f["geometry"]["type"]] for f in features}, path)
    centroids, contours, labels, measurements = [], [], [], []
    for feature in features:
        geometry = feature["geometry"]
        properties = feature.get("properties") or {}
        values = properties.get("measurements") or {}
        if isinstance(values, list):  # QuPath before 0.4 wrote [{"name": ..., "value": ...}]
            values = {m["name"]: m["value"] for m in values}
        values = {k: v for k, v in values.items() if isinstance(v, (int, float))}
        if is_contour:
            ring = np.array(geometry["coordinates"][0], dtype=float)
            ring = ring[:-1] if len(ring) > 1 and np.array_equal(ring[0], ring[-1]) else ring
            contours.append(ring)
            shapes = [ring.mean(axis=0)]
        else:  # QuPath's point tool writes one MultiPoint per class
            shapes = [geometry["coordinates"][:2]] if geometry["type"] == "Point" else \
                [p[:2] for p in geometry["coordinates"]]
        centroids.extend(shapes)
        labels.extend([_class_name(feature)] * len(shapes))
        measurements.extend(dict(values) for _ in shapes)
    scores = [m.pop("Score", 1.0) for m in measurements]
    return _table(labels, centroids, scores, contours if is_contour else None, measurements)


def read_annotation(path: str | Path) -> Nuclei:
    """Points and closed polylines of a large_image annotation file (one document or a list of them)."""
    return _nuclei_from_elements(_annotation_elements(path), path)


def read_geojson(path: str | Path) -> Nuclei:
    """Point, MultiPoint and Polygon features of a GeoJSON file (QuPath export or ours), ``.gz`` included."""
    return _nuclei_from_features(_geojson_features(path), path)


def read_nuclei(path: str | Path) -> Nuclei:
    """Nuclei from either format, chosen by the file name."""
    return read_geojson(path) if is_geojson(path) else read_annotation(path)


def read_nuclei_and_regions(path: str | Path,
                            region_label: str = DEFAULT_REGION_LABEL) -> tuple[Nuclei, MultiPolygon | None]:
    """The nuclei of a truth annotation and the union of its regions (None when it has none).

    Regions are DSA rectangles and the closed polylines (DSA) or polygons (GeoJSON) labelled
    ``region_label`` (case-insensitive); everything else must be nuclei.
    """
    label = region_label.strip().lower()
    if is_geojson(path):
        features = _geojson_features(path)
        is_region = [f.get("geometry", {}).get("type") == "Polygon" and _class_name(f).lower() == label
                     for f in features]
        regions = [Polygon(np.array(f["geometry"]["coordinates"][0], float)[:, :2])
                   for f, r in zip(features, is_region) if r]
        nuclei = _nuclei_from_features([f for f, r in zip(features, is_region) if not r], path)
    else:
        elements = _annotation_elements(path)
        is_region = [e.get("type") == "rectangle" or (e.get("type") == "polyline" and e.get("closed")
                                                     and str(e.get("group") or e.get("label", {}).get("value", ""))
                                                     .lower() == label) for e in elements]
        regions = [_rectangle(e) if e["type"] == "rectangle" else Polygon(np.array(e["points"], float)[:, :2])
                   for e, r in zip(elements, is_region) if r]
        nuclei = _nuclei_from_elements([e for e, r in zip(elements, is_region) if not r], path)
    if any(len(p.exterior.coords) < 4 for p in regions):
        raise InputError(f"{Path(path).name}: a region has fewer than 3 vertices")
    return nuclei, _regions(regions)
