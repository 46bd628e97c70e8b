"""Corruption engine: synthetic MRI artefacts with recorded, replayable parameters.

Every artefact comes as two classes, as in TorchIO: a *random* class that checks its ranges once,
in ``__init__``, and draws parameters from a :class:`numpy.random.Generator`, and a *deterministic*
dataclass that holds every drawn value and applies it. The deterministic object is the label: its
fields go to JSON and :meth:`Corruption.from_dict` replays them into the same volume.

==========  ====================================  ========================  =====================
name        mechanism                             strength (unit)           severity 1 at
==========  ====================================  ========================  =====================
motion      k-space segments from rigid poses     Jenkinson RMS (mm)        20 mm
bias        smooth multiplicative receive field   log max/min (unitless)    ln 4 (4-fold range)
ghosting    periodic k-space plane attenuation    ghost amplitude / signal  0.5 (2 ghosts, s = 1)
spike       one bright k-space point per spike    stripe amplitude / mean   0.5
blur        isotropic Gaussian point spread       FWHM (mm)                 4 mm
noise       complex Gaussian, magnitude (Rician)  sigma / foreground        0.2 (SNR 5)
==========  ====================================  ========================  =====================

``severity = min(1, strength / full_scale)``, so 0 means "not applied" and severities are
comparable across images whatever their intensity scale or voxel size. The table order is the
order :class:`RandomCorruption` applies them in: the object moves, the receive field weights it,
k-space is acquired (ghosts, spikes), reconstruction filters it, and thermal noise is added before
the magnitude is taken.

All artefacts work at native resolution and in native space (anisotropic voxels included) on a
single-channel :class:`torchio.ScalarImage` or a 3D :class:`nibabel.Nifti1Image`; a NIfTI input
gives a float32 NIfTI output with the same affine.
"""

from __future__ import annotations

import csv
import json
import math
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar, TypeVar

import nibabel as nb
import numpy as np
import torch
import torchio as tio
from numpy.typing import ArrayLike
from scipy.spatial.transform import Rotation

from bidsqc.loading import load_anatomical

__all__ = [
    "ARTEFACTS",
    "JENKINSON_RADIUS_MM",
    "LABELS_TABLE",
    "LABEL_COLUMNS",
    "MOTION_GRADE_THRESHOLDS_MM",
    "QUALITY_COST",
    "Artefact",
    "BiasField",
    "Blur",
    "Corruption",
    "Ghosting",
    "Motion",
    "Noise",
    "RandomArtefact",
    "RandomBiasField",
    "RandomBlur",
    "RandomCorruption",
    "RandomGhosting",
    "RandomMotion",
    "RandomNoise",
    "RandomSpike",
    "Spike",
    "foreground_intensity",
    "generate_corrupted_dataset",
    "image_centre_lps",
    "jenkinson_rms",
    "motion_grade",
    "motion_rms_mm",
    "quality_score",
    "rigid_affine",
    "save_nifti_sample",
]

#: Radius of the head-sized sphere over which displacements are averaged (Jenkinson 1999).
JENKINSON_RADIUS_MM = 80.0
#: Motion RMS (mm) at which grade 1 (mild) and grade 2 (severe) start; see docs/simulation.md.
MOTION_GRADE_THRESHOLDS_MM = (4.5, 11.7)
#: Sampling grid for the strength of a bias field, in normalised coordinates.
_BIAS_GRID = (16, 16, 16)
#: Radius, in normalised coordinates, of the central ball where a head's brain lies in the field
#: of view, over which the strength of a bias field is measured.
_BRAIN_RADIUS = 0.7

ImageT = TypeVar("ImageT", nb.Nifti1Image, tio.ScalarImage)


# --- rigid geometry and motion labels ---------------------------------------------------------


def rigid_affine(
    degrees: ArrayLike, translation: ArrayLike, centre: ArrayLike = (0.0, 0.0, 0.0)
) -> np.ndarray:
    r"""Build the 4×4 rigid transform that TorchIO's ``Motion`` means by one pose.

    TorchIO hands its poses to SimpleITK's ``Euler3DTransform``, whose default convention is
    :math:`R = R_z(\theta_3) R_x(\theta_1) R_y(\theta_2)` (rotations about the fixed world axes,
    first about *y*, then *x*, then *z*). The pose rotates about ``centre`` and then translates:

    .. math::

        x \mapsto R\,(x - c) + c + t

    Parameters
    ----------
    degrees : array-like of shape (3,)
        Rotation angles :math:`(\theta_1, \theta_2, \theta_3)` about the x, y and z axes, in
        degrees.
    translation : array-like of shape (3,)
        Translation :math:`t` in mm.
    centre : array-like of shape (3,)
        Centre of rotation :math:`c` in mm, in the same world frame as ``translation``.

    Returns
    -------
    numpy.ndarray of shape (4, 4)
    """
    theta = np.asarray(degrees, dtype=float)
    rotation = Rotation.from_euler("ZXY", [theta[2], theta[0], theta[1]], degrees=True)
    matrix = rotation.as_matrix()
    centre = np.asarray(centre, dtype=float)
    affine = np.eye(4)
    affine[:3, :3] = matrix
    affine[:3, 3] = np.asarray(translation, dtype=float) + centre - matrix @ centre
    return affine


def _check_affine(affine: ArrayLike, name: str) -> np.ndarray:
    array = np.asarray(affine, dtype=float)
    if array.shape != (4, 4):
        raise ValueError(f"{name} must be a 4x4 matrix, got shape {array.shape}")
    return array


