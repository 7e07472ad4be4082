"""Train a patch detector (Cascade-GCN, CP-CNN or SC-CNN) on point annotations; tune its post-processing.

A patch is positive when its centre lies within ``--centre-distance`` px of an annotated centre.
Cascade-GCN trains stage 1 on all pixels, picks the stage-1 threshold that keeps ``--stage1-recall``
of the validation nuclei, then trains stage 2 on the pixels stage 1 lets through (true against
false positives). Threshold, NMS box size and score-map smoothing are then chosen for F1 on whole
validation images.

Example (the shipped weights)::

    python -m nuclei_core.training.train_patch_detector --model Cascade-GCN --loss bce \
        --images-dir ../shared/data/crchisto/images --points-dir ../shared/data/crchisto/detection \
        --split-csv ../shared/data/crchisto/splits.csv --output nuclei_core/models/weights/cascade_gcn_crchisto.pt
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import average_precision_score
from torch import nn
from torchvision.ops import sigmoid_focal_loss

from ..data.points import PointAnnotatedImage
from ..errors import InputError
from ..metrics.detection import DetectionScores, detection_scores
from ..models.patch_cnn import PatchCNN, sc_window_maps
from ..models.patch_detectors import DETECTORS, PatchDetector, smooth
from ..models.patch_gcn import PATCH, PatchGCN
from ..postprocess.nms import nms_points
from .patch_sampling import MARGIN, PatchSource, Pool, as_tensor, augmented, channel_statistics, draw
from .point_data import add_point_training_arguments, train_and_validation_sets
from .run_arguments import load_start_weights, run_training_script, settings_from, training_parser
from .trainer import train

THRESHOLDS = np.round(np.concatenate([[0.02, 0.03], np.arange(0.05, 0.96, 0.05)]), 2)
NMS_BOXES = (8, 10, 12, 14, 16, 18, 20)
SMOOTHING = (0.0, 1.0, 2.0)
NEAR = 10.0  # px: negatives closer than this to a centre are "near misses", sampled on purpose
ARCHITECTURE_KEYS = ("channels", "hidden", "order", "stage2_order", "stage2_context")  # what --init-weights shares
BASE_CONFIG: dict[str, dict[str, Any]] = {
    "Cascade-GCN": {"channels": [36, 48], "hidden": 32, "stage1_threshold": 0.5},
    "CP-CNN": {"channels": [36, 48], "hidden": 256},
    "SC-CNN": {"channels": [36, 48], "hidden": 256, "proximity_radius": 4.0},
}


def classification_loss(kind: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Binary cross-entropy or focal loss (gamma 2) on logits."""
    if kind == "bce":
        return lambda logits, labels: F.binary_cross_entropy_with_logits(logits.reshape(-1), labels)
    return lambda logits, labels: sigmoid_focal_loss(logits.reshape(-1), labels, alpha=-1, gamma=2.0,
                                                     reduction="mean")


def patch_inputs(source: PatchSource, picks: Pool, context: list[np.ndarray] | None = None,
                 rng: np.random.Generator | None = None, stain_strength: float = 0.0) -> torch.Tensor:
    """(N, 3, 27, 27) RGB patches at the picked pixels (augmented when ``rng`` is given, stain-jittered by
    ``stain_strength``), with the matching patch of the reflect-padded ``context`` maps (stage 1's probability)
    as a fourth channel when given."""
    maps = None if context is None else np.stack([context[i][r:r + PATCH, c:c + PATCH] for i, r, c in picks])
    if rng is None:
        patches, extra = as_tensor(source.patches(picks)), None if maps is None else torch.from_numpy(maps)
    else:
        patches, extra = augmented(rng, source.patches(picks), maps, stain_strength)
    return patches if extra is None else torch.cat([patches, extra[:, None].float()], dim=1)


