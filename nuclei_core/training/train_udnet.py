"""Train UD-Net on point annotations (images + x,y CSVs), choosing the peak threshold on a validation split.

Examples (the shipped weights; their model cards give the exact commands)::

    python -m nuclei_core.training.train_udnet --images-dir ../shared/data/crchisto/images \
        --points-dir ../shared/data/crchisto/detection --split-csv ../shared/data/crchisto/splits.csv \
        --output nuclei_core/models/weights/udnet_crchisto.pt
    python -m nuclei_core.training.train_udnet --dataset crchisto --dataset monuseg --dataset consep \
        --stain-jitter 0.05 --output nuclei_core/models/weights/udnet_multiorgan.pt
"""

from __future__ import annotations


import numpy as np
import torch
from torch import nn

from ..data.augment import colour_jitter, random_dihedral, stain_jitter
from ..data.points import PointAnnotatedImage
from ..metrics.detection import DetectionScores, detection_scores
from ..models.base import resolve_device
from ..models.udnet import DEFAULT_CONFIG, UDNet
from ..postprocess.peaks import find_peaks
from .density import density_target
from .point_data import add_point_training_arguments, train_and_validation_sets
from .run_arguments import add_device_argument, run_training_script, settings_from, training_parser, write_run_log
from .trainer import train

THRESHOLDS = np.round(np.arange(0.05, 0.71, 0.05), 2)
MIN_DISTANCES = (2, 3, 4)


def make_sampler(dataset: list[PointAnnotatedImage], patch: int, batch_size: int, radius: int, sigma: float,
                 stain_strength: float = 0.0):
    """A seeded sampler of augmented (image, density) patch batches (HED stain jitter when ``stain_strength``)."""
    targets = [density_target(d.points, d.image.shape[:2], radius, sigma) for d in dataset]

    def sample(rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        images, maps = [], []
        for _ in range(batch_size):
            index = int(rng.integers(len(dataset)))
            image, target = dataset[index].image, targets[index]
            top = int(rng.integers(image.shape[0] - patch + 1))
            left = int(rng.integers(image.shape[1] - patch + 1))
            crop, crop_target = random_dihedral(rng, image[top:top + patch, left:left + patch],
                                                target[top:top + patch, left:left + patch])
            if stain_strength:
                crop = stain_jitter(rng, crop, stain_strength)
            images.append(colour_jitter(rng, crop))
            maps.append(crop_target)
        x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div_(255.0)
        return x, torch.from_numpy(np.stack(maps))[:, None]

    return sample


def make_validator(model: UDNet, dataset: list[PointAnnotatedImage], radius: float):
    """Validation F1 at the best (threshold, min_distance) over a small grid, on whole images."""

    def validate(network: nn.Module) -> tuple[float, dict]:
        maps = [model.predict_outputs(d.image[None])[0, 0] for d in dataset]
        best = (-1.0, 0.0, 0)
        for min_distance in MIN_DISTANCES:
            for threshold in THRESHOLDS:
                total = DetectionScores(0, 0, 0)
                for score_map, item in zip(maps, dataset):
                    points, _ = find_peaks(score_map, float(threshold), min_distance)
                    total = total + detection_scores(points, item.points, radius)
                best = max(best, (total.f1, float(threshold), min_distance))
        return best[0], {"threshold": best[1], "min_distance": best[2]}

    return validate


def main(argv: list[str] | None = None) -> None:
    parser = training_parser(__doc__)
    add_point_training_arguments(parser, steps=8000, batch_size=8, learning_rate=2e-4)
    parser.add_argument("--patch-size", type=int, default=128)
    parser.add_argument("--target-radius", type=int, default=3, help="disc radius (px) the centres are dilated to")
    parser.add_argument("--target-sigma", type=float, default=2.0, help="Gaussian smoothing of the discs (px)")
    parser.add_argument("--init-weights", help="start from these weights (.pt) instead of a random network")
    add_device_argument(parser)
    parser.add_argument("--version", default="udnet-crchisto-1", help="weights version recorded in outputs")
    args = parser.parse_args(argv)
    train_set, val_set = train_and_validation_sets(args)
    print(f"train images {len(train_set)}, validation images {len(val_set)}", flush=True)

    device = str(resolve_device(args.device))
    model = UDNet(dict(DEFAULT_CONFIG), device=device)
    if args.init_weights:
        model.network.load_state_dict(UDNet.from_weights(args.init_weights).network.state_dict())
    model.config.update(target_radius=args.target_radius, target_sigma=args.target_sigma)
    settings = settings_from(args, device=device)
    sampler = make_sampler(train_set, args.patch_size, args.batch_size, args.target_radius, args.target_sigma,
                           args.stain_jitter)
    state = train(model.network, sampler, nn.MSELoss(),
                  make_validator(model, val_set, args.radius), settings,
                  log=lambda line: print(line, flush=True))
    model.network.load_state_dict(state["best_state"])
    model.config.update(state["best_extra"])
    model.save(args.output, version=args.version)
    write_run_log(args, state, {"step": state["step"], "best_validation_f1": state["best_score"],
                                **state["best_extra"]})


if __name__ == "__main__":
    run_training_script(main)
