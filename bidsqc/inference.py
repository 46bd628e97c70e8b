"""Run the bundled networks on preprocessed images.

The weights ship in the package (``bidsqc/data/models``), each with its model card, so nothing
is downloaded at run time. A network's input is the pipeline's preprocessed image: registered
to the template on the 2 mm head box (:func:`bidsqc.outputs.preproc_path`), scaled by
:func:`bidsqc.training.normalise_intensity`.

Predictions average the image and its left-right mirror (the template is symmetric and the
networks were trained with left-right flips), which costs one more forward pass and removes
the dependence on which hemisphere an artefact happens to fall.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nb
import numpy as np
import torch

from bidsqc.data import MODELS_DIR
from bidsqc.networks import MOTION_BINS, MotionNet
from bidsqc.training import load_model, normalise_intensity, resolve_device

__all__ = [
    "MotionPrediction",
    "RegistrationPrediction",
    "load_bundled_network",
    "load_network",
    "load_preprocessed",
    "predict_motion",
    "predict_registration",
]


def _expectation_mm(distribution: Sequence[float]) -> float:
    """Mean of a distribution over the bins of :data:`bidsqc.networks.MOTION_BINS`, in mm."""
    return float(np.dot(distribution, MOTION_BINS.centres().numpy()))


def _binned(distribution: Sequence[float]) -> dict[str, list[float]]:
    """A distribution over :data:`bidsqc.networks.MOTION_BINS` with its bin centres, for JSON."""
    return {
        "mm_bin_centres": [round(float(c), 4) for c in MOTION_BINS.centres()],
        "mm_distribution": list(distribution),
    }


def load_network(weights: str | os.PathLike, device: str | torch.device = "cpu") -> MotionNet:
    """Trained weights (``.pt``), in eval mode on ``device``.

    The network's constructor arguments come from the model card beside the weights (same
    name, ``.json``), so the card and the weights cannot disagree.
    """
    weights = Path(weights)
    card = json.loads(weights.with_suffix(".json").read_text())
    network = load_model(weights, MotionNet, **card["hyperparameters"]["network"])
    return network.to(resolve_device(str(device)))


def load_bundled_network(name: str, device: str | torch.device = "cpu") -> MotionNet:
    """The bundled network ``name`` (``"motion"``), in eval mode on ``device``."""
    return load_network(MODELS_DIR / f"{name}.pt", device)


def load_preprocessed(path: str | os.PathLike) -> np.ndarray:
    """A preprocessed image as the networks take it: float32, scaled."""
    return normalise_intensity(np.asarray(nb.load(path).dataobj, dtype=np.float32))


@dataclass(frozen=True)
class MotionPrediction:
    """What the motion network says about one image."""

    #: Probabilities of the grades none, mild and severe.
    grade_probabilities: tuple[float, float, float]
    #: Probability of each bin of :data:`bidsqc.networks.MOTION_BINS`.
    mm_distribution: tuple[float, ...]

    @property
    def grade(self) -> int:
        """The most probable grade: 0 none, 1 mild, 2 severe."""
        return int(np.argmax(self.grade_probabilities))

    @property
    def motion_mm(self) -> float:
        """Expected RMS motion in mm: the mean of :attr:`mm_distribution`."""
        return _expectation_mm(self.mm_distribution)

    def columns(self) -> dict[str, float | int]:
        """The QC-table columns (described in :data:`bidsqc.outputs.MOTION_COLUMNS`)."""
        none, mild, severe = self.grade_probabilities
        return {
            "motion_grade": self.grade,
            "p_motion_none": none,
            "p_motion_mild": mild,
            "p_motion_severe": severe,
            "motion_mm": self.motion_mm,
        }

    def to_dict(self) -> dict:
        """JSON-ready: the columns, plus the bins and their probabilities for the report."""
        return self.columns() | _binned(self.mm_distribution)


@dataclass(frozen=True)
class RegistrationPrediction:
    """What the registration-QC network says about one (moving, reference) pair."""

    #: Probabilities of aligned and misregistered.
    class_probabilities: tuple[float, float]
    #: Probability of each bin of :data:`bidsqc.networks.MOTION_BINS` (registration error, mm).
    mm_distribution: tuple[float, ...]

    @property
    def p_misregistered(self) -> float:
        return float(self.class_probabilities[1])

    @property
    def error_mm(self) -> float:
        """Expected registration error (Jenkinson RMS) in mm."""
        return _expectation_mm(self.mm_distribution)

    def columns(self, suffix: str = "") -> dict[str, float]:
        """The QC-table columns (:data:`bidsqc.outputs.REGISTRATION_COLUMNS`); ``suffix``
        names the reference, e.g. ``"_to_t1w"``."""
        return {
            f"p_misregistered{suffix}": self.p_misregistered,
            f"registration_error{suffix}_mm": self.error_mm,
        }

    def to_dict(self, suffix: str = "") -> dict:
        """JSON-ready: the columns (see :meth:`columns`), plus the error distribution."""
        return self.columns(suffix) | _binned(self.mm_distribution)


def predict_motion(
    network: MotionNet,
    volumes: Iterable[np.ndarray],
    *,
    batch_size: int = 8,
) -> list[MotionPrediction]:
    """Grade the motion of each volume (shape 96 x 112 x 96, from :func:`load_preprocessed`).

    Volumes go through the network ``batch_size`` at a time, on the network's device; each
    prediction averages the probabilities of the volume and of its left-right mirror.
    """
    return [
        MotionPrediction(grade, mm)
        for grade, mm in _predict(network, (volume[None] for volume in volumes), batch_size)
    ]


def predict_registration(
    network: MotionNet,
    pairs: Iterable[tuple[np.ndarray, np.ndarray]],
    *,
    batch_size: int = 8,
) -> list[RegistrationPrediction]:
    """Judge the alignment of each (moving, reference) pair of preprocessed volumes, as
    :func:`predict_motion` does for single volumes (the mirror flips both)."""
    return [
        RegistrationPrediction(grade, mm)
        for grade, mm in _predict(network, (np.stack(pair) for pair in pairs), batch_size)
    ]


def _predict(
    network: MotionNet, inputs: Iterable[np.ndarray], batch_size: int
) -> Iterable[tuple[tuple[float, ...], tuple[float, ...]]]:
    """Class and bin probabilities of each input (C, X, Y, Z), averaged over the input and its
    left-right mirror, computed ``batch_size`` inputs at a time on the network's device."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    device = next(network.parameters()).device
    network.eval()
    with torch.inference_mode():
        for batch in _batches(inputs, batch_size):
            stacked = torch.from_numpy(np.stack(batch).astype(np.float32, copy=False)).to(device)
            outputs = [network(stacked), network(stacked.flip(2))]
            grade = sum(out.grade_logits.softmax(dim=1) for out in outputs) / 2
            mm = sum(out.mm_log_probs.exp() for out in outputs) / 2
            for g, m in zip(grade.cpu(), mm.cpu(), strict=True):
                yield tuple(g.tolist()), tuple(m.tolist())


def _batches(volumes: Iterable[np.ndarray], size: int) -> Iterable[Sequence[np.ndarray]]:
    batch: list[np.ndarray] = []
    for volume in volumes:
        batch.append(volume)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
