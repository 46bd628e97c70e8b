"""The participant-level graph: one sub-workflow per participant, one branch per image."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import groupby
from pathlib import Path

from nipype.pipeline import engine as pe

from bidsqc.discovery import RAW_DATASET, AnatImage
from bidsqc.workflows.anatomical import (
    init_anat_qc_wf,
    init_derivative_qc_wf,
    init_flair_coreg_wf,
)
from bidsqc.workflows.settings import QCSettings

__all__ = [
    "branch_name",
    "coregistration_branch_name",
    "flair_reference",
    "init_bidsqc_wf",
    "init_single_subject_wf",
]


def branch_name(image: AnatImage) -> str:
    """Name of the image's branch; it appears in the node paths of crash files."""
    return f"anat_qc_{image.key}_wf"


def coregistration_branch_name(flair: AnatImage) -> str:
    """Name of the FLAIR-to-T1w co-registration branch of a FLAIR."""
    return f"flair_coreg_{flair.key}_wf"


def flair_reference(flair: AnatImage, images: Sequence[AnatImage]) -> AnatImage | None:
    """The T1w a FLAIR is co-registered to: of the same dataset and session, the one that
    shares the most entities with it (then the first by path); None without one."""
    candidates = [
        image
        for image in images
        if image.modality == "T1w"
        and image.session == flair.session
        and image.dataset == flair.dataset
    ]
    if not candidates:
        return None

    def shared(t1w: AnatImage) -> int:
        return sum(flair.entities.get(key) == value for key, value in t1w.entities.items())

    return max(sorted(candidates, key=lambda image: image.relpath), key=shared)


def init_single_subject_wf(
    *,
    subject: str,
    images: Sequence[AnatImage],
    settings: QCSettings,
    name: str | None = None,
) -> pe.Workflow:
    """All images of one participant, each in its own branch, plus the FLAIR-to-T1w
    co-registration of every raw FLAIR that has a T1w in its session (:func:`flair_reference`).

    Parameters
    ----------
    subject
        Participant label, without ``sub-``.
    images
        That participant's T1w and FLAIR images, raw or from derivatives datasets (which get
        :func:`~bidsqc.workflows.anatomical.init_derivative_qc_wf`).
    settings
        Where the outputs go, and how the networks run.
    """
    workflow = pe.Workflow(name=name or f"single_subject_{subject}_wf")
    branches = {
        image: (init_anat_qc_wf if image.dataset == RAW_DATASET else init_derivative_qc_wf)(
            image=image, settings=settings, name=branch_name(image)
        )
        for image in images
    }
    workflow.add_nodes(list(branches.values()))
    raw = [image for image in images if image.dataset == RAW_DATASET]
    for flair in (image for image in raw if image.modality == "FLAIR"):
        t1w = flair_reference(flair, raw)
        if t1w is None:
            continue
        coreg_wf = init_flair_coreg_wf(
            flair=flair, settings=settings, name=coregistration_branch_name(flair)
        )
        workflow.connect([
            (branches[flair], coreg_wf, [("outputnode.resampled", "inputnode.flair_resampled")]),
            (branches[t1w], coreg_wf, [("outputnode.resampled", "inputnode.t1w_resampled"),
                                       ("outputnode.registered", "inputnode.t1w_registered"),
                                       ("outputnode.transform", "inputnode.t1w_transform")]),
        ])  # fmt: skip
    return workflow


def init_bidsqc_wf(
    *,
    images: Sequence[AnatImage],
    settings: QCSettings,
    work_dir: Path,
    name: str = "bidsqc_wf",
) -> pe.Workflow:
    """The participant level: a sub-workflow for every participant that has images.

    Parameters
    ----------
    images
        Every image to QC, as returned by :func:`bidsqc.discovery.collect_data`.
    settings
        Where the results go, and how the networks run (and which: ``--models-dir``).
    work_dir
        nipype's cache: a rerun with the same work directory resumes where it stopped, and a
        rerun with other networks runs only the networks again.
    """
    workflow = pe.Workflow(name=name, base_dir=str(work_dir))
    by_subject = groupby(sorted(images, key=lambda image: image.subject), lambda i: i.subject)
    workflow.add_nodes([
        init_single_subject_wf(
            subject=subject,
            images=list(subject_images),
            settings=settings,
        )
        for subject, subject_images in by_subject
    ])  # fmt: skip
    return workflow
