"""bfloat16 against float32 inference (every CLI's ``--precision``): accuracy and speed of each method.

Accuracy: each network at both precisions on the unseen test images its own benchmark scores (the float32 column
repeats that benchmark's figures), as shipped (tuned thresholds, inference windows). Not scored: Cascade-GCN and
the graph attention network, which bfloat16 barely speeds up or slows down (speed table). Speed: each CLI in a fresh
process (start-up, model load and output writing included), as the DSA runs it, on an 800 x 800 px region of the
sample slide (at 20x) and, for the networks bfloat16 speeds up most, on the whole slide.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.faster_rcnn import score as faster_rcnn_figures  # noqa: E402
from benchmarks.hovernet import score as hovernet_figures  # noqa: E402
from benchmarks.report import table, write_result  # noqa: E402
from benchmarks.segmentation import image_scores, summarise  # noqa: E402
from benchmarks.slide_speed import accuracy_and_speed_parser, cli_variant_rows  # noqa: E402
from nuclei_core.data.instance_sets import load_instance_set, load_typed_consep  # noqa: E402
from nuclei_core.data.points import load_point_dataset, read_split  # noqa: E402
from nuclei_core.data.public_sets import load_classified_crchisto  # noqa: E402
from nuclei_core.models.base import PRECISIONS  # noqa: E402
from nuclei_core.models.faster_rcnn import DEFAULT_WEIGHTS as FASTER_RCNN_WEIGHTS  # noqa: E402
from nuclei_core.models.faster_rcnn import FasterRCNNDetector  # noqa: E402
from nuclei_core.models.hovernet import DEFAULT_WEIGHTS as HOVERNET_WEIGHTS  # noqa: E402
from nuclei_core.models.hovernet import HoVerNet  # noqa: E402
from nuclei_core.models.nucleus_classifier import DEFAULT_WEIGHTS as CLASSIFIER_WEIGHTS  # noqa: E402
from nuclei_core.models.nucleus_classifier import NucleusClassifier  # noqa: E402
from nuclei_core.models.patch_detectors import CPCNN  # noqa: E402
from nuclei_core.models.patch_detectors import DEFAULT_WEIGHTS as PATCH_DETECTOR_WEIGHTS  # noqa: E402
from nuclei_core.models.segmenter import DEFAULT_WEIGHTS as SEGMENTER_WEIGHTS  # noqa: E402
from nuclei_core.models.segmenter import FLUORESCENCE_WEIGHTS  # noqa: E402
from nuclei_core.models.segmenter import NucleusSegmenter  # noqa: E402
from nuclei_core.models.udnet import DEFAULT_WEIGHTS as UDNET_WEIGHTS  # noqa: E402
from nuclei_core.models.udnet import WEIGHTS_BY_TRAINING_SET as UDNET_WEIGHTS_BY_SET  # noqa: E402
from nuclei_core.models.udnet import UDNet  # noqa: E402
from nuclei_core.review.evaluation import score_point_detector  # noqa: E402
from nuclei_core.training.train_classifier import evaluate as classification_figures  # noqa: E402

REGION = "600,600,800,800"  # left, top, width, height in the sample slide's 20x pixels
Figures = Callable[[str, str, Path], dict[str, tuple[str, float]]]  # (precision, device, data) -> figure: (set, value)


def crchisto_test(data: Path) -> list:
    """CRCHisto's test images with their nucleus centres."""
    root = data / "crchisto"
    return load_point_dataset(root / "images", root / "detection", read_split(root / "splits.csv", "test"))


def point_detector(model_class: type, weights: Path) -> Figures:
    """F1 (6 px) on CRCHisto's test images."""
    def figures(precision: str, device: str, data: Path) -> dict[str, tuple[str, float]]:
        scores = score_point_detector(model_class.from_weights(weights, device, precision=precision),
                                      crchisto_test(data))
        return {"F1 (6 px)": ("CRCHisto test", scores.f1)}
    return figures


def segmenter(weights: Path, monuseg: bool = True) -> Figures:
    """R2U-Net or U-Net: Dice and AJI on MoNuSeg's test images (H&E weights), mean AP on DSB2018's."""
    def figures(precision: str, device: str, data: Path) -> dict[str, tuple[str, float]]:
        model = NucleusSegmenter.from_weights(weights, device, precision=precision)
        found = {}
        if monuseg:
            scores = summarise([image_scores(model, item) for item in load_instance_set("monuseg", "test", data)])
            found = {"Dice": ("MoNuSeg test", scores["Dice"]), "AJI": ("MoNuSeg test", scores["AJI"])}
        dsb = summarise([image_scores(model, item) for item in load_instance_set("dsb2018", "test", data)])
        return {**found, "DSB mean AP": ("DSB2018 stage1_test", dsb["DSB mean AP"])}
    return figures


def hovernet(network: str) -> Figures:
    """HoVer-Net (``network``: SE + CA or plain): Dice, PQ, mPQ+ and R² on CoNSeP's test images."""
    def figures(precision: str, device: str, data: Path) -> dict[str, tuple[str, float]]:
        found, _ = hovernet_figures(HoVerNet.from_weights(HOVERNET_WEIGHTS[network], device, precision=precision),
                                    load_typed_consep("test", data))
        return {name: ("CoNSeP test", found[name]) for name in ("Dice", "PQ", "mPQ+", "R²")}
    return figures


def faster_rcnn(precision: str, device: str, data: Path) -> dict[str, tuple[str, float]]:
    """Faster R-CNN: centroid F1 on MoNuSeg's test images."""
    model = FasterRCNNDetector.from_weights(FASTER_RCNN_WEIGHTS, device, output_shape="rectangles",
                                            precision=precision)
    return {"centroid F1": ("MoNuSeg test", faster_rcnn_figures(model, load_instance_set("monuseg", "test", data))
                            ["centroid F1"])}


