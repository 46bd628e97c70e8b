"""Training/validation splits at the subject level, so no subject is on both sides."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "PARTICIPANT_FOLDER",
    "subject_level_split",
    "subject_of",
]


def subject_of(image: str | os.PathLike) -> str:
    """The participant an image path belongs to, for splitting by subject.

    * a BIDS path: its folder up to the ``sub-<label>`` entity, e.g. ``ds/sub-01`` for
      ``ds/sub-01/ses-1/anat/sub-01_ses-1_T1w.nii.gz`` and for ``ds/sub-01_T1w.nii.gz``;
    * a folder named for a participant (``patient01``, ``subject_3``): that folder, so MSLUB's
      ``patient01/study1_T1W.nii.gz`` and ``patient01/study2_FLAIR.nii.gz`` go together;
    * otherwise its folder and the file name up to the first underscore, e.g.
      ``ixi/IXI516-HH-2297`` for ``ixi/IXI516-HH-2297_T1.nii.gz``.

    Examples:
        >>> subject_of("mslub/patient01/study2_FLAIR.nii.gz")
        'mslub/patient01'
        >>> subject_of("t1w/ds002748/sub-05_T1w.nii.gz")
        't1w/ds002748/sub-05'
    """
    path = Path(image)
    for depth, part in enumerate(path.parts):
        match = _BIDS_SUBJECT.match(part)
        if match:
            return str(Path(*path.parts[:depth], match.group(0)))
    if PARTICIPANT_FOLDER.fullmatch(path.parent.name):
        return str(path.parent)
    return str(path.parent / path.name.split("_")[0])


_BIDS_SUBJECT = re.compile(r"sub-[A-Za-z0-9]+")


#: A folder named for one participant: ``sub-01``, ``patient01``, ``subject_3``.
PARTICIPANT_FOLDER = re.compile(r"(sub|subj|subject|patient|participant)[-_]?\d+", re.IGNORECASE)


def subject_level_split(
    sources: Sequence[str], val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split sample indices into training and validation by subject.

    Samples are grouped by the subject of their source image (:func:`subject_of`). The
    subjects are shuffled with ``numpy.random.default_rng(seed)`` and
    ``round(val_fraction * n_subjects)`` of them (at least one, and at least one left for
    training) go to validation, with all of their samples.

    Returns
    -------
    train, val : numpy.ndarray of int
        Sorted sample indices.
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    subjects = [subject_of(source) for source in sources]
    unique = sorted(set(subjects))
    if len(unique) < 2:
        raise ValueError(f"need at least 2 distinct subjects to split, got {len(unique)}")
    n_val = min(max(round(val_fraction * len(unique)), 1), len(unique) - 1)
    val_subjects = set(np.random.default_rng(seed).permutation(unique)[:n_val].tolist())
    is_val = np.array([subject in val_subjects for subject in subjects])
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)
