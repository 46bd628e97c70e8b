"""Tests for tiling: coverage of every voxel, tile contents, tile maps, aggregation, head box."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bidsqc.data import HEAD_BOX_SHAPE, head_box, head_box_brain_mask, load_template
from bidsqc.inference.tiles import (
    MIN_BRAIN_FRACTION,
    TILE_SIZE,
    aggregate_tiles,
    extract_tiles,
    overview,
    tile_footprint,
    tile_fractions,
    tile_map,
    tile_origins,
    tiles_in_context,
)

#: Shapes and tile sizes: the 1 mm head box, odd lengths, axes shorter than a tile, tiny tiles.
SHAPES = [
    ((192, 224, 192), 64),
    ((65, 64, 130), 64),
    ((100, 33, 7), 64),
    ((12, 5, 3), 5),
    ((7, 7, 7), 1),
]
SHAPE_IDS = ["head-box", "odd", "thin", "small", "unit"]


def covered(shape: tuple[int, ...], origins: np.ndarray, size: int) -> np.ndarray:
    """How many of the tiles at ``origins`` hold each voxel of ``shape``."""
    count = np.zeros(shape, dtype=int)
    for x, y, z in origins:
        count[x : x + size, y : y + size, z : z + size] += 1
    return count


@pytest.mark.parametrize(("shape", "size"), SHAPES, ids=SHAPE_IDS)
def test_tiles_cover_every_voxel(shape: tuple[int, int, int], size: int) -> None:
    origins = tile_origins(shape, size)
    assert origins.shape[1] == 3
    assert (covered(shape, origins, size) >= 1).all()


@pytest.mark.parametrize(("shape", "size"), SHAPES, ids=SHAPE_IDS)
def test_origins_per_axis(shape: tuple[int, int, int], size: int) -> None:
    """ceil(n / size) origins per axis (one when the axis is shorter than a tile), within
    [0, n - size], the first at 0 and the last tile ending at the edge."""
    origins = tile_origins(shape, size)
    expected_counts = [math.ceil(n / size) if n > size else 1 for n in shape]
    assert len(origins) == math.prod(expected_counts)
    for axis, n in enumerate(shape):
        values = np.unique(origins[:, axis])
        assert len(values) == expected_counts[axis]
        assert values.min() == 0
        assert values.max() == max(0, n - size)
        assert (values >= 0).all() and (values + size <= max(n, size)).all()


@pytest.mark.parametrize(("shape", "size"), SHAPES, ids=SHAPE_IDS)
def test_origins_are_in_c_order(shape: tuple[int, int, int], size: int) -> None:
    origins = tile_origins(shape, size)
    as_tuples = [tuple(origin) for origin in origins.tolist()]
    assert as_tuples == sorted(as_tuples)
    assert len(set(as_tuples)) == len(as_tuples)


def test_head_box_tiles() -> None:
    """3 x 4 x 3 tiles of 64 on the 1 mm head box; along y they overlap by 10 or 11 voxels."""
    origins = tile_origins((192, 224, 192))
    assert len(origins) == 36
    assert np.unique(origins[:, 0]).tolist() == [0, 64, 128]
    assert np.unique(origins[:, 1]).tolist() == [0, 53, 107, 160]
    assert np.unique(origins[:, 2]).tolist() == [0, 64, 128]


@pytest.mark.parametrize(
    ("shape", "size"),
    [((10, 10), 4), ((10, 10, 10, 1), 4), ((10, 0, 10), 4), ((10, 10, 10), 0)],
    ids=["2d", "4d", "empty-axis", "size-0"],
)
def test_tile_origins_reject_bad_input(shape: tuple[int, ...], size: int) -> None:
    with pytest.raises(ValueError):
        tile_origins(shape, size)


@pytest.mark.parametrize(("shape", "size"), SHAPES, ids=SHAPE_IDS)
def test_extract_tiles_copies_the_volume_and_pads_with_zeros(
    shape: tuple[int, int, int], size: int
) -> None:
    volume = np.arange(1, math.prod(shape) + 1, dtype=np.int32).reshape(shape)
    origins = tile_origins(shape, size)
    tiles = extract_tiles(volume, origins, size)
    assert tiles.shape == (len(origins), size, size, size)
    assert tiles.dtype == volume.dtype
    for tile, (x, y, z) in zip(tiles, origins, strict=True):
        ex, ey, ez = (min(size, n - o) for n, o in zip(shape, (x, y, z), strict=True))
        np.testing.assert_array_equal(
            tile[:ex, :ey, :ez], volume[x : x + ex, y : y + ey, z : z + ez]
        )
        padding = tile.copy()
        padding[:ex, :ey, :ez] = 0
        assert not padding.any(), "outside the volume a tile must hold zeros"


def test_extract_tiles_at_given_origins() -> None:
    volume = np.random.default_rng(0).random((20, 12, 9))
    tiles = extract_tiles(volume, [(3, 2, 1), (16, 8, 5)], size=4)
    np.testing.assert_array_equal(tiles[0], volume[3:7, 2:6, 1:5])
    np.testing.assert_array_equal(tiles[1], volume[16:20, 8:12, 5:9])
    with pytest.raises(ValueError, match="3D volume"):
        extract_tiles(volume[0], [(0, 0, 0)], size=4)


def test_tile_map_by_hand() -> None:
    """Three tiles of 4 along a 10-voxel axis start at 0, 3 and 6: voxel 3 is the mean of the
    first two tiles, voxel 6 of the last two."""
    origins = tile_origins((10, 4, 4), 4)
    np.testing.assert_array_equal(origins, [[0, 0, 0], [3, 0, 0], [6, 0, 0]])
    values = np.array([[1.0, -1.0], [2.0, -2.0], [4.0, -4.0]])
    result = tile_map(values, origins, (10, 4, 4), size=4)
    assert result.shape == (10, 4, 4, 2)
    assert result.dtype == np.float32
    expected = np.array([1, 1, 1, 1.5, 2, 2, 3, 4, 4, 4], dtype=np.float32)
    for y in range(4):
        for z in range(4):
            np.testing.assert_allclose(result[:, y, z, 0], expected)
            np.testing.assert_allclose(result[:, y, z, 1], -expected)


def test_tile_map_overlap_on_the_odd_shape() -> None:
    """On (65, 64, 130) with tiles of 64, voxel (1, 10, 40) lies in the tiles at x 0 and 1 and
    z 0 and 33: its value is the mean of those four tiles'."""
    shape = (65, 64, 130)
    origins = tile_origins(shape)
    assert np.unique(origins[:, 2]).tolist() == [0, 33, 66]
    values = np.arange(len(origins), dtype=float)[:, None] ** 2
    result = tile_map(values, origins, shape)
    holding = [
        k for k, (x, y, z) in enumerate(origins.tolist()) if x in (0, 1) and y == 0 and z in (0, 33)
    ]
    assert len(holding) == 4
    assert result[1, 10, 40, 0] == pytest.approx(values[holding, 0].mean())
    only_first = [k for k, (x, _, z) in enumerate(origins.tolist()) if x == 0 and z == 0]
    assert result[0, 0, 0, 0] == pytest.approx(values[only_first, 0].mean())


