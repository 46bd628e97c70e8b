r"""Training engine for the networks: data, loss, loop, metrics and saved weights.

The engine (:func:`fit`, :func:`train_epoch`, :func:`evaluate`) knows nothing about motion: it
receives a network, an optimiser, a loss function and data loaders. The motion-specific parts
are :class:`MotionSampleDataset`, :class:`MotionLoss` and :func:`motion_metrics`; the
registration-QC network reuses :class:`MotionLoss` with two classes and is scored by
:func:`registration_metrics` (its pairs come from :mod:`bidsqc.registration_pairs`).

Training samples on disk
------------------------
A sample folder holds the table :data:`bidsqc.simulation.LABELS_TABLE` (``labels.tsv``,
tab-separated, one header row) that :func:`bidsqc.training_data.generate_motion_samples` writes,
and the volumes it lists. Required columns, in any order (other columns are ignored):

=================  ==============================================================================
column             content
=================  ==============================================================================
``filename``       path of a ``.npy`` volume, relative to the folder (or absolute): float16,
                   shape 96 x 112 x 96, the registered image on the 2 mm template head box
                   (RAS, :data:`bidsqc.data.HEAD_BOX_SHAPE`), already scaled by
                   :func:`normalise_intensity` (float16 cannot hold every scanner's raw range)
``base_image``     the base image the sample was made from: samples of one subject
                   (:func:`subject_of`) are never split between training and validation
``motion_rms_mm``  :func:`bidsqc.simulation.motion_rms_mm` of the applied motion, in
                   [0, 24.5] mm (:data:`bidsqc.networks.MOTION_BINS`)
``motion_grade``   :func:`bidsqc.simulation.motion_grade` of it: 0, 1 or 2
=================  ==============================================================================

Example::

    filename	base_image	motion_rms_mm	motion_grade
    0000_sub-01_T1w_corrupt-000.npy	/data/sub-01_T1w.nii.gz	0.0	0
    0000_sub-01_T1w_corrupt-001.npy	/data/sub-01_T1w.nii.gz	12.41	2

The loader scales every volume with :func:`normalise_intensity` again (a no-op on scaled data),
so the same scaling applies at training and at inference.

Saved weights
-------------
:func:`save_model` writes the ``state_dict`` with :func:`torch.save` and a JSON model card
beside it (same name, ``.json``); :func:`load_model` reads the weights with
``weights_only=True``, so loading never runs pickled code.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import json
import logging
import os
import random
import re
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from numpy.typing import ArrayLike
from scipy.stats import rankdata, spearmanr
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from bidsqc import __version__
from bidsqc.data import head_box_brain_mask, read_model_card
from bidsqc.networks import ARTEFACT_NAMES, MOTION_BINS, ArtefactOutput, MotionOutput, SoftBins
from bidsqc.simulation import ARTEFACTS, LABELS_TABLE, quality_score
from bidsqc.tiles import MIN_BRAIN_FRACTION, TILE_SIZE, overview, tiles_in_context

__all__ = [
    "ARTEFACT_SAMPLE_COLUMNS",
    "ArtefactLoss",
    "ArtefactTileDataset",
    "EpochRecord",
    "History",
    "MotionLoss",
    "MotionSampleDataset",
    "artefact_metrics",
    "augment_volume",
    "random_crop",
    "read_sample_table",
    "balanced_accuracy",
    "evaluate",
    "file_sha256",
    "fit",
    "grade_class_weights",
    "load_model",
    "motion_metrics",
    "normalise_intensity",
    "r2_score",
    "registration_metrics",
    "resolve_device",
    "roc_auc",
    "record_calibration",
    "save_model",
    "seed_everything",
    "sensitivity",
    "spearman",
    "specificity",
    "subject_level_split",
    "subject_of",
    "PARTICIPANT_FOLDER",
    "train_epoch",
]

logger = logging.getLogger(__name__)

#: Columns of the labels table that the motion dataset needs.
SAMPLE_COLUMNS = ("filename", "base_image", "motion_rms_mm", "motion_grade")

ModuleT = TypeVar("ModuleT", bound=nn.Module)


# --- data -------------------------------------------------------------------------------------


def normalise_intensity(volume: np.ndarray) -> np.ndarray:
    """Scale a volume so that the 99th percentile of its positive voxels is 1 (float32).

    Negative values (interpolation undershoot) are set to 0 first, so the background stays 0 and
    a scaled volume scales to itself. The percentile ignores zeros, so it does not depend on how
    much of the box is background. Training and inference must both use this function.

    Raises ``ValueError`` for a volume without a positive voxel.
    """
    data = np.clip(np.asarray(volume, dtype=np.float32), 0, None)
    positive = data[data > 0]
    if positive.size == 0:
        raise ValueError("cannot normalise a volume without any positive voxel")
    return data / np.float32(np.percentile(positive, 99))


def augment_volume(volume: Tensor, intensity_channels: int | None = None) -> Tensor:
    """Label-preserving augmentation of one volume, shape (C, X, Y, Z), drawn from torch's RNG.

    Left-right flip (axis X, the template is symmetric about x = 0) with probability 1/2, a gamma
    in [0.8, 1.25] (log-uniform) and a global scale in [0.9, 1.1]. Neither changes how much
    the head moved; expects non-negative intensities, as :func:`normalise_intensity` gives.
    Every channel is flipped; gamma and scale change only the first ``intensity_channels``
    (all by default), so that channels holding a mask stay masks.
    """
    if torch.rand(()) < 0.5:
        volume = volume.flip(1)
    gamma = torch.exp(torch.empty(()).uniform_(np.log(0.8), np.log(1.25)))
    scale = torch.empty(()).uniform_(0.9, 1.1)
    intensities = volume[:intensity_channels]
    return torch.cat([scale * intensities**gamma, volume[len(intensities) :]])


def random_crop(volume: Tensor, shape: Sequence[int]) -> Tensor:
    """A box of ``shape`` voxels at a uniformly random place in ``volume`` (C, X, Y, Z), drawn
    from torch's RNG. Training on crops costs less per sample than on the whole head box, and
    the encoder's global pooling takes whole volumes at inference."""
    size = volume.shape[1:]
    if len(shape) != 3 or any(not 0 < c <= n for c, n in zip(shape, size, strict=True)):
        raise ValueError(f"crop {tuple(shape)} does not fit in a volume of {tuple(size)}")
    box = tuple(
        slice(start, start + c)
        for c, n in zip(shape, size, strict=True)
        for start in [int(torch.randint(0, n - c + 1, ()))]
    )
    return volume[(slice(None), *box)]