def jenkinson_rms(
    affine_a: ArrayLike,
    affine_b: ArrayLike,
    radius_mm: float = JENKINSON_RADIUS_MM,
    centre: ArrayLike = (0.0, 0.0, 0.0),
) -> float:
    r"""Root-mean-square displacement between two transforms over a sphere, in mm.

    Jenkinson (1999) averages :math:`\lVert A B^{-1} x - x \rVert^2` over a sphere of radius
    :math:`R` centred at :math:`c`, which has a closed form. With
    :math:`A B^{-1} - I = \begin{pmatrix} M & t \\ 0 & 0 \end{pmatrix}`:

    .. math::

        \mathrm{RMS} = \sqrt{\frac{R^2}{5} \operatorname{tr}\left(M^\top M\right)
                              + (t + M c)^\top (t + M c)}

    The sphere centre should be the centre of rotation (the head), otherwise a rotation also
    counts as the translation it causes at ``centre``. For rigid transforms the measure is
    symmetric in ``affine_a`` and ``affine_b``.

    Parameters
    ----------
    affine_a, affine_b : array-like of shape (4, 4)
        Affine transforms in mm.
    radius_mm : float
        Radius :math:`R` of the sphere in mm; 80 mm is Jenkinson's head-sized default.
    centre : array-like of shape (3,)
        Centre :math:`c` of the sphere in mm.

    Returns
    -------
    float
        RMS deviation in mm; 0 for identical transforms.

    References
    ----------
    M. Jenkinson, "Measuring transformation error by RMS deviation", FMRIB Technical Report
    TR99MJ1, University of Oxford, 1999.
    """
    a = _check_affine(affine_a, "affine_a")
    b = _check_affine(affine_b, "affine_b")
    if not radius_mm >= 0:
        raise ValueError(f"radius_mm must be non-negative, got {radius_mm}")
    difference = a @ np.linalg.inv(b) - np.eye(4)
    matrix, offset = difference[:3, :3], difference[:3, 3]
    shift = offset + matrix @ np.asarray(centre, dtype=float)
    return float(math.sqrt(radius_mm**2 / 5 * np.trace(matrix.T @ matrix) + shift @ shift))


def motion_rms_mm(
    poses: Sequence[ArrayLike],
    radius_mm: float = JENKINSON_RADIUS_MM,
    centre: ArrayLike = (0.0, 0.0, 0.0),
) -> float:
    r"""Motion target: mean Jenkinson RMS of each moved pose against the unmoved one, in mm.

    .. math::

        \mathrm{RMS}_\mathrm{motion} = \frac{1}{N} \sum_{i=1}^{N} \mathrm{RMS}(P_i, I)

    where :math:`P_1 \dots P_N` are the moved poses and :math:`I` is the reference pose that
    fills the centre of k-space. Poses built by :func:`rigid_affine` about ``centre`` give
    :math:`\sqrt{\tfrac{R^2}{5}\,\mathrm{tr}(M^\top M) + |t|^2}` per pose, whatever the
    position of the centre.

    Parameters
    ----------
    poses : sequence of array-like of shape (4, 4)
        The moved poses. The identity contributes 0; no pose at all means no motion (0).
    radius_mm : float
        Sphere radius, see :func:`jenkinson_rms`.
    centre : array-like of shape (3,)
        Sphere centre in mm; must be the centre the poses rotate about.

    Returns
    -------
    float
    """
    rms = [jenkinson_rms(pose, np.eye(4), radius_mm, centre) for pose in poses]
    return float(np.mean(rms)) if rms else 0.0


def motion_grade(rms_mm: float) -> int:
    """Grade motion as 0 (none), 1 (mild) or 2 (severe) from :func:`motion_rms_mm`.

    The thresholds, :data:`MOTION_GRADE_THRESHOLDS_MM`, map the synthetic ranges of
    Loizillon et al. (2023, Table 2) to RMS: poses drawn in 2–4° and 2–4 mm are all mild,
    poses drawn in 6–8° and 6–8 mm are all severe, and the 4–6 range is split at its median.
    docs/simulation.md gives the numbers.
    """
    if not rms_mm >= 0:
        raise ValueError(f"rms_mm must be a non-negative number of mm, got {rms_mm}")
    mild, severe = MOTION_GRADE_THRESHOLDS_MM
    return 2 if rms_mm >= severe else int(rms_mm >= mild)


def image_centre_lps(image: tio.ScalarImage) -> np.ndarray:
    """Centre of the voxel grid in mm, in the LPS world frame SimpleITK (and so TorchIO) uses."""
    index = (np.asarray(image.spatial_shape, dtype=float) - 1) / 2
    ras = image.affine[:3, :3] @ index + image.affine[:3, 3]
    return ras * np.array([-1.0, -1.0, 1.0])


# --- shared helpers ---------------------------------------------------------------------------


def foreground_intensity(data: ArrayLike) -> float:
    """Robust foreground signal: the median of the voxels at or above the volume mean.

    The mean separates head (or brain) from air for full-head and skull-stripped images alike, and
    the median of what is above it sits between grey and white matter on T1w and FLAIR. It scales
    with the image, so noise relative to it means the same on uint8 and on 0–4000 images. An
    all-zero image gives 0.
    """
    array = np.asarray(data, dtype=np.float64)
    return float(np.median(array[array >= array.mean()]))


