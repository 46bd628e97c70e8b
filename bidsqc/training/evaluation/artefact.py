"""The artefact network on held-out images with one artefact at a time, at known severities."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from bidsqc.inference.artefacts import predict_artefacts
from bidsqc.networks import ARTEFACT_NAMES, ArtefactNet
from bidsqc.outputs.columns import ARTEFACT_PROBABILITY_COLUMNS
from bidsqc.training.evaluation.conditions import CLEAN, auc, generate_conditions
from bidsqc.training.metrics import r2_score, spearman
from bidsqc.training.samples import TemplateSpaceSampleWriter
from bidsqc.training.simulation import (
    ARTEFACTS,
    Artefact,
    BiasField,
    Blur,
    Ghosting,
    Noise,
    RandomArtefact,
    RandomBiasField,
    RandomCorruption,
    RandomMotionRms,
    Spike,
    quality_score,
)

__all__ = [
    "ARTEFACT_LEVELS",
    "ArtefactAtSeverity",
    "artefact_metrics_table",
    "artefact_summary",
    "generate_artefact_protocol_samples",
    "predict_artefact_samples",
]


#: Severity of each level of the artefact protocol
#: (:attr:`bidsqc.training.simulation.Artefact.severity`).
ARTEFACT_LEVELS: dict[str, float] = {"mild": 0.3, "moderate": 0.6}


class ArtefactAtSeverity(RandomArtefact):
    """One artefact of the artefact network at an exact severity, its other parameters random.

    Ghosting: 2 or 3 ghosts (as many as the severity allows) along a random axis. Spike: one,
    at a uniformly random k-space position. Bias: a random order-3 field, scaled to the
    strength. Motion: 2-8 poses of exactly that RMS (:class:`RandomMotionRms`). Blur and noise
    have no other parameter (the noise seed aside).
    """

    def __init__(self, name: str, severity: float) -> None:
        if name not in ARTEFACT_NAMES:
            raise ValueError(f"unknown artefact {name!r}; known: {ARTEFACT_NAMES}")
        if not 0 < severity <= 1:
            raise ValueError(f"severity must be in (0, 1], got {severity}")
        self.name = name
        self.strength = severity * ARTEFACTS[name].full_scale

    def sample(self, rng: np.random.Generator) -> Artefact:
        if self.name == "ghosting":
            counts = [n for n in (2, 3) if self.strength * n <= 1]
            count = int(rng.choice(counts))
            return Ghosting(count, int(rng.integers(3)), self.strength * count)
        if self.name == "spike":
            return Spike(positions=rng.random((1, 3)), intensity=self.strength)
        if self.name == "bias":
            field = RandomBiasField(coefficients=(1.0, 1.0)).sample(rng)
            scale = self.strength / field.strength
            return BiasField([c * scale for c in field.coefficients], field.order)
        if self.name == "blur":
            return Blur(fwhm=self.strength)
        if self.name == "motion":
            return RandomMotionRms(rms_mm=(self.strength, self.strength)).sample(rng)
        return Noise(std=self.strength, seed=int(rng.integers(2**32)))


def generate_artefact_protocol_samples(
    images: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    repeats: int,
    seed: int,
    n_jobs: int = 1,
) -> pd.DataFrame:
    """Write every image clean, and ``repeats`` times with each artefact at each level of
    :data:`ARTEFACT_LEVELS`, preprocessed as the pipeline does: each corrupted copy is
    registered itself (:class:`bidsqc.training.samples.TemplateSpaceSampleWriter` with
    ``register_copies``) and resampled from its native resolution onto the 1 mm head box.

    ``out_dir/<condition>/`` holds the samples of each condition (``clean``, ``noise-mild``...)
    as :func:`bidsqc.training.simulation.generate_corrupted_dataset` writes them, so a stopped run
    resumes. Returns their labels with the columns ``condition``, ``artefact``, ``level`` and
    ``path`` added.
    """
    levels = {CLEAN: (CLEAN, CLEAN)}
    conditions = {CLEAN: (RandomCorruption([]), 1)}
    for name in ARTEFACT_NAMES:
        for level, severity in ARTEFACT_LEVELS.items():
            levels[f"{name}-{level}"] = (name, level)
            artefact = ArtefactAtSeverity(name, severity)
            conditions[f"{name}-{level}"] = (RandomCorruption([artefact], 1.0), repeats)
    table = generate_conditions(
        images,
        out_dir,
        conditions,
        seed=seed,
        n_jobs=n_jobs,
        save_sample=TemplateSpaceSampleWriter(resolution=1, register_copies=True),
    )
    table["artefact"], table["level"] = zip(*table["condition"].map(levels), strict=True)
    return table


def predict_artefact_samples(network: ArtefactNet, table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with the artefact columns of each sample's prediction and its true
    ``quality_true`` (:func:`bidsqc.training.simulation.quality_score` of its severities)."""
    predictions = [
        predict_artefacts(network, np.load(path).astype(np.float32)).columns()
        for path in table["path"]
    ]
    severities = table[[f"severity_{name}" for name in ARTEFACTS]].to_numpy()
    quality = [quality_score(dict(zip(ARTEFACTS, row, strict=True))) for row in severities]
    return table.assign(quality_true=quality).join(pd.DataFrame(predictions, index=table.index))


def artefact_metrics_table(table: pd.DataFrame, thresholds: Mapping[str, float]) -> pd.DataFrame:
    """Per artefact and level: the AUC of its probability against the clean images and against
    the clean images and those with another artefact at the same level, and, at its review
    threshold in ``thresholds`` (column: probability), the sensitivity and the specificity on
    those two sets."""
    rows = []
    clean = table["condition"] == CLEAN
    for name, column in ARTEFACT_PROBABILITY_COLUMNS.items():
        for level in ARTEFACT_LEVELS:
            corrupted = (table["artefact"] == name) & (table["level"] == level)
            others = clean | ((table["level"] == level) & ~corrupted)
            scores = table[column]
            flagged = scores >= thresholds[column]
            rows.append(
                {
                    "artefact": name,
                    "level": level,
                    "n": int(corrupted.sum()),
                    "auc_vs_clean": auc(corrupted, clean, scores),
                    "auc_vs_clean_and_others": auc(corrupted, others, scores),
                    "sensitivity": float(flagged[corrupted].mean()),
                    "specificity_clean": float(1 - flagged[clean].mean()),
                    "specificity_others": float(1 - flagged[others].mean()),
                }
            )
    return pd.DataFrame(rows)


def artefact_summary(table: pd.DataFrame, thresholds: Mapping[str, float]) -> dict[str, float]:
    """R² and Spearman of ``quality_score`` over every sample, and the fraction of clean real
    scans flagged with any artefact at the review ``thresholds`` (column: probability)."""
    clean = table[table["condition"] == CLEAN]
    columns = list(ARTEFACT_PROBABILITY_COLUMNS.values())
    return {
        "quality_r2": r2_score(table["quality_true"], table["quality_score"]),
        "quality_spearman": spearman(table["quality_true"], table["quality_score"]),
        "clean_flagged_any": float(
            np.column_stack([clean[c] >= thresholds[c] for c in columns]).any(axis=1).mean()
        ),
        "clean_images": len(clean),
    }
