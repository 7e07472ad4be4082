"""Tile plan (cores partition the slide, halos, tissue and region selection), seam ownership, tissue mask.

The synthetic slide is 1300 x 900 px of white glass with two dark-pink "tissue" blocks, read at
input_mag 20 and analysed at 20x (scale 1), with tile_size 256 and halo 32, so cores are 192 px.
"""

import numpy as np
import pytest
from shapely.geometry import box

from nuclei_core.engine.merge import keep_in_core
from nuclei_core.engine.region import parse_region
from nuclei_core.engine.slide import Slide
from nuclei_core.engine.tiling import plan_tiles
from nuclei_core.engine.tissue import tissue_mask
from nuclei_core.errors import InputError

W, H = 1300, 900
TILE, HALO, CORE = 256, 32, 192
GLASS = (240, 240, 238)
HE_PINK = (200, 100, 160)
BLOCKS = [(100, 100, 500, 400), (700, 500, 1200, 800)]  # x0, y0, x1, y1 of the tissue


def synthetic_slide_array():
    image = np.empty((H, W, 3), np.uint8)
    image[:] = GLASS
    for x0, y0, x1, y1 in BLOCKS:
        image[y0:y1, x0:x1] = HE_PINK
    return image


def tissue_truth(scale=1.0):
    truth = np.zeros((int(np.ceil(H * scale)), int(np.ceil(W * scale))), bool)
    for x0, y0, x1, y1 in BLOCKS:
        truth[int(y0 * scale):int(y1 * scale), int(x0 * scale):int(x1 * scale)] = True
    return truth


@pytest.fixture
def slide(tmp_png_slide):
    return Slide(tmp_png_slide(synthetic_slide_array()), input_mag=20)


def paint(tiles, shape):
    counter = np.zeros(shape, np.int32)
    for tile in tiles:
        x0, y0, x1, y1 = tile.core
        counter[y0:y1, x0:x1] += 1
    return counter


# ---------------------------------------------------------------------------
# plan_tiles


def test_cores_partition_the_whole_slide(slide):
    plan = plan_tiles(slide, 20, TILE, HALO, None, 0.0)
    assert plan.scale == 1.0
    # ceil(1300 / 192) = 7 columns, ceil(900 / 192) = 5 rows, all kept at min_fgnd_frac 0
    assert plan.tiles_total == 35 and len(plan.tiles) == 35
    counter = paint(plan.tiles, (H, W))
    assert counter.min() == 1 and counter.max() == 1  # no pixel missed, none owned twice
    assert max(t.core[2] for t in plan.tiles) == W and max(t.core[3] for t in plan.tiles) == H
    assert all(t.core[2] - t.core[0] <= CORE and t.core[3] - t.core[1] <= CORE for t in plan.tiles)


def test_read_box_is_the_core_plus_halo_clipped_to_the_slide(slide):
    plan = plan_tiles(slide, 20, TILE, HALO, None, 0.0)
    for tile in plan.tiles:
        x0, y0, x1, y1 = tile.core
        assert tile.read == (max(0, x0 - HALO), max(0, y0 - HALO), min(W, x1 + HALO), min(H, y1 + HALO))
    corner = next(t for t in plan.tiles if t.core[:2] == (0, 0))
    assert corner.read == (0, 0, CORE + HALO, CORE + HALO)
    interior = next(t for t in plan.tiles if t.core[:2] == (192, 192))
    assert interior.read == (160, 160, 416, 416)  # a full 256 x 256 tile
    last = next(t for t in plan.tiles if t.core[:2] == (1152, 768))
    assert last.core == (1152, 768, 1300, 900) and last.read == (1120, 736, 1300, 900)


def test_glass_tiles_are_skipped_and_tissue_tiles_kept(slide):
    everything = plan_tiles(slide, 20, TILE, HALO, None, 0.0)
    plan = plan_tiles(slide, 20, TILE, HALO, None, 0.1)
    kept = {t.core for t in plan.tiles}
    assert plan.tiles_total == 35
    truth = tissue_truth()
    glass, tissue = 0, 0
    for tile in everything.tiles:
        x0, y0, x1, y1 = tile.core
        fraction = truth[y0:y1, x0:x1].mean()
        if fraction < 0.08:  # pure glass, or a sliver of tissue below the 10 % threshold
            assert tile.core not in kept, (tile.core, fraction)
            glass += fraction == 0
        elif fraction > 0.12:
            assert tile.core in kept, (tile.core, fraction)
            tissue += 1
    assert glass >= 10 and tissue >= 10  # both kinds really occur on this slide
    # the core 0..192 x 384..576 holds 92 x 16 px of tissue (4 %): below 10 %, skipped
    assert (0, 384, 192, 576) not in kept
    # tissue area: 400 x 300 + 500 x 300 base px
    assert plan.tissue_base_pixels == pytest.approx(270_000, rel=0.01)


