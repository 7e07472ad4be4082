"""Metrics checked against small cases whose expected values are worked out by hand."""

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from nuclei_core.metrics import (
    DetectionScores,
    PanopticAccumulator,
    aggregated_jaccard_index,
    classification_report,
    confusion_matrix,
    detection_scores,
    dice,
    average_f1,
    dsb_mean_average_precision,
    error_anatomy,
    match_points,
    multiclass_count_r2,
    multiclass_panoptic_quality,
    one_vs_rest_auc,
    panoptic_quality,
    per_class_scores,
)

# ---------------------------------------------------------------------------
# Point detection


def test_match_points_beats_greedy_nearest_matching():
    # radius 1.5. Distances: P0-T0 1.2, P0-T1 0.8, P1-T1 1.0, P1-T0 3.0 (out of range).
    # Greedy nearest-first takes P0-T1 (0.8); then P1 can only reach T1 -> 1 match.
    # The optimal one-to-one matching is P0-T0, P1-T1 -> 2 matches.
    true = np.array([[0.0, 0.0], [2.0, 0.0]])
    pred = np.array([[1.2, 0.0], [3.0, 0.0]])
    pred_idx, true_idx = match_points(pred, true, radius=1.5)
    assert pred_idx.tolist() == [0, 1]
    assert true_idx.tolist() == [0, 1]


def test_match_points_minimises_total_distance_among_maximum_matchings():
    # Both assignments give 2 pairs within radius 2.
    # P0-T1 + P1-T0 = 0.1 + 0.1 = 0.2 beats P0-T0 + P1-T1 = 0.9 + 0.9 = 1.8.
    true = np.array([[0.0, 0.0], [1.0, 0.0]])
    pred = np.array([[0.9, 0.0], [0.1, 0.0]])
    pred_idx, true_idx = match_points(pred, true, radius=2.0)
    assert pred_idx.tolist() == [0, 1]
    assert true_idx.tolist() == [1, 0]


def test_match_points_radius_boundary_is_inclusive():
    # Distance (0,0)-(3,4) is exactly 5; (0,0)-(0.3,0.4) is 0.5 up to rounding.
    assert match_points([[3.0, 4.0]], [[0.0, 0.0]], radius=5.0)[0].tolist() == [0]
    assert match_points([[3.0, 4.0]], [[0.0, 0.0]], radius=4.999)[0].tolist() == []
    assert match_points([[0.3, 0.4]], [[0.0, 0.0]], radius=0.5)[0].tolist() == [0]


def test_match_points_identical_points_with_zero_radius():
    pred_idx, true_idx = match_points([[1.0, 1.0], [5.0, 5.0]], [[5.0, 5.0]], radius=0.0)
    assert pred_idx.tolist() == [1]
    assert true_idx.tolist() == [0]


def test_match_points_empty_inputs():
    for pred, true in [([], [[0.0, 0.0]]), (np.zeros((2, 2)), np.empty((0, 2))), ([], [])]:
        pred_idx, true_idx = match_points(pred, true, radius=3.0)
        assert pred_idx.shape == (0,) and true_idx.shape == (0,)


def test_match_points_rejects_bad_shapes_and_radius():
    with pytest.raises(ValueError):
        match_points(np.zeros((2, 3)), np.zeros((2, 2)), radius=1.0)
    with pytest.raises(ValueError):
        match_points(np.zeros((2, 2)), np.zeros((2, 2)), radius=-1.0)


def test_match_points_agrees_with_dense_assignment():
    # Cross-check of the component decomposition against one dense assignment.
    rng = np.random.default_rng(0)
    pred = rng.uniform(0, 30, size=(80, 2))
    true = rng.uniform(0, 30, size=(70, 2))
    radius = 3.0
    dist = np.linalg.norm(pred[:, None] - true[None], axis=2)
    cost = np.where(dist <= radius, dist, 1e6)
    r, c = linear_sum_assignment(cost)
    keep = dist[r, c] <= radius
    pred_idx, true_idx = match_points(pred, true, radius)
    assert pred_idx.size == keep.sum()
    assert dist[pred_idx, true_idx].sum() == pytest.approx(dist[r[keep], c[keep]].sum())
    assert len(set(pred_idx.tolist())) == pred_idx.size
    assert len(set(true_idx.tolist())) == true_idx.size


