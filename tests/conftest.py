"""Shared test fixtures: paths to the real data beside the repository, and small synthetic slides."""

import itertools
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# CI clones the repository with shared/ beside it: <parent>/main and <parent>/shared/data.
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data():
    """The shared data folder; tests that need it are skipped when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def sample_svs(shared_data):
    """CMU-1-Small-Region.svs: Aperio H&E, 2220 x 2967, AppMag 20."""
    return shared_data / "wsi" / "CMU-1-Small-Region.svs"


@pytest.fixture
def tmp_png_slide(tmp_path):
    """Factory: ``tmp_png_slide(rgb_array)`` writes an (H, W, 3) uint8 array as a PNG and returns its path.

    Every call gets a new file name, because large_image caches open sources by path.
    """
    counter = itertools.count()

    def write(array, name=None):
        array = np.asarray(array, dtype=np.uint8)
        assert array.ndim == 3 and array.shape[2] == 3, "expected an (H, W, 3) RGB array"
        path = tmp_path / (name or f"slide{next(counter)}.png")
        Image.fromarray(array).save(path)
        return path

    return write


@pytest.fixture(scope="session")
def crchisto(shared_data):
    """CRCHisto: images/, detection/ (x,y CSVs) and splits.csv."""
    return shared_data / "crchisto"
