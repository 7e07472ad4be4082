"""The consensus of the suite's detectors against each single detector, on the test splits.

Each detector finds the nuclei of every whole image (20x; MoNuSeg and CoNSeP halved from 40x; the 40x methods,
R2U-Net, Faster R-CNN and HoVer-Net, see it upsampled and their instance centres are taken); the consensus keeps the
nuclei at least k of them found (one-to-one within 6 px, as CompareNucleiMethods does). Two committees vote: the
CLI's default methods and every member given. k is chosen for each on the validation splits; the test splits
only score. Every k is shown for the record. Beside the count, a learned vote: a logistic regression of whether a
group of nuclei is a true nucleus on which members found it and with what score, fitted (and its cut-off chosen)
on the validation groups. Last, why a vote cannot do better: how many of the other members also found the best
single detector's false positives and misses.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

import numpy as np
from scipy.spatial import cKDTree
from sklearn.linear_model import LogisticRegression

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.report import table, write_result  # noqa: E402
from nuclei_core.data.public_sets import POINT_SETS, SHARED_DATA, load_point_set  # noqa: E402
from nuclei_core.metrics.detection import DetectionScores, detection_scores, match_points  # noqa: E402
from nuclei_core.models.base import NucleusModel  # noqa: E402
from nuclei_core.models.faster_rcnn import DEFAULT_WEIGHTS as FASTER_RCNN_WEIGHTS, FasterRCNNDetector  # noqa: E402
from nuclei_core.models.hovernet import DEFAULT_WEIGHTS as HOVERNET_WEIGHTS, HoVerNet  # noqa: E402
from nuclei_core.models.patch_detectors import DEFAULT_WEIGHTS as PATCH_WEIGHTS, DETECTORS  # noqa: E402
from nuclei_core.models.segmenter import DEFAULT_WEIGHTS as SEGMENTER_WEIGHTS, NucleusSegmenter  # noqa: E402
from nuclei_core.models.udnet import DEFAULT_WEIGHTS as UDNET_WEIGHTS, UDNet  # noqa: E402
from nuclei_core.nuclei import Nuclei  # noqa: E402
from nuclei_core.review.consensus import NucleusGroups, consensus, group_nuclei  # noqa: E402
from nuclei_core.review.evaluation import predict_nuclei  # noqa: E402


MEMBERS: dict[str, Callable[[], NucleusModel]] = {
    "UD-Net": lambda: UDNet.from_weights(UDNET_WEIGHTS),
    "Cascade-GCN": lambda: DETECTORS["Cascade-GCN"].from_weights(PATCH_WEIGHTS["Cascade-GCN"]),
    "CP-CNN": lambda: DETECTORS["CP-CNN"].from_weights(PATCH_WEIGHTS["CP-CNN"]),
    "SC-CNN": lambda: DETECTORS["SC-CNN"].from_weights(PATCH_WEIGHTS["SC-CNN"]),
    "R2U-Net": lambda: NucleusSegmenter.from_weights(SEGMENTER_WEIGHTS["R2U-Net"]),
    "Faster R-CNN": lambda: FasterRCNNDetector.from_weights(FASTER_RCNN_WEIGHTS),
    "HoVer-Net": lambda: HoVerNet.from_weights(HOVERNET_WEIGHTS["SE + CA"]),
}
CLI_DEFAULT_MEMBERS = ["UD-Net", "CP-CNN", "SC-CNN", "R2U-Net"]  # CompareNucleiMethods' default methods


Detections = dict[str, list[tuple[np.ndarray, dict[str, Nuclei]]]]
CUT_OFFS = np.round(np.arange(0.2, 0.81, 0.025), 3)  # the learned vote's probability cut-offs tried on val


def detections(members: dict[str, NucleusModel], split: str, root: Path) -> Detections:
    """dataset -> per whole image of the split: (true points, member name -> its nuclei)."""
    found: Detections = {}
    for dataset in POINT_SETS:
        found[dataset] = [(item.points, {name: predict_nuclei(model, item.image)
                                         for name, model in members.items()})
                          for item in load_point_set(dataset, split, root)]
        print(f"{split} {dataset}: {len(found[dataset])} images", flush=True)
    return found


def committee_scores(found: Detections, committee: list[str], radius: float) -> dict[str, dict[str, DetectionScores]]:
    """dataset -> (member name or "consensus k=…") -> scores micro-averaged over the images."""
    results = {}
    for dataset, images in found.items():
        totals: dict[str, DetectionScores] = {}
        for points, by_member in images:
            centroids = {name: by_member[name].centroids for name in committee}
            for k in range(1, len(committee) + 1):
                centroids[f"consensus k={k}"] = consensus([by_member[n].centroids for n in committee], radius, k).centroids
            for name, found_centres in centroids.items():
                totals[name] = totals.get(name, DetectionScores()) + detection_scores(found_centres, points, radius)
        results[dataset] = totals
    return results


def image_groups(found: Detections, committee: list[str], radius: float) -> dict[str, list[tuple[NucleusGroups, np.ndarray]]]:
    """dataset -> per image: the committee's nuclei grouped (with their scores), and the true points."""
    return {dataset: [(group_nuclei([by_member[n].centroids for n in committee], radius,
                                    [by_member[n].scores for n in committee]), points) for points, by_member in images]
            for dataset, images in found.items()}