def _check_number(
    value: float,
    name: str,
    *,
    min_value: float | None = None,
    max_value: float | None = None,
    integer: bool = False,
) -> float:
    """Return ``value`` as a float (int if ``integer``), naming ``name`` in every error."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if integer and int(value) != value:
        raise ValueError(f"{name} must be an integer, got {value}")
    if min_value is not None and value < min_value:
        raise ValueError(f"{name} must be >= {min_value}, got {value}")
    if max_value is not None and value > max_value:
        raise ValueError(f"{name} must be <= {max_value}, got {value}")
    return int(value) if integer else float(value)


def _parse_range(
    value: float | tuple[float, float],
    name: str,
    *,
    min_value: float | None = None,
    max_value: float | None = None,
    integer: bool = False,
) -> tuple[float, float]:
    """Turn a number or a pair into ``(low, high)``, naming ``name`` in every error.

    A single ``d >= 0`` means ``(-d, d)``, or ``(min_value, d)`` when ``min_value`` is given.
    """
    if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
        high = _check_number(value, name, min_value=0, integer=integer)
        value = (-high if min_value is None else min_value, high)
    try:
        low, high = value
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a number or a pair (min, max), got {value!r}") from err
    bounds = {"min_value": min_value, "max_value": max_value, "integer": integer}
    low = _check_number(low, name, **bounds)
    high = _check_number(high, name, **bounds)
    if low > high:
        raise ValueError(f"{name}: min {low} is greater than max {high}")
    return low, high


def _as_rows(value: ArrayLike, name: str) -> list[list[float]]:
    """Rows of three floats, e.g. one (x, y, z) triple per pose or per spike."""
    array = np.asarray(value, dtype=float)
    if array.size % 3 or (array.ndim > 1 and array.shape[-1] != 3):
        raise ValueError(f"{name} must have shape (N, 3), got shape {array.shape}")
    return array.reshape(-1, 3).tolist()


def _as_scalar_image(image: nb.Nifti1Image | tio.ScalarImage) -> tio.ScalarImage:
    """A float32 single-channel copy, so no artefact ever writes into its input."""
    if isinstance(image, tio.ScalarImage):
        if image.num_channels != 1:
            raise ValueError(f"image must have one channel, got {image.num_channels}")
        return tio.ScalarImage(tensor=image.data.float().clone(), affine=image.affine)
    if isinstance(image, nb.Nifti1Image):
        if image.ndim != 3:
            raise ValueError(f"image must be 3D, got shape {image.shape}")
        # Contiguous: a reoriented image (nibabel's as_reoriented) has negative strides.
        data = np.ascontiguousarray(image.get_fdata(dtype=np.float32))
        return tio.ScalarImage(tensor=torch.from_numpy(data[np.newaxis]), affine=image.affine)
    raise TypeError(
        f"image must be a nibabel.Nifti1Image or torchio.ScalarImage, got {type(image)}"
    )


def _on_image(apply: Callable[[tio.ScalarImage], tio.ScalarImage], image: ImageT) -> ImageT:
    """Run ``apply`` on a float copy of ``image`` and return the same kind of image."""
    result = apply(_as_scalar_image(image))
    if isinstance(image, tio.ScalarImage):
        return result
    header = image.header.copy()
    header.set_data_dtype(np.float32)
    return nb.Nifti1Image(result.data[0].numpy(), image.affine, header)


# --- deterministic artefacts ------------------------------------------------------------------


class Artefact(ABC):
    """A fully specified artefact: applying it twice gives the same volume.

    Subclasses are dataclasses whose fields are the parameters, so ``to_dict`` is the record
    that :meth:`Corruption.from_dict` replays.
    """

    name: ClassVar[str]
    #: Strength that maps to severity 1.
    full_scale: ClassVar[float]

    @property
    @abstractmethod
    def strength(self) -> float:
        """The artefact's size in physical units (see the class docstring)."""

    @property
    def severity(self) -> float:
        """``min(1, strength / full_scale)``: 0 for no artefact, 1 for a severe one."""
        return min(1.0, self.strength / self.full_scale)

    @abstractmethod
    def _apply(self, image: tio.ScalarImage) -> tio.ScalarImage:
        """Corrupt a float32 single-channel copy."""

    def __call__(self, image: ImageT) -> ImageT:
        """Return a corrupted float32 copy of ``image``, of the same kind and affine."""
        return _on_image(self._apply, image)

    def to_dict(self) -> dict:
        """JSON-serialisable record: name, parameters, strength and severity."""
        return {
            "name": self.name,
            "params": asdict(self),  # type: ignore[call-overload]
            "strength": self.strength,
            "severity": self.severity,
        }


@dataclass
class Motion(Artefact):
    r"""Rigid head motion during acquisition, mixed in k-space (Shaw et al. 2019).

    Each of the :math:`N` poses resamples the image; the k-space of the volume is then assembled
    from segments of the poses' spectra along the last array axis, split at ``times``, with the
    unmoved image filling the segment that holds the k-space centre (TorchIO ``tio.Motion``).
    Ghosting, ringing and blurring follow from the inconsistent k-space.

    TorchIO 1.2.1 builds each pose about the image centre but then drops the centre, so its
    poses rotate about the world origin (TorchIO issue #812 discusses its Motion conventions).
    Here every pose rotates about :func:`image_centre_lps`, as :func:`rigid_affine` describes,
    by handing TorchIO the translation of that pose written about the origin. The strength is
    :func:`motion_rms_mm` of the poses, independent of where the image sits in the world.

    Parameters
    ----------
    degrees : array-like of shape (N, 3)
        Rotation of each pose about x, y, z in degrees (LPS world axes).
    translation : array-like of shape (N, 3)
        Translation of each pose in mm (LPS).
    times : array-like of shape (N,)
        Fractions of k-space, in (0, 1), at which each pose starts.
    image_interpolation : str
        Interpolation for resampling the poses; any TorchIO interpolation name.

    References
    ----------
    R. Shaw, C. Sudre, S. Ourselin, M. J. Cardoso, "MRI k-space motion artefact augmentation:
    model robustness and task-specific uncertainty", MIDL 2019, PMLR 102:427–436.
    """

    degrees: list[list[float]]
    translation: list[list[float]]
    times: list[float]
    image_interpolation: str = "linear"

    name: ClassVar[str] = "motion"
    full_scale: ClassVar[float] = 20.0

    def __post_init__(self) -> None:
        self.degrees = _as_rows(self.degrees, "degrees")
        self.translation = _as_rows(self.translation, "translation")
        self.times = np.asarray(self.times, dtype=float).reshape(-1).tolist()
        if not len(self.degrees) == len(self.translation) == len(self.times):
            raise ValueError("degrees, translation and times must describe the same poses")
        if not all(0 < time < 1 for time in self.times):
            raise ValueError(f"times must lie in (0, 1), got {self.times}")
        self.image_interpolation = tio.Transform.parse_interpolation(self.image_interpolation)

    def poses(self, centre: ArrayLike = (0.0, 0.0, 0.0)) -> list[np.ndarray]:
        """The 4×4 pose of each segment, rotating about ``centre`` (mm, LPS)."""
        return [
            rigid_affine(degrees, translation, centre)
            for degrees, translation in zip(self.degrees, self.translation, strict=True)
        ]

    @property
    def strength(self) -> float:
        """:func:`motion_rms_mm` of the poses, in mm."""
        return motion_rms_mm(self.poses())

    def _apply(self, image: tio.ScalarImage) -> tio.ScalarImage:
        poses = self.poses(image_centre_lps(image))
        transform = tio.Motion(
            degrees=np.array(self.degrees).reshape(-1, 3),
            translation=np.array([pose[:3, 3] for pose in poses]).reshape(-1, 3),
            times=np.array(self.times),
            image_interpolation=self.image_interpolation,
        )
        return transform(image)


