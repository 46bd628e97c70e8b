"""The networks over many images at once, in this process, in batches.

The graph's network nodes each read one image. On a GPU that leaves the device idle: a 2 mm
volume is a small batch, and every node loads the networks again. So with ``--device cuda``
the graph preprocesses and measures, and then each network reads all the images of the run
here, a batch at a time, while a pool of threads reads the next ones (and, for the artefact
network, resamples them and cuts them into tiles). ``--inference-only`` runs the same pass with
the networks of ``--models-dir`` on the images an earlier run left in the output directory.

The inputs are those of the nodes: the preprocessed image in the output directory, and for the
artefact network the source image resampled onto the 1 mm head box through the template
transform in the output directory. The outputs are the nodes' files, at the same paths: each
network's JSON with the model that made it, the motion figure, and the artefact map, its
sidecar and its figure.
"""

from __future__ import annotations

import json
import logging
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import nibabel as nb
import numpy as np

from bidsqc.data import template_path
from bidsqc.discovery import AnatImage
from bidsqc.inference.artefacts import (
    TiledVolume,
    artefact_input,
    predict_artefacts_of_volumes,
)
from bidsqc.inference.inputs import load_preprocessed
from bidsqc.inference.models import load_network, write_prediction
from bidsqc.inference.motion import predict_motion
from bidsqc.inference.registration import predict_registration
from bidsqc.inference.site_quality import predict_site_quality
from bidsqc.outputs.files import atomic_path, write_text_atomically
from bidsqc.outputs.paths import (
    artefact_map_path,
    artefacts_path,
    figure_path,
    motion_path,
    preproc_path,
    registration_path,
    site_quality_path,
    transform_path,
)
from bidsqc.outputs.sidecars import artefact_map_sidecar, sidecar_path
from bidsqc.preprocessing import reorient_to_ras
from bidsqc.reports.figures import flagged_tiles, plot_mosaic, plot_motion_prediction

__all__ = ["BATCHED_NETWORKS", "run_networks"]

LOGGER = logging.getLogger("bidsqc")

#: The networks this pass runs, by the name of their weights.
BATCHED_NETWORKS = ("motion", "registration", "artefact", "quality")

T = TypeVar("T")
R = TypeVar("R")


def run_networks(
    output_dir: str | os.PathLike,
    images: Sequence[AnatImage],
    weights: Mapping[str, str | os.PathLike],
    *,
    device: str = "cpu",
    batch_size: int = 8,
    readers: int = 4,
) -> None:
    """Run each network of ``weights`` (weights by name, of :data:`BATCHED_NETWORKS`) on every
    image of ``images``, whose preprocessed image and transform are in ``output_dir``, and write
    its outputs there.

    ``readers`` threads read and prepare the inputs ahead of the network.
    """
    output_dir = Path(output_dir)
    for name, path in weights.items():
        network = load_network(path, device)
        _RUNS[name](network, Path(path), output_dir, images, batch_size, readers)
        LOGGER.info("Ran %s on %d images.", path, len(images))


def _run_motion(network, weights, output_dir, images, batch_size, readers) -> None:
    volumes = _read_ahead(lambda image: _preprocessed(output_dir, image), images, readers)
    predictions = predict_motion(network, volumes, batch_size=batch_size)
    for image, prediction in zip(images, predictions, strict=True):
        result = prediction.to_dict()
        write_prediction(motion_path(output_dir, image), result, weights)
        with atomic_path(figure_path(output_dir, image, "motion")) as figure:
            plot_motion_prediction(result, figure)


def _run_registration(network, weights, output_dir, images, batch_size, readers) -> None:
    template = load_preprocessed(template_path(2, "T1w"))
    volumes = _read_ahead(lambda image: _preprocessed(output_dir, image), images, readers)
    pairs = ((volume, template) for volume in volumes)
    predictions = predict_registration(network, pairs, batch_size=batch_size)
    for image, prediction in zip(images, predictions, strict=True):
        write_prediction(registration_path(output_dir, image), prediction.to_dict(), weights)


def _run_site_quality(network, weights, output_dir, images, batch_size, readers) -> None:
    volumes = _read_ahead(lambda image: _preprocessed(output_dir, image), images, readers)
    predictions = predict_site_quality(network, volumes, batch_size=batch_size)
    for image, prediction in zip(images, predictions, strict=True):
        write_prediction(site_quality_path(output_dir, image), prediction.columns(), weights)


def _run_artefacts(network, weights, output_dir, images, batch_size, readers) -> None:
    def tiled(image: AnatImage) -> TiledVolume:
        return TiledVolume.of(artefact_input(image.path, transform_path(output_dir, image)))

    volumes = _read_ahead(tiled, images, readers)
    predictions = predict_artefacts_of_volumes(network, volumes, batch_size=4 * batch_size)
    for image, prediction in zip(images, predictions, strict=True):
        write_prediction(artefacts_path(output_dir, image), prediction.to_dict(), weights)
        artefact_map = prediction.probability_map()
        destination = artefact_map_path(output_dir, image)
        with atomic_path(destination) as temporary:
            nb.save(artefact_map, temporary)
        sidecar = json.dumps(artefact_map_sidecar(image), indent=2) + "\n"
        write_text_atomically(sidecar_path(destination), sidecar)
        outline, title = flagged_tiles(artefact_map)
        registered = reorient_to_ras(nb.load(preproc_path(output_dir, image)))
        with atomic_path(figure_path(output_dir, image, "artefacts")) as figure:
            plot_mosaic(registered, figure, outline=outline, title=title)


_RUNS: dict[str, Callable] = {
    "motion": _run_motion,
    "registration": _run_registration,
    "artefact": _run_artefacts,
    "quality": _run_site_quality,
}


def _preprocessed(output_dir: Path, image: AnatImage) -> np.ndarray:
    return load_preprocessed(preproc_path(output_dir, image))


def _read_ahead(read: Callable[[T], R], items: Iterable[T], readers: int) -> Iterator[R]:
    """``read`` of each item, in order, computed by ``readers`` threads at most ``2 * readers``
    items ahead of the consumer (reading NIfTI and resampling release the GIL)."""
    with ThreadPoolExecutor(max_workers=readers) as pool:
        ahead: deque[Future[R]] = deque()
        for item in items:
            ahead.append(pool.submit(read, item))
            if len(ahead) > 2 * readers:
                yield ahead.popleft().result()
        while ahead:
            yield ahead.popleft().result()
