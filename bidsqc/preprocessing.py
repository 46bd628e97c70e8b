"""Bring an anatomical image into template space: reorient, resample, register, crop.

Every function takes and returns nibabel images (or arrays), so each one can be tested alone
and wrapped by a thin nipype interface (:mod:`bidsqc.interfaces.preprocessing`).

Registration aligns brains. The bundled template is brain-extracted, while raw BIDS data are
full heads, often with the neck, and the atrophied brains of the elderly and the small heads of
children sit in them differently from an adult's. So the brain is found first
(:func:`bidsqc.brain_extraction.extract_brain`) and only it, dilated by one voxel, is registered:
``AffineFast`` to the template, then a refinement with the metric restricted to the dilated
template brain (:func:`_register_within_brain`). A skull-stripped image goes the same way, its
mask being its brain. The whole image, scalp included, is then resampled through that
transform, and the brain mask with it. A registered image must show brain anatomy deep
inside the brain (:func:`deep_tissue_contrast`); one whose tissues explain little of it
(:func:`tissue_contrast`), and that shows little of that deep anatomy, is first registered again
from starts turned by quarter turns and by 45 degrees, which finds headers that mislabel the
axes and heads that lie tilted in theirs. A rigid registration of the same kind, started where
an image on the template grid lies, measures how far that image is from register
(:func:`residual_misregistration`).

ANTs runs on one thread. With more, its optimisers add up the metric in the order the threads
finish, so the same registration differs from run to run, and may land in another minimum. One
thread makes a rerun give the same transforms, so the same QC verdicts; the pipeline gets its
speed from processing images in parallel instead.
"""

from __future__ import annotations

import itertools
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import ants
import nibabel as nb
import numpy as np
import torch
from scipy import ndimage as ndi

from bidsqc.brain_extraction import BrainExtractionError, extract_brain, volume_ml
from bidsqc.data import Template, head_box, load_template
from bidsqc.geometry import rigid_affine
from bidsqc.measures.alignment import brain_coverage
from bidsqc.resampling import resample_linear, smooth_gaussian
from bidsqc.validity import MIN_BRAIN_COVERAGE

__all__ = [
    "HeaderOrientationError",
    "PartialBrainError",
    "RegistrationResult",
    "brain_region",
    "coregister_to_reference",
    "deep_tissue_contrast",
    "estimate_bias_field",
    "field_of_view",
    "read_itk_affine",
    "register_to_template",
    "reorient_to_ras",
    "resample_through_transform",
    "resample_to_template",
    "resample_to_zoom",
    "residual_misregistration",
    "tissue_contrast",
    "warp_to_template",
]

logger = logging.getLogger(__name__)

# ITK reads this once per process, at its first filter; antspyx's own set_ants_deterministic
# does the same.
os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = "1"

#: Dilation (voxels) of the template brain mask within which the final alignment is measured.
BRAIN_REGION_DILATION = 2
#: Scale factors of an affine to the template outside this range mean a failed registration. A
#: newborn's brain (250 mL, the least that brain extraction accepts) is 0.51 of the template's
#: (1883 mL) along each axis on average, and a head is not scaled alike along every axis (a
#: 3-year-old's: 0.98, 0.93, 0.87), hence 0.45.
PLAUSIBLE_SCALE = (0.45, 1.6)
#: Seed for the random metric sampling of antsRegistration; pinned for reproducibility.
ANTS_SEED = 20261123
# antspyx passes this module attribute to every antsRegistration as its --random-seed (its
# set_ants_deterministic would also reseed NumPy's global generator).
ants.config._random_seed = ANTS_SEED
#: Dilation (voxels) of the extracted brain that is registered: keeps its outline and CSF.
BRAIN_EXTRACTION_DILATION = 1
#: :func:`deep_tissue_contrast` below which a registered image shows no brain anatomy. Set on
#: ``train`` scans and objects that are no brain: a water phantom, a bottle, a leg, a textured
#: ellipsoid and noise reach 0.010 at most, the ``train`` heads 0.189 or more, and 0.046 under
#: the artefact network's most severe ghosting (docs/preprocessing.md).
MIN_DEEP_TISSUE_CONTRAST = 0.02
#: :func:`deep_tissue_contrast` that a brain in register shows at least (the ``train`` heads
#: 0.189 or more, 0.046 under the most severe ghosting, a 3 mm FLAIR re-sliced to 13 mm 0.053).
#: A fit from another start is taken for a header's that shows no brain anatomy only with this
#: much: objects that are no brain reach 0.019 from other starts.
BRAIN_IN_REGISTER_DEEP_TISSUE_CONTRAST = 0.04
#: :func:`deep_tissue_contrast` with which the registration from the header's orientation shows
#: that it found how the head lies, so that no other start is tried: twice what heads reach
#: from a header mislabelled by a quarter turn (0.036 at most, 115 turns of five heads) or tilted
#: by 30-59 degrees (0.028); the 8 real scans that reach the check show 0.088 or more.
ORIENTATION_FOUND_DEEP_TISSUE_CONTRAST = 0.08
#: How far inside the template brain (voxels of the 2 mm grid: 14 mm) :func:`deep_tissue_contrast`
#: looks: past the reach of any outline.
DEEP_BRAIN_EROSION = 7
#: Gaussian sigma (voxels of the 2 mm grid: 16 mm) of the intensity trend that
#: :func:`deep_tissue_contrast` divides out: a bias field's scale, larger than the tissues'.
INTENSITY_TREND_SIGMA = 8.0
#: :func:`tissue_contrast` below which a registration is tried again from starts turned away
#: from the header's orientation (:func:`_register_from_other_starts`), unless it shows
#: anatomy deep inside the brain (:data:`ORIENTATION_FOUND_DEEP_TISSUE_CONTRAST`); 8 of the
#: 96 real scans here lie below, and show it.
ORIENTATION_CHECK_BELOW = 0.15
#: Tilt (degrees) of the extra starts about each axis: from the header's orientation, heads
#: tilted by 30-45 degrees in their headers are left misregistered (12 of 36 such turns of
#: three heads, benchmarks/tilted_heads.py); from starts this far turned, none is.
TILTED_START_DEGREES = 45.0
#: A turn from the header's axes to the head's orientation beyond this is a mislabelled header,
#: not a head tilted in the scanner.
MAX_TILT_DEGREES = 60.0
#: A brain smaller than the template's by more than this factor along each axis, on average
#: (under 960 mL: an infant's; the 96 real scans here are 0.83-0.99), starts its first alignment
#: at its own size: from the template's, the affine can collapse an axis.
SMALL_BRAIN_SCALE = 0.8
#: RAS (nibabel) and LPS (ITK) world coordinates differ by the signs of x and y.
_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


