"""The slide summary (nuclei per class, per mm² of analysed tissue, per region polygon; shape statistics of
outlined nuclei) and the per-nucleus table, for the annotation's attributes, a JSON/CSV file and Girder metadata."""

from __future__ import annotations

import csv
import gzip
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from shapely.geometry import MultiPolygon

from ..engine.region import contains_points
from ..engine.tiling import TilePlan, region_mask
from ..nuclei import Nuclei

STATISTICS = ("mean", "median", "std", "p5", "p95")


def _mm2(base_pixels: float, microns_per_pixel: float) -> float:
    return base_pixels * microns_per_pixel ** 2 / 1e6


def _per_mm2(count: int, mm2: float) -> float | None:
    return round(count / mm2, 2) if mm2 > 0 else None  # undefined without tissue: null, never NaN


def _class_counts(nuclei: Nuclei, chosen: np.ndarray, tissue_mm2: float) -> dict[str, dict[str, Any]]:
    labels = np.array(nuclei.class_labels(), dtype=object)[chosen]
    total = len(labels)
    return {name: {"nuclei": int(n), "fraction": round(n / total, 4) if total else None,
                   "per_mm2_tissue": _per_mm2(int(n), tissue_mm2)}
            for name in nuclei.class_names for n in [int((labels == name).sum())]}


def _statistics(values: np.ndarray) -> dict[str, float] | None:
    values = values[np.isfinite(values)]
    if not len(values):
        return None
    p5, median, p95 = np.percentile(values, [5, 50, 95])
    return {"mean": round(float(values.mean()), 4), "median": round(float(median), 4),
            "std": round(float(values.std()), 4), "p5": round(float(p5), 4), "p95": round(float(p95), 4)}


def _measurement_statistics(nuclei: Nuclei) -> dict[str, dict[str, Any]]:
    labels = np.array(nuclei.class_labels(), dtype=object)
    return {name: {"all": _statistics(values),
                   "classes": {c: _statistics(values[labels == c]) for c in nuclei.class_names}
                   if len(nuclei.class_names) > 1 else {}}
            for name, values in nuclei.measurements.items()}


def _scope(nuclei: Nuclei, chosen: np.ndarray, area_mm2: float, tissue_mm2: float) -> dict[str, Any]:
    count = int(chosen.sum())
    return {"nuclei": count, "analysed_mm2": round(area_mm2, 6), "tissue_mm2": round(tissue_mm2, 6),
            "per_mm2_tissue": _per_mm2(count, tissue_mm2), "classes": _class_counts(nuclei, chosen, tissue_mm2)}


def slide_summary(nuclei: Nuclei, plan: TilePlan, region: MultiPolygon | None,
                  microns_per_pixel: float) -> dict[str, Any]:
    """Counts and densities for the whole analysed part and for each polygon of ``region``."""
    to_mm2 = 1 / plan.mask_scale ** 2

    def areas(mask: np.ndarray) -> tuple[float, float]:
        return (_mm2(float((plan.analysed & mask).sum()) * to_mm2, microns_per_pixel),
                _mm2(float((plan.tissue & mask).sum()) * to_mm2, microns_per_pixel))

    everything = np.ones(plan.analysed.shape, bool)
    summary = {**_scope(nuclei, np.ones(len(nuclei), bool), *areas(everything)), "microns_per_pixel":
               round(microns_per_pixel, 6), "measurements": _measurement_statistics(nuclei), "regions": []}
    for number, polygon in enumerate(region.geoms if region is not None and len(region.geoms) > 1 else [], 1):
        inside = contains_points(MultiPolygon([polygon]), nuclei.centroids)
        mask = region_mask(MultiPolygon([polygon]), plan.analysed.shape, plan.mask_scale)
        summary["regions"].append({"region": number, **_scope(nuclei, inside, *areas(mask))})
    return summary


def summary_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per scope (the slide, each region) and class (``all`` first): the CSV form of the summary."""
    scopes = [("slide", summary), *((f"region {r['region']}", r) for r in summary["regions"])]
    rows = []
    for scope, values in scopes:
        common = {"scope": scope, "analysed_mm2": values["analysed_mm2"], "tissue_mm2": values["tissue_mm2"]}
        rows.append({**common, "class": "all", "nuclei": values["nuclei"], "fraction": 1.0 if values["nuclei"] else None,
                     "per_mm2_tissue": values["per_mm2_tissue"]})
        rows += [{**common, "class": name, **counts} for name, counts in values["classes"].items()]
    for row in (r for r in rows if r["scope"] == "slide"):  # shape statistics are for the whole slide
        for measurement, statistics in summary["measurements"].items():
            scoped = statistics["all"] if row["class"] == "all" else statistics["classes"].get(row["class"])
            row.update({f"{measurement} {k}": v for k, v in (scoped or {}).items()})
    return rows


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, columns, restval="")
        writer.writeheader()
        writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)


def write_summary(path: Path, summary: dict[str, Any], as_csv: bool) -> None:
    """The summary as indented strict JSON, or as CSV rows (:func:`summary_rows`) when ``as_csv``."""
    if as_csv:
        _write_csv(path, summary_rows(summary))
    else:
        path.write_text(json.dumps(summary, indent=2, ensure_ascii=False, allow_nan=False) + "\n")


def write_nucleus_table(path: Path, nuclei: Nuclei, compress: bool) -> None:
    """One CSV row per nucleus: x, y (base px), class, score and every measurement (empty where missing)."""
    labels = nuclei.class_labels()
    names = list(nuclei.measurements)
    columns = np.column_stack([nuclei.centroids.round(2), nuclei.scores.astype(np.float64).round(4),
                               *(np.round(nuclei.measurements[n], 4) for n in names)]) if len(nuclei) else None
    opener = gzip.open if compress else open
    with opener(path, "wt", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["x", "y", "class", "score", *names])
        for start in range(0, len(nuclei), 10_000):
            block = columns[start:start + 10_000].tolist()
            writer.writerows([row[0], row[1], labels[start + i], row[2], *("" if math.isnan(v) else v for v in row[3:])]
                             for i, row in enumerate(block))