@dataclass
class BiasField(Artefact):
    r"""Smooth multiplicative intensity inhomogeneity from the receive coil (Van Leemput 1999).

    The field is :math:`\exp\left(\sum_{i+j+k \le p} c_{ijk}\, x^i y^j z^k\right)` with
    :math:`x, y, z \in [-1, 1]` spanning the volume (TorchIO ``tio.BiasField``; coefficients
    in its order, constant term first). Its strength is the log of its max/min ratio over the
    central ball of radius 0.7 (normalised), where the brain of a head lies in the field of
    view, so a field that varies four-fold across the brain has severity 1. Over the whole
    volume it varies much more, but its extremes are in the corners, outside the head, and a
    field weak across the brain is lost in the inhomogeneity real scans already have.

    Parameters
    ----------
    coefficients : sequence of float
        Polynomial coefficients (unitless), :math:`\binom{p+3}{3}` of them.
    order : int
        Polynomial order :math:`p`.

    References
    ----------
    K. Van Leemput, F. Maes, D. Vandermeulen, P. Suetens, "Automated model-based bias field
    correction of MR images of the brain", IEEE TMI 18(10):885–896, 1999.
    """

    coefficients: list[float]
    order: int = 3

    name: ClassVar[str] = "bias"
    full_scale: ClassVar[float] = math.log(4)

    def __post_init__(self) -> None:
        self.coefficients = [float(value) for value in self.coefficients]
        expected = math.comb(self.order + 3, 3)
        if len(self.coefficients) != expected:
            raise ValueError(
                f"coefficients must have {expected} values for order {self.order}, "
                f"got {len(self.coefficients)}"
            )

    @property
    def strength(self) -> float:
        """Log of the field's max/min ratio across the brain-sized central ball (unitless)."""
        field = tio.BiasField.generate_bias_field(
            np.zeros((1, *_BIAS_GRID)), self.order, self.coefficients
        )
        axes = [np.linspace(-1, 1, n) ** 2 for n in _BIAS_GRID]
        inside = sum(np.meshgrid(*axes, indexing="ij", sparse=True)) <= _BRAIN_RADIUS**2
        return float(np.ptp(np.log(field[inside])))

    def _apply(self, image: tio.ScalarImage) -> tio.ScalarImage:
        return tio.BiasField(coefficients=self.coefficients, order=self.order)(image)


@dataclass
class Ghosting(Artefact):
    r"""Discrete ghosts along the phase-encoding axis from periodic signal changes.

    Every ``num_ghosts``-th k-space plane along ``axis`` is scaled by :math:`1 - s` (the central
    plane is kept), as pulsatile flow or breathing would do (TorchIO ``tio.Ghosting``). Scaling
    a comb of period :math:`n` subtracts :math:`n` copies of the image, each of amplitude
    :math:`s/n` and shifted by a multiple of the field of view over :math:`n`; the shifted
    copies are the ghosts. The strength is the amplitude of one ghost relative to the signal,
    :math:`s/n`: more ghosts are fainter ghosts, so :math:`s \cdot n` would rank them backwards.
    It is largest, 0.5, for two ghosts at :math:`s = 1`.

    Parameters
    ----------
    num_ghosts : int
        Period :math:`n \ge 2` of the attenuated planes, i.e. the number of image copies.
    axis : int
        Array axis (0, 1 or 2) taken as the phase-encoding direction.
    intensity : float
        Attenuation :math:`s \in [0, 1]` of the modulated planes; 0 leaves the image unchanged.

    References
    ----------
    J. Zhuo, R. P. Gullapalli, "AAPM/RSNA physics tutorial for residents: MR artifacts,
    safety, and quality control", RadioGraphics 26(1):275–297, 2006.
    """

    num_ghosts: int
    axis: int
    intensity: float

    name: ClassVar[str] = "ghosting"
    full_scale: ClassVar[float] = 0.5

    def __post_init__(self) -> None:
        self.num_ghosts = _check_number(self.num_ghosts, "num_ghosts", min_value=2, integer=True)
        self.intensity = _check_number(self.intensity, "intensity", min_value=0, max_value=1)
        if self.axis not in (0, 1, 2):
            raise ValueError(f"axis must be 0, 1 or 2, got {self.axis!r}")

    @property
    def strength(self) -> float:
        """Amplitude of one ghost relative to the signal (unitless)."""
        return self.intensity / self.num_ghosts

    def _apply(self, image: tio.ScalarImage) -> tio.ScalarImage:
        transform = tio.Ghosting(
            num_ghosts=self.num_ghosts, axis=self.axis, intensity=self.intensity, restore=None
        )
        return transform(image)


