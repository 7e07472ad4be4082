"""Classification metrics: confusion matrix, per-class precision/recall/F1, weighted and macro F1, one-vs-rest AUC."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def confusion_matrix(true: np.ndarray, pred: np.ndarray, classes: int) -> np.ndarray:
    """(classes, classes) counts: row = true class, column = predicted class."""
    true, pred = np.asarray(true, int).reshape(-1), np.asarray(pred, int).reshape(-1)
    if true.shape != pred.shape:
        raise ValueError(f"{len(true)} true labels but {len(pred)} predictions")
    if len(true) and (min(true.min(), pred.min()) < 0 or max(true.max(), pred.max()) >= classes):
        raise ValueError(f"labels must lie in 0..{classes - 1}")
    return np.bincount(true * classes + pred, minlength=classes * classes).reshape(classes, classes)


def per_class_scores(matrix: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall, F1 and support of each class from a confusion matrix (0 where undefined)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    hits, predicted, support = np.diag(matrix), matrix.sum(axis=0), matrix.sum(axis=1)
    precision = np.divide(hits, predicted, out=np.zeros_like(hits), where=predicted > 0)
    recall = np.divide(hits, support, out=np.zeros_like(hits), where=support > 0)
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros_like(hits), where=total > 0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support.astype(int)}


def one_vs_rest_auc(probabilities: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Area under the ROC curve of each class against the rest (Mann-Whitney U; NaN for an absent class)."""
    probabilities, true = np.asarray(probabilities, float), np.asarray(true, int)
    aucs = np.full(probabilities.shape[1], np.nan)
    for k in range(probabilities.shape[1]):
        positive = true == k
        n_pos, n_neg = int(positive.sum()), int((~positive).sum())
        if n_pos and n_neg:
            ranks = rankdata(probabilities[:, k])
            aucs[k] = (ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return aucs


def classification_report(true: np.ndarray, probabilities: np.ndarray) -> dict:
    """Everything the benchmarks and validation report: accuracy, weighted and macro F1, per class, AUC, matrix."""
    probabilities = np.asarray(probabilities, float)
    classes = probabilities.shape[1]
    matrix = confusion_matrix(true, probabilities.argmax(axis=1), classes)
    scores = per_class_scores(matrix)
    support = scores["support"]
    return {
        "accuracy": float(np.trace(matrix) / max(matrix.sum(), 1)),
        "weighted_f1": float((scores["f1"] * support).sum() / max(support.sum(), 1)),
        "macro_f1": float(scores["f1"].mean()),
        "per_class": {k: v.tolist() for k, v in scores.items()},
        "auc": one_vs_rest_auc(probabilities, true).tolist(),
        "confusion_matrix": matrix.tolist(),
    }
