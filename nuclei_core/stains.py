"""Stain handling through HistomicsTK: Ruifrok colour deconvolution (how much haematoxylin each pixel holds) and
Reinhard colour normalisation of a slide's tiles to a reference."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from histomicstk.preprocessing.color_conversion import rgb_to_lab
from histomicstk.preprocessing.color_deconvolution import color_deconvolution, stain_color_map
from histomicstk.preprocessing.color_normalization import reinhard

HAEMATOXYLIN_EOSIN = np.array([stain_color_map["hematoxylin"], stain_color_map["eosin"], stain_color_map["null"]]).T


def haematoxylin_density(image: np.ndarray, stains: np.ndarray = HAEMATOXYLIN_EOSIN) -> np.ndarray:
    """(H, W) optical density of the first stain of ``stains`` (3 x 3, one stain vector per column; HistomicsTK's
    haematoxylin / eosin by default): 0 where there is none, about 1 in a dark nucleus."""
    intensity = color_deconvolution(np.asarray(image, np.uint8), stains, 255).Stains[..., 0].astype(np.float64)
    return -np.log10(np.maximum(intensity, 1.0) / 255.0)


# HistomicsTK's default Reinhard target (its nuclei-detection CLIs' reference_mu_lab / reference_std_lab).
REFERENCE_LAB_MEAN = (8.63234435, -0.11501964, 0.03868433)
REFERENCE_LAB_STD = (0.57506023, 0.10403329, 0.01364062)
BACKGROUND_BRIGHTNESS = 220  # a pixel this bright in every channel is glass, left out of the colour statistics


def stain_matrix(names: tuple[str, str, str]) -> np.ndarray:
    """3 x 3 stain matrix (one unit vector per column) of HistomicsTK stain names, e.g. hematoxylin, eosin, null."""
    unknown = [n for n in names if n not in stain_color_map]
    if unknown:
        raise ValueError(f"unknown stain {unknown[0]!r}: choose from {', '.join(sorted(stain_color_map))}")
    return np.array([stain_color_map[n] for n in names], dtype=np.float64).T


def lab_statistics(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation, in Ruderman's LAB space, of the tissue among (..., 3) uint8 RGB pixels
    (glass left out; all pixels when there is nothing else; the reference, a normalisation that changes nothing,
    when there are no pixels: a slide without tissue)."""
    flat = np.asarray(pixels, np.uint8).reshape(-1, 3)
    if not len(flat):
        return np.array(REFERENCE_LAB_MEAN), np.array(REFERENCE_LAB_STD)
    tissue = flat[(flat < BACKGROUND_BRIGHTNESS).any(axis=1)]
    lab = rgb_to_lab((tissue if len(tissue) else flat)[None])[0]
    return lab.mean(axis=0), np.maximum(lab.std(axis=0), 1e-6)


@dataclass(frozen=True)
class HaematoxylinPreparation:
    """A tile's Reinhard normalisation (the slide's LAB statistics mapped onto a reference) followed by Ruifrok
    deconvolution: (H, W, 3) uint8 RGB -> (H, W, 1) float32 haematoxylin optical density. Picklable, so Dask
    workers can prepare tiles while the model runs elsewhere."""

    source_mean: tuple[float, float, float]
    source_std: tuple[float, float, float]
    target_mean: tuple[float, float, float] = REFERENCE_LAB_MEAN
    target_std: tuple[float, float, float] = REFERENCE_LAB_STD
    stains: tuple[tuple[float, ...], ...] = tuple(map(tuple, HAEMATOXYLIN_EOSIN))

    @classmethod
    def from_pixels(cls, pixels: np.ndarray, **settings: object) -> "HaematoxylinPreparation":
        """The preparation whose source statistics are those of ``pixels`` (a sample of the slide's tissue)."""
        mean, std = lab_statistics(pixels)
        return cls(tuple(map(float, mean)), tuple(map(float, std)), **settings)  # type: ignore[arg-type]

    def __call__(self, tile: np.ndarray) -> np.ndarray:
        normalised = reinhard(np.asarray(tile, np.uint8), np.array(self.target_mean), np.array(self.target_std),
                              src_mu=np.array(self.source_mean), src_sigma=np.array(self.source_std))
        return haematoxylin_density(normalised, np.array(self.stains)).astype(np.float32)[..., None]
