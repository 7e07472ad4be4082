"""R2UNetSegmentation: the contour of every nucleus of a slide, with R2U-Net (or the plain U-Net baseline)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from nuclei_core.cli import main as run_cli, tuned_unless_set
from nuclei_core.models.segmenter import NucleusSegmenter, shipped_weights


def choose_model(args: argparse.Namespace) -> tuple[type[NucleusSegmenter], Path]:
    """The segmenter with the shipped weights of the chosen architecture for the chosen image type."""
    return NucleusSegmenter, shipped_weights(args.architecture, args.image_modality)


def model_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The post-processing settings the user changed from the tuned ones (-1 keeps the tuned value)."""
    return {"foreground_threshold": tuned_unless_set(args.foreground_threshold, "foreground_threshold", 0, 1),
            "marker_threshold": tuned_unless_set(args.marker_threshold, "marker_threshold", 0, 1),
            "min_area": tuned_unless_set(args.min_area, "min_area", 0, 10000),
            "split_distance": tuned_unless_set(args.split_distance, "split_distance", -1, 200),  # 0: no cut
            "flip_averaging": bool(args.flip_averaging)}


def main(argv: list[str] | None = None) -> int:
    """Run the CLI on ``argv`` and return its exit code."""
    return run_cli("R2UNetSegmentation", choose_model, model_overrides, argv)


if __name__ == "__main__":
    sys.exit(main())