def classifier_batches(source: PatchSource, pools: list[tuple[Pool, int, float]],
                       context: list[np.ndarray] | None = None, stain_strength: float = 0.0):
    """A sampler of augmented patches from labelled pixel pools ``(pool, count per batch, label)``."""
    pools = [p for p in pools if len(p[0])]

    def sample(rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        picks = draw(rng, [(pool, count) for pool, count, _ in pools])
        labels = np.concatenate([np.full(count, label, np.float32) for _, count, label in pools])
        return patch_inputs(source, picks, context, rng, stain_strength), torch.from_numpy(labels)

    return sample


def classifier_validator(source: PatchSource, pools: list[tuple[Pool, int, float]], seed: int,
                         context: list[np.ndarray] | None = None):
    """Average precision of the network on a fixed set of validation patches."""
    rng = np.random.default_rng(seed)
    pools = [p for p in pools if len(p[0])]
    patches = patch_inputs(source, draw(rng, [(pool, count) for pool, count, _ in pools]), context)
    labels = np.concatenate([np.full(count, label) for _, count, label in pools])

    def validate(network: nn.Module) -> tuple[float, dict]:
        scores = torch.cat([network(patches[i:i + 1000]).reshape(-1) for i in range(0, len(patches), 1000)])
        return float(average_precision_score(labels, scores.numpy())), {}

    return validate


def regression_batches(source: PatchSource, pools: list[tuple[Pool, int]], radius: float,
                       stain_strength: float = 0.0):
    """A sampler of augmented patches with their SC-CNN proximity windows."""

    def sample(rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        picks = draw(rng, pools)
        return augmented(rng, source.patches(picks), source.proximity_windows(picks, radius), stain_strength)

    return sample


def regression_validator(source: PatchSource, pools: list[tuple[Pool, int]], radius: float, seed: int):
    """Negative mean squared error of the rendered proximity windows on fixed validation patches."""
    picks = draw(np.random.default_rng(seed), pools)
    patches, windows = as_tensor(source.patches(picks)), torch.from_numpy(source.proximity_windows(picks, radius))

    def validate(network: nn.Module) -> tuple[float, dict]:
        return -float(F.mse_loss(sc_window_maps(network(patches), radius), windows)), {}

    return validate


def dense_probabilities(network: nn.Module, source: PatchSource) -> list[np.ndarray]:
    """Sigmoid of a patch classifier around every pixel of each (padded) source image."""
    network.eval()
    with torch.inference_mode():
        return [torch.sigmoid(network.dense(as_tensor(image[None]))).reshape(
            image.shape[0] - PATCH + 1, image.shape[1] - PATCH + 1).numpy() for image in source.images]


def best_near_centres(probability: np.ndarray, points: np.ndarray, distance: float) -> np.ndarray:
    """For each centre (x, y), the highest probability within ``distance`` px of it."""
    reach = int(np.ceil(distance))
    dy, dx = np.mgrid[-reach:reach + 1, -reach:reach + 1]
    inside = np.hypot(dy, dx) <= distance
    rows = np.clip(np.round(points[:, 1]).astype(int)[:, None] + dy[inside][None], 0, probability.shape[0] - 1)
    cols = np.clip(np.round(points[:, 0]).astype(int)[:, None] + dx[inside][None], 0, probability.shape[1] - 1)
    return probability[rows, cols].max(axis=1) if len(points) else np.zeros(0)


def recall_threshold(probabilities: list[np.ndarray], dataset: list[PointAnnotatedImage], distance: float,
                     recall: float) -> float:
    """The largest threshold that leaves a pixel within ``distance`` px of ``recall`` of the centres."""
    best = np.concatenate([best_near_centres(p, d.points, distance) for p, d in zip(probabilities, dataset)])
    return float(np.quantile(best, 1.0 - recall)) if best.size else 0.5


def tune_postprocessing(maps: list[np.ndarray], dataset: list[PointAnnotatedImage], radius: float,
                        iou: float) -> dict[str, float]:
    """F1, threshold, NMS box and smoothing with the best F1 on whole images, one-to-one within ``radius``."""
    best = (-1.0, 0.5, 12, 0.0)
    for smoothing in SMOOTHING:
        smoothed = [smooth(score_map, smoothing) for score_map in maps]
        for box in NMS_BOXES:
            for threshold in THRESHOLDS:
                total = DetectionScores(0, 0, 0)
                for score_map, item in zip(smoothed, dataset):
                    points, _ = nms_points(score_map, float(threshold), box, iou)
                    total = total + detection_scores(points, item.points, radius)
                best = max(best, (total.f1, float(threshold), box, smoothing))
    return dict(zip(("f1", "threshold", "nms_box", "smoothing"), best))


def tune(model: PatchDetector, val_set: list[PointAnnotatedImage], radius: float,
         log: Callable[[str], None]) -> dict[str, float]:
    """Set the model's post-processing to the best on whole validation images; return the choice."""
    log("tuning threshold, NMS box and smoothing on whole validation images")
    with torch.inference_mode():
        maps = [model.predict_outputs(item.image[None])[0, 0] for item in val_set]
    chosen = tune_postprocessing(maps, val_set, radius, float(model.config["nms_iou"]))
    model.config.update({k: v for k, v in chosen.items() if k != "f1"})
    log(f"validation {chosen}")
    return chosen


def fit(network: nn.Module, sampler, loss_fn, validator, args: argparse.Namespace, checkpoint: Path,
        log: Callable[[str], None]) -> dict:
    """Train with the shared loop and leave the best validation weights in ``network``."""
    state = train(network, sampler, loss_fn, validator, settings_from(args, checkpoint), log=log)
    network.load_state_dict(state["best_state"])
    network.eval()
    return {"steps": state["step"], "best_validation_score": state["best_score"], "history": state["history"]}


def graph_orders(args: argparse.Namespace) -> dict[str, int]:
    """Cascade-GCN's config entries for the Chebyshev orders of ``--order`` and ``--stage2-order``."""
    orders = {"order": args.order}
    if args.stage2_order and args.stage2_order != args.order:
        orders["stage2_order"] = args.stage2_order
    return orders


def reused_stage1(args: argparse.Namespace, config: dict[str, Any]) -> PatchGCN:
    """Stage 1 of the Cascade-GCN weights ``--stage1-weights``, which must have the architecture asked for."""
    reused = DETECTORS["Cascade-GCN"].from_weights(args.stage1_weights)
    for key, default in (("channels", None), ("hidden", None), ("order", 1)):
        if reused.config.get(key, default) != config.get(key, default):
            raise InputError(f"--stage1-weights {args.stage1_weights} has {key} {reused.config.get(key, default)}, "
                             f"this run asks for {config.get(key, default)}")
    return reused.network.stage1


def train_detector(args: argparse.Namespace, train_set: list[PointAnnotatedImage],
                   val_set: list[PointAnnotatedImage], log: Callable[[str], None]) -> tuple[PatchDetector, dict]:
    """Train the chosen model and return it (post-processing tuned) with a record of the run."""
    config = {**BASE_CONFIG[args.model], **({"hidden": args.hidden} if args.hidden else {}),
              **({"stage2_context": True} if args.stage2_context else {}),
              **(graph_orders(args) if args.model == "Cascade-GCN" else {}),
              "threshold": 0.5, "nms_box": 12, "nms_iou": args.nms_iou,
              "centre_distance": args.centre_distance,
              "loss": "mse" if args.model == "SC-CNN" else args.loss}
    model = DETECTORS[args.model](config)
    train_source, val_source = PatchSource.from_dataset(train_set), PatchSource.from_dataset(val_set)
    mean, std = channel_statistics(train_set)
    for module in model.network.modules():
        if isinstance(module, (PatchGCN, PatchCNN)):  # RGB statistics; stage 2's context channel follows
            module.mean[:, :3] = mean
            module.std[:, :3] = std
    if args.init_weights:  # fine-tuning: the start's network and its input standardisation
        load_start_weights(model, DETECTORS[args.model].from_weights(args.init_weights), args.init_weights,
                           ARCHITECTURE_KEYS)
    d, n = args.centre_distance, args.batch_size
    checkpoint = Path(args.checkpoint or args.output + ".ckpt")
    record: dict[str, Any] = {}

    def labelled_pools(source: PatchSource) -> list[tuple[Pool, int, float]]:
        return [(source.pool_by_distance(-1, d), n // 2, 1.0), (source.pool_by_distance(d, NEAR), n // 4, 0.0),
                (source.pool_by_distance(NEAR, np.inf), n - n // 2 - n // 4, 0.0)]

    if args.model == "SC-CNN":
        radius = float(config["proximity_radius"])

        def pools(source: PatchSource) -> list[tuple[Pool, int]]:
            return [(source.pool_by_distance(-1, 6.0), int(0.6 * n)),
                    (source.pool_by_distance(-1, np.inf), n - int(0.6 * n))]

        record["network"] = fit(model.network,
                                regression_batches(train_source, pools(train_source), radius, args.stain_jitter),
                                lambda raw, windows: F.mse_loss(sc_window_maps(raw, radius), windows),
                                regression_validator(val_source, [(p, 30 * c) for p, c in pools(val_source)],
                                                     radius, args.seed), args, checkpoint, log)
    elif args.model == "Cascade-GCN" and args.stage1_weights:
        model.network.stage1.load_state_dict(reused_stage1(args, config).state_dict())
        record["stage1"] = {"weights": args.stage1_weights}
        log(f"stage 1 from {args.stage1_weights}")
    else:
        first = model.network.stage1 if args.model == "Cascade-GCN" else model.network
        record["stage1" if args.model == "Cascade-GCN" else "network"] = fit(
            first, classifier_batches(train_source, labelled_pools(train_source), stain_strength=args.stain_jitter),
            classification_loss(args.loss),
            classifier_validator(val_source, [(p, 30 * c, y) for p, c, y in labelled_pools(val_source)], args.seed),
            args, checkpoint.with_suffix(".stage1.ckpt") if args.model == "Cascade-GCN" else checkpoint, log)
    if args.model == "Cascade-GCN":
        log("stage 1 around every pixel of the training and validation images")
        val_first = dense_probabilities(model.network.stage1, val_source)
        threshold1 = recall_threshold(val_first, val_set, d, args.stage1_recall)
        model.config["stage1_threshold"] = threshold1
        train_first = dense_probabilities(model.network.stage1, train_source)

        def survivor_pools(source: PatchSource, maps: list[np.ndarray], count: int) -> list[tuple[Pool, int, float]]:
            fired = [m >= threshold1 for m in maps]
            return [(source.pool([f & (dist <= d) for f, dist in zip(fired, source.distances)]), count // 2, 1.0),
                    (source.pool([f & (dist > d) for f, dist in zip(fired, source.distances)]), count - count // 2, 0.0)]

        pools2 = survivor_pools(train_source, train_first, n)
        record["stage1_threshold"] = threshold1
        record["stage1_survivors"] = {"true": len(pools2[0][0]), "false": len(pools2[1][0]),
                                      "of_pixels": int(sum(m.size for m in train_first))}
        log(f"stage 1 threshold {threshold1:.4f}: {record['stage1_survivors']}")
        train_context = val_context = None
        if args.stage2_context:  # padded as CascadeGCN pads stage 1's probability for stage 2
            train_context, val_context = ([np.pad(m, MARGIN, mode="reflect") for m in maps]
                                          for maps in (train_first, val_first))
            values = np.concatenate([m.ravel() for m in train_first])
            model.network.stage2.mean[:, 3] = float(values.mean())
            model.network.stage2.std[:, 3] = float(values.std())
        record["stage2"] = fit(model.network.stage2,
                               classifier_batches(train_source, pools2, train_context, args.stain_jitter),
                               classification_loss(args.loss),
                               classifier_validator(val_source, survivor_pools(val_source, val_first, 3000), args.seed,
                                                    val_context),
                               args, checkpoint.with_suffix(".stage2.ckpt"), log)
    record["validation"] = tune(model, val_set, args.radius, log)
    return model, record


def main(argv: list[str] | None = None) -> None:
    parser = training_parser(__doc__)
    parser.add_argument("--model", choices=sorted(DETECTORS), required=True)
    parser.add_argument("--loss", choices=("bce", "focal"), default="bce", help="classifiers' loss (SC-CNN: MSE)")
    add_point_training_arguments(parser, steps=3000, batch_size=100, learning_rate=1e-3)
    parser.add_argument("--centre-distance", type=float, default=2.0, help="a patch is positive within this (px)")
    parser.add_argument("--hidden", type=int, help="units of the first dense layer (default: Cascade-GCN 32, "
                        "CP-CNN / SC-CNN 256)")
    parser.add_argument("--order", type=int, default=1,
                        help="Cascade-GCN: Chebyshev order of the graph convolutions (each reaches this many px)")
    parser.add_argument("--stage2-order", type=int,
                        help="Cascade-GCN: stage 2's Chebyshev order, when it differs from --order")
    parser.add_argument("--stage1-weights",
                        help="Cascade-GCN: take stage 1 from these weights (same architecture) and train only stage 2")
    parser.add_argument("--init-weights",
                        help="start from these weights of the same detector and architecture (fine-tuning: their input "
                             "standardisation is kept) instead of a random network")
    parser.add_argument("--stage2-context", action="store_true",
                        help="Cascade-GCN: stage 2's nodes also carry stage 1's probability (auto-context)")
    parser.add_argument("--stage1-recall", type=float, default=0.98, help="share of nuclei stage 1 must keep")
    parser.add_argument("--nms-iou", type=float, default=0.3)
    parser.add_argument("--version", help="weights version recorded in outputs (default: file name)")
    parser.add_argument("--retune", action="store_true",
                        help="only re-tune the post-processing of the existing --output weights on the validation images")
    args = parser.parse_args(argv)
    train_set, val_set = train_and_validation_sets(args)
    if args.retune:
        model = DETECTORS[args.model].from_weights(args.output)
        chosen = tune(model, val_set, args.radius, lambda line: print(line, flush=True))
        model.save(args.output, version=model.weights_version)
        log_path = Path(args.output).with_suffix(".log.json")
        log = json.loads(log_path.read_text()) if log_path.is_file() else {}
        log_path.write_text(json.dumps({**log, "summary": chosen, "config": model.config}, indent=1))
        return
    print(f"{args.model} ({args.loss}): train images {len(train_set)}, validation images {len(val_set)}", flush=True)
    torch.manual_seed(args.seed)
    model, record = train_detector(args, train_set, val_set, lambda line: print(line, flush=True))
    model.save(args.output, version=args.version or Path(args.output).stem)
    Path(args.output).with_suffix(".log.json").write_text(json.dumps(
        {"summary": record.pop("validation"), "config": model.config, **record, "arguments": vars(args)}, indent=1))


if __name__ == "__main__":
    run_training_script(main)
