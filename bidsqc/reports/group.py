"""The group report of one modality: distributions of the measures, outliers, every image."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from urllib.parse import quote

import numpy as np
import pandas as pd
from pandas.api.types import is_bool_dtype, is_numeric_dtype

from bidsqc.decisions import DECISIONS
from bidsqc.measures.catalogue import MeasureInfo
from bidsqc.measures.robust import MAD_TO_SD, MEAN_AD_TO_SD, robust_zscores
from bidsqc.outputs.paths import row_figure_href
from bidsqc.reports import (
    describe,
    format_value,
    is_finite,
    measure_columns,
    render_html,
    subject_report_href,
)
from bidsqc.reports.figures import strip_layout
from bidsqc.reports.review import SEEN_OUTPUTS, review_keys, uncertainty

__all__ = ["MIN_IMAGES_TO_FLAG", "OUTLIER_Z", "protocols", "render_group_report"]

#: An image is flagged on a measure when its robust z-score exceeds this in magnitude.
OUTLIER_Z = 3.0
#: Fewer images than this give no reliable spread: nothing is flagged.
MIN_IMAGES_TO_FLAG = 5
#: "Needs a look" lists this many images at most; the review queue has them all.
ATTENTION_SHOWN = 100
#: Acquired voxel sizes are compared to this step (mm) when images are grouped by protocol.
VOXEL_STEP_MM = 0.25


def render_group_report(
    table: pd.DataFrame,
    modality: str,
    measures: Mapping[str, MeasureInfo],
    out_file: Path,
    *,
    generated_by: str,
    dataset: str,
    methods_href: str | None = None,
    models: Sequence[dict] = (),
) -> Path:
    """Write the HTML group report of one modality: its review queue, outliers and plots.

    Parameters
    ----------
    table
        The group TSV of the modality: one row per image, all participants.
    modality
        The modality, e.g. ``"T1w"``.
    measures
        What each measure column means; other columns are shown under their own name.
    out_file
        Where to write the report; subject reports are linked as siblings of it.
    generated_by
        Name and version of the generating software, shown in the footer.
    dataset
        What the browser keys the ratings by (:func:`bidsqc.reports.review.dataset_key`).
    methods_href
        Link, relative to ``out_file``, to the run's methods (``logs/CITATION.html``), if any.
    models
        The models behind the network columns: ``name``, ``href`` (their card, relative to
        ``out_file``), ``fine_tuned`` (the method, or None) and ``task``.

    Returns
    -------
    Path
        ``out_file``: a single HTML file with the plots inline.

    Notes
    -----
    The queue lists every image, "review first": failures, then the images to review, then
    the others, each group with the images the networks are least sure of first
    (:func:`bidsqc.reports.review.uncertainty`). It is a table built by the page's script from
    one JSON array, a page at a time, with each thumbnail loaded when its row shows.

    Each numeric column is plotted, and each of its values flagged when its robust z-score
    (:func:`robust_zscores`, over the images of the table) exceeds :data:`OUTLIER_Z`; a column
    with fewer than :data:`MIN_IMAGES_TO_FLAG` values flags nothing.
    """
    columns = measure_columns(table.columns, measures)
    infos = {column: describe(column, measures) for column in columns}
    values = {
        column: table[column].to_numpy(dtype=float, na_value=np.nan)
        for column in columns
        if is_numeric_dtype(table[column]) and not is_bool_dtype(table[column])
    }
    protocol = protocols(table)
    members = [np.flatnonzero(protocol == name) for name in protocol.unique()]
    scores = {
        column: _protocol_zscores(column_values, members)
        for column, column_values in values.items()
    }
    images = [
        _image(record, columns, {column: score[i] for column, score in scores.items()})
        for i, record in enumerate(table.to_dict("records"))
    ]
    queue = sorted(
        images, key=lambda image: (-DECISIONS.index(image["decision"]), -image["uncertainty"])
    )
    return render_html(
        "group.html",
        out_file,
        modality=modality,
        columns=columns,
        infos=infos,
        images=images,
        # Failures first, then the images to review, then the most extreme outliers.
        attention=sorted(
            (
                image
                for image in images
                if image["failed"] or image["flags"] or image["decision"] != "pass"
            ),
            key=lambda image: (
                -DECISIONS.index(image["decision"]),
                not image["failed"],
                -image["worst"],
            ),
        ),
        decisions={
            decision: sum(image["decision"] == decision for image in images)
            for decision in DECISIONS
        },
        # A column no image has (e.g. FLAIR-T1w columns of T1w images) gets no plot.
        plots=[
            _plot(column, infos[column], column_values, images)
            for column, column_values in values.items()
            if np.isfinite(column_values).any()
        ],
        attention_shown=ATTENTION_SHOWN,
        n_failed=sum(image["failed"] for image in images),
        n_flagged=sum(bool(image["flags"]) for image in images),
        outlier_z=OUTLIER_Z,
        # Processed images per protocol, the most common first.
        protocols=list(protocol[table["status"] == "ok"].value_counts().items()),
        mad_to_sd=MAD_TO_SD,
        mean_ad_to_sd=MEAN_AD_TO_SD,
        min_images=MIN_IMAGES_TO_FLAG,
        voxel_step=VOXEL_STEP_MM,
        generated_by=generated_by,
        methods_href=methods_href,
        models=models,
        dataset=dataset,
        review_keys=review_keys(),
        queue={
            # Where each model output a rater sees is among the cells (the decision aside).
            "seen": [[name, columns.index(name)] for name in SEEN_OUTPUTS if name in columns],
            "rows": [_queue_row(image, columns) for image in queue],
        },
    )


def protocols(table: pd.DataFrame) -> pd.Series:
    """Each image's protocol, as far as its row tells: where it comes from (``dataset``), the
    scanner its sidecar names (``scanner``), 2D or 3D (``acquisition``), and its acquired voxel
    size in plane and across slices, to the nearest :data:`VOXEL_STEP_MM`; a label per row,
    such as ``"raw, Siemens Prisma 3 T, 3D, 1 x 1.25 mm"``.

    A measure's level depends on the scanner and the protocol (``snr_wm_local`` ranges from 10
    to 45 over the clean real scans of docs/benchmarks.md), so an outlier among images of
    several protocols may only be another protocol. Images without sidecars share a label with
    every scanner of the same geometry. The ``acq-`` label is not used: datasets name
    conditions with it too (MR-ART's ``acq-standard`` and ``acq-headmotion1``), and moved scans
    are what must stand out from the still ones. Columns the table lacks (from an earlier
    version) leave their part out.
    """
    return pd.Series([_protocol(record) for record in table.to_dict("records")], table.index)


def _protocol(record: dict) -> str:
    parts = [format_value(record.get(column)) for column in ("dataset", "scanner", "acquisition")]
    in_plane, across = record.get("in_plane_mm"), record.get("slice_mm")
    if is_finite(in_plane) and is_finite(across):
        parts.append(f"{_voxel_step(in_plane)} x {_voxel_step(across)} mm")
    return ", ".join(part for part in parts if part != "n/a") or "n/a"


def _voxel_step(mm: float) -> str:
    return f"{round(float(mm) / VOXEL_STEP_MM) * VOXEL_STEP_MM:g}"


def _protocol_zscores(values: np.ndarray, members: list[np.ndarray]) -> np.ndarray:
    """Robust z-scores of ``values`` within each protocol (``members``: the rows of each); 0
    in a protocol with fewer than :data:`MIN_IMAGES_TO_FLAG` values, where none is flagged."""
    scores = np.zeros_like(values)
    for rows in members:
        if np.isfinite(values[rows]).sum() >= MIN_IMAGES_TO_FLAG:
            scores[rows] = robust_zscores(values[rows])
    return scores


def _image(record: dict, columns: list[str], scores: dict[str, float]) -> dict:
    """Template context of one image (a table row); ``scores`` has the numeric columns."""
    cells = {column: _cell(record[column], scores.get(column)) for column in columns}
    flags = {column: cell for column, cell in cells.items() if cell["flagged"]}
    return {
        "name": PurePosixPath(record["filename"]).name,
        "filename": record["filename"],
        "href": subject_report_href(record["participant_id"], record["filename"]),
        "status": record["status"],
        "failed": record["status"] != "ok",
        "error": format_value(record["error"]),
        "decision": record["decision"],
        "reasons": format_value(record["reasons"]),
        "cells": cells,
        "flags": flags,
        "worst": max((abs(cell["z"]) for cell in flags.values()), default=0.0),
        "thumbnail": quote(row_figure_href(record, "thumbnail")),
        "uncertainty": uncertainty(record),
    }


def _queue_row(image: dict, columns: list[str]) -> dict:
    """One image of the review queue, as the page's script reads it."""
    return {
        key: image[key]
        for key in (
            "name",
            "filename",
            "href",
            "thumbnail",
            "status",
            "failed",
            "error",
            "decision",
            "reasons",
        )
    } | {
        "uncertainty": round(float(image["uncertainty"]), 3),
        "flags": len(image["flags"]),
        # Per column: display text, sort key ("" when missing), flagged.
        "cells": [
            [cell["text"], cell["sort"], bool(cell["flagged"])]
            for cell in (image["cells"][column] for column in columns)
        ],
    }


def _cell(value: object, score: float | None) -> dict:
    """Template context of one cell; ``score`` is None in a non-numeric column."""
    text = format_value(value)
    numeric = score is not None
    return {
        "text": text,
        # What the table sorts on: numbers as numbers, missing values as blanks.
        "sort": "" if text == "n/a" else f"{float(value):.6g}" if numeric else text,
        "numeric": numeric,
        "z": score,
        "flagged": numeric and abs(score) > OUTLIER_Z,
    }


def _plot(column: str, info: MeasureInfo, values: np.ndarray, images: list[dict]) -> dict:
    """Template context of the strip plot of one numeric column: the dots as one SVG path
    (a zero-length segment each, drawn round), and the flagged ones as links to their image."""
    layout = strip_layout(values)
    dots, flagged = [], []
    for xy, image in zip(layout.points if layout else [], images, strict=False):
        if xy is None:
            continue
        cell = image["cells"][column]
        if not cell["flagged"]:
            dots.append(f"M{xy[0]:.1f} {xy[1]:.1f}h0")
            continue
        flagged.append(
            {
                "x": xy[0],
                "y": xy[1],
                "href": image["href"],
                "title": f"{image['name']}\n{cell['text']} {info.units}\nz = {cell['z']:+.1f}",
            }
        )
    return {
        "key": column,
        "info": info,
        "layout": layout,
        "dots": "".join(dots),
        "flagged": flagged,
        "n_points": len(dots) + len(flagged),
        "n_flagged": len(flagged),
    }
