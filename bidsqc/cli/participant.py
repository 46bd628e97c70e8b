"""The participant level: discover the images, run the graph, write the tables and reports."""

from __future__ import annotations

import gc
import json
import logging
import re
from argparse import Namespace
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from bidsqc.cli import EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, GENERATED_BY
from bidsqc.data import network_weights
from bidsqc.decisions import Threshold
from bidsqc.discovery import (
    RAW_DATASET,
    AnatImage,
    BIDSError,
    collect_data,
    collect_derivatives,
    collect_participants,
    init_layout,
)
from bidsqc.outputs.columns import ARTEFACT_PROBABILITY_COLUMNS, QC_COLUMNS
from bidsqc.outputs.dataset import write_dataset_description
from bidsqc.outputs.files import copy_atomically, output_lock
from bidsqc.outputs.paths import (
    NETWORK_OUTPUT_NAMES,
    artefact_map_path,
    coregistration_path,
    figure_path,
    geometry_path,
    measures_path,
    network_paths,
    participant_report_path,
    participant_table_path,
    participant_tables,
    preproc_path,
)
from bidsqc.outputs.tables import qc_row, read_qc_table, write_qc_table
from bidsqc.reports.methods import write_methods
from bidsqc.workflows.base import (
    branch_name,
    coregistration_branch_name,
    init_bidsqc_wf,
)
from bidsqc.workflows.settings import QCSettings

if TYPE_CHECKING:
    from nipype.pipeline.engine import Workflow

__all__ = [
    "Crash",
    "build_workflow",
    "discover_images",
    "read_crash_reports",
    "run_participant",
    "write_participant_outputs",
]

LOGGER = logging.getLogger("bidsqc")


#: The exception line of a traceback: ``package.module.SomeError: message``.
_EXCEPTION_LINE = re.compile(r"^(?:[\w.]+\.)?(\w+(?:Error|Exception)): (.+)$")


_WRAPPERS = {"NodeExecutionError", "RuntimeError"}


#: Workflows whose crashes are reported: an image's own branch, and a FLAIR's co-registration.
_BRANCH_PREFIXES = ("anat_qc_", "flair_coreg_")


