"""Read nuclei back from a DSA annotation file or a QuPath GeoJSON file (the inverse of the writers).

A pathologist's truth annotation may also hold the regions where it is complete: DSA rectangles, and
closed polylines / polygons whose group (DSA) or classification (QuPath) is the region label. The density
maps that our CLIs write beside the nuclei (``griddata`` and ``heatmap`` elements) are skipped.

Files are streamed with ijson: each element or feature becomes compact rows as soon as it has been read, so a
whole slide's million nuclei take about the memory of their Nuclei table, not of their JSON. The errors are
those of reading the whole file first: invalid JSON, then a wrong layout, then the first bad region, an
element or feature of another kind, points mixed with contours, then the first bad nucleus.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon

from ..engine.region import MAX_COORDINATE
from ..errors import InputError
from ..nuclei import Nuclei
from .json_reading import stream_json, take_complete

GEOJSON_SUFFIXES = (".geojson", ".geojson.gz", ".json.gz")
DEFAULT_REGION_LABEL = "ROI"
DENSITY_TYPES = ("griddata", "heatmap")  # large_image elements of density maps: neither nuclei nor regions

_PLAIN_NUMBERS = (int, float)  # the types ijson gives JSON numbers (a bool is neither)
# The errors a read can meet, in the order the whole-file reader raised them (invalid JSON comes first).
_LAYOUT, _REGION, _KIND, _MIXED, _NUCLEUS = range(5)


def is_geojson(path: str | Path) -> bool:
    """True when the file name says GeoJSON (else a DSA annotation)."""
    return str(path).lower().endswith(GEOJSON_SUFFIXES)


# --- Values ----------------------------------------------------------------------------------------------


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


def _plain_points(value: Any, minimum: int) -> np.ndarray | None:
    """``value`` as (N, 2) floats when it is N >= ``minimum`` (and >= 1) [x, y, ...] lists of plain numbers within
    MAX_COORDINATE, checked in bulk (the usual case); None for anything else, which _finite_points sorts out."""
    if type(value) is not list or len(value) < max(minimum, 1):
        return None
    try:
        numbers = np.array(value)
    except ValueError:  # lists of different lengths, or nested too deeply
        return None
    if numbers.ndim != 2 or numbers.shape[1] < 2 or numbers.dtype.kind not in "iuf":
        return None
    points = numbers[:, :2].astype(np.float64)
    return points if -MAX_COORDINATE <= points.min() and points.max() <= MAX_COORDINATE else None  # NaN fails


def _points(value: Any, minimum: int, what: str) -> np.ndarray:
    """As :func:`_finite_points`, quickly where the points are plain."""
    points = _plain_points(value, minimum)
    return _finite_points(value, minimum, what) if points is None else points


def _xy(value: Any, what: str) -> tuple[float, float]:
    """``value``, an [x, y(, z)] list, as a finite x, y on the slide's scale (else an InputError naming ``what``)."""
    if type(value) is list and len(value) >= 2:
        x, y = value[0], value[1]
        if (type(x) in _PLAIN_NUMBERS and type(y) in _PLAIN_NUMBERS  # the usual case, checked without numpy
                and -MAX_COORDINATE <= x <= MAX_COORDINATE and -MAX_COORDINATE <= y <= MAX_COORDINATE):
            return float(x), float(y)
    x, y = _finite_points([value], 1, what)[0]
    return float(x), float(y)


def _finite_number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"{what} is not a finite number: {value!r}")
    return float(value)


