"""Fine-tuning a pretrained network on a site's own labels, and the cross-validation that says
whether it helped.

Two methods, as in the papers behind bidsqc (``../shared/papers``):

- ``head`` (Loizillon et al. 2023): the encoder frozen, its trunk and grade head trained again;
- ``embedding`` (Bricout et al.): a linear probe, an L2-regularised multinomial logistic
  regression, on the frozen encoder's standardised embeddings.

The encoder being frozen, both train on embeddings computed once per image (the image and its
left-right mirror, the mirror as augmentation), so they take seconds on a CPU. What they are
compared with, on the same folds: the pretrained network as it is, and the same architecture
trained from scratch on the same labels (every layer, on the volumes).

Every model is scored as the app grades an image (:func:`bidsqc.inference.motion.predict_motion`,
with the model's calibrated threshold where its card has one, 0.5 otherwise), by balanced
accuracy over the three classes.
"""

from __future__ import annotations

import copy
import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from bidsqc.inference.inputs import load_preprocessed
from bidsqc.inference.motion import predict_motion
from bidsqc.networks import MotionNet, ProbedMotionNet
from bidsqc.outputs.tables import read_qc_table
from bidsqc.training.labels import Label, LabelError, bids_stem
from bidsqc.training.losses import grade_class_weights
from bidsqc.training.metrics import balanced_accuracy

__all__ = [
    "METHODS",
    "TASKS",
    "FineTuneSettings",
    "LabelledImages",
    "cross_validate",
    "find_preprocessed",
    "fine_tune",
    "label_images",
    "participant_folds",
]

logger = logging.getLogger(__name__)

METHODS = ("head", "embedding")
#: What each task's three classes are.
TASKS = {
    "motion": ("none", "mild", "severe"),
    "quality": ("usable", "questionable", "unusable"),
}
#: A preprocessed image in a participant run's output: source stem, then suffix.
_PREPROC = re.compile(
    r"^(?P<prefix>.+)_space-[^_]+_res-2_desc-preproc_(?P<suffix>[A-Za-z0-9]+)\.nii\.gz$"
)


@dataclass(frozen=True)
class FineTuneSettings:
    """How the models are trained.

    Args:
        epochs: passes over the embeddings (``head``) or optimiser steps (``embedding``).
        lr: Adam's learning rate for ``head`` and scratch training.
        weight_decay: L2 penalty of the head's or the probe's weights.
        scratch_epochs: passes over the volumes of the model trained from scratch (0: skip it).
        batch_size: volumes per step from scratch.
        seed: seeds the folds, the initialisations and the order of samples.
    """

    epochs: int = 300
    lr: float = 1e-3
    weight_decay: float = 1e-2
    scratch_epochs: int = 15
    batch_size: int = 4
    seed: int = 0


@dataclass
class LabelledImages:
    """The site's labelled images, with what the base network's frozen encoder makes of them."""

    labels: list[Label]
    paths: list[Path]
    #: Each image as the networks take it, shape (N, 1, X, Y, Z).
    volumes: Tensor
    #: Embeddings of each image and of its left-right mirror, shape (N, 2, C).
    embeddings: Tensor

    def targets(self, task: str) -> np.ndarray:
        return np.array([label.target(task) for label in self.labels])

    @property
    def participants(self) -> list[str]:
        return [label.participant for label in self.labels]


def find_preprocessed(qc_dir: str | os.PathLike) -> dict[str, Path]:
    """Every preprocessed image a participant run wrote under ``qc_dir``, by source stem."""
    found = {}
    for path in sorted(Path(qc_dir).glob("**/anat/*_desc-preproc_*.nii.gz")):
        match = _PREPROC.match(path.name)
        if match:
            found[f"{match['prefix']}_{match['suffix']}"] = path
    return found


