"""What every protocol shares: the source of an image, and samples generated per condition."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import nibabel as nb
import numpy as np
import pandas as pd

from bidsqc.inference.motion import predict_motion
from bidsqc.networks import MotionNet
from bidsqc.training.metrics import roc_auc
from bidsqc.training.simulation import RandomCorruption, generate_corrupted_dataset
from bidsqc.training.splits import PARTICIPANT_FOLDER

__all__ = [
    "CLEAN",
    "auc",
    "generate_conditions",
    "predict_samples",
    "source_of",
]

LOGGER = logging.getLogger(__name__)


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


def generate_conditions(
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


def auc(positive: pd.Series, negative: pd.Series, scores: pd.Series) -> float:
    keep = positive | negative
    return roc_auc(positive[keep].to_numpy(), scores[keep].to_numpy())
