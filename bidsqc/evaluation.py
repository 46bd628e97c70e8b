"""Evaluate the networks on real images they never saw.

Motion network, two protocols:

* **Simulated motion on held-out images** (Loizillon et al. 2023, Table 2). Each image is kept
  clean once and moved ``repeats`` times in each of the ranges (2-4), (4-6) and (6-8), every
  rotation (degrees) and translation (mm) drawn in the range as TorchIO's ``RandomMotion``
  draws them. Samples are simulated at native resolution and preprocessed as the pipeline
  does (:func:`bidsqc.training_data.save_template_space_sample`). For each range, the decision
  "motion" (grade above 0) separates the moved images from the clean ones: balanced accuracy,
  sensitivity, specificity. ``motion_mm`` is compared with the simulated RMS (R², Spearman)
  over every sample, clean ones included, and the clean images called "severe" are counted.
* **Rated real motion** (MR-ART, Nárai et al. 2022): a BIDS folder and a ``scores.tsv``
  (columns ``bids_name`` and ``score``: 1 clean, 2 medium, 3 bad). The decision "motion"
  against score > 1, "severe" against score 3, and the Spearman of ``motion_mm`` and the score.

Registration-QC network (:func:`registration_protocol`): every held-out image, preprocessed,
against the template, and every real FLAIR/T1w pair co-registered by the pipeline, each exactly
as the pipeline leaves it ("aligned") and misaligned ``repeats`` times by rigid transforms in
each range of :data:`REGISTRATION_RANGES` (Jenkinson RMS, mm). For each range, the AUC of
``p_misregistered`` against the aligned samples, and the Spearman of ``registration_error_mm``
with the true RMS; the classical measures (``mask_dice``, ``mask_hd95_mm``, ``nmi`` and, for
template pairs, ``rereg_mm``) get the same AUCs and Spearman, on the same samples.

Artefact network (:func:`generate_artefact_protocol_samples`): every held-out image clean, and
with each artefact of :data:`bidsqc.networks.ARTEFACT_NAMES` alone at each severity of
:data:`ARTEFACT_LEVELS` (mild 0.3, moderate 0.6), simulated at native resolution and
preprocessed as the pipeline does. Per artefact and level, the AUC of its probability against
the clean images, and against the clean images and the other artefacts (the pairwise check of
the issue), with sensitivity and specificity at the network's calibrated review thresholds
(:func:`calibrate_network`), and the R² of ``quality_score`` and the fraction of clean scans
flagged with any artefact.

Results are given overall and per source, the folder of the image (MSLUB's participant
folders are skipped, so its sources are its cohorts).
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from functools import cache
from pathlib import Path

import nibabel as nb
import numpy as np
import pandas as pd
import torch
from numpy.typing import ArrayLike

from bidsqc.data import load_template
from bidsqc.inference import predict_artefacts, predict_motion, predict_registration
from bidsqc.loading import load_anatomical
from bidsqc.metrics import (
    estimate_brain_mask,
    mask_dice,
    mask_hd95_mm,
    nmi,
    nmi_region,
    rereg_mm,
)
from bidsqc.networks import ARTEFACT_NAMES, ArtefactNet, MotionNet, RigidStep
from bidsqc.outputs import ARTEFACT_PROBABILITY_COLUMNS
from bidsqc.preprocessing import residual_misregistration
from bidsqc.registration_pairs import RandomMisalignment, misaligned, template_reference
from bidsqc.simulation import (
    ARTEFACTS,
    LABELS_TABLE,
    Artefact,
    BiasField,
    Blur,
    Ghosting,
    Noise,
    RandomArtefact,
    RandomBiasField,
    RandomCorruption,
    RandomMotion,
    Spike,
    generate_corrupted_dataset,
    quality_score,
)
from bidsqc.training import (
    PARTICIPANT_FOLDER,
    balanced_accuracy,
    normalise_intensity,
    r2_score,
    record_calibration,
    roc_auc,
    sensitivity,
    spearman,
    specificity,
)
from bidsqc.training_data import (
    ArtefactSampleWriter,
    save_template_space_sample,
    to_template_space,
)

__all__ = [
    "ARTEFACT_LEVELS",
    "ArtefactAtSeverity",
    "artefact_metrics_table",
    "artefact_summary",
    "generate_artefact_protocol_samples",
    "predict_artefact_samples",
    "predict_motion_samples",
    "calibrate_network",
    "calibrated_thresholds",
    "calibrated_motion_threshold",
    "training_validation_samples",
    "MOTION_RANGES",
    "REGISTRATION_RANGES",
    "registration_metrics_table",
    "registration_protocol",
    "generate_protocol_samples",
    "motion_protocol_metrics",
    "predict_samples",
    "predict_rated_images",
    "rated_motion_metrics",
    "read_scores",
    "source_of",
]

LOGGER = logging.getLogger(__name__)

#: The motion ranges of Loizillon et al. (2023), degrees and mm, by name.
MOTION_RANGES: dict[str, tuple[float, float]] = {"2-4": (2, 4), "4-6": (4, 6), "6-8": (6, 8)}
#: Name of the clean condition.
CLEAN = "clean"


def source_of(image: str | os.PathLike) -> str:
    """The source an image comes from: its folder's name, one up for a participant folder.

    Examples:
        >>> source_of("/data/t1w/ixi/IXI516-HH-2297_T1.nii.gz")
        'ixi'
        >>> source_of("/data/mslub/longitudinal_raw/patient19/study1_FLAIR.nii.gz")
        'longitudinal_raw'
    """
    folder = Path(image).parent
    while PARTICIPANT_FOLDER.fullmatch(folder.name) or folder.name == "anat":
        folder = folder.parent
    return folder.name


def generate_protocol_samples(
    images: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    repeats: int,
    seed: int,
    n_jobs: int = 1,
) -> pd.DataFrame:
    """Write the clean and moved samples of every image; return their labels, one row each.

    ``out_dir/<condition>/`` holds the samples of each condition (``clean``, ``2-4``, ``4-6``,
    ``6-8``), as :func:`bidsqc.simulation.generate_corrupted_dataset` writes them, so a stopped
    run resumes. The table adds the columns ``condition`` and ``path`` (of the ``.npy``).
    """
    conditions = {CLEAN: (RandomCorruption([]), 1)} | {
        name: (RandomCorruption([RandomMotion(span, span)], probabilities=1.0), repeats)
        for name, span in MOTION_RANGES.items()
    }
    return _generate_conditions(
        images,
        out_dir,
        conditions,
        seed=seed,
        n_jobs=n_jobs,
        save_sample=save_template_space_sample,
    )


def _generate_conditions(
    images: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    conditions: Mapping[str, tuple[RandomCorruption, int]],
    *,
    seed: int,
    n_jobs: int,
    save_sample: Callable[[nb.Nifti1Image, Path, nb.Nifti1Image], str | None],
) -> pd.DataFrame:
    """Write ``n_per_image`` samples of every image per condition ``name: (corruption,
    n_per_image)`` into ``out_dir/<name>/``; return their labels, with ``condition`` and
    ``path`` (of the saved sample) added."""
    tables = []
    for name, (corruption, n_per_image) in conditions.items():
        LOGGER.info("Generating the %s samples.", name)
        labels = generate_corrupted_dataset(
            images,
            Path(out_dir) / name,
            n_per_image=n_per_image,
            seed=seed,
            corruption=corruption,
            n_jobs=n_jobs,
            save_sample=save_sample,
        )
        table = pd.read_csv(labels, sep="\t")
        table["condition"] = name
        table["path"] = [str(labels.parent / filename) for filename in table["filename"]]
        tables.append(table)
    return pd.concat(tables, ignore_index=True)


def predict_samples(
    network: MotionNet, paths: Sequence[str | os.PathLike], batch_size: int = 8
) -> pd.DataFrame:
    """The motion columns of each pre-generated sample (``.npy``), one row per path."""
    volumes = (np.load(path).astype(np.float32) for path in paths)
    predictions = predict_motion(network, volumes, batch_size=batch_size)
    return pd.DataFrame([prediction.columns() for prediction in predictions])


def predict_motion_samples(
    network: MotionNet, table: pd.DataFrame, batch_size: int = 8
) -> pd.DataFrame:
    """``table`` (samples with a ``path`` and their true ``motion_grade``) with the motion
    columns of each sample's prediction, the predicted grade as ``motion_grade_predicted``."""
    predicted = predict_samples(network, table["path"], batch_size)
    predicted.index = table.index
    grade = predicted.pop("motion_grade")
    return table.assign(motion_grade_predicted=grade).join(predicted)


