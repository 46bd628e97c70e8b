"""One decision per image: pass, review or fail, with the reasons.

Every QC column can carry two thresholds: crossing ``review`` sends the image to a person,
crossing ``fail`` excludes it. Which way is worse comes from the column's description
(:attr:`bidsqc.measures.catalogue.MeasureInfo.better`): for a column where lower is better, a value
at or above a threshold crosses it; where higher is better, a value at or below. A missing value
(``n/a``) crosses nothing. An image that could not be processed fails.

The defaults, :data:`DEFAULT_THRESHOLDS`, use the networks, and of the classical measures only
``rereg_mm``, a distance in mm: the others have no threshold that holds across scanners and
protocols (their outliers are flagged in the group report instead). ``--thresholds FILE.json``
replaces them, e.g.::

    {"motion_grade": {"review": 1, "fail": 2},
     "p_misregistered": {"review": 0.9},
     "cjv": {"review": 0.6}}
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bidsqc.data import bundled_thresholds
from bidsqc.geometry import MISREGISTRATION_THRESHOLD_MM
from bidsqc.measures.catalogue import MeasureInfo
from bidsqc.outputs.columns import ARTEFACT_COLUMNS, ARTEFACT_PROBABILITY_COLUMNS

__all__ = [
    "ARTEFACT_REVIEW_THRESHOLDS",
    "DECISIONS",
    "DEFAULT_THRESHOLDS",
    "Threshold",
    "decide",
    "flagged_artefacts",
    "load_thresholds",
]

#: The decisions, from best to worst.
DECISIONS = ("pass", "review", "fail")


@dataclass(frozen=True)
class Threshold:
    """The values of one column at which an image goes to review, and fails (None: never)."""

    review: float | None = None
    fail: float | None = None

    def level(self, value: float | None, better: str) -> int:
        """0 (pass), 1 (review) or 2 (fail) for ``value`` of a column where ``better`` is
        ``"lower"`` or ``"higher"``; a missing value (None, NaN) crosses nothing."""
        if value is None or not math.isfinite(value):
            return 0
        sign = 1 if better == "lower" else -1
        for level, threshold in ((2, self.fail), (1, self.review)):
            if threshold is not None and sign * value >= sign * threshold:
                return level
        return 0


#: Review thresholds of the artefact probabilities, calibrated for the bundled network and kept
#: in its model card (docs/training.md): for each artefact, the lowest that flags at most 2 % of
#: the network's own validation samples without it (subjects of the ``train`` split it did not
#: train on), so that about 10 % of clean scans at most get flagged with any. The image's
#: probability averages its tiles' logits, which pulls it towards the tiles' prior, so most of
#: these cuts lie below 0.5.
ARTEFACT_REVIEW_THRESHOLDS = bundled_thresholds("artefact")
#: Default thresholds: motion grade mild or severe, registrations that a new registration moves
#: by 2 mm RMS or more (the network's own line between aligned and misregistered) or that the
#: network is nearly sure of (review only: a failed registration is bidsqc's failure, not the
#: scan's; docs/outputs.md gives the figures behind it), likely artefacts (review only: most can be
#: corrected, or only matter to some analyses), and a quality score below 6 (an artefact of
#: severity 0.67, or two milder ones) or 3 (one severe artefact and more), and a site-quality
#: network's rating questionable or unusable, where there is one.
DEFAULT_THRESHOLDS: dict[str, Threshold] = {
    "motion_grade": Threshold(review=1, fail=2),
    "p_misregistered": Threshold(review=0.9),
    "p_misregistered_to_t1w": Threshold(review=0.5),
    "rereg_mm": Threshold(review=MISREGISTRATION_THRESHOLD_MM),
    **{column: Threshold(review=value) for column, value in ARTEFACT_REVIEW_THRESHOLDS.items()},
    "quality_score": Threshold(review=6, fail=3),
    "site_rating": Threshold(review=1, fail=2),
}


def load_thresholds(
    path: str | os.PathLike, columns: Mapping[str, MeasureInfo]
) -> dict[str, Threshold]:
    """Read a thresholds file (format in the module docstring); ``ValueError`` when it names a
    column that is not in ``columns`` or that has no better direction, or is malformed."""
    path = Path(path)
    try:
        content = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(content, dict):
        raise ValueError(f"{path} must hold an object of columns")
    thresholds = {}
    for column, values in content.items():
        if column not in columns or columns[column].better not in ("lower", "higher"):
            usable = sorted(name for name, info in columns.items() if info.better)
            raise ValueError(f"{path}: no thresholds for {column!r}; use one of {usable}")
        if not isinstance(values, dict) or not set(values) <= {"review", "fail"}:
            raise ValueError(f"{path}: {column!r} must be an object with 'review' and/or 'fail'")
        if not all(
            value is None or (isinstance(value, (int, float)) and math.isfinite(value))
            for value in values.values()
        ):
            raise ValueError(f"{path}: the thresholds of {column!r} must be numbers or null")
        thresholds[column] = Threshold(values.get("review"), values.get("fail"))
    return thresholds


def decide(
    row: Mapping, thresholds: Mapping[str, Threshold], columns: Mapping[str, MeasureInfo]
) -> dict[str, str]:
    """The ``decision`` and ``reasons`` columns of one QC-table row.

    ``reasons`` lists each crossed threshold, worst first, e.g.
    ``"fail: motion_grade 2 >= 2; review: p_misregistered 0.61 >= 0.5"``, or is ``n/a``.
    """
    if row.get("status") != "ok":
        return {"decision": "fail", "reasons": "fail: not processed"}
    crossed = []
    not_assessed = row.get("not_assessed")
    if isinstance(not_assessed, str) and not_assessed not in ("", "n/a"):  # n/a reads as NaN
        crossed.append((1, f"review: not assessed ({not_assessed})"))
    for column, threshold in thresholds.items():
        value = row.get(column)
        better = columns[column].better
        level = threshold.level(value, better)
        if level:
            limit = threshold.fail if level == 2 else threshold.review
            sign = ">=" if better == "lower" else "<="
            crossed.append((level, f"{DECISIONS[level]}: {column} {value:.4g} {sign} {limit:g}"))
    crossed.sort(key=lambda item: -item[0])
    return {
        "decision": DECISIONS[max((level for level, _ in crossed), default=0)],
        "reasons": "; ".join(reason for _, reason in crossed) or "n/a",
    }


def flagged_artefacts(
    probabilities: Mapping[str, float], thresholds: Mapping[str, Threshold] = DEFAULT_THRESHOLDS
) -> list[str]:
    """The artefacts, in column order and without ``p_``, whose probability in
    ``probabilities`` (by column) crosses its threshold in ``thresholds``: those for which the
    decision sends an image to review."""
    return [
        column.removeprefix("p_")
        for column in ARTEFACT_PROBABILITY_COLUMNS.values()
        if column in thresholds
        and thresholds[column].level(probabilities.get(column), ARTEFACT_COLUMNS[column].better)
    ]
