"""Find the T1w and FLAIR images of a BIDS dataset with pybids.

The dataset is indexed once, read-only, in memory: nothing is written inside it, and the
participant jobs of an array share no database. Only file names are indexed (no JSON
sidecar is read), so broken sidecars and placeholder images do not get in the way, and a job
given participant labels indexes only their folders: one array task of a 10,000-subject
dataset does not walk the other 9,999 (``benchmarks/indexing.py``).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bids import BIDSLayout

__all__ = [
    "DEFAULT_BIDS_QUERIES",
    "DERIVATIVE_SPACES",
    "RAW_DATASET",
    "AnatImage",
    "BIDSError",
    "NotBIDSError",
    "collect_data",
    "collect_derivatives",
    "collect_participants",
    "init_layout",
    "load_bids_filters",
]

DEFAULT_BIDS_QUERIES: dict[str, dict[str, Any]] = {
    modality: {"datatype": "anat", "suffix": modality, "extension": [".nii", ".nii.gz"]}
    for modality in ("T1w", "FLAIR")
}
"""pybids queries for each modality; ``--bids-filter-file`` updates them."""

# Entities fixed by the modality or by the participant and session selection.
_RESERVED_ENTITIES = ("subject", "session", "datatype", "suffix")

# pybids also always ignores hidden files and folders, and never indexes derivatives/.
_IGNORE = (
    re.compile(r"^/(code|derivatives|models|sourcedata|stimuli)(/|$)"),
    # Inside subject folders only anat/ is ever queried: skipping func/, dwi/, meg/,
    # _scans.tsv... keeps indexing proportional to the anatomical data.
    re.compile(r"^/sub-[^/]+(/ses-[^/]+)?/(?!anat$|ses-)[^/]+$"),
)


#: The ``dataset`` of the images of the raw BIDS dataset.
RAW_DATASET = "raw"
#: Template spaces whose preprocessed anatomicals ``--derivatives`` reads: the bundled template
#: and its asymmetric sibling, which shares its world coordinates.
DERIVATIVE_SPACES = ("MNI152NLin2009cSym", "MNI152NLin2009cAsym")
_DERIVATIVE_NAME = re.compile(
    r"^sub-(?P<subject>[A-Za-z0-9]+)(?:_ses-(?P<session>[A-Za-z0-9]+))?(?:_[a-z]+-[A-Za-z0-9]+)*"
    rf"_space-(?:{'|'.join(DERIVATIVE_SPACES)})(?:_[a-z]+-[A-Za-z0-9]+)*_desc-preproc"
    r"_(?P<modality>T1w|FLAIR)\.nii(?:\.gz)?$"
)


class BIDSError(ValueError):
    """The dataset, or the selection asked of it, cannot be used (CLI exit code 2)."""


class NotBIDSError(BIDSError):
    """The directory is not a raw BIDS dataset."""


@dataclass(frozen=True)
class AnatImage:
    """One anatomical image of the dataset.

    Attributes
    ----------
    path
        Absolute path, not resolved through symbolic links (which may dangle).
    relpath
        POSIX path relative to the dataset root, as written in ``_scans.tsv``.
    subject, session
        Labels, without ``sub-`` and ``ses-``.
    modality
        ``"T1w"`` or ``"FLAIR"``.
    entities
        The other entities of the file name, with their BIDS keys
        (e.g. ``{"acq": "mprage", "run": "01"}``).
    sidecar
        The JSON file beside the image with the same stem, if there is one.
    dataset
        :data:`RAW_DATASET` for the BIDS dataset, else the name of the derivatives dataset
        (``--derivatives``) the image comes from; ``relpath`` is then relative to that.
    """

    path: Path
    relpath: str
    subject: str
    session: str | None
    modality: str
    entities: dict[str, str] = field(hash=False)
    sidecar: Path | None
    dataset: str = RAW_DATASET

    @property
    def stem(self) -> str:
        """File name without ``.nii`` or ``.nii.gz``."""
        return _strip_nifti_extension(self.path.name)

    @property
    def key(self) -> str:
        """Identifier unique within the dataset, made of ``[A-Za-z0-9_]`` only.

        Safe for file names and nipype node names,
        e.g. ``sub_01_ses_1_acq_mprage_run_1_T1w``; a derivative's key starts with its
        dataset's name.
        """
        stem = self.stem if self.dataset == RAW_DATASET else f"{self.dataset}_{self.stem}"
        return re.sub(r"[^A-Za-z0-9]", "_", stem)


def init_layout(
    bids_dir: Path | str,
    *,
    participant_label: str | Iterable[str] | None = None,
    validate: bool = True,
) -> BIDSLayout:
    """Index the anatomical data of a raw BIDS dataset.

    Parameters
    ----------
    bids_dir
        Root of the dataset.
    participant_label
        Index only these participants' folders (with or without ``sub-``); all when ``None``.
    validate
        Check ``dataset_description.json`` and skip files whose names are not BIDS
        (``False`` with ``--skip-bids-validation``).

    Raises
    ------
    NotBIDSError
        If ``bids_dir`` is not a directory with a ``dataset_description.json``, or is a
        BIDS-Derivatives dataset.
    """
    # Imported here: pybids takes a second to load, which `bidsqc --help` need not wait for.
    from bids import BIDSLayout, BIDSLayoutIndexer
    from bids.exceptions import BIDSValidationError

    bids_dir = Path(bids_dir).absolute()
    if not bids_dir.is_dir():
        reason = "does not exist" if not bids_dir.exists() else "is not a directory"
        raise NotBIDSError(f"BIDS dataset '{bids_dir}' {reason}.")
    if not (bids_dir / "dataset_description.json").is_file():
        raise NotBIDSError(
            f"'{bids_dir}' is not a BIDS dataset: it has no dataset_description.json."
        )

    ignore = list(_IGNORE)
    if participant_label is not None:
        wanted = "|".join(re.escape(label) for label in _participant_labels(participant_label))
        ignore.append(re.compile(rf"^/sub-(?!(?:{wanted})$)[^/]+$"))
    indexer = BIDSLayoutIndexer(validate=validate, ignore=ignore, index_metadata=False)
    try:
        layout = BIDSLayout(bids_dir, validate=validate, indexer=indexer)
    except BIDSValidationError as err:
        raise NotBIDSError(f"'{bids_dir}' is not a valid BIDS dataset: {err}") from err

    if (layout.description or {}).get("DatasetType") == "derivative":
        raise NotBIDSError(
            f"'{bids_dir}' is a BIDS-Derivatives dataset; bidsqc needs the raw dataset."
        )
    return layout


def collect_participants(
    layout: BIDSLayout, participant_label: str | Iterable[str] | None = None
) -> list[str]:
    """Return the participants to process, without ``sub-``, in natural order.

    Parameters
    ----------
    layout
        Layout from :func:`init_layout`.
    participant_label
        One or more participants, with or without ``sub-``; all of them when ``None``.

    Raises
    ------
    BIDSError
        If the dataset has no participant, or lacks some of those asked for.
    """
    # Entity.unique() reads one table; layout.get_subjects() loads every file (slow).
    subject = layout.get_entities(metadata=False).get("subject")
    found = _natural_sort(subject.unique() if subject else [])
    wanted = found if participant_label is None else _participant_labels(participant_label)
    if not wanted:
        raise BIDSError(f"No participant with an anat/ folder in '{layout.root}'.")
    missing = [label for label in wanted if label not in found]
    if missing:
        # The layout may hold only the wanted participants: list the others from the folders.
        anat_folders = Path(layout.root).glob("sub-*/**/anat")
        existing = _natural_sort(
            {folder.relative_to(layout.root).parts[0][4:] for folder in anat_folders}
        )
        raise BIDSError(
            f"Participant(s) {_summary(missing, 'sub-')} not found in '{layout.root}' "
            f"(participants with an anat/ folder: {_summary(existing, 'sub-')})."
        )
    return wanted


def collect_data(
    layout: BIDSLayout,
    participant_label: str | Iterable[str],
    *,
    session_label: str | Iterable[str] | None = None,
    modalities: Sequence[str] = ("T1w", "FLAIR"),
    bids_filters: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[AnatImage]:
    """Return the anatomical images of some participants, in natural order of their paths.

    Parameters
    ----------
    layout
        Layout from :func:`init_layout`.
    participant_label
        One or more participants, with or without ``sub-``.
    session_label
        One or more sessions, with or without ``ses-``; all sessions when ``None``.
    modalities
        Among the keys of :data:`DEFAULT_BIDS_QUERIES`.
    bids_filters
        Per modality, pybids filters that update the default query,
        e.g. ``{"T1w": {"acquisition": "mprage"}}``; ``None`` (JSON ``null``) selects
        files without the entity.

    Raises
    ------
    BIDSError
        On unknown modalities, invalid filters (including entities pybids does not
        know), or an image stored twice under different extensions.
    """
    unknown = sorted(set(modalities) - DEFAULT_BIDS_QUERIES.keys())
    if unknown:
        raise BIDSError(f"Unknown modalities {unknown}; choose among {list(DEFAULT_BIDS_QUERIES)}.")
    filters = _check_bids_filters(bids_filters or {})

    selection = {"subject": [label.removeprefix("sub-") for label in _listify(participant_label)]}
    if session_label is not None:
        selection["session"] = [label.removeprefix("ses-") for label in _listify(session_label)]

    root = Path(layout.root)
    images = []
    for modality in modalities:
        query = {**DEFAULT_BIDS_QUERIES[modality], **filters.get(modality, {}), **selection}
        try:
            files = layout.get(**query)
        except ValueError as err:  # pybids refuses unknown entities
            raise BIDSError(f"Invalid BIDS filters for {modality}: {err}") from err
        images += [_anat_image(Path(bf.path), bf.entities, root, modality) for bf in files]

    duplicates = [key for key, count in Counter(image.key for image in images).items() if count > 1]
    if duplicates:
        raise BIDSError(
            f"Image(s) {_summary(sorted(duplicates))} stored more than once in '{root}' "
            "(e.g. as both .nii and .nii.gz)."
        )
    return sorted(images, key=lambda image: _natural_key(image.relpath))


def load_bids_filters(path: Path | str) -> dict[str, dict[str, Any]]:
    """Read and check a ``--bids-filter-file``.

    The file holds a JSON object keyed by modality, e.g.
    ``{"T1w": {"acquisition": "mprage"}, "FLAIR": {"reconstruction": null}}``.

    Raises
    ------
    BIDSError
        If the file cannot be read, is not valid JSON, or holds invalid filters.
    """
    try:
        filters = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BIDSError(f"Cannot read BIDS filters from '{path}': {err}") from err
    try:
        return _check_bids_filters(filters)
    except BIDSError as err:
        raise BIDSError(f"'{path}': {err}") from err


def _check_bids_filters(filters: object) -> dict[str, dict[str, Any]]:
    """Return ``filters`` if they are pybids filters keyed by modality, else raise."""
    if not isinstance(filters, Mapping):
        raise BIDSError("BIDS filters must be an object keyed by modality.")
    unknown = sorted(set(filters) - DEFAULT_BIDS_QUERIES.keys())
    if unknown:
        raise BIDSError(
            f"BIDS filters for unknown modalities {unknown}; use {list(DEFAULT_BIDS_QUERIES)}."
        )
    for modality, query in filters.items():
        if not isinstance(query, Mapping):
            raise BIDSError(f"BIDS filters for {modality} must be an object of entities.")
        reserved = [entity for entity in _RESERVED_ENTITIES if entity in query]
        if reserved:
            raise BIDSError(
                f"BIDS filters for {modality} may not set {', '.join(reserved)}: participants "
                "and sessions are chosen with --participant-label and --session-label, "
                "datatype and suffix by the modality."
            )
    return {modality: dict(query) for modality, query in filters.items()}


def collect_derivatives(
    derivatives_dir: Path | str,
    subjects: Iterable[str] | None = None,
    modalities: Iterable[str] = ("T1w", "FLAIR"),
) -> list[AnatImage]:
    """Template-space preprocessed anatomicals of an fMRIPrep-style derivatives dataset.

    Finds ``sub-<label>/[ses-<label>/]anat/*_space-<template>_[...]desc-preproc_<T1w|FLAIR>``
    NIfTI files for the templates of :data:`DERIVATIVE_SPACES`, of the given participants
    (labels without ``sub-``; all by default). The folder's name becomes the images' dataset.

    Raises
    ------
    BIDSError
        If ``derivatives_dir`` is not a directory.
    """
    root = Path(derivatives_dir).absolute()
    if not root.is_dir():
        raise BIDSError(f"Derivatives folder '{root}' does not exist or is not a directory.")
    wanted = None if subjects is None else set(subjects)
    images = []
    for path in sorted(root.glob("sub-*/**/anat/*desc-preproc_*.nii*")):
        match = _DERIVATIVE_NAME.match(path.name)
        if not match or match["modality"] not in modalities:
            continue
        if wanted is not None and match["subject"] not in wanted:
            continue
        image = _anat_image(path, match.groupdict(), root, match["modality"])
        images.append(replace(image, dataset=root.name))
    return images


def _anat_image(
    path: Path, pybids_entities: Mapping[str, Any], root: Path, modality: str
) -> AnatImage:
    """Describe the image at ``path`` (absolute, under ``root``)."""
    stem = _strip_nifti_extension(path.name)
    sidecar = path.with_name(f"{stem}.json")
    pairs = (part.partition("-") for part in stem.split("_")[:-1])
    return AnatImage(
        path=path,
        relpath=path.relative_to(root).as_posix(),
        subject=pybids_entities["subject"],
        session=pybids_entities.get("session"),
        modality=modality,
        entities={key: value for key, sep, value in pairs if sep and key not in ("sub", "ses")},
        sidecar=sidecar if sidecar.is_file() else None,
    )


def _strip_nifti_extension(filename: str) -> str:
    return filename.removesuffix(".gz").removesuffix(".nii")


def _listify(labels: str | Iterable[str]) -> list[str]:
    return [labels] if isinstance(labels, str) else list(labels)


def _participant_labels(labels: str | Iterable[str]) -> list[str]:
    """Participant labels without ``sub-``, once each, in natural order."""
    return _natural_sort({label.removeprefix("sub-") for label in _listify(labels)})


def _natural_key(text: str) -> tuple[list[str | int], str]:
    """Sort key placing ``sub-2`` before ``sub-10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)], text


def _natural_sort(labels: Iterable[str]) -> list[str]:
    return sorted(labels, key=_natural_key)


def _summary(items: Sequence[str], prefix: str = "", shown: int = 5) -> str:
    """Abridge a list for a message, e.g. ``sub-01, sub-02 and 3 more``."""
    named = ", ".join(f"{prefix}{item}" for item in items[:shown])
    rest = len(items) - shown
    return f"{named} and {rest} more" if rest > 0 else named
