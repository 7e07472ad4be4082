"""Train a nucleus segmenter (R2U-Net, U-Net or the multi-magnification graph attention network MM-GAT) on
instance label maps; tune its thresholds, and the nucleus area that images of unknown pixel size are rescaled to,
on validation (``--retune`` does only that, for the weights in ``--output``). A run resumes from its checkpoint
(``<output>.ckpt``): the same command continues where it stopped, and a larger ``--steps`` continues a finished run
(its learning rate follows the longer schedule from there).

The shipped weights (their model cards give the exact commands)::

    python -m nuclei_core.training.train_segmenter --architecture R2U-Net \
        --output nuclei_core/models/weights/r2unet_nuclei.pt
    python -m nuclei_core.training.train_segmenter --architecture U-Net \
        --output nuclei_core/models/weights/unet_nuclei.pt
    python -m nuclei_core.training.train_segmenter --architecture MM-GAT --loss bce --val-images 2 \
        --steps 2400 --eval-every 300 --batch-size 8 --patch-size 64 --tune-later \
        --output nuclei_core/models/weights/mmgat_typed_nuclei.pt   # then --retune
    python -m nuclei_core.training.train_segmenter --architecture MM-GAT --loss bce --graph-wiring flat \
        --output nuclei_core/models/weights/mmgat_bce_nuclei.pt
    python -m nuclei_core.training.train_segmenter --architecture R2U-Net --dataset dsb2018 \
        --only-modality fluorescence --init-weights nuclei_core/models/weights/r2unet_nuclei.pt \
        --learning-rate 3e-4 --steps 3000 --output nuclei_core/models/weights/r2unet_fluorescence.pt
    python -m nuclei_core.training.train_segmenter --architecture MM-GAT --loss bce --graph-wiring flat \
        --dataset dsb2018 --only-modality fluorescence --intensity-stretch --val-images 10 --steps 2400 \
        --eval-every 300 --batch-size 8 --patch-size 64 --output nuclei_core/models/weights/mmgat_fluorescence.pt

Fine-tune on your own images and instance label maps (same file names)::

    python -m nuclei_core.training.train_segmenter --images-dir my/images --labels-dir my/labels \
        --init-weights nuclei_core/models/weights/r2unet_nuclei.pt --learning-rate 2e-4 --steps 1000 \
        --output my_r2unet.pt
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import torch
from torch import nn

from ..data.augment import colour_jitter, random_dihedral, rescaled_crop, stain_jitter
from ..data.instance_sets import (
    INSTANCE_SETS,
    MODALITIES,
    InstanceAnnotatedImage,
    load_instance_folder,
    load_instance_set,
)
from ..intensity import stretch_intensity
from ..metrics.segmentation import aggregated_jaccard_index, dsb_mean_average_precision
from ..models.base import resolve_device
from ..models.segmenter import (ARCHITECTURES, GRAPH_ATTENTION, GRAPH_ATTENTION_CONFIG, NucleusSegmenter,
                                default_config)
from ..postprocess.instances import instance_targets, split_instances
from ..models.graph_attention_network import READOUTS, WIRINGS
from .graph_attention_loss import magnification_balanced_focal_loss, magnification_bce
from .run_arguments import (add_device_argument, add_run_arguments, add_tuning_arguments, load_start_weights,
                            retune_saved, run_training_script, save_best, settings_from, training_parser)
from .trainer import train

FOREGROUND_THRESHOLDS = (0.4, 0.5, 0.6)
MARKER_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)
MIN_AREAS = (10, 20, 30)
SPLIT_DISTANCES = (0, 8, 10, 13, 16)  # px between two centres of one instance for a second cut; 0: none
POSTPROCESSING_KEYS = ("foreground_threshold", "marker_threshold", "min_area", "split_distance")
NUCLEUS_AREA_TARGETS = (0, 300, 400, 500, 600, 800)  # px; 0: images of unknown pixel size are not rescaled
ARCHITECTURE_KEYS = ("architecture", "widths", "recurrent_steps", "levels", "channels", "heads", "layers",
                     "position_updates", "wiring", "readout")  # what --init-weights must share with the run


def make_sampler(datasets: list[list[InstanceAnnotatedImage]], weights: list[float], patch: int, batch_size: int,
                 stain_strength: float, scale_range: float = 0.0):
    """A seeded sampler of augmented (image, [foreground, marker]) patch batches; ``weights`` pick the dataset;
    ``scale_range``: patches rescaled by 1 +- that (the targets with them)."""
    targets = [[np.stack(instance_targets(item.labels), axis=-1) for item in data] for data in datasets]
    odds = np.asarray(weights, dtype=np.float64) / np.sum(weights)

    def sample(rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        images, maps = [], []
        for _ in range(batch_size):
            which = int(rng.choice(len(datasets), p=odds))
            index = int(rng.integers(len(datasets[which])))
            item, target = datasets[which][index], targets[which][index]
            crop, crop_target = random_dihedral(rng, *rescaled_crop(rng, patch, scale_range, item.image, target))
            if stain_strength and item.modality == "he":
                crop = stain_jitter(rng, crop, stain_strength)
            images.append(colour_jitter(rng, crop))
            maps.append(crop_target)
        x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div_(255.0)
        return x, torch.from_numpy(np.stack(maps)).permute(0, 3, 1, 2).float()

    return sample


def bce_dice_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy plus soft Dice loss, summed over the output channels."""
    bce = nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none").mean(dim=(0, 2, 3))
    probabilities = torch.sigmoid(logits)
    overlap = (probabilities * targets).sum(dim=(0, 2, 3))
    dice = 1 - (2 * overlap + 1) / (probabilities.sum(dim=(0, 2, 3)) + targets.sum(dim=(0, 2, 3)) + 1)
    return (bce + dice).sum()