def motion_protocol_metrics(table: pd.DataFrame) -> pd.DataFrame:
    """Table-2 metrics of predicted samples, overall and per source.

    ``table`` needs ``condition``, ``base_image``, ``motion_rms_mm``, ``motion_grade_predicted``
    and ``motion_mm``. One row per source (``all`` first) and range: the counts, balanced
    accuracy, sensitivity and specificity of "grade > 0"; then, per source, a row ``all``
    with R² and Spearman of ``motion_mm`` against the simulated RMS and the fraction of clean
    images called severe.
    """
    table = table.assign(source=[source_of(path) for path in table["base_image"]])
    groups = [("all", table), *table.groupby("source", sort=True)]
    rows = []
    for source, group in groups:
        clean = group[group["condition"] == CLEAN]
        for name in MOTION_RANGES:
            moved = group[group["condition"] == name]
            truth = np.r_[np.zeros(len(clean), bool), np.ones(len(moved), bool)]
            called = np.r_[clean["motion_grade_predicted"], moved["motion_grade_predicted"]] > 0
            rows.append(
                {
                    "source": source,
                    "range": name,
                    "n_clean": len(clean),
                    "n_moved": len(moved),
                    "balanced_accuracy": balanced_accuracy(truth, called),
                    "sensitivity": sensitivity(truth, called),
                    "specificity": specificity(truth, called),
                }
            )
        rows.append(
            {
                "source": source,
                "range": "all",
                "n_clean": len(clean),
                "n_moved": int((group["condition"] != CLEAN).sum()),
                "mm_r2": r2_score(group["motion_rms_mm"], group["motion_mm"]),
                "mm_spearman": spearman(group["motion_rms_mm"], group["motion_mm"]),
                "clean_called_severe": float((clean["motion_grade_predicted"] == 2).mean()),
            }
        )
    return pd.DataFrame(rows)