class MotionSampleDataset(Dataset):
    """Pre-generated motion samples listed in ``labels.tsv`` (format in the module docstring).

    Each item is ``(volume, target)``: the normalised volume, shape (1, X, Y, Z), float32, and
    ``{"grade": int64, "rms_mm": float32}``. Use :func:`subject_level_split` on :attr:`sources`
    and :class:`torch.utils.data.Subset` to split it.

    Parameters
    ----------
    root : path-like
        Folder that holds ``labels.tsv``.
    augment : bool
        Apply :func:`augment_volume` to each volume (for training only).
    crop : (int, int, int), optional
        Return a :func:`random_crop` of this shape of each volume (for training only).
    bins : SoftBins
        The bins the targets must fit in; an RMS outside them is an error here, not mid-training.

    Attributes
    ----------
    files : list of pathlib.Path
    sources : list of str
    rms_mm : numpy.ndarray of float
    grades : numpy.ndarray of int
    """

    def __init__(
        self,
        root: str | os.PathLike,
        augment: bool = False,
        bins: SoftBins = MOTION_BINS,
        crop: Sequence[int] | None = None,
    ) -> None:
        self.root = Path(root)
        table = self.root / LABELS_TABLE
        rows = read_sample_table(table, SAMPLE_COLUMNS)
        self.files = [self.root / row["filename"] for row in rows]
        self.sources = [row["base_image"] for row in rows]
        self.rms_mm = np.array([float(row["motion_rms_mm"]) for row in rows])
        self.grades = np.array([int(row["motion_grade"]) for row in rows])
        bad = np.flatnonzero(~((self.rms_mm >= 0) & (self.rms_mm <= bins.max_mm)))
        if bad.size:
            raise ValueError(
                f"{table}: motion_rms_mm outside [0, {bins.max_mm}] mm in row(s) "
                f"{(bad + 1).tolist()}"
            )
        bad = np.flatnonzero(~np.isin(self.grades, (0, 1, 2)))
        if bad.size:
            raise ValueError(f"{table}: motion_grade not 0, 1 or 2 in row(s) {(bad + 1).tolist()}")
        self.augment = augment
        self.crop = crop

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Tensor]]:
        volume = torch.from_numpy(normalise_intensity(np.load(self.files[index])))[None]
        if self.crop is not None:
            volume = random_crop(volume, self.crop)
        if self.augment:
            volume = augment_volume(volume)
        target = {
            "grade": torch.tensor(self.grades[index], dtype=torch.int64),
            "rms_mm": torch.tensor(self.rms_mm[index], dtype=torch.float32),
        }
        return volume, target


