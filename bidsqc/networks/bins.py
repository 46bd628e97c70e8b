"""Soft bins: a distribution over a mm scale, its Gaussian soft labels and its expectation."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "RMS_BINS",
    "SoftBins",
]


@dataclass(frozen=True)
class SoftBins:
    r"""Equally spaced bins over the motion RMS in mm, for a network that outputs a distribution.

    As SFCN does for brain age (Peng et al. 2021), the target is not one number but a Gaussian
    soft label over bin centres :math:`c_k = k \, \Delta` (:math:`k = 0 \dots n-1`,
    :math:`\Delta = \mathrm{max\_mm} / (n - 1)`):

    .. math::

        p_k(r) = \frac{\exp(-(c_k - r)^2 / 2\sigma^2)}{\sum_j \exp(-(c_j - r)^2 / 2\sigma^2)}

    and the estimate is the expectation :math:`\hat r = \sum_k q_k c_k` of the predicted
    distribution :math:`q`. :data:`RMS_BINS`, 50 bins 0.5 mm apart from 0 to 24.5 mm, holds
    the whole 6–8° / 6–8 mm range of Loizillon et al. (RMS 14.3–18.4 mm, docs/simulation.md) and
    the 20 mm full scale of the motion severity with room to spare. A first centre at 0 lets the
    network say "no motion" exactly.

    Near the ends of the range the label is cut off, so its expectation is pulled inwards: at
    :math:`r = 0` it is 0.65 mm for :math:`\sigma` = 1 mm and 0.5 mm bins (about
    :math:`\sigma \sqrt{2/\pi}` for narrow bins). Grade thresholds (4.5 and 11.7 mm) are far
    from both ends.

    Args:
        n_bins: number of bins.
        max_mm: centre of the last bin, in mm.

    Examples:
        >>> bins = SoftBins(n_bins=50, max_mm=24.5)
        >>> label = bins.soft_label(torch.tensor([7.3]))
        >>> round(float(bins.expectation(label.log())[0]), 2)
        7.3
    """

    n_bins: int
    max_mm: float

    def __post_init__(self) -> None:
        if self.n_bins < 2:
            raise ValueError(f"n_bins must be at least 2, got {self.n_bins}")
        if not self.max_mm > 0:
            raise ValueError(f"max_mm must be positive, got {self.max_mm}")

    def centres(self, device: torch.device | str | None = None) -> Tensor:
        """Bin centres in mm, shape (n_bins,)."""
        return torch.linspace(0.0, self.max_mm, self.n_bins, device=device)

    def soft_label(self, rms_mm: Tensor, sigma_mm: float = 1.0) -> Tensor:
        """Gaussian soft labels, shape (B, n_bins), each summing to 1, of RMS values shape (B,).

        Raises ``ValueError`` for an RMS outside ``[0, max_mm]``, which the bins cannot hold.
        """
        if not sigma_mm > 0:
            raise ValueError(f"sigma_mm must be positive, got {sigma_mm}")
        if not bool(((rms_mm >= 0) & (rms_mm <= self.max_mm)).all()):
            raise ValueError(f"rms_mm must lie in [0, {self.max_mm}] mm, got {rms_mm.tolist()}")
        centres = self.centres(rms_mm.device)
        distance = (centres[None, :] - rms_mm[:, None].to(centres.dtype)) / sigma_mm
        return torch.softmax(-0.5 * distance**2, dim=1)

    def expectation(self, log_probs: Tensor) -> Tensor:
        """Expected motion in mm, shape (B,), of log-probabilities shape (B, n_bins)."""
        if log_probs.ndim != 2 or log_probs.shape[1] != self.n_bins:
            raise ValueError(
                f"expected log-probabilities of shape (batch, {self.n_bins}), "
                f"got {tuple(log_probs.shape)}"
            )
        return log_probs.exp() @ self.centres(log_probs.device).to(log_probs.dtype)


#: The bins of the mm heads of :class:`GradeRmsNet` (motion, registration error): 50 (Bricout
#: et al.), 0.5 mm apart from 0 mm.
RMS_BINS = SoftBins(n_bins=50, max_mm=24.5)