class HeaderOrientationError(ValueError):
    """The brain fits the template only turned by a multiple of 90 degrees: the header says
    the voxel axes point one way, the anatomy another (a conversion error)."""


class PartialBrainError(ValueError):
    """The brain fits the template neither as the header has it nor turned, and the best turned
    fit leaves part of the template brain outside the scan: the scan misses part of the
    brain, which a registration cannot place."""


def reorient_to_ras(img: nb.Nifti1Image) -> nb.Nifti1Image:
    """Permute and flip the voxel axes to the closest RAS+ orientation (no interpolation)."""
    return nb.as_closest_canonical(img)


def _to_ants(img: nb.Nifti1Image) -> ants.ANTsImage:
    float_img = nb.Nifti1Image(img.get_fdata(dtype=np.float32), img.affine)
    float_img.header.set_xyzt_units("mm", "sec")
    return ants.from_nibabel_nifti(float_img)


def _template_t1w(tpl: Template) -> ants.ANTsImage:
    """The template T1w as ANTs' fixed image: the grid every registration here ends on."""
    return _to_ants(nb.Nifti1Image(tpl.t1w, tpl.affine))


def _to_nibabel(image: ants.ANTsImage) -> nb.Nifti1Image:
    out = ants.to_nibabel_nifti(image)
    out.header.set_xyzt_units("mm")
    return out


def resample_to_zoom(img: nb.Nifti1Image, zoom: float = 2.0) -> nb.Nifti1Image:
    """Resample to isotropic ``zoom`` mm voxels with linear interpolation.

    Axes finer than ``zoom`` are first low-pass filtered with a Gaussian whose FWHM makes up the
    difference, :math:`\\sigma = \\sqrt{z^2 - z_0^2} / 2.355`, so that downsampling a 0.7 mm
    image does not alias its noise into the 2 mm grid.

    This is the image that is registered, so ANTs resamples it, as it did for the networks'
    training samples: the torch code of :mod:`bidsqc.resampling` agrees with it to float
    precision, but the registration's optimiser turns those last digits into different
    transforms, by up to a few tenths of a millimetre, and so into other network outputs.
    """
    image = _to_ants(img)
    sigma = _anti_aliasing_sigma(img, zoom)
    if np.any(sigma > 0):
        image = ants.smooth_image(image, tuple(sigma), sigma_in_physical_coordinates=True)
    return _to_nibabel(ants.resample_image(image, (zoom,) * 3, use_voxels=False, interp_type=0))


def _anti_aliasing_sigma(img: nb.Nifti1Image, zoom: float) -> np.ndarray:
    """The Gaussian's standard deviation per axis (mm) of :func:`resample_to_zoom`."""
    spacing = nb.affines.voxel_sizes(img.affine)
    return np.sqrt(np.clip(zoom**2 - spacing**2, 0, None)) / 2.355


def _anti_aliased(img: nb.Nifti1Image, zoom: float) -> torch.Tensor:
    """The image's data low-pass filtered as :func:`resample_to_zoom` does, in torch."""
    volume = torch.from_numpy(np.ascontiguousarray(img.get_fdata(dtype=np.float32)))
    return smooth_gaussian(
        volume, _anti_aliasing_sigma(img, zoom) / nb.affines.voxel_sizes(img.affine)
    )


@dataclass(frozen=True)
class RegistrationResult:
    """An image resampled onto the template grid, with the transform that took it there."""

    registered: nb.Nifti1Image
    #: ITK affine (``.mat``) mapping template points to image points, as ANTs writes it.
    transform: Path
    #: The image's extracted brain on the template grid (1 inside, 0 outside).
    brain_mask: nb.Nifti1Image


