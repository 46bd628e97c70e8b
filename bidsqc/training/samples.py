"""Pre-generate training samples: corrupt real images, then preprocess them as the pipeline does.

Each sample is a real base image corrupted at its native resolution and in its native space
(:mod:`bidsqc.training.simulation`), then reoriented, resampled and registered exactly as a
participant run would (:mod:`bidsqc.preprocessing`), so the network learns what the pipeline makes
of a corrupted scan. Simulating and registering cost seconds per volume, so samples are written
once:

    out_dir/labels.tsv                      one row per sample, with its motion RMS and grade
    out_dir/<i>_<stem>_corrupt-<k>.npy      float16, the 96 x 112 x 96 template head box at 2 mm,
                                            scaled by
                                            :func:`bidsqc.inference.inputs.normalise_intensity`
    out_dir/<i>_<stem>_corrupt-<k>.json     the applied corruption, replayable

Seeding and the table are those of :func:`bidsqc.training.simulation.generate_corrupted_dataset`.
"""

from __future__ import annotations

import csv
import logging
import os
import tempfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nb
import numpy as np
from scipy import ndimage as ndi

from bidsqc.brain_extraction import (
    BRAIN_VOLUME_ML,
    BrainExtractionError,
    extract_brain,
    volume_ml,
)
from bidsqc.data import load_template
from bidsqc.inference.inputs import normalise_intensity
from bidsqc.loading import load_anatomical
from bidsqc.measures.alignment import rereg_mm
from bidsqc.preprocessing import (
    RegistrationResult,
    coregister_to_reference,
    register_to_template,
    reorient_to_ras,
    resample_through_transform,
    resample_to_zoom,
    residual_misregistration,
    warp_to_template,
)
from bidsqc.training.datasets import read_sample_table
from bidsqc.training.simulation import (
    Motion,
    RandomArtefact,
    RandomBiasField,
    RandomBlur,
    RandomCorruption,
    RandomGhosting,
    RandomMotion,
    RandomMotionRms,
    RandomNodding,
    RandomNoise,
    RandomOneOf,
    RandomSpike,
    generate_corrupted_dataset,
)
from bidsqc.training.simulation.generation import worker_pool

__all__ = [
    "MOTION_DRAWS",
    "RandomMotionLevel",
    "artefact_corruption",
    "generate_artefact_samples",
    "generate_motion_samples",
    "generate_template_space_images",
    "generate_coregistered_pairs",
    "read_coregistered_pairs",
    "read_pair_list",
    "read_template_space_images",
    "rereg_of_volumes",
    "CoregisteredPair",
    "TemplateSpaceSampleWriter",
    "brain_of_clean_image",
]

LOGGER = logging.getLogger("bidsqc.training.samples")


@dataclass
class RandomMotionLevel(RandomArtefact):
    r"""Motion of a random severity, in both directions.

    A level :math:`\ell \sim \mathcal{U}(\ell_{min}, \ell_{max})` is drawn first; each rotation
    (degrees) and translation (mm) of each pose is then :math:`\pm\mathcal{U}(\ell - 1, \ell + 1)`
    with a random sign, so training covers the whole (2-4) to (6-8) degree/mm protocol and the
    values between, with every direction of motion.

    Parameters
    ----------
    levels : (float, float)
        Range of :math:`\ell`, in degrees and mm; :math:`\ell_{min} \ge 1`.
    num_transforms : int
        Moved poses per volume, as in :class:`~bidsqc.training.simulation.RandomMotion`.
    """

    levels: tuple[float, float] = (1.0, 8.0)
    num_transforms: int = 2

    def __post_init__(self) -> None:
        low, high = self.levels
        if not 1 <= low <= high:
            raise ValueError(f"levels must satisfy 1 <= low <= high, got {self.levels}")

    def sample(self, rng: np.random.Generator) -> Motion:
        level = rng.uniform(*self.levels)
        span = (level - 1, level + 1)
        drawn = RandomMotion(span, span, self.num_transforms).sample(rng)
        shape = (self.num_transforms, 3)
        return Motion(
            degrees=np.multiply(drawn.degrees, rng.choice([-1, 1], size=shape)),
            translation=np.multiply(drawn.translation, rng.choice([-1, 1], size=shape)),
            times=drawn.times,
        )


