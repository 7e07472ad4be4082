"""HoVerNetSegmentation: nucleus outlines with their cell type (HoVer-Net-style network) on a whole slide."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from nuclei_core.cli import main as run_cli, tuned_unless_set
from nuclei_core.errors import InputError
from nuclei_core.models.hovernet import AVERAGED, HoVerNet, shipped_network


def choose_model(args: argparse.Namespace) -> tuple[type[HoVerNet], Path]:
    """HoVer-Net with the shipped weights of the chosen network, or both shipped networks averaged."""
    if args.network == AVERAGED and args.model_weights:
        raise InputError(f"network '{AVERAGED}' runs the two shipped networks; model_weights replaces one "
                         "network's weights: choose network 'SE + CA' or 'plain' with it")
    return shipped_network(args.network)


def model_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The settings the user changed from the tuned ones (-1 keeps the tuned value), and flip averaging."""
    return {"foreground_threshold": tuned_unless_set(args.foreground_threshold, "foreground_threshold", 0, 1),
            "edge_threshold": tuned_unless_set(args.edge_threshold, "edge_threshold", 0, 1),
            "min_area": tuned_unless_set(args.min_area, "min_area", 0, 10000),
            "inference_window": chosen_window(args.inference_window), "flip_averaging": bool(args.flip_averaging)}


def chosen_window(value: int) -> int | None:
    """The inference window from the CLI: None (the one stored with the weights) for -1, 0 for whole tiles, else
    a side with room for a core inside the network's margins."""
    if value == -1:
        return None
    if value == 0 or value > 2 * HoVerNet.halo:
        return value
    raise InputError(f"inference_window must be 0 (whole tiles), -1 (as tuned) or more than {2 * HoVerNet.halo} px "
                     f"(the network's two margins), got {value}")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI on ``argv`` and return its exit code."""
    return run_cli("HoVerNetSegmentation", choose_model, model_overrides, argv)


if __name__ == "__main__":
    sys.exit(main())
