"""Faster R-CNN nucleus detector on Reinhard-normalised, Ruifrok-deconvolved haematoxylin tiles (HistomicsTK
preparation, torchvision detector trained from scratch on a small backbone)."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork

from ..nuclei import Nuclei
from ..stains import REFERENCE_LAB_MEAN, REFERENCE_LAB_STD, HaematoxylinPreparation, stain_matrix
from .base import WEIGHTS_DIR, NucleusModel, TilePreparation, to_device

DEFAULT_WEIGHTS = WEIGHTS_DIR / "faster_rcnn_he.pt"
SCORE_NAME = "Detection score"

DEFAULT_CONFIG: dict[str, Any] = {
    "widths": [32, 64, 128, 256],
    "fpn_channels": 64,
    "box_head_width": 256,
    "anchor_sizes": [[12, 16], [24, 32], [48, 64]],
    "haematoxylin_scale": 1.0,  # optical density is divided by this before the network
    "min_probability": 0.1,
    "nms_threshold": 0.5,
    "max_detections": 3000,  # per tile; the paper used 1000, too few for dense 1024 px tiles at 40x
    "output_shape": "rectangles",
    "stains": ["hematoxylin", "eosin", "null"],
    "reference_mean": list(REFERENCE_LAB_MEAN),
    "reference_std": list(REFERENCE_LAB_STD),
}


def conv_block(channels_in: int, channels_out: int, stride: int) -> nn.Sequential:
    """Two 3x3 convolutions with batch norm and ReLU, the first with ``stride``."""
    return nn.Sequential(
        nn.Conv2d(channels_in, channels_out, 3, stride, 1, bias=False), nn.BatchNorm2d(channels_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(channels_out, channels_out, 3, 1, 1, bias=False), nn.BatchNorm2d(channels_out),
        nn.ReLU(inplace=True))


class SmallFPNBackbone(nn.Module):
    """A four-stage CNN (strides 2, 4, 8, 16) with a feature pyramid over the last three stages: nuclei are
    10 to 60 px at 40x, so the finest pyramid level (stride 4) carries the small ones."""

    def __init__(self, in_channels: int, widths: tuple[int, ...], fpn_channels: int) -> None:
        super().__init__()
        self.stages = nn.ModuleList()
        previous = in_channels
        for width in widths:
            self.stages.append(conv_block(previous, width, 2))
            previous = width
        self.fpn = FeaturePyramidNetwork(list(widths[1:]), fpn_channels)
        self.out_channels = fpn_channels

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        features = OrderedDict()
        for index, stage in enumerate(self.stages):
            x = stage(x)
            if index:
                features[str(index - 1)] = x
        return self.fpn(features)


class KeepSizeTransform(GeneralizedRCNNTransform):
    """torchvision's detection transform without its resizing: tiles are already at the trained scale."""

    def resize(self, image: torch.Tensor, target: dict[str, torch.Tensor] | None = None):
        return image, target


def build_faster_rcnn(config: dict[str, Any]) -> FasterRCNN:
    """The detector for ``config``: one input channel (haematoxylin), two classes (background, nucleus)."""
    backbone = SmallFPNBackbone(1, tuple(config["widths"]), int(config["fpn_channels"]))
    levels = len(config["anchor_sizes"])
    anchors = AnchorGenerator(tuple(tuple(s) for s in config["anchor_sizes"]), ((0.5, 1.0, 2.0),) * levels)
    detections = int(config["max_detections"])
    network = FasterRCNN(
        backbone, rpn_anchor_generator=anchors,
        box_roi_pool=MultiScaleRoIAlign([str(i) for i in range(levels)], output_size=7, sampling_ratio=2),
        box_head=TwoMLPHead(backbone.out_channels * 7 * 7, int(config["box_head_width"])),
        box_predictor=FastRCNNPredictor(int(config["box_head_width"]), 2),
        box_score_thresh=float(config["min_probability"]), box_nms_thresh=float(config["nms_threshold"]),
        box_detections_per_img=detections, rpn_pre_nms_top_n_test=4 * detections,
        rpn_post_nms_top_n_test=2 * detections, rpn_pre_nms_top_n_train=4000, rpn_post_nms_top_n_train=2000,
        box_batch_size_per_image=256)
    network.transform = KeepSizeTransform(0, 0, [0.0], [float(config["haematoxylin_scale"])], size_divisible=32)
    return network


def box_contours(boxes: np.ndarray) -> list[np.ndarray]:
    """Each (x0, y0, x1, y1) box as a closed 4-corner contour (x, y)."""
    return [np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64) for x0, y0, x1, y1 in boxes]


class FasterRCNNDetector(NucleusModel):
    """Boxes (or their centres) and scores of nuclei at 40x, on the haematoxylin channel of normalised tiles."""

    name = "Faster R-CNN"
    analysis_magnification = 40.0
    halo = 48

    @staticmethod
    def build_network(config: dict[str, Any]) -> nn.Module:
        return build_faster_rcnn({**DEFAULT_CONFIG, **config})

    def tile_preparation(self, colour_sample: Callable[[], np.ndarray]) -> TilePreparation:
        """Reinhard statistics of the slide's tissue (once per run) to the reference, then haematoxylin."""
        return HaematoxylinPreparation.from_pixels(
            colour_sample(), target_mean=tuple(self.config["reference_mean"]),
            target_std=tuple(self.config["reference_std"]),
            stains=tuple(map(tuple, stain_matrix(tuple(self.config["stains"])))))

    def preprocess(self, tiles: np.ndarray) -> torch.Tensor:
        """(B, H, W, 1) haematoxylin density -> (B, 1, H, W) float tensor on the model's device."""
        return to_device(np.asarray(tiles, np.float32), self.device).permute(0, 3, 1, 2)

    def infer(self, batch: torch.Tensor) -> list[np.ndarray]:  # type: ignore[override]
        """One (N, 5) array per tile: box x0, y0, x1, y1 and score, after NMS, best first."""
        detections = self.network(list(batch))
        return [torch.cat([d["boxes"], d["scores"][:, None]], 1).float().cpu().numpy() for d in detections]

    def postprocess(self, output: np.ndarray) -> Nuclei:
        """The nuclei of one tile's detections: centres and scores, with the boxes as contours unless points
        were asked for."""
        boxes, scores = output[:, :4].astype(np.float64), output[:, 4].astype(np.float64)
        centres = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], 1) - 0.5
        contours = box_contours(boxes - 0.5) if self.config["output_shape"] == "rectangles" else None
        return Nuclei(centres.reshape(-1, 2), scores, contours, class_names=self.class_names,
                      measurements={SCORE_NAME: scores})

    def postprocessor(self) -> None:
        """None: the network's own post-processing (box decoding, NMS) runs with it; what is left is tiny."""
        return None

    def predict(self, tiles: np.ndarray) -> list[Nuclei]:
        """Nuclei of each prepared (H, W, 1) tile of a batch, in tile pixel coordinates."""
        with self.inferring():
            return [self.postprocess(output) for output in self.infer(self.preprocess(tiles))]
