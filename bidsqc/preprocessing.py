"""Bring an anatomical image into template space: reorient, resample, register, crop.

Every function takes and returns nibabel images (or arrays), so each one can be tested alone
and wrapped by a thin nipype interface (:mod:`bidsqc.interfaces.preprocessing`).

The bundled template is brain-extracted, while most raw BIDS data are full-head. Registering a
head to a brain makes the optimiser shrink the scalp onto the brain outline. So a full-head
image is registered to a *head-like* version of the template, in which shells of CSF, skull and
scalp surround the brain (:func:`head_like_template`), after its neck is cropped away
(:func:`crop_below_vertex`); a skull-stripped image is registered to the template as it is.
Which one an image is follows from the volume of its foreground (:func:`foreground_volume_ml`):
a brain holds less than a head (the volumes measured on the development data are in
``docs/preprocessing.md``). Between :data:`SKULL_STRIPPED_MAX_ML` and :data:`FULL_HEAD_MIN_ML`
both are tried, and the alignment
whose brain agrees best with the template brain (normalised mutual information inside the
dilated brain mask) wins. Either first alignment is then refined against the template T1w with
the metric restricted to the dilated template brain (:func:`_register_within_brain`). A rigid
registration of the same kind, started where an image on the template grid lies, measures how
far that image is from register (:func:`residual_misregistration`).

ANTs runs on one thread. With more, its optimisers add up the metric in the order the threads
finish, so the same registration differs from run to run, and may land in another minimum. One
thread makes a rerun give the same transforms, so the same QC verdicts; the pipeline gets its
speed from processing images in parallel instead.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import ants
import nibabel as nb
import numpy as np
from scipy import ndimage as ndi

from bidsqc.data import Template, head_box, load_template
from bidsqc.measures.alignment import nmi

__all__ = [
    "RegistrationResult",
    "brain_region",
    "coregister_to_reference",
    "crop_below_vertex",
    "estimate_bias_field",
    "foreground_volume_ml",
    "head_like_template",
    "read_itk_affine",
    "register_to_template",
    "reorient_to_ras",
    "resample_through_transform",
    "resample_to_template",
    "resample_to_zoom",
    "residual_misregistration",
]

logger = logging.getLogger(__name__)

# ITK reads this once per process, at its first filter; antspyx's own set_ants_deterministic
# does the same.
os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = "1"

#: Dilation (voxels) of the template brain mask within which the final alignment is measured.
BRAIN_REGION_DILATION = 2
#: Scale factors of an affine to the template outside this range mean a failed registration.
PLAUSIBLE_SCALE = (0.6, 1.6)
#: Seed for the random metric sampling of antsRegistration; pinned for reproducibility.
ANTS_SEED = 20261123
# antspyx passes this module attribute to every antsRegistration as its --random-seed (its
# set_ants_deterministic would also reseed NumPy's global generator).
ants.config._random_seed = ANTS_SEED
#: Foreground volumes (mL) up to which an image is surely skull-stripped...
SKULL_STRIPPED_MAX_ML = 1700.0
#: ...and from which it surely holds a head; in between, both registrations are tried.
FULL_HEAD_MIN_ML = 2200.0
#: How far below the top of the head a full-head image is kept for registration: a brain
#: reaches about 14 cm below the vertex, and the neck would pull the initial alignment down.
VERTEX_DEPTH_MM = 170.0


def reorient_to_ras(img: nb.Nifti1Image) -> nb.Nifti1Image:
    """Permute and flip the voxel axes to the closest RAS+ orientation (no interpolation)."""
    return nb.as_closest_canonical(img)


def _to_ants(img: nb.Nifti1Image) -> ants.ANTsImage:
    float_img = nb.Nifti1Image(img.get_fdata(dtype=np.float32), img.affine)
    float_img.header.set_xyzt_units("mm", "sec")
    return ants.from_nibabel_nifti(float_img)


def _to_nibabel(image: ants.ANTsImage) -> nb.Nifti1Image:
    out = ants.to_nibabel_nifti(image)
    out.header.set_xyzt_units("mm")
    return out


def resample_to_zoom(img: nb.Nifti1Image, zoom: float = 2.0) -> nb.Nifti1Image:
    """Resample to isotropic ``zoom`` mm voxels with linear interpolation.

    Axes finer than ``zoom`` are first low-pass filtered with a Gaussian whose FWHM makes up the
    difference, :math:`\\sigma = \\sqrt{z^2 - z_0^2} / 2.355`, so that downsampling a 0.7 mm
    image does not alias its noise into the 2 mm grid.
    """
    image = _anti_aliased(_to_ants(img), zoom)
    return _to_nibabel(ants.resample_image(image, (zoom,) * 3, use_voxels=False, interp_type=0))


def _anti_aliased(image: ants.ANTsImage, zoom: float) -> ants.ANTsImage:
    """Low-pass filter the axes finer than ``zoom`` mm (see :func:`resample_to_zoom`)."""
    native = np.array(image.spacing)
    sigma = np.sqrt(np.clip(zoom**2 - native**2, 0, None)) / 2.355
    if np.any(sigma > 0):
        image = ants.smooth_image(image, tuple(sigma), sigma_in_physical_coordinates=True)
    return image


@cache
def head_like_template(resolution: int = 2) -> np.ndarray:
    """The template brain wrapped in shells of CSF, skull and scalp.

    Distances outside the brain mask: 0–5 mm dark CSF, 5–9 mm dark bone, 9–15 mm bright scalp
    (80 % of white matter), smoothed by one voxel. Mutual information only needs the layout of
    bright and dark shells, so the same image serves T1w and FLAIR.
    """
    tpl = load_template(resolution)
    distance = ndi.distance_transform_edt(~tpl.brain_mask, sampling=tpl.zooms)
    wm = float(np.median(tpl.t1w[tpl.wm > 0.9]))
    head = tpl.t1w.copy()
    head[(distance > 0) & (distance <= 5)] = 0.15 * wm
    head[(distance > 5) & (distance <= 9)] = 0.10 * wm
    head[(distance > 9) & (distance <= 15)] = 0.80 * wm
    head = ndi.gaussian_filter(head, 0.8).astype(np.float32)
    head.setflags(write=False)
    return head


def _foreground(data: np.ndarray) -> np.ndarray:
    """Voxels above 10 % of the 99th percentile of the positive ones: the largest component."""
    foreground = data > 0.1 * np.percentile(data[data > 0], 99)
    labels, n_labels = ndi.label(foreground)
    if n_labels > 1:
        foreground = labels == np.argmax(np.bincount(labels.ravel())[1:]) + 1
    return foreground


def foreground_volume_ml(img: nb.Nifti1Image) -> float:
    """Volume of the image's foreground (the head, or the brain once skull-stripped), in mL."""
    foreground = ndi.binary_fill_holes(_foreground(img.get_fdata(dtype=np.float32)))
    return float(foreground.sum() * np.prod(img.header.get_zooms()[:3]) / 1000)


