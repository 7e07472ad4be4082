"""GraphAttentionSegmentation: the contour of every nucleus of a slide, with the multi-magnification graph
attention network."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nuclei_core.cli import main as run_cli
from nuclei_core.models.segmenter import GRAPH_ATTENTION, GraphAttentionSegmenter, shipped_weights
from plugins.R2UNetSegmentation import model_overrides


def choose_model(args: argparse.Namespace) -> tuple[type[GraphAttentionSegmenter], Path]:
    """The segmenter with the shipped graph attention weights for the chosen image type."""
    return GraphAttentionSegmenter, shipped_weights(GRAPH_ATTENTION, args.image_modality)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI on ``argv`` and return its exit code."""
    return run_cli("GraphAttentionSegmentation", choose_model, model_overrides, argv)


if __name__ == "__main__":
    sys.exit(main())
