"""Scores of the networks on validation data (image-quality measures are :mod:`bidsqc.measures`)."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np
import torch
from numpy.typing import ArrayLike
from scipy.stats import rankdata, spearmanr
from torch import Tensor

from bidsqc.networks import ARTEFACT_NAMES, RMS_BINS, ArtefactOutput, GradeRmsOutput, SoftBins

__all__ = [
    "artefact_metrics",
    "balanced_accuracy",
    "motion_metrics",
    "r2_score",
    "registration_metrics",
    "roc_auc",
    "sensitivity",
    "spearman",
    "specificity",
]

logger = logging.getLogger(__name__)


def sensitivity(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """True-positive rate of a binary decision; NaN (logged) without any positive."""
    truth, pred = np.asarray(y_true, dtype=bool), np.asarray(y_pred, dtype=bool)
    if not truth.any():
        logger.warning("sensitivity: no positive sample")
        return float("nan")
    return float(pred[truth].mean())


def specificity(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """True-negative rate of a binary decision; NaN (logged) without any negative."""
    return sensitivity(~np.asarray(y_true, dtype=bool), ~np.asarray(y_pred, dtype=bool))


def balanced_accuracy(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Mean recall over the classes present in ``y_true`` (binary: the mean of sensitivity and
    specificity). A perfect classifier scores 1, a constant one 1 / number of classes."""
    truth, pred = np.asarray(y_true), np.asarray(y_pred)
    if truth.size == 0:
        logger.warning("balanced_accuracy: no sample")
        return float("nan")
    return float(np.mean([(pred[truth == label] == label).mean() for label in np.unique(truth)]))


def r2_score(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    r"""Coefficient of determination :math:`1 - \sum (y - \hat y)^2 / \sum (y - \bar y)^2`;
    NaN (logged) when ``y_true`` is constant."""
    truth, pred = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    total = np.sum((truth - truth.mean()) ** 2)
    if not total > 0:
        logger.warning("r2_score: constant or empty targets")
        return float("nan")
    return float(1 - np.sum((truth - pred) ** 2) / total)


def spearman(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Spearman rank correlation; NaN (logged) when either side is constant or too short."""
    truth, pred = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    if truth.size < 2 or np.ptp(truth) == 0 or np.ptp(pred) == 0:
        logger.warning("spearman: fewer than 2 samples, or a constant input")
        return float("nan")
    return float(spearmanr(truth, pred).statistic)


def roc_auc(y_true: ArrayLike, scores: ArrayLike) -> float:
    """Area under the ROC curve: the probability that a positive outscores a negative (ties
    count half), from the Mann-Whitney U statistic. NaN without both classes."""
    truth = np.asarray(y_true, dtype=bool)
    ranks = rankdata(np.asarray(scores, dtype=float))
    n_pos, n_neg = truth.sum(), (~truth).sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    return float((ranks[truth].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def registration_metrics(
    output: GradeRmsOutput, target: Mapping[str, Tensor], bins: SoftBins = RMS_BINS
) -> dict[str, float]:
    """Validation metrics of a registration-QC network over a whole set.

    ``auc``: misregistered (grade 1) against the rest. ``auc_2_4`` and ``auc_4_plus``: pairs
    misaligned by 2-4 mm and by 4 mm or more (RMS) against exactly aligned ones. ``mm_*`` as in
    :func:`motion_metrics`.
    """
    p_misregistered = torch.softmax(output.grade_logits, dim=1)[:, 1].cpu().numpy()
    rms = target["rms_mm"].cpu().numpy()
    estimate = bins.expectation(output.mm_log_probs).cpu().numpy()
    aligned = rms == 0

    def auc_against_aligned(selected: np.ndarray) -> float:
        keep = aligned | selected
        return roc_auc(selected[keep], p_misregistered[keep])

    return {
        "auc": roc_auc(target["grade"].cpu().numpy() == 1, p_misregistered),
        "auc_2_4": auc_against_aligned((rms >= 2) & (rms < 4)),
        "auc_4_plus": auc_against_aligned(rms >= 4),
        "mm_r2": r2_score(rms, estimate),
        "mm_spearman": spearman(rms, estimate),
        "mm_mae": float(np.mean(np.abs(rms - estimate))),
    }


def artefact_metrics(output: ArtefactOutput, target: Mapping[str, Tensor]) -> dict[str, float]:
    """Validation metrics of an artefact network over a whole set of tiles.

    ``auc_<artefact>``: tiles with the artefact against those without it, for each of
    :data:`bidsqc.networks.ARTEFACT_NAMES`; ``quality_r2`` and ``quality_mae`` of the score.
    """
    presence = target["presence"].cpu().numpy()
    logits = output.presence_logits.cpu().numpy()
    quality = target["quality"].cpu().numpy()
    estimate = output.quality.cpu().numpy()
    metrics = {
        f"auc_{name}": roc_auc(presence[:, k], logits[:, k])
        for k, name in enumerate(ARTEFACT_NAMES)
    }
    return metrics | {
        "quality_r2": r2_score(quality, estimate),
        "quality_mae": float(np.mean(np.abs(quality - estimate))),
    }


def motion_metrics(
    output: GradeRmsOutput, target: Mapping[str, Tensor], bins: SoftBins = RMS_BINS
) -> dict[str, float]:
    """Validation metrics of a motion network over a whole set.

    ``grade_ba``: 3-class balanced accuracy. ``severe_*`` (grade 2 against 0–1) and ``motion_*``
    (grades 1–2 against 0): balanced accuracy, sensitivity and specificity of the binary
    decisions of Loizillon et al. (Motion01vs2, Motion0vs1). ``mm_r2``, ``mm_spearman`` and
    ``mm_mae`` compare :meth:`SoftBins.expectation` with the true RMS in mm.
    """
    grade = target["grade"].cpu().numpy()
    predicted = output.grade_logits.argmax(dim=1).cpu().numpy()
    rms = target["rms_mm"].cpu().numpy()
    estimate = bins.expectation(output.mm_log_probs).cpu().numpy()
    metrics = {"grade_ba": balanced_accuracy(grade, predicted)}
    for name, threshold in (("severe", 2), ("motion", 1)):
        truth, decision = grade >= threshold, predicted >= threshold
        metrics |= {
            f"{name}_ba": balanced_accuracy(truth, decision),
            f"{name}_sensitivity": sensitivity(truth, decision),
            f"{name}_specificity": specificity(truth, decision),
        }
    return metrics | {
        "mm_r2": r2_score(rms, estimate),
        "mm_spearman": spearman(rms, estimate),
        "mm_mae": float(np.mean(np.abs(rms - estimate))),
    }