def read_sample_table(table: str | os.PathLike, columns: Sequence[str]) -> list[dict[str, str]]:
    """The rows of a tab-separated table of generated samples, checked to have ``columns`` and
    at least one row; ``FileNotFoundError`` without the table."""
    table = Path(table)
    if not table.is_file():
        raise FileNotFoundError(f"no {table.name} in {table.parent}")
    with table.open(newline="") as stream:
        reader = csv.DictReader(stream, delimiter="\t")
        missing = sorted(set(columns) - set(reader.fieldnames or ()))
        if missing:
            raise ValueError(f"{table} lacks the column(s) {', '.join(missing)}")
        rows = list(reader)
    if not rows:
        raise ValueError(f"{table} lists no sample")
    return rows


#: Columns of the labels table that the artefact dataset needs.
ARTEFACT_SAMPLE_COLUMNS = ("filename", "base_image", *(f"severity_{name}" for name in ARTEFACTS))


class ArtefactTileDataset(Dataset):
    """Random 64^3 tiles of pre-generated artefact samples, labelled with their volume's artefacts.

    The samples are those of :func:`bidsqc.training_data.generate_artefact_samples`: float16
    volumes on the 1 mm head box (:func:`bidsqc.data.head_box`), listed in ``labels.tsv`` with
    ``severity_<artefact>`` columns. Item ``i`` is a tile of sample ``samples[i //
    tiles_per_volume]``, in context (:func:`bidsqc.tiles.tiles_in_context`, shape (3, 64, 64,
    64)), whose brain fraction, inside the template brain mask and the scan's
    field of view (non-zero voxels), is at least :data:`bidsqc.tiles.MIN_BRAIN_FRACTION`, as
    the tiles that the image's answer averages are. Its target is ``{"presence": float32 (5,)``
    (1 for each of :data:`bidsqc.networks.ARTEFACT_NAMES` applied), ``"quality": float32}``
    (:func:`bidsqc.simulation.quality_score` of all severities, motion included).

    Parameters
    ----------
    root : path-like
        Folder that holds ``labels.tsv``.
    samples : sequence of int, optional
        Rows of the table to use (e.g. one side of :func:`subject_level_split`); all by default.
    tiles_per_volume : int
        Tiles drawn from each sample per pass.
    augment : bool
        Apply :func:`augment_volume` to each tile (for training only).
    seed : int, optional
        Fix the tile of every item (for validation). Without it, tiles are drawn anew from
        torch's generator, which :func:`fit` seeds.

    Attributes
    ----------
    sources : list of str
        Base image of each row of the table.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        samples: Sequence[int] | None = None,
        tiles_per_volume: int = 4,
        augment: bool = False,
        seed: int | None = None,
    ) -> None:
        self.root = Path(root)
        rows = read_sample_table(self.root / LABELS_TABLE, ARTEFACT_SAMPLE_COLUMNS)
        self.sources = [row["base_image"] for row in rows]
        self.samples = list(range(len(rows))) if samples is None else list(samples)
        self.files = [self.root / row["filename"] for row in rows]
        severities = [{name: float(row[f"severity_{name}"]) for name in ARTEFACTS} for row in rows]
        self.presence = np.array(
            [[severity[name] > 0 for name in ARTEFACT_NAMES] for severity in severities],
            dtype=np.float32,
        )
        self.quality = np.array([quality_score(severity) for severity in severities], np.float32)
        if tiles_per_volume < 1:
            raise ValueError(f"tiles_per_volume must be at least 1, got {tiles_per_volume}")
        self.tiles_per_volume = tiles_per_volume
        self.augment = augment
        self.seed = seed
        self._overviews: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.samples) * self.tiles_per_volume

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Tensor]]:
        sample = self.samples[index // self.tiles_per_volume]
        seed = torch.randint(2**62, ()).item() if self.seed is None else (self.seed, index)
        rng = np.random.default_rng(seed)
        volume = np.load(self.files[sample], mmap_mode="r")
        origin = _random_brain_tile(volume, head_box_brain_mask(1), rng)
        if sample not in self._overviews:
            self._overviews[sample] = overview(volume)
        tile = torch.from_numpy(tiles_in_context(volume, [origin], self._overviews[sample])[0])
        if self.augment:
            tile = augment_volume(tile, intensity_channels=2)
        target = {
            "presence": torch.from_numpy(self.presence[sample]),
            "quality": torch.tensor(self.quality[sample]),
        }
        return tile, target


def _random_brain_tile(
    volume: np.ndarray, brain: np.ndarray, rng: np.random.Generator, attempts: int = 50
) -> tuple[int, int, int]:
    """The origin of a tile, uniformly random, holding enough brain; the best of ``attempts``
    origins when none does (a scan with a small field of view)."""
    best, best_fraction = (0, 0, 0), -1.0
    for _ in range(attempts):
        x, y, z = (int(rng.integers(0, n - TILE_SIZE + 1)) for n in volume.shape)
        window = np.s_[x : x + TILE_SIZE, y : y + TILE_SIZE, z : z + TILE_SIZE]
        fraction = float(np.mean(brain[window] & (np.asarray(volume[window]) > 0)))
        if fraction >= MIN_BRAIN_FRACTION:
            return x, y, z
        if fraction > best_fraction:
            best, best_fraction = (x, y, z), fraction
    return best


class ArtefactLoss(nn.Module):
    r"""Focal loss on each artefact's presence plus the squared error of the quality score.

    .. math::

        L = \frac{1}{K} \sum_{a=1}^{K} \mathrm{FL}(p_a, y_a)
            + \lambda \left(\frac{\hat q - q}{10}\right)^2,
        \qquad \mathrm{FL}(p, y) = -\alpha_t (1 - p_t)^\gamma \log p_t

    with :math:`p_t = p` for a present artefact and :math:`1 - p` otherwise (Lin et al. 2017).
    The focal term :math:`(1 - p_t)^\gamma` discounts the easy tiles, most of them clean, so the
    rare and faint artefacts drive training; :math:`\alpha_t = \alpha` for present artefacts
    and :math:`1 - \alpha` otherwise. Both terms start near 0.1 per tile, so :math:`\lambda = 1`
    weighs them alike. Averaged over the batch.

    References
    ----------
    T.-Y. Lin, P. Goyal, R. Girshick, K. He, P. Dollar, "Focal loss for dense object
    detection", ICCV 2017, doi:10.1109/ICCV.2017.324.
    """

    def __init__(self, gamma: float = 2.0, alpha: float = 0.5, quality_weight: float = 1.0) -> None:
        super().__init__()
        self.gamma = gamma
        self.alpha = alpha
        self.quality_weight = quality_weight

    def forward(self, output: ArtefactOutput, target: Mapping[str, Tensor]) -> Tensor:
        presence = target["presence"]
        log_p = nn.functional.logsigmoid(output.presence_logits)
        log_not_p = nn.functional.logsigmoid(-output.presence_logits)
        log_p_t = presence * log_p + (1 - presence) * log_not_p
        alpha_t = presence * self.alpha + (1 - presence) * (1 - self.alpha)
        focal = -alpha_t * (1 - log_p_t.exp()) ** self.gamma * log_p_t
        quality = ((output.quality - target["quality"]) / 10) ** 2
        return focal.mean() + self.quality_weight * quality.mean()


def subject_of(image: str | os.PathLike) -> str:
    """The participant an image path belongs to, for splitting by subject.

    * a BIDS path: its folder up to the ``sub-<label>`` entity, e.g. ``ds/sub-01`` for
      ``ds/sub-01/ses-1/anat/sub-01_ses-1_T1w.nii.gz`` and for ``ds/sub-01_T1w.nii.gz``;
    * a folder named for a participant (``patient01``, ``subject_3``): that folder, so MSLUB's
      ``patient01/study1_T1W.nii.gz`` and ``patient01/study2_FLAIR.nii.gz`` go together;
    * otherwise its folder and the file name up to the first underscore, e.g.
      ``ixi/IXI516-HH-2297`` for ``ixi/IXI516-HH-2297_T1.nii.gz``.

    Examples:
        >>> subject_of("mslub/patient01/study2_FLAIR.nii.gz")
        'mslub/patient01'
        >>> subject_of("t1w/ds002748/sub-05_T1w.nii.gz")
        't1w/ds002748/sub-05'
    """
    path = Path(image)
    for depth, part in enumerate(path.parts):
        match = _BIDS_SUBJECT.match(part)
        if match:
            return str(Path(*path.parts[:depth], match.group(0)))
    if PARTICIPANT_FOLDER.fullmatch(path.parent.name):
        return str(path.parent)
    return str(path.parent / path.name.split("_")[0])


_BIDS_SUBJECT = re.compile(r"sub-[A-Za-z0-9]+")
#: A folder named for one participant: ``sub-01``, ``patient01``, ``subject_3``.
PARTICIPANT_FOLDER = re.compile(r"(sub|subj|subject|patient|participant)[-_]?\d+", re.IGNORECASE)


def subject_level_split(
    sources: Sequence[str], val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split sample indices into training and validation by subject.

    Samples are grouped by the subject of their source image (:func:`subject_of`). The
    subjects are shuffled with ``numpy.random.default_rng(seed)`` and
    ``round(val_fraction * n_subjects)`` of them (at least one, and at least one left for
    training) go to validation, with all of their samples.

    Returns
    -------
    train, val : numpy.ndarray of int
        Sorted sample indices.
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    subjects = [subject_of(source) for source in sources]
    unique = sorted(set(subjects))
    if len(unique) < 2:
        raise ValueError(f"need at least 2 distinct subjects to split, got {len(unique)}")
    n_val = min(max(round(val_fraction * len(unique)), 1), len(unique) - 1)
    val_subjects = set(np.random.default_rng(seed).permutation(unique)[:n_val].tolist())
    is_val = np.array([subject in val_subjects for subject in subjects])
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


# --- loss -------------------------------------------------------------------------------------


def grade_class_weights(grades: ArrayLike, n_classes: int = 3) -> Tensor:
    r"""Inverse-frequency class weights :math:`w_c = N / (K N_c)`, for a weighted cross-entropy.

    A balanced training set gets weights of 1. A class absent from ``grades`` gets weight 0
    (with a warning): it has no sample to weight.
    """
    counts = np.bincount(np.asarray(grades, dtype=int), minlength=n_classes).astype(float)
    if counts.size > n_classes:
        raise ValueError(f"grades must lie in [0, {n_classes - 1}], got up to {counts.size - 1}")
    if (counts == 0).any():
        logger.warning("no training sample of grade(s) %s", np.flatnonzero(counts == 0).tolist())
    weights = np.divide(counts.sum(), n_classes * counts, out=np.zeros(n_classes), where=counts > 0)
    return torch.tensor(weights, dtype=torch.float32)


class MotionLoss(nn.Module):
    r"""Weighted cross-entropy on the grade plus KL divergence on the binned motion.

    .. math::

        L = \mathrm{CE}_w(\text{grade logits}, g)
            + \lambda \, \mathrm{KL}\big(p(r) \,\|\, q\big)

    where :math:`p(r)` is :meth:`SoftBins.soft_label` of the true RMS :math:`r` and :math:`q` the
    predicted distribution; the KL term is averaged over the batch (``reduction="batchmean"``).
    Both terms are in nats per sample and start at similar sizes (:math:`\ln 3 \approx 1.1` and
    about 2 for an untrained network), so :math:`\lambda = 1` weighs them equally.

    Parameters
    ----------
    class_weights : torch.Tensor of shape (3,)
        Grade weights, e.g. :func:`grade_class_weights` of the training grades.
    bins : SoftBins
        Bins of the motion head.
    sigma_mm : float
        Width of the soft label, in mm (two bins by default).
    kl_weight : float
        :math:`\lambda`.
    """

    def __init__(
        self,
        class_weights: Tensor,
        bins: SoftBins = MOTION_BINS,
        sigma_mm: float = 1.0,
        kl_weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.cross_entropy = nn.CrossEntropyLoss(weight=class_weights)
        self.kl_divergence = nn.KLDivLoss(reduction="batchmean")
        self.bins = bins
        self.sigma_mm = sigma_mm
        self.kl_weight = kl_weight

    def forward(self, output: MotionOutput, target: Mapping[str, Tensor]) -> Tensor:
        soft_label = self.bins.soft_label(target["rms_mm"], self.sigma_mm)
        return self.cross_entropy(
            output.grade_logits, target["grade"]
        ) + self.kl_weight * self.kl_divergence(output.mm_log_probs, soft_label)


# --- metrics ----------------------------------------------------------------------------------


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
    output: MotionOutput, target: Mapping[str, Tensor], bins: SoftBins = MOTION_BINS
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
    output: MotionOutput, target: Mapping[str, Tensor], bins: SoftBins = MOTION_BINS
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


# --- engine -----------------------------------------------------------------------------------


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's (all devices) global generators.

    Call it before building the network, so that its initial weights depend on the seed too.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(device: str) -> torch.device:
    """``"auto"`` is CUDA when available, else CPU; any other name goes to :class:`torch.device`."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device)


