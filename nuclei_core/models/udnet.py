"""UD-Net: an R2U-Net regressing a Gaussian density map whose local maxima are nucleus centres."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from ..nuclei import Nuclei
from ..postprocess.peaks import find_peaks
from .base import WEIGHTS_DIR, NucleusModel
from .r2unet import R2UNet

# Shipped weights by training data; the multi-organ weights are the default for an unknown tissue.
WEIGHTS_BY_TRAINING_SET = {"Multi-organ": WEIGHTS_DIR / "udnet_multiorgan.pt",
                           "Colorectal": WEIGHTS_DIR / "udnet_crchisto.pt"}
DEFAULT_WEIGHTS = WEIGHTS_BY_TRAINING_SET["Multi-organ"]

DEFAULT_CONFIG: dict[str, Any] = {
    "widths": [16, 32, 64, 96, 128],
    "recurrent_steps": 3,
    "threshold": 0.3,
    "min_distance": 3,
    "flip_averaging": False,
}

class UDNet(NucleusModel):
    """Density-regression nucleus detector (points, one class)."""

    name = "UD-Net"
    analysis_magnification = 20.0
    halo = 32
    bfloat16_is_faster = True

    @staticmethod
    def build_network(config: dict[str, Any]) -> nn.Module:
        return R2UNet(in_channels=3, out_channels=1, widths=tuple(config["widths"]),
                      t=int(config["recurrent_steps"]))

    @property
    def size_multiple(self) -> int:
        return self.network.size_multiple

    def infer(self, batch: torch.Tensor) -> np.ndarray:
        """The density map; with ``flip_averaging`` the mean over the four flips of the batch."""
        return self.flip_averaged(self.network, batch)

    def postprocess(self, output: np.ndarray) -> Nuclei:
        points, scores = find_peaks(output[0], float(self.config["threshold"]), int(self.config["min_distance"]))
        return Nuclei(points, scores, class_names=self.class_names)
