"""Instance segmentation metrics on label maps (0 = background, any non-negative ids).

Overlaps between instances are computed once per image from the joint histogram of
the two label maps over pixels where both are foreground.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

DSB_THRESHOLDS: tuple[float, ...] = tuple(np.round(np.arange(0.5, 1.0, 0.05), 2).tolist())


def _check_label_maps(pred: np.ndarray, true: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred)
    true = np.asarray(true)
    if pred.shape != true.shape:
        raise ValueError(f"label maps differ in shape: {pred.shape} vs {true.shape}")
    for name, arr in (("pred", pred), ("true", true)):
        if arr.size and arr.min() < 0:
            raise ValueError(f"{name} label map has negative ids")
    return pred, true


def _relabel(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Contiguous instance index per pixel (-1 for background) and instance areas."""
    ids, inverse = np.unique(labels.ravel(), return_inverse=True)
    area = np.bincount(inverse)
    if ids.size and ids[0] == 0:
        return inverse - 1, area[1:]
    return inverse, area


@dataclass(frozen=True)
class InstanceOverlap:
    """Instances of a prediction and a truth, and every pair of them that shares area."""

    pred_area: np.ndarray  # (P,)
    true_area: np.ndarray  # (T,)
    pred_idx: np.ndarray  # (K,) pred instance of each overlapping pair
    true_idx: np.ndarray  # (K,) true instance of each overlapping pair
    inter: np.ndarray  # (K,) shared area

    @property
    def union(self) -> np.ndarray:
        return self.pred_area[self.pred_idx] + self.true_area[self.true_idx] - self.inter

    @property
    def iou(self) -> np.ndarray:
        return self.inter / self.union


@dataclass(frozen=True)
class _LabelOverlap(InstanceOverlap):
    """An :class:`InstanceOverlap` of two label maps, with each pixel's contiguous instance index."""

    pred_lab: np.ndarray  # -1 = background
    true_lab: np.ndarray


def label_overlap(pred: np.ndarray, true: np.ndarray) -> _LabelOverlap:
    """The instances of two label maps and every pair that shares pixels: compute it once for several
    ``*_from_overlap`` scores of the same maps."""
    pred, true = _check_label_maps(pred, true)
    pred_lab, pred_area = _relabel(pred)
    true_lab, true_area = _relabel(true)
    both = (pred_lab >= 0) & (true_lab >= 0)
    n_true = max(true_area.size, 1)
    joint = pred_lab[both].astype(np.int64) * n_true + true_lab[both]
    pairs, inter = np.unique(joint, return_counts=True)
    pred_idx, true_idx = np.divmod(pairs, n_true)
    return _LabelOverlap(pred_area, true_area, pred_idx, true_idx, inter, pred_lab, true_lab)


def _match(overlap: InstanceOverlap, threshold: float, allowed: np.ndarray | None = None) -> np.ndarray:
    """Indices of overlapping pairs matched one-to-one with IoU > ``threshold``.

    For thresholds >= 0.5 such pairs are unique by construction; below 0.5 conflicts
    are resolved by the assignment that maximises the total IoU.
    """
    candidates = overlap.iou > threshold
    if allowed is not None:
        candidates &= allowed
    cand = np.flatnonzero(candidates)
    if threshold >= 0.5 or cand.size == 0:
        return cand
    urows, r_inv = np.unique(overlap.pred_idx[cand], return_inverse=True)
    ucols, c_inv = np.unique(overlap.true_idx[cand], return_inverse=True)
    weight = np.zeros((urows.size, ucols.size))
    weight[r_inv, c_inv] = overlap.iou[cand]
    pair_of = np.full(weight.shape, -1, dtype=np.intp)
    pair_of[r_inv, c_inv] = cand
    r, c = linear_sum_assignment(weight, maximize=True)
    chosen = pair_of[r, c]
    return np.sort(chosen[chosen >= 0])


def dice(pred: np.ndarray, true: np.ndarray) -> float:
    """Binary foreground Dice coefficient; 1.0 when both maps are empty."""
    pred, true = _check_label_maps(pred, true)
    p = pred != 0
    t = true != 0
    total = int(p.sum()) + int(t.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(p, t).sum()) / total


