r"""Image pairs for registration QC: aligned exactly, or misaligned by a known affine.

Li (ISMRM 2022) trained a registration-QC classifier on synthetic pairs only and found it
generalised across contrasts better than one trained on real data. Every pair here is two
volumes on the 2 mm template head box, the *moving* image (channel 0) and its *reference*
(channel 1); the moving image is resampled through a random affine :class:`Misalignment`, whose
Jenkinson RMS (:func:`bidsqc.geometry.jenkinson_rms`) is the target in mm. Three kinds:

============  ==================================================================================
kind          moving / reference
============  ==================================================================================
template      a real registered image / the template T1w: QC of the pipeline's registration
contrasts     one real image rendered through two random intensity maps: alignment of two
              contrasts of one head, as FLAIR to T1w
synthetic     a random label map rendered in two random contrasts (SynthMorph-style shapes)
coregistered  a real FLAIR and the T1w of its session, co-registered as the pipeline does
              (:func:`bidsqc.training.samples.generate_coregistered_pairs`)
============  ==================================================================================

Each rendering also gets a random blur, bias field and gamma, so the network cannot rely on one
contrast or one scanner. A pair drawn "aligned" is exact: the moving volume is not resampled,
unless a :class:`RandomNonlinearDeformation` gives a template pair the anatomical differences
that no affine registration removes.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
import torch
from scipy import ndimage as ndi
from torch import Tensor
from torch.nn import functional as F
from torch.utils.data import Dataset

from bidsqc.data import load_template
from bidsqc.geometry import MISREGISTRATION_THRESHOLD_MM, jenkinson_rms, rigid_affine
from bidsqc.inference.inputs import normalise_intensity

__all__ = [
    "KIND_PROBABILITIES",
    "Misalignment",
    "PAIR_KINDS",
    "RandomMisalignment",
    "RandomNonlinearDeformation",
    "RegistrationPairDataset",
    "deformed",
    "misaligned",
    "random_acquisition",
    "random_label_map",
    "render_labels",
    "template_reference",
]

PAIR_KINDS = ("template", "contrasts", "synthetic", "coregistered")
#: How often each kind is drawn, without and with real co-registered pairs.
KIND_PROBABILITIES = {False: (0.4, 0.3, 0.3, 0.0), True: (0.35, 0.25, 0.25, 0.15)}


@cache
def template_reference() -> np.ndarray:
    """The template T1w as the network takes it, the reference of template pairs (read-only)."""
    reference = normalise_intensity(load_template(2).t1w)
    reference.setflags(write=False)
    return reference


@dataclass(frozen=True)
class Misalignment:
    r"""An affine misregistration about the brain centre :math:`c`: scale, rotate, translate.

    .. math::

        x \mapsto R\,S\,(x - c) + c + t

    with :math:`R` the rotation of :func:`bidsqc.geometry.rigid_affine` and
    :math:`S = \mathrm{diag}(s_1, s_2, s_3)`. The moved image is :math:`I'(x) = I(A^{-1} x)`:
    its content is carried by :math:`A`.

    Parameters
    ----------
    degrees : (float, float, float)
        Rotations about x, y and z, in degrees.
    translation : (float, float, float)
        Translation in mm.
    scales : (float, float, float)
        Scale factors along x, y and z (1 is none).
    """

    degrees: tuple[float, float, float] = (0.0, 0.0, 0.0)
    translation: tuple[float, float, float] = (0.0, 0.0, 0.0)
    scales: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def matrix(self) -> np.ndarray:
        """The 4×4 world affine :math:`A`, in mm."""
        centre = np.asarray(load_template(2).brain_centre)
        scaling = np.eye(4)
        scaling[:3, :3] = np.diag(self.scales)
        scaling[:3, 3] = centre - np.asarray(self.scales) * centre
        return rigid_affine(self.degrees, self.translation, centre) @ scaling

    @property
    def rms_mm(self) -> float:
        """Jenkinson RMS displacement of :meth:`matrix` over the head-sized sphere, in mm."""
        return jenkinson_rms(self.matrix(), np.eye(4), centre=load_template(2).brain_centre)


class RandomMisalignment:
    r"""Draw a :class:`Misalignment` of a given Jenkinson RMS, in a random direction.

    A direction is drawn first: Gaussian rotations (degrees), translations (mm) and log-scales,
    each group weighted by :math:`\mathcal{U}(0, 1)`, so pure shifts, pure rotations and mixes
    all occur. The RMS is drawn log-uniformly in ``rms_range`` (small errors are the hard ones)
    and the direction is stretched to it by bisection, as the RMS grows monotonically along it.

    Parameters
    ----------
    rms_range : (float, float)
        Range of the Jenkinson RMS in mm, :math:`0 < a \le b`.
    scaling : bool
        Also scale; without, the misalignments are rigid (a bad rigid registration, or a head
        that moved between two scans).
    """

    def __init__(self, rms_range: tuple[float, float] = (0.5, 20.0), scaling: bool = True) -> None:
        low, high = rms_range
        if not 0 < low <= high:
            raise ValueError(f"rms_range must satisfy 0 < low <= high, got {rms_range}")
        self.rms_range = (float(low), float(high))
        self.scaling = scaling

    def fraction_at_least(self, rms_mm: float) -> float:
        """Fraction of the draws whose RMS is ``rms_mm`` or more."""
        low, high = self.rms_range
        if rms_mm <= low or low == high:
            return float(rms_mm <= low)
        return max(0.0, math.log(high / rms_mm) / math.log(high / low))

    def sample(self, rng: np.random.Generator) -> Misalignment:
        low, high = self.rms_range
        target = math.exp(rng.uniform(math.log(low), math.log(high)))
        weights = rng.uniform(0, 1, size=3) * [1, 1, self.scaling]
        direction = [weights[i] * rng.standard_normal(3) for i in range(3)]

        def along(step: float) -> Misalignment:
            degrees, translation, log_scales = (step * part for part in direction)
            return Misalignment(
                tuple(degrees * 5.0), tuple(translation * 5.0), tuple(np.exp(log_scales * 0.05))
            )

        low_step, high_step = 0.0, 1.0
        while along(high_step).rms_mm < target:
            high_step *= 2
        for _ in range(40):
            middle = (low_step + high_step) / 2
            low_step, high_step = (
                (middle, high_step) if along(middle).rms_mm < target else (low_step, middle)
            )
        return along(high_step)


def misaligned(volume: np.ndarray, misalignment: Misalignment) -> np.ndarray:
    r"""Resample ``volume`` (on the 2 mm template grid) so that its content moves by the affine.

    Trilinear, zero outside the box: :math:`I'(v) = I(G^{-1} A^{-1} G\, v)` with :math:`G` the
    grid's voxel-to-world affine.
    """
    grid = load_template(2).affine
    voxel_map = np.linalg.inv(grid) @ np.linalg.inv(misalignment.matrix()) @ grid
    # affine_grid works on coordinates normalised to [-1, 1], in (z, y, x) order for (X, Y, Z).
    shape = np.asarray(volume.shape, dtype=float)
    to_normalised = np.diag([*(2 / (shape - 1)), 1.0])
    to_normalised[:3, 3] = -1
    normalised = to_normalised @ voxel_map @ np.linalg.inv(to_normalised)
    order = [2, 1, 0]
    theta = torch.from_numpy(normalised[order][:, [*order, 3]][:3]).float()
    data = torch.from_numpy(np.ascontiguousarray(volume, dtype=np.float32))[None, None]
    points = F.affine_grid(theta[None], list(data.shape), align_corners=True)
    return F.grid_sample(data, points, align_corners=True).numpy()[0, 0]


def _smooth_noise(
    shape: Sequence[int], channels: int, spacing: float, rng: np.random.Generator
) -> np.ndarray:
    """``channels`` fields of Gaussian noise on control points ``spacing`` voxels apart,
    upsampled trilinearly to ``shape``: an array (channels, *shape), float32."""
    coarse = [math.ceil(n / spacing) + 1 for n in shape]
    noise = torch.from_numpy(rng.standard_normal((1, channels, *coarse), dtype=np.float32))
    return F.interpolate(noise, size=tuple(shape), mode="trilinear", align_corners=True)[0].numpy()


@dataclass(frozen=True)
class RandomNonlinearDeformation:
    """Draw a smooth deformation with no affine part: how a head still differs from the
    template once it is affinely registered.

    An affine registration matches a head's position, size and shear, not its anatomy: the
    shape of a skull, the size and place of ventricles and folds. Those differences are
    non-linear, and a network that sees only heads close to the template learns to read them
    as misregistration. Each draw is Gaussian noise on control points ``control_spacing_mm``
    apart, upsampled trilinearly to a displacement field; its least-squares affine fit over the
    template brain is removed, so the deformation moves nothing that a registration would
    correct, and it is scaled to a largest displacement in the brain drawn uniformly in
    ``max_displacement_mm``. Applied with ``probability``. It moves tissue; it does not turn
    tissue into CSF, as atrophy does (docs/benchmarks.md: not enough for elderly brains).

    Parameters
    ----------
    probability : float
        Probability that a pair is deformed.
    max_displacement_mm : (float, float)
        Range of the largest displacement inside the template brain, mm.
    control_spacing_mm : (float, float)
        Range of the spacing of the control points, mm: the smaller, the more local.
    """

    probability: float = 0.5
    max_displacement_mm: tuple[float, float] = (2.0, 10.0)
    control_spacing_mm: tuple[float, float] = (8.0, 24.0)

    def __post_init__(self) -> None:
        if not 0 <= self.probability <= 1:
            raise ValueError(f"probability must be in [0, 1], got {self.probability}")

    def sample(self, rng: np.random.Generator) -> np.ndarray | None:
        """A displacement field, shape (3, X, Y, Z), in voxels of the 2 mm grid; None (not
        deformed) with probability ``1 - probability``."""
        if rng.random() >= self.probability:
            return None
        template = load_template(2)
        voxel_mm = template.zooms[0]
        spacing = rng.uniform(*self.control_spacing_mm) / voxel_mm
        field = _smooth_noise(template.shape, 3, spacing, rng)
        brain = template.brain_mask
        points = np.c_[np.argwhere(brain), np.ones(brain.sum())]
        fit = np.linalg.lstsq(points, field[:, brain].T, rcond=None)[0]
        grid = np.indices(template.shape, dtype=np.float32)
        field -= np.einsum("ij,jxyz->ixyz", fit[:3].T, grid) + fit[3][:, None, None, None]
        largest = np.sqrt((field[:, brain] ** 2).sum(axis=0)).max()
        return field * (rng.uniform(*self.max_displacement_mm) / voxel_mm / largest)


def deformed(volume: np.ndarray, displacement: np.ndarray) -> np.ndarray:
    """Resample ``volume`` through a displacement field (voxels, as
    :meth:`RandomNonlinearDeformation.sample` gives): :math:`I'(v) = I(v + u(v))`, trilinear,
    zero outside the box."""
    points = np.indices(volume.shape, dtype=np.float32) + displacement
    return ndi.map_coordinates(volume, points, order=1, cval=0.0).astype(np.float32)


def random_label_map(
    shape: Sequence[int], rng: np.random.Generator, n_labels: int = 16, scale_vox: int = 8
) -> np.ndarray:
    """Random smooth shapes: the argmax of ``n_labels`` upsampled noise fields, in an ellipsoid.

    Label 0 is the background outside an ellipsoid with random half-axes (60-90 % of the box)
    around the box centre, so a synthetic "head" has an outline as real ones do.
    """
    labels = _smooth_noise(shape, n_labels - 1, scale_vox, rng).argmax(0) + 1
    axes = [np.linspace(-1, 1, n) / rng.uniform(0.6, 0.9) for n in shape]
    inside = sum(a**2 for a in np.meshgrid(*axes, indexing="ij", sparse=True)) <= 1
    return np.where(inside, labels, 0)


def random_acquisition(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random scanner look: Gaussian blur (0-0.8 voxels), smooth bias field (up to about
    ±30 %), gamma (log-normal, σ 0.25) and light Gaussian noise; scaled by
    :func:`bidsqc.inference.inputs.normalise_intensity`."""
    image = ndi.gaussian_filter(image, rng.uniform(0, 0.8))
    coarse = torch.from_numpy(rng.normal(0, rng.uniform(0, 0.15), (1, 1, 4, 4, 4)))
    field = F.interpolate(coarse, size=image.shape, mode="trilinear", align_corners=True)
    image = image * np.exp(field.numpy()[0, 0])
    image = normalise_intensity(image) ** np.exp(rng.normal(0, 0.25))
    image = image + rng.uniform(0, 0.03) * rng.standard_normal(image.shape, dtype=np.float32)
    return normalise_intensity(image)


