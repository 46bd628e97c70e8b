"""Load an anatomical image and refuse the ones that cannot be quality-controlled.

Each fault has its own exception type, and every message quotes the path and names the fault,
so that a failed row in the QC table tells the user what to do.

Thick slices are accepted up to :data:`MAX_SLICE_MM`: a clinical 2D FLAIR with 5-8 mm slices is
what a hospital's archive holds. Which outputs are valid on such a scan is decided from its
acquisition geometry (:func:`acquisition_geometry`, :mod:`bidsqc.validity`), not here.

What a 4D image gets: a 4th dimension of length 1 is squeezed away and the image is processed;
a series of several volumes (multi-echo or repeated T1w stored as 4D) fails, because which volume,
or which combination of them, a user wants to QC is not ours to guess.
"""

from __future__ import annotations

import gzip
import json
import os
import zlib
from collections.abc import Sequence
from pathlib import Path

import nibabel as nb
import numpy as np

__all__ = [
    "MAX_IN_PLANE_MM",
    "MAX_SLICE_MM",
    "MIN_VOXEL_SIZE_MM",
    "ImageCheckError",
    "acquired_spacing",
    "acquisition_geometry",
    "check_sidecar",
    "load_anatomical",
    "magnitude",
]

#: Slices thicker than this leave too little of the brain to register, even for a clinical scan.
MAX_SLICE_MM = 12.0
#: In-plane voxels coarser than this (the two finer axes) show no anatomy: a localiser.
MAX_IN_PLANE_MM = 4.5
#: Finer than any in-vivo brain acquisition: such a header is almost certainly wrong.
MIN_VOXEL_SIZE_MM = 0.1
#: Fewer voxels than this along an axis cannot hold a brain at any plausible resolution.
MIN_AXIS_VOXELS = 8
#: A slice that differs from its neighbours by less than this share of the typical difference
#: between neighbouring slices was made from them, not acquired (:func:`acquired_spacing`).
MADE_SLICE_TOLERANCE = 0.05
#: Below this share of made slices, an axis is taken as stored as it was acquired.
MIN_MADE_SHARE = 0.2
#: A positive minimum held by at least this share of the voxels is a constant pedestal under
#: the image (:func:`magnitude`); every real scan here has a minimum of 0, on 4-91 % of its voxels.
MIN_PEDESTAL_SHARE = 0.05


class ImageCheckError(ValueError):
    """An image that bidsqc cannot quality-control; the message says why."""


