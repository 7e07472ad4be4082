"""Effective receptive field of each shipped segmentation network (Luo et al. 2016): how far from a nucleus's
centre lie the input pixels that move the network's nucleus logit there.

For nuclei of MoNuSeg's held-out training tiles (validation, 40x, the scale every network here was trained at),
a window around each nucleus's centre goes through the network as its CLI prepares a tile, and the gradient of
the centre pixel's nucleus logit with respect to the input is taken. The radius holding 50 % / 90 % / 99 % of the
gradient's absolute mass, averaged over the nuclei, is set beside the nuclei's own radius (of a circle of their
area): a network whose 90 % radius is under the nucleus radius decides a centre pixel without seeing the
nucleus's border. Extra weights files (``--weights``, e.g. a candidate) are measured beside the shipped ones, and
MM-GAT's wirings untrained (three initialisations each), which shows what a wiring reaches before training.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.report import table, write_result  # noqa: E402
from nuclei_core.data.instance_sets import InstanceAnnotatedImage, load_instance_set  # noqa: E402
from nuclei_core.data.public_sets import SHARED_DATA  # noqa: E402
from nuclei_core.models.base import NucleusModel, load_checkpoint  # noqa: E402
from nuclei_core.models.hovernet import DEFAULT_WEIGHTS as HOVERNET_WEIGHTS, HoVerNet  # noqa: E402
from nuclei_core.models.nucleus_classifier import centred_patches  # noqa: E402
from nuclei_core.models.segmenter import (DEFAULT_WEIGHTS as SEGMENTER_WEIGHTS, GRAPH_ATTENTION,  # noqa: E402
                                         NucleusSegmenter, default_config)

WINDOW = 192  # px around each centre: a multiple of every network's size multiple (16)
NUCLEI_PER_IMAGE = 16
MASS_SHARES = (0.5, 0.9, 0.99)
UNTRAINED_WIRINGS = {"flat": {"wiring": "flat", "readout": "full-resolution"},  # the first weights'
                     "typed": {"wiring": "typed", "readout": "full-resolution"},
                     "typed + reconstruction": {"wiring": "typed", "readout": "reconstruction"}}  # the paper's
UNTRAINED_SEEDS = (0, 1, 2)


def load_model(path: Path) -> NucleusModel:
    """The HoVer-Net or segmenter of a weights file, by what its config names."""
    config = load_checkpoint(path)["config"]
    return (HoVerNet if "class_names" in config else NucleusSegmenter).from_weights(path, "cpu")


def nucleus_logit(model: NucleusModel, batch: torch.Tensor) -> torch.Tensor:
    """(B, H, W) logit of 'nucleus' for a preprocessed batch: HoVer-Net's two-class nuclear pixels as one logit,
    a segmenter's foreground channel."""
    raw = model.network(batch)
    return raw[:, 1] - raw[:, 0] if isinstance(model, HoVerNet) else raw[:, 0]


