"""The motion network's reading of one image."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from bidsqc.inference.grade_rms import (
    binned_distribution,
    expectation_mm,
    predict_grade_rms,
    worse_than_first,
)
from bidsqc.networks import MotionNet

__all__ = [
    "MotionPrediction",
    "UNCALIBRATED_MOTION_THRESHOLD",
    "predict_motion",
]


#: The probability of motion, ``1 - p_motion_none``, from which a network without a calibrated
#: threshold (``thresholds["p_motion"]``, see :class:`MotionPrediction`) calls an image moved.
UNCALIBRATED_MOTION_THRESHOLD = 0.5


@dataclass(frozen=True)
class MotionPrediction:
    """What the motion network says about one image."""

    #: Probabilities of the grades none, mild and severe.
    grade_probabilities: tuple[float, float, float]
    #: Probability of each bin of :data:`bidsqc.networks.RMS_BINS`.
    mm_distribution: tuple[float, ...]
    #: The probability of motion (mild or severe) from which the image is moved, as calibrated
    #: for the network (its model card's ``calibration``, docs/training.md): the lowest that
    #: calls motion in at most 2 % of the unmoved samples of its validation images.
    #: Its grade "none" was trained on motion up to 4.5 mm too, so an unmoved scan gets
    #: ``p_motion_none`` of 0.74-1.00 from the bundled network, and moved ones often more than
    #: 0.5: the most probable grade would miss them.
    threshold: float = UNCALIBRATED_MOTION_THRESHOLD

    @property
    def grade(self) -> int:
        """0 none while the probability of motion (mild or severe) is below
        :attr:`threshold`; otherwise the more probable of 1 mild and 2 severe."""
        return worse_than_first(self.grade_probabilities, self.threshold)

    @property
    def motion_mm(self) -> float:
        """Expected RMS motion in mm: the mean of :attr:`mm_distribution`."""
        return expectation_mm(self.mm_distribution)

    def columns(self) -> dict[str, float | int]:
        """The QC-table columns (described in :data:`bidsqc.outputs.columns.MOTION_COLUMNS`)."""
        none, mild, severe = self.grade_probabilities
        return {
            "motion_grade": self.grade,
            "p_motion_none": none,
            "p_motion_mild": mild,
            "p_motion_severe": severe,
            "motion_mm": self.motion_mm,
        }

    def to_dict(self) -> dict:
        """JSON-ready: the columns, plus the bins and their probabilities for the report."""
        return self.columns() | binned_distribution(self.mm_distribution)


def predict_motion(
    network: MotionNet,
    volumes: Iterable[np.ndarray],
    *,
    batch_size: int = 8,
) -> list[MotionPrediction]:
    """Grade the motion of each volume (shape 96 x 112 x 96, from :func:`load_preprocessed`).

    Volumes go through the network ``batch_size`` at a time, on the network's device; each
    prediction averages the probabilities of the volume and of its left-right mirror. The grade
    uses the network's calibrated threshold, ``thresholds["p_motion"]``.
    """
    threshold = network.thresholds.get("p_motion", UNCALIBRATED_MOTION_THRESHOLD)
    return [
        MotionPrediction(grade, mm, threshold)
        for grade, mm in predict_grade_rms(
            network, (volume[None] for volume in volumes), batch_size
        )
    ]