def aji_from_overlap(ov: InstanceOverlap) -> float:
    """AJI of instances whose areas and pairwise overlaps are given (see :func:`aggregated_jaccard_index`)."""
    if ov.pred_area.size == 0 and ov.true_area.size == 0:
        return 1.0
    # Best pair per true instance: sort by true index, then IoU descending.
    order = np.lexsort((ov.pred_idx, -ov.iou, ov.true_idx))
    first = np.ones(order.size, dtype=bool)
    first[1:] = ov.true_idx[order][1:] != ov.true_idx[order][:-1]
    best = order[first]

    inter = ov.inter[best].sum()
    union = ov.union[best].sum()
    unpaired_true = np.ones(ov.true_area.size, dtype=bool)
    unpaired_true[ov.true_idx[best]] = False
    unused_pred = np.ones(ov.pred_area.size, dtype=bool)
    unused_pred[ov.pred_idx[best]] = False
    union += ov.true_area[unpaired_true].sum() + ov.pred_area[unused_pred].sum()
    return float(inter / union)


def aggregated_jaccard_index(pred: np.ndarray, true: np.ndarray) -> float:
    """Aggregated Jaccard Index (Kumar et al. 2017); 1.0 when both maps are empty.

    Each true instance is paired with the predicted instance of highest IoU (ties: the
    lower id); its intersection is added to I and its union to U. A true instance that
    overlaps no prediction adds its area to U. Every predicted instance never chosen
    adds its area to U. AJI = I / U.
    """
    return aji_from_overlap(label_overlap(pred, true))


def _pq_from_counts(tp: int, fp: int, fn: int, iou_sum: float) -> dict[str, float]:
    if tp + fp + fn == 0:
        return {"dq": 1.0, "sq": 1.0, "pq": 1.0}
    dq = tp / (tp + 0.5 * fp + 0.5 * fn)
    sq = iou_sum / tp if tp else 0.0
    return {"dq": dq, "sq": sq, "pq": dq * sq}


def panoptic_from_overlap(ov: InstanceOverlap, iou_threshold: float = 0.5) -> dict[str, float]:
    """Panoptic quality of instances whose areas and pairwise overlaps are given (see :func:`panoptic_quality`)."""
    matched = _match(ov, iou_threshold)
    tp = int(matched.size)
    fp = int(ov.pred_area.size) - tp
    fn = int(ov.true_area.size) - tp
    scores = _pq_from_counts(tp, fp, fn, float(ov.iou[matched].sum()))
    return {**scores, "tp": tp, "fp": fp, "fn": fn}


def panoptic_quality(
    pred: np.ndarray, true: np.ndarray, iou_threshold: float = 0.5
) -> dict[str, float]:
    """Panoptic quality (Kirillov et al.) of one image.

    Returns ``dq``, ``sq``, ``pq`` and the counts ``tp``, ``fp``, ``fn``. Pairs match
    when IoU > ``iou_threshold``. SQ is the mean IoU of matched pairs (0 without
    matches), DQ = TP / (TP + FP/2 + FN/2), PQ = DQ * SQ; all 1.0 when both are empty.
    """
    return panoptic_from_overlap(label_overlap(pred, true), iou_threshold)


def _instance_classes(inst_lab: np.ndarray, n_inst: int, type_map: np.ndarray) -> np.ndarray:
    """Majority pixel class of each instance (ties: the lower class id)."""
    if n_inst == 0:
        return np.empty(0, dtype=np.int64)
    fg = inst_lab >= 0
    class_ids, class_lab = np.unique(type_map.ravel()[fg], return_inverse=True)
    counts = np.bincount(
        inst_lab[fg].astype(np.int64) * class_ids.size + class_lab,
        minlength=n_inst * class_ids.size,
    ).reshape(n_inst, class_ids.size)
    return class_ids[counts.argmax(axis=1)]


