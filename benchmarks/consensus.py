"""The consensus of the suite's detectors against each single detector, on the test splits.

Each detector finds the nuclei of every whole image (20x; MoNuSeg and CoNSeP halved from 40x; the 40x methods,
R2U-Net, Faster R-CNN and HoVer-Net, see it upsampled and their instance centres are taken); the consensus keeps the
nuclei at least k of them found (one-to-one within 6 px, as CompareNucleiMethods does). Two committees vote: the
CLI's default methods and every member given. k is chosen for each on the validation splits; the test splits
only score. Every k is shown for the record.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.report import table, write_result  # noqa: E402
from nuclei_core.consensus import consensus  # noqa: E402
from nuclei_core.data.public_sets import POINT_SETS, SHARED_DATA, load_point_set  # noqa: E402
from nuclei_core.evaluation import predict_centroids  # noqa: E402
from nuclei_core.metrics.detection import DetectionScores, detection_scores  # noqa: E402
from nuclei_core.models.base import NucleusModel  # noqa: E402
from nuclei_core.models.faster_rcnn import DEFAULT_WEIGHTS as FASTER_RCNN_WEIGHTS, FasterRCNNDetector  # noqa: E402
from nuclei_core.models.hovernet import DEFAULT_WEIGHTS as HOVERNET_WEIGHTS, HoVerNet  # noqa: E402
from nuclei_core.models.patch_detectors import DEFAULT_WEIGHTS as PATCH_WEIGHTS, DETECTORS  # noqa: E402
from nuclei_core.models.segmenter import DEFAULT_WEIGHTS as SEGMENTER_WEIGHTS, NucleusSegmenter  # noqa: E402
from nuclei_core.models.udnet import DEFAULT_WEIGHTS as UDNET_WEIGHTS, UDNet  # noqa: E402


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


Detections = dict[str, list[tuple[np.ndarray, dict[str, np.ndarray]]]]


def detections(members: dict[str, NucleusModel], split: str, root: Path) -> Detections:
    """dataset -> per whole image of the split: (true points, member name -> nucleus centres)."""
    found: Detections = {}
    for dataset in POINT_SETS:
        found[dataset] = [(item.points, {name: predict_centroids(model, item.image)
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
            centroids = {name: by_member[name] for name in committee}
            for k in range(1, len(committee) + 1):
                centroids[f"consensus k={k}"] = consensus([by_member[n] for n in committee], radius, k).centroids
            for name, found_centres in centroids.items():
                totals[name] = totals.get(name, DetectionScores()) + detection_scores(found_centres, points, radius)
        results[dataset] = totals
    return results


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
        summary.append(f"- **{label} committee** ({', '.join(names)}), k = {chosen_k[label]} of {len(names)}: "
                       f"{verdict(chosen, rows[:len(members)])}.")
    body = (f"Matching radius {args.radius} px at 20x; test splits scored whole, micro-averaged; k chosen on the "
            f"validation splits (mean F1 over the three datasets).\n\n" + "\n".join(summary) + f"\n\n{table(rows)}\n")
    print(write_result("consensus", "Consensus of the detectors against each detector", body,
                       {"rows": rows, "committees": committees, "chosen_k": chosen_k}))
    print(body)


if __name__ == "__main__":
    main()
