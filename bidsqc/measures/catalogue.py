"""The catalogue of measures: what each column means, its units, which way is better."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from bidsqc.validity import MIN_BRAIN_COVERAGE

__all__ = [
    "MEASURES",
    "MeasureInfo",
]


@dataclass(frozen=True)
class MeasureInfo:
    """What one measure means, for the JSON column dictionary and the reports."""

    name: str
    description: str
    units: str
    better: str  # "higher", "lower" or a phrase such as "closer to 1"
    reference: str = ""
    levels: Mapping[str, str] | None = None  # meaning of each value of a categorical column


MEASURES: dict[str, MeasureInfo] = {
    info.name: info
    for info in (
        MeasureInfo(
            "snr",
            "Signal-to-noise ratio: mean intensity over its standard deviation in grey and white "
            "matter, averaged over the two tissues. Low values mean a noisy image.",
            "unitless",
            "higher",
            "Dietrich et al. 2007, doi:10.1002/jmri.20969",
        ),
        MeasureInfo(
            "snr_wm_local",
            "Signal-to-noise ratio of the subject's own white matter on the 1 mm grid, read in "
            "16 mm blocks (median over blocks). Low values mean noise, or the fine ringing that "
            "head motion leaves inside the brain; compare within one protocol. n/a for images "
            "registered by another pipeline.",
            "unitless",
            "higher",
            "Dietrich et al. 2007, doi:10.1002/jmri.20969",
        ),
        MeasureInfo(
            "cnr",
            "Contrast-to-noise ratio: the grey/white-matter intensity difference over the noise "
            "of air and tissues. Low values mean poor tissue contrast or a noisy image.",
            "unitless",
            "higher",
            "Magnotta & Friedman 2006, doi:10.1007/s10278-006-0264-x",
        ),
        MeasureInfo(
            "cjv",
            "Coefficient of joint variation: spread of grey and white matter over their "
            "difference. High values mean noise, bias field or weak contrast.",
            "unitless",
            "lower",
            "Ganzetti et al. 2016, doi:10.3389/fninf.2016.00010",
        ),
        MeasureInfo(
            "efc",
            "Entropy focus criterion: how evenly the image energy is spread over the field of "
            "view (0-1). High values mean ghosting or blurring, typically from head motion.",
            "unitless",
            "lower",
            "Atkinson et al. 1997, doi:10.1109/42.650886",
        ),
        MeasureInfo(
            "fber",
            "Foreground-background energy ratio: energy in the head over energy in the air "
            "(capped at 1e6 when the background is empty, as in skull-stripped images). "
            "Low values mean ghosts or noise in the background.",
            "unitless",
            "higher",
            "Shehzad et al. 2015, doi:10.3389/conf.fninf.2015.91.00047",
        ),
        MeasureInfo(
            "wm2max",
            "White-matter median intensity over the 99.95th percentile of the image. Low values "
            "mean a few very bright voxels squeeze the tissue into a small intensity range.",
            "unitless",
            "higher",
            "Esteban et al. 2017, doi:10.1371/journal.pone.0184661",
        ),
        MeasureInfo(
            "inu_med",
            "Median of the estimated bias field (N4) in the brain: the overall gain it applies.",
            "unitless",
            "closer to 1",
            "Tustison et al. 2010, doi:10.1109/TMI.2010.2046908",
        ),
        MeasureInfo(
            "inu_range",
            "Spread (95th minus 5th percentile) of the estimated bias field in the brain. High "
            "values mean strong intensity non-uniformity (shading) across the brain.",
            "unitless",
            "lower",
            "Tustison et al. 2010, doi:10.1109/TMI.2010.2046908",
        ),
        MeasureInfo(
            "fwhm_avg",
            "Smoothness of the image in the brain (full width at half maximum, averaged over "
            "the three axes). High values mean a blurred image, e.g. motion or thick slices.",
            "mm",
            "lower",
            "Forman et al. 1995, doi:10.1002/mrm.1910330508",
        ),
        MeasureInfo(
            "mask_dice",
            "Overlap (Dice) between the brain found in the registered image and the template "
            "brain mask. Low values mean a failed or poor registration.",
            "unitless",
            "higher",
            "Dice 1945, doi:10.2307/1932409",
        ),
        MeasureInfo(
            "mask_hd95_mm",
            "95th percentile of the distances between the surfaces of the subject's brain and "
            "the template brain mask. High values mean a misplaced or mis-scaled brain.",
            "mm",
            "lower",
            "Taha & Hanbury 2015, doi:10.1186/s12880-015-0068-x",
        ),
        MeasureInfo(
            "nmi",
            "Normalised mutual information (1-2) between the registered image and the template "
            "around the brain. Low values mean a poor registration or a corrupted image.",
            "unitless",
            "higher",
            "Studholme et al. 1999, doi:10.1016/S0031-3203(98)00091-0",
        ),
        MeasureInfo(
            "rereg_mm",
            "How far the registered image is from the template: the image is registered to the "
            "template again, rigidly and inside the brain, and this is the root-mean-square "
            "displacement of that correction over a head-sized sphere. High values mean a "
            "misregistration.",
            "mm",
            "lower",
            "Jenkinson et al. 2002, doi:10.1006/nimg.2002.1132",
        ),
        MeasureInfo(
            "brain_coverage",
            "Share of the template brain inside the scan's field of view, through its "
            "registration. Below 1 the scan misses part of the brain (a slab planned short of "
            f"the vertex or the cerebellum); below {MIN_BRAIN_COVERAGE:g} the networks and the "
            "other measures are not assessed (not_assessed). n/a for images registered by "
            "another pipeline.",
            "share",
            "higher",
        ),
    )
}
