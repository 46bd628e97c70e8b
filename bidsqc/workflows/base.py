"""The participant-level graph: one sub-workflow per participant, one branch per image."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import groupby
from pathlib import Path

from nipype.pipeline import engine as pe

from bidsqc.bids import AnatImage
from bidsqc.workflows.anatomical import init_anat_qc_wf

__all__ = ["branch_name", "init_bidsqc_wf", "init_single_subject_wf"]


def branch_name(image: AnatImage) -> str:
    """Name of the image's branch; it appears in the node paths of crash files."""
    return f"anat_qc_{image.key}_wf"


def init_single_subject_wf(
    *,
    subject: str,
    images: Sequence[AnatImage],
    output_dir: Path,
    omp_nthreads: int,
    device: str = "auto",
    name: str | None = None,
) -> pe.Workflow:
    """All images of one participant, each in its own independent branch.

    Parameters
    ----------
    subject
        Participant label, without ``sub-``.
    images
        That participant's T1w and FLAIR images.
    output_dir, omp_nthreads, device
        As for :func:`~bidsqc.workflows.anatomical.init_anat_qc_wf`.
    """
    workflow = pe.Workflow(name=name or f"single_subject_{subject}_wf")
    workflow.add_nodes([
        init_anat_qc_wf(
            image=image,
            output_dir=output_dir,
            omp_nthreads=omp_nthreads,
            device=device,
            name=branch_name(image),
        )
        for image in images
    ])  # fmt: skip
    return workflow


def init_bidsqc_wf(
    *,
    images: Sequence[AnatImage],
    output_dir: Path,
    work_dir: Path,
    omp_nthreads: int,
    device: str = "auto",
    name: str = "bidsqc_wf",
) -> pe.Workflow:
    """The participant level: a sub-workflow for every participant that has images.

    Parameters
    ----------
    images
        Every image to QC, as returned by :func:`bidsqc.bids.collect_data`.
    output_dir
        Derivatives root.
    work_dir
        nipype's cache: a rerun with the same work directory resumes where it stopped.
    omp_nthreads
        Threads per ANTs or network node.
    device
        Where the networks run: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
    """
    workflow = pe.Workflow(name=name, base_dir=str(work_dir))
    by_subject = groupby(sorted(images, key=lambda image: image.subject), lambda i: i.subject)
    workflow.add_nodes([
        init_single_subject_wf(
            subject=subject,
            images=list(subject_images),
            output_dir=output_dir,
            omp_nthreads=omp_nthreads,
            device=device,
        )
        for subject, subject_images in by_subject
    ])  # fmt: skip
    return workflow
