"""Box detection scores as in the HistomicsTK Faster R-CNN paper: one-to-one Hungarian matching of predicted and
annotated boxes, then precision, recall, average precision at an IoU threshold, and the AUC of the confidence
score separating true from false detections."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import roc_auc_score


def instance_boxes(labels: np.ndarray) -> np.ndarray:
    """(N, 4) boxes x0, y0, x1, y1 (pixel edges: a one-pixel nucleus at (x, y) is (x, y, x+1, y+1)) of the
    instances of a label map, in label order, absent labels skipped."""
    slices = [s for s in ndimage.find_objects(np.asarray(labels)) if s is not None]
    return np.array([[s[1].start, s[0].start, s[1].stop, s[0].stop] for s in slices], dtype=np.float64).reshape(-1, 4)


def box_iou(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """(N, M) intersection over union of two sets of x0, y0, x1, y1 boxes."""
    first, second = np.asarray(first, np.float64).reshape(-1, 4), np.asarray(second, np.float64).reshape(-1, 4)
    low = np.maximum(first[:, None, :2], second[None, :, :2])
    high = np.minimum(first[:, None, 2:], second[None, :, 2:])
    overlap = np.prod(np.clip(high - low, 0, None), axis=2)
    area = lambda boxes: np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)  # noqa: E731
    union = area(first)[:, None] + area(second)[None, :] - overlap
    return np.divide(overlap, union, out=np.zeros_like(overlap), where=union > 0)


def hungarian_box_matches(predicted: np.ndarray, truth: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Whether each predicted box is matched: the one-to-one assignment maximising total IoU, pairs below
    ``iou_threshold`` left unmatched."""
    matched = np.zeros(len(predicted), dtype=bool)
    if len(predicted) and len(truth):
        iou = box_iou(predicted, truth)
        rows, cols = linear_sum_assignment(iou, maximize=True)
        matched[rows[iou[rows, cols] >= iou_threshold]] = True
    return matched


def average_precision(scores: np.ndarray, true_positive: np.ndarray, positives: int) -> float:
    """Area under the precision-recall curve of detections ranked by score (all-point interpolation)."""
    if positives == 0 or len(scores) == 0:
        return 0.0
    order = np.argsort(-np.asarray(scores), kind="stable")
    hits = np.asarray(true_positive, bool)[order]
    recall = np.cumsum(hits) / positives
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    return float(np.sum(np.diff(np.concatenate([[0.0], recall])) * envelope))


@dataclass
class BoxScores:
    """Detections of any number of images at one IoU threshold, pooled: each prediction's score and whether it
    matched, and how many annotated boxes there were."""

    iou_threshold: float
    scores: list[np.ndarray] = field(default_factory=list)
    matched: list[np.ndarray] = field(default_factory=list)
    positives: int = 0

    def add(self, predicted: np.ndarray, scores: np.ndarray, truth: np.ndarray) -> None:
        """Score one image's predicted boxes (with their confidence) against its annotated boxes."""
        self.scores.append(np.asarray(scores, np.float64))
        self.matched.append(hungarian_box_matches(predicted, truth, self.iou_threshold))
        self.positives += len(truth)

    def as_dict(self) -> dict[str, float]:
        """Precision, recall and F1 of all predictions, AP, and the confidence AUC (NaN with one kind only)."""
        scores = np.concatenate(self.scores) if self.scores else np.zeros(0)
        matched = np.concatenate(self.matched) if self.matched else np.zeros(0, bool)
        hits = int(matched.sum())
        precision = hits / len(matched) if len(matched) else 0.0
        recall = hits / self.positives if self.positives else 0.0
        both_kinds = 0 < hits < len(matched)
        return {"precision": precision, "recall": recall,
                "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
                "ap": average_precision(scores, matched, self.positives),
                "auc": float(roc_auc_score(matched, scores)) if both_kinds else float("nan")}
