"""DCRN vs DenseNet nucleus classification on CRCHisto test images, and the whole-slide CLI's speed.

Accuracy: every classified nucleus of the 20 test images (never used for training or tuning),
classified from the 32x32 patch at its annotated centre, as in the paper. Writes the tables, the
per-class scores and a confusion-matrix picture; each classifier also with its probabilities averaged over
the eight orientations of the patch (``--flip_averaging`` of the CLI). Speed: DCRNClassification (UD-Net + classifier)
on the sample slide in a fresh process, as the DSA runs it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.report import RESULTS, table, write_result  # noqa: E402
from benchmarks.slide_speed import accuracy_and_speed_parser, cli_speed_section  # noqa: E402
from nuclei_core.data.public_sets import CRCHISTO_CLASSES, load_classified_crchisto  # noqa: E402
from nuclei_core.models.nucleus_classifier import (  # noqa: E402
    ARCHITECTURES,
    DEFAULT_WEIGHTS,
    NucleusClassifier,
    load_classifier,
)
from nuclei_core.training.train_classifier import evaluate  # noqa: E402

PAPER = ("Paper (5-fold cross-validation on CRCHisto): DCRN F1 0.811, DenseNet 0.794. "
         "Target: weighted F1 >= 0.82 on nuclei of unseen images.")


def plot_confusion(reports: dict[str, dict], path: Path) -> None:
    """Row-normalised confusion matrices side by side, counts in the cells."""
    figure, axes = plt.subplots(1, len(reports), figsize=(5.2 * len(reports), 4.4))
    for axis, (name, report) in zip(np.atleast_1d(axes), reports.items()):
        matrix = np.array(report["confusion_matrix"])
        axis.imshow(matrix / matrix.sum(axis=1, keepdims=True), cmap="Blues", vmin=0, vmax=1)
        for (row, col), count in np.ndenumerate(matrix):
            axis.text(col, row, str(count), ha="center", va="center", fontsize=9)
        axis.set(title=f"{name}: weighted F1 {report['weighted_f1']:.3f}", xlabel="predicted", ylabel="true",
                 xticks=range(len(CRCHISTO_CLASSES)), yticks=range(len(CRCHISTO_CLASSES)))
        axis.set_xticklabels(CRCHISTO_CLASSES, rotation=30)
        axis.set_yticklabels(CRCHISTO_CLASSES)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def per_class_rows(reports: dict[str, dict]) -> list[dict]:
    """Precision, recall, F1, AUC and support of each class for each architecture."""
    rows = []
    for name, report in reports.items():
        scores = report["per_class"]
        for k, label in enumerate(CRCHISTO_CLASSES):
            rows.append({"model": name, "class": label, "precision": scores["precision"][k],
                         "recall": scores["recall"][k], "f1": scores["f1"][k], "auc": report["auc"][k],
                         "nuclei": scores["support"][k]})
    return rows


def main() -> None:
    parser = accuracy_and_speed_parser(__doc__)
    args = parser.parse_args()
    test = load_classified_crchisto("test", args.data)
    reports = {}
    for name in ARCHITECTURES:
        reports[name] = evaluate(load_classifier(name), test)
        reports[f"{name}, 8 orientations"] = evaluate(
            NucleusClassifier.from_weights(DEFAULT_WEIGHTS[name], flip_averaging=True), test)
    summary = [{"model": name, "nuclei": int(sum(r["per_class"]["support"])), "accuracy": r["accuracy"],
                "weighted F1": r["weighted_f1"], "macro F1": r["macro_f1"],
                "mean AUC": float(np.mean(r["auc"]))} for name, r in reports.items()]
    picture = RESULTS / "nucleus_classification_confusion.png"
    plot_confusion(reports, picture)
    speed_section, speed, tissue_mp = cli_speed_section(
        args.slide, "DCRNClassification", {**{name: ["--classifier", name] for name in ARCHITECTURES},
                                           "DCRN, 8 orientations": ["--classifier", "DCRN", "--flip_averaging", "true"]},
        args.device,
        "classifier", "UD-Net detection + classifier")
    body = (f"## CRCHisto test split: {len(test)} unseen images, classification at the annotated centres\n\n"
            f"{table(summary)}\n\n{PAPER}\n\n### Per class\n\n{table(per_class_rows(reports))}\n\n"
            f"![confusion matrices]({picture.name})\n\n{speed_section}")
    print(write_result("nucleus_classification", "Nucleus classification: DCRN vs DenseNet", body,
                       {"summary": summary, "reports": reports, "slide": speed, "tissue_mp": tissue_mp}))
    print(body)


if __name__ == "__main__":
    main()
