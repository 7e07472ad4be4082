"""Valid 2D cross-correlation (what ``F.conv2d`` computes) through the FFT, for large kernels.

A direct convolution costs ``kh * kw * C * O`` multiply-adds per output pixel; through the FFT the
kernel size drops out and the cost is a ``C x O`` product per frequency plus the transforms. The
result is the same sum computed in another order: equal to ``F.conv2d`` up to rounding.
"""

from __future__ import annotations

from typing import Hashable

import torch
import torch.nn.functional as F

FFT_MIN_TAPS = 16  # kernels with fewer positions run as direct convolutions


def _axes(weight: torch.Tensor) -> list[int]:
    """The spatial dimensions (2, 3) on which the kernel is longer than one pixel: the only ones transformed."""
    return [dim for dim in (2, 3) if weight.shape[dim] > 1]


def _untransformed(axes: list[int]) -> list[int]:
    """The spatial dimension left in the signal domain (none for a 2D kernel)."""
    return [dim for dim in (2, 3) if dim not in axes]


def _order(axes: list[int]) -> list[int]:
    """Dimension order that puts the frequencies first, then the batch and the untransformed axis, then channels."""
    return [*axes, 0, *_untransformed(axes), 1]


def kernel_spectrum(weight: torch.Tensor, input_size: tuple[int, int]) -> torch.Tensor:
    """(frequencies, C, O) conjugate spectrum of ``weight`` (O, C, kh, kw) for inputs of ``input_size``."""
    axes = _axes(weight)
    spectrum = torch.conj_physical(torch.fft.rfftn(weight, s=[input_size[dim - 2] for dim in axes], dim=axes))
    # the kernel's untransformed axis has length 1
    return spectrum.permute(*axes, 1, *_untransformed(axes), 0).reshape(-1, weight.shape[1], weight.shape[0]).contiguous()


def fft_correlate(x: torch.Tensor, weight: torch.Tensor, spectrum: torch.Tensor | None = None) -> torch.Tensor:
    """``F.conv2d(x, weight)`` (no padding, stride 1) through real FFTs over the kernel's long axes.

    x: (B, C, H, W); weight: (O, C, kh, kw); ``spectrum``: :func:`kernel_spectrum` of the weight for
    this input size, when it has been computed already. A 1 x k strip costs one 1D transform per row.
    """
    height, width = x.shape[-2:]
    kh, kw = weight.shape[-2:]
    axes = _axes(weight)
    if not axes:  # a 1 x 1 kernel: nothing to transform
        return F.conv2d(x, weight)
    if spectrum is None:
        spectrum = kernel_spectrum(weight, (height, width))
    signal = torch.fft.rfftn(x, dim=axes)
    order = _order(axes)
    moved = signal.permute(*order)
    # circular correlation: sum_m x[n + m] w[m] <-> X * conj(W); no wrap-around for the valid outputs
    product = torch.bmm(moved.reshape(spectrum.shape[0], -1, x.shape[1]).contiguous(), spectrum)
    product = product.reshape(*moved.shape[:-1], weight.shape[0]).permute(*(order.index(d) for d in range(4)))
    full = torch.fft.irfftn(product, s=[x.shape[dim] for dim in axes], dim=axes)
    return full[..., :height - kh + 1, :width - kw + 1]


class Correlator:
    """``F.conv2d(x, weight)`` for kernels used again and again: large ones through the FFT, their spectra kept.

    Keep one for as long as the weights do not change (one dense pass over an image, say): spectra are
    cached by the caller's key and the input size.
    """

    def __init__(self) -> None:
        self._spectra: dict[tuple, torch.Tensor] = {}

    def __call__(self, x: torch.Tensor, weight: torch.Tensor, key: Hashable) -> torch.Tensor:
        if weight.shape[-2] * weight.shape[-1] < FFT_MIN_TAPS:
            return F.conv2d(x, weight)
        size = (x.shape[-2], x.shape[-1])
        cached = (key, size, x.dtype)
        if cached not in self._spectra:
            self._spectra[cached] = kernel_spectrum(weight, size)
        return fft_correlate(x, weight, self._spectra[cached])
