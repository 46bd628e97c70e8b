"""Intensity inhomogeneity: a smooth multiplicative receive field."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torchio as tio

from bidsqc.training.simulation.base import Artefact, RandomArtefact, check_number, parse_range

__all__ = [
    "BiasField",
    "RandomBiasField",
]


#: Sampling grid for the strength of a bias field, in normalised coordinates.
_BIAS_GRID = (16, 16, 16)


#: Radius, in normalised coordinates, of the central ball where a head's brain lies in the field
#: of view, over which the strength of a bias field is measured.
_BRAIN_RADIUS = 0.7


@dataclass
class BiasField(Artefact):
    r"""Smooth multiplicative intensity inhomogeneity from the receive coil (Van Leemput 1999).

    The field is :math:`\exp\left(\sum_{i+j+k \le p} c_{ijk}\, x^i y^j z^k\right)` with
    :math:`x, y, z \in [-1, 1]` spanning the volume (TorchIO ``tio.BiasField``; coefficients
    in its order, constant term first). Its strength is the log of its max/min ratio over the
    central ball of radius 0.7 (normalised), where the brain of a head lies in the field of
    view, so a field that varies four-fold across the brain has severity 1. Over the whole
    volume it varies much more, but its extremes are in the corners, outside the head, and a
    field weak across the brain is lost in the inhomogeneity real scans already have.

    Parameters
    ----------
    coefficients : sequence of float
        Polynomial coefficients (unitless), :math:`\binom{p+3}{3}` of them.
    order : int
        Polynomial order :math:`p`.

    References
    ----------
    K. Van Leemput, F. Maes, D. Vandermeulen, P. Suetens, "Automated model-based bias field
    correction of MR images of the brain", IEEE TMI 18(10):885–896, 1999.
    """

    coefficients: list[float]
    order: int = 3

    name: ClassVar[str] = "bias"
    full_scale: ClassVar[float] = math.log(4)

    def __post_init__(self) -> None:
        self.coefficients = [float(value) for value in self.coefficients]
        expected = math.comb(self.order + 3, 3)
        if len(self.coefficients) != expected:
            raise ValueError(
                f"coefficients must have {expected} values for order {self.order}, "
                f"got {len(self.coefficients)}"
            )

    @property
    def strength(self) -> float:
        """Log of the field's max/min ratio across the brain-sized central ball (unitless)."""
        field = tio.BiasField.generate_bias_field(
            np.zeros((1, *_BIAS_GRID)), self.order, self.coefficients
        )
        axes = [np.linspace(-1, 1, n) ** 2 for n in _BIAS_GRID]
        inside = sum(np.meshgrid(*axes, indexing="ij", sparse=True)) <= _BRAIN_RADIUS**2
        return float(np.ptp(np.log(field[inside])))

    def _apply(self, image: tio.ScalarImage) -> tio.ScalarImage:
        return tio.BiasField(coefficients=self.coefficients, order=self.order)(image)


class RandomBiasField(RandomArtefact):
    r"""Draw a smooth bias field of random strength.

    Parameters
    ----------
    coefficients : float or (float, float)
        Range :math:`(a, b)` of the coefficient magnitude (unitless): :math:`m \sim
        \mathcal{U}(a, b)`, then every non-constant coefficient :math:`c \sim
        \mathcal{U}(-m, m)`. The constant term is 0, so the field changes contrast across the
        volume but not the overall scale. A single :math:`d` means :math:`(0, d)`.
    order : int
        Polynomial order.
    """

    def __init__(self, coefficients: float | tuple[float, float] = 0.2, order: int = 3) -> None:
        self.coefficients = parse_range(coefficients, "coefficients", min_value=0)
        self.order = check_number(order, "order", min_value=0, integer=True)

    def sample(self, rng: np.random.Generator) -> BiasField:
        magnitude = rng.uniform(*self.coefficients)
        values = rng.uniform(-magnitude, magnitude, math.comb(self.order + 3, 3))
        values[0] = 0.0
        return BiasField(coefficients=values.tolist(), order=self.order)
