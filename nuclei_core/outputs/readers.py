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

from ..engine.region import MAX_COORDINATE
from ..errors import InputError
from ..nuclei import Nuclei

GEOJSON_SUFFIXES = (".geojson", ".geojson.gz", ".json.gz")
DEFAULT_REGION_LABEL = "ROI"


def is_geojson(path: str | Path) -> bool:
    """True when the file name says GeoJSON (else a DSA annotation)."""
    return str(path).lower().endswith(GEOJSON_SUFFIXES)


def _not_strict_json(constant: str) -> None:
    raise ValueError(f"{constant} is not a number in strict JSON")


def _load_json(path: str | Path) -> Any:
    """The file's JSON (gzipped when it ends with .gz): strict (no NaN or Infinity), else an InputError."""
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt") as handle:
            return json.load(handle, parse_constant=_not_strict_json)
    except FileNotFoundError:
        raise InputError(f"annotation file not found: {path}") from None
    except (OSError, EOFError, ValueError, RecursionError) as exc:  # EOFError: a truncated .gz
        raise InputError(f"{path.name} is not valid JSON: {str(exc).splitlines()[0]}") from None


def _finite_points(value: Any, minimum: int, what: str) -> np.ndarray:
    """``value`` as an (N, 2) array of finite x, y (a third coordinate is dropped), N >= ``minimum``."""
    try:
        points = np.array([[float(c) for c in point[:2]] for point in value], dtype=float)
    except (TypeError, ValueError, IndexError):
        raise InputError(f"{what} are not a list of [x, y] numbers") from None
    if points.size == 0 and minimum == 0:
        return points.reshape(0, 2)
    if points.ndim != 2 or points.shape[1] != 2 or len(points) < minimum:
        raise InputError(f"{what} need at least {minimum} [x, y] points")
    if not np.isfinite(points).all():
        raise InputError(f"{what} hold a coordinate that is not a finite number")
    if np.abs(points).max(initial=0) > MAX_COORDINATE:
        raise InputError(f"{what} lie far outside any slide (beyond {MAX_COORDINATE:g} px)")
    return points


def _finite_number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"{what} is not a finite number: {value!r}")
    return float(value)


