"""Slide: opening real and synthetic images, magnification, exact-size reads, and clean input errors."""

import numpy as np
import pytest

from nuclei_core.engine.slide import Slide
from nuclei_core.errors import InputError


@pytest.fixture
def ndpi(shared_data):
    return shared_data / "wsi" / "test3-DAPI-2-387.ndpi"


def test_svs_opens_with_its_magnification_and_size(sample_svs):
    slide = Slide(sample_svs)
    assert slide.base_magnification == 20.0
    assert (slide.width, slide.height) == (2220, 2967)


@pytest.mark.parametrize("scale, expected_hw", [(1.0, (150, 300)), (0.5, (75, 150))])
def test_svs_read_is_rgb_uint8_of_the_requested_size(sample_svs, scale, expected_hw):
    array = Slide(sample_svs).read(1000, 1400, 300, 150, scale)  # a box over tissue
    assert array.dtype == np.uint8
    assert array.shape == (*expected_hw, 3)
    # H&E content, not a blank buffer: the image is not one flat colour.
    assert array.std() > 20


def test_svs_half_scale_read_shows_the_same_box(sample_svs):
    slide = Slide(sample_svs)
    full = slide.read(1000, 1400, 300, 150, 1.0).astype(np.float64)
    half = slide.read(1000, 1400, 300, 150, 0.5).astype(np.float64)
    # 2x2 block means of the full-resolution read ~ the half-scale read
    pooled = full.reshape(75, 2, 150, 2, 3).mean(axis=(1, 3))
    assert np.abs(pooled - half).mean() < 6


def test_svs_read_rounds_odd_sizes_at_half_scale(sample_svs):
    # 301 x 151 base px at 0.5 -> round(150.5) = 150, round(75.5) = 76 (Python rounding)
    array = Slide(sample_svs).read(0, 0, 301, 151, 0.5)
    assert array.shape == (76, 150, 3)


def test_ndpi_opens_at_40x_and_reads_rgb(ndpi):
    slide = Slide(ndpi)
    assert slide.base_magnification == 40.0
    assert (slide.width, slide.height) == (3968, 4864)
    array = slide.read(1000, 1000, 200, 100, 1.0)
    assert array.shape == (100, 200, 3) and array.dtype == np.uint8
    # DAPI fluorescence: the blue channel carries the signal.
    means = array.reshape(-1, 3).mean(axis=0)
    assert means[2] > means[0] and means[2] > means[1]


def test_png_without_magnification_needs_input_mag(tmp_png_slide):
    path = tmp_png_slide(np.full((50, 60, 3), 200, np.uint8))
    with pytest.raises(InputError, match="input_mag"):
        Slide(path)
    slide = Slide(path, input_mag=20)
    assert slide.base_magnification == 20.0
    assert (slide.width, slide.height) == (60, 50)


def test_png_read_at_scale_1_returns_the_exact_pixels(tmp_png_slide):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(40, 70, 3), dtype=np.uint8)
    slide = Slide(tmp_png_slide(image), input_mag=20)
    np.testing.assert_array_equal(slide.read(10, 5, 30, 20, 1.0), image[5:25, 10:40])


def test_png_read_at_half_scale_keeps_flat_colours(tmp_png_slide):
    image = np.zeros((40, 80, 3), np.uint8)
    image[:, :40] = (200, 100, 160)
    image[:, 40:] = (240, 240, 238)
    array = Slide(tmp_png_slide(image), input_mag=20).read(0, 0, 80, 40, 0.5)
    assert array.shape == (20, 40, 3)
    # away from the seam (columns 19..20 at half scale) the colours are unchanged
    np.testing.assert_allclose(array[:, :18].reshape(-1, 3).mean(0), (200, 100, 160), atol=1)
    np.testing.assert_allclose(array[:, 22:].reshape(-1, 3).mean(0), (240, 240, 238), atol=1)


def test_missing_path_raises_input_error(tmp_path):
    missing = tmp_path / "no-such-slide.svs"
    with pytest.raises(InputError, match="no-such-slide.svs"):
        Slide(missing)


def test_directory_raises_input_error(tmp_path):
    with pytest.raises(InputError, match=tmp_path.name):
        Slide(tmp_path)


def test_text_file_raises_input_error(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("this is not an image\n")
    with pytest.raises(InputError, match="notes.txt"):
        Slide(path)


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")  # Pillow probing the truncated TIFF
def test_truncated_svs_raises_input_error(sample_svs, tmp_path):
    path = tmp_path / "truncated.svs"
    path.write_bytes(sample_svs.read_bytes()[:200_000])
    # pytest.raises(InputError) fails the test if any other exception type escapes
    with pytest.raises(InputError, match="truncated.svs"):
        Slide(path)


@pytest.mark.parametrize("max_side", [256, 1000])
def test_svs_thumbnail_respects_max_side(sample_svs, max_side):
    slide = Slide(sample_svs)
    thumbnail, scale = slide.thumbnail(max_side)
    assert max(thumbnail.shape[:2]) == max_side  # the longer side (height 2967) hits the limit
    assert scale == pytest.approx(max_side / 2967)
    assert thumbnail.shape == (max_side, round(2220 * scale), 3)


def test_thumbnail_never_upsamples(tmp_png_slide):
    slide = Slide(tmp_png_slide(np.full((30, 50, 3), 255, np.uint8)), input_mag=20)
    thumbnail, scale = slide.thumbnail(2048)
    assert scale == 1.0
    assert thumbnail.shape == (30, 50, 3)