def _map_tensors(function: Callable[[Tensor], Tensor], data: Any) -> Any:
    """Apply ``function`` to every tensor in a tensor, mapping or named tuple."""
    if isinstance(data, Tensor):
        return function(data)
    if isinstance(data, Mapping):
        return {key: _map_tensors(function, value) for key, value in data.items()}
    if isinstance(data, tuple) and hasattr(data, "_fields"):
        return type(data)(*(_map_tensors(function, value) for value in data))
    raise TypeError(f"expected a tensor, a mapping or a named tuple of tensors, got {type(data)}")


def _concatenate(batches: list[Any]) -> Any:
    """Join per-batch tensors, mappings or named tuples of tensors along the batch axis."""
    first = batches[0]
    if isinstance(first, Tensor):
        return torch.cat(batches)
    if isinstance(first, Mapping):
        return {key: _concatenate([batch[key] for batch in batches]) for key in first}
    if isinstance(first, tuple) and hasattr(first, "_fields"):
        return type(first)(*(_concatenate(list(parts)) for parts in zip(*batches, strict=True)))
    raise TypeError(f"expected a tensor, a mapping or a named tuple of tensors, got {type(first)}")


def train_epoch(
    model: nn.Module,
    loader: DataLoader,
    optimiser: torch.optim.Optimizer,
    loss_fn: Callable[[Any, Any], Tensor],
    device: torch.device,
    progress: bool = True,
) -> float:
    """One pass over ``loader`` in training mode; return the mean loss per sample.

    Each batch is ``(inputs, targets)``; ``loss_fn(model(inputs), targets)`` must return a scalar
    averaged over the batch. A non-finite loss raises ``FloatingPointError``.
    """
    model.train()
    total, count = 0.0, 0
    for inputs, targets in tqdm(loader, desc="train", leave=False, disable=not progress):
        inputs = inputs.to(device)
        optimiser.zero_grad(set_to_none=True)
        loss = loss_fn(model(inputs), _map_tensors(lambda t: t.to(device), targets))
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite training loss {loss.item()} at batch {count}")
        loss.backward()
        optimiser.step()
        total += loss.item() * len(inputs)
        count += len(inputs)
    return total / count


