"""How well one set of nuclei agrees with another inside a region: detection, outline and class scores,
and which nucleus is a true positive, a false positive or a missed one."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from shapely.geometry import MultiPolygon

from ..engine.region import contains_points
from ..errors import InputError
from ..metrics.classification import confusion_matrix, per_class_scores
from ..metrics.detection import DetectionScores, match_points
from ..metrics.polygons import contour_scores
from ..nuclei import Nuclei

GENERIC_CLASS_NAMES = frozenset({"nucleus", "nuclei", "default", ""})
MATCH_CLASSES = ("true positive", "false positive", "false negative")


def inside(nuclei: Nuclei, region: MultiPolygon | None) -> Nuclei:
    """The nuclei whose centroid lies in ``region`` (all of them when it is None)."""
    return nuclei if region is None else nuclei.select(contains_points(region, nuclei.centroids))


def carries_classes(nuclei: Nuclei) -> bool:
    """True when the nuclei are labelled with a class of their own (not just "nucleus")."""
    return any(name.strip().lower() not in GENERIC_CLASS_NAMES for name in nuclei.class_names)


def parse_class_map(text: str) -> dict[str, str]:
    """``"predicted=truth, ..."`` as a dict (class names compared without case)."""
    mapping = {}
    for pair in filter(None, (p.strip() for p in text.split(","))):
        predicted, sep, truth = pair.partition("=")
        if not sep or not predicted.strip() or not truth.strip():
            raise InputError(f"class_map entry {pair!r} is not of the form predicted=truth")
        mapping[predicted.strip().lower()] = truth.strip()
    return mapping


@dataclass(frozen=True)
class ClassAgreement:
    """Classes of the matched nuclei: the confusion matrix (rows truth, columns prediction) and its scores."""

    class_names: tuple[str, ...]
    matrix: np.ndarray

    def as_dict(self) -> dict:
        scores = per_class_scores(self.matrix)
        support = scores["support"]
        return {
            "classes": list(self.class_names),
            "confusion_matrix": self.matrix.tolist(),
            "accuracy": float(np.trace(self.matrix) / max(self.matrix.sum(), 1)),
            "weighted_f1": float((scores["f1"] * support).sum() / max(support.sum(), 1)),
            "macro_f1": float(scores["f1"][support > 0].mean()) if (support > 0).any() else 0.0,
            "per_class": {name: {k: float(v[i]) for k, v in scores.items()}
                          for i, name in enumerate(self.class_names)},
        }


def class_agreement(predicted: list[str], truth: list[str], class_map: dict[str, str]) -> ClassAgreement:
    """Confusion of the class names of matched pairs, predicted names renamed by ``class_map`` first."""
    by_lower = {name.lower(): name for name in truth}
    renamed = [class_map.get(p.lower(), by_lower.get(p.lower(), p)) for p in predicted]
    names = tuple(dict.fromkeys([*sorted(set(truth)), *sorted(set(renamed))]))
    if not set(renamed) & set(truth):
        raise InputError(f"the predicted classes ({', '.join(sorted(set(predicted)))}) share no name with the "
                         f"truth classes ({', '.join(sorted(set(truth)))}); map them with class_map")
    index = {name: i for i, name in enumerate(names)}
    matrix = confusion_matrix([index[t] for t in truth], [index[p] for p in renamed], len(names))
    return ClassAgreement(names, matrix)


@dataclass(frozen=True)
class Agreement:
    """Predicted nuclei against true nuclei: matched pairs and every score both sides allow."""

    predicted: Nuclei
    truth: Nuclei
    pred_index: np.ndarray  # matched pairs: predicted row ...
    true_index: np.ndarray  # ... and its true row
    outlines: dict[str, float] | None  # Dice, AJI, PQ when both sides have contours
    classes: ClassAgreement | None  # when both sides carry classes

    @property
    def detection(self) -> DetectionScores:
        tp = len(self.pred_index)
        return DetectionScores(tp, len(self.predicted) - tp, len(self.truth) - tp)

    def as_dict(self) -> dict:
        return {"detection": {**self.detection.as_dict(), "predicted_nuclei": len(self.predicted),
                              "truth_nuclei": len(self.truth)},
                "outlines": self.outlines,
                "classification": None if self.classes is None else self.classes.as_dict()}

    def match_table(self) -> Nuclei:
        """Every nucleus as a true positive (the prediction), false positive or false negative (the truth).

        Outlines when both sides have them, else centroids."""
        matched_pred = np.zeros(len(self.predicted), bool)
        matched_pred[self.pred_index] = True
        missed = np.ones(len(self.truth), bool)
        missed[self.true_index] = False
        both_outlined = self.predicted.contours is not None and self.truth.contours is not None
        parts = []
        for label, nuclei, keep in ((0, self.predicted, matched_pred), (1, self.predicted, ~matched_pred),
                                    (2, self.truth, missed)):
            chosen = nuclei.select(keep)
            parts.append(Nuclei(chosen.centroids, chosen.scores, chosen.contours if both_outlined else None,
                                np.full(len(chosen), label), MATCH_CLASSES))
        return Nuclei.concatenate(parts, MATCH_CLASSES)


def agree(predicted: Nuclei, truth: Nuclei, radius: float, class_map: dict[str, str] | None = None) -> Agreement:
    """Score ``predicted`` against ``truth``: one-to-one centroid matching within ``radius`` pixels, outline
    scores when both have contours, class scores over the matched pairs when both carry classes."""
    pred_index, true_index = match_points(predicted.centroids, truth.centroids, radius)
    outlines = None
    if predicted.contours is not None and truth.contours is not None:
        outlines = contour_scores(predicted.contours, truth.contours)
    classes = None
    if carries_classes(predicted) and carries_classes(truth) and len(pred_index):
        predicted_labels, true_labels = predicted.class_labels(), truth.class_labels()
        classes = class_agreement([predicted_labels[i] for i in pred_index],
                                  [true_labels[i] for i in true_index], class_map or {})
    return Agreement(predicted, truth, pred_index, true_index, outlines, classes)
