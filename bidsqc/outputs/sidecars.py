"""The JSON sidecars of the image derivatives: what each volume is, and where it came from."""

from __future__ import annotations

import os
from pathlib import Path

from bidsqc.data import TEMPLATE_NAME
from bidsqc.discovery import AnatImage
from bidsqc.outputs.columns import ARTEFACT_PROBABILITY_COLUMNS

__all__ = ["artefact_map_sidecar", "preproc_sidecar", "sidecar_path"]


def sidecar_path(image_path: str | os.PathLike) -> Path:
    """The sidecar of a ``.nii.gz`` derivative: the same name, ``.json``."""
    return Path(str(image_path).removesuffix(".nii.gz") + ".json")


def _sources(image: AnatImage) -> list[str]:
    return [f"bids:raw:{image.relpath}"]


def preproc_sidecar(image: AnatImage) -> dict:
    """The sidecar of the image on the template's 2 mm head box."""
    return {
        "Sources": _sources(image),
        "SpatialReference": TEMPLATE_NAME,
        "Resolution": "2 mm isotropic, 96 x 112 x 96 head box",
        "SkullStripped": False,
    }


def artefact_map_sidecar(image: AnatImage) -> dict:
    """The sidecar of the artefact network's tile map."""
    return {
        "Sources": _sources(image),
        "SpatialReference": TEMPLATE_NAME,
        "Description": "Artefact probability of each 64 mm tile of the artefact network, "
        "spread over the voxels the tile covers (mean where tiles overlap, NaN where no "
        "tile holding brain reaches).",
        "Volumes": list(ARTEFACT_PROBABILITY_COLUMNS.values()),
    }