def _numbers_only(values: dict) -> dict[str, float]:
    """The finite numeric entries of a measurement mapping (text and missing values are not measurements)."""
    return {k: float(v) for k, v in values.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


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


def _rectangle(element: dict, what: str) -> Polygon:
    """A DSA rectangle element (centre, width, height, rotation in radians) as a polygon."""
    cx, cy = _finite_points([element.get("center")], 1, f"{what} center")[0]
    half_w = _finite_number(element.get("width"), f"{what} width") / 2
    half_h = _finite_number(element.get("height"), f"{what} height") / 2
    if max(abs(half_w), abs(half_h)) > MAX_COORDINATE:
        raise InputError(f"{what} size lies far outside any slide (beyond {MAX_COORDINATE:g} px)")
    angle = _finite_number(element.get("rotation", 0) or 0, f"{what} rotation")
    c, s = math.cos(angle), math.sin(angle)
    corners = [(-half_w, -half_h), (half_w, -half_h), (half_w, half_h), (-half_w, half_h)]
    return Polygon([(cx + x * c - y * s, cy + x * s + y * c) for x, y in corners])


def _element_label(element: dict) -> str:
    """A DSA element's group, else its label's value (where HistomicsUI keeps a drawn shape's name)."""
    label = element.get("label") if isinstance(element.get("label"), dict) else {}
    return str(element.get("group") or label.get("value") or "")


def _regions(polygons: list[Polygon]) -> MultiPolygon | None:
    """The union of the region polygons, or None when there are none."""
    if not polygons:
        return None
    union = shapely.unary_union([shapely.make_valid(p) for p in polygons])
    return MultiPolygon([g for g in getattr(union, "geoms", [union]) if isinstance(g, Polygon)])


def _annotation_elements(path: str | Path) -> list[dict]:
    payload = _load_json(path)
    documents = payload if isinstance(payload, list) else [payload]
    if not documents or not all(isinstance(d, dict) and isinstance(d.get("elements"), list) for d in documents):
        raise InputError(f"{Path(path).name} is not a large_image annotation (a document with a list of elements)")
    return [e for d in documents for e in d["elements"]]


def _nuclei_from_elements(elements: list[dict], path: str | Path) -> Nuclei:
    name = Path(path).name
    usable = [e for e in elements if isinstance(e, dict) and (
        e.get("type") == "point" or (e.get("type") == "polyline" and e.get("closed")))]
    if len(usable) != len(elements):
        raise InputError(f"{name} is not a large_image annotation of points or closed polylines")
    is_contour = _shape_kind({"contour" if e["type"] == "polyline" else "point" for e in usable}, path)
    centroids, contours, labels, scores, measurements = [], [], [], [], []
    for number, element in enumerate(usable, start=1):
        what = f"{name}: element {number}'s"
        if element["type"] == "polyline":
            ring = _finite_points(element.get("points"), 3, f"{what} points")
            contours.append(ring)
            centroids.append(ring.mean(axis=0))
        else:
            centroids.append(_finite_points([element.get("center")], 1, f"{what} center")[0])
        user = element.get("user") if isinstance(element.get("user"), dict) else {}
        scores.append(_finite_number(user.get("score", 1.0), f"{what} score"))
        measurements.append(_numbers_only({k: v for k, v in user.items() if k != "score"}))
        group = element.get("group")
        labels.append(group if isinstance(group, str) and group else "nucleus")
    return _table(labels, centroids, scores, contours if is_contour else None, measurements)


def _geojson_features(path: str | Path) -> list[dict]:
    payload = _load_json(path)
    features = payload.get("features") if isinstance(payload, dict) else payload
    if not isinstance(features, list) or not all(isinstance(f, dict) for f in features):
        raise InputError(f"{Path(path).name} is not a GeoJSON feature collection")
    return features


def _class_name(feature: dict) -> str:
    properties = feature.get("properties") if isinstance(feature.get("properties"), dict) else {}
    classification = properties.get("classification") if isinstance(properties.get("classification"), dict) else {}
    name = classification.get("name")
    return name if isinstance(name, str) and name else "nucleus"


def _geometry_type(feature: dict) -> Any:
    geometry = feature.get("geometry")
    return geometry.get("type") if isinstance(geometry, dict) else None


def _measurements(properties: dict, what: str) -> dict[str, float]:
    """A feature's numeric measurements: QuPath 0.4's mapping, or the list of name/value pairs before it."""
    values = properties.get("measurements") or {}
    if isinstance(values, list):
        try:
            values = {m["name"]: m["value"] for m in values}
        except (TypeError, KeyError):
            raise InputError(f"{what} measurements are not name/value pairs") from None
    if not isinstance(values, dict):
        raise InputError(f"{what} measurements are not a mapping")
    return _numbers_only(values)


def _nuclei_from_features(features: list[dict], path: str | Path) -> Nuclei:
    name = Path(path).name
    kinds = {"Point": "point", "MultiPoint": "point", "Polygon": "contour"}
    if any(_geometry_type(f) not in kinds for f in features):
        raise InputError(f"{name} is not GeoJSON of Point, MultiPoint or Polygon features")
    is_contour = _shape_kind({kinds[_geometry_type(f)] for f in features}, path)
    centroids, contours, labels, measurements = [], [], [], []
    for number, feature in enumerate(features, start=1):
        what = f"{name}: feature {number}'s"
        geometry = feature["geometry"]
        coordinates = geometry.get("coordinates")
        properties = feature.get("properties") if isinstance(feature.get("properties"), dict) else {}
        values = _measurements(properties, what)
        if is_contour:
            if not isinstance(coordinates, list) or not coordinates:
                raise InputError(f"{what} coordinates are not a polygon")
            ring = _finite_points(coordinates[0], 3, f"{what} coordinates")
            ring = ring[:-1] if len(ring) > 3 and np.array_equal(ring[0], ring[-1]) else ring
            contours.append(ring)
            shapes = [ring.mean(axis=0)]
        else:  # QuPath's point tool writes one MultiPoint per class
            listed = [coordinates] if geometry["type"] == "Point" else coordinates
            shapes = list(_finite_points(listed, 1 if geometry["type"] == "Point" else 0, f"{what} coordinates"))
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


def check_inside(nuclei: Nuclei, width: int, height: int, source: str | Path) -> None:
    """Every nucleus of ``source`` (centre and outline) lies on the ``width`` x ``height`` slide; else an
    InputError naming how many do not (an annotation of another slide, or at another magnification)."""
    def off(points: np.ndarray) -> np.ndarray:
        return (points[:, 0] < 0) | (points[:, 0] > width) | (points[:, 1] < 0) | (points[:, 1] > height)

    outside = off(nuclei.centroids)
    if nuclei.contours is not None:
        outside |= np.array([off(ring).any() for ring in nuclei.contours], dtype=bool)
    if outside.any():
        raise InputError(f"{int(outside.sum())} of {len(nuclei)} nuclei of {Path(source).name} lie outside the "
                         f"{width} x {height} slide: is it this slide's annotation, in full-resolution pixels?")


def read_nuclei_and_regions(path: str | Path,
                            region_label: str = DEFAULT_REGION_LABEL) -> tuple[Nuclei, MultiPolygon | None]:
    """The nuclei of a truth annotation and the union of its regions (None when it has none).

    Regions are DSA rectangles and the closed polylines (DSA) or polygons (GeoJSON) labelled
    ``region_label`` (case-insensitive); everything else must be nuclei.
    """
    label = region_label.strip().lower()
    if is_geojson(path):
        features = _geojson_features(path)
        is_region = [_geometry_type(f) == "Polygon" and _class_name(f).lower() == label for f in features]
        regions = [Polygon(_finite_points((f["geometry"].get("coordinates") or [None])[0], 3,
                                          f"{Path(path).name}: region feature {i}'s coordinates"))
                   for i, (f, r) in enumerate(zip(features, is_region), start=1) if r]
        nuclei = _nuclei_from_features([f for f, r in zip(features, is_region) if not r], path)
    else:
        elements = _annotation_elements(path)
        is_region = [isinstance(e, dict) and (e.get("type") == "rectangle" or (
            e.get("type") == "polyline" and e.get("closed") and _element_label(e).lower() == label))
            for e in elements]
        regions = [_rectangle(e, f"{Path(path).name}: region element {i}'s") if e["type"] == "rectangle" else
                   Polygon(_finite_points(e.get("points"), 3, f"{Path(path).name}: region element {i}'s points"))
                   for i, (e, r) in enumerate(zip(elements, is_region), start=1) if r]
        nuclei = _nuclei_from_elements([e for e, r in zip(elements, is_region) if not r], path)
    if any(len(p.exterior.coords) < 4 for p in regions):
        raise InputError(f"{Path(path).name}: a region has fewer than 3 vertices")
    return nuclei, _regions(regions)