def _numbers_only(values: dict) -> dict[str, float]:
    """The finite numeric entries of a measurement mapping (text and missing values are not measurements)."""
    return {k: float(v) for k, v in values.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


def _rectangle(element: dict) -> Polygon:
    """A DSA rectangle element (centre, width, height, rotation in radians) as a polygon."""
    cx, cy = _finite_points([element.get("center")], 1, "center")[0]
    half_w = _finite_number(element.get("width"), "width") / 2
    half_h = _finite_number(element.get("height"), "height") / 2
    if max(abs(half_w), abs(half_h)) > MAX_COORDINATE:
        raise InputError(f"size lies far outside any slide (beyond {MAX_COORDINATE:g} px)")
    angle = _finite_number(element.get("rotation", 0) or 0, "rotation")
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


def _class_name(feature: dict) -> str:
    properties = feature.get("properties") if isinstance(feature.get("properties"), dict) else {}
    classification = properties.get("classification") if isinstance(properties.get("classification"), dict) else {}
    name = classification.get("name")
    return name if isinstance(name, str) and name else "nucleus"


def _geometry_type(feature: dict) -> Any:
    geometry = feature.get("geometry")
    return geometry.get("type") if isinstance(geometry, dict) else None


def _measurements(properties: dict) -> dict[str, float]:
    """A feature's numeric measurements: QuPath 0.4's mapping, or the list of name/value pairs before it."""
    values = properties.get("measurements") or {}
    if isinstance(values, list):
        try:
            values = {m["name"]: m["value"] for m in values}
        except (TypeError, KeyError):
            raise InputError("measurements are not name/value pairs") from None
    if not isinstance(values, dict):
        raise InputError("measurements are not a mapping")
    return _numbers_only(values)


# --- Nuclei and regions ----------------------------------------------------------------------------------


def _ring_means(rings: list[np.ndarray], batch: int = 4096) -> np.ndarray:
    """The mean vertex of every ring, a batch of rings at a time."""
    means = np.empty((len(rings), 2))
    for start in range(0, len(rings), batch):
        chosen = rings[start:start + batch]
        lengths = np.array([len(ring) for ring in chosen])
        sums = np.add.reduceat(np.concatenate(chosen), np.cumsum(lengths) - lengths)
        means[start:start + len(chosen)] = sums / lengths[:, None]
    return means


class _Rows:
    """The nuclei read so far, in compact columns."""

    def __init__(self) -> None:
        self.centroids = array("d")  # of points (an outline's centroid is its mean vertex)
        self.contours: list[np.ndarray] = []
        self.scores = array("d")
        self.classes = array("i")
        self.class_names: dict[str, int] = {}  # in order of first appearance
        self.measured: dict[str, tuple[array, array]] = {}  # name: the rows that have it, its values there

    def add(self, shape: tuple[float, float] | np.ndarray, label: str, score: float,
            measurements: dict[str, float]) -> None:
        """A nucleus: a point (x, y) or an outline ((N, 2) array)."""
        if isinstance(shape, tuple):
            self.centroids.extend(shape)
        else:
            self.contours.append(shape)
        row = len(self.scores)
        self.scores.append(score)
        self.classes.append(self.class_names.setdefault(label, len(self.class_names)))
        for name, value in measurements.items():
            rows, values = self.measured.get(name) or self.measured.setdefault(name, (array("q"), array("d")))
            rows.append(row)
            values.append(value)

    def nuclei(self) -> Nuclei:
        """The table (NaN where a nucleus lacks a measurement); its class names are the labels in order."""
        count = len(self.scores)
        measurements = {}
        for name in sorted(self.measured):
            rows, values = self.measured[name]
            measurements[name] = np.full(count, np.nan)
            measurements[name][np.array(rows)] = np.array(values)
        outlines = bool(self.contours)
        return Nuclei(_ring_means(self.contours) if outlines else np.array(self.centroids), np.array(self.scores),
                      contours=self.contours if outlines else None, classes=np.array(self.classes),
                      class_names=tuple(self.class_names) or ("nucleus",), measurements=measurements)


class _Reading:
    """One read of a file, entry (element or feature) by entry: its nuclei, its regions where a region label is
    given, and the error to raise at the end (of the earliest stage met, and of that stage the first)."""

    noun = "entry"

    def __init__(self, path: Path, region_label: str | None) -> None:
        self.name = path.name
        self.region_label = region_label
        self.rows = _Rows()
        self.regions: list[Polygon] = []
        self.kinds: set[str] = set()
        self.entries = 0  # entries read, regions included (a region's number)
        self.nuclei_entries = 0  # entries of nuclei read (a nucleus entry's number)
        self.error: tuple[int, str] | None = None

    def collect(self, value: Any, complete: bool) -> None:
        """Read the complete entries of the file's ``value`` as built so far (see :func:`stream_json`)."""
        raise NotImplementedError

    def add(self, entry: dict) -> None:
        """Add a nucleus entry's nuclei to the rows; an InputError names the part of it that is wrong."""
        raise NotImplementedError

    def fail(self, stage: int, message: str) -> None:
        if self.is_open(stage):
            self.error = (stage, message)

    def is_open(self, stage: int) -> bool:
        """Whether an error of ``stage`` could still be the one raised."""
        return self.error is None or stage < self.error[0]

    def region(self, entry: dict, polygon: Callable[[dict], Polygon]) -> None:
        if self.is_open(_REGION):
            try:
                self.regions.append(polygon(entry))
            except InputError as error:
                self.fail(_REGION, f"{self.name}: region {self.noun} {self.entries}'s {error}")

    def nucleus(self, entry: dict, kind: str) -> None:
        """A nucleus entry of ``kind``, "point" or "contour"."""
        if kind not in self.kinds:
            self.kinds.add(kind)
            if len(self.kinds) > 1:
                self.fail(_MIXED, f"{self.name} mixes points and contours; convert them separately")
        if self.is_open(_NUCLEUS):
            try:
                self.add(entry)
            except InputError as error:
                self.fail(_NUCLEUS, f"{self.name}: {self.noun} {self.nuclei_entries}'s {error}")

    def result(self) -> tuple[Nuclei, MultiPolygon | None]:
        """The nuclei and the union of the regions, or the error."""
        if self.error is not None:
            raise InputError(self.error[1])
        if any(len(p.exterior.coords) < 4 for p in self.regions):
            raise InputError(f"{self.name}: a region has fewer than 3 vertices")
        return self.rows.nuclei(), _regions(self.regions)


class _Annotation(_Reading):
    """A large_image annotation: one document ``{"name": ..., "elements": [...]}`` or a list of them."""

    noun = "element"

    def __init__(self, path: Path, region_label: str | None) -> None:
        super().__init__(path, region_label)
        self.documents = 0
        self.not_annotation = f"{self.name} is not a large_image annotation (a document with a list of elements)"

    def collect(self, value: Any, complete: bool) -> None:
        if isinstance(value, list):  # several documents
            for document in take_complete(value, complete):
                self.document(document)
            building = value[-1] if value else None
        elif complete:
            self.document(value)
            building = None
        else:
            building = value
        if isinstance(building, dict) and isinstance(building.get("elements"), list):
            self.elements(building["elements"], complete=False)
        if complete and not self.documents:
            self.fail(_LAYOUT, self.not_annotation)

    def document(self, document: Any) -> None:
        self.documents += 1
        if isinstance(document, dict) and isinstance(document.get("elements"), list):
            self.elements(document["elements"], complete=True)
        else:
            self.fail(_LAYOUT, self.not_annotation)

    def elements(self, elements: list, complete: bool) -> None:
        for element in take_complete(elements, complete):
            self.element(element)
        building = elements[-1] if elements else None
        if isinstance(building, dict) and building.get("type") in DENSITY_TYPES:
            for value in building.values():  # a density map's values are not kept while it is read
                if isinstance(value, list):
                    value.clear()

    def element(self, element: Any) -> None:
        kind = element.get("type") if isinstance(element, dict) else None
        if kind in DENSITY_TYPES:
            return
        self.entries += 1
        if self.region_label is not None and _is_dsa_region(element, self.region_label):
            self.region(element, _dsa_region)
            return
        self.nuclei_entries += 1
        if kind == "point":
            self.nucleus(element, "point")
        elif kind == "polyline" and element.get("closed"):
            self.nucleus(element, "contour")
        else:
            self.fail(_KIND, f"{self.name} is not a large_image annotation of points or closed polylines")

    def add(self, element: dict) -> None:
        if element["type"] == "polyline":
            shape: tuple[float, float] | np.ndarray = _points(element.get("points"), 3, "points")
        else:
            shape = _xy(element.get("center"), "center")
        user = element.get("user") if isinstance(element.get("user"), dict) else {}
        score = _finite_number(user.get("score", 1.0), "score")
        measurements = _numbers_only(user)
        measurements.pop("score", None)
        group = element.get("group")
        self.rows.add(shape, group if isinstance(group, str) and group else "nucleus", score, measurements)


def _is_dsa_region(element: Any, label: str) -> bool:
    """A rectangle, or a closed polyline labelled ``label`` (lower case)."""
    return isinstance(element, dict) and (element.get("type") == "rectangle" or (
        element.get("type") == "polyline" and element.get("closed") and _element_label(element).lower() == label))


def _dsa_region(element: dict) -> Polygon:
    if element["type"] == "rectangle":
        return _rectangle(element)
    return Polygon(_finite_points(element.get("points"), 3, "points"))


class _GeoJSON(_Reading):
    """A GeoJSON FeatureCollection, or a bare list of features."""

    noun = "feature"
    kinds_of_geometry = {"Point": "point", "MultiPoint": "point", "Polygon": "contour"}

    def collect(self, value: Any, complete: bool) -> None:
        features = value.get("features") if isinstance(value, dict) else value
        if isinstance(features, list):
            for feature in take_complete(features, complete):
                self.feature(feature)
        elif complete:
            self.fail(_LAYOUT, f"{self.name} is not a GeoJSON feature collection")

    def feature(self, feature: Any) -> None:
        self.entries += 1
        if not isinstance(feature, dict):
            self.fail(_LAYOUT, f"{self.name} is not a GeoJSON feature collection")
            return
        geometry_type = _geometry_type(feature)
        if (self.region_label is not None and geometry_type == "Polygon"
                and _class_name(feature).lower() == self.region_label):
            self.region(feature, _geojson_region)
            return
        self.nuclei_entries += 1
        kind = self.kinds_of_geometry.get(geometry_type) if isinstance(geometry_type, str) else None
        if kind is None:
            self.fail(_KIND, f"{self.name} is not GeoJSON of Point, MultiPoint or Polygon features")
        else:
            self.nucleus(feature, kind)

    def add(self, feature: dict) -> None:
        geometry = feature["geometry"]
        coordinates = geometry.get("coordinates")
        properties = feature.get("properties") if isinstance(feature.get("properties"), dict) else {}
        measurements = _measurements(properties)
        score = measurements.pop("Score", 1.0)
        label = _class_name(feature)
        if geometry["type"] == "Polygon":
            if not isinstance(coordinates, list) or not coordinates:
                raise InputError("coordinates are not a polygon")
            ring = _points(coordinates[0], 3, "coordinates")
            closed = len(ring) > 3 and ring[0].tolist() == ring[-1].tolist()
            self.rows.add(ring[:-1] if closed else ring, label, score, measurements)
        elif geometry["type"] == "Point":
            self.rows.add(_xy(coordinates, "coordinates"), label, score, measurements)
        else:  # QuPath's point tool writes one MultiPoint per class
            for x, y in _points(coordinates, 0, "coordinates").tolist():
                self.rows.add((x, y), label, score, measurements)


def _geojson_region(feature: dict) -> Polygon:
    coordinates = feature["geometry"].get("coordinates")
    ring = coordinates[0] if isinstance(coordinates, list) and coordinates else None
    return Polygon(_finite_points(ring, 3, "coordinates"))


def _read(reading: type[_Reading], path: str | Path,
          region_label: str | None = None) -> tuple[Nuclei, MultiPolygon | None]:
    """The nuclei and regions (where ``region_label`` is given) of ``path`` read as ``reading`` says."""
    state = reading(Path(path), region_label)
    stream_json(Path(path), state.collect)
    return state.result()


def read_annotation(path: str | Path) -> Nuclei:
    """Points and closed polylines of a large_image annotation file (one document or a list of them); density
    maps are skipped."""
    return _read(_Annotation, path)[0]


def read_geojson(path: str | Path) -> Nuclei:
    """Point, MultiPoint and Polygon features of a GeoJSON file (QuPath export or ours), ``.gz`` included."""
    return _read(_GeoJSON, path)[0]


def read_nuclei(path: str | Path) -> Nuclei:
    """Nuclei from either format, chosen by the file name."""
    return read_geojson(path) if is_geojson(path) else read_annotation(path)


def read_nuclei_and_regions(path: str | Path,
                            region_label: str = DEFAULT_REGION_LABEL) -> tuple[Nuclei, MultiPolygon | None]:
    """The nuclei of a truth annotation and the union of its regions (None when it has none).

    Regions are DSA rectangles and the closed polylines (DSA) or polygons (GeoJSON) labelled
    ``region_label`` (case-insensitive); everything else must be nuclei (or, in a DSA file, density maps).
    """
    return _read(_GeoJSON if is_geojson(path) else _Annotation, path, region_label.strip().lower())
