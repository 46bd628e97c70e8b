"""Losses of the networks: grade cross-entropy with KL over mm bins, and the artefact loss."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import Tensor, nn

from bidsqc.networks import RMS_BINS, ArtefactOutput, GradeRmsOutput, SoftBins

__all__ = [
    "ArtefactLoss",
    "GradeRmsLoss",
    "grade_class_weights",
]

logger = logging.getLogger(__name__)


class ArtefactLoss(nn.Module):
    r"""Focal loss on each artefact's presence plus the squared error of the quality score.

    .. math::

        L = \frac{1}{K} \sum_{a=1}^{K} \mathrm{FL}(p_a, y_a)
            + \lambda \left(\frac{\hat q - q}{10}\right)^2,
        \qquad \mathrm{FL}(p, y) = -\alpha_t (1 - p_t)^\gamma \log p_t

    with :math:`p_t = p` for a present artefact and :math:`1 - p` otherwise (Lin et al. 2017).
    The focal term :math:`(1 - p_t)^\gamma` discounts the easy tiles, most of them clean, so the
    rare and faint artefacts drive training; :math:`\alpha_t = \alpha` for present artefacts
    and :math:`1 - \alpha` otherwise. Both terms start near 0.1 per tile, so :math:`\lambda = 1`
    weighs them alike. Averaged over the batch.

    References
    ----------
    T.-Y. Lin, P. Goyal, R. Girshick, K. He, P. Dollar, "Focal loss for dense object
    detection", ICCV 2017, doi:10.1109/ICCV.2017.324.
    """

    def __init__(self, gamma: float = 2.0, alpha: float = 0.5, quality_weight: float = 1.0) -> None:
        super().__init__()
        self.gamma = gamma
        self.alpha = alpha
        self.quality_weight = quality_weight

    def forward(self, output: ArtefactOutput, target: Mapping[str, Tensor]) -> Tensor:
        presence = target["presence"]
        log_p = nn.functional.logsigmoid(output.presence_logits)
        log_not_p = nn.functional.logsigmoid(-output.presence_logits)
        log_p_t = presence * log_p + (1 - presence) * log_not_p
        alpha_t = presence * self.alpha + (1 - presence) * (1 - self.alpha)
        focal = -alpha_t * (1 - log_p_t.exp()) ** self.gamma * log_p_t
        quality = ((output.quality - target["quality"]) / 10) ** 2
        return focal.mean() + self.quality_weight * quality.mean()


def grade_class_weights(grades: ArrayLike, n_classes: int = 3) -> Tensor:
    r"""Inverse-frequency class weights :math:`w_c = N / (K N_c)`, for a weighted cross-entropy.

    A balanced training set gets weights of 1. A class absent from ``grades`` gets weight 0
    (with a warning): it has no sample to weight.
    """
    counts = np.bincount(np.asarray(grades, dtype=int), minlength=n_classes).astype(float)
    if counts.size > n_classes:
        raise ValueError(f"grades must lie in [0, {n_classes - 1}], got up to {counts.size - 1}")
    if (counts == 0).any():
        logger.warning("no training sample of grade(s) %s", np.flatnonzero(counts == 0).tolist())
    weights = np.divide(counts.sum(), n_classes * counts, out=np.zeros(n_classes), where=counts > 0)
    return torch.tensor(weights, dtype=torch.float32)


class GradeRmsLoss(nn.Module):
    r"""Weighted cross-entropy on the grade plus KL divergence on the binned motion.

    .. math::

        L = \mathrm{CE}_w(\text{grade logits}, g)
            + \lambda \, \mathrm{KL}\big(p(r) \,\|\, q\big)

    where :math:`p(r)` is :meth:`SoftBins.soft_label` of the true RMS :math:`r` and :math:`q` the
    predicted distribution; the KL term is averaged over the batch (``reduction="batchmean"``).
    Both terms are in nats per sample and start at similar sizes (:math:`\ln 3 \approx 1.1` and
    about 2 for an untrained network), so :math:`\lambda = 1` weighs them equally.

    Parameters
    ----------
    class_weights : torch.Tensor of shape (3,)
        Grade weights, e.g. :func:`grade_class_weights` of the training grades.
    bins : SoftBins
        Bins of the motion head.
    sigma_mm : float
        Width of the soft label, in mm (two bins by default).
    kl_weight : float
        :math:`\lambda`.
    """

    def __init__(
        self,
        class_weights: Tensor,
        bins: SoftBins = RMS_BINS,
        sigma_mm: float = 1.0,
        kl_weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.cross_entropy = nn.CrossEntropyLoss(weight=class_weights)
        self.kl_divergence = nn.KLDivLoss(reduction="batchmean")
        self.bins = bins
        self.sigma_mm = sigma_mm
        self.kl_weight = kl_weight

    def forward(self, output: GradeRmsOutput, target: Mapping[str, Tensor]) -> Tensor:
        soft_label = self.bins.soft_label(target["rms_mm"], self.sigma_mm)
        return self.cross_entropy(
            output.grade_logits, target["grade"]
        ) + self.kl_weight * self.kl_divergence(output.mm_log_probs, soft_label)
