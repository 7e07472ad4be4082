"""How each kind of shipped model learns from a pathologist's annotated cells: its batches, its loss, and its
validation, which also tunes the post-processing settings on the held-out cells."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

import torch
from torch import nn

from ..data.instance_sets import InstanceAnnotatedImage
from ..data.points import PointAnnotatedImage
from ..models.base import NucleusModel
from ..models.segmenter import NucleusSegmenter
from ..models.udnet import UDNet
from . import train_segmenter, train_udnet
from .slide_cells import Cell
from .trainer import BatchSampler, Validator


class FineTuning(ABC):
    """One kind of model: what it learns from, how it is trained and validated, and how its weights are used."""

    model_class: type[NucleusModel]
    learns_from: str  # "points" or "outlines"
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

    @abstractmethod
    def sampler(self, model: NucleusModel, cells: list[Cell], patch: int, batch_size: int,
                stain_jitter: float) -> BatchSampler:
        """Augmented training batches from the training cells."""

    @abstractmethod
    def validator(self, model: NucleusModel, cells: list[Cell], radius: float) -> Validator:
        """The held-out score the best checkpoint is chosen by, and the post-processing settings tuned with it
        (``radius``: matching radius in model pixels)."""

    @abstractmethod
    def usage(self, weights_name: str) -> str:
        """How a CLI takes the new weights."""


class DetectorFineTuning(FineTuning):
    """UD-Net: density maps from the points; threshold and minimum distance chosen with the checkpoint."""

    model_class = UDNet
    learns_from = "points"
    loss = nn.MSELoss()

    @staticmethod
    def _items(cells: list[Cell]) -> list[PointAnnotatedImage]:
        return [PointAnnotatedImage(c.name, c.image, c.points) for c in cells]

    def sampler(self, model, cells, patch, batch_size, stain_jitter):
        return train_udnet.make_sampler(self._items(cells), patch, batch_size, int(model.config.get("target_radius", 3)),
                                        float(model.config.get("target_sigma", 2.0)), stain_jitter)

    def validator(self, model, cells, radius):
        return train_udnet.make_validator(model, self._items(cells), radius)

    def usage(self, weights_name):
        return f"`UDNetDetection --model_weights {weights_name}`, `DCRNClassification --detector_weights {weights_name}`"


TUNED_SETTINGS = ("foreground_threshold", "marker_threshold", "min_area")


class SegmenterFineTuning(FineTuning):
    """R2U-Net / U-Net: foreground and core maps from the outlines; thresholds and minimum area tuned with the
    checkpoint."""

    model_class = NucleusSegmenter
    learns_from = "outlines"
    loss = staticmethod(train_segmenter.bce_dice_loss)

    @staticmethod
    def _items(cells: list[Cell]) -> dict[str, list[InstanceAnnotatedImage]]:
        return {"own": [InstanceAnnotatedImage(c.name, c.image, c.labels, "he") for c in cells]}

    def sampler(self, model, cells, patch, batch_size, stain_jitter):
        return train_segmenter.make_sampler([self._items(cells)["own"]], [1.0], patch, batch_size, stain_jitter)

    def validator(self, model, cells, radius):
        """The held-out AJI with the post-processing settings tuned for each checkpoint (as UD-Net's threshold
        is), so the base weights compete with their best settings too."""
        held_out = self._items(cells)

        def validate(network: nn.Module) -> tuple[float, dict]:
            tuned = train_segmenter.tune_thresholds(model, held_out)
            return tuned["validation_score"], {k: tuned[k] for k in TUNED_SETTINGS}

        return validate

    def usage(self, weights_name):
        return f"`R2UNetSegmentation --model_weights {weights_name}` (the architecture comes with the weights)"