def _register(img: nb.Nifti1Image, out_dir: str | os.PathLike) -> RegistrationResult:
    """Register an image to the template as the pipeline does: reoriented, resampled to 2 mm."""
    return register_to_template(resample_to_zoom(reorient_to_ras(img)), out_dir)


def _save_scaled(volume: np.ndarray, path: Path) -> None:
    """Save a template-space volume scaled by :func:`normalise_intensity`, as float16."""
    np.save(path, normalise_intensity(volume).astype(np.float16))


#: How :func:`generate_motion_samples` can draw motion, by name.
_MOTION_DRAWERS: dict[str, type[RandomArtefact]] = {
    "ranges": RandomMotionLevel,
    "rms": RandomMotionRms,
    "nods": RandomNodding,
}
MOTION_DRAWS = tuple(_MOTION_DRAWERS)


def generate_motion_samples(
    base_images: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    n_per_image: int,
    seed: int,
    clean_fraction: float = 0.25,
    n_jobs: int = 1,
    draw: str = "ranges",
    strip_fraction: float = 0.0,
) -> Path:
    """Write ``n_per_image`` motion samples of each base image and return their labels table.

    ``draw`` is one of :data:`MOTION_DRAWS`:

    * ``"ranges"`` (the bundled weights): :class:`RandomMotionLevel`, angles and shifts of 2
      poses around a level of 1–8 degrees and mm, and each copy registered to the template
      itself, as a participant run registers it;
    * ``"rms"``: :class:`RandomMotionRms`, the RMS drawn first (0–20 mm, its square root
      uniform) and 2–8 poses of exactly that RMS, each copy warped onto the 2 mm head box
      through its clean image's registration, about 3× cheaper;
    * ``"nods"``: :class:`RandomNodding`, 3–12 brief nods on cue, 1–6 degrees of pitch, the
      head returning after each, warped like ``"rms"``.

    A fraction ``clean_fraction`` of the samples (on average) is left unmoved, so the network
    also learns what real, clean scans look like after preprocessing. A fraction
    ``strip_fraction``, clean and moved alike, is skull-stripped after the motion
    (:class:`TemplateSpaceSampleWriter`), so the network must find motion inside the brain.
    The table and the seeding are those of
    :func:`bidsqc.training.simulation.generate_corrupted_dataset`.
    """
    if draw not in _MOTION_DRAWERS:
        raise ValueError(f"draw must be one of {MOTION_DRAWS}, got {draw!r}")
    motion = _MOTION_DRAWERS[draw]()
    writer = TemplateSpaceSampleWriter(
        2, register_copies=draw == "ranges", strip_fraction=strip_fraction
    )
    return generate_corrupted_dataset(
        base_images,
        out_dir,
        n_per_image=n_per_image,
        seed=seed,
        corruption=RandomCorruption([motion], probabilities=1 - clean_fraction),
        n_jobs=n_jobs,
        save_sample=writer,
    )


def artefact_corruption(probability: float = 0.2, nod_fraction: float = 0.0) -> RandomCorruption:
    """The artefacts the artefact network learns, each applied with ``probability``.

    The artefacts are drawn with severities from about 0.2 to 1: weaker ones hide in the noise
    and texture of real scans, so labelling them present would teach label noise. Motion is the
    exception: it is drawn by its RMS (:class:`RandomMotionRms`, 1-8 mm, half of it below
    2.75 mm), since real head motion lives there and, read at 1 mm, leaves ringing that the
    2 mm motion network cannot see. A fraction ``nod_fraction`` of the motion is nodding on cue
    instead (:class:`RandomNodding`: brief, the head returning, 0.9-2.3 mm RMS), as MR-ART's
    participants moved. With the default, 26 % of the samples are clean (0.8^6).
    """
    motion: RandomArtefact = RandomMotionRms(rms_mm=(1.0, 8.0))
    if nod_fraction > 0:
        motion = RandomOneOf({motion: 1 - nod_fraction, RandomNodding(): nod_fraction})
    return RandomCorruption(
        [
            motion,
            RandomBiasField(coefficients=(0.15, 0.8)),
            RandomGhosting(num_ghosts=(2, 4), intensity=(0.4, 1.0)),
            RandomSpike(num_spikes=(1, 3), intensity=(0.1, 0.3)),
            RandomBlur(fwhm=(0.8, 4.0)),
            RandomNoise(std=(0.04, 0.2)),
        ],
        probabilities=probability,
    )


