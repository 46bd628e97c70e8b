"""Registered volumes embedded in a participant report, for its slice viewer and thumbnails.

A volume travels as 8-bit voxels (the mosaics' intensity window mapped to 0-255), in C order
of its RAS voxel axes, gzip-compressed and base64-encoded: a 2 mm head box of 96 x 112 x 96
voxels weighs about 0.3 MB in the page. The page inflates it with the browser's own
``DecompressionStream``, so the report stays one file that needs no server and no network.
"""

from __future__ import annotations

import base64
import gzip
import os
from collections.abc import Sequence
from pathlib import Path

import nibabel as nb
import numpy as np
from PIL import Image

from bidsqc.outputs.files import atomic_path
from bidsqc.reports.figures import intensity_window

__all__ = ["embedded_volume", "read_registered", "viewer_volumes", "write_thumbnail"]


def read_registered(preproc: str | os.PathLike) -> tuple[np.ndarray, tuple[float, float]]:
    """A registered image's data and its intensity window (that of the mosaics)."""
    data = np.asarray(nb.load(preproc).dataobj, dtype=np.float32)
    return data, intensity_window(data)


def eight_bit(data: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """``window`` mapped to 0-255, values outside it clipped, NaN as 0."""
    low, high = window
    scaled = np.nan_to_num((np.asarray(data, dtype=np.float32) - low) / (high - low))
    return np.rint(np.clip(scaled, 0, 1) * 255).astype(np.uint8)


def embedded_volume(data: np.ndarray, window: tuple[float, float]) -> dict:
    """A 3D volume as the viewer reads it: its shape and its 8-bit voxels (:func:`eight_bit`),
    base64 of gzip."""
    voxels = eight_bit(data, window)
    packed = gzip.compress(np.ascontiguousarray(voxels).tobytes(), compresslevel=6, mtime=0)
    return {"shape": list(voxels.shape), "data": base64.b64encode(packed).decode("ascii")}


def viewer_volumes(
    data: np.ndarray,
    window: tuple[float, float],
    artefact_map: str | os.PathLike | None = None,
    map_names: Sequence[str] = (),
) -> dict:
    """What an image's slice viewer shows: the registered image (:func:`read_registered`), and
    each volume of its artefact map (probabilities 0-1, one per name in ``map_names``) as an
    overlay."""
    overlays = []
    if artefact_map is not None and Path(artefact_map).is_file():
        probabilities = np.asarray(nb.load(artefact_map).dataobj, dtype=np.float32)
        if probabilities.shape[:3] == data.shape and probabilities.ndim == 4:
            overlays = [
                {"name": name, **embedded_volume(probabilities[..., k], (0.0, 1.0))}
                for k, name in enumerate(map_names[: probabilities.shape[3]])
            ]
    return {"image": embedded_volume(data, window), "overlays": overlays}


def write_thumbnail(
    data: np.ndarray, window: tuple[float, float], out_file: str | os.PathLike
) -> Path:
    """The middle axial slice of a registered image, anterior up, as an 8-bit PNG."""
    axial = eight_bit(data[:, :, data.shape[2] // 2], window)
    with atomic_path(out_file) as temporary:
        Image.fromarray(np.flipud(axial.T)).save(temporary, optimize=True)
    return Path(out_file)
