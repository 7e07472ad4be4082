"""The one interface every nucleus model implements; the engine knows nothing else about models."""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

import numpy as np
import torch
from torch import nn

from ..errors import DeviceError, WeightsError
from ..nuclei import Nuclei

WEIGHTS_DIR = Path(__file__).parent / "weights"

TilePreparation = Callable[[np.ndarray], np.ndarray]  # (H, W, 3) uint8 RGB -> (H, W, C) what the model takes
PRECISIONS = ("float32", "bfloat16")  # what a network computes in: float32 reproduces the model cards' figures
AUTO_PRECISION = "auto"  # bfloat16 where it makes the network faster and the device computes it natively


def keep_rgb(tile: np.ndarray) -> np.ndarray:
    """The preparation of most models: the tile's RGB pixels as read."""
    return tile


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when present; ``cuda`` without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError("device=cuda was requested but no CUDA GPU is available (use device=cpu or auto)")
    if device != "cpu" and not device.startswith("cuda"):
        raise DeviceError(f"unknown device {device!r}: use auto, cpu or cuda")
    return torch.device(device)


def check_precision(precision: str, device: torch.device) -> None:
    """``precision`` is one of :data:`PRECISIONS` and ``device`` computes in it; else a DeviceError."""
    if precision not in PRECISIONS:
        raise DeviceError(f"unknown precision {precision!r}: use {' or '.join(PRECISIONS)}")
    native = device.type != "cuda" or torch.cuda.is_bf16_supported(including_emulation=False)
    if precision == "bfloat16" and not native:  # an older GPU would emulate it, slower than float32
        raise DeviceError("precision=bfloat16 needs a GPU that computes in bfloat16 (NVIDIA Ampere or newer): "
                          "use float32")


def computes_bfloat16_natively(device: torch.device) -> bool:
    """Whether ``device`` has bfloat16 arithmetic in hardware: an NVIDIA Ampere or newer GPU, or a CPU with
    AVX-512 BF16 or AMX (elsewhere bfloat16 is emulated, slower than float32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    capabilities = torch.cpu.get_capabilities() if hasattr(torch.cpu, "get_capabilities") else {}
    return bool(capabilities.get("avx512_bf16") or capabilities.get("amx_bf16"))


def resolve_precision(requested: str, device: torch.device, bfloat16_is_faster: bool) -> str:
    """The precision a network computes in: ``requested`` (one of :data:`PRECISIONS`, checked), or for
    :data:`AUTO_PRECISION` bfloat16 when the network runs faster in it (``bfloat16_is_faster``, measured per
    architecture) on a device that computes it natively, else float32."""
    if requested == AUTO_PRECISION:
        return "bfloat16" if bfloat16_is_faster and computes_bfloat16_natively(device) else "float32"
    check_precision(requested, device)
    return requested


def computing_in(precision: str, device: torch.device) -> AbstractContextManager:
    """The context a network runs in at a ``precision`` :func:`check_precision` accepted: autocast to bfloat16
    (weights stay float32; convolutions and matrix products in bfloat16, reductions and softmax in float32), or
    nothing for float32."""
    if precision == "bfloat16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


def to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """``array`` as a tensor on ``device``: to a GPU through pinned memory, without waiting for the copy (the next
    kernels queue behind it)."""
    tensor = torch.from_numpy(np.require(array, requirements=["C", "W"]))
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a shipped weights file: ``{"config": {...}, "state_dict": {...}}``."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"model weights not found: {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged file, some with messages of many lines
        lines = str(exc).strip().splitlines()
        reason = lines[0] if len(lines) == 1 else type(exc).__name__
        raise WeightsError(f"model weights file {path} cannot be read (damaged, or not a weights file "
                           f"saved by nuclei_core): {reason}") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint or "config" not in checkpoint:
        raise WeightsError(f"model weights file {path} lacks 'config' and 'state_dict'")
    return checkpoint


class SlideModel(Protocol):
    """What the engine needs of a model: its scale and context, and the nuclei of a batch of tiles.

    A model may also have ``given_nuclei()``: the nuclei a user gave (base px) and the file they came from, which
    must lie on the slide and whose tiles the engine analyses whatever the tissue mask says
    (engine.analysis.given_nuclei)."""

    name: str
    analysis_magnification: float
    halo: int
    class_names: tuple[str, ...]

    def tile_preparation(self, colour_sample: Callable[[], np.ndarray]) -> TilePreparation:
        """The picklable per-tile step run where tiles are read (Dask workers, or a reader thread) before
        ``predict_at``; ``colour_sample()`` gives RGB pixels of the slide's tissue for slide-wide settings."""

    def predict_at(self, tiles: np.ndarray, origins: list[tuple[int, int]], scale: float) -> list[Nuclei]:
        """Nuclei of each prepared tile (tile px); ``origins`` are the tiles' top-left corners in analysis px."""

    def parameters_record(self) -> dict[str, Any]:
        """What the outputs record about the model."""


