"""Decision thresholds set on the training side's validation samples, at a false-positive budget."""

from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from bidsqc.networks import ArtefactNet, MotionNet
from bidsqc.outputs.columns import ARTEFACT_PROBABILITY_COLUMNS
from bidsqc.training.cards import record_calibration
from bidsqc.training.evaluation.artefact import predict_artefact_samples
from bidsqc.training.evaluation.motion import predict_motion_samples
from bidsqc.training.simulation import LABELS_TABLE

__all__ = [
    "FALSE_POSITIVE_BUDGET",
    "calibrate_network",
    "calibrated_motion_threshold",
    "calibrated_thresholds",
    "training_validation_samples",
]


def training_validation_samples(
    samples: str | os.PathLike, base_images: Collection[str]
) -> pd.DataFrame:
    """The labels of the samples in ``samples`` (a ``bidsqc-train`` samples folder) made from
    ``base_images`` (the validation images of the run's model card), with their ``path``."""
    samples = Path(samples)
    table = pd.read_csv(samples / LABELS_TABLE, sep="\t")
    table = table[table["base_image"].isin(set(base_images))].reset_index(drop=True)
    if table.empty:
        raise ValueError(f"no sample of the given base images in {samples / LABELS_TABLE}")
    table["path"] = [str(samples / filename) for filename in table["filename"]]
    return table


#: Share of the samples without an artefact that its calibrated threshold may flag: 2 % for
#: each of the six, so that at most about 11 % of clean scans are flagged with any.
FALSE_POSITIVE_BUDGET = 0.02


def calibrated_thresholds(
    table: pd.DataFrame, false_positive_budget: float = FALSE_POSITIVE_BUDGET
) -> dict[str, float]:
    """For each artefact, the lowest probability threshold that flags at most
    ``false_positive_budget`` of the samples without it (``severity_<artefact>`` = 0) in
    ``table``, the artefact samples of :func:`training_validation_samples` with their
    predictions (:func:`predict_artefact_samples`): the most sensitive threshold within a fixed
    budget of false alarms."""
    thresholds = {}
    for name, column in ARTEFACT_PROBABILITY_COLUMNS.items():
        absent = (table[f"severity_{name}"] == 0).to_numpy()
        if not absent.any():
            raise ValueError(f"every sample has {name}: no threshold")
        thresholds[column] = _lowest_threshold(table.loc[absent, column], false_positive_budget)
    return thresholds


def calibrated_motion_threshold(
    table: pd.DataFrame, false_positive_budget: float = FALSE_POSITIVE_BUDGET
) -> float:
    """The lowest threshold of the probability of motion, ``1 - p_motion_none``, that calls
    motion in at most ``false_positive_budget`` of the unmoved samples (``motion_rms_mm`` = 0)
    of ``table``, the motion samples of :func:`training_validation_samples` with their
    predictions (:func:`predict_motion_samples`)."""
    unmoved = (table["motion_rms_mm"] == 0).to_numpy()
    if not unmoved.any():
        raise ValueError("every sample is moved: no threshold")
    return _lowest_threshold(1 - table.loc[unmoved, "p_motion_none"], false_positive_budget)


def calibrate_network(
    network: MotionNet | ArtefactNet,
    samples: pd.DataFrame,
    weights: str | os.PathLike,
    batch_size: int = 8,
) -> pd.DataFrame:
    """Set the decision thresholds of a motion or artefact network on ``samples``, those of its
    own validation images (:func:`training_validation_samples`), record them in the model card
    of its ``weights`` (:func:`bidsqc.training.cards.record_calibration`) and give them to
    ``network``.

    The card's ``calibration`` holds the ``thresholds`` (:func:`calibrated_thresholds` of the
    artefact probabilities, or ``p_motion``, the :func:`calibrated_motion_threshold`), the
    ``false_positive_budget`` and the number of ``samples``. Returns the samples with their
    predictions.
    """
    if isinstance(network, ArtefactNet):
        table = predict_artefact_samples(network, samples)
        thresholds = calibrated_thresholds(table)
    else:
        table = predict_motion_samples(network, samples, batch_size)
        thresholds = {"p_motion": calibrated_motion_threshold(table)}
    calibration = {
        "thresholds": thresholds,
        "false_positive_budget": FALSE_POSITIVE_BUDGET,
        "samples": len(table),
    }
    record_calibration(weights, calibration)
    network.thresholds = thresholds
    return table


def _lowest_threshold(negatives: ArrayLike, false_positive_budget: float) -> float:
    """The lowest threshold, on a 1e-4 grid, that at most ``false_positive_budget`` of the
    scores of ``negatives`` reach."""
    negatives = np.sort(np.asarray(negatives, dtype=float))
    allowed = int(np.floor(false_positive_budget * len(negatives)))
    # Just above the (allowed + 1)-th highest score of a negative.
    highest_kept = negatives[len(negatives) - 1 - allowed]
    return float(np.ceil(highest_kept * 1e4 + 1e-6)) / 1e4