def classifier(name: str) -> Figures:
    """DCRN or DenseNet: weighted F1 of the classes at CRCHisto's annotated test centres."""
    def figures(precision: str, device: str, data: Path) -> dict[str, tuple[str, float]]:
        model = NucleusClassifier.from_weights(CLASSIFIER_WEIGHTS[name], device, precision=precision)
        return {"weighted F1": ("CRCHisto test", classification_figures(model, load_classified_crchisto("test", data))
                                ["weighted_f1"])}
    return figures


# Every shipped weights file that precision "auto" runs in bfloat16 where the CPU computes it natively, plus
# Faster R-CNN for reference.
ACCURACY: dict[str, Figures] = {
    "UD-Net (Multi-organ)": point_detector(UDNet, UDNET_WEIGHTS),
    "UD-Net (Colorectal)": point_detector(UDNet, UDNET_WEIGHTS_BY_SET["Colorectal"]),
    "CP-CNN": point_detector(CPCNN, PATCH_DETECTOR_WEIGHTS["CP-CNN"]),
    "Faster R-CNN": faster_rcnn, "DCRN": classifier("DCRN"), "DenseNet": classifier("DenseNet"),
    "R2U-Net": segmenter(SEGMENTER_WEIGHTS["R2U-Net"]), "U-Net": segmenter(SEGMENTER_WEIGHTS["U-Net"]),
    "R2U-Net (fluorescence)": segmenter(FLUORESCENCE_WEIGHTS["R2U-Net"], monuseg=False),
    "U-Net (fluorescence)": segmenter(FLUORESCENCE_WEIGHTS["U-Net"], monuseg=False),
    "HoVer-Net (SE + CA)": hovernet("SE + CA"), "HoVer-Net (plain)": hovernet("plain")}
# label -> (CLI, its options, also timed on the whole slide)
CLIS = {"UD-Net": ("UDNetDetection", [], True), "Cascade-GCN": ("CascadeGCNDetection", [], False),
        "CP-CNN": ("CascadeGCNDetection", ["--detector", "CP-CNN"], False),
        "Faster R-CNN": ("FasterRCNNDetection", [], False), "UD-Net + DCRN": ("DCRNClassification", [], True),
        "R2U-Net": ("R2UNetSegmentation", [], True), "HoVer-Net (SE + CA)": ("HoVerNetSegmentation", [], True),
        "MM-GAT": ("GraphAttentionSegmentation", [], False)}


def accuracy_rows(device: str, data: Path, methods: list[str]) -> list[dict]:
    """One row per method and figure: its value at each precision and the difference."""
    rows = []
    for method in methods:
        figures = ACCURACY[method]
        found = {precision: figures(precision, device, data) for precision in PRECISIONS}
        for name, (test_set, reference) in found["float32"].items():
            reduced = found["bfloat16"][name][1]
            rows.append({"method": method, "test set": test_set, "figure": name, "float32": round(reference, 4),
                         "bfloat16": round(reduced, 4), "difference": round(reduced - reference, 4)})
    return rows


def speed_rows(slide: str, device: str, whole_slide: bool) -> list[dict]:
    """Each CLI on the region (and the chosen ones on the whole slide) at each precision: seconds, speed-up and
    the nuclei found."""
    variants, cli_of = {}, {}
    for label, (cli, options, on_slide) in CLIS.items():
        extents = {"region": ["--analysis_roi", REGION], **({"whole slide": []} if whole_slide and on_slide else {})}
        for extent, region in extents.items():
            for precision in PRECISIONS:
                key = f"{label}|{extent}|{precision}"
                variants[key], cli_of[key] = [*options, *region, "--precision", precision], cli
    timed = {row["run"]: row for row in cli_variant_rows(slide, cli_of, variants, device, "run")}
    rows = []
    for key in variants:
        label, extent, precision = key.split("|")
        if precision != "float32":
            continue
        full, reduced = timed[key], timed[f"{label}|{extent}|bfloat16"]
        rows.append({"CLI": label, "extent": extent, "device": device, "float32 s": full["wall s"],
                     "bfloat16 s": reduced["wall s"], "speed-up": round(full["wall s"] / reduced["wall s"], 2),
                     "nuclei float32": full["nuclei"], "nuclei bfloat16": reduced["nuclei"],
                     "peak RSS MiB float32 / bfloat16": f"{full['peak RSS MiB']} / {reduced['peak RSS MiB']}"})
    return rows


def main() -> None:
    parser = accuracy_and_speed_parser(__doc__)
    parser.add_argument("--region-only", action="store_true", help="time the CLIs on the region only")
    parser.add_argument("--accuracy-only", action="store_true", help="score the test images, time nothing")
    parser.add_argument("--methods", nargs="+", choices=list(ACCURACY), default=list(ACCURACY),
                        help="the weights whose test figures are scored")
    parser.add_argument("--name", default="precision", help="result file name in benchmarks/results")
    args = parser.parse_args()
    accuracy = accuracy_rows(args.device, args.data, args.methods)
    body = f"## Accuracy on unseen test images\n\n{table(accuracy)}\n"
    speed = [] if args.accuracy_only else speed_rows(args.slide, args.device, not args.region_only)
    if speed:
        body += (f"\n## Speed: `{Path(args.slide).name}`, the region `{REGION}` (20x px) and the whole slide\n\n"
                 f"{table(speed)}\n")
    print(write_result(args.name, "bfloat16 against float32 inference (--precision)", body,
                       {"accuracy": accuracy, "speed": speed, "region": REGION}))
    print(body)


if __name__ == "__main__":
    main()
