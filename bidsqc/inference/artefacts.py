"""The artefact network's reading of one image, tile by tile."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import nibabel as nb
import numpy as np
import torch

from bidsqc.data import (
    head_box,
    head_box_brain_mask,
)
from bidsqc.inference.inputs import normalise_intensity
from bidsqc.inference.tiles import (
    MIN_BRAIN_FRACTION,
    TILE_SIZE,
    aggregate_tiles,
    overview,
    tile_fractions,
    tile_map,
    tile_origins,
    tiles_in_context,
)
from bidsqc.loading import load_anatomical
from bidsqc.networks import ARTEFACT_NAMES, ArtefactNet
from bidsqc.outputs.columns import ARTEFACT_PROBABILITY_COLUMNS
from bidsqc.preprocessing import resample_through_transform

__all__ = [
    "ArtefactPrediction",
    "TiledVolume",
    "artefact_input",
    "predict_artefacts",
    "predict_artefacts_of_volumes",
]


@dataclass(frozen=True)
class ArtefactPrediction:
    """What the artefact network says about one image, and about each of its tiles."""

    #: Probability of each artefact of :data:`bidsqc.networks.ARTEFACT_NAMES` in the image.
    probabilities: tuple[float, ...]
    #: The image's 0-10 quality score.
    quality_score: float
    #: Origins of the tiles on the 1 mm head box, shape (N, 3)
    #: (:func:`bidsqc.inference.tiles.tile_origins`).
    tile_origins: np.ndarray
    #: Each tile's artefact probabilities, shape (N, 5), and quality score, shape (N,).
    tile_probabilities: np.ndarray
    tile_quality: np.ndarray
    #: Each tile's say in the image's answer (:func:`bidsqc.inference.tiles.aggregate_tiles`), shape
    #: (N,).
    tile_weights: np.ndarray

    def columns(self) -> dict[str, float]:
        """The QC-table columns (:data:`bidsqc.outputs.columns.ARTEFACT_COLUMNS`)."""
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
        """Tile answers spread over the head box of ``shape``, shape (*shape, 7): each artefact's
        probability, then the quality score; NaN where no tile reaches (:func:`tile_map`).

        ``voxel_size`` is that of the box in mm (2 for the preproc grid): tile origins and
        edges are divided by it, rounded down.
        """
        values = np.column_stack([self.tile_probabilities, self.tile_quality])
        return tile_map(values, self.tile_origins // voxel_size, shape, TILE_SIZE // voxel_size)

    def probability_map(self) -> nb.Nifti1Image:
        """Each artefact's probability (:meth:`artefact_map`, without the quality score) on the
        2 mm head box of the preproc image: the ``desc-artefactmap`` derivative."""
        shape, affine = head_box(2)
        return nb.Nifti1Image(self.artefact_map(shape, voxel_size=2)[..., :-1], affine)


def artefact_input(source: str | os.PathLike, transform: str | os.PathLike) -> np.ndarray:
    """The artefact network's input: the checked source image resampled from its native grid
    onto the 1 mm head box through its template transform, scaled as the networks take it."""
    volume = resample_through_transform(load_anatomical(source), transform, resolution=1)
    return normalise_intensity(volume.dataobj)


def predict_artefacts(
    network: ArtefactNet, volume: np.ndarray, *, batch_size: int = 12
) -> ArtefactPrediction:
    """Detect artefacts in one volume on the 1 mm head box (:func:`load_preprocessed` of the
    ``res-1`` image), tile by tile.

    Tiles with less brain than :data:`bidsqc.inference.tiles.MIN_BRAIN_FRACTION` (the brain being
    the template brain mask inside the scan's field of view) are skipped, unless every tile is
    (:class:`TiledVolume`); the image's presence logits and quality are the brain-weighted means
    of the others' (:func:`bidsqc.inference.tiles.aggregate_tiles`). Unlike the whole-image
    networks, tiles are not mirrored: the mirror would double the cost for an answer already
    averaged over ~27 tiles."""
    (prediction,) = predict_artefacts_of_volumes(network, [volume], batch_size=batch_size)
    return prediction


def predict_artefacts_of_volumes(
    network: ArtefactNet, volumes: Iterable[np.ndarray | TiledVolume], *, batch_size: int = 12
) -> Iterator[ArtefactPrediction]:
    """:func:`predict_artefacts` of each volume, in order, the tiles of consecutive volumes
    sharing the network's batches (as many images as it takes to fill one on a GPU). A volume
    may come cut into its tiles already (:meth:`TiledVolume.of`, e.g. by reader threads)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    device = next(network.parameters()).device
    network.eval()
    waiting: deque[TiledVolume] = deque()
    queued: list[tuple[TiledVolume, np.ndarray]] = []  # tiles not yet through the network

    def run(tiles: list[tuple[TiledVolume, np.ndarray]]) -> None:
        with torch.inference_mode():
            output = network(torch.from_numpy(np.stack([tile for _, tile in tiles])).to(device))
        logits, quality = output.presence_logits.cpu().numpy(), output.quality.cpu().numpy()
        for (volume, _), tile_logits, tile_quality in zip(tiles, logits, quality, strict=True):
            volume.outputs.append(np.append(tile_logits, tile_quality))

    for volume in volumes:
        tiled = volume if isinstance(volume, TiledVolume) else TiledVolume.of(volume)
        waiting.append(tiled)
        queued += [(tiled, tile) for tile in tiled.tiles]
        while len(queued) >= batch_size:
            run(queued[:batch_size])
            del queued[:batch_size]
        while waiting and waiting[0].done:
            yield waiting.popleft().prediction()
    if queued:
        run(queued)
    while waiting:
        yield waiting.popleft().prediction()


@dataclass
class TiledVolume:
    """A volume on the 1 mm head box cut into the tiles that count, in context
    (:func:`bidsqc.inference.tiles.tiles_in_context`), and the network's answers for them as
    they come."""

    origins: np.ndarray
    #: Each tile's brain fraction: its say in the image's answer.
    weights: np.ndarray
    tiles: np.ndarray
    outputs: list[np.ndarray] = field(default_factory=list)

    @classmethod
    def of(cls, volume: np.ndarray) -> TiledVolume:
        """Tiles with less brain than :data:`bidsqc.inference.tiles.MIN_BRAIN_FRACTION` (the
        template brain inside the scan's field of view) are left out, unless every tile is."""
        if volume.shape != head_box(1)[0]:
            raise ValueError(
                f"expected a volume on the 1 mm head box {head_box(1)[0]}, got {volume.shape}"
            )
        origins = tile_origins(volume.shape)
        weights = tile_fractions(head_box_brain_mask(1) & (volume > 0), origins)
        keep = weights >= MIN_BRAIN_FRACTION
        if keep.any():
            origins, weights = origins[keep], weights[keep]
        return cls(origins, weights, tiles_in_context(volume, origins, overview(volume)))

    @property
    def done(self) -> bool:
        return len(self.outputs) == len(self.origins)

    def prediction(self) -> ArtefactPrediction:
        answers = np.stack(self.outputs)
        image = aggregate_tiles(answers, self.weights)
        return ArtefactPrediction(
            probabilities=tuple(float(p) for p in _sigmoid(image[:-1])),
            quality_score=float(image[-1]),
            tile_origins=self.origins,
            tile_probabilities=_sigmoid(answers[:, :-1]),
            tile_quality=answers[:, -1],
            tile_weights=self.weights,
        )


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-logits))
