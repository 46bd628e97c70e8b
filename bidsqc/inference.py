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

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import nibabel as nb
import numpy as np
import torch

from bidsqc.data import (
    MODELS_DIR,
    card_thresholds,
    head_box,
    head_box_brain_mask,
    read_model_card,
)
from bidsqc.networks import ARTEFACT_NAMES, MOTION_BINS, ArtefactNet, EncoderNet, MotionNet
from bidsqc.outputs import ARTEFACT_PROBABILITY_COLUMNS
from bidsqc.tiles import (
    MIN_BRAIN_FRACTION,
    TILE_SIZE,
    aggregate_tiles,
    overview,
    tile_fractions,
    tile_map,
    tile_origins,
    tiles_in_context,
)
from bidsqc.training import load_model, normalise_intensity, resolve_device

__all__ = [
    "ARCHITECTURES",
    "ArtefactPrediction",
    "MotionPrediction",
    "RegistrationPrediction",
    "UNCALIBRATED_MOTION_THRESHOLD",
    "load_bundled_network",
    "load_network",
    "load_preprocessed",
    "predict_artefacts",
    "predict_motion",
    "predict_registration",
]


#: The probability of motion, ``1 - p_motion_none``, from which a network without a calibrated
#: threshold (``thresholds["p_motion"]``, see :class:`MotionPrediction`) calls an image moved.
UNCALIBRATED_MOTION_THRESHOLD = 0.5


def _expectation_mm(distribution: Sequence[float]) -> float:
    """Mean of a distribution over the bins of :data:`bidsqc.networks.MOTION_BINS`, in mm."""
    return float(np.dot(distribution, MOTION_BINS.centres().numpy()))


def _binned(distribution: Sequence[float]) -> dict[str, list[float]]:
    """A distribution over :data:`bidsqc.networks.MOTION_BINS` with its bin centres, for JSON."""
    return {
        "mm_bin_centres": [round(float(c), 4) for c in MOTION_BINS.centres()],
        "mm_distribution": list(distribution),
    }


#: The network classes a model card's ``architecture`` may name.
ARCHITECTURES: dict[str, type[EncoderNet]] = {cls.__name__: cls for cls in (MotionNet, ArtefactNet)}


def load_network(weights: str | os.PathLike, device: str | torch.device = "cpu") -> EncoderNet:
    """Trained weights (``.pt``), in eval mode on ``device``.

    The network's class and constructor arguments come from the model card beside the weights
    (same name, ``.json``), so the card and the weights cannot disagree; so do its calibrated
    decision thresholds (:attr:`bidsqc.networks.EncoderNet.thresholds`).
    """
    card = read_model_card(weights)
    architecture = card.get("architecture", MotionNet.__name__)
    if architecture not in ARCHITECTURES:
        raise ValueError(f"{weights}: unknown architecture {architecture!r}")
    network = load_model(weights, ARCHITECTURES[architecture], **card["hyperparameters"]["network"])
    network.thresholds = card_thresholds(card)
    return network.to(resolve_device(str(device)))


def load_bundled_network(name: str, device: str | torch.device = "cpu") -> EncoderNet:
    """The bundled network ``name`` (``"motion"``, ``"registration"`` or ``"artefact"``), in
    eval mode on ``device``."""
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
    #: The probability of motion (mild or severe) from which the image is moved, as calibrated
    #: for the network (its model card's ``calibration``, docs/training.md): the lowest that
    #: calls motion in at most 2 % of the unmoved samples of its validation images.
    #: Its grade "none" was trained on motion up to 4.5 mm too, so an unmoved scan gets
    #: ``p_motion_none`` of 0.74-1.00 from the bundled network, and moved ones often more than
    #: 0.5: the most probable grade would miss them.
    threshold: float = UNCALIBRATED_MOTION_THRESHOLD

    @property
    def grade(self) -> int:
        """0 none while the probability of motion (mild or severe) is below
        :attr:`threshold`; otherwise the more probable of 1 mild and 2 severe."""
        none, mild, severe = self.grade_probabilities
        if 1 - none < self.threshold:
            return 0
        return 1 if mild >= severe else 2

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