def brain_of_clean_image(image: nb.Nifti1Image) -> np.ndarray:
    """The brain mask of a clean RAS+ image: its non-zero voxels, holes filled, when they hold
    no more than a brain's volume (:data:`BRAIN_VOLUME_ML`: the image is skull-stripped
    already, and its own mask is exact), else :func:`extract_brain`'s mask of the head."""
    support = ndi.binary_fill_holes(np.asarray(image.dataobj) != 0)
    if volume_ml(support, image.header.get_zooms()[:3]) <= BRAIN_VOLUME_ML[1]:
        return support
    return extract_brain(image)


class TemplateSpaceSampleWriter:
    """``save_sample`` on a network's input grid, through the clean scan's registration, saved
    as ``<stem>.npy`` (float16, scaled by :func:`normalise_intensity`).

    ``resolution`` 2 gives the input of the motion network: the copy reoriented and resampled
    to 2 mm, then warped onto the 2 mm head box (:func:`warp_to_template`), as
    :func:`register_to_template` makes it. ``resolution`` 1 gives the artefact network's 1 mm
    head box (:func:`resample_through_transform`).

    By default the clean base image is registered to the template once, and every corrupted
    copy of it is resampled through that transform. The artefacts do not move the head (in
    simulated motion the unmoved pose fills the centre of k-space), so this is the transform
    the pipeline would find for the copy, less the small changes an artefact makes to the
    optimiser's path, at a fraction of the cost. With ``register_copies``, each copy is
    registered itself, exactly as the pipeline does (for evaluation). A registration that is
    implausible gives no sample.

    With ``strip_fraction``, that fraction of the samples is skull-stripped after the
    corruption, with the brain mask of the clean image (:func:`brain_of_clean_image`), as a
    scan that moved and was then skull-stripped looks: the ghosts that motion spreads outside
    the brain are gone, and only what it did inside the brain is left to see. Which samples
    are stripped follows from their names, so it does not depend on their corruption and a
    rerun strips the same ones. A brain extraction that fails gives no stripped sample.
    """

    def __init__(
        self, resolution: int, register_copies: bool = False, strip_fraction: float = 0.0
    ) -> None:
        if resolution not in (1, 2):
            raise ValueError(f"resolution must be 1 or 2 mm, got {resolution}")
        if not 0 <= strip_fraction <= 1:
            raise ValueError(f"strip_fraction must lie in [0, 1], got {strip_fraction}")
        self.resolution = resolution
        self.register_copies = register_copies
        self.strip_fraction = strip_fraction
        #: The last clean image whose brain was extracted, and its mask (None: it failed).
        self._brain: tuple[nb.Nifti1Image, np.ndarray | None] | None = None
        #: The last image registered, the scratch folder holding its transform, the result.
        self._registered: (
            tuple[nb.Nifti1Image, tempfile.TemporaryDirectory | None, RegistrationResult | None]
            | None
        ) = None

    def __call__(self, image: nb.Nifti1Image, stem: Path, original: nb.Nifti1Image) -> str | None:
        if self._stripped(stem):
            image = self._skull_stripped(image, original)
            if image is None:
                return None
        registered_image = image if self.register_copies else original
        registration = self._registration(registered_image)
        if registration is None:
            return None
        path = stem.with_name(f"{stem.name}.npy")
        if self.resolution == 1:
            volume = resample_through_transform(image, registration.transform, resolution=1)
        elif image is registered_image:  # its registration made its 2 mm head box already
            volume = registration.registered
        else:
            volume = warp_to_template(
                resample_to_zoom(reorient_to_ras(image)), registration.transform
            )
        _save_scaled(np.asarray(volume.dataobj), path)
        return path.name

    def _stripped(self, stem: Path) -> bool:
        """Whether the sample named ``stem`` is skull-stripped: its name's CRC-32, read as a
        fraction of 2^32, below ``strip_fraction``."""
        return zlib.crc32(stem.name.encode()) < self.strip_fraction * 2**32

    def _skull_stripped(
        self, image: nb.Nifti1Image, original: nb.Nifti1Image
    ) -> nb.Nifti1Image | None:
        """``image`` in RAS+, zero outside the brain of ``original``; None without a brain."""
        if self._brain is None or self._brain[0] is not original:
            try:
                mask = brain_of_clean_image(reorient_to_ras(original))
            except BrainExtractionError as err:
                LOGGER.warning("No skull-stripped sample of this image: %s", err)
                mask = None
            self._brain = (original, mask)
        mask = self._brain[1]
        if mask is None:
            return None
        image = reorient_to_ras(image)
        data = np.asarray(image.dataobj, dtype=np.float32) * mask
        header = image.header.copy()
        header.set_data_dtype(np.float32)
        return nb.Nifti1Image(data, image.affine, header)

    def _registration(self, image: nb.Nifti1Image) -> RegistrationResult | None:
        """The registration of ``image`` to the template, made when first asked for."""
        if self._registered is None or self._registered[0] is not image:
            scratch = tempfile.TemporaryDirectory(prefix="bidsqc_")
            try:
                self._registered = (image, scratch, _register(image, scratch.name))
            except ValueError as err:
                LOGGER.warning("No sample of this image: %s", err)
                scratch.cleanup()
                self._registered = (image, None, None)
        return self._registered[2]


