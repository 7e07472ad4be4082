"""The segmentation benchmark's F1 averagings against the graph attention paper: Kaggle's and the paper's
thresholds, per image and pooled, on label maps whose matches are known."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks.segmentation import f1_averagings, label_scores, paper_comparison_rows


def square(labels: np.ndarray, label: int, row: int, col: int) -> None:
    labels[row:row + 10, col:col + 10] = label


def test_f1_is_averaged_over_both_threshold_sets_per_image_and_pooled():
    truth_a, shifted = np.zeros((40, 40), np.int32), np.zeros((40, 40), np.int32)
    square(truth_a, 1, 0, 0)
    square(shifted, 1, 0, 2)  # IoU 80 / 120: matched at thresholds below 0.667
    truth_b, found = np.zeros((40, 40), np.int32), np.zeros((40, 40), np.int32)
    square(truth_b, 1, 0, 0)
    square(truth_b, 2, 20, 20)
    square(found, 1, 0, 0)  # one of two found exactly: F1 2/3 at every threshold
    rows = [label_scores(shifted, truth_a, "fluorescence"), label_scores(found, truth_b, "fluorescence")]
    figures = f1_averagings(rows)
    assert figures["average F1 0.5:0.95, per image"] == pytest.approx((4 / 10 + 2 / 3) / 2)
    assert figures["average F1 0.5:0.95, pooled"] == pytest.approx((4 * 0.8 + 6 * 0.4) / 10)
    assert figures["average F1 0.1:0.95, per image"] == pytest.approx((12 / 18 + 2 / 3) / 2)
    assert figures["average F1 0.1:0.95, pooled"] == pytest.approx((12 * 0.8 + 6 * 0.4) / 18)
    table = paper_comparison_rows({"model": rows})
    assert table[0]["competition score (DSB mean AP)"] == 0.6762 and table[0]["average F1 (paper)"] == 0.7384
    assert table[1]["recall@0.7"] == pytest.approx(0.5 * (0 + 1 / 2))
    json.dumps(table, allow_nan=False)  # strict JSON: the paper's missing figures are null
