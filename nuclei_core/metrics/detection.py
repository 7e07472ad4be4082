"""Point detection metrics: optimal one-to-one matching of points within a radius."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree


def _as_points(points: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(points, dtype=np.float64)
    if arr.size == 0:
        return arr.reshape(0, 2)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"{name} must have shape (N, 2), got {arr.shape}")
    return arr


def _candidate_pairs(
    pred: np.ndarray, true: np.ndarray, radius: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All (pred, true) index pairs with distance <= radius, and their distances."""
    # Search slightly wider so the exact test below decides pairs at the boundary.
    search = radius * (1 + 1e-9) + 1e-12
    found = cKDTree(pred).sparse_distance_matrix(cKDTree(true), search, output_type="ndarray")
    rows = found["i"].astype(np.intp)
    cols = found["j"].astype(np.intp)
    dist = np.hypot(*(pred[rows] - true[cols]).T)
    keep = dist <= radius
    return rows[keep], cols[keep], dist[keep]


def _match_component(
    rows: np.ndarray, cols: np.ndarray, dist: np.ndarray, radius: float
) -> tuple[np.ndarray, np.ndarray]:
    """Maximum-cardinality, minimum-distance matching of one connected component."""
    urows, r_inv = np.unique(rows, return_inverse=True)
    ucols, c_inv = np.unique(cols, return_inverse=True)
    # Any matching with one more pair than another costs less as long as the
    # penalty exceeds the largest possible sum of in-radius distances.
    penalty = (min(urows.size, ucols.size) + 1) * radius + 1.0
    cost = np.full((urows.size, ucols.size), penalty)
    cost[r_inv, c_inv] = dist
    valid = np.zeros(cost.shape, dtype=bool)
    valid[r_inv, c_inv] = True
    r, c = linear_sum_assignment(cost)
    keep = valid[r, c]
    return urows[r[keep]], ucols[c[keep]]


def match_points(
    pred: np.ndarray, true: np.ndarray, radius: float
) -> tuple[np.ndarray, np.ndarray]:
    """Match predicted to true points one-to-one within ``radius``.

    Points are (N, 2) arrays of x, y. The matching has the largest possible number
    of pairs and, among those, the smallest total distance. The bipartite graph of
    in-radius pairs is split into connected components, each solved separately.

    Returns ``(pred_idx, true_idx)``: indices of matched pairs, sorted by ``pred_idx``.
    """
    if radius < 0:
        raise ValueError(f"radius must be >= 0, got {radius}")
    pred = _as_points(pred, "pred")
    true = _as_points(true, "true")
    empty = np.empty(0, dtype=np.intp)
    if len(pred) == 0 or len(true) == 0:
        return empty, empty.copy()
    rows, cols, dist = _candidate_pairs(pred, true, radius)
    if rows.size == 0:
        return empty, empty.copy()

    n_pred = len(pred)
    size = n_pred + len(true)
    graph = coo_matrix((np.ones(rows.size), (rows, cols + n_pred)), shape=(size, size))
    _, labels = connected_components(graph, directed=False)
    edge_label = labels[rows]
    edges_per_label = np.bincount(edge_label)

    # Components made of a single edge are matched directly.
    single = edges_per_label[edge_label] == 1
    pred_parts = [rows[single]]
    true_parts = [cols[single]]

    multi = np.flatnonzero(~single)
    multi = multi[np.argsort(edge_label[multi], kind="stable")]
    if multi.size:
        bounds = np.flatnonzero(np.diff(edge_label[multi])) + 1
        for group in np.split(multi, bounds):
            p, t = _match_component(rows[group], cols[group], dist[group], radius)
            pred_parts.append(p)
            true_parts.append(t)

    pred_idx = np.concatenate(pred_parts).astype(np.intp)
    true_idx = np.concatenate(true_parts).astype(np.intp)
    order = np.argsort(pred_idx, kind="stable")
    return pred_idx[order], true_idx[order]


@dataclass(frozen=True)
class DetectionScores:
    """True/false positive and false negative counts; add instances to micro-average."""

    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def precision(self) -> float:
        """TP / (TP + FP); 1.0 when there are no predictions."""
        denom = self.tp + self.fp
        return self.tp / denom if denom else 1.0

    @property
    def recall(self) -> float:
        """TP / (TP + FN); 1.0 when there is no ground truth."""
        denom = self.tp + self.fn
        return self.tp / denom if denom else 1.0

    @property
    def f1(self) -> float:
        """Harmonic mean of precision and recall; 0.0 when both are 0."""
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def __add__(self, other: DetectionScores) -> DetectionScores:
        if not isinstance(other, DetectionScores):
            return NotImplemented
        return DetectionScores(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)

    def __radd__(self, other: object) -> DetectionScores:
        # Lets the builtin sum() start from 0.
        if other == 0:
            return self
        return NotImplemented

    def as_dict(self) -> dict[str, float]:
        """Counts and derived scores as a flat dict."""
        return {
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
        }


def detection_scores(pred: np.ndarray, true: np.ndarray, radius: float) -> DetectionScores:
    """Count TP/FP/FN of predicted points against true points matched within ``radius``."""
    pred = _as_points(pred, "pred")
    true = _as_points(true, "true")
    pred_idx, _ = match_points(pred, true, radius)
    tp = int(pred_idx.size)
    return DetectionScores(tp=tp, fp=len(pred) - tp, fn=len(true) - tp)
