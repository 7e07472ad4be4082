"""R2U-Net vs U-Net nucleus segmentation on unseen test images, and the whole-slide CLI's speed.

Accuracy: DSB2018 ``stage1_test`` (65 images with the released solution; per modality too), MoNuSeg
``test`` (14 H&E tiles, 40x) and CoNSeP ``test`` (14 H&E tiles, 40x), whole images at native
resolution, post-processing thresholds as tuned on the validation split. Dice and AJI are means of the
per-image values (pooled Dice beside them); DSB mean AP is the 2018 Data Science Bowl score (IoU
0.5:0.95) averaged over images; PQ pools TP/FP/FN and IoU over the images. Speed: the R2UNetSegmentation
CLI on the sample slide in a fresh process, as the DSA runs it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.report import table, write_result  # noqa: E402
from benchmarks.slide_speed import accuracy_and_speed_parser, cli_speed_section  # noqa: E402
from nuclei_core.data.instance_sets import InstanceAnnotatedImage, load_instance_set  # noqa: E402
from nuclei_core.metrics.segmentation import (  # noqa: E402
    aggregated_jaccard_index,
    dice,
    dsb_mean_average_precision,
    panoptic_quality,
)
from nuclei_core.models.segmenter import ARCHITECTURES, DEFAULT_WEIGHTS, NucleusSegmenter  # noqa: E402

PAPER = ("Paper (Alom et al., DSB2018): Dice 0.919 R2U-Net vs 0.904 U-Net. Targets on unseen images: DSB2018 "
         "Dice >= 0.92 and mean AP (IoU 0.5:0.95) >= 0.55; MoNuSeg Dice >= 0.80 and AJI >= 0.60.")
TEST_SETS = {"DSB2018 stage1_test": "dsb2018", "MoNuSeg test": "monuseg", "CoNSeP test": "consep"}


def label_scores(labels: np.ndarray, truth: np.ndarray, modality: str) -> dict:
    """Every figure of one predicted label map, plus the pixel and PQ counts that pool over images."""
    pq = panoptic_quality(labels, truth)
    predicted, true = labels > 0, truth > 0
    return {"modality": modality, "dice": dice(labels, truth), "aji": aggregated_jaccard_index(labels, truth),
            "map": dsb_mean_average_precision(labels, truth),
            "overlap": int((predicted & true).sum()), "pixels": int(predicted.sum() + true.sum()),
            "tp": pq["tp"], "fp": pq["fp"], "fn": pq["fn"], "iou_sum": pq["sq"] * pq["tp"]}


def image_scores(model: NucleusSegmenter, item: InstanceAnnotatedImage) -> dict:
    """:func:`label_scores` of the model's segmentation of one test image."""
    return label_scores(model.segment(item.image), item.labels, item.modality)


def summarise(rows: list[dict]) -> dict:
    """Means over images, and pooled Dice / PQ."""
    tp, fp, fn = (sum(r[k] for r in rows) for k in ("tp", "fp", "fn"))
    dq = tp / (tp + 0.5 * fp + 0.5 * fn) if tp else 0.0
    sq = sum(r["iou_sum"] for r in rows) / tp if tp else 0.0
    return {"images": len(rows), "Dice": float(np.mean([r["dice"] for r in rows])),
            "pooled Dice": 2 * sum(r["overlap"] for r in rows) / max(1, sum(r["pixels"] for r in rows)),
            "AJI": float(np.mean([r["aji"] for r in rows])), "DSB mean AP": float(np.mean([r["map"] for r in rows])),
            "PQ": dq * sq}


def main() -> None:
    parser = accuracy_and_speed_parser(__doc__)
    args = parser.parse_args()
    models = {name: NucleusSegmenter.from_weights(DEFAULT_WEIGHTS[name], args.device) for name in ARCHITECTURES}
    per_image = {(label, name): [image_scores(model, item) for item in load_instance_set(dataset, "test", args.data)]
                 for label, dataset in TEST_SETS.items() for name, model in models.items()}
    summary = [{"test set": label, "model": name, **summarise(rows)} for (label, name), rows in per_image.items()]
    dsb = next(label for label, dataset in TEST_SETS.items() if dataset == "dsb2018")
    by_modality = [{"modality": modality, "model": name, **summarise([r for r in per_image[dsb, name]
                                                                      if r["modality"] == modality])}
                   for modality in ("fluorescence", "he", "brightfield") for name in models]
    speed_section, speed, tissue_mp = cli_speed_section(
        args.slide, "R2UNetSegmentation", {n: ["--architecture", n] for n in models}, args.device, "network",
        "segmentation at 40x (the 20x slide upsampled)")
    body = (f"## Unseen test images, whole images at native resolution\n\n{table(summary)}\n\n{PAPER}\n\n"
            f"### DSB2018 stage1_test by modality (rule-based modality of the dataset README)\n\n"
            f"{table(by_modality)}\n\n{speed_section}")
    print(write_result("segmentation", "Nucleus segmentation: R2U-Net vs U-Net", body,
                       {"summary": summary, "by_modality": by_modality, "slide": speed, "tissue_mp": tissue_mp,
                        "configs": {n: m.config for n, m in models.items()}}))
    print(body)


if __name__ == "__main__":
    main()