def generate_artefact_samples(
    base_images: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    n_per_image: int,
    seed: int,
    n_jobs: int = 1,
    nod_fraction: float = 0.0,
    strip_fraction: float = 0.0,
) -> Path:
    """Write ``n_per_image`` artefact samples (:func:`artefact_corruption` with
    ``nod_fraction``) of each base image on the 1 mm head box (:class:`TemplateSpaceSampleWriter`,
    a fraction ``strip_fraction`` skull-stripped after the corruption) and return their labels
    table.

    The table and the seeding are those of
    :func:`bidsqc.training.simulation.generate_corrupted_dataset`; its ``severity_<artefact>``
    columns are the network's labels."""
    return generate_corrupted_dataset(
        base_images,
        out_dir,
        n_per_image=n_per_image,
        seed=seed,
        corruption=artefact_corruption(nod_fraction=nod_fraction),
        n_jobs=n_jobs,
        save_sample=TemplateSpaceSampleWriter(resolution=1, strip_fraction=strip_fraction),
    )


def generate_template_space_images(
    base_images: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    seed: int,
    n_jobs: int = 1,
) -> Path:
    """Preprocess each base image once, uncorrupted, into ``out_dir`` and return the table.

    The registration-QC network draws its pairs from these volumes on the fly. Same layout,
    table and resumption as :func:`generate_motion_samples`.
    """
    return generate_corrupted_dataset(
        base_images,
        out_dir,
        n_per_image=1,
        seed=seed,
        corruption=RandomCorruption([]),
        n_jobs=n_jobs,
        save_sample=TemplateSpaceSampleWriter(resolution=2, register_copies=True),
    )


def read_template_space_images(table: str | os.PathLike) -> list[tuple[Path, str]]:
    """The ``(volume, base image)`` of each row of the table that
    :func:`generate_template_space_images` returns; ``FileNotFoundError`` without the table."""
    rows = read_sample_table(table, ("filename", "base_image"))
    return [(Path(table).parent / row["filename"], row["base_image"]) for row in rows]


def rereg_of_volumes(volumes: Sequence[str | os.PathLike]) -> list[float]:
    """:func:`bidsqc.measures.alignment.rereg_mm` of each volume on the 2 mm template grid
    (``.npy``): how far from register the pipeline's own registration left it."""
    template = load_template(2)
    return [
        rereg_mm(
            residual_misregistration(np.load(volume).astype(np.float32), template=template),
            template,
        )
        for volume in volumes
    ]


#: The table of :func:`generate_coregistered_pairs`, one row per pair.
PAIRS_TABLE = "pairs.tsv"


