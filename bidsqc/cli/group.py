"""The group level: gather every participant table into group tables, decisions and reports."""

from __future__ import annotations

import logging
from argparse import Namespace
from pathlib import Path

import pandas as pd

from bidsqc.cli import EXIT_OK, EXIT_USAGE, GENERATED_BY
from bidsqc.decisions import decide
from bidsqc.outputs.columns import QC_COLUMNS
from bidsqc.outputs.paths import group_table_path, participant_tables
from bidsqc.outputs.tables import read_qc_table, write_group_decisions, write_qc_table

__all__ = [
    "run_group",
]

LOGGER = logging.getLogger("bidsqc")
#: The participant level's methods, relative to the output directory and the group reports.
METHODS_HREF = "logs/CITATION.html"
#: Where the participant level keeps a copy of each model card it used.
MODELS_HREF = "logs/models"


def run_group(opts: Namespace) -> int:
    """Gather every participant table into ``group_<modality>.tsv`` and its HTML report."""
    from bidsqc.reports.group import render_group_report
    from bidsqc.reports.review import dataset_key

    tables = participant_tables(opts.output_dir)
    if not tables:
        LOGGER.error(
            "No participant results in '%s': run the participant level first.", opts.output_dir
        )
        return EXIT_USAGE
    table = pd.concat([read_qc_table(path) for path in tables], ignore_index=True)
    decided = [decide(row, opts.thresholds, QC_COLUMNS) for row in table.to_dict("records")]
    table[["decision", "reasons"]] = pd.DataFrame(decided, index=table.index)
    exclude, passing = write_group_decisions(table, opts.output_dir)
    LOGGER.info(
        "%d image(s) fail, %d to review; '%s' lists the failures, '%s' the %d participant(s) "
        "without any.",
        (table["decision"] == "fail").sum(),
        (table["decision"] == "review").sum(),
        exclude,
        passing,
        len(passing.read_text().split()),
    )
    for modality, rows in table.groupby("modality", sort=True):
        rows = rows.reset_index(drop=True)
        tsv = write_qc_table(rows.to_dict("records"), group_table_path(opts.output_dir, modality))
        render_group_report(
            rows,
            modality,
            QC_COLUMNS,
            tsv.with_suffix(".html"),
            generated_by=GENERATED_BY,
            dataset=dataset_key(opts.output_dir),
            models=_model_cards(opts.output_dir),
            methods_href=METHODS_HREF if (opts.output_dir / METHODS_HREF).is_file() else None,
        )
        LOGGER.info("Group %s: %d image(s), written to '%s'.", modality, len(rows), tsv)
    return EXIT_OK


def _model_cards(output_dir: Path) -> list[dict]:
    """The model cards the participant level copied to ``logs/models``: every model that made
    an output of this directory, with a link relative to it."""
    from bidsqc.data import read_model_card

    cards = []
    for path in sorted((output_dir / MODELS_HREF).glob("*.json")):
        card = read_model_card(path)
        cards.append(
            {
                "name": path.stem,
                "href": f"{MODELS_HREF}/{path.name}",
                "fine_tuned": card.get("method"),
                "task": card.get("task"),
            }
        )
    return cards
