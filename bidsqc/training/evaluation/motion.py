"""The motion network on held-out images under simulated motion."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

from bidsqc.networks import MotionNet
from bidsqc.training.evaluation.conditions import (
    CLEAN,
    generate_conditions,
    predict_samples,
    source_of,
)
from bidsqc.training.metrics import balanced_accuracy, r2_score, sensitivity, spearman, specificity
from bidsqc.training.samples import TemplateSpaceSampleWriter
from bidsqc.training.simulation.corruption import RandomCorruption
from bidsqc.training.simulation.motion import RandomMotion, RandomMotionRms

__all__ = [
    "MOTION_RANGES",
    "SMALL_MOTION",
    "generate_protocol_samples",
    "motion_protocol_metrics",
    "predict_motion_samples",
]

LOGGER = logging.getLogger(__name__)


#: The motion ranges of Loizillon et al. (2023), degrees and mm, by name.
MOTION_RANGES: dict[str, tuple[float, float]] = {"2-4": (2, 4), "4-6": (4, 6), "6-8": (6, 8)}

#: The condition of small motion, where real head motion mostly lies: RMS drawn uniformly in
#: 0-4 mm, 2-8 poses (:class:`RandomMotionRms`), as Bricout et al. measure their R².
SMALL_MOTION = "rms-0-4"


def predict_motion_samples(
    network: MotionNet, table: pd.DataFrame, batch_size: int = 8
) -> pd.DataFrame:
    """``table`` (samples with a ``path`` and their true ``motion_grade``) with the motion
    columns of each sample's prediction, the predicted grade as ``motion_grade_predicted``."""
    predicted = predict_samples(network, table["path"], batch_size)
    predicted.index = table.index
    grade = predicted.pop("motion_grade")
    return table.assign(motion_grade_predicted=grade).join(predicted)


def motion_protocol_metrics(table: pd.DataFrame) -> pd.DataFrame:
    """Table-2 metrics of predicted samples, overall and per source.

    ``table`` needs ``condition``, ``base_image``, ``motion_rms_mm``, ``motion_grade_predicted``
    and ``motion_mm``. One row per source (``all`` first) and range: the counts, balanced
    accuracy, sensitivity and specificity of "grade > 0"; then, per source, a row ``all``
    with R² and Spearman of ``motion_mm`` against the simulated RMS of the clean and ranged
    samples and the fraction of clean images called severe; and, when the table has
    :data:`SMALL_MOTION` samples, a row with R² and Spearman over them and the clean ones.
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
        ranged = group[group["condition"] != SMALL_MOTION]
        rows.append(
            {
                **_mm_agreement(source, "all", ranged, len(clean)),
                "clean_called_severe": float((clean["motion_grade_predicted"] == 2).mean()),
            }
        )
        small = group[group["condition"].isin([CLEAN, SMALL_MOTION])]
        if len(small) > len(clean):
            rows.append(_mm_agreement(source, SMALL_MOTION, small, len(clean)))
    return pd.DataFrame(rows)


def _mm_agreement(source: str, name: str, samples: pd.DataFrame, n_clean: int) -> dict:
    """R² and Spearman of ``motion_mm`` against the simulated RMS of ``samples``."""
    return {
        "source": source,
        "range": name,
        "n_clean": n_clean,
        "n_moved": len(samples) - n_clean,
        "mm_r2": r2_score(samples["motion_rms_mm"], samples["motion_mm"]),
        "mm_spearman": spearman(samples["motion_rms_mm"], samples["motion_mm"]),
    }


def generate_protocol_samples(
    images: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    repeats: int,
    seed: int,
    n_jobs: int = 1,
) -> pd.DataFrame:
    """Write the clean and moved samples of every image; return their labels, one row each.

    ``out_dir/<condition>/`` holds the samples of each condition (``clean`` once, then ``2-4``,
    ``4-6``, ``6-8`` and :data:`SMALL_MOTION` ``repeats`` times each), as
    :func:`bidsqc.training.simulation.generate_corrupted_dataset` writes them, so a stopped run
    resumes. The table adds the columns ``condition`` and ``path`` (of the ``.npy``).
    """
    conditions = {CLEAN: (RandomCorruption([]), 1)} | {
        name: (RandomCorruption([RandomMotion(span, span)], probabilities=1.0), repeats)
        for name, span in MOTION_RANGES.items()
    }
    small_motion = RandomMotionRms(rms_mm=(0.0, 4.0), power=1.0)
    conditions[SMALL_MOTION] = (RandomCorruption([small_motion], probabilities=1.0), repeats)
    return generate_conditions(
        images,
        out_dir,
        conditions,
        seed=seed,
        n_jobs=n_jobs,
        save_sample=TemplateSpaceSampleWriter(resolution=2, register_copies=True),
    )
