"""The Nuclei table: what every model returns and every output writer consumes."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Nuclei:
    """Nuclei of one image or slide.

    ``centroids`` is (N, 2) as (x, y); ``contours`` (optional) holds one (K, 2) x,y polygon per nucleus;
    ``classes`` (optional) indexes ``class_names``; ``measurements`` maps a name to an (N,) array.
    """

    centroids: np.ndarray
    scores: np.ndarray
    contours: list[np.ndarray] | None = None
    classes: np.ndarray | None = None
    class_names: tuple[str, ...] = ("nucleus",)
    measurements: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.centroids = np.asarray(self.centroids, dtype=np.float64).reshape(-1, 2)
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        if self.classes is not None:
            self.classes = np.asarray(self.classes, dtype=np.int32).reshape(-1)

    def __len__(self) -> int:
        return len(self.centroids)

    @classmethod
    def empty(cls, class_names: tuple[str, ...] = ("nucleus",)) -> "Nuclei":
        """A table with no nuclei."""
        return cls(np.zeros((0, 2)), np.zeros(0), class_names=class_names)

    def select(self, keep: np.ndarray) -> "Nuclei":
        """The rows where the boolean mask ``keep`` is true."""
        index = np.flatnonzero(keep)
        return Nuclei(
            centroids=self.centroids[index],
            scores=self.scores[index],
            contours=None if self.contours is None else [self.contours[i] for i in index],
            classes=None if self.classes is None else self.classes[index],
            class_names=self.class_names,
            measurements={k: v[index] for k, v in self.measurements.items()},
        )

    def transformed(self, scale: float, offset: tuple[float, float]) -> "Nuclei":
        """Coordinates mapped by ``p * scale + offset`` (e.g. tile analysis px -> slide base px)."""
        shift = np.asarray(offset, dtype=np.float64)
        return Nuclei(
            centroids=self.centroids * scale + shift,
            scores=self.scores,
            contours=None if self.contours is None else [c * scale + shift for c in self.contours],
            classes=self.classes,
            class_names=self.class_names,
            measurements=dict(self.measurements),
        )

    def class_labels(self) -> list[str]:
        """The class name of every nucleus."""
        if self.classes is None:
            return [self.class_names[0]] * len(self)
        return [self.class_names[i] for i in self.classes]

    @staticmethod
    def concatenate(parts: list["Nuclei"], class_names: tuple[str, ...] = ("nucleus",)) -> "Nuclei":
        """All rows of ``parts`` in one table (``class_names`` is used when ``parts`` is empty)."""
        parts = [p for p in parts if len(p)] or [Nuclei.empty(parts[0].class_names if parts else class_names)]
        first = parts[0]
        return Nuclei(
            centroids=np.concatenate([p.centroids for p in parts]),
            scores=np.concatenate([p.scores for p in parts]),
            contours=None if first.contours is None else [c for p in parts for c in p.contours],
            classes=None if first.classes is None else np.concatenate([p.classes for p in parts]),
            class_names=first.class_names,
            measurements={k: np.concatenate([p.measurements[k] for p in parts]) for k in first.measurements},
        )