def read_scores(scores: str | os.PathLike) -> dict[str, int]:
    """An MR-ART-style ``scores.tsv``: ``bids_name`` (image name without extension) to score."""
    with open(scores, newline="") as stream:
        reader = csv.DictReader(stream, delimiter="\t")
        if not {"bids_name", "score"} <= set(reader.fieldnames or ()):
            raise ValueError(f"{scores} needs the columns bids_name and score")
        return {row["bids_name"]: int(row["score"]) for row in reader}


def predict_rated_images(
    network: MotionNet, bids_dir: str | os.PathLike, scores: Mapping[str, int]
) -> pd.DataFrame:
    """Preprocess and grade every rated image found under ``bids_dir``.

    One row per image: ``bids_name``, ``score``, ``path`` and the motion columns. Rated names
    without an image are logged and left out; an image that cannot be preprocessed too.
    """
    found = {
        path.name.removesuffix(".gz").removesuffix(".nii"): path
        for path in Path(bids_dir).rglob("*.nii*")
        if "derivatives" not in path.parts
    }
    missing = sorted(set(scores) - set(found))
    if missing:
        LOGGER.warning(
            "%d rated image(s) not found under %s, e.g. %s", len(missing), bids_dir, missing[0]
        )
    rows = []
    for name in sorted(set(scores) & set(found)):
        try:
            volume = to_template_space(load_anatomical(found[name]))
        except (OSError, ValueError) as err:
            LOGGER.warning("Skipping %s: %s", name, err)
            continue
        (prediction,) = predict_motion(network, [normalise_intensity(volume)])
        rows.append(
            {"bids_name": name, "score": scores[name], "path": str(found[name])}
            | prediction.columns()
        )
    return pd.DataFrame(rows)


def rated_motion_metrics(table: pd.DataFrame) -> dict[str, float]:
    """BA of "motion" against score > 1 and of "severe" against score 3; Spearman of mm."""
    motion = table["score"] > 1
    severe = table["score"] == 3
    return {
        "n_images": len(table),
        "motion_ba": balanced_accuracy(motion, table["motion_grade"] > 0),
        "motion_sensitivity": sensitivity(motion, table["motion_grade"] > 0),
        "motion_specificity": specificity(motion, table["motion_grade"] > 0),
        "severe_ba": balanced_accuracy(severe, table["motion_grade"] == 2),
        "mm_spearman": spearman(table["score"], table["motion_mm"]),
    }


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
        values["rereg_mm"] = rereg_mm(residual_misregistration(moving, template), template)
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


# --- artefact network -------------------------------------------------------------------------

#: Severity of each level of the artefact protocol (:attr:`bidsqc.simulation.Artefact.severity`).
ARTEFACT_LEVELS: dict[str, float] = {"mild": 0.3, "moderate": 0.6}


class ArtefactAtSeverity(RandomArtefact):
    """One artefact of the artefact network at an exact severity, its other parameters random.

    Ghosting: 2 or 3 ghosts (as many as the severity allows) along a random axis. Spike: one,
    at a uniformly random k-space position. Bias: a random order-3 field, scaled to the
    strength. Blur and noise have no other parameter (the noise seed aside).
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
    registered itself (:class:`bidsqc.training_data.ArtefactSampleWriter` with
    ``register_copies``) and resampled from its native resolution onto the 1 mm head box.

    ``out_dir/<condition>/`` holds the samples of each condition (``clean``, ``noise-mild``...)
    as :func:`bidsqc.simulation.generate_corrupted_dataset` writes them, so a stopped run
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
    table = _generate_conditions(
        images,
        out_dir,
        conditions,
        seed=seed,
        n_jobs=n_jobs,
        save_sample=ArtefactSampleWriter(register_copies=True),
    )
    table["artefact"], table["level"] = zip(*table["condition"].map(levels), strict=True)
    return table


def predict_artefact_samples(network: ArtefactNet, table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with the artefact columns of each sample's prediction and its true
    ``quality_true`` (:func:`bidsqc.simulation.quality_score` of its severities)."""
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
                    "auc_vs_clean": _auc(corrupted, clean, scores),
                    "auc_vs_clean_and_others": _auc(corrupted, others, scores),
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