def test_detection_scores_counts_and_ratios():
    # radius 1: P0 matches T0 (distance 0.5), P1 is 10 away from everything,
    # T1 is unmatched. TP 1, FP 1, FN 1 -> P = R = F1 = 0.5.
    pred = [[0.5, 0.0], [10.0, 10.0]]
    true = [[0.0, 0.0], [0.0, 20.0]]
    s = detection_scores(pred, true, radius=1.0)
    assert (s.tp, s.fp, s.fn) == (1, 1, 1)
    assert s.as_dict() == {"tp": 1, "fp": 1, "fn": 1, "precision": 0.5, "recall": 0.5, "f1": 0.5}


def test_detection_scores_empty_conventions():
    # No predictions, two true points: P = 1 (0/0), R = 0, F1 = 0.
    s = detection_scores(np.empty((0, 2)), [[0.0, 0.0], [5.0, 5.0]], radius=1.0)
    assert (s.tp, s.fp, s.fn) == (0, 0, 2)
    assert (s.precision, s.recall, s.f1) == (1.0, 0.0, 0.0)
    # Nothing anywhere: P = R = 1, F1 = 1.
    s = detection_scores([], [], radius=1.0)
    assert (s.precision, s.recall, s.f1) == (1.0, 1.0, 1.0)


def test_detection_scores_sum_is_micro_average():
    # (3,1,0) + (1,0,3) = (4,1,3): P = 4/5, R = 4/7,
    # F1 = 2 * 4/5 * 4/7 / (4/5 + 4/7) = (32/35) / (48/35) = 2/3.
    a = DetectionScores(tp=3, fp=1, fn=0)
    b = DetectionScores(tp=1, fp=0, fn=3)
    total = a + b
    assert total == DetectionScores(4, 1, 3)
    assert sum([a, b]) == total
    assert total.precision == pytest.approx(0.8)
    assert total.recall == pytest.approx(4 / 7)
    assert total.f1 == pytest.approx(2 / 3)
    # The micro-average differs from averaging per-image F1: (6/7 + 2/5) / 2.
    assert total.f1 != pytest.approx((a.f1 + b.f1) / 2)


# ---------------------------------------------------------------------------
# Segmentation


def test_dice():
    # pred foreground 4 px, true foreground 6 px, 3 px shared: 2*3 / (4+6) = 0.6.
    pred = np.zeros((6, 6), dtype=np.int32)
    true = np.zeros((6, 6), dtype=np.int32)
    pred[0, 0:4] = 7
    true[0, 1:4] = 1
    true[1, 1:4] = 2
    assert dice(pred, true) == pytest.approx(0.6)
    assert dice(np.zeros((6, 6), int), np.zeros((6, 6), int)) == 1.0
    assert dice(pred, np.zeros((6, 6), int)) == 0.0


def test_aji_unmatched_prediction_enlarges_union():
    true = np.array(
        [
            [1, 1, 0, 0, 0, 0],
            [1, 1, 0, 0, 0, 0],
            [0, 0, 0, 0, 0, 0],
            [0, 0, 0, 2, 2, 2],
            [0, 0, 0, 2, 2, 2],
            [0, 0, 0, 0, 0, 0],
        ]
    )
    pred = np.array(
        [
            [5, 5, 5, 0, 0, 0],
            [5, 5, 5, 0, 0, 0],
            [0, 0, 0, 0, 0, 0],
            [0, 0, 0, 0, 7, 7],
            [0, 0, 0, 0, 7, 7],
            [9, 9, 0, 0, 0, 0],
        ]
    )
    # T1 (4 px) best P5 (6 px): I 4, U 6. T2 (6 px) best P7 (4 px): I 4, U 6.
    # P9 (2 px) is never used: U += 2. AJI = 8 / 14.
    assert aggregated_jaccard_index(pred, true) == pytest.approx(8 / 14)


def test_aji_picks_best_iou_and_counts_unmatched_truth():
    true = np.array(
        [
            [1, 1, 0, 0, 0, 0],
            [1, 1, 0, 0, 0, 0],
            [0, 0, 0, 0, 0, 0],
            [0, 0, 0, 0, 0, 0],
            [0, 0, 0, 0, 0, 0],
            [0, 0, 0, 0, 3, 3],
        ]
    )
    pred = np.array(
        [
            [1, 1, 0, 0, 0, 0],
            [1, 2, 2, 2, 2, 0],
            [0, 0, 0, 0, 0, 0],
            [0, 0, 0, 0, 0, 0],
            [0, 0, 0, 0, 0, 0],
            [0, 0, 0, 0, 0, 0],
        ]
    )
    # T1 (4 px): P1 (3 px) IoU 3/4, P2 (4 px) IoU 1/7 -> P1: I 3, U 4.
    # P2 unused: U += 4. T3 (2 px) overlaps nothing: U += 2. AJI = 3 / 10.
    assert aggregated_jaccard_index(pred, true) == pytest.approx(0.3)