@dataclass(frozen=True)
class ArtefactPrediction:
    """What the artefact network says about one image, and about each of its tiles."""

    #: Probability of each artefact of :data:`bidsqc.networks.ARTEFACT_NAMES` in the image.
    probabilities: tuple[float, ...]
    #: The image's 0-10 quality score.
    quality_score: float
    #: Origins of the tiles on the 1 mm head box, shape (N, 3) (:func:`bidsqc.tiles.tile_origins`).
    tile_origins: np.ndarray
    #: Each tile's artefact probabilities, shape (N, 5), and quality score, shape (N,).
    tile_probabilities: np.ndarray
    tile_quality: np.ndarray
    #: Each tile's say in the image's answer (:func:`bidsqc.tiles.aggregate_tiles`), shape (N,).
    tile_weights: np.ndarray

    def columns(self) -> dict[str, float]:
        """The QC-table columns (:data:`bidsqc.outputs.ARTEFACT_COLUMNS`)."""
        named = zip(ARTEFACT_NAMES, self.probabilities, strict=True)
        return {ARTEFACT_PROBABILITY_COLUMNS[name]: float(p) for name, p in named} | {
            "quality_score": float(self.quality_score)
        }

    def to_dict(self) -> dict:
        """JSON-ready: the columns, plus every tile's origin, weight and answers."""
        return self.columns() | {
            "tiles": [
                {
                    "origin_voxel": [int(v) for v in origin],
                    "weight": round(float(weight), 4),
                    "quality_score": round(float(quality), 4),
                    **{
                        ARTEFACT_PROBABILITY_COLUMNS[name]: round(float(p), 4)
                        for name, p in zip(ARTEFACT_NAMES, probabilities, strict=True)
                    },
                }
                for origin, weight, quality, probabilities in zip(
                    self.tile_origins,
                    self.tile_weights,
                    self.tile_quality,
                    self.tile_probabilities,
                    strict=True,
                )
            ]
        }

    def artefact_map(self, shape: Sequence[int], voxel_size: int = 1) -> np.ndarray:
        """Tile answers spread over the head box of ``shape``, shape (*shape, 6): each artefact's
        probability, then the quality score; NaN where no tile reaches (:func:`tile_map`).

        ``voxel_size`` is that of the box in mm (2 for the preproc grid): tile origins and
        edges are divided by it, rounded down.
        """
        values = np.column_stack([self.tile_probabilities, self.tile_quality])
        return tile_map(values, self.tile_origins // voxel_size, shape, TILE_SIZE // voxel_size)


def predict_artefacts(
    network: ArtefactNet, volume: np.ndarray, *, batch_size: int = 12
) -> ArtefactPrediction:
    """Detect artefacts in one volume on the 1 mm head box (:func:`load_preprocessed` of the
    ``res-1`` image), tile by tile.

    Tiles with less brain than :data:`bidsqc.tiles.MIN_BRAIN_FRACTION` (the brain being the
    template brain mask inside the scan's field of view) are skipped, unless every tile is;
    the image's presence logits and quality are the brain-weighted means of the others'
    (:func:`bidsqc.tiles.aggregate_tiles`). Unlike the whole-image networks, tiles are not
    mirrored: the mirror would double the cost for an answer already averaged over ~27 tiles.
    """
    if volume.shape != head_box(1)[0]:
        raise ValueError(
            f"expected a volume on the 1 mm head box {head_box(1)[0]}, got {volume.shape}"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    origins = tile_origins(volume.shape)
    weights = tile_fractions(head_box_brain_mask(1) & (volume > 0), origins)
    keep = weights >= MIN_BRAIN_FRACTION
    if keep.any():
        origins, weights = origins[keep], weights[keep]
    device = next(network.parameters()).device
    network.eval()
    view = overview(volume)
    logits, quality = [], []
    with torch.inference_mode():
        for start in range(0, len(origins), batch_size):
            tiles = tiles_in_context(volume, origins[start : start + batch_size], view)
            output = network(torch.from_numpy(tiles).to(device))
            logits.append(output.presence_logits.cpu().numpy())
            quality.append(output.quality.cpu().numpy())
    tile_logits, tile_quality = np.concatenate(logits), np.concatenate(quality)
    image = aggregate_tiles(np.column_stack([tile_logits, tile_quality]), weights)
    return ArtefactPrediction(
        probabilities=tuple(float(p) for p in _sigmoid(image[:-1])),
        quality_score=float(image[-1]),
        tile_origins=origins,
        tile_probabilities=_sigmoid(tile_logits),
        tile_quality=tile_quality,
        tile_weights=weights,
    )


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-logits))


def predict_motion(
    network: MotionNet,
    volumes: Iterable[np.ndarray],
    *,
    batch_size: int = 8,
) -> list[MotionPrediction]:
    """Grade the motion of each volume (shape 96 x 112 x 96, from :func:`load_preprocessed`).

    Volumes go through the network ``batch_size`` at a time, on the network's device; each
    prediction averages the probabilities of the volume and of its left-right mirror. The grade
    uses the network's calibrated threshold, ``thresholds["p_motion"]``.
    """
    threshold = network.thresholds.get("p_motion", UNCALIBRATED_MOTION_THRESHOLD)
    return [
        MotionPrediction(grade, mm, threshold)
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
