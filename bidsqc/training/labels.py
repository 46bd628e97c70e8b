"""A site's own quality labels, in the three formats ``bidsqc-finetune`` reads.

- **bidsqc**: the ratings TSV that a report's export writes (``filename``, ``rating`` usable,
  questionable or unusable, ``artefacts`` comma-separated; :mod:`bidsqc.reports.review`).
- **MRIQC**: the JSON files of MRIQC's rating widget, one per image: ``rating`` 1 (exclude) to
  4 (excellent), ``artifacts`` a list (motion is ``head-motion``), and the image named by
  its BIDS entities (``subject``, ``session``, ``acq``, ``rec``, ``run``, ``modality``), or by
  ``bids_name``, or else by the JSON file's own name.
- **MR-ART**: ``derivatives/scores.tsv`` of OpenNeuro ds004173 (``bids_name``, ``score`` 1
  clean, 2 mild, 3 severe motion, as neuroradiologists scored it).

Every label becomes a rating (0 usable, 1 questionable, 2 unusable) and a motion grade (0 none,
1 mild, 2 severe), so that both tasks read every format.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bidsqc.reports.review import EXPORT_COLUMNS, RATINGS

__all__ = ["LABEL_FORMATS", "Label", "LabelError", "bids_stem", "read_labels"]

#: The formats, as ``bidsqc-finetune`` names them.
LABEL_FORMATS = ("bidsqc ratings TSV", "MRIQC rating-widget JSON", "MR-ART scores.tsv")
_RATING_NAMES = tuple(RATINGS.values())
#: MRIQC's rating, 1 exclude, 2 poor, 3 acceptable, 4 excellent, as a bidsqc rating.
_MRIQC_RATINGS = {1: 2, 2: 1, 3: 0, 4: 0}
_MRIQC_ENTITIES = ("session", "task", "acq", "rec", "run")
_MRIQC_KEYS = {"session": "ses", "task": "task", "acq": "acq", "rec": "rec", "run": "run"}
_NIFTI = re.compile(r"\.nii(\.gz)?$")


class LabelError(ValueError):
    """A labels file that bidsqc-finetune cannot read, with the reason."""


@dataclass(frozen=True)
class Label:
    """One image's label."""

    #: The BIDS file name of the image without extension, e.g. ``sub-01_run-1_T1w``.
    stem: str
    #: 0 usable, 1 questionable, 2 unusable.
    rating: int
    #: 0 none, 1 mild, 2 severe.
    motion: int
    #: Where the label was read.
    source: str

    @property
    def participant(self) -> str:
        return self.stem.split("_")[0]

    def target(self, task: str) -> int:
        """The class of the image for ``task``: ``"quality"`` (the rating) or ``"motion"``."""
        return {"quality": self.rating, "motion": self.motion}[task]


def read_labels(paths: Sequence[str | os.PathLike]) -> tuple[str, list[Label]]:
    """The labels in ``paths`` (all of one format), and that format's name.

    Raises :class:`LabelError` for an unknown format, a value out of range, or two labels of
    one image.
    """
    paths = [Path(path) for path in paths]
    if not paths:
        raise LabelError("no labels file given")
    if all(path.suffix == ".json" for path in paths):
        found, labels = LABEL_FORMATS[1], [_mriqc_label(path) for path in paths]
    else:
        formats, labels = set(), []
        for path in paths:
            name, read = _read_table(path)
            formats.add(name)
            labels += read
        if len(formats) > 1:
            raise LabelError(f"the labels files mix formats: {', '.join(sorted(formats))}")
        (found,) = formats
    repeated = [stem for stem, n in Counter(label.stem for label in labels).items() if n > 1]
    if repeated:
        raise LabelError(f"more than one label for {', '.join(sorted(repeated)[:5])}")
    return found, labels


def _read_table(path: Path) -> tuple[str, list[Label]]:
    try:
        table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    except (OSError, ValueError) as err:
        raise LabelError(f"{path}: not a readable TSV ({err})") from err
    if set(EXPORT_COLUMNS[:3]) <= set(table.columns):
        return LABEL_FORMATS[0], list(_export_labels(table, path))
    if {"bids_name", "score"} <= set(table.columns):
        return LABEL_FORMATS[2], list(_mrart_labels(table, path))
    raise LabelError(
        f"{path}: not a labels file: a bidsqc export has the columns "
        f"{', '.join(EXPORT_COLUMNS[:3])}; MR-ART's scores.tsv has bids_name and score"
    )


def _export_labels(table: pd.DataFrame, path: Path) -> Iterable[Label]:
    for line, row in enumerate(table.to_dict("records"), start=2):
        if not row["rating"]:
            continue  # tags or a comment without a rating: nothing to learn
        if row["rating"] not in _RATING_NAMES:
            raise LabelError(
                f"{path}:{line}: rating {row['rating']!r} is not one of {_RATING_NAMES}"
            )
        rating = _RATING_NAMES.index(row["rating"])
        moved = "motion" in (tag.strip() for tag in row["artefacts"].split(","))
        yield Label(
            bids_stem(row["filename"]), rating, max(rating, 1) if moved else 0, f"{path}:{line}"
        )


def _mrart_labels(table: pd.DataFrame, path: Path) -> Iterable[Label]:
    for line, row in enumerate(table.to_dict("records"), start=2):
        if row["score"] not in ("1", "2", "3"):
            raise LabelError(f"{path}:{line}: score {row['score']!r} is not 1, 2 or 3")
        grade = int(row["score"]) - 1
        yield Label(bids_stem(row["bids_name"]), grade, grade, f"{path}:{line}")


def _mriqc_label(path: Path) -> Label:
    try:
        record = json.loads(path.read_text())
        rating = _MRIQC_RATINGS[round(float(record["rating"]))]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise LabelError(f"{path}: not an MRIQC rating (a 'rating' of 1 to 4): {err}") from err
    artefacts = [str(artefact) for artefact in record.get("artifacts") or []]
    moved = any("motion" in artefact for artefact in artefacts)
    return Label(_mriqc_stem(record, path), rating, max(rating, 1) if moved else 0, str(path))


def _mriqc_stem(record: dict, path: Path) -> str:
    if record.get("bids_name"):
        return bids_stem(record["bids_name"])
    if record.get("subject") and record.get("modality"):
        subject = str(record["subject"]).removeprefix("sub-")
        parts = [f"sub-{subject}"]
        for entity in _MRIQC_ENTITIES:
            value = str(record.get(entity) or "").removeprefix(f"{_MRIQC_KEYS[entity]}-")
            if value:
                parts.append(f"{_MRIQC_KEYS[entity]}-{value}")
        return "_".join([*parts, str(record["modality"])])
    return bids_stem(path.name.removesuffix(".json"))


def bids_stem(name: str) -> str:
    """The BIDS stem of a file name or path: no folder, no NIfTI extension."""
    return _NIFTI.sub("", Path(name).name)
