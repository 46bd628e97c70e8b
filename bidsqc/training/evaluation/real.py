"""Real scans through the whole app, against the labels people gave them.

This is what a new user sees: a BIDS dataset is run by ``bidsqc participant`` and ``group``, as
anyone runs it, and the group table is compared with a labels file. The labels file is a TSV
with ``bids_name`` (the image's file name without extension, as MR-ART's ``scores.tsv`` has
it), ``score`` (1 clean, 2 mild, 3 severe; ``n/a`` for an image nobody scored) and, optionally,
``source`` (where the image comes from; one source ``all`` without it).

Per source (:func:`real_scan_summary`): how many images were processed, registered correctly
(``rereg_mm`` below :data:`bidsqc.geometry.MISREGISTRATION_THRESHOLD_MM`), flagged misregistered
by the decision (``p_misregistered``, ``p_misregistered_to_t1w`` or ``rereg_mm`` among its
reasons), not assessed, and
excluded (decision ``fail``, as ``group_exclude.tsv`` lists them), among all images and among
the clean ones. Per source and column (:func:`real_scan_agreement`), on the scored images:
the Spearman correlation of the column with the score and the AUCs of score > 1 against 1 and
of 3 against 1-2, each oriented so that agreement is positive (a column whose better is
``higher`` is negated), and, among the pairs of scans of one participant with different scores,
how many the column puts in the same order as the scores.
"""

from __future__ import annotations

import os
import subprocess
import sys
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd

from bidsqc.geometry import MISREGISTRATION_THRESHOLD_MM
from bidsqc.outputs.columns import QC_COLUMNS
from bidsqc.outputs.tables import read_qc_table
from bidsqc.training.labels import bids_stem
from bidsqc.training.metrics import roc_auc, spearman

__all__ = [
    "read_real_labels",
    "real_scan_agreement",
    "real_scan_summary",
    "real_scan_table",
    "run_bidsqc",
]

#: The source of every image of a labels file without a ``source`` column.
ALL_SOURCES = "all"


def read_real_labels(path: str | os.PathLike) -> pd.DataFrame:
    """The labels file as a table of ``bids_name``, ``score`` (nullable integer) and
    ``source``; ``ValueError`` without ``bids_name`` or with a score other than 1, 2, 3."""
    labels = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    if "bids_name" not in labels.columns:
        raise ValueError(f"{path}: a labels file needs a bids_name column")
    scores = labels.get("score", pd.Series("n/a", index=labels.index)).replace("", "n/a")
    unknown = sorted(set(scores) - {"1", "2", "3", "n/a"})
    if unknown:
        raise ValueError(f"{path}: scores must be 1, 2, 3 or n/a, not {', '.join(unknown)}")
    return pd.DataFrame(
        {
            "bids_name": labels["bids_name"].map(bids_stem),
            "score": pd.to_numeric(scores.replace("n/a", None)).astype("Int64"),
            "source": labels["source"] if "source" in labels.columns else ALL_SOURCES,
        }
    )


def run_bidsqc(
    bids_dir: Path, out_dir: Path, nprocs: int, models_dir: Path | None = None
) -> list[Path]:
    """Run ``bidsqc participant`` then ``group`` on ``bids_dir``; the group tables' paths.

    ``models_dir`` is bidsqc's ``--models-dir``: networks trained or fine-tuned, used instead
    of the bundled ones of the same name. The participant level exits 1 when some image
    failed, which is a result here, not an error; any other non-zero exit raises
    ``RuntimeError``.
    """
    command = [sys.executable, "-m", "bidsqc", str(bids_dir), str(out_dir)]
    participant = ["--nprocs", str(nprocs)]
    if models_dir is not None:
        participant += ["--models-dir", str(models_dir)]
    for level, extra in (("participant", participant), ("group", [])):
        code = subprocess.run([*command, level, *extra], check=False).returncode
        if code not in (0, 1):
            raise RuntimeError(f"bidsqc {level} exited with {code}")
    tables = [out_dir / f"group_{modality}.tsv" for modality in ("T1w", "FLAIR")]
    return [table for table in tables if table.exists()]


