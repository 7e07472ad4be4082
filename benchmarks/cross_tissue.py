"""Point detectors across tissues: precision, recall and F1 on the test splits of CRCHisto, MoNuSeg and CoNSeP.

Every image is scored whole at 20x (MoNuSeg and CoNSeP halved from 40x, their instance centroids as
the truth), one-to-one matching within 6 px (3 µm). Test splits are never used for training or tuning.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.report import table, write_result  # noqa: E402
from nuclei_core.data.public_sets import POINT_SETS, SHARED_DATA, load_point_set  # noqa: E402
from nuclei_core.models.base import NucleusModel  # noqa: E402
from nuclei_core.models.patch_detectors import DEFAULT_WEIGHTS, DETECTORS  # noqa: E402
from nuclei_core.models.udnet import WEIGHTS_BY_TRAINING_SET, UDNet  # noqa: E402
from nuclei_core.review.evaluation import score_point_detector  # noqa: E402


def shipped_models(with_cascade: bool) -> dict[str, tuple[type[NucleusModel], Path]]:
    """Label -> (model class, weights) for every shipped point detector (the cascade only on request: slow)."""
    models = {f"UD-Net {path.stem}": (UDNet, path) for path in WEIGHTS_BY_TRAINING_SET.values()}
    for name, path in DEFAULT_WEIGHTS.items():
        if with_cascade or name != "Cascade-GCN":
            models[f"{name} {path.stem}"] = (DETECTORS[name], path)
    return models


def accuracy_rows(models: dict[str, tuple[type[NucleusModel], Path]], split: str, root: Path,
                  radius: float) -> list[dict]:
    """One row per (model, dataset): micro-averaged P, R, F1 over the split's whole images."""
    data = {name: load_point_set(name, split, root) for name in POINT_SETS}
    rows = []
    for label, (model_class, weights) in models.items():
        model = model_class.from_weights(weights)
        scores = {name: score_point_detector(model, images, radius) for name, images in data.items()}
        for name, total in scores.items():
            rows.append({"model": label, "dataset": name, "images": len(data[name]), "precision": total.precision,
                         "recall": total.recall, "f1": total.f1})
        rows.append({"model": label, "dataset": "mean of the three", "images": sum(len(d) for d in data.values()),
                     "precision": sum(s.precision for s in scores.values()) / len(scores),
                     "recall": sum(s.recall for s in scores.values()) / len(scores),
                     "f1": sum(s.f1 for s in scores.values()) / len(scores)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=SHARED_DATA, help="the shared data folder")
    parser.add_argument("--split", default="test", choices=("val", "test"))
    parser.add_argument("--radius", type=float, default=6.0)
    parser.add_argument("--with-cascade", action="store_true", help="also score Cascade-GCN (~40 min on 2 CPU cores)")
    args = parser.parse_args()
    rows = accuracy_rows(shipped_models(args.with_cascade), args.split, args.data, args.radius)
    body = (f"Split `{args.split}`; matching radius {args.radius} px at 20x. Each model's thresholds were tuned "
            f"on the validation split of its own training data (see its model card).\n\n{table(rows)}\n")
    name = "cross_tissue" if args.split == "test" else f"cross_tissue_{args.split}"
    print(write_result(name, "Point detectors across tissues (CRCHisto, MoNuSeg, CoNSeP)", body, {"rows": rows}))
    print(body)


if __name__ == "__main__":
    main()