@pytest.mark.parametrize(("shape", "size"), SHAPES, ids=SHAPE_IDS)
def test_tile_map_of_constant_tiles(shape: tuple[int, int, int], size: int) -> None:
    origins = tile_origins(shape, size)
    result = tile_map(np.full((len(origins), 1), 0.25), origins, shape, size)
    assert result.shape == (*shape, 1)
    np.testing.assert_array_equal(result, 0.25)


def test_tile_map_is_nan_where_no_tile_is() -> None:
    shape = (10, 4, 4)
    origins = tile_origins(shape, 4)[[0, 2]]  # tiles at x 0 and 6: voxels 4 and 5 uncovered
    result = tile_map([[1.0], [3.0]], origins, shape, size=4)
    assert np.isnan(result[4:6]).all()
    assert not np.isnan(result[:4]).any() and not np.isnan(result[6:]).any()
    np.testing.assert_array_equal(result[:4], 1.0)
    np.testing.assert_array_equal(result[6:], 3.0)
    assert np.isnan(tile_map(np.zeros((0, 2)), np.zeros((0, 3), int), shape, 4)).all()


@pytest.mark.parametrize(
    "values", [np.zeros(3), np.zeros((2, 1)), np.zeros((3, 1, 1))], ids=["1d", "count", "3d"]
)
def test_tile_map_rejects_values_of_the_wrong_shape(values: np.ndarray) -> None:
    origins = tile_origins((10, 4, 4), 4)
    with pytest.raises(ValueError, match="expected values of shape"):
        tile_map(values, origins, (10, 4, 4), size=4)


