"""What every simulated artefact shares: the two base classes and the checks of their settings."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import asdict
from typing import ClassVar, TypeVar

import nibabel as nb
import numpy as np
import torch
import torchio as tio
from numpy.typing import ArrayLike

__all__ = [
    "Artefact",
    "RandomArtefact",
    "RandomOneOf",
    "as_rows",
    "check_number",
    "foreground_intensity",
    "image_centre_lps",
    "on_image",
    "parse_range",
]

ImageT = TypeVar("ImageT", nb.Nifti1Image, tio.ScalarImage)


def image_centre_lps(image: tio.ScalarImage) -> np.ndarray:
    """Centre of the voxel grid in mm, in the LPS world frame SimpleITK (and so TorchIO) uses."""
    index = (np.asarray(image.spatial_shape, dtype=float) - 1) / 2
    ras = image.affine[:3, :3] @ index + image.affine[:3, 3]
    return ras * np.array([-1.0, -1.0, 1.0])


def foreground_intensity(data: ArrayLike) -> float:
    """Robust foreground signal: the median of the voxels at or above the volume mean.

    The mean separates head (or brain) from air for full-head and skull-stripped images alike, and
    the median of what is above it sits between grey and white matter on T1w and FLAIR. It scales
    with the image, so noise relative to it means the same on uint8 and on 0–4000 images. An
    all-zero image gives 0.
    """
    array = np.asarray(data, dtype=np.float64)
    return float(np.median(array[array >= array.mean()]))


def check_number(
    value: float,
    name: str,
    *,
    min_value: float | None = None,
    max_value: float | None = None,
    integer: bool = False,
) -> float:
    """Return ``value`` as a float (int if ``integer``), naming ``name`` in every error."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if integer and int(value) != value:
        raise ValueError(f"{name} must be an integer, got {value}")
    if min_value is not None and value < min_value:
        raise ValueError(f"{name} must be >= {min_value}, got {value}")
    if max_value is not None and value > max_value:
        raise ValueError(f"{name} must be <= {max_value}, got {value}")
    return int(value) if integer else float(value)


def parse_range(
    value: float | tuple[float, float],
    name: str,
    *,
    min_value: float | None = None,
    max_value: float | None = None,
    integer: bool = False,
) -> tuple[float, float]:
    """Turn a number or a pair into ``(low, high)``, naming ``name`` in every error.

    A single ``d >= 0`` means ``(-d, d)``, or ``(min_value, d)`` when ``min_value`` is given.
    """
    if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
        high = check_number(value, name, min_value=0, integer=integer)
        value = (-high if min_value is None else min_value, high)
    try:
        low, high = value
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a number or a pair (min, max), got {value!r}") from err
    bounds = {"min_value": min_value, "max_value": max_value, "integer": integer}
    low = check_number(low, name, **bounds)
    high = check_number(high, name, **bounds)
    if low > high:
        raise ValueError(f"{name}: min {low} is greater than max {high}")
    return low, high


def as_rows(value: ArrayLike, name: str) -> list[list[float]]:
    """Rows of three floats, e.g. one (x, y, z) triple per pose or per spike."""
    array = np.asarray(value, dtype=float)
    if array.size % 3 or (array.ndim > 1 and array.shape[-1] != 3):
        raise ValueError(f"{name} must have shape (N, 3), got shape {array.shape}")
    return array.reshape(-1, 3).tolist()


def as_scalar_image(image: nb.Nifti1Image | tio.ScalarImage) -> tio.ScalarImage:
    """A float32 single-channel copy, so no artefact ever writes into its input."""
    if isinstance(image, tio.ScalarImage):
        if image.num_channels != 1:
            raise ValueError(f"image must have one channel, got {image.num_channels}")
        return tio.ScalarImage(tensor=image.data.float().clone(), affine=image.affine)
    if isinstance(image, nb.Nifti1Image):
        if image.ndim != 3:
            raise ValueError(f"image must be 3D, got shape {image.shape}")
        # Contiguous: a reoriented image (nibabel's as_reoriented) has negative strides.
        data = np.ascontiguousarray(image.get_fdata(dtype=np.float32))
        return tio.ScalarImage(tensor=torch.from_numpy(data[np.newaxis]), affine=image.affine)
    raise TypeError(
        f"image must be a nibabel.Nifti1Image or torchio.ScalarImage, got {type(image)}"
    )


def on_image(apply: Callable[[tio.ScalarImage], tio.ScalarImage], image: ImageT) -> ImageT:
    """Run ``apply`` on a float copy of ``image`` and return the same kind of image."""
    result = apply(as_scalar_image(image))
    if isinstance(image, tio.ScalarImage):
        return result
    header = image.header.copy()
    header.set_data_dtype(np.float32)
    return nb.Nifti1Image(result.data[0].numpy(), image.affine, header)


class Artefact(ABC):
    """A fully specified artefact: applying it twice gives the same volume.

    Subclasses are dataclasses whose fields are the parameters, so ``to_dict`` is the record
    that :meth:`Corruption.from_dict` replays.
    """

    name: ClassVar[str]
    #: Strength that maps to severity 1.
    full_scale: ClassVar[float]

    @property
    @abstractmethod
    def strength(self) -> float:
        """The artefact's size in physical units (see the class docstring)."""

    @property
    def severity(self) -> float:
        """``min(1, strength / full_scale)``: 0 for no artefact, 1 for a severe one."""
        return min(1.0, self.strength / self.full_scale)

    @abstractmethod
    def _apply(self, image: tio.ScalarImage) -> tio.ScalarImage:
        """Corrupt a float32 single-channel copy."""

    def __call__(self, image: ImageT) -> ImageT:
        """Return a corrupted float32 copy of ``image``, of the same kind and affine."""
        return on_image(self._apply, image)

    def to_dict(self) -> dict:
        """JSON-serialisable record: name, parameters, strength and severity."""
        return {
            "name": self.name,
            "params": asdict(self),  # type: ignore[call-overload]
            "strength": self.strength,
            "severity": self.severity,
        }


class RandomArtefact(ABC):
    """Draws the parameters of one :class:`Artefact` from a :class:`numpy.random.Generator`."""

    @abstractmethod
    def sample(self, rng: np.random.Generator) -> Artefact:
        """Draw one fully specified artefact."""


class RandomOneOf(RandomArtefact):
    """Draw from one of several :class:`RandomArtefact`, chosen at random with given weights
    (as TorchIO's ``OneOf``): for instance motion that is held poses in some samples and
    brief nods in others, under one label.

    Parameters
    ----------
    candidates : mapping of RandomArtefact to float
        Each candidate and its weight, at least 0; the weights need not sum to 1 but must not
        all be 0.
    """

    def __init__(self, candidates: Mapping[RandomArtefact, float]) -> None:
        weights = np.array(
            [check_number(weight, "weight", min_value=0) for weight in candidates.values()]
        )
        if weights.sum() <= 0:
            raise ValueError("at least one candidate needs a positive weight")
        self.candidates = tuple(candidates)
        self.weights = tuple(weights / weights.sum())

    def sample(self, rng: np.random.Generator) -> Artefact:
        index = int(rng.choice(len(self.candidates), p=self.weights))
        return self.candidates[index].sample(rng)
