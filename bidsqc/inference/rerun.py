"""Running the networks of a models dir (``bidsqc-finetune``'s output) on the preprocessed
images an earlier run left in the output directory: what ``--inference-only`` does.

Nothing is preprocessed or measured again, and nipype is not involved: the images go through
each network in batches, in this process, and each network's derivatives (its JSON, and the
motion figure) are written over the earlier ones, under the same names. The artefact network
reads the image resampled to 1 mm from the raw data, which the output directory does not keep,
so it cannot be rerun this way; nor can the FLAIR-T1w co-registration check, whose co-registered
FLAIR lives in the work directory.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from bidsqc.data import template_path
from bidsqc.discovery import RAW_DATASET, AnatImage
from bidsqc.inference.inputs import load_preprocessed
from bidsqc.inference.models import load_network, write_prediction
from bidsqc.inference.motion import predict_motion
from bidsqc.inference.registration import predict_registration
from bidsqc.inference.site_quality import predict_site_quality
from bidsqc.outputs.paths import (
    figure_path,
    motion_path,
    preproc_path,
    registration_path,
    site_quality_path,
)
from bidsqc.reports.figures import plot_motion_prediction

__all__ = ["RERUN_NETWORKS", "rerun_networks"]

LOGGER = logging.getLogger("bidsqc")

#: The networks ``--inference-only`` runs again.
RERUN_NETWORKS = ("motion", "registration", "quality")


def rerun_networks(
    output_dir: str | os.PathLike,
    images: Sequence[AnatImage],
    *,
    models_dir: str | os.PathLike,
    device: str = "cpu",
    batch_size: int = 8,
) -> list[AnatImage]:
    """Run each network of ``models_dir`` (of :data:`RERUN_NETWORKS`) on every raw image of
    ``images`` whose preprocessed image is in ``output_dir``, and write its derivatives.

    Returns the images that were run; the others (never processed, failed, or from a
    derivatives dataset) keep their earlier results.
    """
    output_dir, models_dir = Path(output_dir), Path(models_dir)
    done = [
        image
        for image in images
        if image.dataset == RAW_DATASET and preproc_path(output_dir, image).exists()
    ]
    for image in images:
        if image not in done:
            LOGGER.info(
                "%s: no preprocessed image in the output directory, so not rerun.", image.relpath
            )
    for name in RERUN_NETWORKS:
        weights = models_dir / f"{name}.pt"
        if weights.is_file():
            network = load_network(weights, device)
            _RUNS[name](network, weights, output_dir, done, batch_size)
            LOGGER.info("Ran %s on %d images.", weights, len(done))
    return done


def _run_motion(network, weights: Path, output_dir: Path, images, batch_size: int) -> None:
    predictions = predict_motion(network, _volumes(output_dir, images), batch_size=batch_size)
    for image, prediction in zip(images, predictions, strict=True):
        result = prediction.to_dict()
        write_prediction(motion_path(output_dir, image), result, weights)
        plot_motion_prediction(result, figure_path(output_dir, image, "motion"))


def _run_registration(network, weights: Path, output_dir: Path, images, batch_size: int) -> None:
    template = load_preprocessed(template_path(2, "T1w"))
    pairs = ((volume, template) for volume in _volumes(output_dir, images))
    predictions = predict_registration(network, pairs, batch_size=batch_size)
    for image, prediction in zip(images, predictions, strict=True):
        write_prediction(registration_path(output_dir, image), prediction.to_dict(), weights)


def _run_site_quality(network, weights: Path, output_dir: Path, images, batch_size: int) -> None:
    volumes = _volumes(output_dir, images)
    predictions = predict_site_quality(network, volumes, batch_size=batch_size)
    for image, prediction in zip(images, predictions, strict=True):
        write_prediction(site_quality_path(output_dir, image), prediction.columns(), weights)


_RUNS = {
    "motion": _run_motion,
    "registration": _run_registration,
    "quality": _run_site_quality,
}


def _volumes(output_dir: Path, images: Sequence[AnatImage]) -> Iterator[np.ndarray]:
    """The preprocessed images, read one at a time as the networks take them."""
    return (load_preprocessed(preproc_path(output_dir, image)) for image in images)