def crop_below_vertex(img: nb.Nifti1Image, depth_mm: float = VERTEX_DEPTH_MM) -> nb.Nifti1Image:
    """Keep the top ``depth_mm`` of a RAS+ head: the slices from the vertex down."""
    area = _foreground(img.get_fdata(dtype=np.float32)).sum(axis=(0, 1))
    vertex = np.flatnonzero(area > 0.01 * area.max()).max()
    return img.slicer[:, :, max(0, int(vertex - depth_mm / img.header.get_zooms()[2])) :]


@dataclass(frozen=True)
class RegistrationResult:
    """An image resampled onto the template grid, with the transform that took it there."""

    registered: nb.Nifti1Image
    #: ITK affine (``.mat``) mapping template points to image points, as ANTs writes it.
    transform: Path
    #: ``"brain"`` or ``"head"``: the template variant the image was registered to.
    template_variant: str


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

    Neither first stage is precise enough to be judged by the registration-QC network: the
    head-like template only has the layout of a head, so its optimum may leave a head pitched,
    and ``AffineFast`` stops at a coarse level (docs/preprocessing.md). Restricting the metric
    to the dilated template brain lets the brain itself, not the scalp or the neck, set the
    final alignment. It starts from ``initial``, an ITK transform file or ``"Identity"``.
    """
    fixed = _to_ants(nb.Nifti1Image(tpl.t1w, tpl.affine))
    result = ants.registration(
        fixed,
        moving,
        type_of_transform=kind,
        initial_transform=str(initial),
        mask=fixed.new_image_like(brain_region(tpl).astype(np.float32)),
        outprefix=prefix,
    )
    return Path(result["fwdtransforms"][0])


def residual_misregistration(image: np.ndarray, template: Template | None = None) -> np.ndarray:
    """The rigid transform by which an image on the template grid is still out of register
    (4x4, mm, ITK's LPS frame, mapping template points to image points).

    The image is registered to the template again inside the brain, as the pipeline's final
    stage registers (:func:`_register_within_brain`), but rigidly and starting from where it
    lies: an image in register gives the identity, up to the optimiser's tolerance, and a
    shifted or rotated one the transform that undoes it. This checks registrations the pipeline
    did not make, such as fMRIPrep's. Rigid, because an affine can trade a shift of a full-head
    image for a change of scale, whose "correction" is then tens of mm; a wrong scale therefore
    goes unmeasured.
    """
    tpl = template or load_template(2)
    with tempfile.TemporaryDirectory(prefix="bidsqc_") as scratch:
        moving = _to_ants(nb.Nifti1Image(np.asarray(image, dtype=np.float32), tpl.affine))
        transform = _register_within_brain(moving, tpl, prefix=f"{scratch}/", kind="Rigid")
        return read_itk_affine(transform)


def register_to_template(
    img: nb.Nifti1Image, out_dir: str | os.PathLike, *, template: Template | None = None
) -> RegistrationResult:
    """Affinely register ``img`` to the template and resample it onto the template grid.

    The transform comes in two stages (see the module docstring): an initial alignment to the
    template or its head-like version, then a refinement inside the template brain.

    The 2 mm template grid is the 96 x 112 x 96 head box, so resampling onto it is also the crop.
    Alignments that scale an axis by a factor outside :data:`PLAUSIBLE_SCALE` are discarded;
    ``ValueError`` is raised when none is left: the image is then unlikely to be a brain, or its
    header orientation is wrong.
    """
    tpl = template or load_template(2)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    whole = _to_ants(img)
    volume = foreground_volume_ml(img)
    variants = []
    if volume < FULL_HEAD_MIN_ML:
        variants.append(("brain", tpl.t1w, whole, "AffineFast"))
    if volume > SKULL_STRIPPED_MAX_ML:
        # The full, four-level affine: AffineFast stops at 4 mm and fell into pitched minima.
        head = head_like_template(tpl.resolution)
        variants.append(("head", head, _to_ants(crop_below_vertex(img)), "Affine"))
    region = brain_region(tpl)

    candidates, rejected = [], []
    for variant, fixed_data, moving, kind in variants:
        fixed = _to_ants(nb.Nifti1Image(fixed_data, tpl.affine))
        first = ants.registration(
            fixed, moving, type_of_transform=kind, outprefix=str(out_dir / f"{variant}_")
        )
        initial = Path(first["fwdtransforms"][0])
        refined = _register_within_brain(
            whole, tpl, prefix=str(out_dir / f"refined-{variant}_"), initial=initial
        )
        transform = refined
        if runaway := _implausible_scales(refined):
            # A refinement that runs away (an implausible scale) falls back on its start.
            if implausible := _implausible_scales(initial):
                rejected.append(implausible)
                continue
            logger.warning(
                "the refinement inside the brain gave implausible scale factors (%s); "
                "keeping the first, %s-template alignment",
                runaway,
                variant,
            )
            transform = initial
        warped = ants.apply_transforms(fixed, whole, [str(transform)], interpolator="linear")
        score = nmi(warped.numpy(), tpl.t1w, region)
        candidates.append((score, variant, warped, transform))
    if not candidates:
        raise ValueError(
            "registration to the template is implausible (axis scale factors "
            f"{'; '.join(rejected)}): not a brain, or a wrong header orientation"
        )
    _, variant, warped, transform = max(candidates, key=lambda c: c[0])
    registered = _on_grid(np.asanyarray(_to_nibabel(warped).dataobj), tpl.affine)
    return RegistrationResult(registered, transform, variant)


def resample_to_template(
    img: nb.Nifti1Image, *, template: Template | None = None
) -> nb.Nifti1Image:
    """Resample an image that is already in MNI space onto the 2 mm template head box.

    No registration: world coordinates are kept, which is right for the bundled
    MNI152NLin2009cSym and for MNI152NLin2009cAsym, which shares its coordinates (the two differ
    only by the symmetrisation of the anatomy). Anti-aliased as :func:`resample_to_zoom`.
    """
    tpl = template or load_template(2)
    fixed = _to_ants(nb.Nifti1Image(np.zeros(tpl.shape, np.float32), tpl.affine))
    moving = _to_ants(resample_to_zoom(reorient_to_ras(img), tpl.resolution))
    resampled = _to_nibabel(ants.resample_image_to_target(moving, fixed, interp_type="linear"))
    return _on_grid(np.asanyarray(resampled.dataobj), tpl.affine)


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
    fixed = _to_ants(nb.Nifti1Image(np.zeros(shape, np.float32), affine))
    moving = _anti_aliased(_to_ants(reorient_to_ras(img)), resolution)
    warped = ants.apply_transforms(fixed, moving, [str(transform)], interpolator="linear")
    return _on_grid(np.asanyarray(_to_nibabel(warped).dataobj), affine)


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
        _to_ants(reference),
        _to_ants(moving),
        type_of_transform="Rigid",
        outprefix=str(out_dir / "coreg_"),
    )
    rigid = Path(result["fwdtransforms"][0])
    fixed = _to_ants(nb.Nifti1Image(tpl.t1w, tpl.affine))
    # ANTs maps template points through the list in order: to the T1w, then to the FLAIR.
    warped = ants.apply_transforms(
        fixed, _to_ants(moving), [str(reference_transform), str(rigid)], interpolator="linear"
    )
    return _on_grid(np.asanyarray(_to_nibabel(warped).dataobj), tpl.affine), rigid


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
