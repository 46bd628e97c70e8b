"""A site-quality network's rating of one image: usable, questionable or unusable.

A site-quality network is the motion network fine-tuned on a site's own ratings
(``bidsqc-finetune --task quality``): its three grades are the site's three ratings.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from bidsqc.inference.grade_rms import predict_grade_rms, worse_than_first
from bidsqc.inference.motion import UNCALIBRATED_MOTION_THRESHOLD
from bidsqc.networks import MotionNet

__all__ = ["SiteQualityPrediction", "predict_site_quality"]


@dataclass(frozen=True)
class SiteQualityPrediction:
    """What a site-quality network says about one image."""

    #: Probabilities of usable, questionable and unusable.
    probabilities: tuple[float, float, float]
    #: The probability of questionable or unusable from which the image is rated so.
    threshold: float = UNCALIBRATED_MOTION_THRESHOLD

    def columns(self) -> dict[str, float | int]:
        """The QC-table columns (:data:`bidsqc.outputs.columns.SITE_QUALITY_COLUMNS`)."""
        usable, questionable, unusable = self.probabilities
        return {
            "p_usable": usable,
            "p_questionable": questionable,
            "p_unusable": unusable,
            "site_rating": worse_than_first(self.probabilities, self.threshold),
        }


def predict_site_quality(
    network: MotionNet, volumes: Iterable[np.ndarray], *, batch_size: int = 8
) -> list[SiteQualityPrediction]:
    """Rate each volume (as :func:`bidsqc.inference.motion.predict_motion` takes them)."""
    threshold = network.thresholds.get("p_motion", UNCALIBRATED_MOTION_THRESHOLD)
    return [
        SiteQualityPrediction(probabilities, threshold)
        for probabilities, _ in predict_grade_rms(
            network, (volume[None] for volume in volumes), batch_size
        )
    ]
