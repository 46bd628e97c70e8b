"""The ``bidsqc`` command line: parse and check the arguments, run nothing."""

from __future__ import annotations

import os
import re
from argparse import ArgumentParser, ArgumentTypeError, Namespace, RawDescriptionHelpFormatter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from bidsqc import __version__
from bidsqc.discovery import DEFAULT_BIDS_QUERIES, RAW_DATASET, BIDSError, load_bids_filters

__all__ = ["absolute_path", "build_parser", "image_list", "parse_args", "positive_int"]

_DESCRIPTION = """\
Automated quality control of T1w and FLAIR brain MRI, as a BIDS App.

The participant level measures the quality of each image of BIDS_DIR and writes the
results into OUTPUT_DIR; the group level gathers those results into group reports,
reading only OUTPUT_DIR (BIDS_DIR need not be present then).  Nothing is ever written
inside BIDS_DIR."""

_EPILOG = """\
exit codes:
  0  all images were processed
  1  some images failed (they are still reported, as failed rows)
  2  usage or dataset error (nothing was processed)"""

_OMP_NTHREADS_MAX = 8


def build_parser() -> ArgumentParser:
    """Return the parser of the ``bidsqc`` command line."""
    parser = ArgumentParser(
        prog="bidsqc",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=RawDescriptionHelpFormatter,
        allow_abbrev=False,  # abbreviations would break as options are added
    )
    parser.add_argument("bids_dir", type=absolute_path, help="root of the BIDS dataset")
    parser.add_argument("output_dir", type=absolute_path, help="where the results are written")
    parser.add_argument(
        "analysis_level",
        choices=["participant", "group"],
        help="process images one by one, or summarize the participant-level results",
    )
    parser.add_argument("--version", action="version", version=f"bidsqc {__version__}")

    data = parser.add_argument_group("selecting data")
    data.add_argument(
        "--participant-label",
        "--participant_label",
        nargs="+",
        type=_label("sub-"),
        metavar="LABEL",
        help="participants to process, with or without 'sub-' (default: all)",
    )
    data.add_argument(
        "--session-label",
        "--session_label",
        nargs="+",
        type=_label("ses-"),
        metavar="LABEL",
        help="sessions to process, with or without 'ses-' (default: all)",
    )
    data.add_argument(
        "--modalities",
        nargs="+",
        choices=list(DEFAULT_BIDS_QUERIES),
        default=list(DEFAULT_BIDS_QUERIES),
        help=f"modalities to process (default: {' '.join(DEFAULT_BIDS_QUERIES)})",
    )
    data.add_argument(
        "--bids-filter-file",
        dest="bids_filters",
        type=_bids_filters,
        metavar="FILE",
        help="JSON file of pybids filters per modality, which refine the default queries, "
        'e.g. {"T1w": {"acquisition": "mprage"}, "FLAIR": {"reconstruction": null}}',
    )
    data.add_argument(
        "--derivatives",
        action="append",
        type=absolute_path,
        metavar="DIR",
        help="an fMRIPrep-style derivatives folder whose template-space preprocessed T1w and "
        "FLAIR (*_space-MNI152NLin2009c[A]Sym_*desc-preproc_<T1w|FLAIR>.nii[.gz]) get "
        "registration QC, in the same tables (column 'dataset'); repeatable",
    )
    data.add_argument(
        "--skip-bids-validation",
        action="store_true",
        help="index files whose names are not BIDS and accept an invalid dataset_description.json",
    )

    decisions = parser.add_argument_group("decisions")
    decisions.add_argument(
        "--thresholds",
        type=_thresholds,
        metavar="FILE",
        help='JSON of review/fail thresholds per column, e.g. {"motion_grade": {"review": 1, '
        '"fail": 2}, "cjv": {"review": 0.6}}; replaces the defaults (docs/outputs.md). The '
        "group level decides again with its own --thresholds",
    )

    execution = parser.add_argument_group("execution")
    execution.add_argument(
        "-w",
        "--work-dir",
        type=absolute_path,
        help="folder for intermediate files, kept to speed up a rerun (default: OUTPUT_DIR/work)",
    )
    execution.add_argument(
        "--nprocs",
        "--nthreads",
        "--n_cpus",
        type=positive_int,
        default=_available_cpus(),
        metavar="N",
        help="maximum number of CPUs used at once (default: all available, here %(default)s)",
    )
    execution.add_argument(
        "--omp-nthreads",
        type=positive_int,
        metavar="N",
        help="threads per network process, at most --nprocs (default: --nprocs minus one, "
        f"at least 1 and at most {_OMP_NTHREADS_MAX}, so that several images are processed "
        "in parallel: that pays more than threads); ANTs always runs on one thread, so that "
        "a rerun registers every image exactly as before",
    )
    execution.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda"],
        default="auto",
        help="where the networks run; cuda: on the GPU, over all the images at once in "
        "batches, after their preprocessing; cpu: in a node per image; auto: in a node per "
        "image, on the GPU when CUDA sees one (default: %(default)s)",
    )
    execution.add_argument(
        "--models-dir",
        type=absolute_path,
        metavar="DIR",
        help="networks fine-tuned by bidsqc-finetune (motion.pt, ...), used instead of the "
        "bundled ones of the same name; the others stay bundled. With a work directory from an "
        "earlier run, only the networks run again",
    )
    execution.add_argument(
        "--use-plugin",
        dest="plugin_settings",
        type=_plugin_settings,
        metavar="FILE",
        help="YAML file of nipype plugin settings, e.g. 'plugin: SLURM' and "
        "'plugin_args: {sbatch_args: --mem=8G}' (default: MultiProc with --nprocs)",
    )
    execution.add_argument(
        "--inference-only",
        action="store_true",
        help="with --models-dir: only run its networks, in this process, on the images already "
        "preprocessed in OUTPUT_DIR (the artefact network on BIDS_DIR's images through their "
        "transforms there), then write the tables and reports; no preprocessing, no measures, "
        "no nipype",
    )
    execution.add_argument(
        "--reports-only",
        action="store_true",
        help="only write the reports again, from the results already in OUTPUT_DIR",
    )
    execution.add_argument(
        "-v", "--verbose", action="count", default=0, help="log more (-vv: even more)"
    )
    return parser