class PanopticAccumulator:
    """Multi-class PQ+ (CoNIC 2022): per-class counts pooled over images, then divided.

    Each instance takes the majority class of its pixels in the type map. For every
    class, TP/FP/FN and the summed IoU of matched pairs (IoU > ``iou_threshold``, both
    instances of that class) are accumulated over all added images.
    """

    def __init__(self, classes: Iterable[int], iou_threshold: float = 0.5) -> None:
        self.classes = [int(c) for c in classes]
        if not self.classes:
            raise ValueError("classes must not be empty")
        self.iou_threshold = iou_threshold
        n = len(self.classes)
        self.tp = np.zeros(n, dtype=np.int64)
        self.fp = np.zeros(n, dtype=np.int64)
        self.fn = np.zeros(n, dtype=np.int64)
        self.iou_sum = np.zeros(n, dtype=np.float64)

    def add(
        self,
        pred_inst: np.ndarray,
        pred_type: np.ndarray,
        true_inst: np.ndarray,
        true_type: np.ndarray,
    ) -> None:
        """Add one image: instance label maps and per-pixel class maps."""
        for inst, types in ((pred_inst, pred_type), (true_inst, true_type)):
            if np.shape(types) != np.shape(inst):
                raise ValueError("type map and instance map differ in shape")
        ov = label_overlap(pred_inst, true_inst)
        pred_cls = _instance_classes(ov.pred_lab, ov.pred_area.size, np.asarray(pred_type))
        true_cls = _instance_classes(ov.true_lab, ov.true_area.size, np.asarray(true_type))
        same_class = pred_cls[ov.pred_idx] == true_cls[ov.true_idx]
        matched = _match(ov, self.iou_threshold, allowed=same_class)
        matched_cls = pred_cls[ov.pred_idx[matched]]
        matched_iou = ov.iou[matched]
        for k, c in enumerate(self.classes):
            in_class = matched_cls == c
            tp = int(in_class.sum())
            self.tp[k] += tp
            self.fp[k] += int((pred_cls == c).sum()) - tp
            self.fn[k] += int((true_cls == c).sum()) - tp
            self.iou_sum[k] += matched_iou[in_class].sum()

    def result(self) -> dict:
        """``per_class`` {class: PQ} from pooled counts and ``mpq``, their mean.

        A class with no instances in any added image scores 1.0.
        """
        per_class = {
            c: _pq_from_counts(int(tp), int(fp), int(fn), float(s))["pq"]
            for c, tp, fp, fn, s in zip(self.classes, self.tp, self.fp, self.fn, self.iou_sum)
        }
        return {"per_class": per_class, "mpq": float(np.mean(list(per_class.values())))}


def multiclass_panoptic_quality(
    pred_inst: np.ndarray,
    pred_type: np.ndarray,
    true_inst: np.ndarray,
    true_type: np.ndarray,
    classes: Iterable[int],
) -> dict:
    """Multi-class PQ of one image; see :class:`PanopticAccumulator` for datasets."""
    acc = PanopticAccumulator(classes)
    acc.add(pred_inst, pred_type, true_inst, true_type)
    return acc.result()


def multiclass_count_r2(pred_counts: np.ndarray, true_counts: np.ndarray) -> dict:
    """Coefficient of determination of per-image counts, per class and averaged.

    Arrays have shape (n_images, n_classes). R² = 1 - SS_res / SS_tot per class, with
    scikit-learn's convention when SS_tot = 0: 1.0 for a perfect fit, else 0.0.
    Returns ``per_class`` (list of floats) and ``r2``, their mean (CoNIC multi-class R²).
    """
    pred = np.asarray(pred_counts, dtype=np.float64)
    true = np.asarray(true_counts, dtype=np.float64)
    if pred.shape != true.shape or true.ndim != 2 or true.shape[1] == 0:
        raise ValueError(
            f"counts must be (n_images, n_classes) arrays of one shape: {pred.shape} vs {true.shape}"
        )
    ss_res = ((true - pred) ** 2).sum(axis=0)
    ss_tot = ((true - true.mean(axis=0)) ** 2).sum(axis=0)
    r2 = np.where(ss_res == 0, 1.0, 0.0)
    nonconstant = ss_tot != 0
    r2[nonconstant] = 1.0 - ss_res[nonconstant] / ss_tot[nonconstant]
    return {"per_class": r2.tolist(), "r2": float(r2.mean())}


def matches_from_overlap(ov: InstanceOverlap,
                         thresholds: Sequence[float] = DSB_THRESHOLDS) -> tuple[list[int], int, int]:
    """One-to-one matches (IoU > t) at each threshold t, and the numbers of predicted and true instances."""
    return [_match(ov, float(t)).size for t in thresholds], ov.pred_area.size, ov.true_area.size


