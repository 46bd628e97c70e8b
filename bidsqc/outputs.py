"""BIDS-derivative outputs: every file name, the QC tables and their column dictionaries.

All names are computed here and nowhere else. For a source image
``sub-01/ses-1/anat/sub-01_ses-1_run-1_T1w.nii.gz`` the participant level writes::

    sub-01/ses-1/anat/sub-01_ses-1_run-1_space-MNI152NLin2009cSym_res-2_desc-preproc_T1w.nii.gz
    sub-01/ses-1/anat/sub-01_ses-1_run-1_from-T1w_to-MNI152NLin2009cSym_mode-image_xfm.mat
    sub-01/ses-1/anat/sub-01_ses-1_run-1_desc-motion_T1w.json
    sub-01/ses-1/anat/sub-01_ses-1_run-1_desc-registration_T1w.json
    sub-01/ses-1/anat/sub-01_ses-1_run-1_desc-artefacts_T1w.json
    sub-01/ses-1/anat/sub-01_ses-1_run-1_space-MNI152NLin2009cSym_res-2_desc-artefactmap_T1w.nii.gz
    sub-01/ses-1/anat/sub-01_ses-1_run-1_desc-measures_T1w.json
    sub-01/figures/sub-01_ses-1_run-1_desc-raw_T1w.png
    sub-01/figures/sub-01_ses-1_run-1_desc-registered_T1w.png
    sub-01/figures/sub-01_ses-1_run-1_desc-motion_T1w.png
    sub-01/figures/sub-01_ses-1_run-1_desc-artefacts_T1w.png
    sub-01/sub-01_qc.tsv  and  sub-01/sub-01_qc.json
    sub-01.html

and the group level ``group_T1w.tsv`` and ``group_T1w.html``. A FLAIR with a T1w of the same
session also gets its rigid transform to that T1w (``from-FLAIR_to-T1w``), the QC of that
co-registration (``desc-coregistration``) and its figure. An image of an existing derivatives
dataset (``--derivatives DIR``) keeps its own name without its ``desc`` entity, under a folder
named after the dataset::

    fmriprep/sub-01/anat/sub-01_space-MNI152NLin2009cAsym_desc-registration_T1w.json
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import pandas as pd

from bidsqc import __version__
from bidsqc.__about__ import __packagename__, __url__
from bidsqc.bids import RAW_DATASET, AnatImage
from bidsqc.data import TEMPLATE_NAME
from bidsqc.decisions import DEFAULT_THRESHOLDS, Threshold, decide
from bidsqc.metrics import MEASURES, MeasureInfo

__all__ = [
    "ARTEFACT_COLUMNS",
    "ARTEFACT_PROBABILITY_COLUMNS",
    "ID_COLUMNS",
    "MOTION_COLUMNS",
    "NA",
    "QC_COLUMNS",
    "REGISTRATION_COLUMNS",
    "artefact_map_path",
    "artefacts_path",
    "column_dictionary",
    "flagged_artefacts",
    "derivative_path",
    "figure_path",
    "group_table_path",
    "measures_path",
    "motion_path",
    "network_paths",
    "registration_path",
    "coregistration_path",
    "participant_report_name",
    "participant_report_path",
    "participant_table_path",
    "preproc_path",
    "qc_row",
    "read_qc_table",
    "transform_path",
    "write_dataset_description",
    "write_group_decisions",
    "write_qc_table",
]

#: How BIDS tables spell a missing value.
NA = "n/a"
#: Entities bidsqc adds to a source name, in the order the BIDS specification sets.
_DERIVATIVE_ENTITIES = ("from", "to", "mode", "space", "res", "desc")
#: The columns that identify a row and say whether it was processed, before the measures.
ID_COLUMNS: dict[str, dict] = {
    "filename": {"Description": "Image path relative to the BIDS root, as in BIDS _scans.tsv."},
    "participant_id": {"Description": "Participant label, with the sub- prefix."},
    "session_id": {"Description": "Session label, with the ses- prefix; n/a without sessions."},
    "modality": {
        "Description": "BIDS suffix of the image.",
        "Levels": {"T1w": "T1-weighted", "FLAIR": "Fluid-attenuated inversion recovery"},
    },
    "status": {
        "Description": "Whether bidsqc could process the image.",
        "Levels": {"ok": "processed; measures are valid", "failed": "not processed; see error"},
    },
    "error": {"Description": "Why the image failed; n/a for processed images."},
    "dataset": {
        "Description": "Where the image comes from: 'raw' for the BIDS dataset, else the name "
        "of the derivatives folder given with --derivatives (filename is then relative to it)."
    },
    "decision": {
        "Description": "What to do with the image, from the thresholds of --thresholds (the "
        "defaults in docs/outputs.md): the worst level any column reaches.",
        "Levels": {
            "pass": "no threshold crossed",
            "review": "a person should look at the image",
            "fail": "exclude the image (or it could not be processed)",
        },
    },
    "reasons": {"Description": "The thresholds the image crossed, worst first; n/a if none."},
}

_MOTION_SCALE = (
    "Motion is the Jenkinson RMS displacement (80 mm sphere) of the head poses of a simulated "
    "k-space motion, averaged over the poses (docs/simulation.md)."
)
#: The motion network's columns (:mod:`bidsqc.inference`), after the classical measures.
MOTION_COLUMNS: dict[str, MeasureInfo] = {
    "motion_grade": MeasureInfo(
        "Motion grade",
        "Motion grade from the motion network: none while the probability of motion "
        "(1 - p_motion_none) is below its calibrated threshold, otherwise the more probable "
        "of mild and severe. Mild starts at 4.5 mm RMS (the "
        "least a 2-4 degree / 2-4 mm motion gives), severe at 11.7 mm (the middle of 4-6 "
        "degrees / mm; 6-8 is severe throughout). " + _MOTION_SCALE,
        "grade",
        "lower",
        levels={"0": "none", "1": "mild", "2": "severe"},
    ),
    **{
        f"p_motion_{grade}": MeasureInfo(
            f"P(motion {grade})",
            f"Probability of the motion grade '{grade}', from the motion network.",
            "probability",
            "higher" if grade == "none" else "lower",
        )
        for grade in ("none", "mild", "severe")
    },
    "motion_mm": MeasureInfo(
        "Motion (mm)",
        "Head motion estimated by the motion network: the mean of its predicted distribution "
        "over 50 bins from 0 to 24.5 mm. " + _MOTION_SCALE,
        "mm",
        "lower",
    ),
}
_REGISTRATION_SCALE = (
    "The error is the Jenkinson RMS displacement (80 mm sphere about the brain centre) between "
    "the actual and the correct alignment; misregistered means 2 mm or more "
    "(docs/simulation.md)."
)
#: The registration-QC network's columns: the image against the template, and a FLAIR against
#: the T1w of its session (n/a for other images).
REGISTRATION_COLUMNS: dict[str, MeasureInfo] = {
    "p_misregistered": MeasureInfo(
        "P(misregistered)",
        "Probability, from the registration-QC network, that the preprocessed image is not "
        "aligned with the template. " + _REGISTRATION_SCALE,
        "probability",
        "lower",
    ),
    "registration_error_mm": MeasureInfo(
        "Registration error (mm)",
        "Error of the registration to the template estimated by the registration-QC network: "
        "the mean of its distribution over 50 bins from 0 to 24.5 mm. " + _REGISTRATION_SCALE,
        "mm",
        "lower",
    ),
    "p_misregistered_to_t1w": MeasureInfo(
        "P(FLAIR-T1w misregistered)",
        "Probability, from the registration-QC network, that a FLAIR is not aligned with the "
        "T1w of its session after bidsqc's rigid co-registration; n/a for T1w images and "
        "FLAIR without a T1w. " + _REGISTRATION_SCALE,
        "probability",
        "lower",
    ),
    "registration_error_to_t1w_mm": MeasureInfo(
        "FLAIR-T1w error (mm)",
        "Error of the FLAIR to T1w co-registration estimated by the registration-QC network. "
        + _REGISTRATION_SCALE,
        "mm",
        "lower",
    ),
}
_ARTEFACT_SCALE = (
    "Averaged over the 64 mm tiles of the 1 mm head box that hold brain, weighted by their "
    "brain fraction; each tile's value is in the desc-artefacts JSON and the desc-artefactmap "
    "image (docs/outputs.md)."
)
#: The QC-table column of each artefact of the artefact network
#: (:data:`bidsqc.networks.ARTEFACT_NAMES`), in its order.
ARTEFACT_PROBABILITY_COLUMNS = {
    "ghosting": "p_ghosting",
    "spike": "p_spike",
    "bias": "p_inhomogeneity",
    "noise": "p_noise",
    "blur": "p_blur",
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


_ARTEFACT_DESCRIPTIONS = {
    "ghosting": "ghosting: shifted copies of the head along the phase-encoding axis",
    "spike": "spikes: herringbone stripes from bright points in k-space",
    "bias": "intensity inhomogeneity: a smooth bias field from the receive coil",
    "noise": "noise: thermal (Rician) noise above what the scan normally carries",
    "blur": "blur: a loss of resolution, as from a wide point-spread function",
}
#: The artefact network's columns.
ARTEFACT_COLUMNS: dict[str, MeasureInfo] = {
    **{
        column: MeasureInfo(
            f"P({_ARTEFACT_DESCRIPTIONS[name].split(':')[0]})",
            "Probability, from the artefact network, that the image shows "
            f"{_ARTEFACT_DESCRIPTIONS[name]}. " + _ARTEFACT_SCALE,
            "probability",
            "lower",
        )
        for name, column in ARTEFACT_PROBABILITY_COLUMNS.items()
    },
    "quality_score": MeasureInfo(
        "Quality score",
        "Overall quality from 0 (unusable) to 10 (no artefact), from the artefact network, "
        "trained on 10 - 6 x the summed severities of simulated artefacts (motion included; "
        "docs/simulation.md). " + _ARTEFACT_SCALE,
        "score",
        "higher",
    ),
}
#: Every measured column of a QC table, in table order.
QC_COLUMNS: dict[str, MeasureInfo] = {
    **MEASURES,
    **MOTION_COLUMNS,
    **REGISTRATION_COLUMNS,
    **ARTEFACT_COLUMNS,
}


def _prefix(image: AnatImage) -> str:
    """The source stem without its suffix: ``sub-01_ses-1_run-1`` for ``..._run-1_T1w``; an
    image of a derivatives dataset also loses its ``desc`` entity (bidsqc sets its own)."""
    prefix = image.stem[: -len(image.modality) - 1]
    return prefix if image.dataset == RAW_DATASET else re.sub(r"_desc-[^_]+", "", prefix)


def derivative_path(
    out_dir: str | os.PathLike,
    image: AnatImage,
    *,
    suffix: str | None = None,
    extension: str,
    datatype: str = "anat",
    **entities: str,
) -> Path:
    """Path of one derivative of ``image``: source entities, then ``entities``, then the suffix.

    >>> from pathlib import Path
    >>> img = AnatImage(Path("/bids/sub-01/anat/sub-01_run-1_T1w.nii.gz"),
    ...                 "sub-01/anat/sub-01_run-1_T1w.nii.gz", "01", None, "T1w", {}, None)
    >>> derivative_path("/out", img, space="MNI152NLin2009cSym", res="2", desc="preproc",
    ...                 extension=".nii.gz").as_posix()
    '/out/sub-01/anat/sub-01_run-1_space-MNI152NLin2009cSym_res-2_desc-preproc_T1w.nii.gz'
    >>> derivative_path("/out", img, datatype="figures", desc="raw", extension=".png").name
    'sub-01_run-1_desc-raw_T1w.png'
    """
    unknown = set(entities) - set(_DERIVATIVE_ENTITIES)
    if unknown:
        raise ValueError(f"unknown derivative entities: {sorted(unknown)}")
    parts = [_prefix(image)]
    parts += [f"{key}-{entities[key]}" for key in _DERIVATIVE_ENTITIES if key in entities]
    parts.append(suffix or image.modality)
    folder = Path(out_dir) / f"sub-{image.subject}"
    if image.dataset != RAW_DATASET:
        folder = Path(out_dir) / image.dataset / f"sub-{image.subject}"
    if image.session and datatype != "figures":
        folder /= f"ses-{image.session}"
    return folder / datatype / ("_".join(parts) + extension)


def preproc_path(out_dir: str | os.PathLike, image: AnatImage) -> Path:
    """The image registered to the template, on the 2 mm head box."""
    return derivative_path(
        out_dir, image, space=TEMPLATE_NAME, res="2", desc="preproc", extension=".nii.gz"
    )


def transform_path(out_dir: str | os.PathLike, image: AnatImage, to: str = TEMPLATE_NAME) -> Path:
    """The ITK transform from the image to the template (``antsApplyTransforms`` ready), or to
    another image: ``to="T1w"`` for a FLAIR's rigid co-registration to its session's T1w."""
    return derivative_path(
        out_dir,
        image,
        suffix="xfm",
        extension=".mat",
        **{"from": image.modality, "to": to, "mode": "image"},
    )


def measures_path(out_dir: str | os.PathLike, image: AnatImage) -> Path:
    """The measures of one image, as JSON."""
    return derivative_path(out_dir, image, desc="measures", extension=".json")


def motion_path(out_dir: str | os.PathLike, image: AnatImage) -> Path:
    """The motion network's prediction for one image, as JSON."""
    return derivative_path(out_dir, image, desc="motion", extension=".json")


