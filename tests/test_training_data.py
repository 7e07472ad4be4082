"""Training data: the public datasets at 20x with their fixed splits, and the augmentations."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from nuclei_core.data.augment import colour_jitter, hsv_jitter, random_dihedral, rescaled_crop, stain_jitter
from nuclei_core.data.public_sets import TILE_SETS, centroids, held_out_names, load_point_set, rescale, tile_set_names
from nuclei_core.errors import InputError


def test_rescale_moves_pixel_centres_with_the_image():
    image = np.zeros((8, 8, 3), np.uint8)
    image[2:4, 4:6] = 200  # a 2x2 block whose centre is (x=4.5, y=2.5)
    small, points = rescale(image, np.array([[4.5, 2.5], [0.0, 0.0]]), 0.5)
    assert small.shape == (4, 4, 3)
    assert tuple(np.argwhere(small[..., 0] == 200)[0]) == (1, 2)  # the block is one pixel (row 1, col 2)
    np.testing.assert_allclose(points, [[2.0, 1.0], [-0.25, -0.25]])


def test_held_out_names_do_not_depend_on_order():
    names = [f"n{i}" for i in range(20)]
    assert held_out_names(names, 4) == held_out_names(names[::-1], 4)
    assert len(held_out_names(names, 4)) == 4


@pytest.mark.parametrize("name", sorted(TILE_SETS))
def test_tile_set_splits_are_disjoint_and_test_is_the_official_one(shared_data, name):
    train, val, test = (set(tile_set_names(TILE_SETS[name], shared_data, s)) for s in ("train", "val", "test"))
    assert len(val) == TILE_SETS[name].validation_images and not train & val and not (train | val) & test
    official_test = centroids(shared_data / TILE_SETS[name].folder / "test" / "instances.csv")
    assert test == set(official_test)


def test_monuseg_validation_images_are_halved_with_their_centroids(shared_data):
    items = load_point_set("monuseg", "val", shared_data)
    assert len(items) == 4
    raw = centroids(shared_data / "monuseg" / "train" / "instances.csv")
    for item in items:
        assert item.image.shape == (500, 500, 3) and item.image.dtype == np.uint8
        np.testing.assert_allclose(item.points, (raw[item.name] + 0.5) / 2 - 0.5)
        assert item.points.min() >= -0.5 and item.points.max() <= 499.5
    original = np.asarray(Image.open(shared_data / "monuseg/train/images" / f"{items[0].name}.jpg").convert("RGB"))
    block_mean = original[:2, :2].reshape(-1, 3).mean(axis=0)
    np.testing.assert_allclose(items[0].image[0, 0], block_mean, atol=1)


def test_crchisto_keeps_its_split_file(shared_data):
    assert [len(load_point_set("crchisto", s, shared_data)) for s in ("train", "val", "test")] == [70, 10, 20]


@pytest.mark.parametrize("name,split", [("kumar", "train"), ("monuseg", "validation")])
def test_unknown_dataset_or_split_is_refused(name, split):
    with pytest.raises(InputError, match="unknown"):
        load_point_set(name, split)


def test_stain_jitter_is_exact_when_neutral_and_changes_colour_otherwise():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    np.testing.assert_array_equal(stain_jitter(rng, image, 0.0), image)
    changed = stain_jitter(rng, image, 0.1)
    assert changed.dtype == np.uint8 and changed.shape == image.shape
    assert 0 < np.abs(changed.astype(int) - image).mean() < 40


def test_dihedral_moves_image_and_target_together():
    rng = np.random.default_rng(1)
    image = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    target = image[..., 0].astype(np.float32)
    for _ in range(8):
        moved_image, moved_target = random_dihedral(rng, image, target)
        np.testing.assert_array_equal(moved_image[..., 0], moved_target)
    assert colour_jitter(rng, image).shape == image.shape


def test_hsv_jitter_is_exact_when_neutral_and_keeps_grey_grey():
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    np.testing.assert_array_equal(hsv_jitter(rng, image, 0, 0, 0), image)
    changed = hsv_jitter(rng, image, 0.02, 0.2, 0.2)
    assert changed.shape == image.shape and 0 < np.abs(changed.astype(int) - image).mean() < 40
    grey = np.full((4, 4, 3), 120, np.uint8)
    shifted = hsv_jitter(rng, grey, 0.05, 0.2, 0.2)
    assert np.all(shifted[..., 0] == shifted[..., 1]) and np.all(shifted[..., 1] == shifted[..., 2])


def test_rescaled_crop_resizes_image_and_labels_together():
    rng = np.random.default_rng(3)
    labels = np.zeros((100, 100), np.int32)
    labels[40:60, 40:60] = 7  # a 20 px square nucleus, and its class map
    types = (labels > 0).astype(np.int32) * 2
    image = np.stack([labels.astype(np.uint8) * 30] * 3, axis=-1)
    sizes = []
    for _ in range(20):
        crop, crop_labels, crop_types = rescaled_crop(rng, 64, 0.3, image, labels, types)
        assert crop.shape == (64, 64, 3) and crop_labels.shape == crop_types.shape == (64, 64)
        assert set(np.unique(crop_labels)) <= {0, 7}, "labels are never interpolated"
        np.testing.assert_array_equal(crop_types > 0, crop_labels > 0)
        border = np.concatenate([crop_labels[0], crop_labels[-1], crop_labels[:, 0], crop_labels[:, -1]])
        if (crop_labels == 7).any() and border.max() == 0:  # the whole nucleus inside the crop
            sizes.append(int((crop_labels == 7).any(axis=0).sum()))
    assert min(sizes) < 20 < max(sizes), "the nucleus appears smaller and larger than it is"
    unscaled = rescaled_crop(np.random.default_rng(4), 64, 0.0, image, labels)
    assert unscaled[0].shape == (64, 64, 3) and set(np.unique(unscaled[1])) <= {0, 7}


def test_rescaled_crop_around_a_pixel_holds_it_even_at_the_image_edge():
    image = np.zeros((100, 120, 3), np.uint8)
    labels = np.zeros((100, 120), np.int32)
    rng = np.random.default_rng(5)
    for row, col in [(50, 60), (2, 3), (97, 118)]:
        labels[:] = 0
        labels[row, col] = 1
        for _ in range(10):
            _, crop_labels = rescaled_crop(rng, 32, 0.0, image, labels, around=(row, col))
            assert crop_labels.sum() == 1, "the pixel is inside the crop"
    labels[:] = 0
    labels[50, 60] = 1
    rows = [np.argwhere(rescaled_crop(rng, 32, 0.0, image, labels, around=(50, 60))[1])[0, 0] for _ in range(30)]
    assert 8 <= min(rows) and max(rows) <= 24 and len(set(rows)) > 3, "in the middle half, at varying places"