def centre_windows(items: list[InstanceAnnotatedImage], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(N, WINDOW, WINDOW, 3) uint8 windows centred on nuclei at least half a window from the image border
    (``NUCLEI_PER_IMAGE`` drawn per image), and those nuclei's radii (of a circle of their area)."""
    rng, half = np.random.default_rng(seed), WINDOW // 2
    windows, radii = [], []
    for item in items:
        ids = np.unique(item.labels[item.labels > 0])
        centres = np.rint(ndimage.center_of_mass(np.ones_like(item.labels), item.labels, ids)).astype(int)
        areas = ndimage.sum(np.ones_like(item.labels), item.labels, ids)
        height, width = item.labels.shape
        inside = np.flatnonzero((centres[:, 0] >= half) & (centres[:, 0] < height - half)
                                & (centres[:, 1] >= half) & (centres[:, 1] < width - half))
        chosen = rng.choice(inside, min(NUCLEI_PER_IMAGE, inside.size), replace=False)
        windows.append(centred_patches(item.image, centres[chosen, ::-1], WINDOW))
        radii.append(np.sqrt(areas[chosen] / np.pi))
    return np.concatenate(windows), np.concatenate(radii)


def mass_radii(model: NucleusModel, windows: np.ndarray) -> np.ndarray:
    """(N, len(MASS_SHARES)): for each window, the radius around its centre holding each share of the absolute
    input gradient of the centre pixel's nucleus logit."""
    rows, columns = np.indices((WINDOW, WINDOW))
    distance = np.hypot(rows - WINDOW // 2, columns - WINDOW // 2).ravel()
    order = np.argsort(distance, kind="stable")
    radii = []
    for window in windows:
        batch = model.preprocess(window[None]).requires_grad_(True)
        nucleus_logit(model, batch)[0, WINDOW // 2, WINDOW // 2].backward()
        mass = batch.grad.abs().sum(dim=1)[0].numpy().ravel()[order]
        cumulative = np.cumsum(mass) / max(mass.sum(), 1e-12)
        radii.append(distance[order][np.searchsorted(cumulative, MASS_SHARES)])
    return np.array(radii)


def radius_row(network: str, weights: str, models: list[NucleusModel], windows: np.ndarray,
               nucleus_radii: np.ndarray) -> dict:
    """The table row of one network: the mass radii over ``windows``, averaged over ``models`` (several seeds of an
    untrained network, or one trained one) and the nuclei."""
    radii = np.mean([mass_radii(model, windows) for model in models], axis=0)
    return {"network": network, "weights": weights, "nuclei": len(windows),
            **{f"radius {share:.0%} px": float(radii[:, i].mean()) for i, share in enumerate(MASS_SHARES)},
            "90 % within the nucleus": float(np.mean(radii[:, 1] <= nucleus_radii))}


def untrained_graph_network(wiring: dict[str, str], seed: int) -> NucleusSegmenter:
    """An MM-GAT of the default size with this wiring and readout, initialised with ``seed``."""
    torch.manual_seed(seed)
    return NucleusSegmenter({**default_config(GRAPH_ATTENTION), **wiring})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=SHARED_DATA, help="the shared data folder")
    parser.add_argument("--weights", type=Path, action="append", default=[],
                        help="another weights file to measure beside the shipped ones (repeatable)")
    args = parser.parse_args()
    torch.manual_seed(0)
    windows, nucleus_radii = centre_windows(load_instance_set("monuseg", "val", args.data))
    files = {**{f"HoVer-Net {name}": path for name, path in HOVERNET_WEIGHTS.items()},
             **SEGMENTER_WEIGHTS, **{path.stem: path for path in args.weights}}
    rows = [radius_row(label, path.name, [load_model(path)], windows, nucleus_radii) for label, path in files.items()]
    untrained = [radius_row(f"MM-GAT, {name} wiring", f"untrained, seeds {', '.join(map(str, UNTRAINED_SEEDS))}",
                            [untrained_graph_network(wiring, seed) for seed in UNTRAINED_SEEDS], windows, nucleus_radii)
                 for name, wiring in UNTRAINED_WIRINGS.items()]
    body = (f"## MoNuSeg validation nuclei (40x), {WINDOW} px windows around their centres\n\n"
            f"Nucleus radius (a circle of the nucleus's area): median {np.median(nucleus_radii):.1f} px, "
            f"mean {nucleus_radii.mean():.1f} px over {len(windows)} nuclei.\n\n{table(rows)}\n\n"
            "radius X %: the radius around the centre pixel holding X % of the absolute gradient of its nucleus "
            "logit with respect to the input (mean over the nuclei); 90 % within the nucleus: the share of nuclei "
            "whose 90 % radius is at most their own radius.\n\n"
            "### MM-GAT's wirings untrained (default size, mean of three initialisations)\n\n"
            "What each wiring reaches before any training: flat (one softmax over all 14 edges, levels updated at "
            "once: the first weights'), typed (one softmax per edge type, levels updated coarsest first, "
            "full-resolution positions fixed) and typed with the weighted reconstruction of every level "
            f"(the paper's).\n\n{table(untrained)}\n")
    print(write_result("receptive_field", "Effective receptive field of the segmentation networks", body,
                       {"rows": rows, "untrained": untrained,
                        "nucleus_radius_median": float(np.median(nucleus_radii))}))
    print(body)


if __name__ == "__main__":
    main()
