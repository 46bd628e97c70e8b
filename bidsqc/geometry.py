"""Rigid geometry shared by the app and the training side: poses, Jenkinson RMS, grades.

Torch-free: the measures (``rereg_mm``), the reports (grade thresholds) and the simulation of
motion all read the same definitions here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike
from scipy.spatial.transform import Rotation

__all__ = [
    "JENKINSON_RADIUS_MM",
    "MISREGISTRATION_THRESHOLD_MM",
    "MOTION_GRADE_NAMES",
    "MOTION_GRADE_THRESHOLDS_MM",
    "jenkinson_rms",
    "motion_grade",
    "motion_rms_mm",
    "rigid_affine",
]


#: Radius of the head-sized sphere over which displacements are averaged (Jenkinson 1999).
JENKINSON_RADIUS_MM = 80.0
#: Motion RMS (mm) at which grade 1 (mild) and grade 2 (severe) start; see docs/simulation.md.
MOTION_GRADE_THRESHOLDS_MM = (4.5, 11.7)
#: Names of the motion grades 0, 1 and 2.
MOTION_GRADE_NAMES = ("none", "mild", "severe")
#: Registration error (Jenkinson RMS, mm) from which an image or a pair counts as misregistered.
MISREGISTRATION_THRESHOLD_MM = 2.0


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