LOSSES = {
    "bce-dice": lambda network, images, targets: bce_dice_loss(network(images), targets),
    "bce": lambda network, images, targets: nn.functional.binary_cross_entropy_with_logits(network(images), targets),
    "balanced-focal": magnification_balanced_focal_loss,  # MM-GAT only: supervises every magnification level
    "magnification-bce": magnification_bce,  # MM-GAT only: the readout and every level, full resolution highest
}
GRAPH_LOSSES = ("balanced-focal", "magnification-bce")


def validation_score(name: str, labels: np.ndarray, truth: np.ndarray) -> float:
    """The figure validation ranks by: DSB mean AP for DSB2018, AJI for the H&E sets."""
    return dsb_mean_average_precision(labels, truth) if name == "dsb2018" else aggregated_jaccard_index(labels, truth)


def score_outputs(outputs: dict[str, list[np.ndarray]], validation: dict[str, list[InstanceAnnotatedImage]],
                  **settings: float) -> dict[str, float]:
    """Mean validation figure per dataset for these post-processing settings (:func:`split_instances`'s)."""
    return {name: float(np.mean([validation_score(name, split_instances(o[0], o[1], **settings), item.labels)
                                 for o, item in zip(outputs[name], items)]))
            for name, items in validation.items()}


def network_outputs(model: NucleusSegmenter, validation: dict[str, list[InstanceAnnotatedImage]]) -> dict:
    """The (2, H, W) probability maps of every validation image."""
    return {name: [model.predict_outputs(item.image[None])[0] for item in items] for name, items in validation.items()}


def make_validator(model: NucleusSegmenter, validation: dict[str, list[InstanceAnnotatedImage]]):
    """Mean over datasets of the validation figure at the default thresholds."""

    def validate(network: nn.Module) -> tuple[float, dict]:
        scores = score_outputs(network_outputs(model, validation), validation, foreground_threshold=0.5,
                               marker_threshold=0.5, min_area=int(model.config["min_area"]))
        return float(np.mean(list(scores.values()))), scores

    return validate


def tune_thresholds(model: NucleusSegmenter, validation: dict[str, list[InstanceAnnotatedImage]]) -> dict:
    """The post-processing settings with the best mean validation figure, and that figure: the (foreground,
    marker, min_area) grid without a second cut, then the split distance (0 = none) with the best of those."""
    outputs = network_outputs(model, validation)

    def best_of(candidates: list[dict]) -> dict:
        scored = [(score_outputs(outputs, validation, **settings), settings) for settings in candidates]
        scores, settings = max(scored, key=lambda pair: np.mean(list(pair[0].values())))
        return {**settings, "validation_score": float(np.mean(list(scores.values()))), "validation": scores}

    grid = [{"foreground_threshold": foreground, "marker_threshold": marker, "min_area": min_area, "split_distance": 0}
            for foreground, marker, min_area in itertools.product(FOREGROUND_THRESHOLDS, MARKER_THRESHOLDS, MIN_AREAS)]
    best = best_of(grid)
    return best_of([{**{k: best[k] for k in POSTPROCESSING_KEYS}, "split_distance": distance}
                    for distance in SPLIT_DISTANCES])