def registration_path(out_dir: str | os.PathLike, image: AnatImage) -> Path:
    """The registration-QC network's judgement of the image against the template, as JSON."""
    return derivative_path(out_dir, image, desc="registration", extension=".json")


def coregistration_path(out_dir: str | os.PathLike, image: AnatImage) -> Path:
    """The registration-QC network's judgement of a FLAIR against its session's T1w, as JSON."""
    return derivative_path(out_dir, image, desc="coregistration", extension=".json")


def artefacts_path(out_dir: str | os.PathLike, image: AnatImage) -> Path:
    """The artefact network's prediction for one image and each of its tiles, as JSON."""
    return derivative_path(out_dir, image, desc="artefacts", extension=".json")


def artefact_map_path(out_dir: str | os.PathLike, image: AnatImage) -> Path:
    """The artefact network's tile probabilities, a 4D image on the grid of the preproc image
    (one volume per column of :data:`ARTEFACT_PROBABILITY_COLUMNS`, in its order)."""
    return derivative_path(
        out_dir, image, space=TEMPLATE_NAME, res="2", desc="artefactmap", extension=".nii.gz"
    )


def network_paths(out_dir: str | os.PathLike, image: AnatImage) -> list[Path]:
    """The JSON files whose columns join an image's QC row, besides its measures."""
    return [
        motion_path(out_dir, image),
        registration_path(out_dir, image),
        coregistration_path(out_dir, image),
        artefacts_path(out_dir, image),
    ]


