"""UDNetDetection: nucleus centres with UD-Net (density regression) on a whole slide."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from nuclei_core.cli import main as run_cli, tuned_unless_set
from nuclei_core.models.udnet import WEIGHTS_BY_TRAINING_SET, UDNet


def choose_model(args: argparse.Namespace) -> tuple[type[UDNet], Path]:
    """UD-Net with the shipped weights of the chosen training set."""
    return UDNet, WEIGHTS_BY_TRAINING_SET[args.training_set]


def model_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The detection settings the user changed from the tuned ones (-1 keeps the tuned value)."""
    return {"threshold": tuned_unless_set(args.detection_threshold, "detection_threshold", 0, 1),
            "min_distance": tuned_unless_set(args.min_distance, "min_distance", 0, 50),
            "flip_averaging": bool(args.flip_averaging)}


def main(argv: list[str] | None = None) -> int:
    """Run the CLI on ``argv`` and return its exit code."""
    return run_cli("UDNetDetection", choose_model, model_overrides, argv)


if __name__ == "__main__":
    sys.exit(main())