def read_itk_affine(transform: str | os.PathLike) -> np.ndarray:
    r"""The 4x4 matrix of an ITK affine (``.mat``), in ITK's LPS world frame.

    ITK stores a matrix :math:`M`, a translation :math:`t` and a centre :math:`c`, and maps
    :math:`x \mapsto M (x - c) + c + t`.
    """
    itk = ants.read_transform(str(transform))
    matrix = np.asarray(itk.parameters[:9]).reshape(3, 3)
    centre = np.asarray(itk.fixed_parameters)
    affine = np.eye(4)
    affine[:3, :3] = matrix
    affine[:3, 3] = np.asarray(itk.parameters[9:12]) + centre - matrix @ centre
    return affine


def _implausible_scales(transform: Path) -> str | None:
    """The axis scale factors of an affine, written out, if one lies outside
    :data:`PLAUSIBLE_SCALE`; None if all are plausible."""
    scales = np.linalg.svd(read_itk_affine(transform)[:3, :3], compute_uv=False)
    if scales.min() < PLAUSIBLE_SCALE[0] or scales.max() > PLAUSIBLE_SCALE[1]:
        return ", ".join(f"{s:.2f}" for s in scales)
    return None


def brain_region(tpl: Template) -> np.ndarray:
    """The template brain dilated by :data:`BRAIN_REGION_DILATION` voxels, where the final
    alignment is measured."""
    return ndi.binary_dilation(tpl.brain_mask, iterations=BRAIN_REGION_DILATION)


def _register_within_brain(
    moving: ants.ANTsImage,
    tpl: Template,
    prefix: str,
    initial: str | os.PathLike = "Identity",
    kind: str = "Affine",
) -> Path:
    """Transform (ANTs ``kind``) of ``moving`` to the template T1w, measuring only inside
    :func:`brain_region`.

    ``AffineFast`` stops at a coarse level, not precise enough to be judged by the
    registration-QC network (docs/preprocessing.md). Restricting the metric to the dilated
    template brain keeps what the dilated extracted brain still holds of the scalp out of the
    final alignment. It starts from ``initial``, an ITK transform file or ``"Identity"``.
    """
    fixed = _template_t1w(tpl)
    result = ants.registration(
        fixed,
        moving,
        type_of_transform=kind,
        initial_transform=str(initial),
        mask=fixed.new_image_like(brain_region(tpl).astype(np.float32)),
        outprefix=prefix,
    )
    return Path(result["fwdtransforms"][0])


def residual_misregistration(
    image: np.ndarray, brain_mask: np.ndarray | None = None, template: Template | None = None
) -> np.ndarray:
    """The rigid transform by which an image on the template grid is still out of register
    (4x4, mm, ITK's LPS frame, mapping template points to image points).

    The image's brain (``brain_mask``, on the template grid; extracted from ``image`` when
    None) is registered to the template again inside the template brain, as the pipeline's
    final stage registers (:func:`_register_within_brain`), but rigidly and starting from where
    it lies: an image in register gives the identity, up to the optimiser's tolerance, and a
    shifted or rotated one the transform that undoes it. This checks registrations the
    pipeline did not make, such as fMRIPrep's. Rigid, because an affine can trade a shift for a
    change of scale, whose "correction" is then tens of mm; a wrong scale therefore goes
    unmeasured.
    """
    tpl = template or load_template(2)
    img = nb.Nifti1Image(np.asarray(image, np.float32), tpl.affine)
    with tempfile.TemporaryDirectory(prefix="bidsqc_") as scratch:
        moving = _brain_only(img, extract_brain(img) if brain_mask is None else brain_mask)
        transform = _register_within_brain(moving, tpl, prefix=f"{scratch}/", kind="Rigid")
        return read_itk_affine(transform)


def _brain_only(img: nb.Nifti1Image, brain: np.ndarray) -> ants.ANTsImage:
    """The image inside its brain mask, dilated by :data:`BRAIN_EXTRACTION_DILATION` voxels."""
    region = ndi.binary_dilation(brain, iterations=BRAIN_EXTRACTION_DILATION)
    data = np.where(region, img.get_fdata(dtype=np.float32), 0)
    return _to_ants(nb.Nifti1Image(data, img.affine))