def vote_features(groups: NucleusGroups) -> np.ndarray:
    """What the learned vote sees of a group: which members found it, and their scores."""
    return np.hstack([groups.found, groups.scores])


def fit_learned_vote(groups: dict[str, list[tuple[NucleusGroups, np.ndarray]]], radius: float) -> LogisticRegression:
    """Logistic regression: is a group a true nucleus (matched one-to-one to a true point)? Each dataset weighs
    the same, as in the mean F1 the cut-off is chosen by."""
    features, labels, weights = [], [], []
    for images in groups.values():
        rows = sum(len(g.positions) for g, _ in images)
        for g, points in images:
            matched = np.zeros(len(g.positions), bool)
            matched[match_points(g.positions, points, radius)[0]] = True
            features.append(vote_features(g))
            labels.append(matched)
            weights.append(np.full(len(matched), 1.0 / max(rows, 1)))
    weights = np.concatenate(weights)
    return LogisticRegression(max_iter=1000).fit(np.vstack(features), np.concatenate(labels), weights * len(weights))


def vote_probabilities(groups: dict[str, list[tuple[NucleusGroups, np.ndarray]]],
                       vote: LogisticRegression) -> dict[str, list[tuple[NucleusGroups, np.ndarray, np.ndarray]]]:
    """dataset -> per image: its groups, the learned probability that each is a nucleus, and the true points."""
    return {dataset: [(g, vote.predict_proba(vote_features(g))[:, 1], points) for g, points in images]
            for dataset, images in groups.items()}


def learned_vote_scores(voted: dict[str, list[tuple[NucleusGroups, np.ndarray, np.ndarray]]], cut_off: float,
                        radius: float) -> dict[str, DetectionScores]:
    """dataset -> scores of the groups whose learned probability reaches ``cut_off``."""
    return {dataset: sum((detection_scores(g.positions[probability >= cut_off], points, radius)
                          for g, probability, points in images), DetectionScores())
            for dataset, images in voted.items()}


def learned_vote_row(label: str, val: Detections, test: Detections, committee: list[str], radius: float) -> dict:
    """The learned vote of ``committee``: fitted and its cut-off chosen on val, scored on test."""
    val_groups = image_groups(val, committee, radius)
    vote = fit_learned_vote(val_groups, radius)
    val_voted = vote_probabilities(val_groups, vote)
    val_f1 = {c: float(np.mean([s.f1 for s in learned_vote_scores(val_voted, c, radius).values()])) for c in CUT_OFFS}
    cut_off = max(val_f1, key=val_f1.get)
    test_scores = learned_vote_scores(vote_probabilities(image_groups(test, committee, radius), vote), cut_off, radius)
    by_dataset = {dataset: {"learned": test_scores[dataset]} for dataset in POINT_SETS}
    return {**result_row(f"{label} ({len(committee)}) learned vote (cut-off {cut_off:.3f} chosen on val)",
                         by_dataset, "learned"), "val mean F1": val_f1[cut_off]}


def support_rows(test: Detections, best: str, others: list[str], radius: float) -> list[dict]:
    """For each dataset: the best single detector's false positives and misses on test, by how many of the other
    members found a nucleus within ``radius`` of them."""
    rows = []
    for dataset, images in test.items():
        counts = {"false positives": np.zeros(len(others) + 1, int), "misses": np.zeros(len(others) + 1, int)}
        for points, by_member in images:
            centres = by_member[best].centroids
            found, truth = match_points(centres, points, radius)
            errors = {"false positives": np.delete(centres, found, axis=0), "misses": np.delete(points, truth, axis=0)}
            for kind, where in errors.items():
                support = sum(_near_any(where, by_member[name].centroids, radius) for name in others)
                counts[kind] += np.bincount(np.asarray(support, int).reshape(-1), minlength=len(others) + 1)
        for kind, histogram in counts.items():
            rows.append({"dataset": dataset, f"{best}'s": kind, "total": int(histogram.sum()),
                         **{f"found by {j} others": int(n) for j, n in enumerate(histogram)},
                         "share found by all others": histogram[-1] / max(histogram.sum(), 1)})
    return rows