def test_aji_empty_maps():
    empty = np.zeros((6, 6), dtype=np.int32)
    one = empty.copy()
    one[2:4, 2:4] = 1
    assert aggregated_jaccard_index(empty, empty) == 1.0
    assert aggregated_jaccard_index(one, empty) == 0.0
    assert aggregated_jaccard_index(empty, one) == 0.0


PQ_TRUE = np.array(
    [
        [1, 1, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 2, 2],
        [0, 0, 0, 0, 2, 2],
        [0, 0, 0, 0, 0, 0],
    ]
)
PQ_PRED = np.array(
    [
        [4, 4, 4, 0, 0, 0],
        [4, 4, 4, 0, 0, 0],
        [0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 1000],
        [0, 0, 0, 0, 0, 1000],
    ]
)


def test_panoptic_quality_one_tp_one_fp_one_fn():
    # P4 vs T1: I 4, U 6, IoU 2/3 -> TP. P1000 vs T2: I 1, U 2+4-1 = 5, IoU 0.2 -> P1000 is
    # FP and T2 is FN. DQ = 1 / (1 + 0.5 + 0.5) = 0.5, SQ = 2/3, PQ = 1/3.
    r = panoptic_quality(PQ_PRED, PQ_TRUE)
    assert (r["tp"], r["fp"], r["fn"]) == (1, 1, 1)
    assert r["dq"] == pytest.approx(0.5)
    assert r["sq"] == pytest.approx(2 / 3)
    assert r["pq"] == pytest.approx(1 / 3)


def test_panoptic_quality_low_threshold_matches_more():
    # With IoU > 0.1 the 0.2 pair also matches: DQ 1, SQ = (2/3 + 0.2) / 2 = 13/30.
    r = panoptic_quality(PQ_PRED, PQ_TRUE, iou_threshold=0.1)
    assert (r["tp"], r["fp"], r["fn"]) == (2, 0, 0)
    assert r["pq"] == pytest.approx(13 / 30)


def test_panoptic_quality_low_threshold_keeps_matching_one_to_one():
    # P1 straddles T1 and T2, IoU 2/6 with each: only one pair may match at IoU > 0.25.
    true = np.zeros((6, 6), dtype=np.int32)
    true[0:2, 0:2] = 1
    true[0:2, 2:4] = 2
    pred = np.zeros((6, 6), dtype=np.int32)
    pred[0:2, 1:3] = 1
    r = panoptic_quality(pred, true, iou_threshold=0.25)
    assert (r["tp"], r["fp"], r["fn"]) == (1, 0, 1)
    assert r["sq"] == pytest.approx(1 / 3)


def test_panoptic_quality_iou_of_exactly_half_is_not_a_match():
    # 2x2 pred inside a 2x4 true: IoU 4/8 = 0.5, not > 0.5 -> FP 1, FN 1, PQ 0.
    true = np.zeros((6, 6), dtype=np.int32)
    true[0:2, 0:4] = 3
    pred = np.zeros((6, 6), dtype=np.int32)
    pred[0:2, 0:2] = 8
    r = panoptic_quality(pred, true)
    assert (r["tp"], r["fp"], r["fn"]) == (0, 1, 1)
    assert (r["dq"], r["sq"], r["pq"]) == (0.0, 0.0, 0.0)


def test_panoptic_quality_empty_maps():
    empty = np.zeros((6, 6), dtype=np.int32)
    r = panoptic_quality(empty, empty)
    assert (r["dq"], r["sq"], r["pq"]) == (1.0, 1.0, 1.0)
    assert panoptic_quality(PQ_PRED, empty)["pq"] == 0.0


def test_label_maps_must_match_in_shape():
    with pytest.raises(ValueError):
        panoptic_quality(np.zeros((6, 6), int), np.zeros((5, 6), int))


def test_dsb_map_with_iou_between_thresholds():
    true = np.zeros((6, 6), dtype=np.int32)
    true[0:2, 0:5] = 1  # 10 px
    pred = np.zeros((6, 6), dtype=np.int32)
    pred[0, 0:5] = 2  # 5 px inside T1
    pred[1, 0:2] = 2  # +2 px inside T1 -> I 7, U 10, IoU 0.7
    pred[4:6, 4:6] = 5  # unmatched prediction
    # t in {0.5, 0.55, 0.6, 0.65}: TP 1, FP 1, FN 0 -> 1/2.
    # t in {0.7, ..., 0.95}: TP 0, FP 2, FN 1 -> 0. Mean over 10: 4 * 0.5 / 10 = 0.2.
    assert dsb_mean_average_precision(pred, true) == pytest.approx(0.2)
    # Custom thresholds (0.5, 0.75): (0.5 + 0) / 2.
    assert dsb_mean_average_precision(pred, true, thresholds=(0.5, 0.75)) == pytest.approx(0.25)
    # Average F1 = 2 TP / (2 predicted + 1 true): 2/3 at the four thresholds below 0.7, 0 above -> 4 * (2/3) / 10.
    assert average_f1(pred, true) == pytest.approx(4 * 2 / 3 / 10)
    assert average_f1(pred, true, thresholds=(0.65,)) == pytest.approx(2 / 3)


