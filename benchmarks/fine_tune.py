"""Fine-tuning proof: the colorectal UD-Net (CRCHisto, 20x) fine-tuned on a few MoNuSeg training images treated as
a new lab's slides (40x, other organs), then scored on the MoNuSeg test images before and after.

The "slides" are MoNuSeg training JPEGs (40x) with their nucleus centres written as a DSA annotation and one
rectangle around the whole image, exactly what a pathologist would hand to FineTuneNucleiModel. The MoNuSeg
test images are only scored. CRCHisto test F1 is scored too, to show what the fine-tuned detector keeps.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.report import table, write_result  # noqa: E402
from nuclei_core.data.public_sets import SHARED_DATA, TILE_SETS, centroids, load_point_set, tile_set_names  # noqa: E402
from nuclei_core.evaluation import score_point_detector  # noqa: E402
from nuclei_core.fine_tune import BASE_MODELS, AnnotatedSlide, FineTuneSettings, fine_tune  # noqa: E402
from nuclei_core.models.udnet import UDNet  # noqa: E402


def lab_slides(root: Path, count: int, folder: Path) -> list[AnnotatedSlide]:
    """The first ``count`` MoNuSeg training images (not its validation holdout) as annotated 40x slides."""
    source = root / "monuseg" / "train"
    points = centroids(source / "instances.csv")
    slides = []
    for name in tile_set_names(TILE_SETS["monuseg"], root, "train")[:count]:
        elements = [{"type": "point", "center": [float(x), float(y), 0]} for x, y in points[name]]
        elements.append({"type": "rectangle", "center": [500, 500, 0], "width": 1000, "height": 1000, "rotation": 0})
        truth = folder / f"{name}.anot"
        truth.write_text(json.dumps({"name": "lab annotation", "elements": elements}))
        slides.append(AnnotatedSlide(str(source / "images" / f"{name}.jpg"), str(truth), 40.0, f"MoNuSeg train {name}"))
    return slides


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=SHARED_DATA, help="the shared data folder")
    parser.add_argument("--images", type=int, default=2, help="MoNuSeg training images used as the lab's slides")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--base", default="UD-Net colorectal", choices=[n for n in BASE_MODELS if "UD-Net" in n])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        slides = lab_slides(args.data, args.images, Path(folder))
        started = time.time()
        result = fine_tune(slides, args.base, FineTuneSettings(steps=args.steps))
        seconds = time.time() - started
    base = UDNet.from_weights(BASE_MODELS[args.base][1])
    test_sets = {name: load_point_set(name, "test", args.data) for name in ("monuseg", "crchisto")}
    rows = []
    for label, model in (("base", base), ("fine-tuned", result.model)):
        row = {"weights": f"{args.base} {label}"}
        for name, images in test_sets.items():
            scores = score_point_detector(model, images, 6.0)
            row.update({f"{name} test P": scores.precision, f"{name} test R": scores.recall,
                        f"{name} test F1": scores.f1})
        held = result.total(result.before if label == "base" else result.after)
        row["held-out cells F1"] = held.f1
        rows.append(row)
    training_nuclei = sum(len(c.points) for s in result.slides for c in s.training)
    held_nuclei = sum(len(c.points) for s in result.slides for c in s.held_out)
    body = (f"Lab slides: {args.images} MoNuSeg training images (40x), {training_nuclei} annotated nuclei in the "
            f"training cells, {held_nuclei} in the held-out cells. {args.steps} steps of fine-tuning took "
            f"{result.minutes:.1f} min of training and {seconds / 60:.1f} min in all (held-out scoring through the "
            f"engine included) on this machine's CPU. Test images: whole, at 20x (MoNuSeg halved from 40x), "
            f"one-to-one matching within 6 px.\n\n{table(rows)}\n")
    print(write_result("fine_tune", "Fine-tuning UD-Net on a new lab's slides (MoNuSeg as the lab)", body,
                       {"rows": rows, "training_nuclei": training_nuclei, "held_out_nuclei": held_nuclei,
                        "minutes_training": result.minutes, "minutes_total": seconds / 60}))
    print(body)


if __name__ == "__main__":
    main()
