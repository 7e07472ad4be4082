"""HoVer-Net post-processing (Graham et al. 2019): nuclear-pixel probability + horizontal/vertical distance
maps -> markers -> watershed -> instances, each with the majority class of the class map.

Training targets come from an instance label map (:func:`distance_targets`): for each nucleus, every pixel's
horizontal and vertical offset from the nucleus's centre of mass, scaled to [-1, 1] within the nucleus.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage
from skimage.segmentation import relabel_sequential, watershed

SOBEL_SIZE = 21  # HoVer-Net's kernel: gradients over about a nucleus radius at 40x
# the Sobel kernel's response to a slope of 1 per pixel, so that gradients come out in distance per pixel
SOBEL_GAIN = float(cv2.Sobel(np.tile(np.arange(2 * SOBEL_SIZE, dtype=np.float32), (2 * SOBEL_SIZE, 1)), cv2.CV_32F,
                             1, 0, ksize=SOBEL_SIZE)[SOBEL_SIZE, SOBEL_SIZE])
EDGE_RADIUS = 8.0  # px: inside a nucleus of this radius (16 px across at 40x) the edge map is 0


def distance_targets(labels: np.ndarray) -> np.ndarray:
    """(2, H, W) float32: horizontal then vertical offset of each nuclear pixel from its nucleus's centre of
    mass, divided by the largest such offset in that nucleus (0 on background)."""
    labels = np.asarray(labels)
    ids = np.unique(labels[labels > 0])  # a crop holds only some of the ids
    targets = np.zeros((2, *labels.shape), np.float32)
    if ids.size == 0:
        return targets
    centres = np.zeros((int(ids.max()) + 1, 2))
    centres[ids] = np.array(ndimage.center_of_mass(np.ones_like(labels), labels, ids)).reshape(-1, 2)
    rows, columns = np.indices(labels.shape, dtype=np.float64)
    inside = labels > 0
    for axis, coordinate in enumerate((columns, rows)):  # horizontal (x) first
        offset = np.where(inside, coordinate - centres[labels, 1 - axis], 0.0)
        scale = np.zeros(len(centres))
        scale[ids] = ndimage.maximum(np.abs(offset), labels, ids)
        targets[axis] = np.divide(offset, scale[labels], out=np.zeros_like(offset), where=scale[labels] > 0)
    return targets


def hover_instances(foreground: np.ndarray, horizontal: np.ndarray, vertical: np.ndarray,
                    foreground_threshold: float = 0.5, edge_threshold: float = 0.6, min_area: int = 10) -> np.ndarray:
    """Instance label map (int32, 0 = background) from the nuclear-pixel probability and the distance maps.

    Where the distance maps fall (signed Sobel gradients) lie the borders between nuclei: the edge map is
    0.5 - slope x ``EDGE_RADIUS`` clipped to [0, 1], the slope being the rise of the maps per pixel (in units of
    the whole -1..1 range), so 0 inside a nucleus of ``EDGE_RADIUS`` px, 0.5 where the maps are flat and 1 where
    they fall steeply. Unlike HoVer-Net's per-tile min-max scaling, this keeps a threshold's meaning the same on
    every tile, whatever else the tile holds. The foreground below ``edge_threshold`` gives one marker per
    nucleus, which seeds a watershed over the smoothed edge map inside the foreground. Instances under
    ``min_area`` px are dropped.
    """
    mask = foreground > foreground_threshold
    mask = ndimage.binary_fill_holes(mask)
    if not mask.any():
        return np.zeros(mask.shape, np.int32)
    edges = []
    for distance, dx, dy in ((horizontal, 1, 0), (vertical, 0, 1)):
        # inside a nucleus a distance map rises steadily; between two it falls from +1 to -1
        rise = cv2.Sobel((distance.astype(np.float32) + 1) / 2, cv2.CV_32F, dx, dy, ksize=SOBEL_SIZE) / SOBEL_GAIN
        edges.append(np.clip(0.5 - rise * EDGE_RADIUS, 0, 1))
    edge = np.maximum(*edges) * mask
    markers = mask & (edge < edge_threshold)
    markers = ndimage.binary_opening(markers, structure=np.ones((3, 3)))
    seeds, _ = ndimage.label(markers)
    landscape = cv2.GaussianBlur(edge.astype(np.float32), (3, 3), 0)
    labels = watershed(landscape, seeds, mask=mask)
    orphans, _ = ndimage.label(mask & (labels == 0))  # a foreground part without a marker
    labels = np.where(orphans > 0, orphans + labels.max(), labels).astype(np.int32)
    areas = np.bincount(labels.ravel())
    small = areas < min_area
    small[0] = False
    labels[small[labels]] = 0
    return relabel_sequential(labels)[0].astype(np.int32)


def instance_types(labels: np.ndarray, type_probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each instance's class (1..K, the majority of its pixels' most likely non-background class) and the mean
    probability of that class over the instance."""
    count = int(labels.max())
    if count == 0:
        return np.zeros(0, int), np.zeros(0)
    ids = np.arange(1, count + 1)
    pixel_type = type_probabilities[1:].argmax(axis=0) + 1
    votes = np.stack([ndimage.sum(pixel_type == k, labels, ids) for k in range(1, type_probabilities.shape[0])], 1)
    types = votes.argmax(axis=1) + 1
    means = np.stack([ndimage.mean(type_probabilities[k], labels, ids) for k in range(type_probabilities.shape[0])], 1)
    return types, means[np.arange(count), types]
