"""Thermal noise: complex Gaussian noise before the magnitude is taken (Rician)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torchio as tio

from bidsqc.training.simulation.base import (
    Artefact,
    RandomArtefact,
    check_number,
    foreground_intensity,
    parse_range,
)

__all__ = [
    "Noise",
    "RandomNoise",
]


@dataclass
class Noise(Artefact):
    r"""Thermal noise in a magnitude image: Rician (Gudbjartsson & Patz 1995).

    Independent Gaussian noise of standard deviation :math:`\sigma` is added to the real and
    imaginary channels and the magnitude is kept,
    :math:`|x + \sigma n_1 + i \sigma n_2|`, with :math:`\sigma = s \cdot`
    :func:`foreground_intensity`, so the background turns Rayleigh-distributed as in real
    magnitude images. The strength is :math:`s`, the inverse of the foreground SNR.

    Parameters
    ----------
    std : float
        Noise standard deviation :math:`s` relative to the foreground intensity (unitless);
        0 leaves the image unchanged.
    seed : int
        Seed of the :class:`numpy.random.Generator` that draws :math:`n_1, n_2`.

    References
    ----------
    H. Gudbjartsson, S. Patz, "The Rician distribution of noisy MRI data", Magnetic Resonance
    in Medicine 34(6):910–914, 1995.
    """

    std: float
    seed: int

    name: ClassVar[str] = "noise"
    full_scale: ClassVar[float] = 0.2

    def __post_init__(self) -> None:
        self.std = check_number(self.std, "std", min_value=0)
        self.seed = int(self.seed)

    @property
    def strength(self) -> float:
        """Noise standard deviation relative to the foreground intensity."""
        return self.std

    def _apply(self, image: tio.ScalarImage) -> tio.ScalarImage:
        if self.std == 0:
            return image
        data = image.data.numpy()
        sigma = np.float32(self.std * foreground_intensity(data))
        rng = np.random.default_rng(self.seed)
        real = data + sigma * rng.standard_normal(data.shape, dtype=np.float32)
        imaginary = sigma * rng.standard_normal(data.shape, dtype=np.float32)
        return tio.ScalarImage(
            tensor=torch.from_numpy(np.hypot(real, imaginary)), affine=image.affine
        )


class RandomNoise(RandomArtefact):
    r"""Draw Rician noise relative to the foreground intensity.

    Parameters
    ----------
    std : float or (float, float)
        Range :math:`(a, b)` of :math:`s`, the noise standard deviation over the foreground
        intensity, :math:`s \sim \mathcal{U}(a, b)`. A single :math:`d` means :math:`(0, d)`.

    Notes
    -----
    The noise seed is drawn from ``rng`` too, so the whole volume replays from the record.
    """

    def __init__(self, std: float | tuple[float, float] = 0.2) -> None:
        self.std = parse_range(std, "std", min_value=0)

    def sample(self, rng: np.random.Generator) -> Noise:
        return Noise(std=rng.uniform(*self.std), seed=int(rng.integers(2**32)))
