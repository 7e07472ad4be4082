"""Train the HoVer-Net-style network (or its plain ablation) on CoNSeP's typed instance maps.

Losses as in the issue (and HoVer-Net): nuclear pixels cross-entropy + Dice, distance maps MSE (optionally plus
HoVer-Net's gradient term, MSGE: ``--gradient-loss-weight``), classes weighted cross-entropy + Dice; Adam 3e-4 with
a step decay; crops at a random scale, flips, rotations, HSV, colour and HED stain jitter.
The checkpoint with the best validation score (mean of PQ and multi-class PQ on CoNSeP's 3 held-out training
images, and PQ on the held-out images of the untyped sets: MoNuSeg's 4 by default) is kept; the post-processing
thresholds are then tuned on them. The shipped weights (their model cards give the details) were trained in two
runs: 6000 steps on CoNSeP alone, before the rescaling and HSV augmentations existed, then 2000 steps with MoNuSeg,
rescaling and HSV from those weights (add ``--plain`` to both for the ablation, ``hovernet_plain_consep.pt``)::

    python -m nuclei_core.training.train_hovernet --steps 6000 --eval-every 500 --untyped-set none \
        --scale-jitter 0 --hsv-jitter 0 --output consep_only.pt
    python -m nuclei_core.training.train_hovernet --init-weights consep_only.pt --steps 2000 --eval-every 500 \
        --output nuclei_core/models/weights/hovernet_consep.pt
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
from scipy import ndimage
from torch import nn

from ..data.augment import colour_jitter, hsv_jitter, random_dihedral, rescaled_crop, stain_jitter
from ..data.instance_sets import InstanceAnnotatedImage, load_instance_set, load_typed_consep
from ..metrics.segmentation import PanopticAccumulator, panoptic_quality
from ..models.base import resolve_device
from ..models.hovernet import DEFAULT_CONFIG, HoVerNet
from ..postprocess.hover import distance_targets, instance_types
from .run_arguments import (add_device_argument, add_run_arguments, add_tuning_arguments, at_least, load_start_weights,
                            retune_saved, run_training_script, save_best, settings_from, training_parser)
from .trainer import train

UNTYPED = -1  # the class target of pixels of images without classes: no class loss there
FOREGROUND_THRESHOLDS = (0.4, 0.5, 0.6)
EDGE_THRESHOLDS = (0.55, 0.6, 0.65, 0.7)
INFERENCE_WINDOWS = (0, 512, 256)  # 0: whole tiles at once
SCORE_TIE = 0.005  # validation scores this close count as equal when tuning (7 validation images)
TUNED_THRESHOLDS = ("foreground_threshold", "edge_threshold")  # what a run from --init-weights validates with
ARCHITECTURE_KEYS = ("attention", "widths", "class_names")  # what --init-weights must share with the run


def nucleus_centres_by_class(items: list[InstanceAnnotatedImage]) -> dict[int, np.ndarray]:
    """For each class present in the typed images, (N, 3) rows of (image index, row, column): the centre of
    mass of each of its nuclei."""
    centres: dict[int, list] = {}
    for index, item in enumerate(items):
        if item.types is None:
            continue
        ids = np.unique(item.labels[item.labels > 0])
        classes = ndimage.maximum(item.types, item.labels, ids)
        for nucleus_class, (row, col) in zip(classes, ndimage.center_of_mass(item.labels > 0, item.labels, ids)):
            if nucleus_class > 0:
                centres.setdefault(int(nucleus_class), []).append((index, round(row), round(col)))
    return {k: np.array(v, np.int64) for k, v in sorted(centres.items())}


def make_sampler(items: list[InstanceAnnotatedImage], patch: int, batch_size: int, stain_strength: float,
                 scale_range: float = 0.0, hsv_strength: float = 0.0, class_balanced: float = 0.0):
    """A seeded sampler of augmented crops and their targets stacked as (B, 4, H, W): nuclear pixel, horizontal
    and vertical distance (computed after the rescaling and the flip/rotation, so they stay right), class
    (``UNTYPED`` everywhere for images without classes).

    ``class_balanced``: the fraction of crops placed around a nucleus of a class drawn uniformly (so rare classes
    are seen as often as common ones); the rest are placed at random in a random image."""
    pools = list(nucleus_centres_by_class(items).values()) if class_balanced else []

    def sample(rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        images, targets = [], []
        for _ in range(batch_size):
            around = None
            if pools and rng.random() < class_balanced:
                pool = pools[int(rng.integers(len(pools)))]
                index, row, col = pool[int(rng.integers(len(pool)))]
                item, around = items[index], (int(row), int(col))
            else:
                item = items[int(rng.integers(len(items)))]
            types = item.types if item.types is not None else np.full(item.labels.shape, UNTYPED, np.int16)
            crop = rescaled_crop(rng, patch, scale_range, item.image, item.labels, types, around=around)
            image, labels, types = random_dihedral(rng, *crop)
            if stain_strength:
                image = stain_jitter(rng, image, stain_strength)
            image = hsv_jitter(rng, image, hsv_strength / 5, hsv_strength, hsv_strength)
            images.append(colour_jitter(rng, image))
            targets.append(np.concatenate([(labels > 0)[None], distance_targets(labels), types[None]]).astype(np.float32))
        x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div_(255.0)
        return x, torch.from_numpy(np.stack(targets))

    return sample


def _soft_dice(probabilities: torch.Tensor, one_hot: torch.Tensor) -> torch.Tensor:
    overlap = (probabilities * one_hot).sum(dim=(0, 2, 3))
    return (1 - (2 * overlap + 1) / (probabilities.sum(dim=(0, 2, 3)) + one_hot.sum(dim=(0, 2, 3)) + 1)).mean()


def _distance_map_gradients(maps: torch.Tensor) -> torch.Tensor:
    """The horizontal map's derivative along x and the vertical map's along y, (B, 2, H, W): HoVer-Net's 5 x 5
    Sobel-like kernels (each offset weighted by its component over its squared length)."""
    offsets = torch.arange(-2, 3, dtype=maps.dtype, device=maps.device)
    y, x = torch.meshgrid(offsets, offsets, indexing="ij")
    squared = x * x + y * y + 1e-15
    kernels = torch.stack([x / squared, y / squared])[:, None]  # (2, 1, 5, 5)
    return nn.functional.conv2d(maps, kernels, padding=2, groups=2)


def make_loss(class_weights: list[float], gradient_weight: float = 0.0):
    """Nuclear pixels CE + Dice, distance maps MSE (plus ``gradient_weight`` times the mean squared error of their
    gradients inside nuclei, HoVer-Net's MSGE, which sharpens the borders between touching nuclei), classes
    weighted CE + Dice (weights per class, background first; pixels of untyped images left out), summed."""
    weights = torch.tensor(class_weights, dtype=torch.float32)

    def loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        nuclear, classes = target[:, 0].long(), target[:, 3].long()
        np_logits, tp_logits = output[:, :2], output[:, 4:]
        np_loss = nn.functional.cross_entropy(np_logits, nuclear) + _soft_dice(
            torch.softmax(np_logits, 1), nn.functional.one_hot(nuclear, 2).permute(0, 3, 1, 2).float())
        hv_loss = nn.functional.mse_loss(output[:, 2:4], target[:, 1:3])
        if gradient_weight:
            inside = target[:, :1].float()
            errors = (_distance_map_gradients(output[:, 2:4]) - _distance_map_gradients(target[:, 1:3])) ** 2
            hv_loss = hv_loss + gradient_weight * (errors * inside).sum() / (2 * inside.sum() + 1e-8)
        typed = (classes != UNTYPED).unsqueeze(1).float()
        if not typed.any():
            return np_loss + hv_loss
        tp_loss = nn.functional.cross_entropy(tp_logits, classes, weight=weights.to(output.device),
                                              ignore_index=UNTYPED) + _soft_dice(
            torch.softmax(tp_logits, 1) * typed,
            nn.functional.one_hot(classes.clamp(min=0), tp_logits.shape[1]).permute(0, 3, 1, 2).float() * typed)
        return np_loss + hv_loss + tp_loss

    return loss


def validation_scores(model: HoVerNet, outputs: list[np.ndarray], items: list[InstanceAnnotatedImage]) -> dict:
    """PQ (mean over images) of every validation image and multi-class PQ (pooled) of the typed ones, at the
    model's current post-processing settings; ``score``: the mean of CoNSeP's PQ and multi-class PQ and, when
    untyped sets are validated too, their PQ; ``count_ratio``: nuclei found / true nuclei, over all images."""
    classes = range(1, len(model.class_names) + 1)
    accumulator, typed_pq, untyped_pq = PanopticAccumulator(classes), [], []
    found = true = 0
    for output, item in zip(outputs, items):
        labels = model.label_map(output)
        found += len(np.unique(labels[labels > 0]))
        true += len(np.unique(item.labels[item.labels > 0]))
        quality = panoptic_quality(labels, item.labels)["pq"]
        if item.types is None:
            untyped_pq.append(quality)
            continue
        types, _ = instance_types(labels, output[3:])
        accumulator.add(labels, np.concatenate([[0], types])[labels], item.labels, item.types)
        typed_pq.append(quality)
    scores = {"pq": float(np.mean(typed_pq)), "mpq": accumulator.result()["mpq"]}
    if untyped_pq:
        scores["untyped_pq"] = float(np.mean(untyped_pq))
    return {"score": float(np.mean(list(scores.values()))), **scores,
            "count_ratio": found / max(true, 1)}


def make_validator(model: HoVerNet, items: list[InstanceAnnotatedImage]):
    """The validation score of :func:`validation_scores`."""

    def validate(network: nn.Module) -> tuple[float, dict]:
        scores = validation_scores(model, [model.predict_outputs(i.image[None])[0] for i in items], items)
        return scores.pop("score"), scores

    return validate


def start_from(model: HoVerNet, path: str) -> None:
    """Load the network of the weights at ``path`` into ``model``, with their tuned thresholds (so validation
    during a run from them scores the starting point as it was tuned); an InputError naming the difference when
    their architecture is not the run's."""
    start = HoVerNet.from_weights(path)
    load_start_weights(model, start, path, ARCHITECTURE_KEYS)
    model.config.update({key: start.config[key] for key in TUNED_THRESHOLDS})


def threshold_candidates(model: HoVerNet, outputs: list[np.ndarray], items: list[InstanceAnnotatedImage]) -> list[dict]:
    """The validation scores (:func:`validation_scores`) of every (foreground, edge) threshold pair of the tuning
    grid on the model's ``outputs`` of ``items``; the model's thresholds are left at the grid's last pair."""
    candidates = []
    for foreground, edge in itertools.product(FOREGROUND_THRESHOLDS, EDGE_THRESHOLDS):
        model.config.update(foreground_threshold=foreground, edge_threshold=edge)
        scores = validation_scores(model, outputs, items)
        candidates.append({"foreground_threshold": foreground, "edge_threshold": edge,
                           "validation_score": scores.pop("score"), **scores})
    return candidates


def tune_thresholds(model: HoVerNet, items: list[InstanceAnnotatedImage]) -> dict:
    """The inference window and (foreground, edge) thresholds chosen by :func:`choose_setting` on validation,
    with their validation scores."""
    candidates = []
    for window in INFERENCE_WINDOWS:
        model.config.update(inference_window=window)
        outputs = [model.predict_outputs(i.image[None])[0] for i in items]
        candidates += [{"inference_window": window, **candidate}
                       for candidate in threshold_candidates(model, outputs, items)]
    best = choose_setting(candidates)
    model.config.update({key: best[key] for key in ("inference_window", "foreground_threshold", "edge_threshold")})
    return best


def choose_setting(candidates: list[dict]) -> dict:
    """Of the settings whose ``validation_score`` is within SCORE_TIE of the best, the one whose nucleus count is
    closest to the truth (``count_ratio``, in log terms), the first such one on equal terms: a flat score must not
    pick a threshold that under- or over-counts."""
    top = max(c["validation_score"] for c in candidates)
    near = [c for c in candidates if c["validation_score"] >= top - SCORE_TIE]
    return min(near, key=lambda c: abs(np.log(max(c["count_ratio"], 1e-6))))


def main(argv: list[str] | None = None) -> None:
    parser = training_parser(__doc__)
    parser.add_argument("--plain", action="store_true", help="the ablation: no squeeze-excitation, no coordinate "
                                                              "attention")
    parser.add_argument("--widths", type=int, nargs="+", default=DEFAULT_CONFIG["widths"])
    parser.add_argument("--class-weights", type=float, nargs="+", default=[1.0, 1.0, 1.0, 1.0, 1.0],
                        help="cross-entropy weight of background and each class, in order")
    parser.add_argument("--gradient-loss-weight", type=at_least(float, 0), default=0.0,
                        help="weight of the distance maps' gradient error inside nuclei (HoVer-Net's MSGE; its "
                             "paper uses 2); 0: MSE alone, as the shipped weights were trained")
    parser.add_argument("--patch-size", type=int, default=128)
    parser.add_argument("--inference-window", type=int, default=0,
                        help="validate during training on windows of this side (0: whole images); the final tuning "
                             f"chooses among {', '.join(map(str, INFERENCE_WINDOWS))}")
    parser.add_argument("--stain-jitter", type=float, default=0.05)
    parser.add_argument("--scale-jitter", type=float, default=0.2, help="crops rescaled by 1 +- this (0: none)")
    parser.add_argument("--hsv-jitter", type=float, default=0.1, help="saturation and value scaled by 1 +- this, "
                                                                      "hue shifted by a fifth of it (0: none)")
    parser.add_argument("--class-balanced-crops", type=float, default=0.0,
                        help="fraction of crops placed around a nucleus of a class drawn uniformly (0: all crops at "
                             "random; raises the rare classes, e.g. CoNSeP's 'other')")
    parser.add_argument("--untyped-set", action="append", choices=("monuseg", "none"), default=None,
                        help="also train the nuclear pixel and distance branches on this set's training images (no "
                             "classes; repeatable; default monuseg: many organs and scanners); --untyped-set none: "
                             "CoNSeP only")
    parser.add_argument("--init-weights", help="start from these weights (e.g. the shipped ones); validation during "
                                               "training uses their tuned thresholds")
    parser.add_argument("--train-images", type=int, default=0, help="use only this many training images (smoke runs)")
    parser.add_argument("--val-images", type=int, default=0, help="likewise for validation images")
    add_tuning_arguments(parser, "inference window and post-processing thresholds")
    add_run_arguments(parser, steps=12000, batch_size=8, learning_rate=3e-4)
    add_device_argument(parser)
    args = parser.parse_args(argv)
    if 0 < args.inference_window <= 2 * HoVerNet.halo:
        parser.error(f"--inference-window must be 0 or more than twice the {HoVerNet.halo} px halo")
    if not 0 <= args.class_balanced_crops <= 1:
        parser.error("--class-balanced-crops is a fraction of the crops: give 0 to 1")
    untyped = [name for name in (args.untyped_set or ["monuseg"]) if name != "none"]
    train_set = [item for items in [load_typed_consep("train"), *(load_instance_set(n, "train") for n in untyped)]
                 for item in items[: args.train_images or None]]
    val_set = [item for items in [load_typed_consep("val"), *(load_instance_set(n, "val") for n in untyped)]
               for item in items[: args.val_images or None]]
    print(f"train images {len(train_set)}, validation images {len(val_set)}", flush=True)
    device = str(resolve_device(args.device))
    if args.retune:
        retune_saved(args.output, HoVerNet.from_weights(args.output, device), lambda m: tune_thresholds(m, val_set))
        return
    torch.manual_seed(args.seed)
    model = HoVerNet({**DEFAULT_CONFIG, "widths": args.widths, "attention": not args.plain,
                      "inference_window": args.inference_window}, device=device)
    if args.init_weights:
        start_from(model, args.init_weights)
    if len(args.class_weights) != len(model.class_names) + 1:
        parser.error(f"give {len(model.class_names) + 1} --class-weights (background first)")
    sampler = make_sampler(train_set, args.patch_size, args.batch_size, args.stain_jitter, args.scale_jitter,
                           args.hsv_jitter, args.class_balanced_crops)
    settings = settings_from(args, device=device, schedule="step", validate_at_start=bool(args.init_weights))
    state = train(model.network, sampler, make_loss(args.class_weights, args.gradient_loss_weight),
                  make_validator(model, val_set), settings, log=lambda line: print(line, flush=True))
    save_best(args, model, state, lambda m: tune_thresholds(m, val_set))


if __name__ == "__main__":
    run_training_script(main)
