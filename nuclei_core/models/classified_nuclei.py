"""Whole-slide nucleus classification as the engine runs it: nuclei found by a detector, or given, then classified.

Both models here look like any NucleusModel to the engine (tiles in, nuclei of each tile out); the
classifier sees the same 20x tile the nuclei lie in, so classification costs no extra slide reads.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, WeightsError
from ..nuclei import Nuclei
from ..outputs.readers import read_nuclei
from .base import ReadsRGB
from .nucleus_classifier import NucleusClassifier
from .udnet import DEFAULT_WEIGHTS as UDNET_WEIGHTS
from .udnet import UDNet


class ClassifyingModel(ReadsRGB, ABC):
    """A classifier applied to nuclei of each tile; subclasses say where the nuclei come from."""

    halo_margin = 2  # px beyond half a patch, so a nucleus at the core's edge has its whole patch read

    def __init__(self, classifier: NucleusClassifier) -> None:
        self.classifier = classifier
        self.analysis_magnification = classifier.analysis_magnification
        self.class_names = classifier.class_names

    @property
    def halo(self) -> int:
        return int(self.classifier.config["patch"]) // 2 + self.halo_margin

    @abstractmethod
    def nuclei_of_tiles(self, tiles: np.ndarray, origins: list[tuple[int, int]], scale: float) -> list[Nuclei]:
        """The unclassified nuclei of each tile, in tile pixel coordinates."""

    def predict_at(self, tiles: np.ndarray, origins: list[tuple[int, int]], scale: float) -> list[Nuclei]:
        """Classified nuclei of each tile read at ``origins`` (analysis px) of a slide seen at ``scale``."""
        return [self.classifier.classify(tile, nuclei)
                for tile, nuclei in zip(tiles, self.nuclei_of_tiles(tiles, origins, scale))]

    def parameters_record(self) -> dict[str, Any]:
        """What the outputs record: the classifier, plus where the nuclei came from."""
        return {"model": self.name, "analysis_magnification": self.analysis_magnification,
                **self.classifier.parameters_record()}


class DetectAndClassify(ClassifyingModel):
    """UD-Net finds the nuclei of each tile; the classifier labels them."""

    def __init__(self, classifier: NucleusClassifier, detector: UDNet) -> None:
        super().__init__(classifier)
        if detector.analysis_magnification != self.analysis_magnification:
            raise WeightsError(f"the detector works at {detector.analysis_magnification}x but the classifier "
                               f"at {self.analysis_magnification}x")
        self.detector = detector
        self.name = f"{detector.name} + {classifier.name}"

    @classmethod
    def from_weights(cls, path: str | Path, device: str = "cpu", detector_weights: str = "",
                     flip_averaging: bool = False, precision: str = "float32",
                     **detector_overrides: Any) -> "DetectAndClassify":
        """Classifier weights ``path`` (and whether it averages over flips); the detector's weights
        (default: shipped UD-Net) and settings; both networks compute in ``precision``."""
        classifier = NucleusClassifier.from_weights(path, device, flip_averaging=flip_averaging, precision=precision)
        detector = UDNet.from_weights(detector_weights or UDNET_WEIGHTS, device, precision=precision,
                                      **detector_overrides)
        return cls(classifier, detector)

    @property
    def halo(self) -> int:
        return max(super().halo, self.detector.halo)

    def nuclei_of_tiles(self, tiles: np.ndarray, origins: list[tuple[int, int]], scale: float) -> list[Nuclei]:
        return self.detector.predict(tiles)

    def parameters_record(self) -> dict[str, Any]:
        detector = self.detector.parameters_record()
        return {**{f"detector_{k}": v for k, v in detector.items()}, **super().parameters_record()}


class ClassifyGiven(ClassifyingModel):
    """Classifies nuclei read from an existing annotation (DSA annotation JSON or QuPath GeoJSON, base px)."""

    def __init__(self, classifier: NucleusClassifier, given: Nuclei, source: str) -> None:
        super().__init__(classifier)
        if len(given) == 0:
            raise InputError(f"the nuclei annotation {Path(source).name} holds no nuclei")
        self.given, self.source = given, source
        self.name = classifier.name

    @classmethod
    def from_weights(cls, path: str | Path, device: str = "cpu", nuclei_file: str = "",
                     flip_averaging: bool = False, precision: str = "float32") -> "ClassifyGiven":
        """Classifier weights ``path`` (whether it averages over flips, what it computes in) and the annotation
        file whose nuclei are classified."""
        classifier = NucleusClassifier.from_weights(path, device, flip_averaging=flip_averaging, precision=precision)
        return cls(classifier, read_nuclei(nuclei_file), nuclei_file)

    def given_nuclei(self) -> tuple[Nuclei, str]:
        """The given nuclei (base px) and their file: the engine checks that they lie on the slide and analyses
        their tiles even off the tissue mask."""
        return self.given, self.source

    def nuclei_of_tiles(self, tiles: np.ndarray, origins: list[tuple[int, int]], scale: float) -> list[Nuclei]:
        centres = (self.given.centroids + 0.5) * scale - 0.5  # base px -> analysis px (pixel centres)
        found = []
        for tile, (left, top) in zip(tiles, origins):
            inside = ((centres[:, 0] >= left - 0.5) & (centres[:, 0] < left + tile.shape[1] - 0.5)
                      & (centres[:, 1] >= top - 0.5) & (centres[:, 1] < top + tile.shape[0] - 0.5))
            chosen = self.given.select(inside)
            chosen.centroids = centres[inside] - (left, top)
            chosen.contours = None if chosen.contours is None else [
                (c + 0.5) * scale - 0.5 - (left, top) for c in chosen.contours]
            found.append(chosen)
        return found

    def parameters_record(self) -> dict[str, Any]:
        return {**super().parameters_record(), "nuclei_source": Path(self.source).name}
