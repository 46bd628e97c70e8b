"""Cut a volume into cubic tiles and put per-tile answers back together.

The artefact network reads 64 mm cubes of the 1 mm head box (MIQA, Kitware): a tile is small
enough to train fast and to say *where* an artefact is, and each tile of an image sees the same
global artefact (a bias field, noise, ghosts, spikes, blur), so the image's answer is a
combination of its tiles' answers.

Tiles along one axis of length :math:`n` start at :math:`\\lceil n / t \\rceil` evenly spaced
origins from 0 to :math:`n - t`: every voxel is covered, the last tile ends at the edge, and
neighbours overlap as little as the length allows. An axis shorter than a tile gets one tile,
zero-padded past the edge.

A tile alone cannot tell a smooth bias field from anatomy, nor a ghost in the air from an
empty background: both are only seen across the head. So the network reads each tile in
context (:func:`tiles_in_context`): the tile at full resolution, the whole volume averaged down
to one tile's shape (:func:`overview`, about 3 mm on the 1 mm head box), and where the tile
lies in that overview (:func:`tile_footprint`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "MIN_BRAIN_FRACTION",
    "TILE_SIZE",
    "aggregate_tiles",
    "extract_tiles",
    "overview",
    "tile_footprint",
    "tile_fractions",
    "tile_map",
    "tile_origins",
    "tiles_in_context",
]

#: Edge of a tile, in voxels (64 mm on the 1 mm head box).
TILE_SIZE = 64
#: Tiles holding less brain than this fraction carry no say in the image's answer.
MIN_BRAIN_FRACTION = 0.05


def _axis_origins(length: int, size: int) -> np.ndarray:
    if length <= size:
        return np.zeros(1, dtype=int)
    count = math.ceil(length / size)
    return np.round(np.linspace(0, length - size, count)).astype(int)


def tile_origins(shape: Sequence[int], size: int = TILE_SIZE) -> np.ndarray:
    """Origins of the tiles that cover a volume of ``shape``, shape (N, 3), in C order."""
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"expected a 3D shape, got {tuple(shape)}")
    if size < 1:
        raise ValueError(f"size must be at least 1, got {size}")
    axes = [_axis_origins(length, size) for length in shape]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)


def extract_tiles(volume: ArrayLike, origins: ArrayLike, size: int = TILE_SIZE) -> np.ndarray:
    """The tiles of ``volume`` at ``origins``, shape (N, size, size, size), zero-padded past
    the edges."""
    volume = np.asarray(volume)
    origins = np.asarray(origins, dtype=int).reshape(-1, 3)
    if volume.ndim != 3:
        raise ValueError(f"expected a 3D volume, got shape {volume.shape}")
    reach = origins.max(axis=0, initial=0) + size if len(origins) else np.zeros(3, int)
    padding = [(0, max(0, r - n)) for r, n in zip(reach, volume.shape, strict=True)]
    if any(after for _, after in padding):
        volume = np.pad(volume, padding)
    return np.stack([volume[x : x + size, y : y + size, z : z + size] for x, y, z in origins])


def _binning(length: int, size: int) -> np.ndarray:
    """Matrix, shape (size, length), averaging an axis of ``length`` voxels into ``size``
    contiguous bins of (nearly) equal width."""
    if length < size:
        raise ValueError(f"cannot average {length} voxels into {size} bins")
    bins = np.arange(length) * size // length
    matrix = (bins == np.arange(size)[:, None]).astype(np.float32)
    return matrix / matrix.sum(axis=1, keepdims=True)


def overview(volume: ArrayLike, size: int = TILE_SIZE) -> np.ndarray:
    """The whole volume averaged down to ``(size, size, size)`` voxels, float32; each axis is
    cut into contiguous bins of nearly equal width (3 or 4 voxels for the 1 mm head box)."""
    view = np.asarray(volume, dtype=np.float32)
    if view.ndim != 3:
        raise ValueError(f"expected a 3D volume, got shape {view.shape}")
    for axis, length in enumerate(view.shape):
        view = np.moveaxis(np.tensordot(_binning(length, size), view, axes=(1, axis)), 0, axis)
    return np.ascontiguousarray(view)


def tile_footprint(
    shape: Sequence[int], origin: Sequence[int], size: int = TILE_SIZE
) -> np.ndarray:
    """Where the tile at ``origin`` lies in the :func:`overview` of a volume of ``shape``: the
    fraction of each overview voxel that the tile covers, shape ``(size, size, size)``."""
    axes = []
    for length, start in zip(shape, origin, strict=True):
        inside = np.zeros(length, dtype=np.float32)
        inside[start : start + size] = 1
        axes.append(_binning(length, size) @ inside)
    return np.einsum("i,j,k->ijk", *axes)


def tiles_in_context(
    volume: ArrayLike, origins: ArrayLike, view: np.ndarray | None = None, size: int = TILE_SIZE
) -> np.ndarray:
    """The artefact network's input for the tiles at ``origins``: shape (N, 3, size, size,
    size), float32, with channels tile, :func:`overview` of the volume (``view`` when given,
    to reuse it) and :func:`tile_footprint`. Only the tiles are read from ``volume`` when
    ``view`` is given, so a memory-mapped volume stays on disk."""
    volume = np.asarray(volume)
    origins = np.asarray(origins, dtype=int).reshape(-1, 3)
    view = overview(volume, size) if view is None else view
    tiles = extract_tiles(volume, origins, size)
    return np.stack(
        [
            np.stack([tile, view, tile_footprint(volume.shape, origin, size)])
            for tile, origin in zip(tiles, origins, strict=True)
        ]
    ).astype(np.float32, copy=False)


def tile_fractions(mask: ArrayLike, origins: ArrayLike, size: int = TILE_SIZE) -> np.ndarray:
    """Fraction of each tile that lies inside ``mask``, shape (N,)."""
    tiles = extract_tiles(np.asarray(mask, dtype=np.float32), origins, size)
    return tiles.reshape(len(tiles), -1).mean(axis=1)


def tile_map(
    values: ArrayLike, origins: ArrayLike, shape: Sequence[int], size: int = TILE_SIZE
) -> np.ndarray:
    """Spread per-tile values back onto the volume: each voxel gets the mean over the tiles that
    hold it, and NaN when none of ``origins`` does.

    Parameters
    ----------
    values : array-like of shape (N, K)
        K values per tile.
    origins : array-like of shape (N, 3)
    shape : (int, int, int)
        Shape of the volume the tiles came from.

    Returns
    -------
    numpy.ndarray of shape (*shape, K), float32
    """
    values = np.asarray(values, dtype=np.float64)
    origins = np.asarray(origins)
    if values.ndim != 2 or len(values) != len(origins):
        raise ValueError(f"expected values of shape ({len(origins)}, K), got {values.shape}")
    total = np.zeros((*shape, values.shape[1]))
    count = np.zeros((*shape, 1))
    for (x, y, z), value in zip(origins, values, strict=True):
        total[x : x + size, y : y + size, z : z + size] += value
        count[x : x + size, y : y + size, z : z + size] += 1
    with np.errstate(invalid="ignore"):
        return (total / count).astype(np.float32)


def aggregate_tiles(values: ArrayLike, weights: ArrayLike) -> np.ndarray:
    r"""The image's answer from its tiles': the ``weights``-weighted mean, shape (K,).

    The artefact network averages its tiles' presence logits and quality scores this way.
    Every simulated artefact, and most real ones, spans the whole image, so each tile is a noisy
    look at the same answer. A mean of log-odds (the geometric mean of the tiles' odds) lets a
    lone odd-looking tile, a lesion or the edge of a field of view, be outvoted, which a maximum
    would not; the tile map (:func:`tile_map`) still shows where the evidence lies. Weights
    are the tiles' brain fractions (:func:`tile_fractions`), so tiles of mostly air count less;
    tiles below :data:`MIN_BRAIN_FRACTION` count for nothing and, when no tile reaches it, all
    tiles count alike.
    """
    values = np.asarray(values, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    if values.ndim != 2 or weights.shape != (len(values),):
        raise ValueError(
            f"expected values (N, K) and weights (N,), got {values.shape} and {weights.shape}"
        )
    weights = np.where(weights >= MIN_BRAIN_FRACTION, weights, 0.0)
    if weights.sum() == 0:
        weights = np.ones(len(values))
    return (weights[:, None] * values).sum(axis=0) / weights.sum()