def figure_path(out_dir: str | os.PathLike, image: AnatImage, desc: str) -> Path:
    """A report figure (``desc`` is ``raw``, ``registered``, ``motion``, ``artefacts`` or
    ``coregistration``)."""
    return derivative_path(out_dir, image, datatype="figures", desc=desc, extension=".png")


def participant_table_path(out_dir: str | os.PathLike, subject: str) -> Path:
    """``sub-<label>/sub-<label>_qc.tsv``; its dictionary has the same name with ``.json``."""
    return Path(out_dir) / f"sub-{subject}" / f"sub-{subject}_qc.tsv"


def participant_report_name(participant_id: str) -> str:
    """File name of a participant's report, e.g. ``sub-01.html`` (beside the group reports)."""
    return f"{participant_id}.html"


def participant_report_path(out_dir: str | os.PathLike, subject: str) -> Path:
    return Path(out_dir) / participant_report_name(f"sub-{subject}")


def group_table_path(out_dir: str | os.PathLike, modality: str) -> Path:
    """``group_<modality>.tsv``; the HTML report has the same name with ``.html``."""
    return Path(out_dir) / f"group_{modality}.tsv"


def qc_row(
    image: AnatImage,
    measures: Mapping[str, float] | None,
    error: str | None,
    thresholds: Mapping[str, Threshold] = DEFAULT_THRESHOLDS,
) -> dict:
    """One row of a QC table: identifiers, status, decision, then every column of
    :data:`QC_COLUMNS` (NaN when failed)."""
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
    }
    row.update({name: (measures or {}).get(name, math.nan) for name in QC_COLUMNS})
    return row | decide(row, thresholds, QC_COLUMNS)


