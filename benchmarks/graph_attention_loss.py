"""MM-GAT trained with the magnification-balanced focal loss against the same network trained with plain BCE.

Both weights come from the same command but ``--loss`` (same seed, data, steps, patches; see the model
card); each is scored on the unseen test sets with its own tuned post-processing, as in
``benchmarks/segmentation.py`` (DSB2018 per modality too). ``--sets`` scores fewer test sets (the
MM-GAT is slow on a CPU: every pixel is a graph node).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.report import table, write_result  # noqa: E402
from benchmarks.segmentation import TEST_SETS, modality_rows, score_test_sets, summary_rows  # noqa: E402
from nuclei_core.data.public_sets import SHARED_DATA  # noqa: E402
from nuclei_core.models.base import WEIGHTS_DIR  # noqa: E402
from nuclei_core.models.segmenter import DEFAULT_WEIGHTS, GRAPH_ATTENTION, NucleusSegmenter  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=SHARED_DATA, help="the shared data folder")
    parser.add_argument("--focal-weights", type=Path, default=WEIGHTS_DIR / "mmgat_nuclei.pt",
                        help="MM-GAT weights trained with --loss balanced-focal (default: the shipped ones)")
    parser.add_argument("--bce-weights", type=Path, default=DEFAULT_WEIGHTS[GRAPH_ATTENTION],
                        help="MM-GAT weights trained with --loss bce (default: the shipped ones, the CLI's default)")
    parser.add_argument("--sets", nargs="+", choices=list(TEST_SETS), default=list(TEST_SETS))
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    weights = {"balanced focal (shipped)": args.focal_weights, "plain BCE": args.bce_weights}
    models = {loss: NucleusSegmenter.from_weights(path, args.device) for loss, path in weights.items()}
    per_image = score_test_sets(models, args.sets, args.data)
    summary = summary_rows(per_image, "loss")
    sections = [f"## Unseen test images, whole images at native resolution\n\n{table(summary)}\n"]
    dsb = next((label for label in args.sets if TEST_SETS[label] == "dsb2018"), None)
    if dsb:
        by_modality = modality_rows(per_image, dsb, list(models), "loss")
        sections.append(f"### {dsb} by modality (as in `segmentation.md`)\n\n{table(by_modality)}\n")
    configs = {loss: model.config for loss, model in models.items()}
    body = "\n".join(sections)
    print(write_result("graph_attention_loss", "MM-GAT: magnification-balanced focal loss vs plain BCE", body,
                       {"summary": summary, "weights": {k: str(v) for k, v in weights.items()}, "configs": configs}))
    print(body)


if __name__ == "__main__":
    main()