def test_dsb_map_empty_maps():
    empty = np.zeros((6, 6), dtype=np.int32)
    one = empty.copy()
    one[1:3, 1:3] = 4
    assert dsb_mean_average_precision(empty, empty) == 1.0
    assert dsb_mean_average_precision(one, empty) == 0.0
    assert dsb_mean_average_precision(empty, one) == 0.0
    assert dsb_mean_average_precision(one, one) == 1.0
    assert (average_f1(empty, empty), average_f1(one, empty), average_f1(one, one)) == (1.0, 0.0, 1.0)


def _multiclass_images():
    # Image A. T1 (class 1) = P1 exactly: class-1 TP with IoU 1.
    # T2 (class 2, 4 px) vs P2 (6 px, IoU 2/3) but P2 is mostly class 1 (5 of 6 pixels):
    # no match, class-1 FP and class-2 FN.
    a_true_inst = np.zeros((6, 6), dtype=np.int32)
    a_true_inst[0:2, 0:2] = 1
    a_true_inst[3:5, 3:5] = 2
    a_true_type = np.zeros((6, 6), dtype=np.int32)
    a_true_type[0:2, 0:2] = 1
    a_true_type[3:5, 3:5] = 2
    a_pred_inst = np.zeros((6, 6), dtype=np.int32)
    a_pred_inst[0:2, 0:2] = 1
    a_pred_inst[3:5, 3:6] = 2
    a_pred_type = np.zeros((6, 6), dtype=np.int32)
    a_pred_type[0:2, 0:2] = 1
    a_pred_type[3:5, 3:6] = 1
    a_pred_type[3, 3] = 2
    # Image B. T1 (class 2, 6 px) vs P1 (class 2, 4 px inside it): IoU 2/3, class-2 TP.
    # P2 (class 2) overlaps nothing: class-2 FP.
    b_true_inst = np.zeros((6, 6), dtype=np.int32)
    b_true_inst[0:2, 0:3] = 1
    b_true_type = 2 * (b_true_inst > 0)
    b_pred_inst = np.zeros((6, 6), dtype=np.int32)
    b_pred_inst[0:2, 0:2] = 1
    b_pred_inst[4:6, 4:6] = 2
    b_pred_type = 2 * (b_pred_inst > 0)
    return (
        (a_pred_inst, a_pred_type, a_true_inst, a_true_type),
        (b_pred_inst, b_pred_type, b_true_inst, b_true_type),
    )


def test_panoptic_accumulator_pools_counts_over_images():
    image_a, image_b = _multiclass_images()
    acc = PanopticAccumulator(classes=[1, 2])
    acc.add(*image_a)
    acc.add(*image_b)
    # Class 1: TP 1 (IoU 1), FP 1, FN 0 -> DQ 1/1.5, SQ 1, PQ 2/3.
    # Class 2: TP 1 (IoU 2/3), FP 1, FN 1 -> DQ 1/2, SQ 2/3, PQ 1/3.  mPQ+ = 1/2.
    r = acc.result()
    assert r["per_class"][1] == pytest.approx(2 / 3)
    assert r["per_class"][2] == pytest.approx(1 / 3)
    assert r["mpq"] == pytest.approx(0.5)


def test_multiclass_panoptic_quality_single_image():
    image_a, _ = _multiclass_images()
    # Image A alone: class 1 PQ 2/3; class 2 TP 0, FN 1 -> PQ 0. mPQ = 1/3.
    r = multiclass_panoptic_quality(*image_a, classes=[1, 2])
    assert r["per_class"] == pytest.approx({1: 2 / 3, 2: 0.0})
    assert r["mpq"] == pytest.approx(1 / 3)


