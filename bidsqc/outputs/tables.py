"""The participant and group QC tables, as TSV with their JSON sidecars."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from bidsqc.decisions import DEFAULT_THRESHOLDS, Threshold, decide
from bidsqc.discovery import RAW_DATASET, AnatImage
from bidsqc.loading import acquisition_geometry
from bidsqc.outputs.columns import ID_COLUMNS, QC_COLUMNS, column_dictionary
from bidsqc.outputs.files import atomic_path, write_text_atomically
from bidsqc.validity import assessed, not_assessed

__all__ = [
    "NA",
    "qc_row",
    "read_qc_table",
    "write_group_decisions",
    "write_qc_table",
]


#: How BIDS tables spell a missing value.
NA = "n/a"


def qc_row(
    image: AnatImage,
    measures: Mapping[str, float] | None,
    error: str | None,
    thresholds: Mapping[str, Threshold] = DEFAULT_THRESHOLDS,
    geometry: Mapping[str, float | str] | None = None,
) -> dict:
    """One row of a QC table: identifiers, status, decision, the acquisition geometry, then
    every column of :data:`QC_COLUMNS` (NaN when failed, or when not valid for the geometry
    and the brain coverage: :func:`bidsqc.validity.assessed`).

    ``geometry`` is the one the image's check read from its voxels (the ``desc-geometry``
    derivative); without it, the header's and the sidecar's.
    """
    geometry = geometry or acquisition_geometry(image.path, image.sidecar)
    acquisition = {**geometry, "brain_coverage": (measures or {}).get("brain_coverage", math.nan)}
    reason = not_assessed(acquisition)
    row = {
        "filename": image.relpath,
        "participant_id": f"sub-{image.subject}",
        "session_id": f"ses-{image.session}" if image.session else NA,
        "modality": image.modality,
        "status": "failed" if error else "ok",
        "error": error or NA,
        "dataset": image.dataset,
        "decision": "",
        "reasons": "",
        **geometry,
        "not_assessed": reason or NA,
    }
    row.update(
        {
            name: (measures or {}).get(name, math.nan) if assessed(name, acquisition) else math.nan
            for name in QC_COLUMNS
        }
    )
    return row | decide(row, thresholds, QC_COLUMNS)


def write_qc_table(
    rows: list[dict], path: str | os.PathLike, columns: Sequence[str] | None = None
) -> Path:
    """Write a QC table as TSV (``n/a`` for missing values) with its JSON dictionary beside it.

    ``columns`` gives the columns and their order (by default those of the first row), so that
    a table without rows still has its header.
    """
    path = Path(path)
    if columns is None:
        columns = list(rows[0]) if rows else list(ID_COLUMNS)
    table = pd.DataFrame(rows, columns=list(columns))
    with atomic_path(path) as temporary:
        table.to_csv(temporary, sep="\t", index=False, na_rep=NA, float_format="%.6g")
    dictionary = column_dictionary(table.columns)
    write_text_atomically(path.with_suffix(".json"), json.dumps(dictionary, indent=2) + "\n")
    return path


def write_group_decisions(table: pd.DataFrame, out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Write what a downstream pipeline needs from the group's decisions.

    ``group_exclude.tsv``: the images that fail, with their reasons (and its dictionary).
    ``group_pass_participants.txt``: the labels (without ``sub-``) of the participants none of
    whose raw images fails, one per line, ready for ``--participant-label $(cat …)``.
    Returns both paths.
    """
    out_dir = Path(out_dir)
    columns = ["filename", "participant_id", "session_id", "modality", "dataset", "reasons"]
    failing = table[table["decision"] == "fail"]
    exclude = write_qc_table(
        failing[columns].to_dict("records"), out_dir / "group_exclude.tsv", columns
    )
    raw = table[table["dataset"] == RAW_DATASET]
    excluded = set(raw.loc[raw["decision"] == "fail", "participant_id"])
    passing = sorted(set(raw["participant_id"]) - excluded)
    labels = out_dir / "group_pass_participants.txt"
    write_text_atomically(labels, "".join(f"{participant[4:]}\n" for participant in passing))
    return exclude, labels


def read_qc_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read a QC table written by :func:`write_qc_table`."""
    return pd.read_csv(path, sep="\t", na_values=[NA], keep_default_na=False)
