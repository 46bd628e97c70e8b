"""What the motion and registration networks share: a grade and a distribution over RMS mm."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

from bidsqc.networks.encoder import EncoderNet

__all__ = ["GradeRmsNet", "GradeRmsOutput"]


class GradeRmsOutput(NamedTuple):
    """What a :class:`GradeRmsNet` returns, for a batch of B inputs."""

    #: Unnormalised scores of the grades, shape (B, n_grades).
    grade_logits: Tensor
    #: Log-probabilities over the bins of :data:`bidsqc.networks.RMS_BINS`, shape (B, n_bins).
    mm_log_probs: Tensor


class GradeRmsNet(EncoderNet):
    """A grade and an amount in mm, read off the same trunk.

    An :class:`EncoderNet` and two linear heads, as in Conv5FC3 (Loizillon et al. 2023) with a
    second, SFCN-style head (Bricout et al.) giving a distribution over :class:`SoftBins` of a
    Jenkinson RMS in mm. A subclass may add :meth:`evidence`: logits of its own, added to the two
    heads' (evidence adds up in logits).

    Args:
        in_channels: number of input channels of the encoder.
        channels: output channels of each encoder block.
        hidden_features: width of each layer of the trunk.
        dropout: dropout probability before each trunk layer.
        n_grades: number of grades.
        n_bins: number of mm bins.
        features: a module applied to the input before the encoder (none by default).
    """

    def __init__(
        self,
        in_channels: int,
        channels: Sequence[int],
        hidden_features: Sequence[int],
        dropout: float,
        n_grades: int,
        n_bins: int,
        features: nn.Module | None = None,
    ) -> None:
        super().__init__(in_channels, channels, hidden_features, dropout, features)
        self.grade_head = nn.Linear(hidden_features[-1], n_grades)
        self.mm_head = nn.Linear(hidden_features[-1], n_bins)

    def evidence(self, x: Tensor) -> Tensor | None:
        """Extra logits, shape (B, n_grades + n_bins), added to the heads'; none here."""
        return None

    def forward(self, x: Tensor) -> GradeRmsOutput:
        features = self.trunk(self.embed(x))
        grade_logits, mm_logits = self.grade_head(features), self.mm_head(features)
        evidence = self.evidence(x)
        if evidence is not None:
            n_grades = grade_logits.shape[1]
            grade_logits = grade_logits + evidence[:, :n_grades]
            mm_logits = mm_logits + evidence[:, n_grades:]
        return GradeRmsOutput(
            grade_logits=grade_logits, mm_log_probs=torch.log_softmax(mm_logits, dim=1)
        )
