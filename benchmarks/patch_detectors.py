"""Cascade-GCN, CP-CNN and SC-CNN: accuracy on CRCHisto, dense-vs-per-patch speed-up, whole-slide speed.

Accuracy: whole 500x500 test images, one-to-one matching within 6 px (our target) and 8 px (the
paper's radius). Speed-up: the fully convolutional evaluation against the naive loop that runs the
patch classifier on the 27x27 patch of every pixel (batched). Whole slide: the CLI as the DSA runs it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.report import table, write_result  # noqa: E402
from benchmarks.slide_speed import SAMPLE, cli_variant_rows, tissue_megapixels  # noqa: E402
from nuclei_core.data.points import load_point_dataset, read_split  # noqa: E402
from nuclei_core.metrics.detection import DetectionScores, detection_scores  # noqa: E402
from nuclei_core.models.patch_detectors import DEFAULT_WEIGHTS, DETECTORS  # noqa: E402
from nuclei_core.models.patch_gcn import PATCH  # noqa: E402

PAPER = ("Paper (Table I, 2-fold cross-validation, 8 px): SC-CNN F1 0.708, CP-CNN 0.708, GCN 0.679, "
         "Cascade-GCN P 0.733, R 0.793, F1 0.762. Target: Cascade-GCN F1 >= 0.80 within 6 px on unseen images.")


def accuracy_rows(crchisto: Path, weights: dict[str, Path]) -> list[dict]:
    """P, R, F1 of each weights file on the test split at 6 and 8 px (one prediction per image)."""
    test = load_point_dataset(crchisto / "images", crchisto / "detection", read_split(crchisto / "splits.csv", "test"))
    rows = []
    for label, path in weights.items():
        model = DETECTORS[label.split(" ")[0]].from_weights(path)
        found = [model.predict(item.image[None])[0].centroids for item in test]
        for radius in (6.0, 8.0):
            total = DetectionScores(0, 0, 0)
            for points, item in zip(found, test):
                total = total + detection_scores(points, item.points, radius)
            rows.append({"model": model.name, "loss": model.config["loss"], "variant": variant(model.config),
                         "radius px": radius,
                         "images": len(test), "precision": total.precision, "recall": total.recall,
                         "f1": total.f1, "weights": Path(path).name})
    return rows


def variant(config: dict) -> str:
    """The network's dense-layer width, its graph convolutions' orders, and whether stage 2 sees stage 1's
    probability."""
    orders = (config.get("order", 1), config.get("stage2_order", config.get("order", 1)))
    order = "" if orders == (1, 1) else f", order {orders[0]}" if orders[0] == orders[1] else \
        f", orders {orders[0]} / {orders[1]}"
    return f"hidden {config['hidden']}{order}" + (", stage-2 context" if config.get("stage2_context") else "")


def speedup_rows(side: int, repeats: int = 2) -> list[dict]:
    """Seconds for the score of every pixel of a side x side crop: dense vs the per-patch loop."""
    rows = []
    image = torch.rand(1, 3, side + PATCH - 1, side + PATCH - 1)
    for name in ("Cascade-GCN", "CP-CNN"):
        model = DETECTORS[name].from_weights(DEFAULT_WEIGHTS[name])
        network = model.network.stage1 if name == "Cascade-GCN" else model.network
        with torch.inference_mode():
            dense = min(_seconds(lambda: network.dense(image)) for _ in range(repeats))
            patches = image.unfold(2, PATCH, 1).unfold(3, PATCH, 1)[0].permute(1, 2, 0, 3, 4).reshape(-1, 3, PATCH, PATCH)
            naive = _seconds(lambda: [network(patches[i:i + 512]) for i in range(0, len(patches), 512)])
        label = "Cascade-GCN stage 1" if name == "Cascade-GCN" else name
        rows.append({"network": label, "pixels": side * side, "per-patch loop s": round(naive, 2),
                     "dense s": round(dense, 3), "speed-up": round(naive / dense, 1),
                     "dense px/s": round(side * side / dense)})
    return rows


def _seconds(work) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--crchisto", type=Path, default=ROOT.parent / "shared/data/crchisto")
    parser.add_argument("--extra", nargs="*", default=[], metavar="MODEL:LABEL=PATH",
                        help="more weights to score, e.g. Cascade-GCN:focal=/tmp/cascade_gcn_focal.pt")
    parser.add_argument("--slide", default=str(SAMPLE))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--side", type=int, default=128, help="crop side for the dense-vs-loop speed-up")
    parser.add_argument("--name", default="patch_detectors")
    args = parser.parse_args()
    weights = {f"{name} shipped": path for name, path in DEFAULT_WEIGHTS.items()}
    for item in args.extra:
        key, path = item.split("=", 1)
        weights[key.replace(":", " ")] = Path(path)
    accuracy = accuracy_rows(args.crchisto, weights)
    speed = speedup_rows(args.side)
    slide = cli_variant_rows(args.slide, "CascadeGCNDetection", {name: ["--detector", name] for name in DETECTORS},
                             args.device, "detector")
    tissue_mp = tissue_megapixels(args.slide)
    body = (f"## Accuracy on the CRCHisto test split (never used for training or tuning)\n\n"
            f"Threshold, NMS box and score-map smoothing of each weights file were tuned on the `val` split (F1 within 6 px); "
            f"NMS IoU 0.3.\n\n{table(accuracy)}\n\n{PAPER}\n\n"
            f"## Dense evaluation vs the per-patch loop ({args.side} x {args.side} pixels)\n\n"
            f"The dense result equals the per-patch classifier to float tolerance "
            f"(tests/test_patch_detectors.py).\n\n{table(speed)}\n\n"
            f"## Whole slide `{Path(args.slide).name}` ({tissue_mp:.2f} tissue MP), CLI in a fresh process\n\n"
            f"{table(slide)}\n")
    print(write_result(args.name, "Patch detectors: Cascade-GCN, CP-CNN, SC-CNN", body,
                       {"accuracy": accuracy, "speedup": speed, "slide": slide, "tissue_mp": tissue_mp}))
    print(body)


if __name__ == "__main__":
    main()
