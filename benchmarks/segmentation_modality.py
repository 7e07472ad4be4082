"""One R2U-Net / U-Net / MM-GAT for every image type vs one per modality, on DSB2018 ``stage1_test``.

"one model": the weights trained on H&E, brightfield and fluorescence together (``--image_modality brightfield``,
the default) on all 65 images. "per modality": the fluorescence weights (trained or fine-tuned on DSB2018's
fluorescence training images alone, ``--image_modality fluorescence``) on the fluorescence images, the first weights
on the rest, as a user picks the image type of each image; the modality is the rule-based one of the dataset's metadata.
Post-processing and rescaling as tuned on each weights' own validation images; figures as in
``benchmarks/segmentation.py``. A last table says where the per-modality weights' errors are: the share of true
nuclei matched, merged, split or missed, spurious predictions, and the IoU of the matches
(:func:`nuclei_core.metrics.segmentation.error_anatomy`). For reference, the same on DSB2018's held-out training
images (the validation split, which chose checkpoints and thresholds).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.report import table, write_result  # noqa: E402
from benchmarks.segmentation import (GRAPH_ATTENTION_PAPER, MODALITY_GROUPS, SMALL_NUCLEUS_AREA,  # noqa: E402
                                    error_shares, image_scores, paper_comparison_rows, summarise)
from benchmarks.slide_speed import accuracy_and_speed_parser  # noqa: E402
from nuclei_core.data.instance_sets import InstanceAnnotatedImage, load_instance_set  # noqa: E402
from nuclei_core.models.segmenter import (ARCHITECTURES, GRAPH_ATTENTION, IMAGE_MODALITIES,  # noqa: E402
                                         NucleusSegmenter, shipped_weights)

TARGETS = ("Targets on DSB2018: R2U-Net (issue 5) Dice >= 0.92 and mean AP (IoU 0.5:0.95) >= 0.55; MM-GAT (issue "
           "51): its paper's row, mean AP >= 0.676 and average F1 >= 0.738 (the table after the next).")

ERRORS = ("matched: a prediction with IoU > 0.5 (one-to-one, as PQ counts a true positive); else merged: the "
          "prediction that covers most of it covers most of another true nucleus too; else split: two or more "
          "predictions lie mostly inside it; else missed. Shares of the true nuclei; spurious: unmatched predictions "
          "lying mostly on background, per true nucleus; matched IoU: the mean IoU of the matches (PQ's SQ), which "
          "sets what is left at the DSB score's higher thresholds.")

HELD_OUT = ("The validation split of every segmenter (a fixed seed; 50 fluorescence, 10 H&E-like images): "
            "it chose each run's checkpoint and post-processing, so these figures are optimistic, not a test. Beside the "
            "stage1_test figures they show how much of the gap to the targets opens between held-out training "
            "images and the test images.")


def compare_weights(items: list[InstanceAnnotatedImage], device: str) -> tuple[list[dict], list[dict], list[dict],
                                                                                dict, dict]:
    """For each network on ``items``: one-model and per-modality summary rows, the same per fluorescence group, the
    per-modality weights' error shares per modality group that ``items`` holds, the weights' versions, and every
    image's scores per (network, setting)."""
    rows, by_modality, errors, versions, per_image = [], [], [], {}, {}
    for architecture in (*ARCHITECTURES, GRAPH_ATTENTION):
        models = {m: NucleusSegmenter.from_weights(shipped_weights(architecture, m), device)
                  for m in IMAGE_MODALITIES}
        versions.update({f"{architecture}, {m}": model.weights_version for m, model in models.items()})
        single = [image_scores(models["brightfield"], item) for item in items]
        routed = [image_scores(models["fluorescence"], item) if item.modality == "fluorescence" else scores
                  for item, scores in zip(items, single)]
        for setting, scores in (("one model", single), ("per modality", routed)):
            per_image[f"{architecture}, {setting}"] = scores
            rows.append({"network": architecture, "weights": setting, **summarise(scores)})
            by_modality += [{"modality": group, "network": architecture, "weights": setting,
                             **summarise([s for s in scores if s["modality"] == group])}
                            for group in MODALITY_GROUPS[:2]]
        groups = [[s for s in routed if s["modality"] == group] for group in MODALITY_GROUPS]
        errors += [{"network": architecture, "modality": group, **error_shares(scores)}
                   for group, scores in zip(MODALITY_GROUPS, groups) if scores]
    return rows, by_modality, errors, versions, per_image


def main() -> None:
    args = accuracy_and_speed_parser(__doc__, slide=False).parse_args()
    rows, by_modality, errors, versions, per_image = compare_weights(load_instance_set("dsb2018", "test", args.data),
                                                                     args.device)
    held_out, held_out_by_modality, *_ = compare_weights(load_instance_set("dsb2018", "val", args.data), args.device)
    paper = paper_comparison_rows(per_image)
    body = (f"## DSB2018 stage1_test (65 unseen images), whole images\n\n{table(rows)}\n\n{TARGETS}\n\n"
            f"### Against the graph attention paper's row\n\n{table(paper)}\n\n{GRAPH_ATTENTION_PAPER}\n\n"
            f"### Fluorescence images only (split at a median true nucleus area of {SMALL_NUCLEUS_AREA} px; the "
            f"other images get the same weights either way)\n\n{table(by_modality)}\n\n"
            f"### Where the errors are (per modality weights; each true nucleus counted once)\n\n"
            f"{ERRORS}\n\n{table(errors)}\n\n"
            f"## For reference: DSB2018 stage1_train's 60 held-out images (not unseen)\n\n{HELD_OUT}\n\n"
            f"{table(held_out)}\n\n{table(held_out_by_modality)}\n\n"
            f"Weights: {', '.join(f'{k}: `{v}`' for k, v in versions.items())}.\n")
    print(write_result("segmentation_modality", "Nucleus segmentation: one model vs one per image modality", body,
                       {"summary": rows, "fluorescence": by_modality, "errors": errors, "paper_comparison": paper,
                        "held_out_summary": held_out, "held_out_fluorescence": held_out_by_modality,
                        "weights": versions}))
    print(body)


if __name__ == "__main__":
    main()