def test_tile_fractions_of_a_half_space() -> None:
    mask = np.zeros((64, 64, 64), bool)
    mask[:40] = True
    origins = tile_origins(mask.shape, 32)
    fractions = tile_fractions(mask, origins, 32)
    assert fractions.shape == (len(origins),)
    expected = np.where(origins[:, 0] == 0, 1.0, 8 / 32)
    np.testing.assert_allclose(fractions, expected)


def test_tile_fractions_count_padding_as_outside() -> None:
    """A full mask on (100, 33, 7) fills 33 x 7 of each 64 x 64 column of a tile."""
    mask = np.ones((100, 33, 7), bool)
    origins = tile_origins(mask.shape)
    np.testing.assert_allclose(tile_fractions(mask, origins), 33 * 7 / 64**2)
    assert tile_fractions(~mask, origins).tolist() == [0.0, 0.0]


def test_aggregate_tiles_is_the_weighted_mean() -> None:
    values = np.array([[0.0, 10.0], [1.0, 20.0], [3.0, 40.0]])
    result = aggregate_tiles(values, [0.5, 0.25, 0.25])
    assert result.shape == (2,)
    np.testing.assert_allclose(result, [1.0, 20.0])
    np.testing.assert_allclose(aggregate_tiles(values, [0.2, 0.2, 0.2]), values.mean(axis=0))


def test_aggregate_tiles_ignores_tiles_below_the_minimum_fraction() -> None:
    values = np.array([[0.0], [100.0], [2.0]])
    below = MIN_BRAIN_FRACTION * 0.99
    np.testing.assert_allclose(aggregate_tiles(values, [0.5, below, 0.5]), [1.0])
    at_minimum = aggregate_tiles(values, [0.5, MIN_BRAIN_FRACTION, 0.5])
    expected = (0.5 * 0 + MIN_BRAIN_FRACTION * 100 + 0.5 * 2) / (1 + MIN_BRAIN_FRACTION)
    np.testing.assert_allclose(at_minimum, [expected])


@pytest.mark.parametrize("weights", [[0.0, 0.0, 0.0], [0.01, 0.02, MIN_BRAIN_FRACTION / 2]])
def test_aggregate_tiles_falls_back_to_equal_weights(weights: list[float]) -> None:
    values = np.array([[0.0, 1.0], [3.0, 5.0], [6.0, 9.0]])
    np.testing.assert_allclose(aggregate_tiles(values, weights), [3.0, 5.0])


@pytest.mark.parametrize(
    ("values", "weights"),
    [
        (np.zeros(3), np.ones(3)),
        (np.zeros((3, 2)), np.ones(2)),
        (np.zeros((3, 2)), np.ones((3, 1))),
        (np.zeros((3, 2, 1)), np.ones(3)),
    ],
    ids=["1d-values", "too-few-weights", "2d-weights", "3d-values"],
)
def test_aggregate_tiles_rejects_wrong_shapes(values: np.ndarray, weights: np.ndarray) -> None:
    with pytest.raises(ValueError, match="expected values"):
        aggregate_tiles(values, weights)


# --- head box -----------------------------------------------------------------------------------


