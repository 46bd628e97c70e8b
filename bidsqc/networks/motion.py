"""The motion network: a motion grade and a distribution over the Jenkinson RMS motion in mm."""

from __future__ import annotations

from collections.abc import Sequence

from bidsqc.networks.bins import RMS_BINS
from bidsqc.networks.grade_rms import GradeRmsNet

__all__ = ["MotionNet"]


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
