"""The participant report: every image of one participant, its mosaics and its measures."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from bidsqc.decisions import DEFAULT_THRESHOLDS, Threshold, flagged_artefacts
from bidsqc.geometry import MOTION_GRADE_NAMES
from bidsqc.measures.catalogue import MeasureInfo
from bidsqc.outputs.columns import ARTEFACT_PROBABILITY_COLUMNS
from bidsqc.reports import (
    data_uri,
    describe,
    format_value,
    image_anchor,
    measure_columns,
    render_html,
)
from bidsqc.reports.review import review_keys, seen_outputs

__all__ = ["FIGURE_CAPTIONS", "render_subject_report"]

#: Captions of the known figures, in display order; other figures follow, under their name.
FIGURE_CAPTIONS = {
    "raw": "Raw image, reoriented to RAS at its native resolution. Look for motion ringing, "
    "ghosts, wrap-around, signal drop-out and missing coverage.",
    "registered": "Image registered to the MNI152NLin2009cSym template (2 mm). The red line is "
    "the template brain outline: it should hug the brain edge.",
    "motion": "The motion network's distribution over head motion (RMS displacement, mm), "
    "shaded by grade: none, mild, severe. A narrow peak is a confident estimate.",
    "artefacts": "The registered image with the artefact network's 64 mm tiles outlined where an "
    "artefact's probability crosses its review threshold (the title names them). Artefacts "
    "that span the whole image outline every tile; one tile alone points at a local problem.",
    "coregistration": "FLAIR co-registered to the T1w of its session, on the template grid. "
    "The red lines are the T1w's white-matter edges: they should follow the FLAIR's.",
}


def render_subject_report(
    participant_id: str,
    rows: list[dict],
    figures: Mapping[str, Mapping[str, Path]],
    measures: Mapping[str, MeasureInfo],
    out_file: Path,
    *,
    generated_by: str,
    dataset: str,
    volumes: Mapping[str, dict] | None = None,
    models: Mapping[str, list[dict]] | None = None,
    thresholds: Mapping[str, Threshold] = DEFAULT_THRESHOLDS,
) -> Path:
    """Write the HTML report of one participant, with a rating widget and a slice viewer for
    each image.

    Parameters
    ----------
    participant_id
        The participant, e.g. ``"sub-01"``.
    rows
        One result row per image (the columns of the group TSV).
    figures
        PNG figures of each image: ``figures[row["filename"]][name]``; figures that are not
        listed or whose file does not exist are left out.
    measures
        What each measure column means; other columns are shown under their own name.
    out_file
        Where to write the report.
    generated_by
        Name and version of the generating software, shown in the footer.
    dataset
        What the browser keys the ratings by (:func:`bidsqc.reports.review.dataset_key`).
    volumes
        The slice viewer's volumes of each image (:func:`bidsqc.reports.volumes.viewer_volumes`),
        by file name; an image without them has no viewer.
    models
        Which model made each network output of an image, by file name: ``output``,
        ``weights``, ``sha256``, ``fine_tuned`` (the method, or None) and ``card`` (a link,
        relative to ``out_file``).
    thresholds
        The decision's thresholds (``--thresholds``): the artefacts that cross theirs are named.

    Returns
    -------
    Path
        ``out_file``: a single HTML file with the figures embedded.
    """
    volumes, models = volumes or {}, models or {}
    images = [
        _image(row, figures.get(row["filename"], {}), measures, thresholds)
        | {"volumes": volumes.get(row["filename"]), "models": models.get(row["filename"], [])}
        for row in rows
    ]
    n_failed = sum(image["failed"] for image in images)
    return render_html(
        "subject.html",
        out_file,
        participant_id=participant_id,
        images=images,
        n_ok=len(images) - n_failed,
        n_failed=n_failed,
        generated_by=generated_by,
        dataset=dataset,
        review_keys=review_keys(),
    )


def _image(
    row: dict,
    figures: Mapping[str, Path],
    measures: Mapping[str, MeasureInfo],
    thresholds: Mapping[str, Threshold],
) -> dict:
    """Template context of one image."""
    names = [name for name in FIGURE_CAPTIONS if name in figures]
    names += [name for name in figures if name not in FIGURE_CAPTIONS]
    values = {key: format_value(row[key]) for key in measure_columns(row, measures)}
    if all(value == "n/a" for value in values.values()):
        values = {}  # e.g. a failed image: no table rather than a column of n/a
    return {
        "filename": row["filename"],
        "name": PurePosixPath(row["filename"]).name,
        "anchor": image_anchor(row["filename"]),
        "modality": format_value(row["modality"]),
        "session": format_value(row["session_id"]),
        "status": row["status"],
        "failed": row["status"] != "ok",
        "error": format_value(row["error"]),
        "decision": row["decision"],
        "reasons": format_value(row["reasons"]),
        "figures": [
            {
                "name": name,
                "caption": FIGURE_CAPTIONS.get(name, name),
                "src": data_uri(figures[name]),
            }
            for name in names
            if Path(figures[name]).is_file()
        ],
        "motion": _motion_summary(row),
        "registration": [
            summary
            for suffix, reference in (("", "template"), ("_to_t1w", "T1w"))
            if (summary := _registration_summary(row, suffix, reference))
        ],
        "artefacts": _artefact_summary(row, thresholds),
        "overlay": _most_probable_artefact(row),
        "outputs": seen_outputs(row),
        "measures": [
            {"key": key, "info": describe(key, measures), "value": value}
            for key, value in values.items()
        ],
    }


def _motion_summary(row: Mapping) -> dict | None:
    """Grade, its probability and the motion in mm, for the image's header; None if absent."""
    grade = row.get("motion_grade")
    if grade is None or not math.isfinite(grade):
        return None
    name = MOTION_GRADE_NAMES[int(grade)]
    return {
        "grade": name,
        "severity": int(grade),
        "probability": format_value(row[f"p_motion_{name}"]),
        "mm": format_value(row["motion_mm"]),
    }


def _registration_summary(row: Mapping, suffix: str, reference: str) -> dict | None:
    """Whether the registration-QC network finds the image aligned with ``reference``."""
    probability = row.get(f"p_misregistered{suffix}")
    if probability is None or not math.isfinite(probability):
        return None
    return {
        "reference": reference,
        "misregistered": probability >= 0.5,
        "probability": format_value(probability),
        "mm": format_value(row[f"registration_error{suffix}_mm"]),
    }


def _artefact_summary(row: Mapping, thresholds: Mapping[str, Threshold]) -> dict | None:
    """The quality score and the artefacts that cross their thresholds; None if absent."""
    quality = row.get("quality_score")
    if quality is None or not math.isfinite(quality):
        return None
    return {"quality": format_value(quality), "flagged": flagged_artefacts(row, thresholds)}


def _most_probable_artefact(row: Mapping) -> str | None:
    """The artefact column of the highest probability: what the viewer overlays first."""
    probabilities = {
        column: row[column]
        for column in ARTEFACT_PROBABILITY_COLUMNS.values()
        if isinstance(row.get(column), float) and math.isfinite(row[column])
    }
    return max(probabilities, key=probabilities.__getitem__, default=None)