@dataclass(frozen=True)
class CoregisteredPair:
    """One real FLAIR/T1w pair as :func:`generate_coregistered_pairs` wrote it."""

    #: The FLAIR and the T1w on the template grid (``.npy``).
    moving: Path
    reference: Path
    #: The source images.
    moving_image: str
    reference_image: str


def read_coregistered_pairs(table: str | os.PathLike) -> list[CoregisteredPair]:
    """The pairs listed in the table that :func:`generate_coregistered_pairs` returns."""
    folder = Path(table).parent
    return [
        CoregisteredPair(
            folder / row["moving"],
            folder / row["reference"],
            row["moving_image"],
            row["base_image"],
        )
        for row in read_sample_table(table, ("moving", "reference", "moving_image", "base_image"))
    ]


def read_pair_list(path: str | os.PathLike) -> list[tuple[Path, Path]]:
    """Read a list of image pairs: one ``FLAIR<tab>T1w`` line per pair, paths relative to the
    list; blank lines and ``#`` comments are skipped."""
    path = Path(path)
    pairs = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split("\t")
        if len(fields) != 2:
            raise ValueError(f"{path}:{number}: expected two tab-separated paths, got {line!r}")
        moving, reference = (path.parent / field.strip() for field in fields)
        pairs.append((moving, reference))
    return pairs


def _coregistered_pair(moving: Path, reference: Path, stem: Path) -> dict | None:
    """Preprocess one pair as the pipeline does; None (with a warning) when it cannot be."""
    names = {key: f"{stem.name}_{key}.npy" for key in ("moving", "reference")}
    row = {"base_image": str(reference), "moving_image": str(moving), **names}
    if all((stem.parent / name).is_file() for name in names.values()):
        return row
    try:
        with tempfile.TemporaryDirectory(prefix="bidsqc_") as scratch:
            t1w = resample_to_zoom(reorient_to_ras(load_anatomical(reference)))
            flair = resample_to_zoom(reorient_to_ras(load_anatomical(moving)))
            registered = register_to_template(t1w, scratch)
            coregistered, _ = coregister_to_reference(flair, t1w, registered.transform, scratch)
    except ValueError as err:
        LOGGER.warning("Dropping the pair %s, %s: %s", moving, reference, err)
        return None
    for key, img in (("moving", coregistered), ("reference", registered.registered)):
        _save_scaled(np.asarray(img.dataobj, dtype=np.float32), stem.parent / names[key])
    return row


def generate_coregistered_pairs(
    pairs: Sequence[tuple[str | os.PathLike, str | os.PathLike]],
    out_dir: str | os.PathLike,
    *,
    n_jobs: int = 1,
) -> Path:
    """Co-register real FLAIR/T1w pairs as the pipeline does, onto the template grid.

    The T1w is registered to the template, the FLAIR rigidly to the T1w and through it to the
    template (:func:`bidsqc.preprocessing.coregister_to_reference`): the two volumes are the
    aligned pair the registration-QC network sees at run time. Writes
    ``<i>_<stem>_moving.npy`` and ``..._reference.npy`` (float16, scaled) per pair, reused by a
    rerun, and the table ``pairs.tsv`` (``moving``, ``reference``, ``base_image`` = the T1w,
    ``moving_image``); returns the table's path.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stems = [
        out_dir / f"{i:04d}_{Path(moving).name.removesuffix('.gz').removesuffix('.nii')}"
        for i, (moving, _) in enumerate(pairs)
    ]
    arguments = [(Path(m), Path(r), stem) for (m, r), stem in zip(pairs, stems, strict=True)]
    if n_jobs > 1:
        with worker_pool(n_jobs) as pool:
            rows = list(pool.map(_coregistered_pair, *zip(*arguments, strict=True)))
    else:
        rows = [_coregistered_pair(*argument) for argument in arguments]
    table = out_dir / PAIRS_TABLE
    with table.open("w", newline="") as stream:
        fields = ["moving", "reference", "base_image", "moving_image"]
        writer = csv.DictWriter(stream, fieldnames=fields, delimiter="\t")
        writer.writeheader()
        writer.writerows(row for row in rows if row is not None)
    return table