def column_dictionary(columns: Iterable[str]) -> dict[str, dict]:
    """BIDS data dictionary (Description, Units, Levels) for the given table columns."""
    dictionary = {}
    for column in columns:
        if column in ID_COLUMNS:
            dictionary[column] = ID_COLUMNS[column]
        elif column in QC_COLUMNS:
            info = QC_COLUMNS[column]
            description = info.description
            if info.better:
                description += f" Better: {info.better}."
            if info.reference:
                description += f" Reference: {info.reference}."
            dictionary[column] = {"Description": description, "Units": info.units}
            if info.levels:
                dictionary[column]["Levels"] = dict(info.levels)
        else:
            raise KeyError(f"column {column!r} has no description")
    return dictionary


def write_qc_table(
    rows: list[dict], path: str | os.PathLike, columns: Sequence[str] | None = None
) -> Path:
    """Write a QC table as TSV (``n/a`` for missing values) with its JSON dictionary beside it.

    ``columns`` gives the columns and their order (by default those of the first row), so that
    a table without rows still has its header.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if columns is None:
        columns = list(rows[0]) if rows else list(ID_COLUMNS)
    table = pd.DataFrame(rows, columns=list(columns))
    table.to_csv(path, sep="\t", index=False, na_rep=NA, float_format="%.6g")
    dictionary = column_dictionary(table.columns)
    path.with_suffix(".json").write_text(json.dumps(dictionary, indent=2) + "\n")
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
    labels.write_text("".join(f"{participant[4:]}\n" for participant in passing))
    return exclude, labels


def read_qc_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read a QC table written by :func:`write_qc_table`."""
    return pd.read_csv(path, sep="\t", na_values=[NA], keep_default_na=False)