class ReadsRGB:
    """For models that take tiles as read: the identity preparation."""

    def tile_preparation(self, colour_sample: Callable[[], np.ndarray]) -> TilePreparation:
        """No slide-wide settings and no per-tile step."""
        return keep_rgb


class TrainedModel(ABC):
    """A torch network built from a config, with its shipped weights: load, save, and where it runs."""

    name: str = "model"
    # Measured per architecture on a CPU with AVX-512 BF16 (benchmarks/results/precision.md): whether
    # precision "auto" picks bfloat16 for this network.
    bfloat16_is_faster: bool = False

    def __init__(self, config: dict[str, Any], state_dict: dict[str, torch.Tensor] | None = None,
                 device: str = "cpu", weights_version: str = "untrained") -> None:
        self.config = dict(config)
        self.device = resolve_device(device)
        self.weights_version = weights_version
        try:
            self.network = self.build_network(self.config)
        except (KeyError, TypeError, ValueError) as exc:  # a config written for another architecture
            raise WeightsError(f"weights do not fit {self.name}: their settings lack or misstate {exc}") from None
        if state_dict is not None:
            try:
                self.network.load_state_dict({k: v.float() for k, v in state_dict.items()})
            except RuntimeError as exc:
                raise WeightsError(f"weights do not fit {self.name}: {str(exc).splitlines()[0]}") from None
        self.network.to(self.device).eval()
        self.config["precision"] = resolve_precision(self.precision, self.device, self.bfloat16_is_faster)

    @property
    def precision(self) -> str:
        """What the network computes in at inference: the config's ``precision`` (float32 unless set; "auto" is
        resolved when the model is built)."""
        return self.config.get("precision", "float32")

    @contextmanager
    def inferring(self) -> Iterator[None]:
        """The context of every inference: no autograd, and the network computing in :attr:`precision`."""
        with torch.inference_mode(), computing_in(self.precision, self.device):
            yield

    @classmethod
    def from_weights(cls, path: str | Path, device: str = "cpu", **overrides: Any) -> "TrainedModel":
        """Load shipped weights; ``overrides`` replace post-processing settings stored with them."""
        checkpoint = load_checkpoint(path)
        config = {**checkpoint["config"], **{k: v for k, v in overrides.items() if v is not None}}
        return cls(config, checkpoint["state_dict"], device, checkpoint.get("version", Path(path).stem))

    def save(self, path: str | Path, version: str, half: bool = True) -> None:
        """Write the weights file (fp16 by default, CPU tensors whatever the model's device) with the config the
        model was built from (less the run-time ``precision``)."""
        state = {k: (v.half() if half and v.is_floating_point() else v).cpu()
                 for k, v in self.network.state_dict().items()}
        config = {k: v for k, v in self.config.items() if k != "precision"}  # how it ran, not what it is
        torch.save({"config": config, "state_dict": state, "version": version}, path)

    @staticmethod
    @abstractmethod
    def build_network(config: dict[str, Any]) -> nn.Module:
        """The untrained torch module for ``config``."""