@dataclass
class Spike(Artefact):
    r"""Herringbone stripes from spikes of RF noise in k-space.

    Each spike adds :math:`r \max|F|` to one k-space sample (TorchIO ``tio.Spike``). Since
    :math:`\max|F|` is the DC term, the sum of the image, each spike becomes a plane wave of
    amplitude :math:`|r|` times the image mean; the strength, :math:`|r|\sqrt{n}`, is the
    stripe amplitude of :math:`n` spikes relative to the image mean.

    Parameters
    ----------
    positions : array-like of shape (n, 3)
        Spike positions as fractions in [0, 1) of the k-space extent along each axis
        (0.5 is the centre).
    intensity : float
        Spike magnitude :math:`r` relative to the k-space maximum; 0 leaves the image unchanged.

    References
    ----------
    J. Zhuo, R. P. Gullapalli, RadioGraphics 26(1):275–297, 2006 (see :class:`Ghosting`).
    """

    positions: list[list[float]]
    intensity: float

    name: ClassVar[str] = "spike"
    full_scale: ClassVar[float] = 0.5

    def __post_init__(self) -> None:
        self.positions = _as_rows(self.positions, "positions")
        if not all(0 <= value < 1 for row in self.positions for value in row):
            raise ValueError(f"positions must lie in [0, 1), got {self.positions}")
        self.intensity = float(self.intensity)

    @property
    def strength(self) -> float:
        """Stripe amplitude relative to the image mean (unitless)."""
        return abs(self.intensity) * math.sqrt(len(self.positions))

    def _apply(self, image: tio.ScalarImage) -> tio.ScalarImage:
        positions = np.array(self.positions).reshape(-1, 3)
        return tio.Spike(spikes_positions=positions, intensity=self.intensity)(image)


@dataclass
class Blur(Artefact):
    r"""Loss of resolution: an isotropic Gaussian point-spread function.

    The image is convolved with a Gaussian of full width at half maximum ``fwhm`` in mm on every
    axis, :math:`\sigma = \mathrm{FWHM} / (2\sqrt{2 \ln 2})`, converted to voxels per axis so
    that anisotropic voxels get the same physical blur (TorchIO ``tio.Blur``).

    Parameters
    ----------
    fwhm : float
        Full width at half maximum in mm; 0 leaves the image unchanged.
    """

    fwhm: float

    name: ClassVar[str] = "blur"
    full_scale: ClassVar[float] = 4.0

    def __post_init__(self) -> None:
        self.fwhm = _check_number(self.fwhm, "fwhm", min_value=0)

    @property
    def strength(self) -> float:
        """FWHM in mm."""
        return self.fwhm

    def _apply(self, image: tio.ScalarImage) -> tio.ScalarImage:
        sigma = self.fwhm / (2 * math.sqrt(2 * math.log(2)))
        return tio.Blur(std=(sigma, sigma, sigma))(image)


@dataclass
class Noise(Artefact):
    r"""Thermal noise in a magnitude image: Rician (Gudbjartsson & Patz 1995).

    Independent Gaussian noise of standard deviation :math:`\sigma` is added to the real and
    imaginary channels and the magnitude is kept,
    :math:`|x + \sigma n_1 + i \sigma n_2|`, with :math:`\sigma = s \cdot`
    :func:`foreground_intensity`, so the background turns Rayleigh-distributed as in real
    magnitude images. The strength is :math:`s`, the inverse of the foreground SNR.

    Parameters
    ----------
    std : float
        Noise standard deviation :math:`s` relative to the foreground intensity (unitless);
        0 leaves the image unchanged.
    seed : int
        Seed of the :class:`numpy.random.Generator` that draws :math:`n_1, n_2`.

    References
    ----------
    H. Gudbjartsson, S. Patz, "The Rician distribution of noisy MRI data", Magnetic Resonance
    in Medicine 34(6):910–914, 1995.
    """

    std: float
    seed: int

    name: ClassVar[str] = "noise"
    full_scale: ClassVar[float] = 0.2

    def __post_init__(self) -> None:
        self.std = _check_number(self.std, "std", min_value=0)
        self.seed = int(self.seed)

    @property
    def strength(self) -> float:
        """Noise standard deviation relative to the foreground intensity."""
        return self.std

    def _apply(self, image: tio.ScalarImage) -> tio.ScalarImage:
        if self.std == 0:
            return image
        data = image.data.numpy()
        sigma = np.float32(self.std * foreground_intensity(data))
        rng = np.random.default_rng(self.seed)
        real = data + sigma * rng.standard_normal(data.shape, dtype=np.float32)
        imaginary = sigma * rng.standard_normal(data.shape, dtype=np.float32)
        return tio.ScalarImage(
            tensor=torch.from_numpy(np.hypot(real, imaginary)), affine=image.affine
        )


#: Deterministic artefacts by name, in the physical order :class:`RandomCorruption` applies.
ARTEFACTS: dict[str, type[Artefact]] = {
    cls.name: cls for cls in (Motion, BiasField, Ghosting, Spike, Blur, Noise)
}


#: Quality points, out of 10, that one artefact of severity 1 costs (see :func:`quality_score`).
QUALITY_COST = 6.0


def quality_score(severities: Mapping[str, float]) -> float:
    r"""The 0-10 quality of an image from the severities of its artefacts (MIQA-style).

    :math:`q = \max(0,\ 10 - c \sum_a s_a)` with :math:`c` = :data:`QUALITY_COST`: a clean
    image scores 10, each artefact lowers the score in proportion to its severity :math:`s_a`
    (one severe artefact leaves 4, a mild one at 0.3 costs 1.8), and artefacts add up.
    """
    return max(0.0, 10.0 - QUALITY_COST * sum(severities.values()))


# --- random artefacts -------------------------------------------------------------------------


class RandomArtefact(ABC):
    """Draws the parameters of one :class:`Artefact` from a :class:`numpy.random.Generator`."""

    @abstractmethod
    def sample(self, rng: np.random.Generator) -> Artefact:
        """Draw one fully specified artefact."""