def discover_images(opts: Namespace) -> tuple[list[str], list[AnatImage]]:
    """The selected participants and their images, raw and from ``--derivatives``.

    With ``--participant-label``, only those participants' folders are indexed, so that one
    array task starts as fast on a dataset of 10,000 subjects as on one of ten.
    """
    layout = init_layout(
        opts.bids_dir,
        participant_label=opts.participant_label,
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
    return subjects, images


def run_participant(opts: Namespace, plugin: dict) -> int:
    """Discover the images, run the graph (unless ``--reports-only``) with nipype's ``plugin``
    settings (:func:`bidsqc.cli.workers.prepare_workers`), write tables and reports."""
    try:
        subjects, images = discover_images(opts)
    except BIDSError as err:
        LOGGER.error("%s", err)
        return EXIT_USAGE
    if not images:
        LOGGER.error("No %s image found in '%s'.", " or ".join(opts.modalities), opts.bids_dir)
        return EXIT_USAGE
    LOGGER.info("Found %d images of %d participants.", len(images), len(subjects))

    output_dir = opts.output_dir
    write_dataset_description(output_dir, opts.bids_dir)
    log_dir = output_dir / "logs"
    if opts.inference_only:
        _run_batched_networks(opts, _preprocessed_images(output_dir, images), fine_tuned_only=True)
    elif not opts.reports_only:
        _run_workflow(opts, images, log_dir, plugin)
        if qc_settings(opts).batch_networks:
            _run_batched_networks(opts, _processed_images(output_dir, images, log_dir))

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
                crash = failures.get(branch_name(image))
                details = f" (details: logs/{crash.file.name})" if crash else ""
                LOGGER.warning("%s failed: %s%s", image.relpath, row["error"], details)
            elif _failed_since_written(
                failures.get(coregistration_branch_name(image)),
                coregistration_path(output_dir, image),
            ):
                LOGGER.warning(
                    "%s: co-registration to its T1w failed, so it has no FLAIR-T1w QC: %s",
                    image.relpath,
                    failures[coregistration_branch_name(image)].message,
                )
        write_participant_outputs(output_dir, subject, rows, subject_images, opts.thresholds)
    with output_lock(output_dir):
        every_row = [
            row
            for table in participant_tables(output_dir)
            for row in read_qc_table(table).to_dict("records")
        ]
        write_methods(
            output_dir,
            every_row,
            device=opts.device,
            generated_by=GENERATED_BY,
            models_dir=opts.models_dir,
        )

    LOGGER.log(
        logging.WARNING if n_failed else logging.INFO,
        "%d of %d images processed; results in '%s'.",
        len(images) - n_failed,
        len(images),
        output_dir,
    )
    return EXIT_SOME_FAILED if n_failed else EXIT_OK


def _run_batched_networks(
    opts: Namespace, images: list[AnatImage], *, fine_tuned_only: bool = False
) -> None:
    """Every network over ``images`` in batches (:mod:`bidsqc.inference.batched`): the
    fine-tuned one of ``--models-dir`` where there is one, else the bundled one; with
    ``fine_tuned_only`` (``--inference-only``), the fine-tuned ones alone."""
    import torch

    from bidsqc.inference.batched import BATCHED_NETWORKS, run_networks

    if fine_tuned_only:
        candidates = {name: opts.models_dir / f"{name}.pt" for name in BATCHED_NETWORKS}
    else:
        candidates = {name: network_weights(name, opts.models_dir) for name in BATCHED_NETWORKS}
    weights = {name: path for name, path in candidates.items() if path.is_file()}
    torch.set_num_threads(opts.nprocs)
    run_networks(opts.output_dir, images, weights, device=opts.device, readers=opts.nprocs)


def _preprocessed_images(output_dir: Path, images: list[AnatImage]) -> list[AnatImage]:
    """The raw images whose preprocessing is in ``output_dir`` (logged for the others)."""
    done = [
        image
        for image in images
        if image.dataset == RAW_DATASET and preproc_path(output_dir, image).exists()
    ]
    for image in images:
        if image not in done:
            LOGGER.info("%s: no preprocessed image in the output directory.", image.relpath)
    return done


def _processed_images(output_dir: Path, images: list[AnatImage], log_dir: Path) -> list[AnatImage]:
    """The preprocessed images whose branch has not crashed since their measures were written."""
    failures = read_crash_reports(log_dir)
    return [
        image
        for image in _preprocessed_images(output_dir, images)
        if not _failed_since_written(
            failures.get(branch_name(image)), measures_path(output_dir, image)
        )
    ]


def build_workflow(opts: Namespace, images: list[AnatImage], log_dir: Path) -> Workflow:
    """The nipype graph of the images, configured to write its crash files to ``log_dir``."""
    workflow = init_bidsqc_wf(images=images, settings=qc_settings(opts), work_dir=opts.work_dir)
    workflow.config["execution"] = {
        "crashdump_dir": str(log_dir),
        "crashfile_format": "txt",
        "stop_on_first_crash": False,
        "hash_method": "timestamp",
        "remove_unnecessary_outputs": False,
        # nipype's scheduler sleeps this long between polls; at its default of 2 s the CPUs
        # idle after every node.
        "poll_sleep_duration": 0.1,
    }
    return workflow


def qc_settings(opts: Namespace) -> QCSettings:
    """What every image's workflow takes from the command line."""
    return QCSettings(
        output_dir=opts.output_dir,
        omp_nthreads=opts.omp_nthreads,
        device=opts.device,
        models_dir=opts.models_dir,
    )


def _run_workflow(opts: Namespace, images: list[AnatImage], log_dir: Path, plugin: dict) -> None:
    workflow = build_workflow(opts, images, log_dir)
    # MultiProc collects garbage each time it submits nodes; over the objects of this process
    # (the imported libraries, the graph) that took 0.1 s a time, a tenth of the run's CPU.
    # They live through the run: keep them out of its collections.
    gc.collect()
    gc.freeze()
    try:
        workflow.run(**plugin)
    except RuntimeError as err:  # nipype's summary once some nodes crashed; rows report them
        LOGGER.debug("%s", err)
    finally:
        gc.unfreeze()


class Crash(NamedTuple):
    """The newest crash of an image's branch."""

    time: float
    #: ``node: Error: message``
    message: str
    file: Path


def read_crash_reports(log_dir: Path) -> dict[str, Crash]:
    """Newest crash of each image branch, by branch name."""
    failures: dict[str, Crash] = {}
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
            failures[branch] = Crash(when, f"{node[-1]}: {message}", crash_file)
    return failures


def _failed_since_written(failure: Crash | None, path: Path) -> bool:
    """Whether a crash happened after ``path`` was last written (or ``path`` is missing)."""
    if failure is None:
        return False
    return not path.exists() or failure.time >= path.stat().st_mtime


def _image_row(
    output_dir: Path,
    image: AnatImage,
    failure: Crash | None,
    thresholds: Mapping[str, Threshold],
) -> dict:
    """The image's QC row: ``ok`` if its last derivative, the measures, was written after its
    last crash."""
    measures_file = measures_path(output_dir, image)
    if _failed_since_written(failure, measures_file):
        return qc_row(image, None, failure.message, thresholds)
    if not measures_file.exists():
        error = "not processed: see the log and the work directory"
        return qc_row(image, None, error, thresholds)
    columns = json.loads(measures_file.read_text())
    for path in network_paths(output_dir, image):
        if path.exists():
            columns |= json.loads(path.read_text())
    geometry_file = geometry_path(output_dir, image)
    geometry = json.loads(geometry_file.read_text()) if geometry_file.exists() else None
    return qc_row(image, columns, None, thresholds, geometry)


def write_participant_outputs(
    output_dir: Path,
    subject: str,
    rows: list[dict],
    images: list[AnatImage],
    thresholds: Mapping[str, Threshold],
) -> None:
    """Write ``sub-<label>_qc.tsv``, its dictionary, each image's thumbnail (for the group
    report's queue) and the participant's HTML report."""
    from bidsqc.reports.individual import FIGURE_CAPTIONS, render_subject_report
    from bidsqc.reports.review import dataset_key
    from bidsqc.reports.volumes import read_registered, viewer_volumes, write_thumbnail

    write_qc_table(rows, participant_table_path(output_dir, subject))
    volumes = {}
    for image in images:
        preproc = preproc_path(output_dir, image)
        if preproc.exists():
            data, window = read_registered(preproc)
            write_thumbnail(data, window, figure_path(output_dir, image, "thumbnail"))
            volumes[image.relpath] = viewer_volumes(
                data,
                window,
                artefact_map_path(output_dir, image),
                list(ARTEFACT_PROBABILITY_COLUMNS.values()),
            )
    models = {image.relpath: _image_models(output_dir, image) for image in images}
    figures = {
        image.relpath: {
            desc: path
            for desc in FIGURE_CAPTIONS
            if (path := figure_path(output_dir, image, desc)).exists()
        }
        for image in images
    }
    render_subject_report(
        f"sub-{subject}",
        rows,
        figures,
        QC_COLUMNS,
        participant_report_path(output_dir, subject),
        generated_by=GENERATED_BY,
        dataset=dataset_key(output_dir),
        volumes=volumes,
        models=models,
        thresholds=thresholds,
    )


def _image_models(output_dir: Path, image: AnatImage) -> list[dict]:
    """Which model made each of an image's network outputs, with a link, relative to the
    output directory, to a copy of its model card in ``logs/models``."""
    models = []
    outputs = zip(NETWORK_OUTPUT_NAMES, network_paths(output_dir, image), strict=True)
    for output, path in outputs:
        if not path.exists():
            continue
        model = json.loads(path.read_text()).get("model")
        if model is None:
            continue
        card = Path(model["weights"]).with_suffix(".json")
        copy = output_dir / "logs" / "models" / f"{card.stem}-{model['sha256'][:12]}.json"
        if not copy.exists() and card.is_file():
            copy_atomically(card, copy)
        models.append(model | {"output": output, "card": copy.relative_to(output_dir).as_posix()})
    return models