def parse_args(argv: list[str] | None = None) -> Namespace:
    """Parse and check the command line (``sys.argv[1:]`` by default).

    Paths are absolute (symbolic links are kept), ``work_dir`` and ``omp_nthreads``
    get their defaults, and labels lose their ``sub-`` and ``ses-`` prefixes.
    Mistakes end the program with exit code 2 and a message, as argparse does.
    """
    parser = build_parser()
    opts = parser.parse_args(argv)

    # The group level reads only OUTPUT_DIR, so the raw data may have been left behind.
    if opts.analysis_level == "participant" and not opts.bids_dir.is_dir():
        parser.error(f"BIDS dataset '{opts.bids_dir}' is not an existing directory.")
    if opts.analysis_level == "group" and not opts.output_dir.is_dir():
        parser.error(
            f"Output directory '{opts.output_dir}' is not an existing directory: "
            "the group level summarizes the participant-level results found there."
        )

    derivatives = opts.derivatives or []
    for folder in derivatives:
        if opts.analysis_level == "participant" and not folder.is_dir():
            parser.error(f"Derivatives folder '{folder}' is not an existing directory.")
    names = [folder.name for folder in derivatives]
    if len(set(names)) < len(names) or RAW_DATASET in names:
        parser.error(
            f"--derivatives folders must have distinct names, other than '{RAW_DATASET}': they "
            f"name the 'dataset' of their rows (got {', '.join(names)})."
        )
    opts.derivatives = derivatives
    if opts.thresholds is None:
        from bidsqc.decisions import DEFAULT_THRESHOLDS

        opts.thresholds = DEFAULT_THRESHOLDS

    if opts.models_dir is not None:
        from bidsqc.data import NETWORKS, SITE_NETWORKS

        names = NETWORKS + SITE_NETWORKS
        found = [name for name in names if (opts.models_dir / f"{name}.pt").is_file()]
        if not found:
            parser.error(
                f"--models-dir '{opts.models_dir}' holds none of "
                f"{', '.join(f'{name}.pt' for name in names)}: "
                "give the --out of bidsqc-finetune."
            )
        without_card = [name for name in found if not (opts.models_dir / f"{name}.json").is_file()]
        if without_card:
            parser.error(
                f"--models-dir: {', '.join(f'{name}.pt' for name in without_card)} has no "
                "model card beside it (same name, .json), so bidsqc cannot tell how to build it."
            )
    if opts.inference_only and opts.reports_only:
        parser.error("--inference-only and --reports-only exclude each other.")
    if opts.inference_only and opts.models_dir is None:
        parser.error("--inference-only runs the networks of --models-dir: give it.")
    if opts.analysis_level == "participant" and opts.device == "cuda" and not _cuda_available():
        parser.error("--device cuda, but CUDA sees no GPU: use --device cpu (or auto).")

    opts.work_dir = opts.work_dir or opts.output_dir / "work"
    for name, path in (("Output", opts.output_dir), ("Work", opts.work_dir)):
        if path.exists() and not path.is_dir():
            parser.error(f"{name} directory '{path}' is not a directory.")
        # Resolved, so that no symbolic link can lead back into the dataset.
        if path.resolve().is_relative_to(opts.bids_dir.resolve()):
            parser.error(
                f"{name} directory '{path}' is inside the BIDS dataset '{opts.bids_dir}': "
                "bidsqc never writes into its input."
            )

    if opts.omp_nthreads is None:
        opts.omp_nthreads = min(max(opts.nprocs - 1, 1), _OMP_NTHREADS_MAX)
    elif opts.omp_nthreads > opts.nprocs:
        parser.error(
            f"--omp-nthreads ({opts.omp_nthreads}) cannot exceed --nprocs ({opts.nprocs})."
        )

    # Repeated labels or modalities would process the same images twice.
    for name in ("participant_label", "session_label", "modalities"):
        if getattr(opts, name) is not None:
            setattr(opts, name, list(dict.fromkeys(getattr(opts, name))))
    return opts


