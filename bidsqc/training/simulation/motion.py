"""Rigid head motion during the acquisition: k-space segments acquired at different poses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torchio as tio
from numpy.typing import ArrayLike

from bidsqc.geometry import motion_rms_mm, rigid_affine
from bidsqc.training.simulation.base import (
    Artefact,
    RandomArtefact,
    as_rows,
    check_number,
    image_centre_lps,
    parse_range,
)

__all__ = [
    "Motion",
    "RandomMotion",
    "RandomMotionRms",
    "RandomNodding",
    "nod_cues",
    "nodding_motion",
]


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
        self.degrees = as_rows(self.degrees, "degrees")
        self.translation = as_rows(self.translation, "translation")
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


def _pose_times(count: int, rng: np.random.Generator) -> np.ndarray:
    """TorchIO's start times of ``count`` poses: ``k/(N+1)``, each jittered by up to 30 % of a
    step."""
    step = 1 / (count + 1)
    return step * np.arange(1, count + 1) + rng.uniform(-0.3 * step, 0.3 * step, count)


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
        self.degrees = parse_range(degrees, "degrees")
        self.translation = parse_range(translation, "translation")
        self.num_transforms = check_number(
            num_transforms, "num_transforms", min_value=1, integer=True
        )
        self.image_interpolation = tio.Transform.parse_interpolation(image_interpolation)

    def sample(self, rng: np.random.Generator) -> Motion:
        count = self.num_transforms
        return Motion(
            degrees=rng.uniform(*self.degrees, size=(count, 3)),
            translation=rng.uniform(*self.translation, size=(count, 3)),
            times=_pose_times(count, rng),
            image_interpolation=self.image_interpolation,
        )


class RandomMotionRms(RandomArtefact):
    r"""Draw the strength of rigid motion first, then poses that have exactly that strength.

    Drawing angles and shifts, as :class:`RandomMotion` does, leaves the motion RMS (the
    network's regression target) to chance: six draws of 2–8 degrees and mm per pose give RMS
    of 5–20 mm, and nothing below. Real head motion mostly lives below 4 mm. As Bricout et
    al.'s Agitation does, the RMS :math:`r` is drawn first and the poses are made to match it;
    here exactly, not by drawing again until one comes close:

    1. :math:`u \sim \mathcal{U}(0, 1)` and :math:`r = a + (b - a)\,u^p`. With the default
       :math:`p = 2` the square root of the RMS is uniform, so as many samples lie below 5 mm,
       where real motion and the subtle artefacts are, as between 5 and 20 mm; :math:`p = 1`
       draws the RMS uniformly, as Agitation does;
    2. :math:`N` poses, :math:`N` uniform among ``num_transforms``, each with a direction of
       its three angles (degrees) and three shifts (mm) drawn :math:`\mathcal{U}(-1, 1)`;
    3. one common factor :math:`s` scales every direction so that
       :func:`~bidsqc.geometry.motion_rms_mm` of the poses is :math:`r`. The RMS of a pose is
       linear in its shift and nearly so in small angles, so the fixed point
       :math:`s \leftarrow s\,r / \mathrm{RMS}(s)` reaches :math:`r` to within 1e-6 mm in a few
       steps.

    Parameters
    ----------
    rms_mm : (float, float)
        Range :math:`(a, b)` of the motion RMS in mm, :math:`0 \le a \le b`.
    num_transforms : (int, int)
        Range of the number of moved poses, both ends included, at least 1.
    power : float
        Exponent :math:`p > 0` of the draw of the RMS.
    image_interpolation : str
        Interpolation used to resample the poses.

    Examples
    --------
    >>> import numpy as np
    >>> motion = RandomMotionRms(rms_mm=(3.0, 3.0)).sample(np.random.default_rng(0))
    >>> round(motion.strength, 6)
    3.0
    """

    def __init__(
        self,
        rms_mm: tuple[float, float] = (0.0, 20.0),
        num_transforms: tuple[int, int] = (2, 8),
        power: float = 2.0,
        image_interpolation: str = "linear",
    ) -> None:
        self.rms_mm = parse_range(rms_mm, "rms_mm", min_value=0)
        self.power = check_number(power, "power", min_value=1e-3)
        self.num_transforms = tuple(
            int(n) for n in parse_range(num_transforms, "num_transforms", min_value=1, integer=True)
        )
        self.image_interpolation = tio.Transform.parse_interpolation(image_interpolation)

    def sample(self, rng: np.random.Generator) -> Motion:
        low, high = self.rms_mm
        target = low + (high - low) * rng.uniform() ** self.power
        count = int(rng.integers(self.num_transforms[0], self.num_transforms[1] + 1))
        degrees = rng.uniform(-1, 1, size=(count, 3))
        translation = rng.uniform(-1, 1, size=(count, 3))
        times = _pose_times(count, rng)

        def scaled(factor: float) -> Motion:
            return Motion(degrees * factor, translation * factor, times, self.image_interpolation)

        factor = 1.0
        for _ in range(50):
            strength = scaled(factor).strength
            if strength == 0 or abs(strength - target) < 1e-6:
                break
            factor *= target / strength
        return scaled(factor)


def nod_cues(count: int, rng: np.random.Generator) -> np.ndarray:
    r"""``count`` evenly spaced cues, as fractions of the acquisition, each jittered by up to a
    fifth of their spacing: :math:`(k + \tfrac12 + u_k)/n`, :math:`u_k \sim \mathcal{U}(-0.2,
    0.2)`."""
    return (np.arange(count) + 0.5 + rng.uniform(-0.2, 0.2, count)) / count


def nodding_motion(cues: ArrayLike, degrees: ArrayLike, duration: float) -> Motion:
    """Nods at ``cues`` (fractions of the acquisition, increasing): at each, the head pitches by
    that nod's ``degrees`` about the left-right axis for ``duration`` of the acquisition, then
    returns to where it was."""
    cues = np.asarray(cues, dtype=float).reshape(-1)
    pitch = np.zeros((2 * cues.size, 3))
    pitch[::2, 0] = np.broadcast_to(degrees, cues.shape)
    times = np.ravel(np.column_stack([cues, cues + duration])).clip(1e-3, 1 - 1e-3)
    return Motion(pitch, np.zeros_like(pitch), times)


class RandomNodding(RandomArtefact):
    r"""Nods on cue, as the participants of MR-ART made them (Nárai et al., *Scientific Data*
    2022): the head pitches, then comes back.

    :class:`RandomMotion` holds each pose until the next one, so the head never returns and
    most of k-space is acquired away from where it started. A nod on cue is brief: the head
    pitches for a moment and returns, so a few short runs of k-space lines are acquired moved,
    spread over the acquisition. On MR-ART's still scans, skull-stripped again after it, such
    motion changes the tissue contrast measures and the networks' outputs as the real nodding
    does, where 4 or 32 held poses do not (``benchmarks/motion_inside_brain.py``).

    The number of nods is :math:`n`, uniform among ``nods``; the cues are :func:`nod_cues`;
    each nod's pitch is :math:`\mathcal{U}` in ``degrees`` with a random sign, and all last a
    fraction :math:`d \sim \mathcal{U}` in ``duration`` of the acquisition.

    Parameters
    ----------
    nods : (int, int)
        Range of the number of nods, both ends included, at least 1.
    degrees : (float, float)
        Range of the pitch of a nod, in degrees, :math:`0 \le a \le b`.
    duration : (float, float)
        Range of the fraction of the acquisition that a nod lasts, within [0.001, 0.1].
    """

    def __init__(
        self,
        nods: tuple[int, int] = (3, 12),
        degrees: tuple[float, float] = (1.0, 6.0),
        duration: tuple[float, float] = (0.01, 0.04),
    ) -> None:
        self.nods = tuple(int(n) for n in parse_range(nods, "nods", min_value=1, integer=True))
        self.degrees = parse_range(degrees, "degrees", min_value=0)
        self.duration = parse_range(duration, "duration", min_value=1e-3, max_value=0.1)

    def sample(self, rng: np.random.Generator) -> Motion:
        count = int(rng.integers(self.nods[0], self.nods[1] + 1))
        cues = nod_cues(count, rng)
        degrees = rng.uniform(*self.degrees, count) * rng.choice([-1, 1], count)
        return nodding_motion(cues, degrees, rng.uniform(*self.duration))
