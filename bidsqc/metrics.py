r"""Classical image-quality measures (IQMs) of a T1w or FLAIR image in template space.

Every image reaches this module reoriented to RAS, resampled to 2 mm and affinely registered to
the MNI ICBM152 2009c template (a 96 x 112 x 96 grid). The template's brain mask and tissue
probability maps stand in for the subject's own: with an affine registration they are only
approximately right, so tissue statistics use conservative masks (probability > 0.9, white
matter also eroded by one voxel). Tissue *differences* are taken in absolute value, so that every
measure reads the same way for T1w and for FLAIR (where white matter is darker than grey matter).

All measures are pure NumPy/SciPy functions that return a plain :class:`float`. A measure that
cannot be computed (empty mask, constant image...) returns NaN and logs why on the
``bidsqc.metrics`` logger. Skull-stripped images (background exactly zero) are a normal input:
every measure has a documented finite convention for them.

Masks and conventions
---------------------
- *Tissues*: grey matter is the template GM probability > 0.9; white matter the WM probability
  > 0.9 eroded by one voxel. Their mean and SD are robust (median and 1.4826 x MAD), because
  template masks under an affine registration still catch ventricles and neighbouring tissue.
- *Head*: voxels above 0.1 x the median intensity in the template brain mask, largest
  component, holes filled. *Air*: the non-zero voxels more than 8 mm away from the head; exact
  zeros are fill from outside the field of view or a masked-out background and carry no noise.
  When the air is under 1 % of the grid (skull-stripped or scanner-masked backgrounds) there is
  taken to be no air: CNR then uses :math:`\sigma_{air} = 0` and FBER reaches its cap,
  :math:`10^6`.
- *Brain*: :func:`estimate_brain_mask` finds the subject's brain in the registered image alone;
  ``mask_dice`` and ``mask_hd95_mm`` compare it with the template brain mask.
- EFC and FBER depend on how much of the grid is head: compare skull-stripped images with
  skull-stripped ones and full-head images with full-head ones.

Catalogue
---------
============ ============================================== ============ ==========================
measure      responds to                                    better       reference
============ ============================================== ============ ==========================
snr          noise in grey and white matter                 higher       Dietrich et al. 2007,
                                                                         doi:10.1002/jmri.20969
cnr          noise and loss of grey/white contrast          higher       Magnotta & Friedman 2006,
                                                                         doi:10.1007/s10278-006-0264-x
cjv          noise, bias field, loss of contrast            lower        Ganzetti et al. 2016,
                                                                         doi:10.3389/fninf.2016.00010
efc          ghosting and blurring from head motion         lower        Atkinson et al. 1997,
                                                                         doi:10.1109/42.650886
fber         signal leaking into the background (ghosts)    higher       Shehzad et al. 2015,
                                                                         doi:10.3389/conf.fninf.2015.91.00047
wm2max       white matter squeezed by a few hot voxels      higher       Esteban et al. 2017,
                                                                         doi:10.1371/journal.pone.0184661
inu_med      overall scale of the bias field                closer to 1  Tustison et al. 2010,
                                                                         doi:10.1109/TMI.2010.2046908
inu_range    spatial intensity non-uniformity (bias field)  lower        Tustison et al. 2010,
                                                                         doi:10.1109/TMI.2010.2046908
fwhm_avg     blurring (motion, thick slices, filtering)     lower        Forman et al. 1995,
                                                                         doi:10.1002/mrm.1910330508
mask_dice    registration failure (brain off the template)  higher       Dice 1945,
                                                                         doi:10.2307/1932409
mask_hd95_mm registration failure, local misfit             lower        Taha & Hanbury 2015,
                                                                         doi:10.1186/s12880-015-0068-x
nmi          registration failure, wrong or corrupt image   higher       Studholme et al. 1999,
                                                                         doi:10.1016/S0031-3203(98)00091-0
rereg_mm     misregistration (shift, rotation)              lower        Jenkinson et al. 2002,
                                                                         doi:10.1006/nimg.2002.1132
============ ============================================== ============ ==========================
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from bidsqc.data import Template
from bidsqc.simulation import jenkinson_rms

__all__ = [
    "MEASURES",
    "MeasureInfo",
    "nmi_region",
    "cjv",
    "cnr",
    "compute_iqms",
    "efc",
    "estimate_brain_mask",
    "estimate_head_mask",
    "fber",
    "fwhm_avg",
    "fwhm_axes",
    "inu_med",
    "inu_range",
    "location_scale",
    "mask_dice",
    "mask_hd95_mm",
    "nmi",
    "rereg_mm",
    "snr",
    "tissue_mask",
    "wm2max",
]

logger = logging.getLogger(__name__)

#: Tissue probability above which a template voxel counts as that tissue.
TISSUE_THRESHOLD = 0.9
#: Erosion (voxels) of the white-matter mask, away from partial volume with grey matter.
WM_EROSION = 1
#: Ceiling of FBER: the background energy is floored at 1 / FBER_MAX of the foreground energy.
FBER_MAX = 1e6
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
#: Scales a median absolute deviation to the SD of a Gaussian, 1 / Phi^-1(3/4).
MAD_TO_SD = 1.4826
#: Joint-histogram bins per axis for NMI.
NMI_BINS = 32


@dataclass(frozen=True)
class MeasureInfo:
    """What one measure means, for the JSON column dictionary and the reports."""

    name: str
    description: str
    units: str
    better: str  # "higher", "lower" or a phrase such as "closer to 1"
    reference: str = ""
    levels: Mapping[str, str] | None = None  # meaning of each value of a categorical column


# --- masks -------------------------------------------------------------------------------------


def tissue_mask(probability: np.ndarray, erosion: int = 0) -> np.ndarray:
    """Voxels with tissue probability above :data:`TISSUE_THRESHOLD`, eroded ``erosion`` times."""
    mask = probability > TISSUE_THRESHOLD
    return ndi.binary_erosion(mask, iterations=erosion) if erosion else mask


def _largest_component(mask: np.ndarray) -> np.ndarray:
    labels, n = ndi.label(mask)
    if n < 2:
        return labels > 0
    return labels == np.argmax(np.bincount(labels.ravel())[1:]) + 1


def _dilate(mask: np.ndarray, voxels: int) -> np.ndarray:
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
    return _dilate(template_mask, BRAIN_MARGIN)


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
    region = _dilate(template_mask, BRAIN_MARGIN)
    brain = ndi.binary_opening((image > BRAIN_THRESHOLD * level) & region)
    brain = ndi.binary_closing(_largest_component(brain), iterations=2)
    return ndi.binary_fill_holes(brain)


# --- noise and contrast --------------------------------------------------------------------------


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


def snr(image: np.ndarray, masks: Sequence[np.ndarray]) -> float:
    r"""Signal-to-noise ratio: the mean over tissues of the within-tissue mean over SD.

    .. math:: \text{SNR} = \frac{1}{K}\sum_{k=1}^{K} \frac{\mu_k}{\sigma_k}

    with :math:`\mu_k, \sigma_k` the robust mean and SD (:func:`location_scale`) of tissue
    :math:`k`. :func:`compute_iqms` uses grey and white matter; CSF is left out because FLAIR
    nulls it, so its SNR says nothing about quality. Since the spread inside a tissue also holds
    anatomy and partial volume, this is a lower bound of the thermal SNR. Unitless, higher is
    better. Reference: Dietrich et al., JMRI 26:375-385 (2007), doi:10.1002/jmri.20969.

    NaN when there is no mask, a mask has fewer than two voxels, or a tissue has no spread.
    """
    ratios = []
    for mask in masks:
        mean, std = location_scale(image, mask)
        if not std > 0:
            logger.warning("snr: a tissue mask has < 2 voxels or no intensity spread")
            return float("nan")
        ratios.append(mean / std)
    if not ratios:
        logger.warning("snr: no tissue mask")
        return float("nan")
    return float(np.mean(ratios))


def cnr(image: np.ndarray, gm: np.ndarray, wm: np.ndarray, air: np.ndarray) -> float:
    r"""Contrast-to-noise ratio of grey and white matter.

    .. math::

        \text{CNR} = \frac{|\mu_{GM} - \mu_{WM}|}
                          {\sqrt{\sigma_{air}^2 + \sigma_{GM}^2 + \sigma_{WM}^2}}

    with the robust means and SDs of :func:`location_scale`. Unitless, higher is better.
    ``air`` holds the background voxels with a non-zero intensity. When it has fewer than two
    voxels (a skull-stripped image, whose background is exactly zero) :math:`\sigma_{air}` is
    taken as 0: the noise is then read from the tissues alone, so such images read slightly
    higher and are best compared among themselves. Reference: Magnotta & Friedman,
    J Digit Imaging 19:140-147 (2006), doi:10.1007/s10278-006-0264-x.

    NaN when a tissue mask has fewer than two voxels or the denominator is 0.
    """
    mu_gm, sd_gm = location_scale(image, gm)
    mu_wm, sd_wm = location_scale(image, wm)
    sd_air = location_scale(image, air)[1] if np.count_nonzero(air) > 1 else 0.0
    noise = np.sqrt(sd_air**2 + sd_gm**2 + sd_wm**2)
    if not noise > 0:
        logger.warning("cnr: a tissue mask has < 2 voxels, or there is no noise at all")
        return float("nan")
    return float(abs(mu_gm - mu_wm) / noise)


def cjv(image: np.ndarray, gm: np.ndarray, wm: np.ndarray) -> float:
    r"""Coefficient of joint variation of grey and white matter.

    .. math:: \text{CJV} = \frac{\sigma_{WM} + \sigma_{GM}}{|\mu_{WM} - \mu_{GM}|}

    with the robust means and SDs of :func:`location_scale`. Unitless, lower is better: it grows
    with noise, bias field and loss of contrast. Reference: Ganzetti et al., Front Neuroinform
    10:10 (2016), doi:10.3389/fninf.2016.00010.

    NaN when a tissue mask has fewer than two voxels or the two tissue means are equal.
    """
    mu_gm, sd_gm = location_scale(image, gm)
    mu_wm, sd_wm = location_scale(image, wm)
    contrast = abs(mu_wm - mu_gm)
    if not contrast > 0:
        logger.warning("cjv: a tissue mask has < 2 voxels, or there is no grey/white contrast")
        return float("nan")
    return float((sd_wm + sd_gm) / contrast)


def wm2max(image: np.ndarray, wm: np.ndarray) -> float:
    r"""White-matter median over the 99.95th percentile of the whole image.

    .. math:: \text{WM2MAX} = \frac{\operatorname{median}(I_{WM})}{P_{99.95}(I)}

    Unitless, higher is better: a low value means a few very bright voxels (vessels, fat,
    artefacts) take most of the dynamic range. FLAIR reads lower than T1w, its white matter
    being darker than grey matter. Reference: Esteban et al., PLoS One 12:e0184661 (2017),
    doi:10.1371/journal.pone.0184661.

    NaN when the white-matter mask is empty or the percentile is not positive.
    """
    top = float(np.percentile(image, 99.95))
    if not wm.any() or not top > 0:
        logger.warning("wm2max: empty white-matter mask or non-positive image")
        return float("nan")
    return float(np.median(image[wm]) / top)


# --- background ----------------------------------------------------------------------------------


def efc(image: np.ndarray) -> float:
    r"""Entropy focus criterion, normalised by its maximum.

    .. math::

        E = -\sum_{j=1}^{N} \frac{x_j}{B} \ln\frac{x_j}{B}, \quad
        B = \sqrt{\sum_j x_j^2}, \quad
        \text{EFC} = \frac{E}{E_{max}}, \quad E_{max} = \frac{\sqrt{N}}{2} \ln N

    over the :math:`N` voxels of the grid (:math:`x_j = |I_j|`). :math:`E_{max}` is the entropy of
    a uniform image, so EFC runs from 0 (all energy in one voxel) to 1 (energy spread evenly).
    Unitless, lower is better: ghosting and blurring spread energy out of the head. A
    skull-stripped image reads lower than a full-head one, so compare within one kind.
    Reference: Atkinson et al., IEEE TMI 16:903-910 (1997), doi:10.1109/42.650886.

    NaN when the image has no energy (all zero) or a single voxel.
    """
    x = np.abs(image.astype(np.float64).ravel())
    energy = np.sqrt(np.sum(x**2))
    if not energy > 0 or x.size < 2:
        logger.warning("efc: image without energy or with a single voxel")
        return float("nan")
    p = x[x > 0] / energy
    return float(-np.sum(p * np.log(p)) / (np.sqrt(x.size) / 2 * np.log(x.size)))


def fber(image: np.ndarray, foreground: np.ndarray, background: np.ndarray) -> float:
    r"""Foreground-background energy ratio.

    .. math::

        \text{FBER} = \frac{E_{fg}}{\max(E_{bg},\; E_{fg} / \text{FBER}_{max})},
        \qquad E = \operatorname{mean}(|I|^2)

    Unitless, higher is better: ghosts and noise put energy in the background.
    :func:`compute_iqms` passes the head as foreground and the air (non-zero background) as
    background, so that zero fill outside the field of view does not dilute the background
    energy. An empty background, or one without energy (a skull-stripped image), would make
    the ratio infinite; the background energy is therefore floored at :math:`10^{-6}` of the
    foreground energy, so FBER is capped at :data:`FBER_MAX` :math:`= 10^6`, a value that real
    noisy backgrounds stay well below. Reference: Shehzad et al., Front Neuroinform conf. abstract
    (2015), doi:10.3389/conf.fninf.2015.91.00047.

    NaN when the foreground is empty or has no energy.
    """
    e_fg = float(np.mean(image[foreground].astype(np.float64) ** 2)) if foreground.any() else 0.0
    if not e_fg > 0:
        logger.warning("fber: empty foreground, or a foreground without energy")
        return float("nan")
    e_bg = float(np.mean(image[background].astype(np.float64) ** 2)) if background.any() else 0.0
    return e_fg / max(e_bg, e_fg / FBER_MAX)


# --- bias field ----------------------------------------------------------------------------------


def _field_in_mask(field: np.ndarray, mask: np.ndarray) -> np.ndarray | None:
    values = field[mask]
    if values.size == 0:
        logger.warning("inu: empty brain mask")
        return None
    return values


def inu_med(field: np.ndarray, mask: np.ndarray) -> float:
    r"""Median of the multiplicative bias field inside the brain mask.

    .. math:: \text{INU}_{med} = \operatorname{median}(b_{brain})

    Unitless (the field is a gain), closer to 1 is better. Reference (N4 field):
    Tustison et al., IEEE TMI 29:1310-1320 (2010), doi:10.1109/TMI.2010.2046908.
    NaN when the mask is empty.
    """
    values = _field_in_mask(field, mask)
    return float("nan") if values is None else float(np.median(values))


def inu_range(field: np.ndarray, mask: np.ndarray) -> float:
    r"""5-95 % range of the multiplicative bias field inside the brain mask.

    .. math:: \text{INU}_{range} = P_{95}(b_{brain}) - P_{5}(b_{brain})

    Unitless, lower is better (0 for a flat field; with N4's field, whose median is close to 1,
    0.3 means a ~30 % intensity modulation across the brain). Reference: Tustison et al.,
    IEEE TMI 29:1310-1320 (2010), doi:10.1109/TMI.2010.2046908. NaN when the mask is empty.
    """
    values = _field_in_mask(field, mask)
    if values is None:
        return float("nan")
    p5, p95 = np.percentile(values, [5, 95])
    return float(p95 - p5)


# --- smoothness ----------------------------------------------------------------------------------


def fwhm_axes(image: np.ndarray, mask: np.ndarray, zooms: Sequence[float]) -> np.ndarray:
    r"""Per-axis smoothness (mm) from first differences, AFNI 3dFWHMx's "classic" method.

    Assuming a Gaussian autocorrelation, the correlation of neighbours along an axis is
    :math:`\rho = 1 - \overline{\Delta^2} / (2\sigma^2)`, hence

    .. math:: \text{FWHM}_a = \sqrt{\frac{-2 \ln 2}{\ln \rho_a}}\;\Delta x_a

    where :math:`\overline{\Delta^2}` is the mean squared difference between neighbours that
    are both in ``mask``, :math:`\sigma^2` the variance in ``mask`` and :math:`\Delta x_a` the
    voxel size (mm). References: Forman et al., MRM 33:636-647 (1995),
    doi:10.1002/mrm.1910330508; Cox et al., Brain Connect 7:152-171 (2017),
    doi:10.1089/brain.2016.0475.

    An axis is NaN when it has no neighbour pairs or :math:`\rho \notin (0, 1)`.
    """
    image = np.asarray(image, dtype=np.float64)
    variance = image[mask].var() if np.count_nonzero(mask) > 1 else 0.0
    fwhm = np.full(image.ndim, np.nan)
    for axis, zoom in enumerate(zooms):
        along, inside = np.moveaxis(image, axis, 0), np.moveaxis(mask, axis, 0)
        pairs = inside[1:] & inside[:-1]
        if not pairs.any() or not variance > 0:
            continue
        rho = 1 - np.mean((along[1:] - along[:-1])[pairs] ** 2) / (2 * variance)
        if 0 < rho < 1:
            fwhm[axis] = np.sqrt(-2 * np.log(2) / np.log(rho)) * zoom
    return fwhm


def fwhm_avg(image: np.ndarray, mask: np.ndarray, zooms: Sequence[float]) -> float:
    r"""Average over the three axes of :func:`fwhm_axes`, in mm; lower is better (sharper).

    .. math:: \text{FWHM}_{avg} = \tfrac{1}{3}(\text{FWHM}_x + \text{FWHM}_y + \text{FWHM}_z)

    Measured on the 2 mm template grid, so it includes the resampling blur; thick-slice 2D
    acquisitions read higher. NaN (logged) when any axis is undefined.
    """
    fwhm = fwhm_axes(image, mask, zooms)
    if np.isnan(fwhm).any():
        logger.warning("fwhm_avg: smoothness undefined along an axis (%s)", fwhm)
        return float("nan")
    return float(fwhm.mean())


# --- registration --------------------------------------------------------------------------------


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
    (:class:`bidsqc.registration_pairs.Misalignment`). 0 for an image in register; lower is
    better. References: Jenkinson, FMRIB Technical Report TR99MJ1 (1999); Jenkinson et al.,
    NeuroImage 17:825-841 (2002), doi:10.1006/nimg.2002.1132.
    """
    lps_centre = np.multiply(template.brain_centre, (-1, -1, 1))
    return jenkinson_rms(residual, np.eye(4), centre=lps_centre)


