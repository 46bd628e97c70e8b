"""Evaluate the motion network on real images it never saw.

Two protocols:

* **Simulated motion on held-out images** (Loizillon et al. 2023, Table 2). Each image is kept
  clean once and moved ``repeats`` times in each of the ranges (2-4), (4-6) and (6-8), every
  rotation (degrees) and translation (mm) drawn in the range as TorchIO's ``RandomMotion``
  draws them. Samples are simulated at native resolution and preprocessed as the pipeline
  does (:func:`bidsqc.training_data.save_template_space_sample`). For each range, the decision
  "motion" (grade above 0) separates the moved images from the clean ones: balanced accuracy,
  sensitivity, specificity. ``motion_mm`` is compared with the simulated RMS (R², Spearman)
  over every sample, clean ones included, and the clean images called "severe" are counted.
* **Rated real motion** (MR-ART, Nárai et al. 2022): a BIDS folder and a ``scores.tsv``
  (columns ``bids_name`` and ``score``: 1 clean, 2 medium, 3 bad). The decision "motion"
  against score > 1, "severe" against score 3, and the Spearman of ``motion_mm`` and the score.

Results are given overall and per source, the folder of the image (MSLUB's participant
folders are skipped, so its sources are its cohorts).
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from bidsqc.inference import predict_motion
from bidsqc.loading import load_anatomical
from bidsqc.networks import MotionNet
from bidsqc.simulation import RandomCorruption, RandomMotion, generate_corrupted_dataset
from bidsqc.training import (
    PARTICIPANT_FOLDER,
    balanced_accuracy,
    normalise_intensity,
    r2_score,
    sensitivity,
    spearman,
    specificity,
)
from bidsqc.training_data import save_template_space_sample, to_template_space

__all__ = [
    "MOTION_RANGES",
    "generate_protocol_samples",
    "motion_protocol_metrics",
    "predict_samples",
    "predict_rated_images",
    "rated_motion_metrics",
    "read_scores",
    "source_of",
]

LOGGER = logging.getLogger(__name__)

#: The motion ranges of Loizillon et al. (2023), degrees and mm, by name.
MOTION_RANGES: dict[str, tuple[float, float]] = {"2-4": (2, 4), "4-6": (4, 6), "6-8": (6, 8)}
#: Name of the clean condition.
CLEAN = "clean"


def source_of(image: str | os.PathLike) -> str:
    """The source an image comes from: its folder's name, one up for a participant folder.

    Examples:
        >>> source_of("/data/t1w/ixi/IXI516-HH-2297_T1.nii.gz")
        'ixi'
        >>> source_of("/data/mslub/longitudinal_raw/patient19/study1_FLAIR.nii.gz")
        'longitudinal_raw'
    """
    folder = Path(image).parent
    while PARTICIPANT_FOLDER.fullmatch(folder.name) or folder.name == "anat":
        folder = folder.parent
    return folder.name


def generate_protocol_samples(
    images: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    repeats: int,
    seed: int,
    n_jobs: int = 1,
) -> pd.DataFrame:
    """Write the clean and moved samples of every image; return their labels, one row each.

    ``out_dir/<condition>/`` holds the samples of each condition (``clean``, ``2-4``, ``4-6``,
    ``6-8``), as :func:`bidsqc.simulation.generate_corrupted_dataset` writes them, so a stopped
    run resumes. The table adds the columns ``condition`` and ``path`` (of the ``.npy``).
    """
    out_dir = Path(out_dir)
    conditions = {CLEAN: (RandomMotion(), 0.0, 1)} | {
        name: (RandomMotion(span, span), 1.0, repeats) for name, span in MOTION_RANGES.items()
    }
    tables = []
    for name, (motion, probability, n_per_image) in conditions.items():
        LOGGER.info("Generating the %s samples.", name)
        labels = generate_corrupted_dataset(
            images,
            out_dir / name,
            n_per_image=n_per_image,
            seed=seed,
            corruption=RandomCorruption([motion], probabilities=probability),
            n_jobs=n_jobs,
            save_sample=save_template_space_sample,
        )
        table = pd.read_csv(labels, sep="\t")
        table["condition"] = name
        table["path"] = [str(labels.parent / filename) for filename in table["filename"]]
        tables.append(table)
    return pd.concat(tables, ignore_index=True)


def predict_samples(
    network: MotionNet, paths: Sequence[str | os.PathLike], batch_size: int = 8
) -> pd.DataFrame:
    """The motion columns of each pre-generated sample (``.npy``), one row per path."""
    volumes = (np.load(path).astype(np.float32) for path in paths)
    predictions = predict_motion(network, volumes, batch_size=batch_size)
    return pd.DataFrame([prediction.columns() for prediction in predictions])


def motion_protocol_metrics(table: pd.DataFrame) -> pd.DataFrame:
    """Table-2 metrics of predicted samples, overall and per source.

    ``table`` needs ``condition``, ``base_image``, ``motion_rms_mm``, ``motion_grade_predicted``
    and ``motion_mm``. One row per source (``all`` first) and range: the counts, balanced
    accuracy, sensitivity and specificity of "grade > 0"; then, per source, a row ``all``
    with R² and Spearman of ``motion_mm`` against the simulated RMS and the fraction of clean
    images called severe.
    """
    table = table.assign(source=[source_of(path) for path in table["base_image"]])
    groups = [("all", table), *table.groupby("source", sort=True)]
    rows = []
    for source, group in groups:
        clean = group[group["condition"] == CLEAN]
        for name in MOTION_RANGES:
            moved = group[group["condition"] == name]
            truth = np.r_[np.zeros(len(clean), bool), np.ones(len(moved), bool)]
            called = np.r_[clean["motion_grade_predicted"], moved["motion_grade_predicted"]] > 0
            rows.append(
                {
                    "source": source,
                    "range": name,
                    "n_clean": len(clean),
                    "n_moved": len(moved),
                    "balanced_accuracy": balanced_accuracy(truth, called),
                    "sensitivity": sensitivity(truth, called),
                    "specificity": specificity(truth, called),
                }
            )
        rows.append(
            {
                "source": source,
                "range": "all",
                "n_clean": len(clean),
                "n_moved": int((group["condition"] != CLEAN).sum()),
                "mm_r2": r2_score(group["motion_rms_mm"], group["motion_mm"]),
                "mm_spearman": spearman(group["motion_rms_mm"], group["motion_mm"]),
                "clean_called_severe": float((clean["motion_grade_predicted"] == 2).mean()),
            }
        )
    return pd.DataFrame(rows)


def read_scores(scores: str | os.PathLike) -> dict[str, int]:
    """An MR-ART-style ``scores.tsv``: ``bids_name`` (image name without extension) to score."""
    with open(scores, newline="") as stream:
        reader = csv.DictReader(stream, delimiter="\t")
        if not {"bids_name", "score"} <= set(reader.fieldnames or ()):
            raise ValueError(f"{scores} needs the columns bids_name and score")
        return {row["bids_name"]: int(row["score"]) for row in reader}


def predict_rated_images(
    network: MotionNet, bids_dir: str | os.PathLike, scores: Mapping[str, int]
) -> pd.DataFrame:
    """Preprocess and grade every rated image found under ``bids_dir``.

    One row per image: ``bids_name``, ``score``, ``path`` and the motion columns. Rated names
    without an image are logged and left out; an image that cannot be preprocessed too.
    """
    found = {
        path.name.removesuffix(".gz").removesuffix(".nii"): path
        for path in Path(bids_dir).rglob("*.nii*")
        if "derivatives" not in path.parts
    }
    missing = sorted(set(scores) - set(found))
    if missing:
        LOGGER.warning(
            "%d rated image(s) not found under %s, e.g. %s", len(missing), bids_dir, missing[0]
        )
    rows = []
    for name in sorted(set(scores) & set(found)):
        try:
            volume = to_template_space(load_anatomical(found[name]))
        except (OSError, ValueError) as err:
            LOGGER.warning("Skipping %s: %s", name, err)
            continue
        (prediction,) = predict_motion(network, [normalise_intensity(volume)])
        rows.append(
            {"bids_name": name, "score": scores[name], "path": str(found[name])}
            | prediction.columns()
        )
    return pd.DataFrame(rows)


def rated_motion_metrics(table: pd.DataFrame) -> dict[str, float]:
    """BA of "motion" against score > 1 and of "severe" against score 3; Spearman of mm."""
    motion = table["score"] > 1
    severe = table["score"] == 3
    return {
        "n_images": len(table),
        "motion_ba": balanced_accuracy(motion, table["motion_grade"] > 0),
        "motion_sensitivity": sensitivity(motion, table["motion_grade"] > 0),
        "motion_specificity": specificity(motion, table["motion_grade"] > 0),
        "severe_ba": balanced_accuracy(severe, table["motion_grade"] == 2),
        "mm_spearman": spearman(table["score"], table["motion_mm"]),
    }