def register_to_template(
    img: nb.Nifti1Image, out_dir: str | os.PathLike, *, template: Template | None = None
) -> RegistrationResult:
    """Affinely register the brain of ``img`` to the template and resample the whole image onto
    the template grid.

    The transform comes in two stages (see the module docstring): ``AffineFast`` of the
    extracted brain to the template, then a refinement inside the template brain. The 2 mm
    template grid is the 96 x 112 x 96 head box, so resampling onto it is also the crop.

    Raises :class:`~bidsqc.brain_extraction.BrainExtractionError` when no plausible brain is
    found, or when the registered image shows none (:func:`deep_tissue_contrast` below
    :data:`MIN_DEEP_TISSUE_CONTRAST`); :class:`HeaderOrientationError` when the brain fits the
    template far better turned by a multiple of 90 degrees (:func:`_register_from_other_starts`,
    which also registers a head that lies tilted by 45 degrees or so), and
    :class:`PartialBrainError` when that turned fit leaves part of the template brain outside
    the scan;
    and ``ValueError`` when both stages scale an axis by a factor outside
    :data:`PLAUSIBLE_SCALE` (a refinement that runs away falls back on its start): the image is
    then unlikely to be a brain, or its header orientation is wrong.
    """
    tpl = template or load_template(2)
    brain = extract_brain(img)
    result = _register(img, brain, Path(out_dir), tpl)
    registered = result.registered.get_fdata(dtype=np.float32)
    contrast = tissue_contrast(registered, tpl)
    anatomy = deep_tissue_contrast(registered, tpl)
    if contrast < ORIENTATION_CHECK_BELOW and anatomy >= ORIENTATION_FOUND_DEEP_TISSUE_CONTRAST:
        logger.info(
            "as registered, tissue contrast %.3f and deep anatomy %.3f: a brain of low contrast "
            "in register, so no other start is tried",
            contrast,
            anatomy,
        )
    elif contrast < ORIENTATION_CHECK_BELOW:
        tilted = _register_from_other_starts(img, brain, Path(out_dir), tpl, contrast, anatomy)
        if tilted is not None:
            result = tilted
            anatomy = deep_tissue_contrast(result.registered.get_fdata(dtype=np.float32), tpl)
    if anatomy >= MIN_DEEP_TISSUE_CONTRAST:
        return result  # a brain, registered or not: rereg_mm tells which
    causes = ["not a brain (a phantom, another body part)", "a brain whose anatomy is lost"]
    coverage = brain_coverage(field_of_view(img, result.transform), tpl)
    if coverage < MIN_BRAIN_COVERAGE:
        causes.append(
            f"a scan that misses part of the brain (as registered, it covers {coverage:.0%} of "
            "the template brain)"
        )
    raise BrainExtractionError(
        "the registered image shows no brain anatomy: deep inside the template brain, its "
        f"tissues explain {anatomy:.1%} of its intensity variation (a brain in register: "
        f"{BRAIN_IN_REGISTER_DEEP_TISSUE_CONTRAST:.0%} or more; bidsqc needs "
        f"{MIN_DEEP_TISSUE_CONTRAST:.0%}): {', '.join(causes[:-1])} or {causes[-1]}"
    )


def _register(
    img: nb.Nifti1Image,
    brain: np.ndarray,
    out_dir: Path,
    tpl: Template,
    turn: np.ndarray | None = None,
) -> RegistrationResult:
    """:func:`register_to_template` without its checks of the result, ``brain`` the mask that
    :func:`~bidsqc.brain_extraction.extract_brain` gives ``img``; the first alignment starts
    turned by ``turn`` (see :func:`_first_alignment_start`)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    moving = _brain_only(img, brain)
    fixed = _template_t1w(tpl)
    first = ants.registration(
        fixed,
        moving,
        type_of_transform="AffineFast",
        initial_transform=_first_alignment_start(img, brain, tpl, out_dir / "start.mat", turn),
        outprefix=str(out_dir / "brain_"),
    )
    initial = Path(first["fwdtransforms"][0])
    transform = _register_within_brain(
        moving, tpl, prefix=str(out_dir / "refined_"), initial=initial
    )
    if runaway := _implausible_scales(transform):
        if implausible := _implausible_scales(initial):
            raise ValueError(
                f"registration to the template is implausible (axis scale factors {implausible}):"
                " not a brain, or a wrong header orientation"
            )
        logger.warning(
            "the refinement inside the brain gave implausible scale factors (%s); "
            "keeping the first alignment",
            runaway,
        )
        transform = initial
    warped_brain = ants.apply_transforms(
        fixed,
        _to_ants(nb.Nifti1Image(brain.astype(np.float32), img.affine)),
        [str(transform)],
        interpolator="linear",
    )
    return RegistrationResult(
        registered=warp_to_template(img, transform, template=tpl),
        transform=transform,
        brain_mask=_on_grid(warped_brain.numpy() > 0.5, tpl.affine),
    )


def _brain_centres(
    img: nb.Nifti1Image, brain: np.ndarray, tpl: Template
) -> tuple[np.ndarray, np.ndarray]:
    """The centroids (LPS mm) of the template's brain and of ``brain``, a mask on the grid of
    ``img``."""
    image_centre = nb.affines.apply_affine(img.affine, np.argwhere(brain).mean(0))
    return tuple(_RAS_TO_LPS[:3, :3] @ ras for ras in (tpl.brain_centre, image_centre))


def _write_start(
    path: str | os.PathLike, matrix: np.ndarray, centres: tuple[np.ndarray, np.ndarray]
) -> str:
    """Write the ITK affine that maps the template's brain centre onto the image's and offsets
    from it by ``matrix`` (LPS; see :func:`_brain_centres`), a start for a registration."""
    template_centre, image_centre = centres
    ants.write_transform(
        ants.create_ants_transform(
            transform_type="AffineTransform",
            dimension=3,
            matrix=matrix,
            translation=image_centre - template_centre,
            center=template_centre,
        ),
        str(path),
    )
    return str(path)


def _first_alignment_start(
    img: nb.Nifti1Image,
    brain: np.ndarray,
    tpl: Template,
    path: Path,
    turn: np.ndarray | None = None,
) -> str | None:
    """A start that lays the template's brain onto ``brain``, turned by ``turn`` (LPS, template
    offsets to image offsets) and, for a brain smaller than :data:`SMALL_BRAIN_SCALE` times the
    template's, shrunk by the cube root of their volumes' ratio; None for an unturned brain of
    any other size, which ANTs starts at the template's size from the centres of mass."""
    volume = volume_ml(brain, img.header.get_zooms()[:3])
    scale = float(np.cbrt(volume / volume_ml(tpl.brain_mask, tpl.zooms)))
    small = scale < SMALL_BRAIN_SCALE
    if small:
        logger.info("a brain of %.0f mL: the first alignment starts scaled by %.2f", volume, scale)
    elif turn is None:
        return None
    matrix = (scale if small else 1.0) * (np.eye(3) if turn is None else turn)
    return _write_start(path, matrix, _brain_centres(img, brain, tpl))