def test_rectangular_region_limits_the_cores_to_the_region(slide):
    region = parse_region([600, 450, 300, 200], W, H)  # x 600..900, y 450..650
    plan = plan_tiles(slide, 20, TILE, HALO, region, 0.0)
    assert len(plan.tiles) == 4  # 300 x 200 needs 2 x 2 cores of 192
    counter = paint(plan.tiles, (H, W))
    expected = np.zeros((H, W), np.int32)
    expected[450:650, 600:900] = 1
    np.testing.assert_array_equal(counter, expected)


def test_polygon_region_skips_tiles_that_miss_it(slide):
    # triangle (0,0) (1000,0) (0,700): its 1000 x 700 bounding box holds cores that miss it
    region = parse_region([0, 0, 1000, 0, 0, 700, 0, 0], W, H)
    plan = plan_tiles(slide, 20, TILE, HALO, region, 0.0)
    # the grid spans the bounding box: ceil(1000 / 192) = 6 columns, ceil(700 / 192) = 4 rows
    assert plan.tiles_total == 24
    assert 0 < len(plan.tiles) < 24
    kept = {t.core for t in plan.tiles}
    for tile in plan.tiles:
        assert box(*tile.core).intersection(region).area > 0, tile.core
    assert (0, 0, 192, 192) in kept and (960, 0, 1000, 192) in kept  # cores end at the region's bounds
    assert (768, 576, 960, 700) not in kept  # inside the bounding box, beyond the hypotenuse
    # every pixel well inside the triangle is owned by exactly one kept core
    counter = paint(plan.tiles, (H, W))
    yy, xx = np.mgrid[:H, :W]
    inside = xx / 1000 + yy / 700 < 0.98
    assert counter[inside].min() == 1 and counter.max() == 1
    assert not counter[:, 1000:].any() and not counter[700:].any()


def test_tile_too_small_for_the_halo_is_an_input_error(slide):
    with pytest.raises(InputError, match="at least 80"):
        plan_tiles(slide, 20, 79, HALO, None, 0.0)  # core 79 - 64 = 15 < 16
    assert plan_tiles(slide, 20, 80, HALO, None, 0.0).tiles[0].core == (0, 0, 16, 16)


def test_40x_input_is_analysed_at_half_scale(tmp_png_slide):
    slide = Slide(tmp_png_slide(synthetic_slide_array()), input_mag=40)
    plan = plan_tiles(slide, 20, TILE, HALO, None, 0.0)
    assert plan.scale == 0.5
    # the analysis image is 650 x 450: ceil(650 / 192) = 4 columns, ceil(450 / 192) = 3 rows
    assert len(plan.tiles) == 12
    counter = paint(plan.tiles, (450, 650))
    assert counter.min() == 1 and counter.max() == 1
    assert max(t.read[2] for t in plan.tiles) == 650 and max(t.read[3] for t in plan.tiles) == 450


def test_40x_input_tissue_selection_uses_analysis_coordinates(tmp_png_slide):
    slide = Slide(tmp_png_slide(synthetic_slide_array()), input_mag=40)
    plan = plan_tiles(slide, 20, TILE, HALO, None, 0.1)
    kept = {t.core for t in plan.tiles}
    truth = tissue_truth(0.5)
    for tile in plan_tiles(slide, 20, TILE, HALO, None, 0.0).tiles:
        x0, y0, x1, y1 = tile.core
        fraction = truth[y0:y1, x0:x1].mean()
        if fraction == 0:
            assert tile.core not in kept
        elif fraction > 0.12:
            assert tile.core in kept
    assert (0, 0, 192, 192) in kept and (576, 0, 650, 192) not in kept


# ---------------------------------------------------------------------------
# keep_in_core: seam ownership


