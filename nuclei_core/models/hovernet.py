"""HoVer-Net-style nucleus segmentation and classification: the three-branch network of hover_network.py and
HoVer-Net's post-processing, with the class and its probability for each nucleus."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import ndimage
from torch import nn

from ..errors import WeightsError
from ..nuclei import Nuclei
from ..postprocess.hover import hover_instances, instance_types
from ..postprocess.instances import label_map_to_nuclei
from ..stains import haematoxylin_density
from .base import WEIGHTS_DIR, NucleusModel
from .hover_network import HoVerNetwork

CONSEP_CLASSES = ("other", "inflammatory", "epithelial", "spindle")  # HoVer-Net's merged CoNSeP types
PROBABILITY = "Class probability"
HAEMATOXYLIN = "Mean haematoxylin OD"  # optical density of the haematoxylin channel (Ruifrok deconvolution)
DEFAULT_WEIGHTS = {"SE + CA": WEIGHTS_DIR / "hovernet_consep.pt", "plain": WEIGHTS_DIR / "hovernet_plain_consep.pt"}
AVERAGED = "both averaged"  # the CLI's network choice that runs both shipped networks (AveragedHoVerNet)

DEFAULT_CONFIG: dict[str, Any] = {
    "class_names": list(CONSEP_CLASSES),
    "widths": [24, 48, 96, 192],
    "attention": True,
    "foreground_threshold": 0.5,
    "edge_threshold": 0.6,
    "min_area": 10,
    "inference_window": 0,  # run tiles as windows of this side (0: whole); the attention pools over its input
    "flip_averaging": False,
}


class HoVerNet(NucleusModel):
    """Contours, classes and class probabilities of nuclei at 40x (0.25 um/px, CoNSeP's resolution)."""

    analysis_magnification = 40.0
    halo = 48
    bfloat16_is_faster = True

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"HoVer-Net ({self.variant})"

    @property
    def variant(self) -> str:
        """Which network: ``SE + CA`` (the method) or ``plain`` (its ablation)."""
        return "SE + CA" if self.config.get("attention", True) else "plain"

    @property
    def class_names(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(self.config["class_names"])

    @staticmethod
    def build_network(config: dict[str, Any]) -> nn.Module:
        return HoVerNetwork(len(config["class_names"]), tuple(config["widths"]), bool(config["attention"]))

    @property
    def size_multiple(self) -> int:
        return self.network.size_multiple

    def infer(self, batch: torch.Tensor) -> np.ndarray:
        """Per pixel: nuclear probability, horizontal and vertical distance, then the class probabilities
        (background first); with ``flip_averaging``, the mean over the batch's four mirror images."""
        return self.flip_averaged(self.maps, batch)

    def maps(self, batch: torch.Tensor) -> torch.Tensor:
        """The network's output as probabilities and distances (see :meth:`infer`)."""
        raw = self.network(batch)
        nuclear = torch.softmax(raw[:, :2], dim=1)[:, 1:]
        return torch.cat([nuclear, raw[:, 2:4], torch.softmax(raw[:, 4:], dim=1)], dim=1)

    def mirrored_back(self, output: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
        """Mirrored back, the horizontal distance negated after a left-right mirror and the vertical after an
        up-down one (both point from the nucleus's centre)."""
        output = output.flip(dims)
        signs = torch.ones(output.shape[1], dtype=output.dtype, device=output.device)
        signs[1], signs[2] = (-1 if 3 in dims else 1), (-1 if 2 in dims else 1)
        return output * signs[None, :, None, None]

    def label_map(self, output: np.ndarray) -> np.ndarray:
        """Instance label map of one tile from its output."""
        return hover_instances(output[0], output[1], output[2], float(self.config["foreground_threshold"]),
                               float(self.config["edge_threshold"]), int(self.config["min_area"]))

    def postprocess(self, output: np.ndarray, tile: np.ndarray | None = None) -> Nuclei:
        """Classified contours of one tile; with the tile's pixels, also each nucleus's mean haematoxylin."""
        labels = self.label_map(output)
        types, probability = instance_types(labels, output[3:])
        measurements = {PROBABILITY: probability}
        if tile is not None and labels.max():
            measurements[HAEMATOXYLIN] = np.asarray(ndimage.mean(haematoxylin_density(tile), labels,
                                                                 np.arange(1, labels.max() + 1)))
        return label_map_to_nuclei(labels, output[0], types - 1, self.class_names, measurements)

    def postprocess_tile(self, output: np.ndarray, tile: np.ndarray) -> Nuclei:
        """Classified contours of one tile, with each nucleus's mean haematoxylin."""
        return self.postprocess(output, tile)


class AveragedHoVerNet(HoVerNet):
    """An ensemble: the maps of its own network and of its partners (by default the shipped plain network), each
    run in its own inference window, averaged before one post-processing at this model's thresholds. Slower than
    either network alone and more accurate on validation (see the SE + CA model card)."""

    partner_weights: tuple[Path, ...] = (DEFAULT_WEIGHTS["plain"],)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.partners: list[HoVerNet] = []  # before the network is built: its errors name the model
        super().__init__(*args, **kwargs)

    @classmethod
    def from_weights(cls, path: str | Path, device: str = "cpu", **overrides: Any) -> "AveragedHoVerNet":
        """The weights at ``path`` and the partners', ``overrides`` applied to all (a partner keeps its own
        inference window unless one is given); a WeightsError when their classes differ."""
        model = super().from_weights(path, device, **overrides)
        model.partners = [HoVerNet.from_weights(weights, device, **overrides) for weights in cls.partner_weights]
        for partner in model.partners:
            if partner.class_names != model.class_names:
                raise WeightsError(f"networks averaged together need the same classes: {model.name} has "
                                   f"{', '.join(model.class_names)}, {partner.name} {', '.join(partner.class_names)}")
        model.weights_version = " + ".join(m.weights_version for m in (model, *model.partners))
        return model  # type: ignore[return-value]

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"HoVer-Net ({' and '.join(m.variant for m in (self, *self.partners))}, averaged)"

    def predict_outputs(self, tiles: np.ndarray) -> np.ndarray:
        """The mean of the members' outputs (see :class:`HoVerNet`)."""
        outputs = [super().predict_outputs(tiles)] + [partner.predict_outputs(tiles) for partner in self.partners]
        return sum(outputs) / len(outputs)

    def postprocessor(self) -> "AveragedHoVerNet":
        """Without its network and its partners (one post-processing of the averaged maps, at this model's
        settings)."""
        stripped = super().postprocessor()
        stripped.partners = []
        return stripped  # type: ignore[return-value]

    def parameters_record(self) -> dict[str, Any]:
        """This network's record, with each partner's weights version and inference window."""
        partners = [{"model": p.name, "weights_version": p.weights_version,
                     "inference_window": p.config.get("inference_window")} for p in self.partners]
        return {**super().parameters_record(), "averaged_with": partners}


def shipped_network(network: str) -> tuple[type[HoVerNet], Path]:
    """The model class and weights of a network the CLI offers: ``SE + CA``, ``plain`` or :data:`AVERAGED`."""
    if network == AVERAGED:
        return AveragedHoVerNet, DEFAULT_WEIGHTS["SE + CA"]
    return HoVerNet, DEFAULT_WEIGHTS[network]