def evaluate(
    model: nn.Module,
    loader: DataLoader,
    loss_fn: Callable[[Any, Any], Tensor],
    device: torch.device,
    metrics: Callable[[Any, Any], dict[str, float]] | None = None,
    progress: bool = True,
) -> tuple[float, dict[str, float]]:
    """Mean loss per sample over ``loader`` in eval mode, and ``metrics(outputs, targets)``
    computed once on the outputs and targets of the whole set (an empty dict without it)."""
    model.eval()
    total, count, outputs, targets = 0.0, 0, [], []
    with torch.inference_mode():
        for inputs, batch_targets in tqdm(loader, desc="eval", leave=False, disable=not progress):
            batch_targets = _map_tensors(lambda t: t.to(device), batch_targets)
            output = model(inputs.to(device))
            total += loss_fn(output, batch_targets).item() * len(inputs)
            count += len(inputs)
            if metrics is not None:
                outputs.append(_map_tensors(lambda t: t.cpu(), output))
                targets.append(_map_tensors(lambda t: t.cpu(), batch_targets))
    scores = metrics(_concatenate(outputs), _concatenate(targets)) if metrics else {}
    return total / count, scores


@dataclass
class EpochRecord:
    """What one epoch gave."""

    epoch: int
    train_loss: float
    val_loss: float
    val_metrics: dict[str, float]
    seconds: float