def tune_area_target(model: NucleusSegmenter, validation: dict[str, list[InstanceAnnotatedImage]]) -> dict:
    """The ``nucleus_area_target`` with the best mean validation figure over the images of unknown pixel size
    (DSB2018), and that figure; ``{}`` when validation has none. Leaves the best target in ``model.config``."""
    unscaled = {name: [i for i in items if i.magnification is None] for name, items in validation.items()}
    unscaled = {name: items for name, items in unscaled.items() if items}
    if not unscaled:
        return {}
    native = {name: [model.segment(i.image) for i in items] for name, items in unscaled.items()}  # once for all targets
    scores = {}
    for target in NUCLEUS_AREA_TARGETS:
        model.config["nucleus_area_target"] = target
        scores[target] = float(np.mean([np.mean([validation_score(name, model.rescaled_segmentation(i.image, labels),
                                                                  i.labels) for i, labels in zip(items, native[name])])
                                        for name, items in unscaled.items()]))
    best = max(scores, key=scores.get)
    model.config["nucleus_area_target"] = best
    return {"nucleus_area_target": best, "rescaled_validation": scores}


def tune_postprocessing(model: NucleusSegmenter, validation: dict[str, list[InstanceAnnotatedImage]]) -> dict:
    """Thresholds and split distance (:func:`tune_thresholds`), then the rescaling target (:func:`tune_area_target`), set in
    ``model.config``; what was chosen and its validation figures."""
    tuned = tune_thresholds(model, validation)
    model.config.update({k: tuned[k] for k in POSTPROCESSING_KEYS})
    return {**tuned, **tune_area_target(model, validation)}


