"""The columns of the QC tables and their JSON column dictionary."""

from __future__ import annotations

from collections.abc import Iterable

from bidsqc.geometry import MOTION_GRADE_NAMES
from bidsqc.measures.catalogue import MEASURES, MeasureInfo

__all__ = [
    "ARTEFACT_COLUMNS",
    "ARTEFACT_PROBABILITY_COLUMNS",
    "GEOMETRY_COLUMNS",
    "ID_COLUMNS",
    "MOTION_COLUMNS",
    "QC_COLUMNS",
    "REGISTRATION_COLUMNS",
    "SITE_QUALITY_COLUMNS",
    "column_dictionary",
]


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


#: How the image was acquired, its geometry and scanner
#: (:func:`bidsqc.loading.acquisition_geometry`), and whether the outputs are valid for it
#: (:mod:`bidsqc.validity`).
GEOMETRY_COLUMNS: dict[str, dict] = {
    "slice_mm": {
        "Description": "Largest voxel dimension of the image as acquired: the slice spacing of "
        "a 2D acquisition. A scan stored on a finer grid than it was acquired on repeats or "
        "interpolates its slices; the spacing of those it acquired is given.",
        "Units": "mm",
    },
    "in_plane_mm": {
        "Description": "Mean of the two other voxel dimensions, as acquired.",
        "Units": "mm",
    },
    "acquisition": {
        "Description": "MRAcquisitionType of the JSON sidecar; n/a without it.",
        "Levels": {"2D": "slice by slice", "3D": "volume"},
    },
    "scanner": {
        "Description": "Manufacturer, ManufacturersModelName and MagneticFieldStrength of the "
        "JSON sidecar, those it has; n/a without them. The group report compares the measures "
        "of images of the same scanner and geometry."
    },
    "not_assessed": {
        "Description": "Why measures and network outputs of this image are n/a although it "
        "was processed (slices thicker than those they were validated on, naming those kept, "
        "or a scan that covers too little of the brain: docs/outputs.md); n/a when all are "
        "valid."
    },
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
        for grade in MOTION_GRADE_NAMES
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
    "motion": "p_motion_artefact",
}


_ARTEFACT_DESCRIPTIONS = {
    "ghosting": "ghosting: shifted copies of the head along the phase-encoding axis",
    "spike": "spikes: herringbone stripes from bright points in k-space",
    "bias": "intensity inhomogeneity: a smooth bias field from the receive coil",
    "noise": "noise: thermal (Rician) noise above what the scan normally carries",
    "blur": "blur: a loss of resolution, as from a wide point-spread function",
    "motion": "motion artefact: the ringing and ghosts that head motion leaves, read at 1 mm",
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


#: The columns of a site-quality network, fine-tuned on the site's own ratings
#: (``bidsqc-finetune --task quality``, used with ``--models-dir``); n/a without one.
SITE_QUALITY_COLUMNS: dict[str, MeasureInfo] = {
    **{
        f"p_{rating}": MeasureInfo(
            f"P({rating})",
            f"Probability, from the site-quality network, that the site's raters would call the "
            f"image {rating}.",
            "probability",
            better,
        )
        for rating, better in (
            ("usable", "higher"),
            ("questionable", "lower"),
            ("unusable", "lower"),
        )
    },
    "site_rating": MeasureInfo(
        "Site rating",
        "The site-quality network's rating: 0 usable; 1 questionable or 2 unusable (the more "
        "probable) once P(questionable) + P(unusable) reaches 0.5.",
        "grade",
        "lower",
    ),
}


#: Every measured column of a QC table, in table order.
QC_COLUMNS: dict[str, MeasureInfo] = {
    **MEASURES,
    **MOTION_COLUMNS,
    **REGISTRATION_COLUMNS,
    **ARTEFACT_COLUMNS,
    **SITE_QUALITY_COLUMNS,
}


def column_dictionary(columns: Iterable[str]) -> dict[str, dict]:
    """BIDS data dictionary (Description, Units, Levels) for the given table columns."""
    dictionary = {}
    for column in columns:
        if column in ID_COLUMNS or column in GEOMETRY_COLUMNS:
            dictionary[column] = (ID_COLUMNS | GEOMETRY_COLUMNS)[column]
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
