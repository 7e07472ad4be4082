"""How each kind of shipped model learns from a pathologist's annotated cells: its batches, its loss, and its
validation, which also tunes the post-processing settings on the held-out cells."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..data.instance_sets import InstanceAnnotatedImage
from ..data.points import PointAnnotatedImage
from ..engine.analysis import ModelSpec
from ..models.base import TrainedModel
from ..models.classified_nuclei import ClassifyGiven
from ..models.nucleus_classifier import NucleusClassifier
from ..models.segmenter import NucleusSegmenter
from ..models.udnet import UDNet
from ..nuclei import Nuclei
from ..outputs.dsa import annotation_documents, write_annotation
from . import train_classifier, train_segmenter, train_udnet
from .slide_cells import Cell
from .trainer import BatchSampler, Validator


class FineTuning(ABC):
    """One kind of model: what it learns from, how it is trained and validated, and how its weights are used."""

    model_class: type[TrainedModel]
    learns_from: str  # "points", "outlines" or "classes"
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

    def prepare(self, model: TrainedModel, class_names: tuple[str, ...]) -> TrainedModel:
        """The model to train, given the class names of the annotations (most kinds ignore them)."""
        return model

    def engine_spec(self, weights: Path, device: str, truth: Nuclei, folder: Path) -> ModelSpec:
        """How the whole-slide engine runs these weights on the held-out cells (``truth``: that slide's
        annotation; ``folder``: for any file the model needs)."""
        return ModelSpec(self.model_class, str(weights), device)

    @abstractmethod
    def sampler(self, model: TrainedModel, cells: list[Cell], patch: int, batch_size: int,
                stain_jitter: float) -> BatchSampler:
        """Augmented training batches from the training cells."""

    @abstractmethod
    def validator(self, model: TrainedModel, cells: list[Cell], radius: float) -> Validator:
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


class SegmenterFineTuning(FineTuning):
    """R2U-Net / U-Net: foreground and core maps from the outlines; thresholds, minimum area and split distance
    tuned with the checkpoint."""

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
            return tuned["validation_score"], {k: tuned[k] for k in train_segmenter.POSTPROCESSING_KEYS}

        return validate

    def usage(self, weights_name):
        return f"`R2UNetSegmentation --model_weights {weights_name}` (the architecture comes with the weights)"


class ClassifierFineTuning(FineTuning):
    """DCRN / DenseNet: 32x32 patches around the classified points; a new last layer when your classes are not
    the shipped ones; scored on your own points, so only the classes are compared."""

    model_class = NucleusClassifier
    learns_from = "classes"
    loss = nn.CrossEntropyLoss()

    def prepare(self, model, class_names):
        shipped = set(model.class_names)
        return model if set(class_names) <= shipped else model.with_classes(tuple(sorted(set(class_names))))

    @staticmethod
    def _items(model: NucleusClassifier, cells: list[Cell]) -> list[PointAnnotatedImage]:
        index = {name: i for i, name in enumerate(model.class_names)}
        return [PointAnnotatedImage(c.name, c.image, c.points, np.array([index[n] for n in c.class_labels], int))
                for c in cells]

    def sampler(self, model, cells, patch, batch_size, stain_jitter):
        return train_classifier.make_sampler(model, self._items(model, cells), batch_size, 2, stain_jitter)

    def validator(self, model, cells, radius):
        held_out = self._items(model, cells)

        def validate(network: nn.Module) -> tuple[float, dict]:
            return train_classifier.evaluate(model, held_out)["weighted_f1"], {}

        return validate

    def engine_spec(self, weights, device, truth, folder):
        given = folder / f"given-{len(list(folder.iterdir()))}.anot"  # the truth's points, without the regions
        write_annotation(given, annotation_documents(truth, "given nuclei", {}))
        return ModelSpec(ClassifyGiven, str(weights), device, (("nuclei_file", str(given)),))

    def usage(self, weights_name):
        return (f"`DCRNClassification --model_weights {weights_name}` (DCRN or DenseNet and the classes come with "
                "the weights)")