def render_labels(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One random contrast of a label map: a mean and a spread per label (background dark)."""
    n_labels = int(labels.max()) + 1
    means = rng.uniform(0, 1, n_labels).astype(np.float32)
    means[0] = rng.uniform(0, 0.1)
    spreads = rng.uniform(0, 0.1, n_labels).astype(np.float32)
    noise = rng.standard_normal(labels.shape, dtype=np.float32)
    return random_acquisition(np.clip(means[labels] + spreads[labels] * noise, 0, None), rng)


def _random_intensity_map(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A real image seen in another contrast: a random piecewise-linear intensity map
    (background kept dark), then :func:`random_acquisition`."""
    knots = np.linspace(0, max(float(image.max()), 1.0), 6)
    values = rng.uniform(0, 1, knots.size)
    values[0] = 0
    return random_acquisition(np.interp(image, knots, values).astype(np.float32), rng)


def _load(path: str | os.PathLike) -> np.ndarray:
    """A stored volume (float16 on disk), as float32 scaled by
    :func:`bidsqc.inference.inputs.normalise_intensity`."""
    return normalise_intensity(np.load(path))


class RegistrationPairDataset(Dataset):
    """Random pairs (:data:`PAIR_KINDS`) from real base volumes, each aligned or misaligned.

    Each item is ``(pair, target)``: the pair, shape (2, 96, 112, 96), float32 (moving,
    reference), and ``{"grade": int64, "rms_mm": float32}`` with grade 1 when the RMS reaches
    :data:`MISREGISTRATION_THRESHOLD_MM`, so the training engine and loss of the motion network
    serve unchanged.

    Parameters
    ----------
    volumes : sequence of path-like
        Base volumes, ``.npy`` on the 2 mm template head box (as
        :class:`bidsqc.training.samples.TemplateSpaceSampleWriter` writes them).
    coregistered : sequence of (path-like, path-like)
        Real (FLAIR, T1w) pairs of ``.npy`` volumes, aligned by the pipeline.
    length : int
        Pairs per epoch.
    seed : int, optional
        With a seed, item ``i`` is always the same pair (validation); without, every access
        draws anew from torch's generator (training: reproducible under
        :func:`bidsqc.training.engine.seed_everything`).
    kind_probabilities : sequence of float, optional
        Probability of each kind of :data:`PAIR_KINDS`; by default :data:`KIND_PROBABILITIES`.
    aligned_fraction : float
        Probability that a pair is exactly aligned.
    misalignment : RandomMisalignment
        What the other pairs are misaligned by.
    deformation : RandomNonlinearDeformation, optional
        Anatomical differences given to the moving image of template pairs, aligned or not,
        before any misalignment; their label is the misalignment's alone.
    """

    def __init__(
        self,
        volumes: Sequence[str | os.PathLike],
        length: int,
        seed: int | None = None,
        coregistered: Sequence[tuple[str | os.PathLike, str | os.PathLike]] = (),
        kind_probabilities: Sequence[float] | None = None,
        aligned_fraction: float = 1 / 3,
        misalignment: RandomMisalignment | None = None,
        deformation: RandomNonlinearDeformation | None = None,
    ) -> None:
        if not volumes:
            raise ValueError("no base volume")
        if kind_probabilities is None:
            kind_probabilities = KIND_PROBABILITIES[bool(coregistered)]
        if kind_probabilities[PAIR_KINDS.index("coregistered")] > 0 and not coregistered:
            raise ValueError("coregistered pairs are drawn, but none was given")
        if len(kind_probabilities) != len(PAIR_KINDS) or not math.isclose(
            sum(kind_probabilities), 1
        ):
            raise ValueError(f"kind_probabilities must be {len(PAIR_KINDS)} values summing to 1")
        self.volumes = list(volumes)
        self.coregistered = list(coregistered)
        self.length = length
        self.seed = seed
        self.kind_probabilities = tuple(kind_probabilities)
        self.aligned_fraction = aligned_fraction
        self.misalignment = misalignment or RandomMisalignment()
        self.deformation = deformation

    def __len__(self) -> int:
        return self.length

    @property
    def misregistered_fraction(self) -> float:
        """Expected fraction of pairs past :data:`MISREGISTRATION_THRESHOLD_MM`."""
        misaligned_fraction = 1 - self.aligned_fraction
        return misaligned_fraction * self.misalignment.fraction_at_least(
            MISREGISTRATION_THRESHOLD_MM
        )

    def _rng(self, index: int) -> np.random.Generator:
        if self.seed is not None:
            return np.random.default_rng([self.seed, index])
        return np.random.default_rng(int(torch.randint(2**62, ())))

    def pair(self, index: int) -> tuple[str, np.ndarray, np.ndarray, Misalignment | None]:
        """Kind, moving and reference volumes, and the misalignment (None: aligned) of item
        ``index``."""
        rng = self._rng(index)
        kind = PAIR_KINDS[rng.choice(len(PAIR_KINDS), p=self.kind_probabilities)]
        if kind == "synthetic":
            labels = random_label_map(load_template(2).shape, rng)
            moving, reference = render_labels(labels, rng), render_labels(labels, rng)
        elif kind == "coregistered":
            pair = self.coregistered[rng.integers(len(self.coregistered))]
            moving, reference = (random_acquisition(_load(path), rng) for path in pair)
        else:
            base = _load(self.volumes[rng.integers(len(self.volumes))])
            if kind == "template":
                moving = random_acquisition(base, rng)
                reference = template_reference()
                if self.deformation and (field := self.deformation.sample(rng)) is not None:
                    moving = deformed(moving, field)
            else:
                moving = _random_intensity_map(base, rng)
                reference = _random_intensity_map(base, rng)
        if rng.random() < 0.5:  # the template is symmetric: mirror both
            moving, reference = moving[::-1], reference[::-1]
        misalignment = None
        if rng.random() >= self.aligned_fraction:
            misalignment = self.misalignment.sample(rng)
            moving = misaligned(moving, misalignment)
        return kind, moving, reference, misalignment

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Tensor]]:
        _, moving, reference, misalignment = self.pair(index)
        rms = 0.0 if misalignment is None else misalignment.rms_mm
        pair = np.stack([moving, reference]).astype(np.float32)
        target = {
            "grade": torch.tensor(int(rms >= MISREGISTRATION_THRESHOLD_MM), dtype=torch.int64),
            "rms_mm": torch.tensor(rms, dtype=torch.float32),
        }
        return torch.from_numpy(pair), target