@dataclass
class History:
    """Every epoch of a :func:`fit` run; the model holds the weights of :attr:`best_epoch`."""

    epochs: list[EpochRecord] = field(default_factory=list)
    best_epoch: int = 0
    stopped_early: bool = False

    @property
    def best(self) -> EpochRecord:
        """The epoch with the lowest validation loss."""
        return self.epochs[self.best_epoch - 1]

    def to_dict(self) -> dict:
        return asdict(self)


def fit(
    model: nn.Module,
    optimiser: torch.optim.Optimizer,
    loss_fn: Callable[[Any, Any], Tensor],
    train_loader: DataLoader,
    val_loader: DataLoader,
    *,
    epochs: int,
    seed: int,
    device: str = "auto",
    metrics: Callable[[Any, Any], dict[str, float]] | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    patience: int | None = None,
    progress: bool = True,
) -> History:
    """Train ``model`` and keep the weights of the epoch with the lowest validation loss.

    The global generators are seeded with ``seed`` first (:func:`seed_everything`), which fixes
    the shuffling, dropout and augmentation (also in loader workers, whose seeds derive from
    torch's). The model and, when it is a module, ``loss_fn`` are moved to ``device`` in place;
    an optimiser built on the model's parameters before keeps working. Each epoch is logged on
    the ``bidsqc.training`` logger.

    Parameters
    ----------
    model, optimiser, loss_fn
        See :func:`train_epoch`.
    train_loader, val_loader : torch.utils.data.DataLoader
        Batches of ``(inputs, targets)``.
    epochs : int
        Maximum number of epochs.
    seed : int
        Seed of the run.
    device : str
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``... or ``"auto"`` (:func:`resolve_device`).
    metrics : callable, optional
        ``metrics(outputs, targets) -> dict`` on the whole validation set, e.g.
        :func:`motion_metrics`.
    scheduler : torch.optim.lr_scheduler.LRScheduler, optional
        Learning-rate schedule of ``optimiser``, stepped once after each epoch.
    patience : int, optional
        Stop after this many epochs without a lower validation loss; by default, run them all.
    progress : bool
        Show tqdm progress bars.

    Returns
    -------
    History
    """
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    if patience is not None and patience < 1:
        raise ValueError(f"patience must be at least 1, got {patience}")
    seed_everything(seed)
    target_device = resolve_device(device)
    model.to(target_device)
    if isinstance(loss_fn, nn.Module):
        loss_fn.to(target_device)
    history = History()
    best_loss, best_state = float("inf"), None
    for epoch in tqdm(range(1, epochs + 1), desc="epochs", disable=not progress):
        start = time.perf_counter()
        train_loss = train_epoch(model, train_loader, optimiser, loss_fn, target_device, progress)
        if scheduler is not None:
            scheduler.step()
        val_loss, val_metrics = evaluate(
            model, val_loader, loss_fn, target_device, metrics, progress
        )
        record = EpochRecord(epoch, train_loss, val_loss, val_metrics, time.perf_counter() - start)
        history.epochs.append(record)
        logger.info(
            "epoch %d: train loss %.4f, val loss %.4f, %s",
            epoch,
            train_loss,
            val_loss,
            ", ".join(f"{key} {value:.3f}" for key, value in val_metrics.items()),
        )
        if val_loss < best_loss:
            best_loss, history.best_epoch = val_loss, epoch
            best_state = copy.deepcopy(model.state_dict())
        elif patience is not None and epoch - history.best_epoch >= patience:
            history.stopped_early = True
            logger.info("no better validation loss for %d epochs: stopping", patience)
            break
    if best_state is None:
        raise FloatingPointError("the validation loss was never finite")
    model.load_state_dict(best_state)
    return history


