"""HoVer-Net-style network (SE + CA) against its plain ablation on CoNSeP's unseen test images, and the
whole-slide CLI's speed.

Accuracy: CoNSeP ``test`` (14 tiles, 40x, classes merged to other / inflammatory / epithelial / spindle),
whole images, each network as shipped (on windows of the side its weights name), on whole tiles in one pass and
flip averaged, post-processing thresholds as tuned on the validation images; then both networks' maps averaged
(the CLI's ``both averaged``: each network in its own window, SE + CA's thresholds, which the same tuning grid
chose for the average on the validation images, ``benchmarks/hovernet_validation.py``). Dice and AJI are means over images;
PQ and multi-class PQ+ (CoNIC) pool their counts over the images; R² is CoNIC's multi-class R² of the
per-image nucleus counts of each class; found / true: the nuclei found over the true ones, all images. Speed: the
HoVerNetSegmentation CLI on the sample slide in a fresh process, as the DSA runs it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.report import table, write_result  # noqa: E402
from benchmarks.segmentation import (  # noqa: E402
    detection_quality,
    error_shares,
    label_scores,
    matched_iou,
    summarise,
)
from benchmarks.slide_speed import accuracy_and_speed_parser, cli_speed_section  # noqa: E402
from nuclei_core.data.instance_sets import load_typed_consep  # noqa: E402
from nuclei_core.metrics.segmentation import PanopticAccumulator, multiclass_count_r2  # noqa: E402
from nuclei_core.models.base import load_checkpoint  # noqa: E402
from nuclei_core.models.hovernet import AVERAGED, DEFAULT_WEIGHTS, HoVerNet, shipped_network  # noqa: E402
from nuclei_core.postprocess.hover import instance_types  # noqa: E402

TARGETS = ("Paper (CoNIC): mPQ+ 0.434, R² 0.565 (HoVer-Net 0.296 / -0.428). Published HoVer-Net on CoNSeP: "
           "Dice 0.85, AJI 0.57, PQ 0.55. Targets: PQ >= 0.55, Dice >= 0.84, mPQ+ >= 0.45, R² >= 0.6, and the "
           "ablation below the full model.")


ERRORS = ("PQ = DQ x SQ: DQ, the F1 of the nuclei matched at IoU > 0.5, pooled; SQ, their mean IoU (published "
          "HoVer-Net on CoNSeP: DQ 0.702, SQ 0.778). Each true nucleus counted once: matched; else merged (the "
          "prediction covering most of it covers most of another true nucleus too); else split (two or more "
          "predictions lie mostly inside it); else missed. Spurious: unmatched predictions lying mostly on "
          "background, per true nucleus.")


def score(model: HoVerNet, items: list) -> tuple[dict, dict]:
    """Every figure of the model on the test images, and where its errors are (:func:`error_shares`)."""
    classes = range(1, len(model.class_names) + 1)
    accumulator = PanopticAccumulator(classes)
    predicted_counts, true_counts, rows = [], [], []
    for item in items:
        output = model.predict_outputs(item.image[None])[0]
        labels = model.label_map(output)
        types, _ = instance_types(labels, output[3:])
        accumulator.add(labels, np.concatenate([[0], types])[labels], item.labels, item.types)
        true_types = [np.bincount(item.types[item.labels == i]).argmax() for i in np.unique(item.labels) if i]
        predicted_counts.append([int((types == c).sum()) for c in classes])
        true_counts.append([int(np.sum(np.array(true_types) == c)) for c in classes])
        rows.append(label_scores(labels, item.labels, item.modality))
    summary = summarise(rows)
    mpq = accumulator.result()
    r2 = multiclass_count_r2(np.array(predicted_counts), np.array(true_counts))
    figures = {"Dice": summary["Dice"], "AJI": summary["AJI"], "PQ": summary["PQ"], "DQ": detection_quality(rows),
               "SQ": matched_iou(rows), "mPQ+": mpq["mpq"], "R²": r2["r2"],
               "found / true": round(float(np.sum(predicted_counts) / np.sum(true_counts)), 3),
               **{f"PQ {model.class_names[c - 1]}": v for c, v in mpq["per_class"].items()}}
    return figures, error_shares(rows)


def variants(configs: dict[str, dict[str, Any]], flip_averaged: bool = True) -> dict[str, tuple[str, dict[str, Any]]]:
    """Each network (by its stored config) as shipped (in its inference window), on whole tiles (the fastest) where
    it has a window, and flip averaged unless ``flip_averaged`` is false: label -> (network, settings that replace
    the stored ones)."""
    chosen = {}
    for name, config in configs.items():
        window = config.get("inference_window")
        shipped = f"{name}, {window} px windows" if window else name
        chosen[shipped] = (name, {})
        if window:
            chosen[f"{name}, whole tiles"] = (name, {"inference_window": 0})
        if flip_averaged:
            chosen[f"{shipped}, flip averaged"] = (name, {"flip_averaging": True})
    return chosen


def averaged_variants(flip_averaged: bool = True) -> dict[str, tuple[str, dict[str, Any]]]:
    """Both networks' maps averaged, each in its shipped window, and flip averaged unless ``flip_averaged`` is
    false (labels as :func:`variants`)."""
    label = f"{AVERAGED} (each network as shipped)"
    chosen = {label: (AVERAGED, {})}
    if flip_averaged:
        chosen[f"{label}, flip averaged"] = (AVERAGED, {"flip_averaging": True})
    return chosen


def cli_arguments(network: str, settings: dict[str, Any]) -> list[str]:
    """The CLI's arguments for a network with changed settings."""
    values = {key: str(value).lower() if isinstance(value, bool) else str(value) for key, value in settings.items()}
    return ["--network", network, *(part for key, value in values.items() for part in (f"--{key}", value))]


def main() -> None:
    parser = accuracy_and_speed_parser(__doc__)
    parser.add_argument("--no-flip-averaging", action="store_true",
                        help="leave out the flip-averaged rows (about 4x the time of the others)")
    args = parser.parse_args()
    test = load_typed_consep("test", args.data)
    runs = {**variants({name: load_checkpoint(path)["config"] for name, path in DEFAULT_WEIGHTS.items()},
                       flip_averaged=not args.no_flip_averaging),
            **averaged_variants(flip_averaged=not args.no_flip_averaging)}
    rows, errors, configs = [], [], {}
    for label, (network, settings) in runs.items():
        model_class, weights = shipped_network(network)
        model = model_class.from_weights(weights, args.device, **settings)
        configs[label] = model.config
        figures, shares = score(model, test)
        rows.append({"network": label, "images": len(test), **figures})
        errors.append({"network": label, **shares})
    speed_section, speed, tissue_mp = cli_speed_section(
        args.slide, "HoVerNetSegmentation", {label: cli_arguments(*run) for label, run in runs.items()},
        args.device, "network", "segmentation and classification at 40x (the 20x slide upsampled)")
    body = (f"## CoNSeP test images (unseen), whole images at 40x\n\n{table(rows)}\n\n{TARGETS}\n\n"
            f"### Where the errors are\n\n{ERRORS}\n\n{table(errors)}\n\n{speed_section}")
    print(write_result("hovernet", "HoVer-Net-style segmentation and classification: SE + CA vs plain", body,
                       {"rows": rows, "errors": errors, "slide": speed, "tissue_mp": tissue_mp, "configs": configs}))
    print(body)


if __name__ == "__main__":
    main()
