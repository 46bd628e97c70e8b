"""Masks in template space: tissues from the template; head, air and brain from the image."""

from __future__ import annotations

import logging

import numpy as np
from scipy import ndimage as ndi

__all__ = [
    "BACKGROUND_MARGIN",
    "BRAIN_MARGIN",
    "BRAIN_THRESHOLD",
    "HEAD_THRESHOLD",
    "MIN_AIR_FRACTION",
    "TISSUE_THRESHOLD",
    "WM_EROSION",
    "dilate",
    "estimate_brain_mask",
    "estimate_head_mask",
    "nmi_region",
    "own_white_matter",
    "tissue_mask",
]

logger = logging.getLogger(__name__)


#: Tissue probability above which a template voxel counts as that tissue.
TISSUE_THRESHOLD = 0.9


#: Erosion (voxels) of the white-matter mask, away from partial volume with grey matter.
WM_EROSION = 1


#: Margin (voxels, 6 mm) around the template brain mask searched for the brain and used for NMI.
BRAIN_MARGIN = 3


#: Fraction of the median intensity in the template brain mask above which a voxel is tissue.
BRAIN_THRESHOLD = 0.5


#: Fraction of the median intensity in the template brain mask above which a voxel is head.
HEAD_THRESHOLD = 0.1


#: Air voxels needed (fraction of the grid) to measure the noise; fewer means no air at all.
MIN_AIR_FRACTION = 0.01


#: Margin (voxels, 8 mm) between the head and the background (partial volume, ringing).
BACKGROUND_MARGIN = 4


def tissue_mask(probability: np.ndarray, erosion: int = 0) -> np.ndarray:
    """Voxels with tissue probability above :data:`TISSUE_THRESHOLD`, eroded ``erosion`` times."""
    mask = probability > TISSUE_THRESHOLD
    return ndi.binary_erosion(mask, iterations=erosion) if erosion else mask


def own_white_matter(
    image: np.ndarray, wm_probability: np.ndarray, gm_probability: np.ndarray, brain: np.ndarray
) -> np.ndarray:
    """The subject's own white matter: voxels of the brain where the template's white-matter
    probability is above 0.5 and whose intensity is nearer the white-matter level than the
    grey-matter level, eroded by :data:`WM_EROSION` voxels.

    The levels are the medians in the template's sure tissues (:func:`tissue_mask`). The
    intensity decides because an affine registration cannot bring the subject's folds onto the
    template's; "nearer" holds whether white matter is the brighter tissue (T1w) or the darker
    one (FLAIR). Empty when either sure tissue falls outside the brain.
    """
    sure_wm, sure_gm = tissue_mask(wm_probability) & brain, tissue_mask(gm_probability) & brain
    if not sure_wm.any() or not sure_gm.any():
        logger.warning("no sure white or grey matter inside the brain")
        return np.zeros(image.shape, dtype=bool)
    wm_level, gm_level = np.median(image[sure_wm]), np.median(image[sure_gm])
    nearer_wm = np.abs(image - wm_level) < np.abs(image - gm_level)
    mask = brain & (wm_probability > 0.5) & nearer_wm
    return ndi.binary_erosion(mask, iterations=WM_EROSION)


def _largest_component(mask: np.ndarray) -> np.ndarray:
    labels, n = ndi.label(mask)
    if n < 2:
        return labels > 0
    return labels == np.argmax(np.bincount(labels.ravel())[1:]) + 1


def dilate(mask: np.ndarray, voxels: int) -> np.ndarray:
    """``mask`` grown by ``voxels`` steps of 18-connectivity (a rounded margin)."""
    return ndi.binary_dilation(mask, ndi.generate_binary_structure(3, 2), iterations=voxels)


def _tissue_level(image: np.ndarray, template_mask: np.ndarray) -> float:
    """Median intensity inside the template brain mask; NaN (logged) when not positive."""
    level = float(np.median(image[template_mask])) if template_mask.any() else 0.0
    if not level > 0:
        logger.warning("no signal inside the template brain mask")
        return float("nan")
    return level


def nmi_region(template_mask: np.ndarray) -> np.ndarray:
    """Where :func:`nmi` compares an image with its reference: the template brain grown by
    :data:`BRAIN_MARGIN` voxels, so that a shifted brain edge counts."""
    return dilate(template_mask, BRAIN_MARGIN)


def estimate_head_mask(image: np.ndarray, template_mask: np.ndarray) -> np.ndarray:
    """The head (or, for a skull-stripped image, the brain) in template space.

    Voxels brighter than :data:`HEAD_THRESHOLD` times the median intensity inside the template
    brain mask; largest connected component, closed by two voxels, holes filled slice by slice
    along the last (inferior-superior) axis, because the head is open at the neck and a 3D fill
    would leave the dark skull out. Empty when the median inside the template mask is not
    positive.
    """
    level = _tissue_level(image, template_mask)
    if np.isnan(level):
        return np.zeros(image.shape, dtype=bool)
    head = ndi.binary_closing(_largest_component(image > HEAD_THRESHOLD * level), iterations=2)
    for k in range(head.shape[-1]):
        head[..., k] = ndi.binary_fill_holes(head[..., k])
    return head


def estimate_brain_mask(image: np.ndarray, template_mask: np.ndarray) -> np.ndarray:
    """The subject's brain in template space, from the registered image alone.

    1. Search region: the template brain mask dilated by :data:`BRAIN_MARGIN` voxels.
    2. Tissue: voxels of the region brighter than :data:`BRAIN_THRESHOLD` times the median
       intensity inside the template brain mask. Grey and white matter of T1w and FLAIR pass;
       CSF, skull and zero background do not.
    3. A one-voxel opening cuts thin bridges to the scalp; the largest connected component is
       the brain; a two-voxel closing puts back sulcal CSF; 3D holes (ventricles) are filled.

    A well-registered skull-stripped brain reproduces the template mask (Dice > 0.9); a shifted
    one does not. In full-head images, bright tissue next to the brain (dura, marrow, scalp)
    that survives the opening makes the mask larger than the brain, so their Dice with the
    template mask is a few points lower even when the registration is right. Empty when the
    median inside the template mask is not positive.
    """
    level = _tissue_level(image, template_mask)
    if np.isnan(level):
        return np.zeros(image.shape, dtype=bool)
    region = dilate(template_mask, BRAIN_MARGIN)
    brain = ndi.binary_opening((image > BRAIN_THRESHOLD * level) & region)
    brain = ndi.binary_closing(_largest_component(brain), iterations=2)
    return ndi.binary_fill_holes(brain)
