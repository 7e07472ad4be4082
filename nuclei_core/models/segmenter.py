"""Nucleus segmentation by R2U-Net (and its plain U-Net baseline) or the multi-magnification graph attention
network: foreground + marker maps, watershed, contours."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from ..intensity import stretch_intensity
from ..nuclei import Nuclei
from ..postprocess.instances import label_map_to_nuclei, split_instances
from .base import WEIGHTS_DIR, NucleusModel
from .graph_attention_network import MultiMagnificationGAT
from .r2unet import R2UNet

ARCHITECTURES = ("R2U-Net", "U-Net")  # the R2UNetSegmentation CLI's choices
GRAPH_ATTENTION = "MM-GAT"  # the GraphAttentionSegmentation CLI's network
DEFAULT_WEIGHTS = {"R2U-Net": WEIGHTS_DIR / "r2unet_nuclei.pt", "U-Net": WEIGHTS_DIR / "unet_nuclei.pt",
                   GRAPH_ATTENTION: WEIGHTS_DIR / "mmgat_typed_nuclei.pt"}
IMAGE_MODALITIES = ("brightfield", "fluorescence")  # the segmentation CLIs' image types (H&E is brightfield)
FLUORESCENCE_WEIGHTS = {"R2U-Net": WEIGHTS_DIR / "r2unet_fluorescence.pt",
                        "U-Net": WEIGHTS_DIR / "unet_fluorescence.pt",
                        GRAPH_ATTENTION: WEIGHTS_DIR / "mmgat_typed_fluorescence.pt"}

DEFAULT_CONFIG: dict[str, Any] = {
    "architecture": "R2U-Net",
    "widths": [16, 32, 64, 128, 160],
    "recurrent_steps": 2,
    "foreground_threshold": 0.5,
    "marker_threshold": 0.5,
    "min_area": 30,
    "split_distance": 0,  # px at analysis scale; > 0: an instance with two centres this far apart is cut again
    "flip_averaging": False,
    "nucleus_area_target": 0,  # px; > 0: images of unknown pixel size are rescaled to nuclei of about this area
    "intensity_stretch": False,  # each tile's intensity percentiles stretched first (fluorescence weights)
}
RESCALE_RANGE = (0.75, 2.0)  # the factors an image of unknown pixel size may be resampled by
RESCALE_TOLERANCE = 1.1  # rescaling by less than this factor (either way) is skipped
GRAPH_ATTENTION_CONFIG: dict[str, Any] = {
    **{k: v for k, v in DEFAULT_CONFIG.items() if k not in ("widths", "recurrent_steps")},
    "architecture": GRAPH_ATTENTION, "levels": 5, "channels": 32, "heads": 4, "layers": 6, "position_updates": 2,
    "dropout": 0.1, "wiring": "typed", "readout": "full-resolution",  # the paper's attention; its reconstruction
    # (readout "reconstruction") validated no better at 2400 steps (mmgat_typed_nuclei.md)
}

FIRST_GRAPH_WIRING = {"wiring": "flat", "readout": "full-resolution"}  # what MM-GAT weights without them are


def default_config(architecture: str) -> dict[str, Any]:
    """The untrained settings of a segmenter architecture."""
    return dict(GRAPH_ATTENTION_CONFIG) if architecture == GRAPH_ATTENTION else {**DEFAULT_CONFIG,
                                                                                  "architecture": architecture}


def shipped_weights(architecture: str, image_modality: str = "brightfield") -> Path:
    """The shipped weights of an R2U-Net, U-Net or MM-GAT for images of this modality: the fluorescence specialists
    for fluorescence, else the weights trained on H&E, brightfield and fluorescence together."""
    return FLUORESCENCE_WEIGHTS[architecture] if image_modality == "fluorescence" else DEFAULT_WEIGHTS[architecture]


class NucleusSegmenter(NucleusModel):
    """Nucleus contours from a network with two sigmoid outputs, foreground and nucleus cores: R2U-Net, U-Net or
    the multi-magnification graph attention network.

    Works at 40x (0.25 um/px, the resolution of MoNuSeg and CoNSeP); slides at 20x are upsampled by the engine.
    """

    analysis_magnification = 40.0
    halo = 48

    def __init__(self, config: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        if config.get("architecture") == GRAPH_ATTENTION:  # weights saved before the paper's wiring lack it
            config = {**FIRST_GRAPH_WIRING, **config}
        super().__init__(config, *args, **kwargs)

    @property
    def name(self) -> str:  # type: ignore[override]
        return str(self.config.get("architecture", "nucleus segmenter"))

    @property
    def bfloat16_is_faster(self) -> bool:  # type: ignore[override]
        """R2U-Net and U-Net run faster in bfloat16; the graph attention network slower."""
        return self.config.get("architecture") != GRAPH_ATTENTION

    @staticmethod
    def build_network(config: dict[str, Any]) -> nn.Module:
        if config["architecture"] == GRAPH_ATTENTION:
            return MultiMagnificationGAT(in_channels=3, out_channels=2, levels=int(config["levels"]),
                                         channels=int(config["channels"]), heads=int(config["heads"]),
                                         layers=int(config["layers"]), position_updates=int(config["position_updates"]),
                                         dropout=float(config["dropout"]), wiring=config["wiring"],
                                         readout=config["readout"])
        if config["architecture"] not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {config['architecture']!r}")
        return R2UNet(in_channels=3, out_channels=2, widths=tuple(config["widths"]),
                      t=int(config["recurrent_steps"]), recurrent=config["architecture"] == "R2U-Net")

    @property
    def size_multiple(self) -> int:
        return self.network.size_multiple

    def preprocess(self, tiles: np.ndarray) -> torch.Tensor:
        """As every model, after each tile's intensity stretch (:func:`stretch_intensity`) where the weights were
        trained on stretched images."""
        if self.config.get("intensity_stretch"):
            tiles = np.stack([stretch_intensity(tile) for tile in tiles])
        return super().preprocess(tiles)

    def infer(self, batch: torch.Tensor) -> np.ndarray:
        """Foreground and marker probabilities; with ``flip_averaging`` the mean over the four flips."""
        return self.flip_averaged(lambda x: torch.sigmoid(self.network(x)), batch)

    def label_map(self, output: np.ndarray) -> np.ndarray:
        """Instance label map of one tile from its (2, H, W) output."""
        return split_instances(output[0], output[1], float(self.config["foreground_threshold"]),
                               float(self.config["marker_threshold"]), int(self.config["min_area"]),
                               int(self.config.get("split_distance", 0)))

    def postprocess(self, output: np.ndarray) -> Nuclei:
        return label_map_to_nuclei(self.label_map(output), output[0])

    def segment(self, image: np.ndarray, rescale_to_nuclei: bool = False) -> np.ndarray:
        """Instance label map of a whole (H, W, 3) uint8 image (used by training and benchmarks).

        ``rescale_to_nuclei`` is for images of unknown pixel size (DSB2018): a first pass measures the median
        nucleus area and, when the config's ``nucleus_area_target`` is set, the image is segmented again
        resampled so that its nuclei have about that area (by a factor within ``RESCALE_RANGE``).
        """
        labels = self.label_map(self.predict_outputs(image[None])[0])
        return self.rescaled_segmentation(image, labels) if rescale_to_nuclei else labels

    def rescaled_segmentation(self, image: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """``labels`` (the segmentation of ``image`` at its own size) redone with the image resampled by
        :meth:`rescale_factor`; ``labels`` itself where that factor is 1."""
        factor = self.rescale_factor(labels)
        return labels if factor == 1.0 else self.label_map(self.outputs_resampled(image, factor))

    def rescale_factor(self, labels: np.ndarray) -> float:
        """The resampling factor that brings the median area of ``labels``'s nuclei to ``nucleus_area_target``
        (1 when that is unset, no nucleus was found or the change would be under ``RESCALE_TOLERANCE``)."""
        target = float(self.config.get("nucleus_area_target", 0))
        areas = np.bincount(labels.ravel())[1:]
        areas = areas[areas > 0]
        if not target or not areas.size:
            return 1.0
        factor = float(np.clip(np.sqrt(target / np.median(areas)), *RESCALE_RANGE))
        return factor if max(factor, 1 / factor) >= RESCALE_TOLERANCE else 1.0

    def outputs_resampled(self, image: np.ndarray, factor: float) -> np.ndarray:
        """The (2, H, W) output maps of ``image`` analysed at ``factor`` times its size, resampled back to it."""
        height, width = image.shape[:2]
        size = (max(1, round(width * factor)), max(1, round(height * factor)))
        resized = cv2.resize(image, size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)
        output = self.predict_outputs(resized[None])[0]
        return np.stack([cv2.resize(channel, (width, height), interpolation=cv2.INTER_LINEAR) for channel in output])


class GraphAttentionSegmenter(NucleusSegmenter):
    """The segmenter that accepts only multi-magnification graph attention weights (GraphAttentionSegmentation)."""

    name = GRAPH_ATTENTION

    @staticmethod
    def build_network(config: dict[str, Any]) -> nn.Module:
        if config["architecture"] != GRAPH_ATTENTION:
            raise ValueError(f"the architecture ({config['architecture']}, not {GRAPH_ATTENTION})")
        return NucleusSegmenter.build_network(config)