def test_keep_in_core_assigns_every_point_to_exactly_one_core():
    # 2 x 2 cores of 10 px partition a 20 x 20 analysis image
    cores = [(0, 0, 10, 10), (10, 0, 20, 10), (0, 10, 10, 20), (10, 10, 20, 20)]
    # a 0.25 px grid over [-0.5, 19.5): includes the boundaries x, y = 9.5 (= x1 - 0.5) and -0.5
    ticks = np.arange(-0.5, 19.5, 0.25)
    assert 9.5 in ticks
    xs, ys = np.meshgrid(ticks, ticks)
    points = np.column_stack([xs.ravel(), ys.ravel()])
    owners = np.stack([keep_in_core(points, core) for core in cores])
    np.testing.assert_array_equal(owners.sum(axis=0), 1)


def test_keep_in_core_boundary_belongs_to_the_next_core():
    left, right = (0, 0, 10, 10), (10, 0, 20, 10)
    points = np.array([[9.49, 5], [9.5, 5], [-0.5, 5], [19.5, 5], [19.49, 9.49]])
    np.testing.assert_array_equal(keep_in_core(points, left), [True, False, True, False, False])
    np.testing.assert_array_equal(keep_in_core(points, right), [False, True, False, False, True])


def test_keep_in_core_with_plan_cores_covers_every_pixel_centre_once(slide):
    plan = plan_tiles(slide, 20, TILE, HALO, None, 0.0)
    # pixel centres and pixel edges (k - 0.5) along a row and a column crossing several seams
    along = np.arange(-0.5, W - 0.5, 0.5)
    down = np.arange(-0.5, H - 0.5, 0.5)
    points = np.concatenate([np.column_stack([along, np.full_like(along, 191.5)]),
                             np.column_stack([np.full_like(down, 383.5), down])])
    owners = sum(keep_in_core(points, t.core).astype(int) for t in plan.tiles)
    np.testing.assert_array_equal(owners, 1)


# ---------------------------------------------------------------------------
# tissue_mask


def test_white_image_has_no_tissue():
    assert not tissue_mask(np.full((64, 64, 3), 255, np.uint8)).any()
    assert not tissue_mask(np.full((64, 64, 3), GLASS, np.uint8)).any()


def test_black_image_has_no_tissue():
    assert not tissue_mask(np.zeros((64, 64, 3), np.uint8)).any()


def test_he_block_on_white_glass_is_found():
    image = np.full((100, 120, 3), 245, np.uint8)
    image[20:60, 30:90] = HE_PINK
    mask = tissue_mask(image)
    assert mask[25:55, 35:85].all()  # the block's inside
    assert not mask[:15].any() and not mask[65:].any() and not mask[:, :25].any() and not mask[:, 95:].any()
    assert abs(int(mask.sum()) - 40 * 60) < 0.05 * 40 * 60


@pytest.mark.parametrize("blob", [(20, 30, 220), (0, 0, 120)], ids=["blue-white", "pure blue"])
def test_bright_blobs_on_a_dark_fluorescence_image_are_found(blob):
    image = np.full((120, 120, 3), (2, 2, 10), np.uint8)
    yy, xx = np.mgrid[:120, :120]
    centres = [(30, 30), (90, 40), (60, 95)]
    for cx, cy in centres:
        image[(xx - cx) ** 2 + (yy - cy) ** 2 <= 8 ** 2] = blob  # DAPI rendered blue: little luminance
    mask = tissue_mask(image)
    for cx, cy in centres:
        assert mask[cy - 4:cy + 5, cx - 4:cx + 5].all()
    far = np.ones_like(mask)
    for cx, cy in centres:
        far &= (xx - cx) ** 2 + (yy - cy) ** 2 > 12 ** 2
    assert not mask[far].any()


def test_the_dapi_slide_counts_the_tissue_between_its_nuclei(shared_data):
    """Only nuclei shine in DAPI: the tissue is where they are dense, not just the lit pixels (about 12 %)."""
    slide = Slide(shared_data / "wsi" / "test3-DAPI-2-387.ndpi")
    plan = plan_tiles(slide, 40.0, 1024, 48, None, 0.25)
    covered = plan.tissue_base_pixels / (slide.width * slide.height)
    assert 0.35 < covered < 0.8, covered
    assert 0.6 * plan.tiles_total <= len(plan.tiles) < plan.tiles_total  # the empty corners are skipped
