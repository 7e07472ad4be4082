"""Nucleus classification: the DenseNet / DCRN classifier applied to the patch centred on each nucleus."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data.public_sets import CRCHISTO_CLASSES
from ..nuclei import Nuclei
from .base import WEIGHTS_DIR, TrainedModel, to_device
from .dcrn import build_classifier

CLASSIFIER_CONFIG: dict[str, Any] = {
    "class_names": list(CRCHISTO_CLASSES),
    "patch": 32,
    "magnification": 20.0,
    "blocks": 4,
    "layers": 7,
    "growth": 12,
    "initial_channels": 128,
    "compression": 1.0,
}

# Architecture name -> recurrent steps of its dense layers.
ARCHITECTURES = {"DCRN": 2, "DenseNet": 0}
DEFAULT_WEIGHTS = {"DCRN": WEIGHTS_DIR / "dcrn_crchisto.pt", "DenseNet": WEIGHTS_DIR / "densenet_crchisto.pt"}
PROBABILITY = "Class probability"


def centred_patches(image: np.ndarray, points: np.ndarray, side: int) -> np.ndarray:
    """(N, side, side, 3) crops of an (H, W, 3) image centred on each x,y point (reflected at the borders)."""
    half = side // 2
    padded = np.pad(image, ((half, half), (half, half), (0, 0)), mode="reflect")
    cols = np.clip(np.rint(points[:, 0]).astype(int), 0, image.shape[1] - 1)
    rows = np.clip(np.rint(points[:, 1]).astype(int), 0, image.shape[0] - 1)
    offsets = np.arange(side)
    return padded[(rows[:, None] + offsets)[:, :, None], (cols[:, None] + offsets)[:, None, :]]


def dihedral_views(patches: np.ndarray) -> list[np.ndarray]:
    """The eight rotations by k*90 degrees, with and without a mirror, of (N, P, P, C) patches."""
    rotations = [np.rot90(patches, k, axes=(1, 2)) for k in range(4)]
    return rotations + [r[:, :, ::-1] for r in rotations]


class NucleusClassifier(TrainedModel):
    """Classifies nuclei (given their centres) from the ``patch`` x ``patch`` RGB patch at 20x around each."""

    bfloat16_is_faster = True

    @property
    def name(self) -> str:
        return "DCRN" if self.config["recurrent_steps"] else "DenseNet"

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.config["class_names"])

    @property
    def analysis_magnification(self) -> float:
        return float(self.config["magnification"])

    def with_classes(self, class_names: tuple[str, ...]) -> "NucleusClassifier":
        """This classifier for other classes: every layer kept but the last, which starts afresh (seeded by
        torch's global seed) when the class names differ."""
        if tuple(class_names) == self.class_names:
            return self
        other = type(self)({**self.config, "class_names": list(class_names)}, device=str(self.device),
                           weights_version=self.weights_version)
        kept = {k: v for k, v in self.network.state_dict().items() if not k.startswith("head.")}
        other.network.load_state_dict(kept, strict=False)
        return other

    @staticmethod
    def build_network(config: dict[str, Any]) -> nn.Module:
        return build_classifier(config)

    @classmethod
    def untrained(cls, architecture: str, device: str = "cpu") -> "NucleusClassifier":
        """A fresh DCRN or DenseNet with the default configuration."""
        return cls({**CLASSIFIER_CONFIG, "recurrent_steps": ARCHITECTURES[architecture]}, device=device)

    def logits(self, patches: np.ndarray) -> torch.Tensor:
        """Class logits of (N, P, P, 3) uint8 patches (the network in its current train/eval mode)."""
        batch = to_device(patches, self.device)
        return self.network(batch.permute(0, 3, 1, 2).float().div_(255.0))

    def probabilities(self, image: np.ndarray, points: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """(N, classes) softmax probabilities of the nuclei at ``points`` (x, y) of ``image``.

        With ``flip_averaging`` in the config: the mean over the eight rotations and mirror images of each patch.
        """
        if len(points) == 0:
            return np.zeros((0, len(self.class_names)), np.float32)
        patches = centred_patches(image, np.asarray(points, float).reshape(-1, 2), int(self.config["patch"]))
        return self.patch_probabilities(patches, batch_size)

    def patch_probabilities(self, patches: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """(N, classes) softmax probabilities of (N, P, P, 3) uint8 patches (averaged over the eight
        orientations with ``flip_averaging``)."""
        views = dihedral_views(patches) if self.config.get("flip_averaging") else [patches]
        with self.inferring():
            return np.mean([np.concatenate([torch.softmax(self.logits(view[i:i + batch_size]), 1).float().cpu().numpy()
                                            for i in range(0, len(view), batch_size)]) for view in views], axis=0)

    def classify(self, image: np.ndarray, nuclei: Nuclei) -> Nuclei:
        """``nuclei`` of ``image`` with their most probable class and its probability as a measurement."""
        probabilities = self.probabilities(image, nuclei.centroids)
        classes = probabilities.argmax(axis=1) if len(nuclei) else np.zeros(0, int)
        measurements = {**nuclei.measurements, PROBABILITY: probabilities.max(axis=1) if len(nuclei) else np.zeros(0)}
        return dataclasses.replace(nuclei, classes=classes, class_names=self.class_names, measurements=measurements)

    def parameters_record(self) -> dict[str, Any]:
        """What the outputs record about this classifier."""
        return {"classifier": self.name, "classifier_weights_version": self.weights_version}


def load_classifier(architecture: str, weights: str | Path | None = None, device: str = "cpu") -> NucleusClassifier:
    """The shipped (or given) weights of a classifier architecture."""
    return NucleusClassifier.from_weights(weights or DEFAULT_WEIGHTS[architecture], device)
