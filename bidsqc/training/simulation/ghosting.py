"""Ghosting: periodic attenuation of k-space planes, replicating the head along the phase axis."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torchio as tio

from bidsqc.training.simulation.base import Artefact, RandomArtefact, check_number, parse_range

__all__ = [
    "Ghosting",
    "RandomGhosting",
]


@dataclass
class Ghosting(Artefact):
    r"""Discrete ghosts along the phase-encoding axis from periodic signal changes.

    Every ``num_ghosts``-th k-space plane along ``axis`` is scaled by :math:`1 - s` (the central
    plane is kept), as pulsatile flow or breathing would do (TorchIO ``tio.Ghosting``). Scaling
    a comb of period :math:`n` subtracts :math:`n` copies of the image, each of amplitude
    :math:`s/n` and shifted by a multiple of the field of view over :math:`n`; the shifted
    copies are the ghosts. The strength is the amplitude of one ghost relative to the signal,
    :math:`s/n`: more ghosts are fainter ghosts, so :math:`s \cdot n` would rank them backwards.
    It is largest, 0.5, for two ghosts at :math:`s = 1`.

    Parameters
    ----------
    num_ghosts : int
        Period :math:`n \ge 2` of the attenuated planes, i.e. the number of image copies.
    axis : int
        Array axis (0, 1 or 2) taken as the phase-encoding direction.
    intensity : float
        Attenuation :math:`s \in [0, 1]` of the modulated planes; 0 leaves the image unchanged.

    References
    ----------
    J. Zhuo, R. P. Gullapalli, "AAPM/RSNA physics tutorial for residents: MR artifacts,
    safety, and quality control", RadioGraphics 26(1):275–297, 2006.
    """

    num_ghosts: int
    axis: int
    intensity: float

    name: ClassVar[str] = "ghosting"
    full_scale: ClassVar[float] = 0.5

    def __post_init__(self) -> None:
        self.num_ghosts = check_number(self.num_ghosts, "num_ghosts", min_value=2, integer=True)
        self.intensity = check_number(self.intensity, "intensity", min_value=0, max_value=1)
        if self.axis not in (0, 1, 2):
            raise ValueError(f"axis must be 0, 1 or 2, got {self.axis!r}")

    @property
    def strength(self) -> float:
        """Amplitude of one ghost relative to the signal (unitless)."""
        return self.intensity / self.num_ghosts

    def _apply(self, image: tio.ScalarImage) -> tio.ScalarImage:
        transform = tio.Ghosting(
            num_ghosts=self.num_ghosts, axis=self.axis, intensity=self.intensity, restore=None
        )
        return transform(image)


class RandomGhosting(RandomArtefact):
    r"""Draw ghosting along a random phase-encoding axis.

    Parameters
    ----------
    num_ghosts : int or (int, int)
        Range :math:`(a, b)` of the number of image copies,
        :math:`n \sim \mathcal{U}\{a, \dots, b\}`, :math:`a \ge 2`.
    axes : sequence of int
        Candidate phase-encoding axes; one is picked uniformly.
    intensity : float or (float, float)
        Range :math:`(a, b) \subseteq [0, 1]` of the attenuation,
        :math:`s \sim \mathcal{U}(a, b)`. A single :math:`d` means :math:`(0, d)`.
    """

    def __init__(
        self,
        num_ghosts: int | tuple[int, int] = (2, 6),
        axes: Sequence[int] = (0, 1, 2),
        intensity: float | tuple[float, float] = 1.0,
    ) -> None:
        self.num_ghosts = parse_range(num_ghosts, "num_ghosts", min_value=2, integer=True)
        self.axes = tuple(axes)
        if not self.axes or any(axis not in (0, 1, 2) for axis in self.axes):
            raise ValueError(f"axes must be a non-empty subset of (0, 1, 2), got {axes!r}")
        self.intensity = parse_range(intensity, "intensity", min_value=0, max_value=1)

    def sample(self, rng: np.random.Generator) -> Ghosting:
        low, high = self.num_ghosts
        return Ghosting(
            num_ghosts=int(rng.integers(low, high, endpoint=True)),
            axis=int(rng.choice(self.axes)),
            intensity=rng.uniform(*self.intensity),
        )
