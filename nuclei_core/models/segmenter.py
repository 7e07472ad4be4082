"""Nucleus segmentation by R2U-Net (and its plain U-Net baseline) or the multi-magnification graph attention
network: foreground + marker maps, watershed, contours."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from ..nuclei import Nuclei
from ..postprocess.instances import label_map_to_nuclei, split_instances
from .base import WEIGHTS_DIR, NucleusModel
from .graph_attention import MultiMagnificationGAT
from .r2unet import R2UNet

ARCHITECTURES = ("R2U-Net", "U-Net")  # the R2UNetSegmentation CLI's choices
GRAPH_ATTENTION = "MM-GAT"  # the GraphAttentionSegmentation CLI's network
DEFAULT_WEIGHTS = {"R2U-Net": WEIGHTS_DIR / "r2unet_nuclei.pt", "U-Net": WEIGHTS_DIR / "unet_nuclei.pt",
                   GRAPH_ATTENTION: WEIGHTS_DIR / "mmgat_nuclei.pt"}

DEFAULT_CONFIG: dict[str, Any] = {
    "architecture": "R2U-Net",
    "widths": [16, 32, 64, 128, 160],
    "recurrent_steps": 2,
    "foreground_threshold": 0.5,
    "marker_threshold": 0.5,
    "min_area": 30,
    "flip_averaging": False,
}
GRAPH_ATTENTION_CONFIG: dict[str, Any] = {
    **{k: v for k, v in DEFAULT_CONFIG.items() if k not in ("widths", "recurrent_steps")},
    "architecture": GRAPH_ATTENTION, "levels": 5, "channels": 32, "heads": 4, "layers": 6, "position_updates": 2,
    "dropout": 0.1,
}


def default_config(architecture: str) -> dict[str, Any]:
    """The untrained settings of a segmenter architecture."""
    return dict(GRAPH_ATTENTION_CONFIG) if architecture == GRAPH_ATTENTION else {**DEFAULT_CONFIG,
                                                                                  "architecture": architecture}


class NucleusSegmenter(NucleusModel):
    """Nucleus contours from a network with two sigmoid outputs, foreground and nucleus cores: R2U-Net, U-Net or
    the multi-magnification graph attention network.

    Works at 40x (0.25 um/px, the resolution of MoNuSeg and CoNSeP); slides at 20x are upsampled by the engine.
    """

    analysis_magnification = 40.0
    halo = 48

    @property
    def name(self) -> str:  # type: ignore[override]
        return str(self.config.get("architecture", "nucleus segmenter"))

    @staticmethod
    def build_network(config: dict[str, Any]) -> nn.Module:
        if config["architecture"] == GRAPH_ATTENTION:
            return MultiMagnificationGAT(in_channels=3, out_channels=2, levels=int(config["levels"]),
                                         channels=int(config["channels"]), heads=int(config["heads"]),
                                         layers=int(config["layers"]), position_updates=int(config["position_updates"]),
                                         dropout=float(config["dropout"]))
        if config["architecture"] not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {config['architecture']!r}")
        return R2UNet(in_channels=3, out_channels=2, widths=tuple(config["widths"]),
                      t=int(config["recurrent_steps"]), recurrent=config["architecture"] == "R2U-Net")

    @property
    def size_multiple(self) -> int:
        return self.network.size_multiple

    def infer(self, batch: torch.Tensor) -> np.ndarray:
        """Foreground and marker probabilities; with ``flip_averaging`` the mean over the four flips."""
        return self.flip_averaged(lambda x: torch.sigmoid(self.network(x)), batch)

    def label_map(self, output: np.ndarray) -> np.ndarray:
        """Instance label map of one tile from its (2, H, W) output."""
        return split_instances(output[0], output[1], float(self.config["foreground_threshold"]),
                               float(self.config["marker_threshold"]), int(self.config["min_area"]))

    def postprocess(self, output: np.ndarray) -> Nuclei:
        return label_map_to_nuclei(self.label_map(output), output[0])

    def segment(self, image: np.ndarray) -> np.ndarray:
        """Instance label map of a whole (H, W, 3) uint8 image (used by training and benchmarks)."""
        return self.label_map(self.predict_outputs(image[None])[0])


class GraphAttentionSegmenter(NucleusSegmenter):
    """The segmenter that accepts only multi-magnification graph attention weights (GraphAttentionSegmentation)."""

    name = GRAPH_ATTENTION

    @staticmethod
    def build_network(config: dict[str, Any]) -> nn.Module:
        if config["architecture"] != GRAPH_ATTENTION:
            raise ValueError(f"the architecture ({config['architecture']}, not {GRAPH_ATTENTION})")
        return NucleusSegmenter.build_network(config)
