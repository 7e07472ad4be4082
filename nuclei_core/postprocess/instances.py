"""Nucleus instances from two per-pixel maps: foreground and marker (the core of each nucleus).

Training targets come from an instance label map (:func:`instance_targets`); at inference the markers
seed a watershed inside the foreground (:func:`split_instances`), so touching nuclei come apart; an instance whose
inside still holds two distant centres can be cut once more (:func:`split_at_centres`); each instance becomes a
contour (:func:`label_map_to_nuclei`).
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage
from skimage.feature import peak_local_max
from skimage.segmentation import find_boundaries, relabel_sequential, watershed

from ..nuclei import Nuclei

MARKER_FRACTION = 0.5


def instance_targets(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Foreground and marker masks (float32) of an instance label map (0 = background).

    A nucleus's marker is its pixels at least ``MARKER_FRACTION`` of its largest depth away from its
    edge (depth = distance to the nearest pixel of another label or the background); nuclei too thin
    for that keep their deepest pixels.
    """
    labels = np.asarray(labels)
    foreground = labels > 0
    interior = foreground & ~find_boundaries(labels, mode="inner")
    depth = ndimage.distance_transform_edt(interior)
    ids = np.arange(1, int(labels.max()) + 1)
    deepest = np.zeros(int(labels.max()) + 1)
    if ids.size:
        deepest[1:] = ndimage.maximum(depth, labels, ids)
    cut = deepest[labels]
    marker = foreground & (depth >= MARKER_FRACTION * cut) & ((depth > 0) | (cut == 0))
    return foreground.astype(np.float32), marker.astype(np.float32)


def split_instances(foreground: np.ndarray, marker: np.ndarray, foreground_threshold: float = 0.5,
                    marker_threshold: float = 0.5, min_area: int = 10, split_distance: int = 0) -> np.ndarray:
    """Instance label map (int32, 0 = background) from foreground and marker probability maps.

    Markers (connected parts of ``marker > marker_threshold`` inside the foreground) seed a watershed
    over the inverted marker map, limited to ``foreground > foreground_threshold``; a foreground part
    without a marker is one nucleus of its own. With ``split_distance`` > 0 each instance is then cut at
    its centres (:func:`split_at_centres`). Instances under ``min_area`` px are dropped.
    """
    mask = foreground > foreground_threshold
    seeds, count = ndimage.label(mask & (marker > marker_threshold))
    labels = watershed(-marker, seeds, mask=mask) if count else np.zeros(mask.shape, dtype=np.int32)
    orphans, orphan_count = ndimage.label(mask & (labels == 0))
    labels = np.where(orphans > 0, orphans + count, labels).astype(np.int32)
    if split_distance > 0:
        labels = split_at_centres(labels, foreground, split_distance)
    areas = np.bincount(labels.ravel())
    small = areas < min_area
    small[0] = False
    labels[small[labels]] = 0
    return relabel_sequential(labels)[0]


def split_at_centres(labels: np.ndarray, foreground: np.ndarray, min_distance: int) -> np.ndarray:
    """``labels`` with every instance that holds two or more centres cut between them.

    A centre is a peak of the distance to the background (the image edge is not background), at least
    ``min_distance`` px from any deeper one; an instance with several is divided by a watershed of the inverted
    ``foreground`` probability seeded at its centres (touching nuclei the core map left as one); the others are
    kept as they are.
    """
    labels = np.asarray(labels, dtype=np.int32)
    inside = labels > 0
    if not inside.any():
        return labels
    depth = ndimage.distance_transform_edt(inside)
    centres = peak_local_max(depth, min_distance=int(min_distance), labels=labels, exclude_border=False)
    owner_of_centre = labels[tuple(centres.T)]
    owners, per_instance = np.unique(owner_of_centre, return_counts=True)
    boxes = ndimage.find_objects(labels)
    result, next_id = labels.copy(), int(labels.max()) + 1
    for owner in owners[per_instance >= 2]:
        box = boxes[owner - 1]
        own = labels[box] == owner
        seeds = np.zeros(own.shape, dtype=np.int32)
        mine = centres[owner_of_centre == owner] - [box[0].start, box[1].start]
        seeds[tuple(mine.T)] = np.arange(next_id, next_id + len(mine))
        result[box][own] = watershed(-foreground[box], seeds, mask=own)[own]
        next_id += len(mine)
    return result


def label_map_to_nuclei(labels: np.ndarray, scores: np.ndarray, classes: np.ndarray | None = None,
                        class_names: tuple[str, ...] = ("nucleus",),
                        measurements: dict[str, np.ndarray] | None = None) -> Nuclei:
    """One contour nucleus per instance of ``labels``: outer boundary polygon (pixel centres, x,y), centroid
    (pixel mean) and score (mean of ``scores`` over the instance); ``classes`` (indices into ``class_names``)
    and ``measurements`` give one value per instance id (id 1 first)."""
    ids = np.arange(1, int(labels.max()) + 1) if labels.size else np.zeros(0, dtype=int)
    if ids.size == 0:
        return Nuclei.empty(class_names)
    centroid_rc = np.array(ndimage.center_of_mass(np.ones_like(labels), labels, ids)).reshape(-1, 2)
    mean_scores = np.asarray(ndimage.mean(scores, labels, ids))
    contours = []
    for index, box in enumerate(ndimage.find_objects(labels)):
        if box is None:
            contours.append(None)
            continue
        crop = np.pad((labels[box] == index + 1).astype(np.uint8), 1)
        found, _ = cv2.findContours(crop, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        ring = max(found, key=cv2.contourArea)[:, 0, :].astype(np.float64)
        contours.append(ring + (box[1].start - 1, box[0].start - 1))
    keep = [i for i, c in enumerate(contours) if c is not None and len(c) >= 3]
    return Nuclei(centroids=centroid_rc[keep][:, ::-1], scores=mean_scores[keep],
                  contours=[contours[i] for i in keep], classes=None if classes is None else classes[keep],
                  class_names=class_names, measurements={k: v[keep] for k, v in (measurements or {}).items()})