def write_dataset_description(out_dir: str | os.PathLike, bids_dir: str | os.PathLike) -> None:
    """Write ``dataset_description.json`` and ``.bidsignore`` at the derivatives root.

    ``GeneratedBy`` names bidsqc, its version and code URL, and the container when the image
    sets ``BIDSQC_CONTAINER_TYPE`` and ``BIDSQC_CONTAINER_TAG``. ``SourceDatasets`` carries the
    raw dataset's DOI when its description has one, and its location otherwise.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    generated_by = {"Name": __packagename__, "Version": __version__, "CodeURL": __url__}
    if os.getenv("BIDSQC_CONTAINER_TYPE"):
        generated_by["Container"] = {
            "Type": os.environ["BIDSQC_CONTAINER_TYPE"],
            "Tag": os.getenv("BIDSQC_CONTAINER_TAG", NA),
        }
    source = {"URL": Path(bids_dir).absolute().as_uri()}
    source_description = Path(bids_dir) / "dataset_description.json"
    try:
        doi = json.loads(source_description.read_text()).get("DatasetDOI")
    except (OSError, json.JSONDecodeError):
        doi = None
    if doi:
        source = {"DOI": doi if doi.startswith("doi:") else f"doi:{doi}"}
    description = {
        "Name": "bidsqc: quality control of anatomical MRI",
        "BIDSVersion": "1.9.0",
        "DatasetType": "derivative",
        "GeneratedBy": [generated_by],
        "SourceDatasets": [source],
    }
    (out_dir / "dataset_description.json").write_text(json.dumps(description, indent=2) + "\n")
    (out_dir / ".bidsignore").write_text("work/\nlogs/\n*.html\n*/figures/\ngroup_*\n")
    (out_dir / "logs").mkdir(exist_ok=True)