# --- saved weights ----------------------------------------------------------------------------


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, as 64 hex digits."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _git_version() -> str | None:
    """``git describe`` of the source tree this module runs from, or None outside a checkout."""
    try:
        result = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=40"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return result.stdout.strip()


def save_model(model: nn.Module, path: str | os.PathLike, card: Mapping[str, Any]) -> Path:
    """Write ``model.state_dict()`` to ``path`` and a JSON model card beside it.

    ``card`` must give ``training_files`` (paths: the sample table and whatever else defines the
    training data), ``hyperparameters`` (including the network's constructor arguments, for
    :func:`load_model`), ``validation_metrics`` and ``seed``. The card written adds the SHA-256
    of every training file and of the weights, ``bidsqc_version``, ``git_version`` (``git
    describe``, None outside a checkout), ``command_line`` and ``date`` (UTC, ISO 8601).

    Returns
    -------
    pathlib.Path
        The card, ``path`` with the suffix ``.json``.
    """
    missing = [
        key
        for key in ("training_files", "hyperparameters", "validation_metrics", "seed")
        if key not in card
    ]
    if missing:
        raise ValueError(f"the model card lacks {', '.join(missing)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    written = {
        **card,
        "architecture": type(model).__name__,
        "training_files": [
            {"path": str(file), "sha256": file_sha256(file)} for file in card["training_files"]
        ],
        "weights": {"path": path.name, "sha256": file_sha256(path)},
        "bidsqc_version": __version__,
        "git_version": _git_version(),
        "command_line": sys.argv,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    return _write_card(path, written)


def record_calibration(weights: str | os.PathLike, calibration: Mapping[str, Any]) -> Path:
    """Write ``calibration`` into the model card of ``weights`` (its ``calibration`` entry,
    replaced if there is one): the decision ``thresholds`` that
    :func:`bidsqc.inference.load_network` gives the network, and how they were set.

    Returns
    -------
    pathlib.Path
        The card.
    """
    if "thresholds" not in calibration:
        raise ValueError("the calibration lacks its thresholds")
    return _write_card(weights, read_model_card(weights) | {"calibration": dict(calibration)})


def _write_card(weights: str | os.PathLike, card: Mapping[str, Any]) -> Path:
    card_path = Path(weights).with_suffix(".json")
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    return card_path


def load_model(path: str | os.PathLike, model_cls: type[ModuleT], **kwargs: Any) -> ModuleT:
    """Build ``model_cls(**kwargs)``, load the weights at ``path`` (on CPU, ``weights_only``)
    and return it in eval mode."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {path}")
    model = model_cls(**kwargs)
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval()
