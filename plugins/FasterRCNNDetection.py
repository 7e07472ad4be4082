"""FasterRCNNDetection: nucleus boxes and scores with a Faster R-CNN on stain-normalised haematoxylin tiles."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from nuclei_core.cli import main as run_cli, tuned_unless_set
from nuclei_core.errors import InputError
from nuclei_core.models.faster_rcnn import DEFAULT_WEIGHTS, FasterRCNNDetector


def choose_model(args: argparse.Namespace) -> tuple[type[FasterRCNNDetector], Path]:
    """The Faster R-CNN with its shipped weights."""
    return FasterRCNNDetector, DEFAULT_WEIGHTS


def lab_triple(values: list[float], name: str) -> tuple[float, float, float]:
    """Three LAB values from a double-vector parameter, or an :class:`InputError` naming it."""
    if len(values) != 3:
        raise InputError(f"{name} needs 3 comma-separated numbers (L, A, B), got {len(values)}")
    return tuple(float(v) for v in values)  # type: ignore[return-value]


def model_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Detection, output and stain settings (-1 keeps the minimum score and NMS threshold tuned with the weights)."""
    stains = (args.stain_1, args.stain_2, args.stain_3)
    if len(set(stains)) < 3:
        raise InputError(f"the three stains must differ, got {', '.join(stains)}")
    reference_std = lab_triple(args.reference_std_lab, "reference_std_lab")
    if min(reference_std) <= 0:
        raise InputError("reference_std_lab values must be positive")
    return {"min_probability": tuned_unless_set(args.min_probability, "min_probability", 0, 1),
            "nms_threshold": tuned_unless_set(args.nms_threshold, "nms_threshold", 0, 1),
            "max_detections": args.max_detections,
            "output_shape": args.output_shape, "stains": stains,
            "reference_mean": lab_triple(args.reference_mu_lab, "reference_mu_lab"),
            "reference_std": reference_std}


def main(argv: list[str] | None = None) -> int:
    """Run the CLI on ``argv`` and return its exit code."""
    return run_cli("FasterRCNNDetection", choose_model, model_overrides, argv)


if __name__ == "__main__":
    sys.exit(main())