def check_sidecar(path: str | os.PathLike) -> dict:
    """Parse a JSON sidecar, failing with the path and the parser's position if it is broken."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ImageCheckError(f"JSON sidecar '{path}' is not valid JSON: {err}") from err


def load_anatomical(path: str | os.PathLike) -> nb.Nifti1Image:
    """Load a 3D anatomical image as float32, after checking that it can be QC'd.

    Raises :class:`ImageCheckError` for a missing target (a dangling symlink, as in a DataLad
    dataset whose content was not fetched), an empty or truncated file, a 4D series, voxel
    sizes out of range, non-finite values, and an image without contrast (constant, e.g. all
    zero). Negative intensities are made non-negative (:func:`magnitude`). The voxel sizes must
    lie within
    [:data:`MIN_VOXEL_SIZE_MM`, :data:`MAX_IN_PLANE_MM`] mm in plane and reach at most
    :data:`MAX_SLICE_MM` mm across the slices.
    """
    path = Path(path)
    if path.is_symlink() and not path.exists():
        raise ImageCheckError(
            f"'{path}' is a broken symlink (to '{os.readlink(path)}'); "
            "if this is a DataLad dataset, run `datalad get` on it"
        )
    if not path.is_file():
        raise ImageCheckError(f"'{path}' does not exist or is not a file")
    if path.stat().st_size == 0:
        raise ImageCheckError(f"'{path}' is an empty file (0 bytes)")
    try:
        img = nb.load(path)
        data = np.asanyarray(img.dataobj)
    except (EOFError, OSError, zlib.error, gzip.BadGzipFile) as err:
        raise ImageCheckError(f"'{path}' is truncated or corrupt: {err}") from err
    except nb.filebasedimages.ImageFileError as err:
        raise ImageCheckError(f"'{path}' is not a readable NIfTI image: {err}") from err
    except ValueError as err:
        raise ImageCheckError(f"'{path}' has an inconsistent header: {err}") from err

    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim == 4:
        raise ImageCheckError(
            f"'{path}' is 4D with {data.shape[3]} volumes; bidsqc checks 3D anatomicals: "
            "split the series or combine its echoes first"
        )
    if data.ndim != 3:
        raise ImageCheckError(f"'{path}' has {data.ndim} dimensions {data.shape}, expected 3")
    if min(data.shape) < MIN_AXIS_VOXELS:
        raise ImageCheckError(f"'{path}' has shape {data.shape}: too few voxels for a brain")

    zooms = nb.affines.voxel_sizes(img.affine)
    if not np.all(np.isfinite(zooms)) or np.linalg.matrix_rank(img.affine[:3, :3]) < 3:
        raise ImageCheckError(f"'{path}' has a singular or non-finite affine")
    sizes = " x ".join(f"{z:.2f}" for z in zooms)
    in_plane = np.sort(zooms)[:2]
    if zooms.min() < MIN_VOXEL_SIZE_MM or in_plane.max() > MAX_IN_PLANE_MM:
        raise ImageCheckError(
            f"'{path}' has voxels of {sizes} mm; bidsqc needs in-plane voxels within "
            f"[{MIN_VOXEL_SIZE_MM}, {MAX_IN_PLANE_MM}] mm"
        )
    if zooms.max() > MAX_SLICE_MM:
        raise ImageCheckError(
            f"'{path}' has voxels of {sizes} mm: slices thicker than {MAX_SLICE_MM:g} mm "
            "leave too little of the brain to quality-control"
        )

    data = data.astype(np.float32)
    n_bad = int(np.size(data) - np.count_nonzero(np.isfinite(data)))
    if n_bad:
        raise ImageCheckError(f"'{path}' has {n_bad} NaN or infinite voxels")
    if data.max() == data.min():
        raise ImageCheckError(f"'{path}' is constant (every voxel is {data.flat[0]:g})")

    out = nb.Nifti1Image(magnitude(data), img.affine)
    out.header.set_xyzt_units("mm")
    return out


def magnitude(data: np.ndarray) -> np.ndarray:
    """Non-negative intensities that start at zero, as an MR magnitude image's do.

    Some reconstructions write negative values. When most voxels are negative (the median is
    below zero: the whole image is offset, as a signed export of an unsigned scan is), the
    image is shifted so that its minimum is zero, which keeps its contrast. Otherwise the
    negative voxels are interpolation undershoot or background noise around zero, and become 0.
    A positive minimum shared by :data:`MIN_PEDESTAL_SHARE` of the voxels or more is a constant
    pedestal, as a background zeroed by the scanner and then raised by a scaling intercept
    (``scl_inter``) has: noise is never constant. The image is shifted down by it, since the
    artefact network reads raised air as noise (the ADNI head on a pedestal of 1.7 % of its
    maximum: ``p_noise`` 0.55 instead of 0.03).
    """
    low = data.min()
    if low > 0 and np.count_nonzero(data == low) >= MIN_PEDESTAL_SHARE * data.size:
        return data - low
    if low >= 0:
        return data
    if np.median(data) < 0:
        return data - low
    return np.clip(data, 0, None)


def acquired_spacing(data: np.ndarray, zooms: Sequence[float]) -> np.ndarray:
    """The spacing (mm) of the slices that were acquired, along each voxel axis.

    An archive or a converter may store a scan on a finer grid than it was acquired on: a 2D
    FLAIR of 6 mm slices exported at 2 mm. Its stored slices between the acquired ones carry no
    new signal: they repeat an acquired slice (nearest-neighbour upsampling) or lie on the
    straight line between two (linear interpolation). So, inside the object (voxels above 10 %
    of the 99th percentile), a slice equal to its predecessor, or to the mean of its two
    neighbours, within :data:`MADE_SLICE_TOLERANCE` of the typical difference between
    neighbouring slices that differ at all, was made; the acquired spacing is the mean distance
    between the slices that were not. Thermal noise makes every acquired slice
    differ from its neighbours, so a scan stored as acquired keeps its spacing; so does one
    resampled with a smoother kernel (cubic, sinc, oblique), which this cannot tell.
    """
    spacing = np.asarray(zooms, dtype=float).copy()
    data = np.asarray(data, dtype=np.float32)
    object_level = 0.1 * np.percentile(data[::2, ::2, ::2], 99)
    for axis in range(3):
        slices = np.moveaxis(data, axis, 0)[:, ::2, ::2]
        inside = slices > object_level
        pairs = inside[1:] & inside[:-1]
        triples = pairs[1:] & pairs[:-1]
        step = _mean_inside(np.abs(np.diff(slices, axis=0)), pairs)
        bend = _mean_inside(np.abs(slices[2:] - 2 * slices[1:-1] + slices[:-2]), triples)
        measured = np.isfinite(step[:-1]) & np.isfinite(bend)
        moving = step[step > 0]  # NaN compares False
        typical = np.median(moving) if moving.size else 0.0
        if measured.sum() < MIN_AXIS_VOXELS or not typical > 0:
            continue
        tolerance = MADE_SLICE_TOLERANCE * typical
        made = (step[:-1] <= tolerance) | (bend <= tolerance)
        acquired = np.flatnonzero(measured & ~made)
        if made[measured].mean() >= MIN_MADE_SHARE and acquired.size >= 2:
            spacing[axis] *= (acquired[-1] - acquired[0]) / (acquired.size - 1)
    return spacing


def _mean_inside(values: np.ndarray, inside: np.ndarray, min_voxels: int = 100) -> np.ndarray:
    """Mean of each slice of ``values`` over ``inside``; NaN where fewer than ``min_voxels``."""
    counts = inside.sum(axis=(1, 2))
    sums = np.where(inside, values, 0).sum(axis=(1, 2))
    return np.where(counts >= min_voxels, sums / np.maximum(counts, 1), np.nan)


def acquisition_geometry(
    path: str | os.PathLike, sidecar: str | os.PathLike | None, data: np.ndarray | None = None
) -> dict:
    """How an image was acquired: its geometry, from its header, its JSON sidecar, and its
    voxels when ``data`` is given, and the scanner, from the sidecar.

    ``slice_mm`` is the largest voxel dimension (the slice spacing of a 2D scan), ``in_plane_mm``
    the mean of the two others, ``acquisition`` the sidecar's ``MRAcquisitionType`` ("2D" or
    "3D"), and ``scanner`` its ``Manufacturer``, ``ManufacturersModelName`` and
    ``MagneticFieldStrength`` (e.g. "Siemens Prisma 3 T"), those it has. With ``data``, the
    dimensions are those acquired (:func:`acquired_spacing`), which a scan stored on a finer
    grid hides from its header. Values that cannot be read are NaN or ``n/a``: a failed image
    still gets a row.
    """
    geometry = {"slice_mm": np.nan, "in_plane_mm": np.nan, "acquisition": "n/a", "scanner": "n/a"}
    try:
        affine = nb.load(path).affine
    except Exception:  # noqa: BLE001 - load_anatomical reports why; the row only lacks geometry
        affine = None
    if affine is not None:
        zooms = nb.affines.voxel_sizes(affine)
        if data is not None:
            zooms = acquired_spacing(data, zooms)
        zooms = np.sort(zooms)
        geometry |= {"slice_mm": float(zooms[2]), "in_plane_mm": float(zooms[:2].mean())}
    try:
        metadata = json.loads(Path(sidecar).read_text()) if sidecar else {}
    except (OSError, ValueError):
        metadata = {}
    metadata = metadata if isinstance(metadata, dict) else {}
    if metadata.get("MRAcquisitionType") in ("2D", "3D"):
        geometry["acquisition"] = metadata["MRAcquisitionType"]
    if scanner := _scanner(metadata):
        geometry["scanner"] = scanner
    return geometry


def _scanner(metadata: dict) -> str:
    """The scanner a sidecar names: manufacturer, model and field strength, those it has."""
    names = [metadata.get(key) for key in ("Manufacturer", "ManufacturersModelName")]
    parts = [name.strip() for name in names if isinstance(name, str) and name.strip()]
    field = metadata.get("MagneticFieldStrength")
    if isinstance(field, int | float) and not isinstance(field, bool):
        parts.append(f"{field:g} T")
    return " ".join(parts)
