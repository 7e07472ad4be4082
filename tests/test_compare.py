"""CompareNucleiMethods and the consensus behind it."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from nuclei_core.errors import InputError
from nuclei_core.review.consensus import AGREEMENT, consensus, group_nuclei, pairwise_f1
from nuclei_core.review.method_runs import MethodRun, parse_method_list
from plugins.CompareNucleiMethods import main as compare_main

ROI_ARGS = ["--analysis_roi", "850,850,300,300"]  # tissue on CMU-1-Small-Region.svs
A = np.array([[0, 0], [10, 10], [50, 50]], float)
B = np.array([[1, 0], [11, 10]], float)
C = np.array([[0, 1], [80, 80]], float)


def test_consensus_keeps_nuclei_enough_methods_found():
    assert [len(consensus([A, B, C], 3, k)) for k in (1, 2, 3)] == [4, 2, 1]
    two = consensus([A, B, C], 3, 2)
    np.testing.assert_allclose(two.centroids, [[1 / 3, 1 / 3], [10.5, 10]])
    np.testing.assert_allclose(two.measurements[AGREEMENT], [3, 2])
    np.testing.assert_allclose(two.scores, [1, 2 / 3], rtol=1e-6)


def test_one_method_never_counts_twice_for_a_nucleus():
    crowded = np.array([[0.5, 0], [0, 0.5]])  # two nuclei of one method, both near A's first
    agreed = consensus([A, crowded], 3, 2)
    assert len(agreed) == 1 and agreed.measurements[AGREEMENT].tolist() == [2]
    assert len(consensus([A, crowded], 3, 1)) == 4


def test_groups_record_which_method_found_each_nucleus_and_its_score():
    groups = group_nuclei([A, B, C], 3, scores=[np.array([0.9, 0.8, 0.7]), np.array([0.6, 0.5]), np.array([0.4, 0.3])])
    assert groups.found.tolist() == [[True, True, True], [True, True, False], [True, False, False], [False, False, True]]
    np.testing.assert_allclose(groups.scores, [[0.9, 0.6, 0.4], [0.8, 0.5, 0], [0.7, 0, 0], [0, 0, 0.3]])
    np.testing.assert_allclose(groups.positions[:2], [[1 / 3, 1 / 3], [10.5, 10]])
    assert group_nuclei([A, B], 3).scores[0].tolist() == [1.0, 1.0]  # no scores given: ones


def test_pairwise_f1_is_symmetric_with_ones_on_the_diagonal():
    table = pairwise_f1({"a": A, "b": B, "c": C}, 3)
    assert table["a"]["a"] == table["b"]["b"] == 1.0
    assert table["a"]["b"] == table["b"]["a"] == pytest.approx(2 * 2 / (3 + 2))
    assert table["b"]["c"] == pytest.approx(2 * 1 / (2 + 2))


def test_method_lists_with_options():
    runs = parse_method_list("UDNetDetection, CascadeGCNDetection(--detector CP-CNN),"
                             "R2UNetSegmentation(--analysis_tile_size 512), ")
    assert runs[1] == MethodRun("CascadeGCNDetection", "--detector CP-CNN")
    assert runs[1].label == "CascadeGCNDetection(--detector CP-CNN)" and runs[1].argv() == ["--detector", "CP-CNN"]
    assert len(runs) == 3
    for text, message in (("UDNetDetection, Nonsense", "unknown method"), ("UDNetDetection, UDNetDetection",
                                                                            "twice"),
                          ("UDNetDetection(--x", "cannot read"),
                          ("R2UNetSegmentation(--analysis_tile_size 512,)", "invalid value: '512,'")):
        with pytest.raises(InputError, match=message):
            parse_method_list(text)


def test_the_same_method_twice_agrees_fully_and_a_second_detector_partly(sample_svs, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    methods = "UDNetDetection, UDNetDetection(--flip_averaging false), CascadeGCNDetection(--detector SC-CNN)"
    code = compare_main([str(sample_svs), str(out / "compare.anot"), *ROI_ARGS, "--methods", methods,
                         "--min_agreement", "2", "--agreement_table", str(out / "pairs.csv"),
                         "--metrics", str(out / "m.json"), "--geojson", str(out / "compare.geojson")])
    assert code == 0
    metrics = json.loads((out / "m.json").read_text())
    labels = metrics["methods"]
    assert labels == ["UDNetDetection", "UDNetDetection(--flip_averaging false)",
                      "CascadeGCNDetection(--detector SC-CNN)"]
    pairs = metrics["pairwise_f1"]
    assert pairs[labels[0]][labels[1]] == 1.0  # the same settings written out: the same nuclei
    assert 0.5 < pairs[labels[0]][labels[2]] < 1.0
    with open(out / "pairs.csv") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["method", *labels] and [r[0] for r in rows[1:]] == labels
    matrix = np.array([[float(v) for v in r[1:]] for r in rows[1:]])
    np.testing.assert_allclose(matrix, matrix.T)
    np.testing.assert_allclose(np.diag(matrix), 1)
    count = metrics["nuclei"][labels[0]]
    assert metrics["consensus_nuclei"] == count  # the two identical runs alone reach 2 for each of their nuclei
    elements = json.loads((out / "compare.anot").read_text())["elements"]
    groups = [e["group"] for e in elements]
    assert [groups.count(g) for g in [*labels, "consensus"]] == [*metrics["nuclei"].values(), count]
    agreement = [e["user"][AGREEMENT] for e in elements if e["group"] == "consensus"]
    assert set(agreement) <= {2, 3} and 3 in agreement
    assert all(AGREEMENT not in e["user"] for e in elements if e["group"] != "consensus")
    features = json.loads((out / "compare.geojson").read_text())["features"]
    assert len(features) == len(elements)


@pytest.mark.parametrize("options, message", [
    (["--methods", "UDNetDetection"], "at least two methods"),
    (["--methods", "UDNetDetection, UDNetDetection(--training_set Colorectal)", "--min_agreement", "3"],
     "only 2 methods"),
    (["--methods", "UDNetDetection, UDNetDetection(--detection_threshold 7)", "--min_agreement", "2"],
     "outside the allowed range"),
])
def test_bad_input_gives_one_line_and_writes_nothing(sample_svs, tmp_path, capfd, options, message):
    code = compare_main([str(sample_svs), str(tmp_path / "compare.anot"), *ROI_ARGS, "--metrics",
                         str(tmp_path / "m.json"), *options])
    err = capfd.readouterr().err
    assert code == 2 and "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert line.startswith("CompareNucleiMethods: error:") and message in line, line
    assert list(tmp_path.iterdir()) == []
