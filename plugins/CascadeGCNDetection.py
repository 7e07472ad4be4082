"""CascadeGCNDetection: nucleus centres with the cascaded graph-convolution detector (or CP-CNN / SC-CNN)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from nuclei_core.cli import main as run_cli, tuned_unless_set
from nuclei_core.models.patch_detectors import DETECTORS, WEIGHTS_BY_TRAINING_SET, PatchDetector


def choose_model(args: argparse.Namespace) -> tuple[type[PatchDetector], Path]:
    """The detector class the user picked and its shipped weights for the chosen training set."""
    return DETECTORS[args.detector], WEIGHTS_BY_TRAINING_SET[args.detector][args.training_set]


def model_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The post-processing settings the user changed from the tuned ones (-1 keeps the tuned value)."""
    return {"threshold": tuned_unless_set(args.detection_threshold, "detection_threshold", 0, 1),
            "stage1_threshold": tuned_unless_set(args.stage1_threshold, "stage1_threshold", 0, 1),
            "nms_box": tuned_unless_set(args.nms_box, "nms_box", 1, 64),
            "nms_iou": tuned_unless_set(args.nms_iou, "nms_iou", 0, 0.95)}


def main(argv: list[str] | None = None) -> int:
    """Run the CLI on ``argv`` and return its exit code."""
    return run_cli("CascadeGCNDetection", choose_model, model_overrides, argv)


if __name__ == "__main__":
    sys.exit(main())