class RandomMotion(RandomArtefact):
    r"""Draw rigid motion as TorchIO's ``RandomMotion`` does, recording every pose.

    Parameters
    ----------
    degrees : float or (float, float)
        Rotation range :math:`(a, b)` in degrees; each of the three angles of each pose is
        :math:`\theta \sim \mathcal{U}(a, b)`. A single :math:`d` means :math:`(-d, d)`.
    translation : float or (float, float)
        Translation range :math:`(a, b)` in mm, drawn like ``degrees``.
    num_transforms : int
        Number :math:`N \ge 1` of moved poses.
    image_interpolation : str
        Interpolation used to resample the poses.

    Notes
    -----
    The :math:`N` start times are :math:`k/(N+1) + \mathcal{U}(-0.3, 0.3)/(N+1)`,
    :math:`k = 1 \dots N`, as in TorchIO.
    """

    def __init__(
        self,
        degrees: float | tuple[float, float] = 8.0,
        translation: float | tuple[float, float] = 8.0,
        num_transforms: int = 2,
        image_interpolation: str = "linear",
    ) -> None:
        self.degrees = _parse_range(degrees, "degrees")
        self.translation = _parse_range(translation, "translation")
        self.num_transforms = _check_number(
            num_transforms, "num_transforms", min_value=1, integer=True
        )
        self.image_interpolation = tio.Transform.parse_interpolation(image_interpolation)

    def sample(self, rng: np.random.Generator) -> Motion:
        count = self.num_transforms
        step = 1 / (count + 1)
        times = step * np.arange(1, count + 1) + rng.uniform(-0.3 * step, 0.3 * step, count)
        return Motion(
            degrees=rng.uniform(*self.degrees, size=(count, 3)),
            translation=rng.uniform(*self.translation, size=(count, 3)),
            times=times,
            image_interpolation=self.image_interpolation,
        )


class RandomBiasField(RandomArtefact):
    r"""Draw a smooth bias field of random strength.

    Parameters
    ----------
    coefficients : float or (float, float)
        Range :math:`(a, b)` of the coefficient magnitude (unitless): :math:`m \sim
        \mathcal{U}(a, b)`, then every non-constant coefficient :math:`c \sim
        \mathcal{U}(-m, m)`. The constant term is 0, so the field changes contrast across the
        volume but not the overall scale. A single :math:`d` means :math:`(0, d)`.
    order : int
        Polynomial order.
    """

    def __init__(self, coefficients: float | tuple[float, float] = 0.2, order: int = 3) -> None:
        self.coefficients = _parse_range(coefficients, "coefficients", min_value=0)
        self.order = _check_number(order, "order", min_value=0, integer=True)

    def sample(self, rng: np.random.Generator) -> BiasField:
        magnitude = rng.uniform(*self.coefficients)
        values = rng.uniform(-magnitude, magnitude, math.comb(self.order + 3, 3))
        values[0] = 0.0
        return BiasField(coefficients=values.tolist(), order=self.order)


class RandomGhosting(RandomArtefact):
    r"""Draw ghosting along a random phase-encoding axis.

    Parameters
    ----------
    num_ghosts : int or (int, int)
        Range :math:`(a, b)` of the number of image copies,
        :math:`n \sim \mathcal{U}\{a, \dots, b\}`, :math:`a \ge 2`.
    axes : sequence of int
        Candidate phase-encoding axes; one is picked uniformly.
    intensity : float or (float, float)
        Range :math:`(a, b) \subseteq [0, 1]` of the attenuation,
        :math:`s \sim \mathcal{U}(a, b)`. A single :math:`d` means :math:`(0, d)`.
    """

    def __init__(
        self,
        num_ghosts: int | tuple[int, int] = (2, 6),
        axes: Sequence[int] = (0, 1, 2),
        intensity: float | tuple[float, float] = 1.0,
    ) -> None:
        self.num_ghosts = _parse_range(num_ghosts, "num_ghosts", min_value=2, integer=True)
        self.axes = tuple(axes)
        if not self.axes or any(axis not in (0, 1, 2) for axis in self.axes):
            raise ValueError(f"axes must be a non-empty subset of (0, 1, 2), got {axes!r}")
        self.intensity = _parse_range(intensity, "intensity", min_value=0, max_value=1)

    def sample(self, rng: np.random.Generator) -> Ghosting:
        low, high = self.num_ghosts
        return Ghosting(
            num_ghosts=int(rng.integers(low, high, endpoint=True)),
            axis=int(rng.choice(self.axes)),
            intensity=rng.uniform(*self.intensity),
        )


class RandomSpike(RandomArtefact):
    r"""Draw k-space spikes at uniformly random positions.

    Parameters
    ----------
    num_spikes : int or (int, int)
        Range :math:`(a, b)` of the number of spikes, :math:`n \sim \mathcal{U}\{a, \dots, b\}`.
    intensity : float or (float, float)
        Range :math:`(a, b)` of the spike magnitude relative to the k-space maximum,
        :math:`r \sim \mathcal{U}(a, b)`. A single :math:`d` means :math:`(0, d)`.

    Notes
    -----
    Each position is :math:`\mathcal{U}[0, 1)^3` in fractions of the k-space extent.
    """

    def __init__(
        self,
        num_spikes: int | tuple[int, int] = (1, 3),
        intensity: float | tuple[float, float] = 0.3,
    ) -> None:
        self.num_spikes = _parse_range(num_spikes, "num_spikes", min_value=0, integer=True)
        self.intensity = _parse_range(intensity, "intensity", min_value=0)

    def sample(self, rng: np.random.Generator) -> Spike:
        low, high = self.num_spikes
        count = int(rng.integers(low, high, endpoint=True))
        return Spike(positions=rng.random((count, 3)), intensity=rng.uniform(*self.intensity))


