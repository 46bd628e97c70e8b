"""Pre-generation of corrupted datasets: volumes on disk and a table of their labels."""

from __future__ import annotations

import csv
import json
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import nibabel as nb
import numpy as np
import torch

from bidsqc.loading import load_anatomical
from bidsqc.training.simulation.base import check_number
from bidsqc.training.simulation.corruption import ARTEFACTS, RandomCorruption

__all__ = [
    "LABELS_TABLE",
    "LABEL_COLUMNS",
    "generate_corrupted_dataset",
    "save_nifti_sample",
]


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


def worker_pool(n_jobs: int) -> ProcessPoolExecutor:
    """``n_jobs`` single-threaded worker processes, started fresh (``spawn``), not forked: a
    child forked from a process whose torch has run OpenMP threads (brain extraction does, in
    every registration) can hang forever in its first parallel region."""
    return ProcessPoolExecutor(
        n_jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_single_threaded_worker
    )


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
        default keeps the native volume; :mod:`bidsqc.training.samples` preprocesses it first.

    Returns
    -------
    pathlib.Path
        The ``labels.tsv`` file.
    """
    paths = [Path(path) for path in base_images]
    if not paths:
        raise ValueError("base_images is empty")
    n_per_image = check_number(n_per_image, "n_per_image", min_value=1, integer=True)
    n_jobs = check_number(n_jobs, "n_jobs", min_value=1, integer=True)
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
        with worker_pool(n_jobs) as pool:
            results = list(pool.map(_corrupt_one_image, *zip(*jobs, strict=True)))
    labels = out_dir / LABELS_TABLE
    with labels.open("w", newline="") as stream:
        writer = csv.DictWriter(stream, LABEL_COLUMNS, delimiter="\t", lineterminator="\n")
        writer.writeheader()
        writer.writerows(row for rows in results for row in rows)
    return labels
