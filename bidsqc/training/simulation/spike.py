"""Spikes: bright k-space points, which stripe the whole image."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torchio as tio

from bidsqc.training.simulation.base import Artefact, RandomArtefact, as_rows, parse_range

__all__ = [
    "RandomSpike",
    "Spike",
]


@dataclass
class Spike(Artefact):
    r"""Herringbone stripes from spikes of RF noise in k-space.

    Each spike adds :math:`r \max|F|` to one k-space sample (TorchIO ``tio.Spike``). Since
    :math:`\max|F|` is the DC term, the sum of the image, each spike becomes a plane wave of
    amplitude :math:`|r|` times the image mean; the strength, :math:`|r|\sqrt{n}`, is the
    stripe amplitude of :math:`n` spikes relative to the image mean.

    Parameters
    ----------
    positions : array-like of shape (n, 3)
        Spike positions as fractions in [0, 1) of the k-space extent along each axis
        (0.5 is the centre).
    intensity : float
        Spike magnitude :math:`r` relative to the k-space maximum; 0 leaves the image unchanged.

    References
    ----------
    J. Zhuo, R. P. Gullapalli, RadioGraphics 26(1):275–297, 2006 (see :class:`Ghosting`).
    """

    positions: list[list[float]]
    intensity: float

    name: ClassVar[str] = "spike"
    full_scale: ClassVar[float] = 0.5

    def __post_init__(self) -> None:
        self.positions = as_rows(self.positions, "positions")
        if not all(0 <= value < 1 for row in self.positions for value in row):
            raise ValueError(f"positions must lie in [0, 1), got {self.positions}")
        self.intensity = float(self.intensity)

    @property
    def strength(self) -> float:
        """Stripe amplitude relative to the image mean (unitless)."""
        return abs(self.intensity) * math.sqrt(len(self.positions))

    def _apply(self, image: tio.ScalarImage) -> tio.ScalarImage:
        positions = np.array(self.positions).reshape(-1, 3)
        return tio.Spike(spikes_positions=positions, intensity=self.intensity)(image)


class RandomSpike(RandomArtefact):
    r"""Draw k-space spikes at uniformly random positions.

    Parameters
    ----------
    num_spikes : int or (int, int)
        Range :math:`(a, b)` of the number of spikes, :math:`n \sim \mathcal{U}\{a, \dots, b\}`.
    intensity : float or (float, float)
        Range :math:`(a, b)` of the spike magnitude relative to the k-space maximum,
        :math:`r \sim \mathcal{U}(a, b)`. A single :math:`d` means :math:`(0, d)`.

    Notes
    -----
    Each position is :math:`\mathcal{U}[0, 1)^3` in fractions of the k-space extent.
    """

    def __init__(
        self,
        num_spikes: int | tuple[int, int] = (1, 3),
        intensity: float | tuple[float, float] = 0.3,
    ) -> None:
        self.num_spikes = parse_range(num_spikes, "num_spikes", min_value=0, integer=True)
        self.intensity = parse_range(intensity, "intensity", min_value=0)

    def sample(self, rng: np.random.Generator) -> Spike:
        low, high = self.num_spikes
        count = int(rng.integers(low, high, endpoint=True))
        return Spike(positions=rng.random((count, 3)), intensity=rng.uniform(*self.intensity))