def label_images(
    labels: Sequence[Label], qc_dir: str | os.PathLike, base: MotionNet, progress: bool = True
) -> LabelledImages:
    """Match each label to its preprocessed image in ``qc_dir``, and embed the images.

    A label of an image that the participant run lists as failed (it has no preprocessed
    image) is left out with a warning. Raises :class:`LabelError` naming the labels that
    match no image of ``qc_dir`` at all.
    """
    preprocessed = find_preprocessed(qc_dir)
    failed = _failed_stems(qc_dir)
    skipped = [label for label in labels if label.stem in failed and label.stem not in preprocessed]
    if skipped:
        logger.warning(
            "Left out %d label(s) of images that failed in the participant run: %s.",
            len(skipped),
            ", ".join(label.stem for label in skipped),
        )
        labels = [label for label in labels if label not in skipped]
    if not labels:
        raise LabelError("no label to train on: rate some processed images first")
    unmatched = [label for label in labels if label.stem not in preprocessed]
    if unmatched:
        names = ", ".join(f"{label.stem} ({label.source})" for label in unmatched[:5])
        more = f" and {len(unmatched) - 5} more" if len(unmatched) > 5 else ""
        raise LabelError(
            f"{len(unmatched)} label(s) match no preprocessed image in {qc_dir}: {names}{more}. "
            "Run the participant level on those images first."
        )
    paths = [preprocessed[label.stem] for label in labels]
    volumes = torch.stack(
        [
            torch.from_numpy(load_preprocessed(path))[None]
            for path in tqdm(paths, desc="read", disable=not progress)
        ]
    )
    base.eval()
    with torch.no_grad():  # not inference mode: the heads train on these
        embeddings = torch.stack(
            [
                torch.cat([base.embed(volume[None]), base.embed(volume[None].flip(2))])
                for volume in tqdm(volumes, desc="embed", disable=not progress)
            ]
        )
    return LabelledImages(list(labels), paths, volumes, embeddings)


def _failed_stems(qc_dir: str | os.PathLike) -> set[str]:
    """The images that a participant run's tables in ``qc_dir`` list as failed, by stem."""
    failed = set()
    for table in Path(qc_dir).glob("sub-*/sub-*_qc.tsv"):
        rows = read_qc_table(table)
        failed |= {bids_stem(name) for name in rows.loc[rows["status"] != "ok", "filename"]}
    return failed


def participant_folds(participants: Sequence[str], n_folds: int, seed: int) -> list[np.ndarray]:
    """Indices of the test images of each fold: whole participants, shuffled, dealt in turn
    into ``min(n_folds, number of participants)`` folds."""
    unique = sorted(set(participants))
    if len(unique) < 2:
        raise LabelError("cross-validation needs the labels of two participants or more")
    order = np.random.default_rng(seed).permutation(len(unique))
    n_folds = min(n_folds, len(unique))
    fold_of = {unique[i]: k % n_folds for k, i in enumerate(order)}
    return [np.flatnonzero([fold_of[p] == fold for p in participants]) for fold in range(n_folds)]


def fine_tune(
    base: MotionNet,
    network_args: Mapping[str, Any],
    embeddings: Tensor,
    targets: np.ndarray,
    method: str,
    settings: FineTuneSettings,
) -> MotionNet:
    """A copy of ``base`` (built with ``network_args``, its card's) whose grade is trained on
    ``targets`` with its encoder frozen."""
    torch.manual_seed(settings.seed)
    weights = grade_class_weights(targets)
    if method == "head":
        return _train_head(base, embeddings, torch.as_tensor(targets), weights, settings)
    if method == "embedding":
        probed = ProbedMotionNet(**network_args)
        return _train_probe(base, probed, embeddings, torch.as_tensor(targets), weights, settings)
    raise ValueError(f"unknown method {method!r}; choose from {METHODS}")


def _train_head(
    base: MotionNet,
    embeddings: Tensor,
    targets: Tensor,
    weights: Tensor,
    settings: FineTuneSettings,
) -> MotionNet:
    model = copy.deepcopy(base)
    model.freeze_encoder()
    model.thresholds = {}
    parameters = [*model.trunk.parameters(), *model.grade_head.parameters()]
    optimiser = torch.optim.Adam(parameters, lr=settings.lr, weight_decay=settings.weight_decay)
    loss = nn.CrossEntropyLoss(weight=weights)
    both = embeddings.flatten(0, 1)  # each image and its mirror
    targets = targets.repeat_interleave(2)
    model.train()
    for _ in range(settings.epochs):
        optimiser.zero_grad()
        loss(model.grade_head(model.trunk(both)), targets).backward()
        optimiser.step()
    return model.eval()


