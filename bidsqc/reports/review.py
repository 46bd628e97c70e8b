"""The review loop in the reports: what a rater can say about an image, with which keys, and
what the export holds.

The rating widget's keys and the export's columns are defined here once: the templates show
them, the page's script (``data/reports/review.js``) reads them from the page, and
``bidsqc-finetune`` reads exports with the same names.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path

from bidsqc.outputs.columns import (
    ARTEFACT_PROBABILITY_COLUMNS,
    MOTION_COLUMNS,
    REGISTRATION_COLUMNS,
)
from bidsqc.reports import format_value, is_finite

__all__ = [
    "ARTEFACT_TAGS",
    "EXPORT_COLUMNS",
    "NAVIGATION_KEYS",
    "RATINGS",
    "SEEN_OUTPUTS",
    "dataset_key",
    "review_keys",
    "seen_outputs",
    "uncertainty",
]

#: The ratings, from best to worst, each with its key.
RATINGS = {"1": "usable", "2": "questionable", "3": "unusable"}
#: The artefacts a rater can tag, each with its key.
ARTEFACT_TAGS = {
    "m": "motion",
    "g": "ghosting",
    "s": "spike",
    "i": "inhomogeneity",
    "n": "noise",
    "b": "blur",
    "w": "wrap-around",
    "r": "misregistration",
    "o": "other",
}
#: The other keys of a report (``key``: what it does; the script binds each by its key).
NAVIGATION_KEYS = {
    "j": "next image",
    "k": "previous image",
    "]": "next slice",
    "[": "previous slice",
    "v": "axial, coronal, sagittal",
    "a": "artefact map on or off",
    "c": "write a comment (Esc to leave it)",
    "0": "clear the rating",
    "e": "export the ratings (TSV)",
}
#: The columns of an exported ratings TSV, before the model outputs the rater saw.
EXPORT_COLUMNS = ("filename", "rating", "artefacts", "comment", "rater", "time")
#: The model outputs an export records beside each rating: what the rater saw.
SEEN_OUTPUTS = (
    "decision",
    *MOTION_COLUMNS,
    *(column for column in REGISTRATION_COLUMNS if not column.endswith("_mm")),
    *ARTEFACT_PROBABILITY_COLUMNS.values(),
    "quality_score",
)


def review_keys() -> dict:
    """The keys of the rating widget and of the page, for the templates and the script."""
    return {
        "ratings": RATINGS,
        "tags": ARTEFACT_TAGS,
        "navigation": NAVIGATION_KEYS,
        "columns": list(EXPORT_COLUMNS),
    }


def seen_outputs(row: Mapping) -> dict[str, str]:
    """The model outputs of a result row that the rater sees, as displayed."""
    return {column: format_value(row[column]) for column in SEEN_OUTPUTS if column in row}


def uncertainty(row: Mapping) -> float:
    """How unsure the networks are about an image, from 0 (all sure) to 1.

    For each probability a network gives (motion: ``1 - p_motion_none``; misregistration;
    each artefact), ``1 - |2p - 1|`` is 1 at p = 0.5 and 0 at p = 0 or 1; an image's
    uncertainty is the largest. Missing values count as sure.
    """
    probabilities = [
        1 - row["p_motion_none"] if "p_motion_none" in row else math.nan,
        *(row.get(column, math.nan) for column in ("p_misregistered", "p_misregistered_to_t1w")),
        *(row.get(column, math.nan) for column in ARTEFACT_PROBABILITY_COLUMNS.values()),
    ]
    values = [1 - abs(2 * float(p) - 1) for p in probabilities if is_finite(p)]
    return max(values, default=0.0)


def dataset_key(output_dir: str | os.PathLike) -> str:
    """What the browser keys an output directory's ratings by: the source dataset of its
    ``dataset_description.json`` (DOI, else location), so that every report of one dataset
    shares its ratings, and two datasets never mix theirs."""
    try:
        description = json.loads((Path(output_dir) / "dataset_description.json").read_text())
        source = description["SourceDatasets"][0]
        return str(source.get("DOI") or source["URL"])
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return Path(output_dir).absolute().as_uri()
