"""The consensus of the suite's detectors against each single detector, on the test splits.

Each detector finds the nuclei of every whole image (20x; MoNuSeg and CoNSeP halved from 40x; R2U-Net
works at 40x and its instance centres are taken); the consensus keeps the nuclei at least k of them found
(one-to-one within 6 px, as CompareNucleiMethods does). k is chosen on the validation splits; the test
splits only score. Every k is shown for the record.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.report import table, write_result  # noqa: E402
from nuclei_core.consensus import consensus  # noqa: E402
from nuclei_core.data.public_sets import POINT_SETS, SHARED_DATA, load_point_set  # noqa: E402
from nuclei_core.evaluation import predict_centroids  # noqa: E402
from nuclei_core.metrics.detection import DetectionScores, detection_scores  # noqa: E402
from nuclei_core.models.base import NucleusModel  # noqa: E402
from nuclei_core.models.patch_detectors import DEFAULT_WEIGHTS, DETECTORS  # noqa: E402
from nuclei_core.models.segmenter import DEFAULT_WEIGHTS as SEGMENTER_WEIGHTS, NucleusSegmenter  # noqa: E402
from nuclei_core.models.udnet import WEIGHTS_BY_TRAINING_SET, UDNet  # noqa: E402


def detectors(with_cascade: bool) -> dict[str, NucleusModel]:
    """The CLI's default members (UD-Net, CP-CNN, SC-CNN, R2U-Net; Cascade-GCN on request: slow on a CPU)."""
    members = {"UD-Net": UDNet.from_weights(WEIGHTS_BY_TRAINING_SET["Multi-organ"])}
    for name in ("Cascade-GCN", "CP-CNN", "SC-CNN"):
        if with_cascade or name != "Cascade-GCN":
            members[name] = DETECTORS[name].from_weights(DEFAULT_WEIGHTS[name])
    members["R2U-Net"] = NucleusSegmenter.from_weights(SEGMENTER_WEIGHTS["R2U-Net"])
    return members


def scores_by_k(members: dict[str, NucleusModel], split: str, root: Path,
                radius: float) -> dict[str, dict[str, DetectionScores]]:
    """dataset -> (detector name or "consensus k") -> micro-averaged scores over the split's whole images."""
    results = {}
    for dataset in POINT_SETS:
        totals: dict[str, DetectionScores] = {}
        for item in load_point_set(dataset, split, root):
            found = {name: predict_centroids(model, item.image) for name, model in members.items()}
            for k in range(1, len(found) + 1):
                found[f"consensus k={k}"] = consensus(list(found.values())[:len(members)], radius, k).centroids
            for name, centroids in found.items():
                totals[name] = totals.get(name, DetectionScores()) + detection_scores(centroids, item.points, radius)
        results[dataset] = totals
        print(f"{split} {dataset}: " + ", ".join(f"{n} {s.f1:.3f}" for n, s in totals.items()), flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=SHARED_DATA, help="the shared data folder")
    parser.add_argument("--radius", type=float, default=6.0, help="matching radius in px at 20x")
    parser.add_argument("--with-cascade", action="store_true", help="add Cascade-GCN (much slower on a CPU)")
    args = parser.parse_args()
    members = detectors(args.with_cascade)
    val = scores_by_k(members, "val", args.data, args.radius)
    mean_val_f1 = {k: sum(val[d][f"consensus k={k}"].f1 for d in val) / len(val) for k in range(1, len(members) + 1)}
    best_k = max(mean_val_f1, key=mean_val_f1.get)
    test = scores_by_k(members, "test", args.data, args.radius)
    rows = []
    for name in test[POINT_SETS[0]]:
        row = {"method": name + (" (chosen on val)" if name == f"consensus k={best_k}" else "")}
        for dataset in POINT_SETS:
            s = test[dataset][name]
            row.update({f"{dataset} P": s.precision, f"{dataset} R": s.recall, f"{dataset} F1": s.f1})
        row["mean F1"] = sum(test[d][name].f1 for d in POINT_SETS) / len(POINT_SETS)
        if name.startswith("consensus"):
            row["val mean F1"] = mean_val_f1[int(name.split("=")[1])]
        rows.append(row)
    singles = [r for r in rows if not r["method"].startswith("consensus")]
    chosen = next(r for r in rows if "chosen" in r["method"])
    verdict = "; ".join(
        f"{d}: consensus F1 {chosen[f'{d} F1']:.3f} vs best single {max(r[f'{d} F1'] for r in singles):.3f} "
        f"({'beats' if chosen[f'{d} F1'] > max(r[f'{d} F1'] for r in singles) else 'does not beat'} every detector)"
        for d in POINT_SETS)
    body = (f"Members: {', '.join(members)}. Matching radius {args.radius} px at 20x; test splits scored whole, "
            f"micro-averaged. k = {best_k} of {len(members)} was chosen on the validation splits (mean F1 over the "
            f"three datasets).\n\n**{verdict}.**\n\n{table(rows)}\n")
    print(write_result("consensus", "Consensus of the detectors against each detector", body,
                       {"rows": rows, "best_k": best_k, "val_mean_f1": mean_val_f1}))
    print(body)


if __name__ == "__main__":
    main()
