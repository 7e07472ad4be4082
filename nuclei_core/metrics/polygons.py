"""Instance segmentation metrics on contours (polygons) instead of label maps.

Areas and overlaps are exact polygon areas, so a region of any size is scored without rasterising
it, and overlapping outlines (which a label map cannot hold) are allowed. The formulas are those of
:mod:`nuclei_core.metrics.segmentation`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import shapely
from shapely import STRtree

from .segmentation import InstanceOverlap, aji_from_overlap, anatomy_from_overlap, panoptic_from_overlap


def as_polygons(contours: Sequence[np.ndarray]) -> np.ndarray:
    """Valid shapely polygons of (K, 2) x,y rings (self-crossing outlines are repaired; lines have no area)."""
    rings = [np.asarray(c, dtype=np.float64) for c in contours]
    polygons = [shapely.Polygon(r) if len(r) >= 3 else shapely.Polygon() for r in rings]
    return shapely.make_valid(np.array(polygons, dtype=object))


def polygon_overlap(pred: Sequence[np.ndarray], true: Sequence[np.ndarray]) -> InstanceOverlap:
    """Areas of the predicted and true outlines and the shared area of every overlapping pair."""
    pred_shapes, true_shapes = as_polygons(pred), as_polygons(true)
    pred_idx, true_idx = (STRtree(true_shapes).query(pred_shapes, predicate="intersects")
                          if len(pred_shapes) and len(true_shapes) else np.zeros((2, 0), dtype=np.intp))
    inter = shapely.area(shapely.intersection(pred_shapes[pred_idx], true_shapes[true_idx]))
    keep = inter > 0  # outlines that only touch share no area
    return InstanceOverlap(shapely.area(pred_shapes), shapely.area(true_shapes),
                           pred_idx[keep].astype(np.intp), true_idx[keep].astype(np.intp), inter[keep])


def polygon_dice(pred: Sequence[np.ndarray], true: Sequence[np.ndarray]) -> float:
    """Dice of the areas covered by the predicted and by the true outlines; 1.0 when both are empty."""
    pred_area = shapely.union_all(as_polygons(pred))
    true_area = shapely.union_all(as_polygons(true))
    total = pred_area.area + true_area.area
    return 1.0 if total == 0 else float(2 * pred_area.intersection(true_area).area / total)


def contour_scores(pred: Sequence[np.ndarray], true: Sequence[np.ndarray]) -> dict[str, float]:
    """Dice, AJI and panoptic quality (with DQ, SQ and the matched counts at IoU > 0.5) of two sets of outlines,
    and what became of the unmatched true nuclei (merged, split, missed) and how many outlines are spurious
    (:func:`~nuclei_core.metrics.segmentation.error_anatomy`)."""
    overlap = polygon_overlap(pred, true)
    anatomy = anatomy_from_overlap(overlap)
    return {"dice": polygon_dice(pred, true), "aji": aji_from_overlap(overlap),
            **panoptic_from_overlap(overlap),
            **{f"{kind}_nuclei": anatomy[kind] for kind in ("merged", "split", "missed")},
            "spurious_outlines": anatomy["spurious"]}