def _cuda_available() -> bool:
    import torch  # here, so that only --device cuda waits for torch

    return torch.cuda.is_available()


def absolute_path(value: str) -> Path:
    """Argument type: the path made absolute, ``~`` expanded, symbolic links kept."""
    return Path(value).expanduser().absolute()


def _label(prefix: str) -> Callable[[str], str]:
    """Return an argument type taking a BIDS label with or without ``prefix``."""

    def label(value: str) -> str:
        stripped = value.removeprefix(prefix)
        if not re.fullmatch(r"[A-Za-z0-9]+", stripped):
            raise ArgumentTypeError(f"'{value}' is not a BIDS label ({prefix}<alphanumerics>).")
        return stripped

    return label


def positive_int(value: str) -> int:
    """Argument type: an integer of 1 or more."""
    if not value.isdecimal() or int(value) < 1:
        raise ArgumentTypeError(f"'{value}' is not an integer of 1 or more.")
    return int(value)


def _available_cpus() -> int:
    """CPUs this process may run on: its affinity (taskset, Slurm...) where known."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _bids_filters(value: str) -> dict[str, dict[str, Any]]:
    try:
        return load_bids_filters(absolute_path(value))
    except BIDSError as err:
        raise ArgumentTypeError(str(err)) from err


def _thresholds(value: str) -> dict[str, Any]:
    from bidsqc.decisions import load_thresholds
    from bidsqc.outputs.columns import QC_COLUMNS

    try:
        return load_thresholds(value, QC_COLUMNS)
    except (OSError, ValueError) as err:
        raise ArgumentTypeError(str(err)) from err


def _plugin_settings(value: str) -> dict[str, Any]:
    """Read nipype plugin settings: ``plugin`` (a name) and ``plugin_args`` (a mapping)."""
    path = absolute_path(value)
    try:
        settings = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise ArgumentTypeError(f"Cannot read nipype plugin settings from '{path}': {err}") from err

    if not isinstance(settings, dict) or not isinstance(settings.get("plugin"), str):
        raise ArgumentTypeError(f"'{path}' must name a nipype plugin, e.g. 'plugin: SLURM'.")
    unknown = sorted(settings.keys() - {"plugin", "plugin_args"})
    if unknown:
        raise ArgumentTypeError(
            f"'{path}' may only set 'plugin' and 'plugin_args', not {', '.join(unknown)}."
        )
    plugin_args = settings.get("plugin_args") or {}
    if not isinstance(plugin_args, dict):
        raise ArgumentTypeError(f"'plugin_args' in '{path}' must be a mapping.")
    return {"plugin": settings["plugin"], "plugin_args": plugin_args}


def image_list(value: str) -> list[Path]:
    """Argument type: every NIfTI file under a folder (sorted), or the paths a text file lists.

    In a list, one path per line, relative to the list's folder; blank lines and lines starting
    with ``#`` are ignored, and an image listed twice counts once.
    """
    path = absolute_path(value)
    if path.is_dir():
        images = sorted(
            image for image in path.rglob("*.nii*") if image.name.endswith((".nii", ".nii.gz"))
        )
        if not images:
            raise ArgumentTypeError(f"No .nii or .nii.gz image under '{path}'.")
    elif path.is_file():
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            raise ArgumentTypeError(f"Cannot read the image list '{path}': {err}") from err
        entries = [line.strip() for line in lines]
        # Normalised, so that a model card shows '/data/x.nii.gz', not '/lists/../data/...'.
        images = [
            Path(os.path.normpath(path.parent / Path(entry).expanduser()))
            for entry in entries
            if entry and not entry.startswith("#")
        ]
        if not images:
            raise ArgumentTypeError(f"The image list '{path}' names no image.")
        missing = [image for image in images if not image.is_file()]
        if missing:
            raise ArgumentTypeError(
                f"The image list '{path}' names {len(missing)} missing file(s): "
                + ", ".join(f"'{image}'" for image in missing[:3])
                + (", ..." if len(missing) > 3 else "")
            )
    else:
        raise ArgumentTypeError(f"'{path}' is neither a folder of images nor a list of them.")
    return list(dict.fromkeys(images))
