"""Nucleus detectors that score the 27x27 patch around every pixel: cascaded GCN, CP-CNN and SC-CNN.

All three turn a tile into a per-pixel score map (computed fully convolutionally, see ``patch_gcn``
and ``patch_cnn``) and keep the pixels that survive a threshold and non-maximum suppression.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import nn

from ..nuclei import Nuclei
from ..postprocess.nms import nms_points
from .base import WEIGHTS_DIR, NucleusModel
from .patch_cnn import PatchCNN, sc_aggregate
from .patch_gcn import PATCH, PatchGCN

MARGIN = PATCH // 2


def smooth(score_map: np.ndarray, sigma: float) -> np.ndarray:
    """The score map Gaussian-smoothed by ``sigma`` px (unchanged for 0): one peak per nucleus."""
    return ndimage.gaussian_filter(score_map, sigma) if sigma > 0 else score_map


class PatchDetector(NucleusModel):
    """Shared pre- and post-processing: reflect-pad by half a patch, score every pixel, threshold + NMS."""

    analysis_magnification = 20.0
    halo = 32

    def infer(self, batch: torch.Tensor) -> np.ndarray:
        padded = F.pad(batch, (MARGIN,) * 4, mode="reflect")
        return self.score_map(padded)[:, None].float().cpu().numpy()

    @abstractmethod
    def score_map(self, padded: torch.Tensor) -> torch.Tensor:
        """(B, H-26, W-26) scores in [0, 1] of the patches around the pixels of a padded batch."""

    def postprocess(self, output: np.ndarray) -> Nuclei:
        score_map = smooth(output[0], float(self.config.get("smoothing", 0.0)))
        points, scores = nms_points(score_map, float(self.config["threshold"]), float(self.config["nms_box"]),
                                    float(self.config["nms_iou"]))
        return Nuclei(points, scores, class_names=self.class_names)


class CascadeNetwork(nn.Module):
    """Stage 1 (soft-negative elimination) and stage 2 (hard-negative elimination) graph classifiers.

    With ``stage2_context`` in the config, stage 2's nodes carry stage 1's probability beside their
    colour (auto-context): a stage-2 patch then also sees how stage 1 judged the patches around it.
    ``order`` (default 1) is the Chebyshev order of the graph convolutions, ``stage2_order`` stage 2's
    when it differs.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        arguments = {"channels": tuple(config["channels"]), "hidden": int(config["hidden"])}
        order = int(config.get("order", 1))
        self.stage1 = PatchGCN(**arguments, order=order)
        self.stage2 = PatchGCN(**arguments, order=int(config.get("stage2_order", order)),
                               in_channels=4 if config.get("stage2_context") else 3)


def with_stage1_context(padded: torch.Tensor, probability: torch.Tensor) -> torch.Tensor:
    """Stage 2's input: the padded RGB batch (B, 3, H+26, W+26) and stage 1's (B, H, W) probability,
    reflect-padded the same way, as a fourth channel."""
    return torch.cat([padded, F.pad(probability[:, None], (MARGIN,) * 4, mode="reflect")], dim=1)


class CascadeGCN(PatchDetector):
    """Cascaded graph-convolution detector: stage 2 scores only the pixels stage 1 lets through."""

    name = "Cascade-GCN"

    @staticmethod
    def build_network(config: dict[str, Any]) -> nn.Module:
        return CascadeNetwork(config)

    def score_map(self, padded: torch.Tensor) -> torch.Tensor:
        """Stage 2's score where stage 1 fired, else 0; stage 2 runs only on chunks where stage 1 fired."""
        first = torch.sigmoid(self.network.stage1.dense(padded))
        fired = first >= float(self.config["stage1_threshold"])
        stage2_input = with_stage1_context(padded, first) if self.config.get("stage2_context") else padded
        second = torch.sigmoid(self.network.stage2.dense(stage2_input, where=fired))
        return torch.where(fired, second, torch.zeros_like(second))


class PatchCNNDetector(PatchDetector):
    """A detector built on the shared CNN trunk with ``outputs`` numbers per patch."""

    outputs = 1

    @classmethod
    def build_network(cls, config: dict[str, Any]) -> nn.Module:
        return PatchCNN(cls.outputs, tuple(config["channels"]), int(config["hidden"]))


class CPCNN(PatchCNNDetector):
    """CP-CNN baseline: a CNN classifies whether the patch centre is a nucleus centre."""

    name = "CP-CNN"
    bfloat16_is_faster = True

    def score_map(self, padded: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.network.dense(padded)[:, 0])


class SCCNN(PatchCNNDetector):
    """SC-CNN baseline: a CNN regresses the proximity map around each patch centre; windows averaged."""

    name = "SC-CNN"
    outputs = 3

    def score_map(self, padded: torch.Tensor) -> torch.Tensor:
        averaged = sc_aggregate(self.network.dense(padded), float(self.config["proximity_radius"]))
        return averaged[:, MARGIN:-MARGIN, MARGIN:-MARGIN]


DETECTORS: dict[str, type[PatchDetector]] = {"Cascade-GCN": CascadeGCN, "CP-CNN": CPCNN, "SC-CNN": SCCNN}
# Shipped weights per detector and training set: Multi-organ (CRCHisto + MoNuSeg + CoNSeP with stain jitter, the
# default) or Colorectal (CRCHisto only), as UD-Net's; the model cards give each recipe.
TRAINING_SET_SUFFIXES = {"Multi-organ": "multiorgan", "Colorectal": "crchisto"}
WEIGHTS_BY_TRAINING_SET = {name: {training_set: WEIGHTS_DIR / f"{name.lower().replace('-', '_')}_{suffix}.pt"
                                  for training_set, suffix in TRAINING_SET_SUFFIXES.items()} for name in DETECTORS}
DEFAULT_WEIGHTS = {name: weights["Multi-organ"] for name, weights in WEIGHTS_BY_TRAINING_SET.items()}
