"""UDNetDetection: nucleus centres with UD-Net (density regression) on a whole slide."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from nuclei_core.cli import main as run_cli
from nuclei_core.errors import InputError
from nuclei_core.models.udnet import DEFAULT_WEIGHTS, UDNet


def model_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The detection settings the user changed from the tuned ones (-1 keeps the tuned value)."""
    threshold, min_distance = args.detection_threshold, args.min_distance
    if threshold != -1 and not 0 < threshold <= 1:
        raise InputError(f"detection_threshold must be in (0, 1] or -1, got {threshold:g}")
    if min_distance != -1 and min_distance < 1:
        raise InputError(f"min_distance must be at least 1 or -1, got {min_distance}")
    return {"threshold": None if threshold == -1 else threshold,
            "min_distance": None if min_distance == -1 else min_distance,
            "flip_averaging": bool(args.flip_averaging)}


def main(argv: list[str] | None = None) -> int:
    """Run the CLI on ``argv`` and return its exit code."""
    return run_cli("UDNetDetection", lambda _: (UDNet, DEFAULT_WEIGHTS), model_overrides, argv)


if __name__ == "__main__":
    sys.exit(main())
