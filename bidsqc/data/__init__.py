"""Package data: the bundled template, report templates and network weights.

Everything bidsqc needs at run time ships inside the package; nothing is downloaded.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path

import nibabel as nb
import numpy as np

__all__ = [
    "DATA_DIR",
    "HEAD_BOX_SHAPE",
    "MODELS_DIR",
    "NETWORKS",
    "SITE_NETWORKS",
    "TEMPLATE_DIR",
    "TEMPLATE_NAME",
    "Template",
    "bundled_thresholds",
    "card_thresholds",
    "head_box",
    "head_box_brain_mask",
    "load_template",
    "model_provenance",
    "network_weights",
    "on_head_box",
    "read_model_card",
    "template_path",
]

DATA_DIR = Path(__file__).parent
TEMPLATE_NAME = "MNI152NLin2009cSym"
TEMPLATE_DIR = DATA_DIR / f"tpl-{TEMPLATE_NAME}"
#: Voxels of the 2 mm template-space box (192 x 224 x 192 mm) that holds an adult head.
HEAD_BOX_SHAPE = (96, 112, 96)
#: The bundled network weights, ``<name>.pt``, each with its model card ``<name>.json``.
MODELS_DIR = DATA_DIR / "models"


#: The networks of a participant run, each ``<name>.pt`` in :data:`MODELS_DIR` or a models dir.
NETWORKS = ("motion", "registration", "artefact")
#: The networks that only a models dir can hold (``bidsqc-finetune --task quality``).
SITE_NETWORKS = ("quality",)


def network_weights(name: str, models_dir: str | os.PathLike | None = None) -> Path:
    """The weights of network ``name``: ``models_dir/<name>.pt`` (``bidsqc-finetune``'s output)
    when ``models_dir`` has them, else the bundled ones."""
    if models_dir is not None and (Path(models_dir) / f"{name}.pt").is_file():
        return Path(models_dir) / f"{name}.pt"
    return MODELS_DIR / f"{name}.pt"


def read_model_card(weights: str | os.PathLike) -> dict:
    """The model card of ``weights``: the JSON file beside it, of the same name."""
    return json.loads(Path(weights).with_suffix(".json").read_text())


def model_provenance(weights: str | os.PathLike) -> dict:
    """Which model a prediction comes from: its weights, their SHA-256 (from its card), and
    whether and how it was fine-tuned (``bidsqc-finetune``: ``method``, else None)."""
    card = read_model_card(weights)
    return {
        "weights": str(Path(weights).absolute()),
        "sha256": card["weights"]["sha256"],
        "fine_tuned": card.get("method"),
    }


def card_thresholds(card: Mapping) -> dict[str, float]:
    """The decision thresholds calibrated for a network, from its model card (``calibration``,
    written by :func:`bidsqc.training.cards.record_calibration`); empty if it was not calibrated."""
    return dict(card.get("calibration", {}).get("thresholds", {}))


def bundled_thresholds(name: str) -> dict[str, float]:
    """The decision thresholds calibrated for the bundled network ``name``."""
    return card_thresholds(read_model_card(MODELS_DIR / f"{name}.pt"))


def template_path(resolution: int, key: str) -> Path:
    """Path of one bundled template file, e.g. ``template_path(2, "desc-brain_mask")``."""
    path = TEMPLATE_DIR / f"tpl-{TEMPLATE_NAME}_res-{resolution}_{key}.nii.gz"
    if not path.is_file():
        raise FileNotFoundError(f"bundled template file is missing: {path}")
    return path


@dataclass(frozen=True)
class Template:
    """The template at one resolution, as arrays on one grid."""

    resolution: int
    affine: np.ndarray
    t1w: np.ndarray
    brain_mask: np.ndarray
    gm: np.ndarray
    wm: np.ndarray
    csf: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.t1w.shape

    @property
    def zooms(self) -> tuple[float, float, float]:
        return tuple(float(z) for z in np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0)))

    @cached_property
    def brain_centre(self) -> tuple[float, float, float]:
        """Centroid of the brain mask in world mm (RAS): the centre of Jenkinson's sphere."""
        index = np.argwhere(self.brain_mask).mean(axis=0)
        return tuple(float(x) for x in self.affine[:3, :3] @ index + self.affine[:3, 3])

    @cached_property
    def sure_tissues(self) -> tuple[np.ndarray, np.ndarray]:
        """The brain voxels whose tissue the template is sure of (probability over 0.7), and
        that tissue for each of them: 0 CSF, 1 grey matter, 2 white matter."""
        probabilities = np.stack([self.csf, self.gm, self.wm])
        sure = self.brain_mask & (probabilities.max(axis=0) > 0.7)
        tissue = probabilities.argmax(axis=0)[sure]
        for array in (sure, tissue):
            array.setflags(write=False)
        return sure, tissue


@cache
def load_template(resolution: int = 2) -> Template:
    """Load the bundled template (cached: every caller shares one read-only copy)."""
    t1w_img = nb.load(template_path(resolution, "T1w"))

    def read(key: str) -> np.ndarray:
        data = nb.load(template_path(resolution, key)).get_fdata(dtype=np.float32)
        data.setflags(write=False)
        return data

    mask = read("desc-brain_mask") > 0
    mask.setflags(write=False)
    return Template(
        resolution=resolution,
        affine=t1w_img.affine,
        t1w=read("T1w"),
        brain_mask=mask,
        gm=read("label-GM_probseg"),
        wm=read("label-WM_probseg"),
        csf=read("label-CSF_probseg"),
    )


def head_box(resolution: int) -> tuple[tuple[int, int, int], np.ndarray]:
    """Shape and affine of the head box at ``resolution`` mm (1 or 2).

    The box covers the same 192 x 224 x 192 mm at every resolution, so each 2 mm voxel of the
    template grid holds exactly 2 x 2 x 2 voxels of the 1 mm box.
    """
    if resolution not in (1, 2):
        raise ValueError(f"the head box has 1 mm and 2 mm grids, not {resolution} mm")
    factor = 2 // resolution
    affine = load_template(2).affine.copy()
    affine[:3, :3] /= factor
    # The corner of the box stays put: the first voxel centre moves by half the new voxel size.
    affine[:3, 3] += (resolution - 2) / 2
    shape = tuple(n * factor for n in HEAD_BOX_SHAPE)
    return shape, affine


def on_head_box(volume: np.ndarray, resolution: int) -> np.ndarray:
    """A volume of the 2 mm template grid on :func:`head_box` at ``resolution`` mm: each 2 mm
    voxel repeated over the finer voxels it holds."""
    for axis in range(3):
        volume = np.repeat(volume, 2 // resolution, axis=axis)
    return volume


@cache
def head_box_brain_mask(resolution: int) -> np.ndarray:
    """The template brain mask on :func:`head_box` at ``resolution`` mm (read-only)."""
    mask = on_head_box(load_template(2).brain_mask, resolution)
    mask.setflags(write=False)
    return mask
