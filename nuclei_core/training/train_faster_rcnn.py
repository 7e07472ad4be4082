"""Train the Faster R-CNN nucleus detector from scratch on boxes of MoNuSeg's and CoNSeP's training instances.

Every image is prepared as at run time (Reinhard normalisation of its own colour statistics to the reference,
Ruifrok deconvolution to haematoxylin); boxes are the instances' bounding boxes; random crops with flips and
rotations, haematoxylin gain jitter. Adam with a cosine decay. The checkpoint with the best validation centroid
F1 (one-to-one within 12 px at 40x, i.e. 3 um, as the other detectors) on the held-out training images of both
sets is kept, and its NMS threshold and minimum detection probability are tuned on them (``--retune`` does only
that, on existing weights). Example (shipped weights)::

    python -m nuclei_core.training.train_faster_rcnn --output nuclei_core/models/weights/faster_rcnn_he.pt
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage
from torch import nn

from ..data.augment import random_dihedral
from ..data.instance_sets import InstanceAnnotatedImage, load_instance_set
from ..metrics.boxes import instance_boxes
from ..metrics.detection import DetectionScores, detection_scores
from ..models.base import resolve_device
from ..models.faster_rcnn import DEFAULT_CONFIG, FasterRCNNDetector
from ..stains import HaematoxylinPreparation
from .run_arguments import (add_device_argument, add_run_arguments, add_tuning_arguments, retune_saved,
                            run_training_script, save_best, settings_from, training_parser)
from .trainer import train

TRAINING_SETS = ("monuseg", "consep")
MATCH_RADIUS = 12.0  # px at 40x: 3 um, the radius the other detectors are scored with (6 px at 20x)
PROBABILITY_CHOICES = tuple(np.round(np.arange(0.1, 0.95, 0.05), 2))
NMS_CHOICES = (0.3, 0.4, 0.5)  # IoU above which the weaker of two boxes is dropped (the paper: 0.5)
MIN_BOX_SIDE = 3  # px: boxes of nuclei cut by a crop's edge to less than this are dropped
SEARCH_PROBABILITY = 0.05  # detections kept while searching for the best minimum probability


def prepared_images(split: str, limit: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """(haematoxylin (H, W, 1), instance labels) of each image of both training sets' ``split``, each prepared
    with its own colour statistics as a slide would be."""
    items: list[InstanceAnnotatedImage] = []
    for name in TRAINING_SETS:
        items += load_instance_set(name, split)[: limit or None]
    return [(HaematoxylinPreparation.from_pixels(i.image)(i.image), i.labels) for i in items]


def instance_centroids(labels: np.ndarray) -> np.ndarray:
    """(N, 2) x, y centres of mass of the instances of a label map."""
    ids = np.unique(labels[labels > 0])
    return np.array(ndimage.center_of_mass(np.ones_like(labels), labels, ids)).reshape(-1, 2)[:, ::-1]


def crop_boxes(labels: np.ndarray) -> np.ndarray:
    """Bounding boxes of the instances of a crop, without slivers cut by its edge."""
    boxes = instance_boxes(labels)
    sides = boxes[:, 2:] - boxes[:, :2]
    return boxes[(sides >= MIN_BOX_SIDE).all(axis=1)]


def make_sampler(images: list[tuple[np.ndarray, np.ndarray]], patch: int, batch_size: int, gain_jitter: float):
    """Augmented crops (B, 1, P, P) and their boxes (B, M, 4), padded with NaN rows."""

    def sample(rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        crops, boxes = [], []
        for _ in range(batch_size):
            density, labels = images[int(rng.integers(len(images)))]
            top = int(rng.integers(density.shape[0] - patch + 1))
            left = int(rng.integers(density.shape[1] - patch + 1))
            window = (slice(top, top + patch), slice(left, left + patch))
            crop, crop_labels = random_dihedral(rng, density[window], labels[window])
            crops.append(crop * rng.uniform(1 - gain_jitter, 1 + gain_jitter))
            boxes.append(crop_boxes(crop_labels))
        padded = np.full((batch_size, max(1, max(len(b) for b in boxes)), 4), np.nan, np.float32)
        for row, found in zip(padded, boxes):
            row[:len(found)] = found
        return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float(), torch.from_numpy(padded)

    return sample


def detection_loss(network: nn.Module, inputs: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Faster R-CNN's summed RPN and box-head losses for a batch with NaN-padded boxes."""
    targets = []
    for found in boxes:
        found = found[~torch.isnan(found[:, 0])]
        targets.append({"boxes": found, "labels": torch.ones(len(found), dtype=torch.int64, device=found.device)})
    return sum(network(list(inputs), targets).values())