def _train_probe(
    base: MotionNet,
    model: ProbedMotionNet,
    embeddings: Tensor,
    targets: Tensor,
    weights: Tensor,
    settings: FineTuneSettings,
) -> ProbedMotionNet:
    model.load_state_dict(base.state_dict(), strict=False)  # all but the probe and its scaling
    model.freeze_encoder()
    mean_embedding = embeddings.mean(dim=1)
    model.embedding_mean.copy_(mean_embedding.mean(dim=0))
    scale = mean_embedding.std(dim=0, correction=0)
    model.embedding_scale.copy_(torch.where(scale > 1e-3, scale, torch.ones_like(scale)))
    optimiser = torch.optim.Adam(model.probe.parameters(), lr=0.01)
    loss = nn.CrossEntropyLoss(weight=weights)
    both, targets = embeddings.flatten(0, 1), targets.repeat_interleave(2)
    for _ in range(settings.epochs):
        optimiser.zero_grad()
        penalty = settings.weight_decay * model.probe.weight.square().sum()
        (loss(model.probe_logits(both), targets) + penalty).backward()
        optimiser.step()
    return model.eval()


def train_from_scratch(
    volumes: Tensor, targets: np.ndarray, settings: FineTuneSettings, progress: bool = True
) -> MotionNet:
    """A :class:`MotionNet` of random weights trained on the volumes' grades alone (its mm
    head stays untrained: only the grade is compared), each batch mirrored at random."""
    torch.manual_seed(settings.seed)
    model = MotionNet()
    optimiser = torch.optim.Adam(model.parameters(), lr=settings.lr)
    loss = nn.CrossEntropyLoss(weight=grade_class_weights(targets))
    targets = torch.as_tensor(targets)
    generator = torch.Generator().manual_seed(settings.seed)
    model.train()
    epochs = tqdm(
        range(settings.scratch_epochs), desc="from scratch", leave=False, disable=not progress
    )
    for _ in epochs:
        for batch in torch.randperm(len(volumes), generator=generator).split(settings.batch_size):
            if len(batch) < 2:
                continue  # batch norm needs two samples
            inputs = volumes[batch]
            if torch.rand(1, generator=generator) < 0.5:
                inputs = inputs.flip(2)
            optimiser.zero_grad()
            loss(model(inputs).grade_logits, targets[batch]).backward()
            optimiser.step()
    return model.eval()


def grades(network: MotionNet, volumes: Tensor) -> np.ndarray:
    """The app's grade of each volume (:func:`predict_motion`)."""
    return np.array([p.grade for p in predict_motion(network, (v.numpy() for v in volumes[:, 0]))])


def cross_validate(
    base: MotionNet,
    network_args: Mapping[str, Any],
    images: LabelledImages,
    task: str,
    method: str,
    settings: FineTuneSettings,
    n_folds: int,
    progress: bool = True,
) -> dict:
    """Balanced accuracy of the fine-tuned, pretrained and from-scratch models on folds grouped
    by participant: per fold, over every out-of-fold prediction pooled, and the folds' mean."""
    targets = images.targets(task)
    folds = participant_folds(images.participants, n_folds, settings.seed)
    models: dict[str, Callable[[np.ndarray], MotionNet | None]] = {
        "fine-tuned": lambda train: fine_tune(
            base, network_args, images.embeddings[train], targets[train], method, settings
        ),
        "pretrained": lambda train: base,
    }
    if settings.scratch_epochs:
        models["from scratch"] = lambda train: train_from_scratch(
            images.volumes[train], targets[train], settings, progress
        )
    predicted = {name: np.full(len(targets), -1) for name in models}
    rows = []
    for number, test in enumerate(tqdm(folds, desc="folds", disable=not progress), start=1):
        train = np.setdiff1d(np.arange(len(targets)), test)
        row = {"fold": number, "participants": sorted({images.participants[i] for i in test})}
        row["n_train"], row["n_test"] = int(train.size), int(test.size)
        for name, make in models.items():
            predicted[name][test] = grades(make(train), images.volumes[test])
            row[name] = balanced_accuracy(targets[test], predicted[name][test])
        rows.append(row)
    return {
        "folds": rows,
        "pooled": {name: balanced_accuracy(targets, p) for name, p in predicted.items()},
        "mean": {name: float(np.nanmean([row[name] for row in rows])) for name in models},
    }
