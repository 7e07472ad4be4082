"""Point detectors across tissues: precision, recall and F1 on the test splits of CRCHisto, MoNuSeg and CoNSeP.

Every image is scored whole at 20x (MoNuSeg and CoNSeP halved from 40x, their instance centroids as
the truth), one-to-one matching within 6 px (3 µm). Test splits are never used for training or tuning.

    python benchmarks/cross_tissue.py [--with-cascade]        # the shipped weights on each test split
    python benchmarks/cross_tissue.py --leave-one-out CP-CNN SC-CNN --work-folder DIR

With ``--leave-one-out`` each named method is trained (its multi-organ recipe, ``RECIPES``) on two of the
three datasets and scored on the third's test split, beside the same recipe trained on all three (in-domain).
Weights trained earlier in ``--work-folder`` are reused, so a long run can be resumed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.report import table, write_result  # noqa: E402
from nuclei_core.data.public_sets import POINT_SETS, SHARED_DATA, load_point_set  # noqa: E402
from nuclei_core.models.base import NucleusModel  # noqa: E402
from nuclei_core.models.patch_detectors import DEFAULT_WEIGHTS, DETECTORS, WEIGHTS_BY_TRAINING_SET  # noqa: E402
from nuclei_core.models.udnet import WEIGHTS_BY_TRAINING_SET as UDNET_WEIGHTS  # noqa: E402
from nuclei_core.models.udnet import UDNet  # noqa: E402
from nuclei_core.review.evaluation import score_point_detector  # noqa: E402


def shipped_models(with_cascade: bool) -> dict[str, tuple[type[NucleusModel], Path]]:
    """Label -> (model class, weights) for every shipped point detector and training set (Cascade-GCN only on
    request, and only its default multi-organ weights: ~20 min on 2 CPU cores; its CRCHisto-only weights are
    scored on CRCHisto in patch_detectors.md)."""
    models = {f"UD-Net {path.stem}": (UDNet, path) for path in UDNET_WEIGHTS.values()}
    for name, weights in WEIGHTS_BY_TRAINING_SET.items():
        for path in ([DEFAULT_WEIGHTS[name]] if name == "Cascade-GCN" else weights.values()):
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


PATCH_TRAINER = [sys.executable, "-m", "nuclei_core.training.train_patch_detector"]
# Each method's multi-organ recipe (its model card's): the arguments besides the datasets and the output.
RECIPES = {
    "CP-CNN": [*PATCH_TRAINER, "--model", "CP-CNN", "--loss", "bce", "--steps", "4000", "--stain-jitter", "0.05"],
    "SC-CNN": [*PATCH_TRAINER, "--model", "SC-CNN", "--steps", "4000", "--stain-jitter", "0.05"],
    "Cascade-GCN": [*PATCH_TRAINER, "--model", "Cascade-GCN", "--loss", "bce", "--hidden", "64", "--stage2-context",
                    "--steps", "6000", "--stain-jitter", "0.05"],
    "UD-Net": [sys.executable, "-m", "nuclei_core.training.train_udnet", "--steps", "7000", "--learning-rate", "1e-3",
               "--stain-jitter", "0.05"],
}


def trained(method: str, datasets: list[str], folder: Path) -> Path:
    """The weights of ``method``'s recipe trained on ``datasets`` (trained now unless ``folder`` has them)."""
    output = folder / f"{method.lower().replace('-', '_')}_{'_'.join(datasets)}.pt"
    if not output.exists():
        command = [*RECIPES[method], *[a for name in datasets for a in ("--dataset", name)], "--output", str(output)]
        print(" ".join(command), file=sys.stderr, flush=True)
        subprocess.run(command, cwd=ROOT, check=True, stdout=sys.stderr)
    return output


