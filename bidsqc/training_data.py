"""Pre-generate training samples: corrupt real images, then preprocess them as the pipeline does.

Each sample is a real base image corrupted at its native resolution and in its native space
(:mod:`bidsqc.simulation`), then reoriented, resampled and registered exactly as a participant
run would (:mod:`bidsqc.preprocessing`), so the network learns what the pipeline makes of a
corrupted scan. Simulating and registering cost seconds per volume, so samples are written once:

    out_dir/samples.tsv           one row per sample: file, source, motion_rms_mm, motion_grade
    out_dir/<i>_<stem>_<k>.npy     float16, the 96 x 112 x 96 template head box at 2 mm

Sample ``k`` of base image ``i`` is seeded by ``SeedSequence(seed).spawn(n)[i].spawn(m)[k]``:
it depends on ``(seed, i, k)`` only, whatever the number of worker processes.
"""

from __future__ import annotations

import csv
import logging
import os
import tempfile
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import nibabel as nb
import numpy as np

from bidsqc.loading import ImageCheckError, load_anatomical
from bidsqc.preprocessing import (
    register_to_template,
    reorient_to_ras,
    resample_to_zoom,
    set_ants_threads,
)
from bidsqc.simulation import Motion, RandomArtefact, RandomCorruption, RandomMotion, motion_grade

__all__ = [
    "SAMPLE_COLUMNS",
    "RandomMotionLevel",
    "generate_motion_samples",
    "to_template_space",
]

LOGGER = logging.getLogger("bidsqc.training_data")
SAMPLE_COLUMNS = ("file", "source", "motion_rms_mm", "motion_grade")


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
        Moved poses per volume, as in :class:`~bidsqc.simulation.RandomMotion`.
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


def to_template_space(img: nb.Nifti1Image) -> np.ndarray:
    """The image as the pipeline's networks see it: on the 2 mm template head box, float16."""
    with tempfile.TemporaryDirectory(prefix="bidsqc_") as scratch:
        result = register_to_template(resample_to_zoom(reorient_to_ras(img)), scratch)
    return np.asarray(result.registered.dataobj, dtype=np.float16)


def _motion_samples_of_one_image(
    index: int,
    path: Path,
    out_dir: Path,
    seeds: np.random.SeedSequence,
    n_per_image: int,
    corruption: RandomCorruption,
) -> list[dict]:
    try:
        image = load_anatomical(path)
    except ImageCheckError as err:
        LOGGER.warning("Skipping base image: %s", err)
        return []
    rows = []
    for k, sample_seed in enumerate(seeds.spawn(n_per_image)):
        record = corruption.sample(np.random.default_rng(sample_seed))
        try:
            volume = to_template_space(record(image))
        except ValueError as err:
            LOGGER.warning("Skipping sample %d of %s: %s", k, path, err)
            continue
        name = f"{index:04d}_{path.name.split('.')[0]}_{k:03d}.npy"
        np.save(out_dir / name, volume)
        rms = record.motion_rms_mm
        rows.append(
            {"file": name, "source": str(path), "motion_rms_mm": f"{rms:.4f}",
             "motion_grade": motion_grade(rms)}
        )
    return rows


def generate_motion_samples(
    base_images: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    n_per_image: int,
    seed: int,
    clean_fraction: float = 0.25,
    n_jobs: int = 1,
) -> Path:
    """Write ``n_per_image`` motion samples of each base image and return ``samples.tsv``.

    A fraction ``clean_fraction`` of the samples (on average) is left unmoved, so the network
    also learns what real, clean scans look like after preprocessing.
    """
    paths = [Path(path) for path in base_images]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    corruption = RandomCorruption([RandomMotionLevel()], probabilities=1 - clean_fraction)
    jobs = [
        (index, path, out_dir, seeds, n_per_image, corruption)
        for index, (path, seeds) in enumerate(
            zip(paths, np.random.SeedSequence(seed).spawn(len(paths)), strict=True)
        )
    ]
    if n_jobs == 1:
        results = [_motion_samples_of_one_image(*job) for job in jobs]
    else:
        with ProcessPoolExecutor(n_jobs, initializer=_single_threaded) as pool:
            results = list(pool.map(_motion_samples_of_one_image, *zip(*jobs, strict=True)))
    table = out_dir / "samples.tsv"
    with table.open("w", newline="") as stream:
        writer = csv.DictWriter(stream, SAMPLE_COLUMNS, delimiter="\t", lineterminator="\n")
        writer.writeheader()
        writer.writerows(row for rows in results for row in rows)
    return table


def _single_threaded() -> None:
    import torch

    torch.set_num_threads(1)
    set_ants_threads(1)
