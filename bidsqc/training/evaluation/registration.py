"""The registration-QC network and the classical measures on pairs misaligned by known amounts."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from functools import cache

import numpy as np
import pandas as pd
import torch

from bidsqc.data import load_template
from bidsqc.inference.inputs import normalise_intensity
from bidsqc.inference.registration import predict_registration
from bidsqc.measures.alignment import mask_dice, mask_hd95_mm, nmi, rereg_mm
from bidsqc.measures.masks import estimate_brain_mask, nmi_region
from bidsqc.networks import MotionNet, RigidStep
from bidsqc.preprocessing import residual_misregistration
from bidsqc.training.evaluation.conditions import source_of
from bidsqc.training.metrics import roc_auc, spearman
from bidsqc.training.pairs import RandomMisalignment, misaligned, template_reference

__all__ = [
    "ALIGNED",
    "CLASSICAL_SCORES",
    "REGISTRATION_RANGES",
    "registration_metrics_table",
    "registration_protocol",
]


#: Misalignment ranges of the registration protocol: Jenkinson RMS in mm, by name.
REGISTRATION_RANGES: dict[str, tuple[float, float]] = {
    "0.5-2": (0.5, 2),
    "2-4": (2, 4),
    "4-8": (4, 8),
    "8-20": (8, 20),
}


#: Measures compared with the network, oriented so that higher means misregistered: the
#: foundation's classical ones and the network's own :class:`~bidsqc.networks.RigidStep`
#: reading at its coarser scale, alone.
CLASSICAL_SCORES = {
    "mask_dice": -1.0,
    "mask_hd95_mm": 1.0,
    "nmi": -1.0,
    "rereg_mm": 1.0,
    "rigid_step_mm": 1.0,
}


ALIGNED = "aligned"


@cache
def _rigid_step() -> RigidStep:
    return RigidStep.on_template_brain()


def _classical_measures(moving: np.ndarray, reference: np.ndarray, kind: str) -> dict:
    """The registration measures of ``moving``; only ``nmi`` (with ``reference``) and
    ``rigid_step_mm`` for a FLAIR/T1w pair, as the brain-mask measures compare with the
    template."""
    template = load_template(2)
    pair = torch.from_numpy(np.stack([moving, reference]).astype(np.float32))[None]
    values = {
        "nmi": nmi(moving, reference, nmi_region(template.brain_mask)),
        "rigid_step_mm": float(_rigid_step().readings(pair)[0, -1, 0]),
    }
    if kind == "template":
        brain = estimate_brain_mask(moving, template.brain_mask)
        values["mask_dice"] = mask_dice(brain, template.brain_mask)
        values["mask_hd95_mm"] = mask_hd95_mm(brain, template.brain_mask, template.zooms)
        values["rereg_mm"] = rereg_mm(residual_misregistration(moving, template=template), template)
    return values


def _protocol_samples(
    volumes: Sequence[tuple[str, str, str | os.PathLike, str | os.PathLike | None]],
    repeats: int,
    seed: int,
) -> Iterator[tuple[dict, np.ndarray, np.ndarray]]:
    """Each volume aligned, then misaligned ``repeats`` times per range: row, moving, reference."""
    for i, (kind, image, moving_path, reference_path) in enumerate(volumes):
        moving = normalise_intensity(np.load(moving_path))
        reference = (
            template_reference()
            if reference_path is None
            else normalise_intensity(np.load(reference_path))
        )
        yield {"kind": kind, "image": image, "condition": ALIGNED, "rms_mm": 0.0}, moving, reference
        for r, (name, span) in enumerate(REGISTRATION_RANGES.items()):
            for k in range(repeats):
                misalignment = RandomMisalignment(span, scaling=False).sample(
                    np.random.default_rng([seed, i, r, k])
                )
                row = {"kind": kind, "image": image, "condition": name}
                yield (
                    row | {"rms_mm": misalignment.rms_mm},
                    misaligned(moving, misalignment),
                    reference,
                )


def registration_protocol(
    network: MotionNet,
    volumes: Sequence[tuple[str, str, str | os.PathLike, str | os.PathLike | None]],
    *,
    repeats: int,
    seed: int,
    batch_size: int = 8,
) -> pd.DataFrame:
    """Predict and measure every aligned and misaligned sample of the registration protocol.

    ``volumes`` lists ``(kind, image, moving, reference)``: ``kind`` ``"template"`` (the
    reference is then the template, ``None``) or ``"coregistered"``, the source image's path,
    and the ``.npy`` volumes. Misalignments of volume ``i``, range ``r`` and repeat ``k`` are
    seeded by ``(seed, i, r, k)``. One row per sample: kind, image, condition, true RMS, the
    network's columns and the classical measures.
    """
    rows = []

    def pairs() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        # Measured one at a time and streamed to the network in batches: memory stays flat.
        for row, moving, reference in _protocol_samples(volumes, repeats, seed):
            rows.append(row | _classical_measures(moving, reference, row["kind"]))
            yield moving, reference

    predictions = predict_registration(network, pairs(), batch_size=batch_size)
    for row, prediction in zip(rows, predictions, strict=True):
        row |= prediction.columns()
    table = pd.DataFrame(rows)
    table.insert(1, "source", [source_of(image) for image in table["image"]])
    return table


def registration_metrics_table(table: pd.DataFrame) -> pd.DataFrame:
    """Per kind of pair, overall and per source: AUC of each score in each range against the
    aligned samples, the Spearman of each with the true RMS, and the aligned samples called
    misregistered (``p_misregistered`` >= 0.5)."""
    scores = {"network": ("p_misregistered", 1.0)} | {
        name: (name, sign) for name, sign in CLASSICAL_SCORES.items()
    }
    results = []
    for kind, of_kind in table.groupby("kind", sort=False):
        groups = [("all", of_kind), *of_kind.groupby("source")]
        for source, group in groups:
            aligned = group[group["condition"] == ALIGNED]
            for score, (column, sign) in scores.items():
                if column not in group or group[column].isna().all():
                    continue
                result = {"kind": kind, "source": source, "score": score, "images": len(aligned)}
                for name in REGISTRATION_RANGES:
                    moved = group[group["condition"] == name]
                    both = pd.concat([aligned, moved])
                    truth = both["condition"] == name
                    result[f"auc_{name}"] = roc_auc(truth, sign * both[column])
                estimate = (
                    group["registration_error_mm"] if score == "network" else sign * group[column]
                )
                result["spearman"] = spearman(group["rms_mm"], estimate)
                if score == "network":
                    result["aligned_flagged"] = float((aligned[column] >= 0.5).mean())
                results.append(result)
    return pd.DataFrame(results)