class RandomBlur(RandomArtefact):
    r"""Draw an isotropic Gaussian blur.

    Parameters
    ----------
    fwhm : float or (float, float)
        Range :math:`(a, b)` of the FWHM in mm, :math:`\mathrm{FWHM} \sim \mathcal{U}(a, b)`.
        A single :math:`d` means :math:`(0, d)`.
    """

    def __init__(self, fwhm: float | tuple[float, float] = 4.0) -> None:
        self.fwhm = _parse_range(fwhm, "fwhm", min_value=0)

    def sample(self, rng: np.random.Generator) -> Blur:
        return Blur(fwhm=rng.uniform(*self.fwhm))


class RandomNoise(RandomArtefact):
    r"""Draw Rician noise relative to the foreground intensity.

    Parameters
    ----------
    std : float or (float, float)
        Range :math:`(a, b)` of :math:`s`, the noise standard deviation over the foreground
        intensity, :math:`s \sim \mathcal{U}(a, b)`. A single :math:`d` means :math:`(0, d)`.

    Notes
    -----
    The noise seed is drawn from ``rng`` too, so the whole volume replays from the record.
    """

    def __init__(self, std: float | tuple[float, float] = 0.2) -> None:
        self.std = _parse_range(std, "std", min_value=0)

    def sample(self, rng: np.random.Generator) -> Noise:
        return Noise(std=rng.uniform(*self.std), seed=int(rng.integers(2**32)))


# --- combinations -----------------------------------------------------------------------------


@dataclass
class Corruption:
    """Several artefacts applied in order: the replayable label of one corrupted volume.

    Parameters
    ----------
    artefacts : list of Artefact
        At most one artefact of each name.
    """

    artefacts: list[Artefact] = field(default_factory=list)

    def __post_init__(self) -> None:
        names = [artefact.name for artefact in self.artefacts]
        if len(set(names)) != len(names):
            raise ValueError(f"artefacts must have distinct names, got {names}")

    def __call__(self, image: ImageT) -> ImageT:
        """Apply every artefact in order to a float32 copy of ``image``."""

        def apply_all(scalar_image: tio.ScalarImage) -> tio.ScalarImage:
            for artefact in self.artefacts:
                scalar_image = artefact._apply(scalar_image)
            return scalar_image

        return _on_image(apply_all, image)

    @property
    def severities(self) -> dict[str, float]:
        """Severity of every known artefact, 0 for those not applied."""
        applied = {artefact.name: artefact.severity for artefact in self.artefacts}
        return {name: applied.get(name, 0.0) for name in ARTEFACTS}

    @property
    def motion_rms_mm(self) -> float:
        """:func:`motion_rms_mm` of the motion artefact, 0 without one."""
        return next((a.strength for a in self.artefacts if isinstance(a, Motion)), 0.0)

    def to_dict(self) -> dict:
        """JSON-serialisable record, replayed by :meth:`from_dict`."""
        return {
            "artefacts": [artefact.to_dict() for artefact in self.artefacts],
            "severity": self.severities,
            "motion_rms_mm": self.motion_rms_mm,
            "motion_grade": motion_grade(self.motion_rms_mm),
        }

    @classmethod
    def from_dict(cls, record: dict) -> Corruption:
        """Rebuild the corruption from :meth:`to_dict` output (derived fields are ignored)."""
        artefacts = []
        for entry in record["artefacts"]:
            if entry["name"] not in ARTEFACTS:
                raise ValueError(f"unknown artefact {entry['name']!r}; known: {list(ARTEFACTS)}")
            artefacts.append(ARTEFACTS[entry["name"]](**entry["params"]))
        return cls(artefacts)


class RandomCorruption:
    """Draw a random subset of artefacts, each independently with its own probability.

    Parameters
    ----------
    artefacts : sequence of RandomArtefact, optional
        Candidates, applied in the given order. The default is every artefact with its default
        ranges, in the physical order of :data:`ARTEFACTS`.
    probabilities : float or sequence of float
        Probability in [0, 1] that each candidate is applied; one value applies to all.
    """

    def __init__(
        self,
        artefacts: Sequence[RandomArtefact] | None = None,
        probabilities: float | Sequence[float] = 0.3,
    ) -> None:
        if artefacts is None:
            artefacts = (
                RandomMotion(),
                RandomBiasField(),
                RandomGhosting(),
                RandomSpike(),
                RandomBlur(),
                RandomNoise(),
            )
        self.artefacts = tuple(artefacts)
        if isinstance(probabilities, (int, float)):
            probabilities = [probabilities] * len(self.artefacts)
        if len(probabilities) != len(self.artefacts):
            raise ValueError(
                f"probabilities must have one value per artefact ({len(self.artefacts)}), "
                f"got {len(probabilities)}"
            )
        self.probabilities = tuple(
            _check_number(p, "probabilities", min_value=0, max_value=1) for p in probabilities
        )

    def sample(self, rng: np.random.Generator) -> Corruption:
        """Draw which artefacts apply and their parameters."""
        return Corruption(
            [
                artefact.sample(rng)
                for artefact, probability in zip(self.artefacts, self.probabilities, strict=True)
                if rng.random() < probability
            ]
        )

    def __call__(self, image: ImageT, rng: np.random.Generator) -> tuple[ImageT, Corruption]:
        """Corrupt ``image`` and return it with the record of what was applied."""
        corruption = self.sample(rng)
        return corruption(image), corruption


# --- pre-generation ---------------------------------------------------------------------------

#: The table of a pre-generated dataset, one row per sample, and its columns.
LABELS_TABLE = "labels.tsv"
LABEL_COLUMNS = (
    "filename",
    "base_image",
    "index",
    "motion_rms_mm",
    "motion_grade",
    *(f"severity_{name}" for name in ARTEFACTS),
)


def save_nifti_sample(image: nb.Nifti1Image, stem: Path, original: nb.Nifti1Image) -> str:
    """Save a corrupted volume as it is, at native resolution: ``<stem>.nii.gz``.

    ``original``, the uncorrupted image, is part of the ``save_sample`` protocol of
    :func:`generate_corrupted_dataset`; a volume saved as it is does not need it.
    """
    path = stem.with_name(f"{stem.name}.nii.gz")
    nb.save(image, path)
    return path.name


