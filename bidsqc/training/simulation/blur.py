"""Blur: an isotropic Gaussian point spread function."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torchio as tio

from bidsqc.training.simulation.base import Artefact, RandomArtefact, check_number, parse_range

__all__ = [
    "Blur",
    "RandomBlur",
]


@dataclass
class Blur(Artefact):
    r"""Loss of resolution: an isotropic Gaussian point-spread function.

    The image is convolved with a Gaussian of full width at half maximum ``fwhm`` in mm on every
    axis, :math:`\sigma = \mathrm{FWHM} / (2\sqrt{2 \ln 2})`, converted to voxels per axis so
    that anisotropic voxels get the same physical blur (TorchIO ``tio.Blur``).

    Parameters
    ----------
    fwhm : float
        Full width at half maximum in mm; 0 leaves the image unchanged.
    """

    fwhm: float

    name: ClassVar[str] = "blur"
    full_scale: ClassVar[float] = 4.0

    def __post_init__(self) -> None:
        self.fwhm = check_number(self.fwhm, "fwhm", min_value=0)

    @property
    def strength(self) -> float:
        """FWHM in mm."""
        return self.fwhm

    def _apply(self, image: tio.ScalarImage) -> tio.ScalarImage:
        sigma = self.fwhm / (2 * math.sqrt(2 * math.log(2)))
        return tio.Blur(std=(sigma, sigma, sigma))(image)


class RandomBlur(RandomArtefact):
    r"""Draw an isotropic Gaussian blur.

    Parameters
    ----------
    fwhm : float or (float, float)
        Range :math:`(a, b)` of the FWHM in mm, :math:`\mathrm{FWHM} \sim \mathcal{U}(a, b)`.
        A single :math:`d` means :math:`(0, d)`.
    """

    def __init__(self, fwhm: float | tuple[float, float] = 4.0) -> None:
        self.fwhm = parse_range(fwhm, "fwhm", min_value=0)

    def sample(self, rng: np.random.Generator) -> Blur:
        return Blur(fwhm=rng.uniform(*self.fwhm))