# --- entry point ---------------------------------------------------------------------------------


def compute_iqms(
    image: np.ndarray, *, template: Template, bias_field: np.ndarray, residual: np.ndarray
) -> dict[str, float]:
    """All measures of :data:`MEASURES`, in its order, for one image registered to ``template``.

    ``image`` and ``bias_field`` (the multiplicative N4 field of the same image) must be finite
    arrays on the template grid; ``residual`` is the transform of :func:`rereg_mm`. The subject's
    grey matter is the template's GM probability > 0.9, its white matter the WM probability
    > 0.9 eroded by one voxel, its brain the template brain mask; the air is the non-zero part
    of the background, which lies more than :data:`BACKGROUND_MARGIN` voxels away from
    :func:`estimate_head_mask`.
    """
    for name, array in (("image", image), ("bias_field", bias_field)):
        if array.shape != template.shape:
            raise ValueError(f"{name} is {array.shape}, the template grid is {template.shape}")
        if not np.isfinite(array).all():
            raise ValueError(f"{name} has non-finite values")
    zooms = template.zooms
    brain = template.brain_mask
    gm = tissue_mask(template.gm)
    wm = tissue_mask(template.wm, erosion=WM_EROSION)
    head = estimate_head_mask(image, brain)
    air = ~_dilate(head, BACKGROUND_MARGIN) & (image != 0)
    if np.count_nonzero(air) < MIN_AIR_FRACTION * air.size:
        logger.debug("%d air voxels: too few to measure, taken as no air", np.count_nonzero(air))
        air[:] = False
    subject_brain = estimate_brain_mask(image, brain)
    values = {
        "snr": snr(image, [gm, wm]),
        "cnr": cnr(image, gm, wm, air),
        "cjv": cjv(image, gm, wm),
        "efc": efc(image),
        "fber": fber(image, head, air),
        "wm2max": wm2max(image, wm),
        "inu_med": inu_med(bias_field, brain),
        "inu_range": inu_range(bias_field, brain),
        "fwhm_avg": fwhm_avg(image, brain, zooms),
        "mask_dice": mask_dice(subject_brain, brain),
        "mask_hd95_mm": mask_hd95_mm(subject_brain, brain, zooms),
        "nmi": nmi(image, template.t1w, nmi_region(brain)),
        "rereg_mm": rereg_mm(residual, template),
    }
    return {name: values[name] for name in MEASURES}


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
    )
}