def _quarter_turns() -> list[np.ndarray]:
    """The 24 rotations that map the coordinate axes onto each other (those of a cube): turns by
    multiples of 90 degrees, the identity first."""
    turns = []
    for permutation in itertools.permutations(range(3)):
        for signs in itertools.product((1, -1), repeat=3):
            turn = np.zeros((3, 3))
            turn[range(3), permutation] = signs
            if np.linalg.det(turn) > 0:
                turns.append(turn)
    return turns


def _tilts() -> list[np.ndarray]:
    """The rotations by :data:`TILTED_START_DEGREES` either way about each coordinate axis."""
    return [
        rigid_affine(sign * TILTED_START_DEGREES * np.eye(3)[axis], (0.0, 0.0, 0.0))[:3, :3]
        for axis in range(3)
        for sign in (1, -1)
    ]


@dataclass(frozen=True)
class _Fit:
    """A registration from a start turned away from the header's orientation."""

    result: RegistrationResult
    #: Its :func:`tissue_contrast` and :func:`deep_tissue_contrast`.
    contrast: float
    anatomy: float
    #: The rotation from the header's axes to the orientation it found.
    rotation: np.ndarray
    #: Whether it was found through a header relabelled by a quarter turn.
    quarter: bool
    #: The share of the template brain inside the scan, through it.
    coverage: float