def leave_one_out_rows(methods: list[str], folder: Path, root: Path, radius: float) -> list[dict]:
    """Per method and held-out dataset: F1 on its test split when trained on the other two, and when trained
    on all three (in-domain); the gap between them."""
    classes = {**DETECTORS, "UD-Net": UDNet}
    tests = {name: load_point_set(name, "test", root) for name in POINT_SETS}
    rows = []
    for method in methods:
        everything = classes[method].from_weights(trained(method, list(POINT_SETS), folder))
        for held_out in POINT_SETS:
            others = [name for name in POINT_SETS if name != held_out]
            without = classes[method].from_weights(trained(method, others, folder))
            unseen = score_point_detector(without, tests[held_out], radius)
            seen = score_point_detector(everything, tests[held_out], radius)
            rows.append({"method": method, "tested on": held_out, "trained on": " + ".join(others),
                         "precision": unseen.precision, "recall": unseen.recall, "f1": unseen.f1,
                         "in-domain f1 (all three)": seen.f1, "gap": seen.f1 - unseen.f1})
            print(rows[-1], file=sys.stderr, flush=True)
    return rows


def annotation_density_rows(root: Path) -> list[dict]:
    """How many nuclei each dataset's test images annotate, per image and per mm² (at 0.5 µm/px)."""
    rows = []
    for name in POINT_SETS:
        images = load_point_set(name, "test", root)
        nuclei, pixels = sum(len(i.points) for i in images), sum(i.image.shape[0] * i.image.shape[1] for i in images)
        rows.append({"dataset": name, "test images": len(images), "nuclei per image": nuclei / len(images),
                     "nuclei per mm²": nuclei / (pixels * 0.5e-3 ** 2)})
    return rows


def write_leave_one_out(rows: list[dict], densities: list[dict], radius: float) -> None:
    body = (f"Each method's recipe (`RECIPES` in benchmarks/cross_tissue.py: stain jitter 0.05, the steps of its "
            f"model card, from a random network: the shipped multi-organ CP-CNN and SC-CNN are fine-tuned from their "
            f"CRCHisto weights, which a run leaving CRCHisto out cannot be) trained on two of the three datasets and "
            f"scored on the third's test split "
            f"(*f1*), beside the same recipe trained on all three and scored on the same split (*in-domain*). "
            f"Matching radius {radius} px at 20x; thresholds tuned on the validation images of the training "
            f"datasets only. Target: every gap at most 0.08.\n\n{table(rows)}\n\n"
            f"The datasets do not annotate alike: a model tuned on the others finds more nuclei than CRCHisto's "
            f"annotators marked, which reads as lost precision there.\n\n{table(densities)}\n")
    print(write_result("cross_tissue_leave_one_out", "Point detectors on a dataset they were not trained on "
                       "(leave one dataset out)", body, {"rows": rows}))
    print(body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=SHARED_DATA, help="the shared data folder")
    parser.add_argument("--split", default="test", choices=("val", "test"))
    parser.add_argument("--radius", type=float, default=6.0)
    parser.add_argument("--with-cascade", action="store_true",
                        help="also score Cascade-GCN's default weights (~20 min on 2 CPU cores)")
    parser.add_argument("--leave-one-out", nargs="+", choices=sorted(RECIPES), metavar="METHOD",
                        help=f"train and score these methods leaving one dataset out ({', '.join(RECIPES)})")
    parser.add_argument("--work-folder", type=Path, default=Path("/tmp/cross_tissue"),
                        help="where --leave-one-out keeps the weights it trains (reused when run again)")
    args = parser.parse_args()
    if args.leave_one_out:
        args.work_folder.mkdir(parents=True, exist_ok=True)
        write_leave_one_out(leave_one_out_rows(args.leave_one_out, args.work_folder, args.data, args.radius),
                            annotation_density_rows(args.data), args.radius)
        return
    rows = accuracy_rows(shipped_models(args.with_cascade), args.split, args.data, args.radius)
    body = (f"Split `{args.split}`; matching radius {args.radius} px at 20x. Each model's thresholds were tuned "
            f"on the validation split of its own training data (see its model card).\n\n{table(rows)}\n")
    name = "cross_tissue" if args.split == "test" else f"cross_tissue_{args.split}"
    print(write_result(name, "Point detectors across tissues (CRCHisto, MoNuSeg, CoNSeP)", body, {"rows": rows}))
    print(body)


if __name__ == "__main__":
    main()
