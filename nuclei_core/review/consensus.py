"""Where several methods agree: pairwise F1 between their nuclei, and the consensus nuclei that at least k of
them found (one-to-one within a radius)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..metrics.detection import detection_scores, match_points
from ..nuclei import Nuclei

AGREEMENT = "Agreeing methods"


def pairwise_f1(centroids: dict[str, np.ndarray], radius: float) -> dict[str, dict[str, float]]:
    """F1 of every method's nuclei against every other's (symmetric; 1 on the diagonal)."""
    names = list(centroids)
    return {a: {b: detection_scores(centroids[a], centroids[b], radius).f1 for b in names} for a in names}


@dataclass(frozen=True)
class NucleusGroups:
    """The methods' nuclei gathered into groups of at most one nucleus per method.

    ``positions``: (G, 2) mean position of each group's members; ``found``: (G, M) whether method ``m`` has a
    nucleus in the group; ``scores``: (G, M) that nucleus's score (0 where the method found none).
    """

    positions: np.ndarray
    found: np.ndarray
    scores: np.ndarray


def group_nuclei(centroids: list[np.ndarray], radius: float, scores: list[np.ndarray] | None = None) -> NucleusGroups:
    """Gather the methods' nuclei one method at a time: each is matched one-to-one (within ``radius``) to the
    running mean position of the groups so far, or starts a group of its own, so no group holds two nuclei of
    one method. ``scores`` (one array per method, as ``centroids``) are carried along; ones without."""
    methods = len(centroids)
    sums, counts = np.zeros((0, 2)), np.zeros(0, int)
    found, found_scores = np.zeros((0, methods), bool), np.zeros((0, methods))
    for index, points in enumerate(centroids):
        points = np.asarray(points, float).reshape(-1, 2)
        values = np.ones(len(points)) if scores is None else np.asarray(scores[index], float).reshape(-1)
        group, member = match_points(sums / np.maximum(counts, 1)[:, None], points, radius)
        sums[group] += points[member]
        counts[group] += 1
        found[group, index] = True
        found_scores[group, index] = values[member]
        alone = np.setdiff1d(np.arange(len(points)), member)
        sums = np.vstack([sums, points[alone]])
        counts = np.concatenate([counts, np.ones(len(alone), int)])
        new_found, new_scores = np.zeros((len(alone), methods), bool), np.zeros((len(alone), methods))
        new_found[:, index], new_scores[:, index] = True, values[alone]
        found, found_scores = np.vstack([found, new_found]), np.vstack([found_scores, new_scores])
    return NucleusGroups(sums / np.maximum(counts, 1)[:, None], found, found_scores)


def consensus(centroids: list[np.ndarray], radius: float, min_agreement: int) -> Nuclei:
    """Nuclei found by at least ``min_agreement`` of the methods (grouped by :func:`group_nuclei`).

    A kept group is a nucleus at its members' mean position, scored by the share of methods that found it,
    with their count as the measurement ``Agreeing methods``.
    """
    groups = group_nuclei(centroids, radius)
    counts = groups.found.sum(axis=1)
    keep = counts >= min_agreement
    return Nuclei(groups.positions[keep], counts[keep] / max(len(centroids), 1),
                  measurements={AGREEMENT: counts[keep].astype(float)})
