"""DCRNClassification: every nucleus of a slide labelled by the DCRN (or DenseNet) classifier."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from nuclei_core.cli import main as run_cli, tuned_unless_set
from nuclei_core.models.classified_nuclei import ClassifyGiven, ClassifyingModel, DetectAndClassify
from nuclei_core.models.nucleus_classifier import DEFAULT_WEIGHTS


def choose_model(args: argparse.Namespace) -> tuple[type[ClassifyingModel], Path]:
    """Classify the given annotation's nuclei, or detect them first; the chosen classifier's weights."""
    model = ClassifyGiven if args.inputNucleiAnnotationFile else DetectAndClassify
    return model, DEFAULT_WEIGHTS[args.classifier]


def model_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Whether the classifier averages over flips; the nuclei source: the annotation file, or the detector's
    weights and changed settings."""
    if args.inputNucleiAnnotationFile:
        return {"nuclei_file": args.inputNucleiAnnotationFile, "flip_averaging": bool(args.flip_averaging)}
    return {"flip_averaging": bool(args.flip_averaging), "detector_weights": args.detector_weights,
            "threshold": tuned_unless_set(args.detection_threshold, "detection_threshold", 0, 1),
            "min_distance": tuned_unless_set(args.min_distance, "min_distance", 0, 50)}


def main(argv: list[str] | None = None) -> int:
    """Run the CLI on ``argv`` and return its exit code."""
    return run_cli("DCRNClassification", choose_model, model_overrides, argv)


if __name__ == "__main__":
    sys.exit(main())