def _register_from_other_starts(
    img: nb.Nifti1Image,
    brain: np.ndarray,
    out_dir: Path,
    tpl: Template,
    contrast: float,
    anatomy: float,
) -> RegistrationResult | None:
    """Register ``img`` again from starts turned away from its header's orientation, when its
    registration left its tissues unexplained (``contrast``, its :func:`tissue_contrast`, below
    :data:`ORIENTATION_CHECK_BELOW`) and shows little anatomy deep inside the brain
    (``anatomy``, its :func:`deep_tissue_contrast`, below
    :data:`ORIENTATION_FOUND_DEEP_TISSUE_CONTRAST`); ``brain`` is its extracted brain, as it
    was registered.

    An affine registration starts from the header's orientation and turns the brain back by
    some tens of degrees at most. Two kinds of image lie further: a header whose axes are
    mislabelled (a sagittal scan written as axial, a flipped head-foot axis) puts the brain
    upside down or on its side, and a head can lie tilted by 45 degrees or so in a correct
    header. So the brain is registered rigidly and coarsely (4 mm, 50 iterations, 0.35 s each)
    from each of the 23 quarter turns about its centre and from the six :func:`_tilts`, then
    as any image is from the two starts that fit best: from the tilted start, or relabelled as
    a quarter turn would have it, its brain extracted again (the extraction misses much of a
    brain that lies upside down). A registration finds the head's true orientation when it
    reaches at least twice ``contrast``, and 0.1 more: on the real scans that reach this check,
    no start gives more than 1.23 times their contrast; heads turned in their headers, or
    tilted, regain 2.6 times theirs or more, as much as they had upright. A scan of low contrast
    even in register (a 2D FLAIR) cannot double it; it finds its orientation too when the
    header's fit shows no anatomy deep inside the brain (``anatomy`` below
    :data:`MIN_DEEP_TISSUE_CONTRAST`) and this registration shows a brain in register
    (:data:`BRAIN_IN_REGISTER_DEEP_TISSUE_CONTRAST`).

    The turn between the header's axes and that orientation tells the two kinds apart: no head
    lies in a scanner turned by more than :data:`MAX_TILT_DEGREES`. Returns the registration
    from the header's orientation turned so for a tilted head, None when no start fits better;
    raises :class:`HeaderOrientationError` for a larger turn.
    A scan that misses much of the brain (a slab without its top third) fits nothing, and a
    turned half brain can fit better than none: a larger turn whose fit leaves the template
    brain outside the scan (:data:`~bidsqc.validity.MIN_BRAIN_COVERAGE`; a mislabelled whole
    head covers all of it) raises :class:`PartialBrainError` instead.
    """
    moving = _brain_only(img, brain)
    centres = _brain_centres(img, brain, tpl)
    fixed = _template_t1w(tpl)
    starts = [(turn, True) for turn in _quarter_turns()[1:]] + [(tilt, False) for tilt in _tilts()]
    with tempfile.TemporaryDirectory(prefix="bidsqc_") as scratch:
        screened = []
        for index, (turn, _) in enumerate(starts):
            coarse = ants.registration(
                fixed,
                moving,
                type_of_transform="Rigid",
                initial_transform=_write_start(f"{scratch}/turn{index}.mat", turn, centres),
                aff_iterations=(50,),
                aff_shrink_factors=(4,),
                aff_smoothing_sigmas=(2,),
                aff_random_sampling_rate=0.1,
                outprefix=f"{scratch}/coarse{index}_",
            )
            warped = ants.apply_transforms(fixed, moving, coarse["fwdtransforms"])
            screened.append((tissue_contrast(warped.numpy(), tpl), index))
        fits = []
        for _, index in sorted(screened, reverse=True)[:2]:
            turn, quarter = starts[index]
            try:
                if quarter:
                    relabelled = reorient_to_ras(_turned_header(img, turn, *centres))
                    turned = Path(scratch) / f"turned{index}"
                    result = _register(relabelled, extract_brain(relabelled), turned, tpl)
                    linear = turn @ read_itk_affine(result.transform)[:3, :3]
                    covered = field_of_view(relabelled, result.transform)
                else:
                    result = _register(img, brain, out_dir / f"tilted{index}", tpl, turn)
                    linear = read_itk_affine(result.transform)[:3, :3]
                    covered = field_of_view(img, result.transform)
            except ValueError:  # no brain, or no plausible registration: no better fit
                continue
            registered = result.registered.get_fdata(dtype=np.float32)
            fits.append(
                _Fit(
                    result,
                    tissue_contrast(registered, tpl),
                    deep_tissue_contrast(registered, tpl),
                    _rotation(linear),
                    quarter,
                    brain_coverage(covered, tpl),  # here, while the turned transforms exist
                )
            )
    logger.info(
        "as registered, tissue contrast %.3f and deep anatomy %.3f; from other starts "
        "(contrast, deep anatomy, degrees): %s",
        contrast,
        anatomy,
        [
            (round(fit.contrast, 3), round(fit.anatomy, 3), round(_degrees(fit.rotation)))
            for fit in fits
        ],
    )
    best = max(fits, key=lambda fit: fit.contrast, default=None)
    if best is None or not _finds_the_head(best, contrast, anatomy):
        return None
    degrees = _degrees(best.rotation)
    if degrees <= MAX_TILT_DEGREES:
        result, found = best.result, best.contrast
        if best.quarter:  # found through a relabelled header: register the image as it is
            result = _register(img, brain, out_dir / "tilted", tpl, best.rotation)
            found = tissue_contrast(result.registered.get_fdata(), tpl)
        logger.info(
            "the head lies tilted by %.0f degrees from its header's axes (tissue contrast %.3f"
            " from a start turned so, %.3f from the header's orientation)",
            degrees,
            found,
            contrast,
        )
        return result
    if best.coverage < MIN_BRAIN_COVERAGE:
        raise PartialBrainError(
            f"the brain could not be registered: as the header has it, its tissues explain "
            f"{contrast:.0%} of its variance inside the template brain; turned, at best "
            f"{best.contrast:.0%}, but that fit leaves {1 - best.coverage:.0%} of the template "
            "brain outside the scan: the scan probably misses part of the brain"
        )
    turn = max(_quarter_turns(), key=lambda quarter_turn: np.trace(quarter_turn.T @ best.rotation))
    anatomical = nb.aff2axcodes(
        nb.affines.from_matvec(_RAS_TO_LPS[:3, :3] @ turn.T @ _RAS_TO_LPS[:3, :3])
    )
    raise HeaderOrientationError(
        "the header's orientation is probably wrong: what it calls right, anterior and "
        f"superior is anatomically {', '.join(anatomical)}. Turned so, the brain's tissues "
        f"explain {best.contrast:.0%} of its variance inside the template brain, against "
        f"{contrast:.0%} as the header has it (check the conversion from DICOM)"
    )


def _finds_the_head(fit: _Fit, contrast: float, anatomy: float) -> bool:
    """Whether ``fit`` found how the head lies where the header's fit, with ``contrast`` and
    ``anatomy``, did not: it doubles the tissue contrast and gains 0.1, or it shows a brain in
    register where the header's fit shows no brain anatomy."""
    doubles = fit.contrast >= 2 * contrast and fit.contrast - contrast >= 0.1
    shows_the_brain = fit.anatomy >= BRAIN_IN_REGISTER_DEEP_TISSUE_CONTRAST
    return doubles or (anatomy < MIN_DEEP_TISSUE_CONTRAST and shows_the_brain)


def _rotation(linear: np.ndarray) -> np.ndarray:
    """The rotation of a 3x3 linear map (its polar decomposition), without its scales and
    shears."""
    u, _, vt = np.linalg.svd(linear)
    return u @ vt


def _degrees(rotation: np.ndarray) -> float:
    """The angle of a rotation about its axis, in degrees."""
    return float(np.degrees(np.arccos(np.clip((np.trace(rotation) - 1) / 2, -1.0, 1.0))))