def corners(resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """World coordinates (mm) of the outer corners of the first and last voxels of the box."""
    shape, affine = head_box(resolution)
    first = affine @ [-0.5, -0.5, -0.5, 1]
    last = affine @ [*(n - 0.5 for n in shape), 1]
    return first[:3], last[:3]


def test_head_box_grids_share_their_extent() -> None:
    shape_1, affine_1 = head_box(1)
    shape_2, affine_2 = head_box(2)
    assert shape_2 == HEAD_BOX_SHAPE
    assert shape_1 == tuple(2 * n for n in HEAD_BOX_SHAPE)
    np.testing.assert_allclose(np.abs(np.diag(affine_1)[:3]), 1.0)
    np.testing.assert_allclose(np.abs(np.diag(affine_2)[:3]), 2.0)
    np.testing.assert_allclose(affine_2, load_template(2).affine)
    for corner_1, corner_2 in zip(corners(1), corners(2), strict=True):
        np.testing.assert_allclose(corner_1, corner_2)
    first, last = corners(1)
    np.testing.assert_allclose(np.abs(last - first), [192, 224, 192])


def test_each_2mm_voxel_holds_eight_1mm_voxels() -> None:
    """The centre of 2 mm voxel (i, j, k) is the mean of the centres of 1 mm voxels 2i..2i+1."""
    _, affine_1 = head_box(1)
    _, affine_2 = head_box(2)
    for index in [(0, 0, 0), (10, 57, 95), (95, 111, 95)]:
        fine = [affine_1 @ [*(2 * i + d for i in index), 1] for d in (0, 1)]
        np.testing.assert_allclose(affine_2 @ [*index, 1], (fine[0] + fine[1]) / 2)


def test_head_box_rejects_other_resolutions() -> None:
    with pytest.raises(ValueError, match="1 mm and 2 mm"):
        head_box(3)


def test_head_box_brain_mask_downsamples_to_the_template_mask() -> None:
    fine = head_box_brain_mask(1)
    coarse = load_template(2).brain_mask
    assert fine.shape == head_box(1)[0] and fine.dtype == bool
    blocks = fine.reshape(coarse.shape[0], 2, coarse.shape[1], 2, coarse.shape[2], 2)
    np.testing.assert_array_equal(blocks.all(axis=(1, 3, 5)), coarse)
    np.testing.assert_array_equal(blocks.any(axis=(1, 3, 5)), coarse)
    np.testing.assert_array_equal(head_box_brain_mask(2), coarse)
    assert not fine.flags.writeable


def test_overview_is_the_block_mean_when_blocks_divide_the_volume() -> None:
    volume = np.random.default_rng(0).random((8, 12, 4)).astype(np.float32)
    view = overview(volume, size=4)
    blocks = volume.reshape(4, 2, 4, 3, 4, 1).mean(axis=(1, 3, 5))
    assert view.shape == (4, 4, 4) and view.dtype == np.float32
    np.testing.assert_allclose(view, blocks, rtol=1e-5)


def test_overview_of_the_head_box_bins_uneven_axes() -> None:
    shape = head_box(1)[0]
    ramp = np.broadcast_to(np.arange(shape[1], dtype=np.float32)[None, :, None], shape)
    view = overview(ramp)
    assert view.shape == (TILE_SIZE,) * 3
    row = view[0, :, 0]
    assert np.all(np.diff(row) > 0)
    assert row[0] == pytest.approx(1.5) and row[-1] == pytest.approx(shape[1] - 2)
    assert view.mean() == pytest.approx(ramp.mean(), rel=0.01)
    np.testing.assert_allclose(view, row[None, :, None] * np.ones_like(view), rtol=1e-6)


def test_overview_rejects_a_volume_smaller_than_a_tile() -> None:
    with pytest.raises(ValueError, match="cannot average"):
        overview(np.zeros((100, 33, 70)))


def test_tile_footprint_marks_the_blocks_a_tile_covers() -> None:
    footprint = tile_footprint((8, 16, 4), (2, 8, 0), size=4)
    expected = np.zeros((4, 4, 4))
    expected[1:3, 2, :] = 1
    np.testing.assert_allclose(footprint, expected)
    partial = tile_footprint((8, 12, 4), (1, 0, 0), size=4)
    assert partial[0, 0, 0] == pytest.approx(0.5) and partial[2, 0, 0] == pytest.approx(0.5)


def test_tiles_in_context_stacks_tile_overview_and_footprint() -> None:
    volume = np.random.default_rng(1).random((8, 12, 4)).astype(np.float32)
    origins = [(0, 0, 0), (4, 8, 0)]
    inputs = tiles_in_context(volume, origins, size=4)
    assert inputs.shape == (2, 3, 4, 4, 4) and inputs.dtype == np.float32
    np.testing.assert_array_equal(inputs[:, 0], extract_tiles(volume, origins, size=4))
    for channels, origin in zip(inputs, origins, strict=True):
        np.testing.assert_array_equal(channels[1], overview(volume, size=4))
        np.testing.assert_array_equal(channels[2], tile_footprint(volume.shape, origin, size=4))
    given = np.full((4, 4, 4), 7, np.float32)
    assert (tiles_in_context(volume, origins, view=given, size=4)[:, 1] == 7).all()