def test_multiclass_count_r2():
    # Class 0: true 2,4,6 (mean 4), pred 3,4,5: SS_res 1+0+1 = 2, SS_tot 4+0+4 = 8 -> 0.75.
    # Class 1: true 0,1,2 (mean 1), pred 2,1,0: SS_res 4+0+4 = 8, SS_tot 1+0+1 = 2 -> -3.
    true = np.array([[2, 0], [4, 1], [6, 2]])
    pred = np.array([[3, 2], [4, 1], [5, 0]])
    r = multiclass_count_r2(pred, true)
    assert r["per_class"] == pytest.approx([0.75, -3.0])
    assert r["r2"] == pytest.approx(-1.125)


def test_multiclass_count_r2_constant_truth():
    # SS_tot = 0: 1.0 for a perfect fit, else 0.0 (scikit-learn convention).
    true = np.array([[5, 5], [5, 5]])
    pred = np.array([[5, 5], [5, 6]])
    assert multiclass_count_r2(pred, true)["per_class"] == [1.0, 0.0]
    with pytest.raises(ValueError):
        multiclass_count_r2(pred[:, :1], true)


# ---------------------------------------------------------------------------
# classification


def test_confusion_matrix_and_per_class_scores_by_hand():
    true = np.array([0, 0, 0, 1, 1, 2])
    pred = np.array([0, 0, 1, 1, 2, 2])
    matrix = confusion_matrix(true, pred, 4)
    assert matrix[:3, :3].tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]] and matrix[3].sum() == matrix[:, 3].sum() == 0
    scores = per_class_scores(matrix)
    np.testing.assert_allclose(scores["precision"], [1.0, 0.5, 0.5, 0.0])
    np.testing.assert_allclose(scores["recall"], [2 / 3, 0.5, 1.0, 0.0])
    np.testing.assert_allclose(scores["f1"], [0.8, 0.5, 2 / 3, 0.0])
    assert scores["support"].tolist() == [3, 2, 1, 0]


def test_confusion_matrix_refuses_labels_out_of_range():
    with pytest.raises(ValueError, match="0..2"):
        confusion_matrix([0, 3], [0, 1], 3)


def test_classification_report_agrees_with_scikit_learn():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    true = rng.integers(0, 4, 500)
    probabilities = rng.dirichlet(np.ones(4), 500) + np.eye(4)[true] * rng.uniform(0, 1, (500, 1))
    report = classification_report(true, probabilities)
    pred = probabilities.argmax(axis=1)
    assert report["weighted_f1"] == pytest.approx(sklearn_metrics.f1_score(true, pred, average="weighted"))
    assert report["macro_f1"] == pytest.approx(sklearn_metrics.f1_score(true, pred, average="macro"))
    assert report["accuracy"] == pytest.approx(sklearn_metrics.accuracy_score(true, pred))
    for k in range(4):
        assert report["auc"][k] == pytest.approx(sklearn_metrics.roc_auc_score(true == k, probabilities[:, k]))
    assert report["confusion_matrix"] == sklearn_metrics.confusion_matrix(true, pred).tolist()


def test_auc_is_nan_for_a_class_without_examples_and_one_for_perfect_ranking():
    auc = one_vs_rest_auc(np.array([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0]]), np.array([0, 1]))
    assert auc[0] == auc[1] == 1.0 and np.isnan(auc[2])


def test_error_anatomy_sorts_each_true_nucleus_into_one_class():
    true = np.zeros((8, 12), dtype=np.int32)
    pred = np.zeros_like(true)
    true[0:2, 0:2], pred[0:2, 0:2] = 1, 1  # matched exactly
    true[0:2, 4:6], true[0:2, 7:9], pred[0:2, 4:9] = 2, 3, 2  # one prediction over two nuclei: IoU 0.4 each
    true[4:6, 0:4], pred[4:6, 0:2], pred[4:6, 2:4] = 4, 3, 4  # one nucleus in two halves: IoU 0.5, not above
    true[4:6, 6:8] = 5  # nothing found
    true[7, 0:4], pred[7, 0] = 6, 6  # one pixel of four: IoU 0.25, missed, the prediction not spurious
    pred[7, 9:12] = 7  # on background
    assert error_anatomy(pred, true) == {"true": 6, "matched": 1, "merged": 2, "split": 1, "missed": 2,
                                         "spurious": 1}


def test_error_anatomy_of_perfect_and_empty_predictions():
    true = np.zeros((6, 6), dtype=np.int32)
    true[1:3, 1:3], true[4:6, 4:6] = 1, 2
    assert error_anatomy(true, true) == {"true": 2, "matched": 2, "merged": 0, "split": 0, "missed": 0,
                                         "spurious": 0}
    assert error_anatomy(np.zeros_like(true), true)["missed"] == 2
    assert error_anatomy(true, np.zeros_like(true))["spurious"] == 2
