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
from bidsqc.training.samples import save_template_space_sample
from bidsqc.training.simulation.corruption import RandomCorruption
from bidsqc.training.simulation.motion import RandomMotion

__all__ = [
    "MOTION_RANGES",
    "generate_protocol_samples",
    "motion_protocol_metrics",
    "predict_motion_samples",
]

LOGGER = logging.getLogger(__name__)


#: The motion ranges of Loizillon et al. (2023), degrees and mm, by name.
MOTION_RANGES: dict[str, tuple[float, float]] = {"2-4": (2, 4), "4-6": (4, 6), "6-8": (6, 8)}


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
    ``6-8``), as :func:`bidsqc.training.simulation.generate_corrupted_dataset` writes them, so a
    stopped run resumes. The table adds the columns ``condition`` and ``path`` (of the ``.npy``).
    """
    conditions = {CLEAN: (RandomCorruption([]), 1)} | {
        name: (RandomCorruption([RandomMotion(span, span)], probabilities=1.0), repeats)
        for name, span in MOTION_RANGES.items()
    }
    return generate_conditions(
        images,
        out_dir,
        conditions,
        seed=seed,
        n_jobs=n_jobs,
        save_sample=save_template_space_sample,
    )