def _corrupt_one_image(
    image_index: int,
    path: Path,
    out_dir: Path,
    n_per_image: int,
    seeds: np.random.SeedSequence,
    corruption: RandomCorruption,
    save_sample: Callable[[nb.Nifti1Image, Path, nb.Nifti1Image], str | None],
) -> list[dict]:
    """Write the ``n_per_image`` corrupted copies of one base image; return their label rows.

    A copy whose sidecar already records it (same spawn key, its file present) is kept, so an
    interrupted generation resumes where it stopped.
    """
    stem = path.name.removesuffix(".gz").removesuffix(".nii")
    image = None
    rows = []
    for index, seed in enumerate(seeds.spawn(n_per_image)):
        name = f"{image_index:04d}_{stem}_corrupt-{index:03d}"
        sidecar_path = out_dir / f"{name}.json"
        sidecar = _finished_sample(sidecar_path, path, seed)
        if sidecar is None:
            image = load_anatomical(path) if image is None else image
            corrupted, record = corruption(image, np.random.default_rng(seed))
            filename = save_sample(corrupted, out_dir / name, image)
            if filename is None:
                continue
            sidecar = {
                "filename": filename,
                "base_image": str(path),
                "seed": seed.entropy,
                "spawn_key": list(seed.spawn_key),
                **record.to_dict(),
            }
            sidecar_path.write_text(json.dumps(sidecar, indent=2))
        rows.append(
            {
                "filename": sidecar["filename"],
                "base_image": sidecar["base_image"],
                "index": index,
                "motion_rms_mm": sidecar["motion_rms_mm"],
                "motion_grade": sidecar["motion_grade"],
                **{f"severity_{key}": value for key, value in sidecar["severity"].items()},
            }
        )
    return rows


def _finished_sample(
    sidecar_path: Path, base_image: Path, seed: np.random.SeedSequence
) -> dict | None:
    """The sidecar of a sample written earlier from this image and seed, or None to make it."""
    try:
        sidecar = json.loads(sidecar_path.read_text())
    except (OSError, ValueError):
        return None
    done = (
        sidecar.get("base_image") == str(base_image)
        and sidecar.get("seed") == seed.entropy
        and sidecar.get("spawn_key") == list(seed.spawn_key)
        and (sidecar_path.parent / sidecar.get("filename", "")).is_file()
    )
    return sidecar if done else None


def _single_threaded_worker() -> None:
    """One torch thread per worker process (ANTs, which a ``save_sample`` may use, always has
    one: see :mod:`bidsqc.preprocessing`)."""
    torch.set_num_threads(1)


def generate_corrupted_dataset(
    base_images: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    n_per_image: int,
    seed: int,
    corruption: RandomCorruption | None = None,
    n_jobs: int = 1,
    save_sample: Callable[[nb.Nifti1Image, Path, nb.Nifti1Image], str | None] = save_nifti_sample,
) -> Path:
    """Write corrupted copies of real images, with their labels, for training.

    For base image ``i`` (its position in ``base_images``) and copy ``k``, the generator is
    seeded by ``SeedSequence(seed).spawn(len(base_images))[i].spawn(n_per_image)[k]``, so every
    volume depends only on ``(seed, i, k)``, whatever ``n_jobs`` is. Each copy is written as
    ``{i:04d}_{stem}_corrupt-{k:03d}.nii.gz`` (float32, the base image's affine) with a JSON
    sidecar holding :meth:`Corruption.to_dict`, ``filename``, ``base_image``, ``seed`` and
    ``spawn_key``; ``labels.tsv``
    lists every copy with ``motion_rms_mm``, ``motion_grade`` and ``severity_<artefact>``.

    Parameters
    ----------
    base_images : sequence of path-like
        Real T1w or FLAIR images, at native resolution and in native space.
    out_dir : path-like
        Output folder, created if missing. A copy already there, made with the same seed, is
        kept rather than made again (its sidecar names its file, base image and seed), so a
        stopped run resumes. Keep one folder per kind of corruption.
    n_per_image : int
        Corrupted copies per base image.
    seed : int
        Root seed.
    corruption : RandomCorruption, optional
        What to draw; default ``RandomCorruption()``.
    n_jobs : int
        Worker processes, one base image at a time each (one torch thread per worker).
    save_sample : callable
        ``save_sample(image, stem, original)`` writes one corrupted volume under the path
        ``stem`` (no extension) and returns the file name it wrote, or None to drop the sample;
        ``original`` is the uncorrupted base image, the same object for all its copies. The
        default keeps the native volume; :mod:`bidsqc.training_data` preprocesses it first.

    Returns
    -------
    pathlib.Path
        The ``labels.tsv`` file.
    """
    paths = [Path(path) for path in base_images]
    if not paths:
        raise ValueError("base_images is empty")
    n_per_image = _check_number(n_per_image, "n_per_image", min_value=1, integer=True)
    n_jobs = _check_number(n_jobs, "n_jobs", min_value=1, integer=True)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    corruption = RandomCorruption() if corruption is None else corruption
    jobs = [
        (index, path, out_dir, n_per_image, seeds, corruption, save_sample)
        for index, (path, seeds) in enumerate(
            zip(paths, np.random.SeedSequence(seed).spawn(len(paths)), strict=True)
        )
    ]
    if n_jobs == 1:
        results = [_corrupt_one_image(*job) for job in jobs]
    else:
        with ProcessPoolExecutor(n_jobs, initializer=_single_threaded_worker) as pool:
            results = list(pool.map(_corrupt_one_image, *zip(*jobs, strict=True)))
    labels = out_dir / LABELS_TABLE
    with labels.open("w", newline="") as stream:
        writer = csv.DictWriter(stream, LABEL_COLUMNS, delimiter="\t", lineterminator="\n")
        writer.writeheader()
        writer.writerows(row for rows in results for row in rows)
    return labels
