"""What every training script on point annotations shares: its data and run arguments, and the split."""

from __future__ import annotations

import argparse

import numpy as np

from ..data.points import PointAnnotatedImage, load_point_dataset, read_split


def add_point_training_arguments(parser: argparse.ArgumentParser, steps: int, batch_size: int,
                                 learning_rate: float) -> None:
    """Data (images, points, split), output, checkpoint and run-length arguments, with these defaults."""
    parser.add_argument("--images-dir", required=True, help="folder of RGB images at 20x")
    parser.add_argument("--points-dir", required=True, help="folder of <image>.csv files with x,y columns")
    parser.add_argument("--split-csv", help="CSV with image_id,split columns (else a seeded 90/10 split)")
    parser.add_argument("--output", required=True, help="weights file to write (.pt, fp16)")
    parser.add_argument("--checkpoint", help="resumable checkpoint (default: <output>.ckpt)")
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--batch-size", type=int, default=batch_size)
    parser.add_argument("--learning-rate", type=float, default=learning_rate)
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--max-minutes", type=float, default=float("inf"), help="stop (resumably) after this")
    parser.add_argument("--radius", type=float, default=6.0, help="matching radius in px for validation F1")
    parser.add_argument("--seed", type=int, default=0)


def train_and_validation_sets(args: argparse.Namespace) -> tuple[list[PointAnnotatedImage], list[PointAnnotatedImage]]:
    """The ``train`` and ``val`` images of ``--split-csv``, or a seeded 90/10 split of all images."""
    if args.split_csv:
        return tuple(load_point_dataset(args.images_dir, args.points_dir, read_split(args.split_csv, split))
                     for split in ("train", "val"))
    everything = load_point_dataset(args.images_dir, args.points_dir)
    order = np.random.default_rng(args.seed).permutation(len(everything))
    cut = max(1, len(everything) // 10)
    return [everything[i] for i in order[cut:]], [everything[i] for i in order[:cut]]