def matches_over_thresholds(pred: np.ndarray, true: np.ndarray,
                            thresholds: Sequence[float] = DSB_THRESHOLDS) -> tuple[list[int], int, int]:
    """:func:`matches_from_overlap` of two label maps."""
    return matches_from_overlap(label_overlap(pred, true), thresholds)


def dsb_map_from_matches(tps: Sequence[int], n_pred: int, n_true: int) -> float:
    """:func:`dsb_mean_average_precision` of the match counts of :func:`matches_from_overlap`."""
    if n_pred == 0 and n_true == 0:
        return 1.0
    return float(np.mean([tp / (n_pred + n_true - tp) for tp in tps]))


def dsb_mean_average_precision(
    pred: np.ndarray, true: np.ndarray, thresholds: Sequence[float] = DSB_THRESHOLDS
) -> float:
    """2018 Data Science Bowl score of one image.

    At each threshold t, TP = pairs with IoU > t, FP / FN = unmatched predicted / true
    instances, and precision(t) = TP / (TP + FP + FN). Returns the mean over thresholds:
    1.0 when both maps are empty, 0.0 when exactly one is.
    """
    return dsb_map_from_matches(*matches_over_thresholds(pred, true, thresholds))


def average_f1_from_matches(tps: Sequence[int], n_pred: int, n_true: int) -> float:
    """:func:`average_f1` of the match counts of :func:`matches_from_overlap`."""
    if n_pred == 0 and n_true == 0:
        return 1.0
    return float(np.mean([2 * tp / (n_pred + n_true) for tp in tps]))


def average_f1(pred: np.ndarray, true: np.ndarray, thresholds: Sequence[float] = DSB_THRESHOLDS) -> float:
    """Instance F1 (2 TP / (predicted + true)) averaged over the IoU thresholds: 1.0 when both maps are empty."""
    return average_f1_from_matches(*matches_over_thresholds(pred, true, thresholds))


def anatomy_from_overlap(ov: InstanceOverlap) -> dict[str, int]:
    """What became of each true nucleus, and how many predictions are spurious (see :func:`error_anatomy`)."""
    n_pred, n_true = ov.pred_area.size, ov.true_area.size
    pairs = _match(ov, 0.5)
    matched_true = np.zeros(n_true, dtype=bool)
    matched_true[ov.true_idx[pairs]] = True
    matched_pred = np.zeros(n_pred, dtype=bool)
    matched_pred[ov.pred_idx[pairs]] = True
    covers = ov.inter > 0.5 * ov.true_area[ov.true_idx]  # the prediction holds most of the true nucleus
    inside = ov.inter > 0.5 * ov.pred_area[ov.pred_idx]  # the prediction lies mostly in the true nucleus
    nuclei_covered = np.bincount(ov.pred_idx[covers], minlength=n_pred)
    merged = np.zeros(n_true, dtype=bool)
    merged[ov.true_idx[covers & (nuclei_covered[ov.pred_idx] >= 2)]] = True
    merged &= ~matched_true
    split = (np.bincount(ov.true_idx[inside], minlength=n_true) >= 2) & ~matched_true & ~merged
    on_nuclei = np.bincount(ov.pred_idx, weights=ov.inter, minlength=n_pred)
    spurious = ~matched_pred & (on_nuclei < 0.5 * ov.pred_area)
    return {"true": int(n_true), "matched": int(matched_true.sum()), "merged": int(merged.sum()),
            "split": int(split.sum()), "missed": int(n_true - matched_true.sum() - merged.sum() - split.sum()),
            "spurious": int(spurious.sum())}


def error_anatomy(pred: np.ndarray, true: np.ndarray) -> dict[str, int]:
    """What became of each true nucleus, and how many predictions are spurious.

    Each true nucleus falls in exactly one class: ``matched`` (a prediction with IoU > 0.5, one-to-one as in PQ);
    else ``merged`` (the prediction covering most of it covers most of another true nucleus too); else ``split``
    (two or more predictions lie mostly inside it); else ``missed`` (found poorly or not at all). ``spurious``
    counts unmatched predictions lying mostly on background; ``true`` is the number of true nuclei.
    """
    return anatomy_from_overlap(label_overlap(pred, true))