def _auc(positive: pd.Series, negative: pd.Series, scores: pd.Series) -> float:
    keep = positive | negative
    return roc_auc(positive[keep].to_numpy(), scores[keep].to_numpy())


def training_validation_samples(
    samples: str | os.PathLike, base_images: Collection[str]
) -> pd.DataFrame:
    """The labels of the samples in ``samples`` (a ``bidsqc-train`` samples folder) made from
    ``base_images`` (the validation images of the run's model card), with their ``path``."""
    samples = Path(samples)
    table = pd.read_csv(samples / LABELS_TABLE, sep="\t")
    table = table[table["base_image"].isin(set(base_images))].reset_index(drop=True)
    if table.empty:
        raise ValueError(f"no sample of the given base images in {samples / LABELS_TABLE}")
    table["path"] = [str(samples / filename) for filename in table["filename"]]
    return table


#: Share of the samples without an artefact that its calibrated threshold may flag: 2 % for
#: each of the five, so that at most about 10 % of clean scans are flagged with any.
FALSE_POSITIVE_BUDGET = 0.02


def calibrated_thresholds(
    table: pd.DataFrame, false_positive_budget: float = FALSE_POSITIVE_BUDGET
) -> dict[str, float]:
    """For each artefact, the lowest probability threshold that flags at most
    ``false_positive_budget`` of the samples without it (``severity_<artefact>`` = 0) in
    ``table``, the artefact samples of :func:`training_validation_samples` with their
    predictions (:func:`predict_artefact_samples`): the most sensitive threshold within a fixed
    budget of false alarms."""
    thresholds = {}
    for name, column in ARTEFACT_PROBABILITY_COLUMNS.items():
        absent = (table[f"severity_{name}"] == 0).to_numpy()
        if not absent.any():
            raise ValueError(f"every sample has {name}: no threshold")
        thresholds[column] = _lowest_threshold(table.loc[absent, column], false_positive_budget)
    return thresholds


def calibrated_motion_threshold(
    table: pd.DataFrame, false_positive_budget: float = FALSE_POSITIVE_BUDGET
) -> float:
    """The lowest threshold of the probability of motion, ``1 - p_motion_none``, that calls
    motion in at most ``false_positive_budget`` of the unmoved samples (``motion_rms_mm`` = 0)
    of ``table``, the motion samples of :func:`training_validation_samples` with their
    predictions (:func:`predict_motion_samples`)."""
    unmoved = (table["motion_rms_mm"] == 0).to_numpy()
    if not unmoved.any():
        raise ValueError("every sample is moved: no threshold")
    return _lowest_threshold(1 - table.loc[unmoved, "p_motion_none"], false_positive_budget)


def calibrate_network(
    network: MotionNet | ArtefactNet,
    samples: pd.DataFrame,
    weights: str | os.PathLike,
    batch_size: int = 8,
) -> pd.DataFrame:
    """Set the decision thresholds of a motion or artefact network on ``samples``, those of its
    own validation images (:func:`training_validation_samples`), record them in the model card
    of its ``weights`` (:func:`bidsqc.training.record_calibration`) and give them to ``network``.

    The card's ``calibration`` holds the ``thresholds`` (:func:`calibrated_thresholds` of the
    artefact probabilities, or ``p_motion``, the :func:`calibrated_motion_threshold`), the
    ``false_positive_budget`` and the number of ``samples``. Returns the samples with their
    predictions.
    """
    if isinstance(network, ArtefactNet):
        table = predict_artefact_samples(network, samples)
        thresholds = calibrated_thresholds(table)
    else:
        table = predict_motion_samples(network, samples, batch_size)
        thresholds = {"p_motion": calibrated_motion_threshold(table)}
    calibration = {
        "thresholds": thresholds,
        "false_positive_budget": FALSE_POSITIVE_BUDGET,
        "samples": len(table),
    }
    record_calibration(weights, calibration)
    network.thresholds = thresholds
    return table


def _lowest_threshold(negatives: ArrayLike, false_positive_budget: float) -> float:
    """The lowest threshold, on a 1e-4 grid, that at most ``false_positive_budget`` of the
    scores of ``negatives`` reach."""
    negatives = np.sort(np.asarray(negatives, dtype=float))
    allowed = int(np.floor(false_positive_budget * len(negatives)))
    # Just above the (allowed + 1)-th highest score of a negative.
    highest_kept = negatives[len(negatives) - 1 - allowed]
    return float(np.ceil(highest_kept * 1e4 + 1e-6)) / 1e4
