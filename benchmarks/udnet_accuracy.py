"""UD-Net detection accuracy on CRCHisto whole 500x500 images (one-to-one matching within 6 px), for each shipped weights file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.report import table, write_result  # noqa: E402
from nuclei_core.data.points import load_point_dataset, read_split  # noqa: E402
from nuclei_core.models.udnet import WEIGHTS_BY_TRAINING_SET, UDNet  # noqa: E402
from nuclei_core.review.evaluation import score_point_detector  # noqa: E402

PAPER = "UD-Net paper (5-fold CV, 96x96 patches): P 0.822, R 0.843, F1 0.828; SC-CNN F1 0.802. Target: F1 >= 0.83."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--crchisto", default=str(Path(__file__).resolve().parents[2] / "shared/data/crchisto"))
    parser.add_argument("--weights", nargs="*", default=[str(p) for p in WEIGHTS_BY_TRAINING_SET.values()])
    parser.add_argument("--radius", type=float, default=6.0)
    args = parser.parse_args()
    root = Path(args.crchisto)
    rows, settings = [], []
    for weights in args.weights:
        for flips in (False, True):
            model = UDNet.from_weights(weights, flip_averaging=flips)
            for split in ("val", "test"):
                names = read_split(root / "splits.csv", split)
                images = load_point_dataset(root / "images", root / "detection", names)
                scores = score_point_detector(model, images, args.radius)
                rows.append({"weights": Path(weights).name, "split": split, "flip averaging": flips,
                             "images": len(images), **scores.as_dict()})
        settings.append(f"- `{Path(weights).name}` (version {model.weights_version}): threshold "
                        f"{model.config['threshold']}, min_distance {model.config['min_distance']} (tuned on its "
                        f"validation images)")
    body = ("\n".join(settings) + "\n\nThe CRCHisto `test` split was never used for training or tuning.\n\n"
            f"{table(rows)}\n\n{PAPER}\n")
    print(write_result("udnet_accuracy", "UD-Net on CRCHisto (whole images, 6 px matching)", body, {"rows": rows}))
    print(table(rows))


if __name__ == "__main__":
    main()