def _turned_header(
    img: nb.Nifti1Image, turn: np.ndarray, template_centre: np.ndarray, image_centre: np.ndarray
) -> nb.Nifti1Image:
    """``img`` with its header corrected by ``turn``, which maps template offsets to image
    offsets about the two brain centres (LPS): the same voxels, each at the world position
    :math:`T^\\top (x - c_{image}) + c_{template}`. The rows of ``turn``'s RAS form give the
    anatomical direction of each of the header's world axes."""
    correction = nb.affines.from_matvec(turn.T, template_centre - turn.T @ image_centre)
    return nb.Nifti1Image(
        np.asanyarray(img.dataobj), _RAS_TO_LPS @ correction @ _RAS_TO_LPS @ img.affine
    )


def tissue_contrast(image: np.ndarray, template: Template | None = None) -> float:
    """How much of an image on the template grid its tissues explain: the correlation ratio
    :math:`\\eta^2` of its intensities over the template's CSF, grey and white matter.

    :math:`\\eta^2` is the share of the image's variance inside the template brain that the
    mean intensity of each tissue accounts for, counting the voxels where the template is sure
    of its tissue (:attr:`~bidsqc.data.Template.sure_tissues`). A brain in register gives its
    tissues different means whatever its contrast (T1w, FLAIR, an infant's inverted T1w), so it
    is well above 0; noise or a scrambled image give about 0. A uniform ball of a head's size
    does not: its edge, registered onto the brain's, sets the outer CSF apart. The image is
    first smoothed by a Gaussian of one voxel, so that noise lowers it little.
    """
    counted, tissue = (template or load_template(2)).sure_tissues
    smoothed = ndi.gaussian_filter(np.asarray(image, np.float64), 1.0)
    return _correlation_ratio(smoothed[counted], tissue)


def deep_tissue_contrast(image: np.ndarray, template: Template | None = None) -> float:
    """:func:`tissue_contrast` deep inside the brain, the image's smooth intensity trend
    divided out first.

    Any bright object of a head's size fools :func:`tissue_contrast`: registered onto the
    brain, its edge sets the outer CSF apart (a uniform ellipsoid: 0.10), while a strong bias
    field hides a real brain's tissues (a 3-year-old's head under the artefact network's most
    severe field: 0.015). Here only the voxels at least :data:`DEEP_BRAIN_EROSION` voxels
    inside the template brain count, where its tissues are the ventricles, the deep grey matter
    and the white matter that no outline explains, and that the scan covers (non-zero); and the
    image is first divided by its Gaussian trend of :data:`INTENSITY_TREND_SIGMA` voxels over
    those same voxels, which a bias field follows and the tissues do not. A phantom, a bottle
    or noise give 0.01 at most; a brain in register 0.09 or more on every real scan here,
    whatever its contrast (a 3-year-old's T1w given an infant's: 0.20), and 0.05 or more under
    the most severe simulated artefacts, unless ghosts as bright as the head overlay it whole.
    """
    tpl = template or load_template(2)
    sure, tissue = tpl.sure_tissues
    smoothed = ndi.gaussian_filter(np.asarray(image, np.float64), 1.0)
    deep = ndi.binary_erosion(tpl.brain_mask, iterations=DEEP_BRAIN_EROSION) & (smoothed > 0)
    weights = deep.astype(np.float64)
    weighted = ndi.gaussian_filter(smoothed * weights, INTENSITY_TREND_SIGMA)
    trend = weighted / np.maximum(ndi.gaussian_filter(weights, INTENSITY_TREND_SIGMA), 1e-3)
    counted = deep[sure]  # where the trend sums positive voxels only: positive
    detrended = smoothed[sure][counted] / trend[sure][counted]
    return _correlation_ratio(detrended, tissue[counted])


def _correlation_ratio(values: np.ndarray, tissue: np.ndarray) -> float:
    """:math:`\\eta^2` of ``values`` over the classes ``tissue`` (0, 1, 2): the share of their
    variance that the classes' means account for; 0 for values without a spread."""
    deviations = values - values.mean() if values.size else values
    total = np.sum(deviations**2)
    if total == 0:
        return 0.0
    counts = np.bincount(tissue, minlength=3)
    sums = np.bincount(tissue, weights=deviations, minlength=3)
    return float(np.sum(sums[counts > 0] ** 2 / counts[counts > 0]) / total)


def warp_to_template(
    img: nb.Nifti1Image, transform: str | os.PathLike, *, template: Template | None = None
) -> nb.Nifti1Image:
    """Resample ``img`` onto the template grid through its template ``transform``, linearly.

    This is how :func:`register_to_template` makes its ``registered`` image, the input of the
    motion and registration-QC networks, from the 2 mm RAS+ output of :func:`resample_to_zoom`.
    """
    tpl = template or load_template(2)
    fixed = _template_t1w(tpl)
    warped = ants.apply_transforms(fixed, _to_ants(img), [str(transform)], interpolator="linear")
    return _on_grid(warped.numpy(), tpl.affine)


def resample_to_template(
    img: nb.Nifti1Image, *, template: Template | None = None
) -> nb.Nifti1Image:
    """Resample an image that is already in MNI space onto the 2 mm template head box.

    No registration: world coordinates are kept, which is right for the bundled
    MNI152NLin2009cSym and for MNI152NLin2009cAsym, which shares its coordinates (the two differ
    only by the symmetrisation of the anatomy). Anti-aliased as :func:`resample_to_zoom`.
    """
    tpl = template or load_template(2)
    moving = resample_to_zoom(reorient_to_ras(img), tpl.resolution)
    index_transform = np.linalg.inv(moving.affine) @ tpl.affine
    volume = torch.from_numpy(moving.get_fdata(dtype=np.float32))
    return _on_grid(resample_linear(volume, index_transform, tpl.shape).numpy(), tpl.affine)


