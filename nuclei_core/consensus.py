"""Where several methods agree: pairwise F1 between their nuclei, and the consensus nuclei that at least k of
them found (one-to-one within a radius)."""

from __future__ import annotations

import numpy as np

from .metrics.detection import detection_scores, match_points
from .nuclei import Nuclei

AGREEMENT = "Agreeing methods"


def pairwise_f1(centroids: dict[str, np.ndarray], radius: float) -> dict[str, dict[str, float]]:
    """F1 of every method's nuclei against every other's (symmetric; 1 on the diagonal)."""
    names = list(centroids)
    return {a: {b: detection_scores(centroids[a], centroids[b], radius).f1 for b in names} for a in names}


def consensus(centroids: list[np.ndarray], radius: float, min_agreement: int) -> Nuclei:
    """Nuclei found by at least ``min_agreement`` of the methods.

    The methods' nuclei are gathered one method at a time: each is matched one-to-one (within ``radius``) to
    the running mean position of the groups so far, or starts a group of its own, so no group holds two nuclei
    of one method. A kept group is a nucleus at its members' mean position, scored by the share of methods
    that found it, with their count as the measurement ``Agreeing methods``.
    """
    sums, counts = np.zeros((0, 2)), np.zeros(0, int)
    for points in centroids:
        points = np.asarray(points, float).reshape(-1, 2)
        group, member = match_points(sums / np.maximum(counts, 1)[:, None], points, radius)
        sums[group] += points[member]
        counts[group] += 1
        alone = np.setdiff1d(np.arange(len(points)), member)
        sums = np.vstack([sums, points[alone]])
        counts = np.concatenate([counts, np.ones(len(alone), int)])
    keep = counts >= min_agreement
    return Nuclei(sums[keep] / counts[keep, None], counts[keep] / max(len(centroids), 1),
                  measurements={AGREEMENT: counts[keep].astype(float)})
