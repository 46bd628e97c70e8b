"""Every file name the app writes, computed here and nowhere else."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from bidsqc.data import TEMPLATE_NAME
from bidsqc.discovery import RAW_DATASET, AnatImage

__all__ = [
    "NETWORK_OUTPUT_NAMES",
    "artefact_map_path",
    "artefacts_path",
    "coregistration_path",
    "derivative_path",
    "figure_path",
    "geometry_path",
    "group_table_path",
    "measures_path",
    "motion_path",
    "network_paths",
    "participant_report_name",
    "participant_report_path",
    "participant_table_path",
    "participant_tables",
    "preproc_path",
    "registration_path",
    "row_figure_href",
    "site_quality_path",
    "transform_path",
]


#: Entities bidsqc adds to a source name, in the order the BIDS specification sets.
_DERIVATIVE_ENTITIES = ("from", "to", "mode", "space", "res", "desc")


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


def geometry_path(out_dir: str | os.PathLike, image: AnatImage) -> Path:
    """The acquisition geometry of one image, read from its header, sidecar and voxels, as
    JSON."""
    return derivative_path(out_dir, image, desc="geometry", extension=".json")


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


def site_quality_path(out_dir: str | os.PathLike, image: AnatImage) -> Path:
    """A site-quality network's rating of one image (``--models-dir`` with ``quality.pt``)."""
    return derivative_path(out_dir, image, desc="sitequality", extension=".json")


def artefacts_path(out_dir: str | os.PathLike, image: AnatImage) -> Path:
    """The artefact network's prediction for one image and each of its tiles, as JSON."""
    return derivative_path(out_dir, image, desc="artefacts", extension=".json")


def artefact_map_path(out_dir: str | os.PathLike, image: AnatImage) -> Path:
    """The artefact network's tile probabilities, a 4D image on the grid of the preproc image
    (one volume per column of :data:`ARTEFACT_PROBABILITY_COLUMNS`, in its order)."""
    return derivative_path(
        out_dir, image, space=TEMPLATE_NAME, res="2", desc="artefactmap", extension=".nii.gz"
    )


#: What each of :func:`network_paths` holds, in its order.
NETWORK_OUTPUT_NAMES = (
    "motion",
    "registration",
    "FLAIR-T1w registration",
    "artefacts",
    "site quality",
)


def network_paths(out_dir: str | os.PathLike, image: AnatImage) -> list[Path]:
    """The JSON files whose columns join an image's QC row, besides its measures."""
    return [
        motion_path(out_dir, image),
        registration_path(out_dir, image),
        coregistration_path(out_dir, image),
        artefacts_path(out_dir, image),
        site_quality_path(out_dir, image),
    ]


def figure_path(out_dir: str | os.PathLike, image: AnatImage, desc: str) -> Path:
    """A report figure (``desc`` is ``raw``, ``registered``, ``motion``, ``artefacts`` or
    ``coregistration``)."""
    return derivative_path(out_dir, image, datatype="figures", desc=desc, extension=".png")


def row_figure_href(row: Mapping[str, str], desc: str) -> str:
    """A figure of the image of a QC-table row, relative to the output directory."""
    image = AnatImage(
        path=Path(row["filename"]),
        relpath=row["filename"],
        subject=row["participant_id"].removeprefix("sub-"),
        session=None,  # figures have no session folder
        modality=row["modality"],
        entities={},
        sidecar=None,
        dataset=row.get("dataset", RAW_DATASET),
    )
    return figure_path(".", image, desc).as_posix()


def participant_table_path(out_dir: str | os.PathLike, subject: str) -> Path:
    """``sub-<label>/sub-<label>_qc.tsv``; its dictionary has the same name with ``.json``."""
    return Path(out_dir) / f"sub-{subject}" / f"sub-{subject}_qc.tsv"


def participant_tables(out_dir: str | os.PathLike) -> list[Path]:
    """Every participant table of an output directory, in path order."""
    return sorted(Path(out_dir).glob("sub-*/sub-*_qc.tsv"))


def participant_report_name(participant_id: str) -> str:
    """File name of a participant's report, e.g. ``sub-01.html`` (beside the group reports)."""
    return f"{participant_id}.html"


def participant_report_path(out_dir: str | os.PathLike, subject: str) -> Path:
    return Path(out_dir) / participant_report_name(f"sub-{subject}")


def group_table_path(out_dir: str | os.PathLike, modality: str) -> Path:
    """``group_<modality>.tsv``; the HTML report has the same name with ``.html``."""
    return Path(out_dir) / f"group_{modality}.tsv"
