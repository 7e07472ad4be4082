"""HoVerNetSegmentation: nucleus outlines with their cell type (HoVer-Net-style network) on a whole slide."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from nuclei_core.cli import main as run_cli, tuned_unless_set
from nuclei_core.models.hovernet import DEFAULT_WEIGHTS, HoVerNet


def choose_model(args: argparse.Namespace) -> tuple[type[HoVerNet], Path]:
    """HoVer-Net with the shipped weights of the chosen network."""
    return HoVerNet, DEFAULT_WEIGHTS[args.network]


def model_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The post-processing settings the user changed from the tuned ones (-1 keeps the tuned value)."""
    return {"foreground_threshold": tuned_unless_set(args.foreground_threshold, "foreground_threshold", 0, 1),
            "edge_threshold": tuned_unless_set(args.edge_threshold, "edge_threshold", 0, 1),
            "min_area": tuned_unless_set(args.min_area, "min_area", 0, 10000)}


def main(argv: list[str] | None = None) -> int:
    """Run the CLI on ``argv`` and return its exit code."""
    return run_cli("HoVerNetSegmentation", choose_model, model_overrides, argv)


if __name__ == "__main__":
    sys.exit(main())
