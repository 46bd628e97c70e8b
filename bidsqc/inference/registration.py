"""The registration-QC network's reading of an image pair."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from bidsqc.inference.grade_rms import binned_distribution, expectation_mm, predict_grade_rms
from bidsqc.networks import MotionNet

__all__ = [
    "RegistrationPrediction",
    "predict_registration",
]


@dataclass(frozen=True)
class RegistrationPrediction:
    """What the registration-QC network says about one (moving, reference) pair."""

    #: Probabilities of aligned and misregistered.
    class_probabilities: tuple[float, float]
    #: Probability of each bin of :data:`bidsqc.networks.RMS_BINS` (registration error, mm).
    mm_distribution: tuple[float, ...]

    @property
    def p_misregistered(self) -> float:
        return float(self.class_probabilities[1])

    @property
    def error_mm(self) -> float:
        """Expected registration error (Jenkinson RMS) in mm."""
        return expectation_mm(self.mm_distribution)

    def columns(self, suffix: str = "") -> dict[str, float]:
        """The QC-table columns (:data:`bidsqc.outputs.columns.REGISTRATION_COLUMNS`); ``suffix``
        names the reference, e.g. ``"_to_t1w"``."""
        return {
            f"p_misregistered{suffix}": self.p_misregistered,
            f"registration_error{suffix}_mm": self.error_mm,
        }

    def to_dict(self, suffix: str = "") -> dict:
        """JSON-ready: the columns (see :meth:`columns`), plus the error distribution."""
        return self.columns(suffix) | binned_distribution(self.mm_distribution)


def predict_registration(
    network: MotionNet,
    pairs: Iterable[tuple[np.ndarray, np.ndarray]],
    *,
    batch_size: int = 8,
) -> list[RegistrationPrediction]:
    """Judge the alignment of each (moving, reference) pair of preprocessed volumes, as
    :func:`predict_motion` does for single volumes (the mirror flips both)."""
    return [
        RegistrationPrediction(grade, mm)
        for grade, mm in predict_grade_rms(network, (np.stack(pair) for pair in pairs), batch_size)
    ]