def resample_through_transform(
    img: nb.Nifti1Image, transform: str | os.PathLike, resolution: int = 1
) -> nb.Nifti1Image:
    """Resample an image onto the head box at ``resolution`` mm through its template transform.

    ``transform`` is the :attr:`RegistrationResult.transform` of the same scan, registered at
    2 mm; it maps world points, so it applies to the scan at its native resolution too. The
    artefact network reads the 1 mm box this gives: resampling the native image once keeps the
    fine texture of noise, spikes and blur that the 2 mm grid would average away.
    """
    shape, affine = head_box(resolution)
    ras = reorient_to_ras(img)
    index_transform = _head_box_to_voxels(ras.affine, transform, affine)
    volume = resample_linear(_anti_aliased(ras, resolution), index_transform, shape)
    return _on_grid(volume.numpy(), affine)


def field_of_view(
    img: nb.Nifti1Image, transform: str | os.PathLike, resolution: int = 2
) -> np.ndarray:
    """Which voxels of the head box at ``resolution`` mm the scan covers, through its template
    transform: those that :func:`resample_through_transform` samples from within half a voxel
    of the scan's grid. Reads the header only."""
    shape, affine = head_box(resolution)
    index_transform = _head_box_to_voxels(img.affine, transform, affine)
    indices = nb.affines.apply_affine(index_transform, np.indices(shape).reshape(3, -1).T)
    inside = (indices >= -0.5) & (indices < np.asarray(img.shape[:3]) - 0.5)
    return inside.all(axis=1).reshape(shape)


def _head_box_to_voxels(
    image_affine: np.ndarray, transform: str | os.PathLike, head_box_affine: np.ndarray
) -> np.ndarray:
    """The map from a head-box voxel to the voxel of an image (of ``image_affine``) that lies
    there through its template ``transform``: head box -> RAS -> ITK's LPS, through the
    transform, -> RAS -> image voxel."""
    itk = read_itk_affine(transform)
    return np.linalg.inv(image_affine) @ _RAS_TO_LPS @ itk @ _RAS_TO_LPS @ head_box_affine


def coregister_to_reference(
    moving: nb.Nifti1Image,
    reference: nb.Nifti1Image,
    reference_transform: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    template: Template | None = None,
) -> tuple[nb.Nifti1Image, Path]:
    """Rigidly register ``moving`` (a FLAIR) to ``reference`` (the T1w of its session) and
    resample it onto the template grid through the reference's own template transform.

    Both images should be the 2 mm RAS+ outputs of :func:`resample_to_zoom`;
    ``reference_transform`` is the reference's :attr:`RegistrationResult.transform`. The FLAIR
    then lands exactly where its T1w does, so any misalignment between the two in template
    space is the co-registration's. Returns that image and the rigid ITK transform (T1w points
    to FLAIR points, as ANTs writes it).
    """
    tpl = template or load_template(2)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = ants.registration(
        _brain_only(reference, extract_brain(reference)),
        _brain_only(moving, extract_brain(moving)),
        type_of_transform="Rigid",
        outprefix=str(out_dir / "coreg_"),
    )
    rigid = Path(result["fwdtransforms"][0])
    fixed = _template_t1w(tpl)
    # ANTs maps template points through the list in order: to the T1w, then to the FLAIR.
    warped = ants.apply_transforms(
        fixed, _to_ants(moving), [str(reference_transform), str(rigid)], interpolator="linear"
    )
    return _on_grid(warped.numpy(), tpl.affine), rigid


def _on_grid(data: np.ndarray, affine: np.ndarray) -> nb.Nifti1Image:
    img = nb.Nifti1Image(np.asarray(data, dtype=np.float32), affine)
    img.header.set_xyzt_units("mm")
    return img


def estimate_bias_field(
    image: np.ndarray, mask: np.ndarray, zooms: tuple[float, float, float]
) -> np.ndarray:
    """Estimate the multiplicative intensity non-uniformity field with N4 (Tustison 2010).

    Run on the 2 mm template-space image with a shrink factor of 4, i.e. at 8 mm, where the
    smooth field is still resolved, with three B-spline fitting levels: about a second. N4's
    field has an arbitrary global scale, so it is divided by its mean inside ``mask``; voxels
    outside ``mask`` get 1.
    """
    ants_image = ants.from_numpy(np.ascontiguousarray(image, dtype=np.float32), spacing=zooms)
    ants_mask = ants_image.new_image_like(mask.astype(np.float32))
    positive = ants_image.new_image_like(np.clip(image, 0, None).astype(np.float32) + 1e-3)
    field = ants.n4_bias_field_correction(
        positive,
        mask=ants_mask,
        shrink_factor=4,
        convergence={"iters": [50, 50, 50], "tol": 1e-7},
        return_bias_field=True,
    ).numpy()
    field = np.where(mask, field / field[mask].mean(), 1.0)
    return field.astype(np.float32)
