"""The ``bidsqc`` entry point: run the participant or the group level."""

from __future__ import annotations

import json
import logging
import re
import sys
from argparse import Namespace
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from bidsqc import __version__, outputs
from bidsqc.bids import (
    AnatImage,
    BIDSError,
    collect_data,
    collect_derivatives,
    collect_participants,
    init_layout,
)
from bidsqc.decisions import Threshold, decide
from bidsqc.workflows.base import branch_name, coregistration_branch_name, init_bidsqc_wf

__all__ = ["main"]

LOGGER = logging.getLogger("bidsqc")
EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE = 0, 1, 2
GENERATED_BY = f"bidsqc {__version__}"
#: The exception line of a traceback: ``package.module.SomeError: message``.
_EXCEPTION_LINE = re.compile(r"^(?:[\w.]+\.)?(\w+(?:Error|Exception)): (.+)$")
_WRAPPERS = {"NodeExecutionError", "RuntimeError"}
#: Workflows whose crashes are reported: an image's own branch, and a FLAIR's co-registration.
_BRANCH_PREFIXES = ("anat_qc_", "flair_coreg_")


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``bidsqc`` and return its exit code (see ``bidsqc --help``)."""
    from bidsqc.cli.parser import parse_args

    opts = parse_args(list(argv) if argv is not None else None)
    _configure_logging(opts.verbose)
    if opts.analysis_level == "group":
        return run_group(opts)
    return run_participant(opts)


def _configure_logging(verbosity: int) -> None:
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbosity + 1, 2)]
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    nipype_level = logging.DEBUG if verbosity >= 2 else logging.WARNING
    for name in ("nipype.workflow", "nipype.interface", "nipype.utils"):
        logging.getLogger(name).setLevel(nipype_level)


def run_participant(opts: Namespace) -> int:
    """Discover the images, run the graph (unless ``--reports-only``), write tables and reports."""
    try:
        layout = init_layout(
            opts.bids_dir,
            database_dir=opts.work_dir / "bids_db",
            validate=not opts.skip_bids_validation,
        )
        subjects = collect_participants(layout, opts.participant_label)
        images = collect_data(
            layout,
            subjects,
            session_label=opts.session_label,
            modalities=opts.modalities,
            bids_filters=opts.bids_filters,
        )
        for folder in opts.derivatives:
            found = [
                image
                for image in collect_derivatives(folder, subjects, opts.modalities)
                if not opts.session_label or image.session in opts.session_label
            ]
            LOGGER.info("Found %d template-space images in '%s'.", len(found), folder)
            images += found
    except BIDSError as err:
        LOGGER.error("%s", err)
        return EXIT_USAGE
    if not images:
        LOGGER.error("No %s image found in '%s'.", " or ".join(opts.modalities), opts.bids_dir)
        return EXIT_USAGE
    LOGGER.info("Found %d images of %d participants.", len(images), len(subjects))

    output_dir = opts.output_dir
    outputs.write_dataset_description(output_dir, opts.bids_dir)
    log_dir = output_dir / "logs"
    if not opts.reports_only:
        _run_workflow(opts, images, log_dir)

    failures = read_crash_reports(log_dir)
    images_by_subject: dict[str, list[AnatImage]] = {}
    for image in images:
        images_by_subject.setdefault(image.subject, []).append(image)
    n_failed = 0
    for subject, subject_images in images_by_subject.items():
        rows = [
            _image_row(output_dir, image, failures.get(branch_name(image)), opts.thresholds)
            for image in subject_images
        ]
        for image, row in zip(subject_images, rows, strict=True):
            if row["status"] == "failed":
                n_failed += 1
                LOGGER.warning("%s failed: %s", image.relpath, row["error"])
            elif _failed_since_written(
                failures.get(coregistration_branch_name(image)),
                outputs.coregistration_path(output_dir, image),
            ):
                LOGGER.warning(
                    "%s: co-registration to its T1w failed, so it has no FLAIR-T1w QC: %s",
                    image.relpath,
                    failures[coregistration_branch_name(image)][1],
                )
        write_participant_outputs(output_dir, subject, rows, subject_images, opts.thresholds)

    LOGGER.warning(
        "%d of %d images processed; results in '%s'.",
        len(images) - n_failed,
        len(images),
        output_dir,
    )
    return EXIT_SOME_FAILED if n_failed else EXIT_OK


def _run_workflow(opts: Namespace, images: list[AnatImage], log_dir: Path) -> None:
    workflow = init_bidsqc_wf(
        images=images,
        output_dir=opts.output_dir,
        work_dir=opts.work_dir,
        omp_nthreads=opts.omp_nthreads,
        device=opts.device,
    )
    workflow.config["execution"] = {
        "crashdump_dir": str(log_dir),
        "crashfile_format": "txt",
        "stop_on_first_crash": False,
        "hash_method": "timestamp",
        "remove_unnecessary_outputs": False,
        # nipype's scheduler sleeps this long between polls; its default of 2 s left the
        # CPUs idle for about a second after every node.
        "poll_sleep_duration": 0.1,
    }
    settings = opts.plugin_settings or {
        "plugin": "MultiProc",
        "plugin_args": {"n_procs": opts.nprocs, "raise_insufficient": False},
    }
    try:
        workflow.run(**settings)
    except RuntimeError as err:  # nipype's summary once some nodes crashed; rows report them
        LOGGER.info("%s", err)


def read_crash_reports(log_dir: Path) -> dict[str, tuple[float, str]]:
    """Newest crash of each image branch: branch name to (time, ``node: Error: message``)."""
    failures: dict[str, tuple[float, str]] = {}
    for crash_file in sorted(log_dir.glob("crash-*.txt")):
        lines = crash_file.read_text(errors="replace").splitlines()
        node = lines[0].removeprefix("Node: ").split(".") if lines else []
        branch = next((part for part in node if part.startswith(_BRANCH_PREFIXES)), None)
        if branch is None:
            continue
        exceptions = [m for line in lines if (m := _EXCEPTION_LINE.match(line.strip()))]
        specific = [m for m in exceptions if m.group(1) not in _WRAPPERS] or exceptions
        message = f"{specific[-1].group(1)}: {specific[-1].group(2)}" if specific else lines[-1]
        when = crash_file.stat().st_mtime
        if branch not in failures or failures[branch][0] < when:
            failures[branch] = (when, f"{node[-1]}: {message}")
    return failures


def _failed_since_written(failure: tuple[float, str] | None, path: Path) -> bool:
    """Whether a crash happened after ``path`` was last written (or ``path`` is missing)."""
    if failure is None:
        return False
    return not path.exists() or failure[0] >= path.stat().st_mtime


def _image_row(
    output_dir: Path,
    image: AnatImage,
    failure: tuple[float, str] | None,
    thresholds: Mapping[str, Threshold],
) -> dict:
    """The image's QC row: ``ok`` if its last derivative, the measures, was written after its
    last crash."""
    measures_file = outputs.measures_path(output_dir, image)
    if _failed_since_written(failure, measures_file):
        return outputs.qc_row(image, None, failure[1], thresholds)
    if not measures_file.exists():
        error = "not processed: see the log and the work directory"
        return outputs.qc_row(image, None, error, thresholds)
    columns = json.loads(measures_file.read_text())
    for path in outputs.network_paths(output_dir, image):
        if path.exists():
            columns |= json.loads(path.read_text())
    return outputs.qc_row(image, columns, None, thresholds)


def write_participant_outputs(
    output_dir: Path,
    subject: str,
    rows: list[dict],
    images: list[AnatImage],
    thresholds: Mapping[str, Threshold],
) -> None:
    """Write ``sub-<label>_qc.tsv``, its dictionary, and the participant's HTML report."""
    from bidsqc.reports.individual import FIGURE_CAPTIONS, render_subject_report

    outputs.write_qc_table(rows, outputs.participant_table_path(output_dir, subject))
    figures = {
        image.relpath: {
            desc: path
            for desc in FIGURE_CAPTIONS
            if (path := outputs.figure_path(output_dir, image, desc)).exists()
        }
        for image in images
    }
    render_subject_report(
        f"sub-{subject}",
        rows,
        figures,
        outputs.QC_COLUMNS,
        outputs.participant_report_path(output_dir, subject),
        generated_by=GENERATED_BY,
        thresholds=thresholds,
    )


def run_group(opts: Namespace) -> int:
    """Gather every participant table into ``group_<modality>.tsv`` and its HTML report."""
    from bidsqc.reports.group import render_group_report

    tables = sorted(opts.output_dir.glob("sub-*/sub-*_qc.tsv"))
    if not tables:
        LOGGER.error(
            "No participant results in '%s': run the participant level first.", opts.output_dir
        )
        return EXIT_USAGE
    table = pd.concat([outputs.read_qc_table(path) for path in tables], ignore_index=True)
    decided = [decide(row, opts.thresholds, outputs.QC_COLUMNS) for row in table.to_dict("records")]
    table[["decision", "reasons"]] = pd.DataFrame(decided, index=table.index)
    exclude, passing = outputs.write_group_decisions(table, opts.output_dir)
    LOGGER.warning(
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
        tsv = outputs.write_qc_table(
            rows.to_dict("records"), outputs.group_table_path(opts.output_dir, modality)
        )
        render_group_report(
            rows, modality, outputs.QC_COLUMNS, tsv.with_suffix(".html"), generated_by=GENERATED_BY
        )
        LOGGER.warning("Group %s: %d image(s), written to '%s'.", modality, len(rows), tsv)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
