"""What every training script on point annotations shares: its data and run arguments, and the split."""

from __future__ import annotations

import argparse

import numpy as np

from ..data.points import PointAnnotatedImage, load_point_dataset, read_split
from ..data.public_sets import POINT_SETS, load_point_set
from ..errors import InputError
from .run_arguments import add_run_arguments


def add_point_training_arguments(parser: argparse.ArgumentParser, steps: int, batch_size: int,
                                 learning_rate: float) -> None:
    """Data (images, points, split), output, checkpoint and run-length arguments, with these defaults."""
    parser.add_argument("--dataset", action="append", choices=POINT_SETS,
                        help="a prepared public dataset of ../shared/data (repeat to mix several); "
                             "replaces --images-dir/--points-dir")
    parser.add_argument("--images-dir", help="folder of RGB images at 20x")
    parser.add_argument("--points-dir", help="folder of <image>.csv files with x,y columns")
    parser.add_argument("--split-csv", help="CSV with image_id,split columns (else a seeded 90/10 split)")
    parser.add_argument("--radius", type=float, default=6.0, help="matching radius in px for validation F1")
    parser.add_argument("--stain-jitter", type=float, default=0.0,
                        help="HED stain augmentation strength (0 = off; 0.05 is Tellez et al.'s light setting)")
    add_run_arguments(parser, steps, batch_size, learning_rate)


def train_and_validation_sets(args: argparse.Namespace) -> tuple[list[PointAnnotatedImage], list[PointAnnotatedImage]]:
    """The ``train`` and ``val`` images of ``--dataset``s or ``--split-csv``, or a seeded 90/10 split of all images."""
    if args.dataset:
        return tuple([item for name in args.dataset for item in load_point_set(name, split)]
                     for split in ("train", "val"))
    if not (args.images_dir and args.points_dir):
        raise InputError("give --dataset, or both --images-dir and --points-dir")
    if args.split_csv:
        return tuple(load_point_dataset(args.images_dir, args.points_dir, read_split(args.split_csv, split))
                     for split in ("train", "val"))
    everything = load_point_dataset(args.images_dir, args.points_dir)
    order = np.random.default_rng(args.seed).permutation(len(everything))
    cut = max(1, len(everything) // 10)
    return [everything[i] for i in order[cut:]], [everything[i] for i in order[:cut]]
