"""How well an image is aligned with the template: masks' overlap, NMI, residual motion, and
how much of the brain the scan covers."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi

from bidsqc.data import Template
from bidsqc.geometry import jenkinson_rms

__all__ = [
    "NMI_BINS",
    "brain_coverage",
    "mask_dice",
    "mask_hd95_mm",
    "nmi",
    "rereg_mm",
]

logger = logging.getLogger(__name__)


#: Joint-histogram bins per axis for NMI.
NMI_BINS = 32


def mask_dice(a: np.ndarray, b: np.ndarray) -> float:
    r"""Dice similarity coefficient of two masks.

    .. math:: \text{DSC} = \frac{2|A \cap B|}{|A| + |B|}

    Unitless in [0, 1], higher is better. Reference: Dice, Ecology 26:297-302 (1945),
    doi:10.2307/1932409. NaN when both masks are empty.
    """
    total = int(a.sum()) + int(b.sum())
    if total == 0:
        logger.warning("mask_dice: both masks are empty")
        return float("nan")
    return 2 * int(np.count_nonzero(a & b)) / total


def _surface(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndi.binary_erosion(mask)


def _bounding_box(mask: np.ndarray) -> tuple[slice, ...]:
    """Smallest box holding ``mask`` plus a one-voxel rim (inside the array)."""
    corners = np.argwhere(mask)
    low = np.maximum(corners.min(axis=0) - 1, 0)
    return tuple(slice(lo, hi + 2) for lo, hi in zip(low, corners.max(axis=0), strict=True))


def mask_hd95_mm(a: np.ndarray, b: np.ndarray, zooms: Sequence[float]) -> float:
    r"""95th percentile of the symmetric surface distances between two masks, in mm.

    .. math::

        \text{HD95} = P_{95}\big(\{d(s, \partial B)\}_{s \in \partial A}
                       \cup \{d(s, \partial A)\}_{s \in \partial B}\big)

    where :math:`\partial A` is the surface of :math:`A` (its voxels with a neighbour outside)
    and :math:`d` the Euclidean distance between voxel centres in mm (distance transforms with
    the voxel sizes ``zooms``). Distances of both directions are pooled before the percentile.
    Lower is better, 0 for identical masks. References: Huttenlocher et al., IEEE TPAMI
    15:850-863 (1993), doi:10.1109/34.232073; Taha & Hanbury, BMC Med Imaging 15:29 (2015),
    doi:10.1186/s12880-015-0068-x. NaN when either mask is empty.
    """
    if not a.any() or not b.any():
        logger.warning("mask_hd95_mm: an empty mask")
        return float("nan")
    box = _bounding_box(a | b)
    surface_a, surface_b = _surface(a[box]), _surface(b[box])
    to_a = ndi.distance_transform_edt(~surface_a, sampling=zooms)
    to_b = ndi.distance_transform_edt(~surface_b, sampling=zooms)
    return float(np.percentile(np.concatenate([to_b[surface_a], to_a[surface_b]]), 95))


def nmi(image: np.ndarray, reference: np.ndarray, mask: np.ndarray, bins: int = NMI_BINS) -> float:
    r"""Normalised mutual information of two images inside ``mask`` (Studholme's form).

    .. math:: \text{NMI} = \frac{H(A) + H(B)}{H(A, B)}

    with Shannon entropies of a ``bins`` x ``bins`` joint histogram over each image's range in
    the mask, both images clipped at their 99.5th percentile there so that a few hot voxels
    cannot squeeze everything else into one bin. Unitless in [1, 2]: 2 when one image
    determines the other (e.g. an image with itself), 1 when they are independent; higher is
    better. It does not need the two contrasts to match, so a FLAIR can be compared with the
    T1w template. Reference: Studholme et al., Pattern Recognit
    32:71-86 (1999), doi:10.1016/S0031-3203(98)00091-0.

    NaN when the mask is empty or both images are constant in it.
    """
    if not mask.any():
        logger.warning("nmi: empty mask")
        return float("nan")
    a, b = (np.minimum(x[mask], np.percentile(x[mask], 99.5)) for x in (image, reference))
    joint, _, _ = np.histogram2d(a, b, bins=bins)
    joint /= joint.sum()

    def entropy(p: np.ndarray) -> float:
        p = p[p > 0]
        return float(-np.sum(p * np.log(p)))

    h_joint = entropy(joint)
    if not h_joint > 0:
        logger.warning("nmi: both images are constant in the mask")
        return float("nan")
    return (entropy(joint.sum(axis=1)) + entropy(joint.sum(axis=0))) / h_joint


def rereg_mm(residual: np.ndarray, template: Template) -> float:
    r"""How far a registered image is from register: the Jenkinson RMS of the transform that
    registers it to the template again, in mm.

    ``residual`` is that transform (4x4, ITK's LPS frame, as
    :func:`bidsqc.preprocessing.residual_misregistration` gives it); the RMS is taken over the
    80 mm sphere at the centroid of the template brain, as the registration-QC network's target
    (:class:`bidsqc.training.pairs.Misalignment`). 0 for an image in register; lower is
    better. References: Jenkinson, FMRIB Technical Report TR99MJ1 (1999); Jenkinson et al.,
    NeuroImage 17:825-841 (2002), doi:10.1006/nimg.2002.1132.
    """
    lps_centre = np.multiply(template.brain_centre, (-1, -1, 1))
    return jenkinson_rms(residual, np.eye(4), centre=lps_centre)


def brain_coverage(field_of_view: np.ndarray, template: Template) -> float:
    """The share of the template brain that the scan covers, in [0, 1]: its voxels inside
    ``field_of_view`` (on the template grid, :func:`bidsqc.preprocessing.field_of_view`).

    A clinical slab planned short of the vertex or of the cerebellum covers less than 1; the
    rest of the template grid is zero fill, which no network was trained on
    (:mod:`bidsqc.validity`).
    """
    return float(field_of_view[template.brain_mask].mean())
