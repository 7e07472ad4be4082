"""FFT correlation: the same valid cross-correlation as F.conv2d, for square kernels, strips and batches."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nuclei_core.models.fft_correlation import Correlator, fft_correlate


@pytest.mark.parametrize("kernel", [(21, 21), (1, 21), (21, 1), (3, 5), (1, 1)])
def test_fft_correlation_equals_direct_convolution(kernel):
    generator = torch.Generator().manual_seed(sum(kernel))
    x = torch.randn(2, 6, 40, 37, generator=generator, dtype=torch.float64)
    weight = torch.randn(4, 6, *kernel, generator=generator, dtype=torch.float64)
    result = fft_correlate(x, weight)
    expected = F.conv2d(x, weight)
    assert result.shape == expected.shape
    assert torch.allclose(result, expected, atol=1e-10)


def test_correlator_keeps_one_spectrum_per_key_and_input_size():
    generator = torch.Generator().manual_seed(1)
    weight = torch.randn(3, 2, 9, 9, generator=generator, dtype=torch.float64)
    small = torch.randn(1, 2, 30, 30, generator=generator, dtype=torch.float64)
    large = torch.randn(1, 2, 44, 31, generator=generator, dtype=torch.float64)
    correlator = Correlator()
    for x in (small, large, small):
        assert torch.allclose(correlator(x, weight, key="a"), F.conv2d(x, weight), atol=1e-10)
    assert len(correlator._spectra) == 2  # the second small input reused the first one's spectrum
    # a kernel of a few positions runs as a plain convolution and is not cached
    tiny = torch.randn(3, 2, 1, 3, generator=generator, dtype=torch.float64)
    assert torch.allclose(correlator(small, tiny, key="b"), F.conv2d(small, tiny))
    assert len(correlator._spectra) == 2
