"""Train the DCRN or DenseNet nucleus classifier on CRCHisto's classified nuclei (32x32 patches at 20x).

The paper's optimiser (SGD, momentum 0.9, weight decay 1e-4, cross-entropy) with a cosine-decayed
learning rate; the checkpoint with the best validation weighted F1 is kept. Example (shipped weights)::

    python -m nuclei_core.training.train_classifier --architecture DCRN \\
        --output nuclei_core/models/weights/dcrn_crchisto.pt
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..data.augment import colour_jitter, random_dihedral, stain_jitter
from ..data.points import PointAnnotatedImage
from ..data.public_sets import SHARED_DATA, load_classified_crchisto
from ..metrics.classification import classification_report
from ..models.base import resolve_device
from ..models.nucleus_classifier import (
    ARCHITECTURES,
    NucleusClassifier,
    centred_patches,
)
from .run_arguments import (add_device_argument, add_run_arguments, run_training_script, settings_from,
                            training_parser, write_run_log)
from .trainer import train


def evaluate(classifier: NucleusClassifier, images: list[PointAnnotatedImage]) -> dict:
    """Classification report over every annotated nucleus of ``images`` (patches at the true centres)."""
    probabilities = np.concatenate([classifier.probabilities(item.image, item.points) for item in images])
    return classification_report(np.concatenate([item.labels for item in images]), probabilities)


def make_sampler(classifier: NucleusClassifier, images: list[PointAnnotatedImage], batch_size: int,
                 shift: int, stain_strength: float):
    """A seeded sampler of augmented (patch, class) batches, nuclei drawn uniformly.

    Patches are cut around the centre moved by up to ``shift`` px (detectors are not exact), then
    rotated/flipped and colour- and stain-jittered.
    """
    side = int(classifier.config["patch"])
    owners = np.concatenate([np.full(len(item.points), i) for i, item in enumerate(images)])
    rows = np.concatenate([np.arange(len(item.points)) for item in images])

    def sample(rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        picks = rng.integers(len(owners), size=batch_size)
        patches, labels = [], []
        for pick in picks:
            item = images[owners[pick]]
            centre = item.points[rows[pick]] + rng.integers(-shift, shift + 1, size=2)
            (patch,) = random_dihedral(rng, centred_patches(item.image, centre[None], side)[0])
            if stain_strength:
                patch = stain_jitter(rng, patch, stain_strength)
            patches.append(colour_jitter(rng, patch))
            labels.append(item.labels[rows[pick]])
        inputs = torch.from_numpy(np.stack(patches)).permute(0, 3, 1, 2).float().div_(255.0)
        return inputs, torch.tensor(labels, dtype=torch.long)

    return sample


def main(argv: list[str] | None = None) -> None:
    parser = training_parser(__doc__)
    parser.add_argument("--architecture", choices=sorted(ARCHITECTURES), default="DCRN")
    parser.add_argument("--data", type=Path, default=SHARED_DATA, help="the shared data folder (CRCHisto inside)")
    parser.add_argument("--shift", type=int, default=2, help="random displacement of the patch centre (px)")
    parser.add_argument("--stain-jitter", type=float, default=0.05, help="HED stain augmentation strength (0 = off)")
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--train-images", type=int, default=0, help="use only the first N training images (smoke runs)")
    parser.add_argument("--val-images", type=int, default=0, help="use only the first N validation images (smoke runs)")
    add_run_arguments(parser, steps=6000, batch_size=64, learning_rate=0.01)
    add_device_argument(parser)
    args = parser.parse_args(argv)
    train_set = load_classified_crchisto("train", args.data)[: args.train_images or None]
    val_set = load_classified_crchisto("val", args.data)[: args.val_images or None]
    print(f"train nuclei {sum(len(i.points) for i in train_set)}, validation nuclei "
          f"{sum(len(i.points) for i in val_set)}", flush=True)

    torch.manual_seed(args.seed)  # seeded initial weights
    device = str(resolve_device(args.device))
    classifier = NucleusClassifier.untrained(args.architecture, device)

    def validate(network: nn.Module) -> tuple[float, dict]:
        report = evaluate(classifier, val_set)
        return report["weighted_f1"], {"macro_f1": report["macro_f1"], "accuracy": report["accuracy"]}

    state = train(classifier.network, make_sampler(classifier, train_set, args.batch_size, args.shift,
                                                   args.stain_jitter),
                  nn.CrossEntropyLoss(), validate,
                  settings_from(args, device=device, optimizer="sgd", momentum=args.momentum, weight_decay=args.weight_decay),
                  log=lambda line: print(line, flush=True))
    classifier.network.load_state_dict(state["best_state"])
    classifier.network.eval()
    classifier.save(args.output, version=Path(args.output).stem)
    write_run_log(args, state, {"step": state["step"], "best_validation_weighted_f1": state["best_score"],
                                **state["best_extra"]})


if __name__ == "__main__":
    run_training_script(main)
