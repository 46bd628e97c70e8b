"""The motion network: a motion grade and a distribution over the Jenkinson RMS motion in mm."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from bidsqc.networks.bins import RMS_BINS
from bidsqc.networks.grade_rms import GradeRmsNet, GradeRmsOutput

__all__ = ["MotionNet", "ProbedMotionNet"]


class MotionNet(GradeRmsNet):
    """Motion grade (none, mild, severe) and motion amount (mm) from one registered image.

    A :class:`GradeRmsNet` with one input channel and three grades.

    Args:
        channels: output channels of each encoder block.
        hidden_features: width of each layer of the trunk.
        dropout: dropout probability before each trunk layer.
        n_bins: number of motion bins.

    Input shape ``(1, X, Y, Z)``; outputs of shapes ``(3,)`` and ``(n_bins,)``.

    Examples:
        >>> import torch
        >>> net = MotionNet()
        >>> net(torch.zeros(2, 1, 32, 32, 32)).mm_log_probs.shape
        torch.Size([2, 50])
    """

    def __init__(
        self,
        channels: Sequence[int] = (8, 16, 32, 64, 128),
        hidden_features: Sequence[int] = (256, 64),
        dropout: float = 0.5,
        n_bins: int = RMS_BINS.n_bins,
    ) -> None:
        super().__init__(1, channels, hidden_features, dropout, n_grades=3, n_bins=n_bins)


class ProbedMotionNet(MotionNet):
    """A :class:`MotionNet` whose grade is a linear probe of its encoder's embedding.

    What ``bidsqc-finetune --method embedding`` trains: a small model on the frozen embeddings
    of a pretrained network (Bricout et al.). The probe reads the embedding standardised by
    the mean and scale of the site's images; the distribution over mm stays the pretrained
    network's, and so does its grade head, which the probe replaces.

    Takes the arguments of :class:`MotionNet`.

    Examples:
        >>> import torch
        >>> net = ProbedMotionNet()
        >>> net(torch.zeros(2, 1, 32, 32, 32)).grade_logits.shape
        torch.Size([2, 3])
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        width = self.encoder.out_features
        self.probe = nn.Linear(width, 3)
        self.register_buffer("embedding_mean", torch.zeros(width))
        self.register_buffer("embedding_scale", torch.ones(width))

    def probe_logits(self, embedding: Tensor) -> Tensor:
        """Grade logits of embeddings, shape (B, channels[-1]) to (B, 3)."""
        return self.probe((embedding - self.embedding_mean) / self.embedding_scale)

    def forward(self, x: Tensor) -> GradeRmsOutput:
        embedding = self.embed(x)
        mm_logits = self.mm_head(self.trunk(embedding))
        return GradeRmsOutput(
            grade_logits=self.probe_logits(embedding),
            mm_log_probs=torch.log_softmax(mm_logits, dim=1),
        )