def main(argv: list[str] | None = None) -> None:
    parser = training_parser(__doc__)
    parser.add_argument("--architecture", choices=(*ARCHITECTURES, GRAPH_ATTENTION), default="R2U-Net")
    parser.add_argument("--loss", choices=tuple(LOSSES), default="bce-dice",
                        help="bce-dice: BCE + soft Dice of the output maps; bce: plain BCE of the output maps; "
                             "balanced-focal: MM-GAT's magnification-balanced focal loss over every level (the first "
                             "weights'); magnification-bce: MM-GAT's output and every level's BCE, each level weighted "
                             "half the one below")
    parser.add_argument("--dataset", action="append", choices=INSTANCE_SETS,
                        help="a prepared public dataset of ../shared/data (repeat to mix; default: all three)")
    parser.add_argument("--dataset-weight", action="append", type=float,
                        help="share of patches drawn from each --dataset, in order (default 2:1:1 DSB:MoNuSeg:CoNSeP)")
    parser.add_argument("--images-dir", help="your own images (replaces --dataset; a seeded 90/10 train/val split)")
    parser.add_argument("--labels-dir", help="their instance label maps: same file names, one channel, 0 = background")
    parser.add_argument("--modality", choices=MODALITIES, default="he",
                        help="of --images-dir (stain jitter applies to he)")
    parser.add_argument("--only-modality", action="append", choices=MODALITIES,
                        help="train and validate only on images of this modality (repeat for several; DSB2018 images "
                             "carry the rule-based modality of its metadata, MoNuSeg and CoNSeP are he): e.g. a "
                             "fluorescence-only model with --dataset dsb2018 --only-modality fluorescence")
    parser.add_argument("--init-weights", help="start from these weights (e.g. the shipped ones) to fine-tune; "
                        "they are scored on validation first and kept if no step beats them")
    parser.add_argument("--patch-size", type=int, default=128)
    parser.add_argument("--stain-jitter", type=float, default=0.05, help="HED stain augmentation on H&E images")
    parser.add_argument("--scale-jitter", type=float, default=0.0,
                        help="patches rescaled by 1 +- this (0: none; e.g. 0.5 shows nuclei up to 1.5x their size)")
    parser.add_argument("--intensity-stretch", action="store_true",
                        help="stretch each image's intensity percentiles (1st -> 0, 99.8th -> 255) before the network, "
                             "in training and in every later use of the weights (fluorescence of any exposure)")
    parser.add_argument("--graph-channels", type=int, default=GRAPH_ATTENTION_CONFIG["channels"],
                        help=f"{GRAPH_ATTENTION} only: channels of every graph attention layer")
    parser.add_argument("--graph-layers", type=int, default=GRAPH_ATTENTION_CONFIG["layers"],
                        help=f"{GRAPH_ATTENTION} only: residual graph attention layers")
    parser.add_argument("--graph-wiring", choices=WIRINGS, default=GRAPH_ATTENTION_CONFIG["wiring"],
                        help=f"{GRAPH_ATTENTION} only: typed (one softmax per edge type, levels updated coarsest "
                             "first, full-resolution positions fixed: the paper's) or flat (the first weights')")
    parser.add_argument("--graph-readout", choices=READOUTS, default=GRAPH_ATTENTION_CONFIG["readout"],
                        help=f"{GRAPH_ATTENTION} only: full-resolution (the full-resolution nodes' maps) or "
                             "reconstruction (the learned weighted sum of every level's maps: the paper's; train it "
                             "with --loss magnification-bce)")
    parser.add_argument("--train-images", type=int, default=0, help="use only this many training images per set "
                        "(0 = all; for smoke tests)")
    parser.add_argument("--val-images", type=int, default=0, help="likewise for validation images")
    parser.add_argument("--version", help="weights version recorded in outputs (default: from --output)")
    add_tuning_arguments(parser, "post-processing")
    add_run_arguments(parser, steps=4000, batch_size=8, learning_rate=1e-3)
    add_device_argument(parser)
    args = parser.parse_args(argv)
    if bool(args.images_dir) != bool(args.labels_dir):
        parser.error("give both --images-dir and --labels-dir")
    if args.loss in GRAPH_LOSSES and args.architecture != GRAPH_ATTENTION:
        parser.error(f"--loss {args.loss} needs --architecture {GRAPH_ATTENTION}")
    graph_size = {"channels": args.graph_channels, "layers": args.graph_layers, "wiring": args.graph_wiring,
                  "readout": args.graph_readout}
    if args.architecture != GRAPH_ATTENTION and graph_size != {k: GRAPH_ATTENTION_CONFIG[k] for k in graph_size}:
        parser.error(f"--graph-channels, --graph-layers, --graph-wiring and --graph-readout are for "
                     f"--architecture {GRAPH_ATTENTION}")
    heads = GRAPH_ATTENTION_CONFIG["heads"]
    if args.graph_channels < heads or args.graph_channels % heads or args.graph_layers < 2:
        parser.error(f"--graph-channels must be a positive multiple of the {heads} attention heads and "
                     "--graph-layers at least 2")

    def load(name: str, split: str) -> list[InstanceAnnotatedImage]:
        items = (load_instance_folder(args.images_dir, args.labels_dir, args.modality, split) if args.images_dir
                 else load_instance_set(name, split))
        return [i for i in items if i.modality in args.only_modality] if args.only_modality else items

    names = ["own"] if args.images_dir else args.dataset or list(INSTANCE_SETS)
    weights = args.dataset_weight or [2.0 if n == "dsb2018" else 1.0 for n in names]
    if len(weights) != len(names):
        parser.error("give one --dataset-weight per --dataset")
    limit = (lambda items, n: items[:n] if n else items)
    validation = {n: limit(load(n, "val"), args.val_images) for n in names}
    if args.only_modality and not all(validation.values()):
        parser.error("no validation images of --only-modality " + " / ".join(args.only_modality) + " in "
                     + ", ".join(n for n, items in validation.items() if not items))
    device = str(resolve_device(args.device))
    if args.retune:
        retune_saved(args.output, NucleusSegmenter.from_weights(args.output, device),
                     lambda m: tune_postprocessing(m, validation))
        return
    train_sets = [limit(load(n, "train"), args.train_images) for n in names]
    print("train images " + ", ".join(f"{n} {len(d)}" for n, d in zip(names, train_sets)), flush=True)

    torch.manual_seed(args.seed)
    sizes = graph_size if args.architecture == GRAPH_ATTENTION else {}
    model = NucleusSegmenter({**default_config(args.architecture), **sizes, "loss": args.loss,
                              "intensity_stretch": args.intensity_stretch}, device=device)
    if args.intensity_stretch:  # validation images are stretched by the model itself
        train_sets = [[dataclasses.replace(item, image=stretch_intensity(item.image)) for item in items]
                      for items in train_sets]
    if args.init_weights:
        load_start_weights(model, NucleusSegmenter.from_weights(args.init_weights), args.init_weights,
                           ARCHITECTURE_KEYS)
    sampler = make_sampler(train_sets, weights, args.patch_size, args.batch_size, args.stain_jitter,
                           args.scale_jitter)
    state = train(model.network, sampler, LOSSES[args.loss], make_validator(model, validation),
                  settings_from(args, device=device, loss_sees_network=True,
                                validate_at_start=bool(args.init_weights)),
                  log=lambda line: print(line, flush=True))
    save_best(args, model, state, lambda m: tune_postprocessing(m, validation))


if __name__ == "__main__":
    run_training_script(main)