class NucleusModel(ReadsRGB, TrainedModel):
    """A trained network plus its pre- and post-processing, working on tiles at its own magnification.

    Subclasses set ``analysis_magnification`` (objective power the network was trained at),
    ``halo`` (analysis px of context needed around a tile core; at least the largest nucleus)
    and ``class_names``, and implement ``build_network``, ``infer`` and ``postprocess``.
    """

    analysis_magnification: float = 20.0
    halo: int = 32
    class_names: tuple[str, ...] = ("nucleus",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        window = self.config.get("inference_window") or 0
        if window and window <= 2 * self.halo:
            raise WeightsError(f"inference_window {window} px of these weights leaves no core inside "
                               f"{self.name}'s {self.halo} px margins: give more than {2 * self.halo}, or 0")

    @property
    def size_multiple(self) -> int:
        """Tile sides are padded to a multiple of this before inference."""
        return 1

    def preprocess(self, tiles: np.ndarray) -> torch.Tensor:
        """(B, H, W, 3) uint8 RGB -> (B, 3, H, W) float tensor on the model's device."""
        batch = to_device(tiles, self.device)
        return batch.permute(0, 3, 1, 2).float().div_(255.0)

    @abstractmethod
    def infer(self, batch: torch.Tensor) -> np.ndarray:
        """Network outputs for a preprocessed batch, as numpy (B, C, H, W)."""

    @abstractmethod
    def postprocess(self, output: np.ndarray) -> Nuclei:
        """Nuclei of one tile from its (C, H, W) output, in tile pixel coordinates."""

    def postprocess_tile(self, output: np.ndarray, tile: np.ndarray) -> Nuclei:
        """Nuclei of one tile from its output; models that also measure the tile's (H, W, 3) pixels use ``tile``."""
        return self.postprocess(output)

    def postprocessor(self) -> "NucleusModel | None":
        """This model without its network, for :meth:`postprocess_tile` in a post-processing process (the engine
        sends it there with each tile's output), or None where the post-processing needs the network."""
        stripped = copy.copy(self)
        stripped.network = None
        return stripped

    def parameters_record(self) -> dict[str, Any]:
        """What the outputs record about this model (name, weights version, settings)."""
        return {"model": self.name, "weights_version": self.weights_version,
                "analysis_magnification": self.analysis_magnification, **self.config}

    def flip_averaged(self, forward: Callable[[torch.Tensor], torch.Tensor], batch: torch.Tensor) -> np.ndarray:
        """``forward(batch)`` as numpy; with ``flip_averaging`` in the config, the mean over the batch's four
        mirror images (each output mirrored back)."""
        flips = ((), (3,), (2,), (2, 3)) if self.config.get("flip_averaging") else ((),)
        total = sum(self.mirrored_back(forward(batch.flip(dims)), dims) if dims else forward(batch)
                    for dims in flips)
        return (total / len(flips)).float().cpu().numpy()

    def mirrored_back(self, output: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
        """The output of a batch mirrored on ``dims``, mirrored back; models whose maps hold directions
        also turn those."""
        return output.flip(dims)

    def predict_outputs(self, tiles: np.ndarray) -> np.ndarray:
        """Raw network outputs (B, C, H, W) for a batch of (H, W, 3) uint8 tiles; with ``inference_window`` in the
        config, tiles larger than it are run as windows of that side (see :func:`windowed_outputs`)."""
        window = self.config.get("inference_window")
        if window and max(tiles.shape[1:3]) > window:
            return windowed_outputs(self.padded_outputs, tiles, int(window), self.halo)
        return self.padded_outputs(tiles)

    def padded_outputs(self, tiles: np.ndarray) -> np.ndarray:
        """Raw network outputs of the whole tiles, their sides padded to ``size_multiple`` and cropped back."""
        height, width = tiles.shape[1:3]
        multiple = self.size_multiple
        pad_h, pad_w = -height % multiple, -width % multiple
        if pad_h or pad_w:
            tiles = np.pad(tiles, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="reflect")
        with self.inferring():
            return self.infer(self.preprocess(tiles))[:, :, :height, :width]

    def predict(self, tiles: np.ndarray) -> list[Nuclei]:
        """Nuclei of each (H, W, 3) tile of a batch, in tile pixel coordinates."""
        return [self.postprocess_tile(output, tile) for output, tile in zip(self.predict_outputs(tiles), tiles)]

    def predict_at(self, tiles: np.ndarray, origins: list[tuple[int, int]], scale: float) -> list[Nuclei]:
        """The engine's call: a detector needs only the pixels, not where the tiles lie."""
        return self.predict(tiles)


def windowed_outputs(outputs: Callable[[np.ndarray], np.ndarray], tiles: np.ndarray, window: int, margin: int,
                     group: int = 16) -> np.ndarray:
    """``outputs`` of (B, H, W, 3) tiles computed on ``window``-px windows whose cores (``window - 2 * margin``
    px) tile the image, each core's maps kept and the margins dropped; tile borders are mirrored.

    For networks whose features depend on the input's extent (global pooling in squeeze-excitation or
    coordinate attention), this runs them on inputs of the size they were trained on, as HoVer-Net's own
    patch-wise inference does. Windows are batched ``group`` at a time.
    """
    core = window - 2 * margin
    if core < 1:
        raise ValueError(f"inference window {window} px leaves no core inside its {margin} px margins")
    batch, height, width = tiles.shape[:3]
    rows, columns = -(-height // core), -(-width // core)
    padded = np.pad(tiles, ((0, 0), (margin, rows * core - height + margin),
                            (margin, columns * core - width + margin), (0, 0)), mode="reflect")
    corners = [(b, r * core, c * core) for b in range(batch) for r in range(rows) for c in range(columns)]
    stitched = None
    for start in range(0, len(corners), group):
        chosen = corners[start:start + group]
        maps = outputs(np.stack([padded[b, y:y + window, x:x + window] for b, y, x in chosen]))
        if stitched is None:
            stitched = np.zeros((batch, maps.shape[1], rows * core, columns * core), maps.dtype)
        for (b, y, x), piece in zip(chosen, maps):
            stitched[b, :, y:y + core, x:x + core] = piece[:, margin:margin + core, margin:margin + core]
    return stitched[:, :, :height, :width]