def _near_any(points: np.ndarray, others: np.ndarray, radius: float) -> np.ndarray:
    """1 where a point has one of ``others`` within ``radius``, else 0."""
    if not len(points) or not len(others):
        return np.zeros(len(points), int)
    nearest = cKDTree(others).query(points, distance_upper_bound=np.nextafter(radius, np.inf))[0]  # bound exclusive
    return (nearest <= radius).astype(int)


def mean_f1(scores: dict[str, dict[str, DetectionScores]], name: str) -> float:
    """F1 of ``name`` averaged over the datasets."""
    return sum(by_name[name].f1 for by_name in scores.values()) / len(scores)


def result_row(method: str, scores: dict[str, dict[str, DetectionScores]], name: str) -> dict:
    """P, R, F1 per dataset and the mean F1 of ``name``."""
    row: dict = {"method": method}
    for dataset in POINT_SETS:
        s = scores[dataset][name]
        row.update({f"{dataset} P": s.precision, f"{dataset} R": s.recall, f"{dataset} F1": s.f1})
    return {**row, "mean F1": mean_f1(scores, name)}


def verdict(chosen: dict, singles: list[dict]) -> str:
    """Whether the chosen consensus beats every single detector, dataset by dataset."""
    parts = []
    for dataset in POINT_SETS:
        best = max(r[f"{dataset} F1"] for r in singles)
        beats = "beats" if chosen[f"{dataset} F1"] > best else "does not beat"
        parts.append(f"{dataset}: F1 {chosen[f'{dataset} F1']:.3f} vs best single {best:.3f} ({beats} every detector)")
    return "; ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=SHARED_DATA, help="the shared data folder")
    parser.add_argument("--radius", type=float, default=6.0, help="matching radius in px at 20x")
    parser.add_argument("--members", nargs="+", choices=list(MEMBERS),
                        default=[name for name in MEMBERS if name != "Cascade-GCN"],
                        help="the detectors voting (default: all but Cascade-GCN, which is much slower on a CPU)")
    args = parser.parse_args()
    members = {name: MEMBERS[name]() for name in args.members}
    val, test = (detections(members, split, args.data) for split in ("val", "test"))
    committees = {"CLI default": [n for n in CLI_DEFAULT_MEMBERS if n in members], "all": list(members)}
    test_scores = {label: committee_scores(test, names, args.radius) for label, names in committees.items()}
    rows = [result_row(name, test_scores["all"], name) for name in members]
    summary, chosen_k = [], {}
    for label, names in committees.items():
        val_scores = committee_scores(val, names, args.radius)
        val_f1 = {k: mean_f1(val_scores, f"consensus k={k}") for k in range(1, len(names) + 1)}
        chosen_k[label] = max(val_f1, key=val_f1.get)
        for k, f1 in val_f1.items():
            mark = " (chosen on val)" if k == chosen_k[label] else ""
            rows.append({**result_row(f"{label} ({len(names)}) consensus k={k}{mark}", test_scores[label],
                                      f"consensus k={k}"), "val mean F1": f1})
        chosen = next(r for r in rows if r["method"].startswith(f"{label} (") and "chosen" in r["method"])
        learned = learned_vote_row(label, val, test, names, args.radius)
        rows.append(learned)
        summary.append(f"- **{label} committee** ({', '.join(names)}), k = {chosen_k[label]} of {len(names)}: "
                       f"{verdict(chosen, rows[:len(members)])}. Learned vote: {verdict(learned, rows[:len(members)])}.")
    best = max(members, key=lambda name: mean_f1(test_scores["all"], name))
    support = support_rows(test, best, [name for name in members if name != best], args.radius)
    body = (f"Matching radius {args.radius} px at 20x; test splits scored whole, micro-averaged; k (and the learned "
            f"vote's fit and cut-off) chosen on the validation splits (mean F1 over the three datasets).\n\n"
            + "\n".join(summary) + f"\n\n{table(rows)}\n\n"
            f"## Who else found the errors of {best}, the best single detector (test splits)\n\n"
            f"A false positive of {best} that every other member found too cannot be voted away, and a miss no other "
            f"member found cannot be voted in.\n\n{table(support)}\n")
    print(write_result("consensus", "Consensus of the detectors against each detector", body,
                       {"rows": rows, "committees": committees, "chosen_k": chosen_k, "support": support}))
    print(body)


if __name__ == "__main__":
    main()
