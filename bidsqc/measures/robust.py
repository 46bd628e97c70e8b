"""Robust location and scale: the median and the MAD scaled to a Gaussian SD."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "MAD_TO_SD",
    "MEAN_AD_TO_SD",
    "location_scale",
    "robust_zscores",
]


#: Scale the MAD, and the mean absolute deviation, to the standard deviation of a normal
#: distribution: 1 / Phi^-1(3/4) and sqrt(pi / 2).
MAD_TO_SD = 1.4826
MEAN_AD_TO_SD = 1.2533


def location_scale(image: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    r"""Robust mean and SD of ``image`` in ``mask``: the median and the normalised MAD.

    .. math:: \mu = \operatorname{median}(x), \qquad
              \sigma = 1.4826\, \operatorname{median}(|x - \mu|)

    Both equal the mean and SD for Gaussian noise, and stay right while up to half of the voxels
    belong to something else. The template tissue masks need this: after an affine registration
    they still catch enlarged ventricles, sulcal CSF and the neighbouring tissue.
    Reference: Hampel, J Am Stat Assoc 69:383-393 (1974), doi:10.1080/01621459.1974.10482962.
    NaN for both when the mask has fewer than two voxels.
    """
    values = image[mask].astype(np.float64)
    if values.size < 2:
        return float("nan"), float("nan")
    median = float(np.median(values))
    return median, MAD_TO_SD * float(np.median(np.abs(values - median)))


def robust_zscores(values: ArrayLike) -> np.ndarray:
    """Robust z-scores, ``z = (x - median) / (1.4826 * MAD)``.

    The median and the median absolute deviation (MAD) from it stand in for the mean and
    the standard deviation, so that the outliers being looked for do not mask themselves.

    Parameters
    ----------
    values
        Values of one measure; non-finite values are ignored and get a NaN score.

    Returns
    -------
    numpy.ndarray
        One score per value.

    Notes
    -----
    When more than half the values are equal, the MAD is 0; the mean absolute deviation
    from the median, scaled by 1.2533, takes its place. When that is 0 too, all the values
    are equal and all scores are 0.
    """
    values = np.asarray(values, dtype=float)
    scores = np.full(values.shape, np.nan)
    finite = np.isfinite(values)
    if not finite.any():
        return scores
    median = np.median(values[finite])
    deviations = np.abs(values[finite] - median)
    scale = MAD_TO_SD * np.median(deviations)
    if scale == 0:
        scale = MEAN_AD_TO_SD * deviations.mean()
    scores[finite] = (values[finite] - median) / scale if scale > 0 else 0.0
    return scores