def real_scan_table(group_tables: list[Path], labels: pd.DataFrame) -> pd.DataFrame:
    """The labelled rows of the group tables, with their ``score`` and ``source``.

    Images of the tables that the labels do not name are left out; a labelled image that
    bidsqc did not list raises ``ValueError``, since the evaluation would silently shrink.
    """
    table = pd.concat([read_qc_table(path) for path in group_tables], ignore_index=True)
    table["bids_name"] = table["filename"].map(bids_stem)
    merged = labels.merge(table, on="bids_name", how="left", indicator=True)
    missing = merged.loc[merged["_merge"] == "left_only", "bids_name"].tolist()
    if missing:
        raise ValueError(
            f"{len(missing)} labelled image(s) are not in bidsqc's tables, e.g. {missing[0]}"
        )
    return merged.drop(columns="_merge")


#: A threshold on the registration crossed, as :func:`bidsqc.decisions.decide` words it
#: (``review: rereg_mm 2.5 >= 2``; not ``review: not assessed (…, rereg_mm on up to …)``).
MISREGISTRATION_REASON = r"(?:review|fail): (?:p_misregistered\w*|rereg_mm)\b"


def _by_source(table: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """The table split by source, then whole as ``all`` when there is more than one."""
    groups = list(table.groupby("source", sort=True))
    return [*groups, (ALL_SOURCES, table)] if len(groups) > 1 else groups


def real_scan_summary(table: pd.DataFrame) -> pd.DataFrame:
    """One row per source (and ``all``): the counts and shares of the module docstring;
    ``registered`` and ``flagged_misregistered`` are shares of the images whose registration
    was assessed: those whose row gives ``rereg_mm``, which holds on thicker slices than most
    outputs (:data:`bidsqc.validity.THICK_SLICE_COLUMNS`)."""
    rows = []
    for source, group in _by_source(table):
        assessed = group[(group["status"] == "ok") & group["rereg_mm"].notna()]
        registered = assessed["rereg_mm"] < MISREGISTRATION_THRESHOLD_MM
        flagged = assessed["reasons"].str.contains(MISREGISTRATION_REASON, regex=True, na=False)
        clean = group[group["score"] == 1]
        rows.append(
            {
                "source": source,
                "images": len(group),
                "processed": int((group["status"] == "ok").sum()),
                "not_assessed": int(
                    ((group["status"] == "ok") & group["not_assessed"].notna()).sum()
                ),
                "registered": registered.mean() if len(assessed) else np.nan,
                "flagged_misregistered": flagged.mean() if len(assessed) else np.nan,
                "excluded": (group["decision"] == "fail").mean(),
                "clean": len(clean),
                "clean_excluded": (clean["decision"] == "fail").mean() if len(clean) else np.nan,
            }
        )
    return pd.DataFrame(rows)


def _oriented(table: pd.DataFrame, column: str) -> pd.Series:
    """The column's values, negated when higher is better, so that higher means worse."""
    sign = -1.0 if QC_COLUMNS[column].better == "higher" else 1.0
    return sign * table[column].astype(float)


def _ordered_pairs(scored: pd.DataFrame, values: pd.Series) -> tuple[int, int]:
    """Of the pairs of one participant's scans with different scores, how many ``values``
    order as the scores (a tie counts as not ordered), and how many there are."""
    ordered = total = 0
    for _, scans in scored.groupby("participant_id"):
        for a, b in combinations(scans.index, 2):
            if scans.at[a, "score"] == scans.at[b, "score"]:
                continue
            worse, better = (a, b) if scans.at[a, "score"] > scans.at[b, "score"] else (b, a)
            total += 1
            ordered += bool(values[worse] > values[better])
    return ordered, total


def real_scan_agreement(table: pd.DataFrame) -> pd.DataFrame:
    """One row per source with scores, and per numeric column with a direction: n, Spearman,
    the two AUCs and the ordered pairs (``k/n``), each oriented so that agreement is positive."""
    scored = table[table["score"].notna() & (table["status"] == "ok")]
    columns = [
        name
        for name, info in QC_COLUMNS.items()
        if info.better in ("lower", "higher") and name in scored and scored[name].notna().any()
    ]
    rows = []
    for source, group in _by_source(scored):
        score = group["score"].astype(float)
        for column in columns:
            values = _oriented(group, column)
            valid = values.notna()
            ordered, pairs = _ordered_pairs(group[valid], values[valid])
            rows.append(
                {
                    "source": source,
                    "column": column,
                    "n": int(valid.sum()),
                    "spearman": spearman(score[valid], values[valid]),
                    "auc_mild_or_severe": roc_auc(score[valid] > 1, values[valid]),
                    "auc_severe": roc_auc(score[valid] == 3, values[valid]),
                    "pairs_ordered": f"{ordered}/{pairs}",
                }
            )
    return pd.DataFrame(rows)