def best_probability(model: FasterRCNNDetector, images: list[tuple[np.ndarray, np.ndarray]]) -> dict:
    """The minimum probability giving the best centroid F1 (within ``MATCH_RADIUS``), with its scores."""
    model.network.roi_heads.score_thresh = SEARCH_PROBABILITY
    found = [model.predict(density[None])[0] for density, _ in images]
    model.network.roi_heads.score_thresh = float(model.config["min_probability"])
    truths = [instance_centroids(labels) for _, labels in images]
    best = {"min_probability": PROBABILITY_CHOICES[0], "f1": -1.0}
    for probability in PROBABILITY_CHOICES:
        total = sum((detection_scores(n.centroids[n.scores >= probability], t, MATCH_RADIUS)
                     for n, t in zip(found, truths)), DetectionScores(0, 0, 0))
        if total.f1 > best["f1"]:
            best = {"min_probability": float(probability), **total.as_dict()}
    return best


def tune_detection(model: FasterRCNNDetector, images: list[tuple[np.ndarray, np.ndarray]]) -> dict:
    """The NMS threshold and minimum probability giving the best centroid F1; both are set in the model."""
    results = []
    for nms in NMS_CHOICES:
        model.network.roi_heads.nms_thresh = nms
        results.append({"nms_threshold": nms, **best_probability(model, images)})
    best = max(results, key=lambda r: r["f1"])
    model.config.update(nms_threshold=best["nms_threshold"], min_probability=best["min_probability"])
    model.network.roi_heads.nms_thresh = best["nms_threshold"]
    model.network.roi_heads.score_thresh = best["min_probability"]
    return best


def main(argv: list[str] | None = None) -> None:
    parser = training_parser(__doc__)
    parser.add_argument("--widths", type=int, nargs="+", default=DEFAULT_CONFIG["widths"])
    parser.add_argument("--patch-size", type=int, default=256)
    parser.add_argument("--gain-jitter", type=float, default=0.1, help="haematoxylin scaled by 1 +- this")
    parser.add_argument("--train-images", type=int, default=0, help="use only this many images per set (smoke runs)")
    parser.add_argument("--val-images", type=int, default=0, help="likewise for validation images")
    parser.add_argument("--max-detections", type=int, default=DEFAULT_CONFIG["max_detections"],
                        help="most nuclei kept per image or tile (a dense 1000 x 1000 MoNuSeg image holds 1,862)")
    add_tuning_arguments(parser, "NMS and minimum probability")
    add_run_arguments(parser, steps=6000, batch_size=4, learning_rate=1e-3)
    add_device_argument(parser)
    args = parser.parse_args(argv)
    val_set = prepared_images("val", args.val_images)
    device = str(resolve_device(args.device))
    if args.retune:
        model = FasterRCNNDetector.from_weights(args.output, device, max_detections=args.max_detections)
        retune_saved(args.output, model, lambda m: tune_detection(m, val_set))
        return
    train_set = prepared_images("train", args.train_images)
    print(f"train images {len(train_set)}, validation images {len(val_set)}", flush=True)
    torch.manual_seed(args.seed)
    model = FasterRCNNDetector({**DEFAULT_CONFIG, "widths": args.widths, "max_detections": args.max_detections},
                               device=device)

    def validate(network: nn.Module) -> tuple[float, dict]:
        best = best_probability(model, val_set)
        return best["f1"], best

    state = train(model.network, make_sampler(train_set, args.patch_size, args.batch_size, args.gain_jitter),
                  detection_loss, validate, settings_from(args, device=device, loss_sees_network=True),
                  log=lambda line: print(line, flush=True))
    save_best(args, model, state, lambda m: tune_detection(m, val_set))


if __name__ == "__main__":
    run_training_script(main)
