"""Noise, contrast, background, bias-field and smoothness measures, and :func:`compute_iqms`."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from bidsqc.data import Template, head_box, head_box_brain_mask, on_head_box
from bidsqc.measures.alignment import brain_coverage, mask_dice, mask_hd95_mm, nmi, rereg_mm
from bidsqc.measures.catalogue import MEASURES
from bidsqc.measures.masks import (
    BACKGROUND_MARGIN,
    MIN_AIR_FRACTION,
    WM_EROSION,
    dilate,
    estimate_brain_mask,
    estimate_head_mask,
    nmi_region,
    own_white_matter,
    tissue_mask,
)
from bidsqc.measures.robust import location_scale

__all__ = [
    "FBER_MAX",
    "SNR_BLOCK",
    "SNR_BLOCK_SHARE",
    "cjv",
    "cnr",
    "compute_iqms",
    "efc",
    "fber",
    "fwhm_avg",
    "fwhm_axes",
    "inu_med",
    "inu_range",
    "local_snr",
    "snr",
    "snr_wm_local",
    "wm2max",
]

logger = logging.getLogger(__name__)


#: Edge (voxels, 16 mm on the 1 mm grid) of the blocks of :func:`local_snr`.
SNR_BLOCK = 16

#: Least share of a block that the mask must cover for :func:`local_snr` to count the block.
SNR_BLOCK_SHARE = 0.25

#: Ceiling of FBER: the background energy is floored at 1 / FBER_MAX of the foreground energy.
FBER_MAX = 1e6


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


def local_snr(image: np.ndarray, mask: np.ndarray, block: int = SNR_BLOCK) -> float:
    r"""Signal-to-noise ratio read block by block: the median over blocks of the mean over the
    SD of ``mask``'s voxels in each.

    .. math::

        \text{SNR}_{local} = \operatorname*{median}_{b}\; \frac{\mu_b}{\sigma_b}

    over the cubes :math:`b` of ``block`` voxels a side that tile the grid (a remainder at the
    far edges is left out) and hold at least :data:`SNR_BLOCK_SHARE` of mask voxels. Within a
    block the bias field is nearly flat and the tissue's own variation small, so what is left
    is noise and artefact; the median over blocks makes it a property of the whole image.
    Unitless, higher is better. NaN (logged) when no block has enough mask voxels with a spread.
    """
    counts = [n // block for n in image.shape]
    usable = tuple(slice(0, n * block) for n in counts)

    def blocks(volume: np.ndarray) -> np.ndarray:
        shape = [m for n in counts for m in (n, block)]
        tiled = volume[usable].reshape(shape).transpose(0, 2, 4, 1, 3, 5)
        return tiled.reshape(-1, block**3)

    values, inside = blocks(image.astype(np.float64)), blocks(mask)
    n = inside.sum(axis=1)
    mean = np.where(inside, values, 0).sum(axis=1) / np.maximum(n, 1)
    variance = np.where(inside, (values - mean[:, None]) ** 2, 0).sum(axis=1) / np.maximum(n, 1)
    counted = (n >= SNR_BLOCK_SHARE * block**3) & (variance > 0)
    if not counted.any():
        logger.warning("local_snr: no block holds enough of the mask with an intensity spread")
        return float("nan")
    return float(np.median(mean[counted] / np.sqrt(variance[counted])))


def snr_wm_local(fine: np.ndarray, template: Template) -> float:
    """:func:`local_snr` of the subject's own white matter on the 1 mm head box.

    ``fine`` is the image resampled once from its native grid onto the 1 mm head box; the white
    matter is :func:`~bidsqc.measures.masks.own_white_matter` inside the template brain mask.
    Head motion during a 3D acquisition leaves k-space lines inconsistent, and what they carry
    comes back as fine ringing over the whole brain, which :func:`snr` on the 2 mm grid
    averages away with the thermal noise and this measure keeps. MRIQC's ``snr_wm`` (native
    grid, FSL FAST white matter, one ratio over the whole tissue) has Spearman -0.83 with the
    neuroradiologists' motion scores of MR-ART's 436 scans. Its level depends on field
    strength, voxel size, coil and reconstruction, so compare it within one protocol.
    Reference: Dietrich et al., JMRI 26:375-385 (2007), doi:10.1002/jmri.20969.

    Raises ``ValueError`` for a ``fine`` image on another grid or with non-finite values.
    """
    shape = head_box(1)[0]
    if fine.shape != shape:
        raise ValueError(f"the fine image is {fine.shape}, the 1 mm head box is {shape}")
    if not np.isfinite(fine).all():
        raise ValueError("the fine image has non-finite values")
    wm = own_white_matter(
        fine, on_head_box(template.wm, 1), on_head_box(template.gm, 1), head_box_brain_mask(1)
    )
    return local_snr(fine, wm)


def compute_iqms(
    image: np.ndarray,
    *,
    template: Template,
    bias_field: np.ndarray,
    residual: np.ndarray,
    fine: np.ndarray | None = None,
    field_of_view: np.ndarray | None = None,
) -> dict[str, float]:
    """All measures of :data:`MEASURES`, in its order, for one image registered to ``template``.

    ``image`` and ``bias_field`` (the multiplicative N4 field of the same image) must be finite
    arrays on the template grid; ``residual`` is the transform of :func:`rereg_mm`; ``fine`` is the
    image on the 1 mm head box for :func:`snr_wm_local` (NaN without it: an image registered by
    another pipeline has no native grid to start from), and ``field_of_view`` the part of the
    template grid that the scan covers, for :func:`brain_coverage` (NaN without it). The subject's
    grey matter is the template's GM probability > 0.9, its white matter the WM probability > 0.9
    eroded by one voxel, its brain the template brain mask; the air is the non-zero part of the
    background, which lies more than :data:`BACKGROUND_MARGIN` voxels away from
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
    air = ~dilate(head, BACKGROUND_MARGIN) & (image != 0)
    if np.count_nonzero(air) < MIN_AIR_FRACTION * air.size:
        logger.debug("%d air voxels: too few to measure, taken as no air", np.count_nonzero(air))
        air[:] = False
    subject_brain = estimate_brain_mask(image, brain)
    values = {
        "snr": snr(image, [gm, wm]),
        "snr_wm_local": float("nan") if fine is None else snr_wm_local(fine, template),
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
        "brain_coverage": (
            float("nan") if field_of_view is None else brain_coverage(field_of_view, template)
        ),
    }
    return {name: values[name] for name in MEASURES}
